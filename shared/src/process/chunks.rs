//! The row pass on every core. The reader cuts a delivery into chunks of rows;
//! workers check each chunk (validation with the CPR detector, and the pseudonym:
//! the work that depends on the row alone); the chunks come back in the order they
//! were read, and everything that depends on order (the quality metrics, the
//! problems, the rows of the Parquet files) takes them on one thread. So a delivery
//! gives the same files, receipt and metrics whatever the thread count.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use chrono::NaiveDate;

use crate::contract::Contract;
use crate::cpr::CprClass;
use crate::pseudonym::Pseudonymiser;
use crate::read::{Next, RecordError, RecordReader, Row, StructuralError};
use crate::validate::{Checked, Person, Problem, Severity, TypedRow, Validator, Value, Verdict};

/// Rows per chunk: large enough that handing a chunk over costs nothing next to
/// checking it, small enough that the chunks in flight stay a few MiB.
pub const CHUNK_ROWS: usize = 4096;

/// Chunks in flight per worker: one being checked, one waiting.
const DEPTH: usize = 2;

/// The thread count of the process step: `NAERDATA_THREADS`, else every core the
/// process may use (a Lambda function's vCPUs).
pub fn default_threads() -> usize {
    std::env::var("NAERDATA_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A run of consecutive records of a delivery and what the check made of them.
/// Its buffers are reused from chunk to chunk.
pub struct Chunk {
    rows: Vec<Row>,
    values: Vec<Vec<Value>>,
    outcomes: Vec<Outcome>,
    /// The problems of all rows, in row order; row `i`'s end at `ends[i]`.
    problems: Vec<Problem>,
    ends: Vec<usize>,
    len: usize,
}

enum Outcome {
    /// Read, not yet checked.
    Read,
    /// The reader could not make a row of the record.
    Unreadable(Option<RecordError>),
    Checked {
        verdict: Verdict,
        cpr: CprClass,
        typed: Option<Typed>,
    },
}

/// What a kept row's check derived, without the borrows of [`TypedRow`].
struct Typed {
    person: Person,
    linked: Person,
    event_date: NaiveDate,
    record_version: i64,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            rows: Vec::with_capacity(CHUNK_ROWS),
            values: Vec::with_capacity(CHUNK_ROWS),
            outcomes: Vec::with_capacity(CHUNK_ROWS),
            problems: Vec::new(),
            ends: Vec::with_capacity(CHUNK_ROWS),
            len: 0,
        }
    }

    /// Reads up to [`CHUNK_ROWS`] records. `Ok(false)` at the end of the file; a
    /// structural error ends the file too, after the records read before it.
    fn fill(
        &mut self,
        reader: &mut RecordReader,
        contract: &Contract,
    ) -> Result<bool, StructuralError> {
        self.len = 0;
        self.outcomes.clear();
        while self.len < CHUNK_ROWS {
            let outcome = match reader.next(contract)? {
                Next::End => return Ok(false),
                Next::Row => {
                    if self.rows.len() == self.len {
                        self.rows.push(reader.row.clone());
                        self.values.push(Vec::new());
                    } else {
                        // The slot's row has the reader's column map: swapping hands
                        // the record over without copying it.
                        std::mem::swap(&mut reader.row, &mut self.rows[self.len]);
                    }
                    Outcome::Read
                }
                Next::Bad(e) => {
                    if self.rows.len() == self.len {
                        self.rows.push(reader.row.clone());
                        self.values.push(Vec::new());
                    }
                    Outcome::Unreadable(Some(e))
                }
            };
            self.outcomes.push(outcome);
            self.len += 1;
        }
        Ok(true)
    }

    /// Checks every row: validation, then the pseudonym of a kept row's persons.
    fn check(&mut self, validator: &Validator, pseudonymiser: &Pseudonymiser) {
        let Chunk {
            rows,
            values,
            outcomes,
            problems,
            ends,
            len,
        } = self;
        problems.clear();
        ends.clear();
        for i in 0..*len {
            let outcome = &mut outcomes[i];
            match outcome {
                Outcome::Unreadable(e) => {
                    if let Some(e) = e.take() {
                        problems.push(Problem {
                            line: e.line,
                            column: None,
                            rule: e.rule,
                            severity: Severity::Error,
                            message: e.message,
                        });
                    }
                }
                Outcome::Read | Outcome::Checked { .. } => {
                    let checked = validator.check(&rows[i], &mut values[i], problems);
                    *outcome = Outcome::Checked {
                        verdict: checked.verdict,
                        cpr: checked.cpr,
                        typed: checked.typed.map(|t| {
                            let (mut person, mut linked) = (t.person, t.linked);
                            person.pseudonymise(pseudonymiser);
                            linked.pseudonymise(pseudonymiser);
                            Typed {
                                person,
                                linked,
                                event_date: t.event_date,
                                record_version: t.record_version,
                            }
                        }),
                    };
                }
            }
            ends.push(problems.len());
        }
    }

    /// The checked rows in file order, each with its own problems (`None`: a record
    /// the reader could not make a row of).
    pub fn rows<'a>(
        &'a self,
        contract: &'a Contract,
    ) -> impl Iterator<Item = (Option<(&'a Row, Checked<'a>)>, &'a [Problem])> + 'a {
        (0..self.len).map(move |i| {
            let from = if i == 0 { 0 } else { self.ends[i - 1] };
            let problems = &self.problems[from..self.ends[i]];
            let checks = match &self.outcomes[i] {
                Outcome::Checked {
                    verdict,
                    cpr,
                    typed,
                } => Some((
                    &self.rows[i],
                    Checked {
                        verdict: *verdict,
                        cpr: *cpr,
                        typed: typed.as_ref().map(|t| TypedRow {
                            contract,
                            row: &self.rows[i],
                            values: &self.values[i],
                            person: t.person,
                            linked: t.linked,
                            event_date: t.event_date,
                            record_version: t.record_version,
                        }),
                    },
                )),
                Outcome::Unreadable(_) | Outcome::Read => None,
            };
            (checks, problems)
        })
    }

    /// The chunk's problems, taken (in row order) once its rows have been absorbed.
    pub fn problems_mut(&mut self) -> &mut Vec<Problem> {
        &mut self.problems
    }
}

/// Streams `reader` through [`Chunk::check`] on `threads` threads and hands every
/// checked chunk, in file order, to `absorb` on the calling thread. Returns the
/// structural error that ended the file early, if one did.
///
/// With more than one thread, `threads - 1` workers check while the calling thread
/// reads and absorbs: for flat rows the two sides are about equal (measured: the
/// check is half of the pass), so one more worker would only take cores from the
/// calling thread, which every chunk has to pass through.
pub fn stream<E>(
    reader: &mut RecordReader,
    contract: &Contract,
    validator: &Validator,
    pseudonymiser: &Pseudonymiser,
    threads: usize,
    absorb: impl FnMut(&mut Chunk) -> Result<(), E>,
) -> Result<Option<StructuralError>, E> {
    ordered(
        threads.max(1) - 1,
        Chunk::new,
        |c: &mut Chunk| c.fill(reader, contract),
        &|c: &mut Chunk| c.check(validator, pseudonymiser),
        absorb,
    )
}

/// The pipeline under both passes (rows and FHIR bundles): `fill` reads the next
/// chunk (`Ok(false)`: the input ended), `check` works on a chunk alone, `absorb`
/// takes the checked chunks in the order they were filled. With no `workers` the
/// calling thread does all of it; otherwise the workers check while the calling
/// thread fills and absorbs.
pub(super) fn ordered<C: Send, E>(
    workers: usize,
    new: impl Fn() -> C,
    mut fill: impl FnMut(&mut C) -> Result<bool, StructuralError>,
    check: &(impl Fn(&mut C) + Sync),
    mut absorb: impl FnMut(&mut C) -> Result<(), E>,
) -> Result<Option<StructuralError>, E> {
    if workers == 0 {
        let mut chunk = new();
        loop {
            let read = fill(&mut chunk);
            check(&mut chunk);
            absorb(&mut chunk)?;
            match read {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Ok(Some(e)),
            }
        }
    }
    std::thread::scope(|s| {
        let mut to: Vec<SyncSender<Box<C>>> = Vec::with_capacity(workers);
        let mut from: Vec<Receiver<Box<C>>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = sync_channel::<Box<C>>(DEPTH);
            let (done_tx, done_rx) = sync_channel::<Box<C>>(DEPTH);
            s.spawn(move || {
                for mut chunk in rx {
                    check(&mut chunk);
                    if done_tx.send(chunk).is_err() {
                        break; // the caller stopped early (an error): nothing waits
                    }
                }
            });
            to.push(tx);
            from.push(done_rx);
        }
        // Chunk n goes to worker n % workers and comes back from it: the results
        // arrive in input order without reordering.
        let (mut sent, mut taken) = (0usize, 0usize);
        let mut spare: Vec<Box<C>> = Vec::new();
        let mut ended: Option<Option<StructuralError>> = None;
        loop {
            while ended.is_none() && sent - taken < workers * DEPTH {
                let mut chunk = spare.pop().unwrap_or_else(|| Box::new(new()));
                match fill(&mut chunk) {
                    Ok(true) => {}
                    Ok(false) => ended = Some(None),
                    Err(e) => ended = Some(Some(e)),
                }
                to[sent % workers]
                    .send(chunk)
                    .expect("a worker of the pass ended early");
                sent += 1;
            }
            if taken == sent {
                return Ok(ended.flatten());
            }
            let mut chunk = from[taken % workers]
                .recv()
                .expect("a worker of the pass ended early");
            taken += 1;
            absorb(&mut chunk)?;
            spare.push(chunk);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::process::{Report, run};

    /// A delivery of several chunks over twelve months, with the defects a careless
    /// supplier sends: a CPR that is not one, a row short of a field, an impossible
    /// date, a CPR number in the wrong column, a duplicate record, a blank line.
    fn careless_delivery(dir: &std::path::Path) -> std::path::PathBuf {
        let clean = dir.join("clean.csv");
        crate::generate::bench_file(&clean, (CHUNK_ROWS * 5 + 123) as u64, 3).unwrap();
        let text = std::fs::read_to_string(&clean).unwrap();
        let mut out = String::new();
        let mut previous = String::new();
        for (i, line) in text.lines().enumerate() {
            let mut f: Vec<String> = line.split(';').map(str::to_string).collect();
            if i > 0 {
                match i % 613 {
                    1 => f[1] = "1234".into(),
                    2 => {
                        f.pop();
                    }
                    3 => f[4] = "2025-02-30".into(),
                    4 => f[2] = f[1].clone(),
                    5 => {
                        out.push_str(&previous);
                        out.push('\n');
                    }
                    6 => out.push('\n'),
                    _ => {}
                }
            }
            let line = f.join(";");
            out.push_str(&line);
            out.push('\n');
            previous = line;
        }
        let path = dir.join("careless.csv");
        std::fs::write(&path, out).unwrap();
        path
    }

    fn pass(file: &std::path::Path, spool: &std::path::Path, threads: usize) -> Report {
        let registry = Registry::builtin();
        let contract = registry.get("almenpraksis.diagnose").unwrap();
        let mut opts = crate::process::test_options(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        opts.received_at = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        opts.spool = Some(spool);
        opts.threads = threads;
        run(
            &registry,
            contract,
            Box::new(std::fs::File::open(file).unwrap()),
            opts,
        )
        .unwrap()
    }

    /// Everything a delivery leaves: the receipt's content, the metrics, and the
    /// bytes of every spooled file (Parquet and quarantine).
    fn output(r: &Report) -> (String, Vec<(String, Vec<u8>)>) {
        let summary = format!(
            "{:?} {:?} {:?} {} {:?} {:?} {} {}",
            r.rows,
            r.problems,
            r.problems_by_rule,
            r.problems_total,
            r.tables,
            r.quality,
            r.cpr_checked,
            r.cpr_unusable
        );
        let mut files: Vec<(String, Vec<u8>)> = r
            .files
            .iter()
            .map(|f| (f.key.clone(), std::fs::read(&f.path).unwrap()))
            .collect();
        if let Some(q) = &r.quarantine_file {
            files.push(("quarantine".into(), std::fs::read(q).unwrap()));
        }
        (summary, files)
    }

    #[test]
    fn the_output_is_the_same_whatever_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = careless_delivery(dir.path());
        let results: Vec<_> = [1, 2, 3]
            .iter()
            .map(|&threads| {
                let spool = dir.path().join(format!("spool-{threads}"));
                std::fs::create_dir_all(&spool).unwrap();
                output(&pass(&file, &spool, threads))
            })
            .collect();
        let (summary, files) = &results[0];
        // The delivery exercised what it should: rejected rows, problems, many files.
        assert!(!summary.contains("rejected: 0,"), "{summary}");
        for rule in ["field_count", "cpr_in_wrong_column"] {
            assert!(summary.contains(rule), "{rule} missing: {summary}");
        }
        assert_eq!(files.iter().filter(|(k, _)| k != "quarantine").count(), 12);
        assert!(files.iter().any(|(k, _)| k == "quarantine"));
        for (threads, other) in [2, 3].iter().zip(&results[1..]) {
            assert_eq!(&other.0, summary, "receipt and metrics, {threads} threads");
            assert_eq!(other.1.len(), files.len());
            for ((k1, b1), (k2, b2)) in files.iter().zip(&other.1) {
                assert_eq!(k1, k2);
                assert!(b1 == b2, "{k1} differs with {threads} threads");
            }
        }
    }

    #[test]
    fn a_file_that_breaks_off_keeps_the_rows_before_the_break() {
        // A structural error (invalid UTF-8) in the third chunk: the rows read
        // before it are checked and counted, with one thread or several.
        let dir = tempfile::tempdir().unwrap();
        let clean = dir.path().join("clean.csv");
        crate::generate::bench_file(&clean, (CHUNK_ROWS * 3) as u64, 5).unwrap();
        let mut bytes = std::fs::read(&clean).unwrap();
        let cut = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(CHUNK_ROWS * 2 + 10)
            .unwrap()
            .0;
        bytes.insert(cut + 5, 0xff);
        let file = dir.path().join("broken.csv");
        std::fs::write(&file, bytes).unwrap();
        for threads in [1, 2] {
            let spool = dir.path().join(format!("spool-{threads}"));
            std::fs::create_dir_all(&spool).unwrap();
            let r = pass(&file, &spool, threads);
            let e = r.structural.as_ref().expect("the break is reported");
            assert_eq!(e.rule, "encoding", "{threads} threads");
            assert_eq!(
                r.rows.read,
                (CHUNK_ROWS * 2 + 10) as u64,
                "{threads} threads"
            );
        }
    }
}
