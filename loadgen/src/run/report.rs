//! Recording results (one [`Recorder`] per worker, no sharing), merging them at the end, and
//! the report: percentiles, the human table and the JSON document (sans-IO).
//!
//! Histograms are hdrhistogram at microsecond resolution with three significant digits (exact
//! below 2.048 ms, within 0.1% above), from 0 to one hour; longer values are clamped.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest value a histogram holds, in microseconds (one hour).
const HIST_MAX_US: u64 = 3_600_000_000;
/// The timers' resolution: an open-loop request wakes up to this long after its due time
/// even on an idle machine. Latency clocks start at the due time plus at most this much (at
/// the actual start when that is sooner), so the quantisation of the schedule to timer ticks
/// does not add an average half millisecond to every latency, while real queueing (a start
/// delayed by more than this) is still counted.
pub const TIMER_SLACK: Duration = Duration::from_millis(1);
/// An open-loop request counts as a late start when it began more than this after its due
/// time (twice the timer resolution, so timer noise alone does not count).
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// No connection (refused, unreachable, out of ports or file descriptors).
    Connect,
    /// A response with a status other than 2xx.
    Http(u16),
    /// A stream without `[DONE]`, with an error event, or a body cut short.
    BrokenStream,
    /// `--timeout` passed.
    Timeout,
    /// Reading or writing failed, or the connection closed before a response.
    Io,
    /// The peer sent something that is not HTTP/1.1 or SSE (bad head, bad chunked coding, an
    /// event larger than the limit).
    Protocol,
}

impl ErrorClass {
    pub fn name(self) -> String {
        match self {
            ErrorClass::Connect => "connect".to_owned(),
            ErrorClass::Http(status) => format!("http_{status}"),
            ErrorClass::BrokenStream => "broken_stream".to_owned(),
            ErrorClass::Timeout => "timeout".to_owned(),
            ErrorClass::Io => "io".to_owned(),
            ErrorClass::Protocol => "protocol".to_owned(),
        }
    }
}

/// One finished request, as the IO side saw it.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    /// When it should have started: its scheduled time (open loop) or its actual start.
    pub due: Instant,
    pub started: Instant,
    pub end: Instant,
    /// `None` on success.
    pub error: Option<(ErrorClass, &'a str)>,
    /// The first content event.
    pub first_token: Option<Instant>,
    /// `completion_tokens` of the response's usage.
    pub usage_tokens: Option<u64>,
    pub content_events: u64,
    /// The response was an event stream.
    pub streamed: bool,
    /// Gaps between consecutive content events, in microseconds.
    pub gaps_us: &'a [u64],
    /// Gaps between any two events above the stall threshold.
    pub stalls: u64,
}

/// Where output token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Usage,
    Events,
    /// A non-streamed response without usage: nothing to count.
    Unknown,
}

/// One worker's results.
#[derive(Debug, Clone)]
pub struct Recorder {
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    tpot: Histogram<u64>,
    latency: Histogram<u64>,
    pub ok: u64,
    pub failed: u64,
    errors: BTreeMap<ErrorClass, u64>,
    /// The first message seen per class, to tell the user what went wrong.
    examples: BTreeMap<ErrorClass, String>,
    output_tokens: u64,
    content_events: u64,
    /// Successful requests by where their token count came from: usage, events, unknown.
    sources: [u64; 3],
    stalls: u64,
    late_starts: u64,
    max_lateness: Duration,
    /// End of the last recorded request.
    pub last_end: Option<Instant>,
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(|e| format!("histogram: {e:?}"))
}

impl Recorder {
    pub fn new() -> Result<Recorder, String> {
        Ok(Recorder {
            ttft: histogram()?,
            itl: histogram()?,
            tpot: histogram()?,
            latency: histogram()?,
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
            output_tokens: 0,
            content_events: 0,
            sources: [0; 3],
            stalls: 0,
            late_starts: 0,
            max_lateness: Duration::ZERO,
            last_end: None,
        })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub fn record(&mut self, f: &Finished<'_>) {
        let lateness = f.started.saturating_duration_since(f.due);
        if lateness > LATE_AFTER {
            self.late_starts += 1;
        }
        self.max_lateness = self.max_lateness.max(lateness);
        // Where the latency clocks start (see `TIMER_SLACK`).
        let clock = f.started.min(f.due + TIMER_SLACK);
        self.stalls += f.stalls;
        self.last_end = Some(self.last_end.map_or(f.end, |e| e.max(f.end)));
        if let Some((class, message)) = f.error {
            self.failed += 1;
            *self.errors.entry(class).or_default() += 1;
            self.examples
                .entry(class)
                .or_insert_with(|| message.to_owned());
            return;
        }
        self.ok += 1;
        self.latency
            .saturating_record(micros(f.end.saturating_duration_since(clock)));
        let (tokens, source) = match (f.usage_tokens, f.streamed) {
            (Some(n), _) => (n, TokenSource::Usage),
            (None, true) => (f.content_events, TokenSource::Events),
            (None, false) => (0, TokenSource::Unknown),
        };
        if let Some(slot) = self.sources.get_mut(source as usize) {
            *slot += 1;
        }
        self.output_tokens += tokens;
        self.content_events += f.content_events;
        if let Some(first) = f.first_token {
            self.ttft
                .saturating_record(micros(first.saturating_duration_since(clock)));
            if tokens >= 2 {
                let rest = f.end.saturating_duration_since(first);
                self.tpot.saturating_record(micros(rest) / (tokens - 1));
            }
        }
        for &gap in f.gaps_us {
            self.itl.saturating_record(gap);
        }
    }

    /// Adds another worker's results to these.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail; if it ever did, the counts of the
        // other side would be missing, which the request counts below would not hide.
        let _ = self.ttft.add(&other.ttft);
        let _ = self.itl.add(&other.itl);
        let _ = self.tpot.add(&other.tpot);
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        self.failed += other.failed;
        for (class, n) in &other.errors {
            *self.errors.entry(*class).or_default() += n;
        }
        for (class, m) in &other.examples {
            self.examples.entry(*class).or_insert_with(|| m.clone());
        }
        self.output_tokens += other.output_tokens;
        self.content_events += other.content_events;
        for (a, b) in self.sources.iter_mut().zip(other.sources) {
            *a += b;
        }
        self.stalls += other.stalls;
        self.late_starts += other.late_starts;
        self.max_lateness = self.max_lateness.max(other.max_lateness);
        self.last_end = match (self.last_end, other.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn source_name(&self) -> &'static str {
        match self.sources {
            [0, 0, 0] => "none",
            [_, 0, 0] => "usage",
            [0, _, 0] => "events",
            [0, 0, _] => "none",
            _ => "mixed",
        }
    }
}

/// Milliseconds with three decimals (microsecond precision).
fn ms(us: f64) -> f64 {
    (us).round() / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Percentiles of one measure, in milliseconds; all `None` when nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let q = |q: f64| (!h.is_empty()).then(|| ms(h.value_at_quantile(q) as f64));
        Percentiles {
            count: h.len(),
            mean: (!h.is_empty()).then(|| ms(h.mean())),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: (!h.is_empty()).then(|| ms(h.max() as f64)),
        }
    }
}

/// What the run was, besides its results.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Measured time: from the end of the warm-up to the end of the last request (or to the
    /// stop, when nothing finished).
    pub measured: Duration,
    pub interrupted: bool,
    /// Requests in flight when an interrupted run gave up on them.
    pub abandoned: u64,
    /// Requests sent and finished during the warm-up (not recorded).
    pub warmup: u64,
    pub started_at: u64,
    /// The IO driver each worker ran on.
    pub drivers: Vec<&'static str>,
    pub config: serde_json::Value,
}

/// The results, as written to `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub requests_abandoned: u64,
    pub requests_warmup: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_examples: BTreeMap<String, String>,
    pub duration_s: f64,
    /// Successful requests per second.
    pub rps: f64,
    /// Finished requests (successful or not) per second.
    pub finished_rps: f64,
    pub output_tokens: u64,
    /// `usage`, `events` (streams without usage: content events counted), `none` (no usage and
    /// no stream), or `mixed`.
    pub output_tokens_source: &'static str,
    pub output_tokens_per_s: f64,
    pub content_events: u64,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
    pub tpot_ms: Percentiles,
    pub latency_ms: Percentiles,
    pub stalls: u64,
    pub late_starts: u64,
    pub max_lateness_ms: f64,
    pub interrupted: bool,
    pub started_at: u64,
    pub io_drivers: Vec<&'static str>,
    pub config: serde_json::Value,
}

impl Report {
    pub fn new(r: &Recorder, info: RunInfo) -> Report {
        let secs = info.measured.as_secs_f64();
        let per_s = |n: u64| {
            if secs > 0.0 {
                round3(n as f64 / secs)
            } else {
                0.0
            }
        };
        Report {
            requests_ok: r.ok,
            requests_failed: r.failed,
            requests_abandoned: info.abandoned,
            requests_warmup: info.warmup,
            errors: r.errors.iter().map(|(c, n)| (c.name(), *n)).collect(),
            error_examples: r
                .examples
                .iter()
                .map(|(c, m)| (c.name(), m.clone()))
                .collect(),
            duration_s: round3(secs),
            rps: per_s(r.ok),
            finished_rps: per_s(r.ok + r.failed),
            output_tokens: r.output_tokens,
            output_tokens_source: r.source_name(),
            output_tokens_per_s: per_s(r.output_tokens),
            content_events: r.content_events,
            ttft_ms: Percentiles::of(&r.ttft),
            itl_ms: Percentiles::of(&r.itl),
            tpot_ms: Percentiles::of(&r.tpot),
            latency_ms: Percentiles::of(&r.latency),
            stalls: r.stalls,
            late_starts: r.late_starts,
            max_lateness_ms: ms(micros(r.max_lateness) as f64),
            interrupted: info.interrupted,
            started_at: info.started_at,
            io_drivers: info.drivers,
            config: info.config,
        }
    }

    /// The human-readable table printed at the end.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "duration {:.3} s{}",
            self.duration_s,
            if self.interrupted {
                "  (interrupted: partial results)"
            } else {
                ""
            }
        );
        let mut extra = String::new();
        if self.requests_abandoned > 0 {
            let _ = write!(extra, "  abandoned {}", self.requests_abandoned);
        }
        if self.requests_warmup > 0 {
            let _ = write!(extra, "  (+{} in the warm-up)", self.requests_warmup);
        }
        let _ = writeln!(
            t,
            "requests ok {}  failed {}{extra}  rps {:.1}",
            self.requests_ok, self.requests_failed, self.rps
        );
        let _ = writeln!(
            t,
            "output tokens {} (from {})  tokens/s {:.1}",
            self.output_tokens, self.output_tokens_source, self.output_tokens_per_s
        );
        let _ = writeln!(
            t,
            "\n{:<10}{:>9}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
            "ms", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, p) in [
            ("ttft", &self.ttft_ms),
            ("itl", &self.itl_ms),
            ("tpot", &self.tpot_ms),
            ("latency", &self.latency_ms),
        ] {
            let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(
                t,
                "{:<10}{:>9}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
                name,
                p.count,
                cell(p.p50),
                cell(p.p90),
                cell(p.p99),
                cell(p.p999),
                cell(p.max),
                cell(p.mean)
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(t, "\nerrors: none");
        } else {
            let _ = writeln!(t, "\nerrors:");
            for (class, n) in &self.errors {
                let example = self.error_examples.get(class).map_or("", String::as_str);
                let _ = writeln!(t, "  {class:<16}{n:>9}  e.g. {example}");
            }
        }
        let _ = writeln!(
            t,
            "stalls {}  late starts {} (max lateness {:.3} ms)",
            self.stalls, self.late_starts, self.max_lateness_ms
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<'a>(t0: Instant, latency_us: u64) -> Finished<'a> {
        Finished {
            due: t0,
            started: t0,
            end: t0 + Duration::from_micros(latency_us),
            error: None,
            first_token: None,
            usage_tokens: None,
            content_events: 0,
            streamed: false,
            gaps_us: &[],
            stalls: 0,
        }
    }

    fn info(secs: u64) -> RunInfo {
        RunInfo {
            measured: Duration::from_secs(secs),
            interrupted: false,
            abandoned: 0,
            warmup: 0,
            started_at: 1,
            drivers: vec!["epoll"],
            config: serde_json::json!({}),
        }
    }

    #[test]
    fn known_latencies_give_known_percentiles_after_merging() {
        let t0 = Instant::now();
        // 1..=1000 us split over two recorders.
        let (mut a, mut b) = (Recorder::new().unwrap(), Recorder::new().unwrap());
        for us in 1..=1000u64 {
            let r = if us % 2 == 0 { &mut a } else { &mut b };
            r.record(&ok(t0, us));
        }
        a.merge(&b);
        let rep = Report::new(&a, info(10));
        let l = rep.latency_ms;
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50, Some(0.5));
        assert_eq!(l.p90, Some(0.9));
        assert_eq!(l.p99, Some(0.99));
        assert_eq!(l.p999, Some(0.999));
        assert_eq!(l.max, Some(1.0));
        assert_eq!(l.mean, Some(0.501));
        assert_eq!(rep.requests_ok, 1000);
        assert_eq!(rep.rps, 100.0);
        assert_eq!(rep.duration_s, 10.0);
        // Nothing streamed, no usage: no tokens, no ttft.
        assert_eq!(rep.output_tokens_source, "none");
        assert_eq!(rep.ttft_ms.count, 0);
        assert_eq!(rep.ttft_ms.p50, None);
        // Large values keep three significant digits.
        let mut r = Recorder::new().unwrap();
        r.record(&ok(t0, 1_234_567));
        let p = Percentiles::of(&r.latency);
        assert!((p.max.unwrap() - 1234.567).abs() < 1.3, "{p:?}");
    }

    #[test]
    fn streams_ttft_tpot_itl_and_tokens() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut r = Recorder::new().unwrap();
        // Due at t0 but started 5 ms late: the clocks start at t0 + 1 ms (the timer slack).
        // First token at 6 ms, end at 6.9 ms, 10 tokens by usage.
        r.record(&Finished {
            due: t0,
            started: t0 + us(5_000),
            end: t0 + us(6_900),
            error: None,
            first_token: Some(t0 + us(6_000)),
            usage_tokens: Some(10),
            content_events: 9,
            streamed: true,
            gaps_us: &[100; 8],
            stalls: 1,
        });
        // Without usage: the 4 content events count.
        r.record(&Finished {
            due: t0,
            started: t0,
            end: t0 + us(800),
            error: None,
            first_token: Some(t0 + us(500)),
            usage_tokens: None,
            content_events: 4,
            streamed: true,
            gaps_us: &[100, 100, 100],
            stalls: 0,
        });
        let rep = Report::new(&r, info(1));
        assert_eq!(rep.output_tokens, 14);
        assert_eq!(rep.output_tokens_source, "mixed");
        assert_eq!(rep.content_events, 13);
        assert_eq!(rep.ttft_ms.count, 2);
        // Above 2.048 ms values are kept to three significant digits (reported as the top of
        // their bucket).
        let close = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() <= want * 0.001;
        assert!(close(rep.ttft_ms.max, 5.0), "{:?}", rep.ttft_ms);
        assert_eq!(rep.ttft_ms.p50, Some(0.5));
        // (6.9 - 6) / 9 = 0.1 ms and (0.8 - 0.5) / 3 = 0.1 ms.
        assert_eq!(rep.tpot_ms.count, 2);
        assert_eq!(rep.tpot_ms.p50, Some(0.1));
        assert_eq!(rep.tpot_ms.max, Some(0.1));
        assert_eq!(rep.itl_ms.count, 11);
        assert_eq!(rep.itl_ms.p99, Some(0.1));
        assert!(close(rep.latency_ms.max, 5.9), "{:?}", rep.latency_ms);
        assert_eq!(rep.latency_ms.p50, Some(0.8));
        assert_eq!(rep.stalls, 1);
        assert_eq!(rep.late_starts, 1);
        assert_eq!(rep.max_lateness_ms, 5.0);
        assert_eq!(rep.output_tokens_per_s, 14.0);
    }

    #[test]
    fn timer_slack_is_forgiven_and_queueing_is_not() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut r = Recorder::new().unwrap();
        // Woken 0.6 ms after its due time (timer resolution): the clock starts at the start.
        r.record(&Finished {
            started: t0 + us(600),
            end: t0 + us(1_600),
            ..ok(t0, 0)
        });
        // Started 1.8 ms late: the first millisecond is forgiven, not the rest; not "late".
        r.record(&Finished {
            started: t0 + us(1_800),
            end: t0 + us(2_000),
            ..ok(t0, 0)
        });
        let rep = Report::new(&r, info(1));
        assert_eq!(rep.latency_ms.p50, Some(1.0));
        assert_eq!(rep.latency_ms.max, Some(1.0));
        assert_eq!(rep.late_starts, 0);
        assert_eq!(rep.max_lateness_ms, 1.8);
    }

    #[test]
    fn errors_by_class_with_examples() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Recorder::new().unwrap(), Recorder::new().unwrap());
        let fail = |class, msg| Finished {
            error: Some((class, msg)),
            ..ok(t0, 10)
        };
        a.record(&fail(ErrorClass::Http(429), "429 Too Many Requests"));
        a.record(&fail(ErrorClass::Http(429), "second"));
        b.record(&fail(ErrorClass::Timeout, "after 300ms"));
        b.record(&fail(ErrorClass::Http(500), "500"));
        b.record(&ok(t0, 10));
        a.merge(&b);
        let rep = Report::new(&a, info(2));
        assert_eq!(rep.requests_failed, 4);
        assert_eq!(rep.requests_ok, 1);
        assert_eq!(rep.finished_rps, 2.5);
        assert_eq!(rep.rps, 0.5);
        let errors: Vec<(&str, u64)> = rep.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(errors, [("http_429", 2), ("http_500", 1), ("timeout", 1)]);
        assert_eq!(rep.error_examples["http_429"], "429 Too Many Requests");
        // Failed requests feed no latency.
        assert_eq!(rep.latency_ms.count, 1);
        let table = rep.table();
        assert!(table.contains("http_429"), "{table}");
        assert!(table.contains("requests ok 1  failed 4"), "{table}");
        let v = serde_json::to_value(&rep).unwrap();
        for key in [
            "requests_ok",
            "requests_failed",
            "errors",
            "duration_s",
            "rps",
            "output_tokens_per_s",
            "ttft_ms",
            "itl_ms",
            "latency_ms",
            "tpot_ms",
            "stalls",
            "late_starts",
            "max_lateness_ms",
            "output_tokens",
            "output_tokens_source",
            "config",
            "started_at",
            "interrupted",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        for key in ["p50", "p90", "p99", "p999", "max", "mean", "count"] {
            assert!(v["latency_ms"].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn empty_report() {
        let rep = Report::new(&Recorder::new().unwrap(), info(0));
        assert_eq!(rep.rps, 0.0);
        assert_eq!(rep.latency_ms.p50, None);
        assert!(rep.table().contains("errors: none"));
    }
}
