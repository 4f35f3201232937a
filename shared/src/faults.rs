//! Fault injection for the reliability campaign (`make chaos`, and a reduced run in
//! `make test`): wrappers around the object-store and ledger ports that number every
//! write, keep the trace of a fault-free run (so the write points are enumerated,
//! not picked by hand), and fail the N-th write — once (an error the step sees and
//! handles), or from then on (a crash: the worker is gone, nothing it would still
//! write arrives; the delivery is left where the last write put it).
//!
//! Reads always pass: a fault is a write that did not happen.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use crate::ledger::{Delivery, DeliveryState, NewDelivery, Outcome, Registration};
use crate::ports::{Ledger, LedgerError, ObjectMeta, ObjectStore, Queue, QueueError, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The write fails once; the step goes on (and records what it can).
    Error,
    /// The write and every later one fail: the worker died at that point.
    Crash,
}

/// The plan of one run: which write fails, and the trace of every write seen.
#[derive(Debug, Default)]
pub struct Faults {
    writes: AtomicUsize,
    at: Option<(usize, Mode)>,
    crashed: AtomicBool,
    fired: AtomicBool,
    trace: Mutex<Vec<String>>,
}

impl Faults {
    /// No fault: a run that only records its trace.
    pub fn none() -> Arc<Self> {
        Arc::new(Faults::default())
    }

    /// The `n`-th write (0-based) fails as `mode` says.
    pub fn at(n: usize, mode: Mode) -> Arc<Self> {
        Arc::new(Faults {
            at: Some((n, mode)),
            ..Faults::default()
        })
    }

    /// Every write seen, in order (`<store> <op> <key>`).
    pub fn trace(&self) -> Vec<String> {
        self.trace.lock().expect("trace").clone()
    }

    /// Whether the planned fault happened.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Whether the worker has crashed (a planned crash fired): it takes no more work.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    fn write(&self, what: impl FnOnce() -> String) -> Result<(), String> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err("the worker crashed before this write".into());
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        self.trace.lock().expect("trace").push(what());
        match self.at {
            Some((at, mode)) if at == n => {
                self.fired.store(true, Ordering::SeqCst);
                if mode == Mode::Crash {
                    self.crashed.store(true, Ordering::SeqCst);
                }
                Err(format!("injected fault at write {n}"))
            }
            _ => Ok(()),
        }
    }
}

/// An object store whose writes go through a fault plan.
pub struct FaultyStore {
    pub inner: Arc<dyn ObjectStore>,
    pub name: &'static str,
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        self.faults
            .write(|| format!("{} {op} {key}", self.name))
            .map_err(|m| StoreError::backend(op, key, m))
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn open(&self, key: &str) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
        self.inner.open(key).await
    }
    async fn open_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
        self.inner.open_version(key, version).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.check("put", key)?;
        self.inner.put(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.check("put", key)?;
        self.inner.put_file(key, path).await
    }
    async fn put_owned_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.check("put", key)?;
        self.inner.put_owned_file(key, path).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }
    async fn delete_all_versions(&self, key: &str) -> Result<(), StoreError> {
        self.check("delete", key)?;
        self.inner.delete_all_versions(key).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
    /// The same store as the engines (delta-rs commits, DataFusion reads) see it,
    /// behind the same plan: a Delta commit is a write point like any other. A local
    /// lake has no engine store of its own (delta-rs opens its paths itself), so one
    /// rooted at `/` stands in for it.
    fn engine_store(&self) -> Option<Arc<dyn object_store::ObjectStore>> {
        let inner = self
            .inner
            .engine_store()
            .unwrap_or_else(|| Arc::new(object_store::local::LocalFileSystem::new()));
        Some(Arc::new(FaultyEngine {
            inner,
            name: self.name,
            faults: self.faults.clone(),
        }))
    }
}

/// An `object_store` store whose writes (puts, multipart parts and completions,
/// copies, renames, deletes) go through a fault plan.
#[derive(Debug)]
pub struct FaultyEngine {
    inner: Arc<dyn object_store::ObjectStore>,
    name: &'static str,
    faults: Arc<Faults>,
}

impl std::fmt::Display for FaultyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn engine_fault(faults: &Faults, what: impl FnOnce() -> String) -> object_store::Result<()> {
    faults
        .write(what)
        .map_err(|m| object_store::Error::Generic {
            store: "faulty",
            source: m.into(),
        })
}

impl FaultyEngine {
    fn check(&self, op: &str, path: &object_store::path::Path) -> object_store::Result<()> {
        engine_fault(&self.faults, || format!("{} engine {op} {path}", self.name))
    }
}

#[async_trait]
impl object_store::ObjectStore for FaultyEngine {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.check("put", location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.check("multipart", location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            what: format!("{} engine part {location}", self.name),
            faults: self.faults.clone(),
        }))
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &object_store::path::Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        use futures::StreamExt;
        let (faults, name) = (self.faults.clone(), self.name);
        let checked = locations
            .map(move |p| {
                let p = p?;
                engine_fault(&faults, || format!("{name} engine delete {p}"))?;
                Ok(p)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&object_store::path::Path>,
        offset: &object_store::path::Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.check("copy", to)?;
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.check("rename", to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose every part and completion is a write point.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn object_store::MultipartUpload>,
    what: String,
    faults: Arc<Faults>,
}

#[async_trait]
impl object_store::MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        match engine_fault(&self.faults, || self.what.clone()) {
            Ok(()) => self.inner.put_part(data),
            Err(e) => Box::pin(futures::future::ready(Err(e))),
        }
    }
    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        engine_fault(&self.faults, || format!("{} complete", self.what))?;
        self.inner.complete().await
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// A ledger whose state changes go through a fault plan.
pub struct FaultyLedger {
    pub inner: Arc<dyn Ledger>,
    pub faults: Arc<Faults>,
}

impl FaultyLedger {
    fn check(&self, what: impl FnOnce() -> String) -> Result<(), LedgerError> {
        self.faults.write(what).map_err(LedgerError::Backend)
    }
}

#[async_trait]
impl Ledger for FaultyLedger {
    async fn register(&self, d: &NewDelivery) -> Result<Registration, LedgerError> {
        self.check(|| format!("ledger register {}", d.object_key))?;
        self.inner.register(d).await
    }
    async fn get(&self, id: &str) -> Result<Option<Delivery>, LedgerError> {
        self.inner.get(id).await
    }
    async fn transition(
        &self,
        id: &str,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
        outcome: Option<&Outcome>,
    ) -> Result<bool, LedgerError> {
        self.check(|| format!("ledger transition {id} -> {to}"))?;
        self.inner.transition(id, from, to, at, outcome).await
    }
    async fn take_over(
        &self,
        id: &str,
        read_updated_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        self.check(|| format!("ledger take-over {id}"))?;
        self.inner.take_over(id, read_updated_at, at).await
    }
    async fn claim_abandoned(&self, id: &str) -> Result<bool, LedgerError> {
        self.inner.claim_abandoned(id).await
    }
    async fn retract(
        &self,
        id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        self.check(|| format!("ledger retract {id}"))?;
        self.inner.retract(id, reason, at).await
    }
    async fn list(
        &self,
        dataset: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        self.inner.list(dataset, limit).await
    }
    async fn received_on(
        &self,
        dataset: &str,
        day: NaiveDate,
    ) -> Result<Vec<Delivery>, LedgerError> {
        self.inner.received_on(dataset, day).await
    }
}

/// `p` with its lake, receipts and quarantine stores and its ledger behind `faults`
/// (landing is the suppliers' side: what they uploaded is there).
pub fn platform(p: &crate::Platform, faults: &Arc<Faults>) -> crate::Platform {
    let mut f = p.clone();
    let wrap = |inner: &Arc<dyn ObjectStore>, name| -> Arc<dyn ObjectStore> {
        Arc::new(FaultyStore {
            inner: inner.clone(),
            name,
            faults: faults.clone(),
        })
    };
    f.stores.lake = wrap(&p.stores.lake, "lake");
    f.stores.receipts = wrap(&p.stores.receipts, "receipts");
    f.stores.quarantine = wrap(&p.stores.quarantine, "quarantine");
    f.ledger = Arc::new(FaultyLedger {
        inner: p.ledger.clone(),
        faults: faults.clone(),
    });
    f
}

/// A queue whose sends go through a fault plan (a send that fails is a message the
/// next step never gets: the sender must fail its own message so it is retried).
pub struct FaultyQueue {
    pub inner: Arc<dyn Queue>,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        self.faults
            .write(|| format!("queue send {body}"))
            .map_err(|message| QueueError {
                op: "send",
                queue: "faulty".into(),
                message,
            })?;
        self.inner.send(body, attributes).await
    }
    async fn depth(&self) -> Result<u64, QueueError> {
        self.inner.depth().await
    }
}

/// What must come out of a workload the same whatever failed on the way: the
/// reliability harnesses (embedded and on moto) compare it with a fault-free run.
#[cfg(feature = "analytics")]
#[derive(Debug, PartialEq, Eq)]
pub struct Settled {
    /// Deliveries per final state (which copy of identical content is the accepted one
    /// may differ: after a failure the copy is processed and the original superseded).
    pub states: std::collections::BTreeMap<String, usize>,
    /// Per curated table, every row's record key and version, sorted: the lake.
    pub rows: std::collections::BTreeMap<String, Vec<String>>,
    /// Receipts per outcome and state.
    pub receipts: std::collections::BTreeMap<String, usize>,
    /// The presentation zone's files.
    pub presentation: Vec<String>,
}

#[cfg(feature = "analytics")]
impl Settled {
    /// Reads the outcome of `p` after a workload; panics (this is a test harness) on a
    /// delivery left unfinished or a missing receipt.
    pub async fn of(p: &crate::Platform, tables: &[&str]) -> Settled {
        use std::collections::BTreeMap;
        let mut states = BTreeMap::new();
        let mut receipts = BTreeMap::new();
        for d in p.ledger.list(None, 10_000).await.expect("ledger") {
            assert!(d.state.is_final(), "{} left in {}", d.delivery_id, d.state);
            *states.entry(d.state.to_string()).or_default() += 1;
            let body = p
                .stores
                .receipts
                .get(&d.receipt_key())
                .await
                .expect("receipts store")
                .unwrap_or_else(|| panic!("no receipt for {}", d.delivery_id));
            let r: crate::receipt::Receipt = serde_json::from_slice(&body).expect("receipt");
            *receipts
                .entry(format!("{} {}", r.outcome.as_str(), r.state))
                .or_default() += 1;
        }
        let mut rows = BTreeMap::new();
        for table in tables {
            let sql = format!(
                "SELECT concat(record_key, '@', CAST(record_version AS VARCHAR)) AS k FROM {table} ORDER BY k"
            );
            let batches = match crate::catalog::query(p, &sql).await {
                Ok(b) => b,
                Err(e) if e.to_string().contains("not found") => Vec::new(),
                Err(e) => panic!("{table}: {e}"),
            };
            let mut keys = Vec::new();
            for b in &batches {
                let a = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
                    .expect("cast");
                let a = a
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .expect("strings");
                keys.extend((0..b.num_rows()).map(|i| a.value(i).to_string()));
            }
            rows.insert(table.to_string(), keys);
        }
        // The presentation zone's files; a current table (Delta) by its rows, since a
        // publication that was retried leaves the first attempt's files beside the
        // log (unreferenced until retention) and delta-rs names files afresh.
        let mut presentation: Vec<String> = p
            .stores
            .lake
            .list("presentation/")
            .await
            .expect("lake")
            .into_iter()
            .map(|o| o.key)
            .filter(|k| {
                !k.starts_with(&format!("{}current/", crate::layout::PRESENTATION_PREFIX))
                    && !k.starts_with(crate::layout::PUBLISH_STATE_PREFIX)
            })
            .collect();
        for c in p.contracts.iter() {
            let name = format!("{}_current", c.table());
            if let Some(batches) = crate::publish::published_batches(p, "current", &name)
                .await
                .expect("current table")
            {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                presentation.push(format!("current {name}: {rows} rows"));
            }
        }
        presentation.sort();
        Settled {
            states,
            rows,
            receipts,
            presentation,
        }
    }
}
