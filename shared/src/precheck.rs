//! The suppliers' pre-check (`naerdata validate`): a file goes through the same pass
//! as the process step, against its dataset's contract, and gets the receipt it
//! would get. Nothing is stored: no ledger entry, no spool, no lake files.

use std::fs::File;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};

use crate::contract::{Contract, Registry};
use crate::process::{self, RunError, RunOptions};
use crate::pseudonym::{self, Key, Pseudonymiser};
use crate::receipt::{Receipt, ReceiptHead};

/// The delivery id a pre-check receipt carries: the file is not a delivery.
pub const DELIVERY_ID: &str = "validate";

#[derive(Debug, thiserror::Error)]
pub enum PrecheckError {
    /// The path as printed: control characters escaped, a CPR-shaped name withheld.
    #[error("opening {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error(transparent)]
    Key(#[from] pseudonym::KeyError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Checks `file` against `contract` as a delivery of day `date` (default: the day of
/// `now`) and returns its receipt.
pub fn check_file(
    registry: &Registry,
    contract: &Contract,
    file: &Path,
    date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Receipt, PrecheckError> {
    let f = File::open(file).map_err(|source| PrecheckError::Open {
        path: crate::privacy::display(&file.display().to_string()),
        source,
    })?;
    let (sha256, size) = crate::receive::hash(File::open(file)?)?;
    let day = date.unwrap_or_else(|| now.date_naive());
    // The landing key the file would get, named as receive would store it.
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = crate::layout::landing_key(&contract.source, &contract.dataset, day, &name);
    let withheld = crate::privacy::withhold_key(&key);
    let shown = withheld.as_deref().unwrap_or(&key);
    let file_name = crate::receive::parse_landing_key(shown)
        .map(|k| k.file_name)
        .unwrap_or_else(|_| crate::privacy::display(&name));
    let head = ReceiptHead {
        delivery_id: DELIVERY_ID.into(),
        dataset: contract.id.clone(),
        file_name,
        object_key: shown.to_string(),
        sha256,
        size_bytes: size,
        contract_version: Some(contract.version.clone()),
        received_at: now,
    };
    // As the platform does: rejected unprocessed, the name withheld, or the day out
    // of range.
    let unread = if withheld.is_some() {
        Some(crate::receive::CPR_IN_NAME.to_string())
    } else {
        crate::receive::delivery_day_problem(contract, day, now)
    };
    if let Some(reason) = unread {
        let outcome = crate::receipt::ReceiptOutcome::Rejected;
        return Ok(process::Report::default().receipt(
            head,
            now,
            outcome,
            process::final_state(outcome),
            Some(reason),
        ));
    }
    // A throwaway key: the receipt holds no pseudonyms, so the real key is not needed.
    let mut k = vec![0u8; 32];
    pseudonym::random_bytes(&mut k).map_err(|e| PrecheckError::Random(e.to_string()))?;
    let report = process::run(
        registry,
        contract,
        Box::new(f),
        RunOptions {
            delivery_id: DELIVERY_ID,
            delivery_date: day,
            received_at: now,
            pseudonymiser: Pseudonymiser::new(&Key::new(0, k)?),
            spool: None,
            quality: true,
            reference: crate::reference::ReferenceSet::builtin(),
            threads: process::default_threads(),
        },
    )?;
    let (outcome, reason) = report.outcome(contract);
    Ok(report.receipt(head, now, outcome, process::final_state(outcome), reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::ReceiptOutcome;

    #[test]
    fn a_file_gets_its_receipt_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.csv");
        std::fs::write(&file, "hello;world\n1;2\n").unwrap();
        let registry = Registry::builtin();
        let contract = registry.get("almenpraksis.diagnose").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .unwrap()
            .to_utc();

        let r = check_file(&registry, contract, &file, None, now).unwrap();
        assert_eq!(r.outcome, ReceiptOutcome::Rejected);
        assert_eq!(r.state, "rejected");
        assert!(
            r.reason.as_deref().unwrap().contains("diagnosekode"),
            "{r:?}"
        );
        assert_eq!(r.head.delivery_id, DELIVERY_ID);
        assert_eq!(r.head.file_name, "bad.csv");
        assert_eq!(
            r.head.object_key,
            "almenpraksis/diagnose/2026-03-02/bad.csv"
        );
        assert_eq!(r.head.size_bytes, 16);
        assert_eq!(r.head.received_at, now);
        assert_eq!(r.rows.accepted, 0);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the checked file");
    }

    #[test]
    fn a_cpr_in_the_file_name_is_rejected_unread_and_withheld() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("diagnoser-6703854001.csv");
        std::fs::write(&file, "record_id;cpr\n").unwrap();
        let registry = Registry::builtin();
        let contract = registry.get("almenpraksis.diagnose").unwrap();
        let r = check_file(&registry, contract, &file, None, Utc::now()).unwrap();
        assert_eq!(r.outcome, ReceiptOutcome::Rejected);
        assert_eq!(r.reason.as_deref(), Some(crate::receive::CPR_IN_NAME));
        assert!(!r.to_json().contains("6703854001"), "{}", r.to_json());
        assert_eq!(r.rows.read, 0);
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::builtin();
        let contract = registry.get("almenpraksis.diagnose").unwrap();
        let e = check_file(
            &registry,
            contract,
            &dir.path().join("none.csv"),
            None,
            Utc::now(),
        )
        .unwrap_err();
        assert!(matches!(e, PrecheckError::Open { .. }), "{e:?}");
        assert!(e.to_string().ends_with("none.csv"), "{e}");
    }
}
