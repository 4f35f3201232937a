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
use crate::ports::{Ledger, LedgerError, ObjectMeta, ObjectStore, StoreError};

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
    fn engine_store(&self) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.inner.engine_store()
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
