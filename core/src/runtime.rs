//! Running a monoio event loop on the current thread: io_uring when it can be set up, the
//! epoll ("legacy") driver otherwise. Shared by the gateway's workers and the mock upstream.

use crate::config::IoDriver;
use std::future::Future;

/// The driver a runtime ended up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Epoll,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Runs `fut` to completion on a new runtime on this thread. `Auto` tries io_uring with
/// `entries` ring entries and falls back to epoll, logging the reason once (`ulimit -l` too
/// small, io_uring disabled by sysctl or seccomp, a ring larger than the kernel allows);
/// `Uring` fails instead of falling back. `started` runs once the runtime exists, before `fut`
/// is first polled. Errs when no runtime could be built.
pub fn block_on<F: Future>(
    worker: usize,
    choice: IoDriver,
    entries: u32,
    started: impl FnOnce(Driver),
    fut: F,
) -> Result<F::Output, String> {
    if choice != IoDriver::Epoll {
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
        {
            Ok(mut rt) => {
                tracing::info!(worker, "worker running on io_uring");
                started(Driver::Uring);
                return Ok(rt.block_on(fut));
            }
            Err(e) if choice == IoDriver::Auto => {
                tracing::warn!(worker, reason = %e, "io_uring unavailable, falling back to epoll");
            }
            Err(e) => {
                return Err(format!(
                    "worker {worker}: io_uring was requested but is unavailable: {e}"
                ))
            }
        }
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("worker {worker}: cannot start the epoll driver: {e}"))?;
    tracing::info!(worker, "worker running on epoll");
    started(Driver::Epoll);
    Ok(rt.block_on(fut))
}
