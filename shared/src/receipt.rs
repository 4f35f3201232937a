//! What the supplier gets back: one JSON document per delivery, written where the
//! supplier can read it (`<source>/<dataset>/<delivery_id>.json` in the receipts
//! store). Never a CPR value: problems carry line, column, rule and a message.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::Delivery;
use crate::validate::Problem;

/// Problems listed in a receipt; the rest are counted (all are in the quarantine).
pub const MAX_PROBLEMS: usize = 100;

/// MedCom-style outcome of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptOutcome {
    Ok,
    Warning,
    Rejected,
}

impl ReceiptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptOutcome::Ok => "ok",
            ReceiptOutcome::Warning => "warning",
            ReceiptOutcome::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Accepted rows that carry a warning (e.g. a CPR without modulus 11).
    pub with_warnings: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptProblem {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub rule: String,
    pub severity: String,
    pub message: String,
}

impl From<&Problem> for ReceiptProblem {
    fn from(p: &Problem) -> Self {
        ReceiptProblem {
            line: p.line,
            column: p.column.clone(),
            rule: p.rule.to_string(),
            severity: match p.severity {
                crate::validate::Severity::Error => "error".into(),
                crate::validate::Severity::Warning => "warning".into(),
            },
            message: p.message.clone(),
        }
    }
}

/// Which delivery a receipt is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptHead {
    pub delivery_id: String,
    pub dataset: String,
    pub file_name: String,
    pub object_key: String,
    pub sha256: String,
    pub size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_version: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl ReceiptHead {
    pub fn of(d: &Delivery, contract_version: Option<String>) -> Self {
        ReceiptHead {
            delivery_id: d.delivery_id.clone(),
            dataset: d.dataset.clone(),
            file_name: d.file_name.clone(),
            object_key: d.object_key.clone(),
            sha256: d.sha256.clone(),
            size_bytes: d.size,
            contract_version,
            received_at: d.received_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(flatten)]
    pub head: ReceiptHead,
    pub processed_at: DateTime<Utc>,
    pub outcome: ReceiptOutcome,
    /// The ledger state the delivery ended in.
    pub state: String,
    /// Why, in one sentence, when the delivery was rejected or is a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rows: RowCounts,
    /// Up to [`MAX_PROBLEMS`] problems, in file order.
    pub problems: Vec<ReceiptProblem>,
    pub problems_total: u64,
    pub problems_by_rule: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub ignored_columns: Vec<String>,
    /// Rows written per lake table.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub tables: BTreeMap<String, u64>,
    /// Where the full list of row problems is kept (pointers into the raw file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// The quality checks of the delivery (all of them in `quality_metrics`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quality: Option<crate::quality::QualitySummary>,
    /// Set when the delivery's rows were taken back out of the lake.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retraction: Option<Retraction>,
    /// The reference data (kind -> version) the delivery was checked against, for
    /// datasets checked against any (SOR map, FSIII, catalogue, SKS).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub reference_versions: BTreeMap<String, String>,
}

/// Why and when an accepted delivery was retracted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retraction {
    pub at: DateTime<Utc>,
    pub reason: String,
    /// Rows deleted per table (curated tables and `quality_metrics`).
    pub rows_deleted: BTreeMap<String, u64>,
}

impl Receipt {
    pub fn key(source: &str, dataset: &str, delivery_id: &str) -> String {
        crate::layout::receipt_key(source, dataset, delivery_id)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt serialises")
    }
}
