//! Translation and usage tracking over the fixtures: one test binary, one module per layer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod bodies;
mod common;
mod garbage;
mod requests;
mod streams;
mod track;
