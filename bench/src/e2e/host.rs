//! The bench's surroundings: the binaries it runs (built first with cargo), nginx, the
//! open-files limit, the machine and the source revision it records, the date.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the `sluice` and `sluice-loadgen` binaries are: the `release` directory next to the
/// running bench binary (`target/release/compare` -> `target/release/`).
pub fn release_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let dir = exe.parent().ok_or("this binary has no directory")?;
    // Cargo runs binaries from target/<profile>/; with --release that is target/release.
    let target = dir
        .parent()
        .ok_or("this binary is not under a target directory")?;
    Ok(target.join("release"))
}

/// Builds (or finds up to date) the gateway and the load generator in release mode, with the
/// cargo that runs this bench (`$CARGO` under `cargo run`) and the same target directory.
pub fn build(release: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target_dir = release.parent().ok_or("bad release directory")?;
    eprintln!("building sluice and sluice-loadgen (release) ...");
    let mut cmd = Command::new(&cargo);
    // Variables `cargo run` set for this binary must not reach the inner cargo: build scripts
    // watch some of them (ring's reruns on CARGO_MANIFEST_DIR), and a changed value rebuilds
    // ring, rustls and sluice-core on every run.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .args([
            "build",
            "--release",
            "-p",
            "sluice-core",
            "--bin",
            "sluice",
            "-p",
            "sluice-loadgen",
            "--bin",
            "sluice-loadgen",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    Ok(())
}

/// Whether `cargo run` sets this variable for the program it runs (describing the package
/// being run, not the user's cargo configuration).
pub fn set_by_cargo_run(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// The path of a binary that must exist.
pub fn binary(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing (build it: cargo build --release -p {} or drop --no-build)",
            p.display(),
            if name == "sluice" {
                "sluice-core"
            } else {
                name
            }
        ))
    }
}

/// nginx from `PATH`, else the Debian location `/usr/sbin/nginx` (not on a normal user's
/// `PATH`); `None` when it is not installed.
pub fn find_nginx() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        ["/usr/sbin/nginx", "/sbin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// `nginx -v` (it prints to stderr).
pub fn nginx_version(nginx: &Path) -> Option<String> {
    let out = Command::new(nginx).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Some(
        text.strip_prefix("nginx version: ")
            .unwrap_or(&text)
            .to_owned(),
    )
}

/// The open-files limit after [`raise_nofile`].
#[derive(Debug, Clone, Serialize)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
    /// What the run wanted.
    pub wanted: u64,
    /// Why the hard limit could not be raised to `wanted`, when it could not (without
    /// `CAP_SYS_RESOURCE`: EPERM).
    pub hard_raise_error: Option<String>,
}

/// Raises `RLIMIT_NOFILE` of this process (and so of every child it starts) to `wanted`,
/// lifting the hard limit too when needed, which needs `CAP_SYS_RESOURCE` (root); never above
/// `fs.nr_open`. Returns what is in force afterwards.
pub fn raise_nofile(wanted: u64) -> FileLimit {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let wanted = wanted.min(nr_open());
    let old = getrlimit(Resource::Nofile);
    let hard = old.maximum.unwrap_or(u64::MAX);
    let mut hard_raise_error = None;
    if hard < wanted {
        let both = Rlimit {
            current: Some(wanted),
            maximum: Some(wanted),
        };
        if let Err(e) = setrlimit(Resource::Nofile, both) {
            hard_raise_error = Some(format!(
                "setrlimit(RLIMIT_NOFILE, {wanted}) failed: {e} (raising the hard limit needs \
                 CAP_SYS_RESOURCE; this process has it: {})",
                has_cap_sys_resource().map_or("unknown".to_owned(), |b| b.to_string())
            ));
        }
    }
    let now = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        now.current.unwrap_or(u64::MAX),
        now.maximum.unwrap_or(u64::MAX),
    );
    if soft < wanted.min(hard) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted.min(hard)),
                maximum: now.maximum,
            },
        );
    }
    let now = getrlimit(Resource::Nofile);
    FileLimit {
        soft: now.current.unwrap_or(u64::MAX),
        hard: now.maximum.unwrap_or(u64::MAX),
        wanted,
        hard_raise_error,
    }
}

/// Whether `CAP_SYS_RESOURCE` (capability 24) is in this process's effective set.
pub fn has_cap_sys_resource() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    cap_eff_has(&status, 24)
}

/// Whether the `CapEff` mask of a `/proc/PID/status` text has capability `bit`.
pub fn cap_eff_has(status: &str, bit: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(mask & (1u64 << bit) != 0)
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub mem_total_kib: Option<u64>,
    pub loadavg_at_start: Option<String>,
}

impl Machine {
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        Machine {
            // Online CPUs of the machine, not the ones this (pinned) process may use.
            cpus: match cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
            {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned()),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
            mem_total_kib: read("/proc/meminfo").and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_ascii_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            }),
            loadavg_at_start: read("/proc/loadavg").map(|s| {
                s.split_ascii_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        }
    }
}

/// The source revision measured: the commit, and whether the working tree had changes.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub commit: Option<String>,
    pub dirty: Option<bool>,
}

impl Revision {
    pub fn probe() -> Revision {
        let dir = env!("CARGO_MANIFEST_DIR");
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(dir)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        Revision {
            commit: git(&["rev-parse", "HEAD"]),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        }
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    date_of(secs)
}

/// The UTC calendar date of a Unix time (Howard Hinnant's `civil_from_days`).
pub fn date_of(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A fresh scratch directory for one run's configs, logs and load-generator reports.
pub fn scratch_dir(tag: &str) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("sluice-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Pins the calling thread (and the threads and children it starts afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        // 2026-11-23T15:01:09Z
        assert_eq!(date_of(1_795_446_069), "2026-11-23");
        assert_eq!(date_of(1_795_391_999), "2026-11-22");
    }

    #[test]
    fn nofile_is_at_least_what_it_was() {
        use rustix::process::{getrlimit, Resource};
        let before = getrlimit(Resource::Nofile).current.unwrap_or(0);
        let l = raise_nofile(64);
        assert!(l.soft >= before.min(64));
        assert!(l.soft <= l.hard);
    }

    #[test]
    fn cargo_run_variables_are_told_apart_from_configuration() {
        for k in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_run(k), "{k}");
        }
        for k in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "CARGO_NET_OFFLINE",
            "PATH",
        ] {
            assert!(!set_by_cargo_run(k), "{k}");
        }
    }

    #[test]
    fn capabilities() {
        // A container without CAP_SYS_RESOURCE (bit 24) ...
        assert_eq!(
            cap_eff_has("Name:\tx\nCapEff:\t000001fffeffffff\n", 24),
            Some(false)
        );
        // ... and full root.
        assert_eq!(cap_eff_has("CapEff:\t000001ffffffffff\n", 24), Some(true));
        assert_eq!(cap_eff_has("CapEff:\tzz\n", 24), None);
        assert_eq!(cap_eff_has("", 24), None);
    }

    #[test]
    fn machine_and_revision_probe_without_failing() {
        let m = Machine::probe();
        assert!(m.cpus >= 1);
        let _ = Revision::probe();
    }
}
