//! Lake key rotation on the local platform (`naerdata keys rotate`).
//!
//! 1. The key file gets version N+1 beside N, and the fingerprint record says a
//!    rotation to it is in progress: from here the process step refuses to run, so no
//!    delivery is pseudonymised with either key while the lake is rebuilt.
//! 2. Every delivery whose rows are in the lake is replayed from landing through the
//!    process step, with the new key, into a staging home (`<home>/rotation/`) with a
//!    ledger of its own; each must give the same state and row counts as before. If the
//!    live lake has a presentation zone, it is published again in staging too.
//! 3. `curated/` (and `presentation/`) are exchanged with the staged ones, each in one
//!    rename, so a reader sees the old tables or the new ones, never a mix.
//! 4. The key file makes N+1 current (N is kept as retired), the record moves on, the
//!    catalog is rewritten and the staging home, now holding the old tables, is removed.
//!
//! A rotation that stops before step 3 leaves the live lake untouched; one that stops
//! later is completed by running `keys rotate` again (it reuses the pending key, and the
//! replay is deterministic).

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;

use crate::catalog;
use crate::contract::Registry;
use crate::custody::{self, Fingerprint, FixedKey, KeyRecord};
use crate::ledger::NewDelivery;
use crate::local::{FsStore, KeyFile, SqliteLedger};
use crate::platform::{LocalLayout, Platform, StepError};
use crate::ports::{KeyError, LedgerError, ObjectStore, StoreError, Stores};
use crate::process;
use crate::pseudonym::Key;
use crate::publish::{self, PublishError};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("key rotation: {0}")]
    Refused(String),
}

impl From<LedgerError> for RotateError {
    fn from(e: LedgerError) -> Self {
        RotateError::Step(e.into())
    }
}

impl From<StoreError> for RotateError {
    fn from(e: StoreError) -> Self {
        RotateError::Step(e.into())
    }
}

/// What a finished rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub from: Fingerprint,
    pub to: Fingerprint,
    /// Deliveries replayed from landing.
    pub deliveries: usize,
    /// Rows written to the new curated tables.
    pub rows: u64,
    /// The reference date the presentation zone was published again for, if it existed.
    pub republished: Option<NaiveDate>,
}

// The zones of the lake that hold person pseudonyms and are rebuilt.
use crate::layout::{CURATED_ZONE as CURATED, PRESENTATION_ZONE as PRESENTATION};

/// Rotates the lake key of the local platform in `home`; `publish_date` is the
/// reference date for the presentation zone, when there is one to rebuild.
pub fn rotate_local<'a>(
    home: &'a Path,
    contracts: Registry,
    publish_date: NaiveDate,
) -> crate::Boxed<'a, Result<Rotation, RotateError>> {
    Box::pin(rotate_local_inner(home, contracts, publish_date))
}

/// The body of [`rotate_local`].
async fn rotate_local_inner(
    home: &Path,
    contracts: Registry,
    publish_date: NaiveDate,
) -> Result<Rotation, RotateError> {
    let layout = LocalLayout {
        home: home.to_path_buf(),
    };
    let live = Platform::local(home, contracts)?;
    let file = KeyFile::for_lake(layout.lake_key(), layout.lake());
    let ring = file.load()?.ok_or_else(|| {
        RotateError::Refused(format!(
            "{} does not exist: there is no lake key to rotate",
            layout.lake_key().display()
        ))
    })?;
    let lake = live.stores.lake.as_ref();
    // A lake from before fingerprints were recorded: its key is the file's.
    let mut record = match custody::read_record(lake).await? {
        Some(r) => r,
        None => KeyRecord::new(&ring.current, live.clock.now()),
    };
    match &record.rotating_to {
        None => record.check_lake_key(&ring.current)?,
        Some(pending) => {
            let next = ring.next.as_ref().map(Fingerprint::of);
            if next.as_ref() != Some(pending) {
                return Err(RotateError::Refused(format!(
                    "the lake records a rotation to {pending}, but {} holds {}; restore the key file of this home",
                    layout.lake_key().display(),
                    next.map_or_else(|| "no next key".into(), |f| f.to_string())
                )));
            }
        }
    }
    let resuming = record.rotating_to.is_some();
    let from = record.current.clone();
    let next = file.begin_rotation()?;
    let to = Fingerprint::of(&next);
    record.rotating_to = Some(to.clone());
    custody::write_record(lake, &record).await?;

    let staging = layout.home.join("rotation");
    let republish = !lake
        .list(crate::layout::PRESENTATION_PREFIX)
        .await?
        .is_empty()
        || staging.join("lake").join(PRESENTATION).exists();
    let built = rebuild(&live, &staging, &next, republish.then_some(publish_date)).await;
    let (deliveries, rows) = match built {
        Ok(counts) => counts,
        Err(e) if !resuming => {
            // Nothing live was touched: back to the old key.
            record.rotating_to = None;
            custody::write_record(lake, &record).await?;
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Err(e) => return Err(e),
    };

    let staged_lake = staging.join("lake");
    exchange(&layout.lake().join(CURATED), &staged_lake.join(CURATED))?;
    if republish {
        exchange(
            &layout.lake().join(PRESENTATION),
            &staged_lake.join(PRESENTATION),
        )?;
    }
    file.finish_rotation()?;
    record.retired.push(from.clone());
    record.current = to.clone();
    record.rotating_to = None;
    record.recorded_at = live.clock.now();
    custody::write_record(lake, &record).await?;
    catalog::write_duckdb_catalog(&live).await?;
    // The staging home now holds the tables of the retired key.
    std::fs::remove_dir_all(&staging).map_err(|e| {
        RotateError::Refused(format!(
            "the rotation finished, but removing {} (the old tables) failed: {e}; remove it by hand",
            staging.display()
        ))
    })?;
    Ok(Rotation {
        from,
        to,
        deliveries,
        rows,
        republished: republish.then_some(publish_date),
    })
}

/// Replays every delivery with rows in the live lake into a staging home with `key`.
async fn rebuild(
    live: &Platform,
    staging: &Path,
    key: &Key,
    publish_date: Option<NaiveDate>,
) -> Result<(usize, u64), RotateError> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| internal(staging, e))?;
    }
    let store = |name: &str| -> Result<Arc<dyn ObjectStore>, RotateError> {
        let dir = staging.join(name);
        Ok(Arc::new(FsStore::new(&dir).map_err(|e| internal(&dir, e))?))
    };
    let staged = Platform {
        stores: Stores {
            // Read only: the raw deliveries are the source of truth.
            landing: live.stores.landing.clone(),
            lake: store("lake")?,
            // Receipts and quarantine of the replay are not the suppliers' business.
            receipts: store("receipts")?,
            quarantine: store("quarantine")?,
        },
        ledger: Arc::new(SqliteLedger::open(&staging.join("ledger.sqlite"))?),
        keys: Arc::new(FixedKey(key.clone())),
        clock: live.clock.clone(),
        contracts: live.contracts.clone(),
        spool_root: live.spool_root.clone(),
    };
    let mut deliveries = live.ledger.list(None, i64::MAX as usize).await?;
    deliveries.retain(|d| d.state.has_rows());
    deliveries
        .sort_by(|a, b| (a.received_at, &a.delivery_id).cmp(&(b.received_at, &b.delivery_id)));
    let mut rows = 0;
    for d in &deliveries {
        staged
            .ledger
            .register(&NewDelivery {
                delivery_id: d.delivery_id.clone(),
                dataset: d.dataset.clone(),
                source: d.source.clone(),
                object_key: d.object_key.clone(),
                object_version: d.object_version.clone(),
                file_name: d.file_name.clone(),
                delivery_date: d.delivery_date,
                sha256: d.sha256.clone(),
                size: d.size,
                received_at: d.received_at,
            })
            .await?;
        process::process(&staged, &d.delivery_id).await?;
        let again = staged
            .ledger
            .get(&d.delivery_id)
            .await?
            .ok_or_else(|| StepError::UnknownDelivery(d.delivery_id.clone()))?;
        if again.state != d.state || again.outcome.rows_accepted != d.outcome.rows_accepted {
            return Err(RotateError::Refused(format!(
                "delivery {} ({}) gave {} with {} accepted rows when replayed, but is {} with {} in the ledger \
                 (a changed contract?); the lake and the key were left as they were",
                d.delivery_id,
                d.object_key,
                again.state,
                again.outcome.rows_accepted,
                d.state,
                d.outcome.rows_accepted
            )));
        }
        rows += again.outcome.rows_accepted;
    }
    if let Some(day) = publish_date {
        publish::publish(&staged, day).await?;
    }
    Ok((deliveries.len(), rows))
}

fn internal(path: &Path, e: std::io::Error) -> RotateError {
    RotateError::Step(StepError::Internal(format!("{}: {e}", path.display())))
}

/// Puts `staged` in the place of `live` in one step (Linux: `renameat2` with
/// `RENAME_EXCHANGE`), leaving the old directory at `staged`.
fn exchange(live: &Path, staged: &Path) -> Result<(), RotateError> {
    if !staged.exists() {
        std::fs::create_dir_all(staged).map_err(|e| internal(staged, e))?;
    }
    if !live.exists() {
        return std::fs::rename(staged, live).map_err(|e| internal(live, e));
    }
    exchange_dirs(live, staged).map_err(|e| internal(live, e))
}

#[cfg(target_os = "linux")]
fn exchange_dirs(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Without an exchange call: two renames. A reader between them finds no table (an
/// error), never a mix of keys.
#[cfg(not(target_os = "linux"))]
fn exchange_dirs(a: &Path, b: &Path) -> std::io::Result<()> {
    let aside = a.with_extension("old");
    std::fs::rename(a, &aside)?;
    std::fs::rename(b, a)?;
    std::fs::rename(&aside, b)
}
