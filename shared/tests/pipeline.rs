//! The receive and process steps on the embedded platform: a real directory tree,
//! a real SQLite ledger, real Parquet read back through DataFusion.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use naerdata::Platform;
use naerdata::catalog;
use naerdata::ledger::DeliveryState;
use naerdata::ports::{ObjectMeta, ObjectStore, StoreError};
use naerdata::process::{self, Processed};
use naerdata::receipt::Receipt;
use naerdata::receive::{self, Received};

use crate::support::*;

#[tokio::test]
async fn accepted_delivery_lands_in_partitions_with_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let mut body = rows(0..30, 3);
    body.push_str(&rows(30..40, 4)[HEADER.len()..]);
    let Received::ToProcess(id) =
        deliver(&p, "almenpraksis/diagnose/2026-06-01/a.csv", &body).await
    else {
        panic!("expected a new delivery");
    };
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    let keys = data_files(&p).await;
    assert_eq!(
        keys,
        [
            format!("curated/almenpraksis_diagnose/year=2026/month=03/{id}-0.parquet"),
            format!("curated/almenpraksis_diagnose/year=2026/month=04/{id}-0.parquet"),
        ]
    );
    assert_eq!(count(&p, "almenpraksis_diagnose").await, 40);
    let r = receipt(&p, &id).await;
    assert_eq!(r.rows.accepted, 40);
    assert_eq!(r.state, "accepted");
    // The CPR column is gone; the person columns are there.
    let b = catalog::query(
        &p,
        "SELECT count(DISTINCT person_id), min(cpr_status), min(sex) FROM almenpraksis_diagnose",
    )
    .await
    .unwrap();
    assert_eq!(b[0].num_columns(), 3);
    assert!(
        catalog::query(&p, "SELECT cpr FROM almenpraksis_diagnose")
            .await
            .is_err()
    );
    // A repeated process message changes nothing.
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::AlreadyFinal(DeliveryState::Accepted)
    );
    // The same notification again: known, nothing to do.
    assert!(matches!(
        receive::receive(&p, "almenpraksis/diagnose/2026-06-01/a.csv", None)
            .await
            .unwrap(),
        Received::Known(..)
    ));
    assert_eq!(count(&p, "almenpraksis_diagnose").await, 40);
}

#[tokio::test]
async fn identical_file_again_is_a_duplicate_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let body = rows(0..10, 3);
    let Received::ToProcess(id) =
        deliver(&p, "almenpraksis/diagnose/2026-06-01/a.csv", &body).await
    else {
        panic!()
    };
    process::process(&p, &id).await.unwrap();
    let before = data_files(&p).await;
    match deliver(&p, "almenpraksis/diagnose/2026-06-02/a-again.csv", &body).await {
        Received::Duplicate { delivery_id, of } => {
            assert_eq!(of, id);
            let d = p.ledger.get(&delivery_id).await.unwrap().unwrap();
            assert_eq!(d.state, DeliveryState::Duplicate);
            assert_eq!(
                receipt(&p, &delivery_id).await.duplicate_of.as_deref(),
                Some(id.as_str())
            );
        }
        other => panic!("expected duplicate, got {other:?}"),
    }
    assert_eq!(data_files(&p).await, before);
}

#[tokio::test]
async fn rejected_delivery_adds_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let good = rows(0..10, 3);
    let Received::ToProcess(g) =
        deliver(&p, "almenpraksis/diagnose/2026-06-01/good.csv", &good).await
    else {
        panic!()
    };
    process::process(&p, &g).await.unwrap();
    // Every row has an unknown code: far above the threshold.
    let bad = rows(100..110, 3).replace(";T90;", ";X99;");
    let Received::ToProcess(b) =
        deliver(&p, "almenpraksis/diagnose/2026-06-02/bad.csv", &bad).await
    else {
        panic!()
    };
    assert_eq!(
        process::process(&p, &b).await.unwrap(),
        Processed::Done(DeliveryState::Rejected)
    );
    assert!(data_files(&p).await.iter().all(|k| !k.contains(&b)));
    assert_eq!(count(&p, "almenpraksis_diagnose").await, 10);
    let r = receipt(&p, &b).await;
    assert_eq!(r.rows.accepted, 0);
    assert_eq!(r.rows.rejected, 10);
    assert!(r.reason.unwrap().contains("threshold"));
    // The quarantine points at lines, with no values from the CPR column.
    let d = p.ledger.get(&b).await.unwrap().unwrap();
    let q = r.quarantine.expect("quarantine key");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut p.stores.quarantine.open(&q).await.unwrap(), &mut text)
        .unwrap();
    assert_eq!(text.lines().count(), 10);
    assert!(!text.contains("0385-40"));
    // The raw file is untouched.
    assert_eq!(d.size as usize, bad.len());
}

#[tokio::test]
async fn unroutable_keys_and_unknown_datasets_get_rejected_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    assert!(matches!(
        deliver(&p, "stray-file.csv", "x").await,
        Received::Unroutable(_)
    ));
    let Received::ToProcess(id) = deliver(&p, "almenpraksis/ukendt/2026-06-01/a.csv", "x\n").await
    else {
        panic!()
    };
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(DeliveryState::Rejected)
    );
    assert!(
        receipt(&p, &id)
            .await
            .reason
            .unwrap()
            .contains("no contract")
    );
}

/// Fails the Nth `put_file` and the first `failing_puts` calls of `put`; everything
/// else goes to the real store.
struct FailNthPut {
    inner: Arc<dyn ObjectStore>,
    n: usize,
    seen: AtomicUsize,
    failing_puts: AtomicUsize,
}

#[async_trait]
impl ObjectStore for FailNthPut {
    async fn open(&self, key: &str) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
        self.inner.open(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let left = self.failing_puts.load(Ordering::SeqCst);
        if left > 0 {
            self.failing_puts.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::backend("put", key, "injected fault"));
        }
        self.inner.put(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            return Err(StoreError::backend("put", key, "injected fault"));
        }
        self.inner.put_file(key, path).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
    fn engine_store(&self) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.inner.engine_store()
    }
}

#[tokio::test]
async fn a_fault_after_some_objects_then_a_retry_gives_exactly_a_clean_run() {
    let mut body = rows(0..20, 1);
    for m in 2..=5 {
        body.push_str(&rows(m * 100..m * 100 + 20, m as u32)[HEADER.len()..]);
    }
    // The clean run.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = platform(clean_dir.path());
    let Received::ToProcess(id) =
        deliver(&clean, "almenpraksis/diagnose/2026-06-01/a.csv", &body).await
    else {
        panic!()
    };
    process::process(&clean, &id).await.unwrap();
    let clean_keys = data_files(&clean).await;
    assert_eq!(clean_keys.len(), 5);

    // The faulty run: the third lake upload fails.
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    let real_lake = p.stores.lake.clone();
    p.stores.lake = Arc::new(FailNthPut {
        inner: real_lake.clone(),
        n: 3,
        seen: AtomicUsize::new(0),
        failing_puts: AtomicUsize::new(0),
    });
    let Received::ToProcess(id2) =
        deliver(&p, "almenpraksis/diagnose/2026-06-01/a.csv", &body).await
    else {
        panic!()
    };
    assert_eq!(id, id2, "the delivery id depends only on key and content");
    assert!(process::process(&p, &id2).await.is_err());
    let d = p.ledger.get(&id2).await.unwrap().unwrap();
    assert_eq!(d.state, DeliveryState::Failed);
    assert!(d.outcome.message.unwrap().contains("injected fault"));
    assert_eq!(
        data_files(&p).await.len(),
        2,
        "two objects made it before the fault"
    );

    // Retry (replay) with a healthy store.
    p.stores.lake = real_lake;
    assert_eq!(
        process::process(&p, &id2).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    assert_eq!(data_files(&p).await, clean_keys);
    assert_eq!(count(&p, "almenpraksis_diagnose").await, 100);
    for k in &clean_keys {
        let a = std::fs::read(clean.stores.lake.locate(k)).unwrap();
        let b = std::fs::read(p.stores.lake.locate(k)).unwrap();
        assert_eq!(a, b, "{k} differs from the clean run");
    }
}

/// A minimal gateway bundle: a citizen with one planned nursing intervention.
fn gateway_bundle(bundle_id: &str, updated: &str, status: &str) -> String {
    serde_json::json!({
        "resourceType": "Bundle", "id": bundle_id, "type": "collection", "timestamp": updated,
        "entry": [
            {"fullUrl": "Patient/p1", "resource": {"resourceType": "Patient", "id": "p1",
                "meta": {"lastUpdated": updated},
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "6703854001"}],
                "managingOrganization": {"identifier": {"system": "urn:oid:1.2.208.176.1.1", "value": "990101000000000"}}}},
            {"fullUrl": "CarePlan/cp1", "resource": {"resourceType": "CarePlan", "id": "cp1",
                "meta": {"lastUpdated": updated}, "status": status, "intent": "plan",
                "subject": {"reference": "Patient/p1"}, "period": {"start": "2026-10-01"},
                "activity": [{"detail": {"code": {"coding": [{"system": "urn:oid:1.2.208.176.2.21", "code": "G1.20"}]},
                    "status": if status == "active" { "in-progress" } else { status }}}]}}
        ]
    })
    .to_string()
        + "\n"
}

#[tokio::test]
async fn a_later_gateway_update_is_a_newer_version_of_the_same_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    // Delivered no later than tomorrow: the platform's day is after the reports'.
    p.clock = Arc::new(naerdata::ports::FixedClock(
        "2026-10-05T12:00:00Z".parse().unwrap(),
    ));
    for (day, body) in [
        (
            "2026-10-01",
            gateway_bundle("b1", "2026-10-01T10:00:00+02:00", "active"),
        ),
        (
            "2026-10-03",
            gateway_bundle("b2", "2026-10-03T10:00:00+02:00", "entered-in-error"),
        ),
    ] {
        let key = format!("kommune/gateway/{day}/gw.ndjson");
        let Received::ToProcess(id) = deliver(&p, &key, &body).await else {
            panic!()
        };
        assert_eq!(
            process::process(&p, &id).await.unwrap(),
            Processed::Done(DeliveryState::Accepted)
        );
    }
    let b = catalog::query(
        &p,
        "SELECT record_key, count(*) AS versions, count(DISTINCT record_version) AS distinct_versions, \
         max(CASE WHEN entered_in_error THEN record_version END) = max(record_version) AS latest_is_error \
         FROM kommune_indsats GROUP BY record_key",
    )
    .await
    .unwrap();
    let shown = arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(
        shown.contains("| cp1        | 2        | 2                 | true            |"),
        "{shown}"
    );
    assert_eq!(count(&p, "kommune_gateway").await, 2);
    assert_eq!(count(&p, "kommune_borger").await, 2);
}

#[tokio::test]
async fn a_large_gateway_delivery_stages_every_table_apart() {
    // More bundles than a writer buffers, so several tables stage to disk at once.
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    p.clock = Arc::new(naerdata::ports::FixedClock(
        "2026-10-05T12:00:00Z".parse().unwrap(),
    ));
    let file = dir.path().join("in.ndjson");
    naerdata::generate::bench_gateway_file(&file, 9_000, 1).unwrap();
    let key = "kommune/gateway/2026-10-02/big.ndjson";
    p.stores.landing.put_file(key, &file).await.unwrap();
    let Received::ToProcess(id) = receive::receive(&p, key, None).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    assert_eq!(count(&p, "kommune_gateway").await, 9_000);
    assert_eq!(count(&p, "kommune_borger").await, 9_000);
    assert_eq!(count(&p, "kommune_indsats").await, 9_000);
}

#[tokio::test]
async fn a_receive_that_dies_before_the_receipt_writes_it_on_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    let real_receipts = p.stores.receipts.clone();
    let body = rows(0..5, 1);
    deliver(&p, "almenpraksis/diagnose/2026-06-01/a.csv", &body).await;
    let failing = |n| {
        Arc::new(FailNthPut {
            inner: real_receipts.clone(),
            n: 0,
            seen: AtomicUsize::new(0),
            failing_puts: AtomicUsize::new(n),
        })
    };
    let receipt_of = |p: &Platform, id: &str| {
        let p = p.clone();
        let id = id.to_string();
        async move {
            let d = p.ledger.get(&id).await.unwrap().unwrap();
            let bytes = std::fs::read(p.stores.receipts.locate(&d.receipt_key())).ok();
            (d, bytes)
        }
    };
    for key in [
        "stray.csv",
        "almenpraksis/diagnose/2026-06-02/same-bytes.csv",
    ] {
        p.stores
            .landing
            .put(key, Bytes::from(body.clone()))
            .await
            .unwrap();
        p.stores.receipts = failing(1);
        assert!(receive::receive(&p, key, None).await.is_err(), "{key}");
        // The SQS retry of the same notification.
        let again = receive::receive(&p, key, None).await.unwrap();
        let id = match &again {
            Received::Unroutable(id) => id.clone(),
            Received::Duplicate { delivery_id, .. } => delivery_id.clone(),
            other => panic!("{key}: {other:?}"),
        };
        let (d, receipt) = receipt_of(&p, &id).await;
        let receipt: Receipt = serde_json::from_slice(&receipt.expect("a receipt")).unwrap();
        assert!(
            matches!(d.state, DeliveryState::Rejected | DeliveryState::Duplicate),
            "{key}: {}",
            d.state
        );
        assert_eq!(receipt.state, d.state.as_str(), "{key}");
    }
}

/// A delivery left in `processing` by a worker that is gone: shown as stuck, and
/// finished by the next attempt — at once when the process that held it has ended
/// (embedded), after the lease otherwise. A live claim is left alone.
#[tokio::test]
async fn a_delivery_stuck_in_processing_is_shown_and_finished() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let id = deliver_new(&p, "almenpraksis/diagnose/2026-06-01/a.csv", &rows(0..5, 5)).await;
    let now = p.clock.now();
    assert!(
        p.ledger
            .transition(
                &id,
                &[DeliveryState::Received],
                DeliveryState::Processing,
                now,
                None
            )
            .await
            .unwrap()
    );
    // This process holds the claim and runs: another attempt must not take it.
    assert_eq!(process::process(&p, &id).await.unwrap(), Processed::Busy);
    let as_of = now.date_naive();
    assert!(
        naerdata::monitor::observe(&p, as_of)
            .await
            .unwrap()
            .stuck
            .is_empty()
    );

    // Past the lease, even a live holder's claim is stale (a hung worker).
    let mut later = p.clone();
    later.clock = std::sync::Arc::new(naerdata::ports::FixedClock(
        now + naerdata::process::PROCESSING_LEASE + chrono::Duration::minutes(1),
    ));
    let d = p.ledger.get(&id).await.unwrap().unwrap();
    assert!(naerdata::process::claim_is_stale(&later, &d).await.unwrap());

    // The process that held it ended (killed mid-delivery): stuck at once.
    rusqlite::Connection::open(dir.path().join("ledger.sqlite"))
        .unwrap()
        .execute("UPDATE claims SET pid = 4194303999", [])
        .unwrap();
    let m = naerdata::monitor::observe(&p, as_of).await.unwrap();
    assert_eq!(
        m.stuck
            .iter()
            .map(|d| d.delivery_id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
    let (_, page) = naerdata::monitor::run_and_page(&p, as_of, naerdata::report::Mode::Local, &[])
        .await
        .unwrap();
    assert!(
        page.contains(&format!("naerdata replay {id}")),
        "the page says how to finish it"
    );
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    let d = p.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(d.attempts, 2);
    assert_eq!(count(&p, "almenpraksis_diagnose").await, 5);
}

/// "Duplicate" means already accepted: the same bytes as a rejected delivery are
/// processed again (today's contract decides) and get a receipt of their own.
#[tokio::test]
async fn the_same_file_as_a_rejected_delivery_is_processed_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let bad = "hello;world\n1;2\n";
    let first = deliver_new(&p, "almenpraksis/diagnose/2026-06-01/a.csv", bad).await;
    assert_eq!(
        process::process(&p, &first).await.unwrap(),
        Processed::Done(DeliveryState::Rejected)
    );
    let again = match deliver(&p, "almenpraksis/diagnose/2026-06-02/a.csv", bad).await {
        Received::ToProcess(id) => id,
        other => panic!("expected a new delivery, got {other:?}"),
    };
    assert_eq!(
        process::process(&p, &again).await.unwrap(),
        Processed::Done(DeliveryState::Rejected)
    );
    let r = receipt(&p, &again).await;
    assert_eq!(r.state, "rejected");
    assert!(r.duplicate_of.is_none());
    // An accepted file sent again is still a duplicate.
    let good = rows(0..3, 5);
    let ok = deliver_new(&p, "almenpraksis/diagnose/2026-06-01/b.csv", &good).await;
    process::process(&p, &ok).await.unwrap();
    assert!(matches!(
        deliver(&p, "almenpraksis/diagnose/2026-06-02/b.csv", &good).await,
        Received::Duplicate { .. }
    ));
}

/// The delivery day in the key is bounded: no later than tomorrow, no earlier than
/// the contract allows (9999-12-31 would open a lake partition per month).
#[tokio::test]
async fn a_delivery_day_out_of_range_is_rejected_unread() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    for (day, why) in [
        ("9999-12-31", "after tomorrow"),
        ("2026-06-03", "after tomorrow"),
        ("1999-12-31", "earliestDeliveryDay"),
    ] {
        let key = format!("almenpraksis/diagnose/{day}/a.csv");
        let Received::Unroutable(id) = deliver(&p, &key, &rows(0..2, 5)).await else {
            panic!("{day} was taken")
        };
        let r = receipt(&p, &id).await;
        assert_eq!(r.state, "rejected");
        assert!(
            r.reason.as_deref().unwrap_or("").contains(why),
            "{day}: {r:?}"
        );
    }
    // Tomorrow is fine (a supplier ahead of UTC).
    deliver_new(&p, "almenpraksis/diagnose/2026-06-02/a.csv", &rows(0..2, 5)).await;
}
