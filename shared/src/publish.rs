//! The publish step: current tables, the linked model and the marts, written to the
//! presentation zone (`presentation/` in the lake store).
//!
//! - `<table>_current`: the latest version of each record key (by `record_version`, then
//!   `received_at`), entered-in-error removed. SQL generated from the contracts.
//! - `dim_geografi`: municipality -> region with valid-from/valid-to (Region Østdanmark
//!   from 2027); `dim_person`: person, birth year, sex, current residence;
//!   `person_bopael`: residence over time from the municipal reports.
//! - marts: SQL files in `sql/marts/` (portable: DataFusion here, Athena in AWS), whose
//!   count columns go through disclosure control before anything is written.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::Serialize;

use crate::catalog::{self, QueryError};
use crate::contract::{Contract, Registry};
use crate::disclosure::{self, Cell, Table};
use crate::lake;
use crate::platform::{Platform, StepError};
use crate::validate::days_since_epoch;

/// The marts, compiled in so every binary publishes the same ones.
pub const MARTS: &[(&str, &str)] = &[
    (
        "rehab_effekt",
        include_str!("../../sql/marts/rehab_effekt.sql"),
    ),
    (
        "kroniske_patienter",
        include_str!("../../sql/marts/kroniske_patienter.sql"),
    ),
    (
        "faelles_patienter",
        include_str!("../../sql/marts/faelles_patienter.sql"),
    ),
    (
        "speciallaege_aktivitet",
        include_str!("../../sql/marts/speciallaege_aktivitet.sql"),
    ),
];

/// The label of margin rows and columns.
pub const TOTAL: &str = "I alt";

/// A mart as its SQL file declares it in `-- key: value` header lines.
#[derive(Debug, Clone)]
pub struct MartSpec {
    pub name: String,
    pub title: String,
    pub rows: String,
    pub cols: String,
    pub counts: Vec<String>,
    /// (name, numerator, denominator)
    pub rates: Vec<(String, String, String)>,
    pub sql: String,
}

impl MartSpec {
    pub fn parse(name: &str, sql: &str) -> Result<Self, String> {
        let mut spec = MartSpec {
            name: name.to_string(),
            title: String::new(),
            rows: String::new(),
            cols: String::new(),
            counts: Vec::new(),
            rates: Vec::new(),
            sql: sql.to_string(),
        };
        for line in sql.lines().filter_map(|l| l.strip_prefix("-- ")) {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            let v = v.trim();
            match k {
                "mart" if v != name => {
                    return Err(format!("sql/marts/{name}.sql declares mart {v}"));
                }
                "title" => spec.title = v.to_string(),
                "rows" => spec.rows = v.to_string(),
                "cols" => spec.cols = v.to_string(),
                "counts" => spec.counts = v.split(',').map(|s| s.trim().to_string()).collect(),
                "rates" => {
                    let (rate, expr) = v
                        .split_once('=')
                        .ok_or(format!("rate {v:?} is not name = a / b"))?;
                    let (a, b) = expr
                        .split_once('/')
                        .ok_or(format!("rate {v:?} is not name = a / b"))?;
                    spec.rates
                        .push((rate.trim().into(), a.trim().into(), b.trim().into()));
                }
                _ => {}
            }
        }
        if spec.rows.is_empty() || spec.cols.is_empty() || spec.counts.is_empty() {
            return Err(format!(
                "sql/marts/{name}.sql needs -- rows:, -- cols: and -- counts: headers"
            ));
        }
        for (r, a, b) in &spec.rates {
            if !spec.counts.contains(a) || !spec.counts.contains(b) {
                return Err(format!(
                    "rate {r} in {name} uses a column that is not a count"
                ));
            }
        }
        Ok(spec)
    }
}

pub fn marts() -> Vec<MartSpec> {
    MARTS
        .iter()
        .map(|(n, s)| MartSpec::parse(n, s).unwrap_or_else(|e| panic!("built-in mart: {e}")))
        .collect()
}

/// What one mart published.
#[derive(Debug, Clone, Serialize)]
pub struct MartReport {
    pub name: String,
    pub key: String,
    pub rows: usize,
    pub primary_suppressed: usize,
    pub secondary_suppressed: usize,
    pub rule_set: &'static str,
}

#[derive(Debug, Default)]
pub struct Published {
    /// (table, rows) of the current tables and dimensions.
    pub tables: Vec<(String, u64)>,
    pub marts: Vec<MartReport>,
    /// Each mart's protected result, for printing.
    pub batches: Vec<(String, RecordBatch)>,
}

pub fn presentation_key(kind: &str, name: &str) -> String {
    format!("{}data.parquet", lake::presentation_prefix(kind, name))
}

/// The current-state SQL of a curated table: portable (window function, explicit
/// columns), generated from the contract.
pub fn current_sql(c: &Contract) -> String {
    let cols: Vec<String> = lake::catalog_columns(c)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let list = cols.join(", ");
    let eie = if c.field_index("entered_in_error").is_some() {
        " AND NOT entered_in_error"
    } else {
        ""
    };
    format!(
        "SELECT {list} FROM (SELECT {list}, ROW_NUMBER() OVER (PARTITION BY record_key \
         ORDER BY record_version DESC, received_at DESC, delivery_id DESC) AS version_rank \
         FROM {table}) AS ranked WHERE version_rank = 1{eie}",
        table = c.table()
    )
}

fn geography() -> Result<RecordBatch, arrow::error::ArrowError> {
    // Region Hovedstaden (1084) and Region Sjælland (1085) merge into Region
    // Østdanmark on 1 January 2027; 1086 is our placeholder code until one is issued.
    let mut cols: [Vec<String>; 4] = Default::default();
    let (mut from, mut to) = (Vec::new(), Vec::new());
    let d = |y, m, dd| days_since_epoch(NaiveDate::from_ymd_opt(y, m, dd).expect("a date"));
    for k in crate::generate::kommuner() {
        let merges = k.region_code == "1084" || k.region_code == "1085";
        let rows: Vec<(String, String, i32, i32)> = if merges {
            vec![
                (
                    k.region_code.clone(),
                    k.region_name.clone(),
                    d(2007, 1, 1),
                    d(2026, 12, 31),
                ),
                (
                    "1086".into(),
                    "Region Østdanmark".into(),
                    d(2027, 1, 1),
                    d(9999, 12, 31),
                ),
            ]
        } else {
            vec![(
                k.region_code.clone(),
                k.region_name.clone(),
                d(2007, 1, 1),
                d(9999, 12, 31),
            )]
        };
        for (rc, rn, f, t) in rows {
            cols[0].push(k.code.clone());
            cols[1].push(k.name.clone());
            cols[2].push(rc);
            cols[3].push(rn);
            from.push(f);
            to.push(t);
        }
    }
    let [a, b, c, e] = cols;
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("kommunekode", DataType::Utf8, false),
            Field::new("kommunenavn", DataType::Utf8, false),
            Field::new("regionskode", DataType::Utf8, false),
            Field::new("regionsnavn", DataType::Utf8, false),
            Field::new("gyldig_fra", DataType::Date32, false),
            Field::new("gyldig_til", DataType::Date32, false),
        ])),
        vec![
            Arc::new(StringArray::from(a)),
            Arc::new(StringArray::from(b)),
            Arc::new(StringArray::from(c)),
            Arc::new(StringArray::from(e)),
            Arc::new(Date32Array::from(from)),
            Arc::new(Date32Array::from(to)),
        ],
    )
}

const DIM_PERSON: &str = "
WITH personer AS ({persons}),
bopael AS (
    SELECT person_id, kommunekode,
           ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY last_updated DESC, resource_id) AS seneste
    FROM kommune_borger_current WHERE person_id IS NOT NULL
)
SELECT p.person_id, MAX(p.birth_year) AS birth_year, MAX(p.sex) AS sex,
       MAX(b.kommunekode) AS kommunekode, MAX(g.regionskode) AS regionskode
FROM personer p
CROSS JOIN params
LEFT JOIN bopael b ON b.person_id = p.person_id AND b.seneste = 1
LEFT JOIN dim_geografi g ON g.kommunekode = b.kommunekode
     AND params.reference_date BETWEEN g.gyldig_fra AND g.gyldig_til
GROUP BY p.person_id";

const PERSON_BOPAEL: &str = "
SELECT person_id, kommunekode, MIN(rapportdato) AS gyldig_fra, MAX(rapportdato) AS senest_rapporteret
FROM kommune_borger WHERE person_id IS NOT NULL
GROUP BY person_id, kommunekode";

/// The person dimension over every current table that carries persons.
fn dim_person_sql(contracts: &Registry) -> String {
    let sources: Vec<String> = contracts
        .iter()
        .filter(|c| c.cpr_field.is_some())
        .map(|c| {
            format!(
                "SELECT person_id, birth_year, sex FROM {}_current WHERE person_id IS NOT NULL",
                c.table()
            )
        })
        .collect();
    DIM_PERSON.replace("{persons}", &sources.join(" UNION ALL "))
}

fn params_schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "reference_date",
        DataType::Date32,
        false,
    )]))
}

/// Every table `publish` writes, with the schema it writes: found by planning the same
/// SQL over empty tables (and protecting an empty mart), so the catalogs cannot drift
/// from what is published.
pub async fn presentation_tables(
    contracts: &Registry,
) -> Result<Vec<lake::PresentationTable>, PublishError> {
    let ctx = SessionContext::new();
    let empty = |schema: arrow::datatypes::SchemaRef| -> Result<Arc<MemTable>, PublishError> {
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
    };
    ctx.register_table("params", empty(params_schema())?)?;
    let geo = geography()?.schema();
    ctx.register_table("dim_geografi", empty(geo.clone())?)?;
    let mut out = Vec::new();
    for c in contracts.iter() {
        ctx.register_table(c.table().as_str(), empty(lake::schema(c))?)?;
        let schema: arrow::datatypes::SchemaRef =
            Arc::new(ctx.sql(&current_sql(c)).await?.schema().as_arrow().clone());
        let name = format!("{}_current", c.table());
        ctx.register_table(name.as_str(), empty(schema.clone())?)?;
        out.push(lake::PresentationTable {
            kind: "current",
            name,
            description: format!(
                "{} ({} v{}): the current state, the latest version of each record key, \
                 entered-in-error removed.",
                c.title, c.id, c.version
            ),
            contract: Some(c.id.clone()),
            schema,
        });
    }
    let dims = [
        (
            "dim_geografi",
            "Municipality -> region with gyldig_fra/gyldig_til (Region Østdanmark from 2027).",
            None,
        ),
        (
            "dim_person",
            "One row per person_id: birth year, sex, current municipality and region.",
            Some(dim_person_sql(contracts)),
        ),
        (
            "person_bopael",
            "Municipality of residence over time, from the municipal reports.",
            Some(PERSON_BOPAEL.to_string()),
        ),
    ];
    for (name, description, sql) in dims {
        let schema = match sql {
            Some(sql) => Arc::new(ctx.sql(&sql).await?.schema().as_arrow().clone()),
            None => geo.clone(),
        };
        out.push(lake::PresentationTable {
            kind: "dim",
            name: name.into(),
            description: description.into(),
            contract: None,
            schema,
        });
    }
    for spec in marts() {
        let (batch, _) = protect_mart(&spec, &[])?;
        out.push(lake::PresentationTable {
            kind: "marts",
            name: spec.name.clone(),
            description: format!(
                "{}. Disclosure-controlled (rule set in column disclosure_rule_set): NULL = \
                 suppressed; margins are the rows and columns labelled '{TOTAL}'.",
                spec.title
            ),
            contract: None,
            schema: batch.schema(),
        });
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("publishing: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    #[error("publishing: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("mart {mart}: {message}")]
    Mart { mart: String, message: String },
}

/// Registers `name` from a spooled Parquet file and uploads it to the presentation zone.
async fn materialise(
    p: &Platform,
    ctx: &SessionContext,
    spool: &std::path::Path,
    kind: &str,
    name: &str,
    sql: &str,
) -> Result<u64, PublishError> {
    let path = spool.join(format!("{name}.parquet"));
    let path_s = path.display().to_string();
    ctx.sql(sql)
        .await?
        .write_parquet(
            &path_s,
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await?;
    ctx.register_parquet(name, &path_s, ParquetReadOptions::default())
        .await?;
    let n = ctx
        .sql(&format!("SELECT count(*) FROM {name}"))
        .await?
        .collect()
        .await?;
    let rows = n[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map_or(0, |a| a.value(0)) as u64;
    p.stores
        .lake
        .put_file(&presentation_key(kind, name), &path)
        .await
        .map_err(StepError::from)?;
    Ok(rows)
}

/// Publishes everything for `reference_date` (the "today" of the marts).
pub async fn publish(p: &Platform, reference_date: NaiveDate) -> Result<Published, PublishError> {
    let ctx = catalog::session(p).await?;
    let spool = tempfile::Builder::new()
        .prefix("naerdata-publish-")
        .tempdir_in(&p.spool_root)
        .map_err(|e| StepError::Internal(format!("spool: {e}")))?;
    let mut out = Published::default();

    let params = RecordBatch::try_new(
        params_schema(),
        vec![Arc::new(Date32Array::from(vec![days_since_epoch(
            reference_date,
        )]))],
    )?;
    ctx.register_table(
        "params",
        Arc::new(MemTable::try_new(params.schema(), vec![vec![params]])?),
    )?;
    let geo = geography()?;
    ctx.register_table(
        "dim_geografi",
        Arc::new(MemTable::try_new(geo.schema(), vec![vec![geo.clone()]])?),
    )?;
    put_batch(p, &presentation_key("dim", "dim_geografi"), &geo).await?;
    out.tables
        .push(("dim_geografi".into(), geo.num_rows() as u64));

    // Current tables; an empty table stands in for a dataset with no data yet, so the
    // marts always run.
    let with_data: Vec<String> = catalog::tables_with_data(p)
        .await?
        .iter()
        .map(Contract::table)
        .collect();
    for c in p.contracts.iter() {
        let name = format!("{}_current", c.table());
        if with_data.contains(&c.table()) {
            let rows =
                materialise(p, &ctx, spool.path(), "current", &name, &current_sql(c)).await?;
            out.tables.push((name.clone(), rows));
        } else {
            let schema = lake::schema(c);
            ctx.register_table(
                name.as_str(),
                Arc::new(MemTable::try_new(schema, vec![vec![]])?),
            )?;
        }
    }
    if !with_data.contains(&"kommune_borger".to_string()) {
        let schema = lake::schema(p.contracts.get("kommune.borger").expect("built-in"));
        ctx.register_table(
            "kommune_borger",
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
    }
    let rows = materialise(
        p,
        &ctx,
        spool.path(),
        "dim",
        "dim_person",
        &dim_person_sql(&p.contracts),
    )
    .await?;
    out.tables.push(("dim_person".into(), rows));
    let rows = materialise(p, &ctx, spool.path(), "dim", "person_bopael", PERSON_BOPAEL).await?;
    out.tables.push(("person_bopael".into(), rows));

    for spec in marts() {
        let batches = ctx.sql(&spec.sql).await?.collect().await?;
        let (batch, report) = protect_mart(&spec, &batches)?;
        let key = presentation_key("marts", &spec.name);
        put_batch(p, &key, &batch).await?;
        let meta = serde_json::to_vec_pretty(&report).expect("serialisable");
        p.stores
            .lake
            .put(
                &format!("presentation/marts/{}/_disclosure.json", spec.name),
                Bytes::from(meta),
            )
            .await
            .map_err(StepError::from)?;
        out.marts.push(MartReport { key, ..report });
        out.batches.push((spec.name.clone(), batch));
    }
    Ok(out)
}

pub(crate) async fn put_batches(
    p: &Platform,
    key: &str,
    schema: arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), PublishError> {
    let buf = lake::parquet_bytes(schema, batches)
        .map_err(|e| StepError::Internal(format!("{key}: {e}")))?;
    p.stores
        .lake
        .put(key, Bytes::from(buf))
        .await
        .map_err(StepError::from)?;
    Ok(())
}

async fn put_batch(p: &Platform, key: &str, batch: &RecordBatch) -> Result<(), PublishError> {
    put_batches(p, key, batch.schema(), std::slice::from_ref(batch)).await
}

fn text_value(a: &ArrayRef, i: usize) -> String {
    if a.is_null(i) {
        return "ukendt".into();
    }
    arrow::util::display::array_value_to_string(a, i).unwrap_or_default()
}

fn count_value(a: &ArrayRef, i: usize) -> u64 {
    if a.is_null(i) {
        return 0;
    }
    arrow::util::display::array_value_to_string(a, i)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(0, |x| x.max(0.0) as u64)
}

/// Pivots a mart's result per count column into a 2-D table with margins, applies
/// disclosure control to each (they are different measures, not breakdowns of one
/// population, so they share no totals), and returns the
/// published long table: one row per (row, col) cell including the `I alt` margins,
/// counts as nullable integers (NULL = suppressed), rates from protected counts.
pub fn protect_mart(
    spec: &MartSpec,
    batches: &[RecordBatch],
) -> Result<(RecordBatch, MartReport), PublishError> {
    let err = |m: String| PublishError::Mart {
        mart: spec.name.clone(),
        message: m,
    };
    let mut rows: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    let mut cells: Vec<(String, String, Vec<u64>)> = Vec::new();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| err(format!("the query returns no column {name}")))
        };
        let (r, c) = (col(&spec.rows)?, col(&spec.cols)?);
        let counts: Vec<ArrayRef> = spec
            .counts
            .iter()
            .map(|n| col(n))
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            let (rv, cv) = (text_value(&r, i), text_value(&c, i));
            if !rows.contains(&rv) {
                rows.push(rv.clone());
            }
            if !cols.contains(&cv) {
                cols.push(cv.clone());
            }
            cells.push((rv, cv, counts.iter().map(|a| count_value(a, i)).collect()));
        }
    }
    rows.sort();
    cols.sort();
    let tables: Vec<Table> = (0..spec.counts.len())
        .map(|m| {
            let mut counts = vec![vec![0u64; cols.len()]; rows.len()];
            for (rv, cv, v) in &cells {
                let (i, j) = (
                    rows.binary_search(rv).expect("seen"),
                    cols.binary_search(cv).expect("seen"),
                );
                counts[i][j] += v[m];
            }
            Table {
                rows: rows.clone(),
                cols: cols.clone(),
                counts,
            }
        })
        .collect();
    let protected: Vec<disclosure::Protected> = tables.iter().map(disclosure::protect).collect();

    // Long output with margins.
    let mut out_rows = Vec::new();
    let mut out_cols = Vec::new();
    // Published as signed 64-bit: Athena (and Hive's Parquet reader) has no unsigned
    // integer type.
    let mut values: Vec<Vec<Option<i64>>> = vec![Vec::new(); spec.counts.len()];
    let cell = |c: Cell| match c {
        Cell::Value(v) => Some(v as i64),
        Cell::Suppressed => None,
    };
    for i in 0..=rows.len() {
        for j in 0..=cols.len() {
            out_rows.push(rows.get(i).cloned().unwrap_or_else(|| TOTAL.into()));
            out_cols.push(cols.get(j).cloned().unwrap_or_else(|| TOTAL.into()));
            for (m, pr) in protected.iter().enumerate() {
                let c = match (i < rows.len(), j < cols.len()) {
                    (true, true) => pr.cells[i][j],
                    (true, false) => pr.row_totals[i],
                    (false, true) => pr.col_totals[j],
                    (false, false) => pr.grand_total,
                };
                values[m].push(cell(c));
            }
        }
    }
    let mut fields = vec![
        Field::new(&spec.rows, DataType::Utf8, false),
        Field::new(&spec.cols, DataType::Utf8, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(out_rows)),
        Arc::new(StringArray::from(out_cols)),
    ];
    for (m, name) in spec.counts.iter().enumerate() {
        fields.push(Field::new(name, DataType::Int64, true));
        arrays.push(Arc::new(Int64Array::from(values[m].clone())));
    }
    for (name, a, b) in &spec.rates {
        let ia = spec
            .counts
            .iter()
            .position(|c| c == a)
            .expect("checked at parse");
        let ib = spec
            .counts
            .iter()
            .position(|c| c == b)
            .expect("checked at parse");
        let rates: Vec<Option<f64>> = values[ia]
            .iter()
            .zip(&values[ib])
            .map(|(x, y)| {
                let c = |v: &Option<i64>| v.map_or(Cell::Suppressed, |v| Cell::Value(v as u64));
                disclosure::rate(c(x), c(y))
            })
            .collect();
        fields.push(Field::new(name, DataType::Float64, true));
        arrays.push(Arc::new(Float64Array::from(rates)));
    }
    let n = arrays[0].len();
    fields.push(Field::new("disclosure_rule_set", DataType::Utf8, false));
    arrays.push(Arc::new(StringArray::from(vec![disclosure::RULE_SET; n])));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let report = MartReport {
        name: spec.name.clone(),
        key: String::new(),
        rows: n,
        primary_suppressed: protected.iter().map(|p| p.primary).sum(),
        secondary_suppressed: protected.iter().map(|p| p.secondary).sum(),
        rule_set: disclosure::RULE_SET,
    };
    Ok((batch, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mart_declares_its_shape() {
        let m = marts();
        assert_eq!(m.len(), 4);
        let rehab = m.iter().find(|m| m.name == "rehab_effekt").unwrap();
        assert_eq!(rehab.rows, "kommunekode");
        assert_eq!(rehab.counts.len(), 5);
        assert_eq!(rehab.rates.len(), 4);
        assert!(MartSpec::parse("x", "-- rows: a\n-- cols: b\nSELECT 1").is_err());
    }

    #[test]
    fn current_sql_is_generated_from_the_contract() {
        let r = crate::contract::Registry::builtin();
        let sql = current_sql(r.get("kommune.indsats").unwrap());
        assert!(sql.contains("PARTITION BY record_key"));
        assert!(sql.contains("NOT entered_in_error"));
        let sql = current_sql(r.get("lpr.kontakt").unwrap());
        assert!(!sql.contains("entered_in_error"));
    }
}
