//! Direct age and sex standardisation of a mart's rates.
//!
//! A municipality whose courses are taken by older citizens has more admissions after
//! them whatever its rehabilitation does; home-care recipients are older than the
//! citizens they are compared with. A mart that declares strata (`-- strata:
//! aldersgruppe, koen`: columns its query adds, so each cell comes in one row per
//! stratum) publishes beside every rate `r` a directly standardised `r_std`: the rate
//! each entry would have with the standard population's composition,
//!
//! ```text
//! r_std = per × Σ_s w_s × N_s / D_s,   w_s = W_s / Σ W
//! ```
//!
//! with `N_s`, `D_s` the entry's numerator and denominator in stratum `s` and `W_s`
//! the standard population's denominator there: the whole country's, all columns
//! together, or one column's (`-- standard: gruppe = hjemmepleje`: non-recipients as if
//! they had the recipients' ages and sexes). The country's rate in the standard's own
//! column is then its crude rate.
//!
//! A person must be in one stratum per period (age from the birth year at the period,
//! not at each event), so persons summed over strata are the cell's persons.
//!
//! **Disclosure.** The strata are not published, but a standardised rate beside the
//! crude one is one more equation on them: with two strata, crude and standardised
//! rate give both strata's numerators, and a stratum of 3 persons is a count of 3. So
//! `r_std` is published only where the crude rate is, and only where *every* stratum
//! of the standard (`W_s > 0`) has, in that entry, a rate that could be published on
//! its own: a denominator of at least [`disclosure::MIN_CELL`] persons; a numerator of
//! 0 (then on a base of at least [`disclosure::MIN_SHARE_BASE`], as a 0 % share) or of
//! persons at least `MIN_CELL`; for a share, also a rest (`D_s − N_s`) of 0 or at least
//! `MIN_CELL`. Where the strata could all be published as they are, nothing derived
//! from them says more. An entry missing a stratum cannot be standardised: `NULL`.
//! Persons behind a margin's stratum are taken as its largest cell's (a person may be
//! in several cells), a lower bound, as the disclosure rules do.

use std::collections::BTreeMap;

use crate::disclosure::{self, Cell, MIN_CELL, MIN_SHARE_BASE};
use crate::publication::RawCell;
use crate::publish::MartSpec;

/// The suffix of a standardised rate's column.
pub const SUFFIX: &str = "_std";

/// One stratum of one entry: per count, the count and the persons behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stratum {
    pub counts: Vec<u64>,
    pub persons: Vec<u64>,
}

/// The standard population of one period: per rate, per stratum label, its weight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standard {
    weights: Vec<BTreeMap<String, f64>>,
}

/// Persons behind count `m` of a raw cell (the count itself when it counts persons).
fn persons(spec: &MartSpec, c: &RawCell, m: usize) -> u64 {
    match spec.persons_of(&spec.counts[m]) {
        Some(_) => c.persons[m].unwrap_or(0).min(c.counts[m]),
        None => c.counts[m],
    }
}

fn index(spec: &MartSpec, name: &str) -> usize {
    spec.counts
        .iter()
        .position(|c| c == name)
        .expect("rates name counts (checked at parse)")
}

impl Standard {
    /// The standard of a period: the denominators of every rate by stratum, over every
    /// row and the standard's column (all columns when the mart names none).
    pub fn of(spec: &MartSpec, cells: &[RawCell]) -> Self {
        let in_standard = |c: &RawCell| match &spec.standard {
            Some((_, value)) => c.col == *value,
            None => true,
        };
        let weights = spec
            .rates
            .iter()
            .map(|r| {
                let d = index(spec, &r.denominator);
                let mut w: BTreeMap<String, f64> = BTreeMap::new();
                for c in cells.iter().filter(|c| in_standard(c)) {
                    *w.entry(c.stratum.clone()).or_default() += c.counts[d] as f64;
                }
                let total: f64 = w.values().sum();
                w.retain(|_, v| *v > 0.0);
                w.values_mut().for_each(|v| *v /= total);
                w
            })
            .collect();
        Standard { weights }
    }

    /// Rate `k` of an entry, standardised; `None` where it may not be published (see
    /// the module) or `crude` is not.
    pub fn rate(
        &self,
        spec: &MartSpec,
        k: usize,
        crude: Option<f64>,
        strata: &BTreeMap<String, Stratum>,
    ) -> Option<f64> {
        crude?;
        let r = &spec.rates[k];
        let (n, d) = (index(spec, &r.numerator), index(spec, &r.denominator));
        let share = spec.nested_in(&r.numerator, &r.denominator);
        let weights = &self.weights[k];
        if weights.is_empty() {
            return None;
        }
        let mut sum = 0.0;
        for (label, w) in weights {
            let s = strata.get(label)?;
            if !publishable(
                share,
                (s.counts[n], s.persons[n]),
                (s.counts[d], s.persons[d]),
            ) {
                return None;
            }
            sum += w * s.counts[n] as f64 / s.counts[d] as f64;
        }
        Some(sum * f64::from(r.per))
    }
}

/// Could a stratum's rate `numerator / denominator` (each a count and its persons) be
/// published on its own?
fn publishable(share: bool, numerator: (u64, u64), denominator: (u64, u64)) -> bool {
    let ((n, n_persons), (d, d_persons)) = (numerator, denominator);
    if d_persons < MIN_CELL {
        return false;
    }
    if share {
        return disclosure::share(Cell::Value(n), Cell::Value(d)).is_some()
            && (n_persons == 0 || n_persons >= MIN_CELL);
    }
    match n {
        0 => d_persons >= MIN_SHARE_BASE,
        _ => n_persons >= MIN_CELL,
    }
}

/// The strata of an entry made of `cells`: counts summed, persons the largest cell's.
pub fn strata_of<'c>(
    spec: &MartSpec,
    cells: impl Iterator<Item = &'c RawCell>,
) -> BTreeMap<String, Stratum> {
    let m = spec.counts.len();
    let mut out: BTreeMap<String, Stratum> = BTreeMap::new();
    // Persons per (stratum, cell) first: a cell may come in several query rows.
    let mut per_cell: BTreeMap<(&str, &str, &str), Vec<u64>> = BTreeMap::new();
    for c in cells {
        let s = out.entry(c.stratum.clone()).or_insert_with(|| Stratum {
            counts: vec![0; m],
            persons: vec![0; m],
        });
        for k in 0..m {
            s.counts[k] += c.counts[k];
        }
        let p = per_cell
            .entry((c.stratum.as_str(), c.row.as_str(), c.col.as_str()))
            .or_insert_with(|| vec![0; m]);
        for (k, v) in p.iter_mut().enumerate() {
            *v += persons(spec, c, k);
        }
    }
    for ((stratum, _, _), p) in per_cell {
        let s = out.get_mut(stratum).expect("entered above");
        for (have, cell) in s.persons.iter_mut().zip(p) {
            *have = (*have).max(cell);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(standard: &str) -> MartSpec {
        MartSpec::parse(
            "m",
            &format!(
                "-- period: kvartal quarter\n-- rows: k\n-- cols: g\n-- strata: alder\n{standard}\
                 -- counts: borgere, indlagte\n-- nested: indlagte < borgere\n\
                 -- rates: andel = indlagte / borgere\nSELECT 1"
            ),
        )
        .unwrap()
    }

    fn cell(row: &str, col: &str, stratum: &str, n: u64, m: u64) -> RawCell {
        RawCell {
            row: row.into(),
            col: col.into(),
            stratum: stratum.into(),
            groups: Vec::new(),
            counts: vec![n, m],
            persons: vec![None, None],
        }
    }

    #[test]
    fn rates_take_the_standards_composition() {
        // Old people are admitted more (50 % against 10 %) in both groups; the home-care
        // group is mostly old. Crude rates differ (42 % against 18 %); standardised to
        // the home-care group's ages, both groups' rates are the same.
        let cells = [
            cell("101", "pleje", "ung", 200, 20),
            cell("101", "pleje", "gammel", 800, 400),
            cell("101", "ingen", "ung", 800, 80),
            cell("101", "ingen", "gammel", 200, 100),
        ];
        let to_pleje = spec("-- standard: g = pleje\n");
        let standard = Standard::of(&to_pleje, &cells);
        let std = |col: &str| {
            let strata = strata_of(&to_pleje, cells.iter().filter(|c| c.col == col));
            standard.rate(&to_pleje, 0, Some(0.0), &strata).unwrap()
        };
        let expected = 0.2 * 0.1 + 0.8 * 0.5;
        assert!((std("pleje") - expected).abs() < 1e-12, "{}", std("pleje"));
        assert!((std("ingen") - expected).abs() < 1e-12, "{}", std("ingen"));
        // Standardised to everyone (half young, half old): both groups 30 %.
        let spec = spec("");
        let standard = Standard::of(&spec, &cells);
        let strata = strata_of(&spec, cells.iter().filter(|c| c.col == "ingen"));
        let v = standard.rate(&spec, 0, Some(0.0), &strata).unwrap();
        assert!((v - 0.3).abs() < 1e-12, "{v}");
        // Not where the crude rate is not published.
        assert_eq!(standard.rate(&spec, 0, None, &strata), None);
    }

    #[test]
    fn a_stratum_that_could_not_be_published_alone_withholds_the_rate() {
        let spec = spec("");
        let national = [
            cell("101", "pleje", "ung", 200, 20),
            cell("101", "pleje", "gammel", 200, 100),
        ];
        let standard = Standard::of(&spec, &national);
        let rate = |ung: (u64, u64), gammel: (u64, u64)| {
            let cells = [
                cell("147", "pleje", "ung", ung.0, ung.1),
                cell("147", "pleje", "gammel", gammel.0, gammel.1),
            ];
            standard.rate(&spec, 0, Some(0.0), &strata_of(&spec, cells.iter()))
        };
        assert!(rate((40, 10), (40, 20)).is_some());
        // With the crude rate (30 of 80) and the standardised one, 3 of 4 in the young
        // stratum would follow: a count of 3, and of 4 persons.
        assert_eq!(rate((4, 3), (76, 27)), None, "a base of 4");
        assert_eq!(rate((40, 3), (40, 27)), None, "a numerator of 3");
        assert_eq!(rate((40, 37), (40, 10)), None, "a rest of 3");
        assert_eq!(rate((10, 0), (70, 30)), None, "0 % of 10");
        assert!(rate((20, 0), (60, 30)).is_some(), "0 % of 20");
        assert_eq!(rate((0, 0), (80, 30)), None, "no young at all");
    }

    #[test]
    fn persons_behind_a_margin_are_its_largest_cells() {
        let spec = MartSpec::parse(
            "m",
            "-- period: kvartal quarter\n-- rows: k\n-- strata: alder\n\
             -- counts: forloeb, kontakter\n-- persons: forloeb = forloeb_personer\n\
             -- persons: kontakter = kontakt_personer\n\
             -- rates: pr_100 = 100 * kontakter / forloeb\nSELECT 1",
        )
        .unwrap();
        let c = |row: &str, n: u64, np: u64, k: u64, kp: u64| RawCell {
            row: row.into(),
            col: String::new(),
            stratum: "alle".into(),
            groups: Vec::new(),
            counts: vec![n, k],
            persons: vec![Some(np), Some(kp)],
        };
        let cells = [c("101", 10, 8, 9, 4), c("147", 10, 9, 9, 3)];
        let strata = strata_of(&spec, cells.iter());
        // 7 persons with contacts in all? Perhaps 4: a person may be in both rows.
        assert_eq!(strata["alle"].persons, vec![9, 4]);
        assert_eq!(strata["alle"].counts, vec![20, 18]);
        let standard = Standard::of(&spec, &cells);
        assert_eq!(standard.rate(&spec, 0, Some(90.0), &strata), None);
    }
}
