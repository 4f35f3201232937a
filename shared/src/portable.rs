//! The publish SQL handed to another engine. Publish runs on DataFusion here and is
//! to run on Athena (Trino) at national scale, so its SQL must mean the same on both.
//! [`write`] lays out what an independent check needs: every statement publish runs
//! (current tables, dimensions, marts), the tables the marts read, each mart's
//! statement as Athena is sent it (periods written in), and each mart's cells as
//! DataFusion computes them from that statement for the newest publication. The e2e check
//! (`tests/independent/check_sql.py`) transpiles every statement to Trino with
//! sqlglot, refusing anything it cannot translate, and runs the marts on DuckDB over
//! the same tables, which must give the same cells.
//!
//! The cells are *before* disclosure control, like `naerdata query` over the curated
//! tables: for the data authority's operators, never for publication.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::platform::{Platform, StepError};
use crate::publication;
use crate::publish::{self, PublishError};

/// What [`write`] wrote, relative to its folder (`manifest.json`).
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// The newest publication's reference date (`params.reference_date`); `None`
    /// before the first publication, when only the statements are written.
    pub reference_date: Option<String>,
    pub statements: Vec<Statement>,
    /// Each table the marts read, by name: its Parquet files (absolute paths; a
    /// current table's from its Delta log).
    pub tables: BTreeMap<String, Vec<String>>,
    pub marts: Vec<MartCells>,
}

#[derive(Debug, Serialize)]
pub struct Statement {
    /// `current`, `dim` or `marts`.
    pub kind: &'static str,
    pub name: String,
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct MartCells {
    pub name: String,
    pub sql: String,
    /// The periods computed (the `perioder` table) and DataFusion's result.
    pub perioder: String,
    pub cells: String,
    pub rows: usize,
    /// The statement as Athena is sent it, the periods written in
    /// ([`crate::warehouse::mart_sql`]); `None` when no period is open. DataFusion's
    /// cells are this statement's.
    pub athena_sql: Option<String>,
}

/// Every statement publish runs, in the order it runs them.
pub fn statements(contracts: &crate::contract::Registry) -> Vec<(&'static str, String, String)> {
    let mut out: Vec<(&'static str, String, String)> = contracts
        .iter()
        .map(|c| {
            (
                "current",
                format!("{}_current", c.table()),
                publish::current_linked_sql(c),
            )
        })
        .collect();
    out.push((
        "dim",
        "person_bopael".into(),
        publish::PERSON_BOPAEL.to_string(),
    ));
    out.push((
        "dim",
        "dim_person".into(),
        publish::dim_person_sql(contracts),
    ));
    out.extend(
        publish::marts()
            .into_iter()
            .map(|m| ("marts", m.name.clone(), m.sql.clone())),
    );
    out
}

fn io(what: &Path, e: impl std::fmt::Display) -> PublishError {
    StepError::Internal(format!("writing {}: {e}", what.display())).into()
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io(path, e))
}

fn parquet(batch: &arrow::record_batch::RecordBatch) -> Result<Vec<u8>, PublishError> {
    crate::lake::parquet_bytes(batch.schema(), std::slice::from_ref(batch))
        .map_err(|e| StepError::Internal(format!("parquet: {e}")).into())
}

/// Writes the statements, and after a publication the marts' tables and cells, under
/// `dir`. The platform's lake must be on the local file system (its Parquet files
/// are named by path).
pub fn write<'a>(
    p: &'a Platform,
    dir: &'a Path,
) -> crate::Boxed<'a, Result<Manifest, PublishError>> {
    Box::pin(write_inner(p, dir))
}

/// The body of [`write`].
async fn write_inner(p: &Platform, dir: &Path) -> Result<Manifest, PublishError> {
    let mut manifest = Manifest {
        reference_date: None,
        statements: Vec::new(),
        tables: BTreeMap::new(),
        marts: Vec::new(),
    };
    for (kind, name, sql) in statements(&p.contracts) {
        let file = format!("statements/{kind}/{name}.sql");
        put(&dir.join(&file), sql.as_bytes())?;
        manifest.statements.push(Statement { kind, name, file });
    }
    if let Some(day) = publish::published_reference_date(p).await? {
        manifest.reference_date = Some(day.to_string());
        for t in publish::presentation_tables(&p.contracts).await? {
            if t.kind == "marts" {
                continue;
            }
            let files = match publish::published_files(p, &t).await? {
                Some(files) if !files.is_empty() => files,
                // A dataset with no data yet: publish reads it as an empty table.
                _ => {
                    let file = dir.join(format!("empty/{}.parquet", t.name));
                    let empty = arrow::record_batch::RecordBatch::new_empty(t.schema.clone());
                    put(&file, &parquet(&empty)?)?;
                    vec![file.display().to_string()]
                }
            };
            manifest.tables.insert(t.name.clone(), files);
        }
        for spec in publish::marts() {
            let periods = publication::open_for_publication(&spec, &p.contracts, day);
            let cells = publish::unprotected_cells(p, &spec.name, &periods).await?;
            let perioder = format!("cells/{}.perioder.parquet", spec.name);
            put(
                &dir.join(&perioder),
                &parquet(&publication::periods_batch(&periods))?,
            )?;
            let file = format!("cells/{}.parquet", spec.name);
            put(&dir.join(&file), &parquet(&cells)?)?;
            let athena_sql = match crate::warehouse::mart_sql(&spec.name, &spec.sql, &periods) {
                Some(sql) => {
                    let file = format!("statements/athena/{}.sql", spec.name);
                    put(&dir.join(&file), sql.as_bytes())?;
                    Some(file)
                }
                None => None,
            };
            manifest.marts.push(MartCells {
                name: spec.name.clone(),
                sql: format!("statements/marts/{}.sql", spec.name),
                perioder,
                cells: file,
                rows: cells.num_rows(),
                athena_sql,
            });
        }
    }
    put(
        &dir.join("manifest.json"),
        &serde_json::to_vec_pretty(&manifest).expect("serialisable"),
    )?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_publish_runs_is_listed_once() {
        let contracts = crate::contract::Registry::builtin();
        let all = statements(&contracts);
        let names: std::collections::BTreeSet<(&str, &str)> =
            all.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
        assert_eq!(names.len(), all.len(), "no statement twice");
        assert!(names.contains(&("dim", "dim_person")));
        assert!(names.contains(&("marts", "rehab_effekt")));
        assert_eq!(
            all.iter().filter(|(k, _, _)| *k == "marts").count(),
            publish::marts().len()
        );
        assert_eq!(
            all.iter().filter(|(k, _, _)| *k == "current").count(),
            contracts.iter().count()
        );
    }
}
