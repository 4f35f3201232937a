//! Backups of what the embedded platform cannot rebuild: the ledger (which delivery
//! is in which state, what is a duplicate of what) and the keys (without the lake
//! key, no pseudonym can be made again). Landing is immutable and the lake can be
//! rebuilt from it; both belong to the file system's own backup.
//!
//! `naerdata backup --out DIR` writes a consistent copy of the ledger (SQLite's
//! `VACUUM INTO`, safe while the platform runs) and of `keys/`, with a manifest of
//! their SHA-256; `naerdata restore --from DIR` checks the digests before it puts
//! anything back, and refuses to overwrite a ledger unless told to.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::platform::LocalLayout;

pub const MANIFEST: &str = "naerdata-backup.json";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("backing up the ledger: {0}")]
    Ledger(String),
    #[error("{0}")]
    Refused(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Relative to the backup folder (and to the platform home).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub created_at: DateTime<Utc>,
    pub files: Vec<BackupFile>,
}

fn digest(path: &Path) -> Result<(String, u64), BackupError> {
    let f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    crate::receive::hash(f).map_err(io(format!("reading {}", path.display())))
}

#[cfg(unix)]
fn private(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("restricting {}", path.display())))
}

#[cfg(not(unix))]
fn private(_: &Path) -> Result<(), BackupError> {
    Ok(())
}

/// The key files under `keys/` (lake key, project keys, rotation state).
fn key_files(home: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let dir = home.join("keys");
    let mut out = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("listing {}", d.display()))(e)),
        };
        for e in entries {
            let e = e.map_err(io(format!("listing {}", d.display())))?;
            let t = e
                .file_type()
                .map_err(io(format!("reading {}", e.path().display())))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the backup of the platform at `home` into `out` (created; must be empty).
pub fn backup(home: &Path, out: &Path, now: DateTime<Utc>) -> Result<Manifest, BackupError> {
    std::fs::create_dir_all(out).map_err(io(format!("creating {}", out.display())))?;
    if std::fs::read_dir(out)
        .map_err(io(format!("listing {}", out.display())))?
        .next()
        .is_some()
    {
        return Err(BackupError::Refused(format!(
            "{} is not empty: a backup goes into a folder of its own",
            out.display()
        )));
    }
    let layout = LocalLayout {
        home: home.to_path_buf(),
    };
    let mut files = Vec::new();
    // A consistent copy even while a writer is active (WAL): VACUUM INTO reads one
    // snapshot.
    let ledger = layout.ledger();
    if ledger.exists() {
        let target = out.join("ledger.sqlite");
        let conn =
            rusqlite::Connection::open(&ledger).map_err(|e| BackupError::Ledger(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| BackupError::Ledger(e.to_string()))?;
        conn.execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])
            .map_err(|e| BackupError::Ledger(e.to_string()))?;
        let (sha256, bytes) = digest(&target)?;
        files.push(BackupFile {
            path: "ledger.sqlite".into(),
            sha256,
            bytes,
        });
    }
    for key in key_files(home)? {
        let rel = key
            .strip_prefix(home)
            .expect("listed under home")
            .to_string_lossy()
            .into_owned();
        let target = out.join(&rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        std::fs::copy(&key, &target).map_err(io(format!("copying {}", key.display())))?;
        private(&target)?;
        let (sha256, bytes) = digest(&target)?;
        files.push(BackupFile {
            path: rel,
            sha256,
            bytes,
        });
    }
    let manifest = Manifest {
        created_at: now,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    std::fs::write(out.join(MANIFEST), json).map_err(io("writing the manifest"))?;
    Ok(manifest)
}

/// Puts the backup in `from` back into the platform home `home`. Every file is
/// checked against the manifest first; an existing ledger is replaced only with
/// `force` (the current one is kept beside it as `ledger.sqlite.before-restore`).
pub fn restore(home: &Path, from: &Path, force: bool) -> Result<Manifest, BackupError> {
    let text = std::fs::read(from.join(MANIFEST))
        .map_err(io(format!("reading {}", from.join(MANIFEST).display())))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BackupError::Refused(format!("the manifest is not readable: {e}")))?;
    for f in &manifest.files {
        if f.path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(BackupError::Refused(format!(
                "{}: not a path inside the home",
                f.path
            )));
        }
        let (sha256, _) = digest(&from.join(&f.path))?;
        if sha256 != f.sha256 {
            return Err(BackupError::Refused(format!(
                "{} does not match the manifest: the backup is damaged, nothing was restored",
                f.path
            )));
        }
    }
    let ledger = LocalLayout {
        home: home.to_path_buf(),
    }
    .ledger();
    if ledger.exists() && !force {
        return Err(BackupError::Refused(format!(
            "{} exists; restore with --force to replace it (it is kept as ledger.sqlite.before-restore)",
            ledger.display()
        )));
    }
    std::fs::create_dir_all(home).map_err(io(format!("creating {}", home.display())))?;
    if ledger.exists() {
        std::fs::rename(&ledger, home.join("ledger.sqlite.before-restore"))
            .map_err(io("keeping the current ledger"))?;
        // Its WAL belongs to it, not to the restored file.
        for ext in ["-wal", "-shm"] {
            let side = home.join(format!("ledger.sqlite{ext}"));
            if side.exists() {
                std::fs::remove_file(&side).map_err(io(format!("removing {}", side.display())))?;
            }
        }
    }
    for f in &manifest.files {
        let target = home.join(&f.path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        std::fs::copy(from.join(&f.path), &target).map_err(io(format!("restoring {}", f.path)))?;
        if f.path.starts_with("keys/") {
            private(&target)?;
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backup_restores_the_ledger_and_the_keys() {
        use crate::ledger::DeliveryState;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let p = crate::Platform::local(&home, crate::contract::Registry::builtin()).unwrap();
        let key = p.keys.lake_key().await.unwrap();
        let body = "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n\
                    a;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n";
        p.stores
            .landing
            .put("almenpraksis/diagnose/2026-03-02/a.csv", body.into())
            .await
            .unwrap();
        let crate::receive::Received::ToProcess(id) =
            crate::receive::receive(&p, "almenpraksis/diagnose/2026-03-02/a.csv", None)
                .await
                .unwrap()
        else {
            panic!("not new")
        };
        let now: DateTime<Utc> = "2026-03-02T12:00:00Z".parse().unwrap();
        let out = dir.path().join("backup");
        let m = backup(&home, &out, now).unwrap();
        assert!(m.files.iter().any(|f| f.path == "ledger.sqlite"));
        assert!(m.files.iter().any(|f| f.path == "keys/lake-key.json"));
        assert!(
            backup(&home, &out, now).is_err(),
            "never into a used folder"
        );
        drop(p);

        // Lost: the ledger and the key.
        std::fs::remove_file(home.join("ledger.sqlite")).unwrap();
        std::fs::remove_dir_all(home.join("keys")).unwrap();
        restore(&home, &out, false).unwrap();
        let p = crate::Platform::local(&home, crate::contract::Registry::builtin()).unwrap();
        assert_eq!(
            p.ledger.get(&id).await.unwrap().unwrap().state,
            DeliveryState::Received
        );
        assert_eq!(p.keys.lake_key().await.unwrap().bytes(), key.bytes());
        assert!(
            restore(&home, &out, false).is_err(),
            "an existing ledger is replaced only with force"
        );

        // A damaged backup restores nothing.
        std::fs::write(out.join("keys/lake-key.json"), "{}").unwrap();
        let e = restore(&home, &out, true).unwrap_err().to_string();
        assert!(e.contains("does not match the manifest"), "{e}");
    }
}
