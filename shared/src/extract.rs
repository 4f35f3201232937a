//! Research extracts: the approved tables and columns for one project, with
//! project-specific pseudonyms.
//!
//! `projekt_person_id = hex(HMAC-SHA-256(K_project, person_id))`, with a key per project
//! kept apart from the lake key, so two projects' releases cannot be linked to each
//! other or to the lake. An extract never contains `person_id`, a CPR, or a column the
//! project was not approved for. It reads the current state of each table.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::custody;
use crate::lake;
use crate::platform::{Platform, StepError};
use crate::ports::KeyProvider;
use crate::pseudonym::{Key, Pseudonymiser};
use crate::publish::{PublishError, current_sql};

/// An approved project: which tables, which columns.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProjectSpec {
    pub project: String,
    #[serde(default)]
    pub title: String,
    pub datasets: Vec<DatasetSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatasetSpec {
    /// A dataset id (`lpr.kontakt`) or table name (`lpr_kontakt`).
    pub dataset: String,
    pub columns: Vec<String>,
}

/// Columns no extract may carry: the lake's person key and lineage that leads back to it.
pub const FORBIDDEN: &[&str] = &[
    "person_id",
    "person_key_version",
    "record_key",
    "delivery_id",
];

#[derive(Debug, Serialize)]
pub struct ExtractManifest {
    pub project: String,
    pub title: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub project_key_version: u32,
    /// (table, rows, key)
    pub tables: Vec<(String, u64, String)>,
}

impl ProjectSpec {
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let spec: ProjectSpec =
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
        Ok(spec)
    }
}

/// Where approved project specs are kept in the lake store (AWS: the lake bucket), so
/// an extract request names a spec that stays on record rather than carrying one.
pub const SPEC_PREFIX: &str = "projects/";

/// The lake store key of a project's approved spec.
pub fn spec_key(project: &str) -> String {
    format!("{SPEC_PREFIX}{project}.yaml")
}

/// An extract request on the extract queue (AWS): `{"project": ..., "spec_key": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExtractRequest {
    pub project: String,
    pub spec_key: String,
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

/// Writes the extract under `extracts/<project>/` in the lake store.
pub async fn extract(
    p: &Platform,
    spec: &ProjectSpec,
    project_key: &dyn KeyProvider,
) -> Result<ExtractManifest, PublishError> {
    let bad = |m: String| PublishError::Mart {
        mart: format!("extract {}", spec.project),
        message: m,
    };
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
    let ctx = catalog::session(p).await?;
    let with_data: Vec<String> = catalog::tables_with_data(p)
        .await?
        .iter()
        .map(|c| c.table())
        .collect();
    let mut manifest = ExtractManifest {
        project: spec.project.clone(),
        title: spec.title.clone(),
        created_at: p.clock.now(),
        project_key_version: key.version,
        tables: Vec::new(),
    };
    for d in &spec.datasets {
        let contract = p
            .contracts
            .iter()
            .find(|c| c.id == d.dataset || c.table() == d.dataset)
            .ok_or_else(|| bad(format!("unknown dataset {:?}", d.dataset)))?;
        let table = contract.table();
        let known: Vec<String> = lake::catalog_columns(contract)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for c in &d.columns {
            if FORBIDDEN.contains(&c.as_str())
                || contract
                    .cpr_field
                    .is_some_and(|i| contract.fields[i].name == *c)
            {
                return Err(bad(format!("column {c} of {table} is never released")));
            }
            if !known.contains(c) {
                return Err(bad(format!("{table} has no column {c}")));
            }
        }
        if !with_data.contains(&table) {
            return Err(bad(format!("{table} has no data")));
        }
        let cols = d.columns.join(", ");
        let sql = format!(
            "SELECT person_id, {cols} FROM ({}) AS current_rows",
            current_sql(contract)
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let mut out = Vec::with_capacity(batches.len());
        for b in &batches {
            out.push(rekey(b, &pseudonymiser)?);
        }
        let schema = out.first().map(RecordBatch::schema).unwrap_or_else(|| {
            Arc::new(Schema::new(vec![Field::new(
                "projekt_person_id",
                DataType::Utf8,
                true,
            )]))
        });
        let rows = out.iter().map(|b| b.num_rows() as u64).sum();
        let key = format!("extracts/{}/{table}.parquet", spec.project);
        crate::publish::put_batches(p, &key, schema, &out).await?;
        manifest.tables.push((table, rows, key));
    }
    let body = serde_json::to_vec_pretty(&manifest).expect("serialisable");
    p.stores
        .lake
        .put(
            &format!("extracts/{}/manifest.json", spec.project),
            Bytes::from(body),
        )
        .await
        .map_err(StepError::from)?;
    Ok(manifest)
}

/// Replaces `person_id` (first column) with the project pseudonym.
fn rekey(b: &RecordBatch, p: &Pseudonymiser) -> Result<RecordBatch, PublishError> {
    let ids = b
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| StepError::Internal("person_id is not a string column".into()))?;
    let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 64);
    let mut hex = [0u8; 64];
    for i in 0..ids.len() {
        if ids.is_null(i) {
            out.append_null();
        } else {
            p.pseudonym_into(ids.value(i).as_bytes(), &mut hex);
            out.append_value(std::str::from_utf8(&hex).expect("hex is ASCII"));
        }
    }
    let mut fields = vec![Field::new("projekt_person_id", DataType::Utf8, true)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(out.finish())];
    for (f, c) in b.schema().fields().iter().zip(b.columns()).skip(1) {
        fields.push(f.as_ref().clone());
        columns.push(c.clone());
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
