//! naerdata: collect, check, pseudonymise and lay out primary-sector health data.
//!
//! The domain lives here as modules named after it; the steps (`receive`, `process`)
//! are plain async functions over the traits in `ports`, with adapters in `local`
//! (`aws`, behind the `aws` feature). Binaries (the CLI, the Lambda functions) only parse input, call a
//! step and map the result.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "analytics")]
pub mod catalog;
pub mod contract;
pub mod cost;
pub mod cpr;
#[cfg(feature = "analytics")]
pub mod current;
pub mod custody;
pub mod disclosure;
pub mod docs;
#[cfg(feature = "analytics")]
pub mod extract;
pub mod faults;
pub mod fhir;
pub mod generate;
#[cfg(feature = "analytics")]
pub mod glossary;
#[cfg(feature = "analytics")]
pub mod glue;
pub mod lake;
pub mod layout;
pub mod ledger;
pub mod local;
#[cfg(feature = "analytics")]
pub mod maintain;
pub mod metrics;
pub mod migrate;
pub mod monitor;
#[cfg(feature = "analytics")]
pub mod municipal;
pub mod platform;
#[cfg(feature = "analytics")]
pub mod portable;
pub mod ports;
pub mod precheck;
pub mod privacy;
pub mod process;
pub mod pseudonym;
#[cfg(feature = "analytics")]
pub mod publication;
#[cfg(feature = "analytics")]
pub mod publish;
pub mod quality;
pub mod read;
pub mod receipt;
pub mod receive;
pub mod reference;
pub mod report;
#[cfg(feature = "analytics")]
pub mod retract;
#[cfg(feature = "analytics")]
pub mod rotate;
pub mod sink;
pub mod stack;
#[cfg(feature = "analytics")]
pub mod standardisation;
pub mod validate;
#[cfg(feature = "analytics")]
pub mod warehouse;

pub use platform::{Platform, StepError};
