//! When a mart's numbers are published, and how they stay put.
//!
//! - **Periods.** Every mart is a table per period (a month or a quarter: its
//!   `-- period:` header), with margins within the period only. A total across
//!   periods would change each time a period is added, and the change would be the
//!   new period's suppressed cells.
//! - **Closing.** A period is published only once it is closed: its last day, plus the
//!   mart's follow-up (`-- follow_up: 90 days`: rehabilitation looks 90 days past the
//!   course), is past every dataset's reception deadline (the contracts' `reception`:
//!   14 days after the month for the municipalities, 3 or 7 days for the others).
//!   [`closes_on`] is the first day it is published. The open period is never
//!   published, so data arriving for it changes nothing until it closes.
//! - **Freezing.** Once published a period's numbers are frozen: every later
//!   publication carries them unchanged. When the data behind a frozen period changes
//!   (a late delivery, a correction), the period comes out again as a *revision*:
//!   new rows with `revision` n + 1 and their own publication date (`publiceret`),
//!   beside the old ones, never in their place. A revision goes through disclosure
//!   control against every earlier version of the period (rule 8 in
//!   `disclosure.rs`): no count or complement differs from one published before by
//!   1-4 persons. A stock (`-- period: … stock`: persons with a chronic disease at the
//!   month's end, patients of the last 12 months) overlaps its neighbours, so each of
//!   its periods is checked against every other period published too.
//! - **Revisable for a year.** Periods are recomputed (and revised) for
//!   [`REVISABLE_DAYS`] after they close; after that they are final, and carried as
//!   they are.
//!
//! The register of everything published is the mart's newest publication
//! (`presentation/marts/<name>/publication=YYYY-MM-DD/data.parquet`): every period and
//! revision with the day it was published, and the publication's `reference_date`. The
//! next publication reads it back to know what is frozen, and writes a folder of its
//! own beside it: earlier publications stay as they were.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, Duration, NaiveDate};

use crate::contract::Registry;
use crate::disclosure::{self, Cell, Entry, Family, Measure, SdcError};
use crate::publish::{FamilyPlan, MartSpec, TOTAL};
use crate::quality::reception;
use crate::standardisation;
use crate::validate::days_since_epoch;

/// The column that says which level a row of a mart with groups is
/// (`-- rollup:`): [`LEVEL_ROW`], a group's column name as in [`level_name`], or
/// [`LEVEL_TOTAL`].
pub const LEVEL: &str = "niveau";
/// The level of a mart's own rows (municipalities).
pub const LEVEL_ROW: &str = "kommune";
/// The level of the margin row (the country).
pub const LEVEL_TOTAL: &str = "land";

/// The level a `-- rollup:` column's groups are published as.
pub fn level_name(column: &str) -> String {
    match column {
        "regionskode" => "region".into(),
        other => other.into(),
    }
}

/// How long after it closes a period is recomputed and may be revised.
pub const REVISABLE_DAYS: i64 = 365;

/// The column with a row's revision number (0: the first publication).
pub const REVISION: &str = "revision";
/// The column with the day a row was published.
pub const PUBLISHED: &str = "publiceret";
/// The column with the reference date of the publication a table is: the day its
/// numbers are as of (frozen rows keep the numbers of the day in `publiceret`). The
/// same date as the `publication` partition the file lies in, so a file read on its
/// own still says what it is.
pub const REFERENCE_DATE: &str = "reference_date";
/// The column with the disclosure rule set a row was protected under.
pub const RULE_SET_COLUMN: &str = "disclosure_rule_set";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Month,
    Quarter,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "month" => Some(Granularity::Month),
            "quarter" => Some(Granularity::Quarter),
            _ => None,
        }
    }

    fn months(self) -> u32 {
        match self {
            Granularity::Month => 1,
            Granularity::Quarter => 3,
        }
    }

    /// The period that holds `d`.
    pub fn period_of(self, d: NaiveDate) -> Period {
        let first_month = (d.month0() / self.months()) * self.months() + 1;
        let start = NaiveDate::from_ymd_opt(d.year(), first_month, 1).expect("a month");
        let next = start
            .checked_add_months(chrono::Months::new(self.months()))
            .expect("a date");
        let label = match self {
            Granularity::Month => format!("{}-{:02}", d.year(), first_month),
            Granularity::Quarter => format!("{}-Q{}", d.year(), first_month.div_ceil(3)),
        };
        Period {
            start,
            end: next - Duration::days(1),
            label,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeriodSpec {
    /// The column that holds the period's label (`2026-10`, `2026-Q4`).
    pub column: String,
    pub granularity: Granularity,
    /// The mart counts a stock (a state at the period's end, or a window longer than
    /// the period): its periods overlap, so each is checked against the others.
    pub stock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub label: String,
}

/// The day by which every delivered dataset must have sent its data for `day`: the
/// latest reception deadline over the contracts.
pub fn complete_by(contracts: &Registry, day: NaiveDate) -> NaiveDate {
    contracts
        .iter()
        .filter_map(|c| c.reception.as_ref())
        .map(|r| reception::deadline(r, r.cadence, reception::period_start(r.cadence, day)))
        .max()
        .unwrap_or(day)
}

/// The first day period `p` of `spec` is published: the day after the data for its
/// last day plus the follow-up are due.
pub fn closes_on(spec: &MartSpec, contracts: &Registry, p: &Period) -> NaiveDate {
    complete_by(
        contracts,
        p.end + Duration::days(i64::from(spec.follow_up_days)),
    ) + Duration::days(1)
}

/// The periods a publication on `day` computes: closed, and closed less than
/// [`REVISABLE_DAYS`] before. Oldest first.
pub fn open_for_publication(spec: &MartSpec, contracts: &Registry, day: NaiveDate) -> Vec<Period> {
    let g = spec.period.granularity;
    let mut out = Vec::new();
    let mut p = g.period_of(day);
    loop {
        let closes = closes_on(spec, contracts, &p);
        if closes <= day - Duration::days(REVISABLE_DAYS) {
            break;
        }
        if closes <= day {
            out.push(p.clone());
        }
        p = g.period_of(p.start - Duration::days(1));
    }
    out.reverse();
    out
}

/// The first day on which every period holding one of the days up to `last_day` is
/// published, for every mart (what the demo publishes as of).
pub fn all_closed_after(
    marts: &[MartSpec],
    contracts: &Registry,
    last_day: NaiveDate,
) -> NaiveDate {
    marts
        .iter()
        .map(|m| closes_on(m, contracts, &m.period.granularity.period_of(last_day)))
        .max()
        .unwrap_or(last_day)
}

/// The `perioder` table the mart SQL joins: one row per period to compute.
pub fn periods_batch(periods: &[Period]) -> RecordBatch {
    let d = |f: fn(&Period) -> NaiveDate| -> ArrayRef {
        Arc::new(Date32Array::from(
            periods
                .iter()
                .map(|p| days_since_epoch(f(p)))
                .collect::<Vec<_>>(),
        ))
    };
    RecordBatch::try_new(
        periods_schema(),
        vec![
            Arc::new(StringArray::from(
                periods.iter().map(|p| p.label.clone()).collect::<Vec<_>>(),
            )),
            d(|p| p.start),
            d(|p| p.end),
        ],
    )
    .expect("the schema's columns")
}

pub fn periods_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("periode", DataType::Utf8, false),
        Field::new("periode_start", DataType::Date32, false),
        Field::new("periode_slut", DataType::Date32, false),
    ]))
}

// ---------------------------------------------------------------------------
// A period's data, and what was published of it.

/// One row of a mart's query result: its labels, counts, and the persons behind
/// each count that counts events.
#[derive(Debug, Clone, Default)]
pub struct RawCell {
    pub row: String,
    /// Empty for marts of one column.
    pub col: String,
    /// The stratum (`-- strata:` values joined by `|`); empty for marts without.
    pub stratum: String,
    /// The groups the row is in (`-- rollup:` values, innermost first; `None`: in
    /// no group at that level).
    pub groups: Vec<Option<String>>,
    pub counts: Vec<u64>,
    pub persons: Vec<Option<u64>>,
}

/// A period's query result.
#[derive(Debug, Clone, Default)]
pub struct RawPeriod {
    pub cells: Vec<RawCell>,
}

/// One published row: a cell or a margin of one period's table.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRow {
    pub row: String,
    /// The row's level in a mart with groups (`-- rollup:`): a municipality, a group,
    /// or the country; `None` in marts without.
    pub level: Option<String>,
    /// `None` for marts of one column.
    pub col: Option<String>,
    pub counts: Vec<Option<i64>>,
    pub rates: Vec<Option<f64>>,
}

/// One period as published on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub period: String,
    pub revision: i32,
    pub published: NaiveDate,
    pub rule_set: String,
    pub rows: Vec<LongRow>,
}

fn text_value(a: &ArrayRef, i: usize) -> String {
    if a.is_null(i) {
        return "ukendt".into();
    }
    arrow::util::display::array_value_to_string(a, i).unwrap_or_default()
}

fn count_value(a: &ArrayRef, i: usize) -> u64 {
    if a.is_null(i) {
        return 0;
    }
    arrow::util::display::array_value_to_string(a, i)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(0, |x| x.max(0.0) as u64)
}

/// The query result, cut into periods.
pub fn raw_by_period(
    spec: &MartSpec,
    batches: &[RecordBatch],
) -> Result<BTreeMap<String, RawPeriod>, String> {
    let mut out: BTreeMap<String, RawPeriod> = BTreeMap::new();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| format!("the query returns no column {name}"))
        };
        let period = col(&spec.period.column)?;
        let rows = col(&spec.rows)?;
        let cols = spec.cols.as_deref().map(col).transpose()?;
        let strata: Vec<ArrayRef> = spec
            .strata
            .iter()
            .map(|n| col(n))
            .collect::<Result<_, _>>()?;
        let groups: Vec<ArrayRef> = spec
            .rollup
            .iter()
            .map(|n| col(n))
            .collect::<Result<_, _>>()?;
        let counts: Vec<ArrayRef> = spec
            .counts
            .iter()
            .map(|n| col(n))
            .collect::<Result<_, _>>()?;
        let persons: Vec<Option<ArrayRef>> = spec
            .counts
            .iter()
            .map(|n| spec.persons_of(n).map(col).transpose())
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            let c = cols.as_ref().map_or(String::new(), |c| text_value(c, i));
            out.entry(text_value(&period, i))
                .or_default()
                .cells
                .push(RawCell {
                    row: text_value(&rows, i),
                    col: c,
                    stratum: strata
                        .iter()
                        .map(|a| text_value(a, i))
                        .collect::<Vec<_>>()
                        .join("|"),
                    groups: groups
                        .iter()
                        .map(|a| (!a.is_null(i)).then(|| text_value(a, i)))
                        .collect(),
                    counts: counts.iter().map(|a| count_value(a, i)).collect(),
                    persons: persons
                        .iter()
                        .map(|p| p.as_ref().map(|a| count_value(a, i)))
                        .collect(),
                });
        }
    }
    Ok(out)
}

fn entry_of(row: &str, col: Option<&str>) -> Vec<Entry> {
    match (row == TOTAL, col) {
        // One column: a row's cell is its row total, the column's total the grand.
        (true, None) => vec![Entry::Grand, Entry::ColTotal(String::new())],
        (false, None) => vec![
            Entry::Cell(row.into(), String::new()),
            Entry::RowTotal(row.into()),
        ],
        (true, Some(c)) if c == TOTAL => vec![Entry::Grand],
        (true, Some(c)) => vec![Entry::ColTotal(c.into())],
        (false, Some(c)) if c == TOTAL => vec![Entry::RowTotal(row.into())],
        (false, Some(c)) => vec![Entry::Cell(row.into(), c.into())],
    }
}

/// What `r` showed of count `m`, by entry.
fn shown(r: &Release, m: usize) -> std::collections::HashMap<Entry, u64> {
    let mut out = std::collections::HashMap::new();
    for row in &r.rows {
        if let Some(v) = row.counts[m] {
            for e in entry_of(&row.row, row.col.as_deref()) {
                out.insert(e, v.max(0) as u64);
            }
        }
    }
    out
}

/// The groups of a period's rows (`-- rollup:`): the tree the disclosure engine
/// protects, each group's level, and each node's rows.
struct Groups {
    tree: disclosure::Tree,
    levels: Vec<String>,
}

fn groups_of(spec: &MartSpec, raw: &RawPeriod, rows: &[String]) -> Groups {
    // Each row's chain of groups, innermost first, as its first cell names it.
    let mut chain: BTreeMap<&str, &[Option<String>]> = BTreeMap::new();
    for c in &raw.cells {
        chain.entry(c.row.as_str()).or_insert(&c.groups);
    }
    let mut index: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut groups: Vec<(String, Option<usize>)> = Vec::new();
    let mut levels = Vec::new();
    // Groups outermost first, so a group's parent exists before it; the first row
    // naming a group decides which group it is in.
    let mut node = |level: usize, label: &str, parent: Option<usize>| -> usize {
        *index.entry((level, label.to_string())).or_insert_with(|| {
            groups.push((label.to_string(), parent));
            levels.push(level_name(&spec.rollup[level]));
            groups.len() - 1
        })
    };
    let row_group = rows
        .iter()
        .map(|r| {
            let mut parent = None;
            for level in (0..spec.rollup.len()).rev() {
                if let Some(Some(label)) = chain.get(r.as_str()).and_then(|c| c.get(level)) {
                    parent = Some(node(level, label, parent));
                }
            }
            parent
        })
        .collect();
    Groups {
        tree: disclosure::Tree { groups, row_group },
        levels,
    }
}

/// Disclosure control for one period: each family of counts protected together,
/// against the earlier releases given; the long rows, margins included, with rates
/// from protected counts. A mart with groups (`-- rollup:`) has rows for each group
/// too, between its own rows and the country's, protected with their members.
/// Returns the rows and the primary and secondary suppressions.
pub fn protect_period(
    spec: &MartSpec,
    raw: &RawPeriod,
    earlier: &[&Release],
) -> Result<(Vec<LongRow>, usize, usize), SdcError> {
    let mut rows: Vec<String> = raw.cells.iter().map(|c| c.row.clone()).collect();
    let mut cols: Vec<String> = raw.cells.iter().map(|c| c.col.clone()).collect();
    rows.sort();
    rows.dedup();
    cols.sort();
    cols.dedup();
    if spec.cols.is_none() {
        cols = vec![String::new()];
    }
    let grouped = (!spec.rollup.is_empty()).then(|| groups_of(spec, raw, &rows));
    let grid = |f: &dyn Fn(&RawCell) -> u64| {
        let mut g = vec![vec![0u64; cols.len()]; rows.len()];
        for c in &raw.cells {
            let i = rows.binary_search(&c.row).expect("seen");
            let j = cols.binary_search(&c.col).expect("seen");
            g[i][j] += f(c);
        }
        g
    };
    let measure = |m: usize| Measure {
        counts: grid(&|c| c.counts[m]),
        persons: spec
            .persons_of(&spec.counts[m])
            .map(|_| grid(&|c| c.persons[m].unwrap_or(0).min(c.counts[m]))),
    };
    // Per count, per node (the rows, the groups, the country): its cells and total.
    type Entries = Vec<(Vec<Cell>, Cell)>;
    let mut protected: Vec<Option<Entries>> = vec![None; spec.counts.len()];
    let (mut primary, mut secondary) = (0, 0);
    for plan in spec.families() {
        let FamilyPlan {
            base,
            chains,
            persons,
        } = &plan;
        let order: Vec<usize> = std::iter::once(*base)
            .chain(chains.iter().flatten().copied())
            .chain(*persons)
            .collect();
        let mut base_measure = measure(*base);
        if let Some(pm) = persons {
            base_measure.persons = Some(grid(&|c| c.counts[*pm].min(c.counts[*base])));
        }
        let f = Family {
            rows: rows.clone(),
            cols: cols.clone(),
            base: base_measure,
            chains: chains
                .iter()
                .map(|ch| ch.iter().map(|&m| measure(m)).collect())
                .collect(),
            persons_published: persons.is_some(),
            overlapping: true,
            earlier: earlier
                .iter()
                .map(|r| order.iter().map(|&m| shown(r, m)).collect())
                .collect(),
        };
        let outputs: Vec<Entries> = match &grouped {
            Some(g) => {
                let t = disclosure::protect_tree(&f, &g.tree)?;
                primary += t.primary;
                secondary += t.secondary;
                t.entries
            }
            None => disclosure::protect_family(&f)?
                .into_iter()
                .map(|p| {
                    primary += p.primary;
                    secondary += p.secondary;
                    let mut nodes: Entries = p
                        .cells
                        .iter()
                        .cloned()
                        .zip(p.row_totals.iter().copied())
                        .collect();
                    nodes.push((p.col_totals.clone(), p.grand_total));
                    nodes
                })
                .collect(),
        };
        for (m, p) in order.iter().zip(outputs) {
            protected[*m] = Some(p);
        }
    }
    let protected: Vec<Entries> = protected
        .into_iter()
        .map(|p| p.expect("every count in a family"))
        .collect();

    // The nodes in publication order: rows, groups (innermost level first), country;
    // each with its label, level and the rows it sums.
    let ngroups = grouped.as_ref().map_or(0, |g| g.tree.groups.len());
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); rows.len() + ngroups + 1];
    for r in 0..rows.len() {
        members[r].push(r);
        members[rows.len() + ngroups].push(r);
        if let Some(g) = &grouped {
            let mut at = g.tree.row_group[r];
            while let Some(k) = at {
                members[rows.len() + k].push(r);
                at = g.tree.groups[k].1;
            }
        }
    }
    let mut nodes: Vec<(usize, String, Option<String>)> = (0..rows.len())
        .map(|r| {
            (
                r,
                rows[r].clone(),
                grouped.as_ref().map(|_| LEVEL_ROW.into()),
            )
        })
        .collect();
    if let Some(g) = &grouped {
        let mut by_level: Vec<usize> = (0..ngroups).collect();
        let depth = |l: &str| spec.rollup.iter().position(|c| level_name(c) == l);
        by_level.sort_by_key(|&k| (depth(&g.levels[k]), g.tree.groups[k].0.clone()));
        nodes.extend(by_level.into_iter().map(|k| {
            (
                rows.len() + k,
                g.tree.groups[k].0.clone(),
                Some(g.levels[k].clone()),
            )
        }));
    }
    nodes.push((
        rows.len() + ngroups,
        TOTAL.into(),
        grouped.as_ref().map(|_| LEVEL_TOTAL.into()),
    ));

    let value = |c: Cell| c.value().map(|v| v as i64);
    let standard =
        (!spec.strata.is_empty()).then(|| standardisation::Standard::of(spec, &raw.cells));
    let mut out = Vec::new();
    let one_col = spec.cols.is_none();
    let root = rows.len() + ngroups;
    for (node, label, level) in nodes {
        let js: Vec<Option<usize>> = if one_col {
            vec![None]
        } else {
            (0..=cols.len()).map(Some).collect()
        };
        for j in js {
            let counts: Vec<Option<i64>> = protected
                .iter()
                .map(|p| {
                    let (cells, total) = &p[node];
                    value(match j {
                        // One column: a row is its cell, the country its grand total.
                        None if node == root => *total,
                        None => cells[0],
                        Some(j) if j < cols.len() => cells[j],
                        Some(_) => *total,
                    })
                })
                .collect();
            let mut rates: Vec<Option<f64>> = spec
                .rates
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    let pos = |n: &str| spec.counts.iter().position(|c| c == n).expect("checked");
                    let c = |v: Option<i64>| v.map_or(Cell::Suppressed, |v| Cell::Value(v as u64));
                    spec.rate(
                        k,
                        c(counts[pos(&r.numerator)]),
                        c(counts[pos(&r.denominator)]),
                    )
                })
                .collect();
            if let Some(standard) = &standard {
                // The entry's cells: its rows and its column (or every column).
                let in_node = &members[node];
                let col = j.and_then(|j| cols.get(j));
                let strata = standardisation::strata_of(
                    spec,
                    raw.cells.iter().filter(|c| {
                        rows.binary_search(&c.row)
                            .is_ok_and(|i| in_node.contains(&i))
                            && col.is_none_or(|k| c.col == *k)
                    }),
                );
                let standardised: Vec<Option<f64>> = (0..spec.rates.len())
                    .map(|k| standard.rate(spec, k, rates[k], &strata))
                    .collect();
                rates.extend(standardised);
            }
            out.push(LongRow {
                row: label.clone(),
                level: level.clone(),
                col: j.map(|j| cols.get(j).cloned().unwrap_or_else(|| TOTAL.into())),
                counts,
                rates,
            });
        }
    }
    Ok((out, primary, secondary))
}

/// What one publication did to one mart.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Periods published for the first time.
    pub new_periods: Vec<String>,
    /// Frozen periods whose data changed: a revision of each.
    pub revised: Vec<String>,
    /// Frozen periods carried unchanged.
    pub frozen: usize,
    pub primary_suppressed: usize,
    pub secondary_suppressed: usize,
}

/// The releases an attacker holds before release `revision` of `period`, published
/// on `day`: for a stock every release of every period before it (earlier days, and
/// that day's earlier periods); for a flow the period's own earlier revisions.
fn before<'r>(
    spec: &MartSpec,
    register: &'r [Release],
    period: &str,
    revision: i32,
    day: NaiveDate,
) -> Vec<&'r Release> {
    register
        .iter()
        .filter(|r| {
            let same = r.period == period;
            let earlier = r.published < day
                || (r.published == day
                    && (r.period.as_str() < period || (same && r.revision < revision)));
            earlier && (spec.period.stock || same) && !(same && r.revision >= revision)
        })
        .collect()
}

/// Publishes `periods` into the register: a new period as revision 0, a frozen one
/// unchanged unless its data changed (then a revision dated `day`).
pub fn publish_periods(
    spec: &MartSpec,
    periods: &[Period],
    raw: &BTreeMap<String, RawPeriod>,
    register: &mut Vec<Release>,
    day: NaiveDate,
) -> Result<Outcome, SdcError> {
    let mut out = Outcome::default();
    let empty = RawPeriod::default();
    for p in periods {
        let data = raw.get(&p.label).unwrap_or(&empty);
        let latest = register
            .iter()
            .filter(|r| r.period == p.label)
            .max_by_key(|r| r.revision)
            .cloned();
        let next = match &latest {
            None if data.cells.is_empty() => continue,
            None => 0,
            Some(l) => {
                // Would the same data, protected as it was then, publish the same?
                let then = before(spec, register, &p.label, l.revision, l.published);
                let (again, _, _) = protect_period(spec, data, &then)?;
                if again == l.rows && l.rule_set == disclosure::RULE_SET {
                    out.frozen += 1;
                    continue;
                }
                l.revision + 1
            }
        };
        let now = before(spec, register, &p.label, next, day);
        let (rows, primary, secondary) = protect_period(spec, data, &now)?;
        if latest.as_ref().is_some_and(|l| l.rows == rows) {
            out.frozen += 1;
            continue;
        }
        out.primary_suppressed += primary;
        out.secondary_suppressed += secondary;
        if next == 0 {
            out.new_periods.push(p.label.clone());
        } else {
            out.revised.push(p.label.clone());
        }
        register.push(Release {
            period: p.label.clone(),
            revision: next,
            published: day,
            rule_set: disclosure::RULE_SET.into(),
            rows,
        });
    }
    register.sort_by(|a, b| (&a.period, a.revision).cmp(&(&b.period, b.revision)));
    Ok(out)
}

// ---------------------------------------------------------------------------
// The register as a table.

/// The published table's schema: period, rows, columns, counts, rates, revision,
/// publication day, rule set.
pub fn register_schema(spec: &MartSpec) -> SchemaRef {
    let mut fields = vec![
        Field::new(&spec.period.column, DataType::Utf8, false),
        Field::new(&spec.rows, DataType::Utf8, false),
    ];
    if !spec.rollup.is_empty() {
        fields.push(Field::new(LEVEL, DataType::Utf8, false));
    }
    if let Some(c) = &spec.cols {
        fields.push(Field::new(c, DataType::Utf8, false));
    }
    // Counts as signed 64-bit: Athena (and Hive's Parquet reader) has no unsigned
    // integer type. NULL = suppressed.
    fields.extend(
        spec.counts
            .iter()
            .map(|c| Field::new(c, DataType::Int64, true)),
    );
    fields.extend(
        spec.rate_columns()
            .iter()
            .map(|r| Field::new(r, DataType::Float64, true)),
    );
    fields.push(Field::new(REVISION, DataType::Int32, false));
    fields.push(Field::new(PUBLISHED, DataType::Date32, false));
    fields.push(Field::new(RULE_SET_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(REFERENCE_DATE, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// The register as the publication of `reference_date`.
pub fn register_batch(
    spec: &MartSpec,
    register: &[Release],
    reference_date: NaiveDate,
) -> RecordBatch {
    let rows = || {
        register
            .iter()
            .flat_map(|r| r.rows.iter().map(move |x| (r, x)))
    };
    let strings = |f: &dyn Fn(&Release, &LongRow) -> String| -> ArrayRef {
        Arc::new(StringArray::from(
            rows().map(|(r, x)| f(r, x)).collect::<Vec<_>>(),
        ))
    };
    let mut arrays: Vec<ArrayRef> = vec![
        strings(&|r, _| r.period.clone()),
        strings(&|_, x| x.row.clone()),
    ];
    if !spec.rollup.is_empty() {
        arrays.push(strings(&|_, x| x.level.clone().unwrap_or_default()));
    }
    if spec.cols.is_some() {
        arrays.push(strings(&|_, x| x.col.clone().unwrap_or_default()));
    }
    for m in 0..spec.counts.len() {
        arrays.push(Arc::new(Int64Array::from(
            rows().map(|(_, x)| x.counts[m]).collect::<Vec<_>>(),
        )));
    }
    for k in 0..spec.rate_columns().len() {
        arrays.push(Arc::new(Float64Array::from(
            rows().map(|(_, x)| x.rates[k]).collect::<Vec<_>>(),
        )));
    }
    arrays.push(Arc::new(Int32Array::from(
        rows().map(|(r, _)| r.revision).collect::<Vec<_>>(),
    )));
    arrays.push(Arc::new(Date32Array::from(
        rows()
            .map(|(r, _)| days_since_epoch(r.published))
            .collect::<Vec<_>>(),
    )));
    arrays.push(strings(&|r, _| r.rule_set.clone()));
    arrays.push(Arc::new(Date32Array::from(vec![
        days_since_epoch(
            reference_date
        );
        rows().count()
    ])));
    RecordBatch::try_new(register_schema(spec), arrays).expect("the register's schema")
}

/// The register read back from the published table; `Err` when the table has other
/// columns than `spec` declares (the mart changed shape).
pub fn read_register(spec: &MartSpec, batches: &[RecordBatch]) -> Result<Vec<Release>, String> {
    let want = register_schema(spec);
    let mut by_key: BTreeMap<(String, i32), Release> = BTreeMap::new();
    for b in batches {
        // The reference date is the publication's, not the register's (and tables
        // published before it existed lack it).
        let names: Vec<&String> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|n| *n != REFERENCE_DATE)
            .collect();
        let wanted: Vec<&String> = want
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|n| *n != REFERENCE_DATE)
            .collect();
        if names != wanted {
            return Err(format!("published columns {names:?}, declared {wanted:?}"));
        }
        let s = |name: &str| -> Result<&StringArray, String> {
            b.column_by_name(name)
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .ok_or(format!("{name} is not text"))
        };
        let period = s(&spec.period.column)?;
        let row = s(&spec.rows)?;
        let level = (!spec.rollup.is_empty()).then(|| s(LEVEL)).transpose()?;
        let col = spec.cols.as_deref().map(s).transpose()?;
        let rule = s(RULE_SET_COLUMN)?;
        let counts: Vec<&Int64Array> = spec
            .counts
            .iter()
            .map(|c| {
                b.column_by_name(c)
                    .and_then(|a| a.as_any().downcast_ref::<Int64Array>())
                    .ok_or(format!("{c} is not bigint"))
            })
            .collect::<Result<_, _>>()?;
        let rates: Vec<&Float64Array> = spec
            .rate_columns()
            .iter()
            .map(|r| {
                b.column_by_name(r)
                    .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
                    .ok_or(format!("{r} is not double"))
            })
            .collect::<Result<_, _>>()?;
        let revision = b
            .column_by_name(REVISION)
            .and_then(|a| a.as_any().downcast_ref::<Int32Array>())
            .ok_or("revision is not int")?;
        let published = b
            .column_by_name(PUBLISHED)
            .and_then(|a| a.as_any().downcast_ref::<Date32Array>())
            .ok_or("publiceret is not a date")?;
        for i in 0..b.num_rows() {
            let key = (period.value(i).to_string(), revision.value(i));
            let day = published
                .value_as_date(i)
                .ok_or("publiceret out of range")?;
            let r = by_key.entry(key.clone()).or_insert_with(|| Release {
                period: key.0.clone(),
                revision: key.1,
                published: day,
                rule_set: rule.value(i).to_string(),
                rows: Vec::new(),
            });
            let opt_i = |a: &Int64Array| (!a.is_null(i)).then(|| a.value(i));
            let opt_f = |a: &Float64Array| (!a.is_null(i)).then(|| a.value(i));
            r.rows.push(LongRow {
                row: row.value(i).to_string(),
                level: level.map(|l| l.value(i).to_string()),
                col: col.map(|c| c.value(i).to_string()),
                counts: counts.iter().map(|a| opt_i(a)).collect(),
                rates: rates.iter().map(|a| opt_f(a)).collect(),
            });
        }
    }
    Ok(by_key.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn spec(kind: &str) -> MartSpec {
        MartSpec::parse(
            "m",
            &format!(
                "-- period: maaned month {kind}\n-- rows: k\n-- counts: borgere, med\n\
                 -- nested: med < borgere\nSELECT 1"
            ),
        )
        .unwrap()
    }

    /// One period's data: (municipality, persons, of whom with the attribute).
    fn raw(cells: &[(&str, u64, u64)]) -> RawPeriod {
        RawPeriod {
            cells: cells
                .iter()
                .map(|&(k, n, m)| RawCell {
                    row: k.into(),
                    col: String::new(),
                    stratum: String::new(),
                    groups: Vec::new(),
                    counts: vec![n, m],
                    persons: vec![None, None],
                })
                .collect(),
        }
    }

    fn month(m: u32) -> Period {
        Granularity::Month.period_of(day(2026, m, 1))
    }

    fn shown(r: &Release, k: &str) -> (Option<i64>, Option<i64>) {
        let row = r.rows.iter().find(|x| x.row == k).unwrap();
        (row.counts[0], row.counts[1])
    }

    #[test]
    fn a_stock_month_is_checked_against_the_months_before_it() {
        // Persons with a chronic disease at October's and November's end: one more in
        // 101. Published as they are, November - October says one person came.
        let oct = raw(&[("101", 30, 10), ("147", 40, 20), ("151", 50, 25)]);
        let nov = raw(&[("101", 31, 10), ("147", 40, 20), ("151", 50, 25)]);
        let data: BTreeMap<String, RawPeriod> =
            [("2026-10".to_string(), oct), ("2026-11".to_string(), nov)].into();
        for (kind, compared) in [("stock", true), ("", false)] {
            let spec = spec(kind);
            let mut register = Vec::new();
            let out = publish_periods(
                &spec,
                &[month(10), month(11)],
                &data,
                &mut register,
                day(2026, 12, 15),
            )
            .unwrap();
            assert_eq!(out.new_periods, ["2026-10", "2026-11"]);
            let november = register.iter().find(|r| r.period == "2026-11").unwrap();
            if compared {
                assert_eq!(shown(november, "101").0, None, "31 - 30 is one person");
                assert_eq!(shown(november, TOTAL).0, None, "121 - 120 likewise");
                assert_eq!(shown(november, "147"), (Some(40), Some(20)), "unchanged");
            } else {
                // A flow's months count different events: nothing to subtract.
                assert_eq!(shown(november, "101").0, Some(31));
            }
        }
    }

    #[test]
    fn a_frozen_period_is_carried_and_a_change_is_a_dated_revision() {
        let spec = spec("stock");
        let oct = raw(&[("101", 30, 10), ("147", 40, 20)]);
        let mut data: BTreeMap<String, RawPeriod> = [("2026-10".to_string(), oct)].into();
        let mut register = Vec::new();
        // 15 November: October published.
        publish_periods(&spec, &[month(10)], &data, &mut register, day(2026, 11, 15)).unwrap();
        let first = register.clone();
        // 15 December: November published beside it; October, unchanged, is carried
        // as it was, although November is now there to compare it with.
        data.insert("2026-11".into(), raw(&[("101", 36, 12), ("147", 40, 20)]));
        let out = publish_periods(
            &spec,
            &[month(10), month(11)],
            &data,
            &mut register,
            day(2026, 12, 15),
        )
        .unwrap();
        assert_eq!(
            (out.frozen, out.new_periods.len(), out.revised.len()),
            (1, 1, 0)
        );
        assert_eq!(register[0], first[0]);
        // 16 December: a late record for October in 101 (30 -> 31, with the attribute).
        data.insert("2026-10".into(), raw(&[("101", 31, 11), ("147", 40, 20)]));
        let out = publish_periods(
            &spec,
            &[month(10), month(11)],
            &data,
            &mut register,
            day(2026, 12, 16),
        )
        .unwrap();
        assert_eq!(out.revised, ["2026-10"]);
        assert_eq!(out.frozen, 1, "November");
        assert_eq!(register[0], first[0], "the first publication stays");
        let revision = register
            .iter()
            .find(|r| r.period == "2026-10" && r.revision == 1)
            .unwrap();
        assert_eq!(revision.published, day(2026, 12, 16));
        // 31 - 30 and 11 - 10 would be the late person: withheld, and so is what would
        // give them back (the total, 71 - 70).
        assert_eq!(shown(revision, "101"), (None, None));
        assert_eq!(shown(revision, TOTAL).0, None);
        // The register reads back as written.
        let batch = register_batch(&spec, &register, day(2026, 12, 16));
        assert_eq!(read_register(&spec, &[batch]).unwrap(), register);
        // The same day again: nothing new.
        let before = register.clone();
        let out = publish_periods(
            &spec,
            &[month(10), month(11)],
            &data,
            &mut register,
            day(2026, 12, 16),
        )
        .unwrap();
        assert_eq!((out.frozen, out.revised.len()), (2, 0));
        assert_eq!(register, before);
    }

    /// A mart with groups: a row per cluster and region between the municipalities and
    /// the country, each the sum of its members, a small member hidden with a partner
    /// inside its own cluster so the cluster's row can be published.
    #[test]
    fn groups_get_rows_of_their_own_protected_with_their_members() {
        let mut spec = spec("");
        spec.rollup = vec!["klynge".into(), "regionskode".into()];
        let mut data = raw(&[
            ("101", 3, 0),
            ("147", 40, 10),
            ("751", 50, 20),
            ("999", 30, 0),
        ]);
        for c in &mut data.cells {
            c.groups = match c.row.as_str() {
                "101" | "147" => vec![Some("Byen".into()), Some("1084".into())],
                "751" => vec![Some("Aarhus".into()), Some("1082".into())],
                _ => vec![None, None],
            };
        }
        let (rows, _, _) = protect_period(&spec, &data, &[]).unwrap();
        let shown: Vec<(&str, &str, Option<i64>)> = rows
            .iter()
            .map(|r| (r.row.as_str(), r.level.as_deref().unwrap(), r.counts[0]))
            .collect();
        assert_eq!(
            shown,
            [
                ("101", LEVEL_ROW, None),
                ("147", LEVEL_ROW, None),
                ("751", LEVEL_ROW, Some(50)),
                ("999", LEVEL_ROW, Some(30)),
                ("Aarhus", "klynge", Some(50)),
                ("Byen", "klynge", Some(43)),
                ("1082", "region", Some(50)),
                ("1084", "region", Some(43)),
                (TOTAL, LEVEL_TOTAL, Some(123)),
            ]
        );
        // The register keeps the level.
        let day = day(2027, 1, 1);
        let release = Release {
            period: "2026-10".into(),
            revision: 0,
            published: day,
            rule_set: disclosure::RULE_SET.into(),
            rows,
        };
        let batch = register_batch(&spec, std::slice::from_ref(&release), day);
        assert_eq!(batch.schema().field(2).name(), LEVEL);
        assert_eq!(read_register(&spec, &[batch]).unwrap(), [release]);
    }

    #[test]
    fn periods_are_months_or_quarters() {
        let p = Granularity::Month.period_of(day(2026, 10, 5));
        assert_eq!(
            (p.label.as_str(), p.start, p.end),
            ("2026-10", day(2026, 10, 1), day(2026, 10, 31))
        );
        let q = Granularity::Quarter.period_of(day(2026, 11, 30));
        assert_eq!(
            (q.label.as_str(), q.start, q.end),
            ("2026-Q4", day(2026, 10, 1), day(2026, 12, 31))
        );
        let q = Granularity::Quarter.period_of(day(2027, 2, 1));
        assert_eq!(q.label, "2027-Q1");
    }

    #[test]
    fn a_period_closes_after_the_reception_deadlines() {
        let contracts = Registry::builtin();
        // The municipalities deliver up to 14 days after the month: October's data is
        // complete on 14 November.
        assert_eq!(
            complete_by(&contracts, day(2026, 10, 31)),
            day(2026, 11, 14)
        );
        let marts = crate::publish::marts();
        let mart = |n: &str| marts.iter().find(|m| m.name == n).unwrap();
        let october = Granularity::Month.period_of(day(2026, 10, 1));
        assert_eq!(
            closes_on(mart("speciallaege_aktivitet"), &contracts, &october),
            day(2026, 11, 15)
        );
        // Rehabilitation: the fourth quarter, plus 90 days of follow-up (31 March),
        // plus the municipalities' 14 days after March.
        let q4 = Granularity::Quarter.period_of(day(2026, 10, 1));
        assert_eq!(
            closes_on(mart("rehab_effekt"), &contracts, &q4),
            day(2027, 4, 15)
        );
        let open = open_for_publication(
            mart("speciallaege_aktivitet"),
            &contracts,
            day(2026, 11, 14),
        );
        assert_eq!(
            open.last().unwrap().label,
            "2026-09",
            "October is still open"
        );
        let open = open_for_publication(
            mart("speciallaege_aktivitet"),
            &contracts,
            day(2026, 11, 15),
        );
        assert_eq!(open.last().unwrap().label, "2026-10");
        assert_eq!(open.len(), 12, "a year of periods is recomputed");
        assert_eq!(
            all_closed_after(&marts, &contracts, day(2026, 10, 5)),
            day(2027, 4, 15)
        );
    }
}
