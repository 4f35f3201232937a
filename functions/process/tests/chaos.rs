//! The reliability campaign over the AWS adapters (moto): the receive and process
//! functions take a workload off their SQS queues once without faults, to enumerate
//! the write points (S3 puts and Delta commits in the lake, receipts, quarantine,
//! DynamoDB transitions, sends to the process queue), then once per write point with
//! a fault there — an error, then a crash of the worker — followed by what AWS and an
//! operator do afterwards: SQS hands the failed messages to a fresh worker, and
//! `naerdata replay --aws` re-sends whatever is left unfinished after its lease.
//! Then every delivery is final, every receipt is there, and the lake holds exactly
//! the rows of the fault-free run.
//!
//! `make test` faults every seventh write point; `make chaos` (NAERDATA_CHAOS=full)
//! every one. The embedded platform's campaign (with monitor and publish) is
//! shared/tests/chaos.rs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use naerdata::Platform;
use naerdata::aws::SqsQueue;
use naerdata::faults::{self, Faults, FaultyQueue, Mode, Settled};
use naerdata::ports::{FixedClock, ProcessMessage, Queue};
use naerdata_receive::Receiver;

use crate::support::{
    Moto, Stack, diagnoses, platform, provision, pump, pump_while, receive_all, receiver_on,
};
use naerdata_process as process;

const TABLES: [&str; 4] = [
    "almenpraksis_diagnose",
    "kommune_tilstand",
    "kommune_indsats",
    "kommune_gateway",
];

/// Accepted CSV, its identical copy, a rejected file, a KL Gateway delivery (one
/// bundle fans out to several tables), and a second day.
fn files() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gw.ndjson");
    naerdata::generate::bench_gateway_file(&gw, 2, 7).unwrap();
    vec![
        (
            "almenpraksis/diagnose/2026-10-01/a.csv".into(),
            diagnoses(0, 30, 3).into_bytes(),
        ),
        (
            "almenpraksis/diagnose/2026-10-01/a-copy.csv".into(),
            diagnoses(0, 30, 3).into_bytes(),
        ),
        (
            "almenpraksis/diagnose/2026-10-01/bad.csv".into(),
            b"hello;world\n1;2\n".to_vec(),
        ),
        (
            "kommune/gateway/2026-10-01/gw.ndjson".into(),
            std::fs::read(&gw).unwrap(),
        ),
        (
            "almenpraksis/diagnose/2026-10-02/b.csv".into(),
            diagnoses(100, 20, 2).into_bytes(),
        ),
    ]
}

fn at(p: &Platform, t: &str) -> Platform {
    let mut p = p.clone();
    p.clock = Arc::new(FixedClock(t.parse::<DateTime<Utc>>().unwrap()));
    p
}

fn process_queue(stack: &Stack) -> Arc<dyn Queue> {
    Arc::new(SqsQueue::new(
        stack.clients.sqs.clone(),
        &stack.process_queue,
    ))
}

/// The functions take the queues on `p` (its writes behind `faults`) until the queues
/// are empty or the worker has crashed.
async fn workload(stack: &Stack, p: &Platform, faults: &Arc<Faults>) {
    let faulty = faults::platform(p, faults);
    let receiver = Receiver {
        platform: faulty.clone(),
        process_queue: Arc::new(FaultyQueue {
            inner: process_queue(stack),
            faults: faults.clone(),
        }),
        landing_bucket: stack.resources.landing_bucket.clone(),
    };
    let alive = || !faults.crashed();
    pump_while(
        stack,
        &stack.receive_queue,
        &stack.receive_queue_arn,
        alive,
        |e| receiver.handle(e),
    )
    .await;
    pump_while(
        stack,
        &stack.process_queue,
        &stack.process_queue_arn,
        alive,
        |e| process::handle(&faulty, e),
    )
    .await;
}

/// A fresh worker after the lease: SQS redelivers what failed, then the operator's
/// `replay --aws` re-sends every delivery still unfinished (the same check as the CLI:
/// failed, never processed, or a stale claim).
async fn recover(stack: &Stack, p: &Platform) {
    receive_all(stack, &receiver_on(stack, p.clone())).await;
    pump(stack, &stack.process_queue, &stack.process_queue_arn, |e| {
        process::handle(p, e)
    })
    .await;
    for d in p.ledger.list(None, 1_000).await.unwrap() {
        let stale = naerdata::process::claim_is_stale(p, &d).await.unwrap();
        if d.state.is_final() || !(stale || d.replay_eligibility().is_ok()) {
            continue;
        }
        process_queue(stack)
            .send_process(
                &ProcessMessage {
                    delivery_id: d.delivery_id.clone(),
                },
                &d.dataset,
            )
            .await
            .unwrap();
    }
    pump(stack, &stack.process_queue, &stack.process_queue_arn, |e| {
        process::handle(p, e)
    })
    .await;
}

async fn run(moto: &Moto, name: &str, faults: &Arc<Faults>) -> Settled {
    let stack = provision(moto, name).await;
    for (key, body) in files() {
        stack.upload(&key, body).await;
    }
    let p = platform(&stack);
    workload(&stack, &p, faults).await;
    recover(&stack, &at(&p, "2026-12-01T10:00:00Z")).await;
    Settled::of(&p, &TABLES).await
}

#[tokio::test]
async fn every_write_point_of_the_functions_faulted_on_moto_loses_and_doubles_nothing() {
    let moto = Moto::start();
    let clean = Faults::none();
    let expected = run(&moto, "clean", &clean).await;
    let points = clean.trace();
    assert_eq!(expected.states.get("accepted"), Some(&3), "{expected:?}");
    assert!(!expected.rows["almenpraksis_diagnose"].is_empty());
    assert!(
        points
            .iter()
            .any(|p| p.contains("engine put") && p.contains("_delta_log")),
        "the Delta commits are write points: {points:#?}"
    );
    assert!(points.iter().any(|p| p.starts_with("queue send")));
    let full = std::env::var("NAERDATA_CHAOS").is_ok_and(|v| v == "full");
    let step = if full { 1 } else { 7 };
    let mut injected = 0;
    let mut differences = Vec::new();
    for (n, point) in points.iter().enumerate().step_by(step) {
        for mode in [Mode::Error, Mode::Crash] {
            let faults = Faults::at(n, mode);
            let got = run(&moto, &format!("f{n}{mode:?}").to_lowercase(), &faults).await;
            assert!(faults.fired(), "write {n} ({point}) was not reached");
            injected += 1;
            if got != expected {
                differences.push(format!(
                    "{mode:?} at write {n} ({point}):\n  expected {expected:?}\n  got      {got:?}"
                ));
            }
        }
    }
    println!(
        "chaos on moto: {} write points, {injected} faults injected: {} runs differ{}",
        points.len(),
        differences.len(),
        if differences.is_empty() {
            "; 0 lost, 0 duplicated"
        } else {
            ""
        }
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
