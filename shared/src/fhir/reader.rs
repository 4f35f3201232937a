//! The bundles of a delivery file: NDJSON (one Bundle per line), or a file holding
//! one pretty-printed Bundle.

use std::io::{BufRead, BufReader, Read};

use crate::contract::Contract;
use crate::read::{self, StructuralError};

/// Yields `(line, bundle text)`: NDJSON, or a whole file holding one Bundle.
pub struct Bundles {
    lines: std::io::Lines<BufReader<Box<dyn Read + Send>>>,
    line: u64,
    /// A single pretty-printed Bundle, read whole (after the first line showed it).
    single: Option<String>,
}

impl Bundles {
    pub fn next_bundle(&mut self) -> Result<Option<(u64, String)>, StructuralError> {
        if let Some(s) = self.single.take() {
            return Ok(Some((1, s)));
        }
        loop {
            let Some(l) = self.lines.next() else {
                return Ok(None);
            };
            let l = l.map_err(|e| match e.kind() {
                std::io::ErrorKind::FileTooLarge => {
                    StructuralError::new("too_large", e.to_string())
                }
                std::io::ErrorKind::InvalidData => StructuralError::new(
                    "encoding",
                    format!(
                        "line {}: the bytes are not valid UTF-8; FHIR JSON is always UTF-8",
                        self.line + 1
                    ),
                ),
                _ => StructuralError::new("unreadable", format!("line {}: {e}", self.line + 1)),
            })?;
            self.line += 1;
            if l.trim().is_empty() {
                continue;
            }
            return Ok(Some((self.line, l)));
        }
    }
}

pub fn open_bundles(
    raw: Box<dyn Read + Send>,
    contract: &Contract,
) -> Result<Bundles, StructuralError> {
    let input = read::decode(raw, contract)?;
    let mut b = Bundles {
        lines: BufReader::with_capacity(256 * 1024, input).lines(),
        line: 0,
        single: None,
    };
    // NDJSON has a whole JSON object on line 1; a pretty-printed Bundle does not.
    let Some((_, first)) = b.next_bundle()? else {
        return Err(StructuralError::new(
            "empty_file",
            "the file holds no bundles",
        ));
    };
    if !first.trim_start().starts_with('{') {
        return Err(StructuralError::new(
            "format",
            "line 1: not JSON; a gateway delivery is NDJSON of FHIR Bundles (or one Bundle)",
        ));
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(&first).is_ok() {
        b.single = Some(first);
        // `single` doubles as the "put back" slot for NDJSON's first line.
        return Ok(b);
    }
    // A single-Bundle file is read whole: it may be as large as one NDJSON line.
    let cap = contract.delivery.max_line_bytes;
    let mut whole = first;
    for l in b.lines.by_ref() {
        let l = l.map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => StructuralError::new("too_large", e.to_string()),
            _ => StructuralError::new("unreadable", e.to_string()),
        })?;
        whole.push('\n');
        whole.push_str(&l);
        if whole.len() as u64 > cap {
            return Err(StructuralError::new(
                "too_large",
                format!(
                    "a single-Bundle file over {cap} bytes (maxLineBytes); send NDJSON, one bundle per line"
                ),
            ));
        }
    }
    b.single = Some(whole);
    Ok(b)
}
