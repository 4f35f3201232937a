//! The process function's integration tests, in one test binary (one link of the
//! AWS SDK and the lake instead of one per file). `privacy.rs` stays a binary of its
//! own: its global log subscriber must see only its own test's lines.

mod support;

mod aws;
mod chaos;
mod events;
