//! What a contract says about quality and reception: thresholds per check kind (with
//! per-field overrides), sex-specific codes, and the expected delivery calendar.
//! Parsed from the contract's `customProperties` (`quality`, `reception`), so a change
//! of threshold is a new contract version, not a code change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per-field overrides: any of the four, the rest inherit the contract's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldThresholds {
    pub completeness: Option<f64>,
    pub conformance: Option<f64>,
    pub plausibility: Option<f64>,
}

/// Codes only plausible for one sex, by prefix (`DO` pregnancy, `DC61` prostate).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SexSpecific {
    pub field: String,
    #[serde(default)]
    pub female: Vec<String>,
    #[serde(default)]
    pub male: Vec<String>,
}

impl SexSpecific {
    /// The sex code ("K" female, "M" male, as derived from the CPR) a code requires.
    pub fn required_sex(&self, code: &str) -> Option<&'static str> {
        let hit = |prefixes: &[String]| prefixes.iter().any(|p| code.starts_with(p.as_str()));
        if hit(&self.female) {
            Some("K")
        } else if hit(&self.male) {
            Some("M")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QualityRules {
    /// Maximum share of rows, in percent, with an empty value in a field.
    pub completeness: f64,
    /// ... with a value of the wrong type, outside the code list, pattern or range.
    pub conformance: f64,
    /// ... that are implausible: event after delivery, before birth, age outside
    /// 0-125, a sex-specific code for the other sex.
    pub plausibility: f64,
    /// ... repeating a record key (with the same version) within the delivery.
    pub uniqueness: f64,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldThresholds>,
    #[serde(default)]
    pub sex_specific: Option<SexSpecific>,
}

impl QualityRules {
    pub fn completeness(&self, field: &str) -> f64 {
        self.fields
            .get(field)
            .and_then(|f| f.completeness)
            .unwrap_or(self.completeness)
    }
    pub fn conformance(&self, field: &str) -> f64 {
        self.fields
            .get(field)
            .and_then(|f| f.conformance)
            .unwrap_or(self.conformance)
    }
    pub fn plausibility(&self, field: Option<&str>) -> f64 {
        field
            .and_then(|f| self.fields.get(f))
            .and_then(|f| f.plausibility)
            .unwrap_or(self.plausibility)
    }

    /// Checks the rules against the contract's field names.
    pub fn check(&self, fields: &[&str]) -> Result<(), String> {
        let all = [
            self.completeness,
            self.conformance,
            self.plausibility,
            self.uniqueness,
        ];
        let overrides = self.fields.values().flat_map(|f| {
            [f.completeness, f.conformance, f.plausibility]
                .into_iter()
                .flatten()
        });
        if let Some(t) = all
            .into_iter()
            .chain(overrides)
            .find(|t| !(0.0..=100.0).contains(t))
        {
            return Err(format!("threshold {t} is not a percentage (0-100)"));
        }
        for name in self.fields.keys() {
            if !fields.contains(&name.as_str()) {
                return Err(format!("fields names {name:?}, which is not a property"));
            }
        }
        if let Some(s) = &self.sex_specific
            && !fields.contains(&s.field.as_str())
        {
            return Err(format!(
                "sexSpecific names {:?}, which is not a property",
                s.field
            ));
        }
        Ok(())
    }
}

/// How often a source delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cadence {
    /// A delivery is expected for every day.
    Daily,
    /// One per ISO week, dated Monday.
    Weekly,
    /// One per calendar month, dated the first.
    Monthly,
}

/// Where a deadline counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadlineFrom {
    /// The end of the period itself (the day, week or month).
    PeriodEnd,
    /// The end of the month the period lies in (the municipal reporting rule).
    MonthEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Deadline {
    pub days: u32,
    pub after: DeadlineFrom,
}

/// Which reporting units are expected to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExpectedUnits {
    /// Every municipality in `reference/kommuner.csv` (98).
    Kommuner,
    /// Every unit seen in an earlier delivery of the dataset (clinics, hospitals).
    Seen,
}

/// The reception calendar of a delivered dataset.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Reception {
    pub cadence: Cadence,
    /// The period per reporting unit, when a unit need not deliver as often as the
    /// source (a clinic with no patients one day sends nothing that day).
    #[serde(default)]
    pub unit_cadence: Option<Cadence>,
    /// Days after the period a delivery is expected by; after that it is missing.
    #[serde(default)]
    pub grace_days: u32,
    /// After this a period's data is late (arrived) or overdue (still missing).
    pub deadline: Deadline,
    pub units: ExpectedUnits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sex_specific_codes_by_prefix() {
        let s = SexSpecific {
            field: "d".into(),
            female: vec!["DO".into()],
            male: vec!["DC61".into()],
        };
        assert_eq!(s.required_sex("DO800"), Some("K"));
        assert_eq!(s.required_sex("DC61"), Some("M"));
        assert_eq!(s.required_sex("DC50"), None);
    }

    #[test]
    fn thresholds_must_be_percentages_and_fields_must_exist() {
        let mut r: QualityRules = serde_json::from_value(serde_json::json!({
            "completeness": 5, "conformance": 1, "plausibility": 1, "uniqueness": 0,
            "fields": {"a": {"completeness": 0}}
        }))
        .unwrap();
        assert!(r.check(&["a"]).is_ok());
        assert_eq!(r.completeness("a"), 0.0);
        assert_eq!(r.completeness("b"), 5.0);
        assert!(r.check(&["b"]).unwrap_err().contains("\"a\""));
        r.uniqueness = 120.0;
        assert!(r.check(&["a"]).unwrap_err().contains("120"));
    }
}
