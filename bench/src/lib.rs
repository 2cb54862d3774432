//! Inputs and candidate implementations for the benches in `benches/` and the accuracy tests
//! in `tests/`. See `README.md` for how to run them and the latest numbers.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod e2e;
pub mod scan;
