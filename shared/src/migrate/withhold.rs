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
//! Which tables and files hold the column is read from the files themselves (their
//! Parquet schema), not only from the Delta schema, so a run that stopped after its
//! commit is finished by running it again, and a table whose log already lacks the
//! column while files (active or in history) still hold it is found too. Files are
//! deleted only when they hold the column, so a delivery committed meanwhile keeps
//! its files; one that brings the column back (a writer still on the old contract)
//! fails the run, which is then repeated.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use parquet::file::metadata::ParquetMetaDataReader;
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
    let in_schema: Vec<String> = withheld
        .iter()
        .filter(|n| snapshot.schema().field(n).is_some())
        .cloned()
        .collect();
    // The files decide, not only the schema: a table created from the new contract
    // over older files (the Delta migration of a Parquet home) has none in its schema
    // while its files hold it, and readers that open files by name see it.
    let mut columns: BTreeSet<String> = in_schema.iter().cloned().collect();
    columns.extend(active_holding(p, prefix, &t, withheld).await?);
    let t = if columns.is_empty() {
        t
    } else {
        let t = rewrite(c, name, t, &in_schema).await?;
        // A writer that still stores the column (a function not yet on the new
        // contracts) may have appended while the rewrite ran: its files stay active.
        let left = active_holding(p, prefix, &t, withheld).await?;
        if !left.is_empty() {
            return Err(StepError::Internal(format!(
                "table {name}: files committed during the rewrite still hold {}: a writer with \
                 the old contract appended meanwhile; run `naerdata migrate` again once every \
                 function runs the new contracts",
                left.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        t
    };
    // Always, so that a run that stopped after its commit finishes here, and files
    // replaced by anything else (a publication that rebuilt the current table under
    // the new contract before this ran) are found too.
    let files_deleted = crate::maintain::delete_history(p, prefix, &t, |bytes| {
        withheld_in(bytes, withheld).map(|held| !held.is_empty())
    })
    .await?;
    if columns.is_empty() && files_deleted == 0 {
        return Ok(None);
    }
    tracing::info!(table = %name, ?columns, files_deleted, "withheld columns taken out");
    Ok(Some(Withheld {
        table: name.to_string(),
        columns: columns.into_iter().collect(),
        version: t.version(),
        files_deleted,
    }))
}

/// The withheld columns held by the table's active files.
async fn active_holding(
    p: &Platform,
    prefix: &str,
    t: &deltalake::DeltaTable,
    withheld: &[String],
) -> Result<BTreeSet<String>, StepError> {
    let mut held = BTreeSet::new();
    for path in delta::active_paths(t)? {
        let key = format!("{prefix}{path}");
        if let Some(bytes) = p.stores.lake.get(&key).await? {
            held.extend(
                withheld_in(&bytes, withheld)
                    .map_err(|m| StepError::Internal(format!("reading {key}: {m}")))?,
            );
        }
    }
    Ok(held)
}

/// The withheld columns a Parquet file's own schema has; nothing for any other
/// object. Parquet is known by its magic bytes, not its name: files the warehouse
/// writes (Athena's UNLOAD, a current table's rebuild) have no extension.
fn withheld_in(bytes: &[u8], withheld: &[String]) -> Result<Vec<String>, String> {
    if !crate::lake::is_parquet(bytes) {
        return Ok(Vec::new());
    }
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::copy_from_slice(bytes))
        .map_err(|e| e.to_string())?;
    Ok(meta
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .filter(|n| withheld.contains(n))
        .collect())
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
    let ctx = crate::catalog::engine_context();
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
        .with_writer_properties(crate::maintain::writer_properties())
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
