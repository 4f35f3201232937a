//! Delivery records and their state machine.
//!
//! `received -> processing -> accepted | accepted_with_warnings | rejected`, plus
//! `duplicate` (identical content seen before) and `failed` (an internal error;
//! replayable). Stores implement the transitions as conditional writes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Received,
    Processing,
    Accepted,
    AcceptedWithWarnings,
    Rejected,
    Duplicate,
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 7] = [
        DeliveryState::Received,
        DeliveryState::Processing,
        DeliveryState::Accepted,
        DeliveryState::AcceptedWithWarnings,
        DeliveryState::Rejected,
        DeliveryState::Duplicate,
        DeliveryState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Received => "received",
            DeliveryState::Processing => "processing",
            DeliveryState::Accepted => "accepted",
            DeliveryState::AcceptedWithWarnings => "accepted_with_warnings",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Duplicate => "duplicate",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// A final state is never left again (except `failed`, by replay).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Accepted
                | DeliveryState::AcceptedWithWarnings
                | DeliveryState::Rejected
                | DeliveryState::Duplicate
        )
    }

    /// Rows of this delivery count in the lake.
    pub fn has_rows(self) -> bool {
        matches!(
            self,
            DeliveryState::Accepted | DeliveryState::AcceptedWithWarnings
        )
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new object in the landing zone, as the receive step saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub delivery_id: String,
    /// `<source>.<dataset>`; may name an unknown dataset (then it is rejected).
    pub dataset: String,
    pub source: String,
    pub object_key: String,
    pub object_version: String,
    pub file_name: String,
    /// The day in the landing key: when the supplier says it delivered.
    pub delivery_date: NaiveDate,
    pub sha256: String,
    pub size: u64,
    pub received_at: DateTime<Utc>,
}

/// What a finished process step records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_id: String,
    pub dataset: String,
    pub source: String,
    pub object_key: String,
    pub object_version: String,
    pub file_name: String,
    pub delivery_date: NaiveDate,
    pub sha256: String,
    pub size: u64,
    pub state: DeliveryState,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The earlier delivery with identical content, for duplicates.
    pub duplicate_of: Option<String>,
    pub attempts: u32,
    pub outcome: Outcome,
}

impl Delivery {
    /// The dataset part of `<source>.<dataset>`.
    pub fn dataset_name(&self) -> &str {
        self.dataset
            .split_once('.')
            .map_or(self.dataset.as_str(), |(_, d)| d)
    }

    pub fn receipt_key(&self) -> String {
        crate::receipt::Receipt::key(&self.source, self.dataset_name(), &self.delivery_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// First time this object was seen.
    New(Delivery),
    /// The same object (key and version) was registered before: nothing changes.
    Known(Delivery),
    /// A new object whose content is identical to an earlier delivery of the dataset.
    Duplicate(Delivery),
}

impl Registration {
    pub fn delivery(&self) -> &Delivery {
        match self {
            Registration::New(d) | Registration::Known(d) | Registration::Duplicate(d) => d,
        }
    }
}

/// The delivery id is derived from the object's identity, so a notification seen
/// twice names the same delivery. 20 hex characters: short enough for paths.
pub fn delivery_id(object_key: &str, object_version: &str) -> String {
    let mut h = Sha256::new();
    h.update(object_key.as_bytes());
    h.update([0]);
    h.update(object_version.as_bytes());
    hex::encode(&h.finalize()[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_id_is_stable_and_depends_on_key_and_version() {
        let a = delivery_id("almenpraksis/diagnose/2026-03-01/a.csv", "v1");
        assert_eq!(
            a,
            delivery_id("almenpraksis/diagnose/2026-03-01/a.csv", "v1")
        );
        assert_ne!(
            a,
            delivery_id("almenpraksis/diagnose/2026-03-01/a.csv", "v2")
        );
        assert_ne!(
            a,
            delivery_id("almenpraksis/diagnose/2026-03-01/b.csv", "v1")
        );
        assert_eq!(a.len(), 20);
    }

    #[test]
    fn states_round_trip_and_finality() {
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        assert!(!DeliveryState::Failed.is_final());
        assert!(DeliveryState::Duplicate.is_final());
        assert!(!DeliveryState::Rejected.has_rows());
    }
}
