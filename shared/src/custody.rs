//! Key custody: which lake key the lake was pseudonymised with.
//!
//! The lake key never leaves the steps that pseudonymise (process, and receive should
//! it ever need to). What the other steps know of it is a fingerprint, recorded beside
//! the lake at [`RECORD_KEY`]: `SHA-256("naerdata lake-key fingerprint v1\0" || key)`,
//! truncated to 128 bits, with the key's version. A fingerprint of a 256-bit random key
//! reveals nothing usable about it, and lets
//! - the process step refuse a key that is not the one the lake was built with
//!   (a restored backup of the wrong home, a regenerated secret), before it writes a row;
//! - publish refuse a research project key equal to the lake key without reading it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::{KeyError, KeyProvider, ObjectStore};
use crate::pseudonym::Key;

/// Where the record lives in the lake store (locally `lake/_keys/`, in AWS the lake
/// bucket). Hive-style readers skip folders starting with `_`.
pub use crate::layout::LAKE_KEY_RECORD as RECORD_KEY;

const LABEL: &[u8] = b"naerdata lake-key fingerprint v1\0";

/// A key's version and a non-reversible fingerprint of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub version: u32,
    pub fingerprint: String,
}

impl Fingerprint {
    pub fn of(key: &Key) -> Self {
        let mut h = Sha256::new();
        h.update(LABEL);
        h.update(key.bytes());
        Fingerprint {
            version: key.version,
            fingerprint: hex::encode(&h.finalize()[..16]),
        }
    }

    /// The same key bytes, whatever version each side calls it.
    pub fn same_key(&self, other: &Fingerprint) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version {} fingerprint {}",
            self.version, self.fingerprint
        )
    }
}

/// What is recorded beside the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key every curated table is pseudonymised with.
    pub current: Fingerprint,
    /// Keys the lake was pseudonymised with before a rotation, oldest first.
    #[serde(default)]
    pub retired: Vec<Fingerprint>,
    /// Set while `naerdata keys rotate` rebuilds the lake with this key: the process
    /// step refuses to run until the rotation has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotating_to: Option<Fingerprint>,
    pub recorded_at: DateTime<Utc>,
}

impl KeyRecord {
    pub fn new(key: &Key, at: DateTime<Utc>) -> Self {
        KeyRecord {
            current: Fingerprint::of(key),
            retired: Vec::new(),
            rotating_to: None,
            recorded_at: at,
        }
    }

    /// Refuses a lake key other than the recorded one, and any key during a rotation.
    pub fn check_lake_key(&self, key: &Key) -> Result<(), KeyError> {
        if let Some(next) = &self.rotating_to {
            return Err(KeyError(format!(
                "a lake key rotation to {next} is in progress (see {RECORD_KEY}); \
                 deliveries are not processed until it finishes: run `naerdata keys rotate` again to complete it"
            )));
        }
        let found = Fingerprint::of(key);
        if found != self.current {
            return Err(KeyError(format!(
                "the lake key is not the one the lake was pseudonymised with: expected {}, found {found}; \
                 nothing was processed. Restore the key whose fingerprint is expected \
                 (locally keys/lake-key.json from a backup of this home; in AWS the lake-key secret's previous version)",
                self.current
            )));
        }
        Ok(())
    }

    /// Refuses a research project key whose bytes are a lake key (current, retired or
    /// being rotated to): a project's pseudonyms would then be the lake's.
    pub fn check_project_key(&self, project_key: &Key) -> Result<(), String> {
        let found = Fingerprint::of(project_key);
        let mut lake_keys = std::iter::once(&self.current)
            .chain(&self.retired)
            .chain(&self.rotating_to);
        if lake_keys.any(|k| k.same_key(&found)) {
            return Err(format!(
                "the project key is the lake key (its fingerprint {} is recorded in {RECORD_KEY}); \
                 a project needs a key of its own",
                found.fingerprint
            ));
        }
        Ok(())
    }
}

/// The record, or `None` when nothing was recorded yet.
pub async fn read_record(lake: &dyn ObjectStore) -> Result<Option<KeyRecord>, KeyError> {
    let Some(body) = lake
        .get(RECORD_KEY)
        .await
        .map_err(|e| KeyError(format!("reading the lake-key record: {e}")))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&body).map(Some).map_err(|e| {
        KeyError(format!(
            "{} is not a lake-key record: {e}",
            lake.locate(RECORD_KEY)
        ))
    })
}

pub async fn write_record(lake: &dyn ObjectStore, record: &KeyRecord) -> Result<(), KeyError> {
    let body = serde_json::to_vec_pretty(record).expect("serialisable");
    lake.put(RECORD_KEY, Bytes::from(body))
        .await
        .map_err(|e| KeyError(format!("writing the lake-key record: {e}")))
}

/// The lake key, handed out only after it was checked against the record (and
/// recorded, the first time a lake sees a key). Checked on every call, so a rotation
/// started elsewhere stops the next delivery, not the next cold start.
pub struct CheckedKey {
    inner: Arc<dyn KeyProvider>,
    lake: Arc<dyn ObjectStore>,
}

impl CheckedKey {
    pub fn new(inner: Arc<dyn KeyProvider>, lake: Arc<dyn ObjectStore>) -> Self {
        CheckedKey { inner, lake }
    }
}

#[async_trait]
impl KeyProvider for CheckedKey {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        let key = self.inner.lake_key().await?;
        match read_record(self.lake.as_ref()).await? {
            Some(record) => record.check_lake_key(&key)?,
            None => write_record(self.lake.as_ref(), &KeyRecord::new(&key, Utc::now())).await?,
        }
        Ok(key)
    }
}

/// A key held in memory (the rotation's staging platform, tests).
pub struct FixedKey(pub Key);

#[async_trait]
impl KeyProvider for FixedKey {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        Ok(self.0.clone())
    }
}

/// For steps that must not hold the lake key (publish, monitor): asking is an error.
pub struct NoLakeKey(pub &'static str);

#[async_trait]
impl KeyProvider for NoLakeKey {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        Err(KeyError(format!(
            "{} has no access to the lake key",
            self.0
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::FsStore;

    fn key(v: u32, b: u8) -> Key {
        Key::new(v, vec![b; 32]).unwrap()
    }

    #[test]
    fn fingerprints_are_stable_short_and_do_not_show_the_key() {
        let a = Fingerprint::of(&key(1, 0xab));
        assert_eq!(a, Fingerprint::of(&key(1, 0xab)));
        assert_eq!(a.fingerprint.len(), 32);
        assert!(!a.fingerprint.contains("abab"), "{a}");
        assert_ne!(a.fingerprint, Fingerprint::of(&key(1, 0xac)).fingerprint);
        // The version is beside the fingerprint, not in it.
        assert!(a.same_key(&Fingerprint::of(&key(7, 0xab))));
    }

    #[test]
    fn a_mismatch_names_both_fingerprints_and_versions_only() {
        let r = KeyRecord::new(&key(1, 1), Utc::now());
        assert!(r.check_lake_key(&key(1, 1)).is_ok());
        let e = r.check_lake_key(&key(2, 0x2b)).unwrap_err().0;
        let (expected, found) = (Fingerprint::of(&key(1, 1)), Fingerprint::of(&key(2, 0x2b)));
        assert!(e.contains(&format!("expected {expected}")), "{e}");
        assert!(e.contains(&format!("found {found}")), "{e}");
        assert!(!e.contains("2b2b2b2b2b"), "{e}");
        // Same bytes under another version is another key as far as the lake goes.
        assert!(r.check_lake_key(&key(2, 1)).is_err());
    }

    #[test]
    fn a_rotation_in_progress_stops_processing() {
        let mut r = KeyRecord::new(&key(1, 1), Utc::now());
        r.rotating_to = Some(Fingerprint::of(&key(2, 2)));
        let e = r.check_lake_key(&key(1, 1)).unwrap_err().0;
        assert!(e.contains("rotation"), "{e}");
    }

    #[test]
    fn project_keys_equal_to_any_lake_key_are_refused() {
        let mut r = KeyRecord::new(&key(2, 2), Utc::now());
        r.retired.push(Fingerprint::of(&key(1, 1)));
        assert!(r.check_project_key(&key(1, 9)).is_ok());
        assert!(
            r.check_project_key(&key(1, 2))
                .unwrap_err()
                .contains("is the lake key")
        );
        assert!(r.check_project_key(&key(5, 1)).is_err());
    }

    #[tokio::test]
    async fn the_first_key_is_recorded_and_a_different_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lake: Arc<dyn ObjectStore> = Arc::new(FsStore::new(dir.path()).unwrap());
        let first = CheckedKey::new(Arc::new(FixedKey(key(1, 1))), lake.clone());
        assert_eq!(first.lake_key().await.unwrap().bytes(), key(1, 1).bytes());
        let record = read_record(lake.as_ref()).await.unwrap().unwrap();
        assert_eq!(record.current, Fingerprint::of(&key(1, 1)));
        assert!(first.lake_key().await.is_ok());
        let other = CheckedKey::new(Arc::new(FixedKey(key(1, 3))), lake.clone());
        let e = other.lake_key().await.unwrap_err().0;
        assert!(e.contains("expected version 1 fingerprint"), "{e}");
        // The record is unchanged by the refusal.
        assert_eq!(read_record(lake.as_ref()).await.unwrap().unwrap(), record);
    }
}
