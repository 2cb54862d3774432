//! The end-to-end comparison's results: per-run measures, medians over rounds, the rows of the
//! table with their ratios, and the human table (sans-IO, serializable as the JSON report).

use super::loadgen::{self, Percentiles};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The peers, in the order they run in every round.
pub const PEERS: [&str; 3] = ["direct", "nginx", "sluice"];

/// One measured run of one scenario against one peer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measure {
    /// Successful requests per second (measured part of the run).
    pub rps: f64,
    pub ok: u64,
    pub failed: u64,
    /// Requests the server handled while its CPU time was counted (warm-up included).
    pub handled: u64,
    /// CPU time of the server process (gateway, or the mock for `direct`) over the run.
    pub cpu_ticks: u64,
    pub cpu_us_per_request: Option<f64>,
    pub errors: BTreeMap<String, u64>,
    pub stalls: u64,
    pub latency_ms: Percentiles,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
}

impl Measure {
    pub fn new(r: &loadgen::Report, cpu_ticks: u64, ticks_per_second: u64) -> Measure {
        let handled = r.handled();
        Measure {
            rps: r.rps,
            ok: r.requests_ok,
            failed: r.requests_failed,
            handled,
            cpu_ticks,
            cpu_us_per_request: super::procfs::cpu_us_per_request(
                cpu_ticks,
                ticks_per_second,
                handled,
            ),
            errors: r.errors.clone(),
            stalls: r.stalls,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            itl_ms: r.itl_ms,
        }
    }
}

/// The median of the values present; `None` when there are none.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(mid).copied()
    } else {
        Some((v.get(mid - 1)? + v.get(mid)?) / 2.0)
    }
}

/// `a / b`, when both are known and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// Medians over the rounds of one scenario for one peer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rounds: usize,
    pub rps: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    /// Totals over the rounds.
    pub failed: u64,
    pub stalls: u64,
}

impl Summary {
    pub fn of(runs: &[&Measure]) -> Summary {
        let m = |f: fn(&Measure) -> Option<f64>| median(runs.iter().map(|r| f(r)));
        Summary {
            rounds: runs.len(),
            rps: m(|r| Some(r.rps)),
            cpu_us_per_request: m(|r| r.cpu_us_per_request),
            latency_p50_ms: m(|r| r.latency_ms.p50),
            latency_p99_ms: m(|r| r.latency_ms.p99),
            ttft_p50_ms: m(|r| r.ttft_ms.p50),
            ttft_p99_ms: m(|r| r.ttft_ms.p99),
            itl_p50_ms: m(|r| r.itl_ms.p50),
            itl_p99_ms: m(|r| r.itl_ms.p99),
            failed: runs.iter().map(|r| r.failed).sum(),
            stalls: runs.iter().map(|r| r.stalls).sum(),
        }
    }
}

/// Resident memory of a peer idle and with many open slow streams.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub idle_rss_kib: u64,
    /// Streams the load generator opened.
    pub streams: u64,
    /// RSS while they were open (highest sample).
    pub streams_rss_kib: u64,
    /// (streams_rss - idle_rss) / streams.
    pub kib_per_stream: Option<f64>,
    /// Open descriptors of the peer at the RSS sample, and idle.
    pub fds_idle: u64,
    pub fds_with_streams: u64,
    pub streams_ok: u64,
    pub streams_failed: u64,
    pub stalls: u64,
}

impl Memory {
    pub fn per_stream(idle_kib: u64, with_kib: u64, streams: u64) -> Option<f64> {
        (streams > 0).then(|| (with_kib as f64 - idle_kib as f64) / streams as f64)
    }
}

/// Which way is better for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One row of the comparison: a metric for each peer and Sluice's ratios.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub better: Better,
    pub direct: Option<f64>,
    pub nginx: Option<f64>,
    pub sluice: Option<f64>,
    pub sluice_vs_nginx: Option<f64>,
    pub sluice_vs_direct: Option<f64>,
}

impl Row {
    pub fn new(
        key: &str,
        label: &str,
        unit: &'static str,
        better: Better,
        values: [Option<f64>; 3],
    ) -> Row {
        let [direct, nginx, sluice] = values;
        Row {
            key: key.to_owned(),
            label: label.to_owned(),
            unit,
            better,
            direct,
            nginx,
            sluice,
            sluice_vs_nginx: ratio(sluice, nginx),
            sluice_vs_direct: ratio(sluice, direct),
        }
    }

    /// Whether Sluice does worse than nginx on this row by more than `tolerance` (0.05 = 5%).
    pub fn sluice_loses_to_nginx(&self, tolerance: f64) -> bool {
        match (self.sluice_vs_nginx, self.better) {
            (Some(r), Better::Higher) => r < 1.0 - tolerance,
            (Some(r), Better::Lower) => r > 1.0 + tolerance,
            (None, _) => false,
        }
    }
}

/// A scenario the comparison runs (per round, per peer).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    /// Which mock upstream serves it: `fast` (unpaced) or `paced`.
    pub upstream: &'static str,
    pub stream: bool,
    pub concurrency: u32,
}

pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "json_c1",
        what: "non-streaming, 1 user",
        upstream: "fast",
        stream: false,
        concurrency: 1,
    },
    Scenario {
        name: "json_c64",
        what: "non-streaming, 64 users",
        upstream: "fast",
        stream: false,
        concurrency: 64,
    },
    Scenario {
        name: "stream_c64",
        what: "unpaced streams, 64 users",
        upstream: "fast",
        stream: true,
        concurrency: 64,
    },
    Scenario {
        name: "paced_c64",
        what: "paced streams, 64 users",
        upstream: "paced",
        stream: true,
        concurrency: 64,
    },
];

fn pick(
    summaries: &[Option<&BTreeMap<String, Summary>>; 3],
    scenario: &str,
    f: fn(&Summary) -> Option<f64>,
) -> [Option<f64>; 3] {
    summaries.map(|s| s.and_then(|s| s.get(scenario)).and_then(f))
}

/// The table's rows from each peer's summaries (`None`: the peer did not run) and memory.
pub fn rows(
    summaries: [Option<&BTreeMap<String, Summary>>; 3],
    memory: [Option<&Memory>; 3],
    slow_streams: u64,
) -> Vec<Row> {
    use Better::{Higher, Lower};
    let s = &summaries;
    let mut rows = vec![
        Row::new(
            "json_c64.rps",
            "req/s, non-streaming, c=64",
            "req/s",
            Higher,
            pick(s, "json_c64", |x| x.rps),
        ),
        Row::new(
            "json_c64.cpu_us",
            "CPU us/request, non-streaming, c=64",
            "us",
            Lower,
            pick(s, "json_c64", |x| x.cpu_us_per_request),
        ),
        Row::new(
            "json_c64.latency_p50",
            "latency p50, c=64",
            "ms",
            Lower,
            pick(s, "json_c64", |x| x.latency_p50_ms),
        ),
        Row::new(
            "json_c64.latency_p99",
            "latency p99, c=64",
            "ms",
            Lower,
            pick(s, "json_c64", |x| x.latency_p99_ms),
        ),
        Row::new(
            "json_c1.latency_p50",
            "latency p50, c=1",
            "ms",
            Lower,
            pick(s, "json_c1", |x| x.latency_p50_ms),
        ),
        Row::new(
            "json_c1.latency_p99",
            "latency p99, c=1",
            "ms",
            Lower,
            pick(s, "json_c1", |x| x.latency_p99_ms),
        ),
        Row::new(
            "json_c1.cpu_us",
            "CPU us/request, c=1",
            "us",
            Lower,
            pick(s, "json_c1", |x| x.cpu_us_per_request),
        ),
        Row::new(
            "stream_c64.rps",
            "streams/s, unpaced, c=64",
            "streams/s",
            Higher,
            pick(s, "stream_c64", |x| x.rps),
        ),
        Row::new(
            "stream_c64.cpu_us",
            "CPU us/stream, unpaced, c=64",
            "us",
            Lower,
            pick(s, "stream_c64", |x| x.cpu_us_per_request),
        ),
        Row::new(
            "stream_c64.ttft_p50",
            "TTFT p50, unpaced, c=64",
            "ms",
            Lower,
            pick(s, "stream_c64", |x| x.ttft_p50_ms),
        ),
        Row::new(
            "stream_c64.ttft_p99",
            "TTFT p99, unpaced, c=64",
            "ms",
            Lower,
            pick(s, "stream_c64", |x| x.ttft_p99_ms),
        ),
        Row::new(
            "paced_c64.ttft_p50",
            "TTFT p50, paced, c=64",
            "ms",
            Lower,
            pick(s, "paced_c64", |x| x.ttft_p50_ms),
        ),
        Row::new(
            "paced_c64.ttft_p99",
            "TTFT p99, paced, c=64",
            "ms",
            Lower,
            pick(s, "paced_c64", |x| x.ttft_p99_ms),
        ),
        Row::new(
            "paced_c64.itl_p50",
            "inter-token p50, paced, c=64",
            "ms",
            Lower,
            pick(s, "paced_c64", |x| x.itl_p50_ms),
        ),
        Row::new(
            "paced_c64.itl_p99",
            "inter-token p99, paced, c=64",
            "ms",
            Lower,
            pick(s, "paced_c64", |x| x.itl_p99_ms),
        ),
        Row::new(
            "paced_c64.cpu_us",
            "CPU us/stream, paced, c=64",
            "us",
            Lower,
            pick(s, "paced_c64", |x| x.cpu_us_per_request),
        ),
    ];
    let mem = |f: fn(&Memory) -> Option<f64>| memory.map(|m| m.and_then(f));
    rows.push(Row::new(
        "rss.idle_mib",
        "RSS idle",
        "MiB",
        Lower,
        mem(|m| Some(m.idle_rss_kib as f64 / 1024.0)),
    ));
    rows.push(Row::new(
        "rss.streams_mib",
        &format!("RSS with {slow_streams} open slow streams"),
        "MiB",
        Lower,
        mem(|m| Some(m.streams_rss_kib as f64 / 1024.0)),
    ));
    rows.push(Row::new(
        "rss.kib_per_stream",
        "RSS per open stream",
        "KiB",
        Lower,
        mem(|m| m.kib_per_stream),
    ));
    rows
}

/// Added latency over `direct` in microseconds at concurrency 1 (`[nginx, sluice]`, p50 and
/// p99): the P3 target compares these.
pub fn added_latency_us(rows: &[Row], key: &str) -> [Option<f64>; 2] {
    let Some(r) = rows.iter().find(|r| r.key == key) else {
        return [None, None];
    };
    let add = |v: Option<f64>| match (v, r.direct) {
        (Some(v), Some(d)) => Some((v - d) * 1000.0),
        _ => None,
    };
    [add(r.nginx), add(r.sluice)]
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn ratio_cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"))
}

/// The human table: one row per metric, the peers' medians and Sluice's ratios.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<42} {:>10} {:>10} {:>10} {:>13} {:>14}",
        "metric (median of rounds)", "direct", "nginx", "sluice", "sluice/nginx", "sluice/direct"
    );
    for r in rows {
        let label = format!("{} [{}]", r.label, r.unit);
        let flag = if r.sluice_loses_to_nginx(0.05) {
            "  <"
        } else {
            ""
        };
        let _ = writeln!(
            t,
            "{label:<42} {:>10} {:>10} {:>10} {:>13} {:>14}{flag}",
            cell(r.direct),
            cell(r.nginx),
            cell(r.sluice),
            ratio_cell(r.sluice_vs_nginx),
            ratio_cell(r.sluice_vs_direct),
        );
    }
    let _ = writeln!(
        t,
        "`<`: Sluice worse than nginx by more than 5% on that row (higher is better for req/s \
         and streams/s, lower for the rest)."
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), None, Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median([None, None]), None);
        assert_eq!(median([Some(f64::NAN), Some(7.0)]), Some(7.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    fn measure(rps: f64, cpu: Option<f64>, p50: f64) -> Measure {
        Measure {
            rps,
            cpu_us_per_request: cpu,
            latency_ms: Percentiles {
                p50: Some(p50),
                ..Percentiles::default()
            },
            failed: 1,
            ..Measure::default()
        }
    }

    #[test]
    fn summary_takes_medians_and_sums_failures() {
        let runs = [
            measure(100.0, Some(20.0), 1.0),
            measure(300.0, None, 3.0),
            measure(200.0, Some(30.0), 2.0),
        ];
        let s = Summary::of(&runs.iter().collect::<Vec<_>>());
        assert_eq!(s.rounds, 3);
        assert_eq!(s.rps, Some(200.0));
        assert_eq!(s.cpu_us_per_request, Some(25.0));
        assert_eq!(s.latency_p50_ms, Some(2.0));
        assert_eq!(s.latency_p99_ms, None);
        assert_eq!(s.failed, 3);
    }

    #[test]
    fn measure_divides_cpu_by_every_handled_request() {
        let r = loadgen::Report {
            requests_ok: 900,
            requests_failed: 0,
            requests_warmup: 100,
            rps: 90.0,
            ..loadgen::Report::default()
        };
        let m = Measure::new(&r, 2, 100);
        // 2 ticks = 20 ms over 1,000 requests.
        assert_eq!(m.cpu_us_per_request, Some(20.0));
        assert_eq!(m.handled, 1000);
    }

    #[test]
    fn rows_compute_ratios_and_flag_losses() {
        let summary = |rps: f64, cpu: f64| {
            BTreeMap::from([(
                "json_c64".to_owned(),
                Summary {
                    rps: Some(rps),
                    cpu_us_per_request: Some(cpu),
                    ..Summary::default()
                },
            )])
        };
        let (d, n, s) = (
            summary(50_000.0, 10.0),
            summary(40_000.0, 20.0),
            summary(30_000.0, 19.0),
        );
        let mem = Memory {
            idle_rss_kib: 10_240,
            streams_rss_kib: 30_240,
            streams: 1000,
            kib_per_stream: Memory::per_stream(10_240, 30_240, 1000),
            ..Memory::default()
        };
        let rows = rows(
            [Some(&d), Some(&n), Some(&s)],
            [None, None, Some(&mem)],
            1000,
        );
        let rps = rows.iter().find(|r| r.key == "json_c64.rps").unwrap();
        assert_eq!(rps.sluice_vs_nginx, Some(0.75));
        assert_eq!(rps.sluice_vs_direct, Some(0.6));
        assert!(rps.sluice_loses_to_nginx(0.05));
        let cpu = rows.iter().find(|r| r.key == "json_c64.cpu_us").unwrap();
        assert_eq!(cpu.sluice_vs_nginx, Some(0.95));
        assert!(!cpu.sluice_loses_to_nginx(0.05));
        let per = rows.iter().find(|r| r.key == "rss.kib_per_stream").unwrap();
        assert_eq!(per.sluice, Some(20.0));
        assert_eq!(per.nginx, None);
        assert_eq!(per.sluice_vs_nginx, None);
        let t = table(&rows);
        assert!(t.contains("req/s, non-streaming, c=64 [req/s]"));
        assert!(t.contains("0.75x"));
        // Missing peers print dashes, never zeros.
        assert!(t
            .lines()
            .any(|l| l.starts_with("RSS per open stream") && l.contains(" - ")));
    }

    #[test]
    fn nginx_missing_gives_no_ratio_to_it() {
        let s = BTreeMap::from([(
            "json_c64".to_owned(),
            Summary {
                rps: Some(10.0),
                ..Summary::default()
            },
        )]);
        let rows = rows([Some(&s), None, Some(&s)], [None; 3], 10);
        let r = rows.iter().find(|r| r.key == "json_c64.rps").unwrap();
        assert_eq!(r.nginx, None);
        assert_eq!(r.sluice_vs_nginx, None);
        assert_eq!(r.sluice_vs_direct, Some(1.0));
    }

    #[test]
    fn added_latency() {
        let rows = vec![Row::new(
            "json_c1.latency_p50",
            "x",
            "ms",
            Better::Lower,
            [Some(0.1), Some(0.15), Some(0.2)],
        )];
        let [n, s] = added_latency_us(&rows, "json_c1.latency_p50");
        assert!((n.unwrap() - 50.0).abs() < 1e-9);
        assert!((s.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(added_latency_us(&rows, "nope"), [None, None]);
    }

    #[test]
    fn per_stream_memory() {
        assert_eq!(Memory::per_stream(1000, 3000, 100), Some(20.0));
        assert_eq!(Memory::per_stream(1000, 900, 100), Some(-1.0));
        assert_eq!(Memory::per_stream(1000, 3000, 0), None);
    }
}
