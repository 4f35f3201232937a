//! Withholding a column a lake table already has: a contract that now gives a field a
//! role the lake never stores (`birthDate`; see [`Contract::is_withheld`]) leaves tables
//! written before it holding that column, in the newest version and in every file of
//! their history. `naerdata migrate` then rewrites each such table (the curated table
//! and its current table) without the column in one Delta commit, the person columns
//! it feeds (`birth_year`, `birth_month`, `age_at_event`) taken from it as the process
//! step now does, and deletes every data file still stored that has the column, so it
//! is gone from history too: time travel to versions before the migration then fails
//! for those tables, as after a purge.
//!
//! A marker object says a table's rewrite is under way; a run that stops half-way
//! (committed, files not yet deleted) is finished by running it again. Files are
//! deleted only when their own Parquet schema has the column, so a delivery committed
//! meanwhile keeps its files.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::contract::Contract;
use crate::lake::delta::{self, DeltaError};
use crate::layout;
use crate::platform::{Platform, StepError};

/// What withholding columns of one table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub table: String,
    /// The columns taken out of the newest version (empty when an earlier run had
    /// already committed and only the history was left to clean).
    pub columns: Vec<String>,
    /// The table's version after the rewrite.
    pub version: Option<u64>,
    /// Data files deleted because they held a withheld column.
    pub files_deleted: usize,
}

/// Takes every withheld column out of the curated and current tables of every
/// contract that withholds a field other than the CPR (which never had a column).
pub fn withhold<'a>(p: &'a Platform) -> crate::Boxed<'a, Result<Vec<Withheld>, StepError>> {
    Box::pin(withhold_inner(p))
}

/// The body of [`withhold`].
async fn withhold_inner(p: &Platform) -> Result<Vec<Withheld>, StepError> {
    let mut out = Vec::new();
    for c in p.contracts.iter() {
        if c.birth_date_field.is_none() {
            continue;
        }
        let names: Vec<String> = c.withheld_names().map(str::to_string).collect();
        let current = format!("{}_current", c.table());
        for (name, prefix) in [
            (c.table(), layout::curated_prefix(&c.table())),
            (
                current.clone(),
                layout::presentation_prefix("current", &current),
            ),
        ] {
            if let Some(w) = withhold_table(p, c, &name, &prefix, &names).await? {
                out.push(w);
            }
        }
    }
    Ok(out)
}

async fn withhold_table(
    p: &Platform,
    c: &Contract,
    name: &str,
    prefix: &str,
    withheld: &[String],
) -> Result<Option<Withheld>, StepError> {
    let lake = p.stores.lake.as_ref();
    let Some(t) = delta::open(lake, prefix, None).await? else {
        return Ok(None);
    };
    let snapshot = t.snapshot().map_err(|e| DeltaError::table(name, e))?;
    let columns: Vec<String> = withheld
        .iter()
        .filter(|n| snapshot.schema().field(n).is_some())
        .cloned()
        .collect();
    let marker = layout::withhold_marker_key(prefix);
    if columns.is_empty() && lake.head(&marker).await?.is_none() {
        return Ok(None);
    }
    lake.put(
        &marker,
        Bytes::from_static(b"withholding columns under way\n"),
    )
    .await?;
    let t = if columns.is_empty() {
        t
    } else {
        rewrite(c, name, t, &columns).await?
    };
    let files_deleted = delete_history(p, prefix, &t, withheld).await?;
    lake.delete(&marker).await?;
    tracing::info!(table = %name, ?columns, files_deleted, "withheld columns taken out");
    Ok(Some(Withheld {
        table: name.to_string(),
        columns,
        version: t.version(),
        files_deleted,
    }))
}

/// One commit: the table overwritten with its rows without `columns`, the new schema
/// with it, the partitioning kept.
async fn rewrite(
    c: &Contract,
    name: &str,
    t: deltalake::DeltaTable,
    columns: &[String],
) -> Result<deltalake::DeltaTable, StepError> {
    let fail = |e: &dyn std::fmt::Display| StepError::Internal(format!("table {name}: {e}"));
    let snapshot = t.snapshot().map_err(|e| DeltaError::table(name, e))?;
    let partitions: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let fields: Vec<String> = snapshot
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    // delta-rs's planner (its write node needs it); strings stay plain strings, as the
    // process step writes them.
    let config = SessionConfig::new().set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    let ctx = SessionContext::new_with_state(state);
    t.update_datafusion_session(&ctx.state())
        .map_err(|e| DeltaError::table(name, e))?;
    let provider = t
        .table_provider()
        .with_session(Arc::new(ctx.state()))
        .await
        .map_err(|e| fail(&e))?;
    ctx.register_table("withheld_source", provider)
        .map_err(|e| fail(&e))?;
    let sql = select_sql(c, &fields, columns, &partitions);
    let plan = ctx
        .sql(&sql)
        .await
        .map_err(|e| fail(&e))?
        .logical_plan()
        .clone();
    let props = CommitProperties::default().with_metadata([
        ("naerdata.migration".to_string(), json!("withhold")),
        ("naerdata.withheld".to_string(), json!(columns)),
    ]);
    t.write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_partition_columns(partitions)
        .with_writer_properties(
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(
                    ZstdLevel::try_new(3).expect("level 3 exists"),
                ))
                .set_created_by(format!("naerdata {}", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .with_commit_properties(props)
        .await
        .map_err(|e| DeltaError::table(name, e).into())
}

/// The rows without the withheld columns. Where the birth date is among them, the
/// person columns it feeds are taken from it (the register's date is authoritative,
/// as in [`crate::validate`]); partition columns are cast back to their plain type.
fn select_sql(
    c: &Contract,
    fields: &[String],
    withheld: &[String],
    partitions: &[String],
) -> String {
    let q = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    let birth = c
        .birth_date_field
        .map(|i| c.fields[i].name.as_str())
        .filter(|b| withheld.iter().any(|w| w == b))
        .map(q);
    let event = q(&c.fields[c.event_date].name);
    let part = |what: &str, of: &str| format!("CAST(date_part('{what}', {of}) AS INT)");
    let columns: Vec<String> = fields
        .iter()
        .filter(|f| !withheld.contains(f))
        .map(|f| match (f.as_str(), &birth) {
            ("birth_year", Some(b)) => format!("COALESCE({}, {}) AS {}", part("year", b), q(f), q(f)),
            ("birth_month", Some(b)) => {
                format!("COALESCE({}, {}) AS {}", part("month", b), q(f), q(f))
            }
            // Whole years on the event date, as `cpr::age_on` counts them.
            ("age_at_event", Some(b)) => format!(
                "COALESCE(CAST({} - {} - CASE WHEN {} * 100 + {} < {} * 100 + {} THEN 1 ELSE 0 END AS INT), {}) AS {}",
                part("year", &event),
                part("year", b),
                part("month", &event),
                part("day", &event),
                part("month", b),
                part("day", b),
                q(f),
                q(f)
            ),
            _ if partitions.contains(f) => format!("CAST({} AS INT) AS {}", q(f), q(f)),
            _ => q(f),
        })
        .collect();
    format!("SELECT {} FROM withheld_source", columns.join(", "))
}

/// Deletes every data file under the table's prefix that the newest version does not
/// reference and whose schema has a withheld column.
async fn delete_history(
    p: &Platform,
    prefix: &str,
    t: &deltalake::DeltaTable,
    withheld: &[String],
) -> Result<usize, StepError> {
    let lake = p.stores.lake.as_ref();
    let active: HashSet<String> = delta::active_paths(t)?
        .into_iter()
        .map(|path| format!("{prefix}{path}"))
        .collect();
    let mut deleted = 0;
    for obj in lake.list(prefix).await? {
        if !obj.key.ends_with(".parquet")
            || obj.key[prefix.len()..].starts_with('_')
            || active.contains(&obj.key)
        {
            continue;
        }
        let Some(bytes) = lake.get(&obj.key).await? else {
            continue;
        };
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|e| StepError::Internal(format!("reading {}: {e}", obj.key)))?;
        let holds = meta
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .any(|f| withheld.iter().any(|w| w == f.name()));
        if holds {
            lake.delete_all_versions(&obj.key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
