//! The supplier's reporting guide, rendered from the contracts (so it cannot drift
//! from what validation actually checks), in Danish (the primary language) and in
//! English.
//!
//! The structure is rendered once, here: the sections in their order, the list of
//! datasets and the table of each dataset with its columns. The words live in `da`
//! and `en`: the prose of each section, the table labels and the phrases that carry
//! numbers. Technical tokens (column names, paths, rule names) are the same in both.

mod da;
mod en;

use std::fmt::Write;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::contract::{Contract, Encoding, FileFormat, Registry, VersionRule};
use crate::layout;
use crate::quality::rules::Reception;

/// The JSON Schema (draft 2020-12) of the receipt as [`crate::receipt::Receipt`]
/// serialises it, as published in `docs/receipt.schema.json`; compiled in so the
/// supplier kit can ship it with the tool.
pub const RECEIPT_SCHEMA: &str = include_str!("../../../docs/receipt.schema.json");

/// The language of the guide. Danish is the primary one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Da,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Da, Lang::En];

    /// The ISO 639-1 code (`da`, `en`), as `--lang` takes it.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Da => "da",
            Lang::En => "en",
        }
    }

    fn words(self) -> &'static dyn Words {
        match self {
            Lang::Da => &da::Da,
            Lang::En => &en::En,
        }
    }
}

impl FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown language {s:?}: the guide is in da or en"))
    }
}

/// The sections of the guide, in their order. `Datasets` is last: the tables of the
/// datasets follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Deliver,
    Scope,
    Versions,
    Upload,
    Receipt,
    NothingToReport,
    Cpr,
    TakingBack,
    Reference,
    ContractChanges,
    Contact,
    Datasets,
}

impl Section {
    const ALL: [Section; 12] = [
        Section::Deliver,
        Section::Scope,
        Section::Versions,
        Section::Upload,
        Section::Receipt,
        Section::NothingToReport,
        Section::Cpr,
        Section::TakingBack,
        Section::Reference,
        Section::ContractChanges,
        Section::Contact,
        Section::Datasets,
    ];
}

/// The labels of a dataset's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Purpose,
    Usage,
    Limitations,
    Path,
    Format,
    Encoding,
    DecimalSeparator,
    RecordKey,
    UnusableCpr,
    Version,
    EventDate,
    ReportingUnit,
    CprColumn,
    BirthDateColumn,
    Expected,
    Quality,
    RejectThreshold,
    MaxDecompressed,
    Extracts,
    Table,
    Column,
    Type,
    Required,
    Rules,
    Example,
    Description,
}

/// One rule of a column, for the Rules cell.
enum Rule<'a> {
    /// The pattern, escaped for a Markdown table.
    Pattern(&'a str),
    MaxLength(usize),
    From(NaiveDate),
    NotAfterDelivery,
    TenDigitNumbers,
    /// The bounds, formatted (either may be empty).
    Range(&'a str, &'a str),
    Identifier(&'a str),
    /// The code system (if named) and the codes, formatted.
    OneOf(Option<&'a str>, &'a str),
}

/// What a language supplies. Numbers reach it formatted (see [`number`]).
trait Words {
    /// The title and the paragraph under it.
    fn preamble(&self, s: &mut String);
    fn heading(&self, section: Section) -> &'static str;
    /// The text of a section, after its heading; ends with a blank line.
    fn section(&self, s: &mut String, section: Section, registry: &Registry);
    fn label(&self, label: Label) -> &'static str;
    /// Whether numbers are written with a decimal comma.
    fn decimal_comma(&self) -> bool;
    /// The line under a dataset's heading.
    fn contract_line(&self, title: &str, version: &str, status: &str) -> String;
    fn format(&self, format: &FileFormat) -> String;
    fn encoding(&self, encoding: Encoding) -> &'static str;
    /// The version of a dataset without a version column.
    fn received_at(&self) -> &'static str;
    fn unusable_cpr(&self, percent: &str) -> String;
    fn cpr_column(&self, name: &str) -> String;
    fn birth_date_column(&self, name: &str) -> String;
    fn expected(&self, reception: &Reception) -> String;
    /// Completeness, conformance, plausibility and uniqueness thresholds.
    fn quality(&self, thresholds: [&str; 4]) -> String;
    fn reject_threshold(&self, percent: &str) -> String;
    fn extracts(&self, columns: &str) -> String;
    fn rule(&self, rule: Rule<'_>) -> String;
    fn yes_no(&self, yes: bool) -> &'static str;
    /// A field's description in this language (English where no other is given).
    fn description<'f>(&self, f: &'f crate::contract::Field) -> &'f str;
}

/// The reporting guide in `lang`: the sections, then one table per dataset.
pub fn reporting_guide(registry: &Registry, lang: Lang) -> String {
    let w = lang.words();
    let mut s = String::new();
    w.preamble(&mut s);
    for section in Section::ALL {
        let _ = writeln!(s, "## {}\n", w.heading(section));
        w.section(&mut s, section, registry);
    }
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
        dataset(&mut s, c, w);
    }
    s
}

/// A number as the language writes it: `5.0` or `5,0`.
fn number(w: &dyn Words, text: String) -> String {
    if w.decimal_comma() {
        text.replace('.', ",")
    } else {
        text
    }
}

/// The datasets of `source` that are delivered (not derived), as code.
fn delivered(registry: &Registry, source: &str) -> String {
    registry
        .iter()
        .filter(|c| c.source == source && !matches!(c.delivery.format, FileFormat::Derived { .. }))
        .map(|c| format!("`{}`", c.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The datasets that have a column `field`, as code.
fn with_column(registry: &Registry, field: &str) -> String {
    registry
        .iter()
        .filter(|c| c.field_index(field).is_some())
        .map(|c| format!("`{}`", c.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each supplier's role and prefix, as the stack creates them (`stack::supplier_roles`):
/// a header of three cells, `env` the placeholder of the environment's name.
fn supplier_table(s: &mut String, header: [&str; 3], env: &str) {
    let _ = writeln!(s, "| {} | {} | {} |", header[0], header[1], header[2]);
    let _ = writeln!(s, "|---|---|---|");
    for sup in layout::SUPPLIERS {
        let prefix = layout::source_prefix(sup.source);
        let _ = writeln!(
            s,
            "| `{}` | `naerdata-{env}-supplier-{}` | `{prefix}` |",
            sup.source, sup.source
        );
    }
    s.push('\n');
}

/// A receipt's key in the receipts store, with placeholders.
fn receipt_key_shape() -> String {
    layout::receipt_key("<source>", "<dataset>", "<delivery_id>")
}

/// One row of a dataset's two-column table.
fn table_row(s: &mut String, w: &dyn Words, label: Label, value: &str) {
    let _ = writeln!(s, "| {} | {value} |", w.label(label));
}

fn dataset(s: &mut String, c: &Contract, w: &dyn Words) {
    let _ = writeln!(s, "\n## {}\n", c.id);
    let _ = writeln!(s, "{}\n", w.contract_line(&c.title, &c.version, &c.status));
    for (label, text) in [
        (Label::Purpose, &c.purpose),
        (Label::Usage, &c.usage),
        (Label::Limitations, &c.limitations),
    ] {
        if !text.is_empty() {
            let _ = writeln!(s, "*{}:* {text}\n", w.label(label));
        }
    }
    let d = &c.delivery;
    let key: Vec<&str> = c
        .record_key
        .iter()
        .map(|&i| c.fields[i].name.as_str())
        .collect();
    let version = match c.version_rule {
        VersionRule::Field(i) => format!("`{}`", c.fields[i].name),
        VersionRule::ReceivedAt => w.received_at().to_string(),
    };
    let path = match &d.format {
        FileFormat::Derived { .. } => "—".to_string(),
        _ => format!("`{}/{}/<yyyy-mm-dd>/<file>`", c.source, c.dataset),
    };
    let _ = writeln!(s, "| | |\n|---|---|");
    table_row(s, w, Label::Path, &path);
    table_row(s, w, Label::Format, &w.format(&d.format));
    table_row(s, w, Label::Encoding, w.encoding(d.encoding));
    table_row(
        s,
        w,
        Label::DecimalSeparator,
        &format!("`{}`", d.decimal_separator as char),
    );
    table_row(
        s,
        w,
        Label::RecordKey,
        &key.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" + "),
    );
    if c.cpr_field.is_some() || matches!(d.format, FileFormat::Fhir { .. }) {
        let percent = number(w, format!("{:.0}", d.unusable_cpr_threshold * 100.0));
        table_row(s, w, Label::UnusableCpr, &w.unusable_cpr(&percent));
    }
    table_row(s, w, Label::Version, &version);
    table_row(
        s,
        w,
        Label::EventDate,
        &format!("`{}`", c.fields[c.event_date].name),
    );
    if let Some(i) = c.reporting_unit {
        table_row(
            s,
            w,
            Label::ReportingUnit,
            &format!("`{}`", c.fields[i].name),
        );
    }
    if let Some(i) = c.cpr_field {
        // Inside the backticks the formatter adds: `cpr`, `nyt_cpr`.
        let names: Vec<&str> = [Some(i), c.cpr_link_field]
            .into_iter()
            .flatten()
            .map(|i| c.fields[i].name.as_str())
            .collect();
        table_row(s, w, Label::CprColumn, &w.cpr_column(&names.join("`, `")));
    }
    if let Some(i) = c.birth_date_field {
        table_row(
            s,
            w,
            Label::BirthDateColumn,
            &w.birth_date_column(&c.fields[i].name),
        );
    }
    if let Some(r) = &c.reception {
        table_row(s, w, Label::Expected, &w.expected(r));
    }
    let q = &c.quality;
    let thresholds = [q.completeness, q.conformance, q.plausibility, q.uniqueness]
        .map(|x| number(w, x.to_string()));
    table_row(
        s,
        w,
        Label::Quality,
        &w.quality(thresholds.each_ref().map(String::as_str)),
    );
    let percent = number(w, format!("{:.1}", d.reject_threshold * 100.0));
    table_row(s, w, Label::RejectThreshold, &w.reject_threshold(&percent));
    if !matches!(d.format, FileFormat::Derived { .. }) {
        let bytes = d.max_decompressed_bytes;
        let size = if bytes.is_multiple_of(1 << 30) {
            format!("{} GiB", bytes >> 30)
        } else {
            format!("{bytes} B")
        };
        table_row(s, w, Label::MaxDecompressed, &size);
    }
    if let Some(allow) = &c.extract_allow {
        let columns = allow
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        table_row(s, w, Label::Extracts, &w.extracts(&columns));
    }
    let _ = writeln!(s, "| {} | `{}` |\n", w.label(Label::Table), c.table());
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |",
        w.label(Label::Column),
        w.label(Label::Type),
        w.label(Label::Required),
        w.label(Label::Rules),
        w.label(Label::Example),
        w.label(Label::Description)
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for f in &c.fields {
        let mut rules = Vec::new();
        if let Some(p) = &f.pattern {
            rules.push(w.rule(Rule::Pattern(&p.as_str().replace('|', "\\|"))));
        }
        if let Some(n) = f.max_length {
            rules.push(w.rule(Rule::MaxLength(n)));
        }
        if let Some(m) = f.min_date {
            rules.push(w.rule(Rule::From(m)));
        }
        if f.not_after_delivery {
            rules.push(w.rule(Rule::NotAfterDelivery));
        }
        if f.cpr_shape == crate::cpr::detect::Shape::Separated {
            rules.push(w.rule(Rule::TenDigitNumbers));
        }
        if f.minimum.is_some() || f.maximum.is_some() {
            let bound = |x: Option<f64>| x.map(|x| number(w, x.to_string())).unwrap_or_default();
            rules.push(w.rule(Rule::Range(&bound(f.minimum), &bound(f.maximum))));
        }
        if let Some(space) = &f.identifier {
            rules.push(w.rule(Rule::Identifier(space)));
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
            rules.push(w.rule(Rule::OneOf(list.system.as_deref(), &codes.join(", "))));
        }
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            f.name,
            f.field_type.name(),
            w.yes_no(f.required),
            rules.join("; "),
            f.examples
                .first()
                .map(|e| format!("`{e}`"))
                .unwrap_or_default(),
            w.description(f).replace('\n', " ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::DateTime;
    use serde_json::Value;

    use crate::ledger::DeliveryState;
    use crate::process::Report;
    use crate::quality::{FailingCheck, QualitySummary};
    use crate::receipt::{
        Receipt, ReceiptHead, ReceiptOutcome, ReceiptProblem, Retraction, RowCounts,
    };

    #[test]
    fn guide_covers_every_dataset_and_column() {
        let r = Registry::builtin();
        for lang in Lang::ALL {
            let g = reporting_guide(&r, lang);
            for c in r.iter() {
                assert!(g.contains(&format!("## {}", c.id)), "{lang:?} {}", c.id);
                for f in &c.fields {
                    assert!(
                        g.contains(&format!("| `{}` |", f.name)),
                        "{lang:?} {}.{}",
                        c.id,
                        f.name
                    );
                }
            }
            assert!(g.contains("windows-1252"), "{lang:?}");
        }
    }

    #[test]
    fn every_section_is_in_both_languages() {
        let r = Registry::builtin();
        let guides = Lang::ALL.map(|lang| (lang, reporting_guide(&r, lang)));
        for section in Section::ALL {
            let (da, en) = (Lang::Da.words(), Lang::En.words());
            assert_ne!(
                da.heading(section),
                en.heading(section),
                "{section:?} is not translated"
            );
            for (lang, g) in &guides {
                let heading = lang.words().heading(section);
                assert!(!heading.is_empty(), "{lang:?} {section:?}");
                assert_eq!(
                    g.matches(&format!("\n## {heading}\n")).count(),
                    1,
                    "{lang:?}: the section {heading:?} once"
                );
            }
        }
        // The sections are in the same order in both languages.
        let order = |lang: Lang, g: &str| {
            Section::ALL.map(|section| g.find(&format!("\n## {}\n", lang.words().heading(section))))
        };
        for (lang, g) in &guides {
            let at = order(*lang, g);
            assert!(at.windows(2).all(|p| p[0] < p[1]), "{lang:?}: {at:?}");
        }
    }

    #[test]
    fn the_danish_guide_is_danish_and_keeps_the_technical_tokens() {
        let r = Registry::builtin();
        let da = reporting_guide(&r, Lang::Da);
        let en = reporting_guide(&r, Lang::En);
        assert!(
            da.starts_with("# Indberetningsvejledning"),
            "{:?}",
            da.lines().next()
        );
        assert!(en.starts_with("# naerdata reporting guide"));
        for token in [
            "tilbagekaldt",
            "entered-in-error",
            "empty_file",
            "naerdata validate",
            "--sse aws:kms",
            "--sse-kms-key-id",
            "LandingKey",
            "reference_versions",
            "docs/receipt.schema.json",
            "naerdata-drift@<organisation>",
            "<source>/<dataset>/<delivery_id>.json",
            "naerdata-<miljø>-supplier-almenpraksis",
        ] {
            assert!(da.contains(token), "da: {token}");
        }
        for token in ["naerdata-<env>-supplier-kommune", "--sse-kms-key-id"] {
            assert!(en.contains(token), "en: {token}");
        }
        for label in ["| Postnøgle |", "| Kolonne | Type | Påkrævet |", "| ja |"] {
            assert!(da.contains(label), "da: {label}");
        }
        // Danish numbers: a decimal comma.
        assert!(da.contains("| Afvisningstærskel | 5,0 % af rækkerne |"));
        assert!(en.contains("| Rejection threshold | 5.0 % of rows |"));
    }

    #[test]
    fn languages_parse_from_their_codes() {
        for lang in Lang::ALL {
            assert_eq!(lang.code().parse::<Lang>(), Ok(lang));
        }
        assert_eq!("EN".parse::<Lang>(), Ok(Lang::En));
        assert!("de".parse::<Lang>().unwrap_err().contains("da or en"));
    }

    // ------------------------------------------------------------------ the receipt schema

    fn schema() -> Value {
        serde_json::from_str(RECEIPT_SCHEMA).expect("docs/receipt.schema.json is JSON")
    }

    fn head() -> ReceiptHead {
        ReceiptHead {
            delivery_id: "0123456789abcdef0123".into(),
            dataset: "almenpraksis.diagnose".into(),
            file_name: "ap.csv".into(),
            object_key: "almenpraksis/diagnose/2026-03-01/ap.csv".into(),
            sha256: "0".repeat(64),
            size_bytes: 1234,
            contract_version: Some("1.2.0".into()),
            received_at: at("2026-03-02T10:00:00Z"),
        }
    }

    fn at(s: &str) -> DateTime<chrono::Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// A receipt as the process step writes it (`Report::receipt`), with every
    /// optional part filled in.
    fn full_receipt() -> Receipt {
        let mut r = Report::default().receipt(
            head(),
            at("2026-03-02T10:00:05Z"),
            ReceiptOutcome::Warning,
            DeliveryState::Retracted,
            Some("a reason".into()),
        );
        r.rows = RowCounts {
            read: 10,
            accepted: 9,
            rejected: 1,
            with_warnings: 1,
        };
        r.problems = vec![
            ReceiptProblem {
                line: 3,
                column: Some("diagnosekode".into()),
                rule: "code_list".into(),
                severity: "error".into(),
                message: "a value of 3 characters is not in the code list".into(),
            },
            ReceiptProblem {
                line: 4,
                column: None,
                rule: "field_count".into(),
                severity: "warning".into(),
                message: "the row has 6 field(s) but the header has 7".into(),
            },
        ];
        r.problems_total = 2;
        r.problems_by_rule = [("code_list".to_string(), 1), ("field_count".to_string(), 1)]
            .into_iter()
            .collect();
        r.ignored_columns = vec!["extra".into()];
        r.tables = [("almenpraksis_diagnose".to_string(), 9)]
            .into_iter()
            .collect();
        r.quarantine = Some("almenpraksis/diagnose/0123456789abcdef0123.ndjson".into());
        r.duplicate_of = Some("fedcba98765432100123".into());
        r.quality = Some(QualitySummary {
            checks: 12,
            passed: 10,
            failed: 1,
            not_applicable: 0,
            errors: 1,
            failing: vec![
                FailingCheck {
                    table: "almenpraksis_diagnose".into(),
                    check: "rows_per_unit".into(),
                    category: "volume".into(),
                    field: Some("ydernummer".into()),
                    unit: Some("012345".into()),
                    pct: Some(12.5),
                    threshold: Some(1.0),
                    value: Some(3.0),
                    expected: Some((10.0, 20.0)),
                },
                FailingCheck {
                    table: "almenpraksis_diagnose".into(),
                    check: "completeness".into(),
                    category: "completeness".into(),
                    field: None,
                    unit: None,
                    pct: None,
                    threshold: None,
                    value: None,
                    expected: None,
                },
            ],
        });
        r.reference_versions = [
            ("fsiii".to_string(), "builtin-0123456789ab".to_string()),
            (
                "sor".to_string(),
                "20260301T120000Z-0123456789ab".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        r.retraction = Some(Retraction {
            at: at("2026-03-05T08:00:00Z"),
            reason: "another clinic's file".into(),
            rows_deleted: [("almenpraksis_diagnose".to_string(), 9)]
                .into_iter()
                .collect(),
        });
        r
    }

    /// The JSON type of `v`, as JSON Schema names it.
    fn json_type(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// `schema`, with a `$ref` into `#/$defs/` followed.
    fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("unsupported $ref {r}"));
                root["$defs"]
                    .get(name)
                    .unwrap_or_else(|| panic!("$ref {r} names no definition"))
            }
            None => schema,
        }
    }

    /// Walks `value` against `schema`: every property present must be declared (by
    /// `properties`, or by an `additionalProperties` schema) with a matching `type`
    /// and, where given, one of its `enum` values; every `required` property must be
    /// present. What is wrong goes to `errors`, with its JSON path.
    fn conforms(value: &Value, schema: &Value, root: &Value, path: &str, errors: &mut Vec<String>) {
        let schema = resolve(schema, root);
        let actual = json_type(value);
        match schema.get("type") {
            Some(Value::String(t)) => {
                if !(t == actual || (t == "number" && actual == "integer")) {
                    errors.push(format!("{path}: a {actual}, the schema says {t}"));
                    return;
                }
            }
            other => errors.push(format!("{path}: no type in the schema ({other:?})")),
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errors.push(format!("{path}: {value} is not in the schema's enum"));
        }
        match value {
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, v) in map {
                    let at = format!("{path}.{k}");
                    match (
                        props.and_then(|p| p.get(k)),
                        schema.get("additionalProperties"),
                    ) {
                        (Some(s), _) => conforms(v, s, root, &at, errors),
                        (None, Some(s)) if s.is_object() => conforms(v, s, root, &at, errors),
                        _ => errors.push(format!("{at}: not declared in the schema")),
                    }
                }
                for name in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = name.as_str().expect("required names are strings");
                    if !map.contains_key(name) {
                        errors.push(format!("{path}.{name}: required but absent"));
                    }
                }
            }
            Value::Array(items) => {
                let prefix = schema.get("prefixItems").and_then(Value::as_array);
                for (i, v) in items.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    match (prefix.and_then(|p| p.get(i)), schema.get("items")) {
                        (Some(s), _) => conforms(v, s, root, &at, errors),
                        (None, Some(s)) if s.is_object() => conforms(v, s, root, &at, errors),
                        _ => errors.push(format!("{at}: the schema declares no such item")),
                    }
                }
            }
            _ => {}
        }
    }

    fn check(receipt: &Receipt) -> Vec<String> {
        let json: Value = serde_json::from_str(&receipt.to_json()).unwrap();
        let root = schema();
        let mut errors = Vec::new();
        conforms(&json, &root, &root, "$", &mut errors);
        errors
    }

    #[test]
    fn the_schema_is_draft_2020_12() {
        let s = schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["type"], "object");
        // Optional (left out when empty): reference kind to version.
        let rv = &s["properties"]["reference_versions"];
        assert_eq!(rv["type"], "object");
        assert_eq!(rv["additionalProperties"]["type"], "string");
        let required = s["required"].as_array().unwrap();
        assert!(!required.contains(&Value::from("reference_versions")));
    }

    #[test]
    fn a_full_receipt_matches_the_schema() {
        let r = full_receipt();
        let json: Value = serde_json::from_str(&r.to_json()).unwrap();
        // Every optional part is there, so every declared property is walked.
        for k in [
            "contract_version",
            "reason",
            "ignored_columns",
            "tables",
            "quarantine",
            "duplicate_of",
            "quality",
            "retraction",
            "reference_versions",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
        assert_eq!(check(&r), Vec::<String>::new());
    }

    #[test]
    fn a_bare_receipt_has_exactly_the_required_properties() {
        let mut h = head();
        h.contract_version = None;
        let r = Report::default().receipt(
            h,
            at("2026-03-02T10:00:05Z"),
            ReceiptOutcome::Ok,
            DeliveryState::Accepted,
            None,
        );
        assert_eq!(check(&r), Vec::<String>::new());
        // What is always serialised is what the schema requires, and no more.
        let json: Value = serde_json::from_str(&r.to_json()).unwrap();
        let mut present: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let s = schema();
        let mut required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        present.sort_unstable();
        required.sort_unstable();
        assert_eq!(present, required);
    }

    #[test]
    fn the_walk_finds_what_the_schema_does_not_declare() {
        let root = schema();
        let mut json: Value = serde_json::from_str(&full_receipt().to_json()).unwrap();
        json["surprise"] = Value::from(1);
        json["rows"]["read"] = Value::from("ten");
        json["outcome"] = Value::from("maybe");
        json.as_object_mut().unwrap().remove("sha256");
        let mut errors = Vec::new();
        conforms(&json, &root, &root, "$", &mut errors);
        for expected in [
            "$.surprise: not declared",
            "$.rows.read: a string",
            "$.outcome: \"maybe\" is not in",
            "$.sha256: required but absent",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected}: {errors:?}"
            );
        }
    }
}
