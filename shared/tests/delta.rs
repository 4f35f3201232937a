//! The lake as Delta tables on the embedded platform: a delivery is visible only after
//! its commit, a retry never appends twice, retraction, compaction, retention, purge
//! and migration keep what readers see exact.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use naerdata::Platform;
use naerdata::catalog;
use naerdata::lake::delta;
use naerdata::ledger::DeliveryState;
use naerdata::maintain::{self, MaintainOptions, PurgeTarget};
use naerdata::ports::{FixedClock, ObjectMeta, ObjectStore, StoreError};
use naerdata::process::{self, Processed};
use naerdata::quality::store::METRICS_PREFIX;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::support::*;

const TABLE: &str = "almenpraksis_diagnose";

// ---------------------------------------------------------------------------
// Fault injection at every write to the lake: through the port (data files, metrics)
// and through delta-rs (table creation, commits).

/// Counts the lake's writes in order and fails the one numbered `fail_at`.
#[derive(Default)]
struct Faults {
    fail_at: AtomicUsize,
    seen: AtomicUsize,
    trace: Mutex<Vec<String>>,
    /// Set: the next commit entry written to a curated table is then replaced by
    /// another writer's, as a store whose conditional put is not atomic allows.
    hijack: std::sync::atomic::AtomicBool,
}

impl Faults {
    fn hit(&self, what: &str) -> Result<(), String> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        self.trace.lock().unwrap().push(what.to_string());
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(format!("injected fault at write {n} ({what})"));
        }
        Ok(())
    }

    fn heal(&self) {
        self.fail_at.store(0, Ordering::SeqCst);
    }
}

struct FaultyLake {
    inner: Arc<dyn ObjectStore>,
    engine: Arc<dyn object_store::ObjectStore>,
    faults: Arc<Faults>,
}

#[async_trait]
impl ObjectStore for FaultyLake {
    async fn open(&self, key: &str) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
        self.inner.open(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.faults
            .hit(key)
            .map_err(|m| StoreError::backend("put", key, m))?;
        self.inner.put(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.faults
            .hit(key)
            .map_err(|m| StoreError::backend("put", key, m))?;
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
        Some(self.engine.clone())
    }
}

/// The local file system as delta-rs sees it, with the same fault counter.
#[derive(Debug)]
struct FaultyEngine {
    inner: Arc<dyn object_store::ObjectStore>,
    faults: Arc<Faults>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Faults")
    }
}

impl fmt::Display for FaultyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyEngine({})", self.inner)
    }
}

impl FaultyEngine {
    fn hit(&self, location: &StorePath) -> object_store::Result<()> {
        self.faults
            .hit(location.as_ref())
            .map_err(|m| object_store::Error::Generic {
                store: "faulty",
                source: m.into(),
            })
    }
}

#[async_trait]
impl object_store::ObjectStore for FaultyEngine {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.hit(location)?;
        let done = self.inner.put_opts(location, payload, opts).await?;
        let path = location.as_ref();
        if path.contains("/curated/")
            && path.contains("/_delta_log/")
            && path.ends_with(".json")
            && self.faults.hijack.swap(false, Ordering::SeqCst)
        {
            let other = "{\"commitInfo\":{\"timestamp\":0,\"operation\":\"WRITE\",\"operationParameters\":{\"mode\":\"Append\"}}}\n\
                         {\"txn\":{\"appId\":\"naerdata.delivery.another-writer\",\"version\":1}}\n";
            self.inner
                .put_opts(
                    location,
                    PutPayload::from(other.as_bytes().to_vec()),
                    PutOptions::default(),
                )
                .await?;
        }
        Ok(done)
    }
    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.hit(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &StorePath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.hit(to)?;
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.hit(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

fn faulty(dir: &Path) -> (Platform, Arc<Faults>) {
    let mut p = platform(dir);
    let faults = Arc::new(Faults::default());
    p.stores.lake = Arc::new(FaultyLake {
        inner: p.stores.lake.clone(),
        engine: Arc::new(FaultyEngine {
            inner: Arc::new(object_store::local::LocalFileSystem::new()),
            faults: faults.clone(),
        }),
        faults: faults.clone(),
    });
    (p, faults)
}

/// Commits of a table that carry the delivery id (its WRITE commits).
async fn commits_of(p: &Platform, prefix: &str, id: &str) -> usize {
    let Some(t) = delta::open(p.stores.lake.as_ref(), prefix, None)
        .await
        .unwrap()
    else {
        return 0;
    };
    let mut n = 0;
    let mut history = t.history(None);
    while let Some(c) = futures::StreamExt::next(&mut history).await {
        let c = c.unwrap();
        if c.info.get("naerdata.delivery_id").and_then(|v| v.as_str()) == Some(id) {
            n += 1;
        }
    }
    n
}

fn three_months() -> String {
    rows_in_months(0..60, &[3, 4, 5])
}

#[tokio::test]
async fn a_fault_at_any_write_leaves_nothing_visible_before_the_commit_and_the_retry_commits_once()
{
    let key = "almenpraksis/diagnose/2026-06-01/a.csv";
    // The trace of a fault-free run enumerates the write points.
    let dir = tempfile::tempdir().unwrap();
    let (p, faults) = faulty(dir.path());
    let id = deliver_new(&p, key, &three_months()).await;
    faults.seen.store(0, Ordering::SeqCst);
    faults.trace.lock().unwrap().clear();
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    let trace = faults.trace.lock().unwrap().clone();
    let data_commit = trace
        .iter()
        .position(|w| w.contains(&format!("{TABLE}/_delta_log/00000000000000000001.json")))
        .unwrap_or_else(|| panic!("no data commit in the trace {trace:#?}"));
    assert!(
        trace[..data_commit]
            .iter()
            .filter(|w| w.ends_with(".parquet"))
            .count()
            == 3,
        "three data files are written before the commit: {trace:#?}"
    );
    let clean_rows = count(&p, TABLE).await;
    assert_eq!(clean_rows, 60);

    for at in 1..=trace.len() {
        let dir = tempfile::tempdir().unwrap();
        let (p, faults) = faulty(dir.path());
        let id = deliver_new(&p, key, &three_months()).await;
        faults.seen.store(0, Ordering::SeqCst);
        faults.fail_at.store(at, Ordering::SeqCst);
        let what = &trace[at - 1];
        assert!(
            process::process(&p, &id).await.is_err(),
            "a fault at write {at} ({what}) was not reported"
        );
        assert_eq!(
            p.ledger.get(&id).await.unwrap().unwrap().state,
            DeliveryState::Failed
        );
        if at <= data_commit {
            assert_eq!(
                count(&p, TABLE).await,
                0,
                "rows visible after a fault at {what}"
            );
        }
        faults.heal();
        assert_eq!(
            process::process(&p, &id).await.unwrap(),
            Processed::Done(DeliveryState::Accepted),
            "the retry after a fault at {what}"
        );
        assert_eq!(
            count(&p, TABLE).await,
            clean_rows,
            "after a fault at {what}"
        );
        assert_eq!(
            commits_of(&p, &format!("curated/{TABLE}/"), &id).await,
            1,
            "{what}"
        );
        assert_eq!(commits_of(&p, METRICS_PREFIX, &id).await, 1, "{what}");
    }
}

#[tokio::test]
async fn a_retry_after_the_commit_does_not_append_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let id = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &three_months(),
    )
    .await;
    process::process(&p, &id).await.unwrap();
    // The worker died after its commits, before the ledger moved: the lease expires
    // and another worker takes the delivery over.
    p.ledger
        .transition(
            &id,
            &[DeliveryState::Accepted],
            DeliveryState::Failed,
            p.clock.now(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    assert_eq!(count(&p, TABLE).await, 60);
    assert_eq!(commits_of(&p, &format!("curated/{TABLE}/"), &id).await, 1);
}

/// A store whose conditional put is not atomic (moto's check-then-write under load,
/// some S3-compatible stores) can let a second writer of the same log version replace
/// the first's entry after both were told they won. The commit reads its entry back:
/// the delivery fails instead of being reported accepted with its files unreferenced,
/// and its retry commits them.
#[tokio::test]
async fn a_commit_whose_log_entry_another_writer_replaced_fails_and_its_retry_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (p, faults) = faulty(dir.path());
    let a = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &three_months(),
    )
    .await;
    process::process(&p, &a).await.unwrap();
    faults.hijack.store(true, Ordering::SeqCst);
    let b = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-02/b.csv",
        &rows(500..520, 5),
    )
    .await;
    let e = process::process(&p, &b).await.unwrap_err().to_string();
    assert!(e.contains("not this delivery's commit"), "{e}");
    assert!(
        !faults.hijack.load(Ordering::SeqCst),
        "the entry was replaced"
    );
    assert_eq!(count(&p, TABLE).await, 60, "nothing of b is visible yet");
    assert_eq!(
        process::process(&p, &b).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    assert_eq!(count(&p, TABLE).await, 80);
    assert_eq!(commits_of(&p, &format!("curated/{TABLE}/"), &b).await, 1);
}

// ---------------------------------------------------------------------------
// Retraction.

/// Rows of a Delta table under `prefix` with `delivery_id = id`.
async fn rows_of(p: &Platform, prefix: &str, id: &str) -> usize {
    let Some(t) = delta::open(p.stores.lake.as_ref(), prefix, None)
        .await
        .unwrap()
    else {
        return 0;
    };
    let ctx = datafusion::prelude::SessionContext::new();
    t.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", t.table_provider().await.unwrap())
        .unwrap();
    let b = ctx
        .sql(&format!("SELECT * FROM t WHERE delivery_id = '{id}'"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    b.iter().map(RecordBatch::num_rows).sum()
}

async fn presentation_rows(p: &Platform, name: &str) -> usize {
    naerdata::publish::published_batches(p, "current", name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name} was not published"))
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

#[tokio::test]
async fn a_retracted_delivery_leaves_every_table_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let a = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &rows(0..30, 3),
    )
    .await;
    process::process(&p, &a).await.unwrap();
    let b = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-02/b.csv",
        &rows(100..110, 4),
    )
    .await;
    process::process(&p, &b).await.unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 2).unwrap();
    naerdata::publish::publish(&p, day).await.unwrap();
    assert_eq!(presentation_rows(&p, &format!("{TABLE}_current")).await, 40);
    assert!(rows_of(&p, METRICS_PREFIX, &a).await > 0);

    let r = naerdata::retract::retract(&p, &a, "sent the wrong clinic's file")
        .await
        .unwrap();
    assert_eq!(r.delivery.state, DeliveryState::Retracted);
    assert_eq!(r.rows_deleted.get(TABLE), Some(&30));
    assert!(r.rows_deleted.contains_key("quality_metrics"));
    assert_eq!(count(&p, TABLE).await, 10);
    assert_eq!(rows_of(&p, &format!("curated/{TABLE}/"), &a).await, 0);
    assert_eq!(rows_of(&p, METRICS_PREFIX, &a).await, 0);
    assert!(
        rows_of(&p, METRICS_PREFIX, &b).await > 0,
        "other deliveries stay"
    );
    let r = receipt(&p, &a).await;
    assert_eq!(r.state, "retracted");
    let why = r.retraction.unwrap();
    assert_eq!(why.reason, "sent the wrong clinic's file");
    assert_eq!(why.rows_deleted.get(TABLE), Some(&30));
    let d = p.ledger.get(&a).await.unwrap().unwrap();
    assert_eq!(
        d.outcome.message.as_deref(),
        Some("sent the wrong clinic's file")
    );

    // The next publication leaves it out.
    naerdata::publish::publish(&p, day).await.unwrap();
    assert_eq!(presentation_rows(&p, &format!("{TABLE}_current")).await, 10);

    // Running it again completes nothing more and keeps the receipt.
    let again = naerdata::retract::retract(&p, &a, "second run")
        .await
        .unwrap();
    assert!(again.rows_deleted.is_empty());
    assert_eq!(
        receipt(&p, &a).await.retraction.unwrap().reason,
        "sent the wrong clinic's file"
    );
    // Only accepted deliveries, and never a reason that holds a CPR number.
    let c = deliver_new(&p, "almenpraksis/diagnose/2026-06-02/c.csv", "nonsense\n").await;
    process::process(&p, &c).await.unwrap();
    assert!(naerdata::retract::retract(&p, &c, "x").await.is_err());
    assert!(
        naerdata::retract::retract(&p, &b, "row of 6103854001 was wrong")
            .await
            .is_err()
    );

    // The same file sent again is a new delivery, processed again.
    let again = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-02/a2.csv",
        &rows(0..30, 3),
    )
    .await;
    assert_eq!(
        process::process(&p, &again).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    assert_eq!(count(&p, TABLE).await, 40);
}

// ---------------------------------------------------------------------------
// Compaction and retention.

/// Every row of the table in a stable order: all columns compared at once.
async fn all_rows(p: &Platform) -> RecordBatch {
    let b = catalog::query(
        p,
        &format!("SELECT * FROM {TABLE} ORDER BY record_key, delivery_id"),
    )
    .await
    .unwrap();
    concat_batches(&b[0].schema(), &b).unwrap()
}

async fn files_per_partition(p: &Platform) -> BTreeMap<String, usize> {
    let t = delta::open(p.stores.lake.as_ref(), &format!("curated/{TABLE}/"), None)
        .await
        .unwrap()
        .unwrap();
    let mut per = BTreeMap::new();
    for path in delta::active_paths(&t).unwrap() {
        let part = path.rsplit_once('/').unwrap().0.to_string();
        *per.entry(part).or_default() += 1;
    }
    per
}

#[tokio::test]
async fn thirty_daily_deliveries_compact_to_one_file_per_partition_with_identical_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    for day in 1..=30u32 {
        let body = rows_in_months(
            day as usize * 1000..day as usize * 1000 + 24,
            &[1, 2, 3, 4, 5, 6],
        );
        // Each day's delivery arrives on its day.
        let mut on_day = p.clone();
        on_day.clock = Arc::new(FixedClock(
            format!("2026-06-{day:02}T08:00:00Z").parse().unwrap(),
        ));
        let id = deliver_new(
            &on_day,
            &format!("almenpraksis/diagnose/2026-06-{day:02}/d.csv"),
            &body,
        )
        .await;
        process::process(&p, &id).await.unwrap();
    }
    let before = files_per_partition(&p).await;
    assert_eq!(before.len(), 6);
    assert!(before.values().all(|&n| n == 30), "{before:?}");
    let rows_before = all_rows(&p).await;
    assert_eq!(rows_before.num_rows(), 720);

    let done = maintain::maintain(&p, &MaintainOptions::default())
        .await
        .unwrap();
    let t = done.iter().find(|t| t.table == TABLE).unwrap();
    assert_eq!(t.files_before, 180);
    let after = files_per_partition(&p).await;
    assert!(after.values().all(|&n| n <= 2), "{after:?}");
    assert_eq!(
        all_rows(&p).await,
        rows_before,
        "compaction changed a value"
    );
    // Within the retention period the replaced files stay (time travel, extracts).
    assert_eq!(
        data_files(&p).await.len(),
        180 + after.values().sum::<usize>()
    );

    // 31 days later they go (delta-rs stamps removals with the real time).
    p.clock = Arc::new(FixedClock(chrono::Utc::now() + chrono::Duration::days(31)));
    let done = maintain::maintain(&p, &MaintainOptions::default())
        .await
        .unwrap();
    assert_eq!(
        done.iter()
            .find(|t| t.table == TABLE)
            .unwrap()
            .files_vacuumed,
        180
    );
    assert_eq!(data_files(&p).await.len(), after.values().sum::<usize>());
    assert_eq!(all_rows(&p).await, rows_before);
}

#[tokio::test]
async fn a_purge_removes_the_rows_and_every_file_of_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let a = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &rows(0..20, 3),
    )
    .await;
    process::process(&p, &a).await.unwrap();
    let b = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-02/b.csv",
        &rows(100..120, 3),
    )
    .await;
    process::process(&p, &b).await.unwrap();
    // Compaction mixes both deliveries into one file; the originals stay in history.
    maintain::maintain(&p, &MaintainOptions::default())
        .await
        .unwrap();

    let r = maintain::purge(&p, &PurgeTarget::Delivery(a.clone()), "consent withdrawn")
        .await
        .unwrap();
    assert_eq!(r.kind, "delivery");
    assert_eq!(count(&p, TABLE).await, 20);
    assert_eq!(
        p.ledger.get(&a).await.unwrap().unwrap().state,
        DeliveryState::Retracted
    );
    // No stored file holds a row of it: not the original, not the compacted one.
    for key in data_files(&p).await {
        let bytes = std::fs::read(p.stores.lake.locate(&key)).unwrap();
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(
                bytes,
            ))
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for batch in batches {
            let ids = arrow::compute::cast(
                batch.column_by_name("delivery_id").unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let ids = ids
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            assert!(
                ids.iter().all(|v| v != Some(a.as_str())),
                "{key} still holds it"
            );
        }
    }
    assert!(r.tables[TABLE].files_removed >= 2, "{:?}", r.tables);
    let records = p.stores.lake.list(maintain::PURGES_PREFIX).await.unwrap();
    assert_eq!(records.len(), 1);

    // A person: named in the record only by a hash of the pseudonym. Published first,
    // so the current table holds the person's rows too, and then (rebuilt by a second
    // publication) in its history.
    let b_rows = catalog::query(&p, &format!("SELECT person_id FROM {TABLE} LIMIT 1"))
        .await
        .unwrap();
    let person = arrow::util::display::array_value_to_string(b_rows[0].column(0), 0).unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
    naerdata::publish::publish(&p, day).await.unwrap();
    naerdata::publish::publish_with(
        &p,
        day,
        naerdata::publish::PublishOptions {
            full: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let current = format!("presentation/current/{TABLE}_current/");
    let holding = |p: &Platform| {
        let (p, current, person) = (p.clone(), current.clone(), person.clone());
        async move {
            let mut n = 0;
            for o in p.stores.lake.list(&current).await.unwrap() {
                let bytes = p.stores.lake.get(&o.key).await.unwrap().unwrap();
                if !naerdata::lake::is_parquet(&bytes) {
                    continue;
                }
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .unwrap()
                        .build()
                        .unwrap();
                for batch in reader {
                    let batch = batch.unwrap();
                    let ids = arrow::compute::cast(
                        batch.column_by_name("person_id").unwrap(),
                        &arrow::datatypes::DataType::Utf8,
                    )
                    .unwrap();
                    let ids = ids
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .unwrap();
                    n += ids.iter().filter(|v| *v == Some(person.as_str())).count();
                }
            }
            n
        }
    };
    assert!(holding(&p).await >= 2, "the current table and its history");
    let r = maintain::purge(&p, &PurgeTarget::Person(person.clone()), "court order")
        .await
        .unwrap();
    assert_eq!(
        holding(&p).await,
        0,
        "no current-table file holds the person"
    );
    // The next publication accounts for the purge: it rebuilds what changed.
    let next = naerdata::publish::publish(&p, day + chrono::Duration::days(1))
        .await
        .unwrap();
    let how = &next
        .current
        .iter()
        .find(|m| m.table == format!("{TABLE}_current"))
        .unwrap()
        .how;
    assert!(
        matches!(how, naerdata::current::How::Rebuilt { .. }),
        "{how:?}"
    );
    assert_eq!(holding(&p).await, 0);
    assert!(
        r.tables.contains_key(&format!("{TABLE}_current")),
        "{:?}",
        r.tables
    );
    assert!(r.target.starts_with("sha256:"));
    assert!(!serde_json::to_string(&r).unwrap().contains(&person));
    let left = catalog::query(
        &p,
        &format!("SELECT count(*) FROM {TABLE} WHERE person_id = '{person}'"),
    )
    .await
    .unwrap();
    assert_eq!(
        arrow::util::display::array_value_to_string(left[0].column(0), 0).unwrap(),
        "0"
    );
}

// ---------------------------------------------------------------------------
// Migration and the readers.

#[tokio::test]
async fn a_parquet_home_from_before_delta_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let a = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &three_months(),
    )
    .await;
    process::process(&p, &a).await.unwrap();
    let b = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-02/b.csv",
        &rows(500..510, 5),
    )
    .await;
    process::process(&p, &b).await.unwrap();
    let rows_before = all_rows(&p).await;
    // What an old home looks like: the same files, no logs.
    for log in [
        format!("curated/{TABLE}/_delta_log"),
        format!("{METRICS_PREFIX}_delta_log"),
    ] {
        std::fs::remove_dir_all(p.stores.lake.locate(&log)).unwrap();
    }
    assert_eq!(count(&p, TABLE).await, 0, "without a log there is no table");

    let m = naerdata::migrate::migrate(&p).await.unwrap();
    let t = m.iter().find(|t| t.table == TABLE).unwrap();
    assert_eq!((t.deliveries, t.files), (2, 4));
    assert!(m.iter().any(|t| t.table == "quality_metrics"));
    assert_eq!(all_rows(&p).await, rows_before);
    assert!(
        naerdata::migrate::migrate(&p).await.unwrap().is_empty(),
        "a second run has nothing to do"
    );
    // The migrated deliveries are known to their tables: a retry appends nothing.
    p.ledger
        .transition(
            &a,
            &[DeliveryState::Accepted],
            DeliveryState::Failed,
            p.clock.now(),
            None,
        )
        .await
        .unwrap();
    process::process(&p, &a).await.unwrap();
    assert_eq!(all_rows(&p).await, rows_before);
}

#[tokio::test]
async fn the_duckdb_catalog_lists_only_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let a = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &three_months(),
    )
    .await;
    process::process(&p, &a).await.unwrap();
    // An uncommitted file (an attempt that died before its commit) is never listed.
    let orphan = format!("curated/{TABLE}/year=2026/month=03/0000000000000000dead-0.parquet");
    p.stores
        .lake
        .put(&orphan, Bytes::from_static(b"PAR1"))
        .await
        .unwrap();
    let sql = catalog::duckdb_catalog(&p).await.unwrap();
    assert!(sql.contains(&format!("{a}-0.parquet")), "{sql}");
    assert!(!sql.contains("dead"), "{sql}");
    assert!(
        sql.contains("CREATE OR REPLACE VIEW quality_metrics"),
        "{sql}"
    );
    assert_eq!(count(&p, TABLE).await, 60);
}

#[tokio::test]
async fn a_record_withdrawn_by_its_supplier_leaves_the_current_table() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let a = deliver_new(
        &p,
        "almenpraksis/diagnose/2026-06-01/a.csv",
        &rows(0..10, 3),
    )
    .await;
    process::process(&p, &a).await.unwrap();
    // The record r3 sent again as it was, a later registration, with tilbagekaldt=true.
    let r3 = rows(3..4, 3)[HEADER.len()..].replace("T10:00:00", "T11:00:00");
    let body = format!(
        "{};tilbagekaldt\n{};true\n",
        HEADER.trim_end(),
        r3.trim_end()
    );
    let b = deliver_new(&p, "almenpraksis/diagnose/2026-06-02/b.csv", &body).await;
    assert_eq!(
        process::process(&p, &b).await.unwrap(),
        Processed::Done(DeliveryState::Accepted)
    );
    assert_eq!(count(&p, TABLE).await, 11, "history keeps both versions");
    naerdata::publish::publish(&p, chrono::NaiveDate::from_ymd_opt(2026, 6, 2).unwrap())
        .await
        .unwrap();
    assert_eq!(presentation_rows(&p, &format!("{TABLE}_current")).await, 9);
}
