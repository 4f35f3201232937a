//! The monitor function, run once a day by an EventBridge schedule: computes the
//! reception calendar and the quality declarations (`naerdata::monitor`), publishes
//! the operator page to the lake bucket, and emits the metrics the alarms watch.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use naerdata::Platform;
use naerdata::metrics::Metrics;
use naerdata::monitor::{self, Monitored};
use naerdata::ports::Queue;
use naerdata::quality::reception::ReceptionStatus;
use naerdata::report::{self, Mode};
use serde_json::{Value, json};

/// The day to report on: `{"as_of": "YYYY-MM-DD"}` (a manual run or a replay), else
/// the day before the schedule's `time` — the run at 06:00 looks at yesterday's
/// reception, the first day that is complete.
pub fn as_of(event: &Value, now: DateTime<Utc>) -> NaiveDate {
    if let Some(d) = event
        .get("as_of")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<NaiveDate>().ok())
    {
        return d;
    }
    let at = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    at.date_naive() - chrono::Duration::days(1)
}

/// Recent periods only: an alarm should fire for what went missing this week, not
/// for a gap an operator already knows about from a month ago.
const ALARM_DAYS: i64 = 7;

fn emit(m: &Monitored) {
    let recent = |r: &&naerdata::quality::reception::ReceptionRow| {
        r.period_start + chrono::Duration::days(ALARM_DAYS) > m.as_of
    };
    let mut datasets: Vec<&str> = m.reception.iter().map(|r| r.dataset.as_str()).collect();
    datasets.sort();
    datasets.dedup();
    let (mut all_missing, mut all_units_missing) = (0u64, 0u64);
    for ds in datasets {
        let rows: Vec<_> = m
            .reception
            .iter()
            .filter(|r| r.dataset == ds)
            .filter(recent)
            .collect();
        let count = |status: ReceptionStatus, units: bool| {
            rows.iter()
                .filter(|r| r.status == status && r.unit.is_some() == units)
                .count() as u64
        };
        let missing = count(ReceptionStatus::Missing, false);
        let units_missing = count(ReceptionStatus::Missing, true);
        all_missing += missing;
        all_units_missing += units_missing;
        Metrics::new()
            .dimension("Function", "monitor")
            .dimension("Dataset", ds)
            .count("MissingPeriods", missing)
            .count("MissingUnitPeriods", units_missing)
            .count(
                "LatePeriods",
                count(ReceptionStatus::Late, false) + count(ReceptionStatus::Late, true),
            )
            .count(
                "VolumeAnomalies",
                rows.iter().filter(|r| r.volume_anomaly).count() as u64,
            )
            .emit();
    }
    // Totals without the dataset dimension: what the alarms watch.
    Metrics::new()
        .dimension("Function", "monitor")
        .count("MissingPeriods", all_missing)
        .count("MissingUnitPeriods", all_units_missing)
        .count("FailedDeliveries", m.failed().count() as u64)
        .count("StuckDeliveries", m.stuck.len() as u64)
        .count(
            "DeadLetters",
            m.dead_letters.iter().map(|(_, n)| *n).sum::<u64>(),
        )
        .emit();
}

/// One run: the tables, the page, the metrics. Returns a short summary.
pub async fn handle(
    p: &Platform,
    dead_letter_queues: &[(String, Arc<dyn Queue>)],
    event: Value,
) -> Result<Value, naerdata::StepError> {
    let as_of = as_of(&event, p.clock.now());
    let (m, _page) = monitor::run_and_page(p, as_of, Mode::Aws, dead_letter_queues).await?;
    emit(&m);
    let missing = m.missing().count();
    tracing::info!(%as_of, missing, failed = m.failed().count(), "monitor done");
    Ok(json!({
        "as_of": as_of.to_string(),
        "missing": missing,
        "failed": m.failed().count(),
        "written": m.written,
        "page": report::PAGE_KEY,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_comes_from_the_event() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            as_of(&json!({"as_of": "2026-02-01"}), now),
            day("2026-02-01")
        );
        assert_eq!(
            as_of(
                &json!({"time": "2026-03-05T06:00:00Z", "source": "aws.events"}),
                now
            ),
            day("2026-03-04")
        );
        assert_eq!(as_of(&json!({}), now), day("2026-03-09"));
    }

    #[tokio::test]
    async fn a_run_writes_the_page_with_the_dead_letters_counted() {
        let home = tempfile::tempdir().unwrap();
        let p = Platform::local(home.path(), naerdata::contract::Registry::builtin()).unwrap();
        let dlq = Arc::new(naerdata::local::MemoryQueue::new("process-dlq"));
        dlq.send(r#"{"delivery_id":"a"}"#, &[]).await.unwrap();
        dlq.send(r#"{"delivery_id":"b"}"#, &[]).await.unwrap();
        let q: Arc<dyn Queue> = dlq.clone();

        let out = handle(
            &p,
            &[("process".to_string(), q)],
            json!({"as_of": "2026-06-08"}),
        )
        .await
        .unwrap();
        assert_eq!(out["as_of"], "2026-06-08");
        assert_eq!(out["page"], report::PAGE_KEY);
        let page = p.stores.lake.get(report::PAGE_KEY).await.unwrap().unwrap();
        let html = String::from_utf8(page.to_vec()).unwrap();
        assert!(
            html.contains(r#"<tr><td>process</td><td class="n">2</td>"#),
            "the dead-letter table counts both messages"
        );
        assert_eq!(dlq.len(), 2, "counting takes nothing off the queue");
    }
}
