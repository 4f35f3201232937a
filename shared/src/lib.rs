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

/// The future of a step's entry point, boxed. An `async fn`'s state machine is compiled
/// in the crate that awaits it, so each binary and test binary compiled the whole
/// tree below every step it called again (DataFusion, delta-rs and the SDK with it);
/// behind a box it is compiled once, in this crate, and the callers only call it.
pub type Boxed<'a, T> = futures::future::BoxFuture<'a, T>;

// The steps the Lambda functions await stay boxed: these stop compiling if one of them
// becomes an `async fn` again (the fn-pointer types are the assertion).
#[allow(clippy::type_complexity)]
const _: for<'a> fn(
    &'a Platform,
    &'a str,
    Option<&'a str>,
) -> Boxed<'a, Result<receive::Received, StepError>> = receive::receive;
const _: for<'a> fn(&'a Platform, &'a str) -> Boxed<'a, Result<process::Processed, StepError>> =
    process::process;
const _: for<'a> fn(
    &'a Platform,
    chrono::NaiveDate,
) -> Boxed<'a, Result<monitor::Monitored, StepError>> = monitor::monitor;
#[cfg(feature = "analytics")]
const _: for<'a> fn(
    &'a Platform,
    chrono::NaiveDate,
    publish::PublishOptions,
) -> Boxed<'a, Result<publish::Published, publish::PublishError>> = publish::publish_with;
