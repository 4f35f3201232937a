//! Record -> typed row, or row problems, by the contract.
//!
//! A row problem names the line, the column, the rule and what was expected and
//! found. A value that looks like a CPR number is never quoted back, in whatever
//! column it was sent.

use chrono::{DateTime, Datelike, NaiveDate};
use serde::Serialize;

use crate::contract::{Contract, Field, FieldType, VersionRule};
use crate::cpr::{self, CprClass};
use crate::pseudonym::Pseudonymiser;
use crate::read::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The row is rejected.
    Error,
    /// The row is kept; the supplier should look.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// 1-based line in the delivered file (the header is line 1).
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
}

/// A validated value. Strings are not copied: the writer takes them from the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Null,
    Str,
    Int(i64),
    Float(f64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    Bool(bool),
}

/// What the CPR field turned into. The pseudonym's tag is set by the row sink
/// ([`crate::sink`]) for rows that are kept; the validator itself knows no key.
#[derive(Clone, Copy)]
pub struct Person {
    pub class: CprClass,
    /// The normalised CPR, only while the row is in memory (valid when
    /// `class.identifies_person()`); never written, printed or compared.
    normalised: [u8; 10],
    tag: Option<[u8; 32]>,
    pub birth_year: Option<i32>,
    pub birth_month: Option<i32>,
    /// Kept in memory for the plausibility checks; never written.
    pub birth: Option<NaiveDate>,
    pub sex: Option<&'static str>,
    pub age_at_event: Option<i32>,
}

// Never print the number, not even in debug output.
impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person")
            .field("class", &self.class)
            .field("pseudonymised", &self.tag.is_some())
            .finish_non_exhaustive()
    }
}

impl Person {
    /// A row without a CPR (or a placeholder before a row is checked).
    pub fn missing() -> Self {
        Person::unusable(CprClass::Missing)
    }

    fn unusable(class: CprClass) -> Self {
        Person {
            class,
            normalised: [0; 10],
            tag: None,
            birth_year: None,
            birth_month: None,
            birth: None,
            sex: None,
            age_at_event: None,
        }
    }

    /// A usable number and what derives from it (birth, sex, age at the event).
    fn of(cpr: &cpr::Cpr, event_date: NaiveDate) -> Self {
        Person {
            class: cpr.class,
            normalised: *cpr.normalised(),
            tag: None,
            birth_year: Some(cpr.birth_date.year()),
            birth_month: Some(cpr.birth_date.month() as i32),
            birth: Some(cpr.birth_date),
            sex: Some(cpr.sex.code()),
            age_at_event: Some(cpr.age_on(event_date)),
        }
    }

    /// Takes the birth date from a register's own field (`role: birthDate`), which
    /// is authoritative over the digits of the number (a replacement number's say
    /// nothing). Only its year and month, and the age, are ever written.
    fn born(&mut self, birth: NaiveDate, event_date: NaiveDate) {
        self.birth = Some(birth);
        self.birth_year = Some(birth.year());
        self.birth_month = Some(birth.month() as i32);
        self.age_at_event = Some(cpr::age_on(birth, event_date));
    }

    /// The pseudonym's HMAC tag (person_id is its hex): set once the row sink has
    /// pseudonymised a person's row, `None` for rows without a usable CPR.
    pub fn tag(&self) -> Option<&[u8; 32]> {
        self.tag.as_ref()
    }

    /// Computes the pseudonym, once per kept row, and forgets the CPR.
    pub(crate) fn pseudonymise(&mut self, p: &Pseudonymiser) {
        if self.class.identifies_person() && self.tag.is_none() {
            let mut tag = [0u8; 32];
            p.tag_into(&self.normalised, &mut tag);
            self.tag = Some(tag);
        }
        self.normalised = [0; 10];
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    AcceptedWithWarnings,
    Rejected,
}

/// The rule of a date after the delivery date: a plausibility problem, not a format one.
pub const AFTER_DELIVERY: &str = "after_delivery_date";

/// The rule of a CPR-shaped value in a column that is not the CPR column.
pub const CPR_IN_WRONG_COLUMN: &str = "cpr_in_wrong_column";

/// The rule of a birth date (`role: birthDate`) that differs from the CPR number's.
pub const BIRTH_DATE_MISMATCH: &str = "birth_date_mismatch";

/// The date of a validated [`Value::Date`] (days since 1970-01-01).
fn date_of(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE).expect("a validated date")
}

pub const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

pub fn days_since_epoch(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// A row typed by its contract. Strings are not copied: they stay in `row`, and
/// `values[i]` says what contract field `i` is (`Value::Str` for a string).
#[derive(Clone, Copy)]
pub struct TypedRow<'r> {
    pub contract: &'r Contract,
    pub row: &'r Row,
    pub values: &'r [Value],
    pub person: Person,
    /// The person of the contract's `cprLink` field (missing when it has none).
    pub linked: Person,
    pub event_date: NaiveDate,
    /// The record's own version (its timestamp field, or the receipt time).
    pub record_version: i64,
}

// The row holds the CPR: debug output names only where the row came from.
impl std::fmt::Debug for TypedRow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedRow")
            .field("contract", &self.contract.id)
            .field("line", &self.row.line)
            .field("person", &self.person)
            .field("event_date", &self.event_date)
            .finish_non_exhaustive()
    }
}

impl<'r> TypedRow<'r> {
    /// The trimmed raw text of contract field `i`.
    pub fn text(&self, i: usize) -> &'r str {
        trim(self.row.get(i).unwrap_or(""))
    }

    /// The parts of the record key, in the contract's order.
    pub fn record_key_parts(&self) -> impl Iterator<Item = &'r str> + '_ {
        self.contract.record_key.iter().map(|&k| self.text(k))
    }

    /// The record key as stored: its parts joined by `|`.
    pub fn write_record_key(&self, out: &mut String) {
        out.clear();
        for (n, part) in self.record_key_parts().enumerate() {
            if n > 0 {
                out.push('|');
            }
            out.push_str(part);
        }
    }
}

/// What validating one row gave: the verdict, the CPR's class (for rejected rows
/// too, so the share of unusable CPR numbers covers every row) and, unless the row
/// is rejected, the typed row.
#[derive(Debug)]
pub struct Checked<'r> {
    pub verdict: Verdict,
    pub cpr: CprClass,
    pub typed: Option<TypedRow<'r>>,
}

/// Validates the rows of one delivery against a contract. It holds only the
/// delivery's constants: every result is returned, nothing is kept between rows.
pub struct Validator<'c> {
    contract: &'c Contract,
    delivery_date: NaiveDate,
    received_at_micros: i64,
}

impl<'c> Validator<'c> {
    pub fn new(contract: &'c Contract, delivery_date: NaiveDate, received_at_micros: i64) -> Self {
        Validator {
            contract,
            delivery_date,
            received_at_micros,
        }
    }

    /// Checks one row. Problems are appended to `problems`; `values` is the caller's
    /// buffer for the typed values (reused from row to row), borrowed by the result.
    pub fn check<'r>(
        &self,
        row: &'r Row,
        values: &'r mut Vec<Value>,
        problems: &mut Vec<Problem>,
    ) -> Checked<'r>
    where
        'c: 'r,
    {
        let before = problems.len();
        let mut rejected = false;
        let c = self.contract;
        values.clear();
        values.resize(c.fields.len(), Value::Null);
        if row.width != row.expected_width {
            problems.push(Problem {
                line: row.line,
                column: None,
                rule: "field_count",
                severity: Severity::Error,
                message: format!(
                    "the row has {} field(s) but the header has {}; a truncated or mis-quoted row?",
                    row.width, row.expected_width
                ),
            });
            rejected = true;
        }
        for (i, f) in c.fields.iter().enumerate() {
            let raw = trim(row.get(i).unwrap_or(""));
            if c.is_cpr_column(i) {
                // The CPR (and a linked one) is read below, once the row is known to
                // be kept, and never echoed.
                if raw.is_empty() && f.required {
                    problems.push(problem(
                        row.line,
                        f,
                        "required",
                        Severity::Error,
                        "a CPR number is required but the field is empty".into(),
                    ));
                    rejected = true;
                }
                continue;
            }
            // Before any other rule: a CPR-shaped value outside the CPR column is
            // never stored, whatever else is right or wrong with it.
            if cpr::detect::find(raw, f.cpr_shape).is_some() {
                problems.push(problem(
                    row.line,
                    f,
                    CPR_IN_WRONG_COLUMN,
                    Severity::Error,
                    format!(
                        "the value has the shape of a CPR number ({}); a CPR number belongs only in the CPR column. \
                         The row is not stored — are the columns swapped or shifted?",
                        shape(raw)
                    ),
                ));
                rejected = true;
                continue;
            }
            match check_value(f, raw, c.delivery.decimal_separator, self.delivery_date) {
                Ok(v) => values[i] = v,
                Err((rule, message)) => {
                    problems.push(problem(row.line, f, rule, Severity::Error, message));
                    rejected = true;
                }
            }
        }
        if rejected {
            let cpr = match c.cpr_field {
                Some(i) => cpr::parse(row.get(i).unwrap_or("")).map_or_else(|c| c, |p| p.class),
                None => CprClass::Missing,
            };
            return Checked {
                verdict: Verdict::Rejected,
                cpr,
                typed: None,
            };
        }

        let event_date = match values[c.event_date] {
            Value::Date(d) => date_of(d),
            _ => unreachable!("the event date is a required date"),
        };
        let record_version = match c.version_rule {
            VersionRule::Field(i) => match values[i] {
                Value::Timestamp(t) => t,
                _ => self.received_at_micros,
            },
            VersionRule::ReceivedAt => self.received_at_micros,
        };
        let mut person = match c.cpr_field {
            Some(i) => classify(row, &c.fields[i], i, event_date, problems),
            None => Person::unusable(CprClass::Missing),
        };
        if let Some(i) = c.birth_date_field
            && let Value::Date(d) = values[i]
        {
            let birth = date_of(d);
            if birth_disagrees(person.class, person.birth, birth) {
                problems.push(problem(
                    row.line,
                    &c.fields[i],
                    BIRTH_DATE_MISMATCH,
                    Severity::Warning,
                    "the birth date is not the one the CPR number's first six digits give; \
                     the birth date column is kept (only its year and month are stored), please check both"
                        .into(),
                ));
            }
            person.born(birth, event_date);
        }
        let linked = match c.cpr_link_field {
            Some(i) => match link(row, &c.fields[i], i, event_date) {
                Ok(p) => {
                    if p.class != CprClass::Missing {
                        values[i] = Value::Str;
                    }
                    p
                }
                Err(p) => {
                    problems.push(p);
                    return Checked {
                        verdict: Verdict::Rejected,
                        cpr: person.class,
                        typed: None,
                    };
                }
            },
            None => Person::unusable(CprClass::Missing),
        };
        let verdict = if problems.len() > before {
            Verdict::AcceptedWithWarnings
        } else {
            Verdict::Accepted
        };
        Checked {
            verdict,
            cpr: person.class,
            typed: Some(TypedRow {
                contract: c,
                row,
                values: values.as_slice(),
                person,
                linked,
                event_date,
                record_version,
            }),
        }
    }
}

/// A valid number's first six digits are the birth date; a register that says
/// otherwise has one of the two wrong. A replacement number's digits are no date.
fn birth_disagrees(class: CprClass, from_number: Option<NaiveDate>, register: NaiveDate) -> bool {
    matches!(class, CprClass::Valid | CprClass::ValidNoModulus11) && from_number != Some(register)
}

/// Reads the CPR of a kept row: its class and what derives from it (birth, sex,
/// age at the event). Unusable numbers are a warning: the row is kept without a
/// person.
fn classify(
    row: &Row,
    f: &Field,
    i: usize,
    event_date: NaiveDate,
    problems: &mut Vec<Problem>,
) -> Person {
    match cpr::parse(row.get(i).unwrap_or("")) {
        Ok(cpr) => {
            if cpr.class == CprClass::ValidNoModulus11 {
                problems.push(problem(
                    row.line,
                    f,
                    "cpr_modulus11",
                    Severity::Warning,
                    "the CPR number does not satisfy modulus 11; accepted (such numbers are issued since 2007), please check it".into(),
                ));
            }
            Person::of(&cpr, event_date)
        }
        Err(class) => {
            let why = match class {
                CprClass::InvalidDate => "its first six digits are not a calendar date",
                CprClass::Missing => "it is empty",
                _ => "it is not of the form DDMMYY-SSSS",
            };
            problems.push(problem(
                row.line,
                f,
                "cpr_invalid",
                Severity::Warning,
                format!(
                    "the CPR number is not valid ({why}); the row is kept without a person pseudonym (reason {})",
                    class.code()
                ),
            ));
            Person::unusable(class)
        }
    }
}

/// Reads a row's second CPR number (`cprLink`): a link is worth keeping only to a
/// person, so a number that names no one rejects the row (an empty optional one is
/// no link). Neither the number nor its digits are echoed.
fn link(row: &Row, f: &Field, i: usize, event_date: NaiveDate) -> Result<Person, Problem> {
    let raw = trim(row.get(i).unwrap_or(""));
    if raw.is_empty() {
        return Ok(Person::unusable(CprClass::Missing));
    }
    match cpr::parse(raw) {
        Ok(cpr) => Ok(Person::of(&cpr, event_date)),
        Err(class) => Err(problem(
            row.line,
            f,
            "cpr_link_invalid",
            Severity::Error,
            format!(
                "the linked CPR number is not usable (reason {}); a link must name a person, so the row is not stored",
                class.code()
            ),
        )),
    }
}

fn problem(
    line: u64,
    f: &Field,
    rule: &'static str,
    severity: Severity,
    message: String,
) -> Problem {
    Problem {
        line,
        column: Some(f.name.clone()),
        rule,
        severity,
        message,
    }
}

type Fail = (&'static str, String);

/// Checks one non-CPR value against its field.
pub fn check_value(
    f: &Field,
    raw: &str,
    decimal_separator: u8,
    delivery_date: NaiveDate,
) -> Result<Value, Fail> {
    if raw.is_empty() {
        return if f.required {
            Err((
                "required",
                "a value is required but the field is empty".into(),
            ))
        } else {
            Ok(Value::Null)
        };
    }
    let value = match f.field_type {
        FieldType::String => {
            if let Some(max) = f.max_length.filter(|&max| raw.len() > max) {
                // Bytes >= characters, so only a long value needs counting.
                let n = raw.chars().count();
                if n > max {
                    return Err((
                        "max_length",
                        format!("{n} characters; at most {max} are allowed"),
                    ));
                }
            }
            Value::Str
        }
        FieldType::Integer => {
            let n: i64 = raw.parse().map_err(|_| {
                (
                    "type",
                    format!("expected a whole number, found {}", shape(raw)),
                )
            })?;
            check_range(f, n as f64)?;
            Value::Int(n)
        }
        FieldType::Number => {
            let x = parse_number(raw, decimal_separator).ok_or_else(|| {
                (
                    "type",
                    format!(
                        "expected a number with decimal separator {:?}, found {}",
                        decimal_separator as char,
                        shape(raw)
                    ),
                )
            })?;
            check_range(f, x)?;
            Value::Float(x)
        }
        FieldType::Date => {
            let d = parse_date(raw)?;
            if let Some(min) = f.min_date
                && d < min
            {
                return Err((
                    "date_range",
                    format!("the date is before {min}, the earliest date allowed"),
                ));
            }
            if f.not_after_delivery && d > delivery_date {
                return Err((
                    AFTER_DELIVERY,
                    format!("the date is after the delivery date {delivery_date}"),
                ));
            }
            Value::Date(days_since_epoch(d))
        }
        FieldType::Timestamp => {
            let t = DateTime::parse_from_rfc3339(raw).map_err(|_| {
                (
                    "type",
                    format!(
                        "expected a timestamp like 2026-03-14T10:15:00+01:00 (with offset), found {}",
                        shape(raw)
                    ),
                )
            })?;
            if let Some(min) = f.min_date
                && t.date_naive() < min
            {
                return Err((
                    "date_range",
                    format!("the timestamp is before {min}, the earliest date allowed"),
                ));
            }
            Value::Timestamp(t.timestamp_micros())
        }
        FieldType::Boolean => Value::Bool(match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "ja" | "j" | "y" | "yes" => true,
            "false" | "0" | "nej" | "n" | "no" => false,
            _ => return Err(("type", format!("expected true/false, found {}", shape(raw)))),
        }),
    };
    if let Some(re) = &f.pattern
        && !re.is_match(raw)
    {
        return Err((
            "pattern",
            format!("{} does not match the pattern {}", shape(raw), re.as_str()),
        ));
    }
    if let Some(list) = &f.code_list
        && !list.contains(raw)
    {
        let system = list
            .system
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        return Err((
            "code_list",
            format!("{} is not in the code list{system}", shape(raw)),
        ));
    }
    Ok(value)
}

fn check_range(f: &Field, x: f64) -> Result<(), Fail> {
    if f.minimum.is_some_and(|m| x < m) || f.maximum.is_some_and(|m| x > m) {
        return Err((
            "range",
            format!(
                "the value is outside the allowed range {}..{}",
                f.minimum.map(|m| m.to_string()).unwrap_or_default(),
                f.maximum.map(|m| m.to_string()).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// `YYYY-MM-DD`, strictly, and a real calendar day.
pub fn parse_date(raw: &str) -> Result<NaiveDate, Fail> {
    let b = raw.as_bytes();
    let well_formed = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !well_formed {
        return Err((
            "type",
            format!("expected a date YYYY-MM-DD, found {}", shape(raw)),
        ));
    }
    let n = |r: std::ops::Range<usize>| raw[r].parse::<u32>().expect("digits");
    NaiveDate::from_ymd_opt(n(0..4) as i32, n(5..7), n(8..10)).ok_or_else(|| {
        (
            "invalid_date",
            "the date has the form YYYY-MM-DD but is not a calendar date".to_string(),
        )
    })
}

fn parse_number(raw: &str, sep: u8) -> Option<f64> {
    if sep == b',' {
        if raw.contains('.') {
            // A '.' with a decimal-comma contract is ambiguous (thousands?): refuse.
            return None;
        }
        raw.replacen(',', ".", 1).parse().ok()
    } else {
        if raw.contains(',') {
            return None;
        }
        raw.parse().ok()
    }
    .filter(|x: &f64| x.is_finite())
}

/// `str::trim`, with a fast path for the usual value that has nothing to trim.
#[inline]
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b))
            if !a.is_ascii_whitespace()
                && !b.is_ascii_whitespace()
                && a.is_ascii()
                && b.is_ascii() =>
        {
            s
        }
        _ => s.trim(),
    }
}

/// How a value is described in a message: its length and its kinds of characters,
/// never its content. A careless supplier's value may be a CPR number or a name, and
/// messages travel to receipts, the ledger, logs and pages.
pub fn shape(raw: &str) -> String {
    let (mut digits, mut letters, mut spaces, mut other) = (false, false, false, false);
    let mut punct: Vec<char> = Vec::new();
    let mut n = 0usize;
    for c in raw.chars() {
        n += 1;
        if c.is_ascii_digit() {
            digits = true;
        } else if c.is_alphabetic() {
            letters = true;
        } else if c.is_whitespace() {
            spaces = true;
        } else if c.is_ascii_punctuation() {
            if !punct.contains(&c) && punct.len() < 4 {
                punct.push(c);
            }
        } else {
            other = true;
        }
    }
    let mut kinds: Vec<String> = Vec::new();
    if digits {
        kinds.push("digits".into());
    }
    if letters {
        kinds.push("letters".into());
    }
    if spaces {
        kinds.push("spaces".into());
    }
    kinds.extend(punct.iter().map(|c| format!("{c:?}")));
    if other {
        kinds.push("other characters".into());
    }
    let kinds = match kinds.len() {
        0 => String::new(),
        1 => format!(": {}", kinds[0]),
        k => format!(": {} and {}", kinds[..k - 1].join(", "), kinds[k - 1]),
    };
    let unit = if n == 1 { "character" } else { "characters" };
    format!("a value of {n} {unit}{kinds}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;

    fn field(contract: &str, name: &str) -> Field {
        let r = Registry::builtin();
        let c = r.get(contract).unwrap();
        c.fields[c.field_index(name).unwrap()].clone()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn rule(f: &Field, raw: &str) -> Option<&'static str> {
        check_value(f, raw, b',', day("2026-06-30"))
            .err()
            .map(|e| e.0)
    }

    #[test]
    fn required() {
        let f = field("almenpraksis.diagnose", "diagnosekode");
        assert_eq!(rule(&f, ""), Some("required"));
        assert_eq!(rule(&f, "T90"), None);
        let optional = field("lpr.kontakt", "dato_slut");
        assert_eq!(rule(&optional, ""), None);
    }

    #[test]
    fn code_list() {
        let f = field("almenpraksis.diagnose", "diagnosekode");
        assert_eq!(rule(&f, "X99"), Some("code_list"));
        assert_eq!(rule(&f, "K78"), None);
    }

    #[test]
    fn pattern() {
        let f = field("almenpraksis.diagnose", "ydernummer");
        assert_eq!(rule(&f, "12345"), Some("pattern"));
        assert_eq!(rule(&f, "012345"), None);
        let sks = field("speciallaege.diagnose", "diagnosekode");
        assert_eq!(rule(&sks, "H353"), Some("pattern"));
        assert_eq!(rule(&sks, "DH353"), None);
        assert_eq!(rule(&sks, "DA022A"), None);
    }

    #[test]
    fn dates_type_calendar_and_range() {
        let f = field("almenpraksis.diagnose", "diagnosedato");
        assert_eq!(rule(&f, "14-03-2026"), Some("type"));
        assert_eq!(rule(&f, "2026-02-30"), Some("invalid_date"));
        assert_eq!(rule(&f, "2026-02-28"), None);
        assert_eq!(rule(&f, "2024-02-29"), None);
        assert_eq!(rule(&f, "1899-12-31"), Some("date_range"));
        assert_eq!(
            rule(&f, "2026-07-01"),
            Some(AFTER_DELIVERY),
            "after the delivery date"
        );
        assert_eq!(rule(&f, "2026-06-30"), None);
    }

    #[test]
    fn timestamps_need_an_offset() {
        let f = field("almenpraksis.diagnose", "registreret");
        assert_eq!(rule(&f, "2026-03-14T10:15:00"), Some("type"));
        assert_eq!(rule(&f, "2026-03-14T10:15:00+01:00"), None);
        assert_eq!(rule(&f, "2026-03-14T10:15:00Z"), None);
    }

    #[test]
    fn numbers_use_the_declared_separator_and_range() {
        let f = field("almenpraksis.laboratorie", "vaerdi");
        assert_eq!(
            check_value(&f, "52,5", b',', day("2026-06-30")),
            Ok(Value::Float(52.5))
        );
        assert_eq!(rule(&f, "52.5"), Some("type"));
        assert_eq!(rule(&f, "abc"), Some("type"));
        assert_eq!(rule(&f, "-1"), Some("range"));
        assert_eq!(rule(&f, "100001"), Some("range"));
    }

    #[test]
    fn booleans() {
        let f = field("lpr.diagnose", "senere_afkraeftet");
        assert_eq!(rule(&f, "maybe"), Some("type"));
        assert_eq!(
            check_value(&f, "false", b'.', day("2026-06-30")),
            Ok(Value::Bool(false))
        );
    }

    #[test]
    fn max_length() {
        let f = field("almenpraksis.diagnose", "record_id");
        assert_eq!(rule(&f, &"a".repeat(65)), Some("max_length"));
        assert_eq!(rule(&f, &"a".repeat(64)), None);
    }

    #[test]
    fn messages_describe_shape_never_content() {
        let f = field("almenpraksis.diagnose", "diagnosekode");
        for v in ["Jensen", "Søndergade 12", "T9O", "6703854001"] {
            let (_, msg) = check_value(&f, v, b'.', day("2026-06-30")).unwrap_err();
            assert!(!msg.contains(v), "{msg}");
        }
        let (_, msg) = check_value(&f, "Søndergade 12", b'.', day("2026-06-30")).unwrap_err();
        assert!(
            msg.starts_with("a value of 13 characters: digits, letters and spaces"),
            "{msg}"
        );
        let d = field("almenpraksis.diagnose", "diagnosedato");
        for v in ["2026-02-30", "1899-12-31", "2026-07-01", "14-03-2026"] {
            let (_, msg) = check_value(&d, v, b'.', day("2026-06-30")).unwrap_err();
            assert!(!msg.contains(v), "{msg}");
        }
    }

    fn check_row(dataset: &str, values: &[&str]) -> (Verdict, Vec<Problem>, CprClass) {
        let r = Registry::builtin();
        let c = r.get(dataset).unwrap();
        let v = Validator::new(c, day("2026-06-30"), 0);
        let mut row = Row::with_fields(c.fields.len());
        // Optional columns the test leaves out are empty.
        let pad = c.fields.len().saturating_sub(values.len());
        row.fill(
            2,
            values.iter().copied().chain(std::iter::repeat_n("", pad)),
        );
        let mut problems = Vec::new();
        let mut values = Vec::new();
        let checked = v.check(&row, &mut values, &mut problems);
        assert_eq!(
            checked.typed.is_some(),
            checked.verdict != Verdict::Rejected
        );
        (checked.verdict, problems, checked.cpr)
    }

    #[test]
    fn a_cpr_link_is_a_second_person_never_echoed() {
        // The new number is CPR-shaped, which in any other column rejects the row.
        let (v, problems, class) = check_row(
            "cpr.personnummerskift",
            &["1", "670385-4001", "670385-4002", "2026-06-01"],
        );
        assert_eq!(v, Verdict::Accepted, "{problems:?}");
        assert_eq!(class, CprClass::Replacement);
        // A link that names no one is worthless: the row is rejected, the number
        // not repeated.
        for bad in ["670385", "320385-4002", "abcdefghij"] {
            let (v, problems, _) = check_row(
                "cpr.personnummerskift",
                &["2", "670385-4001", bad, "2026-06-01"],
            );
            assert_eq!(v, Verdict::Rejected, "{bad}");
            let p = problems
                .iter()
                .find(|p| p.rule == "cpr_link_invalid")
                .expect("the link's problem");
            assert_eq!(p.column.as_deref(), Some("nyt_cpr"));
            assert!(!p.message.contains(bad), "{}", p.message);
        }
        let (v, problems, _) = check_row(
            "cpr.personnummerskift",
            &["3", "670385-4001", "", "2026-06-01"],
        );
        assert_eq!(v, Verdict::Rejected);
        assert!(problems.iter().any(|p| p.rule == "required"));
        // The register's other columns still refuse a CPR number.
        let (v, problems, _) = check_row(
            "cpr.befolkning",
            &[
                "1",
                "670385-4001",
                "1985-03-07",
                "K",
                "670385-4001",
                "2019-01-01",
                "",
                "",
                "",
                "",
                "2026-06-01",
            ],
        );
        assert_eq!(v, Verdict::Rejected);
        assert!(problems.iter().any(|p| p.rule == CPR_IN_WRONG_COLUMN));
    }

    #[test]
    fn the_registers_birth_date_gives_year_month_and_age() {
        let r = Registry::builtin();
        let c = r.get("cpr.befolkning").unwrap();
        let v = Validator::new(c, day("2026-06-30"), 0);
        // A register row of 670385-4001 with the birth date `born`: its verdict, its
        // problems and the person it gives.
        let check = |born: &str| {
            let mut row = Row::with_fields(c.fields.len());
            let fields = ["1", "670385-4001", born, "K", "101", "2019-01-01"];
            let pad = ["", "", "", ""];
            row.fill(2, fields.iter().chain(&pad).copied().chain(["2026-06-01"]));
            let (mut values, mut problems) = (Vec::new(), Vec::new());
            let checked = v.check(&row, &mut values, &mut problems);
            let person = checked.typed.map(|t| t.person);
            (checked.verdict, problems, person)
        };
        // 670385-4001 is a replacement number: its digits say 7 March 1985, which for
        // such numbers need not be the birth date; the register's date decides.
        for (born, year, month, age) in [("1985-03-07", 1985, 3, 41), ("1984-11-20", 1984, 11, 41)]
        {
            let (verdict, problems, person) = check(born);
            assert_eq!(verdict, Verdict::Accepted, "{problems:?}");
            let person = person.expect("kept");
            assert_eq!(person.birth_year, Some(year));
            assert_eq!(person.birth_month, Some(month));
            assert_eq!(person.age_at_event, Some(age));
            assert_eq!(person.birth, Some(day(born)));
        }
        // A birth date that fails its checks rejects the row without echoing it.
        let (verdict, problems, _) = check("1985-02-30");
        assert_eq!(verdict, Verdict::Rejected);
        let p = problems
            .iter()
            .find(|p| p.column.as_deref() == Some("foedselsdato"))
            .unwrap();
        assert!(!p.message.contains("1985"), "{}", p.message);
    }

    #[test]
    fn a_valid_numbers_date_must_agree_with_the_register() {
        let (b, other) = (day("1985-03-07"), day("1985-03-08"));
        assert!(!birth_disagrees(CprClass::Valid, Some(b), b));
        assert!(birth_disagrees(CprClass::Valid, Some(b), other));
        assert!(birth_disagrees(CprClass::ValidNoModulus11, Some(b), other));
        // A replacement number's digits are no birth date; an unusable one has none.
        assert!(!birth_disagrees(CprClass::Replacement, Some(b), other));
        assert!(!birth_disagrees(CprClass::InvalidFormat, None, other));
    }

    #[test]
    fn the_typed_row_borrows_the_row_and_only_the_sink_pseudonymises() {
        let r = Registry::builtin();
        let c = r.get("almenpraksis.diagnose").unwrap();
        let v = Validator::new(c, day("2026-06-30"), 7);
        let mut row = Row::with_fields(c.fields.len());
        row.fill(
            2,
            [
                "AP-1",
                "670385-4001",
                "012345",
                "T90",
                "2026-03-01",
                "diabetes2",
                "2026-03-02T10:00:00+01:00",
                "",
            ],
        );
        let (mut values, mut problems) = (Vec::new(), Vec::new());
        let typed = v
            .check(&row, &mut values, &mut problems)
            .typed
            .expect("kept");
        assert_eq!(typed.text(0), "AP-1");
        assert_eq!(typed.event_date, day("2026-03-01"));
        // The version is the registration time, in UTC.
        let registered = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z").unwrap();
        assert_eq!(typed.record_version, registered.timestamp_micros());
        let mut key = String::new();
        typed.write_record_key(&mut key);
        assert_eq!(key, "AP-1");
        assert_eq!(typed.person.birth_year, Some(1985));
        assert!(typed.person.tag().is_none(), "the validator knows no key");
        assert!(!format!("{:?}", typed.person).contains("670385"));
        let mut person = typed.person;
        let k = crate::pseudonym::Key::new(1, vec![7; 32]).unwrap();
        let p = Pseudonymiser::new(&k);
        person.pseudonymise(&p);
        let mut expected = [0u8; 32];
        p.tag_into(b"6703854001", &mut expected);
        assert_eq!(person.tag(), Some(&expected));
        // Checking the same row again gives the same: nothing is carried over.
        let again = v.check(&row, &mut values, &mut problems);
        assert_eq!(again.verdict, Verdict::Accepted);
    }

    #[test]
    fn a_cpr_in_any_other_column_rejects_the_row_without_quoting_it() {
        let good = [
            "AP-1",
            "670385-4001",
            "012345",
            "T90",
            "2026-03-01",
            "diabetes2",
            "2026-03-02T10:00:00+01:00",
        ];
        assert_eq!(
            check_row("almenpraksis.diagnose", &good).0,
            Verdict::Accepted
        );
        // record_id and cpr swapped: every id pattern would accept ten digits.
        for (col, value) in [(0, "6703854001"), (0, "P-670385-4001"), (2, "670385 4001")] {
            let mut row = good;
            row[col] = value;
            let (verdict, problems, _) = check_row("almenpraksis.diagnose", &row);
            assert_eq!(verdict, Verdict::Rejected, "{value}");
            let p = problems
                .iter()
                .find(|p| p.rule == CPR_IN_WRONG_COLUMN)
                .expect("flagged");
            assert!(!p.message.contains("670385"), "{}", p.message);
        }
        // A rejected row still has its CPR classified (for the unusable share).
        let mut row = good;
        row[0] = "6703854001";
        row[1] = "AP-1";
        assert_eq!(
            check_row("almenpraksis.diagnose", &row).2,
            CprClass::InvalidFormat
        );
    }
}
