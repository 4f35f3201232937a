//! The lake key in a local file, created on first use with mode 0600.
//! It lives in the platform home, outside the lake, and is never logged.
//!
//! The file holds the current key and, across a rotation, the next one and the
//! retired ones: `{"version": 2, "key_hex": "...", "retired": [{"version": 1, ...}]}`
//! (the same JSON as the Secrets Manager secret, which ignores the extra fields).
//! A lake key file is never created for a lake that already holds data: a new key
//! would give every person a new pseudonym, so the file must be restored instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::custody::{self, Fingerprint};
use crate::ports::{KeyError, KeyProvider};
use crate::pseudonym::{Key, MIN_KEY_BYTES};

pub struct KeyFile {
    path: PathBuf,
    /// The lake directory this key pseudonymises, for the lake key (not project keys).
    lake: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    version: u32,
    key_hex: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    key_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<StoredKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired: Vec<StoredKey>,
}

/// The keys of one file: the current one, the one a rotation is moving to, the old ones.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub current: Key,
    pub next: Option<Key>,
    pub retired: Vec<Key>,
}

fn stored(k: &Key) -> StoredKey {
    StoredKey {
        version: k.version,
        key_hex: hex::encode(k.bytes()),
    }
}

fn fresh_key(version: u32) -> Result<Key, KeyError> {
    let mut bytes = vec![0u8; MIN_KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| KeyError(format!("no randomness for a new key: {e}")))?;
    Key::new(version, bytes).map_err(|e| KeyError(e.to_string()))
}

impl KeyFile {
    /// A key file of its own (research project keys): created freely.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyFile {
            path: path.into(),
            lake: None,
        }
    }

    /// The lake key of the lake in `lake_dir`: never created when that lake has data.
    pub fn for_lake(path: impl Into<PathBuf>, lake_dir: impl Into<PathBuf>) -> Self {
        KeyFile {
            path: path.into(),
            lake: Some(lake_dir.into()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All keys of the file, or `None` when there is no file.
    pub fn load(&self) -> Result<Option<KeyRing>, KeyError> {
        let shown = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(KeyError(format!("reading {shown}: {e}"))),
        };
        let s: Stored = serde_json::from_str(&text)
            .map_err(|e| KeyError(format!("{shown} is not a key file: {e}")))?;
        let key = |version: u32, key_hex: &str| {
            let bytes = hex::decode(key_hex.trim()).map_err(|_| {
                KeyError(format!("{shown}: key_hex of version {version} is not hex"))
            })?;
            Key::new(version, bytes).map_err(|e| KeyError(format!("{shown}: {e}")))
        };
        Ok(Some(KeyRing {
            current: key(s.version, &s.key_hex)?,
            next: s.next.map(|n| key(n.version, &n.key_hex)).transpose()?,
            retired: s
                .retired
                .iter()
                .map(|r| key(r.version, &r.key_hex))
                .collect::<Result<_, _>>()?,
        }))
    }

    /// Reads the current key, creating a fresh random one (version 1) if the file is
    /// absent — unless this is a lake's key and the lake already has data.
    pub fn load_or_create(&self) -> Result<Key, KeyError> {
        if let Some(ring) = self.load()? {
            return Ok(ring.current);
        }
        self.refuse_when_the_lake_has_data()?;
        let key = fresh_key(1)?;
        match self.write(
            &KeyRing {
                current: key.clone(),
                next: None,
                retired: Vec::new(),
            },
            true,
        ) {
            Ok(()) => Ok(key),
            // Another process created it first: use theirs.
            Err(None) => self
                .load()?
                .map(|r| r.current)
                .ok_or_else(|| KeyError(format!("{} vanished", self.path.display()))),
            Err(Some(e)) => Err(e),
        }
    }

    fn refuse_when_the_lake_has_data(&self) -> Result<(), KeyError> {
        let Some(lake) = &self.lake else {
            return Ok(());
        };
        let record = lake.join(custody::RECORD_KEY);
        let expected = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<custody::KeyRecord>(&b).ok())
            .map(|r| r.current);
        let has_rows = has_files(&lake.join(crate::layout::CURATED_ZONE));
        if expected.is_none() && !has_rows && !record.exists() {
            return Ok(());
        }
        let wanted = expected.map_or_else(
            || "the key the lake was built with".to_string(),
            |f: Fingerprint| format!("the key with {f}"),
        );
        Err(KeyError(format!(
            "the lake key file {} is missing, but the lake {} already holds data pseudonymised with a key; \
             a new key would give every person new pseudonyms that match none of the old ones, so none is created. \
             Restore {} from the backup of this home ({wanted}; `naerdata keys show` prints the recorded fingerprint), \
             or use a new, empty home",
            self.path.display(),
            lake.display(),
            self.path.display(),
        )))
    }

    /// The key a rotation moves to: the file's `next`, created (current version + 1)
    /// and written beside the current key if there is none yet.
    pub fn begin_rotation(&self) -> Result<Key, KeyError> {
        let mut ring = self
            .load()?
            .ok_or_else(|| KeyError(format!("{} does not exist", self.path.display())))?;
        if let Some(next) = &ring.next {
            return Ok(next.clone());
        }
        let newest = ring
            .retired
            .iter()
            .map(|k| k.version)
            .chain([ring.current.version])
            .max()
            .unwrap_or(0);
        let next = fresh_key(newest + 1)?;
        ring.next = Some(next.clone());
        self.write(&ring, false).map_err(written_or_why)?;
        Ok(next)
    }

    /// Makes the rotation's key current; the old one is kept as retired.
    pub fn finish_rotation(&self) -> Result<Key, KeyError> {
        let mut ring = self
            .load()?
            .ok_or_else(|| KeyError(format!("{} does not exist", self.path.display())))?;
        let Some(next) = ring.next.take() else {
            return Err(KeyError(format!(
                "{} holds no key to rotate to",
                self.path.display()
            )));
        };
        let old = std::mem::replace(&mut ring.current, next.clone());
        ring.retired.push(old);
        self.write(&ring, false).map_err(written_or_why)?;
        Ok(next)
    }

    /// Writes the file with mode 0600 (temp file + rename, so a crash leaves the old
    /// or the new file whole). `create_new`: fail with `Err(None)` if it exists.
    fn write(&self, ring: &KeyRing, create_new: bool) -> Result<(), Option<KeyError>> {
        let shown = self.path.display();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| Some(KeyError(format!("creating {}: {e}", dir.display()))))?;
        let body = serde_json::to_string(&Stored {
            version: ring.current.version,
            key_hex: hex::encode(ring.current.bytes()),
            next: ring.next.as_ref().map(stored),
            retired: ring.retired.iter().map(stored).collect(),
        })
        .expect("serialisable");
        let tmp = dir.join(format!(".lake-key.{}.tmp", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts.open(&tmp).and_then(|mut f| {
            f.write_all(body.as_bytes())?;
            f.sync_all()
        });
        written.map_err(|e| Some(KeyError(format!("writing {}: {e}", tmp.display()))))?;
        let placed = if create_new {
            // A hard link fails when the target exists: no other creator is overwritten.
            std::fs::hard_link(&tmp, &self.path).map(|()| {
                let _ = std::fs::remove_file(&tmp);
            })
        } else {
            std::fs::rename(&tmp, &self.path)
        };
        match placed {
            Ok(()) => Ok(()),
            Err(e) if create_new && e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                Err(None)
            }
            Err(e) => Err(Some(KeyError(format!("writing {shown}: {e}")))),
        }
    }
}

/// Without `create_new`, `write` fails only with a reason.
fn written_or_why(e: Option<KeyError>) -> KeyError {
    e.unwrap_or_else(|| KeyError("the key file changed while it was rewritten".into()))
}

fn has_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.path().is_file() || has_files(&e.path()))
}

#[async_trait]
impl KeyProvider for KeyFile {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        self.load_or_create()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_once_with_mode_0600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let kf = KeyFile::new(dir.path().join("keys/lake.json"));
        let a = kf.load_or_create().unwrap();
        let b = kf.load_or_create().unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_eq!(a.version, 1);
        #[cfg(unix)]
        assert_eq!(mode(kf.path()), 0o600);
    }

    #[test]
    fn no_new_lake_key_for_a_lake_with_data() {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let path = dir.path().join("keys/lake-key.json");
        // An empty lake gets a key.
        std::fs::create_dir_all(lake.join("curated")).unwrap();
        assert!(KeyFile::for_lake(&path, &lake).load_or_create().is_ok());
        std::fs::remove_file(&path).unwrap();
        // Rows in the lake: refused, and nothing is written.
        let part = lake.join("curated/t/year=2026/month=01");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("d-0.parquet"), b"x").unwrap();
        let e = KeyFile::for_lake(&path, &lake)
            .load_or_create()
            .unwrap_err()
            .0;
        assert!(e.contains("is missing") && e.contains("Restore"), "{e}");
        assert!(!path.exists());
        // A fingerprint record alone (the rows were removed) is enough to refuse, and
        // the message says which key to restore.
        std::fs::remove_dir_all(lake.join("curated")).unwrap();
        let old = Key::new(4, vec![9; 32]).unwrap();
        std::fs::create_dir_all(lake.join("_keys")).unwrap();
        std::fs::write(
            lake.join(custody::RECORD_KEY),
            serde_json::to_vec(&custody::KeyRecord::new(&old, chrono::Utc::now())).unwrap(),
        )
        .unwrap();
        let e = KeyFile::for_lake(&path, &lake)
            .load_or_create()
            .unwrap_err()
            .0;
        assert!(
            e.contains(&Fingerprint::of(&old).to_string()),
            "names the expected fingerprint: {e}"
        );
        // A project key file is not the lake's: created.
        assert!(
            KeyFile::new(dir.path().join("keys/projects/p.json"))
                .load_or_create()
                .is_ok()
        );
    }

    #[test]
    fn a_rotation_keeps_both_versions_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let kf = KeyFile::new(dir.path().join("lake-key.json"));
        let v1 = kf.load_or_create().unwrap();
        let next = kf.begin_rotation().unwrap();
        assert_eq!(next.version, 2);
        // Asked again (a resumed rotation): the same next key.
        assert_eq!(kf.begin_rotation().unwrap().bytes(), next.bytes());
        let ring = kf.load().unwrap().unwrap();
        assert_eq!(ring.current.bytes(), v1.bytes());
        assert_eq!(ring.next.as_ref().unwrap().bytes(), next.bytes());
        assert_eq!(kf.load_or_create().unwrap().version, 1);
        let now = kf.finish_rotation().unwrap();
        assert_eq!(now.version, 2);
        let ring = kf.load().unwrap().unwrap();
        assert_eq!(ring.current.bytes(), next.bytes());
        assert!(ring.next.is_none());
        assert_eq!(ring.retired.len(), 1);
        assert_eq!(ring.retired[0].bytes(), v1.bytes());
        #[cfg(unix)]
        assert_eq!(mode(kf.path()), 0o600);
        // The secret's parser reads the same file (extra fields ignored).
        let text = std::fs::read_to_string(kf.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 2);
    }
}
