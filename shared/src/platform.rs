//! The platform a step runs on: its stores, ledger, key provider, clock and contracts.
//! `Platform::local` builds the embedded default; the AWS adapters build another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::contract::Registry;
use crate::custody::CheckedKey;
use crate::local::{FsStore, KeyFile, SqliteLedger};
use crate::ports::{
    Clock, KeyError, KeyProvider, Ledger, LedgerError, StoreError, Stores, SystemClock,
};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("delivery {0} is not in the ledger")]
    UnknownDelivery(String),
    #[error(transparent)]
    Run(#[from] crate::process::RunError),
    /// A Delta commit or table operation failed (a lost commit race among them): the
    /// step is retried, and the delivery's application transaction makes that safe.
    #[error(transparent)]
    Lake(#[from] crate::lake::delta::DeltaError),
    #[error("{0}")]
    Internal(String),
}

#[derive(Clone)]
pub struct Platform {
    pub stores: Stores,
    pub ledger: Arc<dyn Ledger>,
    pub keys: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn Clock>,
    pub contracts: Arc<Registry>,
    /// Local scratch space for Parquet spooling (Lambda: /tmp).
    pub spool_root: PathBuf,
}

/// Where the local platform keeps things under its home directory.
pub struct LocalLayout {
    pub home: PathBuf,
}

impl LocalLayout {
    pub fn landing(&self) -> PathBuf {
        self.home.join("landing")
    }
    pub fn lake(&self) -> PathBuf {
        self.home.join("lake")
    }
    pub fn receipts(&self) -> PathBuf {
        self.home.join("receipts")
    }
    pub fn quarantine(&self) -> PathBuf {
        self.home.join("quarantine")
    }
    pub fn ledger(&self) -> PathBuf {
        self.home.join("ledger.sqlite")
    }
    /// Outside the lake: the lake can be shared, the key never is.
    pub fn lake_key(&self) -> PathBuf {
        self.home.join("keys").join("lake-key.json")
    }
    pub fn spool(&self) -> PathBuf {
        self.home.join("spool")
    }
}

impl Platform {
    /// The embedded platform under `home`: directories for the buckets, a SQLite
    /// ledger and a key file. Created on first use.
    pub fn local(home: &Path, contracts: Registry) -> Result<Self, StepError> {
        let layout = LocalLayout {
            home: home.to_path_buf(),
        };
        let store = |dir: PathBuf| -> Result<Arc<FsStore>, StepError> {
            FsStore::new(&dir)
                .map(Arc::new)
                .map_err(|e| StepError::Internal(format!("creating {}: {e}", dir.display())))
        };
        std::fs::create_dir_all(layout.spool()).map_err(|e| {
            StepError::Internal(format!("creating {}: {e}", layout.spool().display()))
        })?;
        let lake: Arc<dyn crate::ports::ObjectStore> = store(layout.lake())?;
        // The key is checked against the fingerprint recorded beside the lake.
        let keys = CheckedKey::new(
            Arc::new(KeyFile::for_lake(layout.lake_key(), layout.lake())),
            lake.clone(),
        );
        Ok(Platform {
            stores: Stores {
                landing: store(layout.landing())?,
                lake,
                receipts: store(layout.receipts())?,
                quarantine: store(layout.quarantine())?,
            },
            ledger: Arc::new(SqliteLedger::open(&layout.ledger())?),
            keys: Arc::new(keys),
            clock: Arc::new(SystemClock),
            contracts: Arc::new(contracts),
            spool_root: layout.spool(),
        })
    }
}
