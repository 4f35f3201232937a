//! One streaming pass over a delivery: records in, validated once, then through the
//! row sink of their table ([`crate::sink`]). CSV and flat NDJSON give one row per
//! record; a gateway delivery's bundles ([`crate::fhir`]) fan out into several
//! tables and are accepted or left out as a whole.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value as Json;

use super::report::{ProblemSink, Report};
use crate::contract::{Contract, FileFormat, Registry};
use crate::fhir;
use crate::pseudonym::Pseudonymiser;
use crate::read::{self, Next, RecordReader, Row, StructuralError};
use crate::reference::{self, ReferenceSet};
use crate::sink::{SinkOptions, TableSink};
use crate::validate::{Person, Problem, Severity, TypedRow, Validator, Value, Verdict};

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
        FileFormat::Fhir { .. } => run_bundles(registry, contract, raw, opts),
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
    fn sink(&self) -> SinkOptions<'_> {
        SinkOptions {
            delivery_id: self.delivery_id,
            delivery_date: self.delivery_date,
            received_at_micros: self.received_at.timestamp_micros(),
            pseudonymiser: &self.pseudonymiser,
            spool: self.spool,
            quality: self.quality,
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
    let mut problems = Vec::new();
    let mut values = Vec::new();
    loop {
        match reader.next(contract) {
            Ok(Next::End) => break,
            Ok(Next::Row) => {
                let mut checked = validator.check(&reader.row, &mut values, &mut problems);
                if contract.cpr_field.is_some() {
                    report.count_cpr(checked.cpr.identifies_person());
                }
                sink.observe(&reader.row, &mut checked, &problems);
                report.count(checked.verdict);
                if let Some(typed) = &checked.typed {
                    sink.keep(typed)?;
                }
            }
            Ok(Next::Bad(e)) => {
                problems.push(Problem {
                    line: e.line,
                    column: None,
                    rule: e.rule,
                    severity: Severity::Error,
                    message: e.message,
                });
                sink.observe_unreadable(&problems);
                report.count(Verdict::Rejected);
            }
            Err(e) => {
                report.structural = Some(e);
                break;
            }
        }
        if !problems.is_empty() {
            problems_out.take(&mut report, &mut problems)?;
        }
    }
    let out = sink.finish(report.structural.as_ref())?;
    report.files = out.files;
    report.quality = out.metrics;
    report.tables.insert(contract.table(), report.rows.accepted);
    problems_out.finish(&mut report)?;
    Ok(report)
}

/// A row of a bundle, validated and waiting for the bundle's verdict. The buffers
/// are reused from bundle to bundle.
struct Pending {
    row: Row,
    values: Vec<Value>,
    person: Person,
    event_date: NaiveDate,
    record_version: i64,
}

/// The process pass for a gateway delivery: each bundle is flattened, its rows are
/// validated once by their tables' contracts, and only if every row of the bundle
/// passes are they kept.
fn run_bundles(
    registry: &Registry,
    contract: &Contract,
    raw: Box<dyn Read + Send>,
    opts: RunOptions,
) -> Result<Report, RunError> {
    let refs = &opts.reference.gateway;
    let mut report = Report {
        reference_versions: opts.reference.versions_of(reference::GATEWAY_KINDS),
        ..Report::default()
    };
    let mut problems_out = ProblemSink::new(opts.spool)?;
    let tables = registry.tables_of(contract);
    let received = opts.received_at.timestamp_micros();
    let validators: Vec<Validator> = tables
        .iter()
        .map(|c| Validator::new(c, opts.delivery_date, received))
        .collect();
    let sink_opts = opts.sink();
    let mut sinks: Vec<TableSink> = tables
        .iter()
        .map(|c| TableSink::new(c, &sink_opts))
        .collect();
    let index: HashMap<&str, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    // Per table: the pending rows of the current bundle (the first `used` of them).
    let mut pending: Vec<Vec<Pending>> = tables.iter().map(|_| Vec::new()).collect();
    let mut used = vec![0usize; tables.len()];

    let mut bundles = match fhir::open_bundles(raw, contract) {
        Ok(b) => b,
        Err(e) => {
            // An unreadable file counts against the delivery's own table.
            if let Some(first) = sinks.drain(..).next() {
                report.quality = first.finish(Some(&e))?.metrics;
            }
            report.structural = Some(e);
            return Ok(report);
        }
    };
    let mut problems = Vec::new();
    loop {
        let (line, text) = match bundles.next_bundle() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                report.structural = Some(e);
                break;
            }
        };
        let max_entries = contract.delivery.max_bundle_entries;
        let flat = match serde_json::from_str::<Json>(&text) {
            Ok(bundle)
                if bundle
                    .get("entry")
                    .and_then(Json::as_array)
                    .is_some_and(|e| e.len() > max_entries) =>
            {
                problems.push(Problem {
                    line,
                    column: Some("Bundle.entry".into()),
                    rule: "bundle_size",
                    severity: Severity::Error,
                    message: format!(
                        "the bundle has more than {max_entries} entries (maxBundleEntries); \
                         a delivery report holds one citizen's changes of one day"
                    ),
                });
                None
            }
            Ok(bundle) => fhir::flatten_bundle(line, &bundle, refs, &mut problems),
            Err(e) => {
                // serde_json's own message names only its limits, never the data.
                let nested = e.to_string().starts_with("recursion limit exceeded");
                problems.push(Problem {
                    line,
                    column: None,
                    rule: if nested { "nesting" } else { "format" },
                    severity: Severity::Error,
                    message: if nested {
                        format!(
                            "JSON nested deeper than 128 levels (column {}); a FHIR bundle never is",
                            e.column()
                        )
                    } else {
                        format!(
                            "not JSON: {:?} error at column {}",
                            e.classify(),
                            e.column()
                        )
                    },
                });
                None
            }
        };
        let verdict = match flat {
            None => {
                // The bundle never became rows: it counts against the delivery's
                // own table.
                sinks[0].observe_unreadable(&problems);
                Verdict::Rejected
            }
            Some((cpr, flat)) => {
                report
                    .count_cpr(crate::cpr::parse(&cpr).is_ok_and(|c| c.class.identifies_person()));
                let before = problems.len();
                let mut verdict = Verdict::Accepted;
                used.fill(0);
                for f in &flat {
                    let t = index[f.table];
                    if used[t] == pending[t].len() {
                        pending[t].push(Pending {
                            row: Row::with_fields(tables[t].fields.len()),
                            values: Vec::new(),
                            person: Person::missing(),
                            event_date: opts.delivery_date,
                            record_version: 0,
                        });
                    }
                    let p = &mut pending[t][used[t]];
                    used[t] += 1;
                    fill(&mut p.row, tables[t], line, &cpr, &f.values);
                    let from = problems.len();
                    let mut checked = validators[t].check(&p.row, &mut p.values, &mut problems);
                    if !f.warnings.is_empty() {
                        problems.extend(f.warnings.iter().cloned());
                        if checked.verdict == Verdict::Accepted {
                            checked.verdict = Verdict::AcceptedWithWarnings;
                        }
                    }
                    sinks[t].observe(&p.row, &mut checked, &problems[from..]);
                    match checked.verdict {
                        Verdict::Rejected => verdict = Verdict::Rejected,
                        Verdict::AcceptedWithWarnings if verdict == Verdict::Accepted => {
                            verdict = Verdict::AcceptedWithWarnings
                        }
                        _ => {}
                    }
                    if let Some(typed) = checked.typed {
                        p.person = typed.person;
                        p.event_date = typed.event_date;
                        p.record_version = typed.record_version;
                    }
                }
                // Warnings repeat per row (the same CPR in each): keep the first.
                dedup_from(&mut problems, before);
                if verdict != Verdict::Rejected {
                    // Kept in the order the bundle gave them, as validated above
                    // (the same walk over the pending rows, counted again).
                    used.fill(0);
                    for f in &flat {
                        let t = index[f.table];
                        let p = &pending[t][used[t]];
                        used[t] += 1;
                        sinks[t].keep(&TypedRow {
                            contract: tables[t],
                            row: &p.row,
                            values: &p.values,
                            person: p.person,
                            // FHIR tables carry one CPR, the Patient's.
                            linked: crate::validate::Person::missing(),
                            event_date: p.event_date,
                            record_version: p.record_version,
                        })?;
                    }
                }
                verdict
            }
        };
        report.count(verdict);
        if !problems.is_empty() {
            problems_out.take(&mut report, &mut problems)?;
        }
    }
    for (c, sink) in tables.iter().zip(sinks) {
        let out = sink.finish(report.structural.as_ref())?;
        if out.rows > 0 {
            report.tables.insert(c.table(), out.rows);
        }
        report.files.extend(out.files);
        report.quality.extend(out.metrics);
    }
    report.files.sort_by(|a, b| a.key.cmp(&b.key));
    problems_out.finish(&mut report)?;
    Ok(report)
}

/// Puts a flattened resource into a row in the table's field order; the CPR, held
/// once per bundle, goes into the CPR column in memory only.
fn fill(row: &mut Row, table: &Contract, line: u64, cpr: &str, values: &[(&'static str, String)]) {
    row.fill(
        line,
        table.fields.iter().enumerate().map(|(i, f)| {
            if Some(i) == table.cpr_field {
                cpr
            } else {
                values
                    .iter()
                    .find(|(k, _)| *k == f.name)
                    .map_or("", |(_, v)| v.as_str())
            }
        }),
    );
}

fn dedup_from(problems: &mut Vec<Problem>, from: usize) {
    let mut seen = HashSet::new();
    let mut i = from;
    while i < problems.len() {
        let key = (problems[i].rule, problems[i].message.clone());
        if problems[i].severity == Severity::Warning && !seen.insert(key) {
            problems.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::test_bundle as bundle;
    use serde_json::json;

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
