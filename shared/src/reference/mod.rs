//! Reference data the platform checks and describes deliveries with.
//!
//! - The 98 municipalities and their regions are fixed by law and compiled in
//!   ([`kommuner`]).
//! - Everything that changes more often than the platform is deployed is a
//!   [`Kind`]: the SOR -> municipality map, the FSIII terminology (the KL
//!   terminology's code system, UUIDs and legacy keys), the §119/§140 catalogue, the
//!   SKS diagnoses, the register of expected reporting units and the municipalities'
//!   health clusters. Operators publish a
//!   new version with `naerdata reference load KIND FILE` ([`store::publish`]); the
//!   process step and the monitor read the current versions at the start of every
//!   run ([`store::current`]), so a new version needs no deploy. The copies in the
//!   repository's `reference/` folder are compiled in and used while a kind has no
//!   loaded version (and in tests).
//!
//! Receipts and quality metrics name the versions a delivery was checked against.

mod fsiii;
mod parse;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

pub use fsiii::well_formed as well_formed_code;
pub use parse::{Cluster, Unit};

/// A municipality and the region it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kommune {
    /// Three digits, zero-padded (`101`, `083`).
    pub code: String,
    pub name: String,
    pub region_code: String,
    pub region_name: String,
}

/// The 98 municipalities, in the order of `reference/kommuner.csv`.
pub fn kommuner() -> &'static [Kommune] {
    static K: OnceLock<Vec<Kommune>> = OnceLock::new();
    K.get_or_init(|| {
        parse::records(KOMMUNER_CSV)
            .expect("the built-in kommuner.csv")
            .1
            .into_iter()
            .map(|(_, r)| Kommune {
                code: format!("{:0>3}", r[0].trim()),
                name: r[1].to_string(),
                region_code: r[2].to_string(),
                region_name: r[3].to_string(),
            })
            .collect()
    })
}

/// Region Hovedstaden (1084) and Region Sjælland (1085) merge into Region Østdanmark
/// on this day (the 2024 health reform); the other three regions stay.
pub fn oestdanmark_from() -> NaiveDate {
    NaiveDate::from_ymd_opt(2027, 1, 1).expect("a date")
}

/// Region Østdanmark: 1086 is our placeholder code until one is issued.
pub const OESTDANMARK: (&str, &str) = ("1086", "Region Østdanmark");

impl Kommune {
    /// The region (code, name) the municipality belongs to on `day`.
    pub fn region_on(&self, day: NaiveDate) -> (&str, &str) {
        if self.merges_into_oestdanmark() && day >= oestdanmark_from() {
            OESTDANMARK
        } else {
            (&self.region_code, &self.region_name)
        }
    }

    pub fn merges_into_oestdanmark(&self) -> bool {
        self.region_code == "1084" || self.region_code == "1085"
    }
}

/// The built-in copies (the repository's `reference/` folder), compiled in.
pub const SOR_KOMMUNE_CSV: &str = include_str!("../../../reference/sor-kommune.csv");
/// The KL terminology's FSIII code system (kl-term 2.3.0), as extracted from the
/// KL Gateway guides' sources (`reference/kl/SOURCES.md`).
pub const FSIII_CSV: &str = include_str!("../../../reference/kl/fsiii.csv");
pub const CATALOGUE_CSV: &str = include_str!("../../../reference/catalogue-119-140.csv");
/// The SKS diagnoses that reuse an ICD-10 code (the Danish ICD-10 supplement).
pub const SKS_CSV: &str = include_str!("../../../reference/kl/sks-diagnoser-icd10-subset.csv");
/// The register of expected reporting units: empty until operators load one.
pub const UNITS_CSV: &str = include_str!("../../../reference/enheder.csv");
/// Municipality -> health cluster (sundhedsklynge; from 2027 also its sundhedsråd),
/// hospital and region per period, each row with its public source or marked
/// provisional (`reference/SOURCES-klynger.md`).
pub const CLUSTERS_CSV: &str = include_str!("../../../reference/klynger.csv");
/// The 98 municipalities (kommunekode, name, regionskode, region).
pub const KOMMUNER_CSV: &str = include_str!("../../../reference/kommuner.csv");

/// A kind of reference data that operators can load a new version of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Sor,
    Fsiii,
    Catalogue,
    Sks,
    Units,
    Clusters,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Sor,
        Kind::Fsiii,
        Kind::Catalogue,
        Kind::Sks,
        Kind::Units,
        Kind::Clusters,
    ];

    /// The name on the command line and in the lake's `reference/<name>/`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sor => "sor",
            Kind::Fsiii => "fsiii",
            Kind::Catalogue => "catalogue",
            Kind::Sks => "sks",
            Kind::Units => "units",
            Kind::Clusters => "clusters",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// What a file of this kind holds and its columns, for help texts and errors.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Sor => {
                "SOR code -> municipality (columns sor_code,kommunekode; every one of the 98 municipalities needs a code)"
            }
            Kind::Fsiii => {
                "the FSIII code system as the KL terminology publishes it (columns system,code,display,parent_or_group,extra)"
            }
            Kind::Catalogue => {
                "the §119/§140 intervention catalogue (columns code,paragraph,display)"
            }
            Kind::Sks => "SKS diagnosis codes (columns code,display)",
            Kind::Units => {
                "the register of expected reporting units (columns dataset,unit,name,kommunekode,valid_from,valid_to)"
            }
            Kind::Clusters => {
                "municipality -> health cluster (columns kommunekode,klynge,sundhedsraad,hospital,regionskode,valid_from,valid_to,source; every municipality with a current row)"
            }
        }
    }

    pub fn builtin_csv(self) -> &'static str {
        match self {
            Kind::Sor => SOR_KOMMUNE_CSV,
            Kind::Fsiii => FSIII_CSV,
            Kind::Catalogue => CATALOGUE_CSV,
            Kind::Sks => SKS_CSV,
            Kind::Units => UNITS_CSV,
            Kind::Clusters => CLUSTERS_CSV,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a reference file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("the {kind} reference file is not valid ({} problem(s)): {}", problems.len(), problems.iter().take(10).cloned().collect::<Vec<_>>().join("; "))]
    Invalid { kind: Kind, problems: Vec<String> },
    #[error("reference data in the lake: {0}")]
    Store(#[from] crate::ports::StoreError),
    #[error("reference data in the lake: {0}")]
    Corrupt(String),
}

/// The content-derived version of a built-in copy.
pub fn builtin_version(kind: Kind) -> String {
    format!(
        "builtin-{}",
        &sha256_hex(kind.builtin_csv().as_bytes())[..12]
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a code means for us.
#[derive(Debug, Clone)]
pub struct CodeInfo {
    /// What the code may stand for: `J` home-care condition, `I` nursing condition,
    /// `R` §119/§140 condition, `H` care intervention, `G` nursing intervention, `C`
    /// §119/§140 intervention, `B` severity, `E` follow-up result, `-` another
    /// branch of FSIII (goal types, aids, general information ...).
    pub group: char,
    /// Legal basis, for interventions and §119/§140 conditions.
    pub paragraph: Option<String>,
    /// The code stored: the short legacy key (`J1.1`) when the concept has one, so
    /// both spellings land the same; otherwise the UUID.
    pub code: String,
    /// The top-level FSIII group's display, for messages.
    pub branch: String,
}

/// SOR -> municipality, and the FSIII and §119/§140 code lists (legacy keys and UUIDs).
pub struct GatewayReference {
    pub sor: HashMap<String, String>,
    pub codes: HashMap<String, CodeInfo>,
    /// SKS diagnosis codes (referral diagnoses are flagged when not among them).
    pub sks: HashSet<String>,
}

/// Every kind, parsed, with the version each came from.
pub struct ReferenceSet {
    pub gateway: GatewayReference,
    pub units: Vec<Unit>,
    /// Empty until a list is loaded (the marts then roll up to region only).
    pub clusters: Vec<Cluster>,
    versions: BTreeMap<Kind, String>,
}

impl ReferenceSet {
    /// The built-in copies (parsed once per process).
    pub fn builtin() -> Arc<ReferenceSet> {
        static R: OnceLock<Arc<ReferenceSet>> = OnceLock::new();
        R.get_or_init(|| {
            let texts: BTreeMap<Kind, (String, &str)> = Kind::ALL
                .into_iter()
                .map(|k| (k, (builtin_version(k), k.builtin_csv())))
                .collect();
            Arc::new(ReferenceSet::from_texts(&texts).expect("the built-in reference data"))
        })
        .clone()
    }

    /// Parses one text per kind (as validated when it was loaded).
    pub fn from_texts(
        texts: &BTreeMap<Kind, (String, &str)>,
    ) -> Result<ReferenceSet, ReferenceError> {
        let text = |k: Kind| texts.get(&k).map_or(k.builtin_csv(), |(_, t)| t);
        let invalid = |kind| move |problems| ReferenceError::Invalid { kind, problems };
        let sor = parse::sor(text(Kind::Sor)).map_err(invalid(Kind::Sor))?;
        let mut codes = fsiii::codes(text(Kind::Fsiii)).map_err(invalid(Kind::Fsiii))?;
        for (code, paragraph) in
            parse::catalogue(text(Kind::Catalogue)).map_err(invalid(Kind::Catalogue))?
        {
            let branch = codes
                .get(&code)
                .map(|c| c.branch.clone())
                .unwrap_or_default();
            codes.insert(
                code.clone(),
                CodeInfo {
                    group: 'C',
                    paragraph: Some(paragraph),
                    code,
                    branch,
                },
            );
        }
        let sks = parse::sks(text(Kind::Sks)).map_err(invalid(Kind::Sks))?;
        let units = parse::units(text(Kind::Units)).map_err(invalid(Kind::Units))?;
        let clusters = parse::clusters(text(Kind::Clusters)).map_err(invalid(Kind::Clusters))?;
        Ok(ReferenceSet {
            gateway: GatewayReference { sor, codes, sks },
            units,
            clusters,
            versions: Kind::ALL
                .into_iter()
                .map(|k| {
                    let v = texts
                        .get(&k)
                        .map_or_else(|| builtin_version(k), |(v, _)| v.clone());
                    (k, v)
                })
                .collect(),
        })
    }

    /// The version each kind came from.
    pub fn version(&self, kind: Kind) -> &str {
        self.versions.get(&kind).map_or("", String::as_str)
    }

    /// The versions of `kinds`, as receipts and metrics record them.
    pub fn versions_of(&self, kinds: &[Kind]) -> BTreeMap<String, String> {
        kinds
            .iter()
            .map(|k| (k.name().to_string(), self.version(*k).to_string()))
            .collect()
    }

    /// The registered units of `dataset` valid on some day of `from..=to`.
    pub fn units_of<'a>(
        &'a self,
        dataset: &'a str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Iterator<Item = &'a Unit> + 'a {
        self.units.iter().filter(move |u| {
            u.dataset == dataset && u.valid_from <= to && u.valid_to.is_none_or(|e| e >= from)
        })
    }
}

/// The kinds a gateway (FHIR) delivery is checked against.
pub const GATEWAY_KINDS: &[Kind] = &[Kind::Sor, Kind::Fsiii, Kind::Catalogue, Kind::Sks];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninety_eight_municipalities_in_five_regions() {
        let k = kommuner();
        assert_eq!(k.len(), 98);
        assert!(k.iter().all(|k| k.code.len() == 3 && !k.name.is_empty()));
        let regions: std::collections::BTreeSet<&str> =
            k.iter().map(|k| k.region_code.as_str()).collect();
        assert_eq!(regions.len(), 5, "{regions:?}");
        assert_eq!(
            k.iter().find(|k| k.code == "101").map(|k| k.name.as_str()),
            Some("København")
        );
    }

    #[test]
    fn every_sor_code_maps_to_a_known_municipality() {
        let r = ReferenceSet::builtin();
        assert!(!r.gateway.sor.is_empty());
        for kommune in r.gateway.sor.values() {
            assert!(kommuner().iter().any(|k| &k.code == kommune), "{kommune}");
        }
    }

    #[test]
    fn the_builtin_terminology_is_the_kl_one() {
        let r = ReferenceSet::builtin();
        let c = &r.gateway.codes;
        // 414 concepts, each under its UUID and its legacy key.
        assert!(c.len() >= 828, "{}", c.len());
        let j = &c["J1.1"];
        assert_eq!((j.group, j.code.as_str()), ('J', "J1.1"));
        // A UUID lands as its legacy key.
        let uuid = c
            .iter()
            .find(|(k, v)| v.code == "J1.1" && k.len() == 36)
            .map(|(k, _)| k.clone())
            .unwrap();
        assert_eq!(c[&uuid].code, "J1.1");
        assert_eq!(c["B4"].group, 'B');
        assert_eq!(c["E3"].group, 'E');
        assert_eq!(c["G1.5"].group, 'G');
        assert_eq!(c["G1.5"].paragraph.as_deref(), Some("§138"));
        assert_eq!(c["H1.1"].paragraph.as_deref(), Some("§83"));
        // §119/§140 interventions from the catalogue, conditions from the tree.
        let afklarende = &c["6eddbaf7-2a73-49d4-91e7-6138d419f58c"];
        assert_eq!(
            (afklarende.group, afklarende.paragraph.as_deref()),
            ('C', Some("§119"))
        );
        assert!(
            c.values()
                .any(|v| v.group == 'R' && v.paragraph.as_deref() == Some("§140"))
        );
        assert!(r.gateway.sks.contains("DS721"));
        assert!(r.units.is_empty());
        assert!(r.version(Kind::Fsiii).starts_with("builtin-"));
    }
}
