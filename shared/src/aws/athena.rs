//! The marts' SQL on Athena ([`crate::warehouse::Warehouse`]). Each statement runs in
//! the publication's own workgroup (engine v3, its settings enforced: encrypted
//! results in their own prefix, a cutoff on the bytes one query may scan) against the
//! Glue database, so the publish role needs rights on that workgroup alone.
//!
//! Answers come back as text, a page of at most 1,000 rows at a time, the first row
//! of the first page repeating the column names; each column is typed from the
//! result's metadata ([`decode`]).

use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use aws_sdk_athena::Client;
use aws_sdk_athena::types::{ColumnInfo, QueryExecutionContext, QueryExecutionState, Row};

use crate::warehouse::{Answer, Warehouse, WarehouseError};

/// Athena's largest page of results.
pub const PAGE_ROWS: i32 = 1000;

/// Where and how the statements run.
#[derive(Clone)]
pub struct Athena {
    client: Client,
    workgroup: String,
    database: String,
    /// How long all statements of one call may take together before they are stopped
    /// (under the function's own timeout, so the stop is sent).
    pub timeout: Duration,
    /// The first wait between status checks; it doubles up to `max_poll`.
    pub poll: Duration,
    pub max_poll: Duration,
    /// The end of the invocation this engine serves ([`Warehouse::until`]): waiting
    /// stops [`DEADLINE_MARGIN`] before it.
    pub deadline: Option<Instant>,
}

/// Time kept back before an invocation's deadline to stop the queries still running
/// and to record the failure (the ledger, the metrics) before the runtime ends it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// When a call's waiting ends, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Limit {
    /// The call's own timeout.
    Timeout(Instant),
    /// The invocation's deadline, less the margin.
    Deadline(Instant),
}

impl Limit {
    fn at(self) -> Instant {
        match self {
            Limit::Timeout(t) | Limit::Deadline(t) => t,
        }
    }

    fn error(self, name: &str, query_id: &str, timeout: Duration) -> WarehouseError {
        match self {
            Limit::Timeout(_) => WarehouseError::Timeout {
                name: name.to_string(),
                query_id: query_id.to_string(),
                seconds: timeout.as_secs(),
            },
            Limit::Deadline(_) => WarehouseError::Deadline {
                name: name.to_string(),
                query_id: query_id.to_string(),
                seconds: DEADLINE_MARGIN.as_secs(),
            },
        }
    }
}

impl Athena {
    pub fn new(client: Client, workgroup: &str, database: &str) -> Self {
        Athena {
            client,
            workgroup: workgroup.to_string(),
            database: database.to_string(),
            timeout: Duration::from_secs(780),
            poll: Duration::from_millis(250),
            max_poll: Duration::from_secs(5),
            deadline: None,
        }
    }

    /// When a call started at `started` stops waiting: its own timeout, or the
    /// invocation's deadline less the margin when that comes first.
    fn limit(&self, started: Instant) -> Limit {
        let own = started + self.timeout;
        match self.deadline {
            Some(d) => {
                let d = d.checked_sub(DEADLINE_MARGIN).unwrap_or(started);
                if d < own {
                    Limit::Deadline(d)
                } else {
                    Limit::Timeout(own)
                }
            }
            None => Limit::Timeout(own),
        }
    }

    fn call(name: &str, call: &'static str, e: impl std::fmt::Display) -> WarehouseError {
        WarehouseError::Call {
            name: name.to_string(),
            call,
            message: e.to_string(),
        }
    }

    /// Maps an SDK error of `call` (with its causes: the service's own message).
    fn sdk<E: std::error::Error>(
        name: &str,
        call: &'static str,
    ) -> impl FnOnce(E) -> WarehouseError {
        move |e| Self::call(name, call, aws_sdk_athena::error::DisplayErrorContext(e))
    }

    async fn start(&self, name: &str, sql: &str) -> Result<String, WarehouseError> {
        let out = self
            .client
            .start_query_execution()
            .query_string(sql)
            .work_group(&self.workgroup)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .catalog("AwsDataCatalog")
                    .database(&self.database)
                    .build(),
            )
            .send()
            .await
            .map_err(Self::sdk(name, "StartQueryExecution"))?;
        out.query_execution_id()
            .map(str::to_string)
            .ok_or_else(|| Self::call(name, "StartQueryExecution", "no query execution id"))
    }

    /// Stops what is still running (best effort: the statement has already failed).
    async fn stop(&self, ids: &[String]) {
        for id in ids {
            if let Err(e) = self
                .client
                .stop_query_execution()
                .query_execution_id(id)
                .send()
                .await
            {
                tracing::warn!(query_id = %id, error = %aws_sdk_athena::error::DisplayErrorContext(e), "could not stop a query");
            }
        }
    }

    /// Every page of one succeeded query's answer, decoded.
    async fn results(&self, name: &str, id: &str) -> Result<RecordBatch, WarehouseError> {
        let mut columns: Option<Vec<ColumnInfo>> = None;
        let mut rows: Vec<Row> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_query_results()
                .query_execution_id(id)
                .max_results(PAGE_ROWS)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(Self::sdk(name, "GetQueryResults"))?;
            // Owned: the rows move into the answer rather than being copied.
            if let Some(set) = page.result_set {
                if columns.is_none() {
                    columns = set.result_set_metadata.and_then(|m| m.column_info);
                }
                rows.extend(set.rows.unwrap_or_default());
            }
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        decode(&columns.unwrap_or_default(), &rows).map_err(|message| WarehouseError::Decode {
            name: name.to_string(),
            query_id: id.to_string(),
            message,
        })
    }

    /// Starts the statements in order and waits for all of them: each one's query id,
    /// bytes scanned and seconds. The first to fail (or the deadline) stops the rest.
    async fn execute(
        &self,
        statements: &[(String, String)],
    ) -> Result<Vec<(String, u64, f64)>, WarehouseError> {
        let started = Instant::now();
        let limit = self.limit(started);
        let mut ids: Vec<String> = Vec::new();
        for (name, sql) in statements {
            if Instant::now() >= limit.at() {
                // Too close to the invocation's end to run: nothing is started.
                self.stop(&ids).await;
                return Err(limit.error(name, "", self.timeout));
            }
            match self.start(name, sql).await {
                Ok(id) => {
                    tracing::info!(statement = %name, query_id = %id, workgroup = %self.workgroup, "athena query started");
                    ids.push(id)
                }
                Err(e) => {
                    self.stop(&ids).await;
                    return Err(e);
                }
            }
        }
        // (bytes scanned, seconds) of each, once it has succeeded.
        let mut done: Vec<Option<(u64, f64)>> = vec![None; ids.len()];
        let mut wait = self.poll;
        loop {
            for (i, id) in ids.iter().enumerate() {
                if done[i].is_some() {
                    continue;
                }
                let name = &statements[i].0;
                let out = self
                    .client
                    .get_query_execution()
                    .query_execution_id(id)
                    .send()
                    .await
                    .map_err(Self::sdk(name, "GetQueryExecution"));
                let execution = match out {
                    Ok(out) => out.query_execution().cloned(),
                    Err(e) => {
                        self.stop(&ids).await;
                        return Err(e);
                    }
                };
                let status = execution.as_ref().and_then(|x| x.status());
                match status.and_then(|s| s.state()) {
                    Some(QueryExecutionState::Succeeded) => {
                        let stats = execution.as_ref().and_then(|x| x.statistics());
                        let bytes = stats
                            .and_then(|s| s.data_scanned_in_bytes())
                            .unwrap_or(0)
                            .max(0) as u64;
                        let seconds = stats
                            .and_then(|s| s.total_execution_time_in_millis())
                            .map_or(started.elapsed().as_secs_f64(), |ms| ms as f64 / 1000.0);
                        done[i] = Some((bytes, seconds));
                    }
                    Some(
                        state @ (QueryExecutionState::Failed | QueryExecutionState::Cancelled),
                    ) => {
                        let reason = status
                            .and_then(|s| {
                                s.state_change_reason().map(str::to_string).or_else(|| {
                                    s.athena_error()
                                        .and_then(|e| e.error_message())
                                        .map(str::to_string)
                                })
                            })
                            .unwrap_or_else(|| "no reason given".into());
                        self.stop(&ids).await;
                        return Err(WarehouseError::Failed {
                            name: name.clone(),
                            query_id: id.clone(),
                            state: state.as_str().to_lowercase(),
                            reason,
                        });
                    }
                    _ => {}
                }
            }
            if done.iter().all(Option::is_some) {
                break;
            }
            let now = Instant::now();
            if now >= limit.at() {
                let i = done
                    .iter()
                    .position(Option::is_none)
                    .expect("one is running");
                self.stop(&ids).await;
                return Err(limit.error(&statements[i].0, &ids[i], self.timeout));
            }
            tokio::time::sleep(wait.min(limit.at() - now)).await;
            wait = (wait * 2).min(self.max_poll);
        }
        Ok(ids
            .into_iter()
            .zip(done)
            .map(|(id, d)| {
                let (bytes, seconds) = d.expect("every query succeeded");
                (id, bytes, seconds)
            })
            .collect())
    }
}

#[async_trait]
impl Warehouse for Athena {
    fn describe(&self) -> String {
        format!(
            "athena workgroup {} database {}",
            self.workgroup, self.database
        )
    }

    fn until(&self, deadline: Instant) -> std::sync::Arc<dyn Warehouse> {
        std::sync::Arc::new(Athena {
            deadline: Some(deadline),
            ..self.clone()
        })
    }

    async fn run(&self, statements: &[(String, String)]) -> Result<Vec<Answer>, WarehouseError> {
        let mut answers = Vec::with_capacity(statements.len());
        for ((name, _), (id, bytes_scanned, seconds)) in
            statements.iter().zip(self.execute(statements).await?)
        {
            answers.push(Answer {
                rows: self.results(name, &id).await?,
                query_id: id,
                bytes_scanned,
                seconds,
            });
        }
        Ok(answers)
    }

    /// `UNLOAD` into `location` as zstd Parquet.
    async fn write_parquet(
        &self,
        name: &str,
        sql: &str,
        location: &str,
    ) -> Result<Answer, WarehouseError> {
        let (query_id, bytes_scanned, seconds) = self
            .execute(&[(name.to_string(), unload_sql(name, sql, location))])
            .await?
            .remove(0);
        Ok(Answer {
            query_id,
            rows: RecordBatch::new_empty(std::sync::Arc::new(Schema::empty())),
            bytes_scanned,
            seconds,
        })
    }
}

/// The statement that writes `sql`'s rows as zstd Parquet files into `location`
/// (a rebuild's folder; the first line names what it rebuilds, for the query history).
pub fn unload_sql(name: &str, sql: &str, location: &str) -> String {
    format!(
        "-- naerdata rebuild {name}\nUNLOAD (\n{}\n)\nTO '{location}'\nWITH (format = 'PARQUET', compression = 'ZSTD')",
        sql.trim_end().trim_end_matches(';')
    )
}

/// The Arrow type of an Athena (Trino) column type as `GetQueryResults` names it.
fn arrow_type(c: &ColumnInfo) -> Result<DataType, String> {
    Ok(match c.r#type().to_ascii_lowercase().as_str() {
        "varchar" | "char" | "string" => DataType::Utf8,
        "boolean" => DataType::Boolean,
        "tinyint" => DataType::Int8,
        "smallint" => DataType::Int16,
        "integer" | "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "double" => DataType::Float64,
        "float" | "real" => DataType::Float32,
        "date" => DataType::Date32,
        // Athena prints milliseconds (Delta's microseconds when it reads them).
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        // Printed with its zone (`2026-10-01 10:00:00.000 UTC`): see `decode`.
        "timestamp with time zone" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        "decimal" => {
            let precision = u8::try_from(c.precision())
                .ok()
                .filter(|p| (1..=38).contains(p))
                .ok_or_else(|| {
                    format!("column {}: decimal precision {}", c.name(), c.precision())
                })?;
            let scale = i8::try_from(c.scale())
                .map_err(|_| format!("column {}: decimal scale {}", c.name(), c.scale()))?;
            DataType::Decimal128(precision, scale)
        }
        other => {
            return Err(format!(
                "column {} has type {other}, which no mart returns (expected text, boolean, an integer, a floating point or decimal number, a date or a timestamp)",
                c.name()
            ));
        }
    })
}

/// The rows of an answer as one batch, each column typed from the metadata. The first
/// row must repeat the column names (Athena's header row of a SELECT); a missing value
/// is NULL.
pub fn decode(columns: &[ColumnInfo], rows: &[Row]) -> Result<RecordBatch, String> {
    if columns.is_empty() {
        return Err("the answer has no columns".into());
    }
    let mut rows = rows.iter();
    let names: Vec<&str> = columns.iter().map(ColumnInfo::name).collect();
    match rows.next() {
        Some(header)
            if header
                .data()
                .iter()
                .map(|d| d.var_char_value().unwrap_or_default())
                .eq(names.iter().copied()) => {}
        Some(_) => {
            return Err(format!(
                "the first row does not repeat the column names ({})",
                names.join(", ")
            ));
        }
        None => return Err("the answer has no header row".into()),
    }
    let mut text: Vec<Vec<Option<&str>>> = vec![Vec::with_capacity(rows.len()); columns.len()];
    for (n, row) in rows.enumerate() {
        let data = row.data();
        if data.len() != columns.len() {
            return Err(format!(
                "row {} has {} values for {} columns",
                n + 1,
                data.len(),
                columns.len()
            ));
        }
        for (i, d) in data.iter().enumerate() {
            text[i].push(d.var_char_value());
        }
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (c, values) in columns.iter().zip(text) {
        let to = arrow_type(c)?;
        let zoned = matches!(to, DataType::Timestamp(_, Some(_)));
        let values: Vec<Option<String>> = values
            .into_iter()
            .map(|v| {
                v.map(|v| match v.strip_suffix(" UTC") {
                    Some(utc) if zoned => format!("{utc}Z"),
                    _ => v.to_string(),
                })
            })
            .collect();
        let strings: ArrayRef = std::sync::Arc::new(StringArray::from(values));
        let array = if to == DataType::Utf8 {
            strings
        } else {
            cast_with_options(&strings, &to, &options)
                .map_err(|e| format!("column {} ({}): {e}", c.name(), c.r#type()))?
        };
        fields.push(Field::new(c.name(), to, true));
        arrays.push(array);
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type};
    use aws_sdk_athena::types::Datum;

    fn athena() -> Athena {
        let conf = aws_sdk_athena::Config::builder()
            .behavior_version(aws_sdk_athena::config::BehaviorVersion::latest())
            .region(aws_sdk_athena::config::Region::new("eu-north-1"))
            .build();
        Athena::new(Client::from_conf(conf), "wg", "db")
    }

    #[test]
    fn waiting_ends_at_the_timeout_or_before_the_invocation_deadline() {
        let started = Instant::now();
        let mut a = athena();
        assert_eq!(a.limit(started), Limit::Timeout(started + a.timeout));
        // A deadline past the call's own timeout changes nothing.
        let far = started + a.timeout + DEADLINE_MARGIN + Duration::from_secs(60);
        assert_eq!(
            a.until(far).describe(),
            a.describe(),
            "the same engine, bounded"
        );
        a.deadline = Some(far);
        assert_eq!(a.limit(started), Limit::Timeout(started + a.timeout));
        // A Lambda invocation with 5 minutes left: the margin before its end.
        let soon = started + Duration::from_secs(300);
        a.deadline = Some(soon);
        assert_eq!(a.limit(started), Limit::Deadline(soon - DEADLINE_MARGIN));
        // Already within the margin: the limit is now, nothing may start.
        a.deadline = Some(started + DEADLINE_MARGIN / 2);
        assert!(a.limit(started).at() <= started);
        let e = a
            .limit(started)
            .error("dim_kommune", "", a.timeout)
            .to_string();
        assert_eq!(
            e,
            "dim_kommune: not started 20 s before the function's deadline"
        );
        let e = Limit::Deadline(started)
            .error("kpi", "q-1", a.timeout)
            .to_string();
        assert_eq!(
            e,
            "kpi: query q-1 stopped 20 s before the function's deadline"
        );
    }

    fn column(name: &str, ty: &str) -> ColumnInfo {
        ColumnInfo::builder()
            .name(name)
            .r#type(ty)
            .precision(if ty == "decimal" { 10 } else { 0 })
            .scale(if ty == "decimal" { 2 } else { 0 })
            .build()
            .unwrap()
    }

    fn row(values: &[Option<&str>]) -> Row {
        Row::builder()
            .set_data(Some(
                values
                    .iter()
                    .map(|v| {
                        Datum::builder()
                            .set_var_char_value(v.map(str::to_string))
                            .build()
                    })
                    .collect(),
            ))
            .build()
    }

    #[test]
    fn each_type_is_decoded_and_a_missing_value_is_null() {
        let columns = [
            column("k", "varchar"),
            column("n", "bigint"),
            column("i", "integer"),
            column("x", "double"),
            column("d", "date"),
            column("b", "boolean"),
            column("m", "decimal"),
        ];
        let rows = [
            row(&[
                Some("k"),
                Some("n"),
                Some("i"),
                Some("x"),
                Some("d"),
                Some("b"),
                Some("m"),
            ]),
            row(&[
                Some("101"),
                Some("12"),
                Some("-3"),
                Some("0.25"),
                Some("2026-10-31"),
                Some("true"),
                Some("12.34"),
            ]),
            row(&[None, None, None, None, None, None, None]),
        ];
        let b = decode(&columns, &rows).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(0), "101");
        assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), 12);
        assert_eq!(b.column(2).as_primitive::<Int32Type>().value(0), -3);
        assert_eq!(b.column(3).as_primitive::<Float64Type>().value(0), 0.25);
        assert_eq!(
            b.column(4).as_primitive::<Date32Type>().value_as_date(0),
            chrono::NaiveDate::from_ymd_opt(2026, 10, 31)
        );
        assert!(b.column(5).as_boolean().value(0));
        assert_eq!(b.column(6).as_primitive::<Decimal128Type>().value(0), 1234);
        for c in b.columns() {
            assert!(c.is_null(1), "{:?}", c.data_type());
        }
    }

    #[test]
    fn a_rebuild_unloads_zstd_parquet_into_its_own_folder() {
        let location =
            "s3://lake/presentation/current/kommune_indsats_current/rebuild-20261207t120000123/";
        assert_eq!(
            unload_sql(
                "current table kommune_indsats_current",
                "SELECT 1 AS x;\n",
                location
            ),
            format!(
                "-- naerdata rebuild current table kommune_indsats_current\nUNLOAD (\nSELECT 1 AS x\n)\nTO '{location}'\nWITH (format = 'PARQUET', compression = 'ZSTD')"
            )
        );
    }

    #[test]
    fn a_zoned_timestamp_is_read_in_utc() {
        let b = decode(
            &[column("t", "timestamp with time zone")],
            &[
                row(&[Some("t")]),
                row(&[Some("2026-10-01 10:00:00.250 UTC")]),
            ],
        )
        .unwrap();
        assert_eq!(
            b.column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            chrono::NaiveDate::from_ymd_opt(2026, 10, 1)
                .unwrap()
                .and_hms_milli_opt(10, 0, 0, 250)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        );
    }

    #[test]
    fn bad_answers_say_which_column_and_why() {
        let columns = [column("n", "bigint")];
        let e = decode(&columns, &[row(&[Some("n")]), row(&[Some("twelve")])]).unwrap_err();
        assert!(
            e.contains("column n (bigint)") && e.contains("twelve"),
            "{e}"
        );
        let e = decode(&columns, &[row(&[Some("2")])]).unwrap_err();
        assert!(e.contains("does not repeat the column names"), "{e}");
        let e = decode(&[column("a", "array")], &[row(&[Some("a")])]).unwrap_err();
        assert!(e.contains("column a has type array"), "{e}");
        let e = decode(&columns, &[row(&[Some("n")]), row(&[Some("1"), Some("2")])]).unwrap_err();
        assert!(e.contains("row 1 has 2 values for 1 columns"), "{e}");
        assert!(decode(&[], &[]).unwrap_err().contains("no columns"));
    }
}
