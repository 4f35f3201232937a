//! Small helpers for reading FHIR JSON.

use serde_json::Value;

pub(super) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

pub(super) fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// `(system, code)` of every coding of a CodeableConcept.
pub(super) fn codings(cc: Option<&Value>) -> Vec<(&str, &str)> {
    cc.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                // A system may be absent (the latest care guide forbids it on
                // verificationStatus): such codings match by code alone.
                .filter_map(|c| {
                    let system = c.get("system").and_then(Value::as_str).unwrap_or("");
                    Some((system, c.get("code")?.as_str()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn first_code(cc: Option<&Value>) -> Option<&str> {
    codings(cc).first().map(|(_, c)| *c)
}

/// The date part of a FHIR date or dateTime, if it is a real date.
pub(super) fn date_part(s: &str) -> Option<String> {
    let d = s.get(..10)?;
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
    Some(d.to_string())
}

pub(super) fn id_of_reference(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}
