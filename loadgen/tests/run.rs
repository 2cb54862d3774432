//! End-to-end tests of `sluice-loadgen run` against the real `sluice-loadgen mock`: the JSON
//! report's counts must match what the mock says it served (`/mock/stats`).
//!
//! Every run is bounded by `--requests` (or a short `--duration`) and by `--timeout`; a
//! watchdog kills a run that overstays [`DEADLINE`] (and the test then fails). The only timing
//! assertions are lower bounds that a slow machine cannot break.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-loadgen");
/// Upper bound of any wait: the mock starting, a run finishing, a counter settling.
const DEADLINE: Duration = Duration::from_secs(20);

/// A mock upstream on an ephemeral port, killed when dropped.
struct Upstream {
    process: Child,
    addr: SocketAddr,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Upstream {
    /// Starts `sluice-loadgen mock FLAGS` (flags separated by spaces).
    fn start(flags: &str) -> Upstream {
        let mut process = Command::new(BIN)
            .args(["mock", "--listen", "127.0.0.1:0"])
            .args(flags.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(process.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let first = out.lines().next().and_then(Result::ok);
            let _ = tx.send(first.unwrap_or_default());
        });
        let mut upstream = Upstream {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = rx.recv_timeout(DEADLINE).expect("mock never became ready");
        upstream.addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("mock said {line:?}"))
            .parse()
            .unwrap();
        upstream
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /mock/stats` on a fresh connection.
    fn stats(&self) -> Value {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"GET /mock/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (_, body) = raw.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    /// Stats once `field` is at least `want` (the mock counts some things after the client
    /// has already gone, e.g. a disconnect), or when the deadline passed.
    fn stats_when(&self, field: &str, want: u64) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let stats = self.stats();
            if stats[field].as_u64() >= Some(want) || Instant::now() > end {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A finished `run`: how it exited, its JSON report and its stdout table.
struct Run {
    status: ExitStatus,
    report: Value,
    table: String,
    took: Duration,
}

/// Kills process `pid` unless told (or dropped) within [`DEADLINE`].
fn watchdog(pid: u32) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(DEADLINE) == Err(RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    tx
}

fn json_path() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "sluice-loadgen-run-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Starts `sluice-loadgen run --url URL FLAGS` (flags separated by spaces).
fn spawn_run(url: &str, flags: &str, json: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["run", "--url", url, "--quiet", "--json"])
        .arg(json)
        .args(flags.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, json: &std::path::Path, t0: Instant) -> Run {
    let dog = watchdog(child.id());
    let out = child.wait_with_output().unwrap();
    drop(dog);
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "run was killed after {took:?}; stderr: {stderr}"
    );
    let report = std::fs::read(json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(json);
    Run {
        status: out.status,
        report,
        table: String::from_utf8_lossy(&out.stdout).into_owned(),
        took,
    }
}

/// Runs `sluice-loadgen run` to the end and reads its report.
fn run(url: &str, flags: &str) -> Run {
    let json = json_path();
    let t0 = Instant::now();
    finish(spawn_run(url, flags, &json), &json, t0)
}

fn ok_run(url: &str, flags: &str) -> Value {
    let r = run(url, flags);
    assert_eq!(r.status.code(), Some(0), "{flags:?}\n{}", r.table);
    assert!(r.report.is_object(), "no JSON report for {flags:?}");
    r.report
}

#[test]
fn streaming_closed_loop_matches_the_mock_on_both_drivers() {
    for (driver, usage) in [("epoll", true), ("uring", false)] {
        let m = Upstream::start("--tokens 5 --workers 2");
        let usage_flag = if usage { "" } else { "--no-include-usage" };
        let flags = format!(
            "--stream --concurrency 8 --workers 2 --requests 120 --io-driver {driver} {usage_flag}"
        );
        let r = ok_run(&m.url(), &flags);
        let stats = m.stats();
        assert_eq!(r["requests_ok"], 120, "{driver}: {r}");
        assert_eq!(r["requests_failed"], 0);
        assert_eq!(r["errors"], serde_json::json!({}));
        assert_eq!(stats["requests"], 120);
        assert_eq!(stats["streams_completed"], 120);
        assert_eq!(stats["token_chunks_sent"], 600);
        assert_eq!(r["output_tokens"], stats["token_chunks_sent"]);
        assert_eq!(r["content_events"], stats["token_chunks_sent"]);
        assert_eq!(
            r["output_tokens_source"],
            if usage { "usage" } else { "events" }
        );
        assert_eq!(r["ttft_ms"]["count"], 120);
        assert_eq!(r["tpot_ms"]["count"], 120);
        assert_eq!(r["latency_ms"]["count"], 120);
        // Four gaps between five tokens.
        assert_eq!(r["itl_ms"]["count"], 480);
        assert!(r["ttft_ms"]["p50"].as_f64().unwrap() <= r["latency_ms"]["max"].as_f64().unwrap());
        // Keep-alive: one connection per virtual user (plus the stats request).
        assert_eq!(stats["connections"], 8 + 1, "{stats}");
        let name = driver_name(driver);
        assert_eq!(r["io_drivers"], serde_json::json!([name, name]));
        assert_eq!(r["config"]["concurrency"], 8);
        assert_eq!(r["config"]["stream"], true);
        assert!(r["started_at"].as_u64().unwrap() > 1_600_000_000);
    }
}

fn driver_name(flag: &str) -> &'static str {
    if flag == "uring" {
        "io_uring"
    } else {
        "epoll"
    }
}

#[test]
fn non_streaming_latency_and_usage_from_the_body() {
    let m = Upstream::start("--tokens 7");
    let r = ok_run(&m.url(), "--concurrency 6 --requests 60");
    let stats = m.stats();
    assert_eq!(stats["requests"], 60);
    assert_eq!(stats["streams"], 0);
    assert_eq!(r["requests_ok"], 60);
    assert_eq!(r["output_tokens"], 60 * 7);
    assert_eq!(r["output_tokens_source"], "usage");
    assert_eq!(r["latency_ms"]["count"], 60);
    assert_eq!(r["ttft_ms"]["count"], 0);
    assert_eq!(r["ttft_ms"]["p50"], Value::Null);
    // What was sent: the model, the filler prompt, max_tokens.
    let body: Value = serde_json::from_str(stats["last_body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_tokens"], 64);
    let prompt = body["messages"][0]["content"].as_str().unwrap();
    assert_eq!(prompt.split(' ').count(), 32);
    assert_eq!(stats["last_path"], "/v1/chat/completions");
}

#[test]
fn open_loop_sends_exactly_the_requested_count() {
    let m = Upstream::start("--tokens 3");
    let r = ok_run(
        &m.url(),
        "--stream --rate 200 --arrival constant --requests 50 --concurrency 4",
    );
    let stats = m.stats();
    assert_eq!(stats["requests"], 50);
    assert_eq!(stats["streams_completed"], 50);
    assert_eq!(r["requests_ok"], 50);
    assert_eq!(r["output_tokens"], 150);
    assert_eq!(r["config"]["rate"], 200.0);
    assert_eq!(r["config"]["arrival"], "constant");
    // The last of 50 requests at 200/s is due 245 ms after the first.
    assert!(r["duration_s"].as_f64().unwrap() >= 0.245, "{r}");
    assert!(r["late_starts"].as_u64().is_some());
    assert!(r["max_lateness_ms"].as_f64().is_some());
}

#[test]
fn open_loop_counts_queueing_from_the_due_time() {
    // One user, a request due every 10 ms, each answered after 50 ms: a queue builds up.
    // Request k (from 0) is due at 10k ms but cannot start before 50k ms.
    let m = Upstream::start("--ttft-ms 50 --tokens 1");
    let r = ok_run(
        &m.url(),
        "--rate 100 --arrival constant --concurrency 1 --requests 10",
    );
    assert_eq!(r["requests_ok"], 10);
    // Requests 1 to 9 start at least 40 ms late (the first one too, on a stalled machine).
    assert!(r["late_starts"].as_u64().unwrap() >= 9, "{r}");
    assert!(r["max_lateness_ms"].as_f64().unwrap() >= 9.0 * 40.0, "{r}");
    // The last one, due at 90 ms, ends no sooner than 500 ms: its latency, counted from the
    // due time (less the 1 ms timer slack), is at least 409 ms, not the 50 ms it was served in.
    assert!(r["latency_ms"]["max"].as_f64().unwrap() >= 409.0, "{r}");
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() >= 200.0, "{r}");
}

#[test]
fn injected_429s_are_counted_by_class() {
    let m = Upstream::start("--fault-status 429 --fault-rate 0.5");
    let r = ok_run(&m.url(), "--stream --concurrency 4 --requests 80");
    let stats = m.stats();
    assert_eq!(stats["requests"], 80);
    assert_eq!(stats["faults"], 40);
    assert_eq!(r["errors"]["http_429"], stats["faults"]);
    assert_eq!(r["requests_failed"], 40);
    assert_eq!(r["requests_ok"], stats["streams_completed"]);
    assert!(r["error_examples"]["http_429"]
        .as_str()
        .unwrap()
        .contains("Rate limit"));
    // Error responses do not cost the connection.
    assert_eq!(stats["connections"], 4 + 1);
}

#[test]
fn dropped_streams_are_broken_streams() {
    let m = Upstream::start("--drop-after 2 --tokens 5");
    let r = ok_run(&m.url(), "--stream --concurrency 3 --requests 30");
    let stats = m.stats();
    assert_eq!(stats["streams_dropped"], 30);
    assert_eq!(r["errors"], serde_json::json!({"broken_stream": 30}));
    assert_eq!(r["requests_ok"], 0);
    assert_eq!(r["latency_ms"]["count"], 0);
}

#[test]
fn stalled_streams_time_out_and_the_run_still_ends() {
    let m = Upstream::start("--stall-after 1 --tokens 5");
    let r = run(
        &m.url(),
        "--stream --concurrency 3 --requests 6 --timeout 300ms",
    );
    assert_eq!(r.status.code(), Some(0), "{}", r.table);
    assert_eq!(r.report["errors"], serde_json::json!({"timeout": 6}));
    // Six requests on three users, each held for the whole timeout.
    assert!(r.took >= Duration::from_millis(600), "{:?}", r.took);
    let stats = m.stats_when("client_disconnects", 6);
    assert_eq!(stats["streams_stalled"], 6);
    assert_eq!(stats["client_disconnects"], 6);
}

#[test]
fn warmup_requests_are_sent_but_not_recorded() {
    let m = Upstream::start("--tokens 2");
    let r = ok_run(
        &m.url(),
        "--concurrency 2 --warmup 200ms --duration 300ms --endpoint completions",
    );
    let stats = m.stats();
    let recorded = r["requests_ok"].as_u64().unwrap() + r["requests_failed"].as_u64().unwrap();
    let warmup = r["requests_warmup"].as_u64().unwrap();
    assert!(warmup >= 2, "{r}");
    assert!(recorded >= 1, "{r}");
    assert_eq!(stats["requests"].as_u64().unwrap(), recorded + warmup);
    assert_eq!(stats["completions"], stats["requests"]);
    // Measured from the end of the warm-up until the last request ended.
    assert!(r["duration_s"].as_f64().unwrap() >= 0.3, "{r}");
}

#[test]
fn sigint_stops_the_run_and_keeps_what_finished() {
    // Streams of ten tokens 40 ms apart: about 0.4 s each.
    let m = Upstream::start("--tokens 10 --itl-ms 40");
    let json = json_path();
    let t0 = Instant::now();
    let child = spawn_run(&m.url(), "--stream --concurrency 4 --duration 60s", &json);
    // Once the run is under way (a stream has completed), interrupt it.
    let stats = m.stats_when("streams_completed", 4);
    assert!(stats["streams_completed"].as_u64().unwrap() >= 4, "{stats}");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let r = finish(child, &json, t0);
    assert_eq!(r.status.code(), Some(0), "{}", r.table);
    assert_eq!(r.report["interrupted"], true);
    // The streams in flight had time to finish: nothing was abandoned or lost.
    assert_eq!(r.report["requests_abandoned"], 0);
    let stats = m.stats();
    assert_eq!(r.report["requests_ok"], stats["streams_completed"]);
    assert_eq!(stats["requests"], stats["streams_completed"]);
    assert!(r.table.contains("interrupted"), "{}", r.table);
}

#[test]
fn nothing_sent_and_bad_arguments_have_their_exit_codes() {
    // A port that was just free: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(
        &format!("http://127.0.0.1:{port}"),
        "--requests 5 --concurrency 2",
    );
    assert_eq!(r.status.code(), Some(1), "{}", r.table);
    assert_eq!(r.report["errors"]["connect"], 5);
    assert_eq!(r.report["requests_ok"], 0);

    for flags in [
        &["run", "--url", "http://127.0.0.1:1"][..],
        &["run", "--url", "http://127.0.0.1:1", "--duration", "5"],
        &["run", "--url", "https://127.0.0.1:1", "--requests", "1"],
        &["run", "--url", "http://127.0.0.1:1", "--bogus"],
    ] {
        let out = Command::new(BIN).args(flags).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(!out.stderr.is_empty());
    }
    let help = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    for word in ["--rate", "--source-ips", "Exit status", "broken_stream"] {
        assert!(help.contains(word), "{word} missing from --help");
    }
}
