//! The receive function: S3 ObjectCreated notifications (through the receive queue)
//! are registered in the ledger and, when new, sent on to the process queue. The
//! step itself is `naerdata::receive`; this crate parses messages and reports.

pub mod notification;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use naerdata::Platform;
use naerdata::metrics::Metrics;
use naerdata::ports::{ProcessMessage, Queue, QueueError};
use naerdata::receive::{Received, receive};
use tracing::info;

use crate::notification::Notification;
use naerdata::aws::batch::Failures;

pub struct Receiver {
    pub platform: Platform,
    /// Where new deliveries go: SQS in AWS, the in-process queue in tests.
    pub process_queue: Arc<dyn Queue>,
    /// Notifications for other buckets are a configuration mistake, not deliveries.
    pub landing_bucket: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Notification(#[from] notification::NotificationError),
    #[error("the notification is for bucket {got:?}, but this function receives {expected:?}")]
    WrongBucket { got: String, expected: String },
    #[error(transparent)]
    Step(#[from] naerdata::StepError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Receiver {
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut failures = Failures::default();
        for m in &event.records {
            if let Err(e) = self.message(m).await {
                failures.fail(m, &e);
            }
        }
        failures.into_response()
    }

    async fn message(&self, m: &SqsMessage) -> Result<(), ReceiveError> {
        let body = m.body.as_deref().unwrap_or_default();
        let objects = match notification::parse(body)? {
            Notification::Test => {
                info!("s3:TestEvent; nothing to receive");
                return Ok(());
            }
            Notification::Created(objects) => objects,
        };
        for o in objects {
            if o.bucket != self.landing_bucket {
                return Err(ReceiveError::WrongBucket {
                    got: o.bucket,
                    expected: self.landing_bucket.clone(),
                });
            }
            let outcome = receive(&self.platform, &o.key, o.version.as_deref()).await?;
            // The key names source and dataset; no second ledger read for them. A key
            // with a CPR-shaped token is shown (and routed for metrics) withheld.
            let shown = naerdata::privacy::display(&o.key);
            let routed = naerdata::receive::parse_landing_key(&shown).ok();
            let kind = match &outcome {
                Received::ToProcess(id) => {
                    let dataset = routed.as_ref().map(|k| k.dataset_id()).unwrap_or_default();
                    self.process_queue
                        .send_process(
                            &ProcessMessage {
                                delivery_id: id.clone(),
                            },
                            &dataset,
                        )
                        .await?;
                    "ToProcess"
                }
                Received::Known(..) => "Known",
                Received::Duplicate { .. } => "Duplicate",
                Received::Unroutable(_) => "Unroutable",
            };
            info!(key = %shown, outcome = ?outcome, "received");
            Metrics::new()
                .dimension("Function", "receive")
                .dimension("Outcome", kind)
                .count("Objects", 1)
                .value(
                    "Bytes",
                    o.size.unwrap_or(0) as f64,
                    naerdata::metrics::Unit::Bytes,
                )
                .emit();
            // Per source, for the "no delivery within the cadence" alarms.
            let source = routed.map_or_else(|| "_unrouted".to_string(), |k| k.source);
            Metrics::new()
                .dimension("Function", "receive")
                .dimension("Source", &source)
                .count("Deliveries", 1)
                .emit();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naerdata::contract::Registry;
    use naerdata::local::MemoryQueue;
    use serde_json::json;

    fn event(bucket: &str, key: &str) -> SqsEvent {
        let body = json!({"Records": [{
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 16}}
        }]});
        serde_json::from_value(json!({"Records": [{"messageId": "m1", "body": body.to_string()}]}))
            .unwrap()
    }

    async fn receiver(home: &std::path::Path) -> (Receiver, Arc<MemoryQueue>) {
        let platform = Platform::local(home, Registry::builtin()).unwrap();
        let key = "almenpraksis/diagnose/2026-03-01/a.csv";
        platform
            .stores
            .landing
            .put(key, "hello;world\n1;2\n".into())
            .await
            .unwrap();
        let queue = Arc::new(MemoryQueue::new("process"));
        let r = Receiver {
            platform,
            process_queue: queue.clone(),
            landing_bucket: "landing".into(),
        };
        (r, queue)
    }

    #[tokio::test]
    async fn a_new_delivery_is_registered_and_queued_for_process() {
        let home = tempfile::tempdir().unwrap();
        let (r, queue) = receiver(home.path()).await;
        let out = r
            .handle(event("landing", "almenpraksis/diagnose/2026-03-01/a.csv"))
            .await;
        assert!(out.batch_item_failures.is_empty());

        let ledger = r.platform.ledger.list(None, 10).await.unwrap();
        assert_eq!(ledger.len(), 1);
        let sent = queue.take_all();
        assert_eq!(sent.len(), 1);
        let m: ProcessMessage = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(m.delivery_id, ledger[0].delivery_id);
        assert_eq!(
            sent[0].attribute("delivery_id"),
            Some(m.delivery_id.as_str())
        );
        assert_eq!(sent[0].attribute("dataset"), Some("almenpraksis.diagnose"));
    }

    #[tokio::test]
    async fn other_buckets_and_keys_outside_the_layout_queue_nothing() {
        let home = tempfile::tempdir().unwrap();
        let (r, queue) = receiver(home.path()).await;
        let out = r
            .handle(event("elsewhere", "almenpraksis/diagnose/2026-03-01/a.csv"))
            .await;
        assert_eq!(out.batch_item_failures.len(), 1, "SQS retries it");
        assert_eq!(out.batch_item_failures[0].item_identifier, "m1");

        r.platform
            .stores
            .landing
            .put("stray.csv", "x\n".into())
            .await
            .unwrap();
        let out = r.handle(event("landing", "stray.csv")).await;
        assert!(
            out.batch_item_failures.is_empty(),
            "rejected with a receipt"
        );
        assert!(queue.is_empty());
    }
}
