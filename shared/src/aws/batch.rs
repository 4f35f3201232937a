//! SQS batches in Lambda: the functions answer with the messages that failed
//! (`ReportBatchItemFailures`), so one bad message is retried — and after the queue's
//! `maxReceiveCount` moved to its dead-letter queue — without repeating the others.

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
