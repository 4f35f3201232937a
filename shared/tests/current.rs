//! The current tables maintained day by day by merging what changed give exactly the
//! tables a rebuild from the whole history gives: after a month of daily deliveries
//! with corrections, entered-in-error bundles, withdrawn (`tilbagekaldt`) rows, a late
//! older version of a withdrawn record, a new CPR number and a retraction.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{Duration, NaiveDate};
use naerdata::Platform;
use naerdata::contract::Registry;
use naerdata::current::How;
use naerdata::generate::{self, Effects, GenerateOptions, Generated};
use naerdata::ports::FixedClock;
use naerdata::process;
use naerdata::publish::{self, PublishOptions, Published};
use naerdata::receive::{self, Received};

fn platform(dir: &std::path::Path) -> Platform {
    let mut p = Platform::local(dir, Registry::builtin()).unwrap();
    p.clock = Arc::new(FixedClock("2026-12-31T12:00:00Z".parse().unwrap()));
    p
}

/// Receives and processes one file; returns its delivery id (`None` for a file the
/// same as one delivered before: a header-only day).
async fn deliver(p: &Platform, key: &str, body: Vec<u8>) -> Option<String> {
    p.stores.landing.put(key, Bytes::from(body)).await.unwrap();
    let Received::ToProcess(id) = receive::receive(p, key, None).await.unwrap() else {
        return None;
    };
    process::process(p, &id).await.unwrap();
    Some(id)
}

/// Every row of every current table, as text, sorted: the tables compared whole.
async fn current_tables(p: &Platform) -> BTreeMap<String, Vec<String>> {
    let ctx = datafusion::prelude::SessionContext::new();
    let mut out = BTreeMap::new();
    for t in publish::presentation_tables(&p.contracts).await.unwrap() {
        if t.kind != "current" {
            continue;
        }
        let Some(files) = publish::published_files(p, &t).await.unwrap() else {
            continue;
        };
        let mut rows = Vec::new();
        if !files.is_empty() {
            let batches = ctx
                .read_parquet(
                    files,
                    datafusion::prelude::ParquetReadOptions::default().schema(&t.schema),
                )
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            for b in &batches {
                let text: Vec<_> = b
                    .columns()
                    .iter()
                    .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
                    .collect();
                for i in 0..b.num_rows() {
                    let row: Vec<String> = text
                        .iter()
                        .map(|c| {
                            arrow::util::display::array_value_to_string(c, i).unwrap_or_default()
                        })
                        .collect();
                    rows.push(row.join("|"));
                }
            }
        }
        rows.sort();
        out.insert(t.name.clone(), rows);
    }
    out
}

fn how(published: &Published, table: &str) -> How {
    published
        .current
        .iter()
        .find(|m| m.table == table)
        .unwrap_or_else(|| panic!("no current table {table}"))
        .how
        .clone()
}

/// A GP diagnosis row of record `id` registered at `at`, withdrawn or not.
fn diagnosis(id: &str, cpr: &str, at: &str, withdrawn: bool) -> String {
    format!("{id};{cpr};012345;T90;2026-09-01;diabetes2;{at};{withdrawn}\n")
}

#[tokio::test]
async fn a_month_of_daily_merges_gives_what_a_rebuild_gives() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir.path().join("home"));
    let start = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    let mut opts = GenerateOptions::new(dir.path().join("input"));
    opts.persons = 120;
    opts.days = 30;
    opts.start = start;
    opts.kommuner = Some(4);
    opts.history_days = 0;
    opts.effects = Effects::NONE;
    let files = generate::generate(&opts).unwrap();
    let mut by_day: BTreeMap<String, Vec<&Generated>> = BTreeMap::new();
    for f in &files {
        by_day.entry(f.day()).or_default().push(f);
    }
    // A person who has GP contacts: their number changes mid-month.
    let gp = files
        .iter()
        .find(|f| f.dataset == "almenpraksis.kontakt" && f.rows > 0)
        .unwrap();
    let text = std::fs::read_to_string(&gp.path).unwrap();
    let moving_cpr = text
        .lines()
        .nth(1)
        .unwrap()
        .split(';')
        .nth(1)
        .unwrap()
        .to_string();

    let header = "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret;tilbagekaldt\n";
    let mut merged = 0;
    let mut relinked = false;
    let mut retracted = None;
    for (n, (day, day_files)) in by_day.iter().enumerate() {
        for f in day_files {
            let key = f
                .path
                .strip_prefix(&opts.out)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let id = deliver(&p, &key, std::fs::read(&f.path).unwrap()).await;
            if n == 12 && f.dataset == "almenpraksis.kontakt" {
                retracted = id;
            }
        }
        // Hand-made withdrawals: W1 withdrawn, then a late, older version of it
        // (stays out); W2 withdrawn, then a newer version (comes back); W3 withdrawn
        // the same day it is first sent.
        let extra = match n {
            3 => Some(
                diagnosis("W1", "670961-4001", "2026-09-03T10:00:00+02:00", false)
                    + &diagnosis("W2", "680961-4002", "2026-09-03T10:00:00+02:00", false),
            ),
            5 => Some(
                diagnosis("W1", "670961-4001", "2026-09-05T10:00:00+02:00", true)
                    + &diagnosis("W2", "680961-4002", "2026-09-05T10:00:00+02:00", true)
                    + &diagnosis("W3", "690961-4003", "2026-09-06T10:00:00+02:00", false)
                    + &diagnosis("W3", "690961-4003", "2026-09-06T11:00:00+02:00", true),
            ),
            8 => Some(
                diagnosis("W1", "670961-4001", "2026-09-04T10:00:00+02:00", false)
                    + &diagnosis("W2", "680961-4002", "2026-09-08T10:00:00+02:00", false),
            ),
            _ => None,
        };
        if let Some(rows) = extra {
            deliver(
                &p,
                &format!("almenpraksis/diagnose/{day}/hand-{n}.csv"),
                format!("{header}{rows}").into_bytes(),
            )
            .await
            .expect("a new delivery");
        }
        if n == 10 {
            let skift = format!(
                "skift_id;cpr;nyt_cpr;skiftedato\n9000000001;{moving_cpr};710961-4111;{day}\n"
            );
            deliver(
                &p,
                &format!("cpr/personnummerskift/{day}/skift.csv"),
                skift.into_bytes(),
            )
            .await
            .expect("a new delivery");
        }
        if n == 15 {
            let id = retracted.as_deref().expect("a delivery to retract");
            naerdata::retract::retract(&p, id, "sent for the wrong clinic")
                .await
                .unwrap();
        }
        let published = publish::publish(&p, day.parse().unwrap()).await.unwrap();
        if n == 0 {
            assert!(
                matches!(
                    how(&published, "almenpraksis_kontakt_current"),
                    How::Rebuilt { .. }
                ),
                "the first publication builds"
            );
            continue;
        }
        for m in &published.current {
            if let How::Merged { relinked: r, .. } = m.how {
                merged += 1;
                relinked |= r;
            }
        }
        if n == 15 {
            match how(&published, "almenpraksis_kontakt_current") {
                How::Rebuilt { reason } => assert!(reason.contains("removed rows"), "{reason}"),
                other => panic!("a retraction rebuilds its table, not {other:?}"),
            }
        }
        if n == 16 {
            assert!(
                matches!(
                    how(&published, "almenpraksis_kontakt_current"),
                    How::Merged { .. } | How::Unchanged
                ),
                "the day after a rebuild merges again"
            );
        }
    }
    assert!(merged > 50, "the month merged ({merged} merges)");
    assert!(relinked, "a new CPR number moved rows by merge");

    let last: NaiveDate = by_day.keys().last().unwrap().parse().unwrap();
    let daily = current_tables(&p).await;
    let diagnoses = &daily["almenpraksis_diagnose_current"];
    let has = |id: &str| diagnoses.iter().any(|r| r.starts_with(&format!("{id}|")));
    assert!(
        !has("W1"),
        "a late older version of a withdrawn record stays out"
    );
    assert!(
        has("W2"),
        "a newer version of a withdrawn record comes back"
    );
    assert!(!has("W3"), "withdrawn the day it came");
    assert!(daily.values().map(Vec::len).sum::<usize>() > 500);

    let full = publish::publish_with(
        &p,
        last + Duration::days(1),
        PublishOptions {
            full: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        full.current
            .iter()
            .filter(|m| m.version.is_some())
            .all(|m| matches!(&m.how, How::Rebuilt { reason } if reason.contains("--full")))
    );
    let rebuilt = current_tables(&p).await;
    assert_eq!(
        daily.keys().collect::<Vec<_>>(),
        rebuilt.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &daily {
        assert_eq!(rows.len(), rebuilt[table].len(), "{table}: rows");
        assert!(
            rows == &rebuilt[table],
            "{table}: merged and rebuilt rows differ"
        );
    }

    // Nothing new: the next publication changes no table.
    let again = publish::publish(&p, last + Duration::days(2))
        .await
        .unwrap();
    assert!(
        again.current.iter().all(|m| m.how == How::Unchanged),
        "{:?}",
        again.current
    );
}

/// A publication that stopped after its current tables moved on but before it wrote
/// its record: the next one must not merge onto tables it cannot account for. It
/// rebuilds them, says why, and the tables are what a rebuild gives.
#[tokio::test]
async fn a_publication_that_stopped_half_way_is_followed_by_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir.path().join("home"));
    let start = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    let mut opts = GenerateOptions::new(dir.path().join("input"));
    opts.persons = 80;
    opts.days = 3;
    opts.start = start;
    opts.kommuner = Some(2);
    opts.effects = Effects::NONE;
    let files = generate::generate(&opts).unwrap();
    let mut by_day: BTreeMap<String, Vec<&Generated>> = BTreeMap::new();
    for f in &files {
        by_day.entry(f.day()).or_default().push(f);
    }
    let days: Vec<_> = by_day.keys().cloned().collect();
    let ingest = |day: &str| {
        let p = &p;
        let files = by_day[day].clone();
        let out = opts.out.clone();
        async move {
            for f in files {
                let key = f
                    .path
                    .strip_prefix(&out)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                deliver(p, &key, std::fs::read(&f.path).unwrap()).await;
            }
        }
    };
    ingest(&days[0]).await;
    publish::publish(&p, days[0].parse().unwrap())
        .await
        .unwrap();
    let record = p
        .stores
        .lake
        .get(naerdata::layout::PUBLICATION_KEY)
        .await
        .unwrap()
        .unwrap();
    ingest(&days[1]).await;
    let moved = publish::publish(&p, days[1].parse().unwrap())
        .await
        .unwrap();
    assert!(
        moved
            .current
            .iter()
            .any(|m| matches!(m.how, How::Merged { .. })),
        "the second day merges"
    );
    // As if that publication had stopped before its record: the record is the first's.
    p.stores
        .lake
        .put(naerdata::layout::PUBLICATION_KEY, record)
        .await
        .unwrap();
    ingest(&days[2]).await;
    let next = publish::publish(&p, days[2].parse().unwrap())
        .await
        .unwrap();
    for m in next.current.iter().filter(|m| {
        moved
            .current
            .iter()
            .any(|o| o.table == m.table && matches!(o.how, How::Merged { .. }))
    }) {
        match &m.how {
            How::Rebuilt { reason } => assert!(
                reason.contains("the last publication left version"),
                "{}: {reason}",
                m.table
            ),
            other => panic!(
                "{}: merged onto a table it cannot account for: {other:?}",
                m.table
            ),
        }
    }
    let after = current_tables(&p).await;
    publish::publish_with(
        &p,
        days[2].parse().unwrap(),
        PublishOptions {
            full: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(after, current_tables(&p).await);
}

/// DataFusion standing in for Athena: statements run over the lake as it stands, and a
/// rebuild's rows written as Parquet files into the folder it is given (as UNLOAD).
struct Standin(Platform, NaiveDate);

#[async_trait::async_trait]
impl naerdata::warehouse::Warehouse for Standin {
    fn describe(&self) -> String {
        "DataFusion standing in for Athena".into()
    }

    fn until(&self, _deadline: std::time::Instant) -> Arc<dyn naerdata::warehouse::Warehouse> {
        // It runs in the test's process: nothing waits on a remote engine.
        Arc::new(Standin(self.0.clone(), self.1))
    }

    async fn run(
        &self,
        statements: &[(String, String)],
    ) -> Result<Vec<naerdata::warehouse::Answer>, naerdata::warehouse::WarehouseError> {
        let mut out = Vec::new();
        for (_, sql) in statements {
            let ctx = publish::presentation_session(&self.0, self.1)
                .await
                .unwrap();
            let df = ctx.sql(sql).await.unwrap();
            let schema = df.schema().inner().clone();
            let batches = df.collect().await.unwrap();
            out.push(naerdata::warehouse::Answer {
                query_id: "standin".into(),
                rows: arrow::compute::concat_batches(&schema, &batches).unwrap(),
                bytes_scanned: 0,
                seconds: 0.0,
            });
        }
        Ok(out)
    }

    async fn write_parquet(
        &self,
        _name: &str,
        sql: &str,
        location: &str,
    ) -> Result<naerdata::warehouse::Answer, naerdata::warehouse::WarehouseError> {
        let ctx = publish::presentation_session(&self.0, self.1)
            .await
            .unwrap();
        let rows = ctx.sql(sql).await.unwrap();
        std::fs::create_dir_all(location).unwrap();
        rows.write_parquet(
            location,
            datafusion::dataframe::DataFrameWriteOptions::new(),
            None,
        )
        .await
        .unwrap();
        Ok(naerdata::warehouse::Answer {
            query_id: "standin".into(),
            rows: arrow::record_batch::RecordBatch::new_empty(Arc::new(
                arrow::datatypes::Schema::empty(),
            )),
            bytes_scanned: 0,
            seconds: 0.0,
        })
    }
}

#[tokio::test]
async fn a_rebuild_on_a_warehouse_gives_the_tables_a_rebuild_here_gives() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let p = platform(&home);
    let mut opts = GenerateOptions::new(dir.path().join("input"));
    opts.persons = 80;
    opts.days = 3;
    opts.start = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    opts.kommuner = Some(2);
    for f in generate::generate(&opts).unwrap() {
        let key = f.path.strip_prefix(&opts.out).unwrap().to_str().unwrap();
        deliver(&p, key, std::fs::read(&f.path).unwrap()).await;
    }
    let day = NaiveDate::from_ymd_opt(2027, 4, 15).unwrap();
    let here = publish::publish(&p, day).await.unwrap();
    let tables = current_tables(&p).await;
    assert!(tables.values().filter(|rows| !rows.is_empty()).count() >= 5);

    // One table as a contract change would leave it: a column the SQL no longer has.
    let name = "almenpraksis_diagnose_current";
    let prefix = naerdata::layout::presentation_prefix("current", name);
    let t = naerdata::lake::delta::open(p.stores.lake.as_ref(), &prefix, None)
        .await
        .unwrap()
        .unwrap();
    let old = publish::published_batches(&p, "current", name)
        .await
        .unwrap()
        .unwrap();
    let old = arrow::compute::concat_batches(&old[0].schema(), &old).unwrap();
    let mut fields: Vec<_> = old.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        "udgaaet",
        arrow::datatypes::DataType::Utf8,
        true,
    )));
    let mut columns = old.columns().to_vec();
    columns.push(Arc::new(arrow::array::StringArray::from(vec![
        Some("x");
        old.num_rows(
        )
    ])));
    let widened = arrow::record_batch::RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
    .unwrap();
    t.write(vec![widened])
        .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .await
        .unwrap();
    let log = home.join("lake").join(&prefix).join("_delta_log");
    let commits = || std::fs::read_dir(&log).unwrap().count();
    let before = commits();

    let on = publish::publish_with(
        &p,
        day,
        PublishOptions {
            full: true,
            warehouse: Some(Arc::new(Standin(p.clone(), day))),
        },
    )
    .await
    .unwrap();
    for m in &on.current {
        if m.version.is_some() {
            assert!(
                matches!(&m.how, How::Rebuilt { reason } if reason.contains("--full")),
                "{}: {}",
                m.table,
                m.how
            );
        }
    }
    // The same rows in every table, read through the Delta logs; the marts the same.
    assert_eq!(current_tables(&p).await, tables);
    assert_eq!(on.batches, here.batches);
    // The extra column gone in the same commit as the files: one commit more.
    assert_eq!(commits(), before + 1);
    let t = naerdata::lake::delta::open(p.stores.lake.as_ref(), &prefix, None)
        .await
        .unwrap()
        .unwrap();
    let columns: Vec<String> = t
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| f.name().clone())
        .collect();
    assert!(!columns.contains(&"udgaaet".to_string()), "{columns:?}");
    let newest =
        std::fs::read_to_string(log.join(format!("{:020}.json", t.version().unwrap()))).unwrap();
    assert!(
        newest.contains("\"metaData\"")
            && newest.contains("\"remove\"")
            && newest.contains("\"add\""),
        "{newest}"
    );
}
