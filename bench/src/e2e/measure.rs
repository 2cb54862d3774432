//! Running the load generator against a server while reading the server's CPU time, memory
//! and descriptors from `/proc`.

use super::children::{Child, Spec};
use super::loadgen::{self, Run};
use super::procfs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to start the load generator.
#[derive(Debug, Clone)]
pub struct Loadgen {
    pub binary: PathBuf,
    /// `taskset -c` list for it.
    pub cpus: Option<String>,
    /// Where its reports and logs go.
    pub dir: PathBuf,
}

impl Loadgen {
    fn spawn(&self, run: &Run, tag: &str) -> Result<(Child, PathBuf), String> {
        let json = self.dir.join(format!("{tag}.json"));
        let spec = Spec {
            name: format!("loadgen {tag}"),
            program: self.binary.clone(),
            args: run.args(&json),
            cpus: self.cpus.clone(),
            log: self.dir.join(format!("{tag}.log")),
        };
        Ok((Child::spawn(&spec)?, json))
    }

    fn finish(&self, mut child: Child, run: &Run, json: &Path) -> Result<loadgen::Report, String> {
        let status = child.wait_for(run.bound())?;
        let report = loadgen::Report::read(json).map_err(|e| {
            format!(
                "{e} ({} exited with {status}); its log:\n{}",
                child.name,
                super::children::tail(&child.log, 20)
            )
        })?;
        Ok(report)
    }

    /// Runs `run` to its end and returns its report with the CPU ticks `server` (and its
    /// direct children) used meanwhile.
    pub fn measured(
        &self,
        run: &Run,
        tag: &str,
        server: u32,
    ) -> Result<(loadgen::Report, u64), String> {
        let before = procfs::family_cpu_ticks(server)?;
        let (child, json) = self.spawn(run, tag)?;
        let report = self.finish(child, run, &json)?;
        let after = procfs::family_cpu_ticks(server)?;
        Ok((report, after.saturating_sub(before)))
    }

    /// Runs `run` (streams meant to stay open a while) and samples `server`'s memory and
    /// descriptors every `every` until the load generator exits.
    pub fn holding(
        &self,
        run: &Run,
        tag: &str,
        server: u32,
        every: Duration,
        mut gauge: impl FnMut() -> Option<f64>,
    ) -> Result<Held, String> {
        let t0 = Instant::now();
        let (mut child, json) = self.spawn(run, tag)?;
        let mut held = Held::default();
        let deadline = t0 + run.bound();
        while child.alive() && Instant::now() < deadline {
            std::thread::sleep(every);
            let rss = procfs::family_rss_kib(server)?;
            let fds = procfs::family_fds(server)?;
            let g = gauge();
            held.samples += 1;
            if fds > held.peak_fds {
                held.peak_fds = fds;
                held.peak_fds_at = Some(t0.elapsed());
            }
            held.peak_rss_kib = held.peak_rss_kib.max(rss);
            if let Some(g) = g {
                let g = g.max(0.0) as u64;
                if g > held.peak_gauge.unwrap_or(0) {
                    held.peak_gauge = Some(g);
                    held.peak_gauge_at = Some(t0.elapsed());
                }
            }
        }
        held.report = self.finish(child, run, &json)?;
        held.elapsed = t0.elapsed();
        Ok(held)
    }
}

/// What [`Loadgen::holding`] saw.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub report: loadgen::Report,
    pub samples: u64,
    pub peak_rss_kib: u64,
    pub peak_fds: u64,
    pub peak_fds_at: Option<Duration>,
    pub peak_gauge: Option<u64>,
    pub peak_gauge_at: Option<Duration>,
    pub elapsed: Duration,
}

/// `GET path` on a plain HTTP/1.1 server; returns the body (for Sluice's `/metrics`).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of head")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "{path}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

/// The sum of a metric's samples over its label sets in OpenMetrics / Prometheus text
/// (`sluice_active_streams{worker="0"} 12`); `None` when it is absent.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: `name{...} v` or `name v`.
        let value = if let Some(labels) = rest.strip_prefix('{') {
            labels.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        let Some(v) = value
            .and_then(|v| v.split_ascii_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_over_workers() {
        let text = "# TYPE sluice_active_streams gauge\n\
                    sluice_active_streams{worker=\"0\"} 12\n\
                    sluice_active_streams{worker=\"1\"} 30\n\
                    sluice_active_streams_total 99\n\
                    sluice_active_connections{worker=\"0\"} 5\n\
                    # EOF\n";
        assert_eq!(metric_sum(text, "sluice_active_streams"), Some(42.0));
        assert_eq!(metric_sum(text, "sluice_active_connections"), Some(5.0));
        assert_eq!(metric_sum(text, "sluice_missing"), None);
        assert_eq!(metric_sum("plain 3\n", "plain"), Some(3.0));
        assert_eq!(metric_sum("bad{x=\"1\"} nope\n", "bad"), None);
    }
}
