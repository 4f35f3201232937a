//! Lake maintenance: compaction, retention and purge of the Delta tables.
//!
//! - **Compaction** (`optimize`): small files of a partition are rewritten into files
//!   of up to [`TARGET_FILE_SIZE`], in one commit per table. A year of nightly GP
//!   deliveries that each touch dozens of months otherwise leaves tens of thousands of
//!   tiny files, which every reader (and Athena's bill) pays for. Rows are unchanged:
//!   only `data_change = false` actions are written.
//! - **Retention** (`vacuum`): files no longer referenced by the log (replaced by
//!   compaction or a retraction, or uploaded by an attempt that never committed) are
//!   deleted once they are older than the retention period. That period is also the
//!   promise for reproducing an extract or a publication `--as-of` an earlier version.
//! - **Purge**: rows of one delivery or one person are deleted and every file that
//!   held them is removed at once, overriding retention, with a record of what was
//!   purged and why.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use bytes::Bytes;
use deltalake::operations::vacuum::{Clock as VacuumClock, VacuumMode};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::lake::delta::{self, DeltaError};
use crate::platform::{Platform, StepError};
use crate::ports::Clock;
use crate::retract::{self, RetractError};

/// Retention of unreferenced files, unless configured otherwise.
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// Files compaction aims for.
pub const TARGET_FILE_SIZE: u64 = 64 << 20;
/// Where purge records are kept in the lake store.
pub use crate::layout::PURGES_PREFIX;

/// The platform clock as delta-rs's vacuum clock (tests move time forward).
#[derive(Clone)]
struct PlatformClock(Arc<dyn Clock>);

impl std::fmt::Debug for PlatformClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformClock")
    }
}

impl VacuumClock for PlatformClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0.now().timestamp_millis()
    }
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableMaintenance {
    pub table: String,
    pub files_before: usize,
    pub files_after: usize,
    pub files_compacted: u64,
    pub files_vacuumed: usize,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct MaintainOptions {
    pub retention: chrono::Duration,
    pub compact: bool,
    pub vacuum: bool,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            retention: chrono::Duration::days(DEFAULT_RETENTION_DAYS),
            compact: true,
            vacuum: true,
        }
    }
}

/// How files rewritten by the lake's own maintenance are written (zstd 3).
pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("level 3 exists"),
        ))
        .set_created_by(format!("naerdata {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Compacts and vacuums every lake table.
pub fn maintain<'a>(
    p: &'a Platform,
    o: &'a MaintainOptions,
) -> crate::Boxed<'a, Result<Vec<TableMaintenance>, StepError>> {
    Box::pin(maintain_inner(p, o))
}

/// The body of [`maintain`].
async fn maintain_inner(
    p: &Platform,
    o: &MaintainOptions,
) -> Result<Vec<TableMaintenance>, StepError> {
    let mut out = Vec::new();
    for (name, prefix) in retract::table_prefixes(p) {
        let Some(mut t) = delta::open(p.stores.lake.as_ref(), &prefix, None).await? else {
            continue;
        };
        let files_before = delta::active_files(&t)?.len();
        let mut files_compacted = 0;
        if o.compact && files_before > 1 {
            let (nt, m) = t
                .optimize()
                .with_target_size(NonZeroU64::new(TARGET_FILE_SIZE).expect("non-zero"))
                .with_writer_properties(writer_properties())
                .await
                .map_err(|e| DeltaError::table(&name, e))?;
            t = nt;
            files_compacted = m.num_files_removed;
        }
        let mut files_vacuumed = 0;
        if o.vacuum {
            let (nt, m) = t
                .vacuum()
                .with_retention_period(o.retention)
                .with_enforce_retention_duration(false)
                .with_mode(VacuumMode::Full)
                .with_clock(Arc::new(PlatformClock(p.clock.clone())))
                .await
                .map_err(|e| DeltaError::table(&name, e))?;
            t = nt;
            files_vacuumed = m.files_deleted.len();
        }
        let r = TableMaintenance {
            files_after: delta::active_files(&t)?.len(),
            version: t.version().unwrap_or(0),
            table: name,
            files_before,
            files_compacted,
            files_vacuumed,
        };
        info!(table = %r.table, before = r.files_before, after = r.files_after, vacuumed = r.files_vacuumed, "maintained");
        out.push(r);
    }
    Ok(out)
}

/// Whose rows a purge removes.
#[derive(Debug, Clone)]
pub enum PurgeTarget {
    Delivery(String),
    /// A `person_id` (the lake pseudonym).
    Person(String),
}

/// The record a purge leaves in the lake: what, why, how much. A person is named by
/// the SHA-256 of their pseudonym, so the record does not point at them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeRecord {
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: String,
    /// The delivery id, or `sha256:<hex>` of the person's pseudonym.
    pub target: String,
    pub reason: String,
    /// Per table: rows deleted from the current version, files removed from history.
    pub tables: BTreeMap<String, PurgedTable>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PurgedTable {
    pub rows_deleted: u64,
    pub files_removed: usize,
}

/// Deletes, with all their versions, the Parquet files under a table's prefix that its
/// newest version does not reference and for which `held` says yes: the history of
/// rows that must not stay (a purge) or of a column that must not (withholding).
/// Parquet is known by its content: a current table rebuilt on the warehouse has
/// Athena's files, which have no extension. Returns how many were deleted.
pub(crate) async fn delete_history(
    p: &Platform,
    prefix: &str,
    t: &deltalake::DeltaTable,
    mut held: impl FnMut(&Bytes) -> Result<bool, String>,
) -> Result<usize, StepError> {
    let lake = p.stores.lake.as_ref();
    let active: std::collections::HashSet<String> = delta::active_paths(t)?
        .into_iter()
        .map(|path| format!("{prefix}{path}"))
        .collect();
    let mut deleted = 0;
    for obj in lake.list(prefix).await? {
        if obj.key[prefix.len()..].starts_with('_') || active.contains(&obj.key) {
            continue;
        }
        let Some(bytes) = lake.get(&obj.key).await? else {
            continue;
        };
        if !crate::lake::is_parquet(&bytes) {
            continue;
        }
        let yes =
            held(&bytes).map_err(|m| StepError::Internal(format!("reading {}: {m}", obj.key)))?;
        if yes {
            lake.delete_all_versions(&obj.key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Whether a Parquet file holds `value` in `column`.
fn holds(bytes: Bytes, column: &str, value: &str) -> Result<bool, String> {
    let b = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let Some(idx) = b.schema().fields().iter().position(|f| f.name() == column) else {
        return Ok(false);
    };
    let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
    for batch in b.with_projection(mask).build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        // Files delta-rs rewrote (compaction, deletes) hold strings as views.
        let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| e.to_string())?;
        let Some(a) = column.as_any().downcast_ref::<StringArray>() else {
            return Err(format!("{} is not a string column", column.data_type()));
        };
        if (0..a.len()).any(|i| a.is_valid(i) && a.value(i) == value) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Purges a delivery (retracting it first when it is still accepted) or a person.
pub fn purge<'a>(
    p: &'a Platform,
    target: &'a PurgeTarget,
    reason: &'a str,
) -> crate::Boxed<'a, Result<PurgeRecord, RetractError>> {
    Box::pin(purge_inner(p, target, reason))
}

/// The body of [`purge`].
async fn purge_inner(
    p: &Platform,
    target: &PurgeTarget,
    reason: &str,
) -> Result<PurgeRecord, RetractError> {
    let reason = reason.trim();
    let refuse = |why: &str| RetractError::Refused {
        id: match target {
            PurgeTarget::Delivery(d) => d.clone(),
            PurgeTarget::Person(_) => "the person".into(),
        },
        why: why.to_string(),
    };
    if reason.is_empty() {
        return Err(refuse(
            "give a reason (--reason): it goes into the purge record",
        ));
    }
    if crate::cpr::detect::contains(reason) {
        return Err(refuse(
            "the reason holds something shaped like a CPR number",
        ));
    }
    let (kind, column, value, recorded) = match target {
        PurgeTarget::Delivery(id) => {
            let d = p
                .ledger
                .get(id)
                .await
                .map_err(StepError::from)?
                .ok_or_else(|| refuse("no such delivery in the ledger"))?;
            if d.state.has_rows() {
                retract::retract(p, id, reason).await?;
            }
            ("delivery", "delivery_id", id.clone(), id.clone())
        }
        PurgeTarget::Person(pid) => (
            "person",
            "person_id",
            pid.clone(),
            format!("sha256:{}", hex::encode(Sha256::digest(pid.as_bytes()))),
        ),
    };
    let mut tables = BTreeMap::new();
    // The curated and quality tables, and the current tables publish derived from
    // them: until the next publication those still show the rows, and their history
    // keeps them until retention. (The next publication rebuilds a current table a
    // purge changed: it is no longer what the last one left.)
    let current = p.contracts.iter().map(|c| {
        let name = format!("{}_current", c.table());
        let prefix = crate::layout::presentation_prefix("current", &name);
        (name, prefix)
    });
    for (name, prefix) in retract::table_prefixes(p).into_iter().chain(current) {
        let Some(t) = delta::open(p.stores.lake.as_ref(), &prefix, None).await? else {
            continue;
        };
        let rows_deleted = retract::delete_where(
            p,
            &name,
            &prefix,
            column,
            &value,
            json!({ "naerdata.purge": kind, "naerdata.reason": reason }),
        )
        .await?;
        // Every data file still stored that the newest version does not reference
        // and that holds the value: the history of the purged rows.
        let t = delta::open(p.stores.lake.as_ref(), &prefix, None)
            .await?
            .unwrap_or(t);
        let files_removed =
            delete_history(p, &prefix, &t, |bytes| holds(bytes.clone(), column, &value)).await?;
        if rows_deleted > 0 || files_removed > 0 {
            tables.insert(
                name,
                PurgedTable {
                    rows_deleted,
                    files_removed,
                },
            );
        }
    }
    let at = p.clock.now();
    let record = PurgeRecord {
        at,
        kind: kind.to_string(),
        target: recorded,
        reason: reason.to_string(),
        tables,
    };
    let key = crate::layout::purge_record_key(at, kind);
    p.stores
        .lake
        .put(
            &key,
            Bytes::from(serde_json::to_vec_pretty(&record).expect("serialisable")),
        )
        .await
        .map_err(StepError::from)?;
    Ok(record)
}
