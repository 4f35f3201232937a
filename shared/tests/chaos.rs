//! The reliability campaign on the embedded platform: a workload (deliveries of
//! every kind through receive and process, the monitor, a publication) runs once
//! without faults to enumerate its write points, then once per write point with a
//! fault there — an error, then a crash — followed by what an operator's retries do
//! (notifications again, replays after the lease, the next monitor and publish). After
//! the retries every delivery is final, every receipt is there, and the lake holds
//! exactly the rows of a fault-free run: nothing lost, nothing doubled.
//!
//! `make test` runs every tenth write point; `make chaos` (NAERDATA_CHAOS=full) all.

use std::sync::Arc;

use naerdata::Platform;
use naerdata::faults::{self, Faults, Mode, Settled};
use naerdata::ports::FixedClock;
use naerdata::process;
use naerdata::receive::{self, Received};

use crate::support::{platform, rows};

/// The workload's files: accepted CSV, its duplicate, a rejected file, a KL Gateway
/// delivery, and a file that arrives a day later.
fn files() -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.ndjson");
    naerdata::generate::bench_gateway_file(&file, 3, 1).unwrap();
    let gateway = std::fs::read_to_string(&file).unwrap();
    vec![
        (
            "almenpraksis/diagnose/2026-10-01/a.csv".into(),
            rows(0..40, 5),
        ),
        (
            "almenpraksis/diagnose/2026-10-01/a-copy.csv".into(),
            rows(0..40, 5),
        ),
        (
            "almenpraksis/diagnose/2026-10-01/bad.csv".into(),
            "hello;world\n1;2\n".into(),
        ),
        ("kommune/gateway/2026-10-01/gw.ndjson".into(), gateway),
        (
            "almenpraksis/diagnose/2026-10-02/b.csv".into(),
            rows(40..60, 4),
        ),
    ]
}

fn at(p: &Platform, t: &str) -> Platform {
    let mut p = p.clone();
    p.clock = Arc::new(FixedClock(t.parse().unwrap()));
    p
}

/// One pass of the workload on `p`; a failing step does not stop the others (a real
/// platform goes on with the next message).
async fn workload(p: &Platform) {
    for (key, _) in files() {
        if let Ok(Received::ToProcess(id)) = receive::receive(p, &key, None).await {
            let _ = process::process(p, &id).await;
        }
    }
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap();
    let _ = naerdata::monitor::run_and_page(p, as_of, naerdata::report::Mode::Local, &[]).await;
    let _ = naerdata::publish::publish(p, as_of).await;
}

/// What retries do, without faults, later: every notification again (S3/SQS deliver
/// at least once), the process step for whatever is not final (after the lease), and
/// the next monitor and publish.
async fn recover(p: &Platform) {
    for (key, _) in files() {
        let id = match receive::receive(p, &key, None)
            .await
            .expect("receive on retry")
        {
            Received::ToProcess(id) | Received::Known(id, _) => id,
            Received::Duplicate { .. } | Received::Unroutable(_) => continue,
        };
        let d = p.ledger.get(&id).await.unwrap().unwrap();
        if !d.state.is_final() {
            process::process(p, &id).await.expect("process on retry");
        }
    }
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap();
    naerdata::monitor::run_and_page(p, as_of, naerdata::report::Mode::Local, &[])
        .await
        .expect("monitor on retry");
    naerdata::publish::publish(p, as_of)
        .await
        .expect("publish on retry");
}

/// The curated tables the workload writes.
const TABLES: [&str; 4] = [
    "almenpraksis_diagnose",
    "kommune_tilstand",
    "kommune_indsats",
    "kommune_gateway",
];

/// A fresh home with the workload's files uploaded by the suppliers.
async fn home(dir: &std::path::Path) -> Platform {
    let p = at(&platform(dir), "2026-10-02T08:00:00Z");
    for (key, body) in files() {
        p.stores.landing.put(&key, body.into()).await.unwrap();
    }
    p
}

async fn run(faults: &Arc<Faults>) -> Settled {
    let dir = tempfile::tempdir().unwrap();
    let p = home(dir.path()).await;
    workload(&faults::platform(&p, faults)).await;
    // The retries come later than any lease.
    recover(&at(&p, "2026-10-02T10:00:00Z")).await;
    Settled::of(&p, &TABLES).await
}

#[tokio::test]
async fn every_write_point_faulted_loses_and_doubles_nothing() {
    let clean = Faults::none();
    let expected = run(&clean).await;
    let points = clean.trace();
    assert!(
        expected.states.get("accepted").copied().unwrap_or(0) >= 3,
        "{expected:?}"
    );
    assert!(!expected.rows["almenpraksis_diagnose"].is_empty());
    let full = std::env::var("NAERDATA_CHAOS").is_ok_and(|v| v == "full");
    let step = if full { 1 } else { 10 };
    let mut injected = 0;
    let mut differences = Vec::new();
    for (n, point) in points.iter().enumerate().step_by(step) {
        for mode in [Mode::Error, Mode::Crash] {
            let faults = Faults::at(n, mode);
            let got = run(&faults).await;
            assert!(faults.fired(), "write {n} ({point}) was not reached");
            injected += 1;
            if got != expected {
                differences.push(format!(
                    "{mode:?} at write {n} ({point}):\n  expected {expected:?}\n  got      {got:?}"
                ));
            }
        }
    }
    let lost_or_doubled = differences.len();
    println!(
        "chaos: {} write points in the workload, {injected} faults injected ({}): {lost_or_doubled} runs differ; 0 lost, 0 duplicated{}",
        points.len(),
        if full {
            "all points"
        } else {
            "every tenth point"
        },
        if lost_or_doubled == 0 { "" } else { " NOT MET" }
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    if full {
        assert!(
            injected >= 100,
            "only {injected} faults: the workload has too few write points"
        );
    }
}
