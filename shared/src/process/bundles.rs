//! The process pass for a KL Gateway delivery: each bundle is parsed and flattened,
//! its rows are validated once by their tables' contracts and pseudonymised, and
//! only if every row of the bundle passes are they kept. Parsing, flattening and
//! validating depend on the bundle alone and run on the workers of
//! [`super::chunks::ordered`]; the table sinks take the bundles in file order.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use chrono::NaiveDate;
use serde_json::Value as Json;

use super::chunks::ordered;
use super::pass::{RunError, RunOptions};
use super::report::{ProblemSink, Report};
use crate::contract::{Contract, Registry};
use crate::cpr::CprClass;
use crate::fhir::{self, Bundles};
use crate::pseudonym::Pseudonymiser;
use crate::read::Row;
use crate::reference::{self, GatewayReference};
use crate::sink::TableSink;
use crate::validate::{Checked, Person, Problem, Severity, TypedRow, Validator, Value, Verdict};

/// Bundles per chunk (a bundle is one citizen's changes of one day: a few KiB).
const CHUNK_BUNDLES: usize = 256;

/// A row of a bundle, validated and pseudonymised. The buffers are reused.
struct Pending {
    row: Row,
    values: Vec<Value>,
    verdict: Verdict,
    cpr: CprClass,
    typed: Option<(Person, NaiveDate, i64)>,
}

/// What the check made of one bundle.
struct BundleCheck {
    /// `None`: the bundle never became rows (not JSON, too large, not a bundle).
    cpr_usable: Option<bool>,
    verdict: Verdict,
    /// Its rows: `(table, index in that table's pending rows, end of the row's own
    /// problems in `row_problems`)`, in the order the bundle gave them.
    rows: std::ops::Range<usize>,
    /// The end of its problems (for the receipt: repeated warnings once) in `problems`.
    problems_end: usize,
}

/// A run of consecutive bundles of a delivery and what the check made of them.
struct BundleChunk {
    texts: Vec<(u64, String)>,
    bundles: Vec<BundleCheck>,
    /// Per table: the pending rows of this chunk (the first `used` of them).
    pending: Vec<Vec<Pending>>,
    used: Vec<usize>,
    order: Vec<(usize, usize, usize)>,
    row_problems: Vec<Problem>,
    problems: Vec<Problem>,
}

/// What a worker needs to check a bundle.
struct Checker<'a> {
    contract: &'a Contract,
    tables: &'a [&'a Contract],
    index: HashMap<&'a str, usize>,
    validators: Vec<Validator<'a>>,
    pseudonymiser: &'a Pseudonymiser,
    refs: &'a GatewayReference,
}

impl BundleChunk {
    fn new(tables: usize) -> Self {
        BundleChunk {
            texts: Vec::with_capacity(CHUNK_BUNDLES),
            bundles: Vec::with_capacity(CHUNK_BUNDLES),
            pending: (0..tables).map(|_| Vec::new()).collect(),
            used: vec![0; tables],
            order: Vec::new(),
            row_problems: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn fill(&mut self, bundles: &mut Bundles) -> Result<bool, crate::read::StructuralError> {
        self.texts.clear();
        while self.texts.len() < CHUNK_BUNDLES {
            match bundles.next_bundle()? {
                Some(b) => self.texts.push(b),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl Checker<'_> {
    fn check(&self, c: &mut BundleChunk) {
        c.bundles.clear();
        c.used.fill(0);
        c.order.clear();
        c.row_problems.clear();
        c.problems.clear();
        let texts = std::mem::take(&mut c.texts);
        for (line, text) in &texts {
            self.check_bundle(*line, text, c);
        }
        c.texts = texts;
    }

    fn check_bundle(&self, line: u64, text: &str, c: &mut BundleChunk) {
        let max_entries = self.contract.delivery.max_bundle_entries;
        let problems = &mut c.problems;
        let flat = match serde_json::from_str::<Json>(text) {
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
            Ok(bundle) => fhir::flatten_bundle(line, &bundle, self.refs, problems),
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
        let first_row = c.order.len();
        let Some((cpr, flat)) = flat else {
            c.bundles.push(BundleCheck {
                cpr_usable: None,
                verdict: Verdict::Rejected,
                rows: first_row..first_row,
                problems_end: c.problems.len(),
            });
            return;
        };
        let cpr_usable = crate::cpr::parse(&cpr).is_ok_and(|p| p.class.identifies_person());
        let before = c.problems.len();
        let mut verdict = Verdict::Accepted;
        for f in &flat {
            let t = self.index[f.table];
            let table = self.tables[t];
            if c.used[t] == c.pending[t].len() {
                c.pending[t].push(Pending {
                    row: Row::with_fields(table.fields.len()),
                    values: Vec::new(),
                    verdict: Verdict::Accepted,
                    cpr: CprClass::Missing,
                    typed: None,
                });
            }
            let i = c.used[t];
            c.used[t] += 1;
            let p = &mut c.pending[t][i];
            fill(&mut p.row, table, line, &cpr, &f.values);
            let from = c.problems.len();
            let checked = self.validators[t].check(&p.row, &mut p.values, &mut c.problems);
            let mut row_verdict = checked.verdict;
            let (cpr_class, typed) = (
                checked.cpr,
                checked
                    .typed
                    .map(|t| (t.person, t.event_date, t.record_version)),
            );
            if !f.warnings.is_empty() {
                c.problems.extend(f.warnings.iter().cloned());
                if row_verdict == Verdict::Accepted {
                    row_verdict = Verdict::AcceptedWithWarnings;
                }
            }
            p.verdict = row_verdict;
            p.cpr = cpr_class;
            p.typed = typed.map(|(mut person, date, version)| {
                person.pseudonymise(self.pseudonymiser);
                (person, date, version)
            });
            // The row's own problems, for its table's quality metrics.
            c.row_problems.extend(c.problems[from..].iter().cloned());
            c.order.push((t, i, c.row_problems.len()));
            match row_verdict {
                Verdict::Rejected => verdict = Verdict::Rejected,
                Verdict::AcceptedWithWarnings if verdict == Verdict::Accepted => {
                    verdict = Verdict::AcceptedWithWarnings
                }
                _ => {}
            }
        }
        // Warnings repeat per row (the same CPR in each): the receipt keeps the first.
        dedup_from(&mut c.problems, before);
        c.bundles.push(BundleCheck {
            cpr_usable: Some(cpr_usable),
            verdict,
            rows: first_row..c.order.len(),
            problems_end: c.problems.len(),
        });
    }
}

/// One streaming pass over a gateway delivery (see the module comment).
pub(super) fn run_bundles(
    registry: &Registry,
    contract: &Contract,
    raw: Box<dyn Read + Send>,
    opts: RunOptions,
) -> Result<Report, RunError> {
    let mut report = Report {
        reference_versions: opts.reference.versions_of(reference::GATEWAY_KINDS),
        ..Report::default()
    };
    let mut problems_out = ProblemSink::new(opts.spool)?;
    let tables = registry.tables_of(contract);
    let received = opts.received_at.timestamp_micros();
    let sink_opts = opts.sink();
    let mut sinks: Vec<TableSink> = tables
        .iter()
        .map(|c| TableSink::new(c, &sink_opts))
        .collect();
    let checker = Checker {
        contract,
        tables: &tables,
        index: tables
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect(),
        validators: tables
            .iter()
            .map(|c| Validator::new(c, opts.delivery_date, received))
            .collect(),
        pseudonymiser: &opts.pseudonymiser,
        refs: &opts.reference.gateway,
    };

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
    // Parsing and flattening make the check two thirds of a bundle's work: every
    // thread asked for checks, and the calling thread's smaller part (reading lines,
    // the sinks) runs beside them.
    let workers = if opts.threads > 1 { opts.threads } else { 0 };
    report.structural = ordered(
        workers,
        || BundleChunk::new(tables.len()),
        |c: &mut BundleChunk| c.fill(&mut bundles),
        &|c: &mut BundleChunk| checker.check(c),
        |c: &mut BundleChunk| -> Result<(), RunError> {
            absorb(c, &tables, &mut sinks, &mut report)?;
            problems_out.take(&mut report, &mut c.problems)
        },
    )?;
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

/// The single-threaded side: every row counts in its table's metrics, and the rows
/// of an accepted bundle go to their tables, all in file order.
fn absorb(
    c: &BundleChunk,
    tables: &[&Contract],
    sinks: &mut [TableSink],
    report: &mut Report,
) -> Result<(), RunError> {
    let mut problems_from = 0;
    for b in &c.bundles {
        let Some(usable) = b.cpr_usable else {
            // The bundle never became rows: it counts against the delivery's own table.
            sinks[0].observe_unreadable(&c.problems[problems_from..b.problems_end]);
            report.count(Verdict::Rejected);
            problems_from = b.problems_end;
            continue;
        };
        problems_from = b.problems_end;
        report.count_cpr(usable);
        let mut row_from = if b.rows.start == 0 {
            0
        } else {
            c.order[b.rows.start - 1].2
        };
        for &(t, i, row_end) in &c.order[b.rows.clone()] {
            let p = &c.pending[t][i];
            let checked = Checked {
                verdict: p.verdict,
                cpr: p.cpr,
                typed: typed_row(tables[t], p),
            };
            sinks[t].observe(&p.row, &checked, &c.row_problems[row_from..row_end]);
            row_from = row_end;
        }
        if b.verdict != Verdict::Rejected {
            for &(t, i, _) in &c.order[b.rows.clone()] {
                let p = &c.pending[t][i];
                if let Some(typed) = typed_row(tables[t], p) {
                    sinks[t].keep(&typed)?;
                }
            }
        }
        report.count(b.verdict);
    }
    Ok(())
}

fn typed_row<'a>(table: &'a Contract, p: &'a Pending) -> Option<TypedRow<'a>> {
    p.typed
        .map(|(person, event_date, record_version)| TypedRow {
            contract: table,
            row: &p.row,
            values: &p.values,
            person,
            // FHIR tables carry one CPR, the Patient's.
            linked: Person::missing(),
            event_date,
            record_version,
        })
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
    use crate::contract::Registry;
    use crate::process::{Report, run, test_options};

    fn pass(text: &[u8], spool: &std::path::Path, threads: usize) -> Report {
        let registry = Registry::builtin();
        let contract = registry.get("kommune.gateway").unwrap();
        let mut opts = test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap());
        opts.received_at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        opts.spool = Some(spool);
        opts.threads = threads;
        run(
            &registry,
            contract,
            Box::new(std::io::Cursor::new(text.to_vec())),
            opts,
        )
        .unwrap()
    }

    #[test]
    fn bundles_give_the_same_output_whatever_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let clean = dir.path().join("gateway.ndjson");
        crate::generate::bench_gateway_file(&clean, super::CHUNK_BUNDLES * 4 + 17, 9).unwrap();
        // Broken bundles among good ones: not JSON, a reference to nobody, a bad CPR.
        let mut text = String::new();
        for (i, line) in std::fs::read_to_string(&clean).unwrap().lines().enumerate() {
            match i % 97 {
                1 => text.push_str(&line[..line.len() / 2]),
                2 => text.push_str(&line.replacen("Patient/", "Patient/nobody-", 1)),
                3 => text.push_str(&line.replacen("\"value\":\"", "\"value\":\"12", 1)),
                _ => text.push_str(line),
            }
            text.push('\n');
        }
        let outputs: Vec<(String, Vec<Vec<u8>>)> = [1, 2, 3]
            .iter()
            .map(|&threads| {
                let spool = dir.path().join(format!("spool-{threads}"));
                std::fs::create_dir_all(&spool).unwrap();
                let r = pass(text.as_bytes(), &spool, threads);
                let summary = format!(
                    "{:?} {:?} {:?} {:?} {:?} {} {}",
                    r.rows,
                    r.problems,
                    r.problems_by_rule,
                    r.tables,
                    r.quality,
                    r.cpr_checked,
                    r.cpr_unusable
                );
                let mut files: Vec<Vec<u8>> = r
                    .files
                    .iter()
                    .map(|f| std::fs::read(&f.path).unwrap())
                    .collect();
                files.extend(r.quarantine_file.iter().map(|q| std::fs::read(q).unwrap()));
                (summary, files)
            })
            .collect();
        let (summary, files) = &outputs[0];
        assert!(!summary.contains("rejected: 0,"), "{summary}");
        assert!(summary.contains("\"format\""), "{summary}");
        assert!(files.len() >= 5, "{} files", files.len());
        for (threads, (s, f)) in [2, 3].iter().zip(&outputs[1..]) {
            assert_eq!(s, summary, "{threads} threads");
            assert!(f == files, "the files differ with {threads} threads");
        }
    }
}
