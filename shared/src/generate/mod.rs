//! Synthetic deliveries for every dataset, for demos, tests and benchmarks.
//!
//! One population of synthetic persons appears across all sources, so linkage is
//! meaningful. CPR numbers are replacement-style (day + 60), which no real person
//! has. Output is laid out like the landing zone:
//! `DIR/<source>/<dataset>/<yyyy-mm-dd>/<source>-<dataset>-<yyyy-mm-dd>.csv`.
//! Everything is deterministic per seed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub mod careless;
pub mod gateway;
pub mod register;

fn write_text_file(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    std::fs::write(path, text)
}

/// The Sentinel (practising specialists) writes windows-1252, as the contracts say.
fn windows_1252(dataset: &str) -> bool {
    dataset.starts_with("speciallaege.")
}

/// A generated file's text, decoded as its dataset is encoded.
pub(crate) fn read_text(path: &Path, dataset: &str) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(if windows_1252(dataset) {
        encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Writes text encoded as the dataset is.
pub(crate) fn write_text(path: &Path, text: &str, dataset: &str) -> std::io::Result<()> {
    if windows_1252(dataset) {
        std::fs::write(path, encoding_rs::WINDOWS_1252.encode(text).0)
    } else {
        std::fs::write(path, text)
    }
}

// The municipalities come from the platform's reference data, as for every step.
pub use crate::reference::{KOMMUNER_CSV, Kommune, kommuner};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub out: PathBuf,
    pub persons: usize,
    pub seed: u64,
    pub days: u32,
    /// Share of rows with a defect (invalid code, impossible date, missing value...).
    pub defects: f64,
    /// The first delivery day.
    pub start: NaiveDate,
    /// Effects planted in the data, which the marts should find.
    pub effects: Effects,
    /// Settle the population in the first this many municipalities only (default: all
    /// 98): a small population spread over all of them makes every municipality's
    /// cells small, and a test of published numbers needs some that are not.
    pub kommuner: Option<usize>,
    /// Days of history before `start` that every supplier sends in its first delivery
    /// (the initial load a source makes when it joins), so quarters that ended before
    /// the first delivery day can be published with their follow-up complete.
    pub history_days: u32,
}

/// Known effects planted in the generated data, so a test can check that the marts
/// recover them (and show nothing when none is planted). Apart from these, a person's
/// risk of a hospital contact is constant over time and does not depend on municipal
/// care, so before equals after, and recipients equal non-recipients, in expectation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effects {
    /// A completed §140 rehabilitation course lowers the person's rate of acute
    /// admissions in the 90 days after it by this fraction (0.3: 30 % fewer).
    pub rehab_acute_reduction: f64,
    /// After an acute discharge, a home-care (§83) recipient's rate of acute admissions
    /// in the next 30 days is this multiple of what it would be without home care.
    pub home_care_readmission_ratio: f64,
}

impl Effects {
    pub const NONE: Effects = Effects {
        rehab_acute_reduction: 0.0,
        home_care_readmission_ratio: 1.0,
    };
    /// What the demo and `naerdata generate` plant.
    pub const PLANTED: Effects = Effects {
        rehab_acute_reduction: 0.3,
        home_care_readmission_ratio: 2.0,
    };
}

impl GenerateOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        GenerateOptions {
            out: out.into(),
            persons: 2_000,
            seed: 42,
            days: 7,
            defects: 0.01,
            start: NaiveDate::from_ymd_opt(2026, 10, 1).expect("a date"),
            effects: Effects::PLANTED,
            kommuner: None,
            history_days: 0,
        }
    }
}

/// What the history days produce, held back for the first delivery day.
#[derive(Default)]
struct Backlog {
    rows: HashMap<&'static str, Vec<Vec<String>>>,
    bundles: Vec<serde_json::Value>,
}

impl Backlog {
    /// A day's tables of one source: on a history day their rows are held back; on a
    /// delivery day each gets what was held before its own rows (in the order the days
    /// came), then its defects, drawn over the whole delivery, and is written.
    fn deliver(
        &mut self,
        history: bool,
        tables: &mut [(&'static str, &mut Table)],
        rng: &mut ChaCha8Rng,
        defects: f64,
        file: &dyn Fn(&str, &str) -> PathBuf,
        out: &mut Vec<Generated>,
    ) -> std::io::Result<()> {
        for (dataset, t) in tables.iter_mut() {
            if history {
                self.rows.entry(*dataset).or_default().append(&mut t.rows);
            } else if let Some(mut held) = self.rows.remove(*dataset) {
                held.append(&mut t.rows);
                t.rows = held;
            }
        }
        if history {
            return Ok(());
        }
        for (_, t) in tables.iter_mut() {
            t.apply_defects(rng, defects);
        }
        for (dataset, t) in tables.iter() {
            let (source, name) = dataset.split_once('.').expect("source.dataset");
            let path = file(source, name);
            out.push(Generated {
                dataset: dataset.to_string(),
                rows: t.write(&path, windows_1252(dataset))?,
                path,
            });
        }
        Ok(())
    }
}

/// The share of hospital contacts that are acute (ATA1).
const ACUTE_SHARE: f64 = 0.45;

/// Never more defective rows per file than this share, so a generated delivery is
/// accepted with warnings rather than rejected (the default threshold is 5 %).
const MAX_DEFECT_SHARE: f64 = 0.04;

#[derive(Debug, Clone)]
pub struct Person {
    pub cpr: String,
    pub birth: NaiveDate,
    pub female: bool,
    pub kommune: usize,
    pub clinic: usize,
    /// Chronic areas (index into AREAS).
    pub areas: Vec<usize>,
    /// The number the person had before being given a new one (see [`register`]);
    /// GP systems still report it.
    pub former_cpr: Option<String>,
}

impl Person {
    /// The number a GP system has on file: the old one after a change, as happens
    /// until the practice updates its records.
    pub fn gp_cpr(&self) -> &str {
        self.former_cpr.as_deref().unwrap_or(&self.cpr)
    }
}

/// (sygdomsomraade, ICPC-2, ICD-10 SKS code for the hospital side)
const AREAS: &[(&str, &str, &str)] = &[
    ("diabetes2", "T90", "DE119"),
    ("kol", "R95", "DJ441"),
    ("astma", "R96", "DJ459"),
    ("hjertesvigt", "K77", "DI500"),
    ("atrieflimren", "K78", "DI489"),
    ("hypertension", "K86", "DI109"),
    ("diabetes1", "T89", "DE109"),
];
/// Chance that a person has each area (roughly the prevalence among those GPs report).
const AREA_PREVALENCE: &[f64] = &[0.12, 0.08, 0.08, 0.03, 0.05, 0.18, 0.01];

const GP_SERVICES: &[(&str, u32)] = &[
    ("0101", 50),
    ("0201", 25),
    ("0120", 10),
    ("0105", 8),
    ("0125", 5),
    ("0127", 2),
];
const SPECIALTIES: &[(&str, &[&str])] = &[
    ("03", &["DL209", "DL400", "DC443"]),
    ("05", &["DN951", "DN832"]),
    ("08", &["DE119", "DI109", "DE039"]),
    ("10", &["DG439", "DG409"]),
    ("12", &["DH353", "DH251", "DH401"]),
    ("14", &["DJ342", "DH911"]),
    ("15", &["DF329", "DF411"]),
    ("17", &["DM059", "DM159"]),
];
const HOSPITAL_SPECIALTIES: &[&str] = &[
    "intern medicin",
    "kardiologi",
    "lungemedicin",
    "ortopædkirurgi",
    "geriatri",
    "akutmedicin",
];
const ACUTE_DIAGNOSES: &[&str] = &[
    "DJ441", "DI500", "DS720", "DJ189", "DN390", "DR069", "DI489", "DE119",
];

fn pick_weighted<'a>(rng: &mut ChaCha8Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|x| x.1).sum();
    let mut r = rng.random_range(0..total);
    for (v, w) in items {
        if r < *w {
            return v;
        }
        r -= w;
    }
    items[0].0
}

/// A synthetic CPR: day + 60, digit 7 consistent with the century table.
pub fn synthetic_cpr(rng: &mut ChaCha8Rng, birth: NaiveDate, female: bool) -> String {
    let yy = birth.year() % 100;
    let d7 = if birth.year() >= 2000 {
        4
    } else {
        rng.random_range(0..4)
    };
    let mid: u32 = rng.random_range(0..100);
    let mut last: u32 = rng.random_range(0..5) * 2;
    if !female {
        last += 1;
    }
    format!(
        "{:02}{:02}{:02}-{d7}{mid:02}{last}",
        birth.day() + 60,
        birth.month(),
        yy
    )
}

pub fn population(rng: &mut ChaCha8Rng, n: usize) -> Vec<Person> {
    population_in(rng, n, kommuner().len())
}

/// A population of `n` living in the first `kommuner` municipalities.
pub fn population_in(rng: &mut ChaCha8Rng, n: usize, kommuner: usize) -> Vec<Person> {
    let kommuner = kommuner.clamp(1, self::kommuner().len());
    let clinics = clinic_count(n);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let first = NaiveDate::from_ymd_opt(1925, 1, 1).expect("a date");
    while out.len() < n {
        let birth = first + Duration::days(rng.random_range(0..(95 * 365)));
        let female = rng.random_bool(0.5);
        let cpr = synthetic_cpr(rng, birth, female);
        if !seen.insert(cpr.clone()) {
            continue;
        }
        let age = 2026 - birth.year();
        let mut areas = Vec::new();
        for (i, p) in AREA_PREVALENCE.iter().enumerate() {
            // Chronic disease is mostly a matter of age.
            let p = if age > 60 {
                p * 2.0
            } else if age < 30 {
                p * 0.3
            } else {
                *p
            };
            if rng.random_bool(p.min(0.9)) {
                areas.push(i);
            }
        }
        let clinic = rng.random_range(0..clinics);
        // Patients mostly live where their clinic is.
        let kommune = if rng.random_bool(0.85) {
            clinic * 7 % kommuner
        } else {
            rng.random_range(0..kommuner)
        };
        out.push(Person {
            cpr,
            birth,
            female,
            kommune,
            clinic,
            areas,
            former_cpr: None,
        });
    }
    out
}

/// GP clinics for a population of `n`.
fn clinic_count(n: usize) -> usize {
    (n / 400).max(8)
}

/// The register of expected reporting units (`naerdata reference load units`) for
/// the GP clinics of a generated population, registered from a year before the first
/// delivery, plus one clinic that is registered but never delivers: what reception
/// monitoring must report missing.
pub fn unit_register(opts: &GenerateOptions) -> String {
    let clinics = clinic_count(opts.persons);
    let from = opts.start - Duration::days(365);
    let k = kommuner();
    let mut s = String::from("dataset,unit,name,kommunekode,valid_from,valid_to\n");
    for c in 0..=clinics {
        let name = if c == clinics {
            "Lægehuset der aldrig har leveret (syntetisk)".to_string()
        } else {
            format!("Lægepraksis {} (syntetisk)", c + 1)
        };
        for dataset in ["almenpraksis.diagnose", "almenpraksis.kontakt"] {
            s.push_str(&format!(
                "{dataset},{},{name},{},{from},\n",
                ydernummer(c),
                k[c * 7 % k.len()].code
            ));
        }
    }
    s
}

pub fn ydernummer(clinic: usize) -> String {
    format!("{:06}", 10_000 + clinic * 37)
}

fn specialist_ydernummer(i: usize) -> String {
    format!("{:06}", 500_000 + i * 11)
}

fn hospital_sor(i: usize) -> String {
    // Synthetic SOR-style unit codes (not real units).
    format!("{}", 990_000_000_000u64 + i as u64 * 1_013)
}

/// Rows of one CSV file, with a header; defects applied before writing.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Columns a defect may hit, with the kind of defect.
    defect_columns: Vec<(&'static str, Defect)>,
}

#[derive(Clone, Copy)]
enum Defect {
    Empty,
    ImpossibleDate,
    NotInCodeList,
    BadCpr,
}

impl Table {
    fn new(header: Vec<&'static str>, defect_columns: Vec<(&'static str, Defect)>) -> Self {
        Table {
            header,
            rows: Vec::new(),
            defect_columns,
        }
    }

    fn apply_defects(&mut self, rng: &mut ChaCha8Rng, rate: f64) {
        let cap = (self.rows.len() as f64 * MAX_DEFECT_SHARE).floor() as usize;
        let mut made = 0;
        for row in self.rows.iter_mut() {
            if made >= cap || !rng.random_bool(rate) {
                continue;
            }
            let (col, kind) = *self.defect_columns.choose(rng).expect("defect columns");
            let i = self
                .header
                .iter()
                .position(|h| *h == col)
                .expect("defect column exists");
            row[i] = match kind {
                Defect::Empty => String::new(),
                Defect::ImpossibleDate => format!(
                    "{}-02-30",
                    &row[i][..4.min(row[i].len())].parse::<i32>().unwrap_or(2026)
                ),
                Defect::NotInCodeList => "XX9".to_string(),
                Defect::BadCpr => row[i][..6.min(row[i].len())].to_string(),
            };
            made += 1;
        }
    }

    fn write(&self, path: &Path, windows_1252: bool) -> std::io::Result<u64> {
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        let mut w = BufWriter::new(File::create(path)?);
        let mut line = self.header.join(";");
        line.push('\n');
        for r in &self.rows {
            line.push_str(&r.join(";"));
            line.push('\n');
        }
        if windows_1252 {
            let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&line);
            w.write_all(&bytes)?;
        } else {
            w.write_all(line.as_bytes())?;
        }
        w.flush()?;
        Ok(self.rows.len() as u64)
    }
}

fn ts(day: NaiveDate, rng: &mut ChaCha8Rng) -> String {
    format!(
        "{}T{:02}:{:02}:{:02}+01:00",
        day,
        rng.random_range(8..17),
        rng.random_range(0..60),
        rng.random_range(0..60)
    )
}

/// One generated file.
#[derive(Debug, Clone)]
pub struct Generated {
    pub dataset: String,
    pub path: PathBuf,
    pub rows: u64,
}

impl Generated {
    /// The delivery day the file belongs to (`YYYY-MM-DD`, its folder's name).
    pub fn day(&self) -> String {
        self.path
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Writes every dataset's deliveries for `days` days. Returns the files written.
pub fn generate(opts: &GenerateOptions) -> std::io::Result<Vec<Generated>> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut people = population_in(
        &mut rng,
        opts.persons,
        opts.kommuner.unwrap_or(kommuner().len()),
    );
    // The register draws from a stream of its own, so the other sources' rows stay
    // what they were for a seed.
    let register = register::Register::new(&mut people, opts);
    let chronic: Vec<usize> = (0..people.len())
        .filter(|&i| !people[i].areas.is_empty())
        .collect();
    let mut out = Vec::new();
    // Diagnoses are registered spread over the days; some are corrected later.
    let mut diagnosis_registered: Vec<(usize, usize, String, NaiveDate)> = Vec::new();
    let mut next_id = 0u64;
    let mut id = |prefix: &str| {
        next_id += 1;
        format!("{prefix}-{next_id:09}")
    };
    let mut lpr_contact = 100_000_000u64;
    let kommuner = kommuner();
    let mut gw = gateway::Gateway::new(opts.seed, opts.defects);
    // The planted effects draw from a stream of their own.
    let mut fx = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x0EFF_EC75);
    // Each person's latest acute discharge (for the planted readmissions).
    let mut acute_discharged: HashMap<usize, NaiveDate> = HashMap::new();

    let mut backlog = Backlog::default();
    for d in -i64::from(opts.history_days)..i64::from(opts.days) {
        let day = opts.start + Duration::days(d);
        // A history day's rows go into the first delivery.
        let history = d < 0;
        // LPR contacts that ended today: §140 rehabilitation may follow.
        let mut discharges: Vec<(usize, NaiveDate, String)> = Vec::new();
        let file = |source: &str, dataset: &str| {
            opts.out
                .join(source)
                .join(dataset)
                .join(day.to_string())
                .join(format!("{source}-{dataset}-{day}.csv"))
        };

        // almenpraksis.diagnose
        let mut t = Table::new(
            vec![
                "record_id",
                "cpr",
                "ydernummer",
                "diagnosekode",
                "diagnosedato",
                "sygdomsomraade",
                "registreret",
            ],
            vec![
                ("diagnosekode", Defect::NotInCodeList),
                ("diagnosedato", Defect::ImpossibleDate),
                ("ydernummer", Defect::Empty),
                ("cpr", Defect::BadCpr),
            ],
        );
        for &pi in &chronic {
            let p = &people[pi];
            // Each chronic patient's diagnoses are registered once, spread over the
            // delivery days.
            if history || (pi as i64 + d).rem_euclid(i64::from(opts.days.max(1))) != 0 {
                continue;
            }
            for &a in &p.areas {
                let since = day - Duration::days(rng.random_range(0..3650));
                let since = since.max(p.birth + Duration::days(365 * 18)).min(day);
                let rid = id("APD");
                diagnosis_registered.push((pi, a, rid.clone(), since));
                t.rows.push(vec![
                    rid,
                    p.gp_cpr().to_string(),
                    ydernummer(p.clinic),
                    AREAS[a].1.into(),
                    since.to_string(),
                    AREAS[a].0.into(),
                    ts(day, &mut rng),
                ]);
            }
        }
        // Corrections: an earlier registration re-sent with a later version.
        if d > 0 && !diagnosis_registered.is_empty() {
            for _ in 0..(diagnosis_registered.len() / 50).max(1) {
                let (pi, a, rid, since) = diagnosis_registered
                    .choose(&mut rng)
                    .expect("non-empty")
                    .clone();
                let p = &people[pi];
                let corrected = (since + Duration::days(rng.random_range(0..30))).min(day);
                t.rows.push(vec![
                    rid,
                    p.gp_cpr().to_string(),
                    ydernummer(p.clinic),
                    AREAS[a].1.into(),
                    corrected.to_string(),
                    AREAS[a].0.into(),
                    ts(day, &mut rng),
                ]);
            }
        }
        backlog.deliver(
            history,
            &mut [("almenpraksis.diagnose", &mut t)],
            &mut rng,
            opts.defects,
            &file,
            &mut out,
        )?;

        // almenpraksis.kontakt and .laboratorie
        let mut k = Table::new(
            vec![
                "record_id",
                "cpr",
                "ydernummer",
                "kontaktdato",
                "ydelseskode",
                "registreret",
            ],
            vec![
                ("ydelseskode", Defect::NotInCodeList),
                ("kontaktdato", Defect::ImpossibleDate),
                ("cpr", Defect::BadCpr),
            ],
        );
        let mut l = Table::new(
            vec![
                "record_id",
                "cpr",
                "ydernummer",
                "proevedato",
                "npu_kode",
                "vaerdi",
                "enhed",
                "registreret",
            ],
            vec![
                ("npu_kode", Defect::NotInCodeList),
                ("vaerdi", Defect::Empty),
                ("proevedato", Defect::ImpossibleDate),
            ],
        );
        for &pi in &chronic {
            let p = &people[pi];
            if rng.random_bool(0.06) {
                let when = day - Duration::days(rng.random_range(0..2));
                k.rows.push(vec![
                    id("APK"),
                    p.gp_cpr().to_string(),
                    ydernummer(p.clinic),
                    when.to_string(),
                    pick_weighted(&mut rng, GP_SERVICES).into(),
                    ts(day, &mut rng),
                ]);
                if p.areas.contains(&0) && rng.random_bool(0.5) {
                    let v: f64 = 40.0 + rng.random_range(0.0..40.0);
                    l.rows.push(vec![
                        id("APL"),
                        p.gp_cpr().to_string(),
                        ydernummer(p.clinic),
                        when.to_string(),
                        "NPU27300".into(),
                        format!("{v:.1}").replace('.', ","),
                        "mmol/mol".into(),
                        ts(day, &mut rng),
                    ]);
                }
                if p.areas.contains(&3) && rng.random_bool(0.5) {
                    let v: f64 = rng.random_range(100.0..5000.0);
                    l.rows.push(vec![
                        id("APL"),
                        p.gp_cpr().to_string(),
                        ydernummer(p.clinic),
                        when.to_string(),
                        "NPU21531".into(),
                        format!("{v:.0}"),
                        "ng/L".into(),
                        ts(day, &mut rng),
                    ]);
                }
            }
        }
        backlog.deliver(
            history,
            &mut [
                ("almenpraksis.kontakt", &mut k),
                ("almenpraksis.laboratorie", &mut l),
            ],
            &mut rng,
            opts.defects,
            &file,
            &mut out,
        )?;

        // speciallaege.kontakt and .diagnose (windows-1252, as Sentinel exports)
        let mut sk = Table::new(
            vec![
                "kontakt_id",
                "cpr",
                "ydernummer",
                "speciale",
                "kontaktdato",
                "ydelseskode",
            ],
            vec![
                ("speciale", Defect::NotInCodeList),
                ("kontaktdato", Defect::ImpossibleDate),
            ],
        );
        let mut sd = Table::new(
            vec![
                "record_id",
                "kontakt_id",
                "cpr",
                "ydernummer",
                "diagnosekode",
                "diagnosetype",
                "diagnosedato",
            ],
            vec![
                ("diagnosetype", Defect::NotInCodeList),
                ("diagnosedato", Defect::ImpossibleDate),
            ],
        );
        for (pi, p) in people.iter().enumerate() {
            if !rng.random_bool(0.01) {
                continue;
            }
            let (spec, codes) =
                SPECIALTIES[(pi as i64 + d).rem_euclid(SPECIALTIES.len() as i64) as usize];
            let kid = id("SLK");
            let practice = specialist_ydernummer(pi % 40);
            sk.rows.push(vec![
                kid.clone(),
                p.cpr.clone(),
                practice.clone(),
                spec.into(),
                day.to_string(),
                "0101".into(),
            ]);
            sd.rows.push(vec![
                id("SLD"),
                kid.clone(),
                p.cpr.clone(),
                practice.clone(),
                (*codes.choose(&mut rng).expect("codes")).into(),
                "A".into(),
                day.to_string(),
            ]);
            if rng.random_bool(0.3) {
                sd.rows.push(vec![
                    id("SLD"),
                    kid,
                    p.cpr.clone(),
                    practice,
                    (*codes.choose(&mut rng).expect("codes")).into(),
                    "B".into(),
                    day.to_string(),
                ]);
            }
        }
        backlog.deliver(
            history,
            &mut [
                ("speciallaege.kontakt", &mut sk),
                ("speciallaege.diagnose", &mut sd),
            ],
            &mut rng,
            opts.defects,
            &file,
            &mut out,
        )?;

        // lpr.kontakt and .diagnose; chronic patients are admitted more often.
        let mut lk = Table::new(
            vec![
                "dw_ek_kontakt",
                "dw_ek_forloeb",
                "cpr",
                "sorenhed_ans",
                "dato_start",
                "tidspunkt_start",
                "dato_slut",
                "tidspunkt_slut",
                "aktionsdiagnose",
                "kontakttype",
                "prioritet",
                "hovedspeciale_ans",
            ],
            vec![
                ("prioritet", Defect::NotInCodeList),
                ("dato_start", Defect::ImpossibleDate),
            ],
        );
        let mut ld = Table::new(
            vec![
                "dw_ek_kontakt",
                "diagnosekode",
                "diagnosetype",
                "senere_afkraeftet",
                "cpr",
                "dato_start",
            ],
            vec![
                ("diagnosetype", Defect::NotInCodeList),
                ("dato_start", Defect::ImpossibleDate),
            ],
        );
        for (pi, p) in people.iter().enumerate() {
            let chance = if p.areas.is_empty() { 0.002 } else { 0.008 };
            let base = rng.random_bool(chance);
            // Planted: a home-care recipient's extra acute admissions in the 30 days after
            // an acute discharge, (ratio - 1) times the person's own rate of them.
            let ratio = opts.effects.home_care_readmission_ratio;
            let readmit = ratio > 1.0
                && acute_discharged.get(&pi).is_some_and(|e| {
                    day > *e && day <= *e + Duration::days(30) && gw.home_care_on(pi, *e)
                })
                && fx.random_bool((chance * ACUTE_SHARE * (ratio - 1.0)).min(1.0));
            for extra in [false, true] {
                if !(if extra { readmit } else { base }) {
                    continue;
                }
                let r = if extra { &mut fx } else { &mut rng };
                let acute = extra || r.random_bool(ACUTE_SHARE);
                let main = if !p.areas.is_empty() && r.random_bool(0.6) {
                    AREAS[*p.areas.choose(r).expect("areas")].2
                } else {
                    ACUTE_DIAGNOSES.choose(r).expect("codes")
                };
                let start = day - Duration::days(if extra { 0 } else { r.random_range(0..3) });
                let end = start + Duration::days(r.random_range(0..8));
                let mut clock =
                    || format!("{:02}:{:02}", r.random_range(0..24), r.random_range(0..60));
                let (start_time, end_time) = (clock(), clock());
                let specialty = *HOSPITAL_SPECIALTIES.choose(r).expect("specialties");
                let (secondary, disproved) = (r.random_bool(0.4), r.random_bool(0.05));
                // Planted: fewer acute admissions in the 90 days after a completed §140 course.
                let reduction = opts.effects.rehab_acute_reduction;
                if acute
                    && reduction > 0.0
                    && gw
                        .completed_140(pi)
                        .is_some_and(|c| start > c && start <= c + Duration::days(90))
                    && fx.random_bool(reduction.min(1.0))
                {
                    continue;
                }
                lpr_contact += 1;
                let end = if end > day {
                    String::new()
                } else {
                    discharges.push((pi, end, main.to_string()));
                    if acute {
                        let last = acute_discharged.entry(pi).or_insert(end);
                        *last = (*last).max(end);
                    }
                    end.to_string()
                };
                let key = lpr_contact.to_string();
                lk.rows.push(vec![
                    key.clone(),
                    (lpr_contact + 100_000_000).to_string(),
                    p.cpr.clone(),
                    hospital_sor(p.kommune % 20),
                    start.to_string(),
                    start_time,
                    end.clone(),
                    if end.is_empty() {
                        String::new()
                    } else {
                        end_time
                    },
                    main.into(),
                    "ALCA00".into(),
                    if acute { "ATA1" } else { "ATA3" }.into(),
                    specialty.into(),
                ]);
                ld.rows.push(vec![
                    key.clone(),
                    main.into(),
                    "A".into(),
                    "false".into(),
                    p.cpr.clone(),
                    start.to_string(),
                ]);
                if secondary {
                    let b = ACUTE_DIAGNOSES
                        .iter()
                        .find(|c| **c != main)
                        .expect("another code");
                    ld.rows.push(vec![
                        key,
                        (*b).into(),
                        "B".into(),
                        if disproved { "true" } else { "false" }.into(),
                        p.cpr.clone(),
                        start.to_string(),
                    ]);
                }
            }
        }
        backlog.deliver(
            history,
            &mut [("lpr.kontakt", &mut lk), ("lpr.diagnose", &mut ld)],
            &mut rng,
            opts.defects,
            &file,
            &mut out,
        )?;

        // cpr.befolkning and cpr.personnummerskift: the register's monthly extract (its
        // first holds the residence history, so history days need none).
        if !history && register::Register::extract_due(day, d as u32) {
            for (dataset, rows) in register.extract(&people, day) {
                let (source, name) = dataset.split_once('.').expect("source.dataset");
                let path = file(source, name);
                write_text_file(&path, &rows)?;
                out.push(Generated {
                    dataset: dataset.into(),
                    rows: rows.lines().count().saturating_sub(1) as u64,
                    path,
                });
            }
        }

        // kommune.gateway: the day's delivery reports.
        let mut bundles = gw.day(day, &people, kommuner, &discharges);
        if history {
            backlog.bundles.append(&mut bundles);
            continue;
        }
        if !backlog.bundles.is_empty() {
            backlog.bundles.append(&mut bundles);
            bundles = std::mem::take(&mut backlog.bundles);
        }
        let path = opts
            .out
            .join("kommune/gateway")
            .join(day.to_string())
            .join(format!("kommune-gateway-{day}.ndjson"));
        out.push(Generated {
            dataset: "kommune.gateway".into(),
            rows: gateway::write_ndjson(&path, &bundles)?,
            path,
        });
    }
    Ok(out)
}

/// One large `kommune.gateway` delivery for the benchmark: `bundles` citizens whose
/// care starts the same day.
pub fn bench_gateway_file(path: &Path, bundles: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let people: Vec<Person> = population(&mut rng, bundles)
        .into_iter()
        .map(|mut p| {
            // Old enough for home care.
            p.birth =
                NaiveDate::from_ymd_opt(1940, 1 + (p.birth.ordinal() % 12), 1).expect("a date");
            let female = p.female;
            p.cpr = synthetic_cpr(&mut rng, p.birth, female);
            p
        })
        .collect();
    let mut gw = gateway::Gateway::new(seed, 0.0);
    let day = NaiveDate::from_ymd_opt(2026, 10, 1).expect("a date");
    let b = gw.day_all_start(day, &people, kommuner());
    gateway::write_ndjson(path, &b).map(|_| ())
}

/// One large `almenpraksis.diagnose` delivery for the benchmark, streamed to disk.
pub fn bench_file(path: &Path, rows: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let people = population(&mut rng, 200_000);
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    writeln!(
        w,
        "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret"
    )?;
    let base = NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date");
    for i in 0..rows {
        let p = &people[rng.random_range(0..people.len())];
        let a = rng.random_range(0..AREAS.len());
        let day = base + Duration::days(rng.random_range(0..365));
        writeln!(
            w,
            "APB-{i:010};{};{};{};{day};{};{day}T{:02}:{:02}:00+01:00",
            p.cpr,
            ydernummer(p.clinic),
            AREAS[a].1,
            AREAS[a].0,
            rng.random_range(8..17),
            rng.random_range(0..60)
        )?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpr::{self, CprClass};

    #[test]
    fn synthetic_cprs_are_replacement_numbers_with_the_right_birth_date() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for p in population(&mut rng, 500) {
            let c = cpr::parse(&p.cpr).unwrap();
            assert_eq!(c.class, CprClass::Replacement);
            assert_eq!(c.birth_date, p.birth);
            assert_eq!(c.sex == cpr::Sex::K, p.female);
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut oa = GenerateOptions::new(a.path());
        oa.persons = 300;
        oa.days = 2;
        let mut ob = oa.clone();
        ob.out = b.path().to_path_buf();
        let ga = generate(&oa).unwrap();
        let gb = generate(&ob).unwrap();
        assert_eq!(
            ga.len(),
            18,
            "8 datasets x 2 days, the register's extract once"
        );
        for (x, y) in ga.iter().zip(&gb) {
            assert_eq!(
                std::fs::read(&x.path).unwrap(),
                std::fs::read(&y.path).unwrap()
            );
        }
    }

    /// The dates in column `col` of a generated CSV file.
    fn dates(path: &Path, dataset: &str, col: &str) -> Vec<NaiveDate> {
        let text = read_text(path, dataset).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(';').collect();
        let i = header.iter().position(|h| *h == col).unwrap();
        lines
            .filter_map(|l| l.split(';').nth(i).and_then(|v| v.parse().ok()))
            .collect()
    }

    #[test]
    fn history_days_arrive_in_the_first_delivery_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = GenerateOptions::new(dir.path());
        o.persons = 2_000;
        o.days = 2;
        o.history_days = 60;
        let files = generate(&o).unwrap();
        assert_eq!(
            files.len(),
            18,
            "no extra files: the history is in the first"
        );
        let first = o.start - Duration::days(60);
        for (dataset, col) in [
            ("lpr.kontakt", "dato_start"),
            ("almenpraksis.kontakt", "kontaktdato"),
            ("speciallaege.kontakt", "kontaktdato"),
        ] {
            let of = |day: NaiveDate| {
                let f = files
                    .iter()
                    .find(|f| {
                        f.dataset == dataset && f.path.to_string_lossy().contains(&day.to_string())
                    })
                    .unwrap();
                dates(&f.path, dataset, col)
            };
            let day0 = of(o.start);
            let before = day0.iter().filter(|d| **d < o.start).count();
            assert!(
                before > day0.len() / 2,
                "{dataset}: the first delivery carries the history ({before} of {})",
                day0.len()
            );
            assert!(day0.iter().all(|d| *d >= first - Duration::days(3)));
            let day1 = of(o.start + Duration::days(1));
            assert!(
                day1.iter().all(|d| *d >= o.start - Duration::days(3)),
                "{dataset}: later deliveries hold only their own days"
            );
        }
        // The municipalities' reports too: care that started in the history.
        let gw = files
            .iter()
            .find(|f| f.dataset == "kommune.gateway")
            .unwrap();
        let text = std::fs::read_to_string(&gw.path).unwrap();
        assert!(text.contains(&format!("\"{}", first + Duration::days(1))));

        // Without history, the first delivery holds only its own days.
        let plain = tempfile::tempdir().unwrap();
        let mut p = o.clone();
        p.out = plain.path().to_path_buf();
        p.history_days = 0;
        let without = generate(&p).unwrap();
        let lpr = |fs: &[Generated]| {
            let f = fs.iter().find(|f| f.dataset == "lpr.kontakt").unwrap();
            dates(&f.path, "lpr.kontakt", "dato_start")
        };
        assert!(
            lpr(&without)
                .iter()
                .all(|d| *d >= o.start - Duration::days(3))
        );
    }
}
