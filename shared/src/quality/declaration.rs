//! The monthly quality declaration per delivered dataset, after NHS England's DQMI:
//! coverage (periods and reporting-unit periods received / expected), completeness
//! (filled values / values) and validity (conforming values / values present), with
//! timeliness (on time / received) and the change against the previous month.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use super::reception::{ReceptionRow, ReceptionStatus};
use super::{Kahn, Metric};
use crate::validate::days_since_epoch;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Declaration {
    /// The first day of the month.
    pub month: NaiveDate,
    pub source: String,
    pub dataset: String,
    pub deliveries: u64,
    pub rows: u64,
    pub periods_expected: u64,
    pub periods_received: u64,
    pub coverage_pct: Option<f64>,
    pub unit_periods_expected: u64,
    pub unit_periods_received: u64,
    pub unit_coverage_pct: Option<f64>,
    pub on_time_pct: Option<f64>,
    pub completeness_pct: Option<f64>,
    pub validity_pct: Option<f64>,
    pub coverage_change: Option<f64>,
    pub completeness_change: Option<f64>,
    pub validity_change: Option<f64>,
}

fn pct(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| 100.0 * num as f64 / den as f64)
}

pub fn month_of(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists")
}

pub fn previous_month(m: NaiveDate) -> NaiveDate {
    month_of(month_of(m) - chrono::Duration::days(1))
}

/// One dataset's declaration for `month`: `calendar` is the reception calendar as of
/// the month's end (or today, within the month), `metrics` the metrics of every
/// delivery of the dataset dated in the month (with their own table's name).
pub fn declare(
    month: NaiveDate,
    source: &str,
    dataset: &str,
    table: &str,
    calendar: &[ReceptionRow],
    deliveries: &[&[Metric]],
) -> Declaration {
    let in_month = |r: &&ReceptionRow| month_of(r.period_start) == month;
    let due = |r: &&ReceptionRow| r.status != ReceptionStatus::Pending;
    let received =
        |r: &ReceptionRow| matches!(r.status, ReceptionStatus::OnTime | ReceptionStatus::Late);
    let whole: Vec<&ReceptionRow> = calendar
        .iter()
        .filter(|r| r.unit.is_none())
        .filter(in_month)
        .filter(due)
        .collect();
    let units: Vec<&ReceptionRow> = calendar
        .iter()
        .filter(|r| r.unit.is_some())
        .filter(in_month)
        .filter(due)
        .collect();
    let got = whole.iter().filter(|r| received(r)).count() as u64;
    let on_time = whole
        .iter()
        .filter(|r| r.status == ReceptionStatus::OnTime)
        .count() as u64;
    let unit_got = units.iter().filter(|r| received(r)).count() as u64;

    let (mut filled, mut values, mut valid, mut present, mut rows) = (0, 0, 0, 0, 0);
    for ms in deliveries {
        for m in ms.iter().filter(|m| m.table == table) {
            match (m.category, m.check.as_str()) {
                (Kahn::Completeness, _) => {
                    filled += m.denominator - m.violated.min(m.denominator);
                    values += m.denominator;
                }
                (Kahn::ConformanceValue, super::check::CONFORMANCE) => {
                    valid += m.denominator - m.violated.min(m.denominator);
                    present += m.denominator;
                }
                (Kahn::Volume, super::check::ROWS) => rows += m.value.unwrap_or(0.0) as u64,
                _ => {}
            }
        }
    }
    Declaration {
        month,
        source: source.to_string(),
        dataset: dataset.to_string(),
        deliveries: deliveries.len() as u64,
        rows,
        periods_expected: whole.len() as u64,
        periods_received: got,
        coverage_pct: pct(got, whole.len() as u64),
        unit_periods_expected: units.len() as u64,
        unit_periods_received: unit_got,
        unit_coverage_pct: pct(unit_got, units.len() as u64),
        on_time_pct: pct(on_time, got),
        completeness_pct: pct(filled, values),
        validity_pct: pct(valid, present),
        coverage_change: None,
        completeness_change: None,
        validity_change: None,
    }
}

/// Sets the changes against the previous month's declaration of the same dataset.
pub fn compare(current: &mut Declaration, previous: &Declaration) {
    let d = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    current.coverage_change = d(current.coverage_pct, previous.coverage_pct);
    current.completeness_change = d(current.completeness_pct, previous.completeness_pct);
    current.validity_change = d(current.validity_pct, previous.validity_pct);
}

pub fn schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("month", DataType::Date32, false),
        s("source"),
        s("dataset"),
        i("deliveries"),
        i("rows"),
        i("periods_expected"),
        i("periods_received"),
        f("coverage_pct"),
        i("unit_periods_expected"),
        i("unit_periods_received"),
        f("unit_coverage_pct"),
        f("on_time_pct"),
        f("completeness_pct"),
        f("validity_pct"),
        f("coverage_change"),
        f("completeness_change"),
        f("validity_change"),
    ]))
}

pub fn batch(rows: &[Declaration]) -> RecordBatch {
    let s = |f: &dyn Fn(&Declaration) -> &str| {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()) as ArrayRef
    };
    let i = |f: &dyn Fn(&Declaration) -> u64| {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| f(r) as i64),
        )) as ArrayRef
    };
    let f = |f: &dyn Fn(&Declaration) -> Option<f64>| {
        Arc::new(rows.iter().map(f).collect::<Float64Array>()) as ArrayRef
    };
    let columns = vec![
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| days_since_epoch(r.month)),
        )) as ArrayRef,
        s(&|r| &r.source),
        s(&|r| &r.dataset),
        i(&|r| r.deliveries),
        i(&|r| r.rows),
        i(&|r| r.periods_expected),
        i(&|r| r.periods_received),
        f(&|r| r.coverage_pct),
        i(&|r| r.unit_periods_expected),
        i(&|r| r.unit_periods_received),
        f(&|r| r.unit_coverage_pct),
        f(&|r| r.on_time_pct),
        f(&|r| r.completeness_pct),
        f(&|r| r.validity_pct),
        f(&|r| r.coverage_change),
        f(&|r| r.completeness_change),
        f(&|r| r.validity_change),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::check;

    fn cal(period: NaiveDate, unit: Option<&str>, status: ReceptionStatus) -> ReceptionRow {
        ReceptionRow {
            as_of: period,
            source: "s".into(),
            dataset: "s.d".into(),
            unit: unit.map(str::to_string),
            cadence: "daily".into(),
            period_start: period,
            expected_by: period,
            deadline: period,
            status,
            past_deadline: false,
            deliveries: 0,
            rows: 0,
            first_received_at: None,
            volume_anomaly: false,
        }
    }

    #[test]
    fn coverage_completeness_validity_and_the_change() {
        let m = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let d = |n| NaiveDate::from_ymd_opt(2026, 3, n).unwrap();
        let calendar = vec![
            cal(d(1), None, ReceptionStatus::OnTime),
            cal(d(2), None, ReceptionStatus::Late),
            cal(d(3), None, ReceptionStatus::Missing),
            cal(d(4), None, ReceptionStatus::Missing),
            cal(d(5), None, ReceptionStatus::Pending),
            cal(d(1), Some("101"), ReceptionStatus::OnTime),
            cal(d(2), Some("101"), ReceptionStatus::Missing),
            // Another month: ignored.
            cal(
                NaiveDate::from_ymd_opt(2026, 2, 28).unwrap(),
                None,
                ReceptionStatus::Missing,
            ),
        ];
        let metrics = vec![
            Metric::rate(
                "s_d",
                check::COMPLETENESS,
                Kahn::Completeness,
                Some("a"),
                10,
                100,
                Some(2.0),
            ),
            Metric::rate(
                "s_d",
                check::CONFORMANCE,
                Kahn::ConformanceValue,
                Some("a"),
                9,
                90,
                Some(1.0),
            ),
            Metric::rate(
                "other",
                check::COMPLETENESS,
                Kahn::Completeness,
                Some("a"),
                100,
                100,
                Some(2.0),
            ),
            Metric::measure("s_d", check::ROWS, None, 100),
        ];
        let mut decl = declare(m, "s", "s.d", "s_d", &calendar, &[&metrics]);
        assert_eq!((decl.periods_expected, decl.periods_received), (4, 2));
        assert_eq!(decl.coverage_pct, Some(50.0));
        assert_eq!(decl.unit_coverage_pct, Some(50.0));
        assert_eq!(decl.on_time_pct, Some(50.0));
        assert_eq!(decl.completeness_pct, Some(90.0));
        assert_eq!(decl.validity_pct, Some(90.0));
        assert_eq!(decl.rows, 100);
        let mut prev = decl.clone();
        prev.coverage_pct = Some(75.0);
        compare(&mut decl, &prev);
        assert_eq!(decl.coverage_change, Some(-25.0));
        assert_eq!(decl.validity_change, Some(0.0));
        assert_eq!(
            previous_month(m),
            NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()
        );
        assert_eq!(batch(&[decl]).num_rows(), 1);
    }
}
