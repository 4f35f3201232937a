//! Each municipality's own page ("Kommunal adgang til data"): what the municipality
//! delivered through the KL Gateway and when, how its deliveries fared against the
//! reception calendar, and its indicators from the published marts beside its health
//! cluster and the country. One static HTML file per municipality, like the operator
//! page (`naerdata report --kommune 101`; `--kommune all` for every one).
//!
//! What it may show: the marts' published cells (already through disclosure control)
//! and reception counts. Never a row of another municipality: the cluster and region
//! figures are the mart's published rows for them (`niveau`), protected with their
//! members. For a mart without groups they are sums over the members' published cells,
//! given only where every member's cell is published (a municipality with no row in a
//! mart counts 0, as the published table says), with the rate rule on those sums.

use std::collections::BTreeMap;
use std::fmt::Write;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use crate::disclosure::Cell;
use crate::monitor::Monitored;
use crate::platform::{Platform, StepError};
use crate::publication::{self, Release};
use crate::publish::{self, MartSpec, TOTAL};
use crate::quality::reception::{ReceptionRow, ReceptionStatus};
use crate::reference::{Kommune, ReferenceSet};
use crate::report::{colour, esc};

/// One measure of one column of a mart, for the municipality, its cluster and the
/// country. `None`: suppressed (or, for the cluster, not derivable from what is
/// published).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub col: Option<String>,
    pub measure: String,
    pub rate: bool,
    /// A rate's scale: 1 for a share (shown as a percentage), 100 per 100 courses.
    pub per: u32,
    pub own: Option<f64>,
    pub cluster: Option<f64>,
    pub region: Option<f64>,
    pub country: Option<f64>,
}

/// A mart's newest published period, as the municipality sees it.
#[derive(Debug, Clone)]
pub struct MartView {
    pub mart: String,
    pub title: String,
    pub caveats: Vec<String>,
    pub period: String,
    pub revision: i32,
    pub figures: Vec<Figure>,
}

/// The municipality's page as data: who it is, its cluster, its reception rows and
/// its marts.
pub struct Page<'a> {
    pub kommune: &'a Kommune,
    pub as_of: NaiveDate,
    pub region: String,
    pub cluster: Option<String>,
    pub hospital: Option<String>,
    pub reception: Vec<&'a ReceptionRow>,
    pub marts: Vec<MartView>,
}

/// The municipalities in `code`'s health cluster on `day` (itself included), and
/// the cluster's name; just the municipality when no cluster list covers the day.
pub fn cluster_of(
    reference: &ReferenceSet,
    code: &str,
    day: NaiveDate,
) -> (Option<String>, Vec<String>) {
    let on =
        |c: &&crate::reference::Cluster| c.valid_from <= day && c.valid_to.is_none_or(|t| t >= day);
    let Some(own) = reference
        .clusters
        .iter()
        .filter(on)
        .find(|c| c.kommunekode == code && !c.klynge.is_empty())
    else {
        return (None, vec![code.to_string()]);
    };
    let members = reference
        .clusters
        .iter()
        .filter(on)
        .filter(|c| c.klynge == own.klynge)
        .map(|c| c.kommunekode.clone())
        .collect();
    (Some(own.klynge.clone()), members)
}

/// More columns than this (a mart per GP clinic) and a page shows only the margin.
const MAX_PAGE_COLUMNS: usize = 13;

/// The newest revision of the newest period of a published mart.
fn newest(register: &[Release]) -> Option<&Release> {
    register
        .iter()
        .max_by(|a, b| (a.period.as_str(), a.revision).cmp(&(b.period.as_str(), b.revision)))
}

/// The municipality's view of one mart whose rows are municipalities: for each
/// column (and the margin) and each count and rate, its own cell, the cluster's sum
/// and the country's margin.
pub fn view(
    spec: &MartSpec,
    register: &[Release],
    code: &str,
    cluster: &[String],
    region: &[String],
    groups: (Option<&str>, &str),
) -> Option<MartView> {
    if spec.rows != "kommunekode" {
        return None;
    }
    let release = newest(register)?;
    let mut cols: Vec<Option<String>> = Vec::new();
    for r in &release.rows {
        if !cols.contains(&r.col) {
            cols.push(r.col.clone());
        }
    }
    // The margin last. A mart with many columns (GP clinics) shows only its margin
    // on the page: each clinic's cells are in the published table.
    cols.sort_by_key(|c| (c.as_deref() == Some(TOTAL), c.clone()));
    if cols.len() > MAX_PAGE_COLUMNS {
        cols.retain(|c| c.as_deref() == Some(TOTAL));
    }
    let cell = |row: &str, col: &Option<String>| {
        release.rows.iter().find(|r| r.row == row && r.col == *col)
    };
    let idx = |c: &str| {
        spec.counts
            .iter()
            .position(|x| x == c)
            .expect("checked at parse")
    };
    let mut figures = Vec::new();
    for col in &cols {
        let own = cell(code, col);
        let country = cell(TOTAL, col);
        // Each group's sum of its members' published counts (a member without a row
        // counts 0); unknown as soon as one member's count is suppressed.
        let sums = |members: &[String]| -> Vec<Option<u64>> {
            (0..spec.counts.len())
                .map(|m| {
                    members.iter().try_fold(0u64, |acc, k| match cell(k, col) {
                        None => Some(acc),
                        Some(r) => r.counts[m].map(|v| acc + v.max(0) as u64),
                    })
                })
                .collect()
        };
        let (in_cluster, in_region) = (sums(cluster), sums(region));
        // A mart with groups publishes the cluster's and region's rows itself,
        // protected with their members: those are shown, standardised rates too.
        let group_row = |level: &str, label: Option<&str>| {
            release.rows.iter().find(|r| {
                r.level.as_deref() == Some(level) && Some(r.row.as_str()) == label && r.col == *col
            })
        };
        let rolled = !spec.rollup.is_empty();
        let (cluster_row, region_row) = (
            group_row("klynge", groups.0),
            group_row("region", Some(groups.1)),
        );
        for (m, name) in spec.counts.iter().enumerate() {
            figures.push(Figure {
                col: col.clone(),
                measure: name.clone(),
                rate: false,
                per: 1,
                own: own.map_or(Some(0.0), |r| r.counts[m].map(|v| v as f64)),
                cluster: if rolled {
                    cluster_row.and_then(|r| r.counts[m].map(|v| v as f64))
                } else {
                    in_cluster[m].map(|v| v as f64)
                },
                region: if rolled {
                    region_row.and_then(|r| r.counts[m].map(|v| v as f64))
                } else {
                    in_region[m].map(|v| v as f64)
                },
                country: country.and_then(|r| r.counts[m].map(|v| v as f64)),
            });
        }
        // A group's rate follows the rate rules on its sums, as a published rate does.
        let group_rate = |sums: &[Option<u64>], k: usize| {
            let as_cell = |v: Option<u64>| v.map_or(Cell::Suppressed, Cell::Value);
            let r = &spec.rates[k];
            spec.rate(
                k,
                as_cell(sums[idx(&r.numerator)]),
                as_cell(sums[idx(&r.denominator)]),
            )
        };
        for (i, rate) in spec.rates.iter().enumerate() {
            figures.push(Figure {
                col: col.clone(),
                measure: rate.name.clone(),
                rate: true,
                per: rate.per,
                own: own.and_then(|r| r.rates[i]),
                cluster: if rolled {
                    cluster_row.and_then(|r| r.rates[i])
                } else {
                    group_rate(&in_cluster, i)
                },
                region: if rolled {
                    region_row.and_then(|r| r.rates[i])
                } else {
                    group_rate(&in_region, i)
                },
                country: country.and_then(|r| r.rates[i]),
            });
        }
        // Standardised rates need the strata, which are not published: no sum of
        // the members' cells gives the cluster's, only a mart with groups has them.
        let n = spec.rates.len();
        for (i, name) in spec.rate_columns().iter().enumerate().skip(n) {
            figures.push(Figure {
                col: col.clone(),
                measure: name.clone(),
                rate: true,
                per: spec.rates[i - n].per,
                own: own.and_then(|r| r.rates[i]),
                cluster: cluster_row.and_then(|r| r.rates[i]),
                region: region_row.and_then(|r| r.rates[i]),
                country: country.and_then(|r| r.rates[i]),
            });
        }
    }
    Some(MartView {
        mart: spec.name.clone(),
        title: spec.title.clone(),
        // The page is in Danish.
        caveats: spec.caveats_da.clone(),
        period: release.period.clone(),
        revision: release.revision,
        figures,
    })
}

/// Every published mart with its register (all periods and revisions), read once
/// for all the pages.
pub async fn published_marts(p: &Platform) -> Result<Vec<(MartSpec, Vec<Release>)>, StepError> {
    let mut out = Vec::new();
    for spec in publish::marts() {
        let Some((key, batches)) = publish::latest_publication(p, &spec.name, None).await? else {
            continue;
        };
        let bad = |e: String| StepError::Internal(format!("reading {key}: {e}"));
        let register = publication::read_register(&spec, &batches).map_err(bad)?;
        out.push((spec, register));
    }
    Ok(out)
}

/// Builds and writes the page and the indicators table of each municipality in
/// `codes`, each under its own prefix ([`crate::layout::kommune_prefix`]); returns
/// the keys.
pub fn write_pages<'a>(
    p: &'a Platform,
    m: &'a Monitored,
    reference: &'a ReferenceSet,
    codes: &'a [String],
) -> crate::Boxed<'a, Result<Vec<String>, StepError>> {
    Box::pin(write_pages_inner(p, m, reference, codes))
}

/// The body of [`write_pages`].
async fn write_pages_inner(
    p: &Platform,
    m: &Monitored,
    reference: &ReferenceSet,
    codes: &[String],
) -> Result<Vec<String>, StepError> {
    let marts = published_marts(p).await?;
    let mut keys = Vec::with_capacity(codes.len());
    for code in codes {
        let page = build(m, reference, &marts, code)?;
        let key = crate::layout::kommune_page_key(code);
        p.stores
            .lake
            .put(&key, Bytes::from(render(&page, p.clock.now())))
            .await?;
        keys.push(key);
        let key = crate::layout::kommune_table_key(code);
        let table = indicators_batch(&page.marts);
        let bytes = crate::lake::parquet_bytes(table.schema(), &[table])
            .map_err(|e| StepError::Internal(format!("{key}: {e}")))?;
        p.stores.lake.put(&key, Bytes::from(bytes)).await?;
        keys.push(key);
    }
    Ok(keys)
}

/// The schema of a municipality's indicators table (`indikatorer.parquet`).
pub fn indicators_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("mart", DataType::Utf8, false),
        Field::new("periode", DataType::Utf8, false),
        Field::new("revision", DataType::Int32, false),
        Field::new("kolonne", DataType::Utf8, true),
        Field::new("maal", DataType::Utf8, false),
        Field::new("andel", DataType::Boolean, false),
        Field::new("niveau", DataType::Utf8, false),
        Field::new("vaerdi", DataType::Float64, true),
    ]))
}

/// The page's figures in long format: one row per mart, column, measure and level
/// (kommune, klynge, region, land); `vaerdi` NULL where suppressed or not derivable.
pub fn indicators_batch(marts: &[MartView]) -> arrow::record_batch::RecordBatch {
    use arrow::array::{BooleanArray, Float64Array, Int32Array, StringArray};
    let n = marts.iter().map(|v| v.figures.len() * 4).sum();
    let mut mart = Vec::with_capacity(n);
    let mut period = Vec::with_capacity(n);
    let mut revision = Vec::with_capacity(n);
    let mut col = Vec::with_capacity(n);
    let mut measure = Vec::with_capacity(n);
    let mut share = Vec::with_capacity(n);
    let mut level = Vec::with_capacity(n);
    let mut value = Vec::with_capacity(n);
    for v in marts {
        for f in &v.figures {
            for (l, x) in [
                ("kommune", f.own),
                ("klynge", f.cluster),
                ("region", f.region),
                ("land", f.country),
            ] {
                mart.push(v.mart.as_str());
                period.push(v.period.as_str());
                revision.push(v.revision);
                col.push(f.col.as_deref());
                measure.push(f.measure.as_str());
                share.push(f.rate);
                level.push(l);
                value.push(x);
            }
        }
    }
    arrow::record_batch::RecordBatch::try_new(
        indicators_schema(),
        vec![
            std::sync::Arc::new(StringArray::from(mart)),
            std::sync::Arc::new(StringArray::from(period)),
            std::sync::Arc::new(Int32Array::from(revision)),
            std::sync::Arc::new(StringArray::from(col)),
            std::sync::Arc::new(StringArray::from(measure)),
            std::sync::Arc::new(BooleanArray::from(share)),
            std::sync::Arc::new(StringArray::from(level)),
            std::sync::Arc::new(Float64Array::from(value)),
        ],
    )
    .expect("the schema's columns")
}

/// The HTML page of municipality `code`.
pub fn page(
    m: &Monitored,
    reference: &ReferenceSet,
    marts: &[(MartSpec, Vec<Release>)],
    code: &str,
    generated_at: DateTime<Utc>,
) -> Result<String, StepError> {
    Ok(render(&build(m, reference, marts, code)?, generated_at))
}

/// What municipality `code` sees: its place, its reception rows, its marts.
pub fn build<'a>(
    m: &'a Monitored,
    reference: &ReferenceSet,
    marts: &[(MartSpec, Vec<Release>)],
    code: &str,
) -> Result<Page<'a>, StepError> {
    let k = crate::reference::kommuner()
        .iter()
        .find(|k| k.code == code)
        .ok_or_else(|| {
            StepError::Internal(format!("no municipality {code} in reference/kommuner.csv"))
        })?;
    let (cluster, members) = cluster_of(reference, code, m.as_of);
    let region_code = k.region_on(m.as_of).0;
    let region: Vec<String> = crate::reference::kommuner()
        .iter()
        .filter(|o| o.region_on(m.as_of).0 == region_code)
        .map(|o| o.code.clone())
        .collect();
    let hospital = reference
        .clusters
        .iter()
        .find(|c| {
            c.kommunekode == code
                && c.valid_from <= m.as_of
                && c.valid_to.is_none_or(|t| t >= m.as_of)
                && !c.hospital.is_empty()
        })
        .map(|c| c.hospital.clone());
    let views = marts
        .iter()
        .filter_map(|(spec, register)| {
            view(
                spec,
                register,
                code,
                &members,
                &region,
                (cluster.as_deref(), region_code),
            )
        })
        .collect();
    let page = Page {
        kommune: k,
        as_of: m.as_of,
        region: k.region_on(m.as_of).1.to_string(),
        cluster,
        hospital,
        reception: m
            .reception
            .iter()
            .filter(|r| r.unit.as_deref() == Some(code) && r.source == "kommune")
            .collect(),
        marts: views,
    };
    Ok(page)
}

fn number(v: Option<f64>, rate: bool, per: u32) -> String {
    match v {
        None => "<span class=\"sup\">–</span>".into(),
        Some(v) if rate && per == 1 => format!("{:.1} %", v * 100.0),
        Some(v) if rate => format!("{v:.1} pr. {per}"),
        Some(v) => format!("{v:.0}"),
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1100px}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}\
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}th{background:#f4f4f4}\
td.n{text-align:right}.sup{color:#888}.caveat{color:#555;font-size:.85rem}\
.day{display:inline-block;width:.8rem;height:.8rem;margin:1px}";

/// The page: Danish, as its readers are municipal staff.
pub fn render(page: &Page, generated_at: DateTime<Utc>) -> String {
    let k = page.kommune;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"da\"><head><meta charset=\"utf-8\">\
         <title>{name} ({code}) — naerdata</title><style>{CSS}</style></head><body>\
         <h1>{name} kommune ({code})</h1>\
         <p id=\"place\">{region}{cluster}{hospital}. Opgjort {as_of}, dannet {at}. \
         Siden viser kun tal, der allerede er offentliggjort med diskretionering, og \
         kommunens egne leveringer; ingen oplysninger om enkeltpersoner og ingen andre \
         kommuners rækker.</p>",
        name = esc(&k.name),
        code = esc(&k.code),
        region = esc(&page.region),
        cluster = page
            .cluster
            .as_ref()
            .map(|c| format!(", {}", esc(c)))
            .unwrap_or_default(),
        hospital = page
            .hospital
            .as_ref()
            .map(|h| format!(" (akuthospital: {})", esc(h)))
            .unwrap_or_default(),
        as_of = page.as_of,
        at = generated_at.format("%Y-%m-%d %H:%M UTC"),
    );

    // Deliveries: one square per day, and the counts.
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &page.reception {
        *by_status.entry(r.status.as_str()).or_default() += 1;
    }
    let rows: u64 = page.reception.iter().map(|r| r.rows).sum();
    let anomalies = page.reception.iter().filter(|r| r.volume_anomaly).count();
    let _ = write!(
        o,
        "<h2 id=\"leveringer\">Leveringer via KL Gateway</h2>\
         <p>{} dage i vinduet: {} til tiden, {} for sent, {} mangler, {} ikke forfaldne; \
         {rows} rækker i alt; {anomalies} dage med usædvanlig mængde.</p><div id=\"dage\">",
        page.reception.len(),
        by_status.get("on_time").unwrap_or(&0),
        by_status.get("late").unwrap_or(&0),
        by_status.get("missing").unwrap_or(&0),
        by_status.get("pending").unwrap_or(&0),
    );
    let mut days: Vec<&&ReceptionRow> = page.reception.iter().collect();
    days.sort_by_key(|r| r.period_start);
    for r in &days {
        let _ = write!(
            o,
            "<span class=\"day\" style=\"background:{}\" title=\"{} {}: {} rækker\"></span>",
            colour(r),
            r.period_start,
            r.status.as_str(),
            r.rows
        );
    }
    o.push_str("</div>");
    let missing: Vec<&&ReceptionRow> = days
        .iter()
        .copied()
        .filter(|r| r.status == ReceptionStatus::Missing)
        .collect();
    if !missing.is_empty() {
        o.push_str(
            "<table id=\"mangler\"><tr><th>dag</th><th>forventet senest</th><th>frist</th></tr>",
        );
        for r in missing {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.period_start, r.expected_by, r.deadline
            );
        }
        o.push_str("</table>");
    }

    // Indicators.
    o.push_str(
        "<h2 id=\"indikatorer\">Indikatorer</h2><p class=\"caveat\">Seneste offentliggjorte \
         periode. – = diskretioneret (1-4 personer, eller afledt heraf). Klyngen og regionen \
         er deres egne offentliggjorte rækker, diskretioneret sammen med deres kommuner.</p>",
    );
    for v in &page.marts {
        let _ = write!(
            o,
            "<h3 id=\"{}\">{} — {}{}</h3><table class=\"mart\"><tr><th></th><th>mål</th>\
             <th>kommunen</th><th>klyngen</th><th>regionen</th><th>hele landet</th></tr>",
            esc(&v.mart),
            esc(&v.title),
            esc(&v.period),
            if v.revision > 0 {
                format!(" (revision {})", v.revision)
            } else {
                String::new()
            }
        );
        for f in &v.figures {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(f.col.as_deref().unwrap_or("")),
                esc(&f.measure),
                number(f.own, f.rate, f.per),
                number(f.cluster, f.rate, f.per),
                number(f.region, f.rate, f.per),
                number(f.country, f.rate, f.per),
            );
        }
        o.push_str("</table>");
        for c in &v.caveats {
            let _ = write!(o, "<p class=\"caveat\">{}</p>", esc(c));
        }
    }
    if page.marts.is_empty() {
        o.push_str("<p>Intet offentliggjort endnu (`naerdata publish`).</p>");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publication::LongRow;

    fn spec() -> MartSpec {
        MartSpec::parse(
            "m",
            "-- mart: m\n-- title: T\n-- period: maaned month\n-- rows: kommunekode\n\
             -- counts: a, b\n-- nested: a < b\n-- rates: andel = a / b\nSELECT 1",
        )
        .unwrap()
    }

    fn row(k: &str, a: Option<i64>, b: Option<i64>) -> LongRow {
        LongRow {
            row: k.into(),
            level: None,
            col: None,
            counts: vec![a, b],
            rates: vec![None],
        }
    }

    fn release(period: &str, revision: i32, rows: Vec<LongRow>) -> Release {
        Release {
            period: period.into(),
            revision,
            published: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
            rule_set: String::new(),
            rows,
        }
    }

    fn reception(unit: &str, rows: u64, status: ReceptionStatus) -> ReceptionRow {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        ReceptionRow {
            as_of: day,
            source: "kommune".into(),
            dataset: "kommune.gateway".into(),
            unit: Some(unit.into()),
            cadence: "daily".into(),
            period_start: day,
            expected_by: day,
            deadline: day,
            status,
            past_deadline: false,
            deliveries: 1,
            rows,
            first_received_at: None,
            volume_anomaly: false,
        }
    }

    #[test]
    fn counts_shares_and_rates_per_100_read_as_what_they_are() {
        assert_eq!(number(Some(12.0), false, 1), "12");
        assert_eq!(number(Some(0.125), true, 1), "12.5 %");
        assert_eq!(number(Some(24.64), true, 100), "24.6 pr. 100");
        assert!(number(None, true, 100).contains("sup"));
    }

    #[test]
    fn a_page_holds_nothing_of_another_municipality() {
        // 101 (København) and 751 (Aarhus) in different clusters; Aarhus's numbers are
        // distinctive, so any trace of them on København's page would show.
        let m = Monitored {
            as_of: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            reception: vec![
                reception("101", 31, ReceptionStatus::OnTime),
                reception("751", 9137, ReceptionStatus::Missing),
            ],
            declarations: vec![],
            deliveries: vec![],
            written: vec![],
            dead_letters: vec![],
            stuck: vec![],
        };
        let reg = vec![release(
            "2026-11",
            0,
            vec![
                row("101", Some(11), Some(23)),
                row("751", Some(8123), Some(9241)),
                row(TOTAL, Some(8134), Some(9264)),
            ],
        )];
        let marts = vec![(spec(), reg)];
        let reference = ReferenceSet::builtin();
        let at = "2026-12-02T06:00:00Z".parse().unwrap();
        let own = page(&m, &reference, &marts, "101", at).unwrap();
        let other = page(&m, &reference, &marts, "751", at).unwrap();
        assert!(own.contains("København") && own.contains(">11<") && own.contains("31 rækker"));
        // The country margin is published; nothing of Aarhus's own is shown.
        assert!(own.contains(">8134<"));
        for trace in ["Aarhus", "751", "8123", "9241", "9137", "mangler\""] {
            assert!(!own.contains(trace), "{trace} on København's page");
        }
        assert!(other.contains("Aarhus") && other.contains(">8123<"));
        for trace in ["København", ">11<", ">23<", "Sundhedsklynge Byen"] {
            assert!(!other.contains(trace), "{trace} on Aarhus's page");
        }
        assert!(page(&m, &reference, &marts, "999", at).is_err());
    }

    /// With groups the cluster and region are their published rows: shown even where
    /// a member is suppressed (they were protected with it), hidden where they are.
    #[test]
    fn a_mart_with_groups_shows_its_published_cluster_and_region_rows() {
        let mut s = spec();
        s.rollup = vec!["klynge".into(), "regionskode".into()];
        let at = |k: &str, level: &str, a: Option<i64>, b: Option<i64>| LongRow {
            level: Some(level.into()),
            ..row(k, a, b)
        };
        let reg = vec![release(
            "2026-11",
            0,
            vec![
                at("101", "kommune", Some(7), Some(20)),
                at("147", "kommune", None, Some(30)),
                at("Sundhedsklynge Byen", "klynge", Some(9), Some(50)),
                at("1084", "region", None, Some(70)),
                at(TOTAL, "land", Some(40), Some(90)),
            ],
        )];
        let v = view(
            &s,
            &reg,
            "101",
            &[],
            &[],
            (Some("Sundhedsklynge Byen"), "1084"),
        )
        .unwrap();
        let f = |m: &str| v.figures.iter().find(|f| f.measure == m).unwrap().clone();
        assert_eq!(
            f("a").cluster,
            Some(9.0),
            "147 is suppressed, the cluster is not"
        );
        assert_eq!(f("a").region, None);
        assert_eq!(f("b").region, Some(70.0));
        assert_eq!(f("a").country, Some(40.0));
        // Another cluster's label finds nothing.
        let v = view(&s, &reg, "101", &[], &[], (Some("Aarhusklyngen"), "1082")).unwrap();
        assert_eq!(v.figures[0].cluster, None);
    }

    #[test]
    fn the_cluster_is_a_sum_of_published_cells_only() {
        let s = spec();
        let rows = vec![
            row("101", Some(7), Some(20)),
            row("147", Some(5), Some(30)),
            row("151", None, Some(12)),
            row(TOTAL, Some(40), Some(90)),
        ];
        let reg = vec![
            release("2026-10", 0, vec![row("101", Some(1), Some(1))]),
            release("2026-11", 0, vec![row("101", Some(2), Some(2))]),
            release("2026-11", 1, rows),
        ];
        // Cluster 101 + 147 (+ 153, which has no row: 0).
        let v = view(
            &s,
            &reg,
            "101",
            &["101".into(), "147".into(), "153".into()],
            &[],
            (None, ""),
        )
        .unwrap();
        assert_eq!(
            (v.period.as_str(), v.revision),
            ("2026-11", 1),
            "the newest revision"
        );
        let f = |m: &str| v.figures.iter().find(|f| f.measure == m).unwrap().clone();
        assert_eq!(f("a").own, Some(7.0));
        assert_eq!(f("a").cluster, Some(12.0));
        assert_eq!(f("a").country, Some(40.0));
        assert_eq!(f("andel").cluster, Some(12.0 / 50.0));
        // With 151, whose a is suppressed, the cluster's a is not derivable: not shown,
        // and neither is its share.
        let v = view(
            &s,
            &reg,
            "101",
            &["101".into(), "151".into()],
            &[],
            (None, ""),
        )
        .unwrap();
        let f = |m: &str| v.figures.iter().find(|f| f.measure == m).unwrap().clone();
        assert_eq!(f("a").cluster, None);
        assert_eq!(f("b").cluster, Some(32.0));
        assert_eq!(f("andel").cluster, None);
        // A municipality without a row has zeros, as the published table says.
        let v = view(&s, &reg, "153", &["153".into()], &[], (None, "")).unwrap();
        assert_eq!(v.figures[0].own, Some(0.0));
    }
}
