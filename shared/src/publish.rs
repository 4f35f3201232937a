//! The publish step: current tables, the linked model and the marts, written to the
//! presentation zone (`presentation/` in the lake store).
//!
//! - `<table>_current`: the latest version of each record key (by `record_version`, then
//!   `received_at`), entered-in-error removed. SQL generated from the contracts.
//! - `dim_geografi`: municipality -> region and health cluster with valid-from/valid-to
//!   (Region Østdanmark from 2027; the clusters reference data); `dim_person_skift`: old
//!   CPR pseudonyms -> the newest (`cpr.personnummerskift`; every current table shows
//!   persons under the newest); `person_bopael`: residence over time from the population
//!   register, municipal reports for persons not in it; `dim_person`: person, birth
//!   year, sex, death, emigration, latest residence.
//! - marts: SQL files in `sql/marts/` (portable: DataFusion here, Athena in AWS), one
//!   table per period, whose count columns go through disclosure control before
//!   anything is written; a period is published once closed, then frozen, and revised
//!   with a date (`publication.rs`).

use std::sync::Arc;

use arrow::array::{Date32Array, Int64Array, StringArray};
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
use crate::current;
use crate::disclosure;
use crate::lake;
use crate::platform::{Platform, StepError};
pub use crate::publication::{self, Granularity, PeriodSpec};
use crate::validate::days_since_epoch;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// The marts, compiled in so every binary publishes the same ones.
pub const MARTS: &[(&str, &str)] = &[
    ("befolkning", include_str!("../../sql/marts/befolkning.sql")),
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
    (
        "hjemmepleje_genindlaeggelser",
        include_str!("../../sql/marts/hjemmepleje_genindlaeggelser.sql"),
    ),
];

/// The label of margin rows and columns.
pub const TOTAL: &str = "I alt";

/// A mart as its SQL file declares it in `-- key: value` header lines.
#[derive(Debug, Clone)]
pub struct MartSpec {
    pub name: String,
    pub title: String,
    /// What a reader must know (`-- caveat: ...`, one per line): shown with the
    /// table's description in the catalogs.
    pub caveats: Vec<String>,
    /// The caveats in Danish (`-- forbehold: ...`, each after its `-- caveat:`), for
    /// the municipalities' pages and the Danish descriptions.
    pub caveats_da: Vec<String>,
    /// The period column and its length (`-- period: maaned month [stock]`): every
    /// period is a table of its own, published once closed.
    pub period: PeriodSpec,
    /// Days after a period's end the mart looks (`-- follow_up: 90 days`): the period
    /// closes only once those days' data are in too.
    pub follow_up_days: u32,
    pub rows: String,
    /// `None`: one column (the table is the rows and their total).
    pub cols: Option<String>,
    pub counts: Vec<String>,
    pub rates: Vec<Rate>,
    /// (count, column) from `-- persons: count = column`: the count is of events
    /// (contacts, courses) and the column holds the distinct persons behind each cell.
    pub persons: Vec<(String, String)>,
    /// From `-- nested: a < b < base`: counts nested in each other, innermost first,
    /// the base last.
    pub nested: Vec<Vec<String>>,
    /// Columns of the query that split each cell into strata (`-- strata: aldersgruppe,
    /// koen`): every rate gets a directly standardised twin ([`standardisation`]).
    pub strata: Vec<String>,
    /// Columns of the query naming the groups each row is in, innermost first
    /// (`-- rollup: klynge, regionskode`: a municipality's health cluster and region
    /// in the period): every group gets rows of its own, protected with its members
    /// ([`disclosure::protect_tree`]); NULL: in no group at that level.
    pub rollup: Vec<String>,
    /// The column value whose population is the standard (`-- standard: gruppe =
    /// hjemmepleje`); `None`: every column's.
    pub standard: Option<(String, String)>,
    /// (column, Danish, English) from `-- describe: column = dansk | english`: the
    /// mart's labels and counts, for the catalogs ([`crate::glossary`]).
    pub descriptions: Vec<(String, String, String)>,
    pub sql: String,
}

/// A rate of two counts (`-- rates: name = [per *] numerator / denominator`): a share
/// when the numerator is nested in the denominator (courses with a contact, of all
/// courses), else a rate of events (contacts per course); `per` scales it (per 100
/// courses, per 1,000 recipients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    pub per: u32,
}

/// The measures of a mart protected together ([`disclosure::Family`]), as indices
/// into [`MartSpec::counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyPlan {
    pub base: usize,
    /// Each chain innermost first, without the base.
    pub chains: Vec<Vec<usize>>,
    /// A published count of the persons behind the (event) base.
    pub persons: Option<usize>,
}

impl MartSpec {
    pub fn parse(name: &str, sql: &str) -> Result<Self, String> {
        let mut spec = MartSpec {
            name: name.to_string(),
            title: String::new(),
            caveats: Vec::new(),
            caveats_da: Vec::new(),
            period: PeriodSpec {
                column: String::new(),
                granularity: Granularity::Month,
                stock: false,
            },
            follow_up_days: 0,
            rows: String::new(),
            cols: None,
            counts: Vec::new(),
            rates: Vec::new(),
            persons: Vec::new(),
            nested: Vec::new(),
            strata: Vec::new(),
            rollup: Vec::new(),
            standard: None,
            descriptions: Vec::new(),
            sql: sql.to_string(),
        };
        let bad = |m: String| format!("sql/marts/{name}.sql: {m}");
        for line in sql.lines().filter_map(|l| l.strip_prefix("-- ")) {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            let v = v.trim();
            let pair = |v: &str, sep: char| -> Result<(String, String), String> {
                let (a, b) = v
                    .split_once(sep)
                    .ok_or(bad(format!("{k} {v:?} is not a {sep} b")))?;
                Ok((a.trim().into(), b.trim().into()))
            };
            match k {
                "mart" if v != name => return Err(bad(format!("declares mart {v}"))),
                "title" => spec.title = v.to_string(),
                "caveat" => spec.caveats.push(v.to_string()),
                "forbehold" => spec.caveats_da.push(v.to_string()),
                "rows" => spec.rows = v.to_string(),
                "cols" => spec.cols = Some(v.to_string()),
                "counts" => spec.counts = v.split(',').map(|s| s.trim().to_string()).collect(),
                "period" => {
                    let words: Vec<&str> = v.split_whitespace().collect();
                    let (column, length, kind) = match words[..] {
                        [c, l] => (c, l, None),
                        [c, l, k] => (c, l, Some(k)),
                        _ => {
                            return Err(bad(format!(
                                "period {v:?} is not: column month|quarter [stock]"
                            )));
                        }
                    };
                    spec.period = PeriodSpec {
                        column: column.into(),
                        granularity: Granularity::parse(length)
                            .ok_or(bad(format!("period length {length:?}: month or quarter")))?,
                        stock: match kind {
                            None => false,
                            Some("stock") => true,
                            Some(other) => {
                                return Err(bad(format!(
                                    "period kind {other:?}: stock or nothing"
                                )));
                            }
                        },
                    };
                }
                "follow_up" => {
                    spec.follow_up_days = v
                        .strip_suffix("days")
                        .and_then(|d| d.trim().parse().ok())
                        .ok_or(bad(format!("follow_up {v:?} is not: N days")))?;
                }
                "persons" => spec.persons.push(pair(v, '=')?),
                "strata" => spec.strata = v.split(',').map(|s| s.trim().to_string()).collect(),
                "rollup" => spec.rollup = v.split(',').map(|s| s.trim().to_string()).collect(),
                "standard" => spec.standard = Some(pair(v, '=')?),
                "describe" => {
                    let (column, text) = pair(v, '=')?;
                    let (da, en) = pair(&text, '|')?;
                    spec.descriptions.push((column, da, en));
                }
                "nested" => {
                    let chain: Vec<String> = v.split('<').map(|s| s.trim().to_string()).collect();
                    if chain.len() < 2 {
                        return Err(bad(format!("nested {v:?} is not a < b")));
                    }
                    spec.nested.push(chain);
                }
                "rates" => {
                    let (name, expr) = pair(v, '=')?;
                    let (per, expr) =
                        match expr.split_once('*') {
                            Some((n, rest)) => (
                                n.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or(bad(
                                    format!("rate {name}: {n:?} is not a positive number"),
                                ))?,
                                rest.trim().to_string(),
                            ),
                            None => (1, expr),
                        };
                    let (numerator, denominator) = pair(&expr, '/')?;
                    spec.rates.push(Rate {
                        name,
                        numerator,
                        denominator,
                        per,
                    });
                }
                _ => {}
            }
        }
        if spec.rows.is_empty() || spec.counts.is_empty() || spec.period.column.is_empty() {
            return Err(bad(
                "needs -- period:, -- rows: and -- counts: headers".into()
            ));
        }
        if spec.caveats_da.len() != spec.caveats.len() {
            return Err(bad(format!(
                "{} caveat(s) but {} forbehold: each caveat needs its Danish text",
                spec.caveats.len(),
                spec.caveats_da.len()
            )));
        }
        let count = |c: &str| spec.counts.iter().any(|x| x == c);
        if let Some((column, _)) = &spec.standard
            && (spec.strata.is_empty() || spec.cols.as_ref() != Some(column))
        {
            return Err(bad(format!(
                "standard: {column} must be the -- cols: column of a mart with -- strata:"
            )));
        }
        for r in &spec.rates {
            if !count(&r.numerator) || !count(&r.denominator) {
                return Err(bad(format!(
                    "rate {} uses a column that is not a count",
                    r.name
                )));
            }
        }
        for chain in &spec.nested {
            if let Some(c) = chain.iter().find(|c| !count(c)) {
                return Err(bad(format!("nested: {c} is not a count")));
            }
        }
        for (m, col) in &spec.persons {
            if !count(m) {
                return Err(bad(format!("persons: {m} is not a count")));
            }
            if spec.counts.contains(col) && spec.nested.iter().flatten().any(|c| c == col) {
                return Err(bad(format!(
                    "persons: {col} is nested, so it cannot count {m}'s persons"
                )));
            }
        }
        // Every count in one family, in one role.
        let mut role: Vec<Option<String>> = vec![None; spec.counts.len()];
        let idx = |c: &str| spec.counts.iter().position(|x| x == c).expect("checked");
        let mut claim = |c: &str, what: String| -> Result<(), String> {
            let i = idx(c);
            match &role[i] {
                Some(r) if *r != what => Err(bad(format!("{c} is both {r} and {what}"))),
                _ => {
                    role[i] = Some(what);
                    Ok(())
                }
            }
        };
        for chain in &spec.nested {
            let base = chain.last().expect("two or more");
            claim(base, format!("the base of {base}"))?;
            for c in &chain[..chain.len() - 1] {
                claim(c, format!("nested in {base}"))?;
            }
        }
        for (m, col) in &spec.persons {
            if spec.counts.contains(col) {
                claim(col, format!("the persons of {m}"))?;
                if spec.nested.iter().any(|ch| ch[..ch.len() - 1].contains(m)) {
                    return Err(bad(format!(
                        "persons: only a base's persons may be published ({m})"
                    )));
                }
            }
        }
        Ok(spec)
    }

    /// The families the counts form: each base with its chains (and its published
    /// persons), every other count alone.
    pub fn families(&self) -> Vec<FamilyPlan> {
        let idx = |c: &str| {
            self.counts
                .iter()
                .position(|x| x == c)
                .expect("checked at parse")
        };
        let mut out: Vec<FamilyPlan> = Vec::new();
        let mut taken = vec![false; self.counts.len()];
        for (i, name) in self.counts.iter().enumerate() {
            if taken[i]
                || self
                    .nested
                    .iter()
                    .any(|ch| ch[..ch.len() - 1].contains(name))
            {
                continue;
            }
            if self
                .persons
                .iter()
                .any(|(m, c)| c == name && m != name && self.counts.contains(c))
            {
                continue; // published with its events
            }
            let chains: Vec<Vec<usize>> = self
                .nested
                .iter()
                .filter(|ch| ch.last() == Some(name))
                .map(|ch| ch[..ch.len() - 1].iter().map(|c| idx(c)).collect())
                .collect();
            let persons = self
                .persons
                .iter()
                .find(|(m, c)| m == name && self.counts.contains(c))
                .map(|(_, c)| idx(c));
            for k in chains.iter().flatten().chain(&persons).chain([&i]) {
                taken[*k] = true;
            }
            out.push(FamilyPlan {
                base: i,
                chains,
                persons,
            });
        }
        out
    }

    /// Is count `a` nested in count `b` (so `a / b` is a share)?
    pub fn nested_in(&self, a: &str, b: &str) -> bool {
        self.nested.iter().any(|ch| {
            let pa = ch.iter().position(|c| c == a);
            let pb = ch.iter().position(|c| c == b);
            matches!((pa, pb), (Some(x), Some(y)) if x < y)
        })
    }

    /// Rate `k` of its protected cells, by the rate rules: a share when its numerator
    /// is nested in its denominator ([`disclosure::share`]), else [`disclosure::rate`];
    /// times its `per`.
    pub fn rate(
        &self,
        k: usize,
        numerator: disclosure::Cell,
        denominator: disclosure::Cell,
    ) -> Option<f64> {
        let r = &self.rates[k];
        let value = if self.nested_in(&r.numerator, &r.denominator) {
            disclosure::share(numerator, denominator)
        } else {
            disclosure::rate(numerator, denominator)
        };
        value.map(|v| v * f64::from(r.per))
    }

    /// The published rate columns: each rate, then each one's standardised twin when
    /// the mart has strata.
    pub fn rate_columns(&self) -> Vec<String> {
        let names = self.rates.iter().map(|r| r.name.clone());
        if self.strata.is_empty() {
            return names.collect();
        }
        names
            .clone()
            .chain(names.map(|n| format!("{n}{}", crate::standardisation::SUFFIX)))
            .collect()
    }

    /// The column holding the persons behind count `m`, if it counts events.
    pub fn persons_of(&self, m: &str) -> Option<&str> {
        self.persons
            .iter()
            .find(|(x, _)| x == m)
            .map(|(_, c)| c.as_str())
    }
}

/// The built-in marts, parsed once.
static PARSED: std::sync::LazyLock<Vec<MartSpec>> = std::sync::LazyLock::new(|| {
    MARTS
        .iter()
        .map(|(n, s)| MartSpec::parse(n, s).unwrap_or_else(|e| panic!("built-in mart: {e}")))
        .collect()
});

pub fn marts() -> Vec<MartSpec> {
    PARSED.clone()
}

/// The built-in mart called `name`.
pub fn mart(name: &str) -> Option<&'static MartSpec> {
    PARSED.iter().find(|m| m.name == name)
}

/// What one mart published.
#[derive(Debug, Clone, Serialize)]
pub struct MartReport {
    pub name: String,
    pub key: String,
    /// Rows of the published table: every period and revision.
    pub rows: usize,
    /// Periods in the table.
    pub periods: usize,
    /// What this publication added (periods, revisions) and kept (frozen), and the
    /// suppressions in what it added.
    #[serde(flatten)]
    pub outcome: publication::Outcome,
    pub rule_set: &'static str,
    /// Seconds the mart's SQL took (the cells, before disclosure control). Not written
    /// with the report: it differs from run to run.
    #[serde(skip)]
    pub query_seconds: f64,
    /// Bytes the mart's SQL read from Parquet (see [`bytes_scanned`]): what an engine
    /// that bills by bytes scanned (Athena) would charge for, roughly.
    #[serde(skip)]
    pub bytes_scanned: u64,
}

/// The bytes a query's Parquet scans read, over its whole plan once it has run:
/// DataFusion's `bytes_scanned` (the column chunks and page indexes read, not the
/// footers) summed over every scan.
pub fn bytes_scanned(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map_or(0, |v| v.as_usize() as u64);
    own + plan
        .children()
        .into_iter()
        .map(|c| bytes_scanned(c.as_ref()))
        .sum::<u64>()
}

#[derive(Debug, Default)]
pub struct Published {
    /// (table, rows) of the current tables and dimensions.
    pub tables: Vec<(String, u64)>,
    pub marts: Vec<MartReport>,
    /// Each mart's published table, for printing.
    pub batches: Vec<(String, RecordBatch)>,
    /// The Delta version of each curated table the publication read (also written to
    /// [`PUBLICATION_KEY`]).
    pub lake_versions: std::collections::BTreeMap<String, u64>,
    /// How each current table was brought up to date, and how long it took.
    pub current: Vec<current::Maintained>,
}

/// What the newest publication read: its reference date and the Delta version of
/// each curated table, so it can be reproduced with `--as-of`.
pub use crate::layout::PUBLICATION_KEY;

pub fn presentation_key(kind: &str, name: &str) -> String {
    crate::layout::presentation_key(kind, name)
}

/// Boolean columns whose `true` in a record's latest version withdraws the record.
pub const WITHDRAWN_FIELDS: [&str; 2] = ["entered_in_error", "tilbagekaldt"];

/// The column of `c` whose `true` withdraws a record ([`WITHDRAWN_FIELDS`]), if any.
pub(crate) fn withdrawn_field(c: &Contract) -> Option<&'static str> {
    WITHDRAWN_FIELDS
        .iter()
        .copied()
        .find(|f| c.field_index(f).is_some())
}

/// Whether the current table of `c` shows persons under their newest pseudonym
/// ([`current_linked_sql`]): it has persons and is not the change table itself.
pub(crate) fn linked(c: &Contract) -> bool {
    c.cpr_field.is_some() && c.cpr_link_field.is_none()
}

/// The current-state SQL of a curated table: portable (window function, explicit
/// columns), generated from the contract.
pub fn current_sql(c: &Contract) -> String {
    let cols: Vec<String> = lake::catalog_columns(c)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let list = cols.join(", ");
    // A record whose latest version withdraws it (FHIR's entered-in-error, the CSV
    // suppliers' `tilbagekaldt`) has no current row.
    let eie = withdrawn_field(c)
        .map(|f| format!(" AND NOT coalesce({f}, false)"))
        .unwrap_or_default();
    format!(
        "SELECT {list} FROM (SELECT {list}, ROW_NUMBER() OVER (PARTITION BY record_key \
         ORDER BY record_version DESC, received_at DESC, delivery_id DESC) AS version_rank \
         FROM {table}) AS ranked WHERE version_rank = 1{eie}",
        table = c.table()
    )
}

/// `dim_geografi`: per municipality, one row per period in which its region and its
/// health cluster stay the same (split where either changes: the clusters' own
/// periods, and Region Østdanmark from 2027). The cluster columns are empty before
/// the clusters began and when no cluster list is loaded.
fn geography(
    reference: &crate::reference::ReferenceSet,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let start = NaiveDate::from_ymd_opt(2007, 1, 1).expect("a date");
    let end = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");
    let mut text: [Vec<String>; 4] = Default::default();
    let mut cluster: [Vec<Option<String>>; 3] = Default::default();
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for k in crate::reference::kommuner() {
        let own: Vec<&crate::reference::Cluster> = reference
            .clusters
            .iter()
            .filter(|c| c.kommunekode == k.code)
            .collect();
        let mut cuts = vec![start];
        if k.merges_into_oestdanmark() {
            cuts.push(crate::reference::oestdanmark_from());
        }
        for c in &own {
            cuts.push(c.valid_from);
            if let Some(t) = c.valid_to.and_then(|t| t.succ_opt()) {
                cuts.push(t);
            }
        }
        cuts.retain(|d| *d >= start && *d <= end);
        cuts.sort();
        cuts.dedup();
        for (i, first) in cuts.iter().enumerate() {
            let last = cuts.get(i + 1).and_then(|n| n.pred_opt()).unwrap_or(end);
            let (rc, rn) = k.region_on(*first);
            let c = own
                .iter()
                .find(|c| c.valid_from <= *first && c.valid_to.is_none_or(|t| t >= *first));
            text[0].push(k.code.clone());
            text[1].push(k.name.clone());
            text[2].push(rc.to_string());
            text[3].push(rn.to_string());
            let value = |s: &str| (!s.is_empty()).then(|| s.to_string());
            cluster[0].push(c.and_then(|c| value(&c.klynge)));
            cluster[1].push(c.and_then(|c| value(&c.sundhedsraad)));
            cluster[2].push(c.and_then(|c| value(&c.hospital)));
            from.push(days_since_epoch(*first));
            to.push(days_since_epoch(last));
        }
    }
    let [a, b, c, e] = text;
    let [kl, sr, ho] = cluster;
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("kommunekode", DataType::Utf8, false),
            Field::new("kommunenavn", DataType::Utf8, false),
            Field::new("regionskode", DataType::Utf8, false),
            Field::new("regionsnavn", DataType::Utf8, false),
            Field::new("klynge", DataType::Utf8, true),
            Field::new("sundhedsraad", DataType::Utf8, true),
            Field::new("hospital", DataType::Utf8, true),
            Field::new("gyldig_fra", DataType::Date32, false),
            Field::new("gyldig_til", DataType::Date32, false),
        ])),
        vec![
            Arc::new(StringArray::from(a)),
            Arc::new(StringArray::from(b)),
            Arc::new(StringArray::from(c)),
            Arc::new(StringArray::from(e)),
            Arc::new(StringArray::from(kl)),
            Arc::new(StringArray::from(sr)),
            Arc::new(StringArray::from(ho)),
            Arc::new(Date32Array::from(from)),
            Arc::new(Date32Array::from(to)),
        ],
    )
}

/// `dim_person_skift`: every pseudonym of an old CPR number with the pseudonym of the
/// person's newest number (chains of changes followed), from `cpr.personnummerskift`.
pub const PERSON_SKIFT: &str = "dim_person_skift";

/// The person dimension: the population register first (birth, sex, death,
/// emigration, latest residence), the other sources for persons not in it.
const DIM_PERSON: &str = "
WITH personer AS ({persons}),
register AS (
    SELECT person_id,
           MAX(birth_year) AS birth_year,
           MAX(koen) AS sex, MAX(doedsdato) AS doedsdato, MAX(udvandret_dato) AS udvandret_dato
    FROM cpr_befolkning_current WHERE person_id IS NOT NULL
    GROUP BY person_id
),
andre AS (
    SELECT person_id, MAX(birth_year) AS birth_year, MAX(sex) AS sex
    FROM personer GROUP BY person_id
),
alle AS (
    SELECT person_id FROM register
    UNION
    SELECT person_id FROM andre
),
bopael AS (
    SELECT person_id, kommunekode,
           ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY gyldig_fra DESC, kommunekode) AS seneste
    FROM person_bopael
)
SELECT a.person_id,
       COALESCE(r.birth_year, o.birth_year) AS birth_year,
       COALESCE(r.sex, o.sex) AS sex,
       b.kommunekode, g.regionskode,
       r.doedsdato, r.udvandret_dato,
       CASE WHEN r.person_id IS NOT NULL THEN 'cpr' ELSE 'andre' END AS kilde
FROM alle a
CROSS JOIN params
LEFT JOIN register r ON r.person_id = a.person_id
LEFT JOIN andre o ON o.person_id = a.person_id
LEFT JOIN bopael b ON b.person_id = a.person_id AND b.seneste = 1
LEFT JOIN dim_geografi g ON g.kommunekode = b.kommunekode
     AND params.reference_date BETWEEN g.gyldig_fra AND g.gyldig_til";

/// Residence over time: the register's periods; for persons not in the register,
/// one period per municipal report, until the next report (the fallback).
pub(crate) const PERSON_BOPAEL: &str = "
WITH register AS (
    SELECT person_id, kommunekode, bopael_fra AS gyldig_fra, bopael_til AS gyldig_til
    FROM cpr_befolkning_current WHERE person_id IS NOT NULL
),
i_register AS (SELECT DISTINCT person_id FROM register),
rapporter AS (
    SELECT COALESCE(s.kanonisk_person_id, k.person_id) AS person_id, k.kommunekode, k.rapportdato
    FROM kommune_borger k
    LEFT JOIN dim_person_skift s ON s.person_id = k.person_id
    WHERE k.person_id IS NOT NULL
),
uden_register AS (
    SELECT r.person_id, r.kommunekode, r.rapportdato,
           LEAD(r.rapportdato) OVER (PARTITION BY r.person_id ORDER BY r.rapportdato, r.kommunekode) AS naeste
    FROM rapporter r
    LEFT JOIN i_register i ON i.person_id = r.person_id
    WHERE i.person_id IS NULL
)
SELECT person_id, kommunekode, gyldig_fra, gyldig_til, 'cpr' AS kilde FROM register
UNION ALL
SELECT person_id, kommunekode, rapportdato AS gyldig_fra,
       CAST(naeste - INTERVAL '1' DAY AS DATE) AS gyldig_til, 'kommune' AS kilde
FROM uden_register";

/// The person dimension over every current table that carries persons.
pub(crate) fn dim_person_sql(contracts: &Registry) -> String {
    let sources: Vec<String> = contracts
        .iter()
        .filter(|c| c.cpr_field.is_some() && c.source != "cpr")
        .map(|c| {
            format!(
                "SELECT person_id, birth_year, sex FROM {}_current WHERE person_id IS NOT NULL",
                c.table()
            )
        })
        .collect();
    DIM_PERSON.replace("{persons}", &sources.join(" UNION ALL "))
}

/// The current table of a dataset with persons, each person under the pseudonym of
/// their newest CPR number ([`PERSON_SKIFT`]); the change table itself keeps both.
pub fn current_linked_sql(c: &Contract) -> String {
    if !linked(c) {
        return current_sql(c);
    }
    let cols: Vec<String> = lake::catalog_columns(c)
        .into_iter()
        .map(|(n, _)| {
            if n == "person_id" {
                "COALESCE(s.kanonisk_person_id, c.person_id) AS person_id".to_string()
            } else {
                format!("c.{n}")
            }
        })
        .collect();
    format!(
        "SELECT {} FROM ({}) AS c LEFT JOIN {PERSON_SKIFT} s ON s.person_id = c.person_id",
        cols.join(", "),
        current_sql(c)
    )
}

/// `dim_person_skift` from the current change rows (person_id -> linked_person_id,
/// skiftedato): each old pseudonym is mapped to the end of its chain of changes. A
/// cycle (a register error) ends at the newest change on it.
pub fn person_changes(rows: &[(String, String, i32)]) -> RecordBatch {
    use std::collections::BTreeMap;
    // The newest change out of each pseudonym wins.
    let mut next: BTreeMap<&str, (&str, i32)> = BTreeMap::new();
    for (old, new, day) in rows {
        if old == new {
            continue;
        }
        let e = next.entry(old.as_str()).or_insert((new.as_str(), *day));
        if *day > e.1 || (*day == e.1 && new.as_str() > e.0) {
            *e = (new.as_str(), *day);
        }
    }
    let (mut from, mut to, mut when) = (Vec::new(), Vec::new(), Vec::new());
    for (&old, &(first, day)) in &next {
        let mut path = vec![old];
        let mut at = first;
        let end = loop {
            if let Some(i) = path.iter().position(|p| *p == at) {
                // Back on the path: a cycle, which ends where its newest change points.
                let newest = path[i..]
                    .iter()
                    .map(|p| next[p])
                    .max_by_key(|&(n, d)| (d, n))
                    .expect("a cycle has a change");
                break newest.0;
            }
            match next.get(at) {
                Some(&(n, _)) => {
                    path.push(at);
                    at = n;
                }
                None => break at,
            }
        };
        if end != old {
            let at = end;
            from.push(old.to_string());
            to.push(at.to_string());
            when.push(day);
        }
    }
    RecordBatch::try_new(
        person_skift_schema(),
        vec![
            Arc::new(StringArray::from(from)),
            Arc::new(StringArray::from(to)),
            Arc::new(Date32Array::from(when)),
        ],
    )
    .expect("the schema's columns")
}

fn person_skift_schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("kanonisk_person_id", DataType::Utf8, false),
        Field::new("skiftedato", DataType::Date32, false),
    ]))
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
pub fn presentation_tables<'a>(
    contracts: &'a Registry,
) -> crate::Boxed<'a, Result<Vec<lake::PresentationTable>, PublishError>> {
    Box::pin(presentation_tables_inner(contracts))
}

/// The body of [`presentation_tables`].
async fn presentation_tables_inner(
    contracts: &Registry,
) -> Result<Vec<lake::PresentationTable>, PublishError> {
    let ctx = SessionContext::new();
    let empty = |schema: arrow::datatypes::SchemaRef| -> Result<Arc<MemTable>, PublishError> {
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
    };
    ctx.register_table("params", empty(params_schema())?)?;
    let geo = geography(&crate::reference::ReferenceSet::builtin())?.schema();
    ctx.register_table("dim_geografi", empty(geo.clone())?)?;
    ctx.register_table(PERSON_SKIFT, empty(person_skift_schema())?)?;
    let mut out = Vec::new();
    for c in contracts.iter() {
        ctx.register_table(c.table().as_str(), empty(lake::schema(c))?)?;
        let schema: arrow::datatypes::SchemaRef = Arc::new(
            ctx.sql(&current_linked_sql(c))
                .await?
                .schema()
                .as_arrow()
                .clone(),
        );
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
    // In the order publish writes them: each may read the ones before it.
    let dims = [
        (
            "dim_geografi",
            "Municipality -> region and health cluster (sundhedsklynge, from 2027 sundhedsråd, \
             hospital) with gyldig_fra/gyldig_til: one row per period in which neither \
             changes (Region Østdanmark from 2027; clusters from `reference/clusters`).",
            None,
        ),
        (
            PERSON_SKIFT,
            "Persons given a new CPR number (cpr.personnummerskift): each person_id of an old \
             number with kanonisk_person_id, the person_id of the newest number (chains \
             followed). Every other presentation table already shows persons under the \
             newest one.",
            None,
        ),
        (
            "person_bopael",
            "Municipality of residence over time: the population register's periods \
             (kilde 'cpr'); for persons not in it, one period per municipal care report \
             until the next (kilde 'kommune'). gyldig_til is the last day, empty while current.",
            Some(PERSON_BOPAEL.to_string()),
        ),
        (
            "dim_person",
            "One row per person_id: birth year and sex (from the population register, else \
             from the CPR number), death and emigration dates, latest municipality and its \
             region on the reference date; kilde says whether the person is in the register.",
            Some(dim_person_sql(contracts)),
        ),
    ];
    for (name, description, sql) in dims {
        let schema = match (name, sql) {
            (_, Some(sql)) => Arc::new(ctx.sql(&sql).await?.schema().as_arrow().clone()),
            (PERSON_SKIFT, None) => person_skift_schema(),
            (_, None) => geo.clone(),
        };
        if name == "person_bopael" || name == "dim_person" {
            ctx.register_table(name, empty(schema.clone())?)?;
        }
        out.push(lake::PresentationTable {
            kind: "dim",
            name: name.into(),
            description: description.into(),
            contract: None,
            schema,
        });
    }
    // The marts: their SQL planned over the empty tables (so a mart that does not
    // return its declared columns fails here), their published schema from the spec.
    ctx.register_table("perioder", empty(publication::periods_schema())?)?;
    for spec in marts() {
        let planned = ctx.sql(&spec.sql).await?;
        let returned: Vec<String> = planned
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let needed = [&spec.period.column, &spec.rows]
            .into_iter()
            .chain(&spec.cols)
            .chain(&spec.strata)
            .chain(&spec.rollup)
            .chain(&spec.counts)
            .chain(spec.persons.iter().map(|(_, c)| c));
        for c in needed {
            if !returned.contains(c) {
                return Err(PublishError::Mart {
                    mart: spec.name.clone(),
                    message: format!("the query returns no column {c}"),
                });
            }
        }
        out.push(lake::PresentationTable {
            kind: "marts",
            name: spec.name.clone(),
            description: format!(
                "{}. Per period ({}); published periods are frozen, corrections are dated \
                 revisions ({}, {}). NULL = suppressed ({}); margins: '{TOTAL}'.{}",
                spec.title,
                spec.period.column,
                publication::REVISION,
                publication::PUBLISHED,
                publication::RULE_SET_COLUMN,
                spec.caveats
                    .iter()
                    .map(|c| format!(" {c}"))
                    .collect::<String>(),
            ),
            contract: None,
            schema: publication::register_schema(&spec),
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
    /// A statement failed on the warehouse (Athena): a mart's (nothing of the
    /// publication's marts was written) or a current table's rebuild.
    #[error("{0}")]
    Warehouse(#[from] WarehouseError),
}

impl From<lake::delta::DeltaError> for PublishError {
    fn from(e: lake::delta::DeltaError) -> Self {
        PublishError::Step(e.into())
    }
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

/// Registers [`PERSON_SKIFT`] in `ctx` — each old pseudonym with the person's newest
/// — from the current rows of every dataset with a `cprLink` whose curated table
/// `ctx` has (`with_data`), and returns it. Publish and research extracts both use
/// it, so a person given a new number is one person in marts and extracts alike.
pub(crate) async fn register_person_changes(
    ctx: &SessionContext,
    contracts: &Registry,
    with_data: &[String],
) -> Result<RecordBatch, PublishError> {
    let mut changes = Vec::new();
    for c in contracts
        .iter()
        .filter(|c| c.cpr_link_field.is_some() && with_data.contains(&c.table()))
    {
        changes.extend(read_changes(ctx, c).await?);
    }
    let skift = person_changes(&changes);
    ctx.register_table(
        PERSON_SKIFT,
        Arc::new(MemTable::try_new(
            skift.schema(),
            vec![vec![skift.clone()]],
        )?),
    )?;
    Ok(skift)
}

/// The current CPR changes of `c`: (person_id, linked_person_id, the change's event
/// date).
async fn read_changes(
    ctx: &SessionContext,
    c: &Contract,
) -> Result<Vec<(String, String, i32)>, PublishError> {
    let day = &c.fields[c.event_date].name;
    let sql = format!(
        "SELECT person_id, {linked}, {day} FROM ({current}) AS changes \
         WHERE person_id IS NOT NULL AND {linked} IS NOT NULL",
        linked = lake::LINKED_PERSON_COLUMN,
        current = current_sql(c),
    );
    let mut out = Vec::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let b = arrow::compute::cast(&b.column(0).clone(), &DataType::Utf8).and_then(|old| {
            let new = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
            let day = arrow::compute::cast(b.column(2), &DataType::Date32)?;
            Ok((old, new, day))
        })?;
        let (old, new, day) = (
            b.0.as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8"),
            b.1.as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8"),
            b.2.as_any()
                .downcast_ref::<Date32Array>()
                .expect("cast to Date32"),
        );
        for i in 0..arrow::array::Array::len(old) {
            out.push((
                old.value(i).to_string(),
                new.value(i).to_string(),
                day.value(i),
            ));
        }
    }
    Ok(out)
}

/// `params`: the one-row table of the publication's reference date the SQL reads.
fn register_params(ctx: &SessionContext, reference_date: NaiveDate) -> Result<(), PublishError> {
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
    Ok(())
}

/// How a publication runs.
#[derive(Clone, Default)]
pub struct PublishOptions {
    /// Rebuild every current table from its whole history instead of merging what
    /// changed since the last publication.
    pub full: bool,
    /// Where the marts' SQL runs: Athena in AWS ([`crate::warehouse`]); `None`: here,
    /// on DataFusion.
    pub warehouse: Option<Arc<dyn Warehouse>>,
}

/// Publishes everything for `reference_date` (the "today" of the marts), maintaining
/// the current tables incrementally.
pub fn publish<'a>(
    p: &'a Platform,
    reference_date: NaiveDate,
) -> crate::Boxed<'a, Result<Published, PublishError>> {
    Box::pin(publish_inner(p, reference_date))
}

/// The body of [`publish`].
async fn publish_inner(p: &Platform, reference_date: NaiveDate) -> Result<Published, PublishError> {
    publish_with(p, reference_date, PublishOptions::default()).await
}

/// What the last publication read and left (see [`current::Previous`]); `None` before
/// the first, or when its record predates the incremental current tables.
async fn previous_publication(p: &Platform) -> Result<Option<current::Previous>, PublishError> {
    let lake = &p.stores.lake;
    let Some(record) = lake.get(PUBLICATION_KEY).await.map_err(StepError::from)? else {
        return Ok(None);
    };
    let record: serde_json::Value = serde_json::from_slice(&record)
        .map_err(|e| StepError::Internal(format!("{PUBLICATION_KEY}: {e}")))?;
    let (Ok(lake_versions), Ok(state)) = (
        serde_json::from_value::<std::collections::BTreeMap<String, u64>>(
            record["lake_versions"].clone(),
        ),
        serde_json::from_value::<current::State>(record["current"].clone()),
    ) else {
        return Ok(None);
    };
    // The CPR changes its current tables follow: the published ones, unless a
    // publication that stopped half-way wrote over them.
    let mut person_skift = None;
    if let Some(body) = lake
        .get(&presentation_key("dim", PERSON_SKIFT))
        .await
        .map_err(StepError::from)?
    {
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
                .and_then(|b| b.build())
                .map_err(|e| StepError::Internal(format!("{PERSON_SKIFT}: {e}")))?
                .collect::<Result<_, _>>()?;
        let batch = arrow::compute::concat_batches(&person_skift_schema(), &batches)?;
        if state.person_skift.as_deref() == Some(current::links_digest(&batch).as_str()) {
            person_skift = Some(batch);
        }
    }
    Ok(Some(current::Previous {
        lake_versions,
        state,
        person_skift,
    }))
}

/// Publishes everything for `reference_date`.
pub fn publish_with<'a>(
    p: &'a Platform,
    reference_date: NaiveDate,
    options: PublishOptions,
) -> crate::Boxed<'a, Result<Published, PublishError>> {
    Box::pin(publish_with_inner(p, reference_date, options))
}

/// The body of [`publish_with`].
async fn publish_with_inner(
    p: &Platform,
    reference_date: NaiveDate,
    options: PublishOptions,
) -> Result<Published, PublishError> {
    let (ctx, lake_versions) = catalog::session_as_of(p, &catalog::AsOf::Newest).await?;
    let spool = tempfile::Builder::new()
        .prefix("naerdata-publish-")
        .tempdir_in(&p.spool_root)
        .map_err(|e| StepError::Internal(format!("spool: {e}")))?;
    let mut out = Published::default();

    register_params(&ctx, reference_date)?;
    // The health clusters as loaded now (`naerdata reference load clusters`).
    let reference = crate::reference::store::current(p.stores.lake.as_ref())
        .await
        .map_err(|e| StepError::Internal(format!("reference data: {e}")))?;
    let geo = geography(&reference)?;
    ctx.register_table(
        "dim_geografi",
        Arc::new(MemTable::try_new(geo.schema(), vec![vec![geo.clone()]])?),
    )?;
    put_batch(p, &presentation_key("dim", "dim_geografi"), &geo).await?;
    out.tables
        .push(("dim_geografi".into(), geo.num_rows() as u64));

    // The CPR changes first: every current table shows each person under their
    // newest number.
    let with_data: Vec<String> = lake_versions.keys().cloned().collect();
    let skift = register_person_changes(&ctx, &p.contracts, &with_data).await?;
    // What the last publication left, read before this one writes over it.
    let previous = previous_publication(p).await?;
    put_batch(p, &presentation_key("dim", PERSON_SKIFT), &skift).await?;
    out.tables
        .push((PERSON_SKIFT.into(), skift.num_rows() as u64));
    // Current tables: maintained from what changed since the last publication
    // (`current.rs`); an empty table stands in for a dataset with no data yet, so the
    // marts always run.
    let links = current::compare_links(previous.as_ref(), &skift);
    let maintenance = current::Maintenance {
        p,
        ctx: &ctx,
        lake_versions: &lake_versions,
        previous: previous.as_ref(),
        links: &links,
        full: options.full,
        warehouse: options.warehouse.as_deref(),
    };
    let mut state = current::State {
        versions: Default::default(),
        person_skift: Some(current::links_digest(&skift)),
    };
    for c in p.contracts.iter() {
        let m = maintenance.table(c).await?;
        if let Some(v) = m.version {
            state.versions.insert(m.table.clone(), v);
            out.tables.push((m.table.clone(), m.rows));
        }
        out.current.push(m);
    }
    let rows = materialise(p, &ctx, spool.path(), "dim", "person_bopael", PERSON_BOPAEL).await?;
    out.tables.push(("person_bopael".into(), rows));
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

    // Every mart is computed (its SQL, then disclosure control) before any is written,
    // so a publication's partition appears for all marts or for none.
    let specs = marts();
    let periods: Vec<Vec<publication::Period>> = specs
        .iter()
        .map(|spec| publication::open_for_publication(spec, &p.contracts, reference_date))
        .collect();
    let cells = match &options.warehouse {
        Some(w) => warehouse_cells(w.as_ref(), &specs, &periods).await?,
        None => {
            let mut cells = Vec::with_capacity(specs.len());
            for (spec, periods) in specs.iter().zip(&periods) {
                cells.push(mart_cells(&ctx, spec, periods).await?);
            }
            cells
        }
    };
    let mut computed = Vec::with_capacity(specs.len());
    for ((spec, periods), cells) in specs.iter().zip(&periods).zip(cells) {
        computed.push(protect_mart(p, spec, periods, cells, reference_date).await?);
    }
    for (spec, (batch, report)) in specs.iter().zip(computed) {
        write_mart(p, &batch, &report).await?;
        out.marts.push(report);
        out.batches.push((spec.name.clone(), batch));
    }
    let record = serde_json::json!({
        "reference_date": reference_date.to_string(),
        "published_at": p.clock.now().to_rfc3339(),
        "lake_versions": &lake_versions,
        "current": &state,
    });
    p.stores
        .lake
        .put(
            PUBLICATION_KEY,
            Bytes::from(serde_json::to_vec_pretty(&record).expect("serialisable")),
        )
        .await
        .map_err(StepError::from)?;
    out.lake_versions = lake_versions;
    Ok(out)
}

/// The reference date of the newest publication, or `None` before the first.
pub async fn published_reference_date(p: &Platform) -> Result<Option<NaiveDate>, PublishError> {
    let Some(record) = p
        .stores
        .lake
        .get(PUBLICATION_KEY)
        .await
        .map_err(StepError::from)?
    else {
        return Ok(None);
    };
    let record: serde_json::Value = serde_json::from_slice(&record)
        .map_err(|e| StepError::Internal(format!("{PUBLICATION_KEY}: {e}")))?;
    record["reference_date"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .map(Some)
        .ok_or_else(|| StepError::Internal(format!("{PUBLICATION_KEY}: no reference_date")).into())
}

/// The lake keys of a published current table or dimension as of the newest
/// publication: a current table's data files from its Delta log, a dimension's one
/// object; `None` when nothing was published for it.
pub async fn published_keys(
    p: &Platform,
    kind: &str,
    name: &str,
) -> Result<Option<Vec<String>>, PublishError> {
    let lake_store = p.stores.lake.as_ref();
    let prefix = crate::layout::presentation_prefix(kind, name);
    if kind == "current"
        && let Some(table) = lake::delta::open(lake_store, &prefix, None).await?
    {
        let mut keys: Vec<String> = lake::delta::active_paths(&table)?
            .into_iter()
            .map(|f| format!("{prefix}{f}"))
            .collect();
        keys.sort();
        return Ok(Some(keys));
    }
    let key = presentation_key(kind, name);
    Ok(lake_store
        .head(&key)
        .await
        .map_err(StepError::from)?
        .map(|_| vec![key]))
}

/// [`published_keys`] as locations a reader opens (paths, or `s3://` URLs).
pub async fn published_files(
    p: &Platform,
    t: &lake::PresentationTable,
) -> Result<Option<Vec<String>>, PublishError> {
    Ok(published_keys(p, t.kind, &t.name)
        .await?
        .map(|keys| keys.iter().map(|k| p.stores.lake.locate(k)).collect()))
}

/// Every row of a published current table or dimension (for tests and checks of
/// small tables: it is read into memory).
pub fn published_batches<'a>(
    p: &'a Platform,
    kind: &'a str,
    name: &'a str,
) -> crate::Boxed<'a, Result<Option<Vec<RecordBatch>>, PublishError>> {
    Box::pin(published_batches_inner(p, kind, name))
}

/// The body of [`published_batches`].
async fn published_batches_inner(
    p: &Platform,
    kind: &str,
    name: &str,
) -> Result<Option<Vec<RecordBatch>>, PublishError> {
    let Some(keys) = published_keys(p, kind, name).await? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for key in keys {
        let body = p
            .stores
            .lake
            .get(&key)
            .await
            .map_err(StepError::from)?
            .ok_or_else(|| StepError::Internal(format!("{key} is gone")))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
            .and_then(|b| b.build())
            .map_err(|e| StepError::Internal(format!("{key}: {e}")))?;
        for b in reader {
            out.push(b?);
        }
    }
    Ok(Some(out))
}

/// A session over the lake as it stands: the curated tables, every published table
/// except the marts (current tables from their Delta logs, the dimensions; an empty
/// table for a dataset with no data) and `params` for `reference_date`: what the
/// marts' SQL reads.
pub fn presentation_session<'a>(
    p: &'a Platform,
    reference_date: NaiveDate,
) -> crate::Boxed<'a, Result<SessionContext, PublishError>> {
    Box::pin(presentation_session_inner(p, reference_date))
}

/// The body of [`presentation_session`].
async fn presentation_session_inner(
    p: &Platform,
    reference_date: NaiveDate,
) -> Result<SessionContext, PublishError> {
    let (ctx, _) = catalog::session_as_of(p, &catalog::AsOf::Newest).await?;
    register_params(&ctx, reference_date)?;
    for t in presentation_tables(&p.contracts).await? {
        if t.kind == "marts" {
            continue;
        }
        match published_files(p, &t).await? {
            Some(files) if !files.is_empty() => {
                let table = ctx
                    .read_parquet(files, ParquetReadOptions::default().schema(&t.schema))
                    .await?;
                ctx.register_table(t.name.as_str(), table.into_view())?;
            }
            _ => {
                ctx.register_table(
                    t.name.as_str(),
                    Arc::new(MemTable::try_new(t.schema.clone(), vec![vec![]])?),
                )?;
            }
        }
    }
    Ok(ctx)
}

/// A mart's cells for `periods` *before* disclosure control, computed with the mart's
/// SQL over the tables the newest publication wrote (current tables, dimensions) and
/// its reference date, the periods written into the statement as a warehouse gets it
/// ([`warehouse::mart_sql`]). For checking a mart's arithmetic, the effects planted in
/// generated data and another engine's answers: its small cells must never be
/// written anywhere.
pub fn unprotected_cells<'a>(
    p: &'a Platform,
    mart: &'a str,
    periods: &'a [publication::Period],
) -> crate::Boxed<'a, Result<RecordBatch, PublishError>> {
    Box::pin(unprotected_cells_inner(p, mart, periods))
}

/// The body of [`unprotected_cells`].
async fn unprotected_cells_inner(
    p: &Platform,
    mart: &str,
    periods: &[publication::Period],
) -> Result<RecordBatch, PublishError> {
    let spec = self::mart(mart)
        .cloned()
        .ok_or_else(|| PublishError::Mart {
            mart: mart.to_string(),
            message: "no such mart".into(),
        })?;
    let reference_date = published_reference_date(p)
        .await?
        .ok_or_else(|| PublishError::Mart {
            mart: mart.to_string(),
            message: "nothing has been published yet".into(),
        })?;
    let ctx = presentation_session(p, reference_date).await?;
    // The statement a warehouse (Athena) is sent, periods written in, so these cells
    // are what it must answer; with no period open, the mart's own SQL over an empty
    // `perioder` gives the columns.
    let sql = match warehouse::mart_sql(&spec.name, &spec.sql, periods) {
        Some(sql) => sql,
        None => {
            let table = publication::periods_batch(periods);
            ctx.register_table(
                "perioder",
                Arc::new(MemTable::try_new(table.schema(), vec![vec![table]])?),
            )?;
            spec.sql.clone()
        }
    };
    let batches = ctx.sql(&sql).await?.collect().await?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => ctx.sql(&sql).await?.schema().inner().clone(),
    };
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// A mart's cells before disclosure control, and what computing them took.
struct Cells {
    batches: Vec<RecordBatch>,
    seconds: f64,
    bytes_scanned: u64,
}

/// The cells of one mart on DataFusion, in this process.
async fn mart_cells(
    ctx: &SessionContext,
    spec: &MartSpec,
    periods: &[publication::Period],
) -> Result<Cells, PublishError> {
    let table = publication::periods_batch(periods);
    ctx.deregister_table("perioder")?;
    ctx.register_table(
        "perioder",
        Arc::new(MemTable::try_new(table.schema(), vec![vec![table]])?),
    )?;
    let started = std::time::Instant::now();
    // Run from a plan of our own, so its scans' metrics can be read afterwards.
    let plan = ctx.sql(&spec.sql).await?.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx()).await?;
    Ok(Cells {
        batches,
        seconds: started.elapsed().as_secs_f64(),
        bytes_scanned: bytes_scanned(plan.as_ref()),
    })
}

/// The cells of every mart on a warehouse (Athena), their statements run together; a
/// mart with no period open has none.
async fn warehouse_cells(
    w: &dyn Warehouse,
    specs: &[MartSpec],
    periods: &[Vec<publication::Period>],
) -> Result<Vec<Cells>, PublishError> {
    let statements: Vec<(usize, (String, String))> = specs
        .iter()
        .zip(periods)
        .enumerate()
        .filter_map(|(i, (spec, periods))| {
            warehouse::mart_sql(&spec.name, &spec.sql, periods)
                .map(|sql| (i, (format!("mart {}", spec.name), sql)))
        })
        .collect();
    let (index, statements): (Vec<usize>, Vec<(String, String)>) = statements.into_iter().unzip();
    tracing::info!(engine = %w.describe(), statements = statements.len(), "marts' SQL sent");
    let answers = w.run(&statements).await?;
    let mut cells: Vec<Cells> = specs
        .iter()
        .map(|_| Cells {
            batches: Vec::new(),
            seconds: 0.0,
            bytes_scanned: 0,
        })
        .collect();
    for (i, answer) in index.into_iter().zip(answers) {
        tracing::info!(mart = %specs[i].name, query_id = %answer.query_id, rows = answer.rows.num_rows(), "mart cells received");
        cells[i] = Cells {
            batches: vec![answer.rows],
            seconds: answer.seconds,
            bytes_scanned: answer.bytes_scanned,
        };
    }
    Ok(cells)
}

/// One mart's publication from its cells: the closed periods open for publication
/// published, each frozen one carried or revised. Nothing is written but an earlier
/// series the mart's new shape sets aside; [`write_mart`] writes the table.
async fn protect_mart(
    p: &Platform,
    spec: &MartSpec,
    periods: &[publication::Period],
    cells: Cells,
    day: NaiveDate,
) -> Result<(RecordBatch, MartReport), PublishError> {
    let err = |m: String| PublishError::Mart {
        mart: spec.name.clone(),
        message: m,
    };
    let raw = publication::raw_by_period(spec, &cells.batches).map_err(err)?;

    // The register: the newest publication up to this day (a re-run of the same day
    // starts from that day's, which it replaces: nothing new unless the data changed).
    let earlier = latest_publication(p, &spec.name, Some(day))
        .await?
        .map(|(key, batches)| (key, publication::read_register(spec, &batches)));
    let mut register = match earlier {
        None => Vec::new(),
        Some((_, Ok(register))) => register,
        Some((old, Err(why))) => {
            // The mart changed shape: its earlier table is kept aside, and a new
            // series starts.
            let aside = crate::layout::mart_superseded_key(&spec.name, day);
            tracing::warn!(mart = %spec.name, %why, %aside, "starting a new published series");
            if let Some(body) = p.stores.lake.get(&old).await.map_err(StepError::from)? {
                p.stores
                    .lake
                    .put(&aside, body)
                    .await
                    .map_err(StepError::from)?;
            }
            Vec::new()
        }
    };
    let started = std::time::Instant::now();
    let outcome = publication::publish_periods(spec, periods, &raw, &mut register, day)
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(
        mart = %spec.name,
        periods = periods.len(),
        query_seconds = cells.seconds,
        bytes_scanned = cells.bytes_scanned,
        protect_seconds = started.elapsed().as_secs_f64(),
        "mart computed"
    );
    let batch = publication::register_batch(spec, &register, day);
    let mut seen: Vec<&str> = register.iter().map(|r| r.period.as_str()).collect();
    seen.dedup();
    let report = MartReport {
        name: spec.name.clone(),
        key: crate::layout::mart_publication_key(&spec.name, day),
        rows: batch.num_rows(),
        periods: seen.len(),
        outcome,
        rule_set: disclosure::RULE_SET,
        query_seconds: cells.seconds,
        bytes_scanned: cells.bytes_scanned,
    };
    Ok((batch, report))
}

/// Writes a mart's publication (its partition) and its `_disclosure.json`.
async fn write_mart(
    p: &Platform,
    batch: &RecordBatch,
    report: &MartReport,
) -> Result<(), PublishError> {
    put_batch(p, &report.key, batch).await?;
    let meta = serde_json::to_vec_pretty(report).expect("serialisable");
    p.stores
        .lake
        .put(
            &crate::layout::mart_disclosure_key(&report.name),
            Bytes::from(meta),
        )
        .await
        .map_err(StepError::from)?;
    Ok(())
}

/// An object's key and its rows.
pub type KeyedBatches = (String, Vec<RecordBatch>);

/// A mart's newest publication up to `up_to` (any when `None`): its key and its rows
/// (every period and revision published by then). A mart published before the
/// publication partitions has its one table (`data.parquet`) instead.
pub fn latest_publication<'a>(
    p: &'a Platform,
    mart: &'a str,
    up_to: Option<NaiveDate>,
) -> crate::Boxed<'a, Result<Option<KeyedBatches>, StepError>> {
    Box::pin(latest_publication_inner(p, mart, up_to))
}

/// The body of [`latest_publication`].
async fn latest_publication_inner(
    p: &Platform,
    mart: &str,
    up_to: Option<NaiveDate>,
) -> Result<Option<(String, Vec<RecordBatch>)>, StepError> {
    let newest = p
        .stores
        .lake
        .list(&crate::layout::presentation_prefix("marts", mart))
        .await?
        .into_iter()
        .filter_map(|o| crate::layout::mart_publication_of(mart, &o.key).map(|d| (d, o.key)))
        .filter(|(d, _)| up_to.is_none_or(|u| *d <= u))
        .max();
    let key = match newest {
        Some((_, key)) => key,
        None => presentation_key("marts", mart),
    };
    let Some(body) = p.stores.lake.get(&key).await? else {
        return Ok(None);
    };
    let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .and_then(|b| b.build())
        .map_err(|e| StepError::Internal(format!("reading {key}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StepError::Internal(format!("reading {key}: {e}")))?;
    Ok(Some((key, batches)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(rows: &[(&str, &str, i32)]) -> Vec<(String, String)> {
        let rows: Vec<(String, String, i32)> = rows
            .iter()
            .map(|(a, b, d)| (a.to_string(), b.to_string(), *d))
            .collect();
        let b = person_changes(&rows);
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        };
        col(0).into_iter().zip(col(1)).collect()
    }

    #[test]
    fn cpr_changes_map_every_old_pseudonym_to_the_newest() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        // A chain: a -> b -> c; both old ones go to c.
        assert_eq!(
            mapped(&[("a", "b", 1), ("b", "c", 5)]),
            vec![s("a", "c"), s("b", "c")]
        );
        // The same change delivered twice, and a change to oneself, are one and none.
        assert_eq!(
            mapped(&[("a", "b", 1), ("a", "b", 1), ("x", "x", 2)]),
            vec![s("a", "b")]
        );
        // Two changes out of one number: the newer wins.
        assert_eq!(mapped(&[("a", "b", 1), ("a", "c", 9)]), vec![s("a", "c")]);
        // A cycle (a register error) ends where its newest change points, for all
        // of its members: here a -> b (day 1), b -> a (day 2): a.
        assert_eq!(mapped(&[("a", "b", 1), ("b", "a", 2)]), vec![s("b", "a")]);
        // A cycle reached from outside: z -> a, then the cycle.
        assert_eq!(
            mapped(&[("z", "a", 0), ("a", "b", 1), ("b", "a", 2)]),
            vec![s("b", "a"), s("z", "a")]
        );
    }

    #[test]
    fn the_change_table_keeps_both_numbers_and_every_other_table_shows_the_newest() {
        let r = Registry::builtin();
        let skift = r.get("cpr.personnummerskift").unwrap();
        assert_eq!(current_linked_sql(skift), current_sql(skift));
        let gp = current_linked_sql(r.get("almenpraksis.kontakt").unwrap());
        assert!(gp.contains("COALESCE(s.kanonisk_person_id, c.person_id) AS person_id"));
        assert!(gp.contains(&format!("LEFT JOIN {PERSON_SKIFT} s")));
    }

    #[test]
    fn every_mart_declares_its_shape() {
        let m = marts();
        assert_eq!(m.len(), 6);
        let rehab = m.iter().find(|m| m.name == "rehab_effekt").unwrap();
        assert_eq!(rehab.rows, "kommunekode");
        assert_eq!(rehab.cols, None);
        assert_eq!(rehab.counts.len(), 9);
        assert_eq!(rehab.rates.len(), 8);
        assert_eq!(rehab.rates[7].per, 100);
        assert_eq!(rehab.rates[0].per, 1);
        assert_eq!(rehab.caveats.len(), 4);
        assert_eq!(rehab.strata, ["aldersgruppe", "koen"]);
        assert_eq!(rehab.standard, None);
        assert_eq!(rehab.rate_columns().len(), 16);
        assert_eq!(rehab.rate_columns()[8], "andel_akut_hospital_foer_90d_std");
        assert_eq!(rehab.descriptions.len(), rehab.counts.len());
        assert_eq!(rehab.period.column, "kvartal");
        assert_eq!(rehab.period.granularity, Granularity::Quarter);
        assert_eq!(rehab.follow_up_days, 90);
        assert_eq!(
            rehab.families(),
            vec![
                FamilyPlan {
                    base: 0,
                    // After 30 < 90 days (hospital, GP), then before (hospital, GP).
                    chains: vec![vec![2, 3], vec![5, 6], vec![1], vec![4]],
                    persons: None
                },
                // Acute contacts as events: each a family of its own.
                FamilyPlan {
                    base: 7,
                    chains: vec![],
                    persons: None
                },
                FamilyPlan {
                    base: 8,
                    chains: vec![],
                    persons: None
                }
            ]
        );
        assert!(rehab.nested_in("akut_hospital_30d", "forloeb_afsluttet"));
        assert!(rehab.nested_in("akut_hospital_30d", "akut_hospital_90d"));
        assert!(!rehab.nested_in("akut_hospital_30d", "almen_praksis_90d"));
        assert!(rehab.nested_in("akut_hospital_foer_90d", "forloeb_afsluttet"));
        assert!(!rehab.nested_in("akut_hospital_foer_90d", "akut_hospital_90d"));
        assert_eq!(
            rehab.persons_of("forloeb_afsluttet"),
            Some("forloeb_personer")
        );
        let spec = m
            .iter()
            .find(|m| m.name == "speciallaege_aktivitet")
            .unwrap();
        assert_eq!(
            spec.families(),
            vec![FamilyPlan {
                base: 0,
                chains: vec![],
                persons: Some(1)
            }]
        );
        assert!(m.iter().filter(|m| m.period.stock).count() == 3);
        assert!(MartSpec::parse("x", "-- rows: a\n-- cols: b\nSELECT 1").is_err());
    }

    #[test]
    fn mart_headers_are_checked() {
        let head = "-- period: maaned month\n-- rows: r\n-- counts: a, b, c\n";
        let ok = |extra: &str| MartSpec::parse("x", &format!("{head}{extra}SELECT 1"));
        let spec = ok("-- nested: a < b\n").unwrap();
        assert_eq!(
            spec.families(),
            vec![
                FamilyPlan {
                    base: 1,
                    chains: vec![vec![0]],
                    persons: None
                },
                FamilyPlan {
                    base: 2,
                    chains: vec![],
                    persons: None
                }
            ]
        );
        assert!(
            ok("-- nested: a < d\n")
                .unwrap_err()
                .contains("not a count")
        );
        assert!(
            ok("-- nested: a < b\n-- nested: b < c\n").is_err(),
            "b in two roles"
        );
        assert!(ok("-- nested: a\n").is_err());
        assert!(ok("-- persons: a = b\n-- nested: b < c\n").is_err());
        assert!(
            ok("-- persons: c = p\n").is_ok(),
            "an unpublished persons column"
        );
        assert!(
            MartSpec::parse("x", "-- period: maaned week\n-- rows: r\n-- counts: a\n").is_err()
        );
        assert!(ok("-- follow_up: ninety\n").is_err());
        // Rates: a share of a nested count, a rate of events, either with a factor.
        let spec =
            ok("-- nested: a < b\n-- rates: s = a / b\n-- rates: r = 100 * c / b\n").unwrap();
        assert_eq!(spec.rates[1].per, 100);
        let cell = disclosure::Cell::Value;
        assert_eq!(spec.rate(0, cell(10), cell(40)), Some(0.25));
        assert_eq!(spec.rate(1, cell(60), cell(40)), Some(150.0));
        assert_eq!(spec.rate(1, cell(3), cell(40)), None, "a numerator under 5");
        assert_eq!(spec.rate(0, cell(38), cell(40)), None, "a complement of 2");
        assert!(ok("-- rates: r = 0 * a / b\n").is_err());
        assert!(ok("-- rates: r = many * a / b\n").is_err());
        assert!(ok("-- rates: r = 100 * a / d\n").is_err());
    }

    #[test]
    fn current_sql_is_generated_from_the_contract() {
        let r = crate::contract::Registry::builtin();
        let sql = current_sql(r.get("kommune.indsats").unwrap());
        assert!(sql.contains("PARTITION BY record_key"));
        assert!(sql.contains("NOT coalesce(entered_in_error, false)"));
        let sql = current_sql(r.get("almenpraksis.diagnose").unwrap());
        assert!(sql.contains("NOT coalesce(tilbagekaldt, false)"));
        let sql = current_sql(r.get("lpr.kontakt").unwrap());
        assert!(!sql.contains("entered_in_error"));
        assert!(!sql.contains("tilbagekaldt"));
    }
}
