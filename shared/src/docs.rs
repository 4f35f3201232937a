//! The supplier's reporting guide, rendered from the contracts (so it cannot drift
//! from what validation actually checks).

use std::fmt::Write;

use crate::contract::{Contract, Encoding, FileFormat, Registry, VersionRule};
use crate::receipt::MAX_PROBLEMS;

pub fn reporting_guide(registry: &Registry) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# naerdata reporting guide\n");
    let _ = writeln!(
        s,
        "Generated from the dataset contracts (`contracts/*.yaml`, ODCS v3) by `naerdata contracts docs`. \
         Do not edit by hand: change the contract.\n"
    );
    let _ = writeln!(s, "## How to deliver\n");
    let _ = writeln!(
        s,
        "- Upload each file to `<source>/<dataset>/<yyyy-mm-dd>/<file name>` in the landing zone; \
         the day is the delivery day. A `.gz` file is decompressed on arrival.\n\
         - Check a file before sending it: `naerdata validate --dataset <source>.<dataset> FILE` prints the receipt \
         it would get (exit 0 = accepted, 2 = rejected).\n\
         - Every delivery gets a receipt `<source>/<dataset>/<delivery_id>.json` with outcome `ok`, `warning` or \
         `rejected`, row counts, and up to {MAX_PROBLEMS} problems (line, column, rule, message); the total is counted.\n\
         - A file that cannot be read as a whole (empty, wrong encoding, missing required column) is rejected with \
         one message. Otherwise bad rows are left out and listed; if more than the dataset's threshold of rows is \
         bad, the whole delivery is rejected and nothing of it is stored.\n\
         - Sending the identical file again is recognised (sha256) and stored once (`duplicate`).\n\
         - A correction is a new row with the same record key and a later version; the latest version wins.\n\
         - The deadline (under each dataset's reception calendar) also decides when a month is published: the \
         statistics for a month come out once every dataset's deadline for it has passed, and are then frozen. \
         Data or corrections for a month that arrive after that come out as a dated revision of it.\n\
         - CPR numbers are pseudonymised on arrival and never appear in receipts; a CPR that fails modulus 11 is \
         accepted with a warning, an unreadable one is kept without a pseudonym and reported.\n"
    );
    let _ = writeln!(s, "## CPR numbers: only in the CPR column\n");
    let _ = writeln!(
        s,
        "A CPR number may appear in exactly one place: the dataset's CPR column (for KL Gateway bundles, the \
         Patient's CPR identifier). Everything else is searched for CPR-shaped values — ten digits whose first six \
         are a date (the day may be +60), with or without a separator (`-`, space, `/`, `.`, en dash), and the eCPR \
         form with letters in positions 8 and 9 — in every column, in ids, codes and free text, in FHIR ids, \
         references and codes, and in the file name and path.\n\n\
         - **A CPR-shaped value in another column** is the row problem `cpr_in_wrong_column`: the row is never stored \
         (in a bundle, the whole bundle). Ten digits inside a longer number, a UUID or a hexadecimal id do not count. \
         A column whose values are legitimately ten-digit numbers says so in its contract (`tenDigitNumbers`); there \
         only the separated and eCPR forms count.\n\
         - **A CPR column that is mostly unusable** (empty, not DDMMYY-SSSS, not a date) above the dataset's limit \
         (below) rejects the whole delivery, with a message that asks whether columns are swapped or shifted. Such \
         a delivery is never accepted with warnings.\n\
         - **A CPR number in a file name or path**: the file is rejected unprocessed, and its name is withheld \
         (replaced by `withheld-name`) in the receipt, the ledger, logs and pages. Rename the file and \
         send it again.\n\
         - **Messages never quote your data.** A problem is described by line, column (or FHIR path), rule and the \
         value's shape (its length and kinds of characters); look the value up in your own file. A file without a \
         header row is recognised as such (line 1 names no column of the contract).\n"
    );
    let _ = writeln!(s, "## Taking data back\n");
    let _ = writeln!(
        s,
        "- **One record** is withdrawn by sending it again, as it was (the same record key, a later version where \
         the dataset has one), with the column `tilbagekaldt` set to `true` (KL Gateway: the resource with status \
         `entered-in-error`). The history keeps both versions; current tables and the statistics drop the record. \
         Datasets that can withdraw a record this way list `tilbagekaldt` below; the column may be left out of \
         every other file.\n\
         - **A whole delivery** that should never have been sent (another clinic's file, a test extract, the wrong \
         month) is retracted by the platform on request: ask the operators with the delivery id from its receipt \
         and why. Its rows leave every table at once, its receipt gets the state `retracted` with the reason and the \
         rows removed, and the next publication leaves it out. The same file sent again afterwards is processed as a \
         new delivery, not called a duplicate.\n\
         - Rows taken back stay in the lake's history for the retention period (30 days), so an earlier extract \
         can be reproduced; data that must not stay even there is purged at once on request.\n"
    );
    let _ = writeln!(s, "## Datasets\n");
    for c in registry.iter() {
        let _ = writeln!(
            s,
            "- [`{}`](#{}) — {}",
            c.id,
            c.id.replace('.', ""),
            c.title
        );
    }
    for c in registry.iter() {
        dataset(&mut s, c);
    }
    s
}

fn dataset(s: &mut String, c: &Contract) {
    let _ = writeln!(s, "\n## {}\n", c.id);
    let _ = writeln!(
        s,
        "**{}** — contract version {} ({})\n",
        c.title, c.version, c.status
    );
    for (label, text) in [
        ("Purpose", &c.purpose),
        ("Usage", &c.usage),
        ("Limitations", &c.limitations),
    ] {
        if !text.is_empty() {
            let _ = writeln!(s, "*{label}:* {text}\n");
        }
    }
    let d = &c.delivery;
    let format = match &d.format {
        FileFormat::Csv { delimiter } => {
            format!("CSV with a header row, delimiter `{}`", *delimiter as char)
        }
        FileFormat::Ndjson => "NDJSON (one JSON object per line)".into(),
        FileFormat::Fhir { tables } => format!(
            "FHIR R4 Bundles of type collection, one per line (NDJSON), or one Bundle per file; \
             see docs/kl-gateway-input.md. Each bundle fans out to {}",
            tables
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FileFormat::Derived { from } => {
            format!("not delivered on its own: flattened from `{from}` deliveries")
        }
    };
    let encoding = match d.encoding {
        Encoding::Utf8 => "UTF-8 (a BOM is allowed; other encodings are rejected)".to_string(),
        Encoding::Windows1252 => {
            "windows-1252 (a UTF-8 file with BOM is also read correctly)".to_string()
        }
    };
    let key: Vec<&str> = c
        .record_key
        .iter()
        .map(|&i| c.fields[i].name.as_str())
        .collect();
    let version = match c.version_rule {
        VersionRule::Field(i) => format!("`{}`", c.fields[i].name),
        VersionRule::ReceivedAt => "the time the delivery was received".into(),
    };
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| Path | `{}/{}/<yyyy-mm-dd>/<file>` |",
        c.source, c.dataset
    );
    let _ = writeln!(s, "| Format | {format} |");
    let _ = writeln!(s, "| Encoding | {encoding} |");
    let _ = writeln!(
        s,
        "| Decimal separator | `{}` |",
        d.decimal_separator as char
    );
    let _ = writeln!(
        s,
        "| Record key | {} |",
        key.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" + ")
    );
    if c.cpr_field.is_some() || matches!(d.format, FileFormat::Fhir { .. }) {
        let _ = writeln!(
            s,
            "| Unusable CPR numbers | more than {:.0} % of rows (bundles) rejects the delivery |",
            d.unusable_cpr_threshold * 100.0
        );
    }
    let _ = writeln!(s, "| Version | {version} |");
    let _ = writeln!(
        s,
        "| Event date (partitions the lake) | `{}` |",
        c.fields[c.event_date].name
    );
    if let Some(i) = c.reporting_unit {
        let _ = writeln!(s, "| Reporting unit | `{}` |", c.fields[i].name);
    }
    if let Some(i) = c.cpr_field {
        let _ = writeln!(
            s,
            "| CPR column | `{}` (pseudonymised on arrival) |",
            c.fields[i].name
        );
    }
    if let Some(r) = &c.reception {
        use crate::quality::rules::{Cadence, DeadlineFrom, ExpectedUnits};
        let cadence = |c: Cadence| match c {
            Cadence::Daily => "every day",
            Cadence::Weekly => "every week",
            Cadence::Monthly => "every month",
        };
        let units = match r.units {
            ExpectedUnits::Kommuner => "each of the 98 municipalities",
            ExpectedUnits::Seen => "each reporting unit that has delivered before",
        };
        let after = match r.deadline.after {
            DeadlineFrom::PeriodEnd => "the end of the period",
            DeadlineFrom::MonthEnd => "the end of the month",
        };
        let _ = writeln!(
            s,
            "| Expected | a delivery {} (by {} day(s) after it); {units} {}; late after {} day(s) after {after} |",
            cadence(r.cadence),
            r.grace_days,
            cadence(r.unit_cadence.unwrap_or(r.cadence)),
            r.deadline.days
        );
    }
    let q = &c.quality;
    let _ = writeln!(
        s,
        "| Quality checks (max % of rows, else the check FAILs in the receipt) | completeness {} %, conformance {} %, plausibility {} %, duplicate keys {} % |",
        q.completeness, q.conformance, q.plausibility, q.uniqueness
    );
    let _ = writeln!(
        s,
        "| Rejection threshold | {:.1} % of rows |",
        d.reject_threshold * 100.0
    );
    if let Some(allow) = &c.extract_allow {
        let _ = writeln!(
            s,
            "| Research extracts may carry | {} (identifiers re-keyed per project, timestamps as dates; never the CPR) |",
            allow
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(s, "| Table | `{}` |\n", c.table());
    let _ = writeln!(
        s,
        "| Column | Type | Required | Rules | Example | Description |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for f in &c.fields {
        let mut rules = Vec::new();
        if let Some(p) = &f.pattern {
            rules.push(format!("pattern `{}`", p.as_str().replace('|', "\\|")));
        }
        if let Some(n) = f.max_length {
            rules.push(format!("at most {n} characters"));
        }
        if let Some(m) = f.min_date {
            rules.push(format!("from {m}"));
        }
        if f.not_after_delivery {
            rules.push("not after the delivery day".into());
        }
        if f.cpr_shape == crate::cpr::detect::Shape::Separated {
            rules.push("ten-digit numbers allowed (only separated CPR shapes are refused)".into());
        }
        if f.minimum.is_some() || f.maximum.is_some() {
            rules.push(format!(
                "range {}..{}",
                f.minimum.map(|x| x.to_string()).unwrap_or_default(),
                f.maximum.map(|x| x.to_string()).unwrap_or_default()
            ));
        }
        if let Some(space) = &f.identifier {
            rules.push(format!("identifier (`{space}`)"));
        }
        if let Some(list) = &f.code_list {
            let codes: Vec<String> = list
                .values
                .iter()
                .map(|(code, label)| match label {
                    Some(l) => format!("`{code}` {l}"),
                    None => format!("`{code}`"),
                })
                .collect();
            let system = list
                .system
                .as_deref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            rules.push(format!("one of {system}{}", codes.join(", ")));
        }
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            f.name,
            f.field_type.name(),
            if f.required { "yes" } else { "no" },
            rules.join("; "),
            f.examples
                .first()
                .map(|e| format!("`{e}`"))
                .unwrap_or_default(),
            f.description.replace('\n', " ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_covers_every_dataset_and_column() {
        let r = Registry::builtin();
        let g = reporting_guide(&r);
        for c in r.iter() {
            assert!(g.contains(&format!("## {}", c.id)), "{}", c.id);
            for f in &c.fields {
                assert!(
                    g.contains(&format!("| `{}` |", f.name)),
                    "{}.{}",
                    c.id,
                    f.name
                );
            }
        }
        assert!(g.contains("windows-1252"));
    }
}
