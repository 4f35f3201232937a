//! The library's integration tests, in one test binary: each file used to be a binary
//! of its own, and each linked DataFusion, delta-rs and the rest again (minutes of a
//! first build on two cores).

mod support;

mod chaos;
mod current;
mod custody;
mod delta;
mod extract;
mod layout;
mod pipeline;
mod planted;
mod publish;
mod reference;
