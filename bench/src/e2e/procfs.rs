//! What the end-to-end benches read from `/proc`: CPU time (`/proc/PID/stat`), resident memory
//! (`/proc/PID/status`), open file descriptors (`/proc/PID/fd`) and the children of a process.
//! The parsers are pure functions over the file's text; nothing here unwraps what a process
//! wrote.

use std::path::Path;

/// The fields of `/proc/PID/stat` the benches use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub ppid: u32,
    /// User-mode CPU time, in clock ticks (all threads).
    pub utime: u64,
    /// Kernel-mode CPU time, in clock ticks (all threads).
    pub stime: u64,
}

impl Stat {
    /// utime + stime, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses one `/proc/PID/stat` line: `pid (comm) state ppid ... utime stime ...`. `comm` may
/// hold spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let open = text.find(" (").ok_or("no `(comm)` in /proc/PID/stat")?;
    let close = text.rfind(')').ok_or("no `(comm)` in /proc/PID/stat")?;
    if close < open {
        return Err("malformed `(comm)` in /proc/PID/stat".to_owned());
    }
    let pid = text
        .get(..open)
        .unwrap_or_default()
        .trim()
        .parse::<u32>()
        .map_err(|e| format!("pid in /proc/PID/stat: {e}"))?;
    // After `)`: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
    // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15), numbered as in proc(5).
    let rest: Vec<&str> = text
        .get(close + 1..)
        .unwrap_or_default()
        .split_ascii_whitespace()
        .collect();
    let field = |n: usize, name: &str| -> Result<u64, String> {
        rest.get(n - 3)
            .ok_or_else(|| format!("/proc/PID/stat has no field {n} ({name})"))?
            .parse::<u64>()
            .map_err(|e| format!("{name} in /proc/PID/stat: {e}"))
    };
    Ok(Stat {
        pid,
        ppid: u32::try_from(field(4, "ppid")?).map_err(|e| format!("ppid: {e}"))?,
        utime: field(14, "utime")?,
        stime: field(15, "stime")?,
    })
}

/// `VmRSS` of `/proc/PID/status`, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/PID/status (a kernel thread, or the process is gone)")?;
    let mut parts = line
        .get("VmRSS:".len()..)
        .unwrap_or_default()
        .split_ascii_whitespace();
    let value = parts
        .next()
        .ok_or("VmRSS without a value")?
        .parse::<u64>()
        .map_err(|e| format!("VmRSS: {e}"))?;
    match parts.next() {
        Some("kB") => Ok(value),
        other => Err(format!("VmRSS in unexpected unit {other:?}")),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `/proc/PID/stat` of `pid`.
pub fn stat(pid: u32) -> Result<Stat, String> {
    parse_stat(&read(Path::new(&format!("/proc/{pid}/stat")))?)
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    parse_vm_rss_kib(&read(Path::new(&format!("/proc/{pid}/status")))?)
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    Ok(entries.filter(Result::is_ok).count() as u64)
}

/// `root` and its direct children (an nginx master and its workers), by scanning `/proc`.
/// Processes that vanish during the scan are skipped.
pub fn family(root: u32) -> Result<Vec<u32>, String> {
    let mut pids = vec![root];
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == root {
            continue;
        }
        if let Ok(s) = stat(pid) {
            if s.ppid == root {
                pids.push(pid);
            }
        }
    }
    Ok(pids)
}

/// CPU ticks (utime + stime) of `root` and its direct children.
pub fn family_cpu_ticks(root: u32) -> Result<u64, String> {
    let mut sum = 0;
    for pid in family(root)? {
        sum += stat(pid)?.cpu_ticks();
    }
    Ok(sum)
}

/// Summed `VmRSS` of `root` and its direct children, in KiB (pages shared between them, such
/// as nginx's code, are counted once per process).
pub fn family_rss_kib(root: u32) -> Result<u64, String> {
    let mut sum = 0;
    for pid in family(root)? {
        sum += rss_kib(pid)?;
    }
    Ok(sum)
}

/// Open file descriptors of `root` and its direct children.
pub fn family_fds(root: u32) -> Result<u64, String> {
    let mut sum = 0;
    for pid in family(root)? {
        sum += fd_count(pid)?;
    }
    Ok(sum)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// CPU microseconds per request, from clock ticks over the run.
pub fn cpu_us_per_request(ticks: u64, ticks_per_second: u64, requests: u64) -> Option<f64> {
    if requests == 0 || ticks_per_second == 0 {
        return None;
    }
    Some(ticks as f64 * 1e6 / ticks_per_second as f64 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &str = "4242 (nginx) S 4241 4242 4242 0 -1 4194560 371 0 0 0 17 9 0 0 20 0 1 \
                         0 123456 11345920 1480 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 \
                         0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_comm() {
        let s = parse_stat(NGINX).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                ppid: 4241,
                utime: 17,
                stime: 9
            }
        );
        assert_eq!(s.cpu_ticks(), 26);
    }

    #[test]
    fn comm_with_spaces_and_parentheses() {
        let line = "77 (we (ird) name) R 1 77 77 0 -1 0 0 0 0 0 1000 250 0 0 20 0 3 0 5 0 0";
        let s = parse_stat(line).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((s.pid, s.ppid, s.utime, s.stime), (77, 1, 1000, 250));
    }

    #[test]
    fn truncated_or_garbled_stat_is_an_error() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 (x) S 1 2 3").is_err());
        assert!(parse_stat("12 (x) S 1 2 3 4 5 6 7 8 9 10 ten 11").is_err());
        assert!(parse_stat("x (y) S 1 2 3 4 5 6 7 8 9 10 11 12").is_err());
        assert!(parse_stat("12 x) S 1").is_err());
    }

    #[test]
    fn own_stat_parses() {
        let me = std::process::id();
        let s = stat(me).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(s.pid, me);
        assert!(rss_kib(me).is_ok_and(|kib| kib > 0));
        assert!(fd_count(me).is_ok_and(|n| n >= 3));
        assert!(family(me).is_ok_and(|f| f.first() == Some(&me)));
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\tsluice\nVmPeak:\t  100 kB\nVmRSS:\t    9876 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss_kib(status), Ok(9876));
        assert!(parse_vm_rss_kib("Name:\tkthreadd\n").is_err());
        assert!(parse_vm_rss_kib("VmRSS:\t12 MB\n").is_err());
        assert!(parse_vm_rss_kib("VmRSS:\n").is_err());
    }

    #[test]
    fn cpu_per_request() {
        // 250 ticks at 100 Hz = 2.5 s over 100,000 requests = 25 us each.
        assert_eq!(cpu_us_per_request(250, 100, 100_000), Some(25.0));
        assert_eq!(cpu_us_per_request(250, 100, 0), None);
        assert_eq!(cpu_us_per_request(0, 100, 10), Some(0.0));
    }
}
