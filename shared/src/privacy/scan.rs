//! `naerdata privacy scan`: every CPR-shaped value anywhere outside landing.
//!
//! Operators run it after any incident (and `make test` runs it over a whole run with
//! careless deliveries mixed in). It reads what the platform wrote through the same
//! ports the steps use, so it covers the local home and, with `--aws`, the buckets and
//! the DynamoDB ledger alike: the lake (curated, presentation, quality tables, extracts,
//! reports, the catalog), receipts, quarantine, and every ledger entry. Parquet files
//! are read column by column, everything else as text, and object keys themselves
//! are searched too. Findings name the place (store, key, column or field) and a
//! count, never the value.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use bytes::Bytes;
use serde::Serialize;

use crate::cpr::detect;
use crate::platform::{Platform, StepError};
use crate::ports::ObjectStore;

/// One place holding CPR-shaped values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `lake`, `receipts`, `quarantine` or `ledger`.
    pub store: String,
    /// The object key (withheld itself when it holds a CPR) or the delivery id.
    pub location: String,
    /// `column <name>`, `field <name>`, `text` or `key`.
    pub part: String,
    pub count: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct ScanReport {
    pub objects: u64,
    pub parquet_files: u64,
    pub ledger_entries: u64,
    pub findings: Vec<Finding>,
}

impl ScanReport {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Scans everything outside landing.
pub fn scan<'a>(p: &'a Platform) -> crate::Boxed<'a, Result<ScanReport, StepError>> {
    Box::pin(scan_inner(p))
}

/// The body of [`scan`].
async fn scan_inner(p: &Platform) -> Result<ScanReport, StepError> {
    let mut report = ScanReport::default();
    // A column named after a field some contract withholds (a birth date written
    // before its contract said so) is a finding whatever its values look like.
    let withheld: BTreeSet<String> = p
        .contracts
        .iter()
        .flat_map(|c| c.withheld_names().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for (name, store) in [
        ("lake", &p.stores.lake),
        ("receipts", &p.stores.receipts),
        ("quarantine", &p.stores.quarantine),
    ] {
        scan_store(name, store.as_ref(), &withheld, &mut report).await?;
    }
    for d in p.ledger.list(None, usize::MAX).await? {
        report.ledger_entries += 1;
        let value = serde_json::to_value(&d)
            .map_err(|e| StepError::Internal(format!("ledger entry as JSON: {e}")))?;
        let mut counts = BTreeMap::new();
        json_fields(&value, "", &mut counts);
        for (field, count) in counts {
            report.findings.push(Finding {
                store: "ledger".into(),
                location: crate::privacy::display(&d.delivery_id),
                part: format!("field {field}"),
                count,
            });
        }
    }
    Ok(report)
}

async fn scan_store(
    name: &str,
    store: &dyn ObjectStore,
    withheld: &BTreeSet<String>,
    report: &mut ScanReport,
) -> Result<(), StepError> {
    for meta in store.list("").await? {
        report.objects += 1;
        let mut parts: Vec<(String, u64)> = vec![("key".into(), count(&meta.key))];
        let Some(body) = store.get(&meta.key).await? else {
            continue; // deleted since the listing
        };
        // Parquet column by column (its statistics are made of the same values);
        // its compressed pages as text would only give false alarms. Everything else,
        // and a Parquet file that cannot be read, as text.
        // By name or by content: the warehouse's files (Athena's UNLOAD into a current
        // table) have no extension.
        let columns = if meta.key.ends_with(".parquet") || crate::lake::is_parquet(&body) {
            match parquet_columns(body.clone(), withheld) {
                Ok(columns) => Some(columns),
                Err(e) => {
                    parts.push((format!("unreadable Parquet ({e})"), 1));
                    None
                }
            }
        } else {
            None
        };
        match columns {
            Some(columns) => {
                parts.extend(columns.into_iter().map(|(c, n)| (format!("column {c}"), n)));
                report.parquet_files += 1;
            }
            None => parts.push(("text".into(), count(&String::from_utf8_lossy(&body)))),
        }
        let location = crate::privacy::display(&meta.key);
        report.findings.extend(
            parts
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(part, count)| Finding {
                    store: name.into(),
                    location: location.clone(),
                    part,
                    count,
                }),
        );
    }
    Ok(())
}

/// How many CPR-shaped tokens `text` holds.
pub fn count(text: &str) -> u64 {
    let mut n = 0;
    let mut rest = text;
    while let Some(r) = detect::find(rest, detect::Shape::Any) {
        n += 1;
        rest = &rest[r.end..];
    }
    n
}

/// Hits per column of a Parquet file, every column read as text; a column named in
/// `withheld` counts each value it holds (as `<name> (withheld)`).
fn parquet_columns(
    body: Bytes,
    withheld: &BTreeSet<String>,
) -> Result<BTreeMap<String, u64>, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    let mut hits = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if withheld.contains(field.name()) {
                let held = (column.len() - column.null_count()) as u64;
                *hits
                    .entry(format!("{} (withheld)", field.name()))
                    .or_default() += held;
                continue;
            }
            // Numbers, dates and timestamps are stored typed: only text can hold the
            // separated shapes, but a ten-digit integer can hold a bare CPR.
            let text = match arrow::compute::cast(column, &DataType::Utf8) {
                Ok(t) => t,
                Err(_) => continue, // nested or binary: covered by the text pass
            };
            let text = text
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8 gives a StringArray");
            let n: u64 = (0..text.len())
                .filter(|&i| text.is_valid(i))
                .map(|i| count(text.value(i)))
                .sum();
            *hits.entry(field.name().clone()).or_default() += n;
        }
    }
    hits.retain(|_, n| *n > 0);
    Ok(hits)
}

fn json_fields(v: &serde_json::Value, path: &str, out: &mut BTreeMap<String, u64>) {
    match v {
        serde_json::Value::String(s) => {
            let n = count(s);
            if n > 0 {
                *out.entry(path.to_string()).or_default() += n;
            }
        }
        serde_json::Value::Number(x) => {
            let n = count(&x.to_string());
            if n > 0 {
                *out.entry(path.to_string()).or_default() += n;
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_fields(x, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                json_fields(x, path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_token_and_nothing_else() {
        assert_eq!(count("a 670385-4001 b 6703854002 c"), 2);
        assert_eq!(count("dd41df82-3c13-4523-b9c5-e83676425299 2026-03-14"), 0);
    }

    #[test]
    fn parquet_columns_are_read_as_text() {
        use arrow::array::{Int64Array, StringArray};
        use arrow::record_batch::RecordBatch;
        let batch = RecordBatch::try_from_iter([
            (
                "record_id",
                std::sync::Arc::new(StringArray::from(vec!["a", "670385-4001"])) as _,
            ),
            (
                "n",
                std::sync::Arc::new(Int64Array::from(vec![6703854001, 7])) as _,
            ),
            (
                "clean",
                std::sync::Arc::new(StringArray::from(vec!["x", "y"])) as _,
            ),
        ])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        // Known by its content whatever its name (Athena's files have no extension).
        assert!(crate::lake::is_parquet(&buf));
        assert!(!crate::lake::is_parquet(
            b"PAR1 text, not a file PAR1"[..4].as_ref()
        ));
        assert!(!crate::lake::is_parquet(b"id;cpr\n1;PAR1"));
        let hits = parquet_columns(Bytes::from(buf.clone()), &BTreeSet::new()).unwrap();
        assert_eq!(hits.get("record_id"), Some(&1));
        assert_eq!(hits.get("n"), Some(&1));
        assert_eq!(hits.get("clean"), None);
        // A withheld column counts every value it holds, CPR-shaped or not.
        let withheld = BTreeSet::from(["clean".to_string()]);
        let hits = parquet_columns(Bytes::from(buf), &withheld).unwrap();
        assert_eq!(hits.get("clean (withheld)"), Some(&2));
        assert_eq!(hits.get("record_id"), Some(&1));
    }
}
