//! The publish function against a local AWS (moto server over HTTP): generated
//! deliveries go through receive and process into the lake bucket, then the publish
//! handler runs as the schedule and the extract queue call it, reading the lake with
//! DataFusion over S3. Needs `make test` (moto and pyarrow in .venv).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::support::{self, Moto, Stack, check_objects, provision, pump};
use arrow::array::{Array, RecordBatch, StringArray};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use naerdata::Platform;
use naerdata::aws::{self, ProjectSecretKey, SqsQueue};
use naerdata::contract::Registry;
use naerdata::extract::{ExtractRequest, ProjectSpec, spec_key};
use naerdata::ports::FixedClock;
use naerdata_publish::Publisher;
use naerdata_receive::Receiver;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

const DAYS: u32 = 3;

fn platform(stack: &Stack) -> Platform {
    let mut p = aws::platform(&stack.clients, &stack.resources, Registry::builtin())
        .expect("the platform on the emulator");
    p.clock = Arc::new(FixedClock(
        chrono::DateTime::parse_from_rfc3339("2026-10-04T08:00:00Z")
            .unwrap()
            .to_utc(),
    ));
    p
}

fn publisher(stack: &Stack) -> Publisher {
    Publisher::aws(&stack.clients, &stack.resources, platform(stack)).unwrap()
}

/// A generated population's deliveries, uploaded to the landing bucket and taken
/// through the receive and process functions. Returns the generator's input folder.
async fn ingest(stack: &Stack, persons: usize) -> tempfile::TempDir {
    let p = platform(stack);
    let input = tempfile::tempdir().unwrap();
    let mut opts = naerdata::generate::GenerateOptions::new(input.path());
    opts.persons = persons;
    opts.days = DAYS;
    for g in naerdata::generate::generate(&opts).unwrap() {
        let key = g.path.strip_prefix(input.path()).unwrap().to_str().unwrap();
        stack.upload(key, std::fs::read(&g.path).unwrap()).await;
    }
    let r = Receiver {
        platform: p.clone(),
        process_queue: Arc::new(SqsQueue::new(
            stack.clients.sqs.clone(),
            &stack.process_queue,
        )),
        landing_bucket: stack.resources.landing_bucket.clone(),
    };
    pump(stack, &stack.receive_queue, &stack.receive_queue_arn, |e| {
        r.handle(e)
    })
    .await;
    pump(stack, &stack.process_queue, &stack.process_queue_arn, |e| {
        naerdata_process::handle(&p, e)
    })
    .await;
    assert_eq!(stack.depth(&stack.process_dlq).await, 0);
    input
}

/// The schedule event of `day`, as EventBridge sends it.
fn schedule(day: &str) -> Value {
    let mut e: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../events/publish-schedule.json"),
        )
        .unwrap(),
    )
    .unwrap();
    e["time"] = json!(format!("{day}T03:00:00Z"));
    e
}

fn batches(body: &Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn strings(batches: &[RecordBatch], column: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in batches {
        let a = b
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no {column}"));
        let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).unwrap();
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend(
            (0..a.len())
                .filter(|&i| a.is_valid(i))
                .map(|i| a.value(i).to_string()),
        );
    }
    out
}

#[tokio::test]
async fn the_daily_schedule_publishes_what_a_local_publish_of_the_same_lake_gives() {
    let moto = Moto::start();
    let stack = provision(&moto, "pub").await;
    let input = ingest(&stack, 300).await;
    let publisher = publisher(&stack);

    // The first day the generated deliveries' periods (October 2026; the fourth
    // quarter for rehabilitation) are closed, so every mart publishes them.
    let answer = publisher.handle(schedule("2027-04-15")).await.unwrap();
    assert_eq!(answer["reference_date"], "2027-04-15");
    let tables: BTreeMap<String, u64> = answer["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().into(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(tables["dim_person"] > 100, "{tables:?}");
    assert!(tables["almenpraksis_diagnose_current"] > 0, "{tables:?}");
    // The population register went through the chain: residence periods, and the
    // generated change of CPR number mapped.
    assert!(tables["cpr_befolkning_current"] >= 300, "{tables:?}");
    assert!(tables["person_bopael"] >= 300, "{tables:?}");
    assert!(tables["dim_person_skift"] >= 1, "{tables:?}");
    assert_eq!(
        answer["marts"].as_array().unwrap().len(),
        naerdata::publish::MARTS.len()
    );
    // Every municipality's own page and indicators table, under its own prefix and
    // nothing else there.
    let lake_keys = stack.keys(&stack.resources.lake_bucket).await;
    for k in naerdata::reference::kommuner() {
        let mine: Vec<&String> = lake_keys
            .iter()
            .filter(|key| key.starts_with(&naerdata::layout::kommune_prefix(&k.code)))
            .collect();
        assert_eq!(
            mine,
            vec![
                &naerdata::layout::kommune_page_key(&k.code),
                &naerdata::layout::kommune_table_key(&k.code)
            ],
            "{}",
            k.code
        );
    }
    let indicators = batches(
        &stack
            .get(
                &stack.resources.lake_bucket,
                &naerdata::layout::kommune_table_key("101"),
            )
            .await,
    );
    assert!(indicators.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
    assert_eq!(
        indicators[0].schema(),
        naerdata::municipal::indicators_schema()
    );

    // The same lake, copied to a local platform and published there: the same tables
    // with the same row counts, and the same marts cell for cell.
    let local = tempfile::tempdir().unwrap();
    let lake = stack.resources.lake_bucket.clone();
    let curated: Vec<String> = stack
        .keys(&lake)
        .await
        .into_iter()
        .filter(|k| k.starts_with("curated/"))
        .collect();
    assert!(curated.len() > 10);
    for k in &curated {
        let path = local.path().join("lake").join(k);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, stack.get(&lake, k).await).unwrap();
    }
    let lp = Platform::local(local.path(), Registry::builtin()).unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2027, 4, 15).unwrap();
    let expected = naerdata::publish::publish(&lp, day).await.unwrap();
    let expected_tables: BTreeMap<String, u64> = expected.tables.iter().cloned().collect();
    assert_eq!(tables, expected_tables);
    assert!(
        expected.batches.iter().any(|(_, b)| b.num_rows() > 0),
        "closed periods are published"
    );
    for (mart, batch) in &expected.batches {
        let key = naerdata::layout::mart_publication_key(mart, day);
        let published = batches(&stack.get(&lake, &key).await);
        let published = arrow::compute::concat_batches(&batch.schema(), &published).unwrap();
        assert_eq!(&published, batch, "{mart}");
    }

    // The same day with the marts' SQL on Athena (NAERDATA_ATHENA_WORKGROUP): moto
    // answers each statement with the cells DataFusion computes from the same lake,
    // and the marts published from them must be the ones above.
    marts_on_athena(&moto, &stack, &lp, day, &expected.batches).await;

    // Every declared presentation table is in the bucket (SSE-KMS) and readable by an
    // independent reader; no input CPR in any of them.
    let declared = naerdata::publish::presentation_tables(&Registry::builtin())
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let keys = stack.download(&lake, out.path()).await;
    let report = check_objects(&out.path().join("presentation"), input.path());
    assert_eq!(
        report["cpr_hits"],
        json!({}),
        "CPRs in the presentation zone"
    );
    assert!(report["input_cprs"].as_u64().unwrap() > 100);
    for t in &declared {
        if !tables.contains_key(&t.name) && t.kind != "marts" {
            continue; // a dataset the generator does not deliver
        }
        let objects: Vec<String> = if t.kind == "marts" {
            vec![naerdata::layout::mart_publication_key(&t.name, day)]
        } else if t.kind == "current" {
            // A Delta table: its log and its data files.
            let prefix = naerdata::layout::presentation_prefix(t.kind, &t.name);
            assert!(
                keys.contains(&format!("{prefix}_delta_log/00000000000000000000.json")),
                "{prefix}: no Delta log"
            );
            keys.iter()
                .filter(|k| k.starts_with(&prefix) && k.ends_with(".parquet") && !k.contains("/_"))
                .cloned()
                .collect()
        } else {
            vec![naerdata::publish::presentation_key(t.kind, &t.name)]
        };
        assert!(!objects.is_empty(), "{}: no objects", t.name);
        for key in objects {
            assert!(keys.contains(&key), "{key} missing");
            let rel = key.strip_prefix("presentation/").unwrap();
            let columns: Vec<&str> = report["parquet"][rel]["columns"]
                .as_array()
                .unwrap_or_else(|| panic!("{rel} not read"))
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let names: Vec<&str> = t
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            assert_eq!(columns, names, "{key}: the catalog's columns");
            let head = stack
                .clients
                .s3
                .head_object()
                .bucket(&lake)
                .key(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(
                head.server_side_encryption(),
                Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
                "{key}"
            );
        }
    }

    // The next day: one more GP delivery, merged into its current table in the bucket
    // (delta-rs MERGE over S3); an operator's full rebuild then gives the same rows.
    let p = platform(&stack);
    let gp = "record_id;cpr;ydernummer;kontaktdato;ydelseskode;registreret\n\
              aws-k1;670385-4001;012345;2026-10-01;0101;2026-10-01T10:00:00+02:00\n\
              aws-k2;680385-4002;012345;2026-10-02;0101;2026-10-02T10:00:00+02:00\n";
    // Dated the platform clock's day (a landing day after today is refused).
    let key = "almenpraksis/kontakt/2026-10-04/aws-more.csv";
    stack.upload(key, gp.as_bytes().to_vec()).await;
    let id = match naerdata::receive::receive(&p, key, None).await.unwrap() {
        naerdata::receive::Received::ToProcess(id) => id,
        other => panic!("{key}: {other:?}"),
    };
    naerdata::process::process(&p, &id).await.unwrap();
    let how = |answer: &Value, table: &str| -> (String, u64) {
        let t = answer["current"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("no {table} in {answer}"));
        (
            t["how"].as_str().unwrap().to_string(),
            t["rows"].as_u64().unwrap(),
        )
    };
    let table = "almenpraksis_kontakt_current";
    let merged = publisher
        .handle(json!({"reference_date": "2027-04-16"}))
        .await
        .unwrap();
    let (merged_how, merged_rows) = how(&merged, table);
    assert!(merged_how.starts_with("merged 2 new rows"), "{merged_how}");
    assert_eq!(merged_rows, tables[table] + 2);
    assert_eq!(how(&merged, "lpr_kontakt_current").0, "unchanged");
    let rebuilt = publisher
        .handle(json!({"reference_date": "2027-04-16", "full": true}))
        .await
        .unwrap();
    let (rebuilt_how, rebuilt_rows) = how(&rebuilt, table);
    assert!(rebuilt_how.contains("--full"), "{rebuilt_how}");
    assert_eq!(rebuilt_rows, merged_rows);
}

/// Sends `{"project", "spec_key"}` to the extract queue.
/// The day's marts published again with their SQL on Athena: the statements sent
/// (exact text, workgroup, database), the answers read through Athena's paging, and a
/// publication whose last mart fails writing no mart at all.
async fn marts_on_athena(
    moto: &Moto,
    stack: &Stack,
    local: &Platform,
    day: chrono::NaiveDate,
    expected: &[(String, RecordBatch)],
) {
    use crate::athena::{Pager, athena_answer, create_workgroup, inject, sent_to};
    let pager = Pager::start(moto);
    let mut clients = stack.clients.clone();
    clients.athena = pager.client(&clients.sdk);
    let workgroup = "pub-publish";
    create_workgroup(&clients.athena, workgroup).await;
    let mut resources = stack.resources.clone();
    resources.athena_workgroup = Some(workgroup.into());
    resources.glue_database = Some("naerdata_pub".into());
    let on_athena = Publisher::aws(&clients, &resources, platform(stack)).unwrap();

    let mut statements = Vec::new();
    let mut answers = Vec::new();
    for spec in naerdata::publish::marts() {
        let periods = naerdata::publication::open_for_publication(&spec, &Registry::builtin(), day);
        statements.push(naerdata::warehouse::mart_sql(&spec.name, &spec.sql, &periods).unwrap());
        let cells = naerdata::publish::unprotected_cells(local, &spec.name, &periods)
            .await
            .unwrap();
        answers.push(athena_answer(&cells));
    }
    let lake = &stack.resources.lake_bucket;
    let partition = format!("/publication={day}/");
    let partitions = || async {
        stack
            .keys(lake)
            .await
            .into_iter()
            .filter(|k| k.starts_with("presentation/marts/") && k.contains(&partition))
            .collect::<Vec<_>>()
    };
    let written = partitions().await;
    assert_eq!(written.len(), expected.len(), "{written:?}");
    for key in &written {
        stack
            .clients
            .s3
            .delete_object()
            .bucket(lake)
            .key(key)
            .send()
            .await
            .unwrap();
    }

    // The last mart's answer is missing: the publication fails naming it, and no
    // mart's partition of the day appears.
    inject(moto, &answers[..answers.len() - 1]);
    let e = on_athena
        .handle(schedule(&day.to_string()))
        .await
        .unwrap_err();
    let last = &expected.last().unwrap().0;
    assert!(
        e.to_string().contains(&format!("mart {last}: query "))
            && e.to_string().contains("no columns"),
        "{e}"
    );
    assert_eq!(partitions().await, Vec::<String>::new());

    // All answers: every mart published, the same as on DataFusion.
    inject(moto, &answers);
    let answer = on_athena.handle(schedule(&day.to_string())).await.unwrap();
    assert_eq!(answer["marts"].as_array().unwrap().len(), expected.len());
    for (mart, batch) in expected {
        let key = naerdata::layout::mart_publication_key(mart, day);
        let published = batches(&stack.get(lake, &key).await);
        let published = arrow::compute::concat_batches(&batch.schema(), &published).unwrap();
        assert_eq!(&published, batch, "{mart} published from Athena's answer");
    }
    assert!(pager.pages() >= 2 * expected.len() as u64 - 1);

    // What Athena was asked, in order (both runs): each mart's SQL with its periods
    // written in, in the publication's workgroup and the Glue database.
    let sent = sent_to(&clients.athena, workgroup, "naerdata_pub").await;
    let twice: Vec<String> = statements.iter().chain(&statements).cloned().collect();
    assert_eq!(sent, twice);

    // An operator's full rebuild on Athena: each current table with data is written by
    // UNLOAD into a new folder of the table (here the proxy writes the rows publish
    // left, as Athena would), then committed as one Delta overwrite; the withdrawn keys
    // come from Athena too. The tables read as before.
    let p = platform(stack);
    let contracts = Registry::builtin();
    let mut before = BTreeMap::new();
    let mut queued = Vec::new();
    for c in contracts.iter() {
        let name = format!("{}_current", c.table());
        let Some(rows) = naerdata::publish::published_batches(&p, "current", &name)
            .await
            .unwrap()
            .filter(|b| !b.is_empty())
        else {
            continue; // no data: rebuilt in the function, not on Athena
        };
        let schema = rows[0].schema();
        let body = naerdata::lake::parquet_bytes(schema.clone(), &rows).unwrap();
        stack
            .clients
            .s3
            .put_object()
            .bucket(lake)
            .key(format!("_athena_stage/{name}/part-0"))
            .body(body.into())
            .send()
            .await
            .unwrap();
        let rows = arrow::compute::concat_batches(&schema, &rows).unwrap();
        queued.push(json!({"rows": [], "column_info": []})); // the UNLOAD
        let state = naerdata::layout::current_withdrawn_prefix(&name);
        if let Some(k) = stack
            .keys(lake)
            .await
            .into_iter()
            .find(|k| k.starts_with(&state))
        {
            let body = stack.get(lake, &k).await;
            let schema = ParquetRecordBatchReaderBuilder::try_new(body.clone())
                .unwrap()
                .schema()
                .clone();
            let keys = arrow::compute::concat_batches(&schema, &batches(&body)).unwrap();
            queued.push(athena_answer(&keys));
        }
        before.insert(name, rows);
    }
    assert!(before.len() >= 5, "{:?}", before.keys());
    inject(moto, &queued);
    inject(moto, &answers);
    let rebuilt = on_athena
        .handle(json!({"reference_date": day.to_string(), "full": true}))
        .await
        .unwrap();
    for (name, rows) in &before {
        let how = rebuilt["current"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name.as_str())
            .unwrap();
        assert!(how["how"].as_str().unwrap().contains("--full"), "{how}");
        let after = naerdata::publish::published_batches(&p, "current", name)
            .await
            .unwrap()
            .unwrap();
        let after = arrow::compute::concat_batches(&rows.schema(), &after).unwrap();
        assert_eq!(&after, rows, "{name}: the rows Athena wrote, one commit");
        let files = naerdata::publish::published_keys(&p, "current", name)
            .await
            .unwrap()
            .unwrap();
        assert!(
            files.len() == 1 && files[0].contains("/rebuild-") && files[0].ends_with("_athena_0"),
            "{name}: {files:?}"
        );
    }
    let sent = sent_to(&clients.athena, workgroup, "naerdata_pub").await;
    let sent = &sent[2 * statements.len()..];
    assert_eq!(sent.len(), queued.len() + statements.len());
    // The first table's rebuild: its rows unloaded as zstd Parquet into a new folder of
    // the table, zoned timestamps selected plain.
    let c = contracts
        .iter()
        .find(|c| before.contains_key(&format!("{}_current", c.table())))
        .unwrap();
    let name = format!("{}_current", c.table());
    let (head, tail) = sent[0].split_once("\n)\nTO '").unwrap();
    assert!(
        head.starts_with(&format!(
            "-- naerdata rebuild current table {name}\nUNLOAD (\nSELECT "
        )) && head.contains("CAST(received_at AS timestamp) AS received_at")
            && head.ends_with(&format!(
                "FROM (\n{}\n) AS naerdata_rows",
                naerdata::publish::current_linked_sql(c)
                    .trim_end()
                    .trim_end_matches(';')
            )),
        "{head}"
    );
    assert!(
        tail.starts_with(&format!("s3://{lake}/presentation/current/{name}/rebuild-"))
            && tail.ends_with("/'\nWITH (format = 'PARQUET', compression = 'ZSTD')"),
        "{tail}"
    );
    assert_eq!(&sent[sent.len() - statements.len()..], &statements[..]);
}

async fn request(stack: &Stack, project: &str, spec_key: &str) {
    let body = serde_json::to_string(&ExtractRequest {
        project: project.into(),
        spec_key: spec_key.into(),
        as_of: None,
    })
    .unwrap();
    SqsQueue::new(stack.clients.sqs.clone(), &stack.extract_queue)
        .send(&body, &[])
        .await
        .unwrap();
}

async fn put_spec(stack: &Stack, p: &Platform, yaml: &str) -> ProjectSpec {
    let spec = ProjectSpec::from_yaml(yaml).unwrap();
    p.stores
        .lake
        .put(&spec_key(&spec.project), Bytes::from(yaml.to_string()))
        .await
        .unwrap();
    let _ = stack;
    spec
}

/// The extract queue through the handler, as Lambda's event source mapping calls it.
async fn pump_extracts(stack: &Stack, publisher: &Publisher) -> support::Pumped {
    pump(
        stack,
        &stack.extract_queue,
        &stack.extract_queue_arn,
        |e: SqsEvent| async move {
            let answer = publisher
                .handle(serde_json::to_value(e).unwrap())
                .await
                .unwrap();
            serde_json::from_value::<SqsBatchResponse>(answer).unwrap()
        },
    )
    .await
}

fn spec_yaml(project: &str) -> String {
    format!(
        "project: {project}\ntitle: test\ndatasets:\n  - dataset: almenpraksis.diagnose\n    columns: [diagnosekode, diagnosedato, sygdomsomraade]\n  - dataset: lpr.kontakt\n    columns: [dato_start, prioritet]\n"
    )
}

#[tokio::test]
async fn extracts_from_the_queue_get_a_key_per_project_and_never_the_lake_key() {
    let moto = Moto::start();
    let stack = provision(&moto, "ext").await;
    let input = ingest(&stack, 200).await;
    let publisher = publisher(&stack);
    let p = &publisher.platform;
    let lake = stack.resources.lake_bucket.clone();

    for project in ["P-A", "P-B"] {
        put_spec(&stack, p, &spec_yaml(project)).await;
        request(&stack, project, &spec_key(project)).await;
    }
    // Requests that must fail alone: a spec outside projects/, a spec for another
    // project, a column that is never released, and a project whose key secret holds
    // the lake key (planted by mistake).
    request(&stack, "P-A", "curated/almenpraksis_diagnose/x.yaml").await;
    request(&stack, "P-X", &spec_key("P-A")).await;
    put_spec(
        &stack,
        p,
        "project: P-BAD\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [cpr]\n",
    )
    .await;
    request(&stack, "P-BAD", &spec_key("P-BAD")).await;
    let lake_key = stack
        .clients
        .secrets
        .get_secret_value()
        .secret_id(&stack.secret_id)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let prefix = stack.resources.project_secret_prefix.clone().unwrap();
    stack
        .clients
        .secrets
        .create_secret()
        .name(format!("{prefix}P-LAKE"))
        .secret_string(lake_key.clone())
        .send()
        .await
        .unwrap();
    put_spec(&stack, p, &spec_yaml("P-LAKE")).await;
    request(&stack, "P-LAKE", &spec_key("P-LAKE")).await;

    let pumped = pump_extracts(&stack, &publisher).await;
    assert_eq!(
        pumped.failed,
        4 * 5,
        "each bad request fails maxReceiveCount times"
    );
    assert_eq!(stack.depth(&stack.extract_dlq).await, 4);
    assert!(
        stack
            .keys(&lake)
            .await
            .iter()
            .all(|k| !k.starts_with("extracts/P-LAKE/")
                && !k.starts_with("extracts/P-BAD/")
                && !k.starts_with("extracts/P-X/")),
        "a refused request writes nothing"
    );
    let direct = ProjectSecretKey::new(stack.clients.secrets.clone(), &prefix, "P-LAKE", None);
    let spec = ProjectSpec::from_yaml(&spec_yaml("P-LAKE")).unwrap();
    let e = naerdata::extract::extract(p, &spec, &direct)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is the lake key"), "{e}");

    // Each project got its own key secret, created on its first extract.
    let mut keys = BTreeSet::new();
    for project in ["P-A", "P-B"] {
        let k = stack
            .clients
            .secrets
            .get_secret_value()
            .secret_id(format!("{prefix}{project}"))
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap();
        assert_ne!(k, lake_key);
        keys.insert(k);
    }
    assert_eq!(keys.len(), 2);

    // The extracts: approved columns only, project pseudonyms, no lake person_id, no
    // CPR; the two projects share no pseudonym although they hold the same persons.
    let out = tempfile::tempdir().unwrap();
    stack.download(&lake, out.path()).await;
    let report = check_objects(&out.path().join("extracts"), input.path());
    assert_eq!(report["cpr_hits"], json!({}), "CPRs in the extracts");
    assert_eq!(
        report["parquet"]["P-A/almenpraksis_diagnose.parquet"]["columns"],
        json!([
            "projekt_person_id",
            "diagnosekode",
            "diagnosedato",
            "sygdomsomraade"
        ])
    );
    let mut lake_ids = BTreeSet::new();
    for k in stack.keys(&lake).await {
        if (k.starts_with("curated/almenpraksis_diagnose/")
            || k.starts_with("curated/lpr_kontakt/"))
            && k.ends_with(".parquet")
            && !k.contains("/_delta_log/")
        {
            lake_ids.extend(strings(&batches(&stack.get(&lake, &k).await), "person_id"));
        }
    }
    assert!(lake_ids.len() > 50);
    let pseudonyms = |project: &str| {
        let stack = &stack;
        let lake = lake.clone();
        let project = project.to_string();
        async move {
            let mut ids = BTreeSet::new();
            for table in ["almenpraksis_diagnose", "lpr_kontakt"] {
                let key = format!("extracts/{project}/{table}.parquet");
                let b = batches(&stack.get(&lake, &key).await);
                assert!(b.iter().all(|b| b.column_by_name("person_id").is_none()));
                ids.extend(strings(&b, "projekt_person_id"));
            }
            ids
        }
    };
    let (a, b) = (pseudonyms("P-A").await, pseudonyms("P-B").await);
    assert_eq!(a.len(), b.len(), "the same persons");
    assert!(a.len() > 50);
    assert!(a.is_disjoint(&b), "two projects share a pseudonym");
    assert!(
        a.is_disjoint(&lake_ids) && b.is_disjoint(&lake_ids),
        "a lake person_id in an extract"
    );

    // Beside the tables: the codebook, and a manifest with the hash of the spec the
    // function read from projects/.
    for project in ["P-A", "P-B"] {
        let manifest: naerdata::extract::ExtractManifest = serde_json::from_slice(
            &stack
                .get(&lake, &format!("extracts/{project}/manifest.json"))
                .await,
        )
        .unwrap();
        let spec = ProjectSpec::from_yaml(&spec_yaml(project)).unwrap();
        assert_eq!(manifest.spec_sha256, spec.sha256);
        assert_eq!(manifest.tables.len(), 2);
        let codebook: naerdata::extract::Codebook =
            serde_json::from_slice(&stack.get(&lake, &manifest.codebook[0]).await).unwrap();
        assert_eq!(codebook.spec_sha256, spec.sha256);
        let diagnose = &codebook.tables[0];
        assert_eq!(diagnose.table, "almenpraksis_diagnose");
        assert_eq!(diagnose.columns.len(), 4);
        assert!(diagnose.persons > 50);
        let md = stack.get(&lake, &manifest.codebook[1]).await;
        assert!(String::from_utf8_lossy(&md).contains("## lpr_kontakt"));
    }

    // A repeated request reuses the project's key: the same pseudonyms.
    request(&stack, "P-A", &spec_key("P-A")).await;
    let again = pump_extracts(&stack, &publisher).await;
    assert_eq!((again.messages, again.failed), (1, 0));
    assert_eq!(pseudonyms("P-A").await, a);
}

/// Every Parquet file in the lake bucket that holds `value` in `column`.
async fn files_holding(p: &Platform, column: &str, value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for obj in p.stores.lake.list("curated/").await.unwrap() {
        if !obj.key.ends_with(".parquet") {
            continue;
        }
        let body = p.stores.lake.get(&obj.key).await.unwrap().unwrap();
        let held = batches(&body).iter().any(|b| {
            b.column_by_name(column).is_some()
                && strings(std::slice::from_ref(b), column).contains(value)
        });
        if held {
            out.push(obj.key);
        }
    }
    out
}

/// A person purged in AWS: the rows leave every table, and no object in the lake
/// bucket holds them afterwards — not a file in the tables' history (compaction
/// leaves the originals there) and not a noncurrent S3 version (the lake keeps none).
#[tokio::test]
async fn a_purge_leaves_no_copy_of_the_person_in_the_lake_bucket() {
    let moto = Moto::start();
    let stack = provision(&moto, "purge").await;
    let _input = ingest(&stack, 120).await;
    let p = platform(&stack);
    publisher(&stack)
        .handle(json!({ "maintain": { "retention_days": 7 } }))
        .await
        .unwrap();
    let rows = naerdata::catalog::query(
        &p,
        "SELECT person_id FROM almenpraksis_diagnose GROUP BY person_id ORDER BY count(*) DESC LIMIT 1",
    )
    .await
    .unwrap();
    let person = arrow::util::display::array_value_to_string(rows[0].column(0), 0).unwrap();
    assert!(!files_holding(&p, "person_id", &person).await.is_empty());

    let record = naerdata::maintain::purge(
        &p,
        &naerdata::maintain::PurgeTarget::Person(person.clone()),
        "court order",
    )
    .await
    .unwrap();
    assert!(!record.tables.is_empty(), "{record:?}");
    assert_eq!(
        files_holding(&p, "person_id", &person).await,
        Vec::<String>::new()
    );
    let left = naerdata::catalog::query(
        &p,
        &format!("SELECT count(*) AS n FROM almenpraksis_diagnose WHERE person_id = '{person}'"),
    )
    .await
    .unwrap();
    assert_eq!(strings(&left, "n"), BTreeSet::from(["0".to_string()]));
    let versions = stack
        .clients
        .s3
        .list_object_versions()
        .bucket(&stack.resources.lake_bucket)
        .prefix("curated/")
        .send()
        .await
        .unwrap();
    assert!(
        versions.delete_markers().is_empty()
            && versions
                .versions()
                .iter()
                .all(|v| v.is_latest() == Some(true)),
        "no noncurrent version is left behind"
    );
}

/// Every Parquet file under `prefix` of the lake bucket whose schema has `column`.
async fn files_with_column(p: &Platform, prefix: &str, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for obj in p.stores.lake.list(prefix).await.unwrap() {
        let body = p.stores.lake.get(&obj.key).await.unwrap().unwrap();
        // By content: the warehouse's files have no extension.
        if !naerdata::lake::is_parquet(&body) {
            continue;
        }
        if batches(&body)
            .first()
            .is_some_and(|b| b.column_by_name(column).is_some())
        {
            out.push(obj.key);
        }
    }
    out
}

/// A birth date stored before its contract withheld it (cpr.befolkning 1.0.0), taken
/// out in AWS (`naerdata --aws migrate`): the table keeps its rows without the column,
/// and no object in the lake bucket has it afterwards, history and S3 versions
/// included.
#[tokio::test]
async fn withholding_a_stored_birth_date_leaves_no_object_with_it_in_the_lake_bucket() {
    let moto = Moto::start();
    let stack = provision(&moto, "withhold").await;
    let mut p = platform(&stack);
    let mut stored = Registry::builtin();
    let mut c = stored.get("cpr.befolkning").unwrap().clone();
    c.birth_date_field = None;
    stored.insert(c);
    p.contracts = Arc::new(stored);
    // Synthetic replacement numbers (day + 60); the register's birth dates decide.
    for day in ["2026-09-01", "2026-10-01"] {
        let key = format!("cpr/befolkning/{day}/bef.csv");
        let body = format!(
            "bopael_id;cpr;foedselsdato;koen;kommunekode;bopael_fra;bopael_til;indvandret_dato;udvandret_dato;doedsdato;udtraeksdato\n\
             1;610385-4000;1984-11-20;M;101;1990-01-01;;;;;{day}\n\
             2;620385-4001;1985-03-02;K;147;2001-05-01;;;;;{day}\n"
        );
        let version = stack.upload(&key, body.into_bytes()).await;
        let naerdata::receive::Received::ToProcess(id) =
            naerdata::receive::receive(&p, &key, version.as_deref())
                .await
                .unwrap()
        else {
            panic!("{key} is new")
        };
        naerdata::process::process(&p, &id).await.unwrap();
    }
    let curated = "curated/cpr_befolkning/";
    assert_eq!(
        files_with_column(&p, curated, "foedselsdato").await.len(),
        2
    );

    p.contracts = Arc::new(Registry::builtin());
    let done = naerdata::migrate::withhold::withhold(&p).await.unwrap();
    assert_eq!(done.len(), 1, "no current table was published: {done:?}");
    assert_eq!(
        (done[0].table.as_str(), done[0].files_deleted),
        ("cpr_befolkning", 2)
    );
    assert!(
        files_with_column(&p, curated, "foedselsdato")
            .await
            .is_empty()
    );
    let years = naerdata::catalog::query(
        &p,
        "SELECT CAST(birth_year AS VARCHAR) AS y FROM cpr_befolkning",
    )
    .await
    .unwrap();
    assert_eq!(
        strings(&years, "y"),
        BTreeSet::from(["1984".to_string(), "1985".to_string()])
    );
    let rows = naerdata::catalog::query(
        &p,
        "SELECT CAST(count(*) AS VARCHAR) AS n FROM cpr_befolkning",
    )
    .await
    .unwrap();
    assert_eq!(strings(&rows, "n"), BTreeSet::from(["4".to_string()]));
    let versions = stack
        .clients
        .s3
        .list_object_versions()
        .bucket(&stack.resources.lake_bucket)
        .prefix(curated)
        .send()
        .await
        .unwrap();
    assert!(
        versions.delete_markers().is_empty()
            && versions
                .versions()
                .iter()
                .all(|v| v.is_latest() == Some(true)),
        "no noncurrent version is left behind"
    );
}
