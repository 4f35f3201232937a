//! Research extracts: the approved tables and columns for one project, unlinkable to
//! the lake and to every other project's extracts.
//!
//! - A spec may only ask for columns on its dataset's allow-list (the contract's
//!   `extract: {allow: [...]}`); the CPR, `person_id` and the lake's lineage
//!   ([`FORBIDDEN`]) can never be on it.
//! - `projekt_person_id = hex(HMAC-SHA-256(K_project, person_id))`, with a key per project
//!   kept apart from the lake key.
//! - Every column the contract tags `identifier` (record, resource, bundle, contact and
//!   course ids, references) is re-keyed with the same project key in a separate domain:
//!   `hex(HMAC-SHA-256(K_project, "naerdata/extract-id/v1" 0x00 <id space> 0x00 <value>))`.
//!   A `person_id` is 64 hex digits and never starts with `n`, so no id can take a
//!   person's value; ids of one space (an id and the references to it) stay joinable
//!   within the extract, and different spaces cannot collide.
//! - Timestamps become dates (the Danish calendar day).
//! - Rows are sorted by the project pseudonym, so row order says nothing another
//!   project's extract could line up with.
//! - Beside the tables: `codebook.json` and `codebook.md` (columns, types,
//!   descriptions, code lists, treatment, and how unique each column's values are, with
//!   quasi-identifiers flagged) and `manifest.json` with the SHA-256 of the spec file.
//!
//! Quasi-identifiers (dates, codes, sex, birth year, reporting units) are released as
//! they are, by design: they are what research needs. The codebook makes them visible.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog;
use crate::contract::{Contract, FieldType, Registry};
use crate::custody;
use crate::lake;
use crate::platform::{Platform, StepError};
use crate::ports::KeyProvider;
use crate::pseudonym::{Key, Pseudonymiser};
use crate::publish::PublishError;
use crate::validate::days_since_epoch;

/// An approved project: which tables, which columns.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    pub project: String,
    #[serde(default)]
    pub title: String,
    pub datasets: Vec<DatasetSpec>,
    /// SHA-256 (hex) of the spec file's bytes, set by [`ProjectSpec::from_yaml`]; the
    /// manifest and codebook record it (`sha256sum SPEC.yaml` gives the same).
    #[serde(skip)]
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// A dataset id (`lpr.kontakt`) or table name (`lpr_kontakt`).
    pub dataset: String,
    pub columns: Vec<String>,
}

/// Columns no extract may carry: the lake's person key and the lineage that leads back
/// to it and to deliveries. A contract's allow-list cannot name them (a load error).
pub const FORBIDDEN: &[&str] = lake::NEVER_EXTRACTED;

/// The project pseudonym, the first column of every extract table.
pub const PERSON_COLUMN: &str = "projekt_person_id";

/// The domain of re-keyed identifiers (see the module documentation).
const ID_DOMAIN: &[u8] = b"naerdata/extract-id/v1\0";

/// A column whose values are this unique (share of non-null rows holding a value no
/// other row holds) is flagged a quasi-identifier in the codebook.
pub const RARE_VALUES_SHARE: f64 = 0.01;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractManifest {
    pub project: String,
    pub title: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub project_key_version: u32,
    /// SHA-256 (hex) of the spec file the extract was made from.
    pub spec_sha256: String,
    /// The lake store keys of the codebook (JSON, then Markdown).
    pub codebook: Vec<String>,
    pub tables: Vec<ExtractedTable>,
    /// The Delta version of each table read: `naerdata extract --as-of` with these
    /// reproduces the data files (within the lake's retention period).
    #[serde(default)]
    pub lake_versions: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractedTable {
    pub table: String,
    pub dataset: String,
    pub contract_version: String,
    pub rows: u64,
    /// The lake store key of the Parquet file.
    pub key: String,
}

impl ProjectSpec {
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let mut spec: ProjectSpec =
            serde_yaml_ng::from_str(text).map_err(|e| format!("project spec: {e}"))?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !ok(&spec.project) {
            return Err(format!(
                "project id {:?} must be letters, digits, '-' or '_'",
                spec.project
            ));
        }
        if spec.datasets.is_empty() {
            return Err("the project spec approves no datasets".into());
        }
        spec.sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(spec)
    }

    /// The recorded hash: of the file when the spec was read from one, else of the
    /// spec's JSON form.
    fn recorded_hash(&self) -> String {
        if self.sha256.is_empty() {
            hex::encode(Sha256::digest(
                serde_json::to_vec(self).expect("a spec serialises"),
            ))
        } else {
            self.sha256.clone()
        }
    }
}

/// Where approved project specs are kept in the lake store (AWS: the lake bucket), so
/// an extract request names a spec that stays on record rather than carrying one.
pub use crate::layout::PROJECTS_PREFIX as SPEC_PREFIX;

/// The lake store key of a project's approved spec.
pub fn spec_key(project: &str) -> String {
    crate::layout::project_spec_key(project)
}

/// An extract request on the extract queue (AWS): `{"project": ..., "spec_key": ...}`,
/// and `"as_of"` (as `naerdata extract --as-of` takes it) to reproduce an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExtractRequest {
    pub project: String,
    pub spec_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

impl ExtractRequest {
    /// Specs are read only from under `projects/`.
    pub fn check_key(&self) -> Result<(), String> {
        if !self.spec_key.starts_with(SPEC_PREFIX) || self.spec_key.contains("..") {
            return Err(format!(
                "spec_key {:?} is not under {SPEC_PREFIX}",
                self.spec_key
            ));
        }
        Ok(())
    }

    /// The spec read is the one of the project named.
    pub fn check_spec(&self, spec: &ProjectSpec) -> Result<(), String> {
        if spec.project != self.project {
            return Err(format!(
                "{} is the spec of project {}, not {}",
                self.spec_key, spec.project, self.project
            ));
        }
        Ok(())
    }
}

/// Where a project's key lives: beside the lake key, one file per project.
pub fn project_key_path(home_keys: &std::path::Path, project: &str) -> std::path::PathBuf {
    home_keys.join("projects").join(format!("{project}.json"))
}

// ---------------------------------------------------------------------------
// The plan: what each column of each table becomes.

/// What an extract does to a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    /// `person_id` replaced by the project pseudonym.
    ProjectPseudonym,
    /// An identifier re-keyed with the project key (HMAC, its id space).
    Rekeyed,
    /// A timestamp coarsened to its Danish calendar day.
    DateOfTimestamp,
    /// Released as the lake holds it.
    AsInLake,
}

/// What a column is, for disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// The project pseudonym.
    Person,
    /// A re-keyed identifier: joins within the extract, never to another.
    Identifier,
    /// Released as is; with other such columns it may single out a person (dates,
    /// birth year, sex, places, rare values).
    QuasiIdentifier,
    /// Released as is (codes, statuses, values).
    Attribute,
}

#[derive(Debug, Clone)]
struct ColumnPlan {
    name: String,
    treatment: Treatment,
    id_space: Option<String>,
    description: String,
    code_list: Option<CodeListEntry>,
    /// Why the column is a quasi-identifier whatever its values.
    quasi: Option<&'static str>,
}

/// One table of an extract, checked against the contract's allow-list.
#[derive(Debug, Clone)]
pub struct TablePlan<'c> {
    pub contract: &'c Contract,
    columns: Vec<ColumnPlan>,
}

impl TablePlan<'_> {
    /// The extract table's columns, the project pseudonym first.
    pub fn columns(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Checks a spec against the contracts: known datasets, each listed once, columns on
/// the allow-list only. Nothing is read or written.
pub fn plan<'c>(spec: &ProjectSpec, contracts: &'c Registry) -> Result<Vec<TablePlan<'c>>, String> {
    let mut out: Vec<TablePlan> = Vec::with_capacity(spec.datasets.len());
    for d in &spec.datasets {
        let contract = contracts
            .iter()
            .find(|c| c.id == d.dataset || c.table() == d.dataset)
            .ok_or_else(|| format!("unknown dataset {:?}", d.dataset))?;
        let table = contract.table();
        if out.iter().any(|t| t.contract.id == contract.id) {
            return Err(format!("the spec lists {} twice", contract.id));
        }
        let Some(allow) = &contract.extract_allow else {
            return Err(format!(
                "the contract of {} has no extract allow-list: nothing of it is extracted",
                contract.id
            ));
        };
        if contract.cpr_field.is_none() {
            return Err(format!(
                "{table} has no person column; extracts are per person"
            ));
        }
        let mut columns = vec![ColumnPlan {
            name: PERSON_COLUMN.into(),
            treatment: Treatment::ProjectPseudonym,
            id_space: None,
            description: "The person: HMAC-SHA-256 of the lake's person_id under the project's key (hex). \
                          The same person has the same value in every table of this project's extracts, \
                          and a different one in any other project's."
                .into(),
            code_list: None,
            quasi: None,
        }];
        for c in &d.columns {
            if FORBIDDEN.contains(&c.as_str())
                || contract
                    .field_index(c)
                    .is_some_and(|i| contract.is_withheld(i))
            {
                return Err(format!("column {c} of {table} is never released"));
            }
            if !allow.contains(c) {
                return Err(format!(
                    "column {c} of {table} is not on the extract allow-list of contract {} (allowed: {})",
                    contract.id,
                    allow.join(", ")
                ));
            }
            if columns.iter().any(|x| x.name == *c) {
                return Err(format!("the spec lists column {c} of {table} twice"));
            }
            columns.push(column_plan(contract, c));
        }
        out.push(TablePlan { contract, columns });
    }
    Ok(out)
}

fn column_plan(contract: &Contract, name: &str) -> ColumnPlan {
    if let Some(f) = contract.field(name) {
        let is_unit = contract
            .reporting_unit
            .is_some_and(|i| contract.fields[i].name == name);
        let (treatment, quasi) = match (&f.identifier, f.field_type) {
            (Some(_), _) => (Treatment::Rekeyed, None),
            (None, FieldType::Timestamp) => (Treatment::DateOfTimestamp, Some("date")),
            (None, FieldType::Date) => (Treatment::AsInLake, Some("date")),
            (None, _) if is_unit => (Treatment::AsInLake, Some("reporting unit (a place)")),
            (None, _) => (Treatment::AsInLake, None),
        };
        return ColumnPlan {
            name: name.into(),
            treatment,
            id_space: f.identifier.clone(),
            description: f.description.clone(),
            code_list: f.code_list.as_ref().map(|l| CodeListEntry {
                system: l.system.clone(),
                codes: l
                    .values
                    .iter()
                    .map(|(code, label)| Code {
                        code: code.clone(),
                        label: label.clone(),
                    })
                    .collect(),
            }),
            quasi,
        };
    }
    // A person attribute (the allow-list admits nothing else).
    let description = lake::PERSON_ATTRIBUTES
        .iter()
        .find(|(a, _)| *a == name)
        .map(|(_, d)| d.to_string())
        .unwrap_or_default();
    let codes = |items: &[(&str, Option<&str>)]| CodeListEntry {
        system: None,
        codes: items
            .iter()
            .map(|(c, l)| Code {
                code: c.to_string(),
                label: l.map(str::to_string),
            })
            .collect(),
    };
    let code_list = match name {
        "sex" => Some(codes(&[("K", Some("kvinde")), ("M", Some("mand"))])),
        "cpr_status" => Some(codes(&[
            ("valid", None),
            (
                "valid_no_mod11",
                Some("valid date, fails modulus 11 (legal since 2007)"),
            ),
            ("replacement", Some("erstatningsnummer")),
            ("ecpr", Some("eCPR")),
            ("missing", None),
            ("invalid_format", None),
            ("invalid_date", None),
        ])),
        _ => None,
    };
    ColumnPlan {
        name: name.into(),
        treatment: Treatment::AsInLake,
        id_space: None,
        description,
        code_list,
        quasi: (name != "cpr_status").then_some("derived from the CPR"),
    }
}

// ---------------------------------------------------------------------------
// The codebook.

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Codebook {
    pub project: String,
    pub title: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub spec_sha256: String,
    pub project_key_version: u32,
    pub tables: Vec<CodebookTable>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodebookTable {
    pub table: String,
    pub dataset: String,
    pub contract_version: String,
    pub title: String,
    pub description: String,
    pub rows: u64,
    /// Distinct project pseudonyms.
    pub persons: u64,
    pub columns: Vec<CodebookColumn>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodebookColumn {
    pub name: String,
    /// The catalog type (string, bigint, double, date, boolean, int).
    #[serde(rename = "type")]
    pub column_type: String,
    pub description: String,
    pub kind: ColumnKind,
    pub treatment: Treatment,
    /// The id space of a re-keyed identifier.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_space: Option<String>,
    /// Why the column is a quasi-identifier.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quasi_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code_list: Option<CodeListEntry>,
    pub values: Uniqueness,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeListEntry {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub system: Option<String>,
    pub codes: Vec<Code>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Code {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub label: Option<String>,
}

/// How unique a column's values are in the extract.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Uniqueness {
    pub non_null: u64,
    pub nulls: u64,
    /// Distinct non-null values.
    pub distinct: u64,
    /// distinct / non_null (1 = every value different).
    pub distinct_share: f64,
    /// Share of non-null rows whose value no other row holds.
    pub singleton_share: f64,
}

/// Counts a column's values (by a 64-bit hash of each value's row encoding).
pub fn uniqueness(a: &ArrayRef) -> Result<Uniqueness, arrow::error::ArrowError> {
    const CHUNK: usize = 64 * 1024;
    let converter = RowConverter::new(vec![SortField::new(a.data_type().clone())])?;
    let mut counts: HashMap<u64, u32> = HashMap::new();
    let mut nulls = 0u64;
    let mut offset = 0;
    while offset < a.len() {
        let slice = a.slice(offset, CHUNK.min(a.len() - offset));
        let rows = converter.convert_columns(std::slice::from_ref(&slice))?;
        for i in 0..slice.len() {
            if slice.is_null(i) {
                nulls += 1;
                continue;
            }
            let mut h = DefaultHasher::new();
            rows.row(i).as_ref().hash(&mut h);
            *counts.entry(h.finish()).or_default() += 1;
        }
        offset += slice.len();
    }
    let non_null = a.len() as u64 - nulls;
    let distinct = counts.len() as u64;
    let singles = counts.values().filter(|&&n| n == 1).count() as u64;
    let share = |n: u64| {
        if non_null == 0 {
            0.0
        } else {
            n as f64 / non_null as f64
        }
    };
    Ok(Uniqueness {
        non_null,
        nulls,
        distinct,
        distinct_share: share(distinct),
        singleton_share: share(singles),
    })
}

/// The codebook as Markdown, for the researcher.
pub fn codebook_markdown(c: &Codebook) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Codebook: {} {}\n", c.project, c.title);
    let _ = writeln!(
        s,
        "Extract made {} from the spec with SHA-256 `{}`, project key version {}.\n",
        c.created_at.format("%Y-%m-%d %H:%M UTC"),
        c.spec_sha256,
        c.project_key_version
    );
    let _ = writeln!(
        s,
        "- `projekt_person_id` is this project's pseudonym of the person; no other project's \
         extract and no lake table holds its values.\n\
         - *identifier* columns are re-keyed with the project key: they join within this \
         extract (the same id space, the same value), never to another.\n\
         - Timestamps are released as their Danish calendar day.\n\
         - *quasi-identifier* columns are released as they are: combined, they may single out \
         a person. Treat them accordingly. *Distinct* is the share of distinct values among \
         the non-empty ones, *singletons* the share of rows holding a value no other row holds.\n"
    );
    for t in &c.tables {
        let _ = writeln!(
            s,
            "## {} ({} v{})\n",
            t.table, t.dataset, t.contract_version
        );
        let _ = writeln!(s, "{}. {}\n", t.title, t.description);
        let _ = writeln!(s, "{} rows, {} persons.\n", t.rows, t.persons);
        let _ = writeln!(
            s,
            "| Column | Type | Kind | Treatment | Empty | Distinct | Singletons | Description |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for col in &t.columns {
            let kind = match (col.kind, &col.quasi_identifier) {
                (ColumnKind::Person, _) => "person".to_string(),
                (ColumnKind::Identifier, _) => format!(
                    "identifier (`{}`)",
                    col.id_space.as_deref().unwrap_or_default()
                ),
                (ColumnKind::QuasiIdentifier, Some(why)) => format!("quasi-identifier: {why}"),
                _ => "attribute".to_string(),
            };
            let treatment = match col.treatment {
                Treatment::ProjectPseudonym => "project pseudonym",
                Treatment::Rekeyed => "re-keyed",
                Treatment::DateOfTimestamp => "timestamp → date",
                Treatment::AsInLake => "as in the lake",
            };
            let _ = writeln!(
                s,
                "| `{}` | {} | {kind} | {treatment} | {} | {:.1} % | {:.1} % | {} |",
                col.name,
                col.column_type,
                col.values.nulls,
                col.values.distinct_share * 100.0,
                col.values.singleton_share * 100.0,
                col.description.replace('\n', " ").replace('|', "\\|")
            );
        }
        for col in &t.columns {
            if let Some(list) = &col.code_list {
                let codes: Vec<String> = list
                    .codes
                    .iter()
                    .map(|c| match &c.label {
                        Some(l) => format!("`{}` {l}", c.code),
                        None => format!("`{}`", c.code),
                    })
                    .collect();
                let system = list
                    .system
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                let _ = writeln!(s, "\n`{}`{system}: {}", col.name, codes.join(", "));
            }
        }
        let _ = writeln!(s);
    }
    s
}

// ---------------------------------------------------------------------------
// The extract.

/// Writes the extract under `extracts/<project>/` in the lake store: one Parquet file
/// per table, `codebook.json`, `codebook.md`, and `manifest.json` last.
pub fn extract<'a>(
    p: &'a Platform,
    spec: &'a ProjectSpec,
    project_key: &'a dyn KeyProvider,
) -> crate::Boxed<'a, Result<ExtractManifest, PublishError>> {
    Box::pin(extract_inner(p, spec, project_key))
}

/// The body of [`extract`].
async fn extract_inner(
    p: &Platform,
    spec: &ProjectSpec,
    project_key: &dyn KeyProvider,
) -> Result<ExtractManifest, PublishError> {
    extract_as_of(p, spec, project_key, &catalog::AsOf::Newest).await
}

/// An extract of the lake as it was (a time, or the versions an earlier extract
/// recorded), so a project can be given the same data again.
pub fn extract_as_of<'a>(
    p: &'a Platform,
    spec: &'a ProjectSpec,
    project_key: &'a dyn KeyProvider,
    as_of: &'a catalog::AsOf,
) -> crate::Boxed<'a, Result<ExtractManifest, PublishError>> {
    Box::pin(extract_as_of_inner(p, spec, project_key, as_of))
}

/// The body of [`extract_as_of`].
async fn extract_as_of_inner(
    p: &Platform,
    spec: &ProjectSpec,
    project_key: &dyn KeyProvider,
    as_of: &catalog::AsOf,
) -> Result<ExtractManifest, PublishError> {
    let bad = |m: String| PublishError::Mart {
        mart: format!("extract {}", spec.project),
        message: m,
    };
    let plans = plan(spec, &p.contracts).map_err(bad)?;
    let key: Key = project_key.lake_key().await.map_err(StepError::from)?;
    // Against the lake key's recorded fingerprint: publish never holds the lake key.
    let record = custody::read_record(p.stores.lake.as_ref())
        .await
        .map_err(StepError::from)?
        .ok_or_else(|| {
            bad(format!(
                "no lake-key fingerprint is recorded at {}; process a delivery first",
                p.stores.lake.locate(custody::RECORD_KEY)
            ))
        })?;
    record.check_project_key(&key).map_err(bad)?;
    let pseudonymiser = Pseudonymiser::new(&key);
    let (ctx, versions) = catalog::session_as_of(p, as_of).await?;
    if let Some(t) = plans
        .iter()
        .find(|t| !versions.contains_key(&t.contract.table()))
    {
        return Err(bad(format!("{} has no data", t.contract.table())));
    }
    // A person given a new CPR number is one person here too, as in the marts: the
    // changes as of the same lake versions.
    let with_data: Vec<String> = versions.keys().cloned().collect();
    crate::publish::register_person_changes(&ctx, &p.contracts, &with_data).await?;
    let lake_versions = plans
        .iter()
        .map(|t| {
            let name = t.contract.table();
            let v = versions[&name];
            (name, v)
        })
        .collect();
    let created_at = p.clock.now();
    let spec_sha256 = spec.recorded_hash();
    let folder = crate::layout::extract_prefix(&spec.project);
    let mut codebook = Codebook {
        project: spec.project.clone(),
        title: spec.title.clone(),
        created_at,
        spec_sha256: spec_sha256.clone(),
        project_key_version: key.version,
        tables: Vec::new(),
    };
    let mut tables = Vec::with_capacity(plans.len());
    for t in &plans {
        let c = t.contract;
        let table = c.table();
        let cols: Vec<&str> = t.columns.iter().skip(1).map(|c| c.name.as_str()).collect();
        let list = std::iter::once("person_id")
            .chain(cols.iter().copied())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {list} FROM ({}) AS current_rows",
            crate::publish::current_linked_sql(c)
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let batch = release(c, &t.columns, &batches, &pseudonymiser)?;
        let mut columns = Vec::with_capacity(t.columns.len());
        for (plan, (array, field)) in t
            .columns
            .iter()
            .zip(batch.columns().iter().zip(batch.schema().fields()))
        {
            let values = uniqueness(array)?;
            let kind = match plan.treatment {
                Treatment::ProjectPseudonym => ColumnKind::Person,
                Treatment::Rekeyed => ColumnKind::Identifier,
                _ if plan.quasi.is_some() || values.singleton_share >= RARE_VALUES_SHARE => {
                    ColumnKind::QuasiIdentifier
                }
                _ => ColumnKind::Attribute,
            };
            let quasi_identifier = (kind == ColumnKind::QuasiIdentifier).then(|| {
                plan.quasi.map(str::to_string).unwrap_or_else(|| {
                    format!(
                        "rare values ({:.1} % of rows hold a value no other row holds)",
                        values.singleton_share * 100.0
                    )
                })
            });
            columns.push(CodebookColumn {
                name: plan.name.clone(),
                column_type: lake::sql_type(field.data_type()).to_string(),
                description: plan.description.clone(),
                kind,
                treatment: plan.treatment,
                id_space: plan.id_space.clone(),
                quasi_identifier,
                code_list: plan.code_list.clone(),
                values,
            });
        }
        let rows = batch.num_rows() as u64;
        let key = format!("{folder}{table}.parquet");
        crate::publish::put_batches(p, &key, batch.schema(), std::slice::from_ref(&batch)).await?;
        codebook.tables.push(CodebookTable {
            table: table.clone(),
            dataset: c.id.clone(),
            contract_version: c.version.clone(),
            title: c.title.clone(),
            description: c.table_description.clone(),
            rows,
            persons: columns[0].values.distinct,
            columns,
        });
        tables.push(ExtractedTable {
            table,
            dataset: c.id.clone(),
            contract_version: c.version.clone(),
            rows,
            key,
        });
    }
    let codebook_keys = vec![
        format!("{folder}codebook.json"),
        format!("{folder}codebook.md"),
    ];
    let put = |key: String, body: Vec<u8>| async move {
        p.stores
            .lake
            .put(&key, Bytes::from(body))
            .await
            .map_err(StepError::from)
    };
    put(
        codebook_keys[0].clone(),
        serde_json::to_vec_pretty(&codebook).expect("serialisable"),
    )
    .await?;
    put(
        codebook_keys[1].clone(),
        codebook_markdown(&codebook).into_bytes(),
    )
    .await?;
    let manifest = ExtractManifest {
        project: spec.project.clone(),
        title: spec.title.clone(),
        created_at,
        project_key_version: key.version,
        spec_sha256,
        codebook: codebook_keys,
        tables,
        lake_versions,
    };
    put(
        format!("{folder}manifest.json"),
        serde_json::to_vec_pretty(&manifest).expect("serialisable"),
    )
    .await?;
    Ok(manifest)
}

/// The extract table from the query's batches (`person_id`, then the spec's columns):
/// pseudonym and identifiers re-keyed, timestamps as dates, sorted by every column
/// from the pseudonym on.
fn release(
    c: &Contract,
    plans: &[ColumnPlan],
    batches: &[RecordBatch],
    p: &Pseudonymiser,
) -> Result<RecordBatch, PublishError> {
    let lake_schema = lake::schema(c);
    let fields: Vec<Field> = plans
        .iter()
        .map(|plan| {
            let t = match plan.treatment {
                Treatment::ProjectPseudonym | Treatment::Rekeyed => DataType::Utf8,
                Treatment::DateOfTimestamp => DataType::Date32,
                Treatment::AsInLake => lake_schema
                    .field_with_name(&plan.name)
                    .map(|f| f.data_type().clone())
                    .unwrap_or(DataType::Utf8),
            };
            Field::new(&plan.name, t, true)
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plans.len());
        for (plan, array) in plans.iter().zip(b.columns()) {
            columns.push(match plan.treatment {
                Treatment::ProjectPseudonym => hmac_column(array, p, None)?,
                Treatment::Rekeyed => {
                    hmac_column(array, p, Some(plan.id_space.as_deref().unwrap_or_default()))?
                }
                Treatment::DateOfTimestamp => danish_days(array)?,
                Treatment::AsInLake => {
                    arrow::compute::cast(array, schema.field(columns.len()).data_type())?
                }
            });
        }
        out.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    let all = concat_batches(&schema, &out)?;
    drop(out);
    if all.num_rows() < 2 {
        return Ok(all);
    }
    let sort: Vec<SortColumn> = all
        .columns()
        .iter()
        .map(|a| SortColumn {
            values: a.clone(),
            options: None,
        })
        .collect();
    let order = lexsort_to_indices(&sort, None)?;
    Ok(take_record_batch(&all, &order)?)
}

/// HMAC under the project key: of `person_id` itself (`space` None), or of an id in
/// its id space. Empty values stay empty (null).
fn hmac_column(
    a: &ArrayRef,
    p: &Pseudonymiser,
    space: Option<&str>,
) -> Result<ArrayRef, PublishError> {
    let a = arrow::compute::cast(a, &DataType::Utf8)?;
    let values = a
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| StepError::Internal("an id column is not text".into()))?;
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 64);
    let mut hex = [0u8; 64];
    let mut input: Vec<u8> = Vec::with_capacity(128);
    if let Some(space) = space {
        input.extend_from_slice(ID_DOMAIN);
        input.extend_from_slice(space.as_bytes());
        input.push(0);
    }
    let prefix = input.len();
    for i in 0..values.len() {
        if values.is_null(i) || values.value(i).is_empty() {
            out.append_null();
            continue;
        }
        input.truncate(prefix);
        input.extend_from_slice(values.value(i).as_bytes());
        p.pseudonym_into(&input, &mut hex);
        out.append_value(std::str::from_utf8(&hex).expect("hex is ASCII"));
    }
    Ok(Arc::new(out.finish()))
}

/// Timestamps (UTC) as the calendar day in Denmark.
fn danish_days(a: &ArrayRef) -> Result<ArrayRef, PublishError> {
    let a = arrow::compute::cast(
        a,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    let ts = a
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| StepError::Internal("a timestamp column is not a timestamp".into()))?;
    let mut out = Date32Builder::with_capacity(ts.len());
    for i in 0..ts.len() {
        if ts.is_null(i) {
            out.append_null();
        } else {
            out.append_value(danish_day(ts.value(i)));
        }
    }
    Ok(Arc::new(out.finish()))
}

/// The Danish calendar day (days since 1970-01-01) of an instant in microseconds:
/// CET (+1), and CEST (+2) from 01:00 UTC on the last Sunday of March to 01:00 UTC on
/// the last Sunday of October (the EU rule, in force in Denmark since 1996).
pub fn danish_day(micros: i64) -> i32 {
    let utc = DateTime::from_timestamp(micros.div_euclid(1_000_000), 0)
        .unwrap_or_default()
        .naive_utc();
    let last_sunday_0100 = |month: u32| -> NaiveDateTime {
        let last =
            NaiveDate::from_ymd_opt(utc.year(), month, 31).expect("March and October have 31 days");
        let back = last.weekday().num_days_from_sunday() as i64;
        (last - Duration::days(back))
            .and_hms_opt(1, 0, 0)
            .expect("01:00 exists")
    };
    let summer = last_sunday_0100(3) <= utc && utc < last_sunday_0100(10);
    let local = utc + Duration::hours(if summer { 2 } else { 1 });
    days_since_epoch(local.date())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(micros_of: &str) -> NaiveDate {
        let t = DateTime::parse_from_rfc3339(micros_of).unwrap();
        let d = danish_day(t.timestamp_micros());
        NaiveDate::from_num_days_from_ce_opt(d + crate::validate::UNIX_EPOCH_DAYS_FROM_CE).unwrap()
    }

    #[test]
    fn timestamps_become_the_danish_day() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Local times just after midnight keep their Danish day, summer and winter.
        assert_eq!(day("2026-10-01T00:30:00+02:00"), d("2026-10-01"));
        assert_eq!(day("2026-01-15T00:30:00+01:00"), d("2026-01-15"));
        assert_eq!(day("2026-01-15T23:30:00+01:00"), d("2026-01-15"));
        // The same instant written in UTC.
        assert_eq!(day("2026-06-30T22:30:00Z"), d("2026-07-01"));
        assert_eq!(day("2026-12-31T23:30:00Z"), d("2027-01-01"));
        // Around the changes (2026: 29 March and 25 October, 01:00 UTC).
        assert_eq!(day("2026-03-28T22:59:00Z"), d("2026-03-28"));
        assert_eq!(day("2026-03-28T23:30:00Z"), d("2026-03-29"));
        assert_eq!(day("2026-10-24T22:30:00Z"), d("2026-10-25"));
        assert_eq!(day("2026-10-25T22:30:00Z"), d("2026-10-25"));
        assert_eq!(day("2026-10-25T23:30:00Z"), d("2026-10-26"));
    }

    fn spec(yaml: &str) -> ProjectSpec {
        ProjectSpec::from_yaml(yaml).unwrap()
    }

    #[test]
    fn the_spec_is_checked_against_the_allow_lists() {
        let r = Registry::builtin();
        let ok = spec(
            "project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [dw_ek_kontakt, dato_start, sex]\n  - dataset: kommune_indsats\n    columns: [tilstand_id, last_updated]\n",
        );
        let plans = plan(&ok, &r).unwrap();
        assert_eq!(
            plans[0].columns(),
            [PERSON_COLUMN, "dw_ek_kontakt", "dato_start", "sex"]
        );
        let treatments: Vec<Treatment> = plans[1].columns.iter().map(|c| c.treatment).collect();
        assert_eq!(
            treatments,
            [
                Treatment::ProjectPseudonym,
                Treatment::Rekeyed,
                Treatment::DateOfTimestamp
            ]
        );
        assert_eq!(
            plans[1].columns[1].id_space.as_deref(),
            Some("kommune.resource")
        );

        let refused = |yaml: &str| plan(&spec(yaml), &r).unwrap_err();
        let e = refused(
            "project: P\ndatasets:\n  - dataset: kommune.gateway\n    columns: [bundle_id]\n",
        );
        assert!(
            e.contains("bundle_id") && e.contains("allow-list") && e.contains("kommune.gateway"),
            "{e}"
        );
        let e =
            refused("project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [record_key]\n");
        assert!(e.contains("never released"), "{e}");
        let e = refused("project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [cpr]\n");
        assert!(e.contains("never released"), "{e}");
        let e = refused(
            "project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [projekt_person_id]\n",
        );
        assert!(e.contains("allow-list"), "{e}");
        let e = refused(
            "project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [prioritet, prioritet]\n",
        );
        assert!(e.contains("twice"), "{e}");
        let e = refused(
            "project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: []\n  - dataset: lpr_kontakt\n    columns: []\n",
        );
        assert!(e.contains("twice"), "{e}");
        assert!(
            refused("project: P\ndatasets:\n  - dataset: lpr.nope\n    columns: []\n")
                .contains("unknown")
        );
        // A misspelt key is an error, not an empty approval.
        assert!(
            ProjectSpec::from_yaml(
                "project: P\ndatasets:\n  - dataset: lpr.kontakt\n    colums: [prioritet]\n"
            )
            .is_err()
        );
    }

    #[test]
    fn the_spec_hash_is_of_the_file() {
        let text = "project: P\ndatasets:\n  - dataset: lpr.kontakt\n    columns: [prioritet]\n";
        let s = spec(text);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(text.as_bytes())));
        assert_eq!(s.recorded_hash(), s.sha256);
        let changed = spec(&format!("{text}title: ''\n"));
        assert_ne!(
            changed.sha256, s.sha256,
            "any change to the file is a new spec"
        );
    }

    #[test]
    fn ids_are_rekeyed_apart_from_persons_and_by_id_space() {
        let p = Pseudonymiser::new(&Key::new(1, vec![3; 32]).unwrap());
        let person = "a".repeat(64);
        let col = |v: &[Option<&str>]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let as_strings = |a: ArrayRef| -> Vec<Option<String>> {
            let s = a.as_any().downcast_ref::<StringArray>().unwrap();
            (0..s.len())
                .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
                .collect()
        };
        let values = [Some(person.as_str()), Some("1"), None, Some("")];
        let persons = as_strings(hmac_column(&col(&values), &p, None).unwrap());
        let ids = as_strings(hmac_column(&col(&values), &p, Some("lpr.kontakt")).unwrap());
        let other = as_strings(hmac_column(&col(&values), &p, Some("lpr.forloeb")).unwrap());
        assert_eq!(
            persons[0].as_deref(),
            Some(p.pseudonym(person.as_bytes()).as_str())
        );
        assert_ne!(persons[0], ids[0]);
        assert_ne!(ids[1], other[1]);
        assert_eq!(ids[2], None);
        assert_eq!(ids[3], None, "an empty id is no id");
        // Stable within a project.
        assert_eq!(
            ids,
            as_strings(hmac_column(&col(&values), &p, Some("lpr.kontakt")).unwrap())
        );
    }

    #[test]
    fn uniqueness_counts_distinct_values_and_singletons() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("a"),
            Some("b"),
            None,
            Some("c"),
        ]));
        let u = uniqueness(&a).unwrap();
        assert_eq!((u.non_null, u.nulls, u.distinct), (4, 1, 3));
        assert_eq!(u.distinct_share, 0.75);
        assert_eq!(u.singleton_share, 0.5);
    }
}
