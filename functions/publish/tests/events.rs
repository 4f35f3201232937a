//! The sample events in `events/` reach the publish function's two paths.

use naerdata::extract::ExtractRequest;
use naerdata_publish::{Trigger, trigger};
use serde_json::{Value, json};

fn event(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn the_schedule_publishes_for_the_day_of_the_event() {
    let t = trigger(event("publish-schedule.json")).unwrap();
    assert_eq!(
        t,
        Trigger::Publish {
            day: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            full: false
        }
    );
    let t = trigger(json!({"reference_date": "2026-12-31"})).unwrap();
    assert_eq!(
        t,
        Trigger::Publish {
            day: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            full: false
        }
    );
    // A re-run that rebuilds the current tables from their whole history.
    let t = trigger(json!({"reference_date": "2026-12-31", "full": true})).unwrap();
    assert_eq!(
        t,
        Trigger::Publish {
            day: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            full: true
        }
    );
    // A misspelt option is refused, not ignored.
    assert!(trigger(json!({"reference_date": "2026-12-31", "ful": true})).is_err());
    assert!(trigger(json!({"detail-type": "Scheduled Event"})).is_err());
    assert!(trigger(json!({"something": "else"})).is_err());
}

#[test]
fn an_extract_message_names_a_spec_under_projects() {
    let Trigger::Extracts(batch) = trigger(event("extract.json")).unwrap() else {
        panic!("an SQS batch")
    };
    let r: ExtractRequest =
        serde_json::from_str(batch.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(r.project, "P-2026-017");
    assert!(r.check_key().is_ok());
    let outside = ExtractRequest {
        project: "P".into(),
        spec_key: "curated/x.yaml".into(),
        as_of: None,
    };
    assert!(outside.check_key().is_err());
    let climbing = ExtractRequest {
        project: "P".into(),
        spec_key: "projects/../curated/x.yaml".into(),
        as_of: None,
    };
    assert!(climbing.check_key().is_err());
}

#[test]
fn the_maintenance_schedule_names_its_retention() {
    assert_eq!(
        trigger(event("maintain.json")).unwrap(),
        Trigger::Maintain { retention_days: 30 }
    );
    assert_eq!(
        trigger(json!({"maintain": {}})).unwrap(),
        Trigger::Maintain {
            retention_days: naerdata::maintain::DEFAULT_RETENTION_DAYS
        }
    );
    assert!(trigger(json!({"maintain": {"retention_days": 0}})).is_err());
    assert!(trigger(json!({"maintain": {"retention_days": "soon"}})).is_err());
}
