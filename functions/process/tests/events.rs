//! The sample events in `events/` are valid Lambda SQS events whose bodies the
//! handlers understand.

use aws_lambda_events::event::sqs::SqsEvent;
use naerdata::aws::ProcessMessage;
use naerdata_receive::notification::{self, Notification};

fn event(name: &str) -> SqsEvent {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn body(e: &SqsEvent) -> &str {
    e.records[0].body.as_deref().unwrap()
}

#[test]
fn sample_events_parse() {
    let put = event("receive-s3-put.json");
    let Notification::Created(o) = notification::parse(body(&put)).unwrap() else {
        panic!("a created object")
    };
    assert_eq!(
        o[0].key,
        "almenpraksis/diagnose/2026-11-02/ap-diagnose-2026-11-02.csv"
    );
    assert!(o[0].version.is_some());

    let emu = event("receive-emulator-encoded-key.json");
    let Notification::Created(o) = notification::parse(body(&emu)).unwrap() else {
        panic!("a created object")
    };
    assert_eq!(
        o[0].key,
        "kommune/gateway/2026-11-02/kl gateway=0101.ndjson"
    );
    assert_eq!(o[0].version, None);

    let test = event("receive-s3-test-event.json");
    assert_eq!(
        notification::parse(body(&test)).unwrap(),
        Notification::Test
    );

    let process = event("process.json");
    let m: ProcessMessage = serde_json::from_str(body(&process)).unwrap();
    assert_eq!(m.delivery_id.len(), 20);
}
