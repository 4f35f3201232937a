//! The publish function. Two triggers, one crate (both read the whole lake with
//! DataFusion, which no other function links):
//!
//! - a publication: current tables, dimensions and marts for a reference date, asked
//!   as `{"reference_date": "YYYY-MM-DD"}` by the publish state machine (the template's
//!   `PublishStateMachine`, started daily by a schedule or by an operator to re-run a
//!   day), or as an EventBridge "Scheduled Event" (the day of its `time`, UTC). A
//!   failure is the invocation's error: the state machine retries it, then its alarm.
//! - extract-queue messages `{"project": "P-1", "spec_key": "projects/P-1.yaml"}`: one
//!   research extract each, from the approved spec kept in the lake bucket, with the
//!   project's key from Secrets Manager. Partial batch failures, so a bad request is
//!   retried alone and ends in the extract DLQ.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::NaiveDate;
use naerdata::Platform;
use naerdata::aws::batch::Failures;
use naerdata::aws::{Clients, ConfigError, ProjectSecretKey, Resources};
use naerdata::custody::NoLakeKey;
use naerdata::extract::{ExtractManifest, ExtractRequest, ProjectSpec};
use naerdata::metrics::{Metrics, Unit};
use naerdata::ports::KeyProvider;
use naerdata::publish::Published;
use naerdata::warehouse::Warehouse;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum PublishFnError {
    #[error(
        "the event is neither a schedule event, {{\"reference_date\": \"YYYY-MM-DD\"}}, {{\"maintain\": {{...}}}} nor an SQS batch: {0}"
    )]
    BadEvent(String),
    #[error(
        "the message body is not an extract request ({{\"project\": ..., \"spec_key\": ...}}): {0}"
    )]
    BadMessage(String),
    #[error("extract request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Publish(#[from] naerdata::publish::PublishError),
    #[error(transparent)]
    Step(#[from] naerdata::StepError),
}

/// Where a research project's key comes from.
pub type ProjectKeys = Arc<dyn Fn(&str) -> Box<dyn KeyProvider> + Send + Sync>;

pub struct Publisher {
    pub platform: Platform,
    pub project_keys: ProjectKeys,
    /// Where the marts' SQL runs: Athena when the function is given a workgroup and a
    /// Glue database (`NAERDATA_ATHENA_WORKGROUP`, `NAERDATA_GLUE_DATABASE`), else in
    /// the function on DataFusion.
    pub warehouse: Option<Arc<dyn Warehouse>>,
}

/// What the function was asked to do.
#[derive(Debug, PartialEq)]
pub enum Trigger {
    /// A publication for a day; `full` rebuilds every current table from its history
    /// (`{"reference_date": ..., "full": true}`) instead of merging what changed.
    Publish {
        day: NaiveDate,
        full: bool,
    },
    Extracts(SqsEvent),
    /// Lake maintenance (compaction, retention): `{"maintain": {"retention_days": N}}`,
    /// the input of the maintenance schedule.
    Maintain {
        retention_days: i64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualPublish {
    reference_date: NaiveDate,
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize)]
struct MaintainRequest {
    #[serde(default = "default_retention")]
    retention_days: i64,
}

fn default_retention() -> i64 {
    naerdata::maintain::DEFAULT_RETENTION_DAYS
}

/// Tells the triggers apart by shape: SQS batches have `Records`, schedule events a
/// `detail-type` of "Scheduled Event".
pub fn trigger(event: Value) -> Result<Trigger, PublishFnError> {
    let bad = |e: serde_json::Error| PublishFnError::BadEvent(e.to_string());
    if event.get("Records").is_some() {
        return Ok(Trigger::Extracts(
            serde_json::from_value(event).map_err(bad)?,
        ));
    }
    if let Some(m) = event.get("maintain") {
        let m: MaintainRequest = serde_json::from_value(m.clone()).map_err(bad)?;
        if m.retention_days < 1 {
            return Err(PublishFnError::BadEvent(format!(
                "retention_days must be at least 1, not {}",
                m.retention_days
            )));
        }
        return Ok(Trigger::Maintain {
            retention_days: m.retention_days,
        });
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let e: CloudWatchEvent = serde_json::from_value(event).map_err(bad)?;
        return Ok(Trigger::Publish {
            day: e.time.date_naive(),
            full: false,
        });
    }
    let m: ManualPublish = serde_json::from_value(event).map_err(bad)?;
    Ok(Trigger::Publish {
        day: m.reference_date,
        full: m.full,
    })
}

impl Publisher {
    /// The publisher on AWS: project keys are the secrets `<NAERDATA_PROJECT_SECRET_PREFIX><project>`.
    /// Publish never holds the lake key: whatever the platform was given, it has none
    /// (extracts compare project keys with the lake key's recorded fingerprint).
    pub fn aws(
        clients: &Clients,
        r: &Resources,
        mut platform: Platform,
    ) -> Result<Publisher, ConfigError> {
        let prefix = r.project_secret_prefix.clone().ok_or_else(|| {
            ConfigError("set the environment variable NAERDATA_PROJECT_SECRET_PREFIX".into())
        })?;
        platform.keys = Arc::new(NoLakeKey("the publish function"));
        let kms = r
            .secrets_kms_key_id
            .clone()
            .or_else(|| r.kms_key_id.clone());
        let secrets = clients.secrets.clone();
        let warehouse: Option<Arc<dyn Warehouse>> = match (&r.athena_workgroup, &r.glue_database) {
            (Some(workgroup), Some(database)) => Some(Arc::new(
                naerdata::aws::athena::Athena::new(clients.athena.clone(), workgroup, database),
            )),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "set both NAERDATA_ATHENA_WORKGROUP and NAERDATA_GLUE_DATABASE (the marts on Athena) or neither (the marts in the function)".into(),
                ));
            }
        };
        Ok(Publisher {
            platform,
            warehouse,
            project_keys: Arc::new(move |project| {
                Box::new(ProjectSecretKey::new(
                    secrets.clone(),
                    &prefix,
                    project,
                    kms.clone(),
                ))
            }),
        })
    }

    /// One invocation: the response is the publish summary, or the SQS batch response.
    pub async fn handle(&self, event: Value) -> Result<Value, PublishFnError> {
        self.handle_until(event, None).await
    }

    /// One invocation that ends at `deadline` (the Lambda context's): the warehouse
    /// stops its queries and fails the publication shortly before it, so the failure
    /// is recorded and the state machine's retry starts over cleanly.
    pub async fn handle_until(
        &self,
        event: Value,
        deadline: Option<Instant>,
    ) -> Result<Value, PublishFnError> {
        match trigger(event)? {
            Trigger::Publish { day, full } => {
                let published = self.publish_until(day, full, deadline).await?;
                Ok(summary(day, &published))
            }
            Trigger::Extracts(batch) => Ok(serde_json::to_value(self.extracts(&batch).await)
                .expect("a batch response serialises")),
            Trigger::Maintain { retention_days } => {
                let tables = self.maintain(retention_days).await?;
                Ok(json!({ "maintained": tables }))
            }
        }
    }

    /// Compaction and retention of every lake table.
    pub async fn maintain(
        &self,
        retention_days: i64,
    ) -> Result<Vec<naerdata::maintain::TableMaintenance>, PublishFnError> {
        let started = Instant::now();
        let o = naerdata::maintain::MaintainOptions {
            retention: chrono::Duration::days(retention_days),
            ..Default::default()
        };
        let result = naerdata::maintain::maintain(&self.platform, &o).await;
        Metrics::new()
            .dimension("Function", "publish")
            .dimension("Run", "maintain")
            .dimension("State", if result.is_ok() { "ok" } else { "failed" })
            .count("Runs", 1)
            .value("Duration", started.elapsed().as_secs_f64(), Unit::Seconds)
            .emit();
        let tables = result?;
        tracing::info!(
            tables = tables.len(),
            files_before = tables.iter().map(|t| t.files_before).sum::<usize>(),
            files_after = tables.iter().map(|t| t.files_after).sum::<usize>(),
            seconds = started.elapsed().as_secs_f64(),
            "lake maintained"
        );
        Ok(tables)
    }

    pub async fn publish(&self, day: NaiveDate, full: bool) -> Result<Published, PublishFnError> {
        self.publish_until(day, full, None).await
    }

    async fn publish_until(
        &self,
        day: NaiveDate,
        full: bool,
        deadline: Option<Instant>,
    ) -> Result<Published, PublishFnError> {
        let started = Instant::now();
        let warehouse = match (&self.warehouse, deadline) {
            (Some(w), Some(d)) => Some(w.until(d)),
            (w, _) => w.clone(),
        };
        let result = naerdata::publish::publish_with(
            &self.platform,
            day,
            naerdata::publish::PublishOptions { full, warehouse },
        )
        .await;
        let metrics = Metrics::new()
            .dimension("Function", "publish")
            .dimension("Run", "publish")
            .dimension("State", if result.is_ok() { "ok" } else { "failed" })
            .count("Runs", 1)
            .value("Duration", started.elapsed().as_secs_f64(), Unit::Seconds);
        metrics.emit();
        let published = result?;
        // Each municipality's own page, from what was just published and the reception
        // calendar as of the same day.
        let p = &self.platform;
        let seen = naerdata::monitor::observe(p, day).await?;
        let reference = naerdata::reference::store::current(p.stores.lake.as_ref())
            .await
            .map_err(|e| naerdata::StepError::Internal(format!("reference data: {e}")))?;
        let codes: Vec<String> = naerdata::reference::kommuner()
            .iter()
            .map(|k| k.code.clone())
            .collect();
        let pages = naerdata::municipal::write_pages(p, &seen, &reference, &codes).await?;
        tracing::info!(
            reference_date = %day,
            pages = pages.len(),
            "municipality pages written"
        );
        tracing::info!(
            reference_date = %day,
            tables = published.tables.len(),
            marts = published.marts.len(),
            seconds = started.elapsed().as_secs_f64(),
            "published"
        );
        Ok(published)
    }

    /// One extract per message, one at a time: each may use most of the memory.
    pub async fn extracts(
        &self,
        batch: &SqsEvent,
    ) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        let mut failures = Failures::default();
        for m in &batch.records {
            let started = Instant::now();
            let result = self.extract(m).await;
            Metrics::new()
                .dimension("Function", "publish")
                .dimension("Run", "extract")
                .dimension("State", if result.is_ok() { "ok" } else { "failed" })
                .count("Runs", 1)
                .value("Duration", started.elapsed().as_secs_f64(), Unit::Seconds)
                .emit();
            match result {
                Ok(manifest) => tracing::info!(
                    project = %manifest.project,
                    tables = manifest.tables.len(),
                    "extract written"
                ),
                Err(e) => failures.fail(m, &e),
            }
        }
        failures.into_response()
    }

    async fn extract(&self, m: &SqsMessage) -> Result<ExtractManifest, PublishFnError> {
        let body = m.body.as_deref().unwrap_or_default();
        let request: ExtractRequest =
            serde_json::from_str(body).map_err(|e| PublishFnError::BadMessage(e.to_string()))?;
        request.check_key().map_err(PublishFnError::BadRequest)?;
        let text = read_text(&self.platform, &request.spec_key).await?;
        let spec = ProjectSpec::from_yaml(&text).map_err(PublishFnError::BadRequest)?;
        request
            .check_spec(&spec)
            .map_err(PublishFnError::BadRequest)?;
        let as_of = match request.as_of.as_deref() {
            Some(a) => naerdata::catalog::AsOf::parse(a).map_err(PublishFnError::BadRequest)?,
            None => naerdata::catalog::AsOf::Newest,
        };
        let key = (self.project_keys)(&spec.project);
        Ok(naerdata::extract::extract_as_of(&self.platform, &spec, key.as_ref(), &as_of).await?)
    }
}

/// A small object of the lake store as text (the reader blocks: a blocking thread).
async fn read_text(p: &Platform, key: &str) -> Result<String, PublishFnError> {
    let reader = p
        .stores
        .lake
        .open(key)
        .await
        .map_err(naerdata::StepError::from)?;
    let key = key.to_string();
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        let mut reader = reader;
        reader
            .read_to_string(&mut text)
            .map(|_| text)
            .map_err(|e| PublishFnError::BadRequest(format!("reading {key}: {e}")))
    })
    .await
    .map_err(|e| PublishFnError::BadRequest(format!("reading the spec: {e}")))?
}

/// The invocation's answer to a publish: counts only, never data.
fn summary(day: NaiveDate, p: &Published) -> Value {
    json!({
        "reference_date": day.to_string(),
        "tables": p.tables.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
        "current": p.current.iter().map(|m| json!({"table": m.table, "rows": m.rows, "how": m.how.to_string(), "seconds": m.seconds})).collect::<Vec<_>>(),
        "marts": p.marts,
        "marts_sql": p.marts.iter().map(|m| json!({"mart": m.name, "seconds": m.query_seconds, "bytes_scanned": m.bytes_scanned})).collect::<Vec<_>>(),
    })
}
