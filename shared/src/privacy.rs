//! No CPR outside landing: names withheld, text made safe to show, and the
//! lake-wide scan ([`scan`]).
//!
//! The values of a delivery are guarded where they are read (`validate` rejects a
//! CPR-shaped value in any column but the CPR column; messages describe shape, never
//! content). What is left are the names that travel with a delivery: its object key
//! and file name reach the ledger, receipts, logs, metrics, `status` and the page. A
//! key with a CPR-shaped token is replaced, before anything stores or prints it, by
//! the same key with each such segment withheld (`withheld-name`; no hash of it, since
//! an unkeyed hash of a CPR can be reversed by trying every date and serial, and
//! receive holds no key). The delivery is then rejected at receive: the raw object
//! stays in landing, found by its day, store version and sha256 in the receipt.

use crate::cpr::detect;

pub mod scan;

/// What a withheld segment starts with.
pub const WITHHELD: &str = "withheld-";

/// The object key with every segment that holds a CPR-shaped token replaced by
/// `withheld-name`; `None` when there is nothing to withhold. Deterministic, so a
/// repeated notification names the same delivery (its id also covers the version).
pub fn withhold_key(object_key: &str) -> Option<String> {
    if !detect::contains(object_key) {
        return None;
    }
    let segments: Vec<String> = object_key
        .split('/')
        .map(|s| {
            if detect::contains(s) {
                format!("{WITHHELD}name")
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

    #[test]
    fn a_cpr_in_a_key_is_withheld() {
        let k = "almenpraksis/diagnose/2026-03-01/670385-4001.csv";
        let w = withhold_key(k).unwrap();
        assert_eq!(w, "almenpraksis/diagnose/2026-03-01/withheld-name");
        assert_eq!(
            withhold_key("almenpraksis/diagnose/2026-03-01/ap.csv"),
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
