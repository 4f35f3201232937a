//! The publish function's integration tests, in one test binary.

#[path = "../../process/tests/support/mod.rs"]
mod support;

mod athena;
mod aws;
mod events;
