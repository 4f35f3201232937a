//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines: one JSON object per
//! line on stdout, which CloudWatch Logs turns into metrics without an API call (and
//! without a second client in the cold start). Locally the lines are plain logs.
//! Dimensions are datasets and functions, never anything about a person.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "naerdata";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Bytes,
    CountPerSecond,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

/// One EMF record: a set of dimensions and the values measured under them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    dimensions: Vec<(String, String)>,
    values: Vec<(String, f64, Unit)>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    pub fn value(mut self, name: &str, value: f64, unit: Unit) -> Self {
        self.values.push((name.to_string(), value, unit));
        self
    }

    pub fn count(self, name: &str, n: u64) -> Self {
        self.value(name, n as f64, Unit::Count)
    }

    /// The EMF JSON line.
    pub fn to_line(&self, at: DateTime<Utc>) -> String {
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()],
                    "Metrics": self.values.iter()
                        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        for (k, v) in &self.dimensions {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        for (k, v, _) in &self.values {
            root.insert(k.clone(), json!(v));
        }
        Value::Object(root).to_string()
    }

    /// Writes the line to stdout, where the Lambda log agent picks it up.
    pub fn emit(&self) {
        println!("{}", self.to_line(Utc::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn emf_line_declares_every_value_and_dimension() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let line = Metrics::new()
            .dimension("Function", "process")
            .dimension("Dataset", "almenpraksis.diagnose")
            .count("RowsRead", 10)
            .value("Duration", 1.5, Unit::Seconds)
            .to_line(at);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], at.timestamp_millis());
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], NAMESPACE);
        assert_eq!(m["Dimensions"][0], json!(["Function", "Dataset"]));
        assert_eq!(
            m["Metrics"][1],
            json!({"Name": "Duration", "Unit": "Seconds"})
        );
        assert_eq!(v["RowsRead"], 10.0);
        assert_eq!(v["Dataset"], "almenpraksis.diagnose");
        assert!(!line.contains('\n'));
    }
}
