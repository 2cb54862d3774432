//! End-to-end tests of the real `sluice` binary against real upstreams on loopback.
//! Every scenario runs under both IO drivers (io_uring and the epoll fallback).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fleet;
mod harness;
mod limits;
mod ops;
mod protocols;
mod proxy;
mod quota;
mod tls;
