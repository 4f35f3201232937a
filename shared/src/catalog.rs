//! The catalog: how SQL engines find the lake tables.
//!
//! The curated tables are Delta tables, so every reader goes through the log and sees
//! only committed deliveries. Locally two engines read the lake: DataFusion in-process
//! (`naerdata query`, publish, extracts) through delta-rs's table provider, and DuckDB
//! through `catalog.sql`: one view per table over the files active in the table's
//! newest version, regenerated after each commit by the command that committed. That
//! keeps DuckDB offline and version-independent (its `delta` extension would have to
//! be downloaded, or pinned through a wheel to one DuckDB version); the price is that
//! a view is as new as the last catalog write. Both are derived from the contracts.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;

use crate::contract::Contract;
use crate::glossary;
use crate::lake::delta::{self, DeltaError};
use crate::layout;
use crate::platform::{Platform, StepError};

/// The key of the DuckDB catalog in the lake store.
pub use crate::layout::CATALOG_KEY;

/// Which version of the lake a reader sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AsOf {
    /// Every table at its newest version.
    #[default]
    Newest,
    /// Each table as it was at this time (tables created later are absent).
    Time(DateTime<Utc>),
    /// These versions (as an extract or a publication recorded them); a table not
    /// named is absent.
    Versions(BTreeMap<String, u64>),
}

impl AsOf {
    /// `--as-of`: a time (RFC 3339, or a date meaning its start in UTC), or
    /// `table=version,...` as an extract's manifest records them.
    pub fn parse(s: &str) -> Result<AsOf, String> {
        let s = s.trim();
        if s.contains('=') {
            let mut v = BTreeMap::new();
            for part in s.split(',') {
                let (t, n) = part
                    .split_once('=')
                    .ok_or_else(|| format!("as-of: {part:?} is not table=version"))?;
                let n: u64 = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("as-of: the version of {} is not a number", t.trim()))?;
                v.insert(t.trim().to_string(), n);
            }
            return Ok(AsOf::Versions(v));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(AsOf::Time(t.with_timezone(&Utc)));
        }
        if let Ok(d) = s.parse::<chrono::NaiveDate>() {
            return Ok(AsOf::Time(
                d.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
            ));
        }
        Err(format!(
            "as-of {s:?}: give a time (2026-12-01T06:00:00Z), a date, or table=version,..."
        ))
    }
}

/// A curated table with data, at the version a reader asked for.
pub struct LakeTable {
    pub contract: Contract,
    pub table: DeltaTable,
}

impl LakeTable {
    pub fn version(&self) -> u64 {
        self.table.version().unwrap_or(0)
    }
}

/// Curated tables that have at least one active file, with their contracts.
pub async fn lake_tables(p: &Platform, as_of: &AsOf) -> Result<Vec<LakeTable>, StepError> {
    let mut out = Vec::new();
    for c in p.contracts.iter() {
        let prefix = layout::curated_prefix(&c.table());
        let table = match as_of {
            AsOf::Newest => delta::open(p.stores.lake.as_ref(), &prefix, None).await?,
            AsOf::Versions(v) => match v.get(&c.table()) {
                Some(v) => Some(
                    delta::open(p.stores.lake.as_ref(), &prefix, Some(*v))
                        .await?
                        .ok_or_else(|| {
                            StepError::Internal(format!("table {} has no version {v}", c.table()))
                        })?,
                ),
                None => None,
            },
            AsOf::Time(t) => match delta::open(p.stores.lake.as_ref(), &prefix, None).await? {
                Some(mut table) => match table.load_with_datetime(*t).await {
                    Ok(()) => Some(table),
                    // (Before its first commit, a table reads as its empty version 0.)
                    Err(deltalake::DeltaTableError::NotATable(_)) => None,
                    Err(e) => return Err(DeltaError::table(&c.table(), e).into()),
                },
                None => None,
            },
        };
        if let Some(table) = table
            && !delta::active_files(&table)?.is_empty()
        {
            out.push(LakeTable {
                contract: c.clone(),
                table,
            });
        }
    }
    Ok(out)
}

/// Tables that have at least one active file, with their contracts.
pub async fn tables_with_data(p: &Platform) -> Result<Vec<Contract>, StepError> {
    Ok(lake_tables(p, &AsOf::Newest)
        .await?
        .into_iter()
        .map(|t| t.contract)
        .collect())
}

/// The newest version of every curated table with data (what a publication or an
/// extract records so it can be reproduced).
pub async fn versions(p: &Platform) -> Result<BTreeMap<String, u64>, StepError> {
    Ok(lake_tables(p, &AsOf::Newest)
        .await?
        .into_iter()
        .map(|t| (t.contract.table(), t.version()))
        .collect())
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `COMMENT ON` statements for a view and its columns: DuckDB shows them in
/// `duckdb_views()` and `duckdb_columns()`.
fn comments(view: &str, table: &glossary::Text, columns: &[(String, glossary::Text)]) -> String {
    let mut out = format!(
        "COMMENT ON VIEW {view} IS {};\n",
        sql_string(&table.comment())
    );
    for (c, text) in columns {
        out.push_str(&format!(
            "COMMENT ON COLUMN {view}.{c} IS {};\n",
            sql_string(&text.comment())
        ));
    }
    out
}

/// A DuckDB list literal of files.
fn file_list(files: &[String]) -> String {
    let items: Vec<String> = files.iter().map(|f| sql_string(f)).collect();
    format!("[{}]", items.join(", "))
}

/// DuckDB views, one per table with data: `duckdb -init catalog.sql` and query.
pub async fn duckdb_catalog(p: &Platform) -> Result<String, StepError> {
    let mut sql = String::from(
        "-- naerdata lake catalog for DuckDB, generated after each ingest. Do not edit.\n\
         -- Use: duckdb -init catalog.sql   (then e.g. SELECT count(*) FROM almenpraksis_diagnose;)\n",
    );
    for t in lake_tables(p, &AsOf::Newest).await? {
        let c = &t.contract;
        sql.push_str(&format!(
            "\n-- {}: {} (contract {} v{}; Delta version {})\nCREATE OR REPLACE VIEW {} AS\n  SELECT * FROM read_parquet({}, hive_partitioning = true, union_by_name = true);\n",
            c.id,
            c.title,
            c.id,
            c.version,
            t.version(),
            c.table(),
            file_list(&delta::active_files(&t.table)?)
        ));
        // The table only: a column the contract added since the table's files were
        // written is not in the view, and a comment on it would fail the script.
        let table = glossary::Text {
            da: c.title.clone(),
            en: c.table_description.clone(),
        };
        sql.push_str(&comments(&c.table(), &table, &[]));
    }
    // What every presentation table and column means (the same texts as Glue's): the
    // publish SQL planned over empty tables, so only once something is published.
    let presentation = p.stores.lake.list(layout::PRESENTATION_PREFIX).await?;
    let described = if presentation.is_empty() {
        Vec::new()
    } else {
        crate::publish::presentation_tables(&p.contracts)
            .await
            .map_err(|e| StepError::Internal(format!("describing the presentation tables: {e}")))?
    };
    let describe = |kind: &str, name: &str| -> String {
        let Some(t) = described.iter().find(|t| t.kind == kind && t.name == name) else {
            return String::new();
        };
        let mut names: Vec<String> = t.schema.fields().iter().map(|f| f.name().clone()).collect();
        if kind == "marts" {
            names.push(layout::PUBLICATION_PARTITION.into());
        }
        let columns: Vec<(String, glossary::Text)> = names
            .into_iter()
            .filter_map(|n| glossary::column(t, &n, &p.contracts).map(|d| (n, d)))
            .collect();
        comments(name, &glossary::table(t, &p.contracts), &columns)
    };
    // The presentation zone: current tables (Delta: the files of the newest
    // version), dimensions and marts, once published.
    for c in p.contracts.iter() {
        let name = format!("{}_current", c.table());
        let prefix = layout::presentation_prefix("current", &name);
        let Some(t) = delta::open(p.stores.lake.as_ref(), &prefix, None).await? else {
            continue;
        };
        let files = delta::active_files(&t)?;
        if files.is_empty() {
            continue;
        }
        sql.push_str(&format!(
            "\n-- presentation (current; Delta version {})\nCREATE OR REPLACE VIEW {name} AS\n  SELECT * FROM read_parquet({});\n",
            t.version().unwrap_or(0),
            file_list(&files)
        ));
        sql.push_str(&describe("current", &name));
    }
    for obj in &presentation {
        if let Some((kind, name)) = layout::presentation_table_of(&obj.key) {
            sql.push_str(&format!(
                "\n-- presentation ({kind})\nCREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({});\n",
                sql_string(&p.stores.lake.locate(&obj.key))
            ));
            sql.push_str(&describe(kind, name));
        }
    }
    // The marts: every publication side by side, `publication` from the folder name.
    // Take the newest (`WHERE publication = (SELECT max(publication) FROM ...)`) or any
    // earlier one.
    for spec in crate::publish::marts() {
        let prefix = layout::presentation_prefix("marts", &spec.name);
        if presentation
            .iter()
            .any(|o| layout::mart_publication_of(&spec.name, &o.key).is_some())
        {
            let glob = format!(
                "{prefix}{}=*/{}",
                layout::PUBLICATION_PARTITION,
                layout::PRESENTATION_FILE
            );
            sql.push_str(&format!(
                "\n-- presentation (marts): every publication\nCREATE OR REPLACE VIEW {} AS\n  SELECT * FROM read_parquet({}, hive_partitioning = true, union_by_name = true);\n",
                spec.name,
                sql_string(&p.stores.lake.locate(&glob))
            ));
            sql.push_str(&describe("marts", &spec.name));
        }
    }
    // Quality metrics: a Delta table like the curated ones.
    if let Some(t) = delta::open(p.stores.lake.as_ref(), layout::METRICS_PREFIX, None).await? {
        let files = delta::active_files(&t)?;
        if !files.is_empty() {
            sql.push_str(&format!(
                "\n-- quality (Delta version {})\nCREATE OR REPLACE VIEW quality_metrics AS\n  SELECT * FROM read_parquet({}, hive_partitioning = true, union_by_name = true);\n",
                t.version().unwrap_or(0),
                file_list(&files)
            ));
        }
    }
    // The monitor's tables, once it wrote them.
    for (name, prefix, glob, hive) in QUALITY_TABLES {
        if !p.stores.lake.list(prefix).await?.is_empty() {
            sql.push_str(&format!(
                "\n-- quality\nCREATE OR REPLACE VIEW {name} AS\n  SELECT * FROM read_parquet({}, hive_partitioning = {hive}, union_by_name = true);\n",
                sql_string(&p.stores.lake.locate(&format!("{prefix}{glob}")))
            ));
        }
    }
    Ok(sql)
}

/// (view, prefix, glob under it, hive partitioning) of the quality tables. The
/// monitor's files carry their `as_of` / `month` as columns already.
const QUALITY_TABLES: &[(&str, &str, &str, bool)] = &[
    (
        "quality_reception",
        layout::RECEPTION_PREFIX,
        "*/*.parquet",
        false,
    ),
    (
        "quality_declaration",
        layout::DECLARATION_PREFIX,
        "*/*.parquet",
        false,
    ),
];

pub fn write_duckdb_catalog<'a>(p: &'a Platform) -> crate::Boxed<'a, Result<String, StepError>> {
    Box::pin(write_duckdb_catalog_inner(p))
}

/// The body of [`write_duckdb_catalog`].
async fn write_duckdb_catalog_inner(p: &Platform) -> Result<String, StepError> {
    let sql = duckdb_catalog(p).await?;
    p.stores.lake.put(CATALOG_KEY, Bytes::from(sql)).await?;
    Ok(p.stores.lake.locate(CATALOG_KEY))
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("query failed: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
}

/// A DataFusion session with every lake table that has data registered.
pub fn session<'a>(p: &'a Platform) -> crate::Boxed<'a, Result<SessionContext, QueryError>> {
    Box::pin(session_inner(p))
}

/// The body of [`session`].
async fn session_inner(p: &Platform) -> Result<SessionContext, QueryError> {
    Ok(session_as_of(p, &AsOf::Newest).await?.0)
}

/// A session and the Delta version of each table it registered.
pub type SessionVersions = (SessionContext, BTreeMap<String, u64>);

/// A session over the lake as of a time or recorded versions, and the version of
/// each table it registered.
pub fn session_as_of<'a>(
    p: &'a Platform,
    as_of: &'a AsOf,
) -> crate::Boxed<'a, Result<SessionVersions, QueryError>> {
    Box::pin(session_as_of_inner(p, as_of))
}

/// A DataFusion context as every reader and writer of the lake needs it. Plain `Utf8`
/// strings, as the lake's files declare them: DataFusion (and delta-rs) would read them
/// as string views, which every reader downstream (disclosure control, extracts, the
/// published Parquet) would then have to expect. delta-rs's planner: writes and merges
/// from plans of the context (its write and merge nodes need it; plain queries plan as
/// before).
pub fn engine_context() -> SessionContext {
    let config = SessionConfig::new().set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    SessionContext::new_with_state(state)
}

/// The body of [`session_as_of`].
async fn session_as_of_inner(
    p: &Platform,
    as_of: &AsOf,
) -> Result<(SessionContext, BTreeMap<String, u64>), QueryError> {
    let ctx = engine_context();
    // A lake in S3: DataFusion reads `s3://<bucket>/...` (the presentation zone, which
    // is plain Parquet) through the store's own client.
    let root = p.stores.lake.locate("");
    if let Some(store) = p.stores.lake.engine_store()
        && root.contains("://")
    {
        let url = ObjectStoreUrl::parse(root)?;
        ctx.register_object_store(url.as_ref(), store);
    }
    let mut versions = BTreeMap::new();
    for t in lake_tables(p, as_of).await? {
        let name = t.contract.table();
        t.table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| StepError::from(DeltaError::table(&name, e)))?;
        let provider = t
            .table
            .table_provider()
            .with_session(Arc::new(ctx.state()))
            .await
            .map_err(QueryError::Engine)?;
        ctx.register_table(name.as_str(), provider)?;
        versions.insert(name, t.version());
    }
    Ok((ctx, versions))
}

/// Runs one SQL statement over the lake.
pub fn query<'a>(
    p: &'a Platform,
    sql: &'a str,
) -> crate::Boxed<'a, Result<Vec<RecordBatch>, QueryError>> {
    Box::pin(query_inner(p, sql))
}

/// The body of [`query`].
async fn query_inner(p: &Platform, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = session(p).await?;
    Ok(ctx.sql(sql).await?.collect().await?)
}
