//! The Athena adapter against moto: the statement, workgroup and database sent, answers
//! read page by page (moto answers at once, so `athena_pages.py` cuts them into
//! Athena's pages of at most 1,000 rows) and every column type decoded. Also the
//! helpers the publish function's Athena test uses (`aws.rs`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use aws_sdk_athena::types::{EngineVersion, WorkGroupConfiguration};
use naerdata::aws::athena::{Athena, DEADLINE_MARGIN};
use naerdata::warehouse::{Warehouse, WarehouseError};
use serde_json::{Value, json};

use crate::support::{self, Moto, REGION};

/// moto behind Athena's paging (`athena_pages.py`), stopped when dropped.
pub struct Pager {
    child: Child,
    pub endpoint: String,
}

impl Pager {
    pub fn start(moto: &Moto) -> Pager {
        let python = std::env::var_os("NAERDATA_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
            });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/athena_pages.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&moto.endpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("athena_pages.py printed {line:?}, not its port"));
        Pager {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The pages of results it has served.
    pub fn pages(&self) -> u64 {
        let (status, body) = support::http(&self.endpoint, "GET", "/pages", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["served"]
            .as_u64()
            .unwrap()
    }

    /// An Athena client that talks to moto through the pager.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_athena::Client {
        aws_sdk_athena::Client::from_conf(
            aws_sdk_athena::config::Builder::from(sdk)
                .endpoint_url(&self.endpoint)
                .build(),
        )
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The publication's workgroup as the template declares it (engine v3, enforced).
pub async fn create_workgroup(client: &aws_sdk_athena::Client, name: &str) {
    client
        .create_work_group()
        .name(name)
        .configuration(
            WorkGroupConfiguration::builder()
                .enforce_work_group_configuration(true)
                .bytes_scanned_cutoff_per_query(10_737_418_240)
                .engine_version(
                    EngineVersion::builder()
                        .selected_engine_version("Athena engine version 3")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Queues answers in moto (its own API): each query started takes the next one.
pub fn inject(moto: &Moto, answers: &[Value]) {
    let body = json!({"region": REGION, "results": answers}).to_string();
    let (status, text) = support::http(
        &moto.endpoint,
        "POST",
        "/moto-api/static/athena/query-results",
        &body,
    );
    assert_eq!(status, 201, "{text}");
}

fn column_info(name: &str, ty: &str, precision: i32, scale: i32) -> Value {
    json!({"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name,
           "Type": ty, "Precision": precision, "Scale": scale, "Nullable": "UNKNOWN", "CaseSensitive": ty == "varchar"})
}

fn row(values: impl IntoIterator<Item = Option<String>>) -> Value {
    json!({"Data": values.into_iter().map(|v| match v {
        Some(v) => json!({"VarCharValue": v}),
        None => json!({}),
    }).collect::<Vec<_>>()})
}

/// A batch as Athena answers a SELECT: the column types, a header row of the names,
/// then every value as text and NULL as no value.
pub fn athena_answer(batch: &RecordBatch) -> Value {
    let schema = batch.schema();
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8 => "varchar",
                DataType::Int64 => "bigint",
                DataType::Int32 => "integer",
                DataType::Float64 => "double",
                DataType::Date32 => "date",
                DataType::Boolean => "boolean",
                DataType::Timestamp(..) => "timestamp",
                other => panic!("{}: no Athena type for {other}", f.name()),
            };
            column_info(f.name(), ty, 0, 0)
        })
        .collect();
    let mut rows = vec![row(schema.fields().iter().map(|f| Some(f.name().clone())))];
    for i in 0..batch.num_rows() {
        rows.push(row(batch.columns().iter().map(|c| {
            (!c.is_null(i)).then(|| match c.data_type() {
                // As Athena prints a timestamp: a space, no zone.
                DataType::Timestamp(..) => {
                    let utc = arrow::compute::cast(
                        c,
                        &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                    )
                    .unwrap();
                    utc.as_primitive::<TimestampMicrosecondType>()
                        .value_as_datetime(i)
                        .unwrap()
                        .format("%Y-%m-%d %H:%M:%S%.6f")
                        .to_string()
                }
                _ => arrow::util::display::array_value_to_string(c, i).unwrap(),
            })
        })));
    }
    json!({"rows": rows, "column_info": columns})
}

/// Every statement Athena (moto) was sent in `workgroup`, in order; each must have run
/// against `database`.
pub async fn sent_to(
    athena: &aws_sdk_athena::Client,
    workgroup: &str,
    database: &str,
) -> Vec<String> {
    let ids = athena
        .list_query_executions()
        .work_group(workgroup)
        .send()
        .await
        .unwrap()
        .query_execution_ids
        .unwrap_or_default();
    let mut sent = Vec::new();
    for id in ids {
        let q = athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .unwrap()
            .query_execution
            .unwrap();
        assert_eq!(q.work_group(), Some(workgroup));
        assert_eq!(
            q.query_execution_context().and_then(|c| c.database()),
            Some(database)
        );
        sent.push(q.query().unwrap().to_string());
    }
    sent
}

#[tokio::test]
async fn answers_come_in_pages_and_every_column_type_is_decoded() {
    let moto = Moto::start();
    let pager = Pager::start(&moto);
    let client = pager.client(&moto.sdk_config().await);
    create_workgroup(&client, "naerdata-test-publish").await;

    // 2,500 rows (three pages) of every type a mart may return, NULLs among them.
    let columns = vec![
        column_info("kommunekode", "varchar", 0, 0),
        column_info("borgere", "bigint", 19, 0),
        column_info("aar", "integer", 10, 0),
        column_info("andel", "double", 17, 0),
        column_info("periode_slut", "date", 0, 0),
        column_info("doed", "boolean", 0, 0),
        column_info("beloeb", "decimal", 12, 2),
        column_info("registreret", "timestamp", 3, 0),
    ];
    let mut rows = vec![row(columns
        .iter()
        .map(|c| Some(c["Name"].as_str().unwrap().to_string())))];
    for i in 0..2500_i64 {
        let null = i % 7 == 3;
        rows.push(row([
            (!null).then(|| format!("{:03}", 101 + i % 98)),
            (!null).then(|| (i * 1_000_003).to_string()),
            (!null).then(|| (2020 + i % 10).to_string()),
            (!null).then(|| format!("{}", i as f64 / 8.0)),
            (!null).then(|| format!("2026-{:02}-28", 1 + i % 12)),
            (!null).then(|| (i % 2 == 0).to_string()),
            (!null).then(|| format!("{}.{:02}", i, i % 100)),
            (!null).then(|| format!("2026-10-01 12:00:{:02}.250", i % 60)),
        ]));
    }
    inject(&moto, &[json!({"rows": rows, "column_info": columns})]);

    let athena = Athena::new(client.clone(), "naerdata-test-publish", "naerdata_test");
    let sql = "SELECT kommunekode, COUNT(*) AS borgere FROM dim_person GROUP BY 1";
    let answers = athena
        .run(&[("probe".to_string(), sql.to_string())])
        .await
        .unwrap();
    assert_eq!(answers.len(), 1);
    let b = &answers[0].rows;
    assert_eq!(
        b.num_rows(),
        2500,
        "every page read, the header row left out"
    );
    assert_eq!(pager.pages(), 3, "1,000 + 1,000 + 500 rows");
    let types: Vec<DataType> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Utf8,
            DataType::Int64,
            DataType::Int32,
            DataType::Float64,
            DataType::Date32,
            DataType::Boolean,
            DataType::Decimal128(12, 2),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        ]
    );
    let i = 2499; // on the third page
    assert_eq!(
        b.column(0).as_string::<i32>().value(i),
        format!("{:03}", 101 + i % 98)
    );
    assert_eq!(
        b.column(1).as_primitive::<Int64Type>().value(i),
        2499 * 1_000_003
    );
    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(i), 2029);
    assert_eq!(
        b.column(3).as_primitive::<Float64Type>().value(i),
        2499.0 / 8.0
    );
    assert_eq!(
        b.column(4).as_primitive::<Date32Type>().value_as_date(i),
        chrono::NaiveDate::from_ymd_opt(2026, 4, 28)
    );
    assert!(!b.column(5).as_boolean().value(i));
    assert_eq!(
        b.column(6).as_primitive::<Decimal128Type>().value(i),
        249_999
    );
    assert_eq!(
        b.column(7)
            .as_primitive::<TimestampMicrosecondType>()
            .value_as_datetime(i),
        chrono::NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_milli_opt(12, 0, 39, 250)
    );
    for c in b.columns() {
        assert!(
            c.is_null(3) && c.is_null(1004) && !c.is_null(1005),
            "{}",
            c.data_type()
        );
        assert_eq!(c.null_count(), (0..2500).filter(|i| i % 7 == 3).count());
    }

    // What Athena was asked: the statement as given, in the workgroup and database.
    assert_eq!(
        sent_to(&client, "naerdata-test-publish", "naerdata_test").await,
        vec![sql.to_string()]
    );

    // An invocation about to end: nothing is started, and the error says why.
    let near = athena.until(Instant::now() + DEADLINE_MARGIN / 2);
    let e = near
        .run(&[("late".to_string(), "SELECT 2 AS x".to_string())])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WarehouseError::Deadline { name, query_id, .. } if name == "late" && query_id.is_empty()),
        "{e}"
    );
    assert_eq!(
        sent_to(&client, "naerdata-test-publish", "naerdata_test").await,
        vec![sql.to_string()],
        "nothing was started"
    );
    // With the invocation's time ahead, the same engine runs as before.
    let x = vec![column_info("x", "integer", 10, 0)];
    inject(
        &moto,
        &[
            json!({"rows": [row([Some("x".to_string())]), row([Some("2".to_string())])], "column_info": x}),
        ],
    );
    let answers = athena
        .until(Instant::now() + DEADLINE_MARGIN + Duration::from_secs(600))
        .run(&[("in_time".to_string(), "SELECT 2 AS x".to_string())])
        .await
        .unwrap();
    assert_eq!(
        answers[0]
            .rows
            .column(0)
            .as_primitive::<Int32Type>()
            .value(0),
        2
    );

    // A workgroup that is not there: the call, and Athena's reason.
    let e = Athena::new(client, "naerdata-test-none", "naerdata_test")
        .run(&[("probe".to_string(), sql.to_string())])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WarehouseError::Call { name, call: "StartQueryExecution", message } if name == "probe" && message.contains("WorkGroup does not exist")),
        "{e}"
    );
}
