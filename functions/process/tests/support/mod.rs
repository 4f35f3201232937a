//! A local AWS for the tests: a moto server on a free loopback port (started per test
//! and killed when dropped), the platform's resources created in it through the real
//! APIs, and an event-source-mapping stand-in that takes messages off a queue, hands
//! them to a handler as the Lambda SQS event JSON, and deletes what succeeded.

#![allow(dead_code)] // each test binary uses part of this module

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Event,
    NotificationConfiguration, QueueConfiguration, VersioningConfiguration,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use std::sync::Arc;

use naerdata::Platform;
use naerdata::aws::{self, Clients, Multipart, Resources, SqsQueue};
use naerdata::contract::Registry;
use naerdata::ledger::Delivery;
use naerdata::ports::FixedClock;
use naerdata::receipt::Receipt;
use naerdata_receive::Receiver;
use serde_json::json;

pub const REGION: &str = "eu-north-1";
pub const KMS_KEY: &str = "alias/naerdata-test";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv/bin")
        .join(name)
}

impl Moto {
    /// Starts `moto_server` (from `MOTO_SERVER`, else the Makefile's `.venv`).
    pub fn start() -> Moto {
        let bin = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| venv_bin("moto_server"));
        assert!(
            bin.exists(),
            "moto_server not found at {}: run the tests with `make test` (it installs moto \
             into .venv) or set MOTO_SERVER",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }
}

/// One plain HTTP/1.0 request to a local endpoint (moto's own API, a test helper's):
/// the status and the body.
pub fn http(endpoint: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{endpoint}{path}: no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resources of one deployment, as the SAM template would create them.
pub struct Stack {
    pub clients: Clients,
    pub resources: Resources,
    pub receive_queue: String,
    pub receive_queue_arn: String,
    pub receive_dlq: String,
    pub process_queue: String,
    pub process_queue_arn: String,
    pub process_dlq: String,
    pub extract_queue: String,
    pub extract_queue_arn: String,
    pub extract_dlq: String,
    pub secret_id: String,
}

async fn queue_with_dlq(clients: &Clients, name: &str) -> (String, String, String) {
    let sqs = &clients.sqs;
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = queue_arn(clients, &dlq).await;
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = queue_arn(clients, &url).await;
    (url, arn, dlq)
}

pub async fn queue_arn(clients: &Clients, url: &str) -> String {
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap()
}

/// Creates buckets, queues (receive, process, extract) with DLQs, the ledger table, the key secret and the
/// S3 -> SQS notification, every name starting with `prefix`.
pub async fn provision(moto: &Moto, prefix: &str) -> Stack {
    let clients = Clients::new(&moto.sdk_config().await);
    let bucket = |b: &str| format!("{prefix}-{b}");
    for b in ["landing", "lake", "receipts", "quarantine"] {
        clients
            .s3
            .create_bucket()
            .bucket(bucket(b))
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(REGION))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    clients
        .s3
        .put_bucket_versioning()
        .bucket(bucket("landing"))
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (receive_queue, receive_queue_arn, receive_dlq) =
        queue_with_dlq(&clients, &format!("{prefix}-receive")).await;
    let (process_queue, process_queue_arn, process_dlq) =
        queue_with_dlq(&clients, &format!("{prefix}-process")).await;
    let (extract_queue, extract_queue_arn, extract_dlq) =
        queue_with_dlq(&clients, &format!("{prefix}-extract")).await;
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket("landing"))
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&receive_queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let table = format!("{prefix}-ledger");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("dataset"))
        .attribute_definitions(attr("received_at"))
        .key_schema(key("pk", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(naerdata::aws::ledger::DATASET_INDEX)
                .key_schema(key("dataset", KeyType::Hash))
                .key_schema(key("received_at", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let secret_id = format!("{prefix}/lake-key");
    clients
        .secrets
        .create_secret()
        .name(&secret_id)
        .secret_string(json!({"version": 1, "key_hex": "5a".repeat(32)}).to_string())
        .send()
        .await
        .unwrap();
    let resources = Resources {
        landing_bucket: bucket("landing"),
        lake_bucket: bucket("lake"),
        receipts_bucket: bucket("receipts"),
        quarantine_bucket: bucket("quarantine"),
        ledger_table: table,
        key_secret_id: Some(secret_id.clone()),
        kms_key_id: Some(KMS_KEY.into()),
        landing_kms_key_id: None,
        secrets_kms_key_id: None,
        process_queue_url: Some(process_queue.clone()),
        process_dlq_url: Some(process_dlq.clone()),
        receive_queue_url: Some(receive_queue.clone()),
        receive_dlq_url: Some(receive_dlq.clone()),
        project_secret_prefix: Some(format!("{prefix}/projects/")),
        extract_queue_url: Some(extract_queue.clone()),
        extract_dlq_url: Some(extract_dlq.clone()),
        athena_workgroup: None,
        glue_database: None,
        spool: std::env::temp_dir(),
        multipart: Multipart::default(),
    };
    Stack {
        clients,
        resources,
        receive_queue,
        receive_queue_arn,
        receive_dlq,
        process_queue,
        process_queue_arn,
        process_dlq,
        extract_queue,
        extract_queue_arn,
        extract_dlq,
        secret_id,
    }
}

impl Stack {
    /// Uploads to the landing bucket as a supplier must: SSE-KMS naming the platform's
    /// raw data key. The S3 version when the bucket keeps versions.
    pub async fn upload(&self, key: &str, body: Vec<u8>) -> Option<String> {
        let r = &self.resources;
        self.clients
            .s3
            .put_object()
            .bucket(&r.landing_bucket)
            .key(key)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(r.landing_kms_key_id.clone().or(r.kms_key_id.clone()))
            .body(body.into())
            .send()
            .await
            .unwrap()
            .version_id
    }

    /// Every object of a bucket, downloaded under `dir`.
    pub async fn download(&self, bucket: &str, dir: &Path) -> Vec<String> {
        let keys = self.keys(bucket).await;
        for key in &keys {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, self.get(bucket, key).await).unwrap();
        }
        keys
    }

    pub async fn get(&self, bucket: &str, key: &str) -> bytes::Bytes {
        self.clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"))
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
    }

    /// The keys of a bucket, sorted (the tests' buckets hold fewer than 1,000).
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let listed = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    pub async fn depth(&self, queue: &str) -> u64 {
        naerdata::aws::SqsQueue::new(self.clients.sqs.clone(), queue)
            .depth()
            .await
            .unwrap()
    }
}

/// What one `pump` did.
#[derive(Debug, Default)]
pub struct Pumped {
    pub batches: usize,
    pub messages: usize,
    pub failed: usize,
}

/// Takes raw SQS messages as Lambda's SQS event JSON.
pub fn lambda_event(messages: &[aws_sdk_sqs::types::Message], arn: &str) -> SqsEvent {
    let records: Vec<_> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<_, _> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: serde_json::Map<_, _> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({"stringValue": v.string_value(), "dataType": v.data_type(),
                                       "stringListValues": [], "binaryListValues": []}),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a Lambda SQS event")
}

/// Stands in for Lambda's event source mapping with `ReportBatchItemFailures`:
/// takes batches off `queue` until it is empty, hands each to `handler`, deletes the
/// messages that succeeded, and makes failed ones visible again at once (Lambda
/// waits for the visibility timeout; the tests need not). After `maxReceiveCount`
/// receives the queue itself moves a message to its DLQ.
pub async fn pump<F, Fut>(stack: &Stack, queue: &str, arn: &str, handler: F) -> Pumped
where
    F: FnMut(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    pump_while(stack, queue, arn, || true, handler).await
}

/// The receive function `r` takes its queue until the queue is empty.
pub async fn receive_all(stack: &Stack, r: &Receiver) -> Pumped {
    pump(stack, &stack.receive_queue, &stack.receive_queue_arn, |e| {
        r.handle(e)
    })
    .await
}

/// [`pump`], stopping before the next batch once `go_on` says no (a worker that
/// crashed takes no more messages; what it failed is visible again for the next).
pub async fn pump_while<F, Fut>(
    stack: &Stack,
    queue: &str,
    arn: &str,
    go_on: impl Fn() -> bool,
    mut handler: F,
) -> Pumped
where
    F: FnMut(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let sqs = &stack.clients.sqs;
    let mut pumped = Pumped::default();
    for _ in 0..1_000 {
        if !go_on() {
            return pumped;
        }
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return pumped;
        }
        let response = handler(lambda_event(&messages, arn)).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        pumped.batches += 1;
        pumped.messages += messages.len();
        pumped.failed += failed.len();
        for m in &messages {
            let handle = m.receipt_handle().unwrap();
            if failed.contains(&m.message_id().unwrap()) {
                sqs.change_message_visibility()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    panic!("the queue did not drain in 1,000 batches");
}

/// The Makefile's venv Python, for the independent Parquet reader.
pub fn python() -> PathBuf {
    let p = std::env::var_os("NAERDATA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_bin("python"));
    assert!(
        p.exists(),
        "Python with pyarrow not found at {}: run `make test` or set NAERDATA_PYTHON",
        p.display()
    );
    p
}

/// Runs tests/independent/check_objects.py over a downloaded folder.
pub fn check_objects(dir: &Path, input: &Path) -> serde_json::Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/independent/check_objects.py");
    let out = Command::new(python())
        .arg(script)
        .arg("--dir")
        .arg(dir)
        .arg("--input")
        .arg(input)
        .output()
        .expect("running check_objects.py");
    assert!(
        out.status.success(),
        "check_objects.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check_objects.py prints JSON")
}

/// An object store that fails the puts `fail` picks (by 1-based count of file
/// puts): the fault injection of the retry tests.
pub struct FailingPuts {
    pub inner: std::sync::Arc<dyn naerdata::ports::ObjectStore>,
    pub fail: Box<dyn Fn(usize) -> bool + Send + Sync>,
    pub seen: std::sync::atomic::AtomicUsize,
}

impl FailingPuts {
    pub fn new(
        inner: std::sync::Arc<dyn naerdata::ports::ObjectStore>,
        fail: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> Self {
        FailingPuts {
            inner,
            fail: Box::new(fail),
            seen: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl naerdata::ports::ObjectStore for FailingPuts {
    async fn open(
        &self,
        key: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, naerdata::ports::StoreError> {
        self.inner.open(key).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<naerdata::ports::ObjectMeta>, naerdata::ports::StoreError> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: bytes::Bytes) -> Result<(), naerdata::ports::StoreError> {
        self.inner.put(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), naerdata::ports::StoreError> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if (self.fail)(n) {
            return Err(naerdata::ports::StoreError::backend(
                "put",
                key,
                "injected fault",
            ));
        }
        self.inner.put_file(key, path).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<naerdata::ports::ObjectMeta>, naerdata::ports::StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), naerdata::ports::StoreError> {
        self.inner.delete(key).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
    // Delta commits go through the bucket's object_store client.
    fn engine_store(&self) -> Option<std::sync::Arc<dyn object_store::ObjectStore>> {
        self.inner.engine_store()
    }
}

/// A GP diagnosis CSV: `rows` rows spread over `months` months of 2026, each with
/// its own synthetic CPR (day + 60).
pub fn diagnoses(first_id: usize, rows: usize, months: u32) -> String {
    let mut s = "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n"
        .to_string();
    for i in first_id..first_id + rows {
        let month = 1 + (i as u32 % months);
        s.push_str(&format!(
            "r{i};{:02}{:02}{:02}-{:04};012345;T90;2026-{month:02}-01;diabetes2;2026-{month:02}-02T10:00:00+01:00\n",
            61 + i % 28,
            1 + (i / 28) % 12,
            (i / 336) % 100,
            (i / 33_600) % 10_000,
        ));
    }
    s
}

// The platform and the functions as the AWS tests drive them.

/// The platform on the emulator, with a fixed clock so two runs write identical
/// objects (the lake rows carry the time of receipt).
pub fn platform(stack: &Stack) -> Platform {
    let mut p = aws::platform(&stack.clients, &stack.resources, Registry::builtin())
        .expect("the platform on the emulator");
    p.clock = Arc::new(FixedClock(
        // After every generated delivery day (a day is no later than tomorrow).
        chrono::DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
            .unwrap()
            .to_utc(),
    ));
    p
}

pub fn receiver(stack: &Stack) -> Receiver {
    receiver_on(stack, platform(stack))
}

/// A receiver on a given platform (a test that moves the clock day by day).
pub fn receiver_on(stack: &Stack, platform: Platform) -> Receiver {
    Receiver {
        platform,
        process_queue: Arc::new(SqsQueue::new(
            stack.clients.sqs.clone(),
            &stack.process_queue,
        )),
        landing_bucket: stack.resources.landing_bucket.clone(),
    }
}

pub async fn deliveries(p: &Platform) -> Vec<Delivery> {
    p.ledger.list(None, 1000).await.unwrap()
}

pub async fn receipt(stack: &Stack, d: &Delivery) -> Receipt {
    let body = stack
        .get(&stack.resources.receipts_bucket, &d.receipt_key())
        .await;
    serde_json::from_slice(&body).unwrap()
}
