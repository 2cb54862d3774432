//! Long-lived streams through Sluice: N concurrent slow streams (10k, 50k, 100k), served by
//! Sluice's built-in `mock` provider so every stream costs Sluice one descriptor (the
//! client's) and nothing upstream. Reports Sluice's RSS per stream and whether any stream
//! stalled or failed. See `bench/README.md` ("Long-lived streams").
//!
//! ```sh
//! cargo run --release -p sluice-bench --bin long_streams -- --counts 10000,50000,100000
//! ```

use clap::Parser;
use serde::Serialize;
use sluice_bench::e2e::children::{Child, Spec};
use sluice_bench::e2e::configs::{self, SluiceBackends};
use sluice_bench::e2e::host::{self, FileLimit, Machine, Revision};
use sluice_bench::e2e::loadgen::{Percentiles, Run};
use sluice_bench::e2e::measure::{self, Loadgen};
use sluice_bench::e2e::procfs;
use sluice_bench::e2e::session::{self, Setup};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Many concurrent slow streams through Sluice: memory per stream, stalls, failures"
)]
struct Args {
    /// Concurrent stream counts, each in a fresh Sluice.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 50_000, 100_000])]
    counts: Vec<u64>,
    /// Tokens per stream (one SSE chunk each).
    #[arg(long, default_value_t = 16)]
    tokens: u32,
    /// Gap between tokens; a stream lasts about `tokens` x `gap`.
    #[arg(long, default_value = "5s", value_parser = session::parse_duration)]
    gap: Duration,
    /// Source addresses of the load generator's connections (about 28k ports each).
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    source_ips: String,
    /// New streams per second while opening them (a constant-rate open loop: a burst of
    /// thousands of connects overflows the listen backlog and loses connections to resets).
    #[arg(long, default_value_t = 2000.0)]
    ramp: f64,
    /// CPU for Sluice.
    #[arg(long, default_value = "0")]
    gateway_cpu: String,
    /// CPU for the load generator and this program.
    #[arg(long, default_value = "1")]
    load_cpu: String,
    /// JSON report; default bench/results/long-streams-YYYY-MM-DD.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build sluice and sluice-loadgen first.
    #[arg(long)]
    no_build: bool,
    /// Keep the scratch directory (config, logs, load-generator reports).
    #[arg(long)]
    keep_scratch: bool,
}

#[derive(Debug, Serialize)]
struct CountResult {
    streams: u64,
    /// Why this count did not run, when it did not.
    skipped: Option<String>,
    idle_rss_kib: u64,
    /// Highest RSS sampled while the streams were open.
    peak_rss_kib: u64,
    /// (peak RSS - idle RSS) / streams.
    kib_per_stream: Option<f64>,
    /// Highest `sluice_active_streams` scraped (streams open at once inside Sluice).
    peak_active_streams: Option<u64>,
    /// Seconds from the load generator's start to that peak.
    peak_active_at_s: Option<f64>,
    /// Highest open descriptors of Sluice (each client connection is one) and idle.
    peak_fds: u64,
    idle_fds: u64,
    /// Whether every stream was open at the same time inside Sluice.
    all_open_at_once: bool,
    ok: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
    /// Gaps between two data events above the stall threshold.
    stalls: u64,
    stall_threshold_s: f64,
    ttft_ms: Percentiles,
    itl_ms: Percentiles,
    latency_ms: Percentiles,
    /// CPU seconds Sluice used over the run (utime + stime).
    cpu_s: f64,
    wall_s: f64,
}

#[derive(Debug, Serialize)]
struct LongReport {
    bench: &'static str,
    date: String,
    command: String,
    machine: Machine,
    revision: Revision,
    tokens: u32,
    gap_s: f64,
    ramp_per_s: f64,
    source_ips: String,
    gateway_cpu: String,
    load_cpu: String,
    sluice_workers: u32,
    file_limit: FileLimit,
    results: Vec<CountResult>,
    wall_time_s: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    session::exit("long_streams", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    if args.counts.is_empty() || args.counts.contains(&0) {
        return Err("--counts: give positive stream counts".into());
    }
    if args.ramp.is_nan() || args.ramp <= 0.0 {
        return Err("--ramp must be above zero".into());
    }
    if args.gap.is_zero() || args.tokens == 0 {
        return Err("--gap and --tokens must be above zero".into());
    }
    let setup = Setup {
        tag: "long_streams",
        scratch: "long-streams",
        load_cpu: &args.load_cpu,
        no_build: args.no_build,
        keep_scratch: args.keep_scratch,
    };
    session::run(setup, |sluice, loadgen, dir| {
        measure_all(args, sluice, loadgen, dir, started)
    })
}

fn start_sluice(
    bin: &Path,
    dir: &Path,
    cpu: &str,
    args: &Args,
    n: u64,
) -> Result<(Child, SocketAddr, SocketAddr), String> {
    let conf = dir.join(format!("sluice-{n}.toml"));
    let text = configs::sluice_toml(
        &SluiceBackends::BuiltinMock {
            tokens: args.tokens,
            gap_s: args.gap.as_secs_f64(),
        },
        n * 2 + 1024,
    );
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    let spec = Spec {
        name: "sluice".into(),
        program: bin.to_path_buf(),
        args: vec!["run".into(), "--config".into(), conf.display().to_string()],
        cpus: Some(cpu.to_owned()),
        log: dir.join(format!("sluice-{n}.log")),
    };
    let (child, ready) = Child::spawn_ready(&spec, "sluice listening", Duration::from_secs(30))?;
    let field = |name: &str| -> Result<SocketAddr, String> {
        ready
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| a.split(',').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("cannot read `{name}` from Sluice's ready line `{ready}`"))
    };
    let client = field("client=")?;
    let admin = field("admin=")?;
    Ok((child, client, admin))
}

fn measure_all(
    args: &Args,
    sluice_bin: &Path,
    loadgen_bin: &Path,
    dir: &Path,
    started: Instant,
) -> Result<(), String> {
    let max = args.counts.iter().copied().max().unwrap_or(0);
    // Sluice and the load generator each need one descriptor per stream.
    let file_limit = host::raise_nofile(max + 16_384);
    eprintln!(
        "open-files limit: soft {} hard {} (wanted {})",
        file_limit.soft, file_limit.hard, file_limit.wanted
    );
    let lg = Loadgen {
        binary: loadgen_bin.to_path_buf(),
        cpus: Some(args.load_cpu.clone()),
        dir: dir.to_path_buf(),
    };
    let stream_len = args.gap * args.tokens;
    let stall = args.gap * 2;
    let mut results = Vec::new();
    for &n in &args.counts {
        // Sluice and the load generator each hold one descriptor per stream, plus a few of
        // their own (Sluice about 30 idle, the load generator 64 of slack).
        if file_limit.soft < n + 256 {
            let why = format!(
                "the open-files limit is {} per process (hard limit; raising it failed: {}), \
                 too low for {n} streams in one Sluice process",
                file_limit.soft,
                file_limit
                    .hard_raise_error
                    .as_deref()
                    .unwrap_or("not tried")
            );
            eprintln!("{n} streams: skipped: {why}");
            results.push(skipped(n, why, stall));
            continue;
        }
        let t0 = Instant::now();
        let (sluice, client, admin) = start_sluice(sluice_bin, dir, &args.gateway_cpu, args, n)?;
        let pid = sluice.pid();
        let url = format!("http://{client}/v1");
        // Warm up on the unpaced model, so lazy start-up work is not counted per stream.
        let warm = Run {
            url: url.clone(),
            model: "fast".into(),
            stream: true,
            concurrency: 8,
            duration: None,
            requests: Some(400),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(30),
            stall_threshold: None,
            max_tokens: args.tokens * 2,
            prompt_tokens: 32,
            source_ips: None,
            rate: None,
            workers: 1,
        };
        let (w, _) = lg.measured(&warm, &format!("warm-{n}"), pid)?;
        if w.requests_ok == 0 {
            return Err(format!(
                "warm-up through Sluice failed: {:?}",
                w.error_examples
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
        let idle_rss = procfs::rss_kib(pid)?;
        let idle_fds = procfs::fd_count(pid)?;
        let cpu0 = procfs::stat(pid)?.cpu_ticks();
        let run = Run {
            url,
            model: "slow".into(),
            stream: true,
            concurrency: u32::try_from(n).map_err(|e| e.to_string())?,
            duration: None,
            requests: Some(n),
            warmup: Duration::ZERO,
            timeout: stream_len * 2 + Duration::from_secs(60),
            stall_threshold: Some(stall),
            max_tokens: args.tokens * 2,
            prompt_tokens: 32,
            source_ips: Some(args.source_ips.clone()),
            rate: Some(args.ramp),
            workers: 1,
        };
        let every = if n > 20_000 {
            Duration::from_millis(1000)
        } else {
            Duration::from_millis(500)
        };
        let held = lg.holding(&run, &format!("streams-{n}"), pid, every, || {
            measure::http_get(admin, "/metrics", Duration::from_secs(2))
                .ok()
                .and_then(|text| measure::metric_sum(&text, "sluice_active_streams"))
        })?;
        let cpu_s = procfs::stat(pid)?.cpu_ticks().saturating_sub(cpu0) as f64
            / procfs::ticks_per_second() as f64;
        drop(sluice);
        let r = &held.report;
        let result = CountResult {
            streams: n,
            skipped: None,
            idle_rss_kib: idle_rss,
            peak_rss_kib: held.peak_rss_kib,
            kib_per_stream: (n > 0)
                .then(|| (held.peak_rss_kib as f64 - idle_rss as f64) / n as f64),
            peak_active_streams: held.peak_gauge,
            peak_active_at_s: held
                .peak_gauge_at
                .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            peak_fds: held.peak_fds,
            idle_fds,
            all_open_at_once: held.peak_gauge.is_some_and(|g| g >= n),
            ok: r.requests_ok,
            failed: r.requests_failed,
            errors: r.errors.clone(),
            error_examples: r.error_examples.clone(),
            stalls: r.stalls,
            stall_threshold_s: stall.as_secs_f64(),
            ttft_ms: r.ttft_ms,
            itl_ms: r.itl_ms,
            latency_ms: r.latency_ms,
            cpu_s,
            wall_s: (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        };
        eprintln!(
            "{n} streams: peak active {} (at {} s), RSS idle {:.1} MiB peak {:.1} MiB = {} KiB/stream, ok {} failed {} stalls {}, itl p99 {} ms max {} ms, Sluice CPU {:.1} s",
            result.peak_active_streams.map_or("?".into(), |v| v.to_string()),
            result.peak_active_at_s.map_or("?".into(), |v| v.to_string()),
            idle_rss as f64 / 1024.0,
            held.peak_rss_kib as f64 / 1024.0,
            result.kib_per_stream.map_or("-".into(), |v| format!("{v:.2}")),
            result.ok,
            result.failed,
            result.stalls,
            r.itl_ms.p99.map_or("-".into(), |v| format!("{v:.0}")),
            r.itl_ms.max.map_or("-".into(), |v| format!("{v:.0}")),
            cpu_s,
        );
        results.push(result);
    }

    println!("\nstreams   all open  peak active  RSS idle MiB  RSS peak MiB  KiB/stream      ok  failed  stalls  itl p99 ms  itl max ms");
    for r in &results {
        if let Some(why) = &r.skipped {
            println!("{:>7}   skipped: {why}", r.streams);
            continue;
        }
        println!(
            "{:>7}   {:>8}  {:>11}  {:>12.1}  {:>12.1}  {:>10}  {:>6}  {:>6}  {:>6}  {:>10}  {:>10}",
            r.streams,
            if r.all_open_at_once { "yes" } else { "NO" },
            r.peak_active_streams.map_or("?".into(), |v| v.to_string()),
            r.idle_rss_kib as f64 / 1024.0,
            r.peak_rss_kib as f64 / 1024.0,
            r.kib_per_stream.map_or("-".into(), |v| format!("{v:.2}")),
            r.ok,
            r.failed,
            r.stalls,
            r.itl_ms.p99.map_or("-".into(), |v| format!("{v:.0}")),
            r.itl_ms.max.map_or("-".into(), |v| format!("{v:.0}")),
        );
    }
    let date = host::today();
    let out = args.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("long-streams-{date}.json"))
    });
    let doc = LongReport {
        bench: "sluice-bench long_streams",
        date,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: Machine::probe(),
        revision: Revision::probe(),
        tokens: args.tokens,
        gap_s: args.gap.as_secs_f64(),
        ramp_per_s: args.ramp,
        source_ips: args.source_ips.clone(),
        gateway_cpu: args.gateway_cpu.clone(),
        load_cpu: args.load_cpu.clone(),
        sluice_workers: 1,
        file_limit,
        results,
        wall_time_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    session::write_report(&out, &doc, started)?;
    Ok(())
}

fn skipped(n: u64, why: String, stall: Duration) -> CountResult {
    CountResult {
        streams: n,
        skipped: Some(why),
        idle_rss_kib: 0,
        peak_rss_kib: 0,
        kib_per_stream: None,
        peak_active_streams: None,
        peak_active_at_s: None,
        peak_fds: 0,
        idle_fds: 0,
        all_open_at_once: false,
        ok: 0,
        failed: 0,
        errors: BTreeMap::new(),
        error_examples: BTreeMap::new(),
        stalls: 0,
        stall_threshold_s: stall.as_secs_f64(),
        ttft_ms: Percentiles::default(),
        itl_ms: Percentiles::default(),
        latency_ms: Percentiles::default(),
        cpu_s: 0.0,
        wall_s: 0.0,
    }
}
