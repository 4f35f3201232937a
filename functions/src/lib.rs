//! naerdata as AWS Lambda functions. Each handler takes an SQS batch and answers
//! with the messages that failed (`ReportBatchItemFailures`), so one bad message is
//! retried — and after the queue's `maxReceiveCount` moved to its dead-letter queue —
//! without repeating the others. The steps themselves live in `naerdata`; a handler
//! only parses messages, calls a step and reports.
//!
//! Binaries: `receive` (S3 notifications -> ledger -> process queue) and `process`
//! (process queue -> lake, receipts, quarantine, ledger).

pub mod notification;
pub mod process;
pub mod receive;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};

/// Collects the ids of failed messages into the batch response.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn fail(&mut self, m: &SqsMessage, error: &dyn std::fmt::Display) {
        let id = m.message_id.clone().unwrap_or_default();
        tracing::error!(message_id = %id, error = %error, "message failed; SQS will retry it");
        self.0.push(id);
    }

    pub fn into_response(self) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        r.batch_item_failures = self
            .0
            .into_iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
            .collect();
        r
    }
}

/// Logging for a function: JSON lines when the Lambda log format is JSON.
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber();
}
