//! The lake bucket as an `object_store` store, so DataFusion reads the curated Parquet
//! straight from S3 (ranged GETs of footers and row groups, not whole objects) and
//! delta-rs commits to the tables' logs (conditional puts).
//!
//! It is built from the same SDK configuration as the other clients: region, endpoint
//! (path-style and plain HTTP when `AWS_ENDPOINT_URL` points at an emulator) and the
//! SDK's credential chain, so a Lambda role's rotating session credentials are used
//! rather than a second, separately configured chain.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::config::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::{AmazonS3Builder, AwsCredential};

use super::ConfigError;

/// Credentials this close to expiry are fetched again.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The SDK's credential provider, seen through object_store's trait.
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
        {
            return Ok(credential.clone());
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), c.expiry()));
        Ok(credential)
    }
}

/// An `object_store` store for `bucket`, configured like the SDK clients.
pub fn bucket_store(
    sdk: &SdkConfig,
    bucket: &str,
    kms_key_id: Option<&str>,
) -> Result<Arc<dyn object_store::ObjectStore>, ConfigError> {
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    // What delta-rs writes (logs, compacted files) is encrypted like the rest of the lake.
    if let Some(kms) = kms_key_id {
        b = b.with_sse_kms_encryption(kms);
    }
    if let Some(region) = sdk.region() {
        b = b.with_region(region.as_ref());
    }
    if let Some(endpoint) = sdk.endpoint_url() {
        // An emulator on one host:port: path-style requests, maybe plain HTTP.
        b = b
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(provider) = sdk.credentials_provider() {
        b = b.with_credentials(Arc::new(SdkCredentials {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }));
    }
    let store = b
        .build()
        .map_err(|e| ConfigError(format!("the lake bucket {bucket} for SQL: {e}")))?;
    Ok(Arc::new(store))
}
