//! One streaming pass over a delivery: records in, validated once, then through the
//! row sink of their table ([`crate::sink`]). CSV and flat NDJSON give one row per
//! record; a gateway delivery's bundles ([`crate::fhir`]) fan out into several
//! tables and are accepted or left out as a whole.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};

use super::chunks;
use super::report::{ProblemSink, Report};
use crate::contract::{Contract, FileFormat, Registry};
use crate::pseudonym::Pseudonymiser;
use crate::read::{self, RecordReader, StructuralError};
use crate::reference::ReferenceSet;
use crate::sink::{SinkOptions, TableSink};
use crate::validate::{Validator, Verdict};

/// Options for a validate-only pass in tests: a throwaway key, no spool.
#[cfg(test)]
pub(crate) fn test_options(delivery_date: NaiveDate) -> RunOptions<'static> {
    RunOptions {
        delivery_id: "t",
        delivery_date,
        received_at: Utc::now(),
        pseudonymiser: Pseudonymiser::new(
            &crate::pseudonym::Key::new(1, vec![1; 32]).expect("32 bytes"),
        ),
        spool: None,
        quality: true,
        reference: ReferenceSet::builtin(),
        threads: 1,
    }
}

pub struct RunOptions<'a> {
    pub delivery_id: &'a str,
    pub delivery_date: NaiveDate,
    pub received_at: DateTime<Utc>,
    pub pseudonymiser: Pseudonymiser,
    /// Where Parquet and quarantine files are spooled; `None` validates only.
    pub spool: Option<&'a Path>,
    /// Gather the quality metrics (off only to measure what they cost).
    pub quality: bool,
    /// The reference data the delivery is checked against.
    pub reference: std::sync::Arc<ReferenceSet>,
    /// Threads for the pass (1: all on the calling thread); the output is the same
    /// for any count.
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error("quarantine spool: {0}")]
    Quarantine(std::io::Error),
}

/// One streaming pass over a delivery. Structural problems end up in the report;
/// only internal failures (disk, Parquet) are errors.
pub fn run(
    registry: &Registry,
    contract: &Contract,
    raw: Box<dyn Read + Send>,
    opts: RunOptions,
) -> Result<Report, RunError> {
    match &contract.delivery.format {
        FileFormat::Fhir { .. } => super::bundles::run_bundles(registry, contract, raw, opts),
        FileFormat::Derived { from } => Ok(Report {
            structural: Some(StructuralError::new(
                "derived_dataset",
                format!(
                    "{} is produced from {from} deliveries and is not delivered on its own; send {from} instead",
                    contract.id
                ),
            )),
            ..Report::default()
        }),
        FileFormat::Csv { .. } | FileFormat::Ndjson => run_rows(contract, raw, opts),
    }
}

impl RunOptions<'_> {
    pub(super) fn sink(&self) -> SinkOptions<'_> {
        SinkOptions {
            delivery_id: self.delivery_id,
            delivery_date: self.delivery_date,
            received_at_micros: self.received_at.timestamp_micros(),
            pseudonymiser: &self.pseudonymiser,
            spool: self.spool,
            quality: self.quality,
            threads: self.threads,
        }
    }
}

/// CSV or flat NDJSON: one record is one row of one table.
fn run_rows(
    contract: &Contract,
    raw: Box<dyn Read + Send>,
    opts: RunOptions,
) -> Result<Report, RunError> {
    let mut report = Report::default();
    let mut problems_out = ProblemSink::new(opts.spool)?;
    let mut sink = TableSink::new(contract, &opts.sink());
    let validator = Validator::new(
        contract,
        opts.delivery_date,
        opts.received_at.timestamp_micros(),
    );

    let opened = read::decode(raw, contract).and_then(|input| RecordReader::open(input, contract));
    let mut reader = match opened {
        Ok(r) => r,
        Err(e) => {
            report.quality = sink.finish(Some(&e))?.metrics;
            report.structural = Some(e);
            return Ok(report);
        }
    };
    report.ignored_columns = reader.unknown_columns.clone();
    let cpr_column = contract.cpr_field.is_some();
    report.structural = chunks::stream(
        &mut reader,
        contract,
        &validator,
        &opts.pseudonymiser,
        opts.threads,
        |chunk| -> Result<(), RunError> {
            for (checks, problems) in chunk.rows(contract) {
                match checks {
                    None => {
                        sink.observe_unreadable(problems);
                        report.count(Verdict::Rejected);
                    }
                    Some((row, checked)) => {
                        if cpr_column {
                            report.count_cpr(checked.cpr.identifies_person());
                        }
                        sink.observe(row, &checked, problems);
                        report.count(checked.verdict);
                        if let Some(typed) = &checked.typed {
                            sink.keep(typed)?;
                        }
                    }
                }
            }
            problems_out.take(&mut report, chunk.problems_mut())
        },
    )?;
    let out = sink.finish(report.structural.as_ref())?;
    report.files = out.files;
    report.quality = out.metrics;
    report.tables.insert(contract.table(), report.rows.accepted);
    problems_out.finish(&mut report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::test_bundle as bundle;
    use serde_json::{Value as Json, json};

    fn run_lines(lines: &[Json]) -> Report {
        let text: String = lines.iter().map(|b| format!("{b}\n")).collect();
        let registry = Registry::builtin();
        let c = registry.get("kommune.gateway").unwrap();
        run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(text.into_bytes())),
            test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn a_bad_bundle_is_left_out_without_rejecting_the_rest() {
        let mut lines: Vec<Json> = (0..30)
            .map(|i| {
                let mut b = bundle();
                b["id"] = json!(format!("b{i}"));
                b
            })
            .collect();
        lines[5]["entry"][3]["resource"]["subject"]["reference"] = json!("Patient/nobody");
        let r = run_lines(&lines);
        assert_eq!(r.rows.read, 30);
        assert_eq!(r.rows.rejected, 1);
        assert_eq!(r.rows.accepted, 29);
        assert_eq!(r.problems[0].line, 6);
        assert_eq!(r.tables["kommune_gateway"], 29);
        assert_eq!(r.tables["kommune_indsats"], 29 * 3);
        let registry = Registry::builtin();
        assert_eq!(
            r.outcome(registry.get("kommune.gateway").unwrap()).0,
            crate::receipt::ReceiptOutcome::Warning
        );
    }

    #[test]
    fn a_single_pretty_printed_bundle_file_is_accepted() {
        let registry = Registry::builtin();
        let c = registry.get("kommune.gateway").unwrap();
        let text = serde_json::to_string_pretty(&bundle()).unwrap();
        let r = run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(text.into_bytes())),
            test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap();
        assert!(r.structural.is_none(), "{:?}", r.structural);
        assert_eq!(r.rows.accepted, 1);
    }

    #[test]
    fn derived_tables_cannot_be_delivered_directly() {
        let registry = Registry::builtin();
        let c = registry.get("kommune.indsats").unwrap();
        let r = run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(b"x".to_vec())),
            test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap();
        assert!(r.structural.unwrap().message.contains("kommune.gateway"));
    }

    fn run_bytes(dataset: &str, bytes: Vec<u8>) -> Report {
        let registry = Registry::builtin();
        let c = registry.get(dataset).unwrap();
        run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(bytes)),
            test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap()
    }

    /// Files made to hurt: each refused by a limit that the message names.
    #[test]
    fn hostile_files_are_refused_by_a_named_limit() {
        // One endless line: refused at the line limit, not read whole.
        let mut endless =
            b"record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n"
                .to_vec();
        endless.extend(std::iter::repeat_n(b'x', 3 << 20));
        let r = run_bytes("almenpraksis.diagnose", endless);
        let e = r.structural.expect("refused");
        assert_eq!(e.rule, "too_large");
        assert!(e.message.contains("maxLineBytes"), "{}", e.message);
        // The same in a KL Gateway file (a line is a bundle).
        let r = run_bytes("kommune.gateway", vec![b'{'; 17 << 20]);
        assert!(
            r.structural
                .expect("refused")
                .message
                .contains("maxLineBytes")
        );

        // A header of thousands of columns.
        let wide: String = (0..2_000).map(|i| format!("c{i};")).collect::<String>() + "\n";
        let e = run_bytes("almenpraksis.diagnose", wide.into_bytes())
            .structural
            .expect("refused");
        assert_eq!(e.rule, "too_many_columns");
        assert!(e.message.contains("maxColumns"), "{}", e.message);

        // A bundle of too many entries, and one nested past the JSON reader's limit:
        // those bundles are left out, the file goes on.
        let mut big = bundle();
        let entries = big["entry"].as_array().unwrap().clone();
        big["entry"] = json!(
            entries
                .iter()
                .cycle()
                .take(6_000)
                .cloned()
                .collect::<Vec<_>>()
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!("{}\n{}\n{}\n", bundle(), big, deep);
        let r = run_bytes("kommune.gateway", text.into_bytes());
        assert!(r.structural.is_none(), "{:?}", r.structural);
        assert_eq!((r.rows.accepted, r.rows.rejected), (1, 2));
        let rules: Vec<&str> = r.problems.iter().map(|p| p.rule).collect();
        assert!(
            rules.contains(&"bundle_size") && rules.contains(&"nesting"),
            "{rules:?}"
        );
        let size = r.problems.iter().find(|p| p.rule == "bundle_size").unwrap();
        assert!(
            size.message.contains("maxBundleEntries"),
            "{}",
            size.message
        );
    }
}
