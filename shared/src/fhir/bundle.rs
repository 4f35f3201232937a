//! One bundle: the rules a KL Gateway delivery report must meet as a whole (one
//! Patient with one CPR, a municipality SOR code, `meta.lastUpdated` everywhere,
//! references that resolve inside the bundle, no CPR anywhere else), and its
//! flattening into table rows by the resource mappers.

use std::collections::HashMap;

use chrono::DateTime;
use serde_json::Value;

use super::codes::*;
use super::json::*;
use super::resources::*;
use crate::reference::GatewayReference;
use crate::validate::{Problem, Severity};

/// A table row flattened from a resource: `(table contract id, (column, value)...)`.
pub struct FlatRow {
    pub table: &'static str,
    pub values: Vec<(&'static str, String)>,
    /// Warnings about this row's values found while flattening (a code missing from
    /// the loaded code list), with the column they concern: they count against the
    /// row like the validator's own.
    pub warnings: Vec<Problem>,
}

pub(super) struct Check<'a> {
    pub(super) line: u64,
    pub(super) problems: &'a mut Vec<Problem>,
    pub(super) failed: bool,
    /// Warnings for the row being flattened (moved into its [`FlatRow`]).
    pub(super) warnings: Vec<Problem>,
}

/// The warning rule of a well-formed code that is missing from the loaded list.
pub const CODE_NOT_IN_LIST: &str = "code_not_in_list";

impl Check<'_> {
    /// A well-formed code missing from the loaded code list: the row is kept, and
    /// the column carries a warning (a newer terminology than the one loaded, or a
    /// mistake the supplier should look at).
    pub(super) fn unlisted(&mut self, location: &str, column: &'static str, what: &str) {
        self.warnings.push(Problem {
            line: self.line,
            column: Some(column.to_string()),
            rule: CODE_NOT_IN_LIST,
            severity: Severity::Warning,
            message: format!(
                "{location}: the {what} is well-formed but not in the loaded code list \
                 (see reference_versions); the row is kept"
            ),
        });
    }

    pub(super) fn fail(
        &mut self,
        location: String,
        rule: &'static str,
        message: impl Into<String>,
    ) {
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
pub(super) fn cpr_elsewhere(v: &Value, path: &mut String) -> Option<String> {
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
        warnings: Vec::new(),
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
    let reported_at = text(bundle, &["timestamp"]);
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
        // The resource's own meta.lastUpdated, else the time of the delivery report
        // (the KL guides' own examples carry only Bundle.timestamp).
        let last_updated = match text(r, &["meta", "lastUpdated"]).or(reported_at) {
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
                    format!("the {kind} has no meta.lastUpdated, and the bundle no timestamp"),
                );
                continue;
            }
        };
        if last_updated > newest {
            newest.clone_from(&last_updated);
        }
        check_references(r, &at, &by_ref, &mut ck);
        let updated_day = last_updated[..10].to_string();
        // `eie`: whether the resource was entered in error; `None` for the Patient,
        // whose table has no such column (a citizen is not withdrawn).
        let common = |mut v: Vec<(&'static str, String)>, eie: Option<bool>| {
            v.extend([
                ("resource_id", id.to_string()),
                ("kommunekode", kommune.clone()),
                ("last_updated", last_updated.clone()),
            ]);
            if let Some(eie) = eie {
                v.push(("entered_in_error", eie.to_string()));
            }
            v
        };
        let row = match kind {
            "Patient" => {
                let death = text(r, &["deceasedDateTime"]).and_then(date_part);
                let dead = death.is_some()
                    || get(r, &["deceasedBoolean"]).and_then(Value::as_bool) == Some(true);
                Some(FlatRow {
                    warnings: Vec::new(),
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
                        None,
                    ),
                })
            }
            "Condition" => condition(r, &at, refs, &mut ck).flatten().map(|mut v| {
                let eie = first_code(r.get("verificationStatus")) == Some("entered-in-error");
                if v.iter().all(|(k, _)| *k != "startdato") {
                    v.push(("startdato", updated_day.clone()));
                }
                FlatRow {
                    warnings: Vec::new(),
                    table: "kommune.tilstand",
                    values: common(v, Some(eie)),
                }
            }),
            "CarePlan" | "Procedure" => intervention(r, kind, &at, refs, &mut ck).map(|v| {
                let eie = text(r, &["status"]) == Some("entered-in-error");
                FlatRow {
                    warnings: Vec::new(),
                    table: "kommune.indsats",
                    values: common(v, Some(eie)),
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
                    warnings: Vec::new(),
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
                        Some(text(r, &["status"]) == Some("entered-in-error")),
                    ),
                })
            }
            "ServiceRequest" => referral(r, &at, &by_ref, refs, &mut ck).map(|v| FlatRow {
                warnings: Vec::new(),
                table: "kommune.henvisning",
                values: common(v, Some(text(r, &["status"]) == Some("entered-in-error"))),
            }),
            "Observation" => follow_up(r, &at, refs, &mut ck).flatten().map(|v| FlatRow {
                warnings: Vec::new(),
                table: "kommune.opfoelgning",
                values: common(v, Some(text(r, &["status"]) == Some("entered-in-error"))),
            }),
            // The delivery report itself, goals and other resources carry nothing we store.
            _ => None,
        };
        let warnings = std::mem::take(&mut ck.warnings);
        rows.extend(row.map(|mut f| {
            f.warnings = warnings;
            f
        }));
    }
    if ck.failed {
        return None;
    }
    let reported = text(bundle, &["timestamp"])
        .filter(|t| DateTime::parse_from_rfc3339(t).is_ok())
        .map_or(newest, str::to_string);
    rows.push(FlatRow {
        warnings: Vec::new(),
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
pub(super) fn check_references(
    v: &Value,
    at: &str,
    targets: &HashMap<String, &Value>,
    ck: &mut Check,
) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    const PATIENT: &str = "Patient/p1";

    /// A valid bundle with one resource of every kind the flattener reads.
    pub(crate) fn bundle() -> Value {
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
        let r = flatten_bundle(
            7,
            b,
            &crate::reference::ReferenceSet::builtin().gateway,
            &mut problems,
        )
        .map(|(cpr, rows)| {
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
    fn last_updated_everywhere_or_the_report_time() {
        let mut b = bundle();
        b["entry"][4]["resource"]["meta"]
            .as_object_mut()
            .unwrap()
            .remove("lastUpdated");
        // Without its own, a resource was last updated when the report was made.
        let mut problems = Vec::new();
        let (_, rows) = flatten_bundle(
            1,
            &b,
            &crate::reference::ReferenceSet::builtin().gateway,
            &mut problems,
        )
        .expect("accepted");
        let procedure = rows
            .iter()
            .find(|r| {
                r.values
                    .iter()
                    .any(|(k, v)| *k == "resource_id" && v == "pr1")
            })
            .unwrap();
        assert!(
            procedure
                .values
                .contains(&("last_updated", "2026-10-01T23:00:00+02:00".to_string()))
        );
        b.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(rule(&b), "last_updated");
        b["entry"][4]["resource"]["meta"]["lastUpdated"] = json!("2026-10-01");
        assert_eq!(rule(&b), "last_updated");
    }

    #[test]
    fn fsiii_codes() {
        // Well-formed but not in the loaded list (a newer terminology): kept, flagged
        // on its column, its area unknown.
        for code in ["J9.99", "0b7a9d11-3a52-4c47-9d6a-2f1e0c1d2e3f"] {
            let mut b = bundle();
            b["entry"][1]["resource"]["code"]["coding"][0]["code"] = json!(code);
            let (rows, problems) = check(&b);
            let rows = rows.expect("kept");
            assert!(problems.is_empty(), "{problems:?}");
            let c = rows
                .iter()
                .find(|r| {
                    r.values
                        .iter()
                        .any(|(k, v)| *k == "resource_id" && v == "c-home")
                })
                .unwrap();
            assert!(c.values.contains(&("fsiii_kode", code.to_string())));
            assert!(c.values.contains(&("omraade", "unknown".to_string())));
            assert_eq!(c.warnings.len(), 1);
            let w = &c.warnings[0];
            assert_eq!(
                (w.rule, w.column.as_deref()),
                (CODE_NOT_IN_LIST, Some("fsiii_kode"))
            );
            assert_eq!(w.severity, Severity::Warning);
            assert!(
                w.message.starts_with("Bundle.entry[1].resource.code"),
                "{}",
                w.message
            );
            assert!(rows.iter().filter(|r| !r.warnings.is_empty()).count() == 1);
        }
        // The same for an unlisted intervention: its legal basis is unknown.
        let mut b = bundle();
        b["entry"][4]["resource"]["code"]["coding"][0]["code"] = json!("H9.9");
        let rows = check(&b).0.expect("kept");
        let pr = rows
            .iter()
            .find(|r| {
                r.values
                    .iter()
                    .any(|(k, v)| *k == "resource_id" && v == "pr1")
            })
            .unwrap();
        assert!(pr.values.contains(&("lovgrundlag", "unknown".to_string())));
        assert_eq!(pr.warnings[0].column.as_deref(), Some("fsiii_kode"));
        // Malformed codes stay errors.
        for code in [
            "J9.99x!",
            "Vaske sig",
            "j1.1",
            "4d46bd94-9518-431c-82e8",
            "",
        ] {
            let mut b = bundle();
            b["entry"][1]["resource"]["code"]["coding"][0]["code"] = json!(code);
            assert_eq!(rule(&b), "code", "{code}");
        }
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

    /// Every column a mapper fills is a field of its table's contract: a misspelt
    /// name would otherwise leave the column empty without a word.
    #[test]
    fn every_flattened_column_is_a_field_of_its_contract() {
        let registry = crate::contract::Registry::builtin();
        let (rows, problems) = check(&bundle());
        let rows = rows.unwrap_or_else(|| panic!("{problems:#?}"));
        let mut tables = std::collections::BTreeSet::new();
        for row in &rows {
            let c = registry
                .get(row.table)
                .unwrap_or_else(|| panic!("{} is not a contract", row.table));
            for (column, _) in &row.values {
                assert!(
                    c.field_index(column).is_some(),
                    "{}: {column} is not a field of the contract",
                    row.table
                );
                assert_ne!(
                    c.cpr_field.map(|i| c.fields[i].name.as_str()),
                    Some(*column),
                    "the CPR is put in by the reader, never by a mapper"
                );
            }
            tables.insert(row.table);
        }
        // The test bundle reaches every table a gateway delivery feeds.
        let gateway = registry.get("kommune.gateway").unwrap();
        let fed: std::collections::BTreeSet<&str> = registry
            .tables_of(gateway)
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(tables, fed);
    }
}
