//! The lake: object layout, the Arrow/Parquet schema of a dataset, and a partitioned
//! Parquet writer that spools to local files with bounded memory.
//!
//! Layout (decision 3 of DESIGN.md): each curated table is a Delta table under
//! `curated/<table>/` (its log in `_delta_log/`), its files at
//! `year=YYYY/month=MM/<delivery_id>-<n>.parquet`, deterministic per delivery so a
//! retry overwrites an uncommitted file rather than adding one; see [`delta`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, FixedSizeBinaryArray, FixedSizeBinaryBuilder,
    Float64Builder, Int32Array, Int32Builder, Int64Builder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use chrono::Datelike;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::contract::{Contract, FieldType, VersionRule};
use crate::validate::{TypedRow, Value};

pub mod delta;

/// Rows a partition buffers before they become a record batch.
const BATCH_ROWS: usize = 8 * 1024;
/// Rows buffered in builders across all partitions.
const BUFFERED_ROWS: usize = 64 * 1024;
/// Finished batches held in memory across all partitions before the biggest is
/// spilled to disk. Small deliveries never spill; a million rows spill most of
/// theirs, at no measurable cost (sequential Arrow IPC into the page cache): 8 MiB
/// against 32 peaked 20 MiB lower at the same speed (measured, 1M rows, 12 months).
const HELD_BUDGET: usize = 8 << 20;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Uncompressed bytes a column's data page gathers before it is compressed. Each
/// column of each partition being encoded holds one such page: 256 KiB against the
/// default 1 MiB cut the peak by 5-9 MiB at 2 threads, with files 1 % larger and no
/// slower (measured, 1M rows).
const PAGE_BYTES: usize = 256 << 10;
/// Rows per file before a partition rolls over to `<delivery_id>-<n+1>.parquet`.
const FILE_ROWS: usize = 4 * 1024 * 1024;

/// Hands freed memory back to the system. glibc keeps the blocks a thread freed in
/// that thread's arena for its next allocation; after the Parquet encoding nothing
/// will reuse them (measured at 10M rows, 2 threads: peak 116 against 130 MiB).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the
    // system; it takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A small Parquet file in memory (marts, dimensions, extracts), zstd like the lake.
pub fn parquet_bytes(
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("naerdata {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(buf)
}

pub fn curated_prefix(table: &str) -> String {
    crate::layout::curated_prefix(table)
}

pub fn object_key(table: &str, year: i32, month: u32, delivery_id: &str, n: usize) -> String {
    crate::layout::curated_object_key(table, year, month, delivery_id, n)
}

fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::String => DataType::Utf8,
        FieldType::Integer => DataType::Int64,
        FieldType::Number => DataType::Float64,
        FieldType::Date => DataType::Date32,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        FieldType::Boolean => DataType::Boolean,
    }
}

/// Columns the lake derives from the CPR before dropping it that research extracts may
/// carry (when a contract's allow-list names them): (name, description). They are
/// quasi-identifiers: released as they are and reported as such in the codebook.
pub const PERSON_ATTRIBUTES: &[(&str, &str)] = &[
    (
        "cpr_status",
        "What the CPR field held: valid, valid_no_mod11, replacement, ecpr, invalid_format, invalid_date (missing: no CPR).",
    ),
    (
        "birth_year",
        "Year of birth, from the CPR (from the register's birth date where the dataset has one).",
    ),
    (
        "birth_month",
        "Month of birth (1-12), from the CPR (from the register's birth date where the dataset has one).",
    ),
    (
        "sex",
        "Legal sex from the CPR's last digit: K (female) or M (male).",
    ),
    (
        "age_at_event",
        "Age in whole years on the row's event date.",
    ),
];

/// The pseudonym of a contract's `cprLink` field (e.g. a person's new CPR number),
/// made with the same key as `person_id`, so the two join.
pub const LINKED_PERSON_COLUMN: &str = "linked_person_id";

/// Columns of the lake that no research extract carries, whatever a contract or spec
/// says: the person keys and the lineage that leads back to deliveries and to them.
pub const NEVER_EXTRACTED: &[&str] = &[
    "person_id",
    LINKED_PERSON_COLUMN,
    "person_key_version",
    "record_key",
    "record_version",
    "delivery_id",
    "received_at",
];

/// The curated table's schema: the contract's fields without the withheld ones (the
/// CPR, a linked CPR, the birth date), then the person columns derived from them, then
/// lineage. `year`/`month` live in the path (Hive style).
pub fn schema(contract: &Contract) -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields: Vec<ArrowField> = contract
        .fields
        .iter()
        .enumerate()
        .filter(|(i, _)| !contract.is_withheld(*i))
        .map(|(_, f)| ArrowField::new(&f.name, arrow_type(f.field_type), !f.required))
        .collect();
    if let Some(i) = contract.cpr_link_field {
        fields.push(ArrowField::new(
            LINKED_PERSON_COLUMN,
            DataType::Utf8,
            !contract.fields[i].required,
        ));
    }
    if contract.cpr_field.is_some() {
        fields.extend([
            ArrowField::new("person_id", DataType::Utf8, true),
            ArrowField::new("person_key_version", DataType::Int32, false),
            ArrowField::new("cpr_status", DataType::Utf8, false),
            ArrowField::new("birth_year", DataType::Int32, true),
            ArrowField::new("birth_month", DataType::Int32, true),
            ArrowField::new("sex", DataType::Utf8, true),
            ArrowField::new("age_at_event", DataType::Int32, true),
        ]);
    }
    fields.extend([
        ArrowField::new("record_key", DataType::Utf8, false),
        ArrowField::new("record_version", ts.clone(), false),
        ArrowField::new("delivery_id", DataType::Utf8, false),
        ArrowField::new("received_at", ts, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Whether an object is a Parquet file: `PAR1` at both ends. By content, since files
/// the warehouse writes (Athena's UNLOAD) have no `.parquet` in their names.
pub fn is_parquet(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1")
}

/// The catalog (Hive/Athena) type of an Arrow type.
pub fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "string",
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Float64 => "double",
        DataType::Date32 => "date",
        DataType::Timestamp(..) => "timestamp",
        DataType::Boolean => "boolean",
        other => unreachable!("no catalog type for {other}"),
    }
}

/// Catalog columns (name, SQL type) in schema order; used for DuckDB views and Glue.
pub fn catalog_columns(contract: &Contract) -> Vec<(String, &'static str)> {
    schema(contract)
        .fields()
        .iter()
        .map(|f| (f.name().clone(), sql_type(f.data_type())))
        .collect()
}

/// A table of the presentation zone (`presentation/<kind>/<name>/data.parquet`) as
/// the catalogs declare it: DuckDB views locally, Glue tables in AWS.
#[derive(Debug, Clone)]
pub struct PresentationTable {
    /// `current`, `dim` or `marts`.
    pub kind: &'static str,
    pub name: String,
    pub description: String,
    /// The contract of a current table (its column descriptions).
    pub contract: Option<String>,
    pub schema: SchemaRef,
}

impl PresentationTable {
    /// The folder the table's object lives in.
    pub fn prefix(&self) -> String {
        presentation_prefix(self.kind, &self.name)
    }
}

pub fn presentation_prefix(kind: &str, name: &str) -> String {
    crate::layout::presentation_prefix(kind, name)
}

/// The staged column of a pseudonym column: its raw tag.
fn staged_tag(column: &str) -> &'static str {
    if column == LINKED_PERSON_COLUMN {
        "linked_person_tag"
    } else {
        "person_tag"
    }
}

/// What is staged per row: the lake schema without the columns that are constant
/// for a delivery (added when the Parquet is written), without `record_key` when it
/// is a single field (the same array is reused), and with the pseudonym as its raw
/// 32-byte tag rather than 64 hex characters. Staging less is staging faster.
fn stage_schema(contract: &Contract) -> SchemaRef {
    let single_key = contract.record_key.len() == 1;
    let fields = schema(contract)
        .fields()
        .iter()
        .filter(|f| match f.name().as_str() {
            "delivery_id" | "received_at" | "person_key_version" => false,
            "record_key" => !single_key,
            _ => true,
        })
        .map(|f| {
            if f.name() == "person_id" || f.name() == LINKED_PERSON_COLUMN {
                Arc::new(ArrowField::new(
                    staged_tag(f.name()),
                    DataType::FixedSizeBinary(32),
                    true,
                ))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}

enum Col {
    Tag(FixedSizeBinaryBuilder),
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
}

impl Col {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::FixedSizeBinary(n) => Col::Tag(FixedSizeBinaryBuilder::new(*n)),
            DataType::Utf8 => Col::Str(StringBuilder::new()),
            DataType::Int32 => Col::I32(Int32Builder::with_capacity(BATCH_ROWS)),
            DataType::Int64 => Col::I64(Int64Builder::with_capacity(BATCH_ROWS)),
            DataType::Float64 => Col::F64(Float64Builder::with_capacity(BATCH_ROWS)),
            DataType::Date32 => Col::Date(Date32Builder::with_capacity(BATCH_ROWS)),
            DataType::Timestamp(..) => {
                Col::Ts(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC"))
            }
            DataType::Boolean => Col::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
            other => unreachable!("no builder for {other}"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Tag(b) => Arc::new(b.finish()),
            Col::Str(b) => Arc::new(b.finish()),
            Col::I32(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Ts(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
        }
    }

    fn str(&mut self, v: Option<&str>) {
        match self {
            Col::Str(b) => b.append_option(v),
            _ => unreachable!("string column"),
        }
    }

    fn tag(&mut self, v: Option<&[u8; 32]>) {
        match (self, v) {
            (Col::Tag(b), Some(t)) => b.append_value(t).expect("32 bytes"),
            (Col::Tag(b), None) => b.append_null(),
            _ => unreachable!("tag column"),
        }
    }

    fn i32(&mut self, v: Option<i32>) {
        match self {
            Col::I32(b) => b.append_option(v),
            _ => unreachable!("int column"),
        }
    }

    fn ts(&mut self, v: i64) {
        match self {
            Col::Ts(b) => b.append_value(v),
            _ => unreachable!("timestamp column"),
        }
    }

    fn value(&mut self, v: Value, raw: &str) {
        match (self, v) {
            (Col::Str(b), Value::Null) => b.append_null(),
            (Col::I64(b), Value::Null) => b.append_null(),
            (Col::F64(b), Value::Null) => b.append_null(),
            (Col::Date(b), Value::Null) => b.append_null(),
            (Col::Ts(b), Value::Null) => b.append_null(),
            (Col::Bool(b), Value::Null) => b.append_null(),
            (Col::Str(b), Value::Str) => b.append_value(raw),
            (Col::I64(b), Value::Int(x)) => b.append_value(x),
            (Col::F64(b), Value::Float(x)) => b.append_value(x),
            (Col::Date(b), Value::Date(x)) => b.append_value(x),
            (Col::Ts(b), Value::Timestamp(x)) => b.append_value(x),
            (Col::Bool(b), Value::Bool(x)) => b.append_value(x),
            (_, v) => unreachable!("value {v:?} does not fit its column"),
        }
    }
}

struct Partition {
    year: i32,
    month: u32,
    cols: Vec<Col>,
    rows: usize,
    /// Rows appended in all (in builders, held or spilled).
    staged: usize,
    /// Finished batches kept in memory while the delivery's budget allows.
    held: Vec<RecordBatch>,
    held_bytes: usize,
    /// Batches spilled to disk as Arrow IPC under memory pressure; they precede
    /// `held` in row order.
    stage: Option<StreamWriter<BufWriter<File>>>,
    stage_path: PathBuf,
}

/// A written Parquet file waiting to be published to the lake.
#[derive(Debug, Clone)]
pub struct SpooledFile {
    pub path: PathBuf,
    pub key: String,
    /// The lake table and the partition the file belongs to.
    pub table: String,
    pub year: i32,
    pub month: u32,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("writing Parquet spool file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("spool file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Writes one delivery's accepted rows into Parquet files per (year, month),
/// spooled under `dir` until the delivery is known to be accepted.
///
/// Two passes keep memory flat however many months a delivery spans (a GP's
/// diagnoses go back years): rows are gathered per partition as Arrow batches (no
/// more than [`BUFFERED_ROWS`] wait in builders, no more than [`HELD_BUDGET`] bytes of
/// batches are held; past that the biggest partition spills to an Arrow IPC file), and
/// at the end each partition becomes Parquet in turn, so only one Parquet writer is
/// ever open.
pub struct PartitionedWriter<'c> {
    contract: &'c Contract,
    schema: SchemaRef,
    stage_schema: SchemaRef,
    key_version: i32,
    props: WriterProperties,
    dir: PathBuf,
    table: String,
    delivery_id: String,
    received_at_micros: i64,
    partitions: BTreeMap<(i32, u32), Partition>,
    buffered: usize,
    held: usize,
    held_budget: usize,
    /// A multi-field record key is joined here (no allocation per row).
    record_key: String,
    /// Threads that encode partitions at the end.
    threads: usize,
}

impl<'c> PartitionedWriter<'c> {
    pub fn new(
        contract: &'c Contract,
        dir: &Path,
        delivery_id: &str,
        received_at_micros: i64,
        key_version: u32,
    ) -> Self {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("level 1 exists"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Row-group statistics prune well for month-partitioned files; page-level
            // ones cost more than they save here.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_write_batch_size(8 * 1024)
            .set_data_page_size_limit(PAGE_BYTES)
            .set_created_by(format!("naerdata {}", env!("CARGO_PKG_VERSION")));
        // Unique or near-unique columns gain nothing from a dictionary but pay for
        // its hash table in time and memory.
        let unique = contract
            .record_key
            .iter()
            .map(|&i| contract.fields[i].name.as_str())
            .chain(match contract.version_rule {
                VersionRule::Field(i) => Some(contract.fields[i].name.as_str()),
                VersionRule::ReceivedAt => None,
            })
            .chain(["record_key", "person_id", "record_version"]);
        // Their min/max statistics cannot prune anything either (random hex, ids).
        for name in unique {
            props = props
                .set_column_dictionary_enabled(ColumnPath::from(name), false)
                .set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
        }
        // Small or constant integers compress as well under zstd without a dictionary,
        // and hashing every value into one costs more than it saves.
        for name in [
            "person_key_version",
            "birth_year",
            "birth_month",
            "age_at_event",
            "received_at",
        ] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
        PartitionedWriter {
            contract,
            schema: schema(contract),
            stage_schema: stage_schema(contract),
            key_version: key_version as i32,
            props: props.build(),
            dir: dir.to_path_buf(),
            table: contract.table(),
            delivery_id: delivery_id.to_string(),
            received_at_micros,
            partitions: BTreeMap::new(),
            buffered: 0,
            held: 0,
            held_budget: HELD_BUDGET,
            record_key: String::new(),
            threads: 1,
        }
    }

    /// Overrides the held-batch budget (tests force spilling with a small one).
    pub fn with_held_budget(mut self, bytes: usize) -> Self {
        self.held_budget = bytes;
        self
    }

    /// Appends a kept row (pseudonymised by the row sink).
    pub fn append(&mut self, v: &TypedRow) -> Result<(), LakeError> {
        let d = v.event_date;
        let key = (d.year(), d.month());
        let schema = &self.stage_schema;
        let dir = &self.dir;
        let table = &self.table;
        let p = self.partitions.entry(key).or_insert_with(|| Partition {
            year: key.0,
            month: key.1,
            cols: schema
                .fields()
                .iter()
                .map(|f| Col::new(f.data_type()))
                .collect(),
            rows: 0,
            staged: 0,
            held: Vec::new(),
            held_bytes: 0,
            stage: None,
            stage_path: dir.join(format!("stage-{}-{:04}-{:02}.arrows", table, key.0, key.1)),
        });
        let c = self.contract;
        let mut col = 0;
        for (i, value) in v.values.iter().enumerate() {
            if c.is_withheld(i) {
                continue;
            }
            p.cols[col].value(*value, v.text(i));
            col += 1;
        }
        if c.cpr_link_field.is_some() {
            p.cols[col].tag(v.linked.tag());
            col += 1;
        }
        if c.cpr_field.is_some() {
            let person = &v.person;
            p.cols[col].tag(person.tag());
            p.cols[col + 1].str(Some(person.class.code()));
            p.cols[col + 2].i32(person.birth_year);
            p.cols[col + 3].i32(person.birth_month);
            p.cols[col + 4].str(person.sex);
            p.cols[col + 5].i32(person.age_at_event);
            col += 6;
        }
        if c.record_key.len() > 1 {
            v.write_record_key(&mut self.record_key);
            p.cols[col].str(Some(&self.record_key));
            col += 1;
        }
        p.cols[col].ts(v.record_version);
        p.rows += 1;
        p.staged += 1;
        self.buffered += 1;
        if p.rows >= BATCH_ROWS {
            self.buffered -= p.rows;
            self.held += hold(p, &self.stage_schema)?;
        } else if self.buffered >= BUFFERED_ROWS {
            // Many small partitions: batch the fullest.
            let p = self
                .partitions
                .values_mut()
                .max_by_key(|p| p.rows)
                .expect("a partition");
            self.buffered -= p.rows;
            self.held += hold(p, &self.stage_schema)?;
        }
        while self.held > self.held_budget {
            // Memory pressure: spill the partition holding the most.
            let p = self
                .partitions
                .values_mut()
                .max_by_key(|p| p.held_bytes)
                .expect("a partition");
            self.held -= spill(p, &self.stage_schema)?;
        }
        Ok(())
    }

    /// Encodes the partitions on up to `threads` threads at [`PartitionedWriter::finish`]
    /// (each partition's files are the same whichever thread writes them).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Converts each partition's staged rows to Parquet; returns the files in key order.
    /// Partitions are independent files, so they are encoded in parallel: the
    /// threads take the next partition, largest first, until none is left.
    pub fn finish(mut self) -> Result<Vec<SpooledFile>, LakeError> {
        let partitions = self.largest_first();
        let threads = self.threads.min(partitions.len()).max(1);
        let queue = std::sync::Mutex::new(partitions.into_iter());
        let work = || {
            let mut files = Vec::new();
            loop {
                let next = queue.lock().expect("the partition queue").next();
                let Some(mut p) = next else {
                    return Ok(files);
                };
                files.extend(self.write_partition(&mut p)?);
            }
        };
        // The calling thread is one of the encoders: a thread of its own would get a
        // malloc arena of its own, holding what it freed (measured at 1M rows: 132
        // against 120 MiB with one thread; 157 against 142 with two).
        let results: Vec<Result<Vec<SpooledFile>, LakeError>> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let mut results = vec![work()];
            results.extend(
                helpers
                    .into_iter()
                    .map(|h| h.join().expect("a Parquet encoding thread panicked")),
            );
            results
        });
        let mut done = Vec::new();
        for r in results {
            done.extend(r?);
        }
        done.sort_by(|a, b| a.key.cmp(&b.key));
        // What the encoders freed stays in their malloc arenas; the commit that
        // follows would fault its own pages in on top of it.
        release_freed_memory();
        Ok(done)
    }

    /// The partitions, largest first (equal ones in key order): a delivery's months
    /// differ in size (a GP's recent months hold most rows), and a large partition
    /// taken last would leave the other threads idle while one encodes it (measured:
    /// 1M rows, half of them in the last month, 2 threads: 0.92 against 1.04 s).
    fn largest_first(&mut self) -> Vec<Partition> {
        let mut partitions: Vec<Partition> =
            std::mem::take(&mut self.partitions).into_values().collect();
        partitions.sort_by_key(|p| std::cmp::Reverse(p.staged));
        partitions
    }

    /// One partition's staged rows (spilled, then held: row order is kept) as
    /// Parquet files of at most [`FILE_ROWS`] rows.
    fn write_partition(&self, p: &mut Partition) -> Result<Vec<SpooledFile>, LakeError> {
        let mut done = Vec::new();
        hold(p, &self.stage_schema)?;
        let spilled: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>> =
            match p.stage.take() {
                Some(mut w) => {
                    w.finish()?;
                    drop(w);
                    let f = File::open(&p.stage_path).map_err(|e| io_error(&p.stage_path, e))?;
                    Box::new(StreamReader::try_new(
                        BufReader::with_capacity(1 << 20, f),
                        None,
                    )?)
                }
                None => Box::new(std::iter::empty()),
            };
        let held = std::mem::take(&mut p.held).into_iter().map(Ok);
        let mut file_no = 0;
        let mut out: Option<(ArrowWriter<File>, String, PathBuf, u64)> = None;
        for batch in spilled.chain(held) {
            let batch = self.to_lake(&batch?)?;
            if out.is_none() {
                let key = object_key(&self.table, p.year, p.month, &self.delivery_id, file_no);
                let path = spool_path(&self.dir, &key);
                let f = File::create(&path).map_err(|e| io_error(&path, e))?;
                let w = ArrowWriter::try_new(f, self.schema.clone(), Some(self.props.clone()))
                    .map_err(|e| parquet_error(&path, e))?;
                out = Some((w, key, path, 0));
            }
            let (w, _, path, rows) = out.as_mut().expect("opened above");
            w.write(&batch).map_err(|e| parquet_error(path, e))?;
            *rows += batch.num_rows() as u64;
            if *rows >= FILE_ROWS as u64 {
                done.push(close(
                    out.take().expect("open"),
                    &self.table,
                    (p.year, p.month),
                )?);
                file_no += 1;
            }
        }
        if let Some(o) = out {
            done.push(close(o, &self.table, (p.year, p.month))?);
        }
        if p.stage_path.exists() {
            std::fs::remove_file(&p.stage_path).map_err(|e| io_error(&p.stage_path, e))?;
        }
        Ok(done)
    }
}

impl PartitionedWriter<'_> {
    /// A staged batch in the lake schema: constants added, the tag as hex.
    fn to_lake(&self, staged: &RecordBatch) -> Result<RecordBatch, LakeError> {
        let n = staged.num_rows();
        let c = self.contract;
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    name @ ("person_id" | LINKED_PERSON_COLUMN) => hex_column(
                        staged
                            .column_by_name(staged_tag(name))
                            .and_then(|a| a.as_any().downcast_ref::<FixedSizeBinaryArray>())
                            .expect("staged tag column"),
                    ),
                    "person_key_version" => Arc::new(Int32Array::from(vec![self.key_version; n])),
                    "delivery_id" => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        self.delivery_id.as_str(),
                        n,
                    ))),
                    "received_at" => Arc::new(
                        TimestampMicrosecondArray::from(vec![self.received_at_micros; n])
                            .with_timezone("UTC"),
                    ),
                    "record_key" if c.record_key.len() == 1 => staged
                        .column_by_name(&c.fields[c.record_key[0]].name)
                        .expect("staged key column")
                        .clone(),
                    name => staged.column_by_name(name).expect("staged column").clone(),
                }
            })
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Lowercase hex of each 32-byte tag.
fn hex_column(tags: &FixedSizeBinaryArray) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(tags.len(), tags.len() * 64);
    let mut buf = [0u8; 64];
    for i in 0..tags.len() {
        if tags.is_null(i) {
            b.append_null();
        } else {
            hex::encode_to_slice(tags.value(i), &mut buf).expect("32 bytes -> 64 hex");
            b.append_value(std::str::from_utf8(&buf).expect("hex is ASCII"));
        }
    }
    Arc::new(b.finish())
}

fn io_error(path: &Path, source: impl Into<std::io::Error>) -> LakeError {
    LakeError::Io {
        path: path.display().to_string(),
        source: source.into(),
    }
}

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> LakeError {
    LakeError::Parquet {
        path: path.display().to_string(),
        source,
    }
}

/// Turns a partition's buffered rows into a held batch; returns the bytes it holds.
fn hold(p: &mut Partition, schema: &SchemaRef) -> Result<usize, LakeError> {
    if p.rows == 0 {
        return Ok(0);
    }
    let arrays: Vec<ArrayRef> = p.cols.iter_mut().map(Col::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let bytes = batch.get_array_memory_size();
    p.held.push(batch);
    p.held_bytes += bytes;
    p.rows = 0;
    Ok(bytes)
}

/// Writes a partition's held batches to its IPC stage file; returns the bytes freed.
fn spill(p: &mut Partition, schema: &SchemaRef) -> Result<usize, LakeError> {
    if p.stage.is_none() {
        let f = File::create(&p.stage_path).map_err(|e| io_error(&p.stage_path, e))?;
        p.stage = Some(StreamWriter::try_new(
            BufWriter::with_capacity(256 * 1024, f),
            schema,
        )?);
    }
    let w = p.stage.as_mut().expect("opened above");
    for batch in p.held.drain(..) {
        w.write(&batch)?;
    }
    Ok(std::mem::take(&mut p.held_bytes))
}

fn close(
    (w, key, path, rows): (ArrowWriter<File>, String, PathBuf, u64),
    table: &str,
    (year, month): (i32, u32),
) -> Result<SpooledFile, LakeError> {
    w.close().map_err(|e| parquet_error(&path, e))?;
    Ok(SpooledFile {
        path,
        key,
        table: table.to_string(),
        year,
        month,
        rows,
    })
}

fn spool_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(key.replace('/', "__"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::pseudonym::{Key, Pseudonymiser};
    use crate::read::Row;
    use crate::validate::{Validator, Verdict};

    /// Every column the lake adds beside the contract's fields is either a person
    /// attribute an extract may carry or one it never carries.
    #[test]
    fn every_added_column_has_an_extract_rule() {
        for c in Registry::builtin().iter() {
            for f in schema(c).fields() {
                let n = f.name().as_str();
                let listed =
                    PERSON_ATTRIBUTES.iter().any(|(a, _)| *a == n) || NEVER_EXTRACTED.contains(&n);
                assert!(
                    c.field_index(n).is_some() != listed,
                    "{}.{n}: a contract field or an added column, not both or neither",
                    c.id
                );
            }
        }
    }

    /// Appends `rows` rows of 2026, row `i` in month `month(i)`, with the given held
    /// budget, and hands the writer over to `then`.
    fn staged<T>(
        dir: &Path,
        budget: usize,
        rows: u32,
        month: impl Fn(u32) -> u32,
        then: impl FnOnce(PartitionedWriter) -> T,
    ) -> T {
        let registry = Registry::builtin();
        let c = registry.get("almenpraksis.diagnose").unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let p = Pseudonymiser::new(&Key::new(1, vec![9; 32]).unwrap());
        let v = Validator::new(c, day, 0);
        let mut w = PartitionedWriter::new(c, dir, "d1", 0, 1).with_held_budget(budget);
        let mut row = Row::with_fields(c.fields.len());
        let (mut problems, mut typed) = (Vec::new(), Vec::new());
        for i in 0..rows {
            let month = month(i);
            let id = format!("r{i}");
            let date = format!("2026-{month:02}-01");
            let values = [
                id.as_str(),
                "670385-4001",
                "012345",
                "T90",
                date.as_str(),
                "diabetes2",
                "2026-03-02T10:00:00+01:00",
                "",
            ];
            row.fill(u64::from(i) + 2, values);
            let checked = v.check(&row, &mut typed, &mut problems);
            assert_eq!(checked.verdict, Verdict::Accepted);
            let mut kept = checked.typed.expect("kept");
            kept.person.pseudonymise(&p);
            w.append(&kept).unwrap();
        }
        then(w)
    }

    /// Writes 40k rows over three months with the given held budget.
    fn write(dir: &Path, budget: usize) -> Vec<(String, Vec<u8>)> {
        staged(
            dir,
            budget,
            40_000,
            |i| 1 + i % 3,
            |w| {
                w.finish()
                    .unwrap()
                    .into_iter()
                    .map(|f| (f.key, std::fs::read(f.path).unwrap()))
                    .collect()
            },
        )
    }

    #[test]
    fn the_largest_partitions_are_encoded_first() {
        let dir = tempfile::tempdir().unwrap();
        // March 10 rows, February 300, January 2,000, April 300 (a tie: key order).
        let month = |i: u32| match i {
            0..10 => 3,
            10..310 => 2,
            310..2310 => 1,
            _ => 4,
        };
        let order: Vec<(i32, u32)> = staged(dir.path(), usize::MAX, 2610, month, |mut w| {
            w.largest_first()
                .iter()
                .map(|p| (p.year, p.month))
                .collect()
        });
        assert_eq!(order, [(2026, 1), (2026, 2), (2026, 4), (2026, 3)]);
    }

    #[test]
    fn spilling_under_memory_pressure_writes_the_same_files() {
        let held = tempfile::tempdir().unwrap();
        let spilled = tempfile::tempdir().unwrap();
        let a = write(held.path(), usize::MAX);
        let b = write(spilled.path(), 1);
        assert_eq!(a.len(), 3);
        assert_eq!(a, b, "spilling changed the output");
        // No stage files are left behind.
        let left: Vec<_> = std::fs::read_dir(spilled.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".arrows"))
            .collect();
        assert!(left.is_empty());
    }
}
