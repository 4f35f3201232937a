//! The metrics of one table of one delivery, gathered row by row while the delivery
//! streams through (no second pass over the file).
//!
//! Memory: counters per field, two bounded sets of 64-bit digests (record keys for
//! uniqueness, exact, spilling to disk past a budget; person pseudonyms for distinct
//! persons, a sketch past a budget: see [`super::distinct`]), and at most
//! [`MAX_UNITS`] reporting units. Nothing in here holds a CPR: persons are
//! counted by the first 8 bytes of their (already keyed) pseudonym tag.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use chrono::NaiveDate;
use rustc_hash::{FxHashMap, FxHasher};

use super::distinct::{Persons, RecordKeys};
use super::rules::{QualityRules, SexSpecific};
use super::{Kahn, Metric, Status, check};
use crate::contract::Contract;
use crate::cpr::CprClass;
use crate::read::{Row, StructuralError};
use crate::validate::{AFTER_DELIVERY, Checked, Problem, Value, Verdict, trim};

/// Reporting units counted one by one; more than this many are counted together
/// (a guard against a unit column filled with junk).
pub const MAX_UNITS: usize = 5_000;
pub const OTHER_UNITS: &str = "(other)";
pub const BLANK_UNIT: &str = "(blank)";

pub struct Collector {
    table: String,
    rules: QualityRules,
    fields: Vec<String>,
    cpr_field: Option<usize>,
    unit_field: Option<usize>,
    sex: Option<(usize, SexSpecific)>,
    delivery_date: NaiveDate,

    rows: u64,
    checked: u64,
    empty: Vec<u64>,
    nonconforming: Vec<u64>,
    /// Rows the structure check failed (wrong field count, unreadable record,
    /// a bundle-level problem).
    row_structure: u64,
    cpr_reasons: BTreeMap<&'static str, u64>,
    /// Rows with a date after the delivery date (the event date, or another date
    /// field the contract forbids to lie after it).
    after_delivery: u64,
    with_person: u64,
    before_birth: u64,
    age_out: u64,
    sex_checked: u64,
    sex_mismatch: u64,
    keys: RecordKeys,
    persons: Persons,
    units: FxHashMap<String, u64>,
}

impl Collector {
    pub fn new(contract: &Contract, delivery_date: NaiveDate) -> Self {
        let n = contract.fields.len();
        let rules = contract.quality.clone();
        let sex = rules
            .sex_specific
            .clone()
            .and_then(|s| contract.field_index(&s.field).map(|i| (i, s)));
        Collector {
            table: contract.table(),
            fields: contract.fields.iter().map(|f| f.name.clone()).collect(),
            cpr_field: contract.cpr_field,
            unit_field: contract.reporting_unit,
            sex,
            rules,
            delivery_date,
            rows: 0,
            checked: 0,
            empty: vec![0; n],
            nonconforming: vec![0; n],
            row_structure: 0,
            cpr_reasons: BTreeMap::new(),
            after_delivery: 0,
            with_person: 0,
            before_birth: 0,
            age_out: 0,
            sex_checked: 0,
            sex_mismatch: 0,
            keys: RecordKeys::default(),
            persons: Persons::default(),
            units: FxHashMap::default(),
        }
    }

    /// One row after the validator checked it (and, when kept, the sink pseudonymised
    /// it); `problems` are this row's problems.
    pub fn observe(&mut self, row: &Row, checked: &Checked, problems: &[Problem]) {
        let verdict = checked.verdict;
        self.rows += 1;
        self.checked += 1;
        if verdict == Verdict::Rejected {
            for (i, n) in self.empty.iter_mut().enumerate() {
                if trim(row.get(i).unwrap_or("")).is_empty() {
                    *n += 1;
                }
            }
        } else if let Some(v) = &checked.typed {
            // The validator already typed every value: Null is an empty field.
            for (i, n) in self.empty.iter_mut().enumerate() {
                let empty = if Some(i) == self.cpr_field {
                    v.person.class == CprClass::Missing
                } else {
                    v.values[i] == Value::Null
                };
                *n += u64::from(empty);
            }
        }
        self.problems(problems);
        // Reporting units come only from validated values: a rejected row's unit
        // column may hold anything (a CPR number, when columns are swapped).
        if let Some(u) = self.unit_field
            && verdict != Verdict::Rejected
        {
            let unit = trim(row.get(u).unwrap_or(""));
            self.count_unit(unit);
        }
        if self.cpr_field.is_some() {
            // The validator classifies the CPR of rejected rows too.
            let class = checked.cpr;
            if !class.identifies_person() || class == CprClass::Missing {
                *self.cpr_reasons.entry(class.code()).or_default() += 1;
            }
        }
        let Some(v) = &checked.typed else {
            return;
        };
        if v.event_date > self.delivery_date {
            self.after_delivery += 1;
        }
        let mut h = FxHasher::default();
        for part in v.record_key_parts() {
            part.hash(&mut h);
        }
        v.record_version.hash(&mut h);
        self.keys.insert(h.finish());
        if let Some(tag) = v.person.tag() {
            let mut first = [0u8; 8];
            first.copy_from_slice(&tag[..8]);
            self.persons.insert(u64::from_le_bytes(first));
        }
        if let Some(birth) = v.person.birth.filter(|_| v.person.tag().is_some()) {
            self.with_person += 1;
            if v.event_date < birth {
                self.before_birth += 1;
            }
            if !(0..=125).contains(&v.person.age_at_event.unwrap_or(0)) {
                self.age_out += 1;
            }
            if let (Some((i, rule)), Some(sex)) = (&self.sex, v.person.sex)
                && let Some(required) = rule.required_sex(trim(row.get(*i).unwrap_or("")))
            {
                self.sex_checked += 1;
                if required != sex {
                    self.sex_mismatch += 1;
                }
            }
        }
    }

    /// A record that could not become a row (unreadable, or a FHIR bundle left out
    /// before it was flattened): it counts, and so do its problems.
    pub fn observe_unreadable(&mut self, problems: &[Problem]) {
        self.rows += 1;
        let before = self.row_structure;
        self.problems(problems);
        if self.row_structure == before {
            self.row_structure += 1;
        }
    }

    fn field_of(&self, p: &Problem) -> Option<usize> {
        let col = p.column.as_deref()?;
        self.fields.iter().position(|f| f == col)
    }

    fn problems(&mut self, problems: &[Problem]) {
        let mut structural = false;
        for p in problems {
            match self.field_of(p) {
                None => structural = true,
                Some(_) if p.rule == "required" || p.rule == "cpr_modulus11" => {}
                Some(_) if p.rule == AFTER_DELIVERY => self.after_delivery += 1,
                // The CPR's conformance is its class, counted in observe().
                Some(i) if Some(i) == self.cpr_field => {}
                Some(i) => self.nonconforming[i] += 1,
            }
        }
        if structural {
            self.row_structure += 1;
        }
    }

    fn count_unit(&mut self, unit: &str) {
        let unit = if unit.is_empty() { BLANK_UNIT } else { unit };
        if let Some(n) = self.units.get_mut(unit) {
            *n += 1;
        } else if self.units.len() < MAX_UNITS {
            self.units.insert(unit.to_string(), 1);
        } else {
            *self.units.entry(OTHER_UNITS.to_string()).or_default() += 1;
        }
    }

    /// The metrics; a delivery that could not be read gets one ERROR check.
    pub fn finish(mut self, structural: Option<&StructuralError>) -> Vec<Metric> {
        let t = self.table.as_str();
        let r = &self.rules;
        let mut out = Vec::new();
        if structural.is_some() {
            let mut m = Metric::rate(
                t,
                check::READABLE,
                Kahn::ConformanceRelational,
                None,
                1,
                1,
                Some(0.0),
            );
            m.status = Status::Error;
            out.push(m);
            out.push(Metric::measure(t, check::ROWS, None, self.rows));
            return out;
        }
        let rows = self.rows;
        for (i, name) in self.fields.iter().enumerate() {
            let empty = self.empty[i];
            out.push(Metric::rate(
                t,
                check::COMPLETENESS,
                Kahn::Completeness,
                Some(name),
                empty,
                self.checked,
                Some(r.completeness(name)),
            ));
            let present = self.checked.saturating_sub(empty);
            let bad = if Some(i) == self.cpr_field {
                self.cpr_reasons
                    .iter()
                    .filter(|(k, _)| **k != CprClass::Missing.code())
                    .map(|(_, n)| n)
                    .sum()
            } else {
                self.nonconforming[i]
            };
            out.push(Metric::rate(
                t,
                check::CONFORMANCE,
                Kahn::ConformanceValue,
                Some(name),
                bad,
                present,
                Some(r.conformance(name)),
            ));
        }
        out.push(Metric::rate(
            t,
            check::ROW_STRUCTURE,
            Kahn::ConformanceRelational,
            None,
            self.row_structure,
            rows,
            Some(r.conformance),
        ));
        for (reason, n) in &self.cpr_reasons {
            let mut m = Metric::rate(
                t,
                check::INVALID_CPR,
                Kahn::ConformanceValue,
                None,
                *n,
                rows,
                None,
            );
            m.field = self.cpr_field.map(|i| self.fields[i].clone());
            m.unit = Some((*reason).to_string());
            out.push(m);
        }
        out.push(Metric::rate(
            t,
            check::EVENT_AFTER_DELIVERY,
            Kahn::PlausibilityTemporal,
            None,
            self.after_delivery,
            rows,
            Some(r.plausibility(None)),
        ));
        if self.cpr_field.is_some() {
            out.push(Metric::rate(
                t,
                check::EVENT_BEFORE_BIRTH,
                Kahn::PlausibilityTemporal,
                None,
                self.before_birth,
                self.with_person,
                Some(r.plausibility(None)),
            ));
            out.push(Metric::rate(
                t,
                check::AGE_RANGE,
                Kahn::PlausibilityAtemporal,
                None,
                self.age_out,
                self.with_person,
                Some(r.plausibility(None)),
            ));
        }
        if let Some((i, _)) = &self.sex {
            let name = &self.fields[*i];
            out.push(Metric::rate(
                t,
                check::SEX_SPECIFIC_CODE,
                Kahn::PlausibilityAtemporal,
                Some(name),
                self.sex_mismatch,
                self.sex_checked,
                Some(r.plausibility(Some(name))),
            ));
        }
        match self.keys.finish() {
            Ok(keys) => out.push(Metric::rate(
                t,
                check::UNIQUE_RECORD_KEY,
                Kahn::PlausibilityUniqueness,
                None,
                keys.duplicates,
                keys.distinct + keys.duplicates,
                Some(r.uniqueness),
            )),
            // The spilled runs could not be read back: the check could not be made,
            // and says so rather than report a count that may be short.
            Err(e) => {
                tracing::error!(table = t, error = %e, "record keys: merging the spilled runs failed");
                let mut m = Metric::rate(
                    t,
                    check::UNIQUE_RECORD_KEY,
                    Kahn::PlausibilityUniqueness,
                    None,
                    0,
                    0,
                    Some(r.uniqueness),
                );
                m.status = Status::Error;
                out.push(m);
            }
        }
        out.push(Metric::measure(t, check::ROWS, None, rows));
        if self.cpr_field.is_some() {
            // Past `distinct::PERSON_BUDGET` persons an estimate (about 0.8 % error).
            out.push(Metric::measure(
                t,
                check::DISTINCT_PERSONS,
                None,
                self.persons.count().0,
            ));
        }
        let mut units: Vec<(String, u64)> = self.units.into_iter().collect();
        units.sort();
        for (unit, n) in units {
            out.push(Metric::measure(t, check::ROWS_PER_UNIT, Some(&unit), n));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::process::{Report, run, test_options};

    const GP: &str =
        "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n";

    /// A clean GP diagnosis row; the CPR is synthetic (day + 60).
    fn gp(id: &str) -> String {
        format!("{id};670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n")
    }

    fn run_on(dataset: &str, text: String) -> Report {
        let registry = Registry::builtin();
        let c = registry.get(dataset).unwrap();
        run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(text.into_bytes())),
            test_options(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
        )
        .unwrap()
    }

    /// Nineteen clean rows and `odd` (or a twentieth clean row).
    fn gp_with(odd: Option<&str>) -> Report {
        let mut text = GP.to_string();
        for i in 0..19 {
            text.push_str(&gp(&format!("r{i}")));
        }
        text.push_str(odd.map_or(gp("r19"), str::to_string).as_str());
        run_on("almenpraksis.diagnose", text)
    }

    fn status(r: &Report, check: &str, field: Option<&str>) -> Status {
        let m = r
            .quality
            .iter()
            .find(|m| m.check == check && m.field.as_deref() == field)
            .unwrap_or_else(|| panic!("no {check} {field:?} in {:#?}", r.quality));
        m.status
    }

    /// Each check kind: the clean delivery passes it, the odd one trips it.
    #[test]
    fn each_check_trips_on_its_defect_and_passes_without_it() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                check::COMPLETENESS,
                Some("ydernummer"),
                "x;670385-4001;;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
            (
                check::CONFORMANCE,
                Some("diagnosekode"),
                "x;670385-4001;012345;X99;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
            (
                check::CONFORMANCE,
                Some("cpr"),
                "x;6703854;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
            (check::ROW_STRUCTURE, None, "x;670385-4001;012345;T90\n"),
            (
                check::EVENT_AFTER_DELIVERY,
                None,
                "x;670385-4001;012345;T90;2026-07-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
            (
                check::EVENT_BEFORE_BIRTH,
                None,
                "x;670385-4001;012345;T90;1980-01-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
            // Born 1860 (digit 5, year 60): 166 years old at the event.
            (
                check::AGE_RANGE,
                None,
                "x;670360-5001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
            // The same key and version as row r0.
            (
                check::UNIQUE_RECORD_KEY,
                None,
                "r0;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            ),
        ];
        let clean = gp_with(None);
        assert!(
            clean
                .quality
                .iter()
                .all(|m| m.status != Status::Fail && m.status != Status::Error),
            "{:#?}",
            clean
                .quality
                .iter()
                .filter(|m| m.status == Status::Fail)
                .collect::<Vec<_>>()
        );
        for (check, field, odd) in cases {
            assert_eq!(
                status(&clean, check, *field),
                Status::Pass,
                "clean {check} {field:?}"
            );
            let r = gp_with(Some(odd));
            assert_eq!(status(&r, check, *field), Status::Fail, "{check} {field:?}");
        }
        // A correction (same key, a later version) is not a duplicate.
        let r = gp_with(Some(
            "r0;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-03T10:00:00+01:00\n",
        ));
        assert_eq!(status(&r, check::UNIQUE_RECORD_KEY, None), Status::Pass);
    }

    #[test]
    fn invalid_cprs_are_counted_by_reason_and_persons_by_pseudonym() {
        let text = format!(
            "{GP}{}{}a;6703854;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n\
             b;320185-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n",
            gp("p"),
            gp("q").replace("670385-4001", "670385-4002")
        );
        let r = run_on("almenpraksis.diagnose", text);
        let reason = |code: &str| {
            r.quality
                .iter()
                .find(|m| m.check == check::INVALID_CPR && m.unit.as_deref() == Some(code))
                .map(|m| m.violated)
        };
        assert_eq!(reason("invalid_format"), Some(1));
        assert_eq!(reason("invalid_date"), Some(1));
        let persons = r
            .quality
            .iter()
            .find(|m| m.check == check::DISTINCT_PERSONS)
            .unwrap();
        assert_eq!(persons.value, Some(2.0));
        let units = r
            .quality
            .iter()
            .find(|m| m.check == check::ROWS_PER_UNIT)
            .unwrap();
        assert_eq!(
            (units.unit.as_deref(), units.value),
            (Some("012345"), Some(4.0))
        );
    }

    #[test]
    fn a_sex_specific_code_for_the_other_sex_is_implausible() {
        let head = "record_id;kontakt_id;cpr;ydernummer;diagnosekode;diagnosetype;diagnosedato\n";
        // 4001: odd, a man; 4002: even, a woman. DO800 is a pregnancy code.
        let rows = |cpr: &str| {
            let mut t = head.to_string();
            t.push_str(&format!("d0;k0;{cpr};512345;DO800;A;2026-03-01\n"));
            for i in 1..5 {
                t.push_str(&format!("d{i};k{i};{cpr};512345;DH353;A;2026-03-01\n"));
            }
            t
        };
        let woman = run_on("speciallaege.diagnose", rows("670385-4002"));
        assert_eq!(
            status(&woman, check::SEX_SPECIFIC_CODE, Some("diagnosekode")),
            Status::Pass
        );
        let man = run_on("speciallaege.diagnose", rows("670385-4001"));
        assert_eq!(
            status(&man, check::SEX_SPECIFIC_CODE, Some("diagnosekode")),
            Status::Fail
        );
        let m = man
            .quality
            .iter()
            .find(|m| m.check == check::SEX_SPECIFIC_CODE)
            .unwrap();
        assert_eq!(
            (m.violated, m.denominator),
            (1, 1),
            "only sex-specific codes count"
        );
    }

    /// An optional field left empty in accepted rows counts as incomplete; the rows
    /// are built from the contract's own examples.
    #[test]
    fn empty_optional_fields_in_accepted_rows_count() {
        let registry = Registry::builtin();
        let c = registry.get("lpr.kontakt").unwrap();
        let names: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
        let optional = c.fields.iter().position(|f| !f.required).unwrap();
        let key = c.record_key[0];
        let row = |n: usize, blank: bool| {
            let values: Vec<String> = c
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| match i {
                    _ if i == key => format!("{n}"),
                    _ if blank && i == optional => String::new(),
                    _ => f.examples[0].clone(),
                })
                .collect();
            values.join(";") + "\n"
        };
        let mut text = names.join(";") + "\n";
        for n in 0..9 {
            text.push_str(&row(n, false));
        }
        let clean = run_on("lpr.kontakt", text.clone() + &row(9, false));
        let holey = run_on("lpr.kontakt", text + &row(9, true));
        assert_eq!(holey.rows.accepted, 10, "{:?}", holey.problems);
        let field = Some(names[optional]);
        assert_eq!(status(&clean, check::COMPLETENESS, field), Status::Pass);
        assert_eq!(status(&holey, check::COMPLETENESS, field), Status::Fail);
    }

    #[test]
    fn an_unreadable_delivery_is_an_error_not_a_pass() {
        let r = run_on(
            "almenpraksis.diagnose",
            "record_id;cpr\na;670385-4001\n".into(),
        );
        assert_eq!(status(&r, check::READABLE, None), Status::Error);
        assert!(r.quality.iter().all(|m| m.status != Status::Pass));
    }
}
