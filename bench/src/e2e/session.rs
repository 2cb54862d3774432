//! What both end-to-end benches do around their measurements: pin this process to the load
//! CPU, build the release binaries (unless told not to), make a scratch directory, and on every
//! way out (success, error, Ctrl-C) stop the children and remove the scratch directory unless
//! it is to be kept or something failed; and write the JSON report.

use super::{children, host};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A `--duration`-style command-line value (`5s`, `200ms`, `2m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// How a bench sets up around its measurements (the flags both benches take).
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// The bench's name, for messages.
    pub tag: &'a str,
    /// The scratch directory's name part (`/tmp/sluice-SCRATCH-PID-NANOS`).
    pub scratch: &'a str,
    /// `--load-cpu`: the first CPU of the list pins this process (the load generator's side).
    pub load_cpu: &'a str,
    pub no_build: bool,
    pub keep_scratch: bool,
}

/// Sets up, runs `measure(sluice, sluice_loadgen, scratch_dir)`, and cleans up.
pub fn run(
    setup: Setup<'_>,
    measure: impl FnOnce(&Path, &Path, &Path) -> Result<(), String>,
) -> Result<(), String> {
    let tag = setup.tag;
    let load_cpu: usize = setup
        .load_cpu
        .split([',', '-'])
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or("--load-cpu: expected a CPU number")?;
    if !host::pin_self(load_cpu) {
        eprintln!("{tag}: warning: could not pin this process to CPU {load_cpu}");
    }
    let release = host::release_dir()?;
    if !setup.no_build {
        host::build(&release)?;
    }
    let sluice = host::binary(&release, "sluice")?;
    let loadgen = host::binary(&release, "sluice-loadgen")?;
    let dir = host::scratch_dir(setup.scratch)?;
    children::install_signal_handler((!setup.keep_scratch).then(|| dir.clone()))?;
    let result = measure(&sluice, &loadgen, &dir);
    children::kill_all();
    if setup.keep_scratch || result.is_err() {
        eprintln!("scratch directory (configs, logs): {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Writes a bench's JSON report to `out` (creating its directory) and says where, with the
/// run's wall time.
pub fn write_report(out: &Path, doc: &impl Serialize, started: Instant) -> Result<(), String> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(doc).map_err(|e| e.to_string())?;
    std::fs::write(out, json + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "JSON: {} (wall time {:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The process's exit: stops any child left and says what failed.
pub fn exit(tag: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            children::kill_all();
            eprintln!("{tag}: {e}");
            ExitCode::FAILURE
        }
    }
}
