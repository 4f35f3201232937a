//! Distinct counts that stay within a memory budget whatever the size of a delivery.
//!
//! Record keys must be counted exactly: a duplicate key is a defect the supplier has to
//! fix, and the receipt names how many. Up to [`KEY_BUDGET`] digests are appended to a
//! vector (appending is a fraction of a hash-set insert, whose random probes miss the
//! cache once the set outgrows it); past it the vector is sorted and goes to a
//! temporary file as one run. At the end the runs and the rest are merged, and every
//! digest met more than once is a duplicate: exact, in memory bounded by the budget
//! plus one read buffer per run.
//!
//! Distinct persons are a reported estimate (drift watches it; nothing is rejected on
//! it): exact up to [`PERSON_BUDGET`], then a HyperLogLog sketch (2^14 registers, about
//! 0.8 % standard error, 12 KiB) that the exact set seeds. The digests are the first
//! 8 bytes of keyed pseudonym tags, uniform already, so they go into the sketch as
//! hashes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use cardinality_estimator::CardinalityEstimator;

/// Record-key digests held in memory before a run goes to disk (8 bytes each: 4 MiB
/// at the budget; 10M rows make 20 runs, merged in one pass with a 64 KiB buffer each).
pub const KEY_BUDGET: usize = 1 << 19;
/// Persons counted exactly before the count becomes an estimate.
pub const PERSON_BUDGET: usize = 1 << 20;
/// Read buffer per spilled run while merging.
const RUN_BUFFER: usize = 64 * 1024;

/// Exact distinct count and duplicates of record-key digests.
pub struct RecordKeys {
    digests: Vec<u64>,
    budget: usize,
    runs: Vec<File>,
    seen: u64,
}

/// What [`RecordKeys::finish`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCounts {
    pub distinct: u64,
    /// Keys seen more than once (each repeat counts once).
    pub duplicates: u64,
    /// Sorted runs written to disk on the way (0 for any delivery under the budget).
    pub spilled_runs: usize,
}

impl Default for RecordKeys {
    fn default() -> Self {
        RecordKeys::with_budget(KEY_BUDGET)
    }
}

impl RecordKeys {
    pub fn with_budget(budget: usize) -> Self {
        RecordKeys {
            digests: Vec::new(),
            budget: budget.max(1),
            runs: Vec::new(),
            seen: 0,
        }
    }

    pub fn insert(&mut self, digest: u64) {
        self.seen += 1;
        self.digests.push(digest);
        if self.digests.len() >= self.budget {
            match self.spill() {
                Ok(run) => self.runs.push(run),
                // Without disk the count stays exact in memory; only the bound is lost.
                Err(e) => {
                    tracing::warn!(error = %e, "record keys: no spill file; counting in memory");
                    self.budget = usize::MAX;
                }
            }
        }
    }

    fn spill(&mut self) -> io::Result<File> {
        self.digests.sort_unstable();
        let mut file = tempfile::tempfile()?;
        {
            let mut w = BufWriter::with_capacity(RUN_BUFFER, &mut file);
            for d in &self.digests {
                w.write_all(&d.to_le_bytes())?;
            }
            w.flush()?;
        }
        file.rewind()?;
        // The vector's capacity stays for the next run: no regrowth from zero.
        self.digests.clear();
        Ok(file)
    }

    pub fn finish(mut self) -> io::Result<KeyCounts> {
        let spilled_runs = self.runs.len();
        self.digests.sort_unstable();
        if self.runs.is_empty() {
            self.digests.dedup();
            let distinct = self.digests.len() as u64;
            return Ok(KeyCounts {
                distinct,
                duplicates: self.seen - distinct,
                spilled_runs,
            });
        }
        let memory = self.digests;
        let mut sources: Vec<Source> = self
            .runs
            .into_iter()
            .map(|f| Source::Run(BufReader::with_capacity(RUN_BUFFER, f)))
            .collect();
        sources.push(Source::Memory(memory.into_iter()));
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(d) = s.next_digest()? {
                heap.push(Reverse((d, i)));
            }
        }
        let mut distinct = 0u64;
        let mut last = None;
        while let Some(Reverse((d, i))) = heap.pop() {
            if last != Some(d) {
                distinct += 1;
                last = Some(d);
            }
            if let Some(next) = sources[i].next_digest()? {
                heap.push(Reverse((next, i)));
            }
        }
        Ok(KeyCounts {
            distinct,
            duplicates: self.seen - distinct,
            spilled_runs,
        })
    }
}

enum Source {
    Run(BufReader<File>),
    Memory(std::vec::IntoIter<u64>),
}

impl Source {
    fn next_digest(&mut self) -> io::Result<Option<u64>> {
        match self {
            Source::Memory(it) => Ok(it.next()),
            Source::Run(r) => {
                let mut b = [0u8; 8];
                match r.read_exact(&mut b) {
                    Ok(()) => Ok(Some(u64::from_le_bytes(b))),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Distinct persons: exact under the budget, a sketch above it. The exact count
/// appends digests and sorts out the repeats whenever the vector doubles past the
/// budget (a person has many rows).
pub struct Persons {
    exact: Vec<u64>,
    /// The first `distinct` digests of `exact` are sorted and distinct.
    distinct: usize,
    sketch: Option<CardinalityEstimator<u64, rustc_hash::FxHasher, 14, 6>>,
    budget: usize,
}

impl Default for Persons {
    fn default() -> Self {
        Persons::with_budget(PERSON_BUDGET)
    }
}

impl Persons {
    pub fn with_budget(budget: usize) -> Self {
        Persons {
            exact: Vec::new(),
            distinct: 0,
            sketch: None,
            budget: budget.max(1),
        }
    }

    /// `digest` must already be uniformly distributed (a keyed hash).
    pub fn insert(&mut self, digest: u64) {
        if let Some(s) = &mut self.sketch {
            s.insert_hash(digest);
            return;
        }
        self.exact.push(digest);
        if self.exact.len() >= 2 * self.budget {
            self.compact();
            if self.exact.len() > self.budget {
                let mut s = CardinalityEstimator::new();
                for &d in &self.exact {
                    s.insert_hash(d);
                }
                self.exact = Vec::new();
                self.sketch = Some(s);
            }
        }
    }

    fn compact(&mut self) {
        if self.distinct < self.exact.len() {
            self.exact.sort_unstable();
            self.exact.dedup();
            self.distinct = self.exact.len();
        }
    }

    /// The count, and whether it is an estimate.
    pub fn count(&mut self) -> (u64, bool) {
        match &self.sketch {
            Some(s) => (s.estimate() as u64, true),
            None => {
                self.compact();
                (self.exact.len() as u64, false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A digest stream like the collector's (keyed hashes: uniform over u64), from
    /// splitmix64's finaliser.
    fn digest(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn keys_under_the_budget_are_counted_in_memory() {
        let mut k = RecordKeys::with_budget(100);
        for i in [1, 2, 3, 2, 1] {
            k.insert(digest(i));
        }
        let c = k.finish().unwrap();
        assert_eq!((c.distinct, c.duplicates, c.spilled_runs), (3, 2, 0));
    }

    #[test]
    fn duplicates_across_spilled_runs_are_counted_exactly() {
        // 10,000 keys through a budget of 64: about 150 runs on disk. Every seventh
        // key comes back much later, so most duplicates lie in different runs.
        let mut k = RecordKeys::with_budget(64);
        let mut expected_dups = 0;
        for i in 0..10_000u64 {
            k.insert(digest(i));
        }
        for i in (0..10_000u64).step_by(7) {
            k.insert(digest(i));
            expected_dups += 1;
        }
        // And one key three times in all.
        k.insert(digest(42));
        expected_dups += 1;
        let c = k.finish().unwrap();
        assert!(c.spilled_runs > 100, "{c:?}");
        assert_eq!(c.distinct, 10_000);
        assert_eq!(c.duplicates, expected_dups);
    }

    #[test]
    fn spilling_gives_the_same_counts_as_memory() {
        let input: Vec<u64> = (0..5_000u64).map(|i| digest(i % 3_001)).collect();
        let count = |budget| {
            let mut k = RecordKeys::with_budget(budget);
            input.iter().for_each(|d| k.insert(*d));
            k.finish().unwrap()
        };
        let (memory, disk) = (count(1 << 20), count(100));
        assert_eq!(memory.spilled_runs, 0);
        assert!(disk.spilled_runs > 0);
        assert_eq!(
            (memory.distinct, memory.duplicates),
            (disk.distinct, disk.duplicates)
        );
        assert_eq!((memory.distinct, memory.duplicates), (3_001, 1_999));
    }

    #[test]
    fn persons_are_exact_under_the_budget_and_estimated_above_it() {
        let mut p = Persons::with_budget(1_000);
        for i in 0..1_000u64 {
            p.insert(digest(i));
            p.insert(digest(i));
        }
        assert_eq!(p.count(), (1_000, false));
        for i in 1_000..200_000u64 {
            p.insert(digest(i));
        }
        let (n, estimated) = p.count();
        assert!(estimated);
        // 0.8 % standard error: 4 % is five of them.
        assert!(
            (n as f64 - 200_000.0).abs() < 200_000.0 * 0.04,
            "estimated {n} for 200,000"
        );
    }
}
