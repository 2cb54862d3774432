//! Driving `sluice-loadgen run`: its command line for one measured run, and the parts of its
//! `--json` report the benches use.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One `sluice-loadgen run`.
#[derive(Debug, Clone)]
pub struct Run {
    /// Base URL, e.g. `http://127.0.0.1:8080/v1`.
    pub url: String,
    pub model: String,
    pub stream: bool,
    pub concurrency: u32,
    /// Closed loop for this long after the warm-up...
    pub duration: Option<Duration>,
    /// ...or exactly this many requests (one per user when equal to `concurrency`).
    pub requests: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub stall_threshold: Option<Duration>,
    pub max_tokens: u32,
    pub prompt_tokens: u32,
    pub source_ips: Option<String>,
    /// Open loop at this many requests per second, constant spacing (a ramp: with
    /// `requests == concurrency` every user sends one request, `1/rate` apart).
    pub rate: Option<f64>,
    /// Worker threads of the load generator.
    pub workers: u16,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Run {
    /// The arguments after `sluice-loadgen`.
    pub fn args(&self, json: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "--url".into(),
            self.url.clone(),
            "--model".into(),
            self.model.clone(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--warmup".into(),
            ms(self.warmup),
            "--timeout".into(),
            ms(self.timeout),
            "--max-tokens".into(),
            self.max_tokens.to_string(),
            "--prompt-tokens".into(),
            self.prompt_tokens.to_string(),
            "--workers".into(),
            self.workers.to_string(),
            "--quiet".into(),
            "--json".into(),
            json.display().to_string(),
        ];
        if self.stream {
            a.push("--stream".into());
        }
        if let Some(d) = self.duration {
            a.extend(["--duration".into(), ms(d)]);
        }
        if let Some(n) = self.requests {
            a.extend(["--requests".into(), n.to_string()]);
        }
        if let Some(t) = self.stall_threshold {
            a.extend(["--stall-threshold".into(), ms(t)]);
        }
        if let Some(ips) = &self.source_ips {
            a.extend(["--source-ips".into(), ips.clone()]);
        }
        if let Some(rate) = self.rate {
            a.extend([
                "--rate".into(),
                rate.to_string(),
                "--arrival".into(),
                "constant".into(),
            ]);
        }
        a
    }

    /// The longest this run can take before it must have stopped by itself.
    pub fn bound(&self) -> Duration {
        let ramp = match (self.rate, self.requests) {
            (Some(rate), Some(n)) if rate > 0.0 => Duration::from_secs_f64(n as f64 / rate),
            _ => Duration::ZERO,
        };
        self.warmup
            + self.duration.unwrap_or(Duration::ZERO)
            + ramp
            + self.timeout
            + Duration::from_secs(30)
    }
}

/// Percentiles in milliseconds, as the load generator writes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

/// The fields of `sluice-loadgen run --json` the benches read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Report {
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub requests_abandoned: u64,
    pub requests_warmup: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_examples: BTreeMap<String, String>,
    pub duration_s: f64,
    pub rps: f64,
    pub content_events: u64,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
    pub latency_ms: Percentiles,
    pub stalls: u64,
    pub interrupted: bool,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, String> {
        serde_json::from_str(text).map_err(|e| format!("the load generator's JSON: {e}"))
    }

    pub fn read(path: &Path) -> Result<Report, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// Every request the server handled while the load generator ran (warm-up included).
    pub fn handled(&self) -> u64 {
        self.requests_ok + self.requests_failed + self.requests_warmup + self.requests_abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_for_a_closed_loop_stream() {
        let run = Run {
            url: "http://127.0.0.1:9/v1".into(),
            model: "fast".into(),
            stream: true,
            concurrency: 64,
            duration: Some(Duration::from_secs(5)),
            requests: None,
            warmup: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            stall_threshold: Some(Duration::from_secs(2)),
            max_tokens: 64,
            prompt_tokens: 32,
            source_ips: Some("127.0.0.2-127.0.0.9".into()),
            rate: None,
            workers: 1,
        };
        let args = run.args(Path::new("/tmp/r.json")).join(" ");
        assert_eq!(
            args,
            "run --url http://127.0.0.1:9/v1 --model fast --concurrency 64 --warmup 500ms \
             --timeout 10000ms --max-tokens 64 --prompt-tokens 32 --workers 1 --quiet --json \
             /tmp/r.json --stream --duration 5000ms --stall-threshold 2000ms --source-ips \
             127.0.0.2-127.0.0.9"
        );
        assert_eq!(run.bound(), Duration::from_millis(45_500));
    }

    #[test]
    fn args_for_a_ramp() {
        let run = Run {
            url: "http://127.0.0.1:9/v1".into(),
            model: "slow".into(),
            stream: true,
            concurrency: 1000,
            duration: None,
            requests: Some(1000),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(60),
            stall_threshold: None,
            max_tokens: 64,
            prompt_tokens: 32,
            source_ips: None,
            rate: Some(500.0),
            workers: 1,
        };
        let args = run.args(Path::new("/tmp/r.json")).join(" ");
        assert!(
            args.ends_with("--requests 1000 --rate 500 --arrival constant"),
            "{args}"
        );
        // 2 s of ramp + the timeout + 30 s.
        assert_eq!(run.bound(), Duration::from_secs(92));
    }

    #[test]
    fn report_fields_are_read_and_unknown_ones_ignored() {
        let text = r#"{"requests_ok": 100, "requests_failed": 2, "requests_abandoned": 0,
            "requests_warmup": 10, "errors": {"timeout": 2}, "error_examples": {},
            "duration_s": 1.5, "rps": 66.7, "finished_rps": 68.0, "content_events": 2000,
            "ttft_ms": {"count": 100, "mean": 1.0, "p50": 0.9, "p90": 1.2, "p99": 2.0,
                        "p999": 2.5, "max": 3.0},
            "itl_ms": {"count": 0, "mean": null, "p50": null, "p90": null, "p99": null,
                       "p999": null, "max": null},
            "latency_ms": {"count": 100, "p50": 5.0},
            "stalls": 1, "interrupted": false, "config": {"url": "x"}}"#;
        let r = Report::parse(text).unwrap();
        assert_eq!(r.requests_ok, 100);
        assert_eq!(r.handled(), 112);
        assert_eq!(r.errors.get("timeout"), Some(&2));
        assert_eq!(r.ttft_ms.p99, Some(2.0));
        assert_eq!(r.itl_ms.p50, None);
        assert_eq!(r.latency_ms.p50, Some(5.0));
        assert_eq!(r.latency_ms.p99, None);
        assert_eq!(r.stalls, 1);
        assert!(Report::parse("{\"requests_ok\": \"many\"}").is_err());
        assert!(Report::parse("not json").is_err());
    }
}
