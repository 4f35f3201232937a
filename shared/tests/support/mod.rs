//! What the embedded-platform tests share: a test home with a fixed key and clock,
//! GP diagnosis rows with synthetic CPRs, delivering, counting, receipts.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use naerdata::Platform;
use naerdata::catalog;
use naerdata::contract::Registry;
use naerdata::ports::FixedClock;
use naerdata::receipt::Receipt;
use naerdata::receive::{self, Received};

pub const HEADER: &str =
    "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n";

/// GP diagnosis rows `r<i>` dated in `month` of 2026 (synthetic CPRs: day + 60).
pub fn rows(ids: std::ops::Range<usize>, month: u32) -> String {
    let mut s = HEADER.to_string();
    for i in ids {
        s.push_str(&format!(
            "r{i};{:02}0385-40{:02};012345;T90;2026-{month:02}-01;diabetes2;2026-{month:02}-02T10:00:00+01:00\n",
            61 + i % 28,
            i % 100
        ));
    }
    s
}

/// Rows `r<i>` spread over several months: one header.
pub fn rows_in_months(ids: std::ops::Range<usize>, months: &[u32]) -> String {
    let mut s = HEADER.to_string();
    for (n, i) in ids.enumerate() {
        let m = months[n % months.len()];
        s.push_str(&rows(i..i + 1, m)[HEADER.len()..]);
    }
    s
}

pub async fn deliver(p: &Platform, key: &str, body: &str) -> Received {
    p.stores
        .landing
        .put(key, Bytes::from(body.to_string()))
        .await
        .unwrap();
    receive::receive(p, key, None).await.unwrap()
}

/// Delivers and expects a new delivery; returns its id.
pub async fn deliver_new(p: &Platform, key: &str, body: &str) -> String {
    match deliver(p, key, body).await {
        Received::ToProcess(id) => id,
        other => panic!("expected a new delivery for {key}, got {other:?}"),
    }
}

pub async fn lake_keys(p: &Platform) -> Vec<String> {
    p.stores
        .lake
        .list("curated/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

/// The Parquet data files under `curated/` (not the Delta log).
pub async fn data_files(p: &Platform) -> Vec<String> {
    lake_keys(p)
        .await
        .into_iter()
        .filter(|k| k.ends_with(".parquet") && !k.contains("/_delta_log/"))
        .collect()
}

/// Rows visible to readers (0 when the table does not exist yet).
pub async fn count(p: &Platform, table: &str) -> i64 {
    match catalog::query(p, &format!("SELECT count(*) AS n FROM {table}")).await {
        Ok(b) => b[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0),
        Err(e) if e.to_string().contains("not found") => 0,
        Err(e) => panic!("{e}"),
    }
}

pub async fn receipt(p: &Platform, id: &str) -> Receipt {
    let d = p.ledger.get(id).await.unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut p.stores.receipts.open(&d.receipt_key()).await.unwrap(),
        &mut text,
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn platform(dir: &Path) -> Platform {
    // The same key in every test home, so two runs produce the same pseudonyms.
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(
        dir.join("keys/lake-key.json"),
        format!(r#"{{"version":1,"key_hex":"{}"}}"#, "ab".repeat(32)),
    )
    .unwrap();
    let mut p = Platform::local(dir, Registry::builtin()).unwrap();
    // A fixed clock makes two runs byte-for-byte comparable.
    p.clock = Arc::new(FixedClock("2026-06-01T12:00:00Z".parse().unwrap()));
    p
}
