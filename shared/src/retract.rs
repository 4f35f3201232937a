//! Retraction: an accepted delivery taken back out of the lake (`naerdata retract`).
//!
//! Its rows are deleted from every table it wrote (the curated tables and
//! `quality_metrics`), one Delta commit per table; the receipt is rewritten to say
//! when and why; then the ledger moves to `retracted` and gives up the delivery's
//! claim on its content, so the same file sent again is processed as a new delivery.
//! The ledger is last: a retraction that stops half-way is completed by running it
//! again (a delete that finds no rows changes nothing). Earlier versions still hold
//! the rows until the retention period has passed; `naerdata purge` removes them at
//! once.

use std::collections::BTreeMap;

use bytes::Bytes;
use datafusion::prelude::{col, lit};
use deltalake::kernel::transaction::CommitProperties;
use serde_json::json;
use tracing::info;

use crate::lake::delta::{self, DeltaError};
use crate::layout;
use crate::ledger::{Delivery, DeliveryState};
use crate::platform::{Platform, StepError};
use crate::receipt::{Receipt, Retraction};

/// The key prefixes of every Delta table a delivery can write to.
pub fn table_prefixes(p: &Platform) -> Vec<(String, String)> {
    p.contracts
        .iter()
        .map(|c| (c.table(), layout::curated_prefix(&c.table())))
        .chain(std::iter::once((
            "quality_metrics".to_string(),
            layout::METRICS_PREFIX.to_string(),
        )))
        .collect()
}

/// Deletes the rows a predicate column equals `value` from the table under `prefix`,
/// in one commit; returns the rows deleted (0 without a commit when none match).
pub async fn delete_where(
    p: &Platform,
    name: &str,
    prefix: &str,
    column: &str,
    value: &str,
    metadata: serde_json::Value,
) -> Result<u64, StepError> {
    let Some(t) = delta::open(p.stores.lake.as_ref(), prefix, None).await? else {
        return Ok(0);
    };
    let has_column = t
        .snapshot()
        .map_err(|e| DeltaError::table(name, e))?
        .schema()
        .field(column)
        .is_some();
    if !has_column {
        return Ok(0);
    }
    let props = CommitProperties::default()
        .with_metadata(metadata.as_object().cloned().unwrap_or_default());
    let (_, metrics) = t
        .delete()
        .with_predicate(col(column).eq(lit(value.to_string())))
        .with_commit_properties(props)
        .await
        .map_err(|e| DeltaError::table(name, e))?;
    Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
}

/// What a retraction did.
#[derive(Debug)]
pub struct Retracted {
    pub delivery: Delivery,
    pub rows_deleted: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetractError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("cannot retract {id}: {why}")]
    Refused { id: String, why: String },
}

impl From<DeltaError> for RetractError {
    fn from(e: DeltaError) -> Self {
        RetractError::Step(e.into())
    }
}

/// Retracts an accepted delivery (or completes a retraction that stopped half-way).
pub fn retract<'a>(
    p: &'a Platform,
    id: &'a str,
    reason: &'a str,
) -> crate::Boxed<'a, Result<Retracted, RetractError>> {
    Box::pin(retract_inner(p, id, reason))
}

/// The body of [`retract`].
async fn retract_inner(p: &Platform, id: &str, reason: &str) -> Result<Retracted, RetractError> {
    let refuse = |why: String| RetractError::Refused {
        id: id.to_string(),
        why,
    };
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(refuse(
            "give a reason (--reason): it goes into the receipt and the ledger".into(),
        ));
    }
    // The reason is shown to the supplier and operators: no CPR number in it.
    if crate::cpr::detect::contains(reason) {
        return Err(refuse(
            "the reason holds something shaped like a CPR number; describe the problem without it"
                .into(),
        ));
    }
    let d = p
        .ledger
        .get(id)
        .await
        .map_err(StepError::from)?
        .ok_or_else(|| refuse("no such delivery in the ledger".into()))?;
    if !(d.state.has_rows() || d.state == DeliveryState::Retracted) {
        return Err(refuse(format!(
            "it is {}: only accepted deliveries have rows in the lake",
            d.state
        )));
    }
    let now = p.clock.now();
    let mut rows_deleted = BTreeMap::new();
    for (name, prefix) in table_prefixes(p) {
        let n = delete_where(
            p,
            &name,
            &prefix,
            "delivery_id",
            id,
            json!({ "naerdata.retracted": id, "naerdata.reason": reason }),
        )
        .await?;
        if n > 0 {
            info!(table = %name, rows = n, "retracted rows");
            rows_deleted.insert(name, n);
        }
    }
    let key = d.receipt_key();
    if let Some(bytes) = p.stores.receipts.get(&key).await.map_err(StepError::from)? {
        let mut r: Receipt = serde_json::from_slice(&bytes)
            .map_err(|e| StepError::Internal(format!("receipt {key}: {e}")))?;
        // A second run (after a crash) keeps the first run's counts.
        if r.retraction.is_none() {
            r.retraction = Some(Retraction {
                at: now,
                reason: reason.to_string(),
                rows_deleted: rows_deleted.clone(),
            });
        }
        r.state = DeliveryState::Retracted.as_str().to_string();
        p.stores
            .receipts
            .put(&key, Bytes::from(r.to_json()))
            .await
            .map_err(StepError::from)?;
    }
    if d.state != DeliveryState::Retracted
        && !p
            .ledger
            .retract(id, reason, now)
            .await
            .map_err(StepError::from)?
    {
        return Err(refuse(
            "its ledger state changed while it was retracted; run it again".into(),
        ));
    }
    let delivery = p
        .ledger
        .get(id)
        .await
        .map_err(StepError::from)?
        .expect("read above");
    Ok(Retracted {
        delivery,
        rows_deleted,
    })
}
