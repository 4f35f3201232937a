//! Statistical disclosure control (SDC) for published aggregate tables.
//!
//! Every count that leaves the trusted zone goes through here first. The rule set,
//! [`RULE_SET`], is recorded next to every published number.
//!
//! # Rules
//!
//! 1. **Primary suppression.** A person count of 1 to 4 (below [`MIN_CELL`]) is
//!    suppressed, in the body of a table and in its margins (a row total of 3 is a
//!    count of 3 persons). True zeros are published as 0.
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
//!    denominator gives back a suppressed numerator.
//!
//! # Assumptions and limits
//!
//! - Tables are additive: each person is counted in exactly one cell, and the
//!   margins published are the sums computed here. Publish no other totals beside
//!   them, and pass tables that share margins to [`protect_joint`] together.
//! - For joint tables the guarantee is against real-valued (linear programming)
//!   attacks; integer reasoning through the shared totals is not proven (the tests
//!   find none), and a rank miss would need that prime to divide a subdeterminant.
//! - Not enforced: how wide the remaining uncertainty is (an attacker may still learn
//!   that a suppressed cell is between 1 and 6, say; there are no protection
//!   intervals), and reasoning about which cell the complement heuristic would have
//!   picked.

use std::fmt;

use serde::{Serialize, Serializer};

/// Name and version of the rules applied here; recorded with every publication.
pub const RULE_SET: &str = "naerdata-sdc-1: primary 1-4 suppressed (cells and margins), zeros \
     kept; secondary suppression over row, column and grand totals until no suppressed value \
     is determined by the published totals, non-negativity and suppressed >= 1; tables sharing \
     row totals protected jointly; rates suppressed when numerator or denominator < 5";

/// The smallest person count that may be published (other than 0).
pub const MIN_CELL: u64 = 5;

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
}

/// The prime 2^61 − 1, for the rank computation.
const P: u64 = (1 << 61) - 1;

impl<'a> Problem<'a> {
    fn new(values: &'a [u64], lines: &'a [Line]) -> Self {
        let mut lines_of = vec![Vec::new(); values.len()];
        for (l, line) in lines.iter().enumerate() {
            for &e in &line.interior {
                lines_of[e].push((l, 1));
            }
            lines_of[line.total].push((l, -1));
        }
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
        Problem {
            values,
            lines,
            lines_of,
            state,
        }
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
        self.state[e] = State::Secondary;
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
    /// `e` (empty when one of suppressed entries exists; `None` when there is none),
    /// by Dijkstra over (line, pending contribution).
    fn cheapest_cycle(&self, e: usize) -> Option<Vec<usize>> {
        let [(la, sa), (lb, sb)] = [self.lines_of[e][0], self.lines_of[e][1]];
        let state = |l: usize, c: i8| 2 * l + usize::from(c < 0);
        let mut best: Option<(u64, Vec<usize>)> = None;
        let moves: &[i8] = if self.tight(e) { &[1] } else { &[1, -1] };
        for &ne in moves {
            // Along e from la to lb: lb receives sb·ne; the walk back must bring la
            // the contribution that cancels sa·ne.
            let (start, goal) = (state(lb, sb * ne), state(la, -sa * ne));
            let mut dist = vec![u64::MAX; 2 * self.lines.len()];
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
                let line = &self.lines[l];
                for &f in line.interior.iter().chain([&line.total]) {
                    if f == e
                        || !(self.hidden(f) || self.candidate(f))
                        || self.lines_of[f].len() != 2
                    {
                        continue;
                    }
                    let (here, there) = match self.lines_of[f][..] {
                        [a, b] if a.0 == l => (a.1, b),
                        [a, b] => (b.1, a),
                        _ => unreachable!("checked: two lines"),
                    };
                    let nf = -c * here;
                    if self.tight(f) && nf < 0 {
                        continue;
                    }
                    let next = state(there.0, there.1 * nf);
                    let nd = d + if self.hidden(f) { 0 } else { self.values[f] };
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
                    if !self.hidden(f) {
                        path.push(f);
                    }
                    s = p;
                }
                best = Some((dist[goal], path));
            }
        }
        best.map(|b| b.1)
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
                pr.state[e] = State::Secondary;
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
        pr.state[4 + 1] = State::Secondary; // (0,1)
        pr.state[4 + 4] = State::Secondary; // (1,1)
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
}
