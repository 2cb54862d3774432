//! Sans-IO pieces of the LLM protocols Sluice speaks.
//!
//! **Architecture invariant:** nothing here knows about sockets, runtimes, config, quotas or
//! metrics. Every function takes bytes (or already-parsed values) and returns values, events or
//! errors. That is what lets the engine, the mock upstream and the benches share this code and
//! lets tests drive it byte for byte.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod anthropic;
pub mod closer;
pub mod error;
pub mod request;
pub mod responses;
pub mod sse;
pub mod synth;
pub mod textscan;
pub mod tokenize;
pub mod track;
pub mod translate;
pub mod usage;
