//! The lake's tables as Delta Lake tables (delta-rs): a delivery becomes visible in
//! one commit per table, and readers see only what the log says.
//!
//! The process step writes its own Parquet files (streaming, bounded memory) and
//! uploads them under the table's prefix, where no reader looks: readers go through the
//! log. Then it commits them with one `add` per file and an application transaction
//! named after the delivery, so a retried delivery is recognised and never appended
//! twice. delta-rs rejects a *concurrent* duplicate itself; a *sequential* one it does
//! not, so [`commit_files`] checks the transaction first.
//!
//! Tables are created, and their schema evolved, only from a contract version: the
//! schema is [`crate::lake::schema`] plus the partition columns `year` and `month`.
//! On S3 every commit is a conditional put (`If-None-Match`), so parallel process
//! functions can commit to one table; a commit that loses too many races fails and the
//! delivery is retried.

use std::collections::HashMap;
use std::path::Path;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, DataType as DeltaType, StructField, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use serde_json::json;
use url::Url;

use crate::ports::ObjectStore;

/// The partition columns of every lake table, in path order.
pub const PARTITION_COLUMNS: [&str; 2] = ["year", "month"];

/// Table property recording the contract version the schema came from.
pub const CONTRACT_PROPERTY: &str = "naerdata.contract";

/// Commit attempts before a commit that keeps losing races gives up (and the
/// delivery is retried as a whole).
const COMMIT_RETRIES: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("Delta table {table}: {source}")]
    Table {
        table: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("Delta table {table}: {message}")]
    Schema { table: String, message: String },
}

impl DeltaError {
    pub fn table(table: &str, e: DeltaTableError) -> Self {
        DeltaError::Table {
            table: table.to_string(),
            source: Box::new(e),
        }
    }
}

/// A table of the lake: where it lives, its name and the schema it must have.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The key prefix of the table in the lake store (`curated/<table>/`).
    pub prefix: String,
    pub name: String,
    /// Data columns (without the partition columns).
    pub schema: SchemaRef,
    /// What the schema came from (`<contract id> v<version>`), recorded in the table.
    pub source: String,
}

impl TableSpec {
    pub fn curated(contract: &crate::contract::Contract) -> Self {
        let name = contract.table();
        TableSpec {
            prefix: crate::layout::curated_prefix(&name),
            schema: super::schema(contract),
            source: format!("{} v{}", contract.id, contract.version),
            name,
        }
    }
}

/// The URL of a table under `prefix` of the lake store.
pub fn table_url(lake: &dyn ObjectStore, prefix: &str) -> Result<Url, DeltaError> {
    let location = lake.locate(prefix);
    let bad = |m: String| DeltaError::Schema {
        table: prefix.to_string(),
        message: m,
    };
    if location.contains("://") {
        Url::parse(&location).map_err(|e| bad(format!("{location} is not a URL: {e}")))
    } else {
        let path = std::path::absolute(Path::new(&location))
            .map_err(|e| bad(format!("{location}: {e}")))?;
        std::fs::create_dir_all(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Url::from_directory_path(&path)
            .map_err(|_| bad(format!("{} is not absolute", path.display())))
    }
}

fn builder(lake: &dyn ObjectStore, prefix: &str) -> Result<DeltaTableBuilder, DeltaError> {
    let url = table_url(lake, prefix)?;
    let mut b =
        DeltaTableBuilder::from_url(url.clone()).map_err(|e| DeltaError::table(prefix, e))?;
    // In AWS the lake bucket's store, built from the SDK's configuration (region,
    // endpoint, the role's credentials): the same client the SQL engine uses.
    match lake.engine_store() {
        Some(store) => b = b.with_storage_backend(store, url),
        // delta-rs would build its own client with its own credential chain; a store
        // in the cloud must hand over its configured one instead.
        None if url.scheme() != "file" => {
            return Err(DeltaError::Schema {
                table: prefix.to_string(),
                message: format!("the lake store gives no object_store client for {url}"),
            });
        }
        None => {}
    }
    Ok(b)
}

/// The table under `prefix` at its newest version (or `version`), or `None` when no
/// table has been created there yet.
pub async fn open(
    lake: &dyn ObjectStore,
    prefix: &str,
    version: Option<u64>,
) -> Result<Option<DeltaTable>, DeltaError> {
    let mut b = builder(lake, prefix)?;
    if let Some(v) = version {
        b = b.with_version(v);
    }
    match b.load().await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(DeltaError::table(prefix, e)),
    }
}

/// The table under `prefix`: loaded when it exists, else a handle whose first write
/// creates it (a table publish writes whole, with no partitions of its own).
pub async fn open_or_handle(
    lake: &dyn ObjectStore,
    prefix: &str,
) -> Result<DeltaTable, DeltaError> {
    match open(lake, prefix, None).await? {
        Some(t) => Ok(t),
        None => builder(lake, prefix)?
            .build()
            .map_err(|e| DeltaError::table(prefix, e)),
    }
}

fn delta_type(t: &DataType) -> DeltaType {
    match t {
        DataType::Utf8 => DeltaType::STRING,
        DataType::Int32 => DeltaType::INTEGER,
        DataType::Int64 => DeltaType::LONG,
        DataType::Float64 => DeltaType::DOUBLE,
        DataType::Date32 => DeltaType::DATE,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => DeltaType::TIMESTAMP,
        DataType::Boolean => DeltaType::BOOLEAN,
        other => unreachable!("no Delta type for the lake type {other}"),
    }
}

/// The Delta columns of a spec: its data columns, then `year` and `month`.
pub fn delta_columns(spec: &TableSpec) -> Vec<StructField> {
    spec.schema
        .fields()
        .iter()
        .map(|f| StructField::new(f.name(), delta_type(f.data_type()), f.is_nullable()))
        .chain(
            PARTITION_COLUMNS
                .iter()
                .map(|c| StructField::new(*c, DeltaType::INTEGER, false)),
        )
        .collect()
}

/// Opens the table, creating it from the spec when there is none and adding the
/// columns a newer contract version declares. A column the table has and the spec
/// lacks, or one whose type changed, is an incompatible contract change: an error.
pub async fn open_or_create(
    lake: &dyn ObjectStore,
    spec: &TableSpec,
) -> Result<DeltaTable, DeltaError> {
    if let Some(t) = open(lake, &spec.prefix, None).await? {
        return evolve(t, spec).await;
    }
    let t = builder(lake, &spec.prefix)?
        .build()
        .map_err(|e| DeltaError::table(&spec.name, e))?;
    let created = t
        .create()
        .with_table_name(&spec.name)
        .with_comment(format!("naerdata lake table from contract {}", spec.source))
        .with_columns(delta_columns(spec))
        .with_partition_columns(PARTITION_COLUMNS)
        .with_raise_if_key_not_exists(false)
        .with_configuration([(CONTRACT_PROPERTY, Some(spec.source.clone()))])
        // No column statistics in the log: min/max of `person_id` would copy
        // pseudonyms into log entries that a purge cannot rewrite. Partitions prune by
        // month, which is what the readers filter on.
        .with_configuration_property(TableProperty::DataSkippingNumIndexedCols, Some("0"))
        .with_save_mode(SaveMode::ErrorIfExists)
        // Losing the race for version 0 is final: a retry would commit the same
        // metadata again as version 1 and fail every append that read version 0.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .await;
    match created {
        Ok(t) => Ok(t),
        // Another writer created it first (parallel deliveries of a new table).
        Err(_) => match open(lake, &spec.prefix, None).await? {
            Some(t) => evolve(t, spec).await,
            None => Err(DeltaError::Schema {
                table: spec.name.clone(),
                message: "could not be created".into(),
            }),
        },
    }
}

async fn evolve(t: DeltaTable, spec: &TableSpec) -> Result<DeltaTable, DeltaError> {
    let have: StructType = t
        .snapshot()
        .map_err(|e| DeltaError::table(&spec.name, e))?
        .schema()
        .as_ref()
        .clone();
    let want = delta_columns(spec);
    let mut missing = Vec::new();
    for f in &want {
        match have.field(f.name()) {
            Some(h) if h.data_type() == f.data_type() => {}
            Some(h) => {
                return Err(DeltaError::Schema {
                    table: spec.name.clone(),
                    message: format!(
                        "contract {} declares column {} as {}, the table has {}: a type change needs a new dataset",
                        spec.source,
                        f.name(),
                        f.data_type(),
                        h.data_type()
                    ),
                });
            }
            None => missing.push(StructField::new(f.name(), f.data_type().clone(), true)),
        }
    }
    if let Some(extra) = have
        .fields()
        .find(|h| !want.iter().any(|f| f.name() == h.name()))
    {
        return Err(DeltaError::Schema {
            table: spec.name.clone(),
            message: format!(
                "contract {} has no column {}, which the table has: columns are never removed \
                 (if the contract now withholds it, run `naerdata migrate`, which rewrites the table without it)",
                spec.source,
                extra.name()
            ),
        });
    }
    if missing.is_empty() {
        return Ok(t);
    }
    // A newer contract version added columns: the table gains them (nullable, so the
    // rows already there read as null).
    t.add_columns()
        .with_fields(missing)
        .await
        .map_err(|e| DeltaError::table(&spec.name, e))
}

/// A Parquet file already uploaded under the table's prefix.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Relative to the table (`year=2026/month=03/<delivery>-0.parquet`).
    pub path: String,
    pub year: i32,
    pub month: u32,
    pub size: u64,
    pub rows: u64,
}

/// The application transaction of a delivery.
pub fn delivery_app_id(delivery_id: &str) -> String {
    format!("naerdata.delivery.{delivery_id}")
}

/// Whether the delivery has been committed to the table.
pub async fn committed(t: &DeltaTable, delivery_id: &str) -> Result<bool, DeltaError> {
    let name = t.table_url().to_string();
    let snapshot = t.snapshot().map_err(|e| DeltaError::table(&name, e))?;
    Ok(snapshot
        .transaction_version(t.log_store().as_ref(), delivery_app_id(delivery_id))
        .await
        .map_err(|e| DeltaError::table(&name, e))?
        .is_some())
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The files became visible in this table version.
    Version(u64),
    /// An earlier attempt of the same delivery committed already; nothing changed.
    Already,
}

/// Commits the delivery's files to the table in one transaction, once.
pub async fn commit_files(
    t: &mut DeltaTable,
    delivery_id: &str,
    files: &[DataFile],
    now_millis: i64,
) -> Result<Committed, DeltaError> {
    if committed(t, delivery_id).await? {
        return Ok(Committed::Already);
    }
    let name = t.table_url().to_string();
    let adds = files
        .iter()
        .map(|f| {
            Action::Add(Add {
                path: f.path.clone(),
                partition_values: HashMap::from([
                    ("year".to_string(), Some(f.year.to_string())),
                    ("month".to_string(), Some(f.month.to_string())),
                ]),
                size: f.size as i64,
                modification_time: now_millis,
                data_change: true,
                stats: Some(json!({ "numRecords": f.rows }).to_string()),
                ..Default::default()
            })
        })
        .collect();
    let props = CommitProperties::default()
        .with_application_transaction(Transaction::new(delivery_app_id(delivery_id), 1))
        .with_metadata([("naerdata.delivery_id".to_string(), json!(delivery_id))])
        .with_max_retries(COMMIT_RETRIES);
    let snapshot = t.snapshot().map_err(|e| DeltaError::table(&name, e))?;
    let done = CommitBuilder::from(props)
        .with_actions(adds)
        .build(
            Some(snapshot),
            t.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(PARTITION_COLUMNS.map(String::from).to_vec()),
                predicate: None,
            },
        )
        .await;
    match done {
        Ok(c) => {
            let v = c.version();
            // The log entry must be ours. A store whose conditional put is not atomic
            // (an emulator's check-then-write, some S3-compatible stores) can let a
            // concurrent writer of the same version replace it after both were told
            // they won: the files would be unreferenced and the delivery lost while
            // reported accepted. Reading the entry back turns that into an error, and
            // the delivery's retry commits again. It narrows the window, it cannot
            // close it (a replacement after the read-back); on S3 itself it always holds.
            let entry = t
                .log_store()
                .read_commit_entry(v)
                .await
                .map_err(|e| DeltaError::table(&name, e))?;
            let app = delivery_app_id(delivery_id);
            let ours = entry.is_some_and(|b| {
                String::from_utf8_lossy(&b).contains(&format!("\"appId\":\"{app}\""))
            });
            if !ours {
                return Err(DeltaError::Schema {
                    table: name,
                    message: format!(
                        "the log entry of version {v} is not this delivery's commit: another writer \
                         replaced it (the store's conditional put did not hold); retry the delivery"
                    ),
                });
            }
            t.update_state()
                .await
                .map_err(|e| DeltaError::table(&name, e))?;
            Ok(Committed::Version(v))
        }
        Err(e) => {
            // A concurrent attempt of the same delivery may have won the race.
            t.update_state()
                .await
                .map_err(|e| DeltaError::table(&name, e))?;
            if committed(t, delivery_id).await? {
                Ok(Committed::Already)
            } else {
                Err(DeltaError::table(&name, e))
            }
        }
    }
}

/// The table's newest version, or `None` when there is no table.
pub async fn version(lake: &dyn ObjectStore, prefix: &str) -> Result<Option<u64>, DeltaError> {
    Ok(open(lake, prefix, None).await?.and_then(|t| t.version()))
}

/// The active data files of a table as URLs or paths a reader opens directly (DuckDB).
pub fn active_files(t: &DeltaTable) -> Result<Vec<String>, DeltaError> {
    let name = t.table_url().to_string();
    let mut files: Vec<String> = t
        .get_file_uris()
        .map_err(|e| DeltaError::table(&name, e))?
        .map(|u| u.strip_prefix("file://").map(str::to_string).unwrap_or(u))
        .collect();
    files.sort();
    Ok(files)
}

/// The active data files of a table, relative to the table's prefix.
pub fn active_paths(t: &DeltaTable) -> Result<Vec<String>, DeltaError> {
    let name = t.table_url().to_string();
    let snapshot = t.snapshot().map_err(|e| DeltaError::table(&name, e))?;
    Ok(snapshot
        .log_data()
        .into_iter()
        .map(|add| add.object_store_path().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::local::FsStore;

    fn spec(fields: Vec<Field>, source: &str) -> TableSpec {
        TableSpec {
            prefix: "curated/t/".into(),
            name: "t".into(),
            schema: Arc::new(Schema::new(fields)),
            source: source.into(),
        }
    }

    fn names(t: &DeltaTable) -> Vec<String> {
        t.snapshot()
            .unwrap()
            .schema()
            .fields()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The contract is the only schema source: a newer version adds columns, a
    /// removed or retyped column is refused with a message that says which.
    #[tokio::test]
    async fn tables_are_created_and_evolved_only_from_a_contract() {
        let dir = tempfile::tempdir().unwrap();
        let lake = FsStore::new(dir.path()).unwrap();
        assert!(open(&lake, "curated/t/", None).await.unwrap().is_none());
        let v1 = vec![
            Field::new("record_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ];
        let t = open_or_create(&lake, &spec(v1.clone(), "x v1"))
            .await
            .unwrap();
        assert_eq!(names(&t), ["record_id", "n", "year", "month"]);
        assert_eq!(
            t.snapshot()
                .unwrap()
                .metadata()
                .configuration()
                .get(CONTRACT_PROPERTY),
            Some(&"x v1".to_string())
        );
        let mut v2 = v1.clone();
        v2.push(Field::new("tilbagekaldt", DataType::Boolean, true));
        let t = open_or_create(&lake, &spec(v2.clone(), "x v2"))
            .await
            .unwrap();
        assert_eq!(
            names(&t),
            ["record_id", "n", "year", "month", "tilbagekaldt"]
        );
        // Opening with the same version again changes nothing.
        let again = open_or_create(&lake, &spec(v2.clone(), "x v2"))
            .await
            .unwrap();
        assert_eq!(again.version(), t.version());

        let retyped = vec![
            Field::new("record_id", DataType::Utf8, false),
            Field::new("n", DataType::Utf8, true),
            Field::new("tilbagekaldt", DataType::Boolean, true),
        ];
        let e = open_or_create(&lake, &spec(retyped, "x v3"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("column n"), "{e}");
        let e = open_or_create(&lake, &spec(v1, "x v4")).await.unwrap_err();
        assert!(e.to_string().contains("no column tilbagekaldt"), "{e}");
    }

    #[tokio::test]
    async fn a_delivery_commits_once_and_is_recognised_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let lake = FsStore::new(dir.path()).unwrap();
        let s = spec(vec![Field::new("a", DataType::Utf8, true)], "x v1");
        let mut t = open_or_create(&lake, &s).await.unwrap();
        let file = DataFile {
            path: "year=2026/month=03/d1-0.parquet".into(),
            year: 2026,
            month: 3,
            size: 10,
            rows: 1,
        };
        assert!(!committed(&t, "d1").await.unwrap());
        assert_eq!(
            commit_files(&mut t, "d1", std::slice::from_ref(&file), 0)
                .await
                .unwrap(),
            Committed::Version(1)
        );
        assert!(committed(&t, "d1").await.unwrap());
        assert_eq!(
            commit_files(&mut t, "d1", &[file], 0).await.unwrap(),
            Committed::Already
        );
        assert_eq!(t.version(), Some(1));
        assert_eq!(
            active_paths(&t).unwrap(),
            ["year=2026/month=03/d1-0.parquet"]
        );
    }
}
