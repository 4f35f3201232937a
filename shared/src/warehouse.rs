//! Where the marts' SQL runs when it does not run in this process. At national scale
//! the marts read years of history for six million persons, more than one function
//! holds: in AWS their SQL runs on Athena over the Glue tables (`aws::athena`), and
//! only the cells (counts with the distinct persons behind them) come back, to go
//! through disclosure control here as on DataFusion.
//!
//! The SQL sent is the mart's file with its one table that exists only in this process
//! (`perioder`, the periods open for publication) written into the statement as
//! `VALUES` ([`mart_sql`]): the rest reads the published tables by their catalog
//! names. The same text runs on DataFusion, DuckDB and Trino (checked by
//! `tests/independent/check_sql.py` and by `publish`'s tests).

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;

use crate::publication::Period;

/// One statement's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The engine's id of the query (Athena's `QueryExecutionId`), for the logs.
    pub query_id: String,
    pub rows: RecordBatch,
    /// What the engine says it read (Athena bills by it).
    pub bytes_scanned: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The engine refused or failed the statement: its own reason, with the query id an
    /// operator looks up.
    #[error("{name}: query {query_id} {state}: {reason}")]
    Failed {
        name: String,
        query_id: String,
        state: String,
        reason: String,
    },
    /// A call to the engine failed (network, permissions, throttling past the retries).
    #[error("{name}: {call}: {message}")]
    Call {
        name: String,
        call: &'static str,
        message: String,
    },
    /// The answer could not be read into columns: which column, which row, and why.
    #[error("{name}: query {query_id}: {message}")]
    Decode {
        name: String,
        query_id: String,
        message: String,
    },
    /// The statement ran past the time it was given; it has been stopped.
    #[error("{name}: query {query_id} still running after {seconds} s; stopped")]
    Timeout {
        name: String,
        query_id: String,
        seconds: u64,
    },
    /// The function's invocation was about to end (its deadline, less a margin for
    /// stopping the queries and recording the failure): the statement was stopped, or
    /// not started (no query id). The whole step is retried.
    #[error(
        "{name}: {} {seconds} s before the function's deadline",
        stopped(.query_id)
    )]
    Deadline {
        name: String,
        query_id: String,
        seconds: u64,
    },
}

fn stopped(query_id: &str) -> String {
    if query_id.is_empty() {
        "not started".to_string()
    } else {
        format!("query {query_id} stopped")
    }
}

/// An engine for the marts' SQL.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// What the summaries and logs call it (`athena workgroup naerdata-prod-publish`).
    fn describe(&self) -> String;

    /// The same engine, its waits also bounded by `deadline`: the end of the function
    /// invocation that uses it (a publication's statements together may take longer
    /// than one invocation; waiting past its end would leave them running, unrecorded).
    fn until(&self, deadline: Instant) -> Arc<dyn Warehouse>;

    /// Runs named statements and returns their answers in the same order. The
    /// statements are started in order and may run at the same time; the first to
    /// fail stops the others.
    async fn run(&self, statements: &[(String, String)]) -> Result<Vec<Answer>, WarehouseError>;

    /// Writes the rows of `sql` as Parquet files into `location` (the URL of a folder
    /// with nothing in it yet), for a table the caller then commits: a current table
    /// rebuilt from its whole history, too large for one function. The answer has no
    /// rows. Athena: `UNLOAD`, which writes where it is told even in a workgroup that
    /// enforces its results location (a CTAS there would not) and needs no table.
    async fn write_parquet(
        &self,
        name: &str,
        sql: &str,
        location: &str,
    ) -> Result<Answer, WarehouseError>;
}

/// A mart's statement as a warehouse gets it: `perioder` (the periods open for
/// publication) written in as a `VALUES` list before the mart's own `WITH` list.
/// `None` when no period is open: there is nothing to compute (and `VALUES` cannot be
/// empty).
pub fn mart_sql(name: &str, sql: &str, periods: &[Period]) -> Option<String> {
    if periods.is_empty() {
        return None;
    }
    let values: Vec<String> = periods
        .iter()
        .map(|p| {
            format!(
                "({}, DATE '{}', DATE '{}')",
                quote(&p.label),
                p.start.format("%Y-%m-%d"),
                p.end.format("%Y-%m-%d")
            )
        })
        .collect();
    // The mart's SQL after its header comments: it opens a WITH list (every mart does;
    // checked by a test) into which the periods go first.
    let body: String = sql
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let rest = body
        .strip_prefix("WITH ")
        .or_else(|| body.strip_prefix("WITH\n"))?;
    Some(format!(
        "-- naerdata mart {name}\nWITH perioder (periode, periode_start, periode_slut) AS (\n    VALUES\n    {}\n),\n{}",
        values.join(",\n    "),
        rest.trim_end().trim_end_matches(';')
    ))
}

/// `sql` with each zoned timestamp column selected as a plain timestamp (its UTC wall
/// time): Athena reads a Delta timestamp as `timestamp with time zone`, which its Parquet
/// writer does not take. `schema` is the statement's columns as DataFusion plans them.
pub fn plain_timestamps(schema: &arrow::datatypes::Schema, sql: &str) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            arrow::datatypes::DataType::Timestamp(_, Some(_)) => {
                format!("CAST({n} AS timestamp) AS {n}", n = f.name())
            }
            _ => f.name().clone(),
        })
        .collect();
    format!(
        "SELECT {}\nFROM (\n{}\n) AS naerdata_rows",
        columns.join(", "),
        sql.trim_end().trim_end_matches(';')
    )
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn period(label: &str, start: (i32, u32, u32), end: (i32, u32, u32)) -> Period {
        Period {
            label: label.into(),
            start: NaiveDate::from_ymd_opt(start.0, start.1, start.2).unwrap(),
            end: NaiveDate::from_ymd_opt(end.0, end.1, end.2).unwrap(),
        }
    }

    #[test]
    fn every_mart_opens_a_with_list_the_periods_can_join() {
        let periods = [period("2026-10", (2026, 10, 1), (2026, 10, 31))];
        for spec in crate::publish::marts() {
            let sql = mart_sql(&spec.name, &spec.sql, &periods)
                .unwrap_or_else(|| panic!("{}: the SQL does not open with WITH", spec.name));
            assert!(
                sql.starts_with(&format!(
                    "-- naerdata mart {}\nWITH perioder (periode, periode_start, periode_slut) AS (\n    VALUES\n    ('2026-10', DATE '2026-10-01', DATE '2026-10-31')\n),\n",
                    spec.name
                )),
                "{sql}"
            );
            assert_eq!(
                sql.matches("WITH ").count(),
                1,
                "{}: one WITH list",
                spec.name
            );
            assert!(!sql.trim_end().ends_with(';'));
        }
    }

    #[test]
    fn zoned_timestamps_are_selected_plain() {
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let schema = Schema::new(vec![
            Field::new("record_key", DataType::Utf8, false),
            Field::new(
                "received_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("dato", DataType::Date32, true),
        ]);
        assert_eq!(
            plain_timestamps(&schema, "SELECT * FROM t;\n"),
            "SELECT record_key, CAST(received_at AS timestamp) AS received_at, dato\nFROM (\nSELECT * FROM t\n) AS naerdata_rows"
        );
    }

    #[test]
    fn labels_are_quoted_and_no_period_is_no_statement() {
        let sql = mart_sql(
            "m",
            "-- mart: m\nWITH a AS (SELECT 1)\nSELECT * FROM a;\n",
            &[
                period("2026-Q4", (2026, 10, 1), (2026, 12, 31)),
                period("it's", (2027, 1, 1), (2027, 3, 31)),
            ],
        )
        .unwrap();
        assert!(sql.contains("('2026-Q4', DATE '2026-10-01', DATE '2026-12-31'),\n    ('it''s', DATE '2027-01-01', DATE '2027-03-31')\n),\na AS (SELECT 1)\nSELECT * FROM a"), "{sql}");
        assert_eq!(mart_sql("m", "WITH a AS (SELECT 1) SELECT 1", &[]), None);
        assert_eq!(
            mart_sql("m", "SELECT 1", &[period("x", (2026, 1, 1), (2026, 1, 31))]),
            None
        );
    }
}
