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
    /// Its rows were taken back out of the lake (`naerdata retract`), with a reason.
    Retracted,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 8] = [
        DeliveryState::Received,
        DeliveryState::Processing,
        DeliveryState::Accepted,
        DeliveryState::AcceptedWithWarnings,
        DeliveryState::Rejected,
        DeliveryState::Duplicate,
        DeliveryState::Failed,
        DeliveryState::Retracted,
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
            DeliveryState::Retracted => "retracted",
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
                | DeliveryState::Retracted
        )
    }

    /// Rows of this delivery count in the lake.
    pub fn has_rows(self) -> bool {
        matches!(
            self,
            DeliveryState::Accepted | DeliveryState::AcceptedWithWarnings
        )
    }

    /// A replay may run the process step again: after a failure, or when the delivery
    /// was registered but never processed (its process message lost). Every other
    /// state already has its outcome, or a worker is on it.
    pub fn is_replayable(self) -> bool {
        Self::REPLAYABLE.contains(&self)
    }

    /// The states the process step claims a delivery from (besides a stale lease).
    pub const REPLAYABLE: &'static [DeliveryState] =
        &[DeliveryState::Received, DeliveryState::Failed];
}

/// Why `replay` refuses a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "delivery {delivery_id} is {state}; only failed (or never processed) deliveries are replayed"
)]
pub struct NotReplayable {
    pub delivery_id: String,
    pub state: DeliveryState,
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

    /// The object version to read, when the store gave one (not a content digest).
    pub fn store_version(&self) -> Option<&str> {
        (!self.object_version.starts_with(DIGEST_VERSION_PREFIX))
            .then_some(self.object_version.as_str())
    }

    pub fn receipt_key(&self) -> String {
        crate::layout::receipt_key(&self.source, self.dataset_name(), &self.delivery_id)
    }

    /// Whether `replay` may hand this delivery to the process step again.
    pub fn replay_eligibility(&self) -> Result<(), NotReplayable> {
        if self.state.is_replayable() {
            Ok(())
        } else {
            Err(NotReplayable {
                delivery_id: self.delivery_id.clone(),
                state: self.state,
            })
        }
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

/// The `received_at` bounds (RFC 3339, UTC, as both ledgers store it) of one day.
pub fn day_bounds(day: NaiveDate) -> (String, String) {
    (format!("{day}T00:00:00"), format!("{day}T23:59:59.999999Z"))
}

/// Marks an `object_version` made from the content because the store had none.
pub const DIGEST_VERSION_PREFIX: &str = "sha256:";

/// The delivery id is derived from the object's identity, so a notification seen
/// twice names the same delivery. 20 hex characters: short enough for paths.
pub fn delivery_id(object_key: &str, object_version: &str) -> String {
    let mut h = Sha256::new();
    h.update(object_key.as_bytes());
    h.update([0]);
    h.update(object_version.as_bytes());
    hex::encode(&h.finalize()[..10])
}

/// The behaviour every [`crate::ports::Ledger`] adapter must have, as one check that
/// the SQLite tests and the DynamoDB tests (against the emulator) both run.
#[doc(hidden)]
pub mod conformance {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::ports::{Ledger, LedgerError};

    fn new(id: &str, key: &str, sha: &str, received_at: DateTime<Utc>) -> NewDelivery {
        NewDelivery {
            delivery_id: id.into(),
            dataset: "almenpraksis.diagnose".into(),
            source: "almenpraksis".into(),
            object_key: key.into(),
            object_version: "v1".into(),
            file_name: "f.csv".into(),
            delivery_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            sha256: sha.into(),
            size: 10,
            received_at,
        }
    }

    /// Panics on the first behaviour that differs. Expects an empty ledger.
    pub async fn check(l: &dyn Ledger) {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 23, 30, 0).unwrap();
        let a = new("a", "k1", "h1", t0);
        match l.register(&a).await.unwrap() {
            Registration::New(d) => {
                assert_eq!(d.state, DeliveryState::Received);
                assert_eq!(d.received_at, t0);
                assert_eq!(d.size, 10);
            }
            other => panic!("expected new, got {other:?}"),
        }
        // The same object again (a repeated notification): nothing changes.
        match l.register(&a).await.unwrap() {
            Registration::Known(d) => assert_eq!(d.delivery_id, "a"),
            other => panic!("expected known, got {other:?}"),
        }
        // The same bytes under another key: a duplicate of the first.
        match l
            .register(&new("b", "k2", "h1", t0 + Duration::hours(1)))
            .await
            .unwrap()
        {
            Registration::Duplicate(d) => {
                assert_eq!(d.state, DeliveryState::Duplicate);
                assert_eq!(d.duplicate_of.as_deref(), Some("a"));
            }
            other => panic!("expected duplicate, got {other:?}"),
        }
        assert!(matches!(
            l.register(&new("b", "k2", "h1", t0)).await.unwrap(),
            Registration::Known(_)
        ));
        let c = new("c", "k3", "h2", t0 + Duration::hours(2));
        assert!(matches!(
            l.register(&c).await.unwrap(),
            Registration::New(_)
        ));
        let mut other = new("x", "k4", "h1", t0);
        other.dataset = "speciallaege.kontakt".into();
        assert!(
            matches!(l.register(&other).await.unwrap(), Registration::New(_)),
            "content is deduplicated per dataset"
        );

        // Transitions are conditional on the current state.
        let now = t0 + Duration::hours(3);
        let claim = |id: &'static str| {
            l.transition(
                id,
                &[DeliveryState::Received, DeliveryState::Failed],
                DeliveryState::Processing,
                now,
                None,
            )
        };
        assert!(claim("a").await.unwrap());
        assert!(
            !claim("a").await.unwrap(),
            "a second worker cannot claim it"
        );
        let failed = Outcome {
            message: Some("boom".into()),
            ..Outcome::default()
        };
        assert!(
            l.transition(
                "a",
                &[DeliveryState::Processing],
                DeliveryState::Failed,
                now,
                Some(&failed)
            )
            .await
            .unwrap()
        );
        assert!(
            claim("a").await.unwrap(),
            "a failed delivery can be claimed again"
        );
        let o = Outcome {
            rows_read: 3,
            rows_accepted: 2,
            rows_rejected: 1,
            message: None,
        };
        assert!(
            l.transition(
                "a",
                &[DeliveryState::Processing],
                DeliveryState::AcceptedWithWarnings,
                now + Duration::seconds(1),
                Some(&o)
            )
            .await
            .unwrap()
        );
        let d = l.get("a").await.unwrap().unwrap();
        assert_eq!(d.state, DeliveryState::AcceptedWithWarnings);
        assert_eq!(d.outcome, o, "the outcome replaces the failure message");
        assert_eq!(d.attempts, 2);
        assert_eq!(d.updated_at, now + Duration::seconds(1));
        assert!(l.get("zzz").await.unwrap().is_none());
        assert!(matches!(
            l.transition(
                "zzz",
                &[DeliveryState::Received],
                DeliveryState::Processing,
                now,
                None
            )
            .await,
            Err(LedgerError::Unknown { .. })
        ));

        // Listing: newest first, per dataset, limited; and by day of receipt.
        let ids = |v: Vec<Delivery>| v.into_iter().map(|d| d.delivery_id).collect::<Vec<_>>();
        assert_eq!(
            ids(l.list(Some("almenpraksis.diagnose"), 10).await.unwrap()),
            ["c", "b", "a"]
        );
        assert_eq!(
            ids(l.list(Some("almenpraksis.diagnose"), 2).await.unwrap()),
            ["c", "b"]
        );
        assert_eq!(ids(l.list(None, 10).await.unwrap()), ["c", "b", "a", "x"]);
        assert!(l.list(Some("other.dataset"), 10).await.unwrap().is_empty());
        assert_eq!(
            ids(l
                .received_on("almenpraksis.diagnose", t0.date_naive())
                .await
                .unwrap()),
            ["a"]
        );
        assert_eq!(
            ids(l
                .received_on("almenpraksis.diagnose", t0.date_naive().succ_opt().unwrap())
                .await
                .unwrap()),
            ["c", "b"]
        );

        // Retraction: only accepted deliveries; it frees their content.
        let later = now + Duration::hours(1);
        assert!(
            !l.retract("c", "wrong file", later).await.unwrap(),
            "c is only received"
        );
        assert!(l.retract("a", "sent the wrong month", later).await.unwrap());
        let d = l.get("a").await.unwrap().unwrap();
        assert_eq!(d.state, DeliveryState::Retracted);
        assert_eq!(d.outcome.message.as_deref(), Some("sent the wrong month"));
        assert_eq!(d.updated_at, later);
        assert!(!l.retract("a", "again", later).await.unwrap());
        assert!(matches!(
            l.retract("zzz", "x", later).await,
            Err(LedgerError::Unknown { .. })
        ));
        match l.register(&new("e", "k5", "h1", later)).await.unwrap() {
            Registration::New(d) => assert_eq!(d.state, DeliveryState::Received),
            other => panic!("the content of a retracted delivery is new again, got {other:?}"),
        }

        // A stale claim: two workers read the same `processing` entry; exactly one
        // takes it over, and only with the `updated_at` it read.
        assert!(claim("c").await.unwrap());
        let read = l.get("c").await.unwrap().unwrap().updated_at;
        let t1 = later + Duration::hours(1);
        assert!(l.take_over("c", read, t1).await.unwrap());
        assert!(
            !l.take_over("c", read, t1 + Duration::seconds(1))
                .await
                .unwrap(),
            "the second worker read the same claim: it loses"
        );
        let c = l.get("c").await.unwrap().unwrap();
        assert_eq!(
            (c.state, c.updated_at, c.attempts),
            (DeliveryState::Processing, t1, 2)
        );
        assert!(
            l.take_over("c", t1, t1).await.unwrap(),
            "with what it read now"
        );
        assert!(
            !l.take_over("e", t1, t1).await.unwrap(),
            "only a processing delivery is taken over"
        );
        assert!(matches!(
            l.take_over("zzz", t1, t1).await,
            Err(LedgerError::Unknown { .. })
        ));

        // Identical content means "already accepted": after a rejection the same bytes
        // are a new delivery. A failed holder keeps the content (it may have committed
        // rows before it failed): the copy is its duplicate, and receive replays it.
        let move_to = |id: &'static str, to: DeliveryState| {
            l.transition(id, &[DeliveryState::Processing], to, t1, None)
        };
        assert!(matches!(
            l.register(&new("f", "k6", "h3", t1)).await.unwrap(),
            Registration::New(_)
        ));
        assert!(claim("f").await.unwrap());
        assert!(move_to("f", DeliveryState::Rejected).await.unwrap());
        match l.register(&new("g", "k7", "h3", t1)).await.unwrap() {
            Registration::New(d) => assert_eq!(d.state, DeliveryState::Received),
            other => panic!("the content of a rejected delivery is new again, got {other:?}"),
        }
        assert_eq!(
            l.get("f").await.unwrap().unwrap().state,
            DeliveryState::Rejected
        );
        assert!(matches!(
            l.register(&new("h", "k8", "h4", t1)).await.unwrap(),
            Registration::New(_)
        ));
        assert!(claim("h").await.unwrap());
        assert!(move_to("h", DeliveryState::Failed).await.unwrap());
        match l.register(&new("i", "k9", "h4", t1)).await.unwrap() {
            Registration::Duplicate(d) => assert_eq!(d.duplicate_of.as_deref(), Some("h")),
            other => panic!("a copy of a failed delivery is its duplicate, got {other:?}"),
        }
        assert_eq!(
            l.get("h").await.unwrap().unwrap().state,
            DeliveryState::Failed
        );
    }
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

    #[test]
    fn only_failed_or_unprocessed_deliveries_are_replayable() {
        let replayable: Vec<_> = DeliveryState::ALL
            .into_iter()
            .filter(|s| s.is_replayable())
            .collect();
        assert_eq!(replayable, [DeliveryState::Received, DeliveryState::Failed]);
        let t = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let mut d = Delivery {
            delivery_id: "d1".into(),
            dataset: "almenpraksis.diagnose".into(),
            source: "almenpraksis".into(),
            object_key: "almenpraksis/diagnose/2026-03-01/a.csv".into(),
            object_version: "v1".into(),
            file_name: "a.csv".into(),
            delivery_date: t.date_naive(),
            sha256: "0".repeat(64),
            size: 1,
            state: DeliveryState::Failed,
            received_at: t,
            updated_at: t,
            duplicate_of: None,
            attempts: 1,
            outcome: Outcome::default(),
        };
        assert_eq!(d.replay_eligibility(), Ok(()));
        d.state = DeliveryState::Accepted;
        let e = d.replay_eligibility().unwrap_err();
        assert_eq!(
            e.to_string(),
            "delivery d1 is accepted; only failed (or never processed) deliveries are replayed"
        );
    }
}
