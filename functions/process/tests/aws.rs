//! The AWS adapters and the Lambda handlers against a local AWS (moto server over
//! HTTP; no mocks between the handlers and the emulator). Each test starts its own
//! emulator. Needs `make test` (moto and pyarrow in .venv).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use naerdata::Platform;
use naerdata::aws::{self, DynamoLedger, LakeStore, Multipart, S3Store, SqsQueue};
use naerdata::ledger::{Delivery, DeliveryState};
use naerdata::ports::{FixedClock, ObjectStore, StoreError};

use crate::support;
use crate::support::{
    FailingPuts, Moto, Stack, check_objects, deliveries, diagnoses, platform, provision, pump,
    receipt, receive_all, receiver, receiver_on,
};
use naerdata_process as process;

/// Takes the notification of `key` off the receive queue (dropping the s3:TestEvent
/// that configuring the notification sent).
async fn take_notification(stack: &Stack, key: &str) -> aws_sdk_sqs::types::Message {
    loop {
        let taken = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.receive_queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .expect("a notification on the receive queue");
        for m in taken {
            let body = m.body().unwrap();
            if body.contains(key) {
                return m;
            }
            assert!(body.contains("s3:TestEvent"), "unexpected message {body}");
            stack
                .clients
                .sqs
                .delete_message()
                .queue_url(&stack.receive_queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Runs both functions until both queues are empty.
async fn run_functions(stack: &Stack, p: &Platform) {
    let r = receiver(stack);
    receive_all(stack, &r).await;
    pump(stack, &stack.process_queue, &stack.process_queue_arn, |e| {
        process::handle(p, e)
    })
    .await;
}

/// The data files among a lake bucket's keys (each delivery also writes its quality
/// metrics under quality/, and each table has its Delta log).
fn curated(keys: Vec<String>) -> Vec<String> {
    keys.into_iter()
        .filter(|k| k.starts_with("curated/") && !k.contains("/_delta_log/"))
        .collect()
}

async fn by_key(p: &Platform, key: &str) -> Delivery {
    deliveries(p)
        .await
        .into_iter()
        .find(|d| d.object_key == key)
        .unwrap_or_else(|| panic!("no delivery for {key}"))
}

#[tokio::test]
async fn the_dynamodb_ledger_behaves_like_a_ledger() {
    let moto = Moto::start();
    let stack = provision(&moto, "t").await;
    let l = DynamoLedger::new(
        stack.clients.dynamodb.clone(),
        &stack.resources.ledger_table,
    );
    naerdata::ledger::conformance::check(&l).await;
}

/// In the versioned landing bucket, so the purge's delete of every version is tried
/// where there are versions to delete.
#[tokio::test]
async fn the_s3_store_behaves_like_an_object_store() {
    let moto = Moto::start();
    let stack = provision(&moto, "t").await;
    let store = S3Store::new(
        stack.clients.s3.clone(),
        &stack.resources.landing_bucket,
        Some(support::KMS_KEY.into()),
    );
    naerdata::ports::conformance::check(&store).await;
    let versions = stack
        .clients
        .s3
        .list_object_versions()
        .bucket(&stack.resources.landing_bucket)
        .prefix("c/a/one.txt")
        .send()
        .await
        .unwrap();
    assert!(
        versions.versions().is_empty() && versions.delete_markers().is_empty(),
        "a purge leaves no version of the object: {versions:?}"
    );
}

/// The lake through `object_store`'s client, as the platform builds it.
fn lake_store(stack: &Stack, bucket: &str) -> LakeStore {
    LakeStore::new(
        aws::engine::bucket_store(&stack.clients.sdk, bucket, Some(support::KMS_KEY)).unwrap(),
        bucket,
    )
}

#[tokio::test]
async fn the_lake_store_behaves_like_an_object_store() {
    let moto = Moto::start();
    let stack = provision(&moto, "t").await;
    let store = lake_store(&stack, &stack.resources.lake_bucket);
    naerdata::ports::conformance::check(&store).await;
    assert!(
        store.engine_store().is_some(),
        "Delta commits and SQL go through the same client"
    );
}

/// Writes a 12 MiB file (5 MiB parts) and a small object through `store` into
/// `bucket`, and checks them through the SDK: three parts, SSE-KMS with the test key,
/// and the streamed read equal to the file.
async fn uploads_in_parts_encrypted(stack: &Stack, store: &dyn ObjectStore, bucket: &str) {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..12 * 1024 * 1024 + 7)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &big).unwrap();
    store.put_file("a/big.bin", &path).await.unwrap();
    store.put("a/small.json", "{}".into()).await.unwrap();
    for (key, parts) in [("a/big.bin", Some("-3\"")), ("a/small.json", None)] {
        let h = stack
            .clients
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        if let Some(parts) = parts {
            assert!(
                h.e_tag().unwrap().ends_with(parts),
                "three parts: {:?}",
                h.e_tag()
            );
        }
        assert_eq!(
            h.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
        assert!(
            h.ssekms_key_id().unwrap().contains("naerdata-test"),
            "{key}"
        );
    }
    let reader = store.open("a/big.bin").await.unwrap();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut reader = reader;
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(bytes == big, "the streamed object equals the uploaded file");
    let meta = store.head("a/big.bin").await.unwrap().unwrap();
    assert_eq!(meta.size, big.len() as u64);
}

const PARTS_OF_5_MIB: Multipart = Multipart {
    threshold: 5 << 20,
    part_size: 5 << 20,
};

#[tokio::test]
async fn the_lake_store_encrypts_and_uploads_large_files_in_parts() {
    let moto = Moto::start();
    let stack = provision(&moto, "t").await;
    let lake = &stack.resources.lake_bucket;
    let store = lake_store(&stack, lake).with_multipart(PARTS_OF_5_MIB);
    uploads_in_parts_encrypted(&stack, &store, lake).await;
    // Keys reach S3 unchanged (other tools see the same names); what object_store
    // cannot name is refused by key, not renamed.
    let odd = "a/odd%20name b+c=æ.json";
    store.put(odd, "{}".into()).await.unwrap();
    stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.resources.lake_bucket)
        .key(odd)
        .send()
        .await
        .expect("the same key through the SDK");
    assert_eq!(store.list("a/odd").await.unwrap()[0].key, odd);
    let e = store.put("a/../up.json", "x".into()).await.unwrap_err();
    assert!(e.to_string().contains("a/../up.json"), "{e}");
}

/// A lake bucket that keeps versions (versioning turned on by hand, or a stack from
/// before it was turned off) would keep purged rows in noncurrent versions, which the
/// lake's client cannot list: the purge refuses and says what to do.
#[tokio::test]
async fn a_purge_refuses_a_lake_bucket_that_keeps_versions() {
    let moto = Moto::start();
    let stack = provision(&moto, "t").await;
    let versioned = lake_store(&stack, &stack.resources.landing_bucket);
    versioned
        .put("curated/t/part-1.parquet", "rows".into())
        .await
        .unwrap();
    let e = versioned
        .delete_all_versions("curated/t/part-1.parquet")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kept S3 versions") && e.contains("README: Purge"),
        "{e}"
    );
    assert!(
        versioned
            .get("curated/t/part-1.parquet")
            .await
            .unwrap()
            .is_some(),
        "nothing is deleted halfway"
    );
    // In the lake bucket (no versions) the same purge deletes the object for good.
    let lake = lake_store(&stack, &stack.resources.lake_bucket);
    lake.put("curated/t/part-1.parquet", "rows".into())
        .await
        .unwrap();
    lake.delete_all_versions("curated/t/part-1.parquet")
        .await
        .unwrap();
    let versions = stack
        .clients
        .s3
        .list_object_versions()
        .bucket(&stack.resources.lake_bucket)
        .send()
        .await
        .unwrap();
    assert!(versions.versions().is_empty(), "{versions:?}");
}

#[tokio::test]
async fn the_s3_store_streams_encrypts_and_uploads_large_files_in_parts() {
    let moto = Moto::start();
    let stack = provision(&moto, "t").await;
    let store = S3Store::new(
        stack.clients.s3.clone(),
        &stack.resources.receipts_bucket,
        Some(support::KMS_KEY.into()),
    )
    .with_multipart(PARTS_OF_5_MIB);
    uploads_in_parts_encrypted(&stack, &store, &stack.resources.receipts_bucket).await;
    assert!(store.head("a/none").await.unwrap().is_none());
    assert!(matches!(
        store.open("a/none").await.err().unwrap(),
        StoreError::NotFound { .. }
    ));
    store
        .copy("a/small.json", "b/copy of small+1.json")
        .await
        .unwrap();
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        keys,
        ["a/big.bin", "a/small.json", "b/copy of small+1.json"]
    );
    store.delete("a/small.json").await.unwrap();
    assert_eq!(store.list("a/").await.unwrap().len(), 1);
    assert_eq!(
        store.locate("x/y"),
        format!("s3://{}/x/y", stack.resources.receipts_bucket)
    );

    // A step reads the version it was told about, even after the key was overwritten.
    let landing = S3Store::new(
        stack.clients.s3.clone(),
        &stack.resources.landing_bucket,
        None,
    );
    let v1 = stack
        .upload("k/1/2026-06-01/a.csv", b"first".to_vec())
        .await
        .expect("the landing bucket is versioned");
    stack
        .upload("k/1/2026-06-01/a.csv", b"second".to_vec())
        .await;
    let read = |r: Box<dyn std::io::Read + Send>| {
        tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            let mut r = r;
            std::io::Read::read_to_string(&mut r, &mut s).unwrap();
            s
        })
    };
    let old = landing
        .open_version("k/1/2026-06-01/a.csv", Some(&v1))
        .await
        .unwrap();
    assert_eq!(read(old).await.unwrap(), "first");
    let new = landing.open("k/1/2026-06-01/a.csv").await.unwrap();
    assert_eq!(read(new).await.unwrap(), "second");
}

#[tokio::test]
async fn deliveries_flow_from_the_landing_bucket_to_the_lake() {
    let moto = Moto::start();
    let stack = provision(&moto, "flow").await;
    let p = platform(&stack);
    let input = tempfile::tempdir().unwrap();
    let mut opts = naerdata::generate::GenerateOptions::new(input.path());
    opts.persons = 300;
    opts.days = 2;
    let generated = naerdata::generate::generate(&opts).unwrap();
    assert!(generated.iter().any(|g| g.dataset == "kommune.gateway"));
    let mut uploaded = Vec::new();
    for g in &generated {
        let key = g
            .path
            .strip_prefix(input.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        stack.upload(&key, std::fs::read(&g.path).unwrap()).await;
        uploaded.push(key);
    }
    // The awkward ones: an unknown dataset, a key outside the layout, an empty
    // object, and a key that S3 URL-encodes in the notification.
    let odd_csv = diagnoses(0, 3, 1);
    std::fs::write(input.path().join("odd.csv"), &odd_csv).unwrap();
    let unknown = "almenpraksis/ukendt/2026-10-01/x.csv";
    let stray = "stray file.csv";
    let empty = "speciallaege/kontakt/2026-06-01/empty.csv";
    let encoded = "almenpraksis/diagnose/2026-06-02/dag 3+x=1.csv";
    stack.upload(unknown, odd_csv.clone().into_bytes()).await;
    stack.upload(stray, b"a;b\n".to_vec()).await;
    stack.upload(empty, Vec::new()).await;
    stack.upload(encoded, odd_csv.clone().into_bytes()).await;

    run_functions(&stack, &p).await;

    assert_eq!(stack.depth(&stack.receive_dlq).await, 0);
    assert_eq!(stack.depth(&stack.process_dlq).await, 0);
    for key in &uploaded {
        let d = by_key(&p, key).await;
        assert!(
            d.state.has_rows(),
            "{key}: {} ({:?})",
            d.state,
            d.outcome.message
        );
    }
    let d = by_key(&p, unknown).await;
    assert_eq!(d.state, DeliveryState::Rejected);
    assert!(
        receipt(&stack, &d)
            .await
            .reason
            .unwrap()
            .contains("no contract")
    );
    let d = by_key(&p, stray).await;
    assert_eq!(d.state, DeliveryState::Rejected);
    assert!(receipt(&stack, &d).await.reason.unwrap().contains("part"));
    let d = by_key(&p, empty).await;
    assert_eq!(d.state, DeliveryState::Rejected);
    assert!(receipt(&stack, &d).await.reason.unwrap().contains("empty"));
    let d = by_key(&p, encoded).await;
    assert_eq!(d.state, DeliveryState::Accepted, "{:?}", d.outcome);
    assert_eq!(d.outcome.rows_accepted, 3);

    // What the lake holds, read by an independent reader (pyarrow), agrees with the
    // receipts, and no input CPR is anywhere in the lake, receipts or quarantine.
    let out = tempfile::tempdir().unwrap();
    let lake_keys = stack
        .download(&stack.resources.lake_bucket, &out.path().join("lake"))
        .await;
    stack
        .download(
            &stack.resources.receipts_bucket,
            &out.path().join("receipts"),
        )
        .await;
    let quarantine = stack
        .download(
            &stack.resources.quarantine_bucket,
            &out.path().join("quarantine"),
        )
        .await;
    let report = check_objects(out.path(), input.path());
    let cprs = report["input_cprs"].as_u64().unwrap();
    assert!(cprs > 100, "the scan knows the input CPRs ({cprs})");
    assert_eq!(
        report["cpr_hits"],
        serde_json::json!({}),
        "CPRs outside the landing zone"
    );
    let mut lake_rows: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (path, v) in report["parquet"].as_object().unwrap() {
        // lake/curated/<table>/year=YYYY/month=MM/<delivery_id>-<n>.parquet
        let parts: Vec<&str> = path.split('/').collect();
        // The delivery's quality metrics are scanned for CPRs like the rest.
        if parts[1] == "quality" {
            continue;
        }
        assert_eq!(parts[1], "curated", "{path}");
        let id = parts[5].split('-').next().unwrap().to_string();
        *lake_rows.entry((id, parts[2].to_string())).or_default() += v["rows"].as_u64().unwrap();
    }
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for d in deliveries(&p).await {
        let r = receipt(&stack, &d).await;
        assert_eq!(r.head.delivery_id, d.delivery_id);
        for (table, n) in r.tables {
            if n > 0 {
                expected.insert((d.delivery_id.clone(), table), n);
            }
        }
        if r.rows.rejected > 0 && d.state.has_rows() {
            assert!(
                quarantine.contains(&r.quarantine.clone().unwrap()),
                "{:?}",
                r.quarantine
            );
        }
    }
    assert!(expected.len() > 10, "{expected:?}");
    assert!(
        !quarantine.is_empty(),
        "the generator's defective rows are quarantined"
    );
    assert_eq!(
        lake_rows, expected,
        "lake rows per delivery and table = the receipts"
    );
    assert!(
        lake_keys
            .iter()
            .any(|k| k.starts_with("curated/kommune_borger/"))
    );
    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.resources.lake_bucket)
        .key(&lake_keys[0])
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
}

#[tokio::test]
async fn repeated_notifications_and_copies_give_one_set_of_lake_objects() {
    let moto = Moto::start();
    let stack = provision(&moto, "dup").await;
    let p = platform(&stack);
    let body = diagnoses(0, 40, 3);
    stack
        .upload(
            "almenpraksis/diagnose/2026-06-01/a.csv",
            body.clone().into_bytes(),
        )
        .await;
    // The one notification S3 sent, delivered three times (SQS is at-least-once).
    let taken = vec![take_notification(&stack, "a.csv").await];
    let r = receiver(&stack);
    for i in 0..3 {
        let mut event: SqsEvent = support::lambda_event(&taken, &stack.receive_queue_arn);
        event.records[0].message_id = Some(format!("copy-{i}"));
        let response = r.handle(event).await;
        assert!(response.batch_item_failures.is_empty());
    }
    // The same bytes under a second key.
    stack
        .upload(
            "almenpraksis/diagnose/2026-06-02/a-again.csv",
            body.into_bytes(),
        )
        .await;
    run_functions(&stack, &p).await;

    let first = by_key(&p, "almenpraksis/diagnose/2026-06-01/a.csv").await;
    let second = by_key(&p, "almenpraksis/diagnose/2026-06-02/a-again.csv").await;
    assert_eq!(first.state, DeliveryState::Accepted);
    assert_eq!(first.attempts, 1, "processed once");
    assert_eq!(second.state, DeliveryState::Duplicate);
    assert_eq!(
        second.duplicate_of.as_deref(),
        Some(first.delivery_id.as_str())
    );
    let keys = curated(stack.keys(&stack.resources.lake_bucket).await);
    assert_eq!(keys.len(), 3, "one object per month: {keys:?}");
    assert!(keys.iter().all(|k| k.contains(&first.delivery_id)));
    let out = tempfile::tempdir().unwrap();
    stack
        .download(&stack.resources.lake_bucket, out.path())
        .await;
    let report = check_objects(out.path(), out.path());
    let rows: u64 = report["parquet"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.contains("/curated/") || path.starts_with("curated/"))
        .map(|(_, v)| v["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, 40);
    assert_eq!(deliveries(&p).await.len(), 2);
}

#[tokio::test]
async fn a_poison_message_fails_alone_and_ends_in_the_dead_letter_queue() {
    let moto = Moto::start();
    let stack = provision(&moto, "poison").await;
    let p = platform(&stack);
    stack
        .upload(
            "almenpraksis/diagnose/2026-06-01/a.csv",
            diagnoses(0, 5, 1).into_bytes(),
        )
        .await;
    let mut taken = vec![take_notification(&stack, "a.csv").await];
    let mut poison = taken[0].clone();
    poison.message_id = Some("poison".into());
    poison.body = Some("this is not an S3 notification".into());
    taken.push(poison);
    let response = receiver(&stack)
        .handle(support::lambda_event(&taken, &stack.receive_queue_arn))
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, ["poison"], "only the poison message fails");
    assert_eq!(deliveries(&p).await.len(), 1, "the good one was received");
    stack
        .clients
        .sqs
        .delete_message()
        .queue_url(&stack.receive_queue)
        .receipt_handle(taken[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();

    // A real poison message on the queue: retried, then moved to the DLQ.
    SqsQueue::new(stack.clients.sqs.clone(), &stack.receive_queue)
        .send("{\"Records\": 7}", &[])
        .await
        .unwrap();
    let r = receiver(&stack);
    let pumped = receive_all(&stack, &r).await;
    assert_eq!(pumped.failed, 5, "maxReceiveCount attempts");
    assert_eq!(stack.depth(&stack.receive_dlq).await, 1);
}

#[tokio::test]
async fn a_failing_delivery_ends_failed_in_the_dlq_and_a_redrive_completes_it() {
    let moto = Moto::start();
    let stack = provision(&moto, "redrive").await;
    let healthy = platform(&stack);
    let mut broken = platform(&stack);
    broken.stores.lake = Arc::new(FailingPuts::new(broken.stores.lake.clone(), |_| true));
    let key = "almenpraksis/diagnose/2026-06-01/a.csv";
    stack.upload(key, diagnoses(0, 50, 2).into_bytes()).await;
    let r = receiver(&stack);
    receive_all(&stack, &r).await;
    let pumped = pump(
        &stack,
        &stack.process_queue,
        &stack.process_queue_arn,
        |e| process::handle(&broken, e),
    )
    .await;
    assert_eq!(pumped.failed, 5);
    assert_eq!(stack.depth(&stack.process_dlq).await, 1);
    let d = by_key(&healthy, key).await;
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 5);
    assert!(d.outcome.message.unwrap().contains("injected fault"));
    // Nothing curated; only the lake key's fingerprint, recorded before the fault.
    assert!(curated(stack.keys(&stack.resources.lake_bucket).await).is_empty());

    // The operator's redrive: DLQ -> process queue, then the function as usual.
    let dlq = SqsQueue::new(stack.clients.sqs.clone(), &stack.process_dlq);
    let queue = SqsQueue::new(stack.clients.sqs.clone(), &stack.process_queue);
    assert_eq!(dlq.redrive_to(&queue).await.unwrap(), 1);
    pump(
        &stack,
        &stack.process_queue,
        &stack.process_queue_arn,
        |e| process::handle(&healthy, e),
    )
    .await;
    let d = by_key(&healthy, key).await;
    assert_eq!(d.state, DeliveryState::Accepted);
    assert_eq!(d.outcome.rows_accepted, 50);
    assert_eq!(
        curated(stack.keys(&stack.resources.lake_bucket).await).len(),
        2
    );
    assert_eq!(stack.depth(&stack.process_dlq).await, 0);
}

#[tokio::test]
async fn a_fault_after_some_parquet_objects_then_a_retry_equals_a_clean_run() {
    let moto = Moto::start();
    let clean = provision(&moto, "clean").await;
    let faulty = provision(&moto, "faulty").await;
    let body = diagnoses(0, 100, 5);
    let key = "almenpraksis/diagnose/2026-06-01/a.csv";
    for s in [&clean, &faulty] {
        s.upload(key, body.clone().into_bytes()).await;
    }
    run_functions(&clean, &platform(&clean)).await;

    let mut broken = platform(&faulty);
    broken.stores.lake = Arc::new(FailingPuts::new(broken.stores.lake.clone(), |n| n == 3));
    let r = receiver(&faulty);
    receive_all(&faulty, &r).await;
    // One attempt fails after two objects are written; SQS redelivers the message,
    // and the second attempt (the store no longer fails) completes it.
    let pumped = pump(
        &faulty,
        &faulty.process_queue,
        &faulty.process_queue_arn,
        |e| process::handle(&broken, e),
    )
    .await;
    assert_eq!(pumped.failed, 1);
    assert_eq!(pumped.messages, 2);

    let clean_keys = curated(clean.keys(&clean.resources.lake_bucket).await);
    assert_eq!(clean_keys.len(), 5);
    assert_eq!(
        curated(faulty.keys(&faulty.resources.lake_bucket).await),
        clean_keys
    );
    for k in &clean_keys {
        assert!(
            clean.get(&clean.resources.lake_bucket, k).await
                == faulty.get(&faulty.resources.lake_bucket, k).await,
            "{k} differs from the clean run"
        );
    }
    let d = by_key(&platform(&faulty), key).await;
    assert_eq!(d.state, DeliveryState::Accepted);
    assert_eq!(d.attempts, 2);
}

#[tokio::test]
async fn a_delivery_over_the_multipart_threshold_round_trips() {
    let moto = Moto::start();
    let mut stack = provision(&moto, "big").await;
    stack.resources.multipart = Multipart {
        threshold: 5 << 20,
        part_size: 5 << 20,
    };
    let p = platform(&stack);
    // One month, so one Parquet object well over 5 MiB (pseudonyms do not compress).
    let rows = 250_000;
    let body = diagnoses(0, rows, 1);
    assert!(body.len() > 10 << 20);
    stack
        .upload(
            "almenpraksis/diagnose/2026-06-01/big.csv",
            body.into_bytes(),
        )
        .await;
    run_functions(&stack, &p).await;
    let d = by_key(&p, "almenpraksis/diagnose/2026-06-01/big.csv").await;
    assert!(d.state.has_rows(), "{:?}", d.outcome);
    assert_eq!(d.outcome.rows_accepted, rows as u64);
    let keys = curated(stack.keys(&stack.resources.lake_bucket).await);
    assert_eq!(keys.len(), 1);
    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.resources.lake_bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap();
    assert!(head.content_length().unwrap() > 5 << 20);
    assert!(head.e_tag().unwrap().contains('-'), "uploaded in parts");
    let out = tempfile::tempdir().unwrap();
    stack
        .download(&stack.resources.lake_bucket, out.path())
        .await;
    let report = check_objects(out.path(), out.path());
    assert_eq!(report["parquet"][&keys[0]]["rows"], rows);
}

/// The stack of infra/template.yaml, created by CloudFormation in the emulator
/// (infra/checks/deploy_emulator.py, which also checks the resources' settings),
/// runs the same flow: the functions configured only from the stack's outputs.
#[tokio::test]
async fn the_stack_deployed_into_the_emulator_runs_the_flow() {
    let moto = Moto::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra/checks/deploy_emulator.py");
    let run = std::process::Command::new(support::python())
        .arg(&script)
        .args(["--endpoint", &moto.endpoint, "--env", "test"])
        .arg("--detach-event-sources")
        .output()
        .expect("running deploy_emulator.py");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "deploying the stack failed:\n{log}");
    assert!(log.contains("PASS receive runs as its own role"), "{log}");
    assert!(
        log.contains("PASS workgroup naerdata-test-publish: engine v3")
            && log.contains(
                "PASS the publish role's Athena rights name the publication's workgroup alone"
            ),
        "{log}"
    );
    assert!(
        log.contains(
            "PASS state machine naerdata-test-publish runs as naerdata-test-publish-orchestration"
        ) && log.contains(
            "PASS naerdata-test-publish-daily targets ...:stateMachine:naerdata-test-publish"
        ),
        "{log}"
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let out: BTreeMap<String, String> =
        serde_json::from_str(stdout.lines().last().expect("the outputs")).unwrap();
    // The Outputs' descriptions name the variables the functions read.
    let variable = |name: &str| -> Option<&str> {
        Some(match name {
            "NAERDATA_LANDING_BUCKET" => "LandingBucket",
            "NAERDATA_LAKE_BUCKET" => "LakeBucket",
            "NAERDATA_RECEIPTS_BUCKET" => "ReceiptsBucket",
            "NAERDATA_QUARANTINE_BUCKET" => "QuarantineBucket",
            "NAERDATA_LEDGER_TABLE" => "LedgerTable",
            "NAERDATA_KEY_SECRET_ID" => "LakeKeySecret",
            "NAERDATA_KMS_KEY_ID" => "DataKey",
            "NAERDATA_LANDING_KMS_KEY_ID" => "LandingKey",
            "NAERDATA_SECRETS_KMS_KEY_ID" => "SecretsKey",
            "NAERDATA_PROCESS_QUEUE_URL" => "ProcessQueue",
            "NAERDATA_PROCESS_DLQ_URL" => "ProcessDeadLetterQueue",
            "NAERDATA_RECEIVE_QUEUE_URL" => "ReceiveQueue",
            "NAERDATA_RECEIVE_DLQ_URL" => "ReceiveDeadLetterQueue",
            "NAERDATA_EXTRACT_QUEUE_URL" => "ExtractQueue",
            "NAERDATA_EXTRACT_DLQ_URL" => "ExtractDeadLetterQueue",
            "NAERDATA_PROJECT_SECRET_PREFIX" => "ProjectSecretPrefix",
            _ => return None,
        })
    };
    let resources =
        aws::Resources::from_lookup(|name| variable(name).and_then(|k| out.get(k)).cloned())
            .unwrap();
    let clients = aws::Clients::new(&moto.sdk_config().await);
    let stack = Stack {
        receive_queue: out["ReceiveQueue"].clone(),
        receive_queue_arn: out["ReceiveQueueArn"].clone(),
        receive_dlq: out["ReceiveDeadLetterQueue"].clone(),
        process_queue: out["ProcessQueue"].clone(),
        process_queue_arn: out["ProcessQueueArn"].clone(),
        process_dlq: out["ProcessDeadLetterQueue"].clone(),
        extract_queue: out["ExtractQueue"].clone(),
        extract_queue_arn: out["ExtractQueueArn"].clone(),
        extract_dlq: out["ExtractDeadLetterQueue"].clone(),
        secret_id: out["LakeKeySecret"].clone(),
        clients,
        resources,
    };
    let p = platform(&stack);
    let input = tempfile::tempdir().unwrap();
    let mut opts = naerdata::generate::GenerateOptions::new(input.path());
    opts.persons = 100;
    opts.days = 1;
    let generated = naerdata::generate::generate(&opts).unwrap();
    for g in &generated {
        let key = g.path.strip_prefix(input.path()).unwrap().to_str().unwrap();
        stack.upload(key, std::fs::read(&g.path).unwrap()).await;
    }
    run_functions(&stack, &p).await;
    let all = deliveries(&p).await;
    assert_eq!(
        all.len(),
        generated.len(),
        "received {:?} of {:?}",
        all.iter().map(|d| &d.object_key).collect::<Vec<_>>(),
        generated.iter().map(|g| &g.path).collect::<Vec<_>>()
    );
    for d in &all {
        assert!(
            d.state.has_rows(),
            "{}: {} {:?}",
            d.object_key,
            d.state,
            d.outcome.message
        );
    }
    assert!(!stack.keys(&stack.resources.lake_bucket).await.is_empty());
    assert_eq!(stack.depth(&stack.receive_dlq).await, 0);
    assert_eq!(stack.depth(&stack.process_dlq).await, 0);
}

/// Daily GP deliveries for a week, the last one a tenth of the volume; then the
/// monitor function over the stack: drift flags the drop, the calendar shows the
/// week, and the tables and the page land in the lake bucket.
#[tokio::test]
async fn the_monitor_writes_reception_declarations_and_the_page() {
    let moto = Moto::start();
    let stack = provision(&moto, "monitor").await;
    for day in 1..=6u32 {
        let mut p = platform(&stack);
        p.clock = Arc::new(FixedClock(
            chrono::NaiveDate::from_ymd_opt(2026, 6, day)
                .unwrap()
                .and_hms_opt(6, 0, 0)
                .unwrap()
                .and_utc(),
        ));
        let rows = if day == 6 { 20 } else { 200 };
        stack
            .upload(
                &format!("almenpraksis/diagnose/2026-06-0{day}/d.csv"),
                diagnoses(day as usize * 1000, rows, 1).into_bytes(),
            )
            .await;
        let r = receiver_on(&stack, p.clone());
        receive_all(&stack, &r).await;
        pump(
            &stack,
            &stack.process_queue,
            &stack.process_queue_arn,
            |e| process::handle(&p, e),
        )
        .await;
    }
    let p = platform(&stack);
    let last = by_key(&p, "almenpraksis/diagnose/2026-06-06/d.csv").await;
    let quality = receipt(&stack, &last)
        .await
        .quality
        .expect("a quality summary");
    assert!(
        quality.failing.iter().any(|f| f.check == "rows"),
        "a tenfold drop after five deliveries: {quality:?}"
    );

    let dlq: Arc<dyn naerdata::ports::Queue> =
        Arc::new(SqsQueue::new(stack.clients.sqs.clone(), &stack.process_dlq));
    let dlqs = vec![("process".to_string(), dlq)];
    let out = naerdata_monitor::handle(&p, &dlqs, serde_json::json!({"as_of": "2026-06-08"}))
        .await
        .unwrap();
    assert_eq!(out["as_of"], "2026-06-08");
    let lake = &stack.resources.lake_bucket;
    let keys = stack.keys(lake).await;
    for key in [
        "quality/reception/as_of=2026-06-08/reception.parquet",
        "quality/declaration/month=2026-06/declaration.parquet",
        "quality/declaration/month=2026-05/declaration.parquet",
        naerdata::report::PAGE_KEY,
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("quality/metrics/") && !k.contains("/_delta_log/"))
            .count(),
        6,
        "one metrics file per delivery"
    );
    let page =
        String::from_utf8(stack.get(lake, naerdata::report::PAGE_KEY).await.to_vec()).unwrap();
    assert!(page.contains("heatmap-datasets") && page.contains("almenpraksis.diagnose"));
    assert!(page.contains("naerdata --aws redrive process"));
    // 7 June was expected by the end of 8 June: pending, not missing. The seven other
    // delivered datasets never sent anything: one "silent" missing row each.
    assert_eq!(out["missing"], 7, "{out}");
}

/// Process functions run in parallel: eight deliveries to one Delta table commit at
/// once (conditional puts on the log), each retried as SQS would when it loses too
/// many races. None is lost, none doubled.
#[tokio::test]
async fn eight_deliveries_committing_to_one_table_at_once_lose_nothing() {
    let moto = Moto::start();
    let stack = provision(&moto, "parallel").await;
    let p = platform(&stack);
    let r = receiver(&stack);
    for i in 0..8 {
        stack
            .upload(
                &format!("almenpraksis/diagnose/2026-06-01/d{i}.csv"),
                diagnoses(i * 1000, 50, 3).into_bytes(),
            )
            .await;
    }
    receive_all(&stack, &r).await;
    let ids: Vec<String> = deliveries(&p)
        .await
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    assert_eq!(ids.len(), 8);
    let workers = ids.iter().map(|id| {
        let p = p.clone();
        let id = id.clone();
        tokio::spawn(async move {
            for attempt in 1..=10 {
                match naerdata::process::process(&p, &id).await {
                    Ok(naerdata::process::Processed::Done(state)) => return (state, attempt),
                    Ok(other) => panic!("{id}: {other:?}"),
                    Err(e) if attempt < 10 => eprintln!("{id} attempt {attempt}: {e}"),
                    Err(e) => panic!("{id}: {e}"),
                }
            }
            unreachable!()
        })
    });
    for (state, _) in futures::future::join_all(workers)
        .await
        .into_iter()
        .map(Result::unwrap)
    {
        assert_eq!(state, DeliveryState::Accepted);
    }
    let b = naerdata::catalog::query(
        &p,
        "SELECT count(*) AS n, count(DISTINCT record_key) AS k, count(DISTINCT delivery_id) AS d \
         FROM almenpraksis_diagnose",
    )
    .await
    .unwrap();
    let v = |c: usize| arrow_value(&b[0], c);
    assert_eq!((v(0), v(1), v(2)), (400, 400, 8));
    // One commit per delivery: the log's versions are the creation plus eight.
    let t = naerdata::lake::delta::open(
        p.stores.lake.as_ref(),
        "curated/almenpraksis_diagnose/",
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(t.version(), Some(8));
    for id in &ids {
        assert!(
            naerdata::lake::delta::committed(&t, id).await.unwrap(),
            "{id}"
        );
    }
    // Retraction and maintenance on S3, as `--aws` and the maintain function run them.
    let r = naerdata::retract::retract(&p, &ids[0], "sent twice by mistake")
        .await
        .unwrap();
    assert_eq!(r.rows_deleted.get("almenpraksis_diagnose"), Some(&50));
    assert_eq!(receipt(&stack, &r.delivery).await.state, "retracted");
    let done = naerdata::maintain::maintain(&p, &Default::default())
        .await
        .unwrap();
    let table = done
        .iter()
        .find(|t| t.table == "almenpraksis_diagnose")
        .unwrap();
    assert_eq!(
        (table.files_before, table.files_after),
        (21, 3),
        "{table:?}"
    );
    let b = naerdata::catalog::query(
        &p,
        "SELECT count(*) AS n, count(DISTINCT delivery_id) AS d FROM almenpraksis_diagnose",
    )
    .await
    .unwrap();
    assert_eq!((arrow_value(&b[0], 0), arrow_value(&b[0], 1)), (350, 7));
}

fn arrow_value(b: &arrow::record_batch::RecordBatch, c: usize) -> i64 {
    arrow::util::display::array_value_to_string(b.column(c), 0)
        .unwrap()
        .parse()
        .unwrap()
}

/// Reference data through the AWS chain: a SOR map version loaded into the lake
/// bucket (what `naerdata reference load sor FILE --aws` does) applies to the next
/// bundle the process function handles, with no deploy and no restart.
#[tokio::test]
async fn a_sor_map_loaded_into_the_lake_bucket_applies_to_the_next_bundle() {
    use naerdata::reference::{self, Kind, store::Published};
    let moto = Moto::start();
    let stack = provision(&moto, "ref").await;
    let p = platform(&stack);
    let fixture = |id: &str| {
        let path = format!(
            "{}/../../shared/tests/fixtures/kl-ig/jens-hansen/{id}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let b: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        format!("{b}\n").into_bytes()
    };
    let first = "kommune/gateway/2021-02-10/jh-1.ndjson";
    stack
        .upload(first, fixture("5c20b1b0-ec06-4d25-89e2-13521ebcf642"))
        .await;
    run_functions(&stack, &p).await;
    assert_eq!(by_key(&p, first).await.state, DeliveryState::Rejected);

    let text = format!(
        "{}123456789012345,751,Aarhus (the KL guide's example),false\n",
        reference::SOR_KOMMUNE_CSV
    );
    let Published::New(cur) = reference::store::publish(
        p.stores.lake.as_ref(),
        &naerdata::contract::Registry::builtin(),
        Kind::Sor,
        &text,
        "sor.csv",
        p.clock.now(),
    )
    .await
    .unwrap() else {
        panic!("not published")
    };
    assert!(
        stack
            .keys(&stack.resources.lake_bucket)
            .await
            .contains(&format!("reference/sor/{}.csv", cur.version))
    );
    let second = "kommune/gateway/2021-02-14/jh-2.ndjson";
    stack
        .upload(second, fixture("832c69db-98b5-4aee-ab00-c24967e89d25"))
        .await;
    run_functions(&stack, &p).await;
    let d = by_key(&p, second).await;
    let r = receipt(&stack, &d).await;
    assert!(
        matches!(
            d.state,
            DeliveryState::Accepted | DeliveryState::AcceptedWithWarnings
        ),
        "{r:?}"
    );
    assert_eq!(r.reference_versions["sor"], cur.version);
    assert_eq!(r.tables["kommune_tilstand"], 3);
}

/// A burst: N deliveries uploaded at once (generated deliveries of every dataset,
/// 5 % identical copies, 5 % hostile files), received, then processed by two
/// workers at the same time. Every delivery ends final with a receipt, the lake
/// holds exactly the rows the receipts say (nothing lost, nothing doubled), the
/// queues are drained and the dead-letter queues empty. N is NAERDATA_BURST
/// (`make test`: 50; `make chaos`: 1,000).
#[tokio::test]
async fn a_burst_of_deliveries_is_taken_whole() {
    let n: usize = std::env::var("NAERDATA_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let moto = Moto::start();
    let stack = provision(&moto, "burst").await;
    let p = platform(&stack);
    let (copies, hostile) = (n / 20, n / 20);
    let input = tempfile::tempdir().unwrap();
    let mut opts = naerdata::generate::GenerateOptions::new(input.path());
    opts.persons = 300;
    // About eight files a day, delivered before the platform's day.
    opts.days = (n / 8 + 10).min(150) as u32;
    opts.start = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
        - chrono::Duration::days(i64::from(opts.days));
    let generated = naerdata::generate::generate(&opts).unwrap();
    let clean: Vec<_> = generated.iter().take(n - copies - hostile).collect();
    assert_eq!(
        clean.len(),
        n - copies - hostile,
        "the generator gave too few files"
    );
    let mut uploads: Vec<(String, Vec<u8>)> = clean
        .iter()
        .map(|g| {
            let key = g
                .path
                .strip_prefix(input.path())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (key, std::fs::read(&g.path).unwrap())
        })
        .collect();
    for i in 0..copies {
        let (key, body) = uploads[i * 3].clone();
        uploads.push((format!("{key}.copy{i}"), body));
    }
    for i in 0..hostile {
        uploads.push((
            format!(
                "almenpraksis/diagnose/2026-05-{:02}/hostile-{i}.csv",
                1 + i % 28
            ),
            format!("hello;world\n{i};2\n").into_bytes(),
        ));
    }
    for (key, body) in &uploads {
        stack.upload(key, body.clone()).await;
    }
    let started = std::time::Instant::now();
    let r = receiver(&stack);
    receive_all(&stack, &r).await;
    let (a, b) = tokio::join!(
        pump(
            &stack,
            &stack.process_queue,
            &stack.process_queue_arn,
            |e| { process::handle(&p, e) }
        ),
        pump(
            &stack,
            &stack.process_queue,
            &stack.process_queue_arn,
            |e| { process::handle(&p, e) }
        ),
    );
    let seconds = started.elapsed().as_secs_f64();
    // A message failed by a commit conflict is retried until the queue is empty.
    pump(
        &stack,
        &stack.process_queue,
        &stack.process_queue_arn,
        |e| process::handle(&p, e),
    )
    .await;

    let all = deliveries(&p).await;
    assert_eq!(all.len(), n, "one delivery per upload");
    let mut states: BTreeMap<DeliveryState, usize> = BTreeMap::new();
    let mut expected_rows: BTreeMap<String, u64> = BTreeMap::new();
    for d in &all {
        assert!(d.state.is_final(), "{} left in {}", d.delivery_id, d.state);
        *states.entry(d.state).or_default() += 1;
        let r = receipt(&stack, d).await;
        if d.state.has_rows() {
            for (t, rows) in &r.tables {
                *expected_rows.entry(t.clone()).or_default() += rows;
            }
        }
    }
    // Duplicates: the planted copies, and generated files identical to an earlier one
    // of their dataset (a header-only file on a quiet day).
    let mut seen = std::collections::HashSet::new();
    let identical = uploads
        .iter()
        .filter(|(key, body)| {
            let dataset: Vec<&str> = key.split('/').take(2).collect();
            !seen.insert((dataset, body.clone()))
        })
        .count();
    assert!(identical >= copies);
    assert_eq!(
        states.get(&DeliveryState::Duplicate).copied().unwrap_or(0),
        identical,
        "{states:?}"
    );
    assert!(
        states.get(&DeliveryState::Rejected).copied().unwrap_or(0) >= hostile,
        "{states:?}"
    );
    assert!(!states.contains_key(&DeliveryState::Failed), "{states:?}");
    for (table, rows) in &expected_rows {
        if *rows == 0 {
            continue; // header-only deliveries make no table
        }
        let b = naerdata::catalog::query(&p, &format!("SELECT count(*) AS n FROM {table}"))
            .await
            .unwrap();
        assert_eq!(
            arrow_value(&b[0], 0) as u64,
            *rows,
            "{table}: lake rows vs receipts"
        );
    }
    for q in [
        &stack.receive_queue,
        &stack.process_queue,
        &stack.receive_dlq,
        &stack.process_dlq,
    ] {
        assert_eq!(stack.depth(q).await, 0, "{q} is not empty");
    }
    println!(
        "burst: {n} deliveries ({copies} copies, {hostile} hostile) processed by two workers in {seconds:.1} s \
         ({:.0} ms per delivery; {} + {} messages, {} retried), peak memory {:.0} MiB; 0 lost, 0 duplicated",
        1000.0 * seconds / n as f64,
        a.messages,
        b.messages,
        a.failed + b.failed,
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string))
            .and_then(|l| l
                .split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok()))
            .map_or(f64::NAN, |kb| kb / 1024.0)
    );
}
