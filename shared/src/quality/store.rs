//! The quality tables in the lake, as Parquet:
//! - `quality/metrics/year=YYYY/month=MM/<delivery_id>.parquet`: every check of one
//!   delivery (`quality_metrics`), keyed by the delivery so a retry rewrites it;
//! - `quality/reception/<as_of>.parquet` and `quality/declaration/<month>.parquet`,
//!   written by the monitor (see [`super::reception`], [`super::declaration`]).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Kahn, Metric, Status};
use crate::validate::{UNIX_EPOCH_DAYS_FROM_CE, days_since_epoch};

pub use crate::layout::METRICS_PREFIX;

/// The delivery a set of metrics belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRef {
    pub delivery_id: String,
    pub dataset: String,
    pub source: String,
    pub contract_version: String,
    pub delivery_date: NaiveDate,
    pub received_at: DateTime<Utc>,
    /// The receipt outcome: ok, warning or rejected.
    pub outcome: String,
    /// The reference versions the delivery was checked against (`kind=version;...`).
    pub reference_versions: Option<String>,
}

pub fn metrics_key(delivery_date: NaiveDate, delivery_id: &str) -> String {
    crate::layout::metrics_key(delivery_date, delivery_id)
}

/// The `quality_metrics` Delta table (partitioned by the delivery date's month).
pub fn metrics_table() -> crate::lake::delta::TableSpec {
    crate::lake::delta::TableSpec {
        prefix: METRICS_PREFIX.to_string(),
        name: "quality_metrics".to_string(),
        schema: metrics_schema(),
        source: "naerdata quality metrics v2".to_string(),
    }
}

pub fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn metrics_schema() -> SchemaRef {
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        s("delivery_id", false),
        s("dataset", false),
        s("source", false),
        s("contract_version", false),
        Field::new("delivery_date", DataType::Date32, false),
        Field::new("received_at", utc(), false),
        s("outcome", false),
        s("table_name", false),
        s("check_name", false),
        s("category", false),
        s("field_name", true),
        s("unit", true),
        Field::new("violated", DataType::Int64, false),
        Field::new("denominator", DataType::Int64, false),
        f("pct"),
        f("threshold"),
        s("status", false),
        f("measured_value"),
        f("band_lower"),
        f("band_upper"),
        // v2; older rows read as null.
        s("reference_versions", true),
    ]))
}

pub fn metrics_batch(d: &DeliveryRef, ms: &[Metric]) -> RecordBatch {
    let n = ms.len();
    let same = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    let strs = |f: &dyn Fn(&Metric) -> Option<&str>| {
        Arc::new(ms.iter().map(f).collect::<StringArray>()) as ArrayRef
    };
    let nums = |f: &dyn Fn(&Metric) -> Option<f64>| {
        Arc::new(ms.iter().map(f).collect::<Float64Array>()) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        same(&d.delivery_id),
        same(&d.dataset),
        same(&d.source),
        same(&d.contract_version),
        Arc::new(Date32Array::from(vec![
            days_since_epoch(d.delivery_date);
            n
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![d.received_at.timestamp_micros(); n])
                .with_timezone("UTC"),
        ),
        same(&d.outcome),
        strs(&|m| Some(&m.table)),
        strs(&|m| Some(&m.check)),
        strs(&|m| Some(m.category.as_str())),
        strs(&|m| m.field.as_deref()),
        strs(&|m| m.unit.as_deref()),
        Arc::new(Int64Array::from_iter_values(
            ms.iter().map(|m| m.violated as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            ms.iter().map(|m| m.denominator as i64),
        )),
        nums(&|m| m.pct),
        nums(&|m| m.threshold),
        strs(&|m| Some(m.status.as_str())),
        nums(&|m| m.value),
        nums(&|m| m.lower),
        nums(&|m| m.upper),
        Arc::new(StringArray::from(vec![d.reference_versions.as_deref(); n])),
    ];
    RecordBatch::try_new(metrics_schema(), columns).expect("columns match the schema")
}

pub fn parquet(batch: &RecordBatch) -> Result<Bytes, String> {
    crate::lake::parquet_bytes(batch.schema(), std::slice::from_ref(batch))
        .map(Bytes::from)
        .map_err(|e| format!("writing Parquet: {e}"))
}

pub fn read_batches(bytes: Bytes) -> Result<Vec<RecordBatch>, String> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Typed access to a column by name.
pub fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("column {name} is missing or of another type"))
}

pub fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

pub fn opt_f64(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i)).then(|| a.value(i))
}

pub fn date(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE).unwrap_or_default()
}

/// Reads a metrics file back (drift history, the monitor, the report).
pub fn read_metrics(bytes: Bytes) -> Result<(Option<DeliveryRef>, Vec<Metric>), String> {
    let mut out = Vec::new();
    let mut head = None;
    for b in read_batches(bytes)? {
        let s = |n| column::<StringArray>(&b, n);
        let f = |n| column::<Float64Array>(&b, n);
        let (table, check, category, field, unit, status) = (
            s("table_name")?,
            s("check_name")?,
            s("category")?,
            s("field_name")?,
            s("unit")?,
            s("status")?,
        );
        let violated = column::<Int64Array>(&b, "violated")?;
        let denominator = column::<Int64Array>(&b, "denominator")?;
        let (pct, threshold, value, lower, upper) = (
            f("pct")?,
            f("threshold")?,
            f("measured_value")?,
            f("band_lower")?,
            f("band_upper")?,
        );
        if head.is_none() && b.num_rows() > 0 {
            head = Some(DeliveryRef {
                delivery_id: s("delivery_id")?.value(0).to_string(),
                dataset: s("dataset")?.value(0).to_string(),
                source: s("source")?.value(0).to_string(),
                contract_version: s("contract_version")?.value(0).to_string(),
                delivery_date: date(column::<Date32Array>(&b, "delivery_date")?.value(0)),
                received_at: DateTime::from_timestamp_micros(
                    column::<TimestampMicrosecondArray>(&b, "received_at")?.value(0),
                )
                .unwrap_or_default(),
                outcome: s("outcome")?.value(0).to_string(),
                reference_versions: s("reference_versions").ok().and_then(|a| opt_str(a, 0)),
            });
        }
        for i in 0..b.num_rows() {
            out.push(Metric {
                table: table.value(i).to_string(),
                check: check.value(i).to_string(),
                category: Kahn::parse(category.value(i))
                    .ok_or_else(|| format!("unknown category {:?}", category.value(i)))?,
                field: opt_str(field, i),
                unit: opt_str(unit, i),
                violated: violated.value(i).max(0) as u64,
                denominator: denominator.value(i).max(0) as u64,
                pct: opt_f64(pct, i),
                threshold: opt_f64(threshold, i),
                status: Status::parse(status.value(i))
                    .ok_or_else(|| format!("unknown status {:?}", status.value(i)))?,
                value: opt_f64(value, i),
                lower: opt_f64(lower, i),
                upper: opt_f64(upper, i),
            });
        }
    }
    Ok((head, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::check;

    #[test]
    fn metrics_round_trip_through_parquet() {
        let d = DeliveryRef {
            delivery_id: "d1".into(),
            dataset: "almenpraksis.diagnose".into(),
            source: "almenpraksis".into(),
            contract_version: "1.1.0".into(),
            delivery_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            received_at: DateTime::from_timestamp(1_772_000_000, 0).unwrap(),
            outcome: "ok".into(),
            reference_versions: Some("fsiii=builtin-x;sor=builtin-y".into()),
        };
        let mut ms = vec![
            Metric::rate(
                "t",
                check::COMPLETENESS,
                Kahn::Completeness,
                Some("a"),
                3,
                100,
                Some(2.0),
            ),
            Metric::measure("t", check::ROWS_PER_UNIT, Some("101"), 40),
        ];
        ms[1].lower = Some(30.0);
        ms[1].upper = Some(50.0);
        ms[1].status = Status::Pass;
        let bytes = parquet(&metrics_batch(&d, &ms)).unwrap();
        let (head, back) = read_metrics(bytes).unwrap();
        assert_eq!(head.unwrap(), d);
        assert_eq!(back, ms);
        assert_eq!(
            metrics_key(d.delivery_date, "d1"),
            "quality/metrics/year=2026/month=03/d1.parquet"
        );
    }
}
