//! What one pass over a delivery found, and how that becomes the receipt: the
//! outcome and its reason, the row counts, the problems (all of them to the
//! quarantine spool, the first few to the receipt).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::RunError;
use crate::contract::{Contract, FileFormat};
use crate::lake::SpooledFile;
use crate::ledger::DeliveryState;
use crate::quality::Metric;
use crate::read::StructuralError;
use crate::receipt::{
    MAX_PROBLEMS, Receipt, ReceiptHead, ReceiptOutcome, ReceiptProblem, RowCounts,
};
use crate::validate::{Problem, Verdict};

/// What one pass over a delivery found.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: RowCounts,
    pub problems: Vec<Problem>,
    pub problems_total: u64,
    pub problems_by_rule: BTreeMap<String, u64>,
    pub structural: Option<StructuralError>,
    pub ignored_columns: Vec<String>,
    pub files: Vec<SpooledFile>,
    /// All problems as NDJSON, when there were any and a spool was given.
    pub quarantine_file: Option<PathBuf>,
    /// Rows written per lake table (a FHIR delivery fans out to several).
    pub tables: BTreeMap<String, u64>,
    /// The quality checks of every table the delivery fed.
    pub quality: Vec<Metric>,
    /// Rows (bundles) whose CPR was looked at, and how many had no usable one.
    pub cpr_checked: u64,
    pub cpr_unusable: u64,
    /// The reference versions the delivery was checked against.
    pub reference_versions: BTreeMap<String, String>,
}

impl Report {
    /// The delivery's outcome and, for rejections, why.
    pub fn outcome(&self, contract: &Contract) -> (ReceiptOutcome, Option<String>) {
        if let Some(s) = &self.structural {
            return (ReceiptOutcome::Rejected, Some(s.message.clone()));
        }
        if self.cpr_checked > 0 {
            let share = self.cpr_unusable as f64 / self.cpr_checked as f64;
            let limit = contract.delivery.unusable_cpr_threshold;
            if share > limit {
                let (units, place) = match (&contract.delivery.format, contract.cpr_field) {
                    (FileFormat::Fhir { .. }, _) => {
                        ("bundles", "the Patient's CPR identifier".to_string())
                    }
                    (_, Some(i)) => ("rows", format!("column {:?}", contract.fields[i].name)),
                    (_, None) => ("rows", "the CPR column".to_string()),
                };
                return (
                    ReceiptOutcome::Rejected,
                    Some(format!(
                        "{} of {} {units} ({:.1} %) have no usable CPR number in {place} \
                         (empty, not of the form DDMMYY-SSSS, or not a date), above the contract's \
                         limit of {:.1} %; the whole delivery is rejected and nothing was stored. \
                         Are the columns swapped or shifted? Check that {place} holds the CPR \
                         numbers and send the file again",
                        self.cpr_unusable,
                        self.cpr_checked,
                        share * 100.0,
                        limit * 100.0
                    )),
                );
            }
        }
        let read = self.rows.read;
        if read > 0 {
            let share = self.rows.rejected as f64 / read as f64;
            let limit = contract.delivery.reject_threshold;
            if share > limit {
                return (
                    ReceiptOutcome::Rejected,
                    Some(format!(
                        "{} of {} rows ({:.1} %) failed validation, above the contract's threshold of {:.1} %; \
                         the whole delivery is rejected — correct the rows listed and send the file again",
                        self.rows.rejected,
                        read,
                        share * 100.0,
                        limit * 100.0
                    )),
                );
            }
        }
        if self.problems_total > 0 || !self.ignored_columns.is_empty() {
            (ReceiptOutcome::Warning, None)
        } else {
            (ReceiptOutcome::Ok, None)
        }
    }
}

impl Report {
    /// The receipt for this report. A rejected delivery stores nothing, so all its
    /// rows count as rejected.
    pub fn receipt(
        &self,
        head: ReceiptHead,
        processed_at: DateTime<Utc>,
        outcome: ReceiptOutcome,
        state: DeliveryState,
        reason: Option<String>,
    ) -> Receipt {
        let mut rows = self.rows.clone();
        if outcome == ReceiptOutcome::Rejected {
            rows.rejected = rows.read;
            rows.accepted = 0;
        }
        Receipt {
            head,
            processed_at,
            outcome,
            state: state.as_str().to_string(),
            reason,
            rows,
            problems: self.problems.iter().map(ReceiptProblem::from).collect(),
            problems_total: self.problems_total,
            problems_by_rule: self.problems_by_rule.clone(),
            ignored_columns: self.ignored_columns.clone(),
            tables: if outcome == ReceiptOutcome::Rejected {
                BTreeMap::new()
            } else {
                self.tables.clone()
            },
            quarantine: None,
            duplicate_of: None,
            quality: (!self.quality.is_empty()).then(|| crate::quality::summarise(&self.quality)),
            retraction: None,
            reference_versions: self.reference_versions.clone(),
        }
    }
}

/// The ledger state a receipt outcome ends in.
pub fn final_state(outcome: ReceiptOutcome) -> DeliveryState {
    match outcome {
        ReceiptOutcome::Ok => DeliveryState::Accepted,
        ReceiptOutcome::Warning => DeliveryState::AcceptedWithWarnings,
        ReceiptOutcome::Rejected => DeliveryState::Rejected,
    }
}

/// Collects a delivery's problems: all of them into the quarantine spool (NDJSON),
/// the first [`MAX_PROBLEMS`] into the report, counts by rule.
pub(crate) struct ProblemSink {
    quarantine: Option<(PathBuf, BufWriter<std::fs::File>)>,
}

impl ProblemSink {
    pub(crate) fn new(spool: Option<&Path>) -> Result<Self, RunError> {
        let quarantine = match spool {
            Some(dir) => {
                let path = dir.join("quarantine.ndjson");
                let f = std::fs::File::create(&path).map_err(RunError::Quarantine)?;
                Some((path, BufWriter::new(f)))
            }
            None => None,
        };
        Ok(ProblemSink { quarantine })
    }

    pub(crate) fn take(
        &mut self,
        report: &mut Report,
        problems: &mut Vec<Problem>,
    ) -> Result<(), RunError> {
        for p in problems.drain(..) {
            report.problems_total += 1;
            *report
                .problems_by_rule
                .entry(p.rule.to_string())
                .or_default() += 1;
            if let Some((_, q)) = self.quarantine.as_mut() {
                serde_json::to_writer(&mut *q, &ReceiptProblem::from(&p))
                    .map_err(|e| RunError::Quarantine(e.into()))?;
                q.write_all(b"\n").map_err(RunError::Quarantine)?;
            }
            if report.problems.len() < MAX_PROBLEMS {
                report.problems.push(p);
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self, report: &mut Report) -> Result<(), RunError> {
        if let Some((path, mut q)) = self.quarantine {
            q.flush().map_err(RunError::Quarantine)?;
            if report.problems_total > 0 {
                report.quarantine_file = Some(path);
            }
        }
        Ok(())
    }
}

impl Report {
    /// Counts one row's (bundle's) CPR for the unusable share.
    pub(crate) fn count_cpr(&mut self, usable: bool) {
        self.cpr_checked += 1;
        self.cpr_unusable += u64::from(!usable);
    }

    /// Counts one unit of acceptance (a row, or a bundle).
    pub(crate) fn count(&mut self, verdict: Verdict) {
        self.rows.read += 1;
        match verdict {
            Verdict::Accepted => self.rows.accepted += 1,
            Verdict::AcceptedWithWarnings => {
                self.rows.accepted += 1;
                self.rows.with_warnings += 1;
            }
            Verdict::Rejected => self.rows.rejected += 1,
        }
    }
}
