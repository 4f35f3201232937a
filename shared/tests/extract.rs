//! Research extracts over a generated population: two projects that approve every
//! allowed column of every dataset, over the same persons in the same lake, cannot be
//! joined on any column. The test tries every column pair.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use bytes::Bytes;
use naerdata::Platform;
use naerdata::catalog;
use naerdata::contract::{FieldType, Registry};
use naerdata::extract::{
    self, Codebook, ColumnKind, ExtractManifest, PERSON_COLUMN, ProjectSpec, Treatment,
};
use naerdata::local::KeyFile;
use naerdata::ports::FixedClock;
use naerdata::process;
use naerdata::receive::{self, Received};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

fn platform(dir: &std::path::Path) -> Platform {
    let mut p = Platform::local(dir, Registry::builtin()).unwrap();
    p.clock = Arc::new(FixedClock("2026-10-10T12:00:00Z".parse().unwrap()));
    p
}

/// Generated deliveries (every source), received and processed into the lake.
async fn ingest(p: &Platform, dir: &std::path::Path, persons: usize) {
    let input = dir.join("input");
    let mut opts = naerdata::generate::GenerateOptions::new(&input);
    opts.persons = persons;
    opts.days = 3;
    for g in naerdata::generate::generate(&opts).unwrap() {
        let key = g.path.strip_prefix(&input).unwrap().to_str().unwrap();
        let body = Bytes::from(std::fs::read(&g.path).unwrap());
        p.stores.landing.put(key, body).await.unwrap();
        if let Received::ToProcess(id) = receive::receive(p, key, None).await.unwrap() {
            process::process(p, &id).await.unwrap();
        }
    }
}

/// A spec approving every allowed column of every dataset with data.
async fn everything(p: &Platform, project: &str) -> String {
    let mut yaml = format!("project: {project}\ntitle: every allowed column\ndatasets:\n");
    for c in catalog::tables_with_data(p).await.unwrap() {
        let allow = c.extract_allow.as_ref().unwrap();
        yaml.push_str(&format!(
            "  - dataset: {}\n    columns: [{}]\n",
            c.id,
            allow.join(", ")
        ));
    }
    yaml
}

fn read_parquet(path: &std::path::Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A column's values as text, in row order (`None` for null).
fn texts(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(column).unwrap();
        for i in 0..a.len() {
            out.push(
                (!a.is_null(i)).then(|| arrow::util::display::array_value_to_string(a, i).unwrap()),
            );
        }
    }
    out
}

struct Extract {
    manifest: ExtractManifest,
    codebook: Codebook,
    /// (table, column) -> the column's values in row order.
    columns: BTreeMap<(String, String), Vec<Option<String>>>,
    /// (table, column) -> the Arrow type.
    types: BTreeMap<(String, String), DataType>,
}

impl Extract {
    fn kind(&self, table: &str, column: &str) -> ColumnKind {
        self.codebook
            .tables
            .iter()
            .find(|t| t.table == table)
            .and_then(|t| t.columns.iter().find(|c| c.name == column))
            .unwrap_or_else(|| panic!("{table}.{column} is not in the codebook"))
            .kind
    }

    fn values(&self, key: &(String, String)) -> BTreeSet<&str> {
        self.columns[key]
            .iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

fn read_extract(p: &Platform, project: &str) -> Extract {
    let path = |key: &str| p.stores.lake.locate(key);
    let manifest: ExtractManifest = serde_json::from_slice(
        &std::fs::read(path(&format!("extracts/{project}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let codebook: Codebook =
        serde_json::from_slice(&std::fs::read(path(&manifest.codebook[0])).unwrap()).unwrap();
    let mut columns = BTreeMap::new();
    let mut types = BTreeMap::new();
    for t in &manifest.tables {
        let batches = read_parquet(std::path::Path::new(&path(&t.key)));
        let schema = batches[0].schema();
        for f in schema.fields() {
            let key = (t.table.clone(), f.name().clone());
            columns.insert(key.clone(), texts(&batches, f.name()));
            types.insert(key, f.data_type().clone());
        }
    }
    Extract {
        manifest,
        codebook,
        columns,
        types,
    }
}

#[tokio::test]
async fn two_projects_extracts_cannot_be_joined_on_any_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    ingest(&p, dir.path(), 1000).await;
    let keys =
        |project: &str| KeyFile::new(extract::project_key_path(&dir.path().join("keys"), project));
    let mut specs = BTreeMap::new();
    for project in ["P-A", "P-B"] {
        let yaml = everything(&p, project).await;
        let spec = ProjectSpec::from_yaml(&yaml).unwrap();
        extract::extract(&p, &spec, &keys(project)).await.unwrap();
        specs.insert(project, yaml);
    }
    let (a, b) = (read_extract(&p, "P-A"), read_extract(&p, "P-B"));
    let with_data = catalog::tables_with_data(&p).await.unwrap();
    assert!(
        with_data.len() >= 10,
        "the generator delivers (almost) every dataset: {}",
        with_data.len()
    );
    assert_eq!(a.manifest.tables.len(), with_data.len());

    // Every column pair, one column from each project's extract, across all tables:
    // a person pseudonym or a re-keyed identifier shares no value with any column of
    // the other extract. Only quasi-identifiers and attributes (dates, codes, sex,
    // birth year ...) overlap, by design, and the codebook says which they are.
    let linking = |k: ColumnKind| matches!(k, ColumnKind::Person | ColumnKind::Identifier);
    let (mut pairs, mut overlapping) = (0usize, 0usize);
    let mut joins = Vec::new();
    let sets_b: Vec<(&(String, String), BTreeSet<&str>)> =
        b.columns.keys().map(|k| (k, b.values(k))).collect();
    for ka in a.columns.keys() {
        let va = a.values(ka);
        for (kb, vb) in &sets_b {
            pairs += 1;
            let shared = va.intersection(vb).count();
            if shared == 0 {
                continue;
            }
            overlapping += 1;
            let (kind_a, kind_b) = (a.kind(&ka.0, &ka.1), b.kind(&kb.0, &kb.1));
            if linking(kind_a) || linking(kind_b) {
                joins.push(format!(
                    "P-A {}.{} ({kind_a:?}) and P-B {}.{} ({kind_b:?}) share {shared} value(s)",
                    ka.0, ka.1, kb.0, kb.1
                ));
            }
        }
    }
    assert_eq!(pairs, a.columns.len() * b.columns.len());
    assert!(pairs > 1000, "{pairs} pairs");
    assert!(overlapping > 0, "quasi-identifiers overlap, by design");
    assert!(joins.is_empty(), "joinable columns:\n{}", joins.join("\n"));

    // The linking columns are the person and every identifier the contracts tag, and
    // nothing else: every other column's kind says it is released as it is.
    for (project, x) in [("P-A", &a), ("P-B", &b)] {
        for t in &x.codebook.tables {
            let c = p.contracts.get(&t.dataset).unwrap();
            for col in &t.columns {
                let tagged = c.field(&col.name).is_some_and(|f| f.identifier.is_some());
                let expected = if col.name == PERSON_COLUMN {
                    ColumnKind::Person
                } else if tagged {
                    ColumnKind::Identifier
                } else {
                    assert!(!linking(col.kind), "{project} {}.{}", t.table, col.name);
                    continue;
                };
                assert_eq!(col.kind, expected, "{project} {}.{}", t.table, col.name);
                // Re-keyed: 64 hex digits, where the lake had raw ids.
                let values = x.values(&(t.table.clone(), col.name.clone()));
                assert!(!values.is_empty(), "{}.{} has values", t.table, col.name);
                assert!(
                    values
                        .iter()
                        .all(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())),
                    "{}.{} is not re-keyed",
                    t.table,
                    col.name
                );
            }
        }
    }

    // Nor does any column join to the lake: no person_id, raw id or lineage value
    // appears anywhere in either extract (an id column left untagged would show here).
    let mut lake_ids = BTreeSet::new();
    for c in &with_data {
        let mut cols: Vec<String> = vec![
            "person_id".into(),
            "record_key".into(),
            "delivery_id".into(),
        ];
        cols.extend(
            c.fields
                .iter()
                .filter(|f| f.identifier.is_some())
                .map(|f| f.name.clone()),
        );
        let batches = catalog::query(
            &p,
            &format!("SELECT {} FROM {}", cols.join(", "), c.table()),
        )
        .await
        .unwrap();
        for col in &cols {
            lake_ids.extend(texts(&batches, col).into_iter().flatten());
        }
    }
    assert!(lake_ids.len() > 1000, "{}", lake_ids.len());
    for x in [&a, &b] {
        for (k, values) in &x.columns {
            assert!(
                values.iter().flatten().all(|v| !lake_ids.contains(v)),
                "{}.{} holds a lake id",
                k.0,
                k.1
            );
        }
    }

    // Within one extract the re-keyed references still join: the conditions that
    // interventions name are (but for ones since withdrawn) in the condition table.
    let ids = |t: &str, c: &str| a.values(&(t.into(), c.into()));
    let referenced = ids("kommune_indsats", "tilstand_id");
    let found = referenced
        .intersection(&ids("kommune_tilstand", "resource_id"))
        .count();
    assert!(
        !referenced.is_empty() && found * 10 >= referenced.len() * 9,
        "{found} of {} referenced conditions join",
        referenced.len()
    );
    let contacts = ids("lpr_kontakt", "dw_ek_kontakt");
    let diagnosed = ids("lpr_diagnose", "dw_ek_kontakt");
    assert!(contacts.intersection(&diagnosed).count() > 0);

    // The same persons in both, in an order that does not line up.
    for t in &a.manifest.tables {
        let key = (t.table.clone(), PERSON_COLUMN.to_string());
        assert_eq!(a.values(&key).len(), b.values(&key).len(), "{}", t.table);
    }
    let rows = |x: &Extract, table: &str| -> Vec<Vec<Option<String>>> {
        let cols: Vec<&(String, String)> = x
            .columns
            .keys()
            .filter(|k| k.0 == table && !linking(x.kind(&k.0, &k.1)))
            .collect();
        let n = x.columns[cols[0]].len();
        (0..n)
            .map(|i| cols.iter().map(|k| x.columns[*k][i].clone()).collect())
            .collect()
    };
    let (ra, rb) = (
        rows(&a, "almenpraksis_diagnose"),
        rows(&b, "almenpraksis_diagnose"),
    );
    assert!(ra.len() > 200, "{}", ra.len());
    assert_ne!(ra, rb, "rows in the same order would join by position");
    let sorted = |mut v: Vec<Vec<Option<String>>>| {
        v.sort();
        v
    };
    assert_eq!(sorted(ra), sorted(rb), "the same rows");

    // Timestamps are dates; no column is a timestamp.
    for ((table, column), t) in &a.types {
        assert!(
            !matches!(t, DataType::Timestamp(..)),
            "{table}.{column} is {t}"
        );
        let c = with_data.iter().find(|c| c.table() == *table).unwrap();
        if c.field(column)
            .is_some_and(|f| f.field_type == FieldType::Timestamp)
        {
            assert_eq!(t, &DataType::Date32, "{table}.{column}");
        }
    }
    let last_updated = a.values(&("kommune_indsats".into(), "last_updated".into()));
    assert!(
        last_updated
            .iter()
            .all(|d| d.len() == 10 && d.starts_with("2026-")),
        "{last_updated:?}"
    );

    // The manifest records the spec's hash; the codebook describes what was written.
    for (project, x) in [("P-A", &a), ("P-B", &b)] {
        let sha = hex::encode(Sha256::digest(specs[project].as_bytes()));
        assert_eq!(x.manifest.spec_sha256, sha);
        assert_eq!(x.codebook.spec_sha256, sha);
        let md = std::fs::read_to_string(p.stores.lake.locate(&x.manifest.codebook[1])).unwrap();
        assert!(md.contains(&sha));
        for t in &x.codebook.tables {
            assert!(md.contains(&format!("## {} ", t.table)), "{}", t.table);
            let listed: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            let written: Vec<&str> = x
                .columns
                .keys()
                .filter(|k| k.0 == t.table)
                .map(|k| k.1.as_str())
                .collect();
            let mut l = listed.clone();
            l.sort();
            assert_eq!(l, written, "{}", t.table);
            assert_eq!(listed[0], PERSON_COLUMN);
            for col in &t.columns {
                assert!(!col.description.is_empty(), "{}.{}", t.table, col.name);
                assert_eq!(col.values.non_null + col.values.nulls, t.rows);
                let distinct = x.values(&(t.table.clone(), col.name.clone())).len() as u64;
                assert_eq!(col.values.distinct, distinct, "{}.{}", t.table, col.name);
                assert!(md.contains(&format!("| `{}` |", col.name)));
            }
            assert_eq!(t.persons, t.columns[0].values.distinct);
        }
    }
    let table = |name: &str| a.codebook.tables.iter().find(|t| t.table == name).unwrap();
    let column = |t: &str, c: &str| {
        table(t)
            .columns
            .iter()
            .find(|x| x.name == c)
            .unwrap()
            .clone()
    };
    let prioritet = column("lpr_kontakt", "prioritet");
    let codes: Vec<&str> = prioritet
        .code_list
        .as_ref()
        .unwrap()
        .codes
        .iter()
        .map(|c| c.code.as_str())
        .collect();
    assert_eq!(codes, ["ATA1", "ATA3"]);
    assert_eq!(
        column("lpr_kontakt", "dw_ek_kontakt").id_space.as_deref(),
        Some("lpr.kontakt")
    );
    assert_eq!(
        column("lpr_kontakt", "dw_ek_kontakt").treatment,
        Treatment::Rekeyed
    );
    assert_eq!(
        column("kommune_indsats", "last_updated").treatment,
        Treatment::DateOfTimestamp
    );
    for (t, c) in [
        ("lpr_kontakt", "dato_start"),
        ("lpr_kontakt", "sex"),
        ("lpr_kontakt", "birth_year"),
        ("lpr_kontakt", "sorenhed_ans"),
        ("kommune_indsats", "last_updated"),
    ] {
        let col = column(t, c);
        assert_eq!(col.kind, ColumnKind::QuasiIdentifier, "{t}.{c}");
        assert!(col.quasi_identifier.is_some());
    }
    assert_eq!(
        column("lpr_kontakt", "prioritet").kind,
        ColumnKind::Attribute
    );
    let sex = column("lpr_kontakt", "sex");
    assert!(sex.values.distinct <= 2 && sex.values.singleton_share == 0.0);
    let person = column("lpr_kontakt", PERSON_COLUMN);
    assert_eq!(person.values.distinct, table("lpr_kontakt").persons);
}

#[tokio::test]
async fn a_spec_outside_the_allow_list_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    ingest(&p, dir.path(), 40).await;
    let keys = KeyFile::new(extract::project_key_path(&dir.path().join("keys"), "P-C"));
    for (columns, says) in [
        ("[kommunekode, bundle_id]", "not on the extract allow-list"),
        ("[rapportdato, delivery_id]", "never released"),
        ("[received_at]", "never released"),
        ("[cpr]", "never released"),
    ] {
        let spec = ProjectSpec::from_yaml(&format!(
            "project: P-C\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [prioritet]\n  - dataset: kommune.gateway\n    columns: {columns}\n"
        ))
        .unwrap();
        let e = extract::extract(&p, &spec, &keys)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{columns}: {e}");
        assert!(
            p.stores
                .lake
                .list("extracts/P-C/")
                .await
                .unwrap()
                .is_empty(),
            "a refused spec writes nothing"
        );
    }
}

/// An extract records the Delta version of every table it read; `--as-of` those
/// versions gives the same data files, byte for byte, after the lake has changed
/// (new deliveries, a retraction, compaction).
#[tokio::test]
async fn an_extract_as_of_its_recorded_versions_is_the_same_extract() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    ingest(&p, dir.path(), 60).await;
    let keys = KeyFile::new(extract::project_key_path(&dir.path().join("keys"), "P-T"));
    let spec = ProjectSpec::from_yaml(&everything(&p, "P-T").await).unwrap();
    let first = extract::extract(&p, &spec, &keys).await.unwrap();
    assert_eq!(first.lake_versions.len(), first.tables.len());
    let files = |m: &ExtractManifest| -> BTreeMap<String, Vec<u8>> {
        m.tables
            .iter()
            .map(|t| {
                (
                    t.table.clone(),
                    std::fs::read(p.stores.lake.locate(&t.key)).unwrap(),
                )
            })
            .collect()
    };
    let before = files(&first);

    // The lake moves on: more deliveries, one retracted, everything compacted.
    let more = dir.path().join("more");
    let mut opts = naerdata::generate::GenerateOptions::new(&more);
    opts.persons = 60;
    opts.days = 2;
    opts.seed = 7;
    opts.start = chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
    let mut last = None;
    for g in naerdata::generate::generate(&opts).unwrap() {
        let key = g.path.strip_prefix(&more).unwrap().to_str().unwrap();
        p.stores
            .landing
            .put(key, Bytes::from(std::fs::read(&g.path).unwrap()))
            .await
            .unwrap();
        if let Received::ToProcess(id) = receive::receive(&p, key, None).await.unwrap() {
            process::process(&p, &id).await.unwrap();
            last = Some(id);
        }
    }
    let accepted = p
        .ledger
        .list(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.state.has_rows() && Some(&d.delivery_id) != last.as_ref())
        .unwrap();
    naerdata::retract::retract(&p, &accepted.delivery_id, "test of reproducibility")
        .await
        .unwrap();
    naerdata::maintain::maintain(&p, &Default::default())
        .await
        .unwrap();
    let now = extract::extract(&p, &spec, &keys).await.unwrap();
    assert_ne!(
        files(&now),
        before,
        "the lake changed, so must a new extract"
    );

    let again = extract::extract_as_of(
        &p,
        &spec,
        &keys,
        &catalog::AsOf::Versions(first.lake_versions.clone()),
    )
    .await
    .unwrap();
    assert_eq!(again.lake_versions, first.lake_versions);
    assert_eq!(
        files(&again),
        before,
        "as-of the recorded versions: the same files"
    );
}
