//! S3 through the AWS SDK as an [`ObjectStore`], for the raw-data buckets (landing,
//! receipts, quarantine): reads of an exact S3 version (the one a notification named),
//! server-side copies, purges of every version, streaming reads, multipart writes for
//! large files, and SSE-KMS on every write. The lake is [`super::LakeStore`].

use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::ports::{ObjectMeta, ObjectStore, StoreError};

/// When a file is uploaded in parts. S3 needs parts of at least 5 MiB (but the last).
#[derive(Debug, Clone, Copy)]
pub struct Multipart {
    /// Files of at least this size go up in parts.
    pub threshold: u64,
    pub part_size: usize,
}

impl Default for Multipart {
    fn default() -> Self {
        // 64 MiB parts: few requests for the ~100 MB Parquet files of a big delivery,
        // while one part in memory stays small next to the function's memory.
        Multipart {
            threshold: 64 << 20,
            part_size: 64 << 20,
        }
    }
}

pub const MIN_PART_SIZE: usize = 5 << 20;

pub struct S3Store {
    client: Client,
    bucket: String,
    /// KMS key id or ARN for SSE-KMS; `None` uses the bucket's default (still KMS in
    /// the template), which is how the emulator runs.
    kms_key: Option<String>,
    multipart: Multipart,
}

fn err<E, R>(op: &'static str, key: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    StoreError::backend(op, key, DisplayErrorContext(e))
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>, kms_key: Option<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
            kms_key,
            multipart: Multipart::default(),
        }
    }

    pub fn with_multipart(mut self, m: Multipart) -> Self {
        assert!(
            m.part_size >= MIN_PART_SIZE,
            "S3 parts must be at least 5 MiB"
        );
        self.multipart = m;
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn sse(&self) -> (ServerSideEncryption, Option<String>) {
        (ServerSideEncryption::AwsKms, self.kms_key.clone())
    }

    async fn put_stream(&self, key: &str, body: ByteStream) -> Result<(), StoreError> {
        let (sse, kms) = self.sse();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .bucket_key_enabled(true)
            .send()
            .await
            .map_err(|e| err("put", key, e))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let (sse, kms) = self.sse();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .bucket_key_enabled(true)
            .send()
            .await
            .map_err(|e| err("create multipart upload", key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StoreError::backend("create multipart upload", key, "no upload id"))?
            .to_string();
        let completed = match self.upload_parts(key, path, &upload_id).await {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("complete multipart upload", key, e)),
            Err(e) => Err(e),
        };
        match completed {
            Ok(()) => Ok(()),
            Err(e) => {
                // Parts of an abandoned upload cost storage until aborted (the bucket's
                // lifecycle rule also aborts stragglers).
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(key, error = %DisplayErrorContext(abort), "aborting a multipart upload failed");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let io = |e: std::io::Error| StoreError::backend("read for upload", key, e);
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut parts = Vec::new();
        for number in 1.. {
            let mut buf = Vec::with_capacity(self.multipart.part_size);
            (&mut file)
                .take(self.multipart.part_size as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(io)?;
            if buf.is_empty() && number > 1 {
                break;
            }
            let last = buf.len() < self.multipart.part_size;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(|e| err("upload part", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
            if last {
                break;
            }
        }
        Ok(parts)
    }

    /// Copies an object within the bucket (server-side; nothing passes this process).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (sse, kms) = self.sse();
        let source = format!("{}/{}", self.bucket, percent_encode_key(from));
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .bucket_key_enabled(true)
            .send()
            .await
            .map_err(|e| err("copy", from, e))?;
        Ok(())
    }
}

/// CopySource is a URL path: everything but unreserved characters and '/' is encoded.
fn percent_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        self.open_version(key, None).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(err("get", key, e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::backend("get", key, e))?;
        Ok(Some(body.into_bytes()))
    }

    async fn open_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                // A version that is gone is as absent as a key that is.
                Some(s) if s.is_no_such_key() || s.code() == Some("NoSuchVersion") => {
                    StoreError::NotFound {
                        key: key.to_string(),
                    }
                }
                _ => err("get", key, e),
            })?;
        tracing::debug!(key, request_id = ?out.request_id(), "streaming object");
        // The body is an async stream; the readers are synchronous and run on a
        // blocking thread, which the bridge lets wait on the runtime.
        let reader = out.body.into_async_read();
        Ok(Box::new(tokio_util::io::SyncIoBridge::new(reader)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                version: out.version_id().map(str::to_string),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(err("head", key, e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.put_stream(key, ByteStream::from(body)).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| StoreError::backend("read for upload", key, e))?
            .len();
        if size >= self.multipart.threshold {
            return self.put_multipart(key, path).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| StoreError::backend("read for upload", key, e))?;
        self.put_stream(key, body).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err("list", prefix, e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.push(ObjectMeta {
                        key: key.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        version: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| err("delete", key, e))?;
        Ok(())
    }

    async fn delete_all_versions(&self, key: &str) -> Result<(), StoreError> {
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| err("list versions", key, e))?;
            let versions = page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id().map(str::to_string))
                .chain(
                    page.delete_markers()
                        .iter()
                        .filter(|m| m.key() == Some(key))
                        .filter_map(|m| m.version_id().map(str::to_string)),
                );
            for version in versions.collect::<Vec<_>>() {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .version_id(&version)
                    .send()
                    .await
                    .map_err(|e| err("delete version", key, e))?;
            }
            if page.is_truncated() != Some(true) {
                return Ok(());
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_url_encoded_but_keeps_slashes() {
        assert_eq!(
            percent_encode_key("kommune/gateway/2026-03-01/a b+c=æ.json"),
            "kommune/gateway/2026-03-01/a%20b%2Bc%3D%C3%A6.json"
        );
    }
}
