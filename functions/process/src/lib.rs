//! The process function: one delivery per process-queue message, through the
//! process step with the AWS adapters. A failed delivery is left `failed` in the
//! ledger (replayable) and its message fails, so SQS retries it and finally moves it
//! to the dead-letter queue.

use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use naerdata::Platform;
use naerdata::aws::ProcessMessage;
use naerdata::metrics::{Metrics, Unit};
use naerdata::process::{Processed, process};

use naerdata::aws::batch::Failures;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("the message body is not a process message ({{\"delivery_id\": ...}}): {0}")]
    BadMessage(String),
    #[error(transparent)]
    Step(#[from] naerdata::StepError),
    #[error("delivery {0} is being processed by another worker; retry later")]
    Busy(String),
}

/// Handles a batch one delivery at a time: each may use most of the function's
/// memory and /tmp.
pub async fn handle(p: &Platform, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Failures::default();
    for m in &event.records {
        if let Err(e) = message(p, m).await {
            failures.fail(m, &e);
        }
    }
    failures.into_response()
}

async fn message(p: &Platform, m: &SqsMessage) -> Result<(), ProcessError> {
    let body = m.body.as_deref().unwrap_or_default();
    let msg: ProcessMessage =
        serde_json::from_str(body).map_err(|e| ProcessError::BadMessage(e.to_string()))?;
    let started = Instant::now();
    let result = process(p, &msg.delivery_id).await;
    let seconds = started.elapsed().as_secs_f64();
    let state = match &result {
        Ok(Processed::Done(s)) | Ok(Processed::AlreadyFinal(s)) => s.as_str(),
        Ok(Processed::Busy) => "busy",
        Err(_) => "failed",
    };
    let d = p.ledger.get(&msg.delivery_id).await.ok().flatten();
    let mut metrics = Metrics::new()
        .dimension("Function", "process")
        .dimension(
            "Dataset",
            d.as_ref().map_or("unknown", |d| d.dataset.as_str()),
        )
        .dimension("State", state)
        .count("Deliveries", 1)
        .value("Duration", seconds, Unit::Seconds);
    if let (Ok(Processed::Done(_)), Some(d)) = (&result, &d) {
        metrics = metrics
            .count("RowsRead", d.outcome.rows_read)
            .count("RowsAccepted", d.outcome.rows_accepted)
            .count("RowsRejected", d.outcome.rows_rejected)
            .value(
                "RowsPerSecond",
                d.outcome.rows_read as f64 / seconds.max(1e-6),
                Unit::CountPerSecond,
            );
    }
    metrics.emit();
    match result? {
        Processed::Done(_) | Processed::AlreadyFinal(_) => Ok(()),
        Processed::Busy => Err(ProcessError::Busy(msg.delivery_id)),
    }
}
