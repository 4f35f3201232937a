//! The FSIII code system as the KL terminology publishes it: two parallel trees under
//! one system, UUIDs and legacy keys (`J1.1`; a slug where a concept never had a
//! short key), node for node the same. What a code may stand for comes from its
//! top-level group; the legal basis of an intervention from its level-2 group
//! (`SEL § 83`, `§ 84 stk. 1 ...`, `SUL § 138`).

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use super::CodeInfo;
use super::parse::{column, records};

/// A code that could be an FSIII code of a newer terminology than the one loaded: a
/// UUID, or a short legacy key such as `J1.1`, `B4` or `H1c`.
pub fn well_formed(code: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-J][0-9]{1,2}(?:\.[0-9]{1,2})*[a-z]?)$",
        )
        .expect("code pattern")
    })
    .is_match(code)
}

/// A short legacy key (what is stored when a concept has one).
fn short_key(code: &str) -> bool {
    well_formed(code) && code.len() < 36
}

struct Concept {
    code: String,
    display: String,
    parent: String,
    /// The partner in the other tree (`legacy_key=` or `uuid=` in `extra`).
    partner: String,
}

/// What a top-level group's codes may stand for, and their legal basis when the
/// group alone says it.
fn group_of(top: &str) -> (char, Option<&'static str>) {
    match top {
        "Kommunale pleje- og omsorgstilstande" => ('J', Some("§83")),
        "Kommunale sygeplejetilstande" => ('I', Some("§138")),
        "Kommunale pleje- og omsorgsindsatser" => ('H', Some("§83")),
        "Kommunale sygeplejeindsatser" => ('G', Some("§138")),
        "Kommunal genoptræning efter sygehusophold-tilstande" => ('R', Some("§140")),
        "Kommunal genoptræning efter sygehusophold-indsatser" => ('C', Some("§140")),
        "Kommunale sundhedsfremme og forebyggelsestilstande" => ('R', Some("§119")),
        "Kommunale sundhedsfremme og forebyggelsesindsatser" => ('C', Some("§119")),
        "Funktionsevne skalering" => ('B', Some("§83")),
        "Resultat af opfølgning kommunal pleje og omsorg" => ('E', Some("§83|§138")),
        _ => ('-', None),
    }
}

/// The legal basis a level-2 group of interventions names (`SEL § 83A` -> `§83a`).
fn paragraph_in(display: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"§\s*([0-9]+)\s*([A-Za-z])?\b").expect("§ pattern"));
    if display.starts_with("Ældrelovsindsats") {
        return Some("ældreloven".into());
    }
    re.captures(display).map(|c| {
        format!(
            "§{}{}",
            &c[1],
            c.get(2)
                .map_or(String::new(), |l| l.as_str().to_lowercase())
        )
    })
}

/// Parses and checks the code system: every code once, every parent present, and
/// the groups the gateway bundles use all there.
pub(super) fn codes(text: &str) -> Result<HashMap<String, CodeInfo>, Vec<String>> {
    let (header, rows) = records(text).map_err(|e| vec![e])?;
    let col = |name| column(&header, name);
    let (Some(system), Some(code), Some(display), Some(parent), Some(extra)) = (
        col("system"),
        col("code"),
        col("display"),
        col("parent_or_group"),
        col("extra"),
    ) else {
        return Err(vec![format!(
            "the header must name system, code, display, parent_or_group and extra (found {})",
            header.join(",")
        )]);
    };
    let mut problems = Vec::new();
    let mut concepts: HashMap<String, Concept> = HashMap::new();
    for (line, r) in &rows {
        let c = r[code].trim();
        if !crate::fhir::FSIII_SYSTEMS.contains(&r[system].trim()) {
            problems.push(format!(
                "line {line}: system {} is not FSIII",
                r[system].trim()
            ));
            continue;
        }
        if c.is_empty()
            || !c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        {
            problems.push(format!("line {line}: the code {c:?} is not a UUID or key"));
            continue;
        }
        let partner = r[extra]
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "legacy_key" || *k == "uuid")
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let concept = Concept {
            code: c.to_string(),
            display: r[display].trim().to_string(),
            parent: r[parent].trim().to_string(),
            partner,
        };
        if concepts.insert(c.to_string(), concept).is_some() {
            problems.push(format!("line {line}: the code {c} is listed twice"));
        }
    }
    for c in concepts.values() {
        if !c.parent.is_empty() && !concepts.contains_key(&c.parent) {
            problems.push(format!("{}: its parent {} is not listed", c.code, c.parent));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Ancestors, top first.
    fn chain<'c>(c: &'c Concept, concepts: &'c HashMap<String, Concept>) -> Vec<&'c Concept> {
        let mut up = vec![c];
        while let Some(p) = concepts.get(&up[up.len() - 1].parent) {
            if up.len() > 16 {
                break;
            }
            up.push(p);
        }
        up.reverse();
        up
    }
    let mut out = HashMap::with_capacity(concepts.len());
    for c in concepts.values() {
        let up = chain(c, &concepts);
        let top = up[0];
        let (group, basis) = group_of(&top.display);
        let paragraph = match group {
            'H' | 'G' => up
                .get(1)
                .and_then(|l2| paragraph_in(&l2.display))
                .or(basis.map(str::to_string)),
            _ => basis.map(str::to_string),
        };
        // Stored as the short legacy key when the concept has one.
        let stored = if short_key(&c.code) {
            c.code.clone()
        } else if short_key(&c.partner) {
            c.partner.clone()
        } else if c.code.len() == 36 {
            c.code.clone()
        } else if c.partner.len() == 36 {
            c.partner.clone()
        } else {
            c.code.clone()
        };
        out.insert(
            c.code.clone(),
            CodeInfo {
                // A group's own node is not a codable concept of it.
                group: if up.len() == 1 { '-' } else { group },
                paragraph,
                code: stored,
                branch: top.display.clone(),
            },
        );
    }
    for (g, what) in [
        ('J', "home-care conditions"),
        ('I', "nursing conditions"),
        ('H', "care interventions"),
        ('G', "nursing interventions"),
        ('B', "severities"),
        ('E', "follow-up results"),
    ] {
        if !out.values().any(|c| c.group == g) {
            problems.push(format!("no {what} (FSIII group {g}) are listed"));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_codes_are_uuids_and_short_keys() {
        for ok in [
            "J1.1",
            "B4",
            "H1c",
            "G1.20",
            "4d46bd94-9518-431c-82e8-ebb91bca307a",
        ] {
            assert!(well_formed(ok), "{ok}");
        }
        for bad in [
            "",
            "J1.1.",
            "j1.1",
            "Vaske sig",
            "4d46bd94-9518-431c-82e8-ebb91bca307",
            "4d46bd94951843 1c",
            "Z9",
            "J1.1; DROP",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn legal_basis_comes_from_the_level_two_group() {
        assert_eq!(paragraph_in("SEL § 83A").as_deref(), Some("§83a"));
        assert_eq!(
            paragraph_in("§ 84 stk. 1 Aflastning - afløsning").as_deref(),
            Some("§84")
        );
        assert_eq!(paragraph_in("SUL § 138").as_deref(), Some("§138"));
        assert_eq!(paragraph_in("0-ydelser"), None);
    }

    #[test]
    fn a_broken_code_system_is_refused_with_every_reason() {
        let text = "system,code,display,parent_or_group,extra\n\
                    urn:oid:1.2.208.176.2.21,J,Tilstande,,\n\
                    urn:oid:1.2.208.176.2.21,J1.1,Vaske sig,J9,\n\
                    urn:oid:1.2.208.176.2.21,J1.1,Vaske sig,J,\n\
                    http://loinc.org,1234-5,x,,\n";
        let e = codes(text).unwrap_err().join("\n");
        assert!(e.contains("listed twice"), "{e}");
        assert!(e.contains("not FSIII"), "{e}");
    }
}
