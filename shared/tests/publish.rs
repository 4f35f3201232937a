//! The publish step on a small hand-made cohort: current tables and a mart checked
//! against numbers computed by hand.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use bytes::Bytes;
use chrono::NaiveDate;
use naerdata::Platform;
use naerdata::catalog;
use naerdata::contract::Registry;
use naerdata::ports::FixedClock;
use naerdata::process;
use naerdata::receive::{self, Received};

fn platform(dir: &std::path::Path) -> Platform {
    let mut p = Platform::local(dir, Registry::builtin()).unwrap();
    p.clock = Arc::new(FixedClock("2026-12-31T12:00:00Z".parse().unwrap()));
    p
}

async fn deliver(p: &Platform, key: &str, body: String) {
    p.stores.landing.put(key, Bytes::from(body)).await.unwrap();
    let Received::ToProcess(id) = receive::receive(p, key, None).await.unwrap() else {
        panic!("{key} was not new")
    };
    process::process(p, &id).await.unwrap();
}

fn cpr(i: usize) -> String {
    // Synthetic: day 61.. is a replacement number.
    format!("{:02}0385-4{:03}", 61 + i, i)
}

/// A §140 pathway that ended on `end`, reported by the municipality with SOR `sor`.
fn pathway(i: usize, sor: &str, end: &str, eie: bool) -> String {
    let status = if eie { "entered-in-error" } else { "completed" };
    serde_json::json!({
        "resourceType": "Bundle", "id": format!("b{i}"), "type": "collection", "timestamp": "2026-12-01T10:00:00+01:00",
        "entry": [
            {"fullUrl": format!("Patient/p{i}"), "resource": {"resourceType": "Patient", "id": format!("p{i}"),
                "meta": {"lastUpdated": "2026-12-01T10:00:00+01:00"},
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr(i).replace('-', "")}],
                "managingOrganization": {"identifier": {"system": "urn:oid:1.2.208.176.1.1", "value": sor}}}},
            {"fullUrl": format!("CarePlan/f{i}"), "resource": {"resourceType": "CarePlan", "id": format!("f{i}"),
                "meta": {"lastUpdated": "2026-12-01T10:00:00+01:00"}, "status": status, "intent": "plan",
                "category": [{"coding": [{"code": "f15b2663-94d9-4d0c-a5de-d8bd8e1e4ebb"}]}],
                "subject": {"reference": format!("Patient/p{i}")}, "period": {"start": "2026-09-01", "end": end},
                "activity": [{"detail": {"status": status}}]}}
        ]
    })
    .to_string()
}

#[tokio::test]
async fn rehab_effect_mart_matches_hand_computed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    // 101 København: persons 0-6 (7 courses) + person 15 whose course was entered in error;
    // 147 Frederiksberg: persons 7-12 (6); 151 Ballerup: persons 13-14 (2).
    let mut bundles = Vec::new();
    for i in 0..15 {
        let sor = match i {
            0..=6 => "990101000000000",
            7..=12 => "990147000000000",
            _ => "990151000000000",
        };
        bundles.push(pathway(i, sor, "2026-10-05", false));
    }
    bundles.push(pathway(15, "990101000000000", "2026-10-05", true));
    deliver(
        &p,
        "kommune/gateway/2026-12-31/gw.ndjson",
        bundles.join("\n") + "\n",
    )
    .await;

    // Acute hospital contacts: persons 0-4 after 15 days, person 5 after 57 days,
    // person 7 a planned (not acute) contact after 10 days; person 15 acute (but its
    // course was entered in error, so it must not count).
    let mut lpr = String::from(
        "dw_ek_kontakt;dw_ek_forloeb;cpr;sorenhed_ans;dato_start;tidspunkt_start;dato_slut;tidspunkt_slut;aktionsdiagnose;kontakttype;prioritet;hovedspeciale_ans\n",
    );
    for (n, (i, day, prio)) in [
        (0, "2026-10-20", "ATA1"),
        (1, "2026-10-20", "ATA1"),
        (2, "2026-10-20", "ATA1"),
        (3, "2026-10-20", "ATA1"),
        (4, "2026-10-20", "ATA1"),
        (5, "2026-12-01", "ATA1"),
        (7, "2026-10-15", "ATA3"),
        (15, "2026-10-20", "ATA1"),
        // Before the courses began on 1 September: person 8 within the 90 days,
        // person 13 before them.
        (8, "2026-07-15", "ATA1"),
        (13, "2026-05-01", "ATA1"),
        // Person 9's course follows an acute admission on 20 August (it ended within
        // 30 days of the course): that admission is not a "before" contact, and the
        // before-window is the 90 days before it, which holds 25 May and 1 June.
        (9, "2026-08-20", "ATA1"),
        (9, "2026-05-25", "ATA1"),
        (9, "2026-06-01", "ATA1"),
    ]
    .into_iter()
    .enumerate()
    {
        lpr.push_str(&format!(
            "{};;{};990000000001;{day};08:00;{day};12:00;DS720;ALCA00;{prio};akutmedicin\n",
            500 + n,
            cpr(i)
        ));
    }
    deliver(&p, "lpr/kontakt/2026-12-31/lpr.csv", lpr).await;

    // GP contacts within 30 days: persons 0-5.
    let mut gp = String::from("record_id;cpr;ydernummer;kontaktdato;ydelseskode;registreret\n");
    for i in 0..6 {
        gp.push_str(&format!(
            "k{i};{};012345;2026-10-10;0101;2026-10-10T10:00:00+02:00\n",
            cpr(i)
        ));
    }
    // And before the courses: persons 0-2 in July; person 9 on the day it began (not
    // before it).
    for (i, day) in [
        (0, "2026-07-01"),
        (1, "2026-07-01"),
        (2, "2026-07-01"),
        (9, "2026-09-01"),
    ] {
        gp.push_str(&format!(
            "f{i};{};012345;{day};0101;{day}T10:00:00+02:00\n",
            cpr(i)
        ));
    }
    deliver(&p, "almenpraksis/kontakt/2026-12-31/gp.csv", gp).await;

    // The fourth quarter closes once 90 days after it (to 31 March) are delivered, by
    // the municipalities' deadline 14 days after March: it is published on 15 April.
    let on = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let early = naerdata::publish::publish(&p, on(2027, 4, 14))
        .await
        .unwrap();
    let (_, rehab) = early
        .batches
        .iter()
        .find(|(n, _)| n == "rehab_effekt")
        .unwrap();
    assert_eq!(rehab.num_rows(), 0, "2026-Q4 is not closed on 14 April");
    let published = naerdata::publish::publish(&p, on(2027, 4, 15))
        .await
        .unwrap();
    let (_, rehab) = published
        .batches
        .iter()
        .find(|(n, _)| n == "rehab_effekt")
        .unwrap();
    let col = |name: &str| rehab.column_by_name(name).unwrap().clone();
    let (kommune, kvartal) = (col("kommunekode"), col("kvartal"));
    let kommune = kommune.as_any().downcast_ref::<StringArray>().unwrap();
    let kvartal = kvartal.as_any().downcast_ref::<StringArray>().unwrap();
    let row = |k: &str, q: &str| {
        (0..rehab.num_rows())
            .find(|&i| kommune.value(i) == k && kvartal.value(i) == q)
            .unwrap()
    };
    let get = |name: &str, i: usize| {
        let a = col(name);
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        (!a.is_null(i)).then(|| a.value(i))
    };
    let r101 = row("101", "2026-Q4");
    assert_eq!(
        get("forloeb_afsluttet", r101),
        Some(7),
        "the entered-in-error course is not counted"
    );
    // 7 courses in 101: 5 followed by an acute contact within 30 days, 6 within 90, 6
    // by a GP contact. Published beside the 7, each would say how many (2, 1, 1) had
    // none: the complement attack. They are withheld, and so is every share.
    for sub in [
        "akut_hospital_30d",
        "akut_hospital_90d",
        "almen_praksis_30d",
        "almen_praksis_90d",
    ] {
        assert_eq!(get(sub, r101), None, "{sub} in 101");
    }
    let share = rehab.column_by_name("andel_akut_hospital_30d").unwrap();
    assert!(share.is_null(r101));
    // 151 has 2 courses: suppressed; 147 (6) is the smallest complement in the column,
    // and its sub-counts go with it (a 0 beside a suppressed base could say "none of
    // these few").
    assert_eq!(get("forloeb_afsluttet", row("151", "2026-Q4")), None);
    assert_eq!(get("forloeb_afsluttet", row("147", "2026-Q4")), None);
    assert_eq!(get("akut_hospital_30d", row("147", "2026-Q4")), None);
    assert_eq!(get("forloeb_afsluttet", row("I alt", "2026-Q4")), Some(15));
    // Nothing published anywhere gives a complement of 1-4.
    for i in 0..rehab.num_rows() {
        if let Some(base) = get("forloeb_afsluttet", i) {
            for sub in [
                "akut_hospital_30d",
                "akut_hospital_90d",
                "almen_praksis_30d",
                "almen_praksis_90d",
            ] {
                if let Some(v) = get(sub, i) {
                    assert!(!(1..5).contains(&(base - v)), "row {i}: {base} - {v}");
                }
            }
        }
    }
    assert!(rehab.column_by_name("disclosure_rule_set").is_some());

    // The cells before disclosure control: the arithmetic, before and after.
    let q4 = naerdata::publish::Granularity::Quarter.period_of(on(2026, 10, 1));
    let raw = naerdata::publish::unprotected_cells(&p, "rehab_effekt", &[q4])
        .await
        .unwrap();
    let raw_kommune = raw.column_by_name("kommunekode").unwrap();
    let raw_kommune = raw_kommune.as_any().downcast_ref::<StringArray>().unwrap();
    // A municipality's cell comes in one row per age/sex stratum: summed.
    let cell = |k: &str, name: &str| -> i64 {
        let a = raw.column_by_name(name).unwrap();
        let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Int64).unwrap();
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        let rows: Vec<usize> = (0..raw.num_rows())
            .filter(|&i| raw_kommune.value(i) == k)
            .collect();
        assert!(!rows.is_empty(), "no row for {k}");
        rows.iter().map(|&i| a.value(i)).sum()
    };
    assert!(raw.column_by_name("aldersgruppe").is_some() && raw.column_by_name("koen").is_some());
    for (k, name, expected) in [
        ("101", "forloeb_afsluttet", 7),
        ("101", "akut_hospital_30d", 5),
        ("101", "akut_hospital_90d", 6),
        ("101", "almen_praksis_30d", 6),
        ("101", "akut_hospital_foer_90d", 0),
        ("101", "almen_praksis_foer_90d", 3),
        ("147", "akut_hospital_foer_90d", 2),
        ("147", "akutte_kontakter_foer_90d", 3),
        ("101", "akutte_kontakter_90d", 6),
        ("101", "akutte_kontakter_foer_90d", 0),
        ("147", "almen_praksis_foer_90d", 0),
        ("151", "akut_hospital_foer_90d", 0),
    ] {
        assert_eq!(cell(k, name), expected, "{k} {name}");
    }
    let revision = col("revision");
    assert_eq!(revision.null_count(), 0);
    assert_eq!(
        published
            .marts
            .iter()
            .find(|m| m.name == "rehab_effekt")
            .unwrap()
            .outcome
            .new_periods,
        vec!["2026-Q4".to_string()]
    );

    // Current tables: one row per record key, entered-in-error dropped.
    let b = catalog::query(&p, "SELECT count(*) AS n FROM kommune_indsats")
        .await
        .unwrap();
    let shown = arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(
        shown.contains("| 16 |"),
        "all 16 versions are in the curated table: {shown}"
    );
    let current = published
        .tables
        .iter()
        .find(|(t, _)| t == "kommune_indsats_current")
        .unwrap();
    assert_eq!(current.1, 15);
    // The catalog has views for the presentation zone.
    catalog::write_duckdb_catalog(&p).await.unwrap();
    let sql = std::fs::read_to_string(p.stores.lake.locate(catalog::CATALOG_KEY)).unwrap();
    assert!(sql.contains("CREATE OR REPLACE VIEW rehab_effekt"), "{sql}");
    assert!(sql.contains("CREATE OR REPLACE VIEW dim_person"));
}

#[tokio::test]
async fn two_projects_extracts_share_no_pseudonym_and_hold_no_person_id() {
    use naerdata::extract::{self, ProjectSpec};
    use naerdata::local::KeyFile;
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let mut gp = String::from("record_id;cpr;ydernummer;kontaktdato;ydelseskode;registreret\n");
    for i in 0..20 {
        gp.push_str(&format!(
            "k{i};{};012345;2026-10-10;0101;2026-10-10T10:00:00+02:00\n",
            cpr(i)
        ));
    }
    deliver(&p, "almenpraksis/kontakt/2026-12-31/gp.csv", gp).await;

    let spec = |name: &str| {
        ProjectSpec::from_yaml(&format!(
            "project: {name}\ndatasets:\n  - dataset: almenpraksis.kontakt\n    columns: [kontaktdato, ydelseskode]\n"
        ))
        .unwrap()
    };
    let read_ids = |project: &str| -> Vec<String> {
        let mut ids = Vec::new();
        for b in extract_batches(&p, project, "almenpraksis_kontakt") {
            let names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(
                names,
                ["projekt_person_id", "kontaktdato", "ydelseskode"],
                "only approved columns"
            );
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            ids.extend((0..a.len()).map(|i| a.value(i).to_string()));
        }
        ids
    };
    for name in ["P-A", "P-B"] {
        let keys = KeyFile::new(extract::project_key_path(&dir.path().join("keys"), name));
        let m = extract::extract(&p, &spec(name), &keys).await.unwrap();
        assert_eq!(m.tables[0].rows, 20);
    }
    let (a, b) = (read_ids("P-A"), read_ids("P-B"));
    assert_eq!(a.len(), 20);
    let lake_ids: Vec<String> = {
        let batches = catalog::query(&p, "SELECT person_id FROM almenpraksis_kontakt")
            .await
            .unwrap();
        let mut v = Vec::new();
        for bt in batches {
            let arr = bt
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            v.extend((0..arr.len()).map(|i| arr.value(i).to_string()));
        }
        v
    };
    assert!(
        a.iter().all(|x| !b.contains(x)),
        "two projects share a pseudonym"
    );
    assert!(
        a.iter().chain(&b).all(|x| !lake_ids.contains(x)),
        "an extract holds a lake person_id"
    );

    // A column outside the approvals, or the person key itself, is refused.
    let keys = KeyFile::new(extract::project_key_path(&dir.path().join("keys"), "P-C"));
    let bad = ProjectSpec::from_yaml(
        "project: P-C\ndatasets:\n  - dataset: almenpraksis.kontakt\n    columns: [person_id]\n",
    )
    .unwrap();
    assert!(
        extract::extract(&p, &bad, &keys)
            .await
            .unwrap_err()
            .to_string()
            .contains("never released")
    );
    let bad = ProjectSpec::from_yaml(
        "project: P-C\ndatasets:\n  - dataset: almenpraksis.kontakt\n    columns: [cpr]\n",
    )
    .unwrap();
    assert!(extract::extract(&p, &bad, &keys).await.is_err());
}

/// The catalog definitions (`publish::presentation_tables`, from which the Glue tables
/// are generated) describe exactly the objects publish writes: same tables, same
/// columns in the same order, same catalog types.
#[tokio::test]
async fn the_catalog_declares_what_publish_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let input = dir.path().join("input");
    let mut opts = naerdata::generate::GenerateOptions::new(&input);
    opts.persons = 200;
    opts.days = 2;
    for g in naerdata::generate::generate(&opts).unwrap() {
        let key = g.path.strip_prefix(&input).unwrap().to_str().unwrap();
        let body = Bytes::from(std::fs::read(&g.path).unwrap());
        p.stores.landing.put(key, body).await.unwrap();
        if let Received::ToProcess(id) = receive::receive(&p, key, None).await.unwrap() {
            process::process(&p, &id).await.unwrap();
        }
    }
    let published = naerdata::publish::publish(&p, NaiveDate::from_ymd_opt(2026, 12, 31).unwrap())
        .await
        .unwrap();
    let declared = naerdata::publish::presentation_tables(&p.contracts)
        .await
        .unwrap();
    let written: Vec<String> = published
        .tables
        .iter()
        .map(|(t, _)| t.clone())
        .chain(published.marts.iter().map(|m| m.name.clone()))
        .collect();
    assert!(written.len() > 10, "{written:?}");
    for name in &written {
        let t = declared
            .iter()
            .find(|t| &t.name == name)
            .unwrap_or_else(|| panic!("{name} is written but not declared"));
        let key = if t.kind == "marts" {
            naerdata::layout::mart_publication_key(
                &t.name,
                NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            )
        } else {
            // A current table: its first data file (every one has the table's schema).
            naerdata::publish::published_keys(&p, t.kind, &t.name)
                .await
                .unwrap()
                .and_then(|k| k.into_iter().next())
                .unwrap_or_else(|| panic!("{name}: no files"))
        };
        let path = dir.path().join("lake").join(key);
        let file = std::fs::File::open(&path).unwrap();
        let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .schema()
            .clone();
        let columns = |s: &arrow::datatypes::Schema| -> Vec<(String, &'static str)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), naerdata::lake::sql_type(f.data_type())))
                .collect()
        };
        assert_eq!(columns(&schema), columns(&t.schema), "{name}");
    }
    // Each mart's SQL read something, and no more than the tables it reads hold: the
    // figure the cost estimate (README, *Costs*) builds on.
    let mut table_bytes = 0u64;
    for t in declared.iter().filter(|t| t.kind != "marts") {
        for key in naerdata::publish::published_keys(&p, t.kind, &t.name)
            .await
            .unwrap()
            .unwrap_or_default()
        {
            table_bytes += std::fs::metadata(dir.path().join("lake").join(key))
                .unwrap()
                .len();
        }
    }
    for m in &published.marts {
        assert!(
            m.bytes_scanned > 0 && m.bytes_scanned <= table_bytes,
            "{}: {} bytes scanned of {table_bytes}",
            m.name,
            m.bytes_scanned
        );
    }
    // Every declared table but the current tables of datasets the generator does not
    // deliver is written.
    for t in &declared {
        assert!(
            t.kind == "current" || written.contains(&t.name),
            "{} is declared but not written",
            t.name
        );
    }
}

/// One published row of `speciallaege_aktivitet`.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    maaned: String,
    region: String,
    speciale: String,
    revision: i32,
    publiceret: String,
    kontakter: Option<i64>,
    patienter: Option<i64>,
}

fn rows_of(b: &arrow::record_batch::RecordBatch) -> Vec<Row> {
    let text = |n: &str| {
        let a = b.column_by_name(n).unwrap().clone();
        (0..b.num_rows())
            .map(|i| arrow::util::display::array_value_to_string(&a, i).unwrap())
            .collect::<Vec<_>>()
    };
    let int = |n: &str| {
        let a = b.column_by_name(n).unwrap().clone();
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap().clone();
        (0..b.num_rows())
            .map(|i| (!a.is_null(i)).then(|| a.value(i)))
            .collect::<Vec<_>>()
    };
    let (m, r, s, rev, day) = (
        text("maaned"),
        text("regionskode"),
        text("speciale"),
        text("revision"),
        text("publiceret"),
    );
    let (k, p) = (int("kontakter"), int("patienter"));
    (0..b.num_rows())
        .map(|i| Row {
            maaned: m[i].clone(),
            region: r[i].clone(),
            speciale: s[i].clone(),
            revision: rev[i].parse().unwrap(),
            publiceret: day[i].clone(),
            kontakter: k[i],
            patienter: p[i],
        })
        .collect()
}

/// Day-to-day differencing: publish on day D, add one person's records in a closed
/// month and in the open one, publish on D+1, and subtract.
#[tokio::test]
async fn yesterdays_and_todays_publications_cannot_be_subtracted() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let header = "kontakt_id;cpr;ydernummer;speciale;kontaktdato;ydelseskode\n";
    let mut n = 0;
    let mut contact = |csv: &mut String, person: usize, speciale: &str, day: &str| {
        n += 1;
        // Replacement numbers (day + 60) on days 1-28 of months 1-12: valid dates.
        let cpr = format!(
            "{:02}{:02}85-4{:03}",
            61 + person % 28,
            1 + person / 28,
            person
        );
        csv.push_str(&format!("K{n};{cpr};512345;{speciale};{day};0101\n"));
    };
    // October: 30 patients at the dermatologist (2 contacts each), 12 in psychiatry.
    let mut csv = header.to_string();
    for i in 0..30 {
        contact(&mut csv, i, "03", "2026-10-10");
        contact(&mut csv, i, "03", "2026-10-20");
    }
    for i in 30..42 {
        contact(&mut csv, i, "15", "2026-10-12");
    }
    deliver(&p, "speciallaege/kontakt/2026-11-01/oktober.csv", csv).await;
    let mart = |published: &naerdata::publish::Published| {
        let (_, b) = published
            .batches
            .iter()
            .find(|(n, _)| n == "speciallaege_aktivitet")
            .unwrap();
        rows_of(b)
    };
    let on = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let find = |rows: &[Row], speciale: &str, revision: i32| {
        rows.iter()
            .find(|r| r.maaned == "2026-10" && r.speciale == speciale && r.revision == revision)
            .map(|r| (r.kontakter, r.patienter))
    };

    // 14 November: October is still open (municipal data is due until then).
    let before = naerdata::publish::publish(&p, on(14)).await.unwrap();
    assert!(mart(&before).is_empty());
    // 15 November: October is closed and published.
    let day_d = mart(&naerdata::publish::publish(&p, on(15)).await.unwrap());
    assert_eq!(find(&day_d, "03", 0), Some((Some(60), Some(30))));
    assert!(day_d.iter().all(|r| r.publiceret == "2026-11-15"));

    // Day D+1: one late patient in October (6 contacts: a count above 5 from one
    // person), and one patient in November, the open month.
    let mut csv = header.to_string();
    for d in 21..27 {
        contact(&mut csv, 50, "03", &format!("2026-10-{d}"));
    }
    contact(&mut csv, 51, "15", "2026-11-03");
    deliver(&p, "speciallaege/kontakt/2026-11-16/sen.csv", csv).await;
    let published = naerdata::publish::publish(&p, on(16)).await.unwrap();
    let day_d1 = mart(&published);

    // October as first published is carried unchanged.
    let first = |rows: &[Row]| {
        rows.iter()
            .filter(|r| r.revision == 0)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(first(&day_d1), first(&day_d));
    // The change comes out as revision 1 of October, dated D+1.
    let revised: Vec<&Row> = day_d1.iter().filter(|r| r.revision == 1).collect();
    assert!(!revised.is_empty());
    assert!(
        revised
            .iter()
            .all(|r| r.maaned == "2026-10" && r.publiceret == "2026-11-16")
    );
    let report = published
        .marts
        .iter()
        .find(|m| m.name == "speciallaege_aktivitet")
        .unwrap();
    assert_eq!(report.outcome.revised, vec!["2026-10".to_string()]);
    // November is open: nothing of it is published.
    assert!(day_d1.iter().all(|r| r.maaned != "2026-11"));
    // Subtract every entry shown in both: no count differs by 1-4, and the contacts
    // differ only where at least 5 patients came or went.
    for r in &revised {
        let was = day_d
            .iter()
            .find(|x| (&x.maaned, &x.region, &x.speciale) == (&r.maaned, &r.region, &r.speciale))
            .unwrap();
        for (now, then) in [(r.kontakter, was.kontakter), (r.patienter, was.patienter)] {
            if let (Some(a), Some(b)) = (now, then) {
                assert!(!(1..5).contains(&(a - b).abs()), "{r:?} vs {was:?}");
            }
        }
        if let (Some(a), Some(b)) = (r.kontakter, was.kontakter)
            && a != b
        {
            let persons = (r.patienter.unwrap() - was.patienter.unwrap()).abs();
            assert!(persons >= 5, "{r:?} vs {was:?}");
        }
    }
    assert_eq!(
        find(&day_d1, "03", 1),
        Some((None, None)),
        "66 - 60 is one patient's"
    );
    assert_eq!(
        find(&day_d1, "15", 1),
        Some((Some(12), Some(12))),
        "psychiatry did not change"
    );

    // Publishing again the same day changes nothing.
    let again = naerdata::publish::publish(&p, on(16)).await.unwrap();
    assert_eq!(mart(&again), day_d1);
    let report = again
        .marts
        .iter()
        .find(|m| m.name == "speciallaege_aktivitet")
        .unwrap();
    assert!(report.outcome.revised.is_empty() && report.outcome.new_periods.is_empty());
}

/// `dim_geografi` splits a municipality's time where its region or health cluster
/// changes, from the clusters reference data.
#[tokio::test]
async fn dim_geografi_carries_the_clusters_and_the_regions_merger() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    naerdata::publish::publish(&p, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap())
        .await
        .unwrap();
    let body = p
        .stores
        .lake
        .get(&naerdata::publish::presentation_key("dim", "dim_geografi"))
        .await
        .unwrap()
        .unwrap();
    let batches: Vec<arrow::record_batch::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let text = |name: &str, i: usize| -> Option<String> {
        let a = b.column_by_name(name).unwrap();
        let a = a
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        a.is_valid(i).then(|| a.value(i).to_string())
    };
    let day = |i: usize| -> NaiveDate {
        let a = b.column_by_name("gyldig_fra").unwrap();
        let a = a
            .as_any()
            .downcast_ref::<arrow::array::Date32Array>()
            .unwrap();
        a.value_as_date(i).unwrap()
    };
    let rows_of = |k: &str| -> Vec<(NaiveDate, String, Option<String>)> {
        (0..b.num_rows())
            .filter(|i| text("kommunekode", *i).as_deref() == Some(k))
            .map(|i| (day(i), text("regionskode", i).unwrap(), text("klynge", i)))
            .collect()
    };
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    // København: no cluster before 2023, Byen in Region Hovedstaden, then Region
    // Østdanmark with the cluster carried over as the hospital catchment.
    assert_eq!(
        rows_of("101"),
        vec![
            (d("2007-01-01"), "1084".into(), None),
            (
                d("2023-01-01"),
                "1084".into(),
                Some("Sundhedsklynge Byen".into())
            ),
            (
                d("2027-01-01"),
                "1086".into(),
                Some("Sundhedsklynge Byen".into())
            ),
        ]
    );
    // Aalborg stays in Region Nordjylland; its cluster rows split at 2027 too.
    let aalborg = rows_of("851");
    assert_eq!(aalborg.len(), 3, "{aalborg:?}");
    assert!(aalborg.iter().all(|(_, r, _)| r == "1081"));
    // Every municipality has a cluster on the reference date.
    let on = d("2026-12-01");
    for k in naerdata::reference::kommuner() {
        let here: Vec<_> = rows_of(&k.code)
            .into_iter()
            .filter(|(from, _, _)| *from <= on)
            .collect();
        assert!(
            here.last().unwrap().2.is_some(),
            "{} has no cluster",
            k.code
        );
    }
}

/// A research extract's table, as the project receives it.
fn extract_batches(
    p: &Platform,
    project: &str,
    table: &str,
) -> Vec<arrow::record_batch::RecordBatch> {
    let path = p.stores.lake.locate(&format!(
        "{}{table}.parquet",
        naerdata::layout::extract_prefix(project)
    ));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// A presentation table, all of it, as text cells keyed by column name.
async fn presentation_rows(
    p: &Platform,
    kind: &str,
    name: &str,
) -> Vec<std::collections::BTreeMap<String, Option<String>>> {
    let batches = naerdata::publish::published_batches(p, kind, name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{kind}/{name} was not published"));
    let mut out = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            out.push(
                b.schema()
                    .fields()
                    .iter()
                    .zip(b.columns())
                    .map(|(f, a)| {
                        let v = a
                            .is_valid(i)
                            .then(|| arrow::util::display::array_value_to_string(a, i).unwrap());
                        (f.name().clone(), v)
                    })
                    .collect(),
            );
        }
    }
    out
}

/// The population register: a person given a new CPR number stays one person in
/// every table (the GP still reports the old number, the hospital the new); sex,
/// birth and residence come from the register; a person missing from it is placed
/// by the municipal reports.
#[tokio::test]
async fn one_person_across_a_cpr_change_with_residence_from_the_register() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    // Person A: cpr(0) until 1 June 2026, then cpr(1) (a legal change of sex: the
    // old number is a woman's, the new a man's). Person B: cpr(2), died in November.
    // Person C: cpr(3), only in a municipal report.
    deliver(
        &p,
        "cpr/personnummerskift/2026-12-31/skift.csv",
        format!(
            "skift_id;cpr;nyt_cpr;skiftedato\n1;{};{};2026-06-01\n",
            cpr(0),
            cpr(1)
        ),
    )
    .await;
    let header = "bopael_id;cpr;foedselsdato;koen;kommunekode;bopael_fra;bopael_til;indvandret_dato;udvandret_dato;doedsdato;udtraeksdato\n";
    let register = format!(
        "{header}\
         10;{a};1985-03-01;M;101;1985-03-01;2026-03-31;;;;2026-12-31\n\
         11;{a};1985-03-01;M;147;2026-04-01;;;;;2026-12-31\n\
         12;{b};1985-03-02;K;151;2001-05-01;2026-11-20;;;2026-11-20;2026-12-31\n",
        a = cpr(1),
        b = cpr(2),
    );
    deliver(&p, "cpr/befolkning/2026-12-31/bef.csv", register).await;
    deliver(
        &p,
        "almenpraksis/kontakt/2026-12-31/gp.csv",
        format!(
            "record_id;cpr;ydernummer;kontaktdato;ydelseskode;registreret\n\
             g1;{};012345;2026-10-10;0101;2026-10-10T10:00:00+02:00\n",
            cpr(0)
        ),
    )
    .await;
    deliver(
        &p,
        "lpr/kontakt/2026-12-31/lpr.csv",
        format!(
            "dw_ek_kontakt;dw_ek_forloeb;cpr;sorenhed_ans;dato_start;tidspunkt_start;dato_slut;tidspunkt_slut;aktionsdiagnose;kontakttype;prioritet;hovedspeciale_ans\n\
             900;;{};990000000001;2026-10-20;08:00;2026-10-20;12:00;DS720;ALCA00;ATA1;akutmedicin\n",
            cpr(1)
        ),
    )
    .await;
    deliver(
        &p,
        "kommune/gateway/2026-12-31/gw.ndjson",
        [
            pathway(0, "990101000000000", "2026-10-05", false),
            pathway(3, "990101000000000", "2026-10-05", false),
        ]
        .join("\n")
            + "\n",
    )
    .await;
    naerdata::publish::publish(&p, NaiveDate::from_ymd_opt(2026, 12, 31).unwrap())
        .await
        .unwrap();

    let one = |rows: &[std::collections::BTreeMap<String, Option<String>>], col: &str| {
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows[0][col].clone().unwrap()
    };
    let skift = presentation_rows(&p, "dim", "dim_person_skift").await;
    let (old, new) = (one(&skift, "person_id"), one(&skift, "kanonisk_person_id"));
    assert_ne!(old, new);
    let gp = presentation_rows(&p, "current", "almenpraksis_kontakt_current").await;
    let lpr = presentation_rows(&p, "current", "lpr_kontakt_current").await;
    assert_eq!(
        one(&gp, "person_id"),
        new,
        "the GP's old number is the new person"
    );
    assert_eq!(one(&lpr, "person_id"), new);
    // The curated lake keeps what was delivered: the GP row under the old pseudonym.
    let raw = naerdata::catalog::query(&p, "SELECT person_id FROM almenpraksis_kontakt")
        .await
        .unwrap();
    let raw = raw[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    assert_eq!(raw, old);

    let persons = presentation_rows(&p, "dim", "dim_person").await;
    assert_eq!(persons.len(), 3, "A, B and C, A once: {persons:?}");
    let person = |id: &str| {
        persons
            .iter()
            .find(|r| r["person_id"].as_deref() == Some(id))
    };
    let a = person(&new).expect("A under the new number");
    assert!(person(&old).is_none());
    assert_eq!(a["sex"].as_deref(), Some("M"), "the register's sex");
    assert_eq!(
        a["kommunekode"].as_deref(),
        Some("147"),
        "the latest residence"
    );
    assert_eq!(a["kilde"].as_deref(), Some("cpr"));
    let b = persons
        .iter()
        .find(|r| r["doedsdato"].is_some())
        .expect("B died");
    assert_eq!(b["doedsdato"].as_deref(), Some("2026-11-20"));
    let c = persons
        .iter()
        .find(|r| r["kilde"].as_deref() == Some("andre"))
        .expect("C is not in the register");
    assert_eq!(c["kommunekode"].as_deref(), Some("101"), "from the report");

    let homes = presentation_rows(&p, "dim", "person_bopael").await;
    let mut of_a: Vec<_> = homes
        .iter()
        .filter(|r| r["person_id"].as_deref() == Some(new.as_str()))
        .map(|r| {
            (
                r["kommunekode"].clone().unwrap(),
                r["gyldig_til"].clone(),
                r["kilde"].clone().unwrap(),
            )
        })
        .collect();
    of_a.sort();
    assert_eq!(
        of_a,
        vec![
            ("101".into(), Some("2026-03-31".into()), "cpr".into()),
            ("147".into(), None, "cpr".into()),
        ],
        "A's own municipal report (under the old number) is not a residence: the register has A"
    );
    let of_c: Vec<_> = homes
        .iter()
        .filter(|r| r["kilde"].as_deref() == Some("kommune"))
        .collect();
    assert_eq!(of_c.len(), 1);
    assert_eq!(of_c[0]["person_id"], c["person_id"]);

    // The population mart counts residents at each month's end: in November B is
    // dead (died the 20th), A lives in 147.
    let cells = naerdata::publish::unprotected_cells(
        &p,
        "befolkning",
        &[naerdata::publication::Period {
            start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            label: "2026-11".into(),
        }],
    )
    .await
    .unwrap();
    let kommuner = cells
        .column_by_name("kommunekode")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .map(|k| k.unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        kommuner,
        vec!["147".to_string()],
        "only A is a resident then"
    );

    // A research extract sees one person too: the GP's row (old number) and the
    // hospital's (new number) carry the same project pseudonym.
    use naerdata::extract::{self, ProjectSpec};
    let spec = ProjectSpec::from_yaml(
        "project: P-SKIFT\ndatasets:\n  - dataset: almenpraksis.kontakt\n    columns: [kontaktdato]\n  \
         - dataset: lpr.kontakt\n    columns: [dato_start]\n",
    )
    .unwrap();
    let keys = naerdata::local::KeyFile::new(extract::project_key_path(
        &dir.path().join("keys"),
        "P-SKIFT",
    ));
    extract::extract(&p, &spec, &keys).await.unwrap();
    let project_ids = |table: &str| -> Vec<String> {
        let mut ids = Vec::new();
        for b in extract_batches(&p, "P-SKIFT", table) {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            ids.extend((0..a.len()).map(|i| a.value(i).to_string()));
        }
        ids
    };
    let (gp, lpr) = (
        project_ids("almenpraksis_kontakt"),
        project_ids("lpr_kontakt"),
    );
    assert_eq!(gp.len(), 1);
    assert_eq!(gp, lpr, "one project pseudonym across the change of number");
}

/// The registry as it was before `foedselsdato` got its role: the birth date stored.
fn registry_storing_the_birth_date() -> Registry {
    let mut r = Registry::builtin();
    let mut c = r.get("cpr.befolkning").unwrap().clone();
    c.birth_date_field = None;
    c.version = "1.0.0".into();
    r.insert(c);
    r
}

/// Every Parquet file under `prefix` whose own schema has a column `name`.
async fn files_with_column(p: &Platform, prefix: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in p.stores.lake.list(prefix).await.unwrap() {
        let bytes = p.stores.lake.get(&o.key).await.unwrap().unwrap();
        if !naerdata::lake::is_parquet(&bytes) {
            continue;
        }
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        if meta
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .any(|f| f.name() == name)
        {
            out.push(o.key);
        }
    }
    out
}

#[tokio::test]
async fn a_birth_date_stored_before_its_contract_withheld_it_is_taken_out_history_included() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    p.contracts = Arc::new(registry_storing_the_birth_date());
    let header = "bopael_id;cpr;foedselsdato;koen;kommunekode;bopael_fra;bopael_til;indvandret_dato;udvandret_dato;doedsdato;udtraeksdato\n";
    // Person 0's register date (20 October 1984) is not what the replacement number's
    // digits say (1 March 1985): the register decides, and so their age on the extract
    // day is 42, not 41. Person 1's agrees with the number.
    let extract = |day: &str| {
        format!(
            "{header}\
             10;{a};1984-10-20;M;101;1990-01-01;;;;;{day}\n\
             11;{b};1985-03-02;K;147;2001-05-01;;;;;{day}\n",
            a = cpr(0),
            b = cpr(1),
        )
    };
    deliver(
        &p,
        "cpr/befolkning/2026-11-01/bef.csv",
        extract("2026-11-01"),
    )
    .await;
    naerdata::publish::publish(&p, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())
        .await
        .unwrap();
    let curated = "curated/cpr_befolkning/";
    let current = "presentation/current/cpr_befolkning_current/";
    assert!(
        !files_with_column(&p, curated, "foedselsdato")
            .await
            .is_empty()
    );
    assert!(
        !files_with_column(&p, current, "foedselsdato")
            .await
            .is_empty()
    );

    // The contract now withholds it: the scan names the tables that still hold it,
    // and the process step refuses the table until it is migrated, saying so.
    p.contracts = Arc::new(Registry::builtin());
    let scan = naerdata::privacy::scan::scan(&p).await.unwrap();
    let held: Vec<_> = scan
        .findings
        .iter()
        .filter(|f| f.part == "column foedselsdato (withheld)")
        .collect();
    assert!(
        held.iter().any(|f| f.location.starts_with(curated)),
        "{held:?}"
    );
    assert!(
        held.iter().any(|f| f.location.starts_with(current)),
        "{held:?}"
    );
    p.stores
        .landing
        .put(
            "cpr/befolkning/2026-12-01/bef.csv",
            Bytes::from(extract("2026-12-01")),
        )
        .await
        .unwrap();
    let Received::ToProcess(december) =
        receive::receive(&p, "cpr/befolkning/2026-12-01/bef.csv", None)
            .await
            .unwrap()
    else {
        panic!("new")
    };
    let e = process::process(&p, &december)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("foedselsdato") && e.contains("naerdata migrate"),
        "{e}"
    );

    // A publication under the new contracts before the migration rebuilds the current
    // table without the column; its old files stay in the table's history.
    naerdata::publish::publish(&p, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())
        .await
        .unwrap();
    let cur = naerdata::lake::delta::open(p.stores.lake.as_ref(), current, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        cur.snapshot()
            .unwrap()
            .schema()
            .field("foedselsdato")
            .is_none()
    );
    assert!(
        !files_with_column(&p, current, "foedselsdato")
            .await
            .is_empty()
    );

    let done = naerdata::migrate::withhold::withhold(&p).await.unwrap();
    let tables: Vec<_> = done.iter().map(|w| w.table.as_str()).collect();
    assert_eq!(tables, ["cpr_befolkning", "cpr_befolkning_current"]);
    assert_eq!(done[0].columns, ["foedselsdato"]);
    assert!(done[1].columns.is_empty(), "only its history held it");
    for w in &done {
        assert!(w.files_deleted >= 1, "{w:?}");
    }
    // Gone from every file, in the newest version and in history.
    assert!(
        files_with_column(&p, curated, "foedselsdato")
            .await
            .is_empty()
    );
    assert!(
        files_with_column(&p, current, "foedselsdato")
            .await
            .is_empty()
    );
    let scan = naerdata::privacy::scan::scan(&p).await.unwrap();
    assert!(scan.clean(), "{:?}", scan.findings);
    // The rows are all there, their birth year and month from the register's date.
    let years = catalog::query(
        &p,
        "SELECT bopael_id, birth_year, birth_month, age_at_event FROM cpr_befolkning ORDER BY bopael_id",
    )
    .await
    .unwrap();
    let shown = arrow::util::pretty::pretty_format_batches(&years)
        .unwrap()
        .to_string();
    assert!(
        shown.contains("| 10        | 1984       | 10          | 42           |"),
        "{shown}"
    );
    assert!(
        shown.contains("| 11        | 1985       | 3           | 41           |"),
        "{shown}"
    );
    assert!(
        naerdata::migrate::withhold::withhold(&p)
            .await
            .unwrap()
            .is_empty(),
        "a second run has nothing to do"
    );

    // The failed delivery is processed now; the migrated one is still known to the
    // table (a retry appends nothing).
    process::process(&p, &december).await.unwrap();
    let rows = |p: &Platform| {
        let p = p.clone();
        async move {
            let b = catalog::query(&p, "SELECT count(*) FROM cpr_befolkning")
                .await
                .unwrap();
            b[0].column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        }
    };
    assert_eq!(rows(&p).await, 4);
    let november = p
        .ledger
        .list(Some("cpr.befolkning"), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.delivery_id != december)
        .unwrap()
        .delivery_id;
    p.ledger
        .transition(
            &november,
            &[naerdata::ledger::DeliveryState::Accepted],
            naerdata::ledger::DeliveryState::Failed,
            p.clock.now(),
            None,
        )
        .await
        .unwrap();
    process::process(&p, &november).await.unwrap();
    assert_eq!(rows(&p).await, 4);

    // The next publication rebuilds the current table without it; the person
    // dimension has the register's birth year.
    naerdata::publish::publish(&p, NaiveDate::from_ymd_opt(2026, 12, 31).unwrap())
        .await
        .unwrap();
    assert!(
        files_with_column(&p, current, "foedselsdato")
            .await
            .is_empty()
    );
    let mut years: Vec<_> = presentation_rows(&p, "dim", "dim_person")
        .await
        .into_iter()
        .map(|r| r["birth_year"].clone().unwrap())
        .collect();
    years.sort();
    assert_eq!(years, ["1984", "1985"]);
}

/// A Parquet home from before Delta Lake whose register files hold the birth date:
/// the Delta migration creates the table from the new contract (no such column) over
/// those files, and withholding, which reads the files and not only the log, rewrites
/// it.
#[tokio::test]
async fn a_birth_date_in_the_files_of_a_table_whose_log_lacks_it_is_taken_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = platform(dir.path());
    p.contracts = Arc::new(registry_storing_the_birth_date());
    deliver(
        &p,
        "cpr/befolkning/2026-11-01/bef.csv",
        format!(
            "bopael_id;cpr;foedselsdato;koen;kommunekode;bopael_fra;bopael_til;indvandret_dato;udvandret_dato;doedsdato;udtraeksdato\n\
             10;{};1984-10-20;M;101;1990-01-01;;;;;2026-11-01\n",
            cpr(0)
        ),
    )
    .await;
    let curated = "curated/cpr_befolkning/";
    std::fs::remove_dir_all(p.stores.lake.locate(&format!("{curated}_delta_log"))).unwrap();
    p.contracts = Arc::new(Registry::builtin());
    naerdata::migrate::migrate(&p).await.unwrap();
    let t = naerdata::lake::delta::open(p.stores.lake.as_ref(), curated, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        t.snapshot()
            .unwrap()
            .schema()
            .field("foedselsdato")
            .is_none()
    );
    assert_eq!(
        files_with_column(&p, curated, "foedselsdato").await.len(),
        1
    );

    let done = naerdata::migrate::withhold::withhold(&p).await.unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].columns, ["foedselsdato"]);
    assert!(
        files_with_column(&p, curated, "foedselsdato")
            .await
            .is_empty()
    );
    let n = catalog::query(&p, "SELECT count(*) FROM cpr_befolkning")
        .await
        .unwrap();
    assert_eq!(
        n[0].column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0),
        1
    );
}
