//! The lake: object layout, the Arrow/Parquet schema of a dataset, and a partitioned
//! Parquet writer that spools to local files with bounded memory.
//!
//! Layout (decision 3 of DESIGN.md):
//! `curated/<table>/year=YYYY/month=MM/<delivery_id>-<n>.parquet`, deterministic per
//! delivery so a retry overwrites rather than duplicates.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::Datelike;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::contract::{Contract, FieldType};
use crate::read::Row;
use crate::validate::{Validator, Value};

/// Columns every curated table has after the contract's own (minus the CPR).
pub const PERSON_COLUMNS: &[&str] = &[
    "person_id",
    "person_key_version",
    "cpr_status",
    "birth_year",
    "birth_month",
    "sex",
    "age_at_event",
];
pub const LINEAGE_COLUMNS: &[&str] =
    &["record_key", "record_version", "delivery_id", "received_at"];

/// Rows buffered per partition before they become a record batch.
const BATCH_ROWS: usize = 8 * 1024;
/// Encoded-but-unflushed bytes allowed across all open partitions; a partition over
/// its share ends its row group early. This is what keeps memory flat when a
/// delivery spans many months.
const IN_PROGRESS_BUDGET: usize = 64 << 20;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per file before a partition rolls over to `<delivery_id>-<n+1>.parquet`.
const FILE_ROWS: usize = 4 * 1024 * 1024;

pub fn curated_prefix(table: &str) -> String {
    format!("curated/{table}/")
}

pub fn object_key(table: &str, year: i32, month: u32, delivery_id: &str, n: usize) -> String {
    format!("curated/{table}/year={year:04}/month={month:02}/{delivery_id}-{n}.parquet")
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

/// The curated table's schema: the contract's fields without the CPR, then the person
/// columns derived from it, then lineage. `year`/`month` live in the path (Hive style).
pub fn schema(contract: &Contract) -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields: Vec<ArrowField> = contract
        .fields
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != contract.cpr_field)
        .map(|(_, f)| ArrowField::new(&f.name, arrow_type(f.field_type), !f.required))
        .collect();
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

/// Catalog columns (name, SQL type) in schema order; used for DuckDB views and Glue.
pub fn catalog_columns(contract: &Contract) -> Vec<(String, &'static str)> {
    schema(contract)
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8 => "string",
                DataType::Int32 => "int",
                DataType::Int64 => "bigint",
                DataType::Float64 => "double",
                DataType::Date32 => "date",
                DataType::Timestamp(..) => "timestamp",
                DataType::Boolean => "boolean",
                other => unreachable!("no catalog type for {other}"),
            };
            (f.name().clone(), t)
        })
        .collect()
}

enum Col {
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
            DataType::Utf8 => Col::Str(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
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
    file_no: usize,
    file_rows: usize,
    writer: Option<ArrowWriter<File>>,
}

/// A written Parquet file waiting to be published to the lake.
#[derive(Debug, Clone)]
pub struct SpooledFile {
    pub path: PathBuf,
    pub key: String,
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
pub struct PartitionedWriter<'c> {
    contract: &'c Contract,
    schema: SchemaRef,
    props: WriterProperties,
    dir: PathBuf,
    table: String,
    delivery_id: String,
    received_at_micros: i64,
    partitions: BTreeMap<(i32, u32), Partition>,
    done: Vec<SpooledFile>,
}

impl<'c> PartitionedWriter<'c> {
    pub fn new(
        contract: &'c Contract,
        dir: &Path,
        delivery_id: &str,
        received_at_micros: i64,
    ) -> Self {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("level 1 exists"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("naerdata {}", env!("CARGO_PKG_VERSION")))
            .build();
        PartitionedWriter {
            contract,
            schema: schema(contract),
            props,
            dir: dir.to_path_buf(),
            table: contract.table(),
            delivery_id: delivery_id.to_string(),
            received_at_micros,
            partitions: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    /// Appends the row the validator just accepted.
    pub fn append(&mut self, row: &Row, v: &Validator) -> Result<(), LakeError> {
        let d = v.event_date;
        let key = (d.year(), d.month());
        let schema = &self.schema;
        let p = self.partitions.entry(key).or_insert_with(|| Partition {
            year: key.0,
            month: key.1,
            cols: schema
                .fields()
                .iter()
                .map(|f| Col::new(f.data_type()))
                .collect(),
            rows: 0,
            file_no: 0,
            file_rows: 0,
            writer: None,
        });
        let c = self.contract;
        let mut col = 0;
        for (i, value) in v.values.iter().enumerate() {
            if Some(i) == c.cpr_field {
                continue;
            }
            p.cols[col].value(*value, row.get(i).unwrap_or("").trim());
            col += 1;
        }
        if c.cpr_field.is_some() {
            let person = &v.person;
            p.cols[col].str(person.person_id());
            p.cols[col + 1].i32(Some(v.key_version() as i32));
            p.cols[col + 2].str(Some(person.class.code()));
            p.cols[col + 3].i32(person.birth_year);
            p.cols[col + 4].i32(person.birth_month);
            p.cols[col + 5].str(person.sex);
            p.cols[col + 6].i32(person.age_at_event);
            col += 7;
        }
        p.cols[col].str(Some(&v.record_key));
        p.cols[col + 1].ts(v.record_version);
        p.cols[col + 2].str(Some(&self.delivery_id));
        p.cols[col + 3].ts(self.received_at_micros);
        p.rows += 1;
        if p.rows >= BATCH_ROWS {
            let share = (IN_PROGRESS_BUDGET / self.partitions.len()).max(1 << 20);
            let p = self.partitions.get_mut(&key).expect("inserted above");
            let done = flush(
                p,
                &self.schema,
                &self.props,
                &self.dir,
                &self.table,
                &self.delivery_id,
            )?;
            self.done.extend(done);
            if let Some(w) = p.writer.as_mut() {
                if w.in_progress_size() > share {
                    w.flush().map_err(|source| LakeError::Parquet {
                        path: self.dir.display().to_string(),
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Flushes and closes every partition; returns the spooled files in key order.
    pub fn finish(mut self) -> Result<Vec<SpooledFile>, LakeError> {
        for p in self.partitions.values_mut() {
            let done = flush(
                p,
                &self.schema,
                &self.props,
                &self.dir,
                &self.table,
                &self.delivery_id,
            )?;
            self.done.extend(done);
            if let Some(f) = close(p, &self.dir, &self.table, &self.delivery_id)? {
                self.done.push(f);
            }
        }
        self.done.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(self.done)
    }
}

fn spool_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(key.replace('/', "__"))
}

/// Turns buffered rows into a batch and writes it; rolls the file over when full.
fn flush(
    p: &mut Partition,
    schema: &SchemaRef,
    props: &WriterProperties,
    dir: &Path,
    table: &str,
    delivery_id: &str,
) -> Result<Option<SpooledFile>, LakeError> {
    if p.rows == 0 {
        return Ok(None);
    }
    let arrays: Vec<ArrayRef> = p.cols.iter_mut().map(Col::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    if p.writer.is_none() {
        let key = object_key(table, p.year, p.month, delivery_id, p.file_no);
        let path = spool_path(dir, &key);
        let file = File::create(&path).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let w =
            ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).map_err(|source| {
                LakeError::Parquet {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        p.writer = Some(w);
    }
    let w = p.writer.as_mut().expect("opened above");
    w.write(&batch).map_err(|source| LakeError::Parquet {
        path: key_path(dir, table, p, delivery_id),
        source,
    })?;
    p.file_rows += p.rows;
    p.rows = 0;
    if p.file_rows >= FILE_ROWS {
        return close(p, dir, table, delivery_id);
    }
    Ok(None)
}

fn key_path(dir: &Path, table: &str, p: &Partition, delivery_id: &str) -> String {
    spool_path(
        dir,
        &object_key(table, p.year, p.month, delivery_id, p.file_no),
    )
    .display()
    .to_string()
}

fn close(
    p: &mut Partition,
    dir: &Path,
    table: &str,
    delivery_id: &str,
) -> Result<Option<SpooledFile>, LakeError> {
    let Some(w) = p.writer.take() else {
        return Ok(None);
    };
    let key = object_key(table, p.year, p.month, delivery_id, p.file_no);
    let path = spool_path(dir, &key);
    w.close().map_err(|source| LakeError::Parquet {
        path: path.display().to_string(),
        source,
    })?;
    let rows = p.file_rows as u64;
    p.file_no += 1;
    p.file_rows = 0;
    Ok(Some(SpooledFile { path, key, rows }))
}
