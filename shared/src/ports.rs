//! The traits the steps use. Adapters live in `local/` (filesystem, SQLite) and, for
//! AWS, in `aws/`; nothing outside those modules names a storage technology.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use crate::ledger::{Delivery, DeliveryState, NewDelivery, Outcome, Registration};
use crate::pseudonym::Key;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} does not exist")]
    NotFound { key: String },
    #[error("object store {op} {key}: {message}")]
    Backend {
        op: &'static str,
        key: String,
        message: String,
    },
}

impl StoreError {
    pub fn backend(op: &'static str, key: &str, e: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            op,
            key: key.to_string(),
            message: e.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// The store's version of the object (S3 VersionId; locally a content digest).
    pub version: Option<String>,
}

/// One bucket (or one directory) of objects.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A streaming reader. It may block: read it on a blocking thread.
    async fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError>;
    /// One version of an object (S3 VersionId), so a step reads exactly the upload it
    /// was told about even if the key was overwritten since. Stores without versions
    /// read the current object.
    async fn open_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let _ = version;
        self.open(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// A small object whole (metrics, reports), or `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let reader = match self.open(key).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let k = key.to_string();
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            let mut reader = reader;
            reader
                .read_to_end(&mut buf)
                .map(|_| Some(Bytes::from(buf)))
                .map_err(|e| StoreError::backend("read", &k, e))
        })
        .await
        .map_err(|e| StoreError::backend("read", key, e))?
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError>;
    /// Uploads a local file (multipart where the backend has it).
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError>;
    /// Like `put_file`, for a file the caller no longer needs (a spool file): the
    /// store may move it instead of copying.
    async fn put_owned_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.put_file(key, path).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every stored version of the object, not only the current one (a purge:
    /// in a versioned bucket a plain delete leaves the data in a noncurrent version).
    async fn delete_all_versions(&self, key: &str) -> Result<(), StoreError> {
        self.delete(key).await
    }
    /// Where a key lives, for people and for SQL engines (a path or an s3:// URL).
    fn locate(&self, key: &str) -> String;
    /// The same objects as an `object_store` store, rooted at the bucket, for the URLs
    /// `locate` gives: DataFusion reads through it and delta-rs commits through it.
    /// `None` when those open the paths themselves (local files).
    fn engine_store(&self) -> Option<Arc<dyn object_store::ObjectStore>> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("delivery {id} is not in the ledger")]
    Unknown { id: String },
    #[error("ledger backend: {0}")]
    Backend(String),
}

/// The delivery ledger: every state change is a conditional write.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Records a delivery once per object (key + version). Identical content already
    /// delivered to the same dataset makes it a `duplicate` — unless the delivery
    /// holding that content was rejected: then the new one is processed as a new
    /// delivery (today's contract and reference data decide). A failed holder keeps
    /// the content (it may have committed rows before it failed); receive replays it.
    async fn register(&self, d: &NewDelivery) -> Result<Registration, LedgerError>;
    async fn get(&self, id: &str) -> Result<Option<Delivery>, LedgerError>;
    /// Moves `id` from one of `from` to `to`, only if it is still in that state.
    /// Returns false when another worker got there first.
    async fn transition(
        &self,
        id: &str,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
        outcome: Option<&Outcome>,
    ) -> Result<bool, LedgerError>;
    /// Takes over a `processing` claim that is stale (its lease ran out, or its
    /// process no longer runs): only if the delivery is still `processing` with the
    /// `updated_at` the caller read, so of two workers that found the same stale
    /// claim exactly one gets it. Counts an attempt.
    async fn take_over(
        &self,
        id: &str,
        read_updated_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError>;
    /// Whether the `processing` claim on `id` is held by a process that is known to
    /// have ended (it can be taken over at once, without waiting for the lease).
    /// Ledgers that cannot tell (a Lambda's claim) say false.
    async fn claim_abandoned(&self, id: &str) -> Result<bool, LedgerError> {
        let _ = id;
        Ok(false)
    }
    /// Moves an accepted delivery to `retracted` with the reason, and gives up its
    /// claim on its content, so the same bytes sent again are a new delivery rather
    /// than a duplicate. Returns false when the delivery is not accepted (any more).
    async fn retract(&self, id: &str, reason: &str, at: DateTime<Utc>)
    -> Result<bool, LedgerError>;
    /// Deliveries of a dataset (all datasets when `None`), newest first.
    async fn list(&self, dataset: Option<&str>, limit: usize)
    -> Result<Vec<Delivery>, LedgerError>;
    /// Deliveries of a dataset received on one (UTC) day, newest first.
    async fn received_on(
        &self,
        dataset: &str,
        day: NaiveDate,
    ) -> Result<Vec<Delivery>, LedgerError>;
}

#[derive(Debug, thiserror::Error)]
#[error("pseudonymisation key: {0}")]
pub struct KeyError(pub String);

/// Where the lake key comes from (a key file locally, Secrets Manager in AWS).
#[async_trait]
pub trait KeyProvider: Send + Sync {
    async fn lake_key(&self) -> Result<Key, KeyError>;
}

#[derive(Debug, thiserror::Error)]
#[error("queue {op} on {queue}: {message}")]
pub struct QueueError {
    pub op: &'static str,
    /// The queue's name or URL.
    pub queue: String,
    pub message: String,
}

/// The body of a process-queue message: receive (and replay) send it, process reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessMessage {
    pub delivery_id: String,
}

/// A queue between steps (SQS in AWS, in-process locally). Delivery is at least
/// once, so whoever consumes a message must be idempotent.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message; attributes (string values) let an operator filter without
    /// parsing bodies.
    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError>;
    /// Messages waiting (approximate where the backend only estimates it).
    async fn depth(&self) -> Result<u64, QueueError>;
    /// Hands a delivery to the process step, with its id and dataset as attributes.
    async fn send_process(&self, m: &ProcessMessage, dataset: &str) -> Result<(), QueueError> {
        let body = serde_json::to_string(m).expect("serialisable");
        let attributes = [
            ("delivery_id", m.delivery_id.as_str()),
            ("dataset", dataset),
        ];
        self.send(&body, &attributes).await
    }
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same time (tests, reproducible runs).
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// The buckets of the platform.
#[derive(Clone)]
pub struct Stores {
    /// Raw deliveries, immutable.
    pub landing: Arc<dyn ObjectStore>,
    /// Curated Parquet, the catalog.
    pub lake: Arc<dyn ObjectStore>,
    /// Receipts, readable by the suppliers.
    pub receipts: Arc<dyn ObjectStore>,
    /// Row numbers and errors of rejected rows (no identifying values).
    pub quarantine: Arc<dyn ObjectStore>,
}

/// The behaviour every [`ObjectStore`] adapter must share, run against the filesystem
/// store in its unit tests and against S3 (moto) in the AWS tests, like the ledger's.
pub mod conformance {
    use std::io::Read;

    use bytes::Bytes;

    use super::{ObjectStore, StoreError};

    async fn read(s: &dyn ObjectStore, key: &str) -> Vec<u8> {
        drain(s.open(key).await.expect("open")).await
    }

    /// The current version, asked for as "no particular version".
    async fn read_version(s: &dyn ObjectStore, key: &str) -> Vec<u8> {
        drain(s.open_version(key, None).await.expect("open_version")).await
    }

    async fn drain(mut r: Box<dyn Read + Send>) -> Vec<u8> {
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).expect("read");
            buf
        })
        .await
        .expect("reader thread")
    }

    /// Panics on the first behaviour that differs. Expects an empty store.
    pub async fn check(s: &dyn ObjectStore) {
        // What is not there.
        assert!(s.head("c/none.txt").await.unwrap().is_none());
        assert!(s.get("c/none.txt").await.unwrap().is_none());
        assert!(matches!(
            s.open("c/none.txt").await.err(),
            Some(StoreError::NotFound { .. })
        ));
        assert!(s.list("c/").await.unwrap().is_empty());
        // Deleting what is not there is not an error (a retried cleanup).
        s.delete("c/none.txt").await.unwrap();

        // Put, read back whole and streamed, overwrite.
        s.put("c/a/one.txt", Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert_eq!(s.get("c/a/one.txt").await.unwrap().unwrap(), &b"first"[..]);
        s.put("c/a/one.txt", Bytes::from_static(b"second!"))
            .await
            .unwrap();
        assert_eq!(read(s, "c/a/one.txt").await, b"second!");
        let meta = s.head("c/a/one.txt").await.unwrap().expect("head");
        assert_eq!((meta.key.as_str(), meta.size), ("c/a/one.txt", 7));
        assert_eq!(read_version(s, "c/a/one.txt").await, b"second!");

        // Files: a copy stays with the caller, an owned file may be moved.
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.bin");
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&kept, &body).unwrap();
        s.put_file("c/b/kept.bin", &kept).await.unwrap();
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            body,
            "put_file keeps the file"
        );
        let owned = dir.path().join("owned.bin");
        std::fs::write(&owned, b"owned").unwrap();
        s.put_owned_file("c/b/owned.bin", &owned).await.unwrap();
        assert_eq!(read(s, "c/b/kept.bin").await, body);
        assert_eq!(read(s, "c/b/owned.bin").await, b"owned");

        // Listing: by key prefix (not only whole folders), sorted, full keys, sizes.
        s.put("c/ab.txt", Bytes::from_static(b"x")).await.unwrap();
        s.put("d/other.txt", Bytes::from_static(b"y"))
            .await
            .unwrap();
        let keys = |v: Vec<super::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.list("c/").await.unwrap()),
            ["c/a/one.txt", "c/ab.txt", "c/b/kept.bin", "c/b/owned.bin"]
        );
        assert_eq!(
            keys(s.list("c/a").await.unwrap()),
            ["c/a/one.txt", "c/ab.txt"]
        );
        let sizes: Vec<u64> = s
            .list("c/b/")
            .await
            .unwrap()
            .iter()
            .map(|m| m.size)
            .collect();
        assert_eq!(sizes, [body.len() as u64, 5]);

        // Delete, and delete every version (a purge): gone for every reader.
        s.delete("c/ab.txt").await.unwrap();
        assert!(s.head("c/ab.txt").await.unwrap().is_none());
        s.delete_all_versions("c/a/one.txt").await.unwrap();
        assert!(s.get("c/a/one.txt").await.unwrap().is_none());
        assert_eq!(
            keys(s.list("c/").await.unwrap()),
            ["c/b/kept.bin", "c/b/owned.bin"]
        );
        assert!(!s.locate("c/b/kept.bin").is_empty());
    }
}
