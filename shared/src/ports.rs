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
    /// seen for the same dataset makes it a `duplicate`.
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
