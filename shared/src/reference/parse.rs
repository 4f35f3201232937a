//! Reading and checking the reference files (CSV with a header row, UTF-8). Every
//! problem is collected with its line, so an operator fixes a file in one go.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::NaiveDate;
use regex::Regex;

use super::kommuner;

/// The header and the records (with their line numbers) of a CSV text.
pub(super) type Records = (Vec<String>, Vec<(u64, csv::StringRecord)>);

pub(super) fn records(text: &str) -> Result<Records, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| format!("the header row cannot be read: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for rec in r.into_records() {
        let rec = rec.map_err(|e| format!("a row cannot be read: {e}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        rows.push((line, rec));
    }
    Ok((header, rows))
}

pub(super) fn column(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

/// The columns `names`, or one problem naming those missing.
fn columns<const N: usize>(header: &[String], names: [&str; N]) -> Result<[usize; N], Vec<String>> {
    let found = names.map(|n| column(header, n));
    if found.iter().all(Option::is_some) {
        Ok(found.map(|i| i.unwrap_or_default()))
    } else {
        let missing: Vec<&str> = names
            .iter()
            .zip(found)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| *n)
            .collect();
        Err(vec![format!(
            "the header lacks the column(s) {} (found {})",
            missing.join(", "),
            header.join(",")
        )])
    }
}

fn result<T>(value: T, problems: Vec<String>) -> Result<T, Vec<String>> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

fn kommunekode(raw: &str) -> Option<String> {
    let k = format!("{:0>3}", raw.trim());
    kommuner().iter().any(|m| m.code == k).then_some(k)
}

/// SOR code -> kommunekode. Every municipality needs at least one SOR code: a map
/// that lost one would reject all of its bundles.
pub(super) fn sor(text: &str) -> Result<HashMap<String, String>, Vec<String>> {
    let (header, rows) = records(text).map_err(|e| vec![e])?;
    let [sor, kommune] = columns(&header, ["sor_code", "kommunekode"])?;
    let mut problems = Vec::new();
    let mut map = HashMap::new();
    for (line, r) in &rows {
        let code = r[sor].trim();
        if code.is_empty() || code.len() > 20 || !code.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!(
                "line {line}: the SOR code {code:?} is not a number of at most 20 digits"
            ));
            continue;
        }
        let Some(k) = kommunekode(&r[kommune]) else {
            problems.push(format!(
                "line {line}: {:?} is not one of the 98 municipality codes",
                r[kommune].trim()
            ));
            continue;
        };
        if map.insert(code.to_string(), k).is_some() {
            problems.push(format!("line {line}: the SOR code {code} is listed twice"));
        }
    }
    let covered: HashSet<&String> = map.values().collect();
    let uncovered: Vec<&str> = kommuner()
        .iter()
        .filter(|k| !covered.contains(&k.code))
        .map(|k| k.code.as_str())
        .collect();
    if !uncovered.is_empty() && problems.is_empty() {
        problems.push(format!(
            "{} of the 98 municipalities have no SOR code (e.g. {}); their bundles would all be rejected",
            uncovered.len(),
            uncovered.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    result(map, problems)
}

/// §119/§140 catalogue: code -> paragraph.
pub(super) fn catalogue(text: &str) -> Result<Vec<(String, String)>, Vec<String>> {
    let (header, rows) = records(text).map_err(|e| vec![e])?;
    let [code, paragraph] = columns(&header, ["code", "paragraph"])?;
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (line, r) in &rows {
        let c = r[code].trim();
        let p = r[paragraph].trim();
        if !super::well_formed_code(c) {
            problems.push(format!("line {line}: {c:?} is not a UUID or an FSIII key"));
        } else if !matches!(p, "§119" | "§140") {
            problems.push(format!(
                "line {line}: the paragraph must be §119 or §140, not {p:?}"
            ));
        } else if !seen.insert(c.to_string()) {
            problems.push(format!("line {line}: the code {c} is listed twice"));
        } else {
            out.push((c.to_string(), p.to_string()));
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push("the catalogue lists no code".into());
    }
    result(out, problems)
}

/// SKS diagnosis codes (`D` + letter + digits/letters, as SKS writes them).
pub(super) fn sks(text: &str) -> Result<HashSet<String>, Vec<String>> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^D[A-Z][0-9A-Z]{1,8}$").expect("SKS pattern"));
    let (header, rows) = records(text).map_err(|e| vec![e])?;
    let [code, display] = columns(&header, ["code", "display"])?;
    let mut problems = Vec::new();
    let mut out = HashSet::with_capacity(rows.len());
    for (line, r) in &rows {
        let c = r[code].trim();
        if !re.is_match(c) {
            problems.push(format!("line {line}: {c:?} is not an SKS diagnosis code (D, a letter, then digits or letters)"));
        } else if r[display].trim().is_empty() {
            problems.push(format!("line {line}: {c} has no display text"));
        } else if !out.insert(c.to_string()) {
            problems.push(format!("line {line}: the code {c} is listed twice"));
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push("no SKS code is listed".into());
    }
    result(out, problems)
}

/// A reporting unit that is expected to deliver (a GP clinic by ydernummer, a
/// specialist practice, a hospital department) while it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The dataset (contract id) it delivers.
    pub dataset: String,
    /// Its value in the dataset's reporting-unit column.
    pub unit: String,
    pub name: String,
    pub kommunekode: Option<String>,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

fn date(raw: &str) -> Result<Option<NaiveDate>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("{raw:?} is not a date (YYYY-MM-DD)"))
}

/// A row's validity period (`valid_from` required, `valid_to` open or not before it).
fn period(from: &str, to: &str) -> Result<(NaiveDate, Option<NaiveDate>), String> {
    match (date(from)?, date(to)?) {
        (None, _) => Err("valid_from is required".into()),
        (Some(f), Some(t)) if t < f => Err("valid_to is before valid_from".into()),
        (Some(f), t) => Ok((f, t)),
    }
}

/// Whether two validity periods share a day.
fn overlap(a: (NaiveDate, Option<NaiveDate>), b: (NaiveDate, Option<NaiveDate>)) -> bool {
    a.0 <= b.1.unwrap_or(NaiveDate::MAX) && b.0 <= a.1.unwrap_or(NaiveDate::MAX)
}

/// The register of expected reporting units. Which datasets and unit spellings are
/// valid is checked against the contracts by [`super::store::check`].
pub(super) fn units(text: &str) -> Result<Vec<Unit>, Vec<String>> {
    let (header, rows) = records(text).map_err(|e| vec![e])?;
    let [dataset, unit, name, kommune, from, to] = columns(
        &header,
        [
            "dataset",
            "unit",
            "name",
            "kommunekode",
            "valid_from",
            "valid_to",
        ],
    )?;
    let mut problems = Vec::new();
    let mut out: Vec<Unit> = Vec::new();
    for (line, r) in &rows {
        let (valid_from, valid_to) = match period(&r[from], &r[to]) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let k = r[kommune].trim();
        let kommunekode = if k.is_empty() {
            None
        } else if let Some(k) = kommunekode(k) {
            Some(k)
        } else {
            problems.push(format!(
                "line {line}: {k:?} is not one of the 98 municipality codes"
            ));
            continue;
        };
        let u = Unit {
            dataset: r[dataset].trim().to_string(),
            unit: r[unit].trim().to_string(),
            name: r[name].trim().to_string(),
            kommunekode,
            valid_from,
            valid_to,
        };
        if u.dataset.is_empty() || u.unit.is_empty() {
            problems.push(format!("line {line}: dataset and unit are required"));
            continue;
        }
        // The same unit twice is allowed only for periods that do not overlap.
        let overlaps = out.iter().any(|o| {
            o.dataset == u.dataset
                && o.unit == u.unit
                && overlap((o.valid_from, o.valid_to), (u.valid_from, u.valid_to))
        });
        if overlaps {
            problems.push(format!(
                "line {line}: {} {} is registered twice for overlapping periods",
                u.dataset, u.unit
            ));
            continue;
        }
        out.push(u);
    }
    result(out, problems)
}

/// A municipality's health cluster (sundhedsklynge; from 2027 its sundhedsråd) and
/// acute hospital for a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub kommunekode: String,
    pub klynge: String,
    pub sundhedsraad: String,
    pub hospital: String,
    pub regionskode: String,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
    /// Where the row comes from (a public list), or `provisional`.
    pub source: String,
}

/// Health clusters: every municipality in its own region, periods that do not overlap,
/// and (for a loaded file) every one of the 98 municipalities with a current row.
pub(super) fn clusters(text: &str) -> Result<Vec<Cluster>, Vec<String>> {
    let (header, rows) = records(text).map_err(|e| vec![e])?;
    let [kommune, klynge, raad, hospital, region, from, to, source] = columns(
        &header,
        [
            "kommunekode",
            "klynge",
            "sundhedsraad",
            "hospital",
            "regionskode",
            "valid_from",
            "valid_to",
            "source",
        ],
    )?;
    let mut problems = Vec::new();
    let mut out: Vec<Cluster> = Vec::new();
    for (line, r) in &rows {
        let Some(k) = kommunekode(&r[kommune]) else {
            problems.push(format!(
                "line {line}: {:?} is not one of the 98 municipality codes",
                r[kommune].trim()
            ));
            continue;
        };
        let (valid_from, valid_to) = match period(&r[from], &r[to]) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let m = kommuner()
            .iter()
            .find(|m| m.code == k)
            .expect("a code kommunekode() accepted");
        let home = m.region_on(valid_from).0;
        if home != r[region].trim() {
            problems.push(format!(
                "line {line}: municipality {k} lies in region {home} from {valid_from}, not {:?}",
                r[region].trim()
            ));
            continue;
        }
        // A row cannot span the regions' merger: its region would be wrong on one side.
        let merger = super::oestdanmark_from();
        if m.merges_into_oestdanmark()
            && valid_from < merger
            && valid_to.is_none_or(|t| t >= merger)
        {
            problems.push(format!(
                "line {line}: municipality {k} moves to Region Østdanmark on {merger}: \
                 end this row on the day before and start a new one"
            ));
            continue;
        }
        if r[klynge].trim().is_empty() || r[source].trim().is_empty() {
            problems.push(format!("line {line}: klynge and source are required"));
            continue;
        }
        let c = Cluster {
            kommunekode: k,
            klynge: r[klynge].trim().to_string(),
            sundhedsraad: r[raad].trim().to_string(),
            hospital: r[hospital].trim().to_string(),
            regionskode: r[region].trim().to_string(),
            valid_from,
            valid_to,
            source: r[source].trim().to_string(),
        };
        let overlaps = out.iter().any(|o| {
            o.kommunekode == c.kommunekode
                && overlap((o.valid_from, o.valid_to), (c.valid_from, c.valid_to))
        });
        if overlaps {
            problems.push(format!(
                "line {line}: municipality {} has two clusters for overlapping periods",
                c.kommunekode
            ));
            continue;
        }
        out.push(c);
    }
    // An empty register (the built-in one) is no register; a loaded one is whole.
    if !out.is_empty() && problems.is_empty() {
        let current: Vec<&str> = kommuner()
            .iter()
            .filter(|m| {
                !out.iter()
                    .any(|c| c.kommunekode == m.code && c.valid_to.is_none())
            })
            .map(|m| m.code.as_str())
            .collect();
        if !current.is_empty() {
            problems.push(format!(
                "{} of the 98 municipalities have no current cluster (e.g. {})",
                current.len(),
                current
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    result(out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sor_map_must_cover_every_municipality_once() {
        let full = super::super::SOR_KOMMUNE_CSV;
        assert_eq!(sor(full).unwrap().len(), 98);
        // One municipality dropped.
        let short: String = full
            .lines()
            .filter(|l| !l.contains(",101,"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = sor(&short).unwrap_err().join("\n");
        assert!(
            e.contains("1 of the 98 municipalities have no SOR code (e.g. 101)"),
            "{e}"
        );
        // A duplicate, a bad code and an unknown municipality, each with its line.
        let bad = format!("{full}990101000000000,147,x,true\nABC,101,x,true\n123,999,x,true\n");
        let e = sor(&bad).unwrap_err().join("\n");
        assert!(
            e.contains("line 100: the SOR code 990101000000000 is listed twice"),
            "{e}"
        );
        assert!(e.contains("line 101"), "{e}");
        assert!(e.contains("line 102: \"999\" is not one of the 98"), "{e}");
        let e = sor("sor,kommune\n1,101\n").unwrap_err().join("\n");
        assert!(
            e.contains("lacks the column(s) sor_code, kommunekode"),
            "{e}"
        );
    }

    #[test]
    fn units_need_dates_in_order_and_no_overlap() {
        let ok = "dataset,unit,name,kommunekode,valid_from,valid_to\n\
                  almenpraksis.diagnose,123456,Lægerne i Byen,101,2020-01-01,2026-12-31\n\
                  almenpraksis.diagnose,123456,Lægerne i Byen,101,2027-01-01,\n";
        let u = units(ok).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].valid_to, None);
        let bad = "dataset,unit,name,kommunekode,valid_from,valid_to\n\
                   almenpraksis.diagnose,123456,A,101,2020-01-01,\n\
                   almenpraksis.diagnose,123456,A,101,2021-01-01,\n\
                   almenpraksis.diagnose,654321,B,101,2021-01-01,2020-01-01\n\
                   almenpraksis.diagnose,111111,C,101,01-01-2021,\n";
        let e = units(bad).unwrap_err().join("\n");
        assert!(
            e.contains("line 3: almenpraksis.diagnose 123456 is registered twice"),
            "{e}"
        );
        assert!(e.contains("line 4: valid_to is before valid_from"), "{e}");
        assert!(e.contains("line 5: \"01-01-2021\" is not a date"), "{e}");
    }

    #[test]
    fn clusters_cover_every_municipality_in_its_region() {
        // Rows for the municipalities that stay in their region first, then the ones
        // that move to Region Østdanmark on 2027-01-01 (one row each side).
        let mut rows = String::new();
        let mut moving = String::new();
        for k in kommuner() {
            if k.merges_into_oestdanmark() {
                moving.push_str(&format!(
                    "{},Klynge,,H,{},2024-01-01,2026-12-31,test\n{},Klynge,Sundhedsråd,H,1086,2027-01-01,,test\n",
                    k.code, k.region_code, k.code
                ));
            } else {
                rows.push_str(&format!(
                    "{},Klynge {},,Hospital,{},2024-01-01,,test\n",
                    k.code, k.region_name, k.region_code
                ));
            }
        }
        rows.push_str(&moving);
        let header =
            "kommunekode,klynge,sundhedsraad,hospital,regionskode,valid_from,valid_to,source\n";
        let all = clusters(&format!("{header}{rows}")).unwrap();
        assert_eq!(all.iter().filter(|c| c.valid_to.is_none()).count(), 98);
        // A row across the merger, or in the old region after it, is refused.
        for bad in [
            "101,A,,H,1084,2024-01-01,,x\n",
            "101,A,,H,1084,2027-01-01,,x\n",
        ] {
            let e = clusters(&format!("{header}{bad}")).unwrap_err().join("\n");
            assert!(
                e.contains("Region Østdanmark on 2027-01-01") || e.contains("lies in region 1086"),
                "{bad}: {e}"
            );
        }
        assert!(clusters(header).unwrap().is_empty(), "none loaded");
        let e = clusters(&format!("{header}101,A,,H,1081,2024-01-01,,x\n"))
            .unwrap_err()
            .join("\n");
        assert!(e.contains("municipality 101 lies in region 1084"), "{e}");
        let short: String = rows.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let e = clusters(&format!("{header}{short}"))
            .unwrap_err()
            .join("\n");
        assert!(
            e.contains("1 of the 98 municipalities have no current cluster"),
            "{e}"
        );
    }

    #[test]
    fn sks_codes_are_checked() {
        assert!(sks(super::super::SKS_CSV).unwrap().contains("DA000"));
        let e = sks("code,display\nDA00,Kolera\nA00,Kolera\nDA00,Kolera\nDB01,\n")
            .unwrap_err()
            .join("\n");
        assert!(e.contains("line 3: \"A00\" is not an SKS"), "{e}");
        assert!(e.contains("line 4: the code DA00 is listed twice"), "{e}");
        assert!(e.contains("line 5: DB01 has no display"), "{e}");
    }
}
