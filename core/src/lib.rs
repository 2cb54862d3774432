//! Sluice engine: a shared-nothing, thread-per-core AI gateway.
//!
//! See `ARCHITECTURE.md` at the repository root for the map. Request phases are assembled in
//! [`pipeline`]; the per-core runtime lives in [`worker`]; start-up and signals in [`engine`].

pub mod admin;
pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod engine;
pub mod errors;
pub mod http;
pub mod metrics;
pub mod mock_provider;
pub mod pipeline;
pub mod quota;
pub mod relay;
pub mod runtime;
pub mod time;
pub mod upstream;
pub mod worker;
