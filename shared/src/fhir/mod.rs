//! KL Gateway deliveries: FHIR R4 Bundles -> the municipal lake tables.
//!
//! A bundle (one delivery report per citizen per day) is the unit of acceptance, as a
//! row is in CSV: it is checked as a whole (one Patient with one CPR, a municipality
//! SOR code, `meta.lastUpdated` everywhere, FSIII codes, severity, periods, cancel
//! reasons, references that resolve inside the bundle), then flattened into one row
//! per resource, each checked again by its table's contract. If anything in a bundle
//! fails, none of its rows are written. Problems carry the bundle's line, its id and a
//! FHIRPath-like location, never the CPR.
//!
//! This module only reads: bundles in, flat rows out. Validation, pseudonyms,
//! quality and the lake are the process pass's, the same as for CSV
//! ([`crate::process`], [`crate::sink`]).
//!
//! Bundle shape and code systems: docs/kl-gateway-input.md.

mod bundle;
pub mod codes;
mod json;
mod reader;
mod resources;

pub use bundle::{FlatRow, flatten_bundle};
pub use codes::*;
pub use reader::{Bundles, open_bundles};

#[cfg(test)]
pub(crate) use bundle::tests::bundle as test_bundle;
