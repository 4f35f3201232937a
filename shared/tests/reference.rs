//! Reference data loaded at run time: a new SOR map version makes a municipality's
//! bundles acceptable without a rebuild, and the KL Gateway guide's own example
//! citizen (Jens Hansen, `fixtures/kl-ig/`) goes through once the guide's SOR code is
//! loaded, with the real KL terminology as the built-in code list.

use std::collections::BTreeMap;

use naerdata::Platform;
use naerdata::catalog;
use naerdata::contract::Registry;
use naerdata::ledger::DeliveryState;
use naerdata::process::{self, Processed};
use naerdata::receipt::ReceiptOutcome;
use naerdata::reference::store::{self as reference_store, Published};
use naerdata::reference::{self, Kind};

use crate::support::{deliver_new, platform, receipt};

/// The SOR code of the guide's example municipality (a placeholder in the guide).
const IG_SOR: &str = "123456789012345";

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kl-ig/jens-hansen"
);

/// The guide's four delivery reports, in the order they were sent, one per line.
fn jens_hansen() -> Vec<String> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let b: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (b["timestamp"].as_str().unwrap().to_string(), b.to_string())
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "the guide's example has four delivery reports"
    );
    files.into_iter().map(|(_, b)| b).collect()
}

async fn load_sor(p: &Platform, extra: &str) -> String {
    let text = format!("{}{extra}", reference::SOR_KOMMUNE_CSV);
    let published = reference_store::publish(
        p.stores.lake.as_ref(),
        &Registry::builtin(),
        Kind::Sor,
        &text,
        "sor-kommune.csv",
        p.clock.now(),
    )
    .await
    .unwrap();
    let Published::New(cur) = published else {
        panic!("not a new version: {published:?}")
    };
    cur.version
}

async fn process(p: &Platform, key: &str, body: &str) -> (String, DeliveryState) {
    let id = deliver_new(p, key, body).await;
    let Processed::Done(state) = process::process(p, &id).await.unwrap() else {
        panic!("not processed")
    };
    (id, state)
}

async fn column_by_id(p: &Platform, sql: &str) -> BTreeMap<String, String> {
    let batches = catalog::query(p, sql).await.unwrap();
    let mut out = BTreeMap::new();
    for b in &batches {
        let col = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8).unwrap()
        };
        let (k, v) = (col(0), col(1));
        let k = k
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let v = v
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            out.insert(k.value(i).to_string(), v.value(i).to_string());
        }
    }
    out
}

#[tokio::test]
async fn the_kl_guides_example_citizen_is_accepted_once_its_sor_code_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let bundles = jens_hansen();

    // The guide's SOR code is no municipality of the built-in map.
    let (id, state) = process(&p, "kommune/gateway/2021-02-10/jh-1.json", &bundles[0]).await;
    assert_eq!(state, DeliveryState::Rejected);
    let r = receipt(&p, &id).await;
    assert_eq!(r.problems_by_rule.get("municipality"), Some(&1), "{r:?}");
    assert!(r.reference_versions["sor"].starts_with("builtin-"));

    // An operator loads a SOR map with it (which municipality is the test's choice:
    // the guide does not say); no rebuild, no restart.
    let version = load_sor(
        &p,
        &format!("{IG_SOR},751,Aarhus (KL-vejledningens eksempel),false\n"),
    )
    .await;
    let body: String = bundles.iter().map(|b| format!("{b}\n")).collect();
    let (id, state) = process(&p, "kommune/gateway/2021-02-25/jh-all.ndjson", &body).await;
    let r = receipt(&p, &id).await;
    assert_ne!(state, DeliveryState::Rejected, "{r:?}");
    assert_eq!(
        (r.rows.read, r.rows.accepted, r.rows.rejected),
        (4, 4, 0),
        "{r:?}"
    );
    assert!(
        r.problems
            .iter()
            .all(|p| p.rule != "code" && p.rule != "municipality"),
        "{:?}",
        r.problems
    );
    assert_eq!(r.reference_versions["sor"], version);
    assert!(r.reference_versions["fsiii"].starts_with("builtin-"));
    let expected: BTreeMap<String, u64> = [
        ("kommune_borger", 4),
        ("kommune_gateway", 4),
        ("kommune_indsats", 12),
        ("kommune_kontakt", 8),
        ("kommune_opfoelgning", 2),
        ("kommune_tilstand", 15),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_string(), n))
    .collect();
    assert_eq!(r.tables, expected);

    // The newest version of each condition: codes as the KL terminology stores
    // them (the legacy key where the concept has one, else its UUID), and the
    // severity of the last report (display "2" = B3).
    let codes = column_by_id(
        &p,
        "SELECT resource_id, concat(fsiii_kode, ' ', omraade, ' ', alvorlighed, ' ', kommunekode) \
         FROM kommune_tilstand t WHERE record_version = \
         (SELECT max(record_version) FROM kommune_tilstand u WHERE u.record_key = t.record_key)",
    )
    .await;
    assert_eq!(
        codes["80e7cd6e-f926-412c-b326-578f05af643e"],
        "J2.2 home_care B3 751"
    );
    assert_eq!(
        codes["4f47118b-25a0-4998-8f71-86b1ce220f11"],
        "J2.1 home_care B3 751"
    );
    assert_eq!(
        codes["38ea1a7f-251a-4817-aa4a-b59d556db92a"],
        "feb38b55-c2d7-4d57-99c2-93622eaa0025 home_care B3 751"
    );
    // The rehabilitation interventions of the last report (SEL §83a).
    let basis = column_by_id(
        &p,
        "SELECT resource_id, concat(fsiii_kode, ' ', lovgrundlag, ' ', tilstand_id) FROM kommune_indsats",
    )
    .await;
    assert_eq!(
        basis["f824fbab-28a7-4b13-87d3-24e120873455"],
        "H2.5 §83a 38ea1a7f-251a-4817-aa4a-b59d556db92a"
    );
    assert_eq!(
        basis["0aff84ce-2b70-4677-bfa8-78c599d0eaf9"],
        "H1.1 §83 38ea1a7f-251a-4817-aa4a-b59d556db92a"
    );
    let results = column_by_id(&p, "SELECT resource_id, resultat FROM kommune_opfoelgning").await;
    assert_eq!(results["58a9388b-87ff-4e09-842a-3109cfce1566"], "E1");
    assert_eq!(results["a80bb9e0-5838-4bf1-924b-31f88aecc3c7"], "E4");
}

/// A code of a newer terminology than the one loaded is kept and flagged; the
/// quality metrics count it against the column's conformance.
#[tokio::test]
async fn an_unlisted_fsiii_code_is_kept_with_a_warning_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    load_sor(&p, &format!("{IG_SOR},751,Aarhus,false\n")).await;
    let unknown = "0b7a9d11-3a52-4c47-9d6a-2f1e0c1d2e3f";
    let first = jens_hansen().remove(0);
    let mut b: serde_json::Value = serde_json::from_str(&first).unwrap();
    let condition = b["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["resource"]["resourceType"] == "Condition")
        .unwrap();
    condition["resource"]["code"]["coding"][0]["code"] = serde_json::json!(unknown);
    let (id, state) = process(
        &p,
        "kommune/gateway/2021-02-10/unlisted.json",
        &b.to_string(),
    )
    .await;
    assert_eq!(state, DeliveryState::AcceptedWithWarnings);
    let r = receipt(&p, &id).await;
    assert_eq!(r.outcome, ReceiptOutcome::Warning);
    assert_eq!(
        r.problems_by_rule.get("code_not_in_list"),
        Some(&1),
        "{r:?}"
    );
    let w = r
        .problems
        .iter()
        .find(|p| p.rule == "code_not_in_list")
        .unwrap();
    assert_eq!(w.column.as_deref(), Some("fsiii_kode"));
    assert_eq!(r.tables["kommune_tilstand"], 4);
    let kept = column_by_id(&p, "SELECT fsiii_kode, omraade FROM kommune_tilstand").await;
    assert_eq!(kept[unknown], "unknown");
    // The conformance check of the column counts it (1 of 4 conditions), and the
    // metrics name the reference versions.
    let mut found = None;
    for o in p
        .stores
        .lake
        .list(naerdata::layout::METRICS_PREFIX)
        .await
        .unwrap()
    {
        if !o.key.ends_with(".parquet") || !o.key.contains(&id) {
            continue;
        }
        let bytes = p.stores.lake.get(&o.key).await.unwrap().unwrap();
        let (head, metrics) = naerdata::quality::store::read_metrics(bytes).unwrap();
        let head = head.unwrap();
        assert!(
            head.reference_versions
                .as_deref()
                .unwrap_or("")
                .contains("fsiii=builtin-"),
            "{head:?}"
        );
        found = metrics.into_iter().find(|m| {
            m.table == "kommune_tilstand"
                && m.check == "conformance"
                && m.field.as_deref() == Some("fsiii_kode")
        });
    }
    let m = found.expect("a conformance metric for kommune_tilstand.fsiii_kode");
    assert_eq!((m.violated, m.denominator), (1, 4), "{m:?}");

    // A malformed code is still an error: the bundle is left out.
    let mut bad = b.clone();
    let condition = bad["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["resource"]["resourceType"] == "Condition")
        .unwrap();
    condition["resource"]["code"]["coding"][0]["code"] = serde_json::json!("Vaske sig");
    let (id, state) = process(
        &p,
        "kommune/gateway/2021-02-11/malformed.json",
        &bad.to_string(),
    )
    .await;
    assert_eq!(state, DeliveryState::Rejected);
    assert_eq!(
        receipt(&p, &id).await.problems_by_rule.get("code"),
        Some(&1)
    );
}

/// The register of expected reporting units: a clinic that never delivered is on
/// the operator page as missing, beside the one that did.
#[tokio::test]
async fn a_registered_clinic_that_never_delivered_is_shown_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    for day in ["2026-06-01", "2026-06-08", "2026-06-15"] {
        // Each delivery arrives on its day.
        let mut on_day = p.clone();
        on_day.clock = std::sync::Arc::new(naerdata::ports::FixedClock(
            format!("{day}T06:00:00Z").parse().unwrap(),
        ));
        let key = format!("almenpraksis/diagnose/{day}/ap.csv");
        let body = crate::support::rows(0..3, 6).replace("2026-06-01;", &format!("{day};"));
        let (_, state) = process(&on_day, &key, &body).await;
        assert_eq!(state, DeliveryState::Accepted);
    }
    let register = "dataset,unit,name,kommunekode,valid_from,valid_to\n\
                    almenpraksis.diagnose,012345,Lægehuset ved Åen,101,2020-01-01,\n\
                    almenpraksis.diagnose,099999,Lægerne i Nyby,751,2026-01-01,\n";
    let published = reference_store::publish(
        p.stores.lake.as_ref(),
        &Registry::builtin(),
        Kind::Units,
        register,
        "enheder.csv",
        p.clock.now(),
    )
    .await
    .unwrap();
    assert!(matches!(published, Published::New(_)));
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 6, 20).unwrap();
    let (m, html) = naerdata::monitor::run_and_page(&p, as_of, naerdata::report::Mode::Local, &[])
        .await
        .unwrap();
    let status = |unit: &str| {
        m.reception
            .iter()
            .filter(|r| r.dataset == "almenpraksis.diagnose" && r.unit.as_deref() == Some(unit))
            .map(|r| r.status.as_str())
            .collect::<Vec<_>>()
    };
    assert!(
        status("012345").iter().all(|s| *s != "missing"),
        "{:?}",
        status("012345")
    );
    let never = status("099999");
    assert!(
        !never.is_empty() && never.iter().filter(|s| **s == "missing").count() >= 2,
        "{never:?}"
    );
    assert!(
        html.contains("<td>almenpraksis.diagnose</td><td>099999</td>"),
        "the page lists the clinic that never delivered"
    );
}
