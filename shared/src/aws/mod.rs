//! The AWS adapters: S3 stores, the DynamoDB ledger, SQS queues, the key in Secrets
//! Manager, the marts' SQL on Athena, and the SQS batch response of the functions. This module (with
//! `functions/`) is the only code that names an AWS SDK. Clients are built once per process (a Lambda cold start) and shared.
//!
//! Names come from environment variables, and the endpoint from the SDK's own
//! `AWS_ENDPOINT_URL`, so one binary talks to AWS or to an emulator:
//!
//! | variable | what |
//! |---|---|
//! | `NAERDATA_LANDING_BUCKET`, `NAERDATA_LAKE_BUCKET`, `NAERDATA_RECEIPTS_BUCKET`, `NAERDATA_QUARANTINE_BUCKET` | the buckets |
//! | `NAERDATA_LEDGER_TABLE` | the DynamoDB ledger |
//! | `NAERDATA_KEY_SECRET_ID` | the lake key's secret (process only; checked against `_keys/lake-key.json` in the lake bucket) |
//! | `NAERDATA_KMS_KEY_ID` | the lake's KMS key: SSE-KMS for lake writes (optional: the bucket default) |
//! | `NAERDATA_LANDING_KMS_KEY_ID` | the raw data's KMS key: writes to the landing, receipts and quarantine buckets (default: `NAERDATA_KMS_KEY_ID`) |
//! | `NAERDATA_SECRETS_KMS_KEY_ID` | the secrets' KMS key: new project key secrets (default: `NAERDATA_KMS_KEY_ID`) |
//! | `NAERDATA_PROCESS_QUEUE_URL` | where receive sends work (receive, replay) |
//! | `NAERDATA_PROCESS_DLQ_URL`, `NAERDATA_RECEIVE_QUEUE_URL`, `NAERDATA_RECEIVE_DLQ_URL` | for redrive |
//! | `NAERDATA_PROJECT_SECRET_PREFIX` | research projects' key secrets are `<prefix><project>` (publish) |
//! | `NAERDATA_EXTRACT_QUEUE_URL`, `NAERDATA_EXTRACT_DLQ_URL` | extract requests (`--aws extract`, redrive) |
//! | `NAERDATA_ATHENA_WORKGROUP`, `NAERDATA_GLUE_DATABASE` | where the marts' SQL runs (publish; both unset: in the function, on DataFusion) |
//! | `NAERDATA_SPOOL` | scratch directory (default: the temp dir, `/tmp` on Lambda) |
//! | `NAERDATA_MULTIPART_THRESHOLD_MIB` | upload files from this size in parts (default 64) |

#[cfg(feature = "athena")]
pub mod athena;
pub mod batch;
pub mod engine;
pub mod lake;
pub mod ledger;
pub mod queue;
pub mod s3;
pub mod secrets;

use std::path::PathBuf;
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::contract::Registry;
use crate::custody::{CheckedKey, NoLakeKey};
use crate::platform::Platform;
use crate::ports::{KeyProvider, Stores, SystemClock};

pub use lake::LakeStore;
pub use ledger::DynamoLedger;
pub use queue::{ProcessMessage, SqsQueue};
pub use s3::{Multipart, S3Store};
pub use secrets::{ProjectSecretKey, SecretKeyProvider};

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// The SDK clients, built once.
#[derive(Clone)]
pub struct Clients {
    /// What the clients were built from (the lake's SQL store is built from it too).
    pub sdk: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    #[cfg(feature = "athena")]
    pub athena: aws_sdk_athena::Client,
}

impl Clients {
    /// From the environment: region, credentials and `AWS_ENDPOINT_URL` as the SDK reads them.
    pub async fn from_env() -> Self {
        Self::new(&aws_config::defaults(BehaviorVersion::latest()).load().await)
    }

    pub fn new(sdk: &SdkConfig) -> Self {
        // An emulator on one host:port cannot serve virtual-hosted bucket names.
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Clients {
            sdk: sdk.clone(),
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            #[cfg(feature = "athena")]
            athena: aws_sdk_athena::Client::new(sdk),
        }
    }
}

/// The names of a deployment's resources.
#[derive(Debug, Clone)]
pub struct Resources {
    pub landing_bucket: String,
    pub lake_bucket: String,
    pub receipts_bucket: String,
    pub quarantine_bucket: String,
    pub ledger_table: String,
    pub key_secret_id: Option<String>,
    pub kms_key_id: Option<String>,
    /// The landing, receipts and quarantine buckets' key (raw data); `None`: `kms_key_id`.
    pub landing_kms_key_id: Option<String>,
    /// The key of new project key secrets; `None`: `kms_key_id`.
    pub secrets_kms_key_id: Option<String>,
    pub process_queue_url: Option<String>,
    pub process_dlq_url: Option<String>,
    pub receive_queue_url: Option<String>,
    pub receive_dlq_url: Option<String>,
    pub project_secret_prefix: Option<String>,
    pub extract_queue_url: Option<String>,
    pub extract_dlq_url: Option<String>,
    /// The publication's Athena workgroup and the Glue database the marts' SQL reads
    /// (publish): both set, the marts run on Athena; else in the function.
    pub athena_workgroup: Option<String>,
    pub glue_database: Option<String>,
    pub spool: PathBuf,
    pub multipart: Multipart,
}

impl Resources {
    /// Reads the `NAERDATA_*` variables; names every missing one at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut missing = Vec::new();
        let mut need = |name: &str| {
            get(name).unwrap_or_else(|| {
                missing.push(name.to_string());
                String::new()
            })
        };
        let landing_bucket = need("NAERDATA_LANDING_BUCKET");
        let lake_bucket = need("NAERDATA_LAKE_BUCKET");
        let receipts_bucket = need("NAERDATA_RECEIPTS_BUCKET");
        let quarantine_bucket = need("NAERDATA_QUARANTINE_BUCKET");
        let ledger_table = need("NAERDATA_LEDGER_TABLE");
        if !missing.is_empty() {
            return Err(ConfigError(format!(
                "set the environment variable(s) {}",
                missing.join(", ")
            )));
        }
        let mut multipart = Multipart::default();
        if let Some(v) = get("NAERDATA_MULTIPART_THRESHOLD_MIB") {
            let mib: u64 = v.parse().map_err(|_| {
                ConfigError(format!(
                    "NAERDATA_MULTIPART_THRESHOLD_MIB={v:?} is not a number"
                ))
            })?;
            multipart.threshold = mib << 20;
            multipart.part_size = ((mib << 20) as usize).max(s3::MIN_PART_SIZE);
        }
        Ok(Resources {
            landing_bucket,
            lake_bucket,
            receipts_bucket,
            quarantine_bucket,
            ledger_table,
            key_secret_id: get("NAERDATA_KEY_SECRET_ID"),
            kms_key_id: get("NAERDATA_KMS_KEY_ID"),
            landing_kms_key_id: get("NAERDATA_LANDING_KMS_KEY_ID"),
            secrets_kms_key_id: get("NAERDATA_SECRETS_KMS_KEY_ID"),
            process_queue_url: get("NAERDATA_PROCESS_QUEUE_URL"),
            process_dlq_url: get("NAERDATA_PROCESS_DLQ_URL"),
            receive_queue_url: get("NAERDATA_RECEIVE_QUEUE_URL"),
            receive_dlq_url: get("NAERDATA_RECEIVE_DLQ_URL"),
            project_secret_prefix: get("NAERDATA_PROJECT_SECRET_PREFIX"),
            extract_queue_url: get("NAERDATA_EXTRACT_QUEUE_URL"),
            extract_dlq_url: get("NAERDATA_EXTRACT_DLQ_URL"),
            athena_workgroup: get("NAERDATA_ATHENA_WORKGROUP"),
            glue_database: get("NAERDATA_GLUE_DATABASE"),
            spool: get("NAERDATA_SPOOL")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            multipart,
        })
    }

    /// A queue named by one of the optional variables, or an error naming it.
    pub fn queue(
        &self,
        clients: &Clients,
        url: &Option<String>,
        variable: &str,
    ) -> Result<SqsQueue, ConfigError> {
        url.as_ref()
            .map(|u| SqsQueue::new(clients.sqs.clone(), u))
            .ok_or_else(|| ConfigError(format!("set the environment variable {variable}")))
    }
}

/// The platform on AWS. The lake bucket is reached only through `object_store` (the
/// client delta-rs and DataFusion use); the raw-data buckets through the SDK, which
/// reads the exact S3 version a notification named.
pub fn platform(
    clients: &Clients,
    r: &Resources,
    contracts: Registry,
) -> Result<Platform, ConfigError> {
    let bucket = |name: &str, kms: &Option<String>| {
        S3Store::new(clients.s3.clone(), name, kms.clone()).with_multipart(r.multipart)
    };
    // Raw data (and what is derived per delivery for suppliers) under the landing key.
    let raw_kms = r
        .landing_kms_key_id
        .clone()
        .or_else(|| r.kms_key_id.clone());
    let lake = LakeStore::new(
        engine::bucket_store(&clients.sdk, &r.lake_bucket, r.kms_key_id.as_deref())?,
        &r.lake_bucket,
    )
    .with_multipart(r.multipart);
    let lake: Arc<dyn crate::ports::ObjectStore> = Arc::new(lake);
    // Only the process function is given the secret; the key it reads is checked
    // against the fingerprint recorded in the lake bucket before it is used.
    let keys: Arc<dyn KeyProvider> = match &r.key_secret_id {
        Some(id) => Arc::new(CheckedKey::new(
            Arc::new(SecretKeyProvider::new(clients.secrets.clone(), id)),
            lake.clone(),
        )),
        None => Arc::new(NoLakeKey(
            "this function (NAERDATA_KEY_SECRET_ID is not set)",
        )),
    };
    Ok(Platform {
        stores: Stores {
            landing: Arc::new(bucket(&r.landing_bucket, &raw_kms)),
            lake,
            receipts: Arc::new(bucket(&r.receipts_bucket, &raw_kms)),
            quarantine: Arc::new(bucket(&r.quarantine_bucket, &raw_kms)),
        },
        ledger: Arc::new(DynamoLedger::new(clients.dynamodb.clone(), &r.ledger_table)),
        keys,
        clock: Arc::new(SystemClock),
        contracts: Arc::new(contracts),
        spool_root: r.spool.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_are_named_together() {
        let e = Resources::from_lookup(|n| (n == "NAERDATA_LAKE_BUCKET").then(|| "lake".into()))
            .unwrap_err();
        assert!(e.0.contains("NAERDATA_LANDING_BUCKET"), "{e}");
        assert!(e.0.contains("NAERDATA_LEDGER_TABLE"), "{e}");
        assert!(!e.0.contains("NAERDATA_LAKE_BUCKET,"), "{e}");
    }

    #[test]
    fn multipart_threshold_is_configurable_with_the_s3_minimum_part() {
        let r = Resources::from_lookup(|n| match n {
            "NAERDATA_MULTIPART_THRESHOLD_MIB" => Some("1".into()),
            _ => Some("x".into()),
        })
        .unwrap();
        assert_eq!(r.multipart.threshold, 1 << 20);
        assert_eq!(r.multipart.part_size, s3::MIN_PART_SIZE);
    }
}
