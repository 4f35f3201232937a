//! `naerdata migrate`: a home from before Delta Lake (curated tables and quality
//! metrics as plain Hive-partitioned Parquet) becomes Delta tables in place; then
//! columns a contract now withholds are taken out of tables that have them
//! ([`withhold`]).
//!
//! Every Parquet file then in a table was visible, so all of them are committed, one
//! commit per delivery (the file names say which), with the delivery's application
//! transaction as the process step would have written it. A marker object says a
//! table's migration is under way, so a migration that stops half-way is finished by
//! running it again; committed deliveries are recognised and skipped.

// A rewrite through DataFusion: only where SQL over the lake is built in (the CLI and
// the publish function), not in the receive and process functions.
#[cfg(feature = "analytics")]
pub mod withhold;

use std::collections::BTreeMap;

use bytes::Bytes;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::lake::delta::{self, DataFile, TableSpec};
use crate::platform::{Platform, StepError};
use crate::quality::store as quality_store;

/// Marks a table whose migration has not finished.
pub use crate::layout::MIGRATION_MARKER as MARKER;

/// What migrating one table did.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub table: String,
    pub deliveries: usize,
    pub files: usize,
    pub version: u64,
}

/// `year=YYYY/month=MM/<delivery>-<n>.parquet` or `.../<delivery>.parquet`
/// (quality metrics): (year, month, delivery id).
fn parse_path(rel: &str) -> Option<(i32, u32, String)> {
    let mut parts = rel.split('/');
    let year = parts.next()?.strip_prefix("year=")?.parse().ok()?;
    let month = parts.next()?.strip_prefix("month=")?.parse().ok()?;
    let file = parts.next()?.strip_suffix(".parquet")?;
    if parts.next().is_some() {
        return None;
    }
    let delivery = match file.rsplit_once('-') {
        Some((d, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => d,
        _ => file,
    };
    Some((year, month, delivery.to_string()))
}

async fn migrate_table(p: &Platform, spec: &TableSpec) -> Result<Option<Migrated>, StepError> {
    let lake = p.stores.lake.as_ref();
    let marker = crate::layout::migration_marker_key(&spec.prefix);
    let exists = delta::open(lake, &spec.prefix, None).await?.is_some();
    if exists && lake.head(&marker).await?.is_none() {
        return Ok(None);
    }
    let mut by_delivery: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for obj in lake.list(&spec.prefix).await? {
        let rel = &obj.key[spec.prefix.len()..];
        let Some((year, month, delivery)) = parse_path(rel) else {
            continue;
        };
        let bytes: Bytes = lake
            .get(&obj.key)
            .await?
            .ok_or_else(|| StepError::Internal(format!("{} vanished during migration", obj.key)))?;
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|e| StepError::Internal(format!("reading {}: {e}", obj.key)))?;
        by_delivery.entry(delivery).or_default().push(DataFile {
            path: rel.to_string(),
            year,
            month,
            size: obj.size,
            rows: meta.file_metadata().num_rows() as u64,
        });
    }
    if by_delivery.is_empty() && !exists {
        return Ok(None);
    }
    lake.put(
        &marker,
        Bytes::from_static(b"migration to Delta Lake under way\n"),
    )
    .await?;
    let mut t = delta::open_or_create(lake, spec).await?;
    let files = by_delivery.values().map(Vec::len).sum();
    let now = p.clock.now().timestamp_millis();
    for (delivery, files) in &by_delivery {
        delta::commit_files(&mut t, delivery, files, now).await?;
    }
    lake.delete(&marker).await?;
    Ok(Some(Migrated {
        table: spec.name.clone(),
        deliveries: by_delivery.len(),
        files,
        version: t.version().unwrap_or(0),
    }))
}

/// Migrates every curated table and the quality metrics that are not Delta tables.
pub fn migrate<'a>(p: &'a Platform) -> crate::Boxed<'a, Result<Vec<Migrated>, StepError>> {
    Box::pin(migrate_inner(p))
}

/// The body of [`migrate`].
async fn migrate_inner(p: &Platform) -> Result<Vec<Migrated>, StepError> {
    let mut specs: Vec<TableSpec> = p.contracts.iter().map(TableSpec::curated).collect();
    specs.push(quality_store::metrics_table());
    let mut out = Vec::new();
    for spec in &specs {
        if let Some(m) = migrate_table(p, spec).await? {
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_partition_and_delivery() {
        assert_eq!(
            parse_path("year=2026/month=03/0a1b2c3d4e5f60718293-12.parquet"),
            Some((2026, 3, "0a1b2c3d4e5f60718293".into()))
        );
        // Quality metrics: one file per delivery, no number.
        assert_eq!(
            parse_path("year=2026/month=3/0a1b2c3d4e5f60718293.parquet"),
            Some((2026, 3, "0a1b2c3d4e5f60718293".into()))
        );
        assert_eq!(parse_path("_delta_log/00000.json"), None);
        assert_eq!(parse_path("year=2026/month=03/x/y.parquet"), None);
    }
}
