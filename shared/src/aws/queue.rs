//! SQS: the AWS adapter of the `Queue` port (receive -> process, the dead-letter
//! counts of monitor) and the operator's tools on a dead-letter queue (inspect,
//! redrive).

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};

use crate::ports::Queue;
// They lived here before the port existed; older imports still name this path.
pub use crate::ports::{ProcessMessage, QueueError};

pub struct SqsQueue {
    client: Client,
    url: String,
}

/// A message taken off a queue (by an operator tool; Lambda gets its own).
#[derive(Debug, Clone)]
pub struct Taken {
    pub body: String,
    pub receipt_handle: String,
    pub receive_count: u32,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(
        &self,
        op: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> QueueError {
        QueueError {
            op,
            queue: self.url.clone(),
            message: DisplayErrorContext(e).to_string(),
        }
    }

    /// Sends one message; attributes (string values) let an operator filter without
    /// parsing bodies.
    pub async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, value) in attributes {
            let v = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(*value)
                .build()
                .map_err(|e| self.err("send", e))?;
            req = req.message_attributes(*name, v);
        }
        req.send().await.map_err(|e| self.err("send", e))?;
        Ok(())
    }

    /// Takes up to 10 messages, waiting up to `wait_seconds` for the first.
    pub async fn take(&self, wait_seconds: i32) -> Result<Vec<Taken>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.err("receive", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Taken {
                body: m.body().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            })
            .collect())
    }

    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| self.err("delete", e))?;
        Ok(())
    }

    /// Messages waiting (approximate, as SQS reports it).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| self.err("get attributes", e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Moves every message from this (dead-letter) queue back to `to`: sent first,
    /// then deleted, so a crash in between repeats a message rather than losing it
    /// (the steps are idempotent). Returns how many moved.
    pub async fn redrive_to(&self, to: &dyn Queue) -> Result<u64, QueueError> {
        let mut moved = 0;
        loop {
            let batch = self.take(1).await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            for m in batch {
                to.send(&m.body, &[]).await?;
                self.delete(&m.receipt_handle).await?;
                moved += 1;
            }
        }
    }
}

// The inherent methods stay callable without the trait in scope (operator tools, tests).
#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        SqsQueue::send(self, body, attributes).await
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        SqsQueue::depth(self).await
    }
}
