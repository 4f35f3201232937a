//! Data quality: per-delivery metrics in the Kahn framework (as OHDSI's Data Quality
//! Dashboard uses it), drift against the dataset's recent history, the reception
//! calendar (what arrived, what is late or missing) and the monthly DQMI-style
//! declaration per source.
//!
//! - [`collect`]: the metrics of one delivery, gathered while it streams through.
//! - [`drift`]: volume and key measures against the last accepted deliveries.
//! - [`store`]: the `quality_metrics` / `quality_reception` / `quality_declaration`
//!   lake tables (Parquet), written and read back.
//! - [`reception`] and [`declaration`]: what the daily monitor computes.
//!
//! No metric holds a person-level value: counts, shares, field names, reporting
//! units (municipality codes, clinic numbers) and CPR *reason codes* only.

pub mod collect;
pub mod declaration;
pub mod distinct;
pub mod drift;
pub mod reception;
pub mod rules;
pub mod store;

use serde::{Deserialize, Serialize};

use chrono::Datelike;

use crate::contract::Contract;
use crate::lake::delta;
use crate::ledger::{Delivery, DeliveryState};
use crate::platform::{Platform, StepError};
use crate::receipt::ReceiptOutcome;

/// The status of one check, as in the Data Quality Dashboard. When several apply,
/// the first wins: ERROR > NOT_APPLICABLE > FAIL > PASS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pass,
    Fail,
    NotApplicable,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "NOT_APPLICABLE",
            Status::Error => "ERROR",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::Pass,
            Status::Fail,
            Status::NotApplicable,
            Status::Error,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The Kahn category of a check (conformance, completeness, plausibility and their
/// subcategories), plus `volume` for the delivery measures drift watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kahn {
    Completeness,
    ConformanceValue,
    ConformanceRelational,
    PlausibilityAtemporal,
    PlausibilityTemporal,
    PlausibilityUniqueness,
    Volume,
}

impl Kahn {
    pub fn as_str(self) -> &'static str {
        match self {
            Kahn::Completeness => "completeness",
            Kahn::ConformanceValue => "conformance.value",
            Kahn::ConformanceRelational => "conformance.relational",
            Kahn::PlausibilityAtemporal => "plausibility.atemporal",
            Kahn::PlausibilityTemporal => "plausibility.temporal",
            Kahn::PlausibilityUniqueness => "plausibility.uniqueness",
            Kahn::Volume => "volume",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Kahn::Completeness,
            Kahn::ConformanceValue,
            Kahn::ConformanceRelational,
            Kahn::PlausibilityAtemporal,
            Kahn::PlausibilityTemporal,
            Kahn::PlausibilityUniqueness,
            Kahn::Volume,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The checks, by name (the `check` column).
pub mod check {
    pub const READABLE: &str = "delivery_readable";
    pub const COMPLETENESS: &str = "completeness";
    pub const CONFORMANCE: &str = "conformance";
    pub const ROW_STRUCTURE: &str = "row_structure";
    pub const INVALID_CPR: &str = "invalid_cpr";
    pub const EVENT_AFTER_DELIVERY: &str = "event_after_delivery";
    pub const EVENT_BEFORE_BIRTH: &str = "event_before_birth";
    pub const AGE_RANGE: &str = "age_0_125";
    pub const SEX_SPECIFIC_CODE: &str = "sex_specific_code";
    pub const UNIQUE_RECORD_KEY: &str = "unique_record_key";
    pub const ROWS: &str = "rows";
    pub const DISTINCT_PERSONS: &str = "distinct_persons";
    pub const ROWS_PER_UNIT: &str = "rows_per_unit";
}

/// One check's result for one table of one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub table: String,
    pub check: String,
    pub category: Kahn,
    /// The field checked, for field-level checks.
    pub field: Option<String>,
    /// A reporting unit (rows per unit) or a CPR reason code (invalid CPRs).
    pub unit: Option<String>,
    pub violated: u64,
    pub denominator: u64,
    /// Violated / denominator in percent; `None` when the denominator is 0.
    pub pct: Option<f64>,
    /// Maximum percent allowed, from the contract.
    pub threshold: Option<f64>,
    pub status: Status,
    /// For volume measures: the value drift compares (rows, persons).
    pub value: Option<f64>,
    /// The robust band the value was expected in, once there is history.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

impl Metric {
    /// A rate check: FAIL above its threshold, NOT_APPLICABLE with nothing to count.
    pub fn rate(
        table: &str,
        check: &str,
        category: Kahn,
        field: Option<&str>,
        violated: u64,
        denominator: u64,
        threshold: Option<f64>,
    ) -> Self {
        let pct = (denominator > 0).then(|| 100.0 * violated as f64 / denominator as f64);
        let status = match (pct, threshold) {
            (None, _) | (_, None) => Status::NotApplicable,
            // Compare counts, not rounded percentages: 0 % allowed means none at all.
            (Some(_), Some(t)) if violated as f64 * 100.0 > t * denominator as f64 => Status::Fail,
            _ => Status::Pass,
        };
        Metric {
            table: table.to_string(),
            check: check.to_string(),
            category,
            field: field.map(str::to_string),
            unit: None,
            violated,
            denominator,
            pct,
            threshold,
            status,
            value: None,
            lower: None,
            upper: None,
        }
    }

    /// A volume measure; drift may later set its band and status.
    pub fn measure(table: &str, check: &str, unit: Option<&str>, value: u64) -> Self {
        Metric {
            table: table.to_string(),
            check: check.to_string(),
            category: Kahn::Volume,
            field: None,
            unit: unit.map(str::to_string),
            violated: 0,
            denominator: 0,
            pct: None,
            threshold: None,
            status: Status::NotApplicable,
            value: Some(value as f64),
            lower: None,
            upper: None,
        }
    }
}

/// What the receipt says about quality: counts and the checks that failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    pub checks: u64,
    pub passed: u64,
    pub failed: u64,
    pub not_applicable: u64,
    pub errors: u64,
    /// The failing checks (at most [`MAX_FAILING`]), most violated first.
    pub failing: Vec<FailingCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingCheck {
    pub table: String,
    pub check: String,
    pub category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<(f64, f64)>,
}

pub const MAX_FAILING: usize = 20;

pub fn summarise(metrics: &[Metric]) -> QualitySummary {
    let mut s = QualitySummary::default();
    let mut failing: Vec<&Metric> = Vec::new();
    for m in metrics {
        s.checks += 1;
        match m.status {
            Status::Pass => s.passed += 1,
            Status::Fail => {
                s.failed += 1;
                failing.push(m);
            }
            Status::NotApplicable => s.not_applicable += 1,
            Status::Error => {
                s.errors += 1;
                failing.push(m);
            }
        }
    }
    failing.sort_by(|a, b| {
        b.status
            .cmp(&a.status)
            .then(b.pct.unwrap_or(0.0).total_cmp(&a.pct.unwrap_or(0.0)))
    });
    s.failing = failing
        .into_iter()
        .take(MAX_FAILING)
        .map(|m| FailingCheck {
            table: m.table.clone(),
            check: m.check.clone(),
            category: m.category.as_str().to_string(),
            field: m.field.clone(),
            unit: m.unit.clone(),
            pct: m.pct.map(|p| (p * 100.0).round() / 100.0),
            threshold: m.threshold,
            value: m.value.filter(|_| m.lower.is_some()),
            expected: m.lower.zip(m.upper),
        })
        .collect();
    s
}

/// The metrics of the last [`drift::HISTORY`] accepted deliveries of `d`'s dataset
/// received before it, newest first (deliveries without a metrics file are skipped).
pub async fn history(p: &Platform, d: &Delivery) -> Result<Vec<Vec<Metric>>, StepError> {
    let earlier = p.ledger.list(Some(&d.dataset), HISTORY_SCAN).await?;
    let mut out = Vec::new();
    for e in earlier.iter().filter(|e| {
        e.delivery_id != d.delivery_id
            && e.received_at <= d.received_at
            && matches!(
                e.state,
                DeliveryState::Accepted | DeliveryState::AcceptedWithWarnings
            )
    }) {
        let key = store::metrics_key(e.delivery_date, &e.delivery_id);
        if let Some(bytes) = p.stores.lake.get(&key).await? {
            let (_, metrics) = store::read_metrics(bytes)
                .map_err(|m| StepError::Internal(format!("reading {key}: {m}")))?;
            out.push(metrics);
            if out.len() == drift::HISTORY {
                break;
            }
        }
    }
    Ok(out)
}

/// Deliveries scanned for history: enough that rejected ones do not crowd out the
/// accepted ones in all but pathological cases.
const HISTORY_SCAN: usize = 64;

/// Writes a delivery's metrics to `quality_metrics`, a Delta table like the curated
/// ones: one commit per delivery, so a retracted delivery's metrics go with it.
pub async fn write(
    p: &Platform,
    d: &Delivery,
    contract: &Contract,
    outcome: ReceiptOutcome,
    metrics: &[Metric],
    reference_versions: &std::collections::BTreeMap<String, String>,
) -> Result<(), StepError> {
    let head = store::DeliveryRef {
        delivery_id: d.delivery_id.clone(),
        dataset: d.dataset.clone(),
        source: d.source.clone(),
        contract_version: contract.version.clone(),
        delivery_date: d.delivery_date,
        received_at: d.received_at,
        outcome: outcome.as_str().to_string(),
        reference_versions: (!reference_versions.is_empty()).then(|| {
            reference_versions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";")
        }),
    };
    let spec = store::metrics_table();
    let mut t = delta::open_or_create(p.stores.lake.as_ref(), &spec).await?;
    if delta::committed(&t, &d.delivery_id).await? {
        return Ok(());
    }
    let bytes =
        store::parquet(&store::metrics_batch(&head, metrics)).map_err(StepError::Internal)?;
    let key = store::metrics_key(d.delivery_date, &d.delivery_id);
    let size = bytes.len() as u64;
    p.stores.lake.put(&key, bytes).await?;
    let file = delta::DataFile {
        path: key[spec.prefix.len()..].to_string(),
        year: d.delivery_date.year(),
        month: d.delivery_date.month(),
        size,
        rows: metrics.len() as u64,
    };
    delta::commit_files(
        &mut t,
        &d.delivery_id,
        &[file],
        p.clock.now().timestamp_millis(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_fails_only_above_its_threshold() {
        let m = |v, d, t| Metric::rate("t", "c", Kahn::Completeness, None, v, d, t).status;
        assert_eq!(m(1, 100, Some(1.0)), Status::Pass);
        assert_eq!(m(2, 100, Some(1.0)), Status::Fail);
        assert_eq!(m(1, 1000, Some(0.0)), Status::Fail, "0 % allows none");
        assert_eq!(m(0, 1000, Some(0.0)), Status::Pass);
        assert_eq!(m(0, 0, Some(1.0)), Status::NotApplicable);
        assert_eq!(m(5, 10, None), Status::NotApplicable);
    }

    #[test]
    fn status_precedence() {
        assert!(Status::Error > Status::NotApplicable);
        assert!(Status::NotApplicable > Status::Fail);
        assert!(Status::Fail > Status::Pass);
        for s in [
            Status::Pass,
            Status::Fail,
            Status::NotApplicable,
            Status::Error,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn the_summary_lists_failures_worst_first() {
        let ms = vec![
            Metric::rate("t", "a", Kahn::Completeness, Some("x"), 5, 100, Some(1.0)),
            Metric::rate("t", "b", Kahn::Completeness, Some("y"), 50, 100, Some(1.0)),
            Metric::rate("t", "c", Kahn::Completeness, Some("z"), 0, 100, Some(1.0)),
        ];
        let s = summarise(&ms);
        assert_eq!((s.checks, s.passed, s.failed), (3, 1, 2));
        assert_eq!(s.failing[0].check, "b");
    }
}
