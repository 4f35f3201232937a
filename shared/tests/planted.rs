//! Planted effects: the generator plants known effects (a completed §140 course lowers
//! acute admissions in the 90 days after it by 30 %; home-care recipients are readmitted
//! within 30 days of an acute discharge at twice the rate of others), and the marts must
//! recover them — on their raw aggregates and on the published, disclosure-controlled
//! national and health-cluster rows — while a population generated without them shows
//! none. The
//! tolerance comes from the counts themselves: three standard errors of the log of a
//! ratio of two Poisson counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use naerdata::Platform;
use naerdata::contract::Registry;
use naerdata::generate::{self, Effects, GenerateOptions};
use naerdata::ports::FixedClock;
use naerdata::process;
use naerdata::publication::{Granularity, Period};
use naerdata::publish::{TOTAL, unprotected_cells};
use naerdata::receive::{self, Received};

const PERSONS: usize = 40_000;
const SEED: u64 = 7;

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 8, 1).unwrap()
}

/// 14 months of deliveries, to 30 September 2026.
fn days() -> u32 {
    (NaiveDate::from_ymd_opt(2026, 9, 30).unwrap() - start()).num_days() as u32 + 1
}

fn reference_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

/// Quarters whose before-windows (90 days before the admission a course follows) and
/// 90 days of follow-up lie inside the generated days.
fn rehab_quarters() -> Vec<Period> {
    ["2026-01-15", "2026-04-15"]
        .iter()
        .map(|d| Granularity::Quarter.period_of(d.parse().unwrap()))
        .collect()
}

/// Quarters with home care under way and 30 days of follow-up inside the generated
/// days.
fn care_quarters() -> Vec<Period> {
    ["2025-11-15", "2026-01-15", "2026-04-15"]
        .iter()
        .map(|d| Granularity::Quarter.period_of(d.parse().unwrap()))
        .collect()
}

async fn deliver(p: &Platform, key: &str, body: Vec<u8>) {
    p.stores.landing.put(key, Bytes::from(body)).await.unwrap();
    let Received::ToProcess(id) = receive::receive(p, key, None).await.unwrap() else {
        panic!("{key} was not new")
    };
    process::process(p, &id).await.unwrap();
}

/// A generated population delivered and published. The hospital contacts come as one
/// delivery, the KL Gateway reports as one per month and the register as its last full
/// extract: a year of daily deliveries would take minutes to receive one by one, and
/// the marts read only the current tables.
async fn world(dir: &std::path::Path, effects: Effects) -> Platform {
    let mut opts = GenerateOptions::new(dir.join("generated"));
    opts.persons = PERSONS;
    opts.seed = SEED;
    opts.days = days();
    opts.start = start();
    opts.defects = 0.0;
    opts.effects = effects;
    // Two municipalities of 20,000: cells large enough for the national rows of
    // home-care readmissions to be published (spread over 98, every cell is small and
    // secondary suppression takes the margins too, as it must).
    opts.kommuner = Some(2);
    let files = generate::generate(&opts).unwrap();
    let mut p = Platform::local(&dir.join("home"), Registry::builtin()).unwrap();
    p.clock = Arc::new(FixedClock("2026-12-31T12:00:00Z".parse().unwrap()));

    let of = |dataset: &'static str| files.iter().filter(move |g| g.dataset == dataset);
    let mut lpr = Vec::new();
    for (i, g) in of("lpr.kontakt").enumerate() {
        let text = std::fs::read_to_string(&g.path).unwrap();
        let skip = if i == 0 {
            0
        } else {
            text.find('\n').unwrap() + 1
        };
        lpr.extend_from_slice(&text.as_bytes()[skip..]);
    }
    deliver(&p, "lpr/kontakt/2026-09-30/lpr.csv", lpr).await;
    let mut months: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    for g in of("kommune.gateway") {
        let day = g.day();
        let month = months.entry(day[..7].to_string()).or_default();
        month.0 = day;
        month.1.extend(std::fs::read(&g.path).unwrap());
    }
    for (month, (last, body)) in months {
        deliver(
            &p,
            &format!("kommune/gateway/{last}/gw-{month}.ndjson"),
            body,
        )
        .await;
    }
    for dataset in ["cpr.befolkning", "cpr.personnummerskift"] {
        let g = of(dataset).next_back().unwrap();
        let key = format!("{}/{}/{}.csv", dataset.replace('.', "/"), g.day(), dataset);
        deliver(&p, &key, std::fs::read(&g.path).unwrap()).await;
    }
    naerdata::publish::publish(&p, reference_date())
        .await
        .unwrap();
    p
}

/// Sums of named count columns over a batch's rows that pass `keep`.
fn sums(b: &RecordBatch, keep: &dyn Fn(usize) -> bool, columns: &[&str]) -> Vec<f64> {
    columns
        .iter()
        .map(|c| {
            let a = b
                .column_by_name(c)
                .unwrap_or_else(|| panic!("no column {c}"));
            let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Int64).unwrap();
            let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
            (0..a.len())
                .filter(|&i| keep(i) && a.is_valid(i))
                .map(|i| a.value(i) as f64)
                .sum()
        })
        .collect()
}

fn text<'a>(b: &'a RecordBatch, c: &str) -> &'a StringArray {
    b.column_by_name(c)
        .and_then(|a| a.as_any().downcast_ref::<StringArray>())
        .unwrap_or_else(|| panic!("{c} is not text"))
}

/// A ratio of two rates, `(a / na) / (b / nb)`, with the standard error of its log
/// (the counts taken as Poisson; the denominators as fixed).
#[derive(Debug, Clone, Copy)]
struct Ratio {
    value: f64,
    log_se: f64,
}

impl Ratio {
    fn of(a: f64, na: f64, b: f64, nb: f64) -> Ratio {
        assert!(
            a >= 30.0 && b >= 30.0,
            "too few events to tell: {a} and {b}"
        );
        Ratio {
            value: (a / na) / (b / nb),
            log_se: (1.0 / a + 1.0 / b).sqrt(),
        }
    }

    /// Whether `expected` lies within three standard errors.
    fn recovers(self, expected: f64) -> bool {
        (self.value.ln() - expected.ln()).abs() <= 3.0 * self.log_se
    }
}

/// Acute contacts in the 90 days after a course against the 90 days before the
/// admission it followed, from rows of `rehab_effekt`.
fn rehab_ratio(b: &RecordBatch, keep: &dyn Fn(usize) -> bool) -> Ratio {
    let s = sums(
        b,
        keep,
        &["akutte_kontakter_90d", "akutte_kontakter_foer_90d"],
    );
    Ratio::of(s[0], 1.0, s[1], 1.0)
}

/// 30-day readmissions per discharge of home-care recipients against others, from rows
/// of `hjemmepleje_genindlaeggelser`.
fn care_ratio(b: &RecordBatch, keep: &dyn Fn(usize) -> bool) -> Ratio {
    let gruppe = text(b, "gruppe");
    let group =
        |g: &'static str| move |i: usize| keep(i) && gruppe.is_valid(i) && gruppe.value(i) == g;
    let cols = ["genindlaeggelser_30d", "udskrivninger"];
    let home = sums(b, &group("hjemmepleje"), &cols);
    let other = sums(b, &group("ingen hjemmepleje"), &cols);
    Ratio::of(home[0], home[1], other[0], other[1])
}

/// The newest publication of a mart, every row.
async fn published(p: &Platform, mart: &str) -> RecordBatch {
    let (key, batches) = naerdata::publish::latest_publication(p, mart, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        key,
        naerdata::layout::mart_publication_key(mart, reference_date())
    );
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The published rows of `level` (`land`: the country; `klynge`: the health clusters)
/// of the given periods, where every count the ratio needs is published (suppressed
/// cells are left out, as a reader must).
fn at_level(
    b: &RecordBatch,
    level: &str,
    period: &str,
    periods: &[Period],
    needed: &[&str],
) -> Vec<bool> {
    let labels: Vec<&str> = periods.iter().map(|p| p.label.as_str()).collect();
    let (levels, when) = (text(b, naerdata::publication::LEVEL), text(b, period));
    (0..b.num_rows())
        .map(|i| {
            levels.value(i) == level
                && labels.contains(&when.value(i))
                && needed
                    .iter()
                    .all(|c| b.column_by_name(c).unwrap().is_valid(i))
        })
        .collect()
}

/// On the national rows kept, each standardised rate against its crude rate where both
/// are published (the country is its own standard, so they must agree): how many were
/// compared.
fn standard_is_the_country(b: &RecordBatch, keep: &dyn Fn(usize) -> bool, rates: &[&str]) -> usize {
    let mut compared = 0;
    for rate in rates {
        let f = |c: &str| {
            b.column_by_name(c)
                .unwrap_or_else(|| panic!("no column {c}"))
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap()
                .clone()
        };
        let (crude, std) = (f(rate), f(&format!("{rate}_std")));
        for i in (0..b.num_rows()).filter(|&i| keep(i) && crude.is_valid(i) && std.is_valid(i)) {
            assert!(
                (crude.value(i) - std.value(i)).abs() < 1e-9 * crude.value(i).abs().max(1.0),
                "{rate}: crude {} but standardised {} in the country's own row",
                crude.value(i),
                std.value(i)
            );
            compared += 1;
        }
    }
    compared
}

/// What the marts show of the two effects, on the raw cells and on the published rows
/// of the country and of the health clusters (summed over the clusters).
struct Found {
    rehab_raw: Ratio,
    rehab_published: Ratio,
    rehab_clusters: Ratio,
    care_raw: Ratio,
    care_published: Ratio,
    care_clusters: Ratio,
}

async fn found(p: &Platform) -> Found {
    let rehab_needed = ["akutte_kontakter_90d", "akutte_kontakter_foer_90d"];
    let raw = unprotected_cells(p, "rehab_effekt", &rehab_quarters())
        .await
        .unwrap();
    let table = published(p, "rehab_effekt").await;
    let rehab_raw = rehab_ratio(&raw, &|_| true);
    let keep = at_level(&table, "land", "kvartal", &rehab_quarters(), &rehab_needed);
    let rehab_published = rehab_ratio(&table, &|i| keep[i]);
    // Standardised to the country's courses: the country's row is its crude rate.
    assert!(
        standard_is_the_country(&table, &|i| keep[i], &["akutte_kontakter_90d_pr_100"]) > 0,
        "no standardised rehabilitation rate published in the country's rows"
    );
    let clusters = at_level(
        &table,
        "klynge",
        "kvartal",
        &rehab_quarters(),
        &rehab_needed,
    );
    let rehab_clusters = rehab_ratio(&table, &|i| clusters[i]);

    let care_needed = ["genindlaeggelser_30d", "udskrivninger"];
    let raw = unprotected_cells(p, "hjemmepleje_genindlaeggelser", &care_quarters())
        .await
        .unwrap();
    let table = published(p, "hjemmepleje_genindlaeggelser").await;
    let care_raw = care_ratio(&raw, &|_| true);
    // A row's quarter counts only when both groups' cells are published in that row.
    let (quarters, gruppe, rows) = (
        text(&table, "kvartal"),
        text(&table, "gruppe"),
        text(&table, "kommunekode"),
    );
    let both = |keep: &[bool]| -> Vec<bool> {
        (0..table.num_rows())
            .map(|i| {
                keep[i]
                    && (0..table.num_rows())
                        .filter(|&j| {
                            keep[j]
                                && quarters.value(j) == quarters.value(i)
                                && rows.value(j) == rows.value(i)
                                && gruppe.value(j) != TOTAL
                        })
                        .count()
                        == 2
            })
            .collect()
    };
    let keep = at_level(&table, "land", "kvartal", &care_quarters(), &care_needed);
    let in_country = both(&keep);
    let care_published = care_ratio(&table, &|i| in_country[i]);
    let clusters = at_level(&table, "klynge", "kvartal", &care_quarters(), &care_needed);
    let in_clusters = both(&clusters);
    let care_clusters = care_ratio(&table, &|i| in_clusters[i]);
    // Standardised to the country's home-care recipients: their row is its crude rate.
    let recipients = |i: usize| keep[i] && gruppe.value(i) == "hjemmepleje";
    assert!(
        standard_is_the_country(
            &table,
            &recipients,
            &[
                "akutte_indlaeggelser_pr_1000",
                "genindlaeggelser_30d_pr_100_udskrivninger"
            ]
        ) > 0,
        "no standardised home-care rate published in the recipients' national rows"
    );
    Found {
        rehab_raw,
        rehab_published,
        rehab_clusters,
        care_raw,
        care_published,
        care_clusters,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marts_recover_planted_effects_and_find_none_where_none_was_planted() {
    let planted = Effects::PLANTED;
    let rehab = 1.0 - planted.rehab_acute_reduction;
    let care = planted.home_care_readmission_ratio;

    let dir = tempfile::tempdir().unwrap();
    // The two worlds are independent: built side by side, one per core (generating
    // one is most of its time, and single-threaded).
    let build = |name: &str, effects: Effects| {
        let at = dir.path().join(name);
        tokio::spawn(async move { found(&world(&at, effects).await).await })
    };
    let (with, without) = (build("planted", planted), build("none", Effects::NONE));
    let (with, without) = (with.await.unwrap(), without.await.unwrap());
    for (name, f) in [("planted", &with), ("none", &without)] {
        eprintln!(
            "{name}: rehab after/before raw {:?}, country {:?}, clusters {:?}; home care raw {:?}, \
             country {:?}, clusters {:?}",
            f.rehab_raw,
            f.rehab_published,
            f.rehab_clusters,
            f.care_raw,
            f.care_published,
            f.care_clusters
        );
    }
    let rehab_views = |f: &Found| {
        [
            ("raw", f.rehab_raw),
            ("country", f.rehab_published),
            ("clusters", f.rehab_clusters),
        ]
    };
    let care_views = |f: &Found| {
        [
            ("raw", f.care_raw),
            ("country", f.care_published),
            ("clusters", f.care_clusters),
        ]
    };
    // Recovered where planted, on the raw cells and on what a reader sees.
    for (what, r) in rehab_views(&with) {
        assert!(r.recovers(rehab), "rehab {what}: {r:?}, planted {rehab}");
    }
    for (what, r) in care_views(&with) {
        assert!(r.recovers(care), "home care {what}: {r:?}, planted {care}");
    }
    // Nothing where nothing was planted, so the checks above fail when the effect is
    // removed from the generator: the population without it does not "recover" it.
    for (what, r) in rehab_views(&without) {
        assert!(
            r.recovers(1.0),
            "rehab {what} shows an effect none was planted: {r:?}"
        );
        assert!(!r.recovers(rehab), "rehab {what}: {r:?}");
    }
    for (what, r) in care_views(&without) {
        assert!(
            r.recovers(1.0),
            "home care {what} shows an effect none was planted: {r:?}"
        );
        assert!(!r.recovers(care), "home care {what}: {r:?}");
    }
}

#[test]
fn a_ratio_recovers_what_lies_within_three_standard_errors() {
    let r = Ratio::of(70.0, 1.0, 100.0, 1.0);
    assert!(r.recovers(0.7));
    assert!(!r.recovers(2.0));
}
