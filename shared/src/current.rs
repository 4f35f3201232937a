//! The current tables (`<table>_current`): the latest version of each record key,
//! withdrawn records left out, each person under their newest CPR pseudonym. They are
//! Delta tables under `presentation/current/`, and publish is their only writer.
//!
//! A publication maintains them from what changed since the last one. The curated
//! table's commits after the version the last publication read say which files were
//! added; their rows, reduced to the newest version of each key, are merged into the
//! current table with delta-rs MERGE: a newer version replaces the row, a withdrawing
//! one (entered-in-error, `tilbagekaldt`) deletes it, a new key is inserted, and files
//! holding none of the keys are not rewritten. The keys whose newest version withdraws
//! them are kept beside the table ([`crate::layout::current_withdrawn_key`]), so a late,
//! older version of a withdrawn record stays out, as it would in a rebuild. A new CPR
//! change (`dim_person_skift`) moves the rows of the persons it concerns to their newest
//! pseudonym by a second merge.
//!
//! A table is rebuilt from all its history instead (`publish --full`, and whenever an
//! increment could differ from a rebuild, with the reason reported): no earlier
//! publication recorded it; a curated commit since removed rows (a retraction, a purge,
//! a key rotation) or changed the schema; the current table or its withdrawn keys are not
//! what the last publication left (it stopped half-way); or a CPR change was corrected
//! rather than added to.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::protocol::SaveMode;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::Contract;
use crate::lake::{self, delta};
use crate::layout;
use crate::platform::{Platform, StepError};
use crate::publish::{PERSON_SKIFT, PublishError, linked, withdrawn_field};

/// What the current tables were left as by a publication (in its
/// [`layout::PUBLICATION_KEY`] record, under `current`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The Delta version of each current table after the publication.
    pub versions: BTreeMap<String, u64>,
    /// The digest of the `dim_person_skift` their person ids follow.
    pub person_skift: Option<String>,
}

/// What the last publication read and left: where an increment starts.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// The curated tables' Delta versions it read.
    pub lake_versions: BTreeMap<String, u64>,
    pub state: State,
    /// The CPR changes its current tables follow, when the published
    /// `dim_person_skift` is still the one it wrote.
    pub person_skift: Option<RecordBatch>,
}

/// How a current table was brought up to date.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum How {
    /// Recomputed from the whole history of its curated table.
    Rebuilt { reason: String },
    /// The rows added since the last publication merged in.
    Merged {
        /// Curated files added since the last publication.
        files: usize,
        /// Their rows (every version, before reduction to the newest per key).
        rows: u64,
        /// Rows moved to persons' newer pseudonyms after new CPR changes.
        relinked: bool,
    },
    /// Nothing changed since the last publication.
    Unchanged,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Rebuilt { reason } => write!(f, "rebuilt ({reason})"),
            How::Merged {
                files,
                rows,
                relinked,
            } => write!(
                f,
                "merged {rows} new rows from {files} files{}",
                if *relinked {
                    ", persons moved to new CPR numbers"
                } else {
                    ""
                }
            ),
            How::Unchanged => write!(f, "unchanged"),
        }
    }
}

/// One current table after maintenance.
#[derive(Debug, Clone, Serialize)]
pub struct Maintained {
    pub table: String,
    pub rows: u64,
    pub how: How,
    /// Its Delta version now (`None`: a dataset with no data and no table).
    pub version: Option<u64>,
    pub seconds: f64,
}

/// How the CPR changes compare with those the current tables follow.
#[derive(Debug, Clone, PartialEq)]
pub enum Links {
    Same,
    /// Only new changes (or longer chains): moving each row whose person id now has a
    /// newer pseudonym gives what a rebuild gives.
    Extended,
    /// A change was corrected or withdrawn, or the earlier ones are unknown.
    Changed(String),
}

/// The digest of a `dim_person_skift` batch (its rows are in key order).
pub fn links_digest(skift: &RecordBatch) -> String {
    let mut h = Sha256::new();
    for (old, new) in link_pairs(skift) {
        h.update(old.as_bytes());
        h.update(b"\t");
        h.update(new.as_bytes());
        h.update(b"\n");
    }
    format!("{:x}", h.finalize())
}

fn link_pairs(skift: &RecordBatch) -> Vec<(String, String)> {
    let text = |i: usize| {
        arrow::compute::cast(skift.column(i), &arrow::datatypes::DataType::Utf8)
            .expect("person ids are text")
    };
    let (old, new) = (text(0), text(1));
    let (old, new) = (
        old.as_any().downcast_ref::<StringArray>().expect("Utf8"),
        new.as_any().downcast_ref::<StringArray>().expect("Utf8"),
    );
    (0..old.len())
        .map(|i| (old.value(i).to_string(), new.value(i).to_string()))
        .collect()
}

/// Compares the CPR changes now (`new`) with those the current tables follow.
pub fn compare_links(previous: Option<&Previous>, new: &RecordBatch) -> Links {
    let Some(prev) = previous else {
        return Links::Changed("no earlier publication".into());
    };
    if prev.state.person_skift.as_deref() == Some(links_digest(new).as_str()) {
        return Links::Same;
    }
    let Some(old) = &prev.person_skift else {
        return Links::Changed(
            "the CPR changes the last publication followed are not the published ones".into(),
        );
    };
    let new: HashMap<String, String> = link_pairs(new).into_iter().collect();
    let newest = |p: &str| new.get(p).map_or(p, String::as_str).to_string();
    // A row of person `x` was stored under `o` (x's newest then); moving `o` to its
    // newest now must give x's newest now.
    for (x, o) in link_pairs(old) {
        if newest(&x) != newest(&o) {
            return Links::Changed("a CPR change was corrected or withdrawn".into());
        }
    }
    Links::Extended
}

/// "`a` is a newer version than `b`": the order the current SQL ranks versions by.
fn newer(a: &str, b: &str) -> String {
    format!(
        "({a}.record_version > {b}.record_version OR ({a}.record_version = {b}.record_version \
         AND ({a}.received_at > {b}.received_at OR ({a}.received_at = {b}.received_at \
         AND {a}.delivery_id > {b}.delivery_id))))"
    )
}

const VERSION_ORDER: &str = "record_version DESC, received_at DESC, delivery_id DESC";

/// The keys of `c` whose newest version withdraws them, from its whole history;
/// `None` for a dataset that withdraws nothing.
fn withdrawn_sql(c: &Contract) -> Option<String> {
    withdrawn_field(c).map(|field| {
        format!(
            "SELECT {KEY_COLUMNS} FROM (SELECT {KEY_COLUMNS}, {field}, ROW_NUMBER() OVER \
             (PARTITION BY record_key ORDER BY {VERSION_ORDER}) AS version_rank FROM {table}) \
             AS ranked WHERE version_rank = 1 AND coalesce({field}, false)",
            table = c.table()
        )
    })
}
/// The columns a withdrawn key is remembered by.
const KEY_COLUMNS: &str = "record_key, record_version, received_at, delivery_id";
const NEW_ROWS: &str = "naerdata_new_rows";
const WITHDRAWN: &str = "naerdata_withdrawn_keys";
const WITHDRAWN_FLAG: &str = "naerdata_withdrawn";

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("naerdata {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Whether a table's columns are these: the same names and types in the same order
/// (nullability aside: engines differ in what they declare).
fn same_columns(a: &deltalake::kernel::StructType, b: &deltalake::kernel::StructType) -> bool {
    a.fields().count() == b.fields().count()
        && a.fields()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

/// A write that replaces the current table of `c` whole, schema included, with the
/// table's description and settings.
fn overwrite(
    write: deltalake::operations::write::WriteBuilder,
    c: &Contract,
    name: &str,
) -> deltalake::operations::write::WriteBuilder {
    write
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .with_table_name(name)
        .with_description(format!(
            "naerdata current table of {} v{}, written only by publish",
            c.id, c.version
        ))
        // No column statistics: min/max of person_id in the log would copy
        // pseudonyms where a purge cannot reach them.
        .with_configuration([("delta.dataSkippingNumIndexedCols", Some("0"))])
        .with_writer_properties(props())
}

fn step(table: &str, e: impl std::fmt::Display) -> PublishError {
    StepError::Internal(format!("current table {table}: {e}")).into()
}

/// What the curated table's commits after `from` up to `to` did.
enum Changes {
    /// Only appends: these files (relative to the table) hold the new rows.
    Added(Vec<String>),
    /// Something an increment cannot follow.
    Rewritten(String),
}

async fn changes(t: &DeltaTable, from: u64, to: u64) -> Result<Changes, PublishError> {
    let name = t.table_url().to_string();
    let mut added = Vec::new();
    for v in from + 1..=to {
        let Some(entry) = t
            .log_store()
            .read_commit_entry(v)
            .await
            .map_err(|e| step(&name, e))?
        else {
            return Ok(Changes::Rewritten(format!(
                "its log entry {v} has been cleaned up"
            )));
        };
        for line in std::str::from_utf8(&entry)
            .map_err(|e| step(&name, e))?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            match serde_json::from_str::<Action>(line) {
                Ok(Action::Add(a)) if a.data_change => added.push(
                    object_store::path::Path::from_url_path(&a.path)
                        .map_err(|e| step(&name, e))?
                        .to_string(),
                ),
                // Compaction rewrites rows without changing them.
                Ok(Action::Add(_)) => {}
                Ok(Action::Remove(r)) if r.data_change => {
                    return Ok(Changes::Rewritten(format!(
                        "version {v} removed rows (a retraction, purge or key rotation)"
                    )));
                }
                Ok(Action::Remove(_) | Action::CommitInfo(_) | Action::Txn(_)) => {}
                Ok(Action::Metadata(_)) => {
                    return Ok(Changes::Rewritten(format!(
                        "version {v} changed the table's schema"
                    )));
                }
                Ok(_) | Err(_) => {
                    return Ok(Changes::Rewritten(format!(
                        "version {v} holds an action publish does not follow"
                    )));
                }
            }
        }
    }
    Ok(Changes::Added(added))
}

/// Everything one publication needs to maintain its current tables.
pub struct Maintenance<'a> {
    pub p: &'a Platform,
    /// The publication's session: the curated tables, `dim_person_skift`.
    pub ctx: &'a SessionContext,
    /// The curated tables' versions this publication reads.
    pub lake_versions: &'a BTreeMap<String, u64>,
    pub previous: Option<&'a Previous>,
    pub links: &'a Links,
    /// Rebuild every table (`publish --full`).
    pub full: bool,
    /// Where a rebuild's rows are computed when not here: Athena in AWS, which writes
    /// them as Parquet into the table's folder for one Delta commit ([`crate::warehouse`]).
    pub warehouse: Option<&'a dyn crate::warehouse::Warehouse>,
}

impl Maintenance<'_> {
    /// Brings the current table of `c` up to date and registers it in the session
    /// under its name.
    pub async fn table(&self, c: &Contract) -> Result<Maintained, PublishError> {
        let started = std::time::Instant::now();
        let name = format!("{}_current", c.table());
        let lake_store = self.p.stores.lake.as_ref();
        let prefix = layout::presentation_prefix("current", &name);
        let target = delta::open_or_handle(lake_store, &prefix).await?;
        let exists = target.version().is_some();
        let Some(&to) = self.lake_versions.get(&c.table()) else {
            // No data: an empty table stands in, so the marts always run; a table
            // whose data were all taken back is emptied.
            if !exists {
                let schema = lake::schema(c);
                self.ctx.register_table(
                    name.as_str(),
                    Arc::new(MemTable::try_new(schema.clone(), vec![vec![]])?),
                )?;
                self.ctx.register_table(
                    c.table().as_str(),
                    Arc::new(MemTable::try_new(schema, vec![vec![]])?),
                )?;
                return Ok(Maintained {
                    table: name,
                    rows: 0,
                    how: How::Unchanged,
                    version: None,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            self.ctx.register_table(
                c.table().as_str(),
                Arc::new(MemTable::try_new(lake::schema(c), vec![vec![]])?),
            )?;
            let reason = "its curated table has no rows".to_string();
            let t = self.rebuild(c, &name, target, &reason).await?;
            return self.finish(name, t, How::Rebuilt { reason }, started).await;
        };
        match self.plan(c, &name, &target, to).await? {
            Err(reason) => {
                let t = self.rebuild(c, &name, target, &reason).await?;
                self.finish(name, t, How::Rebuilt { reason }, started).await
            }
            Ok(files) => {
                let mut t = target;
                let left = t.version().expect("an existing table");
                let relinked = self.links == &Links::Extended && linked(c);
                if relinked {
                    t = self.relink(&name, t).await?;
                }
                let rows = if files.is_empty() {
                    let now = t.version().expect("an existing table");
                    if withdrawn_field(c).is_some() && now != left {
                        // The withdrawn keys go with the relinked version.
                        let lake_store = &self.p.stores.lake;
                        let old = layout::current_withdrawn_key(&name, left);
                        let body = lake_store
                            .get(&old)
                            .await
                            .map_err(StepError::from)?
                            .ok_or_else(|| step(&name, "its withdrawn keys are gone"))?;
                        let new = layout::current_withdrawn_key(&name, now);
                        lake_store.put(&new, body).await.map_err(StepError::from)?;
                        lake_store.delete(&old).await.map_err(StepError::from)?;
                    }
                    0
                } else {
                    let (merged, rows) = self.merge(c, &name, t, left, &files).await?;
                    t = merged;
                    rows
                };
                let how = if files.is_empty() && !relinked {
                    How::Unchanged
                } else {
                    How::Merged {
                        files: files.len(),
                        rows,
                        relinked,
                    }
                };
                self.finish(name, t, how, started).await
            }
        }
    }

    /// The columns of the current table of `c`, as its SQL returns them.
    async fn columns(&self, c: &Contract) -> Result<Vec<String>, PublishError> {
        Ok(self
            .ctx
            .sql(&crate::publish::current_linked_sql(c))
            .await?
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect())
    }

    /// The files to merge, or why the table must be rebuilt.
    async fn plan(
        &self,
        c: &Contract,
        name: &str,
        target: &DeltaTable,
        to: u64,
    ) -> Result<Result<Vec<String>, String>, PublishError> {
        if self.full {
            return Ok(Err("asked for (--full)".into()));
        }
        let Some(prev) = self.previous else {
            return Ok(Err("no earlier publication".into()));
        };
        let (Some(&from), Some(&left)) = (
            prev.lake_versions.get(&c.table()),
            prev.state.versions.get(name),
        ) else {
            return Ok(Err("the last publication did not write it".into()));
        };
        if target.version() != Some(left) {
            return Ok(Err(format!(
                "it is at version {}, the last publication left version {left}",
                target.version().map_or("none".into(), |v| v.to_string())
            )));
        }
        let have: Vec<String> = target
            .snapshot()
            .map_err(|e| step(name, e))?
            .schema()
            .fields()
            .map(|f| f.name().to_string())
            .collect();
        if have != self.columns(c).await? {
            return Ok(Err("its columns changed".into()));
        }
        if withdrawn_field(c).is_some()
            && self
                .p
                .stores
                .lake
                .head(&layout::current_withdrawn_key(name, left))
                .await
                .map_err(StepError::from)?
                .is_none()
        {
            return Ok(Err("its withdrawn keys are missing".into()));
        }
        if linked(c)
            && let Links::Changed(reason) = self.links
        {
            return Ok(Err(reason.clone()));
        }
        if to < from {
            return Ok(Err(format!(
                "its curated table is at version {to}, before the {from} last published"
            )));
        }
        let curated = delta::open(
            self.p.stores.lake.as_ref(),
            &layout::curated_prefix(&c.table()),
            None,
        )
        .await?
        .ok_or_else(|| step(name, "its curated table is gone"))?;
        Ok(match changes(&curated, from, to).await? {
            Changes::Added(files) => Ok(files),
            Changes::Rewritten(reason) => Err(format!("its curated table's {reason}")),
        })
    }

    /// Writes the table whole from its curated table's history (the current SQL), and
    /// its withdrawn keys.
    async fn rebuild(
        &self,
        c: &Contract,
        name: &str,
        target: DeltaTable,
        reason: &str,
    ) -> Result<DeltaTable, PublishError> {
        tracing::info!(table = %name, %reason, "rebuilding a current table");
        if let Some(w) = self.warehouse {
            return self.rebuild_on(w, c, name, target).await;
        }
        let plan = self
            .ctx
            .sql(&crate::publish::current_linked_sql(c))
            .await?
            .logical_plan()
            .clone();
        let t = overwrite(target.write(Vec::new()).with_input_plan(plan), c, name)
            .with_session_state(Arc::new(self.ctx.state()))
            .await
            .map_err(|e| step(name, e))?;
        if let Some(sql) = withdrawn_sql(c) {
            self.put_withdrawn(name, &t, &sql).await?;
        }
        self.delete_legacy_file(name).await?;
        Ok(t)
    }

    /// A home published before the current tables were Delta tables had one Parquet
    /// file here; the log is the table now.
    async fn delete_legacy_file(&self, name: &str) -> Result<(), PublishError> {
        self.p
            .stores
            .lake
            .delete(&layout::presentation_key("current", name))
            .await
            .map_err(StepError::from)?;
        Ok(())
    }

    /// A rebuild on the warehouse (Athena): the current SQL's rows written as Parquet
    /// into a new folder of the table (`rebuild-<time>/`), then one Delta commit that
    /// removes every file the table had and adds those (with the new schema, when the
    /// columns changed); the withdrawn keys computed there too. The function reads no
    /// history.
    async fn rebuild_on(
        &self,
        w: &dyn crate::warehouse::Warehouse,
        c: &Contract,
        name: &str,
        target: DeltaTable,
    ) -> Result<DeltaTable, PublishError> {
        let sql = crate::publish::current_linked_sql(c);
        // The table's columns as this engine plans them: the commit's schema.
        let schema = self.ctx.sql(&sql).await?.schema().inner().clone();
        let prefix = layout::presentation_prefix("current", name);
        let run = format!("rebuild-{}", self.p.clock.now().format("%Y%m%dt%H%M%S%3f"));
        let folder = format!("{prefix}{run}/");
        let lake_store = &self.p.stores.lake;
        let answer = w
            .write_parquet(
                &format!("current table {name}"),
                &crate::warehouse::plain_timestamps(&schema, &sql),
                &lake_store.locate(&folder),
            )
            .await?;
        let written: Vec<crate::ports::ObjectMeta> = lake_store
            .list(&folder)
            .await
            .map_err(StepError::from)?
            .into_iter()
            // Markers (`..._$folder$`) and empty objects are not data.
            .filter(|o| !o.key.ends_with('$') && o.size > 0)
            .collect();
        tracing::info!(table = %name, query_id = %answer.query_id, files = written.len(), bytes_scanned = answer.bytes_scanned, "rebuilt on the warehouse");
        let kernel_schema = {
            use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
            let st: deltalake::kernel::StructType = schema
                .as_ref()
                .try_into_kernel()
                .map_err(|e| step(name, e))?;
            st
        };
        let mut t = target;
        let now = self.p.clock.now().timestamp_millis();
        let mut actions: Vec<Action> = Vec::new();
        match t.snapshot() {
            // A new table: created empty first (nobody reads it yet).
            Err(_) => {
                t = overwrite(
                    t.write(vec![RecordBatch::new_empty(schema.clone())]),
                    c,
                    name,
                )
                .await
                .map_err(|e| step(name, e))?;
            }
            // Other column names or types: the new schema in the same commit.
            Ok(s) if !same_columns(s.schema().as_ref(), &kernel_schema) => {
                use deltalake::kernel::MetadataExt;
                let old = s.metadata().clone();
                let metadata = deltalake::kernel::new_metadata(
                    &kernel_schema,
                    Vec::<String>::new(),
                    old.configuration().clone(),
                )
                .and_then(|m| m.with_table_id(old.id().to_string()))
                .and_then(|m| m.with_name(name.to_string()))
                .and_then(|m| {
                    m.with_description(format!(
                        "naerdata current table of {} v{}, written only by publish",
                        c.id, c.version
                    ))
                })
                .map_err(|e| step(name, e))?;
                actions.push(Action::Metadata(metadata));
            }
            Ok(_) => {}
        }
        {
            use futures::TryStreamExt;
            let files: Vec<_> = t
                .get_active_add_actions_by_partitions(&[])
                .try_collect()
                .await
                .map_err(|e| step(name, e))?;
            actions.extend(files.iter().map(|f| {
                let mut remove = f.remove_action(true);
                remove.deletion_timestamp = Some(now);
                Action::Remove(remove)
            }));
        }
        actions.extend(written.iter().map(|o| {
            Action::Add(deltalake::kernel::Add {
                path: o.key[prefix.len()..].to_string(),
                size: o.size as i64,
                modification_time: now,
                data_change: true,
                ..Default::default()
            })
        }));
        let snapshot = t.snapshot().map_err(|e| step(name, e))?;
        deltalake::kernel::transaction::CommitBuilder::default()
            .with_actions(actions)
            .build(
                Some(snapshot),
                t.log_store(),
                deltalake::protocol::DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .map_err(|e| step(name, e))?;
        t.update_state().await.map_err(|e| step(name, e))?;
        if let Some(keys) = withdrawn_sql(c) {
            // The keys on the warehouse too, typed as this engine would have them.
            let want = self.ctx.sql(&keys).await?.schema().inner().clone();
            let answer = w
                .run(&[(
                    format!("current table {name}: withdrawn keys"),
                    crate::warehouse::plain_timestamps(&want, &keys),
                )])
                .await?
                .remove(0);
            let columns = want
                .fields()
                .iter()
                .map(|f| {
                    let got = answer.rows.column_by_name(f.name()).ok_or_else(|| {
                        step(
                            name,
                            format!("the withdrawn keys have no column {}", f.name()),
                        )
                    })?;
                    arrow::compute::cast(got, f.data_type()).map_err(|e| step(name, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let keys = RecordBatch::try_new(want.clone(), columns)?;
            self.write_withdrawn(name, &t, want, &[keys]).await?;
        }
        self.delete_legacy_file(name).await?;
        Ok(t)
    }

    /// Moves rows to their persons' newest pseudonyms: a row's person id that is now
    /// an old number in `dim_person_skift` takes the newest (see [`Links::Extended`]).
    async fn relink(&self, name: &str, t: DeltaTable) -> Result<DeltaTable, PublishError> {
        let source = self
            .ctx
            .sql(&format!(
                "SELECT person_id, kanonisk_person_id FROM {PERSON_SKIFT}"
            ))
            .await?;
        let (t, metrics) = t
            .merge(source, "target.person_id = source.person_id")
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_update(|u| u.update("person_id", "source.kanonisk_person_id"))
            .map_err(|e| step(name, e))?
            .with_writer_properties(props())
            .with_session_state(Arc::new(self.ctx.state()))
            .await
            .map_err(|e| step(name, e))?;
        tracing::info!(table = %name, rows = metrics.num_target_rows_updated, "persons moved to new CPR numbers");
        Ok(t)
    }

    /// Merges the rows of the curated `files` into the table (which the last
    /// publication left at version `left`); returns it and the rows read.
    async fn merge(
        &self,
        c: &Contract,
        name: &str,
        t: DeltaTable,
        left: u64,
        files: &[String],
    ) -> Result<(DeltaTable, u64), PublishError> {
        let lake_store = self.p.stores.lake.as_ref();
        let curated = layout::curated_prefix(&c.table());
        let paths: Vec<String> = files
            .iter()
            .map(|f| lake_store.locate(&format!("{curated}{f}")))
            .collect();
        let schema = lake::schema(c);
        let _ = self.ctx.deregister_table(NEW_ROWS)?;
        // The contract's schema: a file from an older contract version lacks the
        // newer columns, which read as null.
        let new_rows = self
            .ctx
            .read_parquet(paths, ParquetReadOptions::default().schema(&schema))
            .await?;
        self.ctx.register_table(NEW_ROWS, new_rows.into_view())?;
        let rows = count(self.ctx, NEW_ROWS).await?;
        // The withdrawn keys as the last publication left them.
        self.register_withdrawn(c, name, left).await?;

        let cols = self.columns(c).await?;
        let select: Vec<String> = cols
            .iter()
            .map(|n| {
                if n == "person_id" && linked(c) {
                    "COALESCE(s.kanonisk_person_id, c.person_id) AS person_id".to_string()
                } else {
                    format!("c.{n}")
                }
            })
            .collect();
        let flag =
            withdrawn_field(c).map_or("false".to_string(), |f| format!("coalesce(c.{f}, false)"));
        let skift = if linked(c) {
            format!("LEFT JOIN {PERSON_SKIFT} s ON s.person_id = c.person_id")
        } else {
            String::new()
        };
        let source = format!(
            "SELECT {select}, {flag} AS {WITHDRAWN_FLAG} FROM (SELECT *, ROW_NUMBER() OVER \
             (PARTITION BY record_key ORDER BY {VERSION_ORDER}) AS version_rank FROM {NEW_ROWS}) AS c \
             {skift} LEFT JOIN {WITHDRAWN} w ON w.record_key = c.record_key \
             WHERE c.version_rank = 1 AND (w.record_key IS NULL OR {newer_than_withdrawn})",
            select = select.join(", "),
            newer_than_withdrawn = newer("c", "w"),
        );
        let source = self.ctx.sql(&source).await?;
        let newer = newer("source", "target");
        let (t, metrics) = t
            .merge(source, "target.record_key = source.record_key")
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_delete(|d| d.predicate(format!("source.{WITHDRAWN_FLAG} AND {newer}")))
            .map_err(|e| step(name, e))?
            .when_matched_update(|mut u| {
                u = u.predicate(newer.clone());
                for n in &cols {
                    u = u.update(n.as_str(), format!("source.{n}"));
                }
                u
            })
            .map_err(|e| step(name, e))?
            .when_not_matched_insert(|mut i| {
                i = i.predicate(format!("NOT source.{WITHDRAWN_FLAG}"));
                for n in &cols {
                    i = i.set(n.as_str(), format!("source.{n}"));
                }
                i
            })
            .map_err(|e| step(name, e))?
            .with_writer_properties(props())
            .with_session_state(Arc::new(self.ctx.state()))
            .await
            .map_err(|e| step(name, e))?;
        tracing::info!(
            table = %name,
            rows,
            inserted = metrics.num_target_rows_inserted,
            updated = metrics.num_target_rows_updated,
            deleted = metrics.num_target_rows_deleted,
            files_rewritten = metrics.num_target_files_removed,
            files_scanned = metrics.num_target_files_scanned,
            "current table merged"
        );
        if let Some(field) = withdrawn_field(c) {
            // The newest of (the withdrawn keys, the new rows) per key, if it withdraws.
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM (SELECT {KEY_COLUMNS}, w, ROW_NUMBER() OVER \
                 (PARTITION BY record_key ORDER BY {VERSION_ORDER}) AS version_rank FROM \
                 (SELECT {KEY_COLUMNS}, true AS w FROM {WITHDRAWN} UNION ALL \
                  SELECT {KEY_COLUMNS}, coalesce({field}, false) AS w FROM {NEW_ROWS}) AS k) AS ranked \
                 WHERE version_rank = 1 AND w"
            );
            self.put_withdrawn(name, &t, &sql).await?;
        }
        self.ctx.deregister_table(NEW_ROWS)?;
        self.ctx.deregister_table(WITHDRAWN)?;
        Ok((t, rows))
    }

    /// Registers the table's withdrawn keys as of `version` (none for a dataset that
    /// cannot withdraw).
    async fn register_withdrawn(
        &self,
        c: &Contract,
        name: &str,
        version: u64,
    ) -> Result<(), PublishError> {
        let _ = self.ctx.deregister_table(WITHDRAWN)?;
        let key = layout::current_withdrawn_key(name, version);
        if withdrawn_field(c).is_some() {
            self.ctx
                .register_parquet(
                    WITHDRAWN,
                    &self.p.stores.lake.locate(&key),
                    ParquetReadOptions::default(),
                )
                .await?;
        } else {
            let schema = self
                .ctx
                .sql(&format!("SELECT {KEY_COLUMNS} FROM {}", c.table()))
                .await?
                .schema()
                .inner()
                .clone();
            self.ctx.register_table(
                WITHDRAWN,
                Arc::new(MemTable::try_new(schema, vec![vec![]])?),
            )?;
        }
        Ok(())
    }

    /// Writes the withdrawn keys (`sql`'s rows) for the table's new version and
    /// removes the older files.
    async fn put_withdrawn(
        &self,
        name: &str,
        t: &DeltaTable,
        sql: &str,
    ) -> Result<(), PublishError> {
        let keys = self.ctx.sql(sql).await?;
        let schema = keys.schema().inner().clone();
        let keys = keys.collect().await?;
        self.write_withdrawn(name, t, schema, &keys).await
    }

    /// Writes withdrawn keys for the table's version and removes the older files.
    async fn write_withdrawn(
        &self,
        name: &str,
        t: &DeltaTable,
        schema: arrow::datatypes::SchemaRef,
        keys: &[RecordBatch],
    ) -> Result<(), PublishError> {
        let version = t.version().expect("a written table");
        let body = lake::parquet_bytes(schema, keys).map_err(|e| step(name, e))?;
        let key = layout::current_withdrawn_key(name, version);
        let lake_store = &self.p.stores.lake;
        lake_store
            .put(&key, Bytes::from(body))
            .await
            .map_err(StepError::from)?;
        for old in lake_store
            .list(&layout::current_withdrawn_prefix(name))
            .await
            .map_err(StepError::from)?
        {
            if old.key != key {
                lake_store.delete(&old.key).await.map_err(StepError::from)?;
            }
        }
        Ok(())
    }

    /// Registers the table under its name and reports it.
    async fn finish(
        &self,
        name: String,
        t: DeltaTable,
        how: How,
        started: std::time::Instant,
    ) -> Result<Maintained, PublishError> {
        let _ = self.ctx.deregister_table(name.as_str())?;
        t.update_datafusion_session(&self.ctx.state())
            .map_err(|e| step(&name, e))?;
        let provider = t
            .table_provider()
            .with_session(Arc::new(self.ctx.state()))
            .await?;
        self.ctx.register_table(name.as_str(), provider)?;
        let rows = count(self.ctx, &name).await?;
        tracing::info!(table = %name, rows, %how, "current table up to date");
        Ok(Maintained {
            table: name,
            rows,
            how,
            version: t.version(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

async fn count(ctx: &SessionContext, table: &str) -> Result<u64, PublishError> {
    let b = ctx
        .sql(&format!("SELECT count(*) AS n FROM {table}"))
        .await?
        .collect()
        .await?;
    Ok(b.first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0) as u64)
}
