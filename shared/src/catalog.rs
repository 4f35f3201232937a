//! The catalog: how SQL engines find the lake tables.
//!
//! Locally two engines read the lake: DuckDB through `catalog.sql` (one view per
//! dataset over the Hive-partitioned Parquet files, written after each ingest), and
//! DataFusion in-process for `naerdata query`. Both are derived from the contracts.

use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;

use crate::contract::Contract;
use crate::lake;
use crate::platform::{Platform, StepError};

/// The key of the DuckDB catalog in the lake store.
pub const CATALOG_KEY: &str = "catalog.sql";

/// Tables that have at least one Parquet file, with their contracts.
pub async fn tables_with_data(p: &Platform) -> Result<Vec<Contract>, StepError> {
    let mut out = Vec::new();
    for c in p.contracts.iter() {
        let files = p
            .stores
            .lake
            .list(&lake::curated_prefix(&c.table()))
            .await?;
        if files.iter().any(|f| f.key.ends_with(".parquet")) {
            out.push(c.clone());
        }
    }
    Ok(out)
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// DuckDB views, one per table with data: `duckdb -init catalog.sql` and query.
pub async fn duckdb_catalog(p: &Platform) -> Result<String, StepError> {
    let mut sql = String::from(
        "-- naerdata lake catalog for DuckDB, generated after each ingest. Do not edit.\n\
         -- Use: duckdb -init catalog.sql   (then e.g. SELECT count(*) FROM almenpraksis_diagnose;)\n",
    );
    for c in tables_with_data(p).await? {
        let table = c.table();
        let glob = p
            .stores
            .lake
            .locate(&format!("{}*/*/*.parquet", lake::curated_prefix(&table)));
        sql.push_str(&format!(
            "\n-- {}: {} (contract {} v{})\nCREATE OR REPLACE VIEW {table} AS\n  SELECT * FROM read_parquet({}, hive_partitioning = true, union_by_name = true);\n",
            c.id,
            c.title,
            c.id,
            c.version,
            sql_string(&glob)
        ));
    }
    // The presentation zone: current tables, dimensions and marts, once published.
    for obj in p.stores.lake.list("presentation/").await? {
        let parts: Vec<&str> = obj.key.split('/').collect();
        if let ["presentation", kind, name, "data.parquet"] = parts.as_slice() {
            sql.push_str(&format!(
                "\n-- presentation ({kind})\nCREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({});\n",
                sql_string(&p.stores.lake.locate(&obj.key))
            ));
        }
    }
    // The quality tables, once a delivery (metrics) or the monitor (the rest) wrote them.
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
    ("quality_metrics", "quality/metrics/", "*/*/*.parquet", true),
    (
        "quality_reception",
        "quality/reception/",
        "*/*.parquet",
        false,
    ),
    (
        "quality_declaration",
        "quality/declaration/",
        "*/*.parquet",
        false,
    ),
];

pub async fn write_duckdb_catalog(p: &Platform) -> Result<String, StepError> {
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
pub async fn session(p: &Platform) -> Result<SessionContext, QueryError> {
    let ctx = SessionContext::new();
    // A lake in S3: DataFusion reads `s3://<bucket>/...` through the store's own client.
    if let Some(store) = p.stores.lake.engine_store() {
        let url = ObjectStoreUrl::parse(p.stores.lake.locate(""))?;
        ctx.register_object_store(url.as_ref(), store);
    }
    for c in tables_with_data(p).await? {
        let table = c.table();
        let url = ListingTableUrl::parse(p.stores.lake.locate(&lake::curated_prefix(&table)))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("year".to_string(), DataType::Int32),
                ("month".to_string(), DataType::Int32),
            ]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(lake::schema(&c));
        ctx.register_table(table.as_str(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(ctx)
}

/// Runs one SQL statement over the lake.
pub async fn query(p: &Platform, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = session(p).await?;
    Ok(ctx.sql(sql).await?.collect().await?)
}
