//! Reference data the platform checks and describes deliveries with: the
//! municipalities and their regions, the SOR -> municipality map, the FSIII and
//! §119/§140 code lists. One place loads them, for the process step, publish, the
//! monitor and the test-data generator alike; today from the copies compiled into
//! the binary.

use std::collections::HashMap;
use std::sync::OnceLock;

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
        csv_rows(KOMMUNER_CSV)
            .map(|r| Kommune {
                code: format!("{:0>3}", r["kommunekode"].trim()),
                name: r["kommunenavn"].clone(),
                region_code: r["regionskode"].clone(),
                region_name: r["regionsnavn"].clone(),
            })
            .collect()
    })
}

/// The built-in copies (the repository's `reference/` folder), compiled in.
pub const SOR_KOMMUNE_CSV: &str = include_str!("../../reference/sor-kommune.csv");
pub const FSIII_CSV: &str = include_str!("../../reference/fsiii.csv");
pub const CATALOGUE_CSV: &str = include_str!("../../reference/catalogue-119-140.csv");
/// The 98 municipalities (kommunekode, name, regionskode, region).
pub const KOMMUNER_CSV: &str = include_str!("../../reference/kommuner.csv");

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
        let r = GatewayReference::builtin();
        assert!(!r.sor.is_empty());
        for kommune in r.sor.values() {
            assert!(kommuner().iter().any(|k| &k.code == kommune), "{kommune}");
        }
    }
}
