//! The reception calendar: per dataset and per reporting unit, which periods'
//! deliveries arrived on time, late, or are missing.
//!
//! A delivery is for the period its landing path names (`.../<yyyy-mm-dd>/...`): a
//! supplier sending 3 March's data late still files it under 2026-03-03. Only
//! accepted deliveries count as received (a rejected one must be sent again).
//!
//! For a period P, as of day T (everything received up to the end of T counts):
//! - `on_time`: first arrival by the deadline; `late`: first arrival after it;
//! - `missing`: nothing yet and T is past P's expected-by day (`past_deadline` once
//!   T is also past the deadline); `pending`: nothing yet, not expected yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::rules::{Cadence, DeadlineFrom, ExpectedUnits, Reception};
use super::store::utc;
use crate::validate::days_since_epoch;

/// How far back the calendar looks: long enough to see a municipal day through its
/// deadline (up to 45 days later).
pub const WINDOW_DAYS: i64 = 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceptionStatus {
    OnTime,
    Late,
    Missing,
    Pending,
}

impl ReceptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceptionStatus::OnTime => "on_time",
            ReceptionStatus::Late => "late",
            ReceptionStatus::Missing => "missing",
            ReceptionStatus::Pending => "pending",
        }
    }
}

/// One accepted delivery, as the calendar sees it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub delivery_date: NaiveDate,
    pub received_at: DateTime<Utc>,
    pub rows: u64,
    /// Drift flagged the delivery's row count.
    pub volume_anomaly: bool,
    /// Rows per reporting unit, with the unit's own drift flag.
    pub units: Vec<(String, u64, bool)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceptionRow {
    pub as_of: NaiveDate,
    pub source: String,
    pub dataset: String,
    /// `None`: the dataset as a whole.
    pub unit: Option<String>,
    pub cadence: String,
    pub period_start: NaiveDate,
    pub expected_by: NaiveDate,
    pub deadline: NaiveDate,
    pub status: ReceptionStatus,
    pub past_deadline: bool,
    pub deliveries: u64,
    pub rows: u64,
    pub first_received_at: Option<DateTime<Utc>>,
    pub volume_anomaly: bool,
}

pub fn period_start(c: Cadence, d: NaiveDate) -> NaiveDate {
    match c {
        Cadence::Daily => d,
        Cadence::Weekly => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
        Cadence::Monthly => d.with_day(1).expect("day 1 exists"),
    }
}

fn month_end(d: NaiveDate) -> NaiveDate {
    let first_next = if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    };
    first_next.expect("a valid month") - Duration::days(1)
}

pub fn period_end(c: Cadence, start: NaiveDate) -> NaiveDate {
    match c {
        Cadence::Daily => start,
        Cadence::Weekly => start + Duration::days(6),
        Cadence::Monthly => month_end(start),
    }
}

fn next_period(c: Cadence, start: NaiveDate) -> NaiveDate {
    period_end(c, start) + Duration::days(1)
}

pub fn expected_by(r: &Reception, c: Cadence, start: NaiveDate) -> NaiveDate {
    period_end(c, start) + Duration::days(i64::from(r.grace_days))
}

pub fn deadline(r: &Reception, c: Cadence, start: NaiveDate) -> NaiveDate {
    let from = match r.deadline.after {
        DeadlineFrom::PeriodEnd => period_end(c, start),
        DeadlineFrom::MonthEnd => month_end(period_end(c, start)),
    };
    from + Duration::days(i64::from(r.deadline.days))
}

/// What is known about one dataset's deliveries.
pub struct Inputs<'a> {
    pub source: &'a str,
    pub dataset: &'a str,
    pub reception: &'a Reception,
    /// Accepted deliveries, in any order.
    pub arrivals: &'a [Arrival],
    /// For `units: kommuner`: the municipality codes.
    pub kommuner: &'a [String],
    /// For `units: seen`: the units the register of reporting units expects besides
    /// those seen (unit, valid from, valid to), so a unit that never delivered is
    /// missing too.
    pub registered: &'a [(String, NaiveDate, Option<NaiveDate>)],
}

#[derive(Default)]
struct Cell {
    deliveries: u64,
    rows: u64,
    first: Option<DateTime<Utc>>,
    anomaly: bool,
}

impl Cell {
    fn add(&mut self, rows: u64, at: DateTime<Utc>, anomaly: bool) {
        self.deliveries += 1;
        self.rows += rows;
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.anomaly |= anomaly;
    }
}

/// The calendar of one dataset as of `as_of`: one row per period in the window for
/// the dataset as a whole, and one per expected reporting unit and unit period.
/// The window starts at the dataset's first delivery in view; with none, one
/// `missing` row for the last period that is due says the source is silent.
pub fn calendar(i: &Inputs, as_of: NaiveDate) -> Vec<ReceptionRow> {
    let r = i.reception;
    let from = as_of - Duration::days(WINDOW_DAYS - 1);
    let received = |a: &&Arrival| a.received_at.date_naive() <= as_of;

    let mut whole: BTreeMap<NaiveDate, Cell> = BTreeMap::new();
    let unit_cadence = r.unit_cadence.unwrap_or(r.cadence);
    let mut units: BTreeMap<(String, NaiveDate), Cell> = BTreeMap::new();
    // When each unit was first seen: a unit is expected from its next period on.
    let mut first_seen: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for a in i.arrivals.iter().filter(received) {
        whole
            .entry(period_start(r.cadence, a.delivery_date))
            .or_default()
            .add(a.rows, a.received_at, a.volume_anomaly);
        for (u, n, anomaly) in a.units.iter().filter(|(_, n, _)| *n > 0) {
            let p = period_start(unit_cadence, a.delivery_date);
            units
                .entry((u.clone(), p))
                .or_default()
                .add(*n, a.received_at, *anomaly);
            let seen = first_seen.entry(u.clone()).or_insert(p);
            *seen = (*seen).min(p);
        }
    }
    let expected_units: BTreeSet<String> = match r.units {
        ExpectedUnits::Kommuner => i.kommuner.iter().cloned().collect(),
        ExpectedUnits::Seen => first_seen
            .keys()
            .cloned()
            .chain(i.registered.iter().map(|(u, _, _)| u.clone()))
            .collect(),
    };
    // A registered unit is expected in the periods its registration overlaps.
    let registered_in = |u: &str, p: NaiveDate, c: Cadence| {
        let end = period_end(c, p);
        i.registered
            .iter()
            .any(|(x, from, to)| x == u && *from <= end && to.is_none_or(|t| t >= p))
    };

    let mut out = Vec::new();
    let mut row = |unit: Option<&str>, c: Cadence, start: NaiveDate, cell: Option<&Cell>| {
        let (exp, dl) = (expected_by(r, c, start), deadline(r, c, start));
        let status = match cell.and_then(|c| c.first) {
            Some(first) if first.date_naive() <= dl => ReceptionStatus::OnTime,
            Some(_) => ReceptionStatus::Late,
            None if as_of > exp => ReceptionStatus::Missing,
            None => ReceptionStatus::Pending,
        };
        out.push(ReceptionRow {
            as_of,
            source: i.source.to_string(),
            dataset: i.dataset.to_string(),
            unit: unit.map(str::to_string),
            cadence: format!("{c:?}").to_lowercase(),
            period_start: start,
            expected_by: exp,
            deadline: dl,
            status,
            past_deadline: status == ReceptionStatus::Missing && as_of > dl,
            deliveries: cell.map_or(0, |c| c.deliveries),
            rows: cell.map_or(0, |c| c.rows),
            first_received_at: cell.and_then(|c| c.first),
            volume_anomaly: cell.is_some_and(|c| c.anomaly),
        });
    };
    // The calendar starts with the dataset's first delivery in view: a source that
    // went live last week is not missing the weeks before.
    let Some(first) = i
        .arrivals
        .iter()
        .filter(received)
        .map(|a| a.delivery_date)
        .min()
    else {
        // Nothing at all in view: one missing row says the source is silent.
        let p = period_start(
            r.cadence,
            as_of - Duration::days(1 + i64::from(r.grace_days)),
        );
        row(None, r.cadence, p, None);
        return out;
    };
    let from = from.max(first);
    let mut p = period_start(r.cadence, from);
    while p <= as_of {
        row(None, r.cadence, p, whole.get(&p));
        p = next_period(r.cadence, p);
    }
    for u in &expected_units {
        let mut p = period_start(unit_cadence, from);
        while p <= as_of {
            // A unit seen for the first time is not missing before it started.
            let started = r.units == ExpectedUnits::Kommuner
                || first_seen.get(u).is_some_and(|&s| s <= p)
                || registered_in(u, p, unit_cadence);
            if started {
                row(Some(u), unit_cadence, p, units.get(&(u.clone(), p)));
            }
            p = next_period(unit_cadence, p);
        }
    }
    out
}

pub fn schema() -> SchemaRef {
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let d = |n: &str| Field::new(n, DataType::Date32, false);
    Arc::new(Schema::new(vec![
        d("as_of"),
        s("source", false),
        s("dataset", false),
        s("unit", true),
        s("cadence", false),
        d("period_start"),
        d("expected_by"),
        d("deadline"),
        s("status", false),
        Field::new("past_deadline", DataType::Boolean, false),
        Field::new("deliveries", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("first_received_at", utc(), true),
        Field::new("volume_anomaly", DataType::Boolean, false),
    ]))
}

pub fn batch(rows: &[ReceptionRow]) -> RecordBatch {
    let strs = |f: &dyn Fn(&ReceptionRow) -> Option<&str>| {
        Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
    };
    let dates = |f: &dyn Fn(&ReceptionRow) -> NaiveDate| {
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| days_since_epoch(f(r))),
        )) as ArrayRef
    };
    let ints = |f: &dyn Fn(&ReceptionRow) -> u64| {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| f(r) as i64),
        )) as ArrayRef
    };
    let bools = |f: &dyn Fn(&ReceptionRow) -> bool| {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>()) as ArrayRef
    };
    let columns = vec![
        dates(&|r| r.as_of),
        strs(&|r| Some(&r.source)),
        strs(&|r| Some(&r.dataset)),
        strs(&|r| r.unit.as_deref()),
        strs(&|r| Some(&r.cadence)),
        dates(&|r| r.period_start),
        dates(&|r| r.expected_by),
        dates(&|r| r.deadline),
        strs(&|r| Some(r.status.as_str())),
        bools(&|r| r.past_deadline),
        ints(&|r| r.deliveries),
        ints(&|r| r.rows),
        Arc::new(
            rows.iter()
                .map(|r| r.first_received_at.map(|t| t.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        bools(&|r| r.volume_anomaly),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::rules::Deadline;

    fn municipal() -> Reception {
        Reception {
            cadence: Cadence::Daily,
            unit_cadence: None,
            grace_days: 1,
            deadline: Deadline {
                days: 14,
                after: DeadlineFrom::MonthEnd,
            },
            units: ExpectedUnits::Kommuner,
        }
    }

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).unwrap()
    }

    fn at(d: NaiveDate) -> DateTime<Utc> {
        d.and_hms_opt(6, 0, 0).unwrap().and_utc()
    }

    /// Daily deliveries from 101 and 147 from 1 March; 147 stops after 10 March.
    fn arrivals(until: NaiveDate) -> Vec<Arrival> {
        let mut out = Vec::new();
        let mut d = day(3, 1);
        while d <= until {
            let mut units = vec![("101".to_string(), 10, false)];
            if d <= day(3, 10) {
                units.push(("147".to_string(), 5, false));
            }
            out.push(Arrival {
                delivery_date: d,
                received_at: at(d),
                rows: 15,
                volume_anomaly: false,
                units,
            });
            d += Duration::days(1);
        }
        out
    }

    fn status(rows: &[ReceptionRow], unit: &str, p: NaiveDate) -> Option<ReceptionStatus> {
        rows.iter()
            .find(|r| r.unit.as_deref() == Some(unit) && r.period_start == p)
            .map(|r| r.status)
    }

    #[test]
    fn a_municipality_that_stops_is_missing_from_the_day_after_its_grace() {
        let kommuner = vec!["101".to_string(), "147".to_string()];
        let rec = municipal();
        let calendar_on = |as_of: NaiveDate| {
            let a = arrivals(as_of);
            calendar(
                &Inputs {
                    source: "kommune",
                    dataset: "kommune.gateway",
                    reception: &rec,
                    arrivals: &a,
                    kommuner: &kommuner,
                    registered: &[],
                },
                as_of,
            )
        };
        // 11 March's data is expected by the end of 12 March.
        let on_12 = calendar_on(day(3, 12));
        assert_eq!(
            status(&on_12, "147", day(3, 10)),
            Some(ReceptionStatus::OnTime)
        );
        assert_eq!(
            status(&on_12, "147", day(3, 11)),
            Some(ReceptionStatus::Pending)
        );
        assert_eq!(
            status(&on_12, "101", day(3, 11)),
            Some(ReceptionStatus::OnTime)
        );
        let on_13 = calendar_on(day(3, 13));
        assert_eq!(
            status(&on_13, "147", day(3, 11)),
            Some(ReceptionStatus::Missing)
        );
        assert_eq!(
            status(&on_13, "147", day(3, 12)),
            Some(ReceptionStatus::Pending)
        );
        let row = on_13
            .iter()
            .find(|r| r.unit.as_deref() == Some("147") && r.period_start == day(3, 11))
            .unwrap();
        assert!(!row.past_deadline);
        assert_eq!(row.deadline, day(4, 14), "14 days after the end of March");
        // The dataset as a whole still arrives every day.
        assert!(
            on_13
                .iter()
                .filter(|r| r.unit.is_none() && r.period_start <= day(3, 12))
                .all(|r| r.status == ReceptionStatus::OnTime)
        );
    }

    #[test]
    fn data_sent_after_the_deadline_is_late_and_before_it_on_time() {
        let kommuner = vec!["147".to_string()];
        let rec = municipal();
        let resend = |received: NaiveDate| {
            vec![Arrival {
                delivery_date: day(3, 11),
                received_at: at(received),
                rows: 5,
                volume_anomaly: false,
                units: vec![("147".to_string(), 5, false)],
            }]
        };
        for (received, expected) in [
            (day(4, 14), ReceptionStatus::OnTime),
            (day(4, 15), ReceptionStatus::Late),
        ] {
            let a = resend(received);
            let rows = calendar(
                &Inputs {
                    source: "kommune",
                    dataset: "kommune.gateway",
                    reception: &rec,
                    arrivals: &a,
                    kommuner: &kommuner,
                    registered: &[],
                },
                day(4, 20),
            );
            assert_eq!(
                status(&rows, "147", day(3, 11)),
                Some(expected),
                "{received}"
            );
        }
        // Before it arrived, as of 16 April, it was missing and past the deadline
        // (another municipality's delivery that day starts the calendar).
        let mut a = resend(day(4, 17));
        a.push(Arrival {
            delivery_date: day(3, 11),
            received_at: at(day(3, 11)),
            rows: 3,
            volume_anomaly: false,
            units: vec![("101".to_string(), 3, false)],
        });
        let rows = calendar(
            &Inputs {
                source: "kommune",
                dataset: "kommune.gateway",
                reception: &rec,
                arrivals: &a,
                kommuner: &kommuner,
                registered: &[],
            },
            day(4, 16),
        );
        let r = rows
            .iter()
            .find(|r| r.unit.is_some() && r.period_start == day(3, 11))
            .unwrap();
        assert_eq!(r.status, ReceptionStatus::Missing);
        assert!(r.past_deadline);
    }

    #[test]
    fn seen_units_are_expected_from_their_first_period_weekly() {
        let rec = Reception {
            cadence: Cadence::Daily,
            unit_cadence: Some(Cadence::Weekly),
            grace_days: 1,
            deadline: Deadline {
                days: 3,
                after: DeadlineFrom::PeriodEnd,
            },
            units: ExpectedUnits::Seen,
        };
        // Clinic A delivers in the week of 2 March only; B from 16 March.
        let a = vec![
            Arrival {
                delivery_date: day(3, 3),
                received_at: at(day(3, 3)),
                rows: 4,
                volume_anomaly: false,
                units: vec![("A".into(), 4, false)],
            },
            Arrival {
                delivery_date: day(3, 17),
                received_at: at(day(3, 17)),
                rows: 2,
                volume_anomaly: false,
                units: vec![("B".into(), 2, false)],
            },
        ];
        let rows = calendar(
            &Inputs {
                source: "almenpraksis",
                dataset: "almenpraksis.kontakt",
                reception: &rec,
                arrivals: &a,
                kommuner: &[],
                registered: &[],
            },
            day(3, 25),
        );
        assert_eq!(status(&rows, "A", day(3, 2)), Some(ReceptionStatus::OnTime));
        assert_eq!(
            status(&rows, "A", day(3, 9)),
            Some(ReceptionStatus::Missing)
        );
        assert_eq!(
            status(&rows, "B", day(3, 9)),
            None,
            "not expected before first seen"
        );
        assert_eq!(
            status(&rows, "B", day(3, 16)),
            Some(ReceptionStatus::OnTime)
        );
        assert_eq!(
            status(&rows, "B", day(3, 23)),
            Some(ReceptionStatus::Pending)
        );
        assert_eq!(period_start(Cadence::Weekly, day(3, 25)), day(3, 23));
        let _ = batch(&rows);

        // A clinic in the register that never delivered is missing in every week
        // of its registration; one registered only from 16 March is not missing
        // before.
        let registered = vec![
            ("C".to_string(), day(1, 1), None),
            ("D".to_string(), day(3, 16), Some(day(3, 20))),
        ];
        let rows = calendar(
            &Inputs {
                source: "almenpraksis",
                dataset: "almenpraksis.kontakt",
                reception: &rec,
                arrivals: &a,
                kommuner: &[],
                registered: &registered,
            },
            day(3, 25),
        );
        for week in [day(3, 2), day(3, 9), day(3, 16)] {
            assert_eq!(
                status(&rows, "C", week),
                Some(ReceptionStatus::Missing),
                "{week}"
            );
        }
        assert_eq!(status(&rows, "D", day(3, 9)), None);
        assert_eq!(
            status(&rows, "D", day(3, 16)),
            Some(ReceptionStatus::Missing)
        );
        assert_eq!(status(&rows, "D", day(3, 23)), None, "registration ended");
    }
}
