//! No CPR outside landing: names withheld, text made safe to show, and the
//! lake-wide scan ([`scan`]).
//!
//! The values of a delivery are guarded where they are read (`validate` rejects a
//! CPR-shaped value in any column but the CPR column; messages describe shape, never
//! content). What is left are the names that travel with a delivery: its object key
//! and file name reach the ledger, receipts, logs, metrics, `status` and the page. A
//! key with a CPR-shaped token is replaced, before anything stores or prints it, by
//! the same key with each such segment withheld behind a *keyed* hash (an unkeyed
//! hash of a CPR can be reversed by trying every date and serial). The delivery is
//! then rejected at receive: the raw object stays in landing, nothing else names it.

use crate::cpr::detect;
use crate::pseudonym::{Key, Pseudonymiser};

pub mod scan;

/// What a withheld segment starts with.
pub const WITHHELD: &str = "withheld-";

/// The object key with every segment that holds a CPR-shaped token replaced by
/// `withheld-<keyed hash>`; `None` when there is nothing to withhold.
pub fn withhold_key(object_key: &str, key: &Key) -> Option<String> {
    if !detect::contains(object_key) {
        return None;
    }
    let p = Pseudonymiser::new(key);
    let segments: Vec<String> = object_key
        .split('/')
        .map(|s| {
            if detect::contains(s) {
                let mut input = b"naerdata/object-name\0".to_vec();
                input.extend_from_slice(s.as_bytes());
                format!("{WITHHELD}{}", &p.pseudonym(&input)[..16])
            } else {
                s.to_string()
            }
        })
        .collect();
    Some(segments.join("/"))
}

/// A name made safe for a terminal or an HTML page: control characters (an escape
/// sequence in a file name could rewrite an operator's screen) are shown escaped,
/// and a CPR-shaped token that got this far is withheld.
pub fn display(s: &str) -> String {
    if detect::contains(s) {
        return format!("{WITHHELD}(a CPR-shaped name)");
    }
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::new(1, vec![b; 32]).unwrap()
    }

    #[test]
    fn a_cpr_in_a_key_is_withheld_by_a_keyed_hash() {
        let k = "almenpraksis/diagnose/2026-03-01/670385-4001.csv";
        let w = withhold_key(k, &key(1)).unwrap();
        assert!(
            w.starts_with("almenpraksis/diagnose/2026-03-01/withheld-"),
            "{w}"
        );
        assert!(!w.contains("670385"), "{w}");
        assert_eq!(withhold_key(k, &key(1)), Some(w.clone()), "stable");
        assert_ne!(withhold_key(k, &key(2)), Some(w), "keyed");
        assert_eq!(
            withhold_key("almenpraksis/diagnose/2026-03-01/ap.csv", &key(1)),
            None
        );
    }

    #[test]
    fn display_escapes_control_characters_and_withholds_cprs() {
        assert_eq!(display("ap.csv"), "ap.csv");
        assert_eq!(display("a\u{1b}[31mred.csv"), "a\\u{1b}[31mred.csv");
        assert_eq!(display("x\ny"), "x\\ny");
        assert!(!display("6703854001.csv").contains("670385"));
    }
}
