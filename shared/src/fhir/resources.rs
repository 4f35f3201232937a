//! The per-resource mappers: Condition, CarePlan/Procedure (interventions),
//! ServiceRequest (referrals) and Observation (follow-up results), each checked
//! against the code lists and turned into the columns of its table.

use std::collections::HashMap;

use serde_json::Value;

use super::bundle::Check;
use super::codes::*;
use super::json::*;
use crate::reference::{CodeInfo, GatewayReference};

/// The FSIII (or catalogue) code of a CodeableConcept, checked against the loaded
/// lists. A well-formed code missing from them is kept with a warning on `column`
/// (group `?`: what it stands for is unknown); a malformed one, or a listed code of
/// another group, is an error.
pub(super) fn fsiii(
    cc: Option<&Value>,
    at: &str,
    column: &'static str,
    groups: &[char],
    refs: &GatewayReference,
    ck: &mut Check,
) -> Option<CodeInfo> {
    let found = codings(cc)
        .into_iter()
        .find(|(s, _)| FSIII_SYSTEMS.contains(s));
    let Some((_, code)) = found else {
        ck.fail(
            at.to_string(),
            "code",
            format!("no FSIII coding ({})", FSIII_SYSTEMS[0]),
        );
        return None;
    };
    match refs.codes.get(code) {
        Some(info) if groups.contains(&info.group) => Some(info.clone()),
        Some(info) => {
            ck.fail(
                at.to_string(),
                "code",
                format!(
                    "FSIII code {code} belongs to \"{}\" (group {}), expected one of {groups:?}",
                    info.branch, info.group
                ),
            );
            None
        }
        None if crate::reference::well_formed_code(code) => {
            ck.unlisted(at, column, "FSIII code");
            Some(CodeInfo {
                group: '?',
                paragraph: None,
                code: code.to_string(),
                branch: String::new(),
            })
        }
        None => {
            ck.fail(
                at.to_string(),
                "code",
                format!(
                    "the code ({}) is neither an FSIII code of the loaded list nor shaped like one \
                     (a UUID or a key such as J1.1)",
                    crate::validate::shape(code)
                ),
            );
            None
        }
    }
}

/// A Condition: an FSIII care condition (a `kommune.tilstand` row), or the focus of
/// a referral (SKS/ICPC-2 coded: no row, its code is read through the referral).
pub(super) fn condition(
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
        "fsiii_kode",
        &['J', 'I', 'R', 'C'],
        refs,
        ck,
    )?;
    let omraade = match (info.group, info.paragraph.as_deref()) {
        ('J', _) => "home_care",
        ('I', _) => "nursing",
        ('?', _) => "unknown",
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
        // What an unlisted code stands for is unknown: a severity is read if given.
        (Some(_), g) if g != 'J' && g != '?' => {
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
        (Some(s), _) => {
            fsiii(
                Some(s),
                &format!("{at}.severity"),
                "alvorlighed",
                &['B'],
                refs,
                ck,
            )?
            .code
        }
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
pub(super) fn referral_diagnosis(r: &Value) -> Option<(String, &'static str)> {
    codings(r.get("code"))
        .into_iter()
        .find_map(|(s, c)| match s {
            SKS_SYSTEM => Some((c.split('+').next().unwrap_or(c).to_string(), "SKS")),
            ICPC2_SYSTEM => Some((c.to_string(), "ICPC-2")),
            _ => None,
        })
}

pub(super) fn intervention(
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
        let info = fsiii(cc, &cc_at, "fsiii_kode", &['G', 'H', 'C'], refs, ck)?;
        let local = codings(cc)
            .into_iter()
            .find(|(s, _)| LOCAL_SYSTEMS.contains(s))
            .map(|(_, c)| c.to_string())
            .unwrap_or_default();
        (
            info.code,
            // An unlisted code's legal basis is unknown, and says so.
            info.paragraph.unwrap_or_else(|| "unknown".into()),
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

pub(super) fn referral(
    r: &Value,
    at: &str,
    by_ref: &HashMap<String, &Value>,
    refs: &GatewayReference,
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
    // SKS changes yearly; a diagnosis the loaded list lacks is kept and flagged.
    if let Some((code, "SKS")) = &diag
        && !refs.sks.contains(code)
    {
        ck.unlisted(
            &format!("{at}.reasonReference"),
            "henvisningsdiagnose",
            "SKS diagnosis code",
        );
    }
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
pub(super) fn follow_up(
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
        "resultat",
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
        ("resultat", info.code),
        ("vedroerer_id", about),
        ("status", text(r, &["status"]).unwrap_or("").to_string()),
        ("dato", day),
    ]))
}
