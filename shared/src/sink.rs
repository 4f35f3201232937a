//! Where validated rows go, whatever format they came in: the person pseudonym, the
//! quality metrics and the lake writer of one table. CSV and NDJSON rows and the rows
//! a FHIR bundle fans out into all pass through a [`TableSink`], each validated once.

use std::path::Path;

use chrono::NaiveDate;

use crate::contract::Contract;
use crate::lake::{LakeError, PartitionedWriter, SpooledFile};
use crate::pseudonym::Pseudonymiser;
use crate::quality::Metric;
use crate::quality::collect::Collector;
use crate::read::{Row, StructuralError};
use crate::validate::{Checked, Problem, TypedRow};

/// What a delivery's rows go to besides the sink's table: where to spool, and the
/// delivery's constants the lake rows carry.
pub struct SinkOptions<'a> {
    pub delivery_id: &'a str,
    pub delivery_date: NaiveDate,
    pub received_at_micros: i64,
    pub pseudonymiser: &'a Pseudonymiser,
    /// Where Parquet files are spooled; `None` validates only (nothing is written).
    pub spool: Option<&'a Path>,
    /// Gather the quality metrics (off only to measure what they cost).
    pub quality: bool,
    /// Threads that may encode the table's Parquet files at the end.
    pub threads: usize,
}

/// The sink of one table of one delivery.
pub struct TableSink<'c> {
    writer: Option<PartitionedWriter<'c>>,
    quality: Option<Collector>,
    kept: u64,
}

/// What a sink leaves when the delivery has been read.
pub struct TableOutput {
    /// Rows written (or, when validating only, that would have been).
    pub rows: u64,
    pub files: Vec<SpooledFile>,
    pub metrics: Vec<Metric>,
}

impl<'c> TableSink<'c> {
    pub fn new(contract: &'c Contract, o: &SinkOptions) -> Self {
        TableSink {
            writer: o.spool.map(|dir| {
                PartitionedWriter::new(
                    contract,
                    dir,
                    o.delivery_id,
                    o.received_at_micros,
                    o.pseudonymiser.key_version(),
                )
                .with_threads(o.threads)
            }),
            quality: o.quality.then(|| Collector::new(contract, o.delivery_date)),
            kept: 0,
        }
    }

    /// One validated row, kept or not (a kept row already pseudonymised by the
    /// pass's check): it counts in the quality metrics with `problems`, its own.
    pub fn observe(&mut self, row: &Row, checked: &Checked, problems: &[Problem]) {
        if let Some(q) = self.quality.as_mut() {
            q.observe(row, checked, problems);
        }
    }

    /// A record that never became a row (unreadable, or a bundle rejected before it
    /// was flattened): it counts in the metrics, with its problems.
    pub fn observe_unreadable(&mut self, problems: &[Problem]) {
        if let Some(q) = self.quality.as_mut() {
            q.observe_unreadable(problems);
        }
    }

    /// Writes a kept row (after [`TableSink::observe`] pseudonymised it).
    pub fn keep(&mut self, row: &TypedRow) -> Result<(), LakeError> {
        debug_assert!(
            !row.person.class.identifies_person() || row.person.tag().is_some(),
            "a person's row is pseudonymised before it is kept"
        );
        self.kept += 1;
        match self.writer.as_mut() {
            Some(w) => w.append(row),
            None => Ok(()),
        }
    }

    /// Closes the table: its spooled files and its metrics (an unreadable delivery
    /// gets one ERROR check).
    pub fn finish(self, structural: Option<&StructuralError>) -> Result<TableOutput, LakeError> {
        // The metrics first: their digest sets (record keys, persons) are freed
        // before the Parquet encoding needs its memory (measured at 10M rows, one
        // thread: peak 109 against 114 MiB).
        let metrics = self
            .quality
            .map(|q| q.finish(structural))
            .unwrap_or_default();
        let files = match self.writer {
            Some(w) => w.finish()?,
            None => Vec::new(),
        };
        Ok(TableOutput {
            rows: self.kept,
            files,
            metrics,
        })
    }
}
