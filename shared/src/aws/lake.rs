//! The lake bucket as an [`ObjectStore`] over `object_store`'s S3 client: the client
//! delta-rs commits through and DataFusion reads through, so every step reaches the
//! lake through one client stack, one credential cache and one retry policy.
//!
//! The lake bucket keeps no S3 versions (the template leaves versioning off, and a
//! guard rule keeps it off): the tables' history is the Delta log, the raw deliveries
//! it is derived from are versioned and object-locked in landing, and a purge must
//! leave no copy of a person's rows behind. `object_store` cannot list versions, so a
//! purge in a bucket that does keep them refuses with the fix, instead of leaving the
//! rows in noncurrent versions.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::s3::Multipart;
use crate::ports::{ObjectMeta, ObjectStore, StoreError};

pub struct LakeStore {
    store: Arc<dyn object_store::ObjectStore>,
    bucket: String,
    multipart: Multipart,
}

impl LakeStore {
    /// `store` is rooted at `bucket` (see [`super::engine::bucket_store`]): it carries
    /// the region, endpoint, credentials and SSE-KMS settings.
    pub fn new(store: Arc<dyn object_store::ObjectStore>, bucket: impl Into<String>) -> Self {
        LakeStore {
            store,
            bucket: bucket.into(),
            multipart: Multipart::default(),
        }
    }

    pub fn with_multipart(mut self, m: Multipart) -> Self {
        assert!(
            m.part_size >= super::s3::MIN_PART_SIZE,
            "S3 parts must be at least 5 MiB"
        );
        self.multipart = m;
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_multipart(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let location = location(key)?;
        let read = |e| StoreError::backend("read for upload", key, e);
        let mut file = tokio::fs::File::open(path).await.map_err(read)?;
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| StoreError::backend("create multipart upload", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.multipart.part_size);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(read(e));
                }
            };
            if n == 0 {
                break;
            }
            // One part in flight at a time: memory stays at about two parts, as a
            // function's memory is sized for.
            if let Err(e) = writer.wait_for_capacity(1).await {
                // The upload is aborted so no parts are left behind (the bucket's
                // lifecycle rule catches one whose abort fails too).
                let _ = writer.abort().await;
                return Err(StoreError::backend("upload part", key, e));
            }
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| StoreError::backend("complete multipart upload", key, e))?;
        Ok(())
    }
}

/// The key as `object_store` addresses it, unchanged: `Path::from` would percent-encode
/// some characters and so name a different S3 key than the SQL engines and other
/// tools see. The platform's own keys are plain; anything else is refused by name.
fn location(key: &str) -> Result<StorePath, StoreError> {
    StorePath::parse(key).map_err(|e| StoreError::backend("name", key, e))
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

#[async_trait]
impl ObjectStore for LakeStore {
    async fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let got = self.store.get(&location(key)?).await.map_err(|e| {
            if not_found(&e) {
                StoreError::NotFound {
                    key: key.to_string(),
                }
            } else {
                StoreError::backend("get", key, e)
            }
        })?;
        let stream = got.into_stream().map_err(std::io::Error::other);
        // The readers are synchronous and run on a blocking thread, which the bridge
        // lets wait on the runtime for the next chunk.
        let reader = tokio_util::io::StreamReader::new(stream);
        Ok(Box::new(tokio_util::io::SyncIoBridge::new(reader)))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&location(key)?).await {
            Ok(got) => got
                .bytes()
                .await
                .map(Some)
                .map_err(|e| StoreError::backend("get", key, e)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(StoreError::backend("get", key, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.store.head(&location(key)?).await {
            Ok(m) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: m.size,
                version: m.version,
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(StoreError::backend("head", key, e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&location(key)?, PutPayload::from(body))
            .await
            .map_err(|e| StoreError::backend("put", key, e))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| StoreError::backend("read for upload", key, e))?
            .len();
        if size >= self.multipart.threshold {
            return self.put_multipart(key, path).await;
        }
        // Below the threshold a file is at most one part: read whole, sent in one PUT.
        let body = tokio::fs::read(path)
            .await
            .map_err(|e| StoreError::backend("read for upload", key, e))?;
        self.put(key, Bytes::from(body)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // object_store lists whole path segments; the port lists by key prefix, so
        // the folder that holds the prefix is listed and filtered.
        let folder = match prefix.rfind('/') {
            Some(i) if i > 0 => Some(location(&prefix[..i])?),
            _ => None,
        };
        let mut out: Vec<ObjectMeta> = self
            .store
            .list(folder.as_ref())
            .map_err(|e| StoreError::backend("list", prefix, e))
            .try_filter_map(|m| async move {
                let key = m.location.to_string();
                Ok(key.starts_with(prefix).then_some(ObjectMeta {
                    key,
                    size: m.size,
                    version: None,
                }))
            })
            .boxed()
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.store.delete(&location(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(StoreError::backend("delete", key, e)),
        }
    }

    async fn delete_all_versions(&self, key: &str) -> Result<(), StoreError> {
        let Some(meta) = self.head(key).await? else {
            return Ok(());
        };
        // S3 names a version only in a bucket that keeps them ("null" is the one
        // version of an object written while versioning was off or suspended).
        if meta.version.as_deref().is_some_and(|v| v != "null") {
            return Err(StoreError::Backend {
                op: "purge",
                key: key.to_string(),
                message: format!(
                    "the lake bucket {} kept S3 versions when this object was written \
                     (version {}), so deleting it would leave its rows in a noncurrent \
                     version; delete every version of it with `aws s3api \
                     list-object-versions` and `delete-object --version-id`, keep \
                     versioning off on the lake bucket (README: Purge), and run the \
                     purge again (it picks up where it stopped)",
                    self.bucket,
                    meta.version.as_deref().unwrap_or_default()
                ),
            });
        }
        self.delete(key).await
    }

    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn engine_store(&self) -> Option<Arc<dyn object_store::ObjectStore>> {
        Some(self.store.clone())
    }
}
