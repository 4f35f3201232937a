//! The lake key in a local file, created on first use with mode 0600.
//! It lives in the platform home, outside the lake, and is never logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ports::{KeyError, KeyProvider};
use crate::pseudonym::{Key, MIN_KEY_BYTES};

pub struct KeyFile {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    key_hex: String,
}

impl KeyFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the key, creating a fresh random one (version 1) if the file is absent.
    pub fn load_or_create(&self) -> Result<Key, KeyError> {
        let shown = self.path.display();
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let s: Stored = serde_json::from_str(&text)
                    .map_err(|e| KeyError(format!("{shown} is not a key file: {e}")))?;
                let bytes = hex::decode(s.key_hex.trim())
                    .map_err(|_| KeyError(format!("{shown}: key_hex is not hex")))?;
                Key::new(s.version, bytes).map_err(|e| KeyError(format!("{shown}: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.create(),
            Err(e) => Err(KeyError(format!("reading {shown}: {e}"))),
        }
    }

    fn create(&self) -> Result<Key, KeyError> {
        let shown = self.path.display();
        let mut bytes = vec![0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| KeyError(format!("no randomness for a new key: {e}")))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| KeyError(format!("creating {}: {e}", dir.display())))?;
        }
        let body = serde_json::to_string(&Stored {
            version: 1,
            key_hex: hex::encode(&bytes),
        })
        .expect("serialisable");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&self.path) {
            Ok(mut f) => {
                f.write_all(body.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| KeyError(format!("writing {shown}: {e}")))?;
                Key::new(1, bytes).map_err(|e| KeyError(e.to_string()))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.load_or_create(),
            Err(e) => Err(KeyError(format!("creating {shown}: {e}"))),
        }
    }
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

    #[test]
    fn created_once_with_mode_0600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let kf = KeyFile::new(dir.path().join("keys/lake.json"));
        let a = kf.load_or_create().unwrap();
        let b = kf.load_or_create().unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_eq!(a.version, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(kf.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
