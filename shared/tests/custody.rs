//! Key custody on the local platform: the lake key is checked against the fingerprint
//! recorded beside the lake, never silently replaced, and rotated by rebuilding the
//! lake from landing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, Int32Array, StringArray};
use arrow::datatypes::DataType;
use naerdata::Platform;
use naerdata::catalog;
use naerdata::contract::Registry;
use naerdata::custody::{self, Fingerprint};
use naerdata::generate::{self, GenerateOptions};
use naerdata::ledger::DeliveryState;
use naerdata::local::KeyFile;
use naerdata::platform::LocalLayout;
use naerdata::ports::FixedClock;
use naerdata::process::{self, Processed};
use naerdata::receive::{self, Received};

fn platform(home: &Path) -> Platform {
    let mut p = Platform::local(home, Registry::builtin()).unwrap();
    p.clock = Arc::new(FixedClock("2026-10-05T12:00:00Z".parse().unwrap()));
    p
}

/// Generated deliveries (CPRs with day+60), put in landing, received and processed.
async fn ingest(p: &Platform, input: &Path, days: u32, seed: u64) -> Vec<String> {
    let mut opts = GenerateOptions::new(input);
    opts.persons = 120;
    opts.days = days;
    opts.seed = seed;
    let mut ids = Vec::new();
    for g in generate::generate(&opts).unwrap() {
        let key = g.path.strip_prefix(input).unwrap().to_str().unwrap();
        p.stores.landing.put_file(key, &g.path).await.unwrap();
        if let Received::ToProcess(id) = receive::receive(p, key, None).await.unwrap() {
            // Some generated deliveries are rejected on purpose (defects): the
            // rotation must leave them out, as the lake does.
            if let Processed::Done(s) = process::process(p, &id).await.unwrap()
                && s.has_rows()
            {
                ids.push(id);
            }
        }
    }
    ids
}

/// Per table with persons: (record_key, record_version, delivery_id) -> (person_id,
/// person_key_version), every row of the table.
type Rows = BTreeMap<String, BTreeMap<(String, String, String), (Option<String>, i32)>>;

async fn person_rows(p: &Platform) -> Rows {
    let mut out = Rows::new();
    for c in catalog::tables_with_data(p).await.unwrap() {
        if c.cpr_field.is_none() {
            continue;
        }
        let t = c.table();
        let batches = catalog::query(
            p,
            &format!(
                "SELECT record_key, record_version, delivery_id, person_id, person_key_version FROM {t}"
            ),
        )
        .await
        .unwrap();
        let rows = out.entry(t.clone()).or_default();
        for b in &batches {
            let col = |i: usize| -> StringArray {
                let a = arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
                a.as_any().downcast_ref::<StringArray>().unwrap().clone()
            };
            let (keys, record_versions, deliveries, persons) = (col(0), col(1), col(2), col(3));
            let versions = arrow::compute::cast(b.column(4), &DataType::Int32).unwrap();
            let versions = versions.as_any().downcast_ref::<Int32Array>().unwrap();
            for r in 0..b.num_rows() {
                let person = (!persons.is_null(r)).then(|| persons.value(r).to_string());
                let identity = (
                    keys.value(r).to_string(),
                    record_versions.value(r).to_string(),
                    deliveries.value(r).to_string(),
                );
                assert!(
                    rows.insert(identity, (person, versions.value(r))).is_none(),
                    "a row twice in {t}"
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn rotation_rebuilds_every_table_with_the_new_key_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let p = platform(&home);
    ingest(&p, &dir.path().join("input"), 3, 7).await;
    naerdata::publish::publish(&p, "2026-10-03".parse().unwrap())
        .await
        .unwrap();
    let before = person_rows(&p).await;
    assert!(
        before.len() >= 3,
        "tables with persons: {:?}",
        before.keys()
    );
    let v1 = custody::read_record(p.stores.lake.as_ref())
        .await
        .unwrap()
        .expect("the first delivery records the key")
        .current;
    assert_eq!(v1.version, 1);
    let files_before: Vec<String> = p
        .stores
        .lake
        .list("curated/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();

    let r =
        naerdata::rotate::rotate_local(&home, Registry::builtin(), "2026-10-03".parse().unwrap())
            .await
            .unwrap();
    assert_eq!(r.from, v1);
    assert_eq!(r.to.version, 2);
    assert_eq!(r.republished, Some("2026-10-03".parse().unwrap()));

    let p = platform(&home);
    let after = person_rows(&p).await;
    // The same rows in the same tables (counts equal), under the same object keys.
    assert_eq!(
        before
            .iter()
            .map(|(t, rows)| (t.clone(), rows.keys().cloned().collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|(t, rows)| (t.clone(), rows.keys().cloned().collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    );
    let files_after: Vec<String> = p
        .stores
        .lake
        .list("curated/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(files_before, files_after);
    // Every row has the new key version; a person keeps one pseudonym across every
    // table (the old -> new map is a bijection) and no old pseudonym is left.
    let mut old_to_new: HashMap<String, String> = HashMap::new();
    let mut new_to_old: HashMap<String, String> = HashMap::new();
    for (t, rows) in &after {
        for (identity, (person, version)) in rows {
            assert_eq!(*version, 2, "{t}: a row of key version {version}");
            let (old, old_version) = &before[t][identity];
            assert_eq!(*old_version, 1);
            match (old, person) {
                (Some(old), Some(new)) => {
                    assert_ne!(old, new, "{t}: a pseudonym survived the rotation");
                    assert_eq!(old_to_new.entry(old.clone()).or_insert(new.clone()), new);
                    assert_eq!(new_to_old.entry(new.clone()).or_insert(old.clone()), old);
                }
                (None, None) => {}
                other => panic!("{t}: person presence changed: {other:?}"),
            }
        }
    }
    assert!(old_to_new.len() > 50, "{} persons", old_to_new.len());
    let olds: BTreeSet<&String> = old_to_new.keys().collect();
    for rows in after.values() {
        for (person, _) in rows.values() {
            assert!(person.as_ref().is_none_or(|p| !olds.contains(p)));
        }
    }
    // The presentation zone was rebuilt with the new pseudonyms too.
    let path = p
        .stores
        .lake
        .locate("presentation/dim/dim_person/data.parquet");
    let f = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let news: BTreeSet<&String> = new_to_old.keys().collect();
    let mut n = 0;
    for b in reader {
        let b = b.unwrap();
        let ids = b.column_by_name("person_id").expect("dim_person.person_id");
        let ids = arrow::compute::cast(ids, &DataType::Utf8).unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..ids.len() {
            let id = ids.value(i).to_string();
            assert!(!olds.contains(&id) && news.contains(&id), "{id}");
            n += 1;
        }
    }
    assert!(n > 0);
    // The key file holds both versions; the record moved on; the staging home is gone.
    let layout = LocalLayout { home: home.clone() };
    let ring = KeyFile::new(layout.lake_key()).load().unwrap().unwrap();
    assert_eq!(ring.current.version, 2);
    assert!(ring.next.is_none());
    assert_eq!(
        ring.retired.iter().map(Fingerprint::of).collect::<Vec<_>>(),
        std::slice::from_ref(&v1)
    );
    let record = custody::read_record(p.stores.lake.as_ref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.current, r.to);
    assert_eq!(record.retired, [v1]);
    assert!(record.rotating_to.is_none());
    assert!(!home.join("rotation").exists());
    // New deliveries are processed with the new key.
    ingest(&p, &dir.path().join("input-2"), 1, 8).await;
    for rows in person_rows(&p).await.values() {
        assert!(rows.values().all(|(_, v)| *v == 2));
    }
}

#[tokio::test]
async fn a_lost_or_different_key_is_refused_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let p = platform(&home);
    ingest(&p, &dir.path().join("input"), 1, 3).await;
    let layout = LocalLayout { home: home.clone() };
    let original = std::fs::read(layout.lake_key()).unwrap();
    let recorded = custody::read_record(p.stores.lake.as_ref())
        .await
        .unwrap()
        .unwrap();

    // The key file is lost: no new key, the delivery fails and says what to restore.
    std::fs::remove_file(layout.lake_key()).unwrap();
    let p = platform(&home);
    let later = dir.path().join("input-2");
    let mut opts = GenerateOptions::new(&later);
    opts.persons = 20;
    opts.days = 1;
    opts.seed = 99;
    let g = &generate::generate(&opts).unwrap()[0];
    let key = g.path.strip_prefix(&later).unwrap().to_str().unwrap();
    p.stores.landing.put_file(key, &g.path).await.unwrap();
    let Received::ToProcess(id) = receive::receive(&p, key, None).await.unwrap() else {
        panic!("a new delivery");
    };
    let e = process::process(&p, &id).await.unwrap_err().to_string();
    assert!(
        e.contains("is missing") && e.contains(&recorded.current.to_string()),
        "{e}"
    );
    assert!(!layout.lake_key().exists(), "a new key file was created");
    assert_eq!(
        p.ledger.get(&id).await.unwrap().unwrap().state,
        DeliveryState::Failed
    );

    // Another key in its place: refused with both fingerprints, nothing written.
    let other = KeyFile::new(layout.lake_key());
    other.load_or_create().unwrap();
    let lake_files = p.stores.lake.list("curated/").await.unwrap().len();
    let e = process::process(&p, &id).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("expected {}", recorded.current)) && e.contains("found version 1"),
        "{e}"
    );
    assert_eq!(
        p.stores.lake.list("curated/").await.unwrap().len(),
        lake_files
    );

    // The original restored: the delivery goes through.
    std::fs::write(layout.lake_key(), original).unwrap();
    assert!(matches!(
        process::process(&p, &id).await.unwrap(),
        Processed::Done(s) if s.has_rows()
    ));
}
