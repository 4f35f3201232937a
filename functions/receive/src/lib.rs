//! The receive function: S3 ObjectCreated notifications (through the receive queue)
//! are registered in the ledger and, when new, sent on to the process queue. The
//! step itself is `naerdata::receive`; this crate parses messages and reports.

pub mod notification;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use naerdata::Platform;
use naerdata::aws::{ProcessMessage, SqsQueue};
use naerdata::metrics::Metrics;
use naerdata::receive::{Received, receive};
use tracing::info;

use crate::notification::Notification;
use naerdata::aws::batch::Failures;

pub struct Receiver {
    pub platform: Platform,
    pub process_queue: SqsQueue,
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
    Queue(#[from] naerdata::aws::queue::QueueError),
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
