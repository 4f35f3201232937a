//! Drift: a delivery's volume measures (rows, distinct persons, rows per reporting
//! unit) against the same measures of the last accepted deliveries of its dataset.
//!
//! The band is median ± 3·MAD (scaled to σ, so it is about ±3σ for normal data),
//! never narrower than ±10 % of the median: history that happens to be identical
//! would otherwise flag every small change. A measure is only judged once
//! [`MIN_HISTORY`] earlier deliveries have it; a reporting unit's history counts
//! the deliveries the unit appeared in.

use std::collections::HashMap;

use super::{Kahn, Metric, Status, check};

/// How many earlier accepted deliveries are compared.
pub const HISTORY: usize = 8;
/// No verdict with less history than this.
pub const MIN_HISTORY: usize = 4;
const K: f64 = 3.0;
/// MAD -> σ for normally distributed data.
const MAD_SCALE: f64 = 1.4826;
const MIN_RELATIVE_WIDTH: f64 = 0.1;

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The robust band of a history, or `None` with too little of it.
pub fn band(history: &[f64]) -> Option<(f64, f64)> {
    if history.len() < MIN_HISTORY {
        return None;
    }
    let mut h = history.to_vec();
    h.sort_by(f64::total_cmp);
    let med = median(&h);
    let mut dev: Vec<f64> = h.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = median(&dev);
    let half = (K * MAD_SCALE * mad).max(MIN_RELATIVE_WIDTH * med.abs());
    Some(((med - half).max(0.0), med + half))
}

fn is_drift_measure(m: &Metric) -> bool {
    m.category == Kahn::Volume
        && matches!(
            m.check.as_str(),
            check::ROWS | check::DISTINCT_PERSONS | check::ROWS_PER_UNIT
        )
}

type MeasureKey = (String, String, Option<String>);

fn key(m: &Metric) -> MeasureKey {
    (m.table.clone(), m.check.clone(), m.unit.clone())
}

/// Judges every volume measure in `metrics` against `history`: the metrics of the
/// earlier accepted deliveries, newest first (only the first [`HISTORY`] count).
pub fn apply(metrics: &mut [Metric], history: &[Vec<Metric>]) {
    let mut past: HashMap<MeasureKey, Vec<f64>> = HashMap::new();
    for delivery in history.iter().take(HISTORY) {
        for m in delivery.iter().filter(|m| is_drift_measure(m)) {
            if let Some(v) = m.value {
                past.entry(key(m)).or_default().push(v);
            }
        }
    }
    for m in metrics.iter_mut().filter(|m| is_drift_measure(m)) {
        let (Some(v), Some(h)) = (m.value, past.get(&key(m))) else {
            continue;
        };
        if let Some((lo, hi)) = band(h) {
            m.lower = Some(lo);
            m.upper = Some(hi);
            m.status = if (lo..=hi).contains(&v) {
                Status::Pass
            } else {
                Status::Fail
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> Vec<Metric> {
        vec![
            Metric::measure("t", check::ROWS, None, n),
            Metric::measure("t", check::ROWS_PER_UNIT, Some("101"), n / 2),
        ]
    }

    #[test]
    fn a_tenfold_drop_fails_with_enough_history_and_not_before() {
        let history: Vec<Vec<Metric>> = [1000, 1040, 980, 1010, 995, 1020]
            .iter()
            .map(|&n| rows(n))
            .collect();
        for have in 0..=history.len() {
            let mut now = rows(100);
            apply(&mut now, &history[..have]);
            let expected = if have < MIN_HISTORY {
                Status::NotApplicable
            } else {
                Status::Fail
            };
            assert_eq!(now[0].status, expected, "history of {have}");
            assert_eq!(now[1].status, expected, "per unit, history of {have}");
        }
        let mut normal = rows(1003);
        apply(&mut normal, &history);
        assert_eq!(normal[0].status, Status::Pass);
        let (lo, hi) = (normal[0].lower.unwrap(), normal[0].upper.unwrap());
        assert!(lo < 1003.0 && 1003.0 < hi && lo > 800.0, "{lo}..{hi}");
    }

    #[test]
    fn only_the_last_eight_count_and_identical_history_has_a_floor() {
        // Newest first: eight deliveries of 100, then old ones of 10 000.
        let mut history: Vec<Vec<Metric>> = (0..HISTORY).map(|_| rows(100)).collect();
        history.extend((0..10).map(|_| rows(10_000)));
        let mut now = rows(105);
        apply(&mut now, &history);
        assert_eq!(now[0].status, Status::Pass, "within the 10 % floor");
        assert_eq!(now[0].upper, Some(110.0));
        let mut now = rows(150);
        apply(&mut now, &history);
        assert_eq!(now[0].status, Status::Fail);
    }

    #[test]
    fn a_new_unit_has_no_history() {
        let history: Vec<Vec<Metric>> = (0..6).map(|_| rows(1000)).collect();
        let mut now = vec![Metric::measure("t", check::ROWS_PER_UNIT, Some("999"), 3)];
        apply(&mut now, &history);
        assert_eq!(now[0].status, Status::NotApplicable);
    }
}
