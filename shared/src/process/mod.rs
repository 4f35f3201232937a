//! The process step: stream one delivery through decode -> read -> validate ->
//! pseudonymise -> Parquet, then publish the files, the quarantine and the receipt,
//! and move the ledger to its final state.
//!
//! The heavy part ([`run`], in `pass`) is synchronous and runs on a blocking thread; it writes
//! to a local spool. Nothing reaches the lake before the delivery is known to be
//! accepted, and every lake key is deterministic, so a retry after a crash rewrites
//! the same objects instead of adding rows.

mod bundles;
mod chunks;
mod pass;
mod report;

pub use chunks::default_threads;
#[cfg(test)]
pub(crate) use pass::test_options;
pub use pass::{RunError, RunOptions, run};
pub use report::{Report, final_state};

use std::collections::BTreeMap;

use bytes::Bytes;
use tracing::{Instrument, info, info_span, warn};

use crate::contract::Contract;
use crate::lake::{SpooledFile, delta};
use crate::ledger::{Delivery, DeliveryState, Outcome};
use crate::platform::{Platform, StepError};
use crate::pseudonym::Pseudonymiser;
use crate::quality;
use crate::receipt::{ReceiptHead, ReceiptOutcome};

/// A delivery stuck in `processing` longer than this is taken over by a retry
/// (its worker died: a Lambda timeout, a killed process).
pub const PROCESSING_LEASE: chrono::Duration = chrono::Duration::minutes(20);

/// Whether a delivery is stuck in `processing`: its lease ran out, or the process
/// holding the claim has ended. `replay` and the next attempt take such a claim over;
/// `status` and the operator page list it.
pub async fn claim_is_stale(p: &Platform, d: &Delivery) -> Result<bool, StepError> {
    Ok(d.state == DeliveryState::Processing
        && (p.clock.now() - d.updated_at > PROCESSING_LEASE
            || p.ledger.claim_abandoned(&d.delivery_id).await?))
}

/// Where the quarantine record of a delivery lives in the quarantine store.
pub use crate::layout::quarantine_key;

/// What the process step did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Processed now and ended in this state.
    Done(DeliveryState),
    /// Already final (a repeated message): nothing was done.
    AlreadyFinal(DeliveryState),
    /// Another worker holds it.
    Busy,
}

/// The process step for one delivery id.
pub fn process<'a>(
    p: &'a Platform,
    delivery_id: &'a str,
) -> crate::Boxed<'a, Result<Processed, StepError>> {
    Box::pin(process_inner(p, delivery_id))
}

/// The body of [`process`].
async fn process_inner(p: &Platform, delivery_id: &str) -> Result<Processed, StepError> {
    let span = info_span!("process", delivery_id = %delivery_id);
    async {
        let d = p
            .ledger
            .get(delivery_id)
            .await?
            .ok_or_else(|| StepError::UnknownDelivery(delivery_id.to_string()))?;
        if d.state.is_final() {
            info!(state = %d.state, "already final; nothing to do");
            return Ok(Processed::AlreadyFinal(d.state));
        }
        let now = p.clock.now();
        // A `processing` claim is taken over when its lease ran out (a Lambda that
        // timed out, a crash on the last attempt) or, locally, at once when the
        // process that held it has ended; conditional on the `updated_at` read here,
        // so two workers never both take it.
        let claimed = if d.state == DeliveryState::Processing {
            claim_is_stale(p, &d).await?
                && p.ledger
                    .take_over(&d.delivery_id, d.updated_at, now)
                    .await?
        } else {
            p.ledger
                .transition(
                    &d.delivery_id,
                    DeliveryState::REPLAYABLE,
                    DeliveryState::Processing,
                    now,
                    None,
                )
                .await?
        };
        if !claimed {
            return Ok(Processed::Busy);
        }
        match process_claimed(p, &d).await {
            Ok(state) => Ok(Processed::Done(state)),
            Err(e) => {
                warn!(error = %e, "processing failed; the delivery is replayable");
                let o = Outcome {
                    message: Some(e.to_string()),
                    ..Outcome::default()
                };
                p.ledger
                    .transition(
                        &d.delivery_id,
                        &[DeliveryState::Processing],
                        DeliveryState::Failed,
                        p.clock.now(),
                        Some(&o),
                    )
                    .await?;
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

async fn process_claimed(p: &Platform, d: &Delivery) -> Result<DeliveryState, StepError> {
    let Some(contract) = p.contracts.get(&d.dataset).cloned() else {
        let reason = format!(
            "the dataset {:?} (from the path {}) has no contract; known datasets: {}",
            d.dataset,
            d.object_key,
            p.contracts.ids().join(", ")
        );
        return finish(
            p,
            d,
            None,
            &Report::default(),
            ReceiptOutcome::Rejected,
            Some(reason),
            None,
        )
        .await;
    };
    let key = p.keys.lake_key().await?;
    // Read at every delivery: a version loaded since the last one applies now.
    let reference = crate::reference::store::current(p.stores.lake.as_ref())
        .await
        .map_err(|e| StepError::Internal(e.to_string()))?;
    let raw = p
        .stores
        .landing
        .open_version(&d.object_key, d.store_version())
        .await?;
    let spool = tempfile::Builder::new()
        .prefix(&format!("naerdata-{}-", d.delivery_id))
        .tempdir_in(&p.spool_root)
        .map_err(|e| {
            StepError::Internal(format!(
                "creating a spool directory in {}: {e}",
                p.spool_root.display()
            ))
        })?;
    let mut report = {
        let contract = contract.clone();
        let registry = p.contracts.clone();
        let id = d.delivery_id.clone();
        let (date, received_at) = (d.delivery_date, d.received_at);
        let dir = spool.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            run(
                &registry,
                &contract,
                raw,
                RunOptions {
                    delivery_id: &id,
                    delivery_date: date,
                    received_at,
                    pseudonymiser: Pseudonymiser::new(&key),
                    spool: Some(&dir),
                    quality: true,
                    reference,
                    threads: default_threads(),
                },
            )
        })
        .await
        .map_err(|e| StepError::Internal(format!("the processing thread died: {e}")))??
    };
    let (outcome, reason) = report.outcome(&contract);
    if outcome != ReceiptOutcome::Rejected {
        commit_tables(p, d, &report.files).await?;
    }
    if !report.quality.is_empty() {
        let history = quality::history(p, d).await?;
        quality::drift::apply(&mut report.quality, &history);
        quality::write(
            p,
            d,
            &contract,
            outcome,
            &report.quality,
            &report.reference_versions,
        )
        .await?;
    }
    let quarantine = match &report.quarantine_file {
        Some(path) => {
            let qkey = quarantine_key(d);
            p.stores.quarantine.put_owned_file(&qkey, path).await?;
            Some(qkey)
        }
        None => None,
    };
    let state = finish(p, d, Some(&contract), &report, outcome, reason, quarantine).await?;
    info!(
        state = %state,
        rows_read = report.rows.read,
        rows_accepted = report.rows.accepted,
        rows_rejected = report.rows.rejected,
        files = report.files.len(),
        "delivery processed"
    );
    Ok(state)
}

/// Makes the delivery's files visible: per table, the files are uploaded under the
/// table's prefix (where no reader looks) and then committed in one Delta transaction
/// carrying the delivery id. A table the delivery already committed to (an earlier
/// attempt died after its commit) is left as it is, so a retry never appends twice.
async fn commit_tables(p: &Platform, d: &Delivery, files: &[SpooledFile]) -> Result<(), StepError> {
    let mut by_table: BTreeMap<&str, Vec<&SpooledFile>> = BTreeMap::new();
    for f in files {
        by_table.entry(f.table.as_str()).or_default().push(f);
    }
    for (table, files) in by_table {
        let contract = p
            .contracts
            .iter()
            .find(|c| c.table() == table)
            .ok_or_else(|| StepError::Internal(format!("no contract writes the table {table}")))?;
        let spec = delta::TableSpec::curated(contract);
        let mut t = delta::open_or_create(p.stores.lake.as_ref(), &spec).await?;
        if delta::committed(&t, &d.delivery_id).await? {
            info!(table, "already committed by an earlier attempt");
            continue;
        }
        let mut data = Vec::with_capacity(files.len());
        for f in files {
            let size = std::fs::metadata(&f.path)
                .map_err(|e| StepError::Internal(format!("spool file {}: {e}", f.path.display())))?
                .len();
            p.stores.lake.put_owned_file(&f.key, &f.path).await?;
            data.push(delta::DataFile {
                path: f.key[spec.prefix.len()..].to_string(),
                year: f.year,
                month: f.month,
                size,
                rows: f.rows,
            });
        }
        let c = delta::commit_files(
            &mut t,
            &d.delivery_id,
            &data,
            p.clock.now().timestamp_millis(),
        )
        .await?;
        info!(table, commit = ?c, files = data.len(), "committed");
    }
    Ok(())
}

/// Writes the receipt, then moves the ledger: the ledger is last, so a crash before
/// it leaves a delivery that a retry completes.
async fn finish(
    p: &Platform,
    d: &Delivery,
    contract: Option<&Contract>,
    report: &Report,
    outcome: ReceiptOutcome,
    reason: Option<String>,
    quarantine: Option<String>,
) -> Result<DeliveryState, StepError> {
    let state = final_state(outcome);
    let mut receipt = report.receipt(
        ReceiptHead::of(d, contract.map(|c| c.version.clone())),
        p.clock.now(),
        outcome,
        state,
        reason.clone(),
    );
    receipt.quarantine = quarantine;
    let rows = receipt.rows.clone();
    p.stores
        .receipts
        .put(&d.receipt_key(), Bytes::from(receipt.to_json()))
        .await?;
    let o = Outcome {
        rows_read: rows.read,
        rows_accepted: rows.accepted,
        rows_rejected: rows.rejected,
        message: reason,
    };
    let moved = p
        .ledger
        .transition(
            &d.delivery_id,
            &[DeliveryState::Processing],
            state,
            p.clock.now(),
            Some(&o),
        )
        .await?;
    if !moved {
        return Err(StepError::Internal(format!(
            "delivery {} left 'processing' while this worker held it",
            d.delivery_id
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::receipt::MAX_PROBLEMS;
    use chrono::NaiveDate;

    const HEADER: &str =
        "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n";

    fn row(id: &str, code: &str) -> String {
        format!("{id};670385-4001;012345;{code};2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n")
    }

    fn run_on(dataset: &str, bytes: Vec<u8>) -> Report {
        let registry = Registry::builtin();
        let c = registry.get(dataset).unwrap();
        run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(bytes)),
            test_options(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
        )
        .unwrap()
    }

    fn outcome(dataset: &str, r: &Report) -> ReceiptOutcome {
        let registry = Registry::builtin();
        r.outcome(registry.get(dataset).unwrap()).0
    }

    #[test]
    fn a_clean_file_is_ok() {
        let r = run_on(
            "almenpraksis.diagnose",
            format!("{HEADER}{}{}", row("a", "T90"), row("b", "R95")).into_bytes(),
        );
        assert_eq!(r.rows.read, 2);
        assert_eq!(r.rows.accepted, 2);
        assert_eq!(outcome("almenpraksis.diagnose", &r), ReceiptOutcome::Ok);
    }

    #[test]
    fn utf8_bom_is_accepted() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(format!("{HEADER}{}", row("a", "T90")).into_bytes());
        let r = run_on("almenpraksis.diagnose", bytes);
        assert!(r.structural.is_none(), "{:?}", r.structural);
        assert_eq!(r.rows.accepted, 1);
    }

    #[test]
    fn undeclared_windows_1252_is_rejected_with_line_and_column() {
        let text = format!("{HEADER}{}", row("æble", "T90"));
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
        let r = run_on("almenpraksis.diagnose", bytes.into_owned());
        let s = r.structural.expect("structural");
        assert_eq!(s.rule, "encoding");
        assert!(s.message.contains("line 2"), "{}", s.message);
        assert!(s.message.contains("record_id"), "{}", s.message);
        assert!(s.message.contains("UTF-8"), "{}", s.message);
    }

    #[test]
    fn declared_windows_1252_is_decoded() {
        let text = "kontakt_id;cpr;ydernummer;speciale;kontaktdato;ydelseskode\nSLK-æ1;670385-4001;512345;15;2026-03-01;0101\n";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
        let r = run_on("speciallaege.kontakt", bytes.into_owned());
        assert!(r.structural.is_none(), "{:?}", r.structural);
        // 'æ' is not allowed by the id pattern; six characters (not seven bytes, not a
        // replacement character) prove it was decoded as 'æ'. The value is not quoted.
        assert_eq!(r.rows.rejected, 1);
        let m = &r.problems[0].message;
        assert!(
            m.contains("a value of 6 characters: digits, letters and '-'"),
            "{m}"
        );
        assert!(!m.contains("SLK"), "{m}");
    }

    #[test]
    fn empty_file_and_header_only() {
        let r = run_on("almenpraksis.diagnose", Vec::new());
        assert_eq!(r.structural.unwrap().rule, "empty_file");
        let r = run_on("almenpraksis.diagnose", HEADER.as_bytes().to_vec());
        assert!(r.structural.is_none());
        assert_eq!(r.rows.read, 0);
        assert_eq!(outcome("almenpraksis.diagnose", &r), ReceiptOutcome::Ok);
    }

    #[test]
    fn missing_required_column_names_it_and_hints_at_the_delimiter() {
        let r = run_on(
            "almenpraksis.diagnose",
            b"record_id;cpr;ydernummer\na;670385-4001;012345\n".to_vec(),
        );
        let s = r.structural.unwrap();
        assert_eq!(s.rule, "missing_column");
        assert!(s.message.contains("diagnosekode"), "{}", s.message);
        let r = run_on(
            "almenpraksis.diagnose",
            HEADER.replace(';', ",").into_bytes(),
        );
        let s = r.structural.unwrap();
        assert!(s.message.contains("','-delimited"), "{}", s.message);
    }

    #[test]
    fn truncated_last_row_is_a_row_error() {
        let mut text = format!("{HEADER}{}", row("a", "T90"));
        text.push_str("b;670385-4001;012345;T90;2026-0");
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(r.rows.read, 2);
        assert_eq!(r.rows.rejected, 1);
        assert_eq!(r.problems[0].rule, "field_count");
        assert_eq!(r.problems[0].line, 3);
    }

    #[test]
    fn gzip_is_decompressed_and_capped() {
        use std::io::Write;
        let text = format!("{HEADER}{}", row("a", "T90"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let r = run_on("almenpraksis.diagnose", bytes.clone());
        assert_eq!(r.rows.accepted, 1);

        let registry = Registry::builtin();
        let mut c = registry.get("almenpraksis.diagnose").unwrap().clone();
        c.delivery.max_decompressed_bytes = 20;
        let r = run(
            &registry,
            &c,
            Box::new(std::io::Cursor::new(bytes)),
            test_options(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
        )
        .unwrap();
        let s = r.structural.expect("over the cap");
        assert_eq!(s.rule, "too_large");
    }

    #[test]
    fn threshold_decides_between_warning_and_rejection() {
        // 1 bad row in 20 = 5 %: not above the threshold.
        let mut text = HEADER.to_string();
        for i in 0..19 {
            text.push_str(&row(&format!("r{i}"), "T90"));
        }
        text.push_str(&row("bad", "X99"));
        let r = run_on("almenpraksis.diagnose", text.clone().into_bytes());
        assert_eq!(
            outcome("almenpraksis.diagnose", &r),
            ReceiptOutcome::Warning
        );
        // 2 in 21 = 9.5 %: rejected.
        text.push_str(&row("bad2", "X99"));
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(
            outcome("almenpraksis.diagnose", &r),
            ReceiptOutcome::Rejected
        );
    }

    #[test]
    fn cpr_problems_are_warnings_and_never_quote_the_number() {
        let text = format!(
            "{HEADER}a;6703854;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n\
             b;;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n"
        );
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(r.rows.accepted, 1, "invalid CPR kept");
        assert_eq!(r.rows.with_warnings, 1);
        assert_eq!(r.rows.rejected, 1, "missing CPR is a required-field error");
        for p in &r.problems {
            assert!(!p.message.contains("6703854"), "{}", p.message);
        }
    }

    #[test]
    fn problems_in_receipt_are_capped_but_counted() {
        let mut text = HEADER.to_string();
        for i in 0..(MAX_PROBLEMS + 50) {
            text.push_str(&row(&format!("r{i}"), "X99"));
        }
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
        assert_eq!(r.problems_total, (MAX_PROBLEMS + 50) as u64);
        assert_eq!(r.problems_by_rule["code_list"], (MAX_PROBLEMS + 50) as u64);
    }

    /// Every string the report could carry outward: messages, rule names, columns,
    /// ignored columns, quality units.
    fn outward_text(r: &Report) -> String {
        let mut t = String::new();
        for p in &r.problems {
            t.push_str(&format!("{} {:?} {}\n", p.rule, p.column, p.message));
        }
        if let Some(s) = &r.structural {
            t.push_str(&s.message);
        }
        t.push_str(&r.ignored_columns.join(" "));
        for m in &r.quality {
            t.push_str(&format!(" {:?} {:?}", m.unit, m.field));
        }
        t
    }

    fn clean_rows(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    "AP-{i};{}-4{i:03};012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00",
                    670385 + (i % 20) * 10_000
                )
            })
            .collect()
    }

    #[test]
    fn a_file_without_its_header_is_rejected_without_quoting_line_one() {
        let rows = clean_rows(5);
        let r = run_on(
            "almenpraksis.diagnose",
            (rows.join("\n") + "\n").into_bytes(),
        );
        let s = r.structural.as_ref().expect("rejected as a whole");
        assert_eq!(s.rule, "missing_column");
        assert!(
            s.message.contains("header row seems to be missing"),
            "{}",
            s.message
        );
        let out = outward_text(&r);
        assert!(!out.contains("670385") && !out.contains("AP-0"), "{out}");
    }

    #[test]
    fn swapped_id_and_cpr_columns_reject_the_delivery() {
        // The header is right; the values of record_id and cpr are swapped.
        let mut text = HEADER.to_string();
        for row in clean_rows(30) {
            let mut f: Vec<&str> = row.split(';').collect();
            f.swap(0, 1);
            text.push_str(&(f.join(";") + "\n"));
        }
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(r.rows.accepted, 0);
        assert_eq!(r.problems_by_rule["cpr_in_wrong_column"], 30);
        let (outcome, reason) =
            r.outcome(Registry::builtin().get("almenpraksis.diagnose").unwrap());
        assert_eq!(outcome, ReceiptOutcome::Rejected);
        assert!(reason.unwrap().contains("columns swapped"));
        assert!(!outward_text(&r).contains("670385"));
    }

    #[test]
    fn swapped_cpr_and_unit_columns_never_make_units_of_cprs() {
        let mut text = HEADER.to_string();
        for row in clean_rows(30) {
            let mut f: Vec<&str> = row.split(';').collect();
            f.swap(1, 2);
            text.push_str(&(f.join(";") + "\n"));
        }
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(
            outcome("almenpraksis.diagnose", &r),
            ReceiptOutcome::Rejected
        );
        assert!(
            r.quality
                .iter()
                .all(|m| m.unit.as_deref() != Some("012345"))
        );
        let out = outward_text(&r);
        assert!(!out.contains("670385") && !out.contains("6703"), "{out}");
    }

    #[test]
    fn a_mostly_unusable_cpr_column_rejects_even_when_every_row_is_valid() {
        // 20 rows, 2 with a CPR that is no date: 10 % unusable, above the 5 % limit,
        // while 0 rows fail validation (an unusable CPR alone is a warning).
        let mut text = HEADER.to_string();
        for (i, row) in clean_rows(20).into_iter().enumerate() {
            let row = if i < 2 {
                row.replacen(";6", ";9", 1)
            } else {
                row
            };
            text.push_str(&(row + "\n"));
        }
        let r = run_on("almenpraksis.diagnose", text.into_bytes());
        assert_eq!(r.rows.rejected, 0);
        assert_eq!(r.cpr_unusable, 2);
        assert_eq!(
            outcome("almenpraksis.diagnose", &r),
            ReceiptOutcome::Rejected
        );
    }

    #[test]
    fn clean_generated_deliveries_of_every_dataset_lose_no_row_to_the_detector() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = crate::generate::GenerateOptions::new(dir.path());
        opts.persons = 400;
        opts.days = 3;
        opts.defects = 0.0;
        let files = crate::generate::generate(&opts).unwrap();
        let registry = Registry::builtin();
        let mut seen = std::collections::BTreeSet::new();
        for f in &files {
            let c = registry.get(&f.dataset).unwrap();
            let day = f
                .path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            let r = run(
                &registry,
                c,
                Box::new(std::fs::File::open(&f.path).unwrap()),
                test_options(day.parse().unwrap()),
            )
            .unwrap();
            assert_eq!(
                r.problems_by_rule.get("cpr_in_wrong_column"),
                None,
                "{}: {:?}",
                f.dataset,
                r.problems.first()
            );
            seen.insert(f.dataset.clone());
        }
        assert!(seen.len() >= 8, "{seen:?}");
    }
}
