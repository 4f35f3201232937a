//! Danish CPR numbers: parse, classify, derive birth date and sex.
//!
//! Rules from cpr.dk ("Opbygning af CPR-nummeret"), summarised in the domain notes:
//! the century comes from digit 7 and the two-digit year; modulus 11 is only a
//! warning (numbers without it have been issued since 2007); replacement numbers
//! (day + 60) and the health sector's eCPR (letters in positions 8-9) are recognised.
//!
//! Nothing here ever formats a CPR value into an error or a log line.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

pub mod detect;

/// What kind of identifier a CPR field held. Also the reason code stored in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CprClass {
    /// A well-formed number that passes modulus 11.
    Valid,
    /// Well-formed, valid date, fails modulus 11 (legal since 2007; a warning only).
    ValidNoModulus11,
    /// Replacement number (erstatningsnummer): day + 60.
    Replacement,
    /// Health-sector eCPR: letters in positions 8-9.
    Ecpr,
    /// Empty field.
    Missing,
    /// Not 10 characters of the CPR shape.
    InvalidFormat,
    /// The right shape, but no such calendar day.
    InvalidDate,
}

impl CprClass {
    /// The reason code written to the lake and receipts.
    pub fn code(self) -> &'static str {
        match self {
            CprClass::Valid => "valid",
            CprClass::ValidNoModulus11 => "valid_no_mod11",
            CprClass::Replacement => "replacement",
            CprClass::Ecpr => "ecpr",
            CprClass::Missing => "missing",
            CprClass::InvalidFormat => "invalid_format",
            CprClass::InvalidDate => "invalid_date",
        }
    }

    /// Whether this identifies a person, so it gets a pseudonym.
    /// Junk is never hashed into the person namespace.
    pub fn identifies_person(self) -> bool {
        matches!(
            self,
            CprClass::Valid | CprClass::ValidNoModulus11 | CprClass::Replacement | CprClass::Ecpr
        )
    }
}

/// Legal sex as encoded in digit 10 (even = female). `K`/`M` as in Danish registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sex {
    K,
    M,
}

impl Sex {
    pub fn code(self) -> &'static str {
        match self {
            Sex::K => "K",
            Sex::M => "M",
        }
    }
}

/// A parsed CPR. `normalised` is the 10-character form used as pseudonym input;
/// it must never leave the process.
#[derive(Clone, PartialEq, Eq)]
pub struct Cpr {
    normalised: [u8; 10],
    pub class: CprClass,
    pub birth_date: NaiveDate,
    pub sex: Sex,
}

// Never print the number, not even in debug output.
impl std::fmt::Debug for Cpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpr")
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl Cpr {
    /// The normalised 10 characters (digits, or digits and upper-case letters for eCPR).
    pub fn normalised(&self) -> &[u8; 10] {
        &self.normalised
    }

    /// Full years of age on `on`.
    pub fn age_on(&self, on: NaiveDate) -> i32 {
        age_on(self.birth_date, on)
    }
}

/// Age in whole years on `on` of a person born on `birth`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// Parse a CPR field. `Err` carries the class of an unusable value
/// (missing, invalid format, invalid date).
pub fn parse(raw: &str) -> Result<Cpr, CprClass> {
    let s = raw.trim().as_bytes();
    if s.is_empty() {
        return Err(CprClass::Missing);
    }
    let mut n = [0u8; 10];
    match s.len() {
        10 => n.copy_from_slice(s),
        11 if s[6] == b'-' => {
            n[..6].copy_from_slice(&s[..6]);
            n[6..].copy_from_slice(&s[7..]);
        }
        _ => return Err(CprClass::InvalidFormat),
    }
    let digit = |b: u8| b.is_ascii_digit();
    if !n[..7].iter().all(|&b| digit(b)) || !digit(n[9]) {
        return Err(CprClass::InvalidFormat);
    }
    let ecpr = match (n[7], n[8]) {
        (a, b) if digit(a) && digit(b) => false,
        (a, b) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            n[7] = a.to_ascii_uppercase();
            n[8] = b.to_ascii_uppercase();
            true
        }
        _ => return Err(CprClass::InvalidFormat),
    };
    let two = |i: usize| u32::from(n[i] - b'0') * 10 + u32::from(n[i + 1] - b'0');
    let (mut day, month, yy) = (two(0), two(2), two(4));
    let replacement = day > 60;
    if replacement {
        day -= 60;
    }
    let year = century(n[6] - b'0', yy) + yy as i32;
    let birth_date = NaiveDate::from_ymd_opt(year, month, day).ok_or(CprClass::InvalidDate)?;
    let sex = if (n[9] - b'0').is_multiple_of(2) {
        Sex::K
    } else {
        Sex::M
    };
    let class = if ecpr {
        CprClass::Ecpr
    } else if replacement {
        CprClass::Replacement
    } else if modulus11(&n) {
        CprClass::Valid
    } else {
        CprClass::ValidNoModulus11
    };
    Ok(Cpr {
        normalised: n,
        class,
        birth_date,
        sex,
    })
}

/// The century table from cpr.dk: digit 7 and the two-digit year give the century.
pub fn century(digit7: u8, yy: u32) -> i32 {
    match (digit7, yy) {
        (0..=3, _) => 1900,
        (4 | 9, 0..=36) => 2000,
        (4 | 9, _) => 1900,
        (5..=8, 0..=57) => 2000,
        (5..=8, _) => 1800,
        _ => 1900,
    }
}

/// Modulus 11 with weights 4 3 2 7 6 5 4 3 2 1.
pub fn modulus11(n: &[u8; 10]) -> bool {
    const W: [u32; 10] = [4, 3, 2, 7, 6, 5, 4, 3, 2, 1];
    let sum: u32 = n.iter().zip(W).map(|(&d, w)| u32::from(d - b'0') * w).sum();
    sum.is_multiple_of(11)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Builds a synthetic number: day+60 unless `real_day`, with a control digit that
    /// makes modulus 11 hold when `mod11` (where one exists).
    fn synth(day: u32, month: u32, yy: u32, d7: u32, real_day: bool) -> String {
        let dd = if real_day { day } else { day + 60 };
        format!("{dd:02}{month:02}{yy:02}{d7}001")
    }

    #[test]
    fn century_table_every_case() {
        // digit 7 = 0-3: always 19xx
        for d7 in 0..=3 {
            for yy in [0, 36, 37, 57, 58, 99] {
                assert_eq!(century(d7, yy), 1900, "d7={d7} yy={yy}");
            }
        }
        // digit 7 = 4 and 9: 20xx up to 36, else 19xx
        for d7 in [4, 9] {
            assert_eq!(century(d7, 0), 2000);
            assert_eq!(century(d7, 36), 2000);
            assert_eq!(century(d7, 37), 1900);
            assert_eq!(century(d7, 57), 1900);
            assert_eq!(century(d7, 58), 1900);
            assert_eq!(century(d7, 99), 1900);
        }
        // digit 7 = 5-8: 20xx up to 57, 18xx from 58
        for d7 in 5..=8 {
            assert_eq!(century(d7, 0), 2000);
            assert_eq!(century(d7, 36), 2000);
            assert_eq!(century(d7, 37), 2000);
            assert_eq!(century(d7, 57), 2000);
            assert_eq!(century(d7, 58), 1800);
            assert_eq!(century(d7, 99), 1800);
        }
    }

    #[test]
    fn birth_date_follows_century_through_parse() {
        let c = parse(&synth(7, 3, 15, 4, false)).unwrap();
        assert_eq!(c.birth_date, date(2015, 3, 7));
        let c = parse(&synth(7, 3, 40, 4, false)).unwrap();
        assert_eq!(c.birth_date, date(1940, 3, 7));
        let c = parse(&synth(7, 3, 60, 6, false)).unwrap();
        assert_eq!(c.birth_date, date(1860, 3, 7));
        let c = parse(&synth(7, 3, 50, 7, false)).unwrap();
        assert_eq!(c.birth_date, date(2050, 3, 7));
    }

    #[test]
    fn replacement_numbers_are_day_plus_60() {
        let c = parse("670385-4001").unwrap();
        assert_eq!(c.class, CprClass::Replacement);
        assert_eq!(c.birth_date, date(1985, 3, 7));
        assert!(c.class.identifies_person());
    }

    #[test]
    fn hyphen_is_optional_and_normalised_away() {
        let a = parse("670385-4001").unwrap();
        let b = parse("6703854001").unwrap();
        assert_eq!(a.normalised(), b.normalised());
        assert_eq!(a.normalised(), b"6703854001");
    }

    #[test]
    fn sex_from_last_digit() {
        assert_eq!(parse("6703854001").unwrap().sex, Sex::M);
        assert_eq!(parse("6703854002").unwrap().sex, Sex::K);
    }

    #[test]
    fn modulus11_pass_and_fail_on_real_dates_are_both_accepted() {
        // 1 January numbers are issued without modulus 11: accepted, classified.
        // Find a control digit for 01-01-1965 (d7=1) that passes and one that fails.
        let base = *b"010165100";
        let mut pass = None;
        let mut fail = None;
        for last in b'0'..=b'9' {
            let mut n = [0u8; 10];
            n[..9].copy_from_slice(&base);
            n[9] = last;
            if modulus11(&n) {
                pass.get_or_insert(n);
            } else {
                fail.get_or_insert(n);
            }
        }
        let fail = fail.unwrap();
        let c = parse(std::str::from_utf8(&fail).unwrap()).unwrap();
        assert_eq!(c.class, CprClass::ValidNoModulus11);
        assert!(c.class.identifies_person());
        assert_eq!(c.birth_date, date(1965, 1, 1));
        if let Some(pass) = pass {
            let c = parse(std::str::from_utf8(&pass).unwrap()).unwrap();
            assert_eq!(c.class, CprClass::Valid);
        }
    }

    #[test]
    fn modulus11_weights() {
        // 4*6+3*7+2*0+7*3+6*8+5*5+4*4+3*0+2*1+1*k, by hand: 157 + k.
        // 157 % 11 = 3, so k = 8 makes 165 = 15*11.
        assert!(modulus11(b"6703854018"));
        assert!(!modulus11(b"6703854019"));
    }

    #[test]
    fn ecpr_has_letters_in_positions_8_and_9() {
        let c = parse("670385-4ab1").unwrap();
        assert_eq!(c.class, CprClass::Ecpr);
        assert_eq!(c.normalised(), b"6703854AB1");
        assert_eq!(c.sex, Sex::M);
        assert_eq!(c.birth_date, date(1985, 3, 7));
    }

    #[test]
    fn invalid_inputs_are_classified() {
        assert_eq!(parse("").unwrap_err(), CprClass::Missing);
        assert_eq!(parse("   ").unwrap_err(), CprClass::Missing);
        assert_eq!(parse("67038").unwrap_err(), CprClass::InvalidFormat);
        assert_eq!(parse("670385+4001").unwrap_err(), CprClass::InvalidFormat);
        assert_eq!(parse("67038540011").unwrap_err(), CprClass::InvalidFormat);
        assert_eq!(parse("6703854a01").unwrap_err(), CprClass::InvalidFormat);
        // 30 February (day 90 = 30 + 60)
        assert_eq!(parse("900285-4001").unwrap_err(), CprClass::InvalidDate);
        // month 13
        assert_eq!(parse("671385-4001").unwrap_err(), CprClass::InvalidDate);
        // day 00 (60 - 60)
        assert_eq!(parse("600385-4001").unwrap_err(), CprClass::InvalidDate);
        assert!(!CprClass::InvalidDate.identifies_person());
    }

    #[test]
    fn age_counts_full_years() {
        let c = parse("670385-4001").unwrap();
        assert_eq!(c.age_on(date(2025, 3, 6)), 39);
        assert_eq!(c.age_on(date(2025, 3, 7)), 40);
    }

    #[test]
    fn debug_never_shows_the_number() {
        let c = parse("670385-4001").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("670385"), "{shown}");
    }
}
