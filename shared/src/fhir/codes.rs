//! The code systems and fixed codes of the KL Gateway bundles.

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

pub(super) fn lookup(table: &[(&str, &'static str)], code: &str) -> Option<&'static str> {
    table.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}
