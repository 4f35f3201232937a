//! Deliveries from a careless supplier: the mistakes that put CPR numbers where they
//! do not belong, made from clean generated files so the CPR numbers are the
//! population's own (synthetic, day + 60).
//!
//! Families (each with several members, CSV and FHIR): the header row left out;
//! two columns swapped (an id and the CPR, the CPR and the reporting unit, and the
//! CPR into a free-text code); the CPR with a separator other than a hyphen; the CPR
//! as (part of) the file name; in FHIR bundles the CPR as a resource id, a bundle id,
//! in a reference and in a code. The platform must reject or withhold every one of
//! them and store none of their CPR numbers outside landing.

use std::path::PathBuf;

use serde_json::Value;

use super::Generated;

/// A careless variant's text and, when the mistake is the name, its file name.
type Variant = Option<(String, Option<String>)>;

/// One careless variant of a clean file.
struct Mistake {
    /// A stable name, also the file's name (unless the mistake is the name).
    name: &'static str,
    dataset: &'static str,
    make: fn(&str) -> Variant,
}

const MISTAKES: &[Mistake] = &[
    Mistake {
        name: "no-header",
        dataset: "almenpraksis.diagnose",
        make: no_header,
    },
    Mistake {
        name: "no-header",
        dataset: "speciallaege.kontakt",
        make: no_header,
    },
    Mistake {
        name: "swap-record-id-cpr",
        dataset: "almenpraksis.diagnose",
        make: |t| swap(t, "record_id", "cpr"),
    },
    Mistake {
        name: "swap-cpr-ydernummer",
        dataset: "almenpraksis.diagnose",
        make: |t| swap(t, "cpr", "ydernummer"),
    },
    Mistake {
        name: "swap-record-id-cpr",
        dataset: "almenpraksis.kontakt",
        make: |t| swap(t, "record_id", "cpr"),
    },
    Mistake {
        name: "swap-cpr-npu",
        dataset: "almenpraksis.laboratorie",
        make: |t| swap(t, "cpr", "npu_kode"),
    },
    Mistake {
        name: "swap-kontakt-id-cpr",
        dataset: "speciallaege.kontakt",
        make: |t| swap(t, "kontakt_id", "cpr"),
    },
    Mistake {
        name: "swap-dw-ek-kontakt-cpr",
        dataset: "lpr.kontakt",
        make: |t| swap(t, "dw_ek_kontakt", "cpr"),
    },
    Mistake {
        name: "cpr-spaced-in-record-id",
        dataset: "almenpraksis.diagnose",
        make: |t| cpr_into(t, "record_id", ' '),
    },
    Mistake {
        name: "cpr-slashed-in-kontakt-id",
        dataset: "speciallaege.kontakt",
        make: |t| cpr_into(t, "kontakt_id", '/'),
    },
    Mistake {
        name: "cpr-file-name",
        dataset: "almenpraksis.diagnose",
        make: cpr_file_name,
    },
    Mistake {
        name: "cpr-file-name",
        dataset: "kommune.gateway",
        make: cpr_file_name,
    },
    Mistake {
        name: "cpr-as-resource-id",
        dataset: "kommune.gateway",
        make: |t| fhir(t, FhirMistake::ResourceId),
    },
    Mistake {
        name: "cpr-as-bundle-id",
        dataset: "kommune.gateway",
        make: |t| fhir(t, FhirMistake::BundleId),
    },
    Mistake {
        name: "cpr-in-code",
        dataset: "kommune.gateway",
        make: |t| fhir(t, FhirMistake::Code),
    },
];

/// Writes the careless variants of the clean `files` beside them, on the last day
/// each dataset has. Returns the files written.
pub fn careless(files: &[Generated]) -> std::io::Result<Vec<Generated>> {
    let mut out = Vec::new();
    for m in MISTAKES {
        let Some(clean) = files.iter().rfind(|f| f.dataset == m.dataset) else {
            continue;
        };
        let text = super::read_text(&clean.path, m.dataset)?;
        let Some((body, name)) = (m.make)(&text) else {
            continue;
        };
        let ext = clean
            .path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("csv");
        let dir = clean.path.parent().expect("a day directory");
        let path: PathBuf = dir.join(match name {
            Some(n) => format!("{n}.{ext}"),
            None => format!("careless-{}.{ext}", m.name),
        });
        super::write_text(&path, &body, m.dataset)?;
        out.push(Generated {
            dataset: m.dataset.to_string(),
            path,
            rows: body.lines().count() as u64,
        });
    }
    Ok(out)
}

/// The first `n` data lines (and the header): careless files are small.
fn head(text: &str, n: usize) -> Vec<&str> {
    text.lines().take(n + 1).collect()
}

fn no_header(text: &str) -> Variant {
    let lines = head(text, 40);
    Some((lines[1..].join("\n") + "\n", None))
}

fn columns(header: &str) -> Vec<&str> {
    header.split(';').collect()
}

fn swap(text: &str, a: &str, b: &str) -> Variant {
    let lines = head(text, 40);
    let h = columns(lines[0]);
    let (i, j) = (
        h.iter().position(|c| *c == a)?,
        h.iter().position(|c| *c == b)?,
    );
    let mut out = vec![lines[0].to_string()];
    for l in &lines[1..] {
        let mut f: Vec<&str> = l.split(';').collect();
        f.swap(i, j);
        out.push(f.join(";"));
    }
    Some((out.join("\n") + "\n", None))
}

/// Every row's CPR (as `DDMMYY<sep>SSSS`) written into column `to` as well.
fn cpr_into(text: &str, to: &str, sep: char) -> Variant {
    let lines = head(text, 40);
    let h = columns(lines[0]);
    let (c, t) = (
        h.iter().position(|x| *x == "cpr")?,
        h.iter().position(|x| *x == to)?,
    );
    let mut out = vec![lines[0].to_string()];
    for l in &lines[1..] {
        let mut f: Vec<String> = l.split(';').map(str::to_string).collect();
        let digits: String = f[c].chars().filter(char::is_ascii_alphanumeric).collect();
        if digits.len() == 10 {
            f[t] = format!("{}{sep}{}", &digits[..6], &digits[6..]);
        }
        out.push(f.join(";"));
    }
    Some((out.join("\n") + "\n", None))
}

/// A few rows (so the content differs from the clean file) under a CPR as name.
fn cpr_file_name(text: &str) -> Variant {
    let lines: Vec<&str> = text.lines().take(6).collect();
    let cpr = first_cpr(text)?;
    // A trailing blank line (skipped by every reader) keeps a short file from being
    // byte-identical to the clean one, which would make it a duplicate.
    Some((lines.join("\n") + "\n\n", Some(format!("patient-{cpr}"))))
}

/// The first CPR in a clean file: the `cpr` column of a CSV, or a Patient's
/// identifier in a FHIR delivery.
fn first_cpr(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    if first.starts_with('{') {
        let b: Value = serde_json::from_str(first).ok()?;
        return patient_cpr(&b);
    }
    let c = columns(first).iter().position(|x| *x == "cpr")?;
    text.lines()
        .nth(1)
        .and_then(|l| l.split(';').nth(c))
        .map(str::to_string)
}

fn patient_cpr(bundle: &Value) -> Option<String> {
    bundle["entry"].as_array()?.iter().find_map(|e| {
        let r = &e["resource"];
        (r["resourceType"] == "Patient").then(|| {
            r["identifier"]
                .as_array()?
                .iter()
                .find(|i| i["system"] == crate::fhir::CPR_SYSTEM)?["value"]
                .as_str()
                .map(str::to_string)
        })?
    })
}

#[derive(Clone, Copy)]
enum FhirMistake {
    ResourceId,
    BundleId,
    Code,
}

/// The first bundles of a gateway file with the citizen's CPR put where it does not
/// belong.
fn fhir(text: &str, how: FhirMistake) -> Variant {
    let mut out = Vec::new();
    for line in text.lines().take(20) {
        let mut b: Value = serde_json::from_str(line).ok()?;
        let cpr = patient_cpr(&b)?;
        match how {
            FhirMistake::BundleId => b["id"] = Value::String(cpr),
            FhirMistake::ResourceId | FhirMistake::Code => {
                let entries = b["entry"].as_array_mut()?;
                let Some(e) = entries
                    .iter_mut()
                    .find(|e| e["resource"]["resourceType"] != "Patient")
                else {
                    continue;
                };
                let r = &mut e["resource"];
                if matches!(how, FhirMistake::ResourceId) {
                    // The id and every reference to it: a consistent, careless bundle.
                    let old = r["id"].as_str().unwrap_or_default().to_string();
                    let kind = r["resourceType"].as_str().unwrap_or_default().to_string();
                    let new = cpr.replace('-', "");
                    r["id"] = Value::String(new.clone());
                    let from = format!("{kind}/{old}");
                    let to = format!("{kind}/{new}");
                    let s = serde_json::to_string(&b).ok()?.replace(&from, &to);
                    b = serde_json::from_str(&s).ok()?;
                } else if let Some(codings) = r["code"]["coding"].as_array_mut() {
                    for c in codings {
                        c["display"] = Value::String(format!("borger {cpr}"));
                    }
                    r["code"]["text"] = Value::String(cpr.clone());
                }
            }
        }
        out.push(serde_json::to_string(&b).ok()?);
    }
    (!out.is_empty()).then(|| (out.join("\n") + "\n", None))
}
