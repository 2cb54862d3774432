//! The end-to-end benches (`src/bin/compare.rs`, `src/bin/long_streams.rs`): child processes,
//! `/proc` readings, generated gateway configs, the load generator's command line and report,
//! the comparison's report, and the set-up and clean-up around a run. Everything that is not IO has unit tests here.

pub mod children;
pub mod configs;
pub mod host;
pub mod loadgen;
pub mod measure;
pub mod procfs;
pub mod report;
pub mod session;
