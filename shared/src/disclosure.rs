//! Statistical disclosure control (SDC) for published aggregate tables.
//!
//! Every count that leaves the trusted zone goes through here first. The rule set,
//! [`RULE_SET`], is recorded next to every published number.
//!
//! # Rules
//!
//! 1. **Primary suppression.** A person count of 1 to 4 (below [`MIN_CELL`]) is
//!    suppressed, in the body of a table and in its margins (a row total of 3 is a
//!    count of 3 persons). True zeros are published as 0 (but a count nested in a
//!    suppressed base is suppressed whatever it is, 0 included: rule 5).
//! 2. **Secondary (complementary) suppression.** Margins are published, so a lone
//!    suppressed cell could be recovered as *total − published cells*:
//!    - *Classic rule*: no row, column, row of column totals or column of row totals
//!      holds exactly one suppressed entry (its total counted as an entry). The
//!      complement is the smallest non-zero, unsuppressed cell of that line (ties: the
//!      first by position); the line's total only when the line has no such cell.
//!      Repeated until stable, since a complement in a row can leave its column with
//!      a single suppression.
//!    - *Nothing can be pinned down.* The classic rule is not enough, in two ways.
//!      Two blocks of suppressions joined by one suppressed cell satisfy it, yet the
//!      block's row equations minus its column equations give that cell exactly. And
//!      since zeros are published, everyone knows a suppressed entry is at least 1: a
//!      column whose two suppressed cells must sum to 2 gives both away as 1s. So,
//!      after the classic rule, every suppressed entry must lie on a cycle of
//!      suppressed entries (row, column, row, …) along which the counts can be moved
//!      by +1/−1 alternately, keeping every total, without taking a suppressed 1 to 0.
//!      Then the true table moved along that cycle is another table that fits all
//!      that is published, with another value in that entry. Where there is no such
//!      cycle, the cheapest one (fewest persons suppressed) is completed with
//!      complements. For one table this condition is exact (its constraint matrix is
//!      totally unimodular): no attacker who knows the published numbers, that
//!      counts are whole and not negative and that suppressed entries are not zero
//!      can pin down a suppressed entry, even by solving the integer program.
//!
//!    Zeros are never used as complements: a zero is often structural and known
//!    anyway (no births in a care home), and keeping them published is what makes
//!    "suppressed means at least 1" true, which the check above accounts for. Where
//!    a line has no non-zero candidate, its total is suppressed instead. The margins
//!    form lines of their own with the grand total (the column of row totals is one
//!    more column), so a suppressed total is protected the same way.
//! 3. **Tables sharing margins** ([`protect_joint`]). Tables over the same rows with
//!    the same row totals (municipality × sex and municipality × age group) are
//!    protected as one system: each table keeps its own row equations, all tied to
//!    the same row-total entries, and the checks run on the joint system. (A wide
//!    table made by concatenating the columns is *not* enough: its row equation is
//!    the sum of the tables' row equations, so it misses a cell that is alone in its
//!    row in one table while its row total is suppressed in the other.) The shared
//!    row totals and grand total come out suppressed in all the tables or in none.
//!    An entry on a cycle within its own table is safe as above. An entry whose
//!    cycles must run through shared totals gets a cautious test: with the other
//!    suppressed 1s taken as known, it must not be determined by the equations
//!    (rank, computed modulo the prime 2^61 − 1); else it gets complements.
//! 4. **Rates** ([`rate`]): a rate is published only when its numerator and its
//!    denominator are both published and both at least [`MIN_CELL`]. Compute rates
//!    from protected cells, never from raw counts, or the rate times a published
//!    denominator gives back a suppressed numerator. A share of a nested count
//!    ([`share`]) follows rule 5 as well.
//!
//! Rules 5-8 protect measures published side by side that bound each other, as one
//! [`Family`] ([`protect_family`]): a base and the counts nested in it, events and the
//! persons behind them, and the same table published again.
//!
//! 5. **Nested counts (complements).** A count nested in another in the same cell
//!    (courses followed by a GP contact, of all courses) makes the difference a count
//!    too: 7 courses and 6 with a contact say that one person had none. A family's
//!    base is protected by rules 1-2; then each chain of counts nested in it (within
//!    30 days ⊆ within 90 days ⊆ the base) gets one pattern for all its measures,
//!    which holds the base's (a count is suppressed wherever its base is, zeros
//!    included, so a hidden base of 3 cannot come with a published 0 of 3). Its primary
//!    suppressions: every *run of layers* of 1-4 persons — the layers being the
//!    disjoint groups the chain cuts the base into (with a contact within 30 days;
//!    within 90 but not 30; none within 90), a run any published count or difference
//!    of two (base − sub, 90 − 30 days). Secondary suppression, as in rule 2 but
//!    over layers: every suppressed entry must lie, for every run, on a cycle of
//!    suppressed entries along which one layer moves by +1/−1 against another (the
//!    base fixed) or with the base (the base moving along its own cycle, one layer of
//!    each chain following), without taking any layer below what an attacker knows
//!    of it (0; a layer of persons behind events, 1). Each move is another table of
//!    whole numbers that fits everything published — every measure's lines, the
//!    nesting, the bounds — with another value for that run, so no published count,
//!    complement or difference of two nested counts can be pinned down, by integer
//!    reasoning either. Chains (acute hospital contacts; GP contacts) are patterned
//!    separately: a move in one leaves the others where they are.
//! 6. **Shares of 0 % and 100 %.** A nested count of 0, or equal to its base, is
//!    suppressed (with rule 5's secondary suppression) when the base has fewer than
//!    [`MIN_SHARE_BASE`] persons: "all 12 had a contact" tells anyone who knows one of
//!    the 12 that that person had one.
//! 7. **Events by their persons.** A measure that counts events rather than persons
//!    (contacts, courses, rows) carries the distinct persons behind each cell
//!    ([`Measure::events`]), and is suppressed where those are 1-4, however many
//!    events: 40 contacts of 2 patients describe the 2. Where the persons are
//!    published too (contacts and patients), they are a chain of the events (persons
//!    ≤ events, and at least 1 where there are events). When a person may be in
//!    several cells ([`Family::overlapping`]: several disease areas, clinics,
//!    quarters), a margin's persons are known only to be at least its largest cell's,
//!    and it is suppressed unless that cell has 5.
//! 8. **Differences from earlier publications** ([`Family::earlier`]). Yesterday's
//!    and today's table of the same period (a revision), or two months of a stock,
//!    can be subtracted. Every count or complement published in both must differ by
//!    0 or by at least [`MIN_CELL`] persons; a difference of 1-4 makes the entry
//!    primary, and so does any change of an event count unless at least 5 of the
//!    persons behind it are known (from their published count) to have come or gone. Nothing else
//!    is needed: whatever two publications are, a suppressed entry that cannot be
//!    pinned down from today's table alone is not pinned down with yesterday's, since
//!    nothing bounds how much the data changed in between. The publish step adds the
//!    timing (`publication.rs`): a period is published only once closed, then frozen, and
//!    a correction comes out as a dated revision checked against every earlier one.
//!
//! 9. **Groups of rows** ([`protect_tree`]): municipalities in health clusters in
//!    regions, each group published as a row of its own. A group's row is the sum of
//!    its members', so a member's suppressed cell could be recovered as the group's
//!    minus the others'. Each group's table (its members, its own row as the margin)
//!    is protected like one table, top-down as HiTaS does: the country's table of
//!    regions, then each region's, then each cluster's; what a level suppresses in a
//!    group's row is suppressed in that group's margin below, and a margin entry a
//!    table below must hide is made primary above and everything is done again.
//!
//! # Attacks the tests make
//!
//! Differencing within a line, the linear (rank) attack and the integer attack on one
//! table; on families, the complement attack (7 courses, 6 with a contact — in the
//! cells or through the margins), 0/100 % shares on small bases, an event count of 40
//! from 2 persons, the integer attack over every measure, complement and difference of
//! nested counts (a search for another consistent table), and the difference between
//! two publications of changed data; on groups of rows, the linear attack over every
//! level's equations at once (a cluster minus its other members). Each is shown to
//! find the leak in what the rules before it published.
//!
//! # Assumptions and limits
//!
//! - Tables are additive: the margins published are the sums computed here. Publish no
//!   other totals beside them, and pass tables that share margins to [`protect_joint`]
//!   together and nested measures as one [`Family`]. Unless a family says its cells
//!   overlap, each person is counted in exactly one cell.
//! - For joint tables the guarantee is against real-valued (linear programming)
//!   attacks; integer reasoning through the shared totals is not proven (the tests
//!   find none), and a rank miss would need that prime to divide a subdeterminant.
//!   For families the cycles are sufficient (each is a feasible table), not
//!   necessary: they may suppress more than the least that would do.
//! - Measures of one family are assumed to be related only as declared: two chains
//!   (or two marts) are not nested in each other; an undeclared relation an attacker
//!   knows is not accounted for.
//! - Not enforced: how wide the remaining uncertainty is (an attacker may still learn
//!   that a suppressed cell is between 1 and 6, say; there are no protection
//!   intervals), reasoning about which cell the complement heuristic would have
//!   picked or why a count was suppressed, and dominance (one person behind most of
//!   a large event count of five or more persons).

use std::collections::HashMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// Name and version of the rules applied here; recorded with every publication.
pub const RULE_SET: &str = "naerdata-sdc-3: primary 1-4 suppressed (cells and margins; events \
     by the distinct persons behind them; margins of overlapping cells by their largest cell), \
     zeros kept in bases; nested counts protected with their base: no complement or difference \
     of nested counts of 1-4, no 0 % or 100 % share on a base below 20 persons, a nested count \
     suppressed wherever its base is; secondary suppression over row, column and grand totals \
     until no suppressed value, complement or difference is determined by the published \
     totals, nesting, non-negativity and suppressed bases >= 1; tables sharing row totals \
     protected jointly; rates suppressed when numerator or denominator < 5; no difference of \
     1-4 persons from an earlier publication of the same period or stock; groups of rows \
     (health clusters, regions) published beside their members, each group's table \
     protected top-down with the group's row as its margin, a suppression needed below \
     made primary above";

/// The smallest person count that may be published (other than 0).
pub const MIN_CELL: u64 = 5;

/// The smallest base (in persons) on which a share of 0 % or 100 % may be published.
/// Such a share says something about every member of the group, not about a count:
/// all 12 courses were followed by a contact tells anyone who knows one of the 12
/// that that person had one. Below 20 = 4 × [`MIN_CELL`] the complement rule already
/// keeps every published share of the group between 5/20 = 25 % and 75 %, so a 0 or
/// 100 % would be the only extreme a reader could see; from 20 on, a 0 or 100 %
/// describes a group of at least four publishable cells' worth of persons.
pub const MIN_SHARE_BASE: u64 = 4 * MIN_CELL;

/// A published count: its value, or suppressed.
///
/// Serialises as the number, or as `null` when suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cell {
    Value(u64),
    Suppressed,
}

impl Cell {
    /// The published value, `None` when suppressed.
    pub fn value(self) -> Option<u64> {
        match self {
            Cell::Value(v) => Some(v),
            Cell::Suppressed => None,
        }
    }

    pub fn is_suppressed(self) -> bool {
        self == Cell::Suppressed
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Value(v) => s.serialize_u64(*v),
            Cell::Suppressed => s.serialize_none(),
        }
    }
}

/// A two-dimensional table of person counts, before protection. Row totals, column
/// totals and the grand total are computed from `counts` (and published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `counts[row][col]`: persons in the cell; `rows.len()` × `cols.len()`.
    pub counts: Vec<Vec<u64>>,
}

/// A table after disclosure control, margins included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protected {
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub cells: Vec<Vec<Cell>>,
    pub row_totals: Vec<Cell>,
    pub col_totals: Vec<Cell>,
    pub grand_total: Cell,
    /// Entries (cells and margins) suppressed because they are 1 to 4.
    pub primary: usize,
    /// Entries suppressed as complements. For [`protect_joint`] the shared row totals
    /// and grand total are counted in every table.
    pub secondary: usize,
    pub rule_set: &'static str,
}

/// A one-dimensional table: counts with one total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    pub labels: Vec<String>,
    pub counts: Vec<u64>,
}

/// A [`Series`] after disclosure control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedSeries {
    pub labels: Vec<String>,
    pub cells: Vec<Cell>,
    pub total: Cell,
    pub primary: usize,
    pub secondary: usize,
    pub rule_set: &'static str,
}

/// Why tables could not be protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdcError {
    /// `counts` of table `table` is not `rows.len()` × `cols.len()`.
    Shape { table: usize },
    /// Table `table` does not have the same rows, in the same order, as table 0.
    RowsDiffer { table: usize },
    /// Table `table` has another total than table 0 for `row`: they do not share
    /// their row totals.
    RowTotalsDiffer { table: usize, row: String },
    /// A [`Family`] whose measures do not bound each other as declared.
    Family(String),
}

impl fmt::Display for SdcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdcError::Shape { table } => {
                write!(f, "table {table}: counts must be rows × cols")
            }
            SdcError::RowsDiffer { table } => {
                write!(f, "table {table}: rows differ from table 0's")
            }
            SdcError::RowTotalsDiffer { table, row } => {
                write!(
                    f,
                    "table {table}: the total of row {row:?} differs from table 0's"
                )
            }
            SdcError::Family(m) => write!(f, "family: {m}"),
        }
    }
}

impl std::error::Error for SdcError {}

/// Protects one table: primary and secondary suppression over its cells, row
/// totals, column totals and grand total.
///
/// # Panics
///
/// If `t.counts` is not `t.rows.len()` × `t.cols.len()`.
pub fn protect(t: &Table) -> Protected {
    match protect_joint(std::slice::from_ref(t)) {
        Ok(mut p) => p.pop().expect("one table in, one out"),
        Err(e) => panic!("disclosure::protect: {e}"),
    }
}

/// Protects tables that share their rows and row totals (and so their grand total)
/// as one system, so that nothing suppressed in one can be worked out with the help
/// of another. The shared margins come out the same in every table.
pub fn protect_joint(tables: &[Table]) -> Result<Vec<Protected>, SdcError> {
    let Some(first) = tables.first() else {
        return Ok(Vec::new());
    };
    for (k, t) in tables.iter().enumerate() {
        if t.counts.len() != t.rows.len() || t.counts.iter().any(|r| r.len() != t.cols.len()) {
            return Err(SdcError::Shape { table: k });
        }
        if t.rows != first.rows {
            return Err(SdcError::RowsDiffer { table: k });
        }
    }
    let row_totals: Vec<u64> = first.counts.iter().map(|r| r.iter().sum()).collect();
    for (k, t) in tables.iter().enumerate().skip(1) {
        if let Some(i) =
            (0..t.rows.len()).find(|&i| t.counts[i].iter().sum::<u64>() != row_totals[i])
        {
            return Err(SdcError::RowTotalsDiffer {
                table: k,
                row: t.rows[i].clone(),
            });
        }
    }

    // Entries: the row totals, the grand total, then per table its cells (row-major)
    // and its column totals. Lines: per table its rows, its columns and its row of
    // column totals; once, the column of row totals.
    let nrows = first.rows.len();
    let grand = nrows;
    let mut values = row_totals.clone();
    values.push(row_totals.iter().sum());
    let mut lines = Vec::new();
    let mut bases = Vec::new();
    for t in tables {
        let ncols = t.cols.len();
        let cell_base = values.len();
        values.extend(t.counts.iter().flatten());
        let total_base = values.len();
        values.extend((0..ncols).map(|j| t.counts.iter().map(|r| r[j]).sum::<u64>()));
        for i in 0..nrows {
            let interior = (0..ncols).map(|j| cell_base + i * ncols + j).collect();
            lines.push(Line { interior, total: i });
        }
        for j in 0..ncols {
            let interior = (0..nrows).map(|i| cell_base + i * ncols + j).collect();
            lines.push(Line {
                interior,
                total: total_base + j,
            });
        }
        lines.push(Line {
            interior: (total_base..total_base + ncols).collect(),
            total: grand,
        });
        bases.push((cell_base, total_base));
    }
    lines.push(Line {
        interior: (0..nrows).collect(),
        total: grand,
    });

    let state = Problem::new(&values, &lines).solve();
    let cell = |e: usize| match state[e] {
        State::Published => Cell::Value(values[e]),
        _ => Cell::Suppressed,
    };
    Ok(tables
        .iter()
        .zip(bases)
        .map(|(t, (cell_base, total_base))| {
            let ncols = t.cols.len();
            let own = (cell_base..total_base + ncols).chain(0..=grand);
            let count = |s: State| own.clone().filter(|&e| state[e] == s).count();
            Protected {
                rows: t.rows.clone(),
                cols: t.cols.clone(),
                cells: (0..nrows)
                    .map(|i| {
                        (0..ncols)
                            .map(|j| cell(cell_base + i * ncols + j))
                            .collect()
                    })
                    .collect(),
                row_totals: (0..nrows).map(cell).collect(),
                col_totals: (0..ncols).map(|j| cell(total_base + j)).collect(),
                grand_total: cell(grand),
                primary: count(State::Primary),
                secondary: count(State::Secondary),
                rule_set: RULE_SET,
            }
        })
        .collect())
}

/// Protects a one-dimensional table with its total.
///
/// # Panics
///
/// If `s.labels` and `s.counts` differ in length.
pub fn protect_series(s: &Series) -> ProtectedSeries {
    assert_eq!(
        s.labels.len(),
        s.counts.len(),
        "disclosure::protect_series: one label per count"
    );
    // As a one-row table: its column totals repeat the cells and its grand total
    // the total, so each is suppressed exactly when its twin is (else the twin's line
    // would give it away) and adds nothing to what an attacker learns.
    let t = Table {
        rows: vec![String::new()],
        cols: s.labels.clone(),
        counts: vec![s.counts.clone()],
    };
    let p = protect(&t);
    let cells = p.cells.into_iter().next().unwrap_or_default();
    let total = p.row_totals[0];
    let sum: u64 = s.counts.iter().sum();
    let entries = || s.counts.iter().zip(&cells).chain([(&sum, &total)]);
    let primary = entries()
        .filter(|(v, _)| (1..MIN_CELL).contains(*v))
        .count();
    let secondary = entries().filter(|(_, c)| c.is_suppressed()).count() - primary;
    ProtectedSeries {
        labels: s.labels.clone(),
        cells,
        total,
        primary,
        secondary,
        rule_set: RULE_SET,
    }
}

/// A rate or share, `numerator / denominator`, from protected cells. `None`
/// (suppressed) when either is suppressed or below [`MIN_CELL`], so also when the
/// numerator is 0 and when the denominator is 0.
pub fn rate(numerator: Cell, denominator: Cell) -> Option<f64> {
    match (numerator, denominator) {
        (Cell::Value(n), Cell::Value(d)) if n >= MIN_CELL && d >= MIN_CELL => {
            Some(n as f64 / d as f64)
        }
        _ => None,
    }
}

/// A share `part / whole` of a published base, from protected cells: the part is a
/// count nested in the whole (courses with a contact, of all courses). Published only
/// when both are published, the whole is at least [`MIN_CELL`], the rest
/// (`whole − part`) is not 1-4, and a share of 0 % or 100 % has a whole of at least
/// [`MIN_SHARE_BASE`]. [`protect_family`] already withholds such parts; this repeats
/// the rule so a share can never say more than its counts.
pub fn share(part: Cell, whole: Cell) -> Option<f64> {
    match (part, whole) {
        (Cell::Value(p), Cell::Value(w)) if p <= w && w >= MIN_CELL => {
            let rest = w - p;
            let small = |x: u64| (1..MIN_CELL).contains(&x);
            let extreme = p == 0 || rest == 0;
            if small(p) || small(rest) || (extreme && w < MIN_SHARE_BASE) {
                None
            } else {
                Some(p as f64 / w as f64)
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Families: measures published side by side over the same rows and columns that are
// not independent of each other.

/// One measure of a [`Family`]: a count per cell, and when it counts events rather
/// than persons (contacts, courses, rows), the distinct persons behind each cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measure {
    /// `counts[row][col]`.
    pub counts: Vec<Vec<u64>>,
    /// `persons[row][col]`: the distinct persons behind `counts`; `None` when the
    /// counts are persons.
    pub persons: Option<Vec<Vec<u64>>>,
}

impl Measure {
    pub fn persons(counts: Vec<Vec<u64>>) -> Self {
        Measure {
            counts,
            persons: None,
        }
    }

    pub fn events(counts: Vec<Vec<u64>>, persons: Vec<Vec<u64>>) -> Self {
        Measure {
            counts,
            persons: Some(persons),
        }
    }
}

/// An entry of a published table, by its labels: a cell or a margin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    Cell(String, String),
    RowTotal(String),
    ColTotal(String),
    Grand,
}

/// What one earlier publication of a family showed: per measure (in the order
/// [`protect_family`] returns them) the published entries; suppressed ones are absent.
pub type Release = Vec<HashMap<Entry, u64>>;

impl Protected {
    /// The published entries, by label (suppressed ones left out).
    pub fn release(&self) -> HashMap<Entry, u64> {
        let mut out = HashMap::new();
        let mut put = |k: Entry, c: Cell| {
            if let Cell::Value(v) = c {
                out.insert(k, v);
            }
        };
        for (i, r) in self.rows.iter().enumerate() {
            for (j, c) in self.cols.iter().enumerate() {
                put(Entry::Cell(r.clone(), c.clone()), self.cells[i][j]);
            }
            put(Entry::RowTotal(r.clone()), self.row_totals[i]);
        }
        for (j, c) in self.cols.iter().enumerate() {
            put(Entry::ColTotal(c.clone()), self.col_totals[j]);
        }
        put(Entry::Grand, self.grand_total);
        out
    }
}

/// Measures over the same rows and columns, published side by side, that bound each
/// other: a base (courses), chains of counts nested in it (courses followed by an
/// acute contact within 30 days ⊆ … within 90 days ⊆ courses), and, when the base
/// counts events, the distinct persons behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub base: Measure,
    /// Each chain innermost first: every measure counts a subset of what the next one
    /// counts, the last a subset of the base's (cell by cell). Independent chains
    /// (acute hospital contacts; GP contacts) are separate chains.
    pub chains: Vec<Vec<Measure>>,
    /// The base counts events, and `base.persons` is published too, as a measure of
    /// its own (contacts and patients): the persons are at most the events.
    pub persons_published: bool,
    /// A person may be counted in several cells (several disease areas, clinics or
    /// quarters), so a margin is not a count of distinct persons: the persons behind
    /// it are known only to be at least those of its largest cell.
    pub overlapping: bool,
    /// Earlier publications of tables these could be subtracted from: earlier
    /// versions of the same period, and for stocks, other periods.
    pub earlier: Vec<Release>,
}

/// Protects a [`Family`]; returns the base, then each chain's measures (innermost
/// first), then the persons measure if published. See the module's rules 5-8.
pub fn protect_family(f: &Family) -> Result<Vec<Protected>, SdcError> {
    protect_family_forced(f, &[])
}

/// [`protect_family`] with entries that must be suppressed, per output: the margins a
/// table shares with the level above it ([`protect_tree`]), suppressed there.
fn protect_family_forced(
    f: &Family,
    forced: &[std::collections::HashSet<Entry>],
) -> Result<Vec<Protected>, SdcError> {
    let (nrows, ncols) = (f.rows.len(), f.cols.len());
    let shape_ok = |m: &[Vec<u64>]| m.len() == nrows && m.iter().all(|r| r.len() == ncols);
    let measures: Vec<&Measure> = std::iter::once(&f.base)
        .chain(f.chains.iter().flatten())
        .collect();
    for (k, m) in measures.iter().enumerate() {
        if !shape_ok(&m.counts) || m.persons.as_ref().is_some_and(|p| !shape_ok(p)) {
            return Err(SdcError::Shape { table: k });
        }
    }
    if f.persons_published && f.base.persons.is_none() {
        return Err(SdcError::Family(
            "persons_published without the base's persons".into(),
        ));
    }
    let cells = || (0..nrows).flat_map(|i| (0..ncols).map(move |j| (i, j)));
    for m in &measures {
        if let Some(p) = &m.persons
            && let Some((i, j)) = cells().find(|&(i, j)| p[i][j] > m.counts[i][j])
        {
            return Err(SdcError::Family(format!(
                "more persons than events in ({}, {})",
                f.rows[i], f.cols[j]
            )));
        }
    }
    for (c, chain) in f.chains.iter().enumerate() {
        let levels: Vec<&Measure> = chain.iter().chain([&f.base]).collect();
        for w in levels.windows(2) {
            if let Some((i, j)) = cells().find(|&(i, j)| w[0].counts[i][j] > w[1].counts[i][j]) {
                return Err(SdcError::Family(format!(
                    "chain {c} is not nested in ({}, {})",
                    f.rows[i], f.cols[j]
                )));
            }
        }
    }

    let lay = Layout::new(nrows, ncols);
    let n = lay.n();
    let base = lay.values(&f.base.counts);
    let agg = |cell_values: &dyn Fn(usize, usize) -> u64, e: usize| -> u64 {
        let it = lay.cells_of(e).into_iter().map(|(i, j)| cell_values(i, j));
        if f.overlapping || lay.is_cell(e) {
            it.max().unwrap_or(0)
        } else {
            it.sum()
        }
    };
    let persons_of =
        |m: &Measure| -> Vec<Vec<u64>> { m.persons.clone().unwrap_or_else(|| m.counts.clone()) };
    let base_persons = persons_of(&f.base);
    let base_plb: Vec<u64> = (0..n).map(|e| agg(&|i, j| base_persons[i][j], e)).collect();

    // The chains, as levels (the chain's measures, then the base) and layers.
    let mut chains: Vec<Chain> = Vec::new();
    let mut output = 1;
    for chain in &f.chains {
        let mut levels: Vec<Vec<u64>> = chain.iter().map(|m| lay.values(&m.counts)).collect();
        levels.push(base.clone());
        let mut level_persons: Vec<Vec<Vec<u64>>> = chain.iter().map(persons_of).collect();
        level_persons.push(base_persons.clone());
        let mut events: Vec<bool> = chain.iter().map(|m| m.persons.is_some()).collect();
        events.push(f.base.persons.is_some());
        chains.push(Chain::new(
            levels,
            level_persons,
            events,
            (output..output + chain.len()).collect(),
            false,
        ));
        output += chain.len();
    }
    if f.persons_published {
        let p = f.base.persons.clone().expect("checked");
        chains.push(Chain::new(
            vec![lay.values(&p), base.clone()],
            vec![p.clone(), p],
            vec![false, true],
            vec![output],
            true,
        ));
    }

    // Primary suppression: the base (rule 1 and 6), the other quantities (rules 5-7),
    // and differences from earlier publications (rule 8).
    let mut primary_b: Vec<bool> = (0..n)
        .map(|e| base[e] >= 1 && base_plb[e] < MIN_CELL)
        .collect();
    let mut primary_s = vec![vec![false; n]; chains.len()];
    for (c, primary) in chains.iter().zip(&mut primary_s) {
        for &(a, b) in &c.intervals() {
            let Some(plb) = c.persons_lb(a, b, &agg) else {
                continue;
            };
            for e in 0..n {
                if c.value(a, b, e) >= 1 && plb[e] < MIN_CELL {
                    primary[e] = true;
                }
            }
        }
        if !c.persons_chain {
            for level in &c.levels[..c.levels.len() - 1] {
                for e in 0..n {
                    let extreme = level[e] == 0 || level[e] == base[e];
                    if base[e] >= 1 && extreme && base_plb[e] < MIN_SHARE_BASE {
                        primary[e] = true;
                    }
                }
            }
        }
    }
    let entries: Vec<Entry> = (0..n).map(|e| lay.entry(e, &f.rows, &f.cols)).collect();
    for o in &f.earlier {
        // What this release showed, by output and entry.
        let shown: Vec<Vec<Option<u64>>> = o
            .iter()
            .map(|m| entries.iter().map(|k| m.get(k).copied()).collect())
            .collect();
        let known =
            |output: usize, e: usize| -> Option<u64> { shown.get(output).and_then(|m| m[e]) };
        // The base.
        let persons_output = chains
            .iter()
            .find(|c| c.persons_chain)
            .map(|c| c.outputs[0]);
        let delta_b = |e: usize| known(0, e).map(|v| v.abs_diff(base[e]));
        let cell_lb_b = |i: usize, j: usize| -> u64 {
            let e = lay.cell(i, j);
            match (&f.base.persons, persons_output) {
                (None, _) => delta_b(e).unwrap_or(0),
                (Some(p), Some(po)) => known(po, e).map_or(0, |v| v.abs_diff(p[i][j])),
                (Some(_), None) => 0,
            }
        };
        for (e, primary) in primary_b.iter_mut().enumerate() {
            let Some(d) = delta_b(e) else { continue };
            let mut lb = agg(&cell_lb_b, e);
            if f.base.persons.is_none() && !f.overlapping {
                lb = lb.max(d);
            }
            if d != 0 && lb < MIN_CELL {
                *primary = true;
            }
        }
        // The other quantities.
        for (c, primary) in chains.iter().zip(&mut primary_s) {
            for &(a, b) in &c.intervals() {
                if c.persons_chain && a == 1 {
                    continue; // events beyond the first per person: not a count of persons
                }
                let seen = |e: usize| -> Option<u64> {
                    let hi = c.known_level(b, e, &known)?;
                    let lo = if a == 0 {
                        0
                    } else {
                        c.known_level(a - 1, e, &known)?
                    };
                    hi.checked_sub(lo)
                };
                let delta = |e: usize| seen(e).map(|v| v.abs_diff(c.value(a, b, e)));
                let persons = !c.events[b] && (a == 0 || !c.events[a - 1]);
                let cell_lb = |i: usize, j: usize| -> u64 {
                    if persons {
                        delta(lay.cell(i, j)).unwrap_or(0)
                    } else {
                        0
                    }
                };
                for (e, flag) in primary.iter_mut().enumerate() {
                    let Some(d) = delta(e) else { continue };
                    let mut lb = agg(&cell_lb, e);
                    if persons && !f.overlapping {
                        lb = lb.max(d);
                    }
                    if d != 0 && lb < MIN_CELL {
                        *flag = true;
                    }
                }
            }
        }
    }

    // Entries suppressed at the level above are primary here: a chain's in its
    // chain's pattern, the base's in the base's (and so in every chain's).
    for (o, keys) in forced.iter().enumerate() {
        for (e, _) in entries.iter().enumerate().filter(|(_, k)| keys.contains(k)) {
            if o == 0 {
                primary_b[e] = true;
            } else if let Some(c) = chains.iter().position(|c| c.outputs.contains(&o)) {
                primary_s[c][e] = true;
            }
        }
    }

    // The base's pattern: classic rule, then every suppressed entry on a cycle that
    // moves the base with one layer of every chain following (rule 5).
    let init_b = (0..n)
        .map(|e| {
            if primary_b[e] {
                State::Primary
            } else {
                State::Published
            }
        })
        .collect();
    let mut pb = Problem::with_state(&base, &lay.lines, init_b);
    pb.classic();
    let combos = combos(&chains.iter().map(|c| c.layers.len()).collect::<Vec<_>>());
    for e in 0..n {
        if pb.hidden(e)
            && let Some((_, path)) = base_move(&pb, &chains, &combos, e, None)
        {
            for c in path {
                pb.suppress(c);
            }
        }
    }

    // Each chain's pattern: a superset of the base's; every suppressed entry, for
    // every run of the chain's layers, on a cycle that changes it.
    let mut ps: Vec<Problem> = primary_s
        .iter()
        .map(|primary| {
            let state = (0..n)
                .map(|e| match pb.state[e] {
                    State::Published if primary[e] => State::Primary,
                    s => s,
                })
                .collect();
            let mut p = Problem::with_state(&base, &lay.lines, state);
            p.classic();
            p
        })
        .collect();
    // An entry once covered stays covered (suppressing more only adds cycles), so
    // each is checked once; later passes take the entries suppressed meanwhile.
    let mut covered: Vec<Vec<bool>> = vec![vec![false; n]; chains.len()];
    loop {
        let mut changed = false;
        for e in 0..n {
            for (c, done) in covered.iter_mut().enumerate() {
                if done[e] || !ps[c].hidden(e) {
                    continue;
                }
                while cover_nested(&mut pb, &mut ps, &chains, &combos, c, e) {
                    changed = true;
                }
                done[e] = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Outputs.
    let build = |values: &[u64], state: &[State], primary: &[bool]| -> Protected {
        let cell = |e: usize| {
            if state[e] == State::Published {
                Cell::Value(values[e])
            } else {
                Cell::Suppressed
            }
        };
        let hidden = (0..n).filter(|&e| state[e] != State::Published).count();
        let primary = (0..n)
            .filter(|&e| state[e] != State::Published && primary[e])
            .count();
        Protected {
            rows: f.rows.clone(),
            cols: f.cols.clone(),
            cells: (0..nrows)
                .map(|i| (0..ncols).map(|j| cell(lay.cell(i, j))).collect())
                .collect(),
            row_totals: (0..nrows).map(cell).collect(),
            col_totals: (0..ncols).map(|j| cell(lay.col_total(j))).collect(),
            grand_total: cell(lay.grand()),
            primary,
            secondary: hidden - primary,
            rule_set: RULE_SET,
        }
    };
    let mut out = vec![build(&base, &pb.state, &primary_b)];
    for ((c, p), primary) in chains.iter().zip(&ps).zip(&primary_s) {
        let primary: Vec<bool> = (0..n).map(|e| primary[e] || primary_b[e]).collect();
        for level in &c.levels[..c.levels.len() - 1] {
            out.push(build(level, &p.state, &primary));
        }
    }
    Ok(out)
}

/// Rows nested in groups (municipalities in health clusters in regions), every group
/// published beside its members: a group's row is the sum of its members' rows, and
/// the country's is the table's margin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The groups: label and the group it is in (`None`: directly in the country).
    /// Labels are unique among groups and rows.
    pub groups: Vec<(String, Option<usize>)>,
    /// For each row of the family, the group it is in (`None`: in the country).
    pub row_group: Vec<Option<usize>>,
}

/// A family protected with its groups: per output, each row's and group's entries
/// (cells, then its total), and the country's.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeProtected {
    /// Per output (as [`protect_family`]): rows, then groups, then the country.
    pub entries: Vec<Vec<(Vec<Cell>, Cell)>>,
    pub primary: usize,
    pub secondary: usize,
    /// How often a table below made an entry above primary (and all was redone).
    pub carried_up: usize,
}

/// Rule 9, **groups of rows** (HiTaS, as in τ-ARGUS): a municipality's cell is its
/// cluster's cell minus the cluster's other members, so each group's table (its
/// members as rows, the group's own row as the margin) is protected like one table,
/// top-down: the country's table of regions first, then each region's table of
/// clusters, then each cluster's of municipalities. What is suppressed in a group's
/// row at the level above is suppressed in its table's margin (and protected there);
/// when a table must suppress a margin entry the level above published, that entry
/// is made primary above and everything is protected again, until nothing changes.
/// Each table then has the guarantees of rules 1-8 with its margins; reasoning that
/// chains several levels' equations is not proven safe (the tests' linear attack
/// over the whole tree finds nothing).
pub fn protect_tree(f: &Family, tree: &Tree) -> Result<TreeProtected, SdcError> {
    let (nrows, ncols, ngroups) = (f.rows.len(), f.cols.len(), tree.groups.len());
    if tree.row_group.len() != nrows
        || tree
            .row_group
            .iter()
            .chain(tree.groups.iter().map(|(_, g)| g))
            .any(|g| g.is_some_and(|g| g >= ngroups))
    {
        return Err(SdcError::Family("the tree does not fit the rows".into()));
    }
    // Nodes: rows, groups, the country. Each node's children, in order.
    let root = nrows + ngroups;
    let parent = |node: usize| -> usize {
        let g = if node < nrows {
            tree.row_group[node]
        } else {
            tree.groups[node - nrows].1
        };
        g.map_or(root, |g| nrows + g)
    };
    let label = |node: usize| -> String {
        if node < nrows {
            f.rows[node].clone()
        } else if node < root {
            tree.groups[node - nrows].0.clone()
        } else {
            String::new()
        }
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); root + 1];
    for node in 0..root {
        children[parent(node)].push(node);
    }
    // A group inside itself would never be reached from the country.
    let mut order = vec![root];
    let mut i = 0;
    while i < order.len() {
        order.extend(children[order[i]].iter().copied().filter(|&c| c >= nrows));
        i += 1;
    }
    if order.len() != ngroups + 1 {
        return Err(SdcError::Family("the groups form a cycle".into()));
    }
    let mut labels: Vec<String> = (0..root).map(label).collect();
    labels.sort();
    if labels.windows(2).any(|w| w[0] == w[1]) {
        return Err(SdcError::Family("a label names two rows or groups".into()));
    }
    // Each node's sums of its rows' cells, per measure.
    let measures: Vec<&Measure> = std::iter::once(&f.base)
        .chain(f.chains.iter().flatten())
        .collect();
    let mut leaves: Vec<Vec<usize>> = vec![Vec::new(); root + 1];
    for r in 0..nrows {
        let mut node = r;
        loop {
            leaves[node].push(r);
            if node == root {
                break;
            }
            node = parent(node);
        }
    }
    let sum = |grid: &[Vec<u64>], node: usize| -> Vec<u64> {
        (0..ncols)
            .map(|j| leaves[node].iter().map(|&r| grid[r][j]).sum())
            .collect()
    };
    let sub_measure = |m: &Measure, rows: &[usize]| Measure {
        counts: rows.iter().map(|&n| sum(&m.counts, n)).collect(),
        persons: m
            .persons
            .as_ref()
            .map(|p| rows.iter().map(|&n| sum(p, n)).collect()),
    };
    let sub_family = |node: usize| -> Family {
        let rows = &children[node];
        let mut it = measures.iter().map(|m| sub_measure(m, rows));
        let base = it.next().expect("the base");
        Family {
            rows: rows.iter().map(|&c| label(c)).collect(),
            cols: f.cols.clone(),
            base,
            chains: f
                .chains
                .iter()
                .map(|ch| ch.iter().map(|_| it.next().expect("a level")).collect())
                .collect(),
            persons_published: f.persons_published,
            overlapping: f.overlapping,
            // An earlier release names a group's row by its label; in the group's own
            // table that row is the margin.
            earlier: f
                .earlier
                .iter()
                .map(|release| {
                    release
                        .iter()
                        .map(|shown| {
                            let mut out = HashMap::new();
                            for (k, v) in shown {
                                let own = |r: &str| node != root && r == label(node);
                                let key = match k {
                                    Entry::Cell(r, c) if own(r) => Entry::ColTotal(c.clone()),
                                    Entry::RowTotal(r) if own(r) => Entry::Grand,
                                    Entry::ColTotal(_) | Entry::Grand if node != root => {
                                        continue;
                                    }
                                    other => other.clone(),
                                };
                                out.insert(key, *v);
                            }
                            out
                        })
                        .collect()
                })
                .collect(),
        }
    };
    let outputs = measures.len() + usize::from(f.persons_published);
    let position = |node: usize| {
        children[parent(node)]
            .iter()
            .position(|&c| c == node)
            .expect("a child of its parent")
    };
    // Entries made primary in a group's table because a table below needed them.
    let mut forced: Vec<Vec<std::collections::HashSet<Entry>>> =
        vec![vec![Default::default(); outputs]; root + 1];
    let mut carried_up = 0;
    let results = loop {
        let mut results: HashMap<usize, Vec<Protected>> = HashMap::new();
        let mut again = false;
        for &node in &order {
            let mut keys = forced[node].clone();
            if node != root {
                // The group's row as the level above published it: its margin here.
                let above = &results[&parent(node)];
                let i = position(node);
                for (o, p) in above.iter().enumerate() {
                    for (j, c) in f.cols.iter().enumerate() {
                        if p.cells[i][j].is_suppressed() {
                            keys[o].insert(Entry::ColTotal(c.clone()));
                        }
                    }
                    if p.row_totals[i].is_suppressed() {
                        keys[o].insert(Entry::Grand);
                    }
                }
            }
            let out = protect_family_forced(&sub_family(node), &keys)?;
            if node != root {
                let up = parent(node);
                let i = position(node);
                let own = label(node);
                // An entry forced above is suppressed there; one that is not, though
                // asked for, would be published above and hidden here: refuse.
                let mut carry = |o: usize, e: Entry| -> Result<(), SdcError> {
                    if !forced[up][o].insert(e.clone()) {
                        return Err(SdcError::Family(format!(
                            "{e:?} stays published above though its group must hide it"
                        )));
                    }
                    again = true;
                    Ok(())
                };
                for (o, p) in out.iter().enumerate() {
                    let above = &results[&up][o];
                    for (j, c) in f.cols.iter().enumerate() {
                        if p.col_totals[j].is_suppressed() && !above.cells[i][j].is_suppressed() {
                            carry(o, Entry::Cell(own.clone(), c.clone()))?;
                        }
                    }
                    if p.grand_total.is_suppressed() && !above.row_totals[i].is_suppressed() {
                        carry(o, Entry::RowTotal(own.clone()))?;
                    }
                }
                if again {
                    break;
                }
            }
            results.insert(node, out);
        }
        if !again {
            break results;
        }
        carried_up += 1;
    };
    let mut entries: Vec<Vec<(Vec<Cell>, Cell)>> = vec![Vec::new(); outputs];
    for node in 0..=root {
        for (o, out) in entries.iter_mut().enumerate() {
            out.push(if node == root {
                let p = &results[&root][o];
                (p.col_totals.clone(), p.grand_total)
            } else {
                let p = &results[&parent(node)][o];
                let i = position(node);
                (p.cells[i].clone(), p.row_totals[i])
            });
        }
    }
    // Each hidden entry once, where it is a row of its table.
    let hidden = entries
        .iter()
        .flatten()
        .map(|(cells, total)| {
            cells
                .iter()
                .chain([total])
                .filter(|c| c.is_suppressed())
                .count()
        })
        .sum::<usize>();
    let primary = results
        .values()
        .flatten()
        .map(|p| p.primary)
        .sum::<usize>()
        .min(hidden);
    Ok(TreeProtected {
        entries,
        primary,
        secondary: hidden - primary,
        carried_up,
    })
}

/// A cycle found: its cost in persons and the complements on it.
type Found = (u64, Vec<usize>);

/// Persons behind an entry from persons behind each cell (the largest cell's, or the
/// sum when a person is in one cell only).
type Agg<'a> = dyn Fn(&dyn Fn(usize, usize) -> u64, usize) -> u64 + 'a;

/// Every combination of one layer per chain.
fn combos(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for &k in sizes {
        out = out
            .into_iter()
            .flat_map(|c| {
                (0..k).map(move |q| {
                    let mut c = c.clone();
                    c.push(q);
                    c
                })
            })
            .collect();
    }
    out
}

/// The cheapest cycle through `e` along which the base moves and, in every chain, one
/// layer moves with it (the rest of the chain fixed): a decrease needs the base at
/// least 2 and each following layer above its lower bound. `follow`: the layer chain
/// `.0` must follow with, if any.
fn base_move(
    pb: &Problem,
    chains: &[Chain],
    combos: &[Vec<usize>],
    e: usize,
    follow: Option<(usize, usize)>,
) -> Option<(u64, Vec<usize>)> {
    let mut best: Option<Found> = None;
    let allowed = || {
        combos
            .iter()
            .filter(move |combo| follow.is_none_or(|(c, q)| combo[c] == q))
    };
    let moves_for = |combo: &[usize]| {
        let combo = combo.to_vec();
        move |f: usize, s: i8| {
            s > 0
                || (pb.values[f] >= 2
                    && chains
                        .iter()
                        .zip(&combo)
                        .all(|(c, &q)| c.layers[q][f] > c.lb[q]))
        }
    };
    // A cycle of suppressed entries for any combination first: nothing is cheaper.
    for combo in allowed() {
        let allows = moves_for(combo);
        let moves = Moves {
            hidden: &|f| pb.hidden(f),
            hidden_in: &pb.hidden_in,
            cost: &|f| pb.candidate(f).then(|| pb.values[f]),
            allows: &allows,
        };
        if free_cycle(pb.lines, &pb.lines_of, e, &moves) {
            return Some((0, Vec::new()));
        }
    }
    for found in allowed().filter_map(|combo| {
        let allows = moves_for(combo);
        let moves = Moves {
            hidden: &|f| pb.hidden(f),
            hidden_in: &pb.hidden_in,
            cost: &|f| pb.candidate(f).then(|| pb.values[f]),
            allows: &allows,
        };
        cheapest_cycle(pb.lines, &pb.lines_of, e, &moves)
    }) {
        // A cycle of suppressed entries: none is cheaper.
        if found.0 == 0 {
            return Some(found);
        }
        if best.as_ref().is_none_or(|b| found.0 < b.0) {
            best = Some(found);
        }
    }
    best
}

/// Checks chain `c` at the suppressed entry `e`: every run of its layers (every
/// nested measure and every difference of two) must change along some cycle of
/// suppressed entries. Suppresses the complements of the cheapest cycle for the first
/// run that none changes, and returns true; false when all are covered.
fn cover_nested(
    pb: &mut Problem,
    ps: &mut [Problem],
    chains: &[Chain],
    combos: &[Vec<usize>],
    c: usize,
    e: usize,
) -> bool {
    let chain = &chains[c];
    let k = chain.layers.len();
    let own = &ps[c];
    // Two layers moving against each other, the base fixed: p by n, q by −n.
    let mut moves: Vec<(Vec<usize>, Found)> = Vec::new();
    for p in 0..k {
        for q in p + 1..k {
            let allows = |f: usize, s: i8| {
                if s < 0 {
                    chain.layers[p][f] > chain.lb[p]
                } else {
                    chain.layers[q][f] > chain.lb[q]
                }
            };
            let m = Moves {
                hidden: &|f| own.hidden(f),
                hidden_in: &own.hidden_in,
                cost: &|f| own.candidate(f).then(|| own.values[f]),
                allows: &allows,
            };
            if let Some(found) = cheapest_cycle(own.lines, &own.lines_of, e, &m) {
                moves.push((vec![p, q], found));
            }
        }
    }
    // The base moving with layer q of this chain (needs the base suppressed at e).
    // Covered by pair moves along suppressed entries alone: nothing more to look at.
    let intervals = chain.intervals();
    let by_pairs = |a: usize, b: usize| {
        let inside = |l: usize| (a..=b).contains(&l);
        moves
            .iter()
            .any(|(pq, m)| m.0 == 0 && inside(pq[0]) != inside(pq[1]))
    };
    if intervals.iter().all(|&(a, b)| by_pairs(a, b)) {
        return false;
    }
    let mut base_moves: Vec<(usize, Found)> = Vec::new();
    if pb.hidden(e) {
        for q in 0..k {
            if let Some(found) = base_move(pb, chains, combos, e, Some((c, q))) {
                base_moves.push((q, found));
            }
        }
    }
    for (a, b) in intervals {
        let inside = |l: usize| (a..=b).contains(&l);
        let pair = moves
            .iter()
            .filter(|(pq, _)| inside(pq[0]) != inside(pq[1]))
            .map(|(_, m)| (m, false));
        let with_base = base_moves
            .iter()
            .filter(|(q, _)| inside(*q))
            .map(|(_, m)| (m, true));
        let Some(((cost, path), on_base)) = pair.chain(with_base).min_by_key(|(m, b)| (m.0, *b))
        else {
            continue; // no cycle at all (cannot happen: see the module's rule 5)
        };
        if *cost == 0 {
            continue;
        }
        // A complement of the base is suppressed in every chain (their patterns hold
        // the base's); one of this chain's moves, in this chain.
        for &x in path {
            if on_base {
                pb.suppress(x);
                for p in ps.iter_mut().filter(|p| !p.hidden(x)) {
                    p.suppress(x);
                }
            } else {
                ps[c].suppress(x);
            }
        }
        return true;
    }
    false
}

/// One chain of a family as levels (its measures innermost first, then the base, as
/// entry values) and layers (`level[l] − level[l − 1]`, the first layer the first
/// level): the layers are disjoint groups that make up the base.
struct Chain {
    levels: Vec<Vec<u64>>,
    /// Persons behind each level, per cell (the counts when they are persons).
    persons: Vec<Vec<Vec<u64>>>,
    /// Which levels count events.
    events: Vec<bool>,
    layers: Vec<Vec<u64>>,
    /// What an attacker knows a suppressed layer is at least.
    lb: Vec<u64>,
    /// Output index of each level but the base.
    outputs: Vec<usize>,
    /// The persons behind an event base: the first layer is the persons (at least 1
    /// where there are events), the second the events beyond one per person.
    persons_chain: bool,
}

impl Chain {
    fn new(
        levels: Vec<Vec<u64>>,
        persons: Vec<Vec<Vec<u64>>>,
        events: Vec<bool>,
        outputs: Vec<usize>,
        persons_chain: bool,
    ) -> Self {
        let layers: Vec<Vec<u64>> = (0..levels.len())
            .map(|l| {
                (0..levels[l].len())
                    .map(|e| levels[l][e] - if l == 0 { 0 } else { levels[l - 1][e] })
                    .collect()
            })
            .collect();
        let mut lb = vec![0; layers.len()];
        if persons_chain {
            lb[0] = 1;
        }
        Chain {
            levels,
            persons,
            events,
            layers,
            lb,
            outputs,
            persons_chain,
        }
    }

    /// Runs of layers `a..=b` but the whole (the base): each is a published measure
    /// or the difference of two nested ones.
    fn intervals(&self) -> Vec<(usize, usize)> {
        let k = self.layers.len();
        (0..k)
            .flat_map(|a| (a..k).map(move |b| (a, b)))
            .filter(|&(a, b)| !(a == 0 && b == k - 1))
            .collect()
    }

    fn value(&self, a: usize, b: usize, e: usize) -> u64 {
        self.levels[b][e] - if a == 0 { 0 } else { self.levels[a - 1][e] }
    }

    /// A lower bound on the persons behind run `a..=b` at every entry; `None` for the
    /// events beyond one per person, which are not a count of persons.
    fn persons_lb(&self, a: usize, b: usize, agg: &Agg) -> Option<Vec<u64>> {
        if self.persons_chain && a == 1 {
            return None;
        }
        let cell = |i: usize, j: usize| -> u64 {
            let hi = self.persons[b][i][j];
            let lo = if a == 0 { 0 } else { self.persons[a - 1][i][j] };
            let ncols = self.persons[b].first().map_or(0, Vec::len);
            let nrows = self.persons[b].len();
            let e = nrows + 1 + i * ncols + j;
            hi.saturating_sub(lo)
                .max(u64::from(self.value(a, b, e) >= 1))
        };
        Some((0..self.levels[0].len()).map(|e| agg(&cell, e)).collect())
    }

    /// Level `l` at entry `e` as an earlier release showed it (the base is output 0).
    fn known_level(
        &self,
        l: usize,
        e: usize,
        known: &dyn Fn(usize, usize) -> Option<u64>,
    ) -> Option<u64> {
        if l == self.levels.len() - 1 {
            known(0, e)
        } else {
            known(self.outputs[l], e)
        }
    }
}

/// The entries and lines of one table with its margins: row totals, the grand total,
/// the cells (row-major), the column totals.
struct Layout {
    nrows: usize,
    ncols: usize,
    lines: Vec<Line>,
}

impl Layout {
    fn new(nrows: usize, ncols: usize) -> Self {
        let cb = nrows + 1;
        let tb = cb + nrows * ncols;
        let mut lines: Vec<Line> = (0..nrows)
            .map(|i| Line {
                interior: (0..ncols).map(|j| cb + i * ncols + j).collect(),
                total: i,
            })
            .collect();
        lines.extend((0..ncols).map(|j| Line {
            interior: (0..nrows).map(|i| cb + i * ncols + j).collect(),
            total: tb + j,
        }));
        lines.push(Line {
            interior: (tb..tb + ncols).collect(),
            total: nrows,
        });
        lines.push(Line {
            interior: (0..nrows).collect(),
            total: nrows,
        });
        Layout {
            nrows,
            ncols,
            lines,
        }
    }

    fn n(&self) -> usize {
        self.nrows + 1 + self.nrows * self.ncols + self.ncols
    }

    fn grand(&self) -> usize {
        self.nrows
    }

    fn cell(&self, i: usize, j: usize) -> usize {
        self.nrows + 1 + i * self.ncols + j
    }

    fn col_total(&self, j: usize) -> usize {
        self.nrows + 1 + self.nrows * self.ncols + j
    }

    fn is_cell(&self, e: usize) -> bool {
        (self.nrows + 1..self.col_total(0)).contains(&e)
    }

    /// The cells an entry sums (a cell: itself).
    fn cells_of(&self, e: usize) -> Vec<(usize, usize)> {
        let (r, c) = (self.nrows, self.ncols);
        if e < r {
            (0..c).map(|j| (e, j)).collect()
        } else if e == r {
            (0..r).flat_map(|i| (0..c).map(move |j| (i, j))).collect()
        } else if self.is_cell(e) {
            let k = e - r - 1;
            vec![(k / c, k % c)]
        } else {
            let j = e - self.col_total(0);
            (0..r).map(|i| (i, j)).collect()
        }
    }

    fn values(&self, counts: &[Vec<u64>]) -> Vec<u64> {
        (0..self.n())
            .map(|e| {
                self.cells_of(e)
                    .into_iter()
                    .map(|(i, j)| counts[i][j])
                    .sum()
            })
            .collect()
    }

    fn entry(&self, e: usize, rows: &[String], cols: &[String]) -> Entry {
        let (r, c) = (self.nrows, self.ncols);
        if e < r {
            Entry::RowTotal(rows[e].clone())
        } else if e == r {
            Entry::Grand
        } else if self.is_cell(e) {
            let k = e - r - 1;
            Entry::Cell(rows[k / c].clone(), cols[k % c].clone())
        } else {
            Entry::ColTotal(cols[e - self.col_total(0)].clone())
        }
    }
}

// ---------------------------------------------------------------------------
// The engine: entries (cells and totals) and lines `sum(interior) = total`.
//
// An attacker knows the published values, the lines, that counts are whole numbers
// and not negative, and that a suppressed entry is at least 1 (zeros are
// published). A suppressed entry is safe when some other table of counts that is
// consistent with all of that has another value there. Moving from the true counts
// `x` in a direction `n` keeps the lines when `n` is in the null space of the line
// equations, and keeps the bounds when `n ≥ 0` on the suppressed entries that are 1
// ("tight"). So entry `e` is safe when such an `n` has `n_e ≠ 0`.

/// One additive constraint: the interior entries sum to the total entry.
#[derive(Debug, Clone)]
struct Line {
    interior: Vec<usize>,
    total: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Published,
    Primary,
    Secondary,
}

struct Problem<'a> {
    values: &'a [u64],
    lines: &'a [Line],
    /// The lines each entry is in, with the entry's sign there (+1 interior, −1 total).
    lines_of: Vec<Vec<(usize, i8)>>,
    state: Vec<State>,
    /// The suppressed entries of each line (kept with `state` by [`Problem::hide`]).
    hidden_in: Vec<Vec<usize>>,
}

/// The prime 2^61 − 1, for the rank computation.
const P: u64 = (1 << 61) - 1;

impl<'a> Problem<'a> {
    fn new(values: &'a [u64], lines: &'a [Line]) -> Self {
        let state = values
            .iter()
            .map(|&v| {
                if (1..MIN_CELL).contains(&v) {
                    State::Primary
                } else {
                    State::Published
                }
            })
            .collect();
        Self::with_state(values, lines, state)
    }

    /// A problem whose entries start in `state` (primary suppressions chosen by the
    /// caller); `values` are the persons a complement costs, and zeros are never
    /// complements.
    fn with_state(values: &'a [u64], lines: &'a [Line], state: Vec<State>) -> Self {
        let mut p = Problem {
            values,
            lines,
            lines_of: lines_of(values.len(), lines),
            state: vec![State::Published; values.len()],
            hidden_in: vec![Vec::new(); lines.len()],
        };
        for (e, s) in state.into_iter().enumerate() {
            p.hide(e, s);
        }
        p
    }

    /// Sets `e`'s state (suppressed stays suppressed).
    fn hide(&mut self, e: usize, s: State) {
        if s == State::Published {
            return;
        }
        if !self.hidden(e) {
            for &(l, _) in &self.lines_of[e] {
                self.hidden_in[l].push(e);
            }
        }
        self.state[e] = s;
    }

    fn hidden(&self, e: usize) -> bool {
        self.state[e] != State::Published
    }

    /// Suppressed and 1: an attacker's lower bound is its value.
    fn tight(&self, e: usize) -> bool {
        self.hidden(e) && self.values[e] == 1
    }

    /// May `e` become a complement? Published and not zero (so at least 5: never tight).
    fn candidate(&self, e: usize) -> bool {
        !self.hidden(e) && self.values[e] > 0
    }

    fn key(&self, e: usize) -> (u64, usize) {
        (self.values[e], e)
    }

    fn suppress(&mut self, e: usize) {
        debug_assert!(self.candidate(e));
        self.hide(e, State::Secondary);
    }

    /// The complement for line `l`: its smallest candidate cell, else its total.
    fn complement_in(&self, l: usize) -> Option<usize> {
        let line = &self.lines[l];
        let cell = line
            .interior
            .iter()
            .copied()
            .filter(|&e| self.candidate(e))
            .min_by_key(|&e| self.key(e));
        cell.or(Some(line.total).filter(|&t| self.candidate(t)))
    }

    /// Runs the rules; returns each entry's state.
    fn solve(mut self) -> Vec<State> {
        self.classic();
        self.close_cycles();
        if self.lines_of.iter().any(|ls| ls.len() > 2) {
            while self.fix_linear() {}
        }
        self.state
    }

    /// The classic rule: no line with exactly one suppressed entry. Always finds a
    /// complement: the single suppressed entry is at least 1, so the line has another
    /// non-zero entry (its total, or a cell when the total is the one suppressed).
    fn classic(&mut self) {
        loop {
            let mut changed = false;
            for l in 0..self.lines.len() {
                let line = &self.lines[l];
                let hidden = line
                    .interior
                    .iter()
                    .chain([&line.total])
                    .filter(|&&e| self.hidden(e))
                    .count();
                if hidden == 1
                    && let Some(c) = self.complement_in(l)
                {
                    self.suppress(c);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    // -- Entries in exactly two lines (all of one table's; a joint system's own cells
    // and column totals) are the edges of a graph on the lines. Entry `e` is safe if
    // it lies on a cycle of suppressed such entries along which the signed moves (±1)
    // never lower a tight entry: the truth moved by ±1 along it is another integer
    // solution. For one table this is also necessary (its matrix is totally
    // unimodular, so conformal decomposition gives such a cycle whenever `e` can move).

    /// Puts every suppressed two-line entry on such a cycle, completing the cheapest
    /// one (in persons suppressed) with complements where there is none. Suppressing
    /// more only adds cycles, so one pass in entry order suffices; complements lie on
    /// the cycle they were added for. For one table a cycle always exists: with every
    /// non-zero entry suppressed, the truth doubled is another solution. In a joint
    /// system an entry may have none without shared entries; [`Self::fix_linear`]
    /// takes those.
    fn close_cycles(&mut self) {
        for e in 0..self.values.len() {
            if self.hidden(e) && self.lines_of[e].len() == 2 {
                for c in self.cheapest_cycle(e).unwrap_or_default() {
                    self.suppress(c);
                }
            }
        }
    }

    fn on_cycle(&self, e: usize) -> bool {
        self.lines_of[e].len() == 2 && self.cheapest_cycle(e).is_some_and(|p| p.is_empty())
    }

    /// The candidates on the cheapest admissible cycle of two-line entries through
    /// `e` (empty when one of suppressed entries exists; `None` when there is none).
    fn cheapest_cycle(&self, e: usize) -> Option<Vec<usize>> {
        let moves = Moves {
            hidden: &|f| self.hidden(f),
            hidden_in: &self.hidden_in,
            cost: &|f| self.candidate(f).then(|| self.values[f]),
            allows: &|f, s| s > 0 || !self.tight(f),
        };
        cheapest_cycle(self.lines, &self.lines_of, e, &moves).map(|c| c.1)
    }

    // -- Several tables: the shared totals are in more than two lines, and entries
    // whose only cycles run through them need another test. A sufficient, cautious
    // one: treat the other tight entries as known and ask whether `e` is then
    // determined by the line equations (rank). If not, a null-space direction moves
    // `e` and no other tight entry, so the linear relaxation (real counts, suppressed
    // ≥ 1) cannot pin `e`. Entries already on a cycle are safe and skipped.

    /// One round: finds the exposed entries and suppresses complements; false when
    /// nothing is exposed or nothing is left to suppress (then every non-zero entry
    /// is suppressed and the truth doubled is another solution: nothing is pinned).
    fn fix_linear(&mut self) -> bool {
        let exposed: Vec<_> = self
            .linear_exposures()
            .into_iter()
            .filter(|(e, _)| !self.on_cycle(*e))
            .collect();
        let mut added: Vec<usize> = Vec::new();
        let mut stuck = None;
        for (e, resolvers) in exposed {
            // Suppressing more never exposes an entry, so one round fixes several;
            // an entry fixed by this round's choices is skipped.
            if resolvers.iter().any(|c| added.contains(c)) {
                continue;
            }
            match resolvers.first() {
                Some(&c) => {
                    self.suppress(c);
                    added.push(c);
                }
                None => stuck = stuck.or(Some(e)),
            }
        }
        if !added.is_empty() {
            return true;
        }
        // No single complement does it: widen around the first exposed entry (or
        // anywhere) and let the next round build on that.
        let Some(e) = stuck else { return false };
        let near = self.lines_of[e]
            .iter()
            .filter_map(|&(l, _)| self.complement_in(l))
            .min_by_key(|&c| self.key(c));
        let anywhere = || {
            (0..self.values.len())
                .filter(|&c| self.candidate(c))
                .min_by_key(|&c| self.key(c))
        };
        match near.or_else(anywhere) {
            Some(c) => {
                self.suppress(c);
                true
            }
            None => false,
        }
    }

    /// Exposed suppressed entries, each with the candidates (cheapest first) whose
    /// suppression alone would protect it.
    ///
    /// Row-reduces the line equations (modulo the prime `P`) over the non-tight
    /// suppressed entries `N`, carrying the tight entries' and the candidates'
    /// columns along. Rows past the rank are zero on `N`.
    /// - `e` in `N` is determined iff its pivot row has no free `N` column; suppressing
    ///   `c` protects it iff `c`'s column is zero past the rank (it joins as a free
    ///   column) and non-zero in that pivot row.
    /// - tight `e` (other tight entries known) is free iff its column is zero past the
    ///   rank; suppressing `c` protects it iff past the rank its column is a multiple
    ///   of `c`'s.
    fn linear_exposures(&self) -> Vec<(usize, Vec<usize>)> {
        let n = self.values.len();
        let loose: Vec<usize> = (0..n)
            .filter(|&e| self.hidden(e) && !self.tight(e))
            .collect();
        let tight: Vec<usize> = (0..n).filter(|&e| self.tight(e)).collect();
        if loose.is_empty() && tight.is_empty() {
            return Vec::new();
        }
        let mut near = vec![false; n];
        for e in (0..n).filter(|&e| self.hidden(e)) {
            for &(l, _) in &self.lines_of[e] {
                let line = &self.lines[l];
                for &f in line.interior.iter().chain([&line.total]) {
                    near[f] = true;
                }
            }
        }
        let cands: Vec<usize> = (0..n).filter(|&e| near[e] && self.candidate(e)).collect();
        let columns: Vec<usize> = loose.iter().chain(&tight).chain(&cands).copied().collect();
        let mut col_of = vec![usize::MAX; n];
        for (c, &e) in columns.iter().enumerate() {
            col_of[e] = c;
        }
        let mut m: Vec<Vec<u64>> = Vec::new();
        for line in self.lines {
            let mut row = vec![0u64; columns.len()];
            for &e in &line.interior {
                if col_of[e] != usize::MAX {
                    row[col_of[e]] = 1;
                }
            }
            if col_of[line.total] != usize::MAX {
                row[col_of[line.total]] = P - 1;
            }
            if row.iter().any(|&x| x != 0) {
                m.push(row);
            }
        }

        let nl = loose.len();
        let mut pivot_row = vec![None; nl];
        let mut rank = 0;
        for (col, pivot) in pivot_row.iter_mut().enumerate() {
            let Some(r) = (rank..m.len()).find(|&r| m[r][col] != 0) else {
                continue;
            };
            m.swap(rank, r);
            let inv = pow_mod(m[rank][col], P - 2);
            for x in m[rank].iter_mut() {
                *x = mul_mod(*x, inv);
            }
            let prow = m[rank].clone();
            for (i, row) in m.iter_mut().enumerate() {
                let f = row[col];
                if i != rank && f != 0 {
                    for (x, &p) in row.iter_mut().zip(&prow) {
                        if p != 0 {
                            *x = (*x + P - mul_mod(f, p)) % P;
                        }
                    }
                }
            }
            *pivot = Some(rank);
            rank += 1;
        }
        let past = &m[rank..];
        let free: Vec<usize> = (0..nl).filter(|&c| pivot_row[c].is_none()).collect();
        let cand_cols = nl + tight.len()..columns.len();
        let in_span = |c: usize| past.iter().all(|row| row[c] == 0);
        let sorted = |mut v: Vec<usize>| {
            v.sort_by_key(|&e| self.key(e));
            v
        };

        let mut out = Vec::new();
        for (col, pivot) in pivot_row.iter().enumerate() {
            let Some(p) = *pivot else { continue };
            if free.iter().all(|&f| m[p][f] == 0) {
                let r = cand_cols
                    .clone()
                    .filter(|&c| in_span(c) && m[p][c] != 0)
                    .map(|c| columns[c]);
                out.push((loose[col], sorted(r.collect())));
            }
        }
        for (k, &e) in tight.iter().enumerate() {
            let col = nl + k;
            if in_span(col) {
                continue;
            }
            // Past the rank, is e's column λ times c's?
            let multiple = |c: usize| {
                let Some(i) = past.iter().position(|row| row[c] != 0) else {
                    return false;
                };
                let lambda = mul_mod(past[i][col], pow_mod(past[i][c], P - 2));
                past.iter().all(|row| row[col] == mul_mod(lambda, row[c]))
            };
            let r = cand_cols
                .clone()
                .filter(|&c| multiple(c))
                .map(|c| columns[c]);
            out.push((e, sorted(r.collect())));
        }
        out.sort_by_key(|x| x.0);
        out
    }
}

fn mul_mod(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) % P as u128) as u64
}

fn pow_mod(mut a: u64, mut n: u64) -> u64 {
    let mut r = 1;
    while n > 0 {
        if n & 1 == 1 {
            r = mul_mod(r, a);
        }
        a = mul_mod(a, a);
        n >>= 1;
    }
    r
}

/// The lines each entry is in, with the entry's sign there (+1 interior, −1 total).
fn lines_of(n: usize, lines: &[Line]) -> Vec<Vec<(usize, i8)>> {
    let mut out = vec![Vec::new(); n];
    for (l, line) in lines.iter().enumerate() {
        for &e in &line.interior {
            out[e].push((l, 1));
        }
        out[line.total].push((l, -1));
    }
    out
}

/// What a cycle may use: the suppressed entries, the published entries that may
/// become complements (and what each costs, in persons), and the moves each entry
/// allows (+1 or −1) without leaving what an attacker knows of it.
struct Moves<'m> {
    hidden: &'m dyn Fn(usize) -> bool,
    /// The suppressed entries of each line (those `hidden` says are).
    hidden_in: &'m [Vec<usize>],
    cost: &'m dyn Fn(usize) -> Option<u64>,
    allows: &'m dyn Fn(usize, i8) -> bool,
}

/// Is `e` on an admissible cycle of suppressed entries? Searched along the suppressed
/// entries of each line alone (a line holds few), so it is quick.
fn free_cycle(lines: &[Line], lines_of: &[Vec<(usize, i8)>], e: usize, m: &Moves) -> bool {
    let [(la, sa), (lb, sb)] = [lines_of[e][0], lines_of[e][1]];
    let state = |l: usize, c: i8| 2 * l + usize::from(c < 0);
    for ne in [1i8, -1].into_iter().filter(|&s| (m.allows)(e, s)) {
        let (start, goal) = (state(lb, sb * ne), state(la, -sa * ne));
        let mut seen = vec![false; 2 * lines.len()];
        let mut todo = vec![start];
        seen[start] = true;
        while let Some(s) = todo.pop() {
            if s == goal {
                return true;
            }
            let (l, c) = (s / 2, if s % 2 == 0 { 1i8 } else { -1 });
            for &f in &m.hidden_in[l] {
                if f == e || lines_of[f].len() != 2 {
                    continue;
                }
                let (here, there) = match lines_of[f][..] {
                    [a, b] if a.0 == l => (a.1, b),
                    [a, b] => (b.1, a),
                    _ => unreachable!("checked: two lines"),
                };
                let nf = -c * here;
                let next = state(there.0, there.1 * nf);
                if (m.allows)(f, nf) && !seen[next] {
                    seen[next] = true;
                    todo.push(next);
                }
            }
        }
    }
    false
}

/// The cheapest admissible cycle of two-line entries through `e`: its cost and the
/// complements on it (none when a cycle of suppressed entries exists); `None` when
/// there is no admissible cycle at all. Dijkstra over (line, pending contribution).
fn cheapest_cycle(
    lines: &[Line],
    lines_of: &[Vec<(usize, i8)>],
    e: usize,
    m: &Moves,
) -> Option<(u64, Vec<usize>)> {
    let [(la, sa), (lb, sb)] = [lines_of[e][0], lines_of[e][1]];
    let state = |l: usize, c: i8| 2 * l + usize::from(c < 0);
    if free_cycle(lines, lines_of, e, m) {
        return Some((0, Vec::new()));
    }
    let mut best: Option<(u64, Vec<usize>)> = None;
    for ne in [1i8, -1].into_iter().filter(|&s| (m.allows)(e, s)) {
        // Along e from la to lb: lb receives sb·ne; the walk back must bring la
        // the contribution that cancels sa·ne.
        let (start, goal) = (state(lb, sb * ne), state(la, -sa * ne));
        let mut dist = vec![u64::MAX; 2 * lines.len()];
        let mut prev: Vec<Option<(usize, usize)>> = vec![None; dist.len()];
        let mut heap = std::collections::BinaryHeap::new();
        dist[start] = 0;
        heap.push(std::cmp::Reverse((0u64, start)));
        while let Some(std::cmp::Reverse((d, s))) = heap.pop() {
            if s == goal {
                break;
            }
            if d > dist[s] {
                continue;
            }
            let (l, c) = (s / 2, if s % 2 == 0 { 1i8 } else { -1 });
            let line = &lines[l];
            for &f in line.interior.iter().chain([&line.total]) {
                if f == e || lines_of[f].len() != 2 {
                    continue;
                }
                let step = if (m.hidden)(f) {
                    0
                } else {
                    match (m.cost)(f) {
                        Some(c) => c,
                        None => continue,
                    }
                };
                let (here, there) = match lines_of[f][..] {
                    [a, b] if a.0 == l => (a.1, b),
                    [a, b] => (b.1, a),
                    _ => unreachable!("checked: two lines"),
                };
                let nf = -c * here;
                if !(m.allows)(f, nf) {
                    continue;
                }
                let next = state(there.0, there.1 * nf);
                let nd = d + step;
                if nd < dist[next] {
                    dist[next] = nd;
                    prev[next] = Some((s, f));
                    heap.push(std::cmp::Reverse((nd, next)));
                }
            }
        }
        if dist[goal] < best.as_ref().map_or(u64::MAX, |b| b.0) {
            let mut path = Vec::new();
            let mut s = goal;
            while let Some((p, f)) = prev[s] {
                if !(m.hidden)(f) {
                    path.push(f);
                }
                s = p;
            }
            best = Some((dist[goal], path));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn table(counts: &[&[u64]]) -> Table {
        let ncols = counts.first().map_or(0, |r| r.len());
        Table {
            rows: labels("r", counts.len()),
            cols: labels("c", ncols),
            counts: counts.iter().map(|r| r.to_vec()).collect(),
        }
    }

    fn suppressed_cells(p: &Protected) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, row) in p.cells.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                if c.is_suppressed() {
                    out.push((i, j));
                }
            }
        }
        out
    }

    /// Tiny xorshift64* generator: reproducible random tables without crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random count in one of several styles: small, sparse, mostly large, tiny.
    fn draw(rng: &mut Rng, style: u64) -> u64 {
        match style {
            0 => rng.below(10),
            1 => {
                if rng.below(10) < 6 {
                    0
                } else {
                    1 + rng.below(12)
                }
            }
            2 => {
                if rng.below(5) == 0 {
                    1 + rng.below(4)
                } else {
                    5 + rng.below(56)
                }
            }
            _ => rng.below(4),
        }
    }

    fn random_table(rng: &mut Rng, nrows: usize, ncols: usize) -> Table {
        let style = rng.below(4);
        let small_row = if rng.below(3) == 0 {
            Some(rng.below(nrows as u64) as usize)
        } else {
            None
        };
        let counts = (0..nrows)
            .map(|i| {
                (0..ncols)
                    .map(|_| {
                        if small_row == Some(i) {
                            rng.below(3)
                        } else {
                            draw(rng, style)
                        }
                    })
                    .collect()
            })
            .collect();
        Table {
            rows: labels("r", nrows),
            cols: labels("c", ncols),
            counts,
        }
    }

    /// A second table over the same rows with the same row totals: each row total of
    /// `t` split at random over `ncols` columns (sometimes all in one column).
    fn sibling(rng: &mut Rng, t: &Table, ncols: usize) -> Table {
        let counts = t
            .counts
            .iter()
            .map(|r| {
                let mut left: u64 = r.iter().sum();
                let mut row = vec![0; ncols];
                let lumpy = rng.below(3) == 0;
                for (j, x) in row.iter_mut().enumerate() {
                    *x = if j + 1 == ncols {
                        left
                    } else if lumpy {
                        0
                    } else {
                        rng.below(left + 1)
                    };
                    left -= *x;
                }
                row
            })
            .collect();
        Table {
            rows: t.rows.clone(),
            cols: labels("d", ncols),
            counts,
        }
    }

    // -- What an attacker sees --------------------------------------------------

    /// The published tables as an attacker sees them: every entry (shared row totals
    /// and grand total once, then per table its cells and column totals), its true
    /// value, its published value if any table publishes it, and the additive lines.
    /// Built from the outputs, independently of the module's own layout.
    struct View {
        truth: Vec<u64>,
        known: Vec<Option<u64>>,
        lines: Vec<(Vec<usize>, usize)>,
        /// Shared entries suppressed in one table and published in another.
        conflicts: Vec<usize>,
    }

    fn view(tables: &[Table], outs: &[Protected]) -> View {
        assert_eq!(tables.len(), outs.len());
        let nrows = tables[0].rows.len();
        let mut truth: Vec<u64> = tables[0].counts.iter().map(|r| r.iter().sum()).collect();
        truth.push(truth.iter().sum());
        let mut shared: Vec<Vec<Cell>> = vec![Vec::new(); nrows + 1];
        for o in outs {
            for (i, c) in o.row_totals.iter().chain([&o.grand_total]).enumerate() {
                shared[i].push(*c);
            }
        }
        let mut known: Vec<Option<u64>> = shared
            .iter()
            .map(|cs| cs.iter().find_map(|c| c.value()))
            .collect();
        let conflicts = (0..=nrows)
            .filter(|&i| shared[i].iter().any(|c| c.is_suppressed()) && known[i].is_some())
            .collect();
        let mut lines = Vec::new();
        for (t, o) in tables.iter().zip(outs) {
            let ncols = t.cols.len();
            let base = truth.len();
            for i in 0..nrows {
                for j in 0..ncols {
                    truth.push(t.counts[i][j]);
                    known.push(o.cells[i][j].value());
                }
            }
            let tb = truth.len();
            for j in 0..ncols {
                truth.push((0..nrows).map(|i| t.counts[i][j]).sum());
                known.push(o.col_totals[j].value());
            }
            for i in 0..nrows {
                lines.push(((0..ncols).map(|j| base + i * ncols + j).collect(), i));
            }
            for j in 0..ncols {
                lines.push(((0..nrows).map(|i| base + i * ncols + j).collect(), tb + j));
            }
            lines.push(((tb..tb + ncols).collect(), nrows));
        }
        lines.push(((0..nrows).collect(), nrows));
        View {
            truth,
            known,
            lines,
            conflicts,
        }
    }

    /// The differencing attack: a line (row, column, row of column totals, column of
    /// row totals) with exactly one unpublished entry gives that entry away.
    fn differencing(v: &View) -> Vec<usize> {
        let mut found = Vec::new();
        for (interior, total) in &v.lines {
            let hidden: Vec<usize> = interior
                .iter()
                .chain([total])
                .copied()
                .filter(|&e| v.known[e].is_none())
                .collect();
            if hidden.len() == 1 {
                found.push(hidden[0]);
            }
        }
        found.sort();
        found.dedup();
        found
    }

    fn gcd(a: i128, b: i128) -> i128 {
        if b == 0 { a.abs() } else { gcd(b, a % b) }
    }

    /// The linear attack: exact (integer, fraction-free) Gauss-Jordan elimination of
    /// the lines over the unpublished entries; an entry whose pivot row holds nothing
    /// else is determined by some combination of published totals.
    fn linear(v: &View) -> Vec<usize> {
        let unknown: Vec<usize> = (0..v.known.len())
            .filter(|&e| v.known[e].is_none())
            .collect();
        let col = |e: usize| unknown.iter().position(|&u| u == e);
        let mut m: Vec<Vec<i128>> = v
            .lines
            .iter()
            .map(|(interior, total)| {
                let mut row = vec![0i128; unknown.len()];
                for &e in interior {
                    if let Some(c) = col(e) {
                        row[c] += 1;
                    }
                }
                if let Some(c) = col(*total) {
                    row[c] -= 1;
                }
                row
            })
            .collect();
        let mut rank = 0;
        let mut pivots = Vec::new();
        for c in 0..unknown.len() {
            let Some(r) = (rank..m.len()).find(|&r| m[r][c] != 0) else {
                continue;
            };
            m.swap(rank, r);
            let p = m[rank].clone();
            for (i, row) in m.iter_mut().enumerate() {
                if i != rank && row[c] != 0 {
                    let a = row[c];
                    for (x, &y) in row.iter_mut().zip(&p) {
                        *x = x
                            .checked_mul(p[c])
                            .and_then(|x| x.checked_sub(y.checked_mul(a)?))
                            .expect("overflow");
                    }
                    let g = row.iter().fold(0, |g, &x| gcd(g, x));
                    if g > 1 {
                        row.iter_mut().for_each(|x| *x /= g);
                    }
                }
            }
            pivots.push((c, rank));
            rank += 1;
        }
        pivots
            .into_iter()
            .filter(|&(_, r)| m[r].iter().filter(|&&x| x != 0).count() == 1)
            .map(|(c, _)| unknown[c])
            .collect()
    }

    /// The integer attack on one table: for each unpublished entry, look for another
    /// table consistent with everything published (non-negative, suppressed entries at
    /// least 1 since zeros are published) with a different value there. One table's
    /// constraint matrix is a network matrix, so if such a table exists, one exists
    /// that differs from the truth by ±1 along a cycle; searching that box is complete.
    fn integer(v: &View) -> Vec<usize> {
        let unknown: Vec<usize> = (0..v.known.len())
            .filter(|&e| v.known[e].is_none())
            .collect();
        let pos = |e: usize| unknown.iter().position(|&u| u == e);
        // Lines to check once their last unknown entry is set.
        let mut due: Vec<Vec<usize>> = vec![Vec::new(); unknown.len()];
        for (l, (interior, total)) in v.lines.iter().enumerate() {
            if let Some(last) = interior.iter().chain([total]).filter_map(|&e| pos(e)).max() {
                due[last].push(l);
            }
        }
        fn search(
            v: &View,
            unknown: &[usize],
            due: &[Vec<usize>],
            x: &mut Vec<i128>,
            k: usize,
            target: usize,
        ) -> bool {
            if k == unknown.len() {
                return true;
            }
            let t = v.truth[unknown[k]] as i128;
            let options: &[i128] = if k == target { &[-1, 1] } else { &[0, -1, 1] };
            for &d in options {
                if t + d < 1 {
                    continue;
                }
                x[unknown[k]] = t + d;
                let ok = due[k].iter().all(|&l| {
                    let (interior, total) = &v.lines[l];
                    interior.iter().map(|&e| x[e]).sum::<i128>() == x[*total]
                });
                if ok && search(v, unknown, due, x, k + 1, target) {
                    return true;
                }
            }
            x[unknown[k]] = t;
            false
        }
        let mut x: Vec<i128> = v.truth.iter().map(|&t| t as i128).collect();
        (0..unknown.len())
            .filter(|&k| !search(v, &unknown, &due, &mut x, 0, k))
            .map(|k| unknown[k])
            .collect()
    }

    /// Everything published is true; zeros are published; 1-4 are not; margins are sums.
    fn check_published(t: &Table, p: &Protected) {
        let v = view(std::slice::from_ref(t), std::slice::from_ref(p));
        for (e, (&truth, known)) in v.truth.iter().zip(&v.known).enumerate() {
            match known {
                Some(x) => assert_eq!(*x, truth, "entry {e} published wrongly"),
                None => assert!(truth > 0, "entry {e}: a zero was suppressed"),
            }
            if (1..MIN_CELL).contains(&truth) {
                assert!(known.is_none(), "entry {e} = {truth} published");
            }
        }
        let small = v
            .truth
            .iter()
            .filter(|&&x| (1..MIN_CELL).contains(&x))
            .count();
        assert_eq!(p.primary, small);
        assert_eq!(
            p.secondary,
            v.known.iter().filter(|k| k.is_none()).count() - small
        );
        assert_eq!(p.rule_set, RULE_SET);
    }

    fn assert_safe(tables: &[Table], outs: &[Protected], with_integer: bool) {
        let v = view(tables, outs);
        assert!(
            v.conflicts.is_empty(),
            "shared totals differ between tables: {:?}",
            v.conflicts
        );
        assert_eq!(
            differencing(&v),
            Vec::<usize>::new(),
            "differencing attack on {tables:?}"
        );
        assert_eq!(
            linear(&v),
            Vec::<usize>::new(),
            "linear attack on {tables:?}"
        );
        if with_integer {
            assert_eq!(
                integer(&v),
                Vec::<usize>::new(),
                "integer attack on {tables:?}"
            );
        }
    }

    /// Only primary suppression: what the attacks must catch.
    fn primary_only(t: &Table) -> Protected {
        let c = |v: u64| {
            if (1..MIN_CELL).contains(&v) {
                Cell::Suppressed
            } else {
                Cell::Value(v)
            }
        };
        let ncols = t.cols.len();
        let row_sums: Vec<u64> = t.counts.iter().map(|r| r.iter().sum()).collect();
        Protected {
            rows: t.rows.clone(),
            cols: t.cols.clone(),
            cells: t
                .counts
                .iter()
                .map(|r| r.iter().map(|&v| c(v)).collect())
                .collect(),
            row_totals: row_sums.iter().map(|&v| c(v)).collect(),
            col_totals: (0..ncols)
                .map(|j| c(t.counts.iter().map(|r| r[j]).sum()))
                .collect(),
            grand_total: c(row_sums.iter().sum()),
            primary: 0,
            secondary: 0,
            rule_set: RULE_SET,
        }
    }

    // -- Primary suppression ------------------------------------------------------

    #[test]
    fn tables_without_small_counts_are_published_whole() {
        let t = table(&[&[0, 5, 12], &[7, 0, 30], &[0, 0, 9]]);
        let p = protect(&t);
        assert_eq!(suppressed_cells(&p), vec![]);
        assert_eq!(
            p.cells[0],
            vec![Cell::Value(0), Cell::Value(5), Cell::Value(12)]
        );
        assert_eq!(
            p.row_totals,
            vec![Cell::Value(17), Cell::Value(37), Cell::Value(9)]
        );
        assert_eq!(
            p.col_totals,
            vec![Cell::Value(7), Cell::Value(5), Cell::Value(51)]
        );
        assert_eq!(p.grand_total, Cell::Value(63));
        assert_eq!((p.primary, p.secondary), (0, 0));
    }

    #[test]
    fn one_to_four_are_suppressed_and_zeros_kept() {
        let t = table(&[
            &[0, 1, 2, 40],
            &[3, 0, 4, 50],
            &[60, 70, 0, 80],
            &[90, 100, 110, 0],
        ]);
        let p = protect(&t);
        for (i, j) in [(0, 1), (0, 2), (1, 0), (1, 2)] {
            assert_eq!(p.cells[i][j], Cell::Suppressed, "({i},{j})");
        }
        for (i, j) in [(0, 0), (1, 1), (2, 2), (3, 3)] {
            assert_eq!(p.cells[i][j], Cell::Value(0), "({i},{j})");
        }
        assert_eq!(p.primary, 4);
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    #[test]
    fn small_margins_are_primary_suppressed() {
        // Row 0 totals 3 and column 2 totals 4: both are counts of fewer than 5 persons.
        let t = table(&[&[1, 2, 0], &[20, 30, 4], &[25, 35, 0]]);
        let p = protect(&t);
        assert_eq!(p.row_totals[0], Cell::Suppressed);
        assert_eq!(p.col_totals[2], Cell::Suppressed);
        assert_eq!(p.cells[0][2], Cell::Value(0));
        assert_eq!(p.cells[2][2], Cell::Value(0));
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    #[test]
    fn a_table_of_small_counts_is_suppressed_entirely_except_zeros() {
        let t = table(&[&[1, 0], &[0, 2]]);
        let p = protect(&t);
        assert_eq!(
            p.cells,
            vec![
                vec![Cell::Suppressed, Cell::Value(0)],
                vec![Cell::Value(0), Cell::Suppressed]
            ]
        );
        assert!(
            p.row_totals
                .iter()
                .chain(&p.col_totals)
                .all(|c| c.is_suppressed())
        );
        assert_eq!(p.grand_total, Cell::Suppressed);
        assert_safe(&[t], &[p], true);
    }

    // -- Secondary suppression ----------------------------------------------------

    #[test]
    fn the_complement_is_the_smallest_cell_of_the_line() {
        let t = table(&[&[3, 7, 20, 9], &[8, 6, 30, 40], &[10, 12, 50, 60]]);
        let p = protect(&t);
        // Row 0: 7 (not 9 or 20); column 0: 8 (not 10); column 1: 6 (not 12).
        assert_eq!(suppressed_cells(&p), vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!((p.primary, p.secondary), (1, 3));
        assert!(
            p.row_totals
                .iter()
                .chain(&p.col_totals)
                .all(|c| !c.is_suppressed())
        );
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    #[test]
    fn complements_iterate_across_rows_and_columns_until_stable() {
        // 2 → row 0 takes 9, column 0 takes 50, column 1 takes 8 (row 2), which leaves
        // rows 1 and 2 with one each: row 1 takes 11, row 2 takes 12, and column 2
        // then has two. A 6-cycle, stable.
        let t = table(&[&[2, 9, 40, 40], &[50, 80, 11, 60], &[60, 8, 12, 70]]);
        let p = protect(&t);
        assert_eq!(
            suppressed_cells(&p),
            vec![(0, 0), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2)]
        );
        for i in 0..3 {
            assert_ne!(
                p.cells[i].iter().filter(|c| c.is_suppressed()).count(),
                1,
                "row {i}"
            );
            assert_ne!(
                p.cells.iter().filter(|r| r[i].is_suppressed()).count(),
                1,
                "column {i}"
            );
        }
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    #[test]
    fn zeros_are_not_complements_the_total_is() {
        // Column 1 makes 9 at (0,1) a complement; row 0 has nothing else but zeros, so
        // its total goes, and then the column of row totals needs a second one.
        let t = table(&[&[0, 9, 0], &[7, 3, 40], &[20, 30, 50]]);
        let p = protect(&t);
        assert_eq!(p.cells[0][1], Cell::Suppressed);
        assert_eq!(p.cells[0][0], Cell::Value(0));
        assert_eq!(p.cells[0][2], Cell::Value(0));
        assert_eq!(p.row_totals[0], Cell::Suppressed);
        assert!(p.row_totals.iter().filter(|c| c.is_suppressed()).count() >= 2);
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    #[test]
    fn the_attacks_catch_primary_suppression_alone() {
        let t = table(&[&[3, 7, 20, 9], &[8, 6, 30, 40], &[10, 12, 50, 60]]);
        let v = view(std::slice::from_ref(&t), &[primary_only(&t)]);
        assert_eq!(differencing(&v), vec![4]); // cell (0,0), after 3 row totals and the grand total
        assert_eq!(linear(&v), vec![4]);
        assert_eq!(integer(&v), vec![4]);
    }

    /// Two 2×2 blocks of suppressions joined by one suppressed cell: every line holds
    /// 0 or at least 2 suppressed entries (the classic rule holds), but rows 0+1 minus
    /// columns 0+1 give the joining cell (0,2).
    fn bridged() -> (Table, Protected) {
        let t = table(&[
            &[6, 7, 8, 30, 40],
            &[9, 10, 20, 30, 40],
            &[20, 20, 11, 12, 40],
            &[20, 20, 13, 14, 40],
        ]);
        let mut p = primary_only(&t);
        for (i, j) in [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (0, 2),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3),
        ] {
            p.cells[i][j] = Cell::Suppressed;
        }
        (t, p)
    }

    #[test]
    fn the_linear_check_catches_what_the_classic_rule_misses() {
        let (t, p) = bridged();
        let v = view(std::slice::from_ref(&t), std::slice::from_ref(&p));
        assert_eq!(differencing(&v), Vec::<usize>::new());
        let bridge = 5 + 2; // after 4 row totals and the grand total
        assert_eq!(linear(&v), vec![bridge]);
        assert_eq!(integer(&v), vec![bridge]);
        // Both of the module's checks agree: no admissible cycle of suppressed entries
        // through the bridge, and the rank test finds it determined.
        let (values, lines) = layout(&t);
        let mut pr = Problem::new(&values, &lines);
        for e in 0..values.len() {
            if v.known[e].is_none() {
                pr.hide(e, State::Secondary);
            }
        }
        let exposed: Vec<usize> = (0..values.len())
            .filter(|&e| pr.hidden(e) && pr.cheapest_cycle(e) != Some(vec![]))
            .collect();
        assert_eq!(exposed, vec![bridge]);
        assert_eq!(
            pr.linear_exposures()
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            vec![bridge]
        );
        pr.close_cycles();
        assert!((0..values.len()).all(|e| !pr.hidden(e) || pr.cheapest_cycle(e) == Some(vec![])));
        // And protect() on the table itself leaks nothing.
        let p = protect(&t);
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    /// The module's entries and lines for one table (as `protect_joint` builds them).
    fn layout(t: &Table) -> (Vec<u64>, Vec<Line>) {
        let (nrows, ncols) = (t.rows.len(), t.cols.len());
        let mut values: Vec<u64> = t.counts.iter().map(|r| r.iter().sum()).collect();
        values.push(values.iter().sum());
        values.extend(t.counts.iter().flatten());
        values.extend((0..ncols).map(|j| t.counts.iter().map(|r| r[j]).sum::<u64>()));
        let (cb, tb) = (nrows + 1, nrows + 1 + nrows * ncols);
        let mut lines: Vec<Line> = (0..nrows)
            .map(|i| Line {
                interior: (0..ncols).map(|j| cb + i * ncols + j).collect(),
                total: i,
            })
            .collect();
        lines.extend((0..ncols).map(|j| Line {
            interior: (0..nrows).map(|i| cb + i * ncols + j).collect(),
            total: tb + j,
        }));
        lines.push(Line {
            interior: (tb..tb + ncols).collect(),
            total: nrows,
        });
        lines.push(Line {
            interior: (0..nrows).collect(),
            total: nrows,
        });
        (values, lines)
    }

    #[test]
    fn two_suppressed_ones_in_a_line_are_not_left_alone() {
        // Column 0: 1 + 1 + 50 = 52. The classic rule is met by a rectangle of four,
        // but the column then says the two suppressed cells sum to 2, and since
        // suppressed cells are at least 1 (zeros are shown), both are 1.
        let t = table(&[&[1, 30, 40], &[1, 35, 45], &[50, 60, 70]]);
        let mut p = primary_only(&t);
        p.cells[0][1] = Cell::Suppressed;
        p.cells[1][1] = Cell::Suppressed;
        let v = view(std::slice::from_ref(&t), std::slice::from_ref(&p));
        assert_eq!(differencing(&v), Vec::<usize>::new());
        assert_eq!(linear(&v), Vec::<usize>::new());
        assert_eq!(integer(&v).len(), 4, "all four pinned");
        let (values, lines) = layout(&t);
        let mut pr = Problem::new(&values, &lines);
        pr.hide(4 + 1, State::Secondary); // (0,1)
        pr.hide(4 + 4, State::Secondary); // (1,1)
        for e in [4, 4 + 1, 4 + 3, 4 + 4] {
            assert_ne!(
                pr.cheapest_cycle(e),
                Some(vec![]),
                "entry {e} has no admissible cycle"
            );
        }
        assert_eq!(
            pr.linear_exposures().len(),
            4,
            "the cautious rank test also flags all four"
        );

        let p = protect(&t);
        assert_eq!(p.cells[2][0], Cell::Suppressed, "column 0 needs a third");
        check_published(&t, &p);
        assert_safe(&[t], &[p], true);
    }

    #[test]
    fn hand_made_tables_leak_nothing() {
        let tables = [
            table(&[&[3]]),
            table(&[&[7]]),
            table(&[&[1, 50]]),
            table(&[&[1], &[50]]),
            table(&[&[4, 0, 0], &[0, 0, 30], &[12, 0, 8]]),
            table(&[&[1, 1, 1], &[1, 1, 1], &[1, 1, 100]]),
            table(&[&[2, 3, 0, 0], &[0, 0, 0, 0], &[5, 6, 7, 8]]),
            table(&[&[0, 0, 0], &[0, 0, 0]]),
            table(&[&[5, 5, 5], &[5, 1, 5], &[5, 5, 5]]),
            table(&[&[100, 200, 3], &[150, 250, 350], &[0, 0, 400]]),
            table(&[&[1, 2, 3, 4], &[10, 20, 30, 40]]),
            table(&[&[9, 0, 1], &[0, 9, 0], &[1, 0, 9]]),
        ];
        for t in tables {
            let p = protect(&t);
            check_published(&t, &p);
            assert_safe(&[t], &[p], true);
        }
        let empty = Table {
            rows: vec![],
            cols: vec![],
            counts: vec![],
        };
        let p = protect(&empty);
        assert_eq!(p.grand_total, Cell::Value(0));
    }

    #[test]
    fn random_tables_leak_nothing() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in 0..400 {
            let (nrows, ncols) = (1 + rng.below(5) as usize, 1 + rng.below(5) as usize);
            let t = random_table(&mut rng, nrows, ncols);
            let p = protect(&t);
            check_published(&t, &p);
            // The integer search is exponential; run it on the smaller tables.
            let small = nrows * ncols <= 9;
            assert_safe(std::slice::from_ref(&t), std::slice::from_ref(&p), small);
            if n % 100 == 0 {
                assert_eq!(protect(&t), p, "deterministic");
            }
        }
    }

    #[test]
    fn a_municipality_sized_table_is_protected() {
        let mut rng = Rng(42);
        let counts = (0..98)
            .map(|_| {
                (0..8)
                    .map(|_| {
                        if rng.below(4) == 0 {
                            rng.below(5)
                        } else {
                            5 + rng.below(200)
                        }
                    })
                    .collect()
            })
            .collect();
        let t = Table {
            rows: labels("k", 98),
            cols: labels("age", 8),
            counts,
        };
        let p = protect(&t);
        check_published(&t, &p);
        assert!(p.primary > 100);
        let v = view(std::slice::from_ref(&t), std::slice::from_ref(&p));
        assert!(differencing(&v).is_empty());
        assert!(linear(&v).is_empty());
    }

    // -- One dimension --------------------------------------------------------------

    #[test]
    fn a_series_with_one_small_count_loses_its_smallest_other() {
        let s = Series {
            labels: labels("x", 4),
            counts: vec![3, 40, 0, 12],
        };
        let p = protect_series(&s);
        assert_eq!(
            p.cells,
            vec![
                Cell::Suppressed,
                Cell::Value(40),
                Cell::Value(0),
                Cell::Suppressed
            ]
        );
        assert_eq!(p.total, Cell::Value(55));
        assert_eq!((p.primary, p.secondary), (1, 1));
    }

    #[test]
    fn series_never_give_a_count_away() {
        let cases: &[&[u64]] = &[
            &[1, 1, 30],
            &[2, 0, 0],
            &[4, 0, 9],
            &[0, 0, 0],
            &[1, 2, 3],
            &[6, 7, 8],
            &[1],
            &[8],
            &[3, 0, 5, 5],
        ];
        for counts in cases {
            let p = protect_series(&Series {
                labels: labels("x", counts.len()),
                counts: counts.to_vec(),
            });
            let published: Vec<Option<u64>> = p.cells.iter().map(|c| c.value()).collect();
            let hidden = published.iter().filter(|c| c.is_none()).count();
            for (c, &v) in published.iter().zip(counts.iter()) {
                match c {
                    Some(x) => assert!(*x == v && !(1..MIN_CELL).contains(&v), "{counts:?}"),
                    None => assert!(v > 0, "zero suppressed in {counts:?}"),
                }
            }
            let total_hidden = p.total.is_suppressed();
            // One line: differencing needs exactly one unknown; bounds need the
            // suppressed cells to sum to their count.
            assert_ne!(hidden + usize::from(total_hidden), 1, "{counts:?}");
            if !total_hidden && hidden > 0 {
                let sum: u64 = counts
                    .iter()
                    .zip(&published)
                    .filter(|(_, c)| c.is_none())
                    .map(|(v, _)| v)
                    .sum();
                assert!(sum > hidden as u64, "{counts:?}: suppressed cells all 1");
            }
        }
    }

    // -- Tables sharing row totals --------------------------------------------------

    #[test]
    fn joint_protection_keeps_shared_totals_in_step() {
        // Same municipalities, same row totals: by sex and by age group.
        let by_sex = table(&[&[3, 9], &[20, 25], &[30, 31]]);
        let mut by_age = table(&[&[12, 0, 0], &[2, 20, 23], &[40, 11, 10]]);
        by_age.cols = labels("a", 3);
        let outs = protect_joint(&[by_sex.clone(), by_age.clone()]).unwrap();
        assert_eq!(outs[0].row_totals, outs[1].row_totals);
        assert_eq!(outs[0].grand_total, outs[1].grand_total);
        for (t, p) in [(&by_sex, &outs[0]), (&by_age, &outs[1])] {
            check_published(t, p);
        }
        assert_safe(&[by_sex, by_age], &outs, false);
    }

    #[test]
    fn a_small_shared_row_total_is_protected_in_both_tables() {
        // Row 0 has 4 persons: its total is suppressed in both tables, and neither
        // table's cells may give it back.
        let a = table(&[&[1, 3, 0], &[20, 7, 9], &[15, 30, 6]]);
        let mut b = table(&[&[4, 0], &[30, 6], &[25, 26]]);
        b.cols = labels("d", 2);
        let outs = protect_joint(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(outs[0].row_totals[0], Cell::Suppressed);
        assert_eq!(outs[1].row_totals[0], Cell::Suppressed);
        assert_eq!(outs[0].row_totals, outs[1].row_totals);
        for (t, p) in [(&a, &outs[0]), (&b, &outs[1])] {
            check_published(t, p);
        }
        assert_safe(&[a, b], &outs, false);
    }

    #[test]
    fn separate_protection_leaks_joint_does_not() {
        let mut rng = Rng(7);
        let mut leaks_when_separate = 0;
        for _ in 0..300 {
            let (nrows, ncols) = (1 + rng.below(5) as usize, 1 + rng.below(4) as usize);
            let a = random_table(&mut rng, nrows, ncols);
            let ncols_b = 1 + rng.below(4) as usize;
            let b = sibling(&mut rng, &a, ncols_b);
            let tables = [a, b];

            let outs = protect_joint(&tables).unwrap();
            for (t, p) in tables.iter().zip(&outs) {
                check_published(t, p);
            }
            assert_safe(&tables, &outs, false);

            let separate: Vec<Protected> = tables.iter().map(protect).collect();
            let v = view(&tables, &separate);
            if !v.conflicts.is_empty() || !differencing(&v).is_empty() || !linear(&v).is_empty() {
                leaks_when_separate += 1;
            }
        }
        assert!(
            leaks_when_separate > 0,
            "the joint attack should catch separate protection"
        );
    }

    #[test]
    fn joint_protection_checks_that_tables_share_rows() {
        let a = table(&[&[5, 5], &[6, 6]]);
        let mut b = table(&[&[10], &[13]]);
        assert_eq!(
            protect_joint(&[a.clone(), b.clone()]),
            Err(SdcError::RowTotalsDiffer {
                table: 1,
                row: "r1".into()
            })
        );
        b.rows = labels("x", 2);
        assert_eq!(
            protect_joint(&[a.clone(), b]),
            Err(SdcError::RowsDiffer { table: 1 })
        );
        let ragged = Table {
            rows: labels("r", 2),
            cols: labels("c", 2),
            counts: vec![vec![1, 2], vec![3]],
        };
        assert_eq!(
            protect_joint(&[a, ragged]),
            Err(SdcError::Shape { table: 1 })
        );
        assert_eq!(protect_joint(&[]), Ok(vec![]));
    }

    // -- Rates ------------------------------------------------------------------------

    #[test]
    fn rates_need_five_above_and_below() {
        use Cell::{Suppressed, Value};
        assert_eq!(rate(Value(5), Value(20)), Some(0.25));
        assert_eq!(rate(Value(30), Value(5)), Some(6.0));
        assert_eq!(rate(Value(4), Value(100)), None);
        assert_eq!(rate(Value(0), Value(100)), None);
        assert_eq!(rate(Value(10), Value(4)), None);
        assert_eq!(rate(Value(10), Value(0)), None);
        assert_eq!(rate(Suppressed, Value(100)), None);
        assert_eq!(rate(Value(10), Suppressed), None);
    }

    #[test]
    fn cells_serialise_as_numbers_or_null() {
        let p = protect(&table(&[&[3, 7], &[8, 6]]));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["cells"][0][0], serde_json::Value::Null);
        assert_eq!(json["grand_total"], serde_json::json!(24));
        assert_eq!(json["rule_set"], RULE_SET);
    }

    // -- Families: nested counts, events and releases ------------------------------

    /// A family's publication as an attacker sees it. Entries are measure-major (each
    /// measure laid out as [`layout`] does); what is known: the published values, each
    /// measure's lines, that nested counts are ordered (`a <= b`), that the persons
    /// behind events are at most the events and at least 1 where there are events,
    /// that a suppressed base is at least 1 and anything else at least 0.
    struct FamView {
        truth: Vec<i64>,
        known: Vec<Option<i64>>,
        lower: Vec<i64>,
        cons: Vec<Con>,
        quantities: Vec<Quantity>,
    }

    enum Con {
        /// `sum(interior) = total`
        Line(Vec<usize>, usize),
        Le(usize, usize),
        /// events >= 1 implies persons >= 1
        Implies(usize, usize),
    }

    /// A number an attacker would like: `plus − minus` at one entry; `persons`, a lower
    /// bound on the persons behind it (`None`: not a count of persons); `base`, the
    /// entry of the base it is a share of (for the 0/100 % rule).
    #[derive(Debug)]
    struct Quantity {
        name: String,
        plus: usize,
        minus: Option<usize>,
        persons: Option<u64>,
        base: Option<usize>,
        base_persons: u64,
    }

    fn fam_view(f: &Family, outs: &[Protected]) -> FamView {
        let nrows = f.rows.len();
        let ncols = f.cols.len();
        let t = |counts: &Vec<Vec<u64>>| Table {
            rows: f.rows.clone(),
            cols: f.cols.clone(),
            counts: counts.clone(),
        };
        let mut measures: Vec<&Measure> = vec![&f.base];
        measures.extend(f.chains.iter().flatten());
        let persons_measure = f.base.persons.as_ref().map(|p| Measure::persons(p.clone()));
        if f.persons_published {
            measures.push(persons_measure.as_ref().unwrap());
        }
        assert_eq!(measures.len(), outs.len());
        let (v0, lines0) = layout(&t(&f.base.counts));
        let n = v0.len();
        let mut truth = Vec::new();
        let mut known = Vec::new();
        let mut cons = Vec::new();
        for (k, (m, o)) in measures.iter().zip(outs).enumerate() {
            let (values, lines) = layout(&t(&m.counts));
            truth.extend(values.iter().map(|&v| v as i64));
            known.extend(
                o.row_totals
                    .iter()
                    .chain([&o.grand_total])
                    .chain(o.cells.iter().flatten())
                    .chain(&o.col_totals)
                    .map(|c| c.value().map(|v| v as i64)),
            );
            for l in lines {
                cons.push(Con::Line(
                    l.interior.iter().map(|&e| k * n + e).collect(),
                    k * n + l.total,
                ));
            }
        }
        assert_eq!(lines0.len() * measures.len(), cons.len());
        let mut lower = vec![0i64; truth.len()];
        for e in 0..n {
            lower[e] = i64::from(known[e].is_none() && truth[e] > 0).max(0);
        }
        // Persons behind an entry: cells from the data, margins by the family's rule.
        let plb = |cell: &dyn Fn(usize, usize) -> u64, e: usize| -> u64 {
            let cells: Vec<(usize, usize)> = if e < nrows {
                (0..ncols).map(|j| (e, j)).collect()
            } else if e == nrows {
                (0..nrows)
                    .flat_map(|i| (0..ncols).map(move |j| (i, j)))
                    .collect()
            } else if e < nrows + 1 + nrows * ncols {
                let k = e - nrows - 1;
                return cell(k / ncols, k % ncols);
            } else {
                let j = e - nrows - 1 - nrows * ncols;
                (0..nrows).map(|i| (i, j)).collect()
            };
            let it = cells.into_iter().map(|(i, j)| cell(i, j));
            if f.overlapping {
                it.max().unwrap_or(0)
            } else {
                it.sum()
            }
        };
        let pers = |m: &Measure| m.persons.clone().unwrap_or_else(|| m.counts.clone());
        let base_p = pers(&f.base);
        let mut quantities = Vec::new();
        for e in 0..n {
            quantities.push(Quantity {
                name: format!("base[{e}]"),
                plus: e,
                minus: None,
                persons: Some(plb(&|i, j| base_p[i][j], e)),
                base: None,
                base_persons: 0,
            });
        }
        let mut out = 1;
        for (c, chain) in f.chains.iter().enumerate() {
            // Levels: output index and persons of each, the base last.
            let mut levels: Vec<(usize, Vec<Vec<u64>>)> = Vec::new();
            for m in chain {
                levels.push((out, pers(m)));
                out += 1;
            }
            levels.push((0, base_p.clone()));
            for e in 0..n {
                for w in levels.windows(2) {
                    cons.push(Con::Le(w[0].0 * n + e, w[1].0 * n + e));
                }
                for a in 0..levels.len() {
                    for b in a..levels.len() {
                        if a == 0 && b == levels.len() - 1 {
                            continue;
                        }
                        let (hi, hp) = &levels[b];
                        let lo = (a > 0).then(|| &levels[a - 1]);
                        let value = truth[hi * n + e] - lo.map_or(0, |l| truth[l.0 * n + e]);
                        let persons = plb(
                            &|i, j| {
                                let p = hp[i][j] - lo.map_or(0, |l| l.1[i][j]);
                                p.max(u64::from(value >= 1))
                            },
                            e,
                        );
                        quantities.push(Quantity {
                            name: format!("chain {c} layers {a}..={b} [{e}]"),
                            plus: hi * n + e,
                            minus: lo.map(|l| l.0 * n + e),
                            persons: Some(persons.max(u64::from(value >= 1))),
                            base: (a == 0).then_some(e),
                            base_persons: plb(&|i, j| base_p[i][j], e),
                        });
                    }
                }
            }
        }
        if f.persons_published {
            let p = out;
            let pm = persons_measure.as_ref().unwrap();
            for e in 0..n {
                cons.push(Con::Le(p * n + e, e));
                cons.push(Con::Implies(e, p * n + e));
                quantities.push(Quantity {
                    name: format!("persons[{e}]"),
                    plus: p * n + e,
                    minus: None,
                    persons: Some(plb(&|i, j| pm.counts[i][j], e)),
                    base: None,
                    base_persons: 0,
                });
                quantities.push(Quantity {
                    name: format!("events beyond one per person[{e}]"),
                    plus: e,
                    minus: Some(p * n + e),
                    persons: None,
                    base: None,
                    base_persons: 0,
                });
            }
        }
        FamView {
            truth,
            known,
            lower,
            cons,
            quantities,
        }
    }

    impl FamView {
        fn value(&self, q: &Quantity, x: &[i64]) -> i64 {
            x[q.plus] - q.minus.map_or(0, |m| x[m])
        }

        fn seen(&self, q: &Quantity) -> Option<i64> {
            Some(self.known[q.plus]? - q.minus.map_or(Some(0), |m| self.known[m])?)
        }

        /// Published numbers that break a primary rule: a count of 1-4 persons, or a
        /// share of 0 or 100 % on a base below MIN_SHARE_BASE.
        fn published_leaks(&self) -> Vec<String> {
            let mut out = Vec::new();
            for q in &self.quantities {
                let Some(v) = self.seen(q) else { continue };
                if let Some(p) = q.persons
                    && v >= 1
                    && p < MIN_CELL
                {
                    out.push(format!("{} = {v} from {p} persons", q.name));
                }
                if let Some(b) = q.base
                    && let Some(bv) = self.known[b]
                    && bv >= 1
                    && (v == 0 || v == bv)
                    && q.base_persons < MIN_SHARE_BASE
                {
                    out.push(format!("{} = {v} of {bv}", q.name));
                }
            }
            out
        }

        /// The integer attack: every quantity not published must have another value in
        /// some table consistent with everything known (searched within ±1 of the
        /// truth, with bounds propagated along the constraints). Returns the pinned.
        fn pinned(&self) -> Vec<String> {
            let unknown: Vec<usize> = (0..self.truth.len())
                .filter(|&i| self.known[i].is_none())
                .collect();
            let mut of: Vec<Vec<usize>> = vec![Vec::new(); self.truth.len()];
            for (c, con) in self.cons.iter().enumerate() {
                let vars: Vec<usize> = match con {
                    Con::Line(i, t) => i.iter().copied().chain([*t]).collect(),
                    Con::Le(a, b) | Con::Implies(a, b) => vec![*a, *b],
                };
                for v in vars {
                    of[v].push(c);
                }
            }
            let mut out = Vec::new();
            for q in &self.quantities {
                if self.seen(q).is_some() {
                    continue;
                }
                let mut lo: Vec<i64> = self.truth.clone();
                let mut hi: Vec<i64> = self.truth.clone();
                for &u in &unknown {
                    lo[u] = (self.truth[u] - 1).max(self.lower[u]);
                    hi[u] = self.truth[u] + 1;
                }
                let want = self.value(q, &self.truth);
                if !self.search(&unknown, &of, &mut lo, &mut hi, 0, q, want) {
                    out.push(q.name.clone());
                }
            }
            out
        }

        fn feasible(&self, c: &Con, lo: &[i64], hi: &[i64]) -> bool {
            match c {
                Con::Line(i, t) => {
                    let min: i64 = i.iter().map(|&e| lo[e]).sum::<i64>() - hi[*t];
                    let max: i64 = i.iter().map(|&e| hi[e]).sum::<i64>() - lo[*t];
                    min <= 0 && 0 <= max
                }
                Con::Le(a, b) => lo[*a] <= hi[*b],
                Con::Implies(ev, p) => lo[*ev] < 1 || hi[*p] >= 1,
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn search(
            &self,
            unknown: &[usize],
            of: &[Vec<usize>],
            lo: &mut Vec<i64>,
            hi: &mut Vec<i64>,
            k: usize,
            q: &Quantity,
            want: i64,
        ) -> bool {
            if k == unknown.len() {
                return self.value(q, lo) != want;
            }
            let u = unknown[k];
            let (l, h) = (lo[u], hi[u]);
            let t = self.truth[u];
            let mut options: Vec<i64> = vec![t, t - 1, t + 1];
            options.retain(|&x| (l..=h).contains(&x));
            for x in options {
                lo[u] = x;
                hi[u] = x;
                if of[u].iter().all(|&c| self.feasible(&self.cons[c], lo, hi))
                    && self.search(unknown, of, lo, hi, k + 1, q, want)
                {
                    lo[u] = l;
                    hi[u] = h;
                    return true;
                }
            }
            lo[u] = l;
            hi[u] = h;
            false
        }

        /// Differences from an earlier release, as an attacker takes them: every
        /// quantity published in both whose difference is 1-4 persons (for counts of
        /// persons) or non-zero with no count of the persons behind it.
        fn differences(&self, earlier: &[Option<i64>]) -> Vec<String> {
            let mut out = Vec::new();
            for q in &self.quantities {
                let then = || Some(earlier[q.plus]? - q.minus.map_or(Some(0), |m| earlier[m])?);
                let (Some(now), Some(then)) = (self.seen(q), then()) else {
                    continue;
                };
                let d = (now - then).abs();
                if q.persons.is_some() && (1..MIN_CELL as i64).contains(&d) {
                    out.push(format!("{}: {then} -> {now}", q.name));
                }
            }
            out
        }
    }

    /// The earlier release as the attacker's vector of known values (same layout).
    fn release_vector(outs: &[Protected]) -> Vec<Option<i64>> {
        outs.iter()
            .flat_map(|o| {
                o.row_totals
                    .iter()
                    .chain([&o.grand_total])
                    .chain(o.cells.iter().flatten())
                    .chain(&o.col_totals)
                    .map(|c| c.value().map(|v| v as i64))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn assert_family_safe(f: &Family, outs: &[Protected]) {
        let v = fam_view(f, outs);
        assert_eq!(
            v.published_leaks(),
            Vec::<String>::new(),
            "published: {f:?}"
        );
        assert_eq!(v.pinned(), Vec::<String>::new(), "pinned: {f:?}");
        for (m, o) in outs.iter().enumerate() {
            assert_eq!(o.rule_set, RULE_SET);
            // What is published is true.
            let truth = &v.truth;
            let n = truth.len() / outs.len();
            for (e, k) in release_vector(std::slice::from_ref(o)).iter().enumerate() {
                if let Some(x) = k {
                    assert_eq!(*x, truth[m * n + e], "measure {m} entry {e}");
                }
            }
        }
    }

    /// Each measure protected on its own, as before nested counts were a family.
    fn separately(f: &Family) -> Vec<Protected> {
        let t = |counts: &Vec<Vec<u64>>| Table {
            rows: f.rows.clone(),
            cols: f.cols.clone(),
            counts: counts.clone(),
        };
        let mut out = vec![protect(&t(&f.base.counts))];
        out.extend(f.chains.iter().flatten().map(|m| protect(&t(&m.counts))));
        if f.persons_published {
            out.push(protect(&t(f.base.persons.as_ref().unwrap())));
        }
        out
    }

    fn column(v: &[u64]) -> Vec<Vec<u64>> {
        v.iter().map(|&x| vec![x]).collect()
    }

    fn courses(courses: &[u64], with_contact: &[u64]) -> Family {
        Family {
            rows: labels("k", courses.len()),
            cols: vec!["2026-Q4".into()],
            base: Measure::persons(column(courses)),
            chains: vec![vec![Measure::persons(column(with_contact))]],
            ..Family::default()
        }
    }

    #[test]
    fn the_complement_attack_finds_the_one_without_a_contact() {
        // Municipality 0: 7 courses, 6 followed by a GP contact. Publishing both says
        // that one person had none.
        let f = courses(&[7, 20, 30], &[6, 10, 15]);
        let v = fam_view(&f, &separately(&f));
        // The cell (entry 4) and its row total (entry 0, the same number in a
        // one-column table).
        assert_eq!(
            v.published_leaks(),
            [0, 4].map(|e| format!("chain 0 layers 1..=1 [{e}] = 1 from 1 persons")),
            "each table protected alone publishes 7 and 6"
        );
        // Withholding the 6 (and its row total) alone is not enough: the sub's grand
        // total (31) less the other municipalities (10, 15) gives it back.
        let mut naive = separately(&f);
        naive[1].cells[0][0] = Cell::Suppressed;
        naive[1].row_totals[0] = Cell::Suppressed;
        let v = fam_view(&f, &naive);
        assert_eq!(v.published_leaks(), Vec::<String>::new());
        assert!(v.pinned().contains(&"chain 0 layers 1..=1 [4]".to_string()));

        let outs = protect_family(&f).unwrap();
        assert_eq!(outs[0].cells[0][0], Cell::Value(7), "the base is kept");
        assert_eq!(outs[1].cells[0][0], Cell::Suppressed);
        assert!(
            outs[1]
                .cells
                .iter()
                .flatten()
                .filter(|c| c.is_suppressed())
                .count()
                >= 2,
            "{outs:?}"
        );
        assert_family_safe(&f, &outs);
    }

    #[test]
    fn a_complement_recoverable_only_from_margins_is_protected() {
        // Nothing in the cells: 9 of 15 and 12 of 13 differ by 6 and 1; the row total
        // (28 courses, 21 with a contact) differs by 7. Column 1's complement is 1.
        let f = Family {
            rows: labels("k", 2),
            cols: labels("q", 2),
            base: Measure::persons(vec![vec![15, 13], vec![40, 50]]),
            chains: vec![vec![Measure::persons(vec![vec![9, 12], vec![20, 25]])]],
            ..Family::default()
        };
        let outs = protect_family(&f).unwrap();
        assert_eq!(outs[1].cells[0][1], Cell::Suppressed);
        assert_family_safe(&f, &outs);
    }

    #[test]
    fn shares_of_0_or_100_percent_on_a_small_base_are_withheld() {
        // 12 courses, all with a contact (100 %); 14 courses, none (0 %); 25 and 30 are
        // large enough to say "all" or "none".
        let f = courses(&[12, 14, 25, 30, 40], &[12, 0, 25, 0, 20]);
        let v = fam_view(&f, &separately(&f));
        assert_eq!(
            v.published_leaks().len(),
            4,
            "two cells and their row totals"
        );
        let outs = protect_family(&f).unwrap();
        let sub: Vec<Cell> = outs[1].cells.iter().map(|r| r[0]).collect();
        assert_eq!(sub[0], Cell::Suppressed);
        assert_eq!(sub[1], Cell::Suppressed);
        assert_eq!(outs[0].cells[0][0], Cell::Value(12), "the base is kept");
        assert_family_safe(&f, &outs);
        // Shares say no more than their counts.
        use Cell::{Suppressed, Value};
        assert_eq!(share(Value(12), Value(12)), None);
        assert_eq!(share(Value(0), Value(19)), None);
        assert_eq!(share(Value(0), Value(20)), Some(0.0));
        assert_eq!(share(Value(25), Value(25)), Some(1.0));
        assert_eq!(share(Value(6), Value(7)), None, "1 without");
        assert_eq!(share(Value(5), Value(12)), Some(5.0 / 12.0));
        assert_eq!(share(Value(3), Value(40)), None);
        assert_eq!(share(Suppressed, Value(40)), None);
        assert_eq!(share(Value(10), Suppressed), None);
    }

    #[test]
    fn an_event_count_is_suppressed_by_the_persons_behind_it() {
        // 40 contacts from 2 patients: a count well above 5 about two persons.
        let events = vec![vec![40, 30], vec![25, 60]];
        let persons = vec![vec![2, 12], vec![9, 20]];
        let t = Table {
            rows: labels("r", 2),
            cols: labels("s", 2),
            counts: events.clone(),
        };
        assert_eq!(
            protect(&t).cells[0][0],
            Cell::Value(40),
            "as a count it passes"
        );
        for persons_published in [false, true] {
            let f = Family {
                rows: t.rows.clone(),
                cols: t.cols.clone(),
                base: Measure::events(events.clone(), persons.clone()),
                persons_published,
                overlapping: true,
                ..Family::default()
            };
            let outs = protect_family(&f).unwrap();
            assert_eq!(outs[0].cells[0][0], Cell::Suppressed);
            assert_eq!(outs[0].primary, 1, "the cell, by its persons");
            if persons_published {
                assert_eq!(outs[1].cells[0][0], Cell::Suppressed, "2 patients");
            }
            assert_family_safe(&f, &outs);
        }
        // One patient behind a margin: the row's cells are 3 and 4 patients, maybe the
        // same ones, so the row total of 70 contacts is withheld although 3 + 4 > 5.
        let f = Family {
            rows: labels("r", 2),
            cols: labels("s", 2),
            base: Measure::events(
                vec![vec![30, 40], vec![25, 60]],
                vec![vec![3, 4], vec![9, 20]],
            ),
            overlapping: true,
            ..Family::default()
        };
        let outs = protect_family(&f).unwrap();
        assert_eq!(outs[0].row_totals[0], Cell::Suppressed);
        assert_family_safe(&f, &outs);
    }

    #[test]
    fn overlapping_margins_count_only_their_largest_cell() {
        // One person may be in both disease areas: the row total 6 may be 3 persons.
        let mut f = Family {
            rows: labels("k", 2),
            cols: labels("d", 2),
            base: Measure::persons(vec![vec![3, 3], vec![30, 40]]),
            ..Family::default()
        };
        assert_eq!(protect_family(&f).unwrap()[0].row_totals[0], Cell::Value(6));
        f.overlapping = true;
        let outs = protect_family(&f).unwrap();
        assert_eq!(outs[0].row_totals[0], Cell::Suppressed);
        assert_family_safe(&f, &outs);
    }

    #[test]
    fn a_family_of_one_measure_is_protected_as_a_table() {
        let mut rng = Rng(11);
        for _ in 0..200 {
            let (nrows, ncols) = (1 + rng.below(5) as usize, 1 + rng.below(5) as usize);
            let t = random_table(&mut rng, nrows, ncols);
            let f = Family {
                rows: t.rows.clone(),
                cols: t.cols.clone(),
                base: Measure::persons(t.counts.clone()),
                ..Family::default()
            };
            assert_eq!(protect_family(&f).unwrap(), vec![protect(&t)]);
        }
    }

    #[test]
    fn a_revision_cannot_be_subtracted_from_what_came_before() {
        // Day D: 7 courses in k0 (published), 30 and 40 elsewhere.
        let before = courses(&[7, 30, 40], &[0, 10, 20]);
        let first = protect_family(&before).unwrap();
        assert_eq!(first[0].cells[0][0], Cell::Value(7));
        // Day D+1: one late course in k0. Published as is, 8 − 7 gives it away.
        let mut after = courses(&[8, 30, 40], &[0, 10, 20]);
        let naive = protect_family(&after).unwrap();
        let v = fam_view(&after, &naive);
        assert!(!v.differences(&release_vector(&first)).is_empty());
        after.earlier = vec![first.iter().map(Protected::release).collect()];
        let outs = protect_family(&after).unwrap();
        let v = fam_view(&after, &outs);
        assert_eq!(v.differences(&release_vector(&first)), Vec::<String>::new());
        assert_eq!(outs[0].cells[0][0], Cell::Suppressed);
        assert_family_safe(&after, &outs);
        // Five more persons are a difference that may be shown.
        let mut five = courses(&[12, 30, 40], &[5, 10, 20]);
        five.earlier = after.earlier.clone();
        let outs = protect_family(&five).unwrap();
        assert_eq!(outs[0].cells[0][0], Cell::Value(12));
    }

    /// A random family on a small table: one or two chains of one or two measures,
    /// or an event base with its persons; sometimes overlapping.
    fn random_family(rng: &mut Rng) -> Family {
        let (nrows, ncols) = (1 + rng.below(2) as usize, 1 + rng.below(3) as usize);
        let style = rng.below(4);
        let base: Vec<Vec<u64>> = (0..nrows)
            .map(|_| {
                (0..ncols)
                    .map(|_| match style {
                        0 => rng.below(12),
                        1 => 5 + rng.below(25),
                        _ => draw(rng, 2),
                    })
                    .collect()
            })
            .collect();
        // A count nested in `of`: all, none, a few less, or anything in between.
        let nested = |rng: &mut Rng, of: &Vec<Vec<u64>>| -> Vec<Vec<u64>> {
            of.iter()
                .map(|r| {
                    r.iter()
                        .map(|&x| match rng.below(5) {
                            0 => x,
                            1 => 0,
                            2 => x.saturating_sub(1 + rng.below(3)),
                            _ => rng.below(x + 1),
                        })
                        .collect()
                })
                .collect()
        };
        let mut f = Family {
            rows: labels("r", nrows),
            cols: labels("c", ncols),
            overlapping: rng.below(3) == 0,
            ..Family::default()
        };
        match rng.below(4) {
            0 | 1 => {
                let inner_of = nested(rng, &base);
                let mut chain = vec![Measure::persons(inner_of.clone())];
                if rng.below(2) == 0 {
                    chain.insert(0, Measure::persons(nested(rng, &inner_of)));
                }
                f.chains.push(chain);
                f.base = Measure::persons(base);
            }
            2 => {
                let a = nested(rng, &base);
                let b = nested(rng, &base);
                f.chains = vec![vec![Measure::persons(a)], vec![Measure::persons(b)]];
                f.base = Measure::persons(base);
            }
            _ => {
                let persons = base
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|&x| if x == 0 { 0 } else { 1 + rng.below(x) })
                            .collect()
                    })
                    .collect();
                f.base = Measure::events(base, persons);
                f.persons_published = true;
            }
        }
        f
    }

    #[test]
    fn random_families_leak_nothing() {
        let mut rng = Rng(0x5eed_0fc0_ffee);
        let mut leaks_when_separate = 0;
        for _ in 0..1500 {
            let f = random_family(&mut rng);
            let outs = protect_family(&f).unwrap();
            assert_family_safe(&f, &outs);
            assert_eq!(protect_family(&f).unwrap(), outs, "deterministic");
            let v = fam_view(&f, &separately(&f));
            if !v.published_leaks().is_empty() || !v.pinned().is_empty() {
                leaks_when_separate += 1;
            }
        }
        assert!(leaks_when_separate > 300, "{leaks_when_separate}");
    }

    #[test]
    fn random_revisions_leak_nothing() {
        let mut rng = Rng(99);
        for _ in 0..800 {
            let f = random_family(&mut rng);
            let first = protect_family(&f).unwrap();
            // The data changes a little: one cell of the base (and its chains) moves.
            let mut g = f.clone();
            let (i, j) = (
                rng.below(f.rows.len() as u64) as usize,
                rng.below(f.cols.len() as u64) as usize,
            );
            let add = 1 + rng.below(3);
            g.base.counts[i][j] += add;
            if let Some(p) = &mut g.base.persons {
                p[i][j] += 1;
            }
            for chain in &mut g.chains {
                chain.last_mut().unwrap().counts[i][j] += rng.below(add + 1).min(add);
                let top = chain.last().unwrap().counts[i][j];
                for m in chain.iter_mut().rev().skip(1) {
                    m.counts[i][j] = m.counts[i][j].min(top);
                }
            }
            g.earlier = vec![first.iter().map(Protected::release).collect()];
            let outs = protect_family(&g).unwrap();
            assert_family_safe(&g, &outs);
            let v = fam_view(&g, &outs);
            assert_eq!(
                v.differences(&release_vector(&first)),
                Vec::<String>::new(),
                "{g:?}"
            );
        }
    }

    #[test]
    fn a_municipality_sized_family_is_protected() {
        // 98 municipalities × 4 quarters of courses, with two chains (acute hospital
        // and GP contacts within 30 ⊆ 90 days), as the rehabilitation mart.
        let mut rng = Rng(2026);
        let base: Vec<Vec<u64>> = (0..98)
            .map(|_| (0..4).map(|_| rng.below(40)).collect())
            .collect();
        let part = |rng: &mut Rng, of: &Vec<Vec<u64>>, pct: u64| -> Vec<Vec<u64>> {
            of.iter()
                .map(|r| {
                    r.iter()
                        .map(|&x| (0..x).filter(|_| rng.below(100) < pct).count() as u64)
                        .collect()
                })
                .collect()
        };
        let a90 = part(&mut rng, &base, 30);
        let a30 = part(&mut rng, &a90, 60);
        let g90 = part(&mut rng, &base, 90);
        let g30 = part(&mut rng, &g90, 70);
        let f = Family {
            rows: labels("k", 98),
            cols: labels("q", 4),
            base: Measure::persons(base),
            chains: vec![
                vec![Measure::persons(a30), Measure::persons(a90)],
                vec![Measure::persons(g30), Measure::persons(g90)],
            ],
            overlapping: true,
            ..Family::default()
        };
        let started = std::time::Instant::now();
        let outs = protect_family(&f).unwrap();
        let took = started.elapsed();
        let v = fam_view(&f, &outs);
        assert_eq!(v.published_leaks(), Vec::<String>::new());
        let shown = |p: &Protected| {
            p.cells
                .iter()
                .flatten()
                .filter(|c| !c.is_suppressed())
                .count()
        };
        assert!(
            shown(&outs[0]) > 150,
            "most of the base is kept: {}",
            shown(&outs[0])
        );
        assert!(took.as_secs() < 20, "{took:?}");
        eprintln!(
            "98×4 family: {took:?}; published cells: base {}, subs {:?}",
            shown(&outs[0]),
            outs[1..].iter().map(shown).collect::<Vec<_>>()
        );
    }

    #[test]
    fn families_check_their_nesting() {
        let mut f = courses(&[5, 6], &[6, 2]);
        assert!(matches!(protect_family(&f), Err(SdcError::Family(_))));
        f.chains[0][0].counts = column(&[1]);
        assert_eq!(protect_family(&f), Err(SdcError::Shape { table: 1 }));
        let f = Family {
            rows: labels("r", 1),
            cols: labels("c", 1),
            base: Measure::events(vec![vec![3]], vec![vec![4]]),
            ..Family::default()
        };
        assert!(matches!(protect_family(&f), Err(SdcError::Family(_))));
    }

    // -- Groups of rows (rule 9) -----------------------------------------------

    /// Rows r0.. in groups: `row_group[r]` and each group's parent; one measure.
    fn grouped(
        counts: &[&[u64]],
        row_group: &[Option<usize>],
        groups: &[Option<usize>],
    ) -> (Family, Tree) {
        let f = Family {
            rows: labels("m", counts.len()),
            cols: labels("c", counts[0].len()),
            base: Measure::persons(counts.iter().map(|r| r.to_vec()).collect()),
            overlapping: true,
            ..Family::default()
        };
        let tree = Tree {
            groups: groups
                .iter()
                .enumerate()
                .map(|(g, p)| (format!("g{g}"), *p))
                .collect(),
            row_group: row_group.to_vec(),
        };
        (f, tree)
    }

    /// Everything published, as an attacker sees it: every node's cells and total
    /// (rows, groups, the country), its row line, and for every group (and the
    /// country) each column and the totals as the sum of its members'.
    fn tree_view(f: &Family, tree: &Tree, out: &TreeProtected) -> View {
        let (nrows, ncols) = (f.rows.len(), f.cols.len());
        let root = nrows + tree.groups.len();
        let parent = |node: usize| {
            let g = if node < nrows {
                tree.row_group[node]
            } else {
                tree.groups[node - nrows].1
            };
            g.map_or(root, |g| nrows + g)
        };
        let mut leaf_of: Vec<Vec<usize>> = vec![Vec::new(); root + 1];
        for r in 0..nrows {
            let mut n = r;
            loop {
                leaf_of[n].push(r);
                if n == root {
                    break;
                }
                n = parent(n);
            }
        }
        let at = |node: usize, j: usize| node * (ncols + 1) + j; // j == ncols: the total
        let mut truth = Vec::new();
        let mut known = Vec::new();
        for (leaves, (cells, total)) in leaf_of.iter().zip(&out.entries[0]) {
            for (j, c) in cells.iter().chain([total]).enumerate() {
                let v: u64 = leaves
                    .iter()
                    .map(|&r| {
                        if j < ncols {
                            f.base.counts[r][j]
                        } else {
                            f.base.counts[r].iter().sum()
                        }
                    })
                    .sum();
                truth.push(v);
                known.push(c.value());
            }
        }
        let mut lines = Vec::new();
        for node in 0..=root {
            lines.push(((0..ncols).map(|j| at(node, j)).collect(), at(node, ncols)));
        }
        for group in nrows..=root {
            let members: Vec<usize> = (0..root).filter(|&n| parent(n) == group).collect();
            for j in 0..=ncols {
                lines.push((members.iter().map(|&m| at(m, j)).collect(), at(group, j)));
            }
        }
        View {
            truth,
            known,
            lines,
            conflicts: Vec::new(),
        }
    }

    fn assert_tree_safe(f: &Family, tree: &Tree, out: &TreeProtected) {
        let v = tree_view(f, tree, out);
        for (e, k) in v.known.iter().enumerate() {
            if let Some(k) = k {
                assert_eq!(*k, v.truth[e], "published as it is");
                assert!(*k == 0 || *k >= MIN_CELL, "no 1-4 published: entry {e}");
            } else {
                assert!(
                    v.truth[e] > 0 || e % (f.cols.len() + 1) == f.cols.len(),
                    "zeros stay"
                );
            }
        }
        assert_eq!(differencing(&v), Vec::<usize>::new(), "differencing");
        assert_eq!(
            linear(&v),
            Vec::<usize>::new(),
            "linear attack over every level"
        );
    }

    /// Municipality m0 (2 persons) is in cluster g0 with m1. Protected as one table
    /// of municipalities, its complements may lie in another cluster, and the cluster
    /// row published beside it gives it away as g0 - m1; protected by group, not.
    #[test]
    fn a_cluster_row_cannot_be_used_to_recover_a_member() {
        let (f, tree) = grouped(
            &[&[2, 40], &[30, 50], &[20, 60], &[25, 45]],
            &[Some(0), Some(0), Some(1), Some(1)],
            &[None, None],
        );
        // Separately: the municipalities' table, and the clusters published whole.
        let alone = protect_family(&f).unwrap();
        let mut naive = TreeProtected {
            entries: vec![Vec::new()],
            primary: 0,
            secondary: 0,
            carried_up: 0,
        };
        for i in 0..4 {
            naive.entries[0].push((alone[0].cells[i].clone(), alone[0].row_totals[i]));
        }
        for g in [[0, 1], [2, 3]] {
            let col = |j: usize| Cell::Value(g.iter().map(|&r| f.base.counts[r][j]).sum());
            let total = g
                .iter()
                .map(|&r| f.base.counts[r].iter().sum::<u64>())
                .sum();
            naive.entries[0].push((vec![col(0), col(1)], Cell::Value(total)));
        }
        naive.entries[0].push((alone[0].col_totals.clone(), alone[0].grand_total));
        let v = tree_view(&f, &tree, &naive);
        assert!(
            !linear(&v).is_empty(),
            "the attack finds the member in its cluster"
        );

        let out = protect_tree(&f, &tree).unwrap();
        assert!(out.entries[0][0].0[0].is_suppressed());
        assert_tree_safe(&f, &tree, &out);
        // Cluster g1 has nothing small: its members and its row stay published.
        assert!(out.entries[0][2].0.iter().all(|c| !c.is_suppressed()));
        assert!(out.entries[0][5].0.iter().all(|c| !c.is_suppressed()));
    }

    /// A cluster's cell hidden in its region's table is hidden as the margin of the
    /// cluster's own table, and protected there with its members.
    #[test]
    fn a_group_hidden_above_is_protected_below() {
        let (f, tree) = grouped(
            &[&[3, 0], &[0, 0], &[40, 50], &[30, 60], &[45, 20]],
            &[Some(0), Some(0), Some(1), Some(1), Some(2)],
            &[Some(3), Some(3), Some(3), None],
        );
        let out = protect_tree(&f, &tree).unwrap();
        // g0's only non-zero is m0's 3: its cluster cell is 3 too, suppressed above.
        assert!(out.entries[0][5].0[0].is_suppressed());
        assert_tree_safe(&f, &tree, &out);
    }

    #[test]
    fn random_trees_leak_nothing() {
        let mut rng = Rng(0x7ee5_0001);
        let mut carried = 0;
        for _ in 0..60 {
            let regions = 1 + rng.below(3) as usize;
            let mut groups: Vec<Option<usize>> = vec![None; regions];
            let clusters = regions + rng.below(4) as usize;
            for k in 0..clusters {
                groups.push(Some(k % regions));
            }
            let nrows = clusters + 2 + rng.below(8) as usize;
            let ncols = 1 + rng.below(4) as usize;
            let style = rng.below(4);
            let counts: Vec<Vec<u64>> = (0..nrows)
                .map(|_| (0..ncols).map(|_| draw(&mut rng, style)).collect())
                .collect();
            // Every cluster has a member; the rest land anywhere, some in no group.
            let row_group: Vec<Option<usize>> = (0..nrows)
                .map(|r| {
                    if r < clusters {
                        Some(regions + r)
                    } else if rng.below(8) == 0 {
                        None
                    } else {
                        Some(regions + rng.below(clusters as u64) as usize)
                    }
                })
                .collect();
            let refs: Vec<&[u64]> = counts.iter().map(|r| r.as_slice()).collect();
            let (f, tree) = grouped(&refs, &row_group, &groups);
            let out = protect_tree(&f, &tree).unwrap();
            assert_tree_safe(&f, &tree, &out);
            carried += out.carried_up;
        }
        assert!(
            carried > 0,
            "the trees make tables below send suppressions up"
        );
    }

    #[test]
    fn trees_that_do_not_fit_are_refused() {
        let (f, mut tree) = grouped(&[&[5], &[6]], &[Some(0), Some(0)], &[None]);
        tree.groups[0].1 = Some(0);
        assert!(matches!(protect_tree(&f, &tree), Err(SdcError::Family(_))));
        let (f, mut tree) = grouped(&[&[5], &[6]], &[Some(0), Some(0)], &[None]);
        tree.groups[0].0 = "m1".into();
        assert!(matches!(protect_tree(&f, &tree), Err(SdcError::Family(_))));
    }
}
