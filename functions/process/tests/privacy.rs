//! A careless supplier against the AWS functions (moto): no CPR number of the input
//! outside landing — buckets, the DynamoDB ledger, the process queue's messages and
//! the functions' logs. Its own test binary, so its global log subscriber sees every
//! line the functions write and nothing from other tests.

mod support;

use std::sync::Arc;

use naerdata::ledger::{Delivery, DeliveryState};
use naerdata::receipt::ReceiptOutcome;
use naerdata_process as process;
use support::{
    Moto, check_objects, deliveries, platform, provision, pump, receipt, receive_all, receiver,
};

/// A writer for the tracing output of one test, kept to be scanned.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_careless_supplier_leaves_no_cpr_outside_landing() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        // What a function logs in Lambda (INFO). The AWS SDK's DEBUG lines name the
        // landing key it reads; they stay off in every deployment.
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let moto = Moto::start();
    let stack = provision(&moto, "careless").await;
    let p = platform(&stack);
    let input = tempfile::tempdir().unwrap();
    let mut opts = naerdata::generate::GenerateOptions::new(input.path());
    opts.persons = 300;
    opts.days = 2;
    let clean = naerdata::generate::generate(&opts).unwrap();
    let careless = naerdata::generate::careless::careless(&clean).unwrap();
    assert!(careless.len() >= 12, "{}", careless.len());
    let mut careless_keys = Vec::new();
    for g in clean.iter().chain(&careless) {
        let key = g.path.strip_prefix(input.path()).unwrap().to_str().unwrap();
        stack.upload(key, std::fs::read(&g.path).unwrap()).await;
        if careless.iter().any(|c| c.path == g.path) {
            careless_keys.push(key.to_string());
        }
    }

    // Run both functions, keeping every message body the process queue carried.
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let r = receiver(&stack);
    receive_all(&stack, &r).await;
    pump(
        &stack,
        &stack.process_queue,
        &stack.process_queue_arn,
        |e| {
            let seen = bodies.clone();
            seen.lock()
                .unwrap()
                .extend(e.records.iter().filter_map(|m| m.body.clone()));
            process::handle(&p, e)
        },
    )
    .await;
    assert_eq!(stack.depth(&stack.receive_dlq).await, 0);
    assert_eq!(stack.depth(&stack.process_dlq).await, 0);

    // Every careless delivery is rejected; none is accepted with warnings.
    let all = deliveries(&p).await;
    for key in careless_keys.iter().filter(|k| !k.contains("patient-")) {
        let d = all
            .iter()
            .find(|d| &d.object_key == key)
            .unwrap_or_else(|| panic!("no delivery for {key}"));
        assert_eq!(d.state, DeliveryState::Rejected, "{key}");
    }
    // A CPR in the file name: registered under the withheld key, rejected.
    let withheld: Vec<&Delivery> = all
        .iter()
        .filter(|d| d.object_key.contains(naerdata::privacy::WITHHELD))
        .collect();
    assert_eq!(withheld.len(), 2, "both CPR-named files are withheld");
    for d in withheld {
        assert_eq!(d.state, DeliveryState::Rejected, "{}", d.object_key);
        assert_eq!(receipt(&stack, d).await.outcome, ReceiptOutcome::Rejected);
    }

    // The platform's own scan over the buckets and the DynamoDB ledger...
    let scan = naerdata::privacy::scan::scan(&p).await.unwrap();
    assert!(scan.parquet_files > 10 && scan.ledger_entries > 20);
    assert!(scan.clean(), "{:?}", scan.findings);
    // ... the process queue's message bodies and the tracing output ...
    for body in bodies.lock().unwrap().iter() {
        assert_eq!(naerdata::privacy::scan::count(body), 0, "{body}");
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("delivery processed"),
        "the logs were captured"
    );
    let leaking: Vec<&str> = logs
        .lines()
        .filter(|l| naerdata::privacy::scan::count(l) > 0)
        .collect();
    assert!(
        leaking.is_empty(),
        "CPR-shaped values in the logs: {leaking:?}"
    );
    // ... and an independent reader that knows the input's CPR numbers.
    let out = tempfile::tempdir().unwrap();
    for (bucket, dir) in [
        (&stack.resources.lake_bucket, "lake"),
        (&stack.resources.receipts_bucket, "receipts"),
        (&stack.resources.quarantine_bucket, "quarantine"),
    ] {
        stack.download(bucket, &out.path().join(dir)).await;
    }
    let report = check_objects(out.path(), input.path());
    assert!(report["input_cprs"].as_u64().unwrap() > 100);
    assert_eq!(
        report["cpr_hits"],
        serde_json::json!({}),
        "CPRs outside landing"
    );
}
