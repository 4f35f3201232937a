//! Finding CPR-shaped values anywhere: in a column that is not the CPR column, in a
//! file name, in an object key, in anything the platform writes outside landing.
//!
//! The promise "no CPR outside landing" cannot rest on suppliers putting the number
//! in the right column, so every other value is searched. What counts as CPR-shaped:
//!
//! - ten digits `DDMMYYSSSS` whose first six are a calendar date by the CPR rules
//!   (the day may be +60, as in replacement numbers; the century from digit 7);
//! - the same with one separator after the date: hyphen, space, slash, full stop,
//!   en or em dash (`670385-4001`, `670385 4001`, `670385/4001`, `670385–4001`);
//! - the eCPR shape, letters in positions 8 and 9 (`670385-4AB1`, `6703854AB1`).
//!
//! Token boundaries keep identifiers that merely contain ten digits out: the digits
//! must not continue a longer number (`12345678901`, `0.6703854001`), and a run inside
//! a UUID or inside a long hexadecimal token (a digest, a UUID group such as
//! `e83676425299`) is not a CPR. A letter beside the digits does not protect them
//! (`P6703854001` is a CPR with a prefix), except the hexadecimal tokens just named.
//!
//! [`Shape::Separated`] is the narrower rule for a column whose values are
//! legitimately ten-digit numbers (declared in its contract): there only the
//! separated and eCPR forms count, which a plain number never has.
//!
//! The detector never returns the value it found, only where it is.

use std::ops::Range;

/// Which CPR shapes to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Every shape: bare ten digits, separated, eCPR.
    #[default]
    Any,
    /// Only shapes a plain ten-digit number never has: separated and eCPR forms.
    Separated,
}

/// The byte range of the first CPR-shaped token in `s`, if any.
pub fn find(s: &str, shape: Shape) -> Option<Range<usize>> {
    let b = s.as_bytes();
    // Fast path: the shortest shape is ten bytes, of which at least eight are digits.
    if b.len() < 10 || b.iter().filter(|c| c.is_ascii_digit()).count() < 8 {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let run = i - start;
        // Only runs of 6 (DDMMYY + separator), 7 (eCPR) or 10 can start a CPR.
        if !matches!(run, 6 | 7 | 10) || continues_number_left(b, start) || in_hex_or_uuid(b, start)
        {
            continue;
        }
        if let Some(end) = candidate(b, start, run, shape) {
            return Some(start..end);
        }
    }
    None
}

/// True when `s` holds a CPR-shaped token anywhere.
pub fn contains(s: &str) -> bool {
    find(s, Shape::Any).is_some()
}

/// The end of a CPR-shaped token that starts with a digit run of `run` at `start`.
fn candidate(b: &[u8], start: usize, run: usize, shape: Shape) -> Option<usize> {
    let mut n = [0u8; 10];
    let end = match run {
        // DDMMYYSSSS
        10 if shape == Shape::Any => {
            n.copy_from_slice(&b[start..start + 10]);
            start + 10
        }
        // DDMMYYS + two letters + S (eCPR without a separator)
        7 => {
            let t = b.get(start + 7..start + 10)?;
            if !(t[0].is_ascii_alphabetic() && t[1].is_ascii_alphabetic() && t[2].is_ascii_digit())
            {
                return None;
            }
            n[..7].copy_from_slice(&b[start..start + 7]);
            n[7..].copy_from_slice(t);
            start + 10
        }
        // DDMMYY, a separator, SSSS (or S + two letters + S)
        6 => {
            let after = start + 6 + separator_len(&b[start + 6..])?;
            let t = b.get(after..after + 4)?;
            let serial = t[0].is_ascii_digit()
                && t[3].is_ascii_digit()
                && ((t[1].is_ascii_digit() && t[2].is_ascii_digit())
                    || (t[1].is_ascii_alphabetic() && t[2].is_ascii_alphabetic()));
            if !serial {
                return None;
            }
            n[..6].copy_from_slice(&b[start..start + 6]);
            n[6..].copy_from_slice(t);
            after + 4
        }
        _ => return None,
    };
    if continues_number_right(b, end) {
        return None;
    }
    if shape == Shape::Separated && run == 10 {
        return None;
    }
    // The CPR rules decide whether the first six digits are a date.
    let text = std::str::from_utf8(&n).ok()?;
    super::parse(text).ok().map(|_| end)
}

/// Length of one separator at the start of `b`: `-`, ` `, `/`, `.`, en dash, em dash.
fn separator_len(b: &[u8]) -> Option<usize> {
    match b {
        [b'-' | b' ' | b'/' | b'.', ..] => Some(1),
        // U+2013 EN DASH, U+2014 EM DASH
        [0xE2, 0x80, 0x93 | 0x94, ..] => Some(3),
        _ => None,
    }
}

/// The run continues a number to its left: `1.6703854001`, `12,6703854001`.
fn continues_number_left(b: &[u8], start: usize) -> bool {
    start >= 2 && matches!(b[start - 1], b'.' | b',') && b[start - 2].is_ascii_digit()
}

/// A digit or a decimal part follows: the token is a longer number.
fn continues_number_right(b: &[u8], end: usize) -> bool {
    match b.get(end) {
        Some(c) if c.is_ascii_digit() => true,
        Some(b'.' | b',') => b.get(end + 1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// The digits at `start` belong to a UUID, or to a hexadecimal token of twelve or
/// more characters (a UUID group, a digest) that has letters in it.
fn in_hex_or_uuid(b: &[u8], start: usize) -> bool {
    let hex = |c: &u8| c.is_ascii_hexdigit();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    // The alphanumeric token around `start`.
    let mut lo = start;
    while lo > 0 && alnum(&b[lo - 1]) {
        lo -= 1;
    }
    let mut hi = start;
    while hi < b.len() && alnum(&b[hi]) {
        hi += 1;
    }
    let token = &b[lo..hi];
    if token.len() >= 12 && token.iter().all(hex) && token.iter().any(u8::is_ascii_alphabetic) {
        return true;
    }
    // A UUID (8-4-4-4-12 hexadecimal) that contains `start`.
    let from = start.saturating_sub(35);
    (from..=start).any(|s| is_uuid_at(b, s) && start < s + 36)
}

fn is_uuid_at(b: &[u8], s: usize) -> bool {
    let Some(w) = b.get(s..s + 36) else {
        return false;
    };
    let bounded = (s == 0 || !b[s - 1].is_ascii_alphanumeric())
        && b.get(s + 36).is_none_or(|c| !c.is_ascii_alphanumeric());
    bounded
        && w.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(s: &str) -> bool {
        find(s, Shape::Any).is_some()
    }

    #[test]
    fn bare_and_separated_forms() {
        for s in [
            "6703854001",
            "670385-4001",
            "670385 4001",
            "670385/4001",
            "670385.4001",
            "670385–4001",
            "670385—4001",
            "670385-4ab1",
            "6703854AB1",
        ] {
            assert!(hit(s), "{s}");
        }
    }

    #[test]
    fn found_inside_other_text_and_reported_by_position() {
        let s = "Pt. 670385-4001 ringede";
        assert_eq!(find(s, Shape::Any), Some(4..15));
        assert!(hit("P6703854001"), "a letter prefix does not protect it");
        assert!(hit("AP-6703854001-01"));
        assert!(hit("id:6703854001;"));
        assert!(hit("diagnoser_670385-4001.csv"));
        assert!(hit("Patient/6703854001"));
    }

    #[test]
    fn not_a_calendar_date_is_not_a_cpr() {
        // day 90 - 60 = 30 February; month 13; day 00; day 32
        for s in ["9002854001", "6713854001", "6003854001", "3203854001"] {
            assert!(!hit(s), "{s}");
        }
    }

    #[test]
    fn longer_numbers_and_decimals_are_not_cprs() {
        for s in [
            "67038540011",
            "167038540011",
            "0.6703854001",
            "6703854001.5",
            "12,6703854001",
            "670385-40011",
            "1670385-4001",
            "2026-03-14T10:15:00+01:00",
            "2026-03-14",
            "012345",
            "1741945200",
        ] {
            assert!(!hit(s), "{s}");
        }
    }

    #[test]
    fn uuids_and_digests_are_not_cprs() {
        for s in [
            "dd41df82-3c13-4523-b9c5-e83676425299",
            "urn:uuid:dd41df82-3c13-4523-b9c5-e83676425299",
            "67038540-0112-4523-b9c5-e83676425299",
            "ab670385-4001-4523-b9c5-e83676425299",
            "e83676703854001a",
            "3f2a0c6703854001be9d41c0a7e",
        ] {
            assert!(!hit(s), "{s}");
        }
    }

    #[test]
    fn the_separated_rule_lets_ten_digit_numbers_through() {
        assert!(find("6703854001", Shape::Separated).is_none());
        assert!(find("670385-4001", Shape::Separated).is_some());
        assert!(find("6703854AB1", Shape::Separated).is_some());
    }
}
