//! KL Gateway deliveries: FHIR R4 Bundles -> the municipal lake tables.
//!
//! A bundle (one delivery report per citizen per day) is the unit of acceptance, as a
//! row is in CSV: it is checked as a whole (one Patient with one CPR, a municipality
//! SOR code, `meta.lastUpdated` everywhere, FSIII codes, severity, periods, cancel
//! reasons, references that resolve inside the bundle), then flattened into one row
//! per resource, each checked again by its table's contract. If anything in a bundle
//! fails, none of its rows are written. Problems carry the bundle's line, its id and a
//! FHIRPath-like location, never the CPR.
//!
//! Bundle shape and code systems: docs/kl-gateway-input.md.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::sync::OnceLock;

use chrono::DateTime;
use serde_json::Value;

use crate::contract::{Contract, Registry};
use crate::lake::PartitionedWriter;
use crate::process::{ProblemSink, Report, RunError, RunOptions};
use crate::quality::collect::Collector;
use crate::read::{self, Row, StructuralError};
use crate::validate::{Problem, Severity, Validator, Verdict};

/// CPR identifier system.
pub const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";
/// SOR identifier system (the municipality as managing organisation).
pub const SOR_SYSTEM: &str = "urn:oid:1.2.208.176.1.1";
/// FSIII, as the first gateway guide named it and as the current guides do.
pub const FSIII_SYSTEMS: &[&str] = &[
    "urn:oid:1.2.208.176.2.21",
    "http://kl.dk/fhir/common/caresocial/CodeSystem/FSIII",
];
/// Locally defined level-3 interventions (current and older guides).
pub const LOCAL_SYSTEMS: &[&str] = &[
    "http://fhir.kl.dk/gateway/CodeSystem/LocallyDefinedInterventions",
    "http://gateway.kl.dk/1.0/CodeSystem/LocallyDefinedInterventions",
];
/// SKS diagnoses (dk-core SKS-D slice) and ICPC-2, for referral diagnoses.
pub const SKS_SYSTEM: &str = "urn:oid:1.2.208.176.2.4.12";
pub const ICPC2_SYSTEM: &str = "urn:oid:1.2.208.176.2.31";
/// The hospital discharge date a §140 referral follows ("anledningUdskrivningsdato").
pub const DISCHARGE_EXTENSION: &str =
    "http://fhir.kl.dk/rehab/StructureDefinition/PreconditionDate";
/// SNOMED CT code of the follow-up observation; other Observations are not stored.
pub const FOLLOW_UP_CODE: &str = "712744002";
/// ServiceRequest.code: the service, and so the legal basis, of a referral.
pub const REFERRAL_SERVICES: &[(&str, &str)] = &[
    ("a71921ea-fe83-441d-933b-cc21d0b3c8c3", "§119"),
    ("7fc66c15-0cb3-4c89-9e18-f3a01e6a6592", "§140"),
];
/// §140 referral categories (GGOP type).
pub const REFERRAL_CATEGORIES: &[(&str, &str)] = &[
    ("ffd81f78-352e-4589-a195-5350dd1df2a4", "almen"),
    ("8b962281-2ab6-4b10-9c91-4bac592d6d49", "basal"),
    ("b679c454-2da2-46dd-9425-0e52d4aa2bf3", "avanceret"),
    ("0c8e2bfc-1350-45d1-90da-c07e2645d073", "specialiseret"),
    ("83c89857-8fb8-4163-97b1-eb1a56345c29", "rehabilitering"),
];
/// Categories of §119/§140 pathway CarePlans (indsatsforløb), by legal basis.
pub const PATHWAY_CATEGORIES: &[(&str, &str)] = &[
    ("9791e55a-656f-47eb-8fd5-c4a06b0a4662", "§119"),
    ("5c160c02-e858-4c1f-925a-71ed64844749", "§119"),
    ("4863001e-14c7-4be8-a2da-e4f21a4b6ac4", "§140"),
    ("f15b2663-94d9-4d0c-a5de-d8bd8e1e4ebb", "§140"),
];

fn lookup(table: &[(&str, &'static str)], code: &str) -> Option<&'static str> {
    table.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}

/// Reference data compiled into the binary (see `reference/`).
pub const SOR_KOMMUNE_CSV: &str = include_str!("../../reference/sor-kommune.csv");
pub const FSIII_CSV: &str = include_str!("../../reference/fsiii.csv");
pub const CATALOGUE_CSV: &str = include_str!("../../reference/catalogue-119-140.csv");

/// What a code means for us.
#[derive(Debug, Clone)]
pub struct CodeInfo {
    /// FSIII group letter (`J`, `I`, `G`, `H`, `E`, `B`), or `C` for a §119/§140 catalogue entry.
    pub group: char,
    /// Legal basis, for interventions.
    pub paragraph: Option<String>,
    /// The old-style code (`J1.1`) when known, so both spellings land the same.
    pub code: String,
}

/// SOR -> municipality, and the FSIII and §119/§140 code lists (old codes and UUIDs).
pub struct GatewayReference {
    pub sor: HashMap<String, String>,
    pub codes: HashMap<String, CodeInfo>,
}

fn csv_rows(text: &str) -> impl Iterator<Item = HashMap<String, String>> + '_ {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .expect("reference csv header")
        .iter()
        .map(str::to_string)
        .collect();
    r.into_records().map(move |rec| {
        let rec = rec.expect("reference csv row");
        header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_string))
            .collect()
    })
}

impl GatewayReference {
    pub fn builtin() -> &'static GatewayReference {
        static R: OnceLock<GatewayReference> = OnceLock::new();
        R.get_or_init(|| {
            let sor = csv_rows(SOR_KOMMUNE_CSV)
                .map(|r| (r["sor_code"].clone(), format!("{:0>3}", r["kommunekode"])))
                .collect();
            let mut codes = HashMap::new();
            for r in csv_rows(FSIII_CSV) {
                let group = r["group"].chars().next().unwrap_or('?');
                let paragraph = Some(r["paragraph"].clone()).filter(|p| !p.is_empty());
                let code = if r["code"].is_empty() {
                    r["uuid"].clone()
                } else {
                    r["code"].clone()
                };
                let info = CodeInfo {
                    group,
                    paragraph,
                    code,
                };
                for key in [&r["code"], &r["uuid"]] {
                    if !key.is_empty() {
                        codes.insert(key.clone(), info.clone());
                    }
                }
            }
            for r in csv_rows(CATALOGUE_CSV) {
                codes.insert(
                    r["code"].clone(),
                    CodeInfo {
                        group: 'C',
                        paragraph: Some(r["paragraph"].clone()),
                        code: r["code"].clone(),
                    },
                );
            }
            GatewayReference { sor, codes }
        })
    }
}

// ---------------------------------------------------------------------------
// Small JSON helpers.

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// `(system, code)` of every coding of a CodeableConcept.
fn codings(cc: Option<&Value>) -> Vec<(&str, &str)> {
    cc.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                // A system may be absent (the latest care guide forbids it on
                // verificationStatus): such codings match by code alone.
                .filter_map(|c| {
                    let system = c.get("system").and_then(Value::as_str).unwrap_or("");
                    Some((system, c.get("code")?.as_str()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn first_code(cc: Option<&Value>) -> Option<&str> {
    codings(cc).first().map(|(_, c)| *c)
}

/// The date part of a FHIR date or dateTime, if it is a real date.
fn date_part(s: &str) -> Option<String> {
    let d = s.get(..10)?;
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
    Some(d.to_string())
}

fn id_of_reference(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

// ---------------------------------------------------------------------------
// One bundle.

/// A table row flattened from a resource: `(table contract id, (column, value)...)`.
pub struct FlatRow {
    pub table: &'static str,
    pub values: Vec<(&'static str, String)>,
}

struct Check<'a> {
    line: u64,
    problems: &'a mut Vec<Problem>,
    failed: bool,
}

impl Check<'_> {
    fn fail(&mut self, location: String, rule: &'static str, message: impl Into<String>) {
        self.failed = true;
        self.problems.push(Problem {
            line: self.line,
            column: Some(location),
            rule,
            severity: Severity::Error,
            // The line and the FHIR path locate the problem; ids are not quoted (a
            // careless supplier's id may be a CPR number).
            message: message.into(),
        });
    }
}

/// The FHIR path of the first CPR-shaped string or number outside a CPR identifier.
fn cpr_elsewhere(v: &Value, path: &mut String) -> Option<String> {
    let found = |s: &str| crate::cpr::detect::find(s, crate::cpr::detect::Shape::Any).is_some();
    match v {
        Value::String(s) => found(s).then(|| path.clone()),
        Value::Number(n) => found(&n.to_string()).then(|| path.clone()),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let hit = cpr_elsewhere(x, path);
            path.truncate(len);
            hit
        }),
        Value::Object(m) => {
            let cpr_identifier = m.get("system").and_then(Value::as_str) == Some(CPR_SYSTEM);
            m.iter()
                .filter(|(k, _)| !(cpr_identifier && k.as_str() == "value"))
                .find_map(|(k, x)| {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    let hit = cpr_elsewhere(x, path);
                    path.truncate(len);
                    hit
                })
        }
        _ => None,
    }
}

/// Checks one bundle and flattens it. Returns `None` (with problems) when rejected.
/// The CPR is returned separately so it can be put into each row in memory only.
pub fn flatten_bundle(
    line: u64,
    bundle: &Value,
    refs: &GatewayReference,
    problems: &mut Vec<Problem>,
) -> Option<(String, Vec<FlatRow>)> {
    let mut ck = Check {
        line,
        problems,
        failed: false,
    };
    if text(bundle, &["resourceType"]) != Some("Bundle")
        || text(bundle, &["type"]) != Some("collection")
    {
        ck.fail(
            "Bundle".into(),
            "bundle_type",
            "expected a Bundle of type collection",
        );
        return None;
    }
    if text(bundle, &["id"]).is_none() {
        ck.fail("Bundle.id".into(), "required", "the bundle has no id");
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        ck.fail(
            "Bundle.entry".into(),
            "required",
            "the bundle has no entries",
        );
        return None;
    }

    // What references may point at: fullUrl, and ResourceType/id (also as the
    // suffix of an absolute fullUrl).
    let mut by_ref: HashMap<String, &Value> = HashMap::new();
    for e in &entries {
        let Some(res) = e.get("resource") else {
            continue;
        };
        if let Some(u) = text(e, &["fullUrl"]) {
            by_ref.insert(u.to_string(), res);
        }
        if let (Some(t), Some(id)) = (text(res, &["resourceType"]), text(res, &["id"])) {
            by_ref.insert(format!("{t}/{id}"), res);
        }
    }

    // The citizen.
    let patients: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| text(e, &["resource", "resourceType"]) == Some("Patient"))
        .map(|(i, _)| i)
        .collect();
    if patients.len() != 1 {
        ck.fail(
            "Bundle.entry.resource.ofType(Patient)".into(),
            "patient_count",
            format!(
                "{} Patient resources; exactly one citizen per bundle is required",
                patients.len()
            ),
        );
        return None;
    }
    let pi = patients[0];
    let patient = &entries[pi]["resource"];
    let cprs: Vec<&str> = patient
        .get("identifier")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter(|i| text(i, &["system"]) == Some(CPR_SYSTEM))
                .filter_map(|i| text(i, &["value"]))
                .collect()
        })
        .unwrap_or_default();
    if cprs.len() != 1 {
        ck.fail(
            format!("Bundle.entry[{pi}].resource.identifier"),
            "cpr_count",
            format!(
                "the Patient has {} CPR identifiers ({CPR_SYSTEM}); exactly one is required",
                cprs.len()
            ),
        );
        return None;
    }
    let cpr = cprs[0].to_string();
    // The CPR belongs in the Patient's CPR identifier only: every other string or
    // number of the bundle, mapped to a column or not, is searched.
    if let Some(at) = cpr_elsewhere(bundle, &mut "Bundle".to_string()) {
        ck.fail(
            at,
            crate::validate::CPR_IN_WRONG_COLUMN,
            "a value has the shape of a CPR number; a CPR number belongs only in the Patient's CPR \
             identifier. The bundle is not stored",
        );
        return None;
    }
    let sor = text(patient, &["managingOrganization", "identifier", "value"]).filter(|_| {
        text(patient, &["managingOrganization", "identifier", "system"]) == Some(SOR_SYSTEM)
    });
    let kommune = match sor {
        None => {
            ck.fail(
                format!("Bundle.entry[{pi}].resource.managingOrganization.identifier"),
                "municipality",
                format!("the Patient has no managing organisation SOR code ({SOR_SYSTEM})"),
            );
            String::new()
        }
        Some(s) => match refs.sor.get(s) {
            Some(k) => k.clone(),
            None => {
                ck.fail(
                    format!("Bundle.entry[{pi}].resource.managingOrganization.identifier.value"),
                    "municipality",
                    format!(
                        "the SOR code ({}) is not a known municipality",
                        crate::validate::shape(s)
                    ),
                );
                String::new()
            }
        },
    };
    let sor = sor.unwrap_or("").to_string();

    let mut rows = Vec::new();
    let mut newest = String::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("Bundle.entry[{i}].resource");
        let Some(r) = e.get("resource") else {
            ck.fail(
                format!("Bundle.entry[{i}]"),
                "required",
                "an entry without a resource",
            );
            continue;
        };
        let kind = text(r, &["resourceType"]).unwrap_or("");
        let Some(id) = text(r, &["id"]) else {
            ck.fail(
                format!("{at}.id"),
                "required",
                format!("the {kind} has no id"),
            );
            continue;
        };
        let last_updated = match text(r, &["meta", "lastUpdated"]) {
            Some(t) if DateTime::parse_from_rfc3339(t).is_ok() => t.to_string(),
            Some(_) => {
                ck.fail(
                    format!("{at}.meta.lastUpdated"),
                    "last_updated",
                    "not an instant with offset",
                );
                continue;
            }
            None => {
                ck.fail(
                    format!("{at}.meta.lastUpdated"),
                    "last_updated",
                    format!("the {kind} has no meta.lastUpdated"),
                );
                continue;
            }
        };
        if last_updated > newest {
            newest.clone_from(&last_updated);
        }
        check_references(r, &at, &by_ref, &mut ck);
        let updated_day = last_updated[..10].to_string();
        let common = |mut v: Vec<(&'static str, String)>, eie: bool| {
            v.extend([
                ("resource_id", id.to_string()),
                ("kommunekode", kommune.clone()),
                ("last_updated", last_updated.clone()),
                ("entered_in_error", eie.to_string()),
            ]);
            v
        };
        let row = match kind {
            "Patient" => {
                let death = text(r, &["deceasedDateTime"]).and_then(date_part);
                let dead = death.is_some()
                    || get(r, &["deceasedBoolean"]).and_then(Value::as_bool) == Some(true);
                Some(FlatRow {
                    table: "kommune.borger",
                    values: common(
                        vec![
                            ("sor_kode", sor.clone()),
                            ("rapportdato", updated_day.clone()),
                            ("afdoed", dead.to_string()),
                            ("doedsdato", death.unwrap_or_default()),
                            (
                                "aktiv_journal",
                                get(r, &["active"])
                                    .and_then(Value::as_bool)
                                    .map(|b| b.to_string())
                                    .unwrap_or_default(),
                            ),
                        ],
                        false,
                    ),
                })
            }
            "Condition" => condition(r, &at, refs, &mut ck).flatten().map(|mut v| {
                let eie = first_code(r.get("verificationStatus")) == Some("entered-in-error");
                if v.iter().all(|(k, _)| *k != "startdato") {
                    v.push(("startdato", updated_day.clone()));
                }
                FlatRow {
                    table: "kommune.tilstand",
                    values: common(v, eie),
                }
            }),
            "CarePlan" | "Procedure" => intervention(r, kind, &at, refs, &mut ck).map(|v| {
                let eie = text(r, &["status"]) == Some("entered-in-error");
                FlatRow {
                    table: "kommune.indsats",
                    values: common(v, eie),
                }
            }),
            "Encounter" => {
                let start = text(r, &["period", "start"]).and_then(date_part);
                if start.is_none() {
                    ck.fail(
                        format!("{at}.period.start"),
                        "period_start",
                        "an encounter needs period.start",
                    );
                }
                start.map(|start| FlatRow {
                    table: "kommune.kontakt",
                    values: common(
                        vec![
                            (
                                "klasse",
                                text(r, &["class", "code"]).unwrap_or("").to_string(),
                            ),
                            (
                                "kontakttype",
                                r.get("type")
                                    .and_then(|t| t.get(0))
                                    .and_then(|t| first_code(Some(t)))
                                    .unwrap_or("")
                                    .to_string(),
                            ),
                            ("status", text(r, &["status"]).unwrap_or("").to_string()),
                            ("startdato", start),
                            (
                                "slutdato",
                                text(r, &["period", "end"])
                                    .and_then(date_part)
                                    .unwrap_or_default(),
                            ),
                        ],
                        text(r, &["status"]) == Some("entered-in-error"),
                    ),
                })
            }
            "ServiceRequest" => referral(r, &at, &by_ref, &mut ck).map(|v| FlatRow {
                table: "kommune.henvisning",
                values: common(v, text(r, &["status"]) == Some("entered-in-error")),
            }),
            "Observation" => follow_up(r, &at, refs, &mut ck).flatten().map(|v| FlatRow {
                table: "kommune.opfoelgning",
                values: common(v, text(r, &["status"]) == Some("entered-in-error")),
            }),
            // The delivery report itself, goals and other resources carry nothing we store.
            _ => None,
        };
        rows.extend(row);
    }
    if ck.failed {
        return None;
    }
    let reported = text(bundle, &["timestamp"])
        .filter(|t| DateTime::parse_from_rfc3339(t).is_ok())
        .map_or(newest, str::to_string);
    rows.push(FlatRow {
        table: "kommune.gateway",
        values: vec![
            ("bundle_id", text(bundle, &["id"]).unwrap_or("").to_string()),
            ("kommunekode", kommune),
            ("sor_kode", sor),
            (
                "rapportdato",
                reported[..10.min(reported.len())].to_string(),
            ),
            ("ressourcer", entries.len().to_string()),
            ("rapporteret", reported),
        ],
    });
    Some((cpr, rows))
}

/// Every `reference` anywhere in a resource must resolve inside the bundle.
fn check_references(v: &Value, at: &str, targets: &HashMap<String, &Value>, ck: &mut Check) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    if let Some(r) = x.as_str() {
                        let suffix = r.rsplitn(3, '/').take(2).collect::<Vec<_>>();
                        let short =
                            (suffix.len() == 2).then(|| format!("{}/{}", suffix[1], suffix[0]));
                        if !targets.contains_key(r)
                            && !short.is_some_and(|s| targets.contains_key(&s))
                        {
                            ck.fail(
                                format!("{at}.reference"),
                                "reference",
                                format!(
                                    "the reference ({}) does not resolve to an entry of the bundle",
                                    crate::validate::shape(r)
                                ),
                            );
                        }
                    }
                } else {
                    check_references(x, &format!("{at}.{k}"), targets, ck);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_references(x, &format!("{at}[{i}]"), targets, ck);
            }
        }
        _ => {}
    }
}

/// The FSIII (or catalogue) code of a CodeableConcept, checked against the lists.
fn fsiii<'r>(
    cc: Option<&Value>,
    at: &str,
    groups: &[char],
    refs: &'r GatewayReference,
    ck: &mut Check,
) -> Option<&'r CodeInfo> {
    let found = codings(cc)
        .into_iter()
        .find(|(s, _)| FSIII_SYSTEMS.contains(s));
    let Some((_, code)) = found else {
        ck.fail(
            at.to_string(),
            "code",
            format!("no FSIII coding ({})", FSIII_SYSTEMS[1]),
        );
        return None;
    };
    match refs.codes.get(code) {
        Some(info) if groups.contains(&info.group) => Some(info),
        Some(info) => {
            ck.fail(
                at.to_string(),
                "code",
                format!(
                    "FSIII code {code} is in group {}, expected one of {groups:?}",
                    info.group
                ),
            );
            None
        }
        None => {
            ck.fail(
                at.to_string(),
                "code",
                format!(
                    "the code ({}) is not an FSIII code in the code list",
                    crate::validate::shape(code)
                ),
            );
            None
        }
    }
}

/// A Condition: an FSIII care condition (a `kommune.tilstand` row), or the focus of
/// a referral (SKS/ICPC-2 coded: no row, its code is read through the referral).
fn condition(
    r: &Value,
    at: &str,
    refs: &GatewayReference,
    ck: &mut Check,
) -> Option<Option<Vec<(&'static str, String)>>> {
    if referral_diagnosis(r).is_some() {
        return Some(None);
    }
    let info = fsiii(
        r.get("code"),
        &format!("{at}.code"),
        &['J', 'I', 'C'],
        refs,
        ck,
    )?;
    let omraade = match (info.group, info.paragraph.as_deref()) {
        ('J', _) => "home_care",
        ('I', _) => "nursing",
        (_, Some("§140")) => "rehabilitation",
        _ => "prevention",
    };
    // Severity (B1-B5) is required on home-care conditions and forbidden elsewhere.
    let severity = match (r.get("severity"), info.group) {
        (None, 'J') => {
            ck.fail(
                format!("{at}.severity"),
                "severity",
                format!(
                    "a home-care condition ({}) needs a severity (B1-B5)",
                    info.code
                ),
            );
            return None;
        }
        (None, _) => String::new(),
        (Some(_), g) if g != 'J' => {
            ck.fail(
                format!("{at}.severity"),
                "severity",
                format!(
                    "a {omraade} condition ({}) must not carry a severity",
                    info.code
                ),
            );
            return None;
        }
        (Some(s), _) => fsiii(Some(s), &format!("{at}.severity"), &['B'], refs, ck)?
            .code
            .clone(),
    };
    let mut v = vec![
        ("fsiii_kode", info.code.clone()),
        ("omraade", omraade.to_string()),
        ("alvorlighed", severity),
        (
            "klinisk_status",
            first_code(r.get("clinicalStatus"))
                .unwrap_or("")
                .to_string(),
        ),
        (
            "verifikationsstatus",
            first_code(r.get("verificationStatus"))
                .unwrap_or("confirmed")
                .to_string(),
        ),
    ];
    // onset[x] is forbidden in the KL guides; recordedDate is the start.
    if let Some(d) = text(r, &["recordedDate"])
        .or_else(|| text(r, &["onsetDateTime"]))
        .and_then(date_part)
    {
        v.push(("startdato", d));
    }
    Some(Some(v))
}

/// The SKS or ICPC-2 code of a referral's focus condition (an SKS supplement after
/// `+` is dropped).
fn referral_diagnosis(r: &Value) -> Option<(String, &'static str)> {
    codings(r.get("code"))
        .into_iter()
        .find_map(|(s, c)| match s {
            SKS_SYSTEM => Some((c.split('+').next().unwrap_or(c).to_string(), "SKS")),
            ICPC2_SYSTEM => Some((c.to_string(), "ICPC-2")),
            _ => None,
        })
}

fn intervention(
    r: &Value,
    kind: &str,
    at: &str,
    refs: &GatewayReference,
    ck: &mut Check,
) -> Option<Vec<(&'static str, String)>> {
    let planned = kind == "CarePlan";
    let detail = get(r, &["activity"])
        .and_then(|a| a.get(0))
        .and_then(|a| a.get("detail"));
    // A §119/§140 pathway (indsatsforløb) has a category and no intervention code.
    let pathway =
        planned && detail.and_then(|d| d.get("code")).is_none() && r.get("category").is_some();
    let (code, lovgrundlag, local) = if pathway {
        let cat = r.get("category").and_then(|c| c.get(0));
        let Some((code, para)) = codings(cat)
            .into_iter()
            .find_map(|(_, c)| lookup(PATHWAY_CATEGORIES, c).map(|p| (c.to_string(), p)))
        else {
            ck.fail(
                format!("{at}.category"),
                "code",
                "a pathway CarePlan needs a §119/§140 pathway category",
            );
            return None;
        };
        (code, para.to_string(), String::new())
    } else {
        let (cc, cc_at) = if planned {
            (
                detail.and_then(|d| d.get("code")),
                format!("{at}.activity[0].detail.code"),
            )
        } else {
            (r.get("code"), format!("{at}.code"))
        };
        let info = fsiii(cc, &cc_at, &['G', 'H', 'C'], refs, ck)?;
        let local = codings(cc)
            .into_iter()
            .find(|(s, _)| LOCAL_SYSTEMS.contains(s))
            .map(|(_, c)| c.to_string())
            .unwrap_or_default();
        (
            info.code.clone(),
            info.paragraph.clone().unwrap_or_default(),
            local,
        )
    };
    let (start, end) = if planned {
        (text(r, &["period", "start"]), text(r, &["period", "end"]))
    } else {
        (
            text(r, &["performedDateTime"]).or_else(|| text(r, &["performedPeriod", "start"])),
            text(r, &["performedPeriod", "end"]),
        )
    };
    let Some(start) = start.and_then(date_part) else {
        let path = if planned {
            "period.start"
        } else {
            "performedDateTime"
        };
        ck.fail(
            format!("{at}.{path}"),
            "period_start",
            format!(
                "a {} intervention needs {path}",
                if planned { "planned" } else { "completed" }
            ),
        );
        return None;
    };
    let status = detail
        .and_then(|d| text(d, &["status"]))
        .or_else(|| text(r, &["status"]))
        .unwrap_or("")
        .to_string();
    let reason = detail
        .and_then(|d| d.get("statusReason"))
        .and_then(|c| first_code(Some(c)).or_else(|| text(c, &["text"])))
        .unwrap_or("")
        .to_string();
    // The §119/§140 guides require the cancellation reason on a cancelled or
    // stopped pathway; the care guide has no such field.
    if pathway && matches!(status.as_str(), "cancelled" | "stopped") && reason.is_empty() {
        ck.fail(
            format!("{at}.activity[0].detail.statusReason"),
            "cancel_reason",
            format!("a pathway with status {status} needs a cancellation reason (statusReason)"),
        );
        return None;
    }
    let condition = detail
        .and_then(|d| d.get("reasonReference"))
        .or_else(|| r.get("reasonReference"))
        .and_then(|a| a.get(0))
        .and_then(|x| text(x, &["reference"]))
        .map(|x| id_of_reference(x).to_string())
        .unwrap_or_default();
    let kind = match (planned, pathway) {
        (true, true) => "pathway",
        (true, false) => "planned",
        _ => "completed",
    };
    Some(vec![
        ("type", kind.to_string()),
        ("fsiii_kode", code),
        ("lokal_kode", local),
        ("lovgrundlag", lovgrundlag),
        ("startdato", start),
        ("slutdato", end.and_then(date_part).unwrap_or_default()),
        ("status", status),
        ("aarsag", reason),
        ("tilstand_id", condition),
    ])
}

fn referral(
    r: &Value,
    at: &str,
    by_ref: &HashMap<String, &Value>,
    ck: &mut Check,
) -> Option<Vec<(&'static str, String)>> {
    let Some(paragraph) = codings(r.get("code"))
        .into_iter()
        .find_map(|(_, c)| lookup(REFERRAL_SERVICES, c))
    else {
        ck.fail(
            format!("{at}.code"),
            "code",
            "a referral's code must be the §119 or §140 service",
        );
        return None;
    };
    let Some(authored) = text(r, &["authoredOn"]).and_then(date_part) else {
        ck.fail(
            format!("{at}.authoredOn"),
            "required",
            "a referral needs authoredOn",
        );
        return None;
    };
    // The referral diagnosis sits on the focus Condition the referral points at.
    let diag = r
        .get("reasonReference")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| text(x, &["reference"]))
        .filter_map(|x| {
            by_ref
                .get(x)
                .or_else(|| by_ref.get(&format!("Condition/{}", id_of_reference(x))))
        })
        .find_map(|c| referral_diagnosis(c));
    let discharge = r
        .get("extension")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| text(x, &["url"]) == Some(DISCHARGE_EXTENSION))
        })
        .and_then(|x| text(x, &["valueDate"]).or_else(|| text(x, &["valueDateTime"])))
        .and_then(date_part)
        .unwrap_or_default();
    let category = r
        .get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| codings(Some(c)))
        .find_map(|(_, c)| lookup(REFERRAL_CATEGORIES, c))
        .unwrap_or("")
        .to_string();
    Some(vec![
        ("lovgrundlag", paragraph.to_string()),
        ("kategori", category),
        (
            "henvisningsdiagnose",
            diag.as_ref().map(|d| d.0.clone()).unwrap_or_default(),
        ),
        (
            "diagnosesystem",
            diag.map(|d| d.1.to_string()).unwrap_or_default(),
        ),
        ("henvisningsdato", authored),
        ("udskrivningsdato", discharge),
        ("status", text(r, &["status"]).unwrap_or("").to_string()),
    ])
}

/// A follow-up result; other Observations ("matter of interest") are not stored.
fn follow_up(
    r: &Value,
    at: &str,
    refs: &GatewayReference,
    ck: &mut Check,
) -> Option<Option<Vec<(&'static str, String)>>> {
    if !codings(r.get("code"))
        .iter()
        .any(|(_, c)| *c == FOLLOW_UP_CODE)
    {
        return Some(None);
    }
    let info = fsiii(
        r.get("valueCodeableConcept"),
        &format!("{at}.valueCodeableConcept"),
        &['E'],
        refs,
        ck,
    )?;
    let Some(day) = text(r, &["effectiveDateTime"]).and_then(date_part) else {
        ck.fail(
            format!("{at}.effectiveDateTime"),
            "required",
            "a follow-up result needs effectiveDateTime",
        );
        return None;
    };
    let about = ["focus", "basedOn"]
        .iter()
        .find_map(|k| {
            r.get(*k)
                .and_then(|a| a.get(0))
                .and_then(|x| text(x, &["reference"]))
        })
        .map(|x| id_of_reference(x).to_string())
        .unwrap_or_default();
    Some(Some(vec![
        ("resultat", info.code.clone()),
        ("vedroerer_id", about),
        ("status", text(r, &["status"]).unwrap_or("").to_string()),
        ("dato", day),
    ]))
}

// ---------------------------------------------------------------------------
// The delivery.

/// Yields `(line, bundle text)`: NDJSON, or a whole file holding one Bundle.
struct Bundles {
    lines: std::io::Lines<BufReader<Box<dyn Read + Send>>>,
    line: u64,
    /// A single pretty-printed Bundle, read whole (after the first line showed it).
    single: Option<String>,
}

/// A single-Bundle file is read whole; this caps it.
const MAX_SINGLE_BUNDLE: usize = 256 << 20;

impl Bundles {
    fn next(&mut self) -> Result<Option<(u64, String)>, StructuralError> {
        if let Some(s) = self.single.take() {
            return Ok(Some((1, s)));
        }
        loop {
            let Some(l) = self.lines.next() else {
                return Ok(None);
            };
            let l = l.map_err(|e| match e.kind() {
                std::io::ErrorKind::FileTooLarge => {
                    StructuralError::new("too_large", e.to_string())
                }
                std::io::ErrorKind::InvalidData => StructuralError::new(
                    "encoding",
                    format!(
                        "line {}: the bytes are not valid UTF-8; FHIR JSON is always UTF-8",
                        self.line + 1
                    ),
                ),
                _ => StructuralError::new("unreadable", format!("line {}: {e}", self.line + 1)),
            })?;
            self.line += 1;
            if l.trim().is_empty() {
                continue;
            }
            return Ok(Some((self.line, l)));
        }
    }
}

fn open_bundles(
    raw: Box<dyn Read + Send>,
    contract: &Contract,
) -> Result<Bundles, StructuralError> {
    let input = read::decode(raw, contract)?;
    let mut b = Bundles {
        lines: BufReader::with_capacity(256 * 1024, input).lines(),
        line: 0,
        single: None,
    };
    // NDJSON has a whole JSON object on line 1; a pretty-printed Bundle does not.
    let Some((_, first)) = b.next()? else {
        return Err(StructuralError::new(
            "empty_file",
            "the file holds no bundles",
        ));
    };
    if !first.trim_start().starts_with('{') {
        return Err(StructuralError::new(
            "format",
            "line 1: not JSON; a gateway delivery is NDJSON of FHIR Bundles (or one Bundle)",
        ));
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(&first).is_ok() {
        b.single = Some(first);
        // `single` doubles as the "put back" slot for NDJSON's first line.
        return Ok(b);
    }
    let mut whole = first;
    for l in b.lines.by_ref() {
        let l = l.map_err(|e| StructuralError::new("unreadable", e.to_string()))?;
        whole.push('\n');
        whole.push_str(&l);
        if whole.len() > MAX_SINGLE_BUNDLE {
            return Err(StructuralError::new(
                "too_large",
                format!("a single-Bundle file over {MAX_SINGLE_BUNDLE} bytes; send NDJSON instead"),
            ));
        }
    }
    b.single = Some(whole);
    Ok(b)
}

/// The process pass for a gateway delivery.
pub fn run(
    registry: &Registry,
    contract: &Contract,
    raw: Box<dyn Read + Send>,
    opts: RunOptions,
) -> Result<Report, RunError> {
    let refs = GatewayReference::builtin();
    let mut report = Report::default();
    let received = opts.received_at.timestamp_micros();
    let mut sink = ProblemSink::new(opts.spool)?;
    let tables = registry.tables_of(contract);
    let key_version = opts.pseudonymiser.key_version();
    let mut validators: Vec<Validator> = tables
        .iter()
        .map(|c| Validator::new(c, opts.pseudonymiser.clone(), opts.delivery_date, received))
        .collect();
    let mut writers: Option<Vec<PartitionedWriter>> = opts.spool.map(|dir| {
        tables
            .iter()
            .map(|c| PartitionedWriter::new(c, dir, opts.delivery_id, received, key_version))
            .collect()
    });
    let index: HashMap<&str, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let mut rows: Vec<Row> = tables
        .iter()
        .map(|c| Row::with_fields(c.fields.len()))
        .collect();
    let mut counts = vec![0u64; tables.len()];
    let mut quality: Option<Vec<Collector>> = opts.quality.then(|| {
        tables
            .iter()
            .map(|c| Collector::new(c, opts.delivery_date))
            .collect()
    });

    let mut bundles = match open_bundles(raw, contract) {
        Ok(b) => b,
        Err(e) => {
            if let Some(q) = quality.as_mut().and_then(|q| q.drain(..).next()) {
                report.quality = q.finish(Some(&e));
            }
            report.structural = Some(e);
            return Ok(report);
        }
    };
    let mut problems = Vec::new();
    loop {
        let (line, text) = match bundles.next() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                report.structural = Some(e);
                break;
            }
        };
        let flat = match serde_json::from_str::<Value>(&text) {
            Ok(bundle) => flatten_bundle(line, &bundle, refs, &mut problems),
            Err(e) => {
                problems.push(Problem {
                    line,
                    column: None,
                    rule: "format",
                    severity: Severity::Error,
                    message: format!(
                        "not JSON: {:?} error at column {}",
                        e.classify(),
                        e.column()
                    ),
                });
                None
            }
        };
        let verdict = match flat {
            None => {
                // The bundle never became rows: it counts against the delivery's
                // own table.
                if let Some(q) = quality.as_mut() {
                    q[0].observe_unreadable(&problems);
                }
                Verdict::Rejected
            }
            Some((cpr, flat)) => {
                report
                    .count_cpr(crate::cpr::parse(&cpr).is_ok_and(|c| c.class.identifies_person()));
                // First pass: every row must pass its table's contract.
                let before = problems.len();
                let mut verdict = Verdict::Accepted;
                for f in &flat {
                    let t = index[f.table];
                    fill(&mut rows[t], tables[t], line, &cpr, &f.values);
                    let from = problems.len();
                    let v = validators[t].check(&rows[t], &mut problems);
                    if let Some(q) = quality.as_mut() {
                        q[t].observe(&rows[t], v, &validators[t], &problems[from..]);
                    }
                    match v {
                        Verdict::Rejected => verdict = Verdict::Rejected,
                        Verdict::AcceptedWithWarnings if verdict == Verdict::Accepted => {
                            verdict = Verdict::AcceptedWithWarnings
                        }
                        _ => {}
                    }
                }
                // Warnings repeat per row (the same CPR in each): keep the first.
                dedup_from(&mut problems, before);
                if verdict != Verdict::Rejected {
                    for f in &flat {
                        let t = index[f.table];
                        fill(&mut rows[t], tables[t], line, &cpr, &f.values);
                        let mut ignored = Vec::new();
                        validators[t].check(&rows[t], &mut ignored);
                        counts[t] += 1;
                        if let Some(w) = writers.as_mut() {
                            w[t].append(&rows[t], &validators[t])?;
                        }
                    }
                }
                verdict
            }
        };
        report.count(verdict);
        if !problems.is_empty() {
            sink.take(&mut report, &mut problems)?;
        }
    }
    if let Some(ws) = writers {
        for w in ws {
            report.files.extend(w.finish()?);
        }
        report.files.sort_by(|a, b| a.key.cmp(&b.key));
    }
    for (c, n) in tables.iter().zip(counts) {
        if n > 0 {
            report.tables.insert(c.table(), n);
        }
    }
    if let Some(q) = quality {
        for c in q {
            report.quality.extend(c.finish(report.structural.as_ref()));
        }
    }
    sink.finish(&mut report)?;
    Ok(report)
}

/// Puts a flattened resource into a row in the table's field order.
fn fill(row: &mut Row, table: &Contract, line: u64, cpr: &str, values: &[(&'static str, String)]) {
    row.fill(
        line,
        table.fields.iter().map(|f| {
            if Some(f.name.as_str()) == table.cpr_field.map(|i| table.fields[i].name.as_str()) {
                cpr
            } else {
                values
                    .iter()
                    .find(|(k, _)| *k == f.name)
                    .map_or("", |(_, v)| v.as_str())
            }
        }),
    );
}

fn dedup_from(problems: &mut Vec<Problem>, from: usize) {
    let mut seen = HashSet::new();
    let mut i = from;
    while i < problems.len() {
        let key = (problems[i].rule, problems[i].message.clone());
        if problems[i].severity == Severity::Warning && !seen.insert(key) {
            problems.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PATIENT: &str = "Patient/p1";

    /// A valid bundle with one resource of every kind the flattener reads.
    fn bundle() -> Value {
        let meta = json!({"lastUpdated": "2026-10-01T10:00:00+02:00"});
        let fsiii =
            |c: &str| json!({"coding": [{"system": "urn:oid:1.2.208.176.2.21", "code": c}]});
        let entry = |r: Value| json!({"fullUrl": format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()), "resource": r});
        json!({
            "resourceType": "Bundle", "id": "b1", "type": "collection",
            "timestamp": "2026-10-01T23:00:00+02:00",
            "entry": [
                entry(json!({"resourceType": "Patient", "id": "p1", "meta": meta,
                    "identifier": [{"system": CPR_SYSTEM, "value": "6703854001"}],
                    "managingOrganization": {"identifier": {"system": SOR_SYSTEM, "value": "990316000000000"}}})),
                entry(json!({"resourceType": "Condition", "id": "c-home", "meta": meta,
                    "code": fsiii("J1.1"), "severity": fsiii("B3"), "subject": {"reference": PATIENT},
                    "clinicalStatus": {"coding": [{"code": "active"}]}, "recordedDate": "2026-09-30"})),
                entry(json!({"resourceType": "Condition", "id": "c-nurse", "meta": meta,
                    "code": fsiii("I4.4"), "subject": {"reference": PATIENT}, "recordedDate": "2026-09-29"})),
                entry(json!({"resourceType": "CarePlan", "id": "cp1", "meta": meta, "status": "active", "intent": "plan",
                    "subject": {"reference": PATIENT}, "period": {"start": "2026-10-01"},
                    "activity": [{"detail": {"code": {"coding": [
                        {"system": "urn:oid:1.2.208.176.2.21", "code": "G1.39"},
                        {"system": LOCAL_SYSTEMS[0], "code": "LOK-1"}]},
                        "status": "in-progress", "reasonReference": [{"reference": "Condition/c-nurse"}]}}]})),
                entry(json!({"resourceType": "Procedure", "id": "pr1", "meta": meta, "status": "completed",
                    "code": fsiii("H1.1"), "subject": {"reference": PATIENT}, "performedDateTime": "2026-10-01T09:00:00+02:00"})),
                entry(json!({"resourceType": "Encounter", "id": "e1", "meta": meta, "status": "planned",
                    "class": {"code": "HH"}, "subject": {"reference": PATIENT}, "period": {"start": "2026-11-01"}})),
                entry(json!({"resourceType": "Observation", "id": "o1", "meta": meta, "status": "final",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": FOLLOW_UP_CODE}]},
                    "valueCodeableConcept": fsiii("E1"), "subject": {"reference": PATIENT},
                    "focus": [{"reference": "CarePlan/cp1"}], "effectiveDateTime": "2026-10-01T09:00:00+02:00"})),
                entry(json!({"resourceType": "Condition", "id": "focus", "meta": meta,
                    "code": {"coding": [{"system": SKS_SYSTEM, "code": "DS720+TUL1"}]}, "subject": {"reference": PATIENT}})),
                entry(json!({"resourceType": "ServiceRequest", "id": "sr1", "meta": meta, "status": "active",
                    "code": {"coding": [{"code": "7fc66c15-0cb3-4c89-9e18-f3a01e6a6592"}]},
                    "category": [{"coding": [{"code": "ffd81f78-352e-4589-a195-5350dd1df2a4"}]}],
                    "extension": [{"url": DISCHARGE_EXTENSION, "valueDate": "2026-09-28"}],
                    "subject": {"reference": PATIENT}, "authoredOn": "2026-09-29",
                    "reasonReference": [{"reference": "Condition/focus"}]})),
                entry(json!({"resourceType": "CarePlan", "id": "pw1", "meta": meta, "status": "active", "intent": "plan",
                    "category": [{"coding": [{"code": "f15b2663-94d9-4d0c-a5de-d8bd8e1e4ebb"}]}],
                    "subject": {"reference": PATIENT}, "period": {"start": "2026-10-02"},
                    "activity": [{"detail": {"status": "scheduled"}}]})),
            ]
        })
    }

    fn check(b: &Value) -> (Option<Vec<FlatRow>>, Vec<Problem>) {
        let mut problems = Vec::new();
        let r =
            flatten_bundle(7, b, GatewayReference::builtin(), &mut problems).map(|(cpr, rows)| {
                assert_eq!(cpr, "6703854001");
                rows
            });
        (r, problems)
    }

    fn rule(b: &Value) -> &'static str {
        let (rows, problems) = check(b);
        assert!(rows.is_none(), "expected a rejection");
        assert!(!problems.is_empty());
        for p in &problems {
            assert_eq!(p.line, 7);
            assert!(
                !p.message.contains("b1"),
                "ids are not quoted: {}",
                p.message
            );
            assert!(!p.message.contains("670385"), "{}", p.message);
            assert!(!p.column.as_deref().unwrap_or("").contains("670385"));
        }
        problems[0].rule
    }

    #[test]
    fn a_cpr_anywhere_but_the_patients_cpr_identifier_rejects_the_bundle() {
        type Put = fn(&mut Value);
        let places: [(&str, Put); 6] = [
            ("Bundle.id", |b| b["id"] = json!("670385-4001")),
            ("Bundle.entry[4].resource.id", |b| {
                b["entry"][4]["resource"]["id"] = json!("6703854001")
            }),
            ("Bundle.entry[1].resource.code.text", |b| {
                b["entry"][1]["resource"]["code"]["text"] = json!("borger 670385 4001")
            }),
            ("Bundle.entry[0].resource.identifier[1].value", |b| {
                b["entry"][0]["resource"]["identifier"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"system": "urn:other", "value": "670385/4001"}))
            }),
            ("Bundle.entry[2].resource.subject.display", |b| {
                b["entry"][2]["resource"]["subject"]["display"] = json!("6703854AB1")
            }),
            (
                "Bundle.entry[3].resource.activity[0].detail.code.coding[1].code",
                |b| {
                    b["entry"][3]["resource"]["activity"][0]["detail"]["code"]["coding"][1]["code"] =
                        json!("670385–4001")
                },
            ),
        ];
        for (at, put) in places {
            let mut b = bundle();
            put(&mut b);
            assert_eq!(rule(&b), crate::validate::CPR_IN_WRONG_COLUMN, "{at}");
            let (_, problems) = check(&b);
            assert_eq!(problems[0].column.as_deref(), Some(at));
        }
        // UUID codes and the SOR number are not CPR numbers.
        let (rows, problems) = check(&bundle());
        assert!(rows.is_some() && problems.is_empty(), "{problems:?}");
    }

    fn value<'a>(rows: &'a [FlatRow], table: &str, id: &str, col: &str) -> &'a str {
        let row = rows
            .iter()
            .find(|r| {
                r.table == table && r.values.iter().any(|(k, v)| *k == "resource_id" && v == id)
            })
            .unwrap_or_else(|| panic!("no {table} row for {id}"));
        row.values
            .iter()
            .find(|(k, _)| *k == col)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    #[test]
    fn a_valid_bundle_fans_out_into_every_table() {
        let (rows, problems) = check(&bundle());
        assert!(problems.is_empty(), "{problems:?}");
        let rows = rows.unwrap();
        assert_eq!(value(&rows, "kommune.borger", "p1", "kommunekode"), "316");
        assert_eq!(
            value(&rows, "kommune.tilstand", "c-home", "omraade"),
            "home_care"
        );
        assert_eq!(
            value(&rows, "kommune.tilstand", "c-home", "alvorlighed"),
            "B3"
        );
        assert_eq!(
            value(&rows, "kommune.tilstand", "c-nurse", "omraade"),
            "nursing"
        );
        assert_eq!(
            value(&rows, "kommune.tilstand", "c-nurse", "startdato"),
            "2026-09-29"
        );
        assert_eq!(
            value(&rows, "kommune.indsats", "cp1", "lovgrundlag"),
            "§138"
        );
        assert_eq!(
            value(&rows, "kommune.indsats", "cp1", "lokal_kode"),
            "LOK-1"
        );
        assert_eq!(
            value(&rows, "kommune.indsats", "cp1", "tilstand_id"),
            "c-nurse"
        );
        assert_eq!(value(&rows, "kommune.indsats", "pr1", "type"), "completed");
        assert_eq!(value(&rows, "kommune.indsats", "pr1", "lovgrundlag"), "§83");
        assert_eq!(value(&rows, "kommune.indsats", "pw1", "type"), "pathway");
        assert_eq!(
            value(&rows, "kommune.indsats", "pw1", "lovgrundlag"),
            "§140"
        );
        assert_eq!(value(&rows, "kommune.kontakt", "e1", "klasse"), "HH");
        assert_eq!(value(&rows, "kommune.opfoelgning", "o1", "resultat"), "E1");
        assert_eq!(
            value(&rows, "kommune.opfoelgning", "o1", "vedroerer_id"),
            "cp1"
        );
        assert_eq!(
            value(&rows, "kommune.henvisning", "sr1", "lovgrundlag"),
            "§140"
        );
        assert_eq!(
            value(&rows, "kommune.henvisning", "sr1", "henvisningsdiagnose"),
            "DS720"
        );
        assert_eq!(
            value(&rows, "kommune.henvisning", "sr1", "udskrivningsdato"),
            "2026-09-28"
        );
        assert_eq!(
            value(&rows, "kommune.henvisning", "sr1", "kategori"),
            "almen"
        );
        // The referral's focus condition is read through the referral, not stored alone.
        assert!(
            !rows.iter().any(
                |r| r.table == "kommune.tilstand" && r.values.iter().any(|(_, v)| v == "focus")
            )
        );
        let gw = rows.iter().find(|r| r.table == "kommune.gateway").unwrap();
        assert!(gw.values.contains(&("rapportdato", "2026-10-01".into())));
    }

    #[test]
    fn uuid_codes_land_as_their_old_code() {
        let mut b = bundle();
        b["entry"][1]["resource"]["code"]["coding"][0]["code"] =
            json!("4d46bd94-9518-431c-82e8-ebb91bca307a");
        let (rows, problems) = check(&b);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            value(&rows.unwrap(), "kommune.tilstand", "c-home", "fsiii_kode"),
            "J1.1"
        );
    }

    #[test]
    fn exactly_one_patient() {
        let mut b = bundle();
        let p = b["entry"][0].clone();
        b["entry"].as_array_mut().unwrap().push(p);
        assert_eq!(rule(&b), "patient_count");
        b["entry"]
            .as_array_mut()
            .unwrap()
            .retain(|e| e["resource"]["resourceType"] != "Patient");
        assert_eq!(rule(&b), "patient_count");
    }

    #[test]
    fn exactly_one_cpr() {
        let mut b = bundle();
        b["entry"][0]["resource"]["identifier"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": CPR_SYSTEM, "value": "6101804002"}));
        assert_eq!(rule(&b), "cpr_count");
        b["entry"][0]["resource"]["identifier"] = json!([]);
        assert_eq!(rule(&b), "cpr_count");
    }

    #[test]
    fn municipality_from_sor() {
        let mut b = bundle();
        b["entry"][0]["resource"]["managingOrganization"]["identifier"]["value"] = json!("123456");
        assert_eq!(rule(&b), "municipality");
        b["entry"][0]["resource"]
            .as_object_mut()
            .unwrap()
            .remove("managingOrganization");
        assert_eq!(rule(&b), "municipality");
    }

    #[test]
    fn last_updated_everywhere() {
        let mut b = bundle();
        b["entry"][4]["resource"]["meta"]
            .as_object_mut()
            .unwrap()
            .remove("lastUpdated");
        assert_eq!(rule(&b), "last_updated");
        b["entry"][4]["resource"]["meta"]["lastUpdated"] = json!("2026-10-01");
        assert_eq!(rule(&b), "last_updated");
    }

    #[test]
    fn fsiii_codes() {
        let mut b = bundle();
        b["entry"][1]["resource"]["code"]["coding"][0]["code"] = json!("J9.99");
        assert_eq!(rule(&b), "code");
        let mut b = bundle();
        b["entry"][1]["resource"]["code"]["coding"][0]["system"] =
            json!("http://example.org/other");
        assert_eq!(rule(&b), "code");
        // The older guide's system is accepted too.
        let mut b = bundle();
        b["entry"][1]["resource"]["code"]["coding"][0]["system"] = json!(FSIII_SYSTEMS[1]);
        assert!(check(&b).0.is_some());
        // An intervention code where a condition is expected.
        let mut b = bundle();
        b["entry"][1]["resource"]["code"]["coding"][0]["code"] = json!("G1.39");
        assert_eq!(rule(&b), "code");
    }

    #[test]
    fn severity_required_for_home_care_forbidden_for_nursing() {
        let mut b = bundle();
        b["entry"][1]["resource"]
            .as_object_mut()
            .unwrap()
            .remove("severity");
        assert_eq!(rule(&b), "severity");
        let mut b = bundle();
        b["entry"][2]["resource"]["severity"] =
            json!({"coding": [{"system": FSIII_SYSTEMS[0], "code": "B2"}]});
        assert_eq!(rule(&b), "severity");
    }

    #[test]
    fn planned_interventions_need_period_start() {
        let mut b = bundle();
        b["entry"][3]["resource"]["period"] = json!({});
        assert_eq!(rule(&b), "period_start");
    }

    #[test]
    fn cancelled_pathways_need_a_reason() {
        let mut b = bundle();
        b["entry"][9]["resource"]["activity"][0]["detail"]["status"] = json!("cancelled");
        assert_eq!(rule(&b), "cancel_reason");
        b["entry"][9]["resource"]["activity"][0]["detail"]["statusReason"] =
            json!({"coding": [{"code": "3a5a72b7-addf-4857-b80c-04e4246e3072"}]});
        let (rows, _) = check(&b);
        assert_eq!(
            value(&rows.unwrap(), "kommune.indsats", "pw1", "aarsag"),
            "3a5a72b7-addf-4857-b80c-04e4246e3072"
        );
    }

    #[test]
    fn references_resolve_inside_the_bundle() {
        let mut b = bundle();
        b["entry"][3]["resource"]["activity"][0]["detail"]["reasonReference"][0]["reference"] =
            json!("Condition/elsewhere");
        assert_eq!(rule(&b), "reference");
        // An absolute fullUrl ending in Type/id resolves.
        let mut b = bundle();
        b["entry"][2]["fullUrl"] = json!("https://gateway.example/fhir/Condition/c-nurse");
        assert!(check(&b).0.is_some());
    }

    #[test]
    fn entered_in_error_is_flagged() {
        let mut b = bundle();
        b["entry"][3]["resource"]["status"] = json!("entered-in-error");
        let (rows, _) = check(&b);
        assert_eq!(
            value(&rows.unwrap(), "kommune.indsats", "cp1", "entered_in_error"),
            "true"
        );
    }

    fn run_lines(lines: &[Value]) -> Report {
        let text: String = lines.iter().map(|b| format!("{b}\n")).collect();
        let registry = Registry::builtin();
        let c = registry.get("kommune.gateway").unwrap();
        run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(text.into_bytes())),
            crate::process::test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn a_bad_bundle_is_left_out_without_rejecting_the_rest() {
        let mut lines: Vec<Value> = (0..30)
            .map(|i| {
                let mut b = bundle();
                b["id"] = json!(format!("b{i}"));
                b
            })
            .collect();
        lines[5]["entry"][3]["resource"]["subject"]["reference"] = json!("Patient/nobody");
        let r = run_lines(&lines);
        assert_eq!(r.rows.read, 30);
        assert_eq!(r.rows.rejected, 1);
        assert_eq!(r.rows.accepted, 29);
        assert_eq!(r.problems[0].line, 6);
        assert_eq!(r.tables["kommune_gateway"], 29);
        assert_eq!(r.tables["kommune_indsats"], 29 * 3);
        let registry = Registry::builtin();
        assert_eq!(
            r.outcome(registry.get("kommune.gateway").unwrap()).0,
            crate::receipt::ReceiptOutcome::Warning
        );
    }

    #[test]
    fn a_single_pretty_printed_bundle_file_is_accepted() {
        let registry = Registry::builtin();
        let c = registry.get("kommune.gateway").unwrap();
        let text = serde_json::to_string_pretty(&bundle()).unwrap();
        let r = run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(text.into_bytes())),
            crate::process::test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap();
        assert!(r.structural.is_none(), "{:?}", r.structural);
        assert_eq!(r.rows.accepted, 1);
    }

    #[test]
    fn derived_tables_cannot_be_delivered_directly() {
        let registry = Registry::builtin();
        let c = registry.get("kommune.indsats").unwrap();
        let r = crate::process::run(
            &registry,
            c,
            Box::new(std::io::Cursor::new(b"x".to_vec())),
            crate::process::test_options(chrono::NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()),
        )
        .unwrap();
        assert!(r.structural.unwrap().message.contains("kommune.gateway"));
    }
}
