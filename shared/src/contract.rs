//! Dataset contracts: the machine-readable reporting guide.
//!
//! A contract is an ODCS v3 YAML document (`contracts/<source>.<dataset>.yaml`) with
//! our extras under `customProperties`. Validation, the Parquet schema, the catalog
//! and the supplier documentation are all derived from it, so they cannot drift apart.
//! Loading compiles the document into [`Contract`] and checks it for internal
//! consistency (a role pointing at a missing field is an error at load time, not a
//! surprise while a delivery streams through).

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::quality::rules::{QualityRules, Reception};

/// The contracts shipped with the platform, compiled into every binary so a Lambda
/// and the CLI use the same text.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "almenpraksis.diagnose",
        include_str!("../../contracts/almenpraksis.diagnose.yaml"),
    ),
    (
        "almenpraksis.kontakt",
        include_str!("../../contracts/almenpraksis.kontakt.yaml"),
    ),
    (
        "almenpraksis.laboratorie",
        include_str!("../../contracts/almenpraksis.laboratorie.yaml"),
    ),
    (
        "speciallaege.kontakt",
        include_str!("../../contracts/speciallaege.kontakt.yaml"),
    ),
    (
        "speciallaege.diagnose",
        include_str!("../../contracts/speciallaege.diagnose.yaml"),
    ),
    (
        "lpr.kontakt",
        include_str!("../../contracts/lpr.kontakt.yaml"),
    ),
    (
        "lpr.diagnose",
        include_str!("../../contracts/lpr.diagnose.yaml"),
    ),
    (
        "cpr.befolkning",
        include_str!("../../contracts/cpr.befolkning.yaml"),
    ),
    (
        "cpr.personnummerskift",
        include_str!("../../contracts/cpr.personnummerskift.yaml"),
    ),
    (
        "kommune.gateway",
        include_str!("../../contracts/kommune.gateway.yaml"),
    ),
    (
        "kommune.borger",
        include_str!("../../contracts/kommune.borger.yaml"),
    ),
    (
        "kommune.tilstand",
        include_str!("../../contracts/kommune.tilstand.yaml"),
    ),
    (
        "kommune.indsats",
        include_str!("../../contracts/kommune.indsats.yaml"),
    ),
    (
        "kommune.kontakt",
        include_str!("../../contracts/kommune.kontakt.yaml"),
    ),
    (
        "kommune.henvisning",
        include_str!("../../contracts/kommune.henvisning.yaml"),
    ),
    (
        "kommune.opfoelgning",
        include_str!("../../contracts/kommune.opfoelgning.yaml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("contract {file}: not valid ODCS YAML: {source}")]
    Yaml {
        file: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("contract {file}: {message}")]
    Invalid { file: String, message: String },
}

// ---------------------------------------------------------------------------
// The ODCS v3 document as written (only the parts we use).

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsDocument {
    api_version: String,
    kind: String,
    id: String,
    #[serde(default)]
    name: Option<String>,
    version: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: OdcsDescription,
    schema: Vec<OdcsObject>,
    #[serde(default)]
    custom_properties: Vec<OdcsCustomProperty>,
}

#[derive(Debug, Default, Deserialize)]
struct OdcsDescription {
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    usage: Option<String>,
    #[serde(default)]
    limitations: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsObject {
    name: String,
    #[serde(default)]
    description: Option<String>,
    properties: Vec<OdcsProperty>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsProperty {
    name: String,
    logical_type: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    primary_key: bool,
    #[serde(default)]
    primary_key_position: Option<i32>,
    #[serde(default)]
    classification: Option<String>,
    #[serde(default)]
    examples: Vec<Json>,
    #[serde(default)]
    logical_type_options: BTreeMap<String, Json>,
    #[serde(default)]
    custom_properties: Vec<OdcsCustomProperty>,
}

#[derive(Debug, Deserialize)]
struct OdcsCustomProperty {
    property: String,
    value: Json,
}

fn custom<'a>(props: &'a [OdcsCustomProperty], name: &str) -> Option<&'a Json> {
    props.iter().find(|p| p.property == name).map(|p| &p.value)
}

// ---------------------------------------------------------------------------
// The compiled contract.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
    Number,
    Date,
    Timestamp,
    Boolean,
}

impl FieldType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => FieldType::String,
            "integer" => FieldType::Integer,
            "number" => FieldType::Number,
            "date" => FieldType::Date,
            "timestamp" => FieldType::Timestamp,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Timestamp => "timestamp",
            FieldType::Boolean => "boolean",
        }
    }

    /// The catalog (Hive/Athena) type; also understood by DuckDB and DataFusion.
    pub fn sql_type(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "bigint",
            FieldType::Number => "double",
            FieldType::Date => "date",
            FieldType::Timestamp => "timestamp",
            FieldType::Boolean => "boolean",
        }
    }
}

/// A field pattern. The common shape `^[class]{m,n}$` (ids, clinic numbers) is
/// checked with a byte table instead of the regex engine: it runs for every row.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
    run: Option<ClassRun>,
}

#[derive(Debug, Clone)]
struct ClassRun {
    allowed: [bool; 256],
    min: usize,
    max: usize,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Pattern {
            regex: Regex::new(source)?,
            run: ClassRun::parse(source),
        })
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    pub fn is_match(&self, s: &str) -> bool {
        match &self.run {
            Some(r) => {
                (r.min..=r.max).contains(&s.len()) && s.bytes().all(|b| r.allowed[b as usize])
            }
            None => self.regex.is_match(s),
        }
    }
}

impl ClassRun {
    /// `^[...]{m}$` or `^[...]{m,n}$` with only ASCII letters, digits, `_` and
    /// ranges in the class (and `-` last); anything else returns `None`.
    fn parse(p: &str) -> Option<Self> {
        let body = p.strip_prefix("^[")?.strip_suffix('$')?;
        let (class, reps) = body.split_once("]{")?;
        let reps = reps.strip_suffix('}')?;
        let (min, max) = match reps.split_once(',') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let n = reps.parse().ok()?;
                (n, n)
            }
        };
        let mut allowed = [false; 256];
        let c = class.as_bytes();
        let mut i = 0;
        while i < c.len() {
            let b = c[i];
            if !(b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && i == c.len() - 1)) {
                return None;
            }
            if i + 2 < c.len() && c[i + 1] == b'-' {
                let end = c[i + 2];
                if !end.is_ascii_alphanumeric() || end < b {
                    return None;
                }
                for x in b..=end {
                    allowed[x as usize] = true;
                }
                i += 3;
            } else {
                allowed[b as usize] = true;
                i += 1;
            }
        }
        Some(ClassRun { allowed, min, max })
    }
}

/// An allowed-values list, with the code system it comes from and optional labels.
#[derive(Debug, Clone)]
pub struct CodeList {
    pub system: Option<String>,
    pub values: Vec<(String, Option<String>)>,
    // Fx: this lookup runs for every row and the keys are short, trusted codes.
    set: rustc_hash::FxHashSet<String>,
}

impl CodeList {
    pub fn contains(&self, v: &str) -> bool {
        self.set.contains(v)
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub description: String,
    /// The description in Danish (customProperty `descriptionDa`): the catalogs and
    /// the data dictionary give both.
    pub description_da: String,
    pub field_type: FieldType,
    pub required: bool,
    pub pattern: Option<Pattern>,
    pub max_length: Option<usize>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub min_date: Option<NaiveDate>,
    /// A date may not lie after the day the delivery was made.
    pub not_after_delivery: bool,
    pub code_list: Option<CodeList>,
    pub examples: Vec<String>,
    pub classification: Option<String>,
    /// Which CPR shapes make a value of this (non-CPR) field a `cpr_in_wrong_column`
    /// error: all of them, or, for a column declared `tenDigitNumbers`, only the
    /// separated and eCPR forms a plain number never has.
    pub cpr_shape: crate::cpr::detect::Shape,
    /// The field holds identifiers (customProperty `identifier`): record, resource,
    /// bundle, contact or course ids, or references to them. The value names the id
    /// space; fields holding the same ids (an id and the references to it) share it, so
    /// a research extract re-keys them alike and they still join within one extract.
    pub identifier: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Windows1252 => "windows-1252",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFormat {
    Csv {
        delimiter: u8,
    },
    Ndjson,
    /// FHIR R4 Bundles (NDJSON, or one Bundle per file), fanned out to `tables`.
    Fhir {
        tables: Vec<String>,
    },
    /// Not delivered on its own: produced from the delivery contract `from`.
    Derived {
        from: String,
    },
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub format: FileFormat,
    pub encoding: Encoding,
    /// The decimal separator for `number` fields (`.` or `,`).
    pub decimal_separator: u8,
    /// Share of invalid rows above which the whole delivery is rejected.
    pub reject_threshold: f64,
    /// Share of rows (bundles) without a usable CPR number above which the whole
    /// delivery is rejected: a CPR column that is mostly unusable means swapped or
    /// shifted columns, never a delivery to accept with warnings.
    pub unusable_cpr_threshold: f64,
    /// Cap on the size of a delivery as read (after decompressing a `.gz`: a zip-bomb
    /// guard).
    pub max_decompressed_bytes: u64,
    /// The longest line read (a record; for KL Gateway NDJSON a bundle, and the
    /// whole of a single-Bundle file): a file of one endless line is refused early,
    /// with bounded memory.
    pub max_line_bytes: u64,
    /// The most columns a header may name.
    pub max_columns: usize,
    /// The most entries one FHIR bundle may have.
    pub max_bundle_entries: usize,
    /// The earliest delivery day an object key may name (the latest is tomorrow).
    pub earliest_day: NaiveDate,
}

/// How a record's version is known: from one of its fields, or from when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRule {
    Field(usize),
    ReceivedAt,
}

#[derive(Debug, Clone)]
pub struct Contract {
    pub id: String,
    pub version: String,
    pub title: String,
    /// What one row of the table is.
    pub table_description: String,
    pub purpose: String,
    pub usage: String,
    pub limitations: String,
    pub status: String,
    pub source: String,
    pub dataset: String,
    pub fields: Vec<Field>,
    pub cpr_field: Option<usize>,
    /// A second CPR number on the row (`role: cprLink`, e.g. the new number of a
    /// person given a new one): pseudonymised with the same key into
    /// [`crate::lake::LINKED_PERSON_COLUMN`], and, like the CPR, never stored.
    pub cpr_link_field: Option<usize>,
    /// The person's date of birth as a register gives it (`role: birthDate`), e.g. for
    /// replacement numbers, whose digits carry no birth date. Checked like any date,
    /// then, like the CPR, never stored: the lake keeps the year and month it gives
    /// (`birth_year`, `birth_month`) and the age at the event. A day-precise birth date
    /// is most of a CPR number.
    pub birth_date_field: Option<usize>,
    pub record_key: Vec<usize>,
    pub version_rule: VersionRule,
    pub event_date: usize,
    pub reporting_unit: Option<usize>,
    pub delivery: Delivery,
    /// Quality thresholds (customProperties `quality`).
    pub quality: QualityRules,
    /// The expected delivery calendar (customProperties `reception`); only datasets
    /// that are delivered on their own have one.
    pub reception: Option<Reception>,
    /// The columns a research extract may carry at all (customProperties
    /// `extract: {allow: [...]}`): contract fields other than the CPR, and the person
    /// attributes the lake derives from it. `None`: nothing of the dataset is extracted.
    pub extract_allow: Option<Vec<String>>,
}

impl Contract {
    /// The lake table name: `<source>_<dataset>`.
    pub fn table(&self) -> String {
        format!("{}_{}", self.source, self.dataset)
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Is field `i` a CPR number (the row's own or its link)? Such a field is
    /// pseudonymised or dropped, never stored as it came.
    pub fn is_cpr_column(&self, i: usize) -> bool {
        Some(i) == self.cpr_field || Some(i) == self.cpr_link_field
    }

    /// Is field `i` read but never stored as it came: a CPR number or the birth date?
    /// The lake table has no column for it; what the lake keeps instead is derived
    /// (`person_id`, `linked_person_id`, the birth year and month).
    pub fn is_withheld(&self, i: usize) -> bool {
        self.is_cpr_column(i) || Some(i) == self.birth_date_field
    }

    /// The names of the fields the lake never stores (see [`Contract::is_withheld`]).
    pub fn withheld_names(&self) -> impl Iterator<Item = &str> {
        (0..self.fields.len())
            .filter(|&i| self.is_withheld(i))
            .map(|i| self.fields[i].name.as_str())
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn from_yaml(file: &str, text: &str) -> Result<Self, ContractError> {
        let doc: OdcsDocument =
            serde_yaml_ng::from_str(text).map_err(|source| ContractError::Yaml {
                file: file.to_string(),
                source,
            })?;
        compile(file, doc)
    }
}

fn compile(file: &str, doc: OdcsDocument) -> Result<Contract, ContractError> {
    let bad = |message: String| ContractError::Invalid {
        file: file.to_string(),
        message,
    };
    if !doc.api_version.starts_with("v3.") {
        return Err(bad(format!(
            "apiVersion is {:?}; this platform reads ODCS v3.x",
            doc.api_version
        )));
    }
    if doc.kind != "DataContract" {
        return Err(bad(format!(
            "kind is {:?}; expected DataContract",
            doc.kind
        )));
    }
    let (source, dataset) = doc
        .id
        .split_once('.')
        .ok_or_else(|| bad(format!("id {:?} is not <source>.<dataset>", doc.id)))?;
    let [object] = <[OdcsObject; 1]>::try_from(doc.schema).map_err(|s| {
        bad(format!(
            "schema has {} objects; expected exactly one",
            s.len()
        ))
    })?;

    let mut fields = Vec::with_capacity(object.properties.len());
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys: Vec<(i32, usize)> = Vec::new();
    for (i, p) in object.properties.iter().enumerate() {
        let where_ = format!("property {:?}", p.name);
        let field_type = FieldType::parse(&p.logical_type).ok_or_else(|| {
            bad(format!(
                "{where_}: logicalType {:?} is not one of string, integer, number, date, timestamp, boolean",
                p.logical_type
            ))
        })?;
        let opts = &p.logical_type_options;
        let pattern = match opts.get("pattern") {
            Some(Json::String(s)) => Some(
                Pattern::new(s)
                    .map_err(|e| bad(format!("{where_}: pattern does not compile: {e}")))?,
            ),
            Some(other) => {
                return Err(bad(format!(
                    "{where_}: pattern must be a string, found {other}"
                )));
            }
            None => None,
        };
        let num = |k: &str| opts.get(k).and_then(Json::as_f64);
        let min_date = match (field_type, opts.get("minimum")) {
            (FieldType::Date | FieldType::Timestamp, Some(Json::String(s))) => Some(
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|e| bad(format!("{where_}: minimum {s:?} is not a date: {e}")))?,
            ),
            _ => None,
        };
        let code_list = match custom(&p.custom_properties, "codeList") {
            Some(v) => {
                Some(parse_code_list(v).map_err(|m| bad(format!("{where_}: codeList {m}")))?)
            }
            None => None,
        };
        let identifier = match custom(&p.custom_properties, "identifier") {
            None => None,
            Some(Json::String(space)) if id_space_ok(space) => Some(space.clone()),
            Some(other) => {
                return Err(bad(format!(
                    "{where_}: identifier must name the field's id space (letters, digits, '.', '_', '-'; \
                     e.g. \"lpr.kontakt\"), found {other}"
                )));
            }
        };
        if identifier.is_some() && field_type != FieldType::String {
            return Err(bad(format!(
                "{where_}: an identifier must be a string (it is re-keyed in research extracts)"
            )));
        }
        let role = match custom(&p.custom_properties, "role") {
            None => None,
            Some(Json::String(r)) if ROLES.contains(&r.as_str()) => Some(r.clone()),
            // A misspelt role would silently store what the role protects (a CPR
            // number or a birth date as a plain column).
            Some(other) => {
                return Err(bad(format!(
                    "{where_}: role {other} is not one of {}",
                    ROLES.join(", ")
                )));
            }
        };
        if role.is_none() && looks_like_birth_date(&p.name) {
            return Err(bad(format!(
                "{where_}: a field named like a birth date needs role birthDate, so that only its \
                 year and month are stored (a day-precise birth date is most of a CPR number)"
            )));
        }
        if let Some(role) = role
            && let Some(prev) = roles.insert(role.clone(), i)
        {
            return Err(bad(format!(
                "role {role:?} is given to both {:?} and {:?}",
                object.properties[prev].name, p.name
            )));
        }
        if p.primary_key {
            keys.push((p.primary_key_position.unwrap_or(i as i32), i));
        }
        fields.push(Field {
            name: p.name.clone(),
            description: p.description.clone().unwrap_or_default().trim().to_string(),
            description_da: custom(&p.custom_properties, "descriptionDa")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .trim()
                .to_string(),
            field_type,
            required: p.required,
            pattern,
            max_length: opts
                .get("maxLength")
                .and_then(Json::as_u64)
                .map(|n| n as usize),
            minimum: if min_date.is_some() {
                None
            } else {
                num("minimum")
            },
            maximum: num("maximum"),
            min_date,
            not_after_delivery: custom(&p.custom_properties, "notAfterDeliveryDate")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            code_list,
            examples: p
                .examples
                .iter()
                .map(|e| match e {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            classification: p.classification.clone(),
            cpr_shape: if custom(&p.custom_properties, "tenDigitNumbers")
                .and_then(Json::as_bool)
                .unwrap_or(false)
            {
                crate::cpr::detect::Shape::Separated
            } else {
                crate::cpr::detect::Shape::Any
            },
            identifier,
        });
    }
    if fields.is_empty() {
        return Err(bad("schema has no properties".into()));
    }
    let table = format!("{source}_{dataset}");
    if object.name != table {
        return Err(bad(format!(
            "the schema object is named {:?}; the lake table of {} is {table:?}",
            object.name, doc.id
        )));
    }
    let mut names = HashSet::new();
    for f in &fields {
        if !names.insert(f.name.as_str()) {
            return Err(bad(format!("property {:?} is declared twice", f.name)));
        }
    }

    let cpr_field = roles.get("cpr").copied();
    if let Some(i) = cpr_field
        && fields[i].field_type != FieldType::String
    {
        return Err(bad(format!(
            "the cpr field {:?} must be a string",
            fields[i].name
        )));
    }
    if let Some(i) = cpr_field
        && fields[i].identifier.is_some()
    {
        return Err(bad(format!(
            "the cpr field {:?} is the person, not an identifier: it never leaves the landing zone",
            fields[i].name
        )));
    }
    let cpr_link_field = roles.get("cprLink").copied();
    if let Some(i) = cpr_link_field {
        let f = &fields[i];
        if cpr_field.is_none() {
            return Err(bad(format!(
                "{:?} has role cprLink, but no field has role cpr: a link joins the row's person to another",
                f.name
            )));
        }
        if f.field_type != FieldType::String || f.identifier.is_some() {
            return Err(bad(format!(
                "the cprLink field {:?} must be a plain string: it is a CPR number and never leaves the landing zone",
                f.name
            )));
        }
    }
    let birth_date_field = roles.get("birthDate").copied();
    if let Some(i) = birth_date_field {
        let f = &fields[i];
        if cpr_field.is_none() {
            return Err(bad(format!(
                "{:?} has role birthDate, but no field has role cpr: a birth date describes the row's person",
                f.name
            )));
        }
        if f.field_type != FieldType::Date || f.identifier.is_some() {
            return Err(bad(format!(
                "the birthDate field {:?} must be a plain date",
                f.name
            )));
        }
    }
    let event_date = *roles
        .get("eventDate")
        .ok_or_else(|| bad("no property has role eventDate (it partitions the lake)".into()))?;
    if fields[event_date].field_type != FieldType::Date || !fields[event_date].required {
        return Err(bad(format!(
            "the eventDate field {:?} must be a required date",
            fields[event_date].name
        )));
    }
    let version_rule = match roles.get("version") {
        Some(&i) if fields[i].field_type == FieldType::Timestamp => VersionRule::Field(i),
        Some(&i) => {
            return Err(bad(format!(
                "the version field {:?} must be a timestamp",
                fields[i].name
            )));
        }
        None => VersionRule::ReceivedAt,
    };
    keys.sort();
    let record_key: Vec<usize> = keys.into_iter().map(|(_, i)| i).collect();
    if record_key.is_empty() {
        return Err(bad("no property is a primaryKey (the record key)".into()));
    }
    if let Some(&i) = record_key
        .iter()
        .find(|&&i| [cpr_field, cpr_link_field, birth_date_field].contains(&Some(i)))
    {
        return Err(bad(format!(
            "primary key {:?} is a CPR number or birth date, which the lake never stores; \
             the record key is stored in the lake, so it needs a key of its own",
            fields[i].name
        )));
    }
    if let Some(f) = record_key.iter().map(|&i| &fields[i]).find(|f| !f.required) {
        return Err(bad(format!("primary key {:?} must be required", f.name)));
    }

    let props = &doc.custom_properties;
    let delivery = custom(props, "delivery")
        .ok_or_else(|| bad("customProperties has no `delivery` (format, encoding, ...)".into()))?;
    let delivery = parse_delivery(delivery).map_err(|m| bad(format!("delivery: {m}")))?;
    let quality: QualityRules = serde_json::from_value(
        custom(props, "quality")
            .ok_or_else(|| {
                bad("customProperties has no `quality` (thresholds per check kind)".into())
            })?
            .clone(),
    )
    .map_err(|e| bad(format!("quality: {e}")))?;
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    quality
        .check(&names)
        .map_err(|m| bad(format!("quality: {m}")))?;
    let reception: Option<Reception> = custom(props, "reception")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| bad(format!("reception: {e}")))?;
    if reception.is_some() && matches!(delivery.format, FileFormat::Derived { .. }) {
        return Err(bad(
            "reception: a derived dataset is not delivered, so it has no calendar".into(),
        ));
    }
    let extract_allow = custom(props, "extract")
        .map(|v| {
            parse_extract_allow(
                v,
                &fields,
                [cpr_field, cpr_link_field, birth_date_field],
                &table,
            )
        })
        .transpose()
        .map_err(|m| bad(format!("extract: {m}")))?;

    Ok(Contract {
        title: doc.name.unwrap_or_else(|| doc.id.clone()),
        table_description: object.description.unwrap_or_default().trim().to_string(),
        source: source.to_string(),
        dataset: dataset.to_string(),
        id: doc.id,
        version: doc.version,
        status: doc.status.unwrap_or_else(|| "active".into()),
        purpose: doc
            .description
            .purpose
            .unwrap_or_default()
            .trim()
            .to_string(),
        usage: doc.description.usage.unwrap_or_default().trim().to_string(),
        limitations: doc
            .description
            .limitations
            .unwrap_or_default()
            .trim()
            .to_string(),
        reporting_unit: roles.get("reportingUnit").copied(),
        fields,
        cpr_field,
        cpr_link_field,
        birth_date_field,
        record_key,
        version_rule,
        event_date,
        delivery,
        quality,
        reception,
        extract_allow,
    })
}

/// The roles a property can have (customProperties `role`).
const ROLES: [&str; 6] = [
    "cpr",
    "cprLink",
    "birthDate",
    "eventDate",
    "version",
    "reportingUnit",
];

/// A property name that says "date of birth" in Danish or English (`foedselsdato`,
/// `fødselsdato`, `birth_date`, `birthDate`, `date_of_birth`, `dob`).
fn looks_like_birth_date(name: &str) -> bool {
    let n: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    [
        "foedselsdato",
        "fødselsdato",
        "foedselsdag",
        "fødselsdag",
        "birthdate",
        "dateofbirth",
        "dob",
    ]
    .contains(&n.as_str())
}

/// An id space: `lpr.kontakt`, `kommune.resource`.
fn id_space_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `{allow: [column, ...]}`: every name a column of the lake table that may leave it.
fn parse_extract_allow(
    v: &Json,
    fields: &[Field],
    [cpr_field, cpr_link_field, birth_date_field]: [Option<usize>; 3],
    table: &str,
) -> Result<Vec<String>, String> {
    let Some(map) = v.as_object() else {
        return Err(format!("must be {{allow: [columns]}}, found {v}"));
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != "allow") {
        return Err(format!("unknown key {k:?}; only `allow` is read"));
    }
    let items = map
        .get("allow")
        .and_then(Json::as_array)
        .ok_or("needs `allow`, the list of columns an extract may carry")?;
    let mut allow: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Some(name) = item.as_str() else {
            return Err(format!("allow entry {item} is not a column name"));
        };
        let is_field = fields.iter().position(|f| f.name == name);
        if is_field.is_some() && (is_field == cpr_field || is_field == cpr_link_field) {
            return Err(format!(
                "allow names {name:?}, the CPR column, which never leaves the landing zone"
            ));
        }
        if is_field.is_some() && is_field == birth_date_field {
            return Err(format!(
                "allow names {name:?}, the birth date, which the lake does not store (birth_year and birth_month may be allowed)"
            ));
        }
        if crate::lake::NEVER_EXTRACTED.contains(&name) {
            return Err(format!(
                "allow names {name:?}, the lake's person key or lineage, which no extract carries"
            ));
        }
        let derived = cpr_field.is_some()
            && crate::lake::PERSON_ATTRIBUTES
                .iter()
                .any(|(a, _)| *a == name);
        if is_field.is_none() && !derived {
            return Err(format!(
                "allow names {name:?}, which is not a column of {table}"
            ));
        }
        if allow.iter().any(|a| a == name) {
            return Err(format!("allow names {name:?} twice"));
        }
        allow.push(name.to_string());
    }
    if allow.is_empty() {
        return Err("allow is empty; leave `extract` out when nothing may be extracted".into());
    }
    Ok(allow)
}

fn parse_code_list(v: &Json) -> Result<CodeList, String> {
    let (system, items) = match v {
        Json::Array(items) => (None, items),
        Json::Object(m) => (
            m.get("system").and_then(Json::as_str).map(str::to_string),
            m.get("values")
                .and_then(Json::as_array)
                .ok_or("needs `values`")?,
        ),
        _ => return Err("must be a list or {system, values}".into()),
    };
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Json::String(s) => values.push((s.clone(), None)),
            Json::Object(m) => {
                let code = m
                    .get("code")
                    .and_then(Json::as_str)
                    .ok_or("entry without `code`")?;
                let label = m.get("label").and_then(Json::as_str).map(str::to_string);
                values.push((code.to_string(), label));
            }
            other => {
                return Err(format!(
                    "entry {other} is neither a code nor {{code, label}}"
                ));
            }
        }
    }
    if values.is_empty() {
        return Err("is empty".into());
    }
    let set = values.iter().map(|(c, _)| c.clone()).collect();
    Ok(CodeList {
        system,
        values,
        set,
    })
}

fn parse_delivery(v: &Json) -> Result<Delivery, String> {
    let get = |k: &str| v.get(k);
    let format = match get("format").and_then(Json::as_str) {
        Some("csv") => {
            let d = get("delimiter").and_then(Json::as_str).unwrap_or(";");
            let [b] = d.as_bytes() else {
                return Err(format!("delimiter {d:?} must be one ASCII character"));
            };
            FileFormat::Csv { delimiter: *b }
        }
        Some("ndjson") => FileFormat::Ndjson,
        Some("fhir") => {
            let tables = get("tables")
                .and_then(Json::as_array)
                .ok_or("format fhir needs `tables`, the contracts its bundles fan out to")?
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or("tables must be contract ids")
                })
                .collect::<Result<Vec<_>, _>>()?;
            FileFormat::Fhir { tables }
        }
        Some("derived") => FileFormat::Derived {
            from: get("from")
                .and_then(Json::as_str)
                .ok_or("format derived needs `from`, the delivery contract")?
                .to_string(),
        },
        other => {
            return Err(format!(
                "format {other:?} must be csv, ndjson, fhir or derived"
            ));
        }
    };
    let encoding = match get("encoding").and_then(Json::as_str).unwrap_or("utf-8") {
        e if e.eq_ignore_ascii_case("utf-8") => Encoding::Utf8,
        e if e.eq_ignore_ascii_case("windows-1252") => Encoding::Windows1252,
        e => return Err(format!("encoding {e:?} must be utf-8 or windows-1252")),
    };
    let decimal_separator = match get("decimalSeparator")
        .and_then(Json::as_str)
        .unwrap_or(".")
    {
        "." => b'.',
        "," => b',',
        d => return Err(format!("decimalSeparator {d:?} must be . or ,")),
    };
    let reject_threshold = get("rejectThreshold")
        .and_then(Json::as_f64)
        .unwrap_or(0.05);
    if !(0.0..=1.0).contains(&reject_threshold) {
        return Err(format!(
            "rejectThreshold {reject_threshold} must be a share between 0 and 1"
        ));
    }
    let unusable_cpr_threshold = get("unusableCprThreshold")
        .and_then(Json::as_f64)
        .unwrap_or(0.05);
    if !(0.0..=1.0).contains(&unusable_cpr_threshold) {
        return Err(format!(
            "unusableCprThreshold {unusable_cpr_threshold} must be a share between 0 and 1"
        ));
    }
    let max_decompressed_bytes = get("maxDecompressedBytes")
        .and_then(Json::as_u64)
        .unwrap_or(8 << 30);
    // A record is a line; a KL Gateway line is a whole bundle (a citizen's day).
    let default_line = match format {
        FileFormat::Fhir { .. } => 16 << 20,
        _ => 1 << 20,
    };
    let max_line_bytes = get("maxLineBytes")
        .and_then(Json::as_u64)
        .unwrap_or(default_line);
    let max_columns = get("maxColumns").and_then(Json::as_u64).unwrap_or(500) as usize;
    let max_bundle_entries = get("maxBundleEntries")
        .and_then(Json::as_u64)
        .unwrap_or(5_000) as usize;
    let earliest_day = match get("earliestDeliveryDay").and_then(Json::as_str) {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| format!("earliestDeliveryDay {d:?} must be a date (YYYY-MM-DD)"))?,
        None => NaiveDate::from_ymd_opt(2007, 1, 1).expect("a date"),
    };
    if max_line_bytes == 0 || max_columns == 0 || max_bundle_entries == 0 {
        return Err("maxLineBytes, maxColumns and maxBundleEntries must be positive".into());
    }
    Ok(Delivery {
        format,
        encoding,
        decimal_separator,
        reject_threshold,
        unusable_cpr_threshold,
        max_decompressed_bytes,
        max_line_bytes,
        max_columns,
        max_bundle_entries,
        earliest_day,
    })
}

/// All contracts the platform knows, by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    contracts: BTreeMap<String, Contract>,
}

impl Registry {
    /// The contracts compiled into the binary.
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        for (id, text) in BUILTIN {
            let c = Contract::from_yaml(&format!("contracts/{id}.yaml"), text)
                .unwrap_or_else(|e| panic!("built-in contract is broken: {e}"));
            assert_eq!(&c.id, id, "contract file name and id disagree");
            r.insert(c);
        }
        r.check_links()
            .unwrap_or_else(|e| panic!("built-in contracts: {e}"));
        r
    }

    /// Every fan-out table and every `derived from` names a known contract.
    pub fn check_links(&self) -> Result<(), String> {
        for c in self.iter() {
            let linked: Vec<&String> = match &c.delivery.format {
                FileFormat::Fhir { tables } => tables.iter().collect(),
                FileFormat::Derived { from } => vec![from],
                _ => Vec::new(),
            };
            if let Some(missing) = linked.into_iter().find(|id| self.get(id).is_none()) {
                return Err(format!(
                    "{} refers to {missing}, which has no contract",
                    c.id
                ));
            }
        }
        Ok(())
    }

    /// The contracts of the tables a delivery contract writes: itself, then its fan-out.
    pub fn tables_of<'a>(&'a self, c: &'a Contract) -> Vec<&'a Contract> {
        let mut out = vec![c];
        if let FileFormat::Fhir { tables } = &c.delivery.format {
            out.extend(tables.iter().filter_map(|t| self.get(t)));
        }
        out
    }

    pub fn insert(&mut self, c: Contract) {
        self.contracts.insert(c.id.clone(), c);
    }

    pub fn get(&self, id: &str) -> Option<&Contract> {
        self.contracts.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.values()
    }

    pub fn ids(&self) -> Vec<&str> {
        self.contracts.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
apiVersion: v3.0.2
kind: DataContract
id: test.rows
version: 1.0.0
schema:
  - name: test_rows
    properties:
      - name: id
        logicalType: string
        required: true
        primaryKey: true
      - name: cpr
        logicalType: string
        required: true
        customProperties: [{property: role, value: cpr}]
      - name: dato
        logicalType: date
        required: true
        customProperties: [{property: role, value: eventDate}]
customProperties:
  - property: delivery
    value: {format: csv, delimiter: ";", encoding: utf-8}
  - property: quality
    value: {completeness: 5, conformance: 1, plausibility: 1, uniqueness: 0}
"#;

    #[test]
    fn fast_patterns_agree_with_the_regex() {
        let samples = [
            "",
            "0",
            "012345",
            "01234",
            "0123456",
            "ab_-9",
            "AP-D-000123",
            "æ",
            "a b",
            "12345a",
            "ÆØÅ123",
        ];
        for p in [
            "^[0-9]{6}$",
            "^[A-Za-z0-9_-]{1,64}$",
            "^[0-9]{1,20}$",
            "^D[A-Z][0-9]{2}[0-9A-Z]{0,4}$",
            "^([01][0-9]|2[0-3]):[0-5][0-9]$",
        ] {
            let fast = Pattern::new(p).unwrap();
            let slow = Regex::new(p).unwrap();
            for s in samples {
                assert_eq!(fast.is_match(s), slow.is_match(s), "{p} on {s:?}");
            }
        }
        assert!(Pattern::new("^[0-9]{6}$").unwrap().run.is_some());
        assert!(Pattern::new("^D[A-Z][0-9]{2}$").unwrap().run.is_none());
    }

    #[test]
    fn every_builtin_contract_compiles() {
        let r = Registry::builtin();
        assert_eq!(r.ids().len(), BUILTIN.len());
        for c in r.iter() {
            assert!(c.cpr_field.is_some(), "{} has no CPR field", c.id);
            assert!(!c.purpose.is_empty(), "{} has no purpose", c.id);
        }
    }

    #[test]
    fn every_builtin_field_is_described_in_english_and_danish() {
        let r = Registry::builtin();
        let missing: Vec<String> = r
            .iter()
            .flat_map(|c| {
                c.fields
                    .iter()
                    .filter(|f| f.description.is_empty() || f.description_da.is_empty())
                    .map(move |f| format!("{}.{}", c.id, f.name))
            })
            .collect();
        assert!(missing.is_empty(), "without both descriptions: {missing:?}");
    }

    #[test]
    fn builtin_contracts_tag_their_identifiers_and_allow_extracts() {
        let r = Registry::builtin();
        for c in r.iter() {
            let allow = c
                .extract_allow
                .as_ref()
                .unwrap_or_else(|| panic!("{} has no extract allow-list", c.id));
            assert!(!allow.is_empty(), "{}", c.id);
            for f in &c.fields {
                // Ids and references by their names: a new one must be tagged too.
                let id_like = f.name.ends_with("_id") || f.name.starts_with("dw_ek_");
                assert_eq!(
                    f.identifier.is_some(),
                    id_like,
                    "{}.{}: identifier tag",
                    c.id,
                    f.name
                );
            }
        }
        // A reference is in the id space of what it refers to, so it joins after re-keying.
        let space = |c: &str, f: &str| r.get(c).unwrap().field(f).unwrap().identifier.clone();
        assert_eq!(
            space("kommune.indsats", "tilstand_id"),
            space("kommune.tilstand", "resource_id")
        );
        assert_eq!(
            space("kommune.opfoelgning", "vedroerer_id"),
            space("kommune.indsats", "resource_id")
        );
        assert_eq!(
            space("lpr.diagnose", "dw_ek_kontakt"),
            space("lpr.kontakt", "dw_ek_kontakt")
        );
        assert_eq!(
            space("speciallaege.diagnose", "kontakt_id"),
            space("speciallaege.kontakt", "kontakt_id")
        );
        assert_ne!(
            space("lpr.kontakt", "dw_ek_forloeb"),
            space("lpr.kontakt", "dw_ek_kontakt")
        );
    }

    #[test]
    fn identifiers_and_the_allow_list_are_checked_at_load() {
        let tagged = MINIMAL.replace(
            "        primaryKey: true\n",
            "        primaryKey: true\n        customProperties: [{property: identifier, value: test.rows}]\n",
        );
        let with_allow = |allow: &str| {
            format!("{tagged}  - property: extract\n    value: {{allow: [{allow}]}}\n")
        };
        let c = Contract::from_yaml("t", &with_allow("id, dato, sex, birth_year")).unwrap();
        assert_eq!(c.fields[0].identifier.as_deref(), Some("test.rows"));
        assert_eq!(c.fields[2].identifier, None);
        assert_eq!(
            c.extract_allow.as_deref().unwrap(),
            ["id", "dato", "sex", "birth_year"]
        );
        assert_eq!(
            Contract::from_yaml("t", MINIMAL).unwrap().extract_allow,
            None
        );

        let err = |text: &str| {
            Contract::from_yaml("contracts/t.yaml", text)
                .unwrap_err()
                .to_string()
        };
        let e = err(&with_allow("id, diagnose"));
        assert!(
            e.contains("contracts/t.yaml") && e.contains("\"diagnose\"") && e.contains("test_rows"),
            "{e}"
        );
        assert!(err(&with_allow("cpr")).contains("CPR column"));
        for lineage in ["person_id", "record_key", "delivery_id", "received_at"] {
            let e = err(&with_allow(lineage));
            assert!(e.contains(lineage) && e.contains("lineage"), "{e}");
        }
        assert!(err(&with_allow("id, id")).contains("twice"));
        assert!(err(&with_allow("")).contains("empty"));
        let e = err(&format!("{tagged}  - property: extract\n    value: [id]\n"));
        assert!(e.contains("allow"), "{e}");

        let bad_space = tagged.replace("value: test.rows", "value: true");
        assert!(err(&bad_space).contains("id space"));
        let cpr_id = MINIMAL.replace(
            "[{property: role, value: cpr}]",
            "[{property: role, value: cpr}, {property: identifier, value: x}]",
        );
        assert!(err(&cpr_id).contains("is the person"));
        let date_id = MINIMAL.replace(
            "[{property: role, value: eventDate}]",
            "[{property: role, value: eventDate}, {property: identifier, value: x}]",
        );
        assert!(err(&date_id).contains("must be a string"));
    }

    /// MINIMAL with a fourth property, `foedselsdato`, with these custom properties.
    fn with_birth_date(custom: &str, logical_type: &str) -> String {
        MINIMAL.replace(
            "customProperties:\n  - property: delivery",
            &format!(
                "      - name: foedselsdato\n        logicalType: {logical_type}\n        required: true\n{custom}\
                 customProperties:\n  - property: delivery"
            ),
        )
    }

    #[test]
    fn a_birth_date_is_withheld_and_only_with_its_role() {
        let role = "        customProperties: [{property: role, value: birthDate}]\n";
        let c = Contract::from_yaml("t", &with_birth_date(role, "date")).unwrap();
        assert_eq!(c.birth_date_field, Some(3));
        assert!(c.is_withheld(3) && c.is_withheld(1) && !c.is_withheld(0) && !c.is_withheld(2));
        assert!(!c.is_cpr_column(3));
        assert_eq!(
            c.withheld_names().collect::<Vec<_>>(),
            ["cpr", "foedselsdato"]
        );
        // The lake has its year and month, never the column.
        let schema = crate::lake::schema(&c);
        assert!(schema.field_with_name("foedselsdato").is_err());
        assert!(schema.field_with_name("birth_year").is_ok());

        let err = |text: &str| Contract::from_yaml("t", text).unwrap_err().to_string();
        // Named like a birth date but without the role: refused, whatever its type.
        for (name, ty) in [
            ("foedselsdato", "date"),
            ("Fødselsdato", "date"),
            ("birth_date", "string"),
            ("dateOfBirth", "date"),
        ] {
            let text =
                with_birth_date("", ty).replace("name: foedselsdato", &format!("name: {name}"));
            let e = err(&text);
            assert!(
                e.contains("role birthDate") && e.contains(name),
                "{name}: {e}"
            );
        }
        // The role on a string, or without a CPR on the row.
        let e = err(&with_birth_date(role, "string"));
        assert!(e.contains("must be a plain date"), "{e}");
        let no_cpr = with_birth_date(role, "date").replace(
            "        customProperties: [{property: role, value: cpr}]\n",
            "",
        );
        assert!(err(&no_cpr).contains("no field has role cpr"));
        // Never a research extract column, never a record key.
        let allow = format!(
            "{}  - property: extract\n    value: {{allow: [id, foedselsdato]}}\n",
            with_birth_date(role, "date")
        );
        assert!(err(&allow).contains("the birth date"));
        let keyed = with_birth_date(role, "date").replace(
            "        required: true\n        customProperties: [{property: role, value: birthDate}]",
            "        required: true\n        primaryKey: true\n        primaryKeyPosition: 2\n        customProperties: [{property: role, value: birthDate}]",
        );
        assert!(err(&keyed).contains("birth date"));
    }

    #[test]
    fn minimal_contract_defaults() {
        let c = Contract::from_yaml("t", MINIMAL).unwrap();
        assert_eq!(c.table(), "test_rows");
        assert_eq!(c.record_key, vec![0]);
        assert_eq!(c.cpr_field, Some(1));
        assert_eq!(c.event_date, 2);
        assert_eq!(c.version_rule, VersionRule::ReceivedAt);
        assert_eq!(c.delivery.reject_threshold, 0.05);
        assert_eq!(c.delivery.format, FileFormat::Csv { delimiter: b';' });
    }

    #[test]
    fn inconsistent_contracts_are_refused_with_the_reason() {
        let no_event = MINIMAL.replace(
            "\n        customProperties: [{property: role, value: eventDate}]",
            "",
        );
        let e = Contract::from_yaml("t", &no_event).unwrap_err().to_string();
        assert!(e.contains("no property has role eventDate"), "{e}");

        // A misspelt role is not silently ignored: it would store what it protects.
        let misspelt = MINIMAL.replace("value: cpr}", "value: CPR}");
        let e = Contract::from_yaml("t", &misspelt).unwrap_err().to_string();
        assert!(e.contains("\"cpr\"") && e.contains("role \"CPR\""), "{e}");

        let bad_type = MINIMAL.replace("logicalType: date", "logicalType: datum");
        let e = Contract::from_yaml("t", &bad_type).unwrap_err().to_string();
        assert!(e.contains("\"datum\""), "{e}");

        let no_key = MINIMAL.replace("primaryKey: true", "primaryKey: false");
        let e = Contract::from_yaml("t", &no_key).unwrap_err().to_string();
        assert!(e.contains("primaryKey"), "{e}");

        let v2 = MINIMAL.replace("v3.0.2", "v2.2.0");
        assert!(Contract::from_yaml("t", &v2).is_err());

        // The CPR as the record key would put it in the lake.
        let cpr_key = MINIMAL.replace(
            "        required: true\n        customProperties: [{property: role, value: cpr}]",
            "        required: true\n        primaryKey: true\n        customProperties: [{property: role, value: cpr}]",
        );
        let e = Contract::from_yaml("t", &cpr_key).unwrap_err().to_string();
        assert!(e.contains("is a CPR number"), "{e}");

        // A link needs a person to link, and is a plain string.
        let link = "      - name: nyt_cpr\n        logicalType: string\n        required: true\n        \
                    customProperties: [{property: role, value: cprLink}]\n      - name: dato";
        let linked = MINIMAL.replacen("      - name: dato", link, 1);
        let c = Contract::from_yaml("t", &linked).unwrap();
        assert_eq!(c.cpr_link_field, Some(2));
        assert!(c.is_cpr_column(1) && c.is_cpr_column(2) && !c.is_cpr_column(0));
        let orphan = linked.replace(
            "        required: true\n        customProperties: [{property: role, value: cpr}]",
            "        required: true",
        );
        let e = Contract::from_yaml("t", &orphan).unwrap_err().to_string();
        assert!(e.contains("no field has role cpr"), "{e}");
    }
}
