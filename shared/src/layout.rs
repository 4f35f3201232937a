//! Every key and path of every zone, in one place. Writers, readers, the DuckDB and
//! Glue catalogs and the stack's IAM statements take their spelling from here, so a
//! zone cannot be renamed in one of them only.
//!
//! Landing, receipts and quarantine are stores of their own (buckets in AWS), keyed
//! by source first so a supplier's role can be limited to its prefix. Everything else
//! is a prefix of the lake store: `curated/`, `quality/`, `presentation/`,
//! `extracts/`, `projects/`, `reports/`, `reference/`, and the platform's own `_keys/` and
//! `_purges/` (Hive-style readers skip folders starting with `_`).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::ledger::Delivery;

// ------------------------------------------------------------------ suppliers

/// One source of the landing zone. The stack gives each its own role, parameters
/// and silence alarm (`naerdata infra template` writes them from this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supplier {
    /// The first part of its landing keys: the contracts' `source`.
    pub source: &'static str,
    /// The stem of its CloudFormation names (`<stem>SupplierRole`, `<stem>AccountId`).
    pub stem: &'static str,
    /// Who delivers, as the stack's parameter descriptions say it.
    pub who: &'static str,
    /// The source as its silence alarm names it.
    pub alarm_name: &'static str,
}

/// Every supplier, in the stack's order.
pub const SUPPLIERS: &[Supplier] = &[
    Supplier {
        source: "almenpraksis",
        stem: "Almenpraksis",
        who: "the almenpraksis supplier (GP systems)",
        alarm_name: "almenpraksis",
    },
    Supplier {
        source: "speciallaege",
        stem: "Speciallaege",
        who: "the speciallaege supplier",
        alarm_name: "speciallaege",
    },
    Supplier {
        source: "kommune",
        stem: "Kommune",
        who: "the KL Gateway (kommune)",
        alarm_name: "the KL Gateway (kommune)",
    },
    Supplier {
        source: "lpr",
        stem: "Lpr",
        who: "LPR",
        alarm_name: "LPR",
    },
    Supplier {
        source: "cpr",
        stem: "Cpr",
        who: "the CPR extract (population register)",
        alarm_name: "the CPR extract",
    },
];

/// The prefix of a source in the landing and receipts stores: what its role may use.
pub fn source_prefix(source: &str) -> String {
    format!("{source}/")
}

// ------------------------------------------------------------------ landing

/// A landing key as suppliers are told to write it.
pub const LANDING_SHAPE: &str = "<source>/<dataset>/<yyyy-mm-dd>/<file>";
/// The delivery day in a landing key.
pub const LANDING_DAY_FORMAT: &str = "%Y-%m-%d";

/// `<source>/<dataset>/<yyyy-mm-dd>/<file>`.
pub fn landing_key(source: &str, dataset: &str, day: NaiveDate, file: &str) -> String {
    format!(
        "{}{dataset}/{}/{file}",
        source_prefix(source),
        day.format(LANDING_DAY_FORMAT)
    )
}

// ------------------------------------------------------------------ receipts, quarantine

/// A delivery's receipt in the receipts store: `<source>/<dataset>/<delivery_id>.json`.
pub fn receipt_key(source: &str, dataset: &str, delivery_id: &str) -> String {
    format!("{}{dataset}/{delivery_id}.json", source_prefix(source))
}

/// A delivery's quarantine record in the quarantine store:
/// `<source>/<dataset>/<delivery_id>.ndjson`.
pub fn quarantine_key(d: &Delivery) -> String {
    format!(
        "{}{}/{}.ndjson",
        source_prefix(&d.source),
        d.dataset_name(),
        d.delivery_id
    )
}

// ------------------------------------------------------------------ lake: curated

pub const CURATED_PREFIX: &str = "curated/";
/// The curated zone as a folder of the local lake (the prefix without its slash).
pub const CURATED_ZONE: &str = "curated";

/// The Delta table of a curated table: `curated/<table>/`.
pub fn curated_prefix(table: &str) -> String {
    format!("{CURATED_PREFIX}{table}/")
}

/// A data file of a curated table, deterministic per delivery so a retry overwrites
/// an uncommitted file rather than adding one.
pub fn curated_object_key(
    table: &str,
    year: i32,
    month: u32,
    delivery_id: &str,
    n: usize,
) -> String {
    format!(
        "{}year={year:04}/month={month:02}/{delivery_id}-{n}.parquet",
        curated_prefix(table)
    )
}

/// Marks a table whose migration to Delta Lake has not finished.
pub const MIGRATION_MARKER: &str = "_naerdata_migrating";

/// The migration marker of the table under `table_prefix`.
pub fn migration_marker_key(table_prefix: &str) -> String {
    format!("{table_prefix}{MIGRATION_MARKER}")
}

// ------------------------------------------------------------------ lake: quality

pub const QUALITY_PREFIX: &str = "quality/";
/// The `quality_metrics` Delta table.
pub const METRICS_PREFIX: &str = "quality/metrics/";
/// The monitor's `quality_reception` files.
pub const RECEPTION_PREFIX: &str = "quality/reception/";
/// The monitor's `quality_declaration` files.
pub const DECLARATION_PREFIX: &str = "quality/declaration/";

/// A delivery's metrics file, partitioned by the delivery date's month.
pub fn metrics_key(delivery_date: NaiveDate, delivery_id: &str) -> String {
    format!(
        "{METRICS_PREFIX}year={:04}/month={:02}/{delivery_id}.parquet",
        delivery_date.year(),
        delivery_date.month()
    )
}

/// The reception calendar as of a monitor run.
pub fn reception_key(as_of: NaiveDate) -> String {
    format!("{RECEPTION_PREFIX}as_of={as_of}/reception.parquet")
}

/// The quality declaration of the month `month` falls in.
pub fn declaration_key(month: NaiveDate) -> String {
    format!(
        "{DECLARATION_PREFIX}month={}/declaration.parquet",
        month.format("%Y-%m")
    )
}

// ------------------------------------------------------------------ lake: presentation

pub const PRESENTATION_PREFIX: &str = "presentation/";
/// The presentation zone as a folder of the local lake.
pub const PRESENTATION_ZONE: &str = "presentation";
/// The object of a presentation table, in its folder.
pub const PRESENTATION_FILE: &str = "data.parquet";
/// What the newest publication read (reference date, Delta versions).
pub const PUBLICATION_KEY: &str = "presentation/publication.json";

/// The folder of a presentation table: `presentation/<kind>/<name>/`.
pub fn presentation_prefix(kind: &str, name: &str) -> String {
    format!("{PRESENTATION_PREFIX}{kind}/{name}/")
}

/// The object of a presentation table: `presentation/<kind>/<name>/data.parquet`.
pub fn presentation_key(kind: &str, name: &str) -> String {
    format!("{}{PRESENTATION_FILE}", presentation_prefix(kind, name))
}

/// (kind, name) of a presentation table's object key; `None` for any other key.
pub fn presentation_table_of(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.strip_prefix(PRESENTATION_PREFIX)?.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(kind), Some(name), Some(PRESENTATION_FILE), None) => Some((kind, name)),
        _ => None,
    }
}

/// The partition column of a mart's publications (a date, `YYYY-MM-DD`).
pub const PUBLICATION_PARTITION: &str = "publication";

/// A mart's publication as of `day`:
/// `presentation/marts/<mart>/publication=<day>/data.parquet`. Each publication is the
/// whole table as published that day (every period and revision so far), kept beside
/// the earlier ones, never in their place.
pub fn mart_publication_key(mart: &str, day: NaiveDate) -> String {
    format!(
        "{}{PUBLICATION_PARTITION}={day}/{PRESENTATION_FILE}",
        presentation_prefix("marts", mart)
    )
}

/// The day of a mart publication's key (see [`mart_publication_key`]).
pub fn mart_publication_of(mart: &str, key: &str) -> Option<NaiveDate> {
    key.strip_prefix(&presentation_prefix("marts", mart))?
        .strip_prefix(PUBLICATION_PARTITION)?
        .strip_prefix('=')?
        .strip_suffix(&format!("/{PRESENTATION_FILE}"))?
        .parse()
        .ok()
}

/// Publish's own bookkeeping for the current tables (no catalog declares it).
pub const PUBLISH_STATE_PREFIX: &str = "presentation/_state/";

/// The withdrawn record keys of a current table as of its Delta `version`:
/// `presentation/_state/current/<table>/withdrawn-<version>.parquet`. Keyed by the
/// version so a publication that stopped between the table's commit and this file is
/// seen as such (the next one rebuilds).
pub fn current_withdrawn_key(table: &str, version: u64) -> String {
    format!("{PUBLISH_STATE_PREFIX}current/{table}/withdrawn-{version}.parquet")
}

/// The folder of [`current_withdrawn_key`]'s files of one table.
pub fn current_withdrawn_prefix(table: &str) -> String {
    format!("{PUBLISH_STATE_PREFIX}current/{table}/")
}

/// The disclosure report beside a mart's register.
pub fn mart_disclosure_key(mart: &str) -> String {
    format!("{}_disclosure.json", presentation_prefix("marts", mart))
}

/// Where a mart's register is kept aside when the mart changed shape on `day`.
pub fn mart_superseded_key(mart: &str, day: NaiveDate) -> String {
    format!(
        "{}_superseded-{day}.parquet",
        presentation_prefix("marts", mart)
    )
}

// ------------------------------------------------------------------ lake: extracts, projects

pub const EXTRACTS_PREFIX: &str = "extracts/";
/// Approved project specs (AWS: in the lake bucket).
pub const PROJECTS_PREFIX: &str = "projects/";

/// The folder of a project's research extract.
pub fn extract_prefix(project: &str) -> String {
    format!("{EXTRACTS_PREFIX}{project}/")
}

/// A project's approved spec.
pub fn project_spec_key(project: &str) -> String {
    format!("{PROJECTS_PREFIX}{project}.yaml")
}

// ------------------------------------------------------------------ lake: reports, catalog, platform

/// Reference data operators load at run time (`naerdata reference load`): per kind,
/// immutable versions and a pointer to the current one.
pub const REFERENCE_PREFIX: &str = "reference/";

/// The pointer to a reference kind's current version.
pub fn reference_current_key(kind: &str) -> String {
    format!("{REFERENCE_PREFIX}{kind}/current.json")
}

/// One version of a reference kind, never overwritten.
pub fn reference_version_key(kind: &str, version: &str) -> String {
    format!("{REFERENCE_PREFIX}{kind}/{version}.csv")
}

pub const REPORTS_PREFIX: &str = "reports/";
/// The operator page the monitor publishes.
pub const OPERATOR_PAGE_KEY: &str = "reports/operator/index.html";
/// What each municipality may read, one prefix per municipality (`municipal`): its
/// page and its indicators table. Its analysts' role reads only its own
/// (`kommuner/${aws:PrincipalTag/kommunekode}/`).
pub const KOMMUNER_PREFIX: &str = "kommuner/";
pub fn kommune_prefix(kommunekode: &str) -> String {
    format!("{KOMMUNER_PREFIX}{kommunekode}/")
}
/// The municipality's own page.
pub fn kommune_page_key(kommunekode: &str) -> String {
    format!("{}index.html", kommune_prefix(kommunekode))
}
/// The municipality's indicators beside its cluster, region and country, long format.
pub fn kommune_table_key(kommunekode: &str) -> String {
    format!("{}indikatorer.parquet", kommune_prefix(kommunekode))
}
/// The DuckDB catalog (local).
pub const CATALOG_KEY: &str = "catalog.sql";
pub const KEYS_PREFIX: &str = "_keys/";
/// The lake key's fingerprint record.
pub const LAKE_KEY_RECORD: &str = "_keys/lake-key.json";
/// Purge records: what was purged and why.
pub const PURGES_PREFIX: &str = "_purges/";

/// A purge record, named by when it ran and what kind of purge it was.
pub fn purge_record_key(at: DateTime<Utc>, kind: &str) -> String {
    format!(
        "{PURGES_PREFIX}{}-{kind}.json",
        at.format("%Y%m%dT%H%M%S%.6fZ")
    )
}

// ------------------------------------------------------------------ the stack's buckets

/// The buckets' logical ids in infra/template.yaml.
pub const LANDING_BUCKET: &str = "LandingBucket";
pub const LAKE_BUCKET: &str = "LakeBucket";
pub const RECEIPTS_BUCKET: &str = "ReceiptsBucket";
pub const QUARANTINE_BUCKET: &str = "QuarantineBucket";
pub const ATHENA_RESULTS_BUCKET: &str = "AthenaResultsBucket";
pub const TRAIL_BUCKET: &str = "TrailBucket";
pub const ACCESS_LOGS_BUCKET: &str = "AccessLogsBucket";

/// In [`iam_prefixes`]: a role may name every object of the bucket (`<arn>/*`).
pub const WHOLE_BUCKET: &str = "*";

/// The lake prefixes the functions' roles are granted. `_purges/` and `catalog.sql`
/// are not among them: only an operator writes those.
pub const LAKE_IAM_PREFIXES: &[&str] = &[
    CURATED_PREFIX,
    METRICS_PREFIX,
    RECEPTION_PREFIX,
    DECLARATION_PREFIX,
    PRESENTATION_PREFIX,
    EXTRACTS_PREFIX,
    PROJECTS_PREFIX,
    REPORTS_PREFIX,
    KOMMUNER_PREFIX,
    REFERENCE_PREFIX,
    KEYS_PREFIX,
];

/// Where the publication's Athena workgroup writes query results (its bucket's prefix).
pub const ATHENA_PUBLISH_RESULTS_PREFIX: &str = "publish/";

/// Per bucket (logical id), the object paths the stack's IAM statements may name:
/// [`WHOLE_BUCKET`] or a prefix. The lake is never granted whole.
pub fn iam_prefixes() -> Vec<(&'static str, Vec<String>)> {
    let whole_and_sources = || {
        std::iter::once(WHOLE_BUCKET.to_string())
            .chain(SUPPLIERS.iter().map(|s| source_prefix(s.source)))
            .collect::<Vec<_>>()
    };
    vec![
        (LANDING_BUCKET, whole_and_sources()),
        (RECEIPTS_BUCKET, whole_and_sources()),
        (QUARANTINE_BUCKET, vec![WHOLE_BUCKET.to_string()]),
        (
            LAKE_BUCKET,
            LAKE_IAM_PREFIXES.iter().map(|p| p.to_string()).collect(),
        ),
        // The publication's workgroup writes its results under publish/ (the publish
        // role's only grant there).
        (
            ATHENA_RESULTS_BUCKET,
            vec![
                WHOLE_BUCKET.to_string(),
                ATHENA_PUBLISH_RESULTS_PREFIX.to_string(),
            ],
        ),
        // CloudTrail writes its logs under AWSLogs/<account>/.
        (TRAIL_BUCKET, vec!["AWSLogs/".to_string()]),
        (ACCESS_LOGS_BUCKET, vec![WHOLE_BUCKET.to_string()]),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::ledger::{DeliveryState, Outcome};

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn store_keys_start_with_the_source() {
        assert_eq!(
            landing_key("almenpraksis", "diagnose", day(2026, 3, 1), "ap.csv"),
            "almenpraksis/diagnose/2026-03-01/ap.csv"
        );
        assert_eq!(receipt_key("lpr", "kontakt", "d1"), "lpr/kontakt/d1.json");
        assert_eq!(source_prefix("kommune"), "kommune/");
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        let d = Delivery {
            delivery_id: "d1".into(),
            dataset: "almenpraksis.diagnose".into(),
            source: "almenpraksis".into(),
            object_key: "almenpraksis/diagnose/2026-03-01/ap.csv".into(),
            object_version: "v1".into(),
            file_name: "ap.csv".into(),
            delivery_date: day(2026, 3, 1),
            sha256: "00".into(),
            size: 1,
            state: DeliveryState::Received,
            received_at: at,
            updated_at: at,
            duplicate_of: None,
            attempts: 0,
            outcome: Outcome::default(),
        };
        assert_eq!(quarantine_key(&d), "almenpraksis/diagnose/d1.ndjson");
    }

    #[test]
    fn lake_keys() {
        assert_eq!(curated_prefix("lpr_kontakt"), "curated/lpr_kontakt/");
        assert_eq!(
            curated_object_key("lpr_kontakt", 2026, 3, "d1", 0),
            "curated/lpr_kontakt/year=2026/month=03/d1-0.parquet"
        );
        assert_eq!(
            migration_marker_key("quality/metrics/"),
            "quality/metrics/_naerdata_migrating"
        );
        assert_eq!(
            metrics_key(day(2026, 3, 15), "d1"),
            "quality/metrics/year=2026/month=03/d1.parquet"
        );
        assert_eq!(
            reception_key(day(2026, 6, 8)),
            "quality/reception/as_of=2026-06-08/reception.parquet"
        );
        assert_eq!(
            declaration_key(day(2026, 5, 31)),
            "quality/declaration/month=2026-05/declaration.parquet"
        );
        assert_eq!(
            presentation_key("marts", "m"),
            "presentation/marts/m/data.parquet"
        );
        assert_eq!(
            presentation_prefix("current", "c"),
            "presentation/current/c/"
        );
        assert_eq!(PUBLICATION_KEY, "presentation/publication.json");
        assert_eq!(
            mart_disclosure_key("m"),
            "presentation/marts/m/_disclosure.json"
        );
        assert_eq!(
            mart_publication_key("m", day(2027, 4, 15)),
            "presentation/marts/m/publication=2027-04-15/data.parquet"
        );
        assert_eq!(
            mart_publication_of("m", &mart_publication_key("m", day(2027, 4, 15))),
            Some(day(2027, 4, 15))
        );
        assert_eq!(
            mart_publication_of("m", "presentation/marts/m/data.parquet"),
            None
        );
        assert_eq!(
            mart_publication_of(
                "m",
                "presentation/marts/mm/publication=2027-04-15/data.parquet"
            ),
            None
        );
        assert_eq!(
            mart_superseded_key("m", day(2026, 4, 1)),
            "presentation/marts/m/_superseded-2026-04-01.parquet"
        );
        assert_eq!(extract_prefix("P-1"), "extracts/P-1/");
        assert_eq!(project_spec_key("P-1"), "projects/P-1.yaml");
        assert_eq!(OPERATOR_PAGE_KEY, "reports/operator/index.html");
        assert_eq!(CATALOG_KEY, "catalog.sql");
        assert_eq!(LAKE_KEY_RECORD, "_keys/lake-key.json");
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        assert_eq!(
            purge_record_key(at, "delivery"),
            "_purges/20260302T100000.000000Z-delivery.json"
        );
    }

    #[test]
    fn presentation_objects_are_recognised() {
        assert_eq!(
            presentation_table_of("presentation/dim/dim_geografi/data.parquet"),
            Some(("dim", "dim_geografi"))
        );
        assert_eq!(
            presentation_table_of("presentation/marts/m/_disclosure.json"),
            None
        );
        assert_eq!(presentation_table_of("presentation/publication.json"), None);
        assert_eq!(
            presentation_table_of("presentation/a/b/c/data.parquet"),
            None
        );
        assert_eq!(presentation_table_of("curated/a/b/data.parquet"), None);
    }

    #[test]
    fn every_prefix_the_keys_use_is_declared_once() {
        // Each zone's keys start with its prefix, and the lake's IAM prefixes are distinct
        // and never nest (a nested grant would widen the other).
        assert!(curated_prefix("t").starts_with(CURATED_PREFIX));
        assert_eq!(format!("{CURATED_ZONE}/"), CURATED_PREFIX);
        assert_eq!(format!("{PRESENTATION_ZONE}/"), PRESENTATION_PREFIX);
        assert!(metrics_key(day(2026, 1, 1), "d").starts_with(METRICS_PREFIX));
        assert!(METRICS_PREFIX.starts_with(QUALITY_PREFIX));
        assert!(reception_key(day(2026, 1, 1)).starts_with(RECEPTION_PREFIX));
        assert!(declaration_key(day(2026, 1, 1)).starts_with(DECLARATION_PREFIX));
        assert!(PUBLICATION_KEY.starts_with(PRESENTATION_PREFIX));
        assert!(OPERATOR_PAGE_KEY.starts_with(REPORTS_PREFIX));
        assert!(kommune_page_key("101").starts_with(&kommune_prefix("101")));
        assert!(kommune_table_key("101").starts_with(KOMMUNER_PREFIX));
        assert!(LAKE_KEY_RECORD.starts_with(KEYS_PREFIX));
        for (i, a) in LAKE_IAM_PREFIXES.iter().enumerate() {
            for b in &LAKE_IAM_PREFIXES[i + 1..] {
                assert!(!(a.starts_with(b) || b.starts_with(a)), "{a} and {b}");
            }
        }
        let lake = iam_prefixes()
            .into_iter()
            .find(|(b, _)| *b == LAKE_BUCKET)
            .unwrap()
            .1;
        assert!(!lake.iter().any(|p| p == WHOLE_BUCKET));
    }
}
