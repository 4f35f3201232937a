//! The receive step: a new object in the landing zone becomes a ledger entry.
//!
//! It decodes the key (`<source>/<dataset>/<yyyy-mm-dd>/<file>`), hashes the content,
//! and registers the delivery idempotently (the delivery id comes from key and
//! version, so a notification seen twice changes nothing). Identical content already
//! delivered for the dataset is a duplicate and gets its receipt here; a key outside
//! the layout gets a rejected receipt rather than a crash.

use std::io::Read;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, info_span};

use crate::layout;
use crate::ledger::{self, DeliveryState, NewDelivery, Outcome, Registration};
use crate::platform::{Platform, StepError};
use crate::privacy;
use crate::process::Report;
use crate::receipt::{ReceiptHead, ReceiptOutcome};

/// A landing key taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingKey {
    pub source: String,
    pub dataset: String,
    pub day: NaiveDate,
    pub file_name: String,
}

impl LandingKey {
    pub fn dataset_id(&self) -> String {
        format!("{}.{}", self.source, self.dataset)
    }
}

/// Parses `<source>/<dataset>/<yyyy-mm-dd>/<file>` ([`layout::LANDING_SHAPE`]); the
/// error says what is wrong.
pub fn parse_landing_key(key: &str) -> Result<LandingKey, String> {
    let parts: Vec<&str> = key.split('/').collect();
    let [source, dataset, day, file] = parts.as_slice() else {
        return Err(format!(
            "the object key {:?} has {} part(s); deliveries go to {}",
            privacy::display(key),
            parts.len(),
            layout::LANDING_SHAPE
        ));
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !ok(source) || !ok(dataset) {
        return Err(format!(
            "the source and dataset in {:?} must be letters, digits, '_' or '-'",
            privacy::display(key)
        ));
    }
    let day = NaiveDate::parse_from_str(day, layout::LANDING_DAY_FORMAT).map_err(|_| {
        format!(
            "{:?} in {:?} is not a delivery day (yyyy-mm-dd)",
            privacy::display(day),
            privacy::display(key)
        )
    })?;
    if file.is_empty() {
        return Err(format!(
            "the object key {:?} has no file name",
            privacy::display(key)
        ));
    }
    Ok(LandingKey {
        source: source.to_string(),
        dataset: dataset.to_string(),
        day,
        file_name: file.to_string(),
    })
}

/// What the receive step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Registered; the process step should run for this delivery id.
    ToProcess(String),
    /// Already known and already past `received`: nothing to do.
    Known(String, DeliveryState),
    Duplicate {
        delivery_id: String,
        of: String,
    },
    /// Outside the landing layout: rejected with a receipt.
    Unroutable(String),
}

/// Streams an object and returns (sha256 hex, size).
pub fn hash(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Why the delivery day of a key is refused: later than tomorrow (UTC, so a supplier
/// in Danish time is never early), or earlier than its dataset's contract allows.
/// A day such as 9999-12-31 would otherwise open a lake partition per month.
pub fn delivery_day_problem(
    contract: &crate::contract::Contract,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> Option<String> {
    let latest = now.date_naive() + chrono::Duration::days(1);
    let earliest = contract.delivery.earliest_day;
    if day > latest {
        Some(format!(
            "the delivery day {day} in the path lies after tomorrow ({latest}); the day is the day \
             the delivery is made: correct the path and send it again"
        ))
    } else if day < earliest {
        Some(format!(
            "the delivery day {day} in the path is before {earliest}, the earliest day the \
             contract allows (earliestDeliveryDay); history is sent under the day it is delivered"
        ))
    } else {
        None
    }
}

/// Why a file whose name (or path) holds a CPR-shaped token is rejected unprocessed.
pub const CPR_IN_NAME: &str = "the file name (or another part of the object key) contains what looks like a CPR number; \
     the file was not processed and its name is withheld in this receipt. \
     Never put a CPR number in a file name: rename the file and send it again";

/// Registers the object at `key` (with the store's `version`, if it has versions).
///
/// A key with a CPR-shaped token is withheld ([`privacy::withhold_key`])
/// before anything is stored or logged, and the delivery is rejected: the raw object
/// stays in landing, and no receipt, ledger entry or log line names it.
pub fn receive<'a>(
    p: &'a Platform,
    key: &'a str,
    version: Option<&'a str>,
) -> crate::Boxed<'a, Result<Received, StepError>> {
    Box::pin(receive_inner(p, key, version))
}

/// The body of [`receive`].
async fn receive_inner(
    p: &Platform,
    key: &str,
    version: Option<&str>,
) -> Result<Received, StepError> {
    let withheld = privacy::withhold_key(key);
    let shown = withheld.as_deref().unwrap_or(key);
    let span = info_span!("receive", key = %privacy::display(shown));
    async {
        let redact = |e: &dyn std::fmt::Display| e.to_string().replace(key, shown);
        let reader = p
            .stores
            .landing
            .open_version(key, version)
            .await
            .map_err(|e| match (&withheld, e) {
                (None, e) => StepError::from(e),
                (Some(_), e) => StepError::Internal(redact(&e)),
            })?;
        let (sha256, size) = tokio::task::spawn_blocking(move || hash(reader))
            .await
            .map_err(|e| StepError::Internal(format!("hashing thread died: {e}")))?
            .map_err(|e| StepError::Internal(format!("reading {}: {e}", privacy::display(shown))))?;
        // Without store versions, the content digest tells versions of a key apart.
        let version = version.map_or_else(
            || format!("{}{}", ledger::DIGEST_VERSION_PREFIX, &sha256[..16]),
            str::to_string,
        );
        let delivery_id = ledger::delivery_id(shown, &version);
        let now = p.clock.now();
        let parsed = match (&withheld, parse_landing_key(shown)) {
            (Some(_), Ok(k)) => Err((Some(k), CPR_IN_NAME.to_string())),
            (_, Ok(k)) => match p
                .contracts
                .get(&k.dataset_id())
                .and_then(|c| delivery_day_problem(c, k.day, now))
            {
                Some(reason) => Err((Some(k), reason)),
                None => Ok(k),
            },
            (_, Err(reason)) => Err((None, reason)),
        };
        let (source, dataset, day, file_name) = match &parsed {
            Ok(k) | Err((Some(k), _)) => {
                (k.source.clone(), k.dataset_id(), k.day, k.file_name.clone())
            }
            Err((None, _)) => (
                "_unrouted".to_string(),
                "_unrouted._unrouted".to_string(),
                now.date_naive(),
                privacy::display(shown.rsplit('/').next().unwrap_or(shown)),
            ),
        };
        let new = NewDelivery {
            delivery_id: delivery_id.clone(),
            dataset,
            source,
            object_key: shown.to_string(),
            object_version: version,
            file_name,
            delivery_date: day,
            sha256,
            size,
            received_at: now,
        };
        let registration = p.ledger.register(&new).await?;
        if let Err((_, reason)) = parsed {
            // Also on a retry (Known): an earlier attempt may have died between the
            // registration and the receipt. Both writes are idempotent.
            let d = registration.delivery();
            if matches!(d.state, DeliveryState::Received | DeliveryState::Rejected) {
                p.ledger
                    .transition(&d.delivery_id, &[DeliveryState::Received], DeliveryState::Rejected, now, Some(&Outcome { message: Some(reason.clone()), ..Outcome::default() }))
                    .await?;
                write_receipt(p, d, ReceiptOutcome::Rejected, DeliveryState::Rejected, Some(reason), None).await?;
            } else if d.state == DeliveryState::Duplicate {
                // Identical content was accepted before, so nothing is stored either
                // way; the supplier still learns that the name must change.
                write_receipt(p, d, ReceiptOutcome::Rejected, DeliveryState::Duplicate, Some(reason), d.duplicate_of.clone()).await?;
            }
            info!("unroutable key");
            return Ok(Received::Unroutable(delivery_id));
        }
        Ok(match registration {
            Registration::New(d) => {
                info!(delivery_id = %d.delivery_id, dataset = %d.dataset, "registered");
                Received::ToProcess(d.delivery_id)
            }
            // An earlier attempt registered it but the process message may be lost.
            Registration::Known(d) if matches!(d.state, DeliveryState::Received) => Received::ToProcess(d.delivery_id),
            Registration::Known(d) if d.state != DeliveryState::Duplicate => Received::Known(d.delivery_id, d.state),
            // A duplicate seen again gets its receipt again: the first attempt may have
            // died before writing it.
            Registration::Duplicate(d) | Registration::Known(d) => {
                let of = d.duplicate_of.clone().unwrap_or_default();
                // The same file again after the first copy failed: the failed delivery
                // is retried (it may have committed rows before it failed, so never a
                // second delivery of the same rows).
                let failed = p
                    .ledger
                    .get(&of)
                    .await?
                    .is_some_and(|h| h.state == DeliveryState::Failed);
                let reason = if failed {
                    format!(
                        "the file is identical (sha256) to delivery {of} of the same dataset, which \
                         failed; that delivery is processed again (see its receipt)"
                    )
                } else {
                    format!(
                        "the file is identical (sha256) to delivery {of} of the same dataset; nothing was written"
                    )
                };
                write_receipt(p, &d, ReceiptOutcome::Ok, DeliveryState::Duplicate, Some(reason), Some(of.clone())).await?;
                info!(delivery_id = %d.delivery_id, duplicate_of = %of, retry = failed, "duplicate");
                if failed {
                    return Ok(Received::ToProcess(of));
                }
                Received::Duplicate {
                    delivery_id: d.delivery_id,
                    of,
                }
            }
        })
    }
    .instrument(span)
    .await
}

async fn write_receipt(
    p: &Platform,
    d: &ledger::Delivery,
    outcome: ReceiptOutcome,
    state: DeliveryState,
    reason: Option<String>,
    duplicate_of: Option<String>,
) -> Result<(), StepError> {
    let mut r = Report::default().receipt(
        ReceiptHead::of(d, p.contracts.get(&d.dataset).map(|c| c.version.clone())),
        p.clock.now(),
        outcome,
        state,
        reason,
    );
    r.duplicate_of = duplicate_of;
    p.stores
        .receipts
        .put(&d.receipt_key(), Bytes::from(r.to_json()))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landing_keys() {
        let k = parse_landing_key("almenpraksis/diagnose/2026-03-01/ap.csv").unwrap();
        assert_eq!(k.dataset_id(), "almenpraksis.diagnose");
        assert_eq!(k.day, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert!(
            parse_landing_key("almenpraksis/diagnose/ap.csv")
                .unwrap_err()
                .contains("3 part")
        );
        assert!(
            parse_landing_key("almenpraksis/diagnose/2026-02-30/ap.csv")
                .unwrap_err()
                .contains("delivery day")
        );
        assert!(parse_landing_key("a b/diagnose/2026-03-01/x").is_err());
    }
}
