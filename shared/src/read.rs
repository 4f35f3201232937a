//! Byte stream -> records.
//!
//! Everything streams: gzip is decompressed as it is read (with a cap against zip
//! bombs), windows-1252 is transcoded as it is read (only where the contract says so),
//! and CSV/NDJSON records are handed out one at a time into a reused buffer, so memory
//! does not grow with the file.

use std::io::{BufRead, BufReader, Read};

use crate::contract::{Contract, Encoding, FileFormat};

/// A problem with the file as a whole: the delivery is rejected with this one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StructuralError {
    /// A stable machine-readable rule name, e.g. `empty_file`.
    pub rule: &'static str,
    pub message: String,
}

impl StructuralError {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        StructuralError {
            rule,
            message: message.into(),
        }
    }
}

/// Refuses to read past `limit` bytes (of decompressed data).
struct Capped<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            // Only an error if there really is more.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!(
                        "the delivery (decompressed) exceeds the contract's cap of {} bytes (maxDecompressedBytes)",
                        self.limit
                    ),
                )),
            };
        }
        let max = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Refuses a line longer than `limit` bytes: a file of one endless line would
/// otherwise be buffered whole by the record reader.
struct LineCapped<R> {
    inner: R,
    /// Bytes since the last newline.
    run: u64,
    /// Bytes read so far, for the message.
    offset: u64,
    limit: u64,
}

impl<R: Read> Read for LineCapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.run = match memchr::memrchr(b'\n', chunk) {
            Some(i) => {
                // Only the part before the chunk's first newline extends the old run.
                let first = memchr::memchr(b'\n', chunk).unwrap_or(i);
                if self.run + first as u64 > self.limit {
                    return Err(self.too_long());
                }
                (n - i - 1) as u64
            }
            None => self.run + n as u64,
        };
        if self.run > self.limit {
            return Err(self.too_long());
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> LineCapped<R> {
    fn too_long(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "a line near byte {} is longer than the contract's limit of {} bytes (maxLineBytes)",
                self.offset, self.limit
            ),
        )
    }
}

const BUF: usize = 256 * 1024;

/// Wraps a raw object stream: gunzips when the bytes say gzip (magic 1f 8b), and
/// transcodes windows-1252 when the contract declares it. The result yields UTF-8
/// (or, for UTF-8 contracts, bytes that are checked for UTF-8 per field).
pub fn decode(
    raw: Box<dyn Read + Send>,
    contract: &Contract,
) -> Result<Box<dyn Read + Send>, StructuralError> {
    let mut buffered = BufReader::with_capacity(BUF, raw);
    let head = buffered.fill_buf().map_err(|e| {
        StructuralError::new("unreadable", format!("the file could not be read: {e}"))
    })?;
    if head.is_empty() {
        return Err(StructuralError::new(
            "empty_file",
            "the file is empty (0 bytes); a delivery needs at least a header row",
        ));
    }
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let limit = contract.delivery.max_decompressed_bytes;
    let inner: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    // The size cap holds for plain files too; the line cap keeps one endless line
    // from being buffered whole.
    let plain: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(
        BUF,
        LineCapped {
            inner: Capped {
                inner,
                remaining: limit,
                limit,
            },
            run: 0,
            offset: 0,
            limit: contract.delivery.max_line_bytes,
        },
    ));
    Ok(match contract.delivery.encoding {
        Encoding::Utf8 => plain,
        // BOM sniffing stays on: a UTF-8 file with BOM is still read correctly.
        Encoding::Windows1252 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::WINDOWS_1252))
                .bom_sniffing(true)
                .build(plain),
        ),
    })
}

/// One record, its fields aligned to the contract's fields.
#[derive(Clone)]
pub struct Row {
    /// 1-based physical line in the (decompressed) file where the record starts.
    pub line: u64,
    record: csv::StringRecord,
    /// contract field -> position in `record`
    map: Vec<Option<usize>>,
    /// Number of fields the record had, compared with the header.
    pub width: usize,
    pub expected_width: usize,
}

impl Row {
    /// A row whose fields are given in contract order (FHIR flattening builds these).
    pub fn with_fields(n: usize) -> Self {
        Row {
            line: 0,
            record: csv::StringRecord::with_capacity(256, n),
            map: (0..n).map(Some).collect(),
            width: n,
            expected_width: n,
        }
    }

    /// Replaces the values (in contract order).
    pub fn fill<'a>(&mut self, line: u64, values: impl IntoIterator<Item = &'a str>) {
        self.record.clear();
        for v in values {
            self.record.push_field(v);
        }
        self.line = line;
        self.width = self.record.len();
    }

    /// The raw text of contract field `i`; `None` when the column is absent.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.map[i].and_then(|p| self.record.get(p))
    }
}

/// Why a single record could not be read (the rest of the file still can).
#[derive(Debug, Clone)]
pub struct RecordError {
    pub line: u64,
    pub rule: &'static str,
    pub message: String,
}

pub enum Next {
    Row,
    Bad(RecordError),
    End,
}

/// Streams records of one delivery.
pub struct RecordReader {
    inner: Inner,
    pub row: Row,
    /// Column names in the file that the contract does not know (ignored, reported).
    pub unknown_columns: Vec<String>,
}

enum Inner {
    Csv {
        reader: csv::Reader<Box<dyn Read + Send>>,
        header: Vec<String>,
    },
    Ndjson {
        lines: std::io::Lines<BufReader<Box<dyn Read + Send>>>,
        line: u64,
        names: Vec<String>,
    },
}

impl RecordReader {
    pub fn open(input: Box<dyn Read + Send>, contract: &Contract) -> Result<Self, StructuralError> {
        match contract.delivery.format {
            FileFormat::Csv { delimiter } => Self::open_csv(input, contract, delimiter),
            FileFormat::Fhir { .. } | FileFormat::Derived { .. } => Err(StructuralError::new(
                "format",
                format!("{} deliveries are not read as flat records", contract.id),
            )),
            FileFormat::Ndjson => {
                let names = contract.fields.iter().map(|f| f.name.clone()).collect();
                Ok(RecordReader {
                    inner: Inner::Ndjson {
                        lines: BufReader::with_capacity(BUF, input).lines(),
                        line: 0,
                        names,
                    },
                    row: Row {
                        line: 0,
                        record: csv::StringRecord::new(),
                        map: (0..contract.fields.len()).map(Some).collect(),
                        width: contract.fields.len(),
                        expected_width: contract.fields.len(),
                    },
                    unknown_columns: Vec::new(),
                })
            }
        }
    }

    fn open_csv(
        input: Box<dyn Read + Send>,
        contract: &Contract,
        delimiter: u8,
    ) -> Result<Self, StructuralError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(BUF)
            .from_reader(input);
        let mut bytes = csv::ByteRecord::new();
        let got = reader
            .read_byte_record(&mut bytes)
            .map_err(|e| csv_structural(e, contract))?;
        if !got || (bytes.len() == 1 && bytes[0].iter().all(u8::is_ascii_whitespace)) {
            return Err(StructuralError::new(
                "empty_file",
                "the file has no header row; the first line must name the columns",
            ));
        }
        let mut header = Vec::with_capacity(bytes.len());
        for (i, raw) in bytes.iter().enumerate() {
            let mut raw = raw;
            if i == 0 {
                raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
            }
            let name = std::str::from_utf8(raw).map_err(|_| {
                not_utf8(
                    1,
                    &format!("header column {}", i + 1),
                    contract.delivery.encoding,
                )
            })?;
            header.push(name.trim().to_string());
        }
        if header.len() > contract.delivery.max_columns {
            return Err(StructuralError::new(
                "too_many_columns",
                format!(
                    "the header names {} columns; the contract allows at most {} (maxColumns)",
                    header.len(),
                    contract.delivery.max_columns
                ),
            ));
        }
        let mut map = Vec::with_capacity(contract.fields.len());
        let mut missing = Vec::new();
        for f in &contract.fields {
            let pos = header.iter().position(|h| h.eq_ignore_ascii_case(&f.name));
            if pos.is_none() && f.required {
                missing.push(f.name.as_str());
            }
            map.push(pos);
        }
        if !missing.is_empty() {
            return Err(missing_columns(
                contract, &header, &map, &missing, delimiter,
            ));
        }
        // Extra columns are ignored and named in the receipt: by name when the name
        // is a plain column name, else by position and shape.
        let unknown_columns = header
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                !contract
                    .fields
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(h))
            })
            .map(|(i, h)| header_name(h, i))
            .collect();
        let width = header.len();
        Ok(RecordReader {
            inner: Inner::Csv { reader, header },
            row: Row {
                line: 1,
                record: csv::StringRecord::new(),
                map,
                width,
                expected_width: width,
            },
            unknown_columns,
        })
    }

    /// Reads the next record into `self.row`.
    pub fn next(&mut self, contract: &Contract) -> Result<Next, StructuralError> {
        match &mut self.inner {
            Inner::Csv { reader, header, .. } => loop {
                match reader.read_record(&mut self.row.record) {
                    Ok(false) => return Ok(Next::End),
                    Ok(true) => {}
                    Err(e) => {
                        if let csv::ErrorKind::Utf8 { pos, err } = e.kind() {
                            let line = pos.as_ref().map_or(0, |p| p.line());
                            let column = header.get(err.field()).map_or_else(
                                || format!("column {}", err.field() + 1),
                                |h| column_label(h, err.field()),
                            );
                            return Err(not_utf8(line, &column, contract.delivery.encoding));
                        }
                        return Err(csv_structural(e, contract));
                    }
                }
                let rec = &self.row.record;
                // A blank line (a trailing newline, say) is not a record.
                if rec.len() == 1 && rec[0].is_empty() {
                    continue;
                }
                self.row.line = rec.position().map_or(0, |p| p.line());
                self.row.width = rec.len();
                return Ok(Next::Row);
            },
            Inner::Ndjson { lines, line, names } => loop {
                let text = match lines.next() {
                    None => return Ok(Next::End),
                    Some(Ok(t)) => t,
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                        return Err(StructuralError::new(
                            "too_large",
                            format!("line {}: {e}", *line + 1),
                        ));
                    }
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Err(not_utf8(*line + 1, "a record", contract.delivery.encoding));
                    }
                    Some(Err(e)) => {
                        return Err(StructuralError::new(
                            "unreadable",
                            format!("line {}: the file could not be read: {e}", *line + 1),
                        ));
                    }
                };
                *line += 1;
                let t = text.trim();
                if t.is_empty() {
                    continue;
                }
                self.row.line = *line;
                let obj =
                    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t) {
                        Ok(o) => o,
                        Err(e) => {
                            return Ok(Next::Bad(RecordError {
                                line: *line,
                                rule: "format",
                                message: format!("not a JSON object: {}", e.classify_message()),
                            }));
                        }
                    };
                let rec = &mut self.row.record;
                rec.clear();
                for n in names.iter() {
                    match obj.get(n) {
                        None | Some(serde_json::Value::Null) => rec.push_field(""),
                        Some(serde_json::Value::String(s)) => rec.push_field(s),
                        Some(other) => rec.push_field(&other.to_string()),
                    }
                }
                return Ok(Next::Row);
            },
        }
    }
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// serde_json's message can quote input; keep only the position and category.
    fn classify_message(&self) -> String {
        format!("{:?} error at column {}", self.classify(), self.column())
    }
}

fn not_utf8(line: u64, column: &str, declared: Encoding) -> StructuralError {
    StructuralError::new(
        "encoding",
        format!(
            "line {line}, {column}: the bytes are not valid {}; the contract declares {}. \
             Send the file as UTF-8 (æ, ø and å would otherwise be garbled)",
            Encoding::Utf8.name(),
            declared.name()
        ),
    )
}

fn csv_structural(e: csv::Error, contract: &Contract) -> StructuralError {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StructuralError::new(
                "encoding",
                format!(
                    "line {line}: the file could not be decoded as {}: {io}",
                    contract.delivery.encoding.name()
                ),
            )
        }
        // The reader knows no line when the guard stopped it inside a record.
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::FileTooLarge && line == 0 => {
            StructuralError::new("too_large", io.to_string())
        }
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
            StructuralError::new("too_large", format!("line {line}: {io}"))
        }
        csv::ErrorKind::Io(io) => StructuralError::new(
            "unreadable",
            format!("line {line}: the file could not be read: {io}"),
        ),
        _ => StructuralError::new("format", format!("line {line}: not readable as CSV: {e}")),
    }
}

/// A header name as shown in messages and receipts: the name when it is a plain
/// column name, else its position and shape. In a file without a header row the
/// "names" are the first record's values, which may be a CPR number or a name.
pub fn header_name(name: &str, index: usize) -> String {
    let plain = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' ' | '.'))
        && name.chars().any(char::is_alphabetic)
        && !crate::cpr::detect::contains(name)
        && name.chars().filter(char::is_ascii_digit).count() < 6;
    if plain {
        name.to_string()
    } else {
        format!("column {} ({})", index + 1, crate::validate::shape(name))
    }
}

fn column_label(name: &str, index: usize) -> String {
    let shown = header_name(name, index);
    if shown == name {
        format!("column {name:?}")
    } else {
        shown
    }
}

/// The structural error of a header that lacks required columns. It never quotes
/// the header's values: when none of them is a column name, the first line is most
/// likely data (a file sent without its header row).
fn missing_columns(
    contract: &Contract,
    header: &[String],
    map: &[Option<usize>],
    missing: &[&str],
    delimiter: u8,
) -> StructuralError {
    let delim = delimiter as char;
    let known = map.iter().filter(|m| m.is_some()).count();
    let mut message = format!(
        "line 1: the header lacks required column(s) {}; line 1 has {} field(s), {known} of them named as in the contract",
        missing.join(", "),
        header.len(),
    );
    if header.len() == 1 {
        let other = [b',', b';', b'\t', b'|']
            .into_iter()
            .find(|&d| d != delimiter && header[0].as_bytes().contains(&d));
        if let Some(d) = other {
            message.push_str(&format!(
                ". The contract's delimiter is {delim:?} but the header looks {:?}-delimited",
                d as char
            ));
        } else {
            message.push_str(&format!(
                ". The contract declares CSV delimited by {delim:?}; is this the right format?"
            ));
        }
    } else if known == 0 {
        message.push_str(&format!(
            ". None of the fields on line 1 is a column name of {}: the header row seems to be \
             missing (the first line looks like data). The first line must name the columns: {}",
            contract.id,
            contract
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(&delim.to_string())
        ));
    }
    StructuralError::new("missing_column", message)
}
