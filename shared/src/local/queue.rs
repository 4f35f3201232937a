//! The in-process queue: the local adapter of the `Queue` port. Messages stay in
//! memory, in the order sent, until a local pump (or a test) takes them off.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::ports::{Queue, QueueError};

/// A message as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

impl Message {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
pub struct MemoryQueue {
    name: String,
    messages: Mutex<VecDeque<Message>>,
}

impl MemoryQueue {
    pub fn new(name: impl Into<String>) -> Self {
        MemoryQueue {
            name: name.into(),
            messages: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn messages(&self) -> MutexGuard<'_, VecDeque<Message>> {
        // Every operation is a single push or pop, so a panic elsewhere while the
        // lock was held cannot have left the queue half-changed.
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the oldest message off the queue.
    pub fn take(&self) -> Option<Message> {
        self.messages().pop_front()
    }

    /// Takes every waiting message off the queue, oldest first.
    pub fn take_all(&self) -> Vec<Message> {
        self.messages().drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.messages().len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages().is_empty()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        let message = Message {
            body: body.to_string(),
            attributes: attributes
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        self.messages().push_back(message);
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ProcessMessage;

    #[tokio::test]
    async fn messages_keep_order_and_attributes() {
        let q = MemoryQueue::new("process");
        assert_eq!(q.name(), "process");
        q.send("first", &[("kind", "a")]).await.unwrap();
        q.send_process(
            &ProcessMessage {
                delivery_id: "d1".into(),
            },
            "almenpraksis.diagnose",
        )
        .await
        .unwrap();
        assert_eq!(q.depth().await.unwrap(), 2);

        let first = q.take().unwrap();
        assert_eq!(first.body, "first");
        assert_eq!(first.attribute("kind"), Some("a"));
        assert_eq!(first.attribute("other"), None);

        let all = q.take_all();
        assert_eq!(all.len(), 1);
        let m: ProcessMessage = serde_json::from_str(&all[0].body).unwrap();
        assert_eq!(m.delivery_id, "d1");
        assert_eq!(all[0].attribute("delivery_id"), Some("d1"));
        assert_eq!(all[0].attribute("dataset"), Some("almenpraksis.diagnose"));
        assert!(q.is_empty());
        assert_eq!(q.take(), None);
    }
}
