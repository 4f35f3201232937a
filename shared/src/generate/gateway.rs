//! Synthetic KL Gateway deliveries: one NDJSON file per day of FHIR Bundles, one per
//! citizen with changes that day, shaped as docs/kl-gateway-input.md describes.
//!
//! Over the days: home care (§83) and nursing (§138) start with conditions and planned
//! interventions, get followed up, completed or stopped; §119 prevention courses run
//! (some cancelled, with a reason); §140 rehabilitation follows a hospital discharge
//! from the LPR data of the same run, so linkage to LPR is meaningful. Some resources
//! are re-sent as updates, some as entered-in-error, and a share of bundles is
//! defective in the ways the reader must catch.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use chrono::{Duration, NaiveDate};
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::Person;
use crate::fhir::{
    CPR_SYSTEM, DISCHARGE_EXTENSION, FOLLOW_UP_CODE, ICPC2_SYSTEM, SKS_SYSTEM, SOR_SYSTEM,
};

const FSIII: &str = "urn:oid:1.2.208.176.2.21";
const LOCAL: &str = "http://fhir.kl.dk/gateway/CodeSystem/LocallyDefinedInterventions";
const HOME_CARE_CONDITIONS: &[&str] = &["J1.1", "J1.2", "J1.4", "J2.1", "J2.2"];
const NURSING_CONDITIONS: &[&str] = &["I4.4", "I1.1", "I2.1", "I9.1"];
const HOME_CARE_INTERVENTIONS: &[&str] = &["H1.1", "H1.2", "H1.5", "H1.7"];
const NURSING_INTERVENTIONS: &[&str] = &["G1.20", "G1.39", "G1.5"];
const SEVERITIES: &[&str] = &["B1", "B2", "B3", "B4", "B5"];
const RESULTS: &[&str] = &["E1", "E1", "E2", "E3", "E4"];
const CANCEL_REASONS: &[&str] = &[
    "3a5a72b7-addf-4857-b80c-04e4246e3072",
    "4bbf6d6a-a1c6-41c2-b8c1-7352b7378adf",
];
const SERVICE_119: &str = "a71921ea-fe83-441d-933b-cc21d0b3c8c3";
const SERVICE_140: &str = "7fc66c15-0cb3-4c89-9e18-f3a01e6a6592";
const PATHWAY_119: &str = "5c160c02-e858-4c1f-925a-71ed64844749";
const PATHWAY_140: &str = "f15b2663-94d9-4d0c-a5de-d8bd8e1e4ebb";
const CATEGORY_ALMEN: &str = "ffd81f78-352e-4589-a195-5350dd1df2a4";
const CARE_CODES: &str = "http://fhir.kl.dk/term/CodeSystem/CareSocialCodes";

/// §119 and §140 catalogue codes, from `reference/catalogue-119-140.csv`.
fn catalogue(paragraph: &str) -> Vec<String> {
    crate::reference::CATALOGUE_CSV
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some(paragraph))
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect()
}

/// The SOR code of each municipality, from `reference/sor-kommune.csv`.
fn sor_codes() -> HashMap<String, String> {
    crate::reference::SOR_KOMMUNE_CSV
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((format!("{:0>3}", f.get(1)?), f.first()?.to_string()))
        })
        .collect()
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn coding(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn stamp(day: NaiveDate, hour: u32) -> String {
    format!("{day}T{hour:02}:00:00+01:00")
}

/// A resource as last sent, so later days can send updates of the same id.
#[derive(Clone)]
struct Sent {
    resource: Value,
}

/// What one citizen has going on in the municipality.
#[derive(Default)]
struct Citizen {
    patient_id: String,
    /// Open planned interventions: (CarePlan, condition id).
    plans: Vec<Sent>,
    conditions: Vec<Sent>,
    pathway: Option<Sent>,
    /// Whether `pathway` is §140 rehabilitation.
    pathway_140: bool,
    /// The day the latest §140 course was completed.
    completed_140: Option<NaiveDate>,
    /// Care (§83 home care or §138 nursing) started: once per citizen.
    cared: bool,
    home_care: Option<HomeCare>,
}

/// A citizen's home-care (§83) plan, as the lake will end up seeing it.
struct HomeCare {
    plan_id: String,
    start: NaiveDate,
    end: Option<NaiveDate>,
    /// Decided when the plan starts: it will be registered in error rather than
    /// ended, so the lake never counts it (and neither do the planted effects).
    doomed: bool,
}

/// Day-by-day state of the gateway for one population.
pub struct Gateway {
    rng: ChaCha8Rng,
    sor: HashMap<String, String>,
    citizens: HashMap<usize, Citizen>,
    cat119: Vec<String>,
    cat140: Vec<String>,
    defects: f64,
    /// Each home-care plan's fate, from a stream of its own.
    fate: ChaCha8Rng,
}

/// The share of plans registered in error rather than ended.
const DOOMED: f64 = 1.0 / 3.0;

impl Gateway {
    pub fn new(seed: u64, defects: f64) -> Self {
        Gateway {
            rng: rand::SeedableRng::seed_from_u64(seed ^ 0x6761_7465_7761_7900),
            sor: sor_codes(),
            citizens: HashMap::new(),
            cat119: catalogue("§119"),
            cat140: catalogue("§140"),
            defects,
            fate: rand::SeedableRng::seed_from_u64(seed ^ 0x0046_4154_4500),
        }
    }

    /// Whether the person had home care (§83) on `day`, as the lake will show it.
    pub fn home_care_on(&self, person: usize, day: NaiveDate) -> bool {
        self.citizens
            .get(&person)
            .and_then(|c| c.home_care.as_ref())
            .is_some_and(|h| !h.doomed && h.start <= day && h.end.is_none_or(|e| e >= day))
    }

    /// The day the person's latest §140 course was completed.
    pub fn completed_140(&self, person: usize) -> Option<NaiveDate> {
        self.citizens.get(&person).and_then(|c| c.completed_140)
    }

    fn meta(&self, day: NaiveDate, hour: u32) -> Value {
        json!({"lastUpdated": stamp(day, hour)})
    }

    /// The bundles of one day; `discharges` are LPR contacts that ended that day
    /// (person index, hospital main diagnosis).
    pub fn day(
        &mut self,
        day: NaiveDate,
        people: &[Person],
        kommuner: &[super::Kommune],
        discharges: &[(usize, NaiveDate, String)],
    ) -> Vec<Value> {
        let mut bundles = Vec::new();
        let order: Vec<usize> = (0..people.len()).collect();
        for &pi in &order {
            let p = &people[pi];
            let age = 2026 - chrono::Datelike::year(&p.birth);
            let mut resources: Vec<Value> = Vec::new();
            let known = self.citizens.contains_key(&pi);
            let cared = self.citizens.get(&pi).is_some_and(|c| c.cared);
            // New care: the elderly, a few each day, whatever courses they have had (so
            // who gets care does not depend on their health).
            let starts_care = !cared && age >= 65 && self.rng.random_bool(0.01);
            let starts_119 = !known && !p.areas.is_empty() && self.rng.random_bool(0.005);
            let discharge = discharges.iter().find(|(i, _, _)| *i == pi);
            let starts_140 = discharge.is_some() && self.rng.random_bool(0.5);
            if starts_care || starts_119 || starts_140 {
                let c = self.citizens.entry(pi).or_default();
                if c.patient_id.is_empty() {
                    c.patient_id = uuid(&mut self.rng);
                }
            }
            let Some(mut c) = self.citizens.remove(&pi) else {
                continue;
            };
            let hour = self.rng.random_range(8..20);
            if starts_care {
                self.start_care(&mut c, day, hour, &mut resources);
            } else if starts_119 {
                self.start_pathway(&mut c, day, hour, "§119", None, &mut resources);
            } else if starts_140 {
                let (_, discharged, diagnosis) = discharge.expect("checked");
                self.start_pathway(
                    &mut c,
                    day,
                    hour,
                    "§140",
                    Some((*discharged, diagnosis.clone())),
                    &mut resources,
                );
            } else {
                self.follow_up(&mut c, day, hour, &mut resources);
            }
            if !resources.is_empty() {
                let kommune = &kommuner[p.kommune].code;
                let sor = self.sor.get(kommune).cloned().unwrap_or_default();
                bundles.push(self.bundle(day, &c.patient_id, &p.cpr, &sor, resources));
            }
            self.citizens.insert(pi, c);
        }
        self.apply_defects(&mut bundles);
        bundles
    }

    /// Every person starts care today (benchmark deliveries).
    pub fn day_all_start(
        &mut self,
        day: NaiveDate,
        people: &[Person],
        kommuner: &[super::Kommune],
    ) -> Vec<Value> {
        let mut bundles = Vec::with_capacity(people.len());
        for p in people {
            let mut c = Citizen {
                patient_id: uuid(&mut self.rng),
                ..Citizen::default()
            };
            let mut resources = Vec::new();
            self.start_care(&mut c, day, 10, &mut resources);
            let sor = self
                .sor
                .get(&kommuner[p.kommune].code)
                .cloned()
                .unwrap_or_default();
            bundles.push(self.bundle(day, &c.patient_id, &p.cpr, &sor, resources));
        }
        bundles
    }

    fn start_care(&mut self, c: &mut Citizen, day: NaiveDate, hour: u32, out: &mut Vec<Value>) {
        let meta = self.meta(day, hour);
        c.cared = true;
        let home = self.rng.random_bool(0.6);
        let (cond_code, plan_code) = if home {
            (
                *HOME_CARE_CONDITIONS.choose(&mut self.rng).expect("codes"),
                *HOME_CARE_INTERVENTIONS
                    .choose(&mut self.rng)
                    .expect("codes"),
            )
        } else {
            (
                *NURSING_CONDITIONS.choose(&mut self.rng).expect("codes"),
                *NURSING_INTERVENTIONS.choose(&mut self.rng).expect("codes"),
            )
        };
        let cond_id = uuid(&mut self.rng);
        let mut condition = json!({
            "resourceType": "Condition", "id": cond_id, "meta": meta,
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
            "code": coding(FSIII, cond_code),
            "subject": {"reference": format!("Patient/{}", c.patient_id)},
            "recordedDate": day.to_string(),
        });
        if home {
            condition["severity"] = coding(FSIII, SEVERITIES.choose(&mut self.rng).expect("codes"));
        }
        let mut code = coding(FSIII, plan_code);
        if self.rng.random_bool(0.2) {
            code["coding"].as_array_mut().expect("array").push(json!({"system": LOCAL, "code": format!("LOK-{}", self.rng.random_range(100..999)), "display": "Lokal indsats"}));
        }
        let plan = json!({
            "resourceType": "CarePlan", "id": uuid(&mut self.rng), "meta": meta,
            "status": "active", "intent": "plan",
            "subject": {"reference": format!("Patient/{}", c.patient_id)},
            "period": {"start": day.to_string()},
            "activity": [{"detail": {"code": code, "status": "in-progress",
                "reasonReference": [{"reference": format!("Condition/{cond_id}")}]}}],
        });
        let encounter = json!({
            "resourceType": "Encounter", "id": uuid(&mut self.rng), "meta": meta,
            "status": "planned", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "type": [coding(CARE_CODES, "9f03dfbb-7a97-45a5-94db-d4c3501714a9")],
            "subject": {"reference": format!("Patient/{}", c.patient_id)},
            "period": {"start": (day + Duration::days(30)).to_string()},
        });
        c.conditions.push(Sent {
            resource: condition.clone(),
        });
        if home {
            c.home_care = Some(HomeCare {
                plan_id: plan["id"].as_str().unwrap_or_default().to_string(),
                start: day,
                end: None,
                doomed: self.fate.random_bool(DOOMED),
            });
        }
        c.plans.push(Sent {
            resource: plan.clone(),
        });
        out.extend([condition, plan, encounter]);
    }

    fn start_pathway(
        &mut self,
        c: &mut Citizen,
        day: NaiveDate,
        hour: u32,
        paragraph: &str,
        discharge: Option<(NaiveDate, String)>,
        out: &mut Vec<Value>,
    ) {
        let meta = self.meta(day, hour);
        let focus_id = uuid(&mut self.rng);
        let focus = match &discharge {
            Some((_, d)) => coding(SKS_SYSTEM, d),
            None => coding(
                ICPC2_SYSTEM,
                ["T90", "R95", "K77"].choose(&mut self.rng).expect("codes"),
            ),
        };
        let focus = json!({"resourceType": "Condition", "id": focus_id, "meta": meta, "code": focus,
            "subject": {"reference": format!("Patient/{}", c.patient_id)}});
        let rehab = paragraph == "§140";
        let mut referral = json!({
            "resourceType": "ServiceRequest", "id": uuid(&mut self.rng), "meta": meta,
            "status": "active", "intent": "order",
            "code": coding(CARE_CODES, if rehab { SERVICE_140 } else { SERVICE_119 }),
            "subject": {"reference": format!("Patient/{}", c.patient_id)},
            "authoredOn": day.to_string(),
            "reasonReference": [{"reference": format!("Condition/{focus_id}")}],
        });
        if let Some((discharged, _)) = &discharge {
            referral["category"] = json!([coding(CARE_CODES, CATEGORY_ALMEN)]);
            // The hospital discharge the rehabilitation plan follows (the LPR contact's end).
            referral["extension"] =
                json!([{"url": DISCHARGE_EXTENSION, "valueDate": discharged.to_string()}]);
        }
        let start = day + Duration::days(self.rng.random_range(1..5));
        let pathway = json!({
            "resourceType": "CarePlan", "id": uuid(&mut self.rng), "meta": meta,
            "status": "active", "intent": "plan",
            "category": [coding(CARE_CODES, if rehab { PATHWAY_140 } else { PATHWAY_119 })],
            "subject": {"reference": format!("Patient/{}", c.patient_id)},
            "period": {"start": start.to_string()},
            "activity": [{"detail": {"status": "scheduled"}}],
        });
        let catalogue = if rehab { &self.cat140 } else { &self.cat119 };
        let code = catalogue.choose(&mut self.rng).cloned().unwrap_or_default();
        let plan = json!({
            "resourceType": "CarePlan", "id": uuid(&mut self.rng), "meta": meta,
            "status": "active", "intent": "plan",
            "subject": {"reference": format!("Patient/{}", c.patient_id)},
            "period": {"start": start.to_string()},
            "activity": [{"detail": {"code": coding(FSIII, &code), "status": "scheduled"}}],
        });
        c.pathway = Some(Sent {
            resource: pathway.clone(),
        });
        c.pathway_140 = rehab;
        c.plans.push(Sent {
            resource: plan.clone(),
        });
        out.extend([focus, referral, pathway, plan]);
    }

    /// Later days: follow-up results, completed visits, plans ending or stopping,
    /// pathways ending or cancelled, and now and then an entered-in-error.
    fn follow_up(&mut self, c: &mut Citizen, day: NaiveDate, hour: u32, out: &mut Vec<Value>) {
        // Courses (§119/§140) move faster than long-term care.
        let chance = if c.pathway.is_some() { 0.35 } else { 0.15 };
        if !self.rng.random_bool(chance) {
            return;
        }
        let meta = self.meta(day, hour);
        if let Some(plan) = c.plans.first().cloned() {
            let r = &plan.resource;
            let started = r["period"]["start"].as_str().unwrap_or("").to_string();
            if started.as_str() > day.to_string().as_str() {
                return;
            }
            let code = r["activity"][0]["detail"]["code"].clone();
            let home = c
                .home_care
                .as_mut()
                .filter(|h| r["id"].as_str() == Some(h.plan_id.as_str()));
            let action = match (
                home.as_ref().map(|h| h.doomed),
                self.rng.random_range(0..10),
            ) {
                // A home-care plan's fate was decided when it started.
                (Some(true), 7 | 8) => 9,
                (Some(false), 9) => 0,
                // Home care is long-term: most of its follow-ups are visits, and a plan
                // ends after about a year.
                (Some(false), 7 | 8) if !self.fate.random_bool(0.1) => 0,
                (_, a) => a,
            };
            if let Some(h) = home
                && matches!(action, 7 | 8)
            {
                h.end = Some(day);
            }
            match action {
                // A visit delivering the intervention.
                0..=3 => out.push(json!({
                    "resourceType": "Procedure", "id": uuid(&mut self.rng), "meta": meta,
                    "status": "completed", "code": code,
                    "subject": {"reference": format!("Patient/{}", c.patient_id)},
                    "performedDateTime": stamp(day, hour),
                })),
                // A follow-up result on the plan.
                4..=6 => {
                    out.push(json!({
                        "resourceType": "Observation", "id": uuid(&mut self.rng), "meta": meta,
                        "status": "final", "code": coding("http://snomed.info/sct", FOLLOW_UP_CODE),
                        "valueCodeableConcept": coding(FSIII, RESULTS.choose(&mut self.rng).expect("codes")),
                        "subject": {"reference": format!("Patient/{}", c.patient_id)},
                        "focus": [{"reference": format!("CarePlan/{}", r["id"].as_str().unwrap_or(""))}],
                        "effectiveDateTime": stamp(day, hour),
                    }));
                    // The observation refers to the plan: the plan travels with it.
                    out.push(r.clone());
                }
                // The plan ends: an update of the same id.
                7 | 8 => {
                    let mut ended = r.clone();
                    ended["meta"] = meta.clone();
                    ended["status"] = json!("completed");
                    ended["period"]["end"] = json!(day.to_string());
                    ended["activity"][0]["detail"]["status"] = json!("completed");
                    out.push(ended);
                    c.plans.remove(0);
                    if let Some(pw) = c.pathway.take() {
                        if c.pathway_140 {
                            c.completed_140 = Some(day);
                        }
                        let mut done = pw.resource.clone();
                        done["meta"] = meta.clone();
                        done["status"] = json!("completed");
                        done["period"]["end"] = json!(day.to_string());
                        done["activity"][0]["detail"]["status"] = json!("completed");
                        out.push(done);
                    }
                }
                // Registered in error: sent again with that status.
                _ => {
                    let mut wrong = r.clone();
                    wrong["meta"] = meta.clone();
                    wrong["status"] = json!("entered-in-error");
                    wrong["activity"][0]["detail"]["status"] = json!("entered-in-error");
                    out.push(wrong);
                    c.plans.remove(0);
                }
            }
            // Referenced conditions travel with the resources that point at them.
            for cond in &c.conditions {
                out.push(cond.resource.clone());
            }
        } else if let Some(pw) = c.pathway.take() {
            // A pathway whose interventions are gone: cancelled, with a reason.
            let mut stopped = pw.resource.clone();
            stopped["meta"] = meta;
            stopped["status"] = json!("revoked");
            stopped["activity"][0]["detail"]["status"] = json!("cancelled");
            stopped["activity"][0]["detail"]["statusReason"] = coding(
                CARE_CODES,
                CANCEL_REASONS.choose(&mut self.rng).expect("codes"),
            );
            out.push(stopped);
        }
    }

    fn bundle(
        &mut self,
        day: NaiveDate,
        patient_id: &str,
        cpr: &str,
        sor: &str,
        resources: Vec<Value>,
    ) -> Value {
        let patient = json!({
            "resourceType": "Patient", "id": patient_id, "meta": self.meta(day, 21),
            "identifier": [{"use": "official", "system": CPR_SYSTEM, "value": cpr.replace('-', "")}],
            "deceasedBoolean": false,
            "active": true,
            "managingOrganization": {"identifier": {"use": "official", "system": SOR_SYSTEM, "value": sor}},
        });
        let mut entries =
            vec![json!({"fullUrl": format!("Patient/{patient_id}"), "resource": patient})];
        let mut seen = std::collections::HashSet::new();
        for r in resources {
            let key = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            );
            if seen.insert(key.clone()) {
                entries.push(json!({"fullUrl": key, "resource": r}));
            }
        }
        json!({
            "resourceType": "Bundle", "id": uuid(&mut self.rng), "type": "collection",
            "meta": self.meta(day, 22),
            "timestamp": format!("{day}T23:00:00+01:00"),
            "entry": entries,
        })
    }

    /// Breaks a share of the day's bundles in ways the reader must catch; never more
    /// than 4 %, so a generated delivery is accepted with warnings.
    fn apply_defects(&mut self, bundles: &mut [Value]) {
        let cap = (bundles.len() as f64 * 0.04).floor() as usize;
        let mut made = 0;
        for b in bundles.iter_mut() {
            if made >= cap || !self.rng.random_bool(self.defects) {
                continue;
            }
            made += 1;
            let entries = b["entry"].as_array_mut().expect("entries");
            match self.rng.random_range(0..4) {
                0 => {
                    if let Some(m) = entries
                        .last_mut()
                        .and_then(|e| e["resource"]["meta"].as_object_mut())
                    {
                        m.remove("lastUpdated");
                    }
                }
                1 => entries[0]["resource"]["identifier"]
                    .as_array_mut()
                    .expect("identifiers")
                    .push(json!({"system": CPR_SYSTEM, "value": "6101804002"})),
                2 => {
                    entries[0]["resource"]["managingOrganization"]["identifier"]["value"] =
                        json!("123")
                }
                _ => {
                    if let Some(last) = entries.last_mut() {
                        last["resource"]["subject"] =
                            json!({"reference": "Patient/does-not-exist"});
                    }
                }
            }
        }
    }
}

/// Writes bundles as NDJSON.
pub fn write_ndjson(path: &Path, bundles: &[Value]) -> std::io::Result<u64> {
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for b in bundles {
        serde_json::to_writer(&mut w, b)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(bundles.len() as u64)
}
