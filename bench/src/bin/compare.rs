//! End-to-end comparison: the mock upstream directly, nginx as a pure reverse proxy, and
//! Sluice (one worker), in interleaved rounds on pinned CPUs. See `bench/README.md`
//! ("End-to-end comparison") for what it measures and how to read it.
//!
//! ```sh
//! cargo run --release -p sluice-bench --bin compare -- --rounds 3 --duration 5s
//! ```

use clap::Parser;
use serde::Serialize;
use sluice_bench::e2e::children::{self, Child, Spec};
use sluice_bench::e2e::configs::{self, Route, SluiceBackends};
use sluice_bench::e2e::host::{self, FileLimit, Machine, Revision};
use sluice_bench::e2e::loadgen::Run;
use sluice_bench::e2e::measure::Loadgen;
use sluice_bench::e2e::procfs;
use sluice_bench::e2e::report::{self, Measure, Memory, Row, Summary, PEERS, SCENARIOS};
use sluice_bench::e2e::session::{self, Setup};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Parser)]
#[command(about = "End-to-end comparison: direct to the mock upstream vs nginx vs Sluice")]
struct Args {
    /// Interleaved rounds (direct, nginx, sluice, direct, ...), after the warm-up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Measured length of each run (one scenario against one peer).
    #[arg(long, default_value = "5s", value_parser = session::parse_duration)]
    duration: Duration,
    /// Warm-up of every run (its requests count for CPU time but not for latency).
    #[arg(long, default_value = "500ms", value_parser = session::parse_duration)]
    run_warmup: Duration,
    /// Length of each warm-up run before the first round (every scenario, every peer).
    #[arg(long, default_value = "1s", value_parser = session::parse_duration)]
    warmup: Duration,
    /// Output tokens of every response (one SSE chunk each in streams).
    #[arg(long, default_value_t = 20)]
    tokens: u32,
    /// Gap between tokens of the paced streams, in ms.
    #[arg(long, default_value_t = 10)]
    paced_itl_ms: u64,
    /// Open slow streams for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    slow_streams: u32,
    /// Gap between tokens of the slow streams, in ms (each lasts `tokens` gaps).
    #[arg(long, default_value_t = 500)]
    slow_itl_ms: u64,
    /// CPU for the gateway (nginx or Sluice).
    #[arg(long, default_value = "0")]
    gateway_cpu: String,
    /// CPU for the load generator, the mock upstreams and this program.
    #[arg(long, default_value = "1")]
    load_cpu: String,
    /// JSON report; default bench/results/compare-YYYY-MM-DD.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build sluice and sluice-loadgen first (use what is in target/release).
    #[arg(long)]
    no_build: bool,
    /// Leave nginx out even when it is installed.
    #[arg(long)]
    no_nginx: bool,
    /// Keep the scratch directory (configs, logs, load-generator reports).
    #[arg(long)]
    keep_scratch: bool,
}

/// A peer while it runs.
struct Peer {
    name: &'static str,
    /// Base URL per upstream route (`fast`, `paced`, `slow`).
    urls: BTreeMap<&'static str, String>,
    /// Whose CPU and memory count, per route (the gateway for every route; for direct, the
    /// mock serving it).
    pids: BTreeMap<&'static str, u32>,
    version: Option<String>,
    fresh_rss_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
struct PeerReport {
    name: &'static str,
    available: bool,
    note: Option<String>,
    version: Option<String>,
    /// RSS right after start, before any request.
    fresh_rss_kib: Option<u64>,
    /// Scenario -> its measures, one per round.
    rounds: BTreeMap<String, Vec<Measure>>,
    summary: BTreeMap<String, Summary>,
    memory: Option<Memory>,
}

#[derive(Debug, Serialize)]
struct Settings {
    rounds: u32,
    duration_s: f64,
    run_warmup_s: f64,
    warmup_s: f64,
    tokens: u32,
    paced_itl_ms: u64,
    slow_streams: u32,
    slow_itl_ms: u64,
    gateway_cpu: String,
    load_cpu: String,
    sluice_workers: u32,
    nginx_worker_processes: u32,
    scenarios: Vec<report::Scenario>,
    file_limit: FileLimit,
}

#[derive(Debug, Serialize)]
struct CompareReport {
    bench: &'static str,
    date: String,
    command: String,
    machine: Machine,
    revision: Revision,
    settings: Settings,
    peers: Vec<PeerReport>,
    /// The table: medians of rounds per peer and Sluice's ratios.
    rows: Vec<Row>,
    /// Added latency over direct at concurrency 1, in microseconds: [nginx, sluice].
    added_latency_c1_p50_us: [Option<f64>; 2],
    added_latency_c1_p99_us: [Option<f64>; 2],
    /// Rows where Sluice is more than 5% worse than nginx.
    sluice_loses_to_nginx: Vec<String>,
    wall_time_s: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    session::exit("compare", run(&args))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let setup = Setup {
        tag: "compare",
        scratch: "compare",
        load_cpu: &args.load_cpu,
        no_build: args.no_build,
        keep_scratch: args.keep_scratch,
    };
    session::run(setup, |sluice, loadgen, dir| {
        measure_all(args, sluice, loadgen, dir, started)
    })
}

fn start_mock(
    bin: &Path,
    dir: &Path,
    cpu: &str,
    name: &str,
    extra: &[String],
) -> Result<(Child, SocketAddr), String> {
    let mut args = vec![
        "mock".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--workers".to_owned(),
        "1".to_owned(),
    ];
    args.extend(extra.iter().cloned());
    let spec = Spec {
        name: format!("mock-{name}"),
        program: bin.to_path_buf(),
        args,
        cpus: Some(cpu.to_owned()),
        log: dir.join(format!("mock-{name}.log")),
    };
    let (child, rest) = Child::spawn_ready(&spec, "listening on", Duration::from_secs(30))?;
    let addr = rest
        .parse::<SocketAddr>()
        .map_err(|e| format!("mock-{name} printed `listening on {rest}`: {e}"))?;
    Ok((child, addr))
}

fn measure_all(
    args: &Args,
    sluice_bin: &Path,
    loadgen_bin: &Path,
    dir: &Path,
    started: Instant,
) -> Result<(), String> {
    let date = host::today();
    let machine = Machine::probe();
    let revision = Revision::probe();
    let ticks = procfs::ticks_per_second();
    // Each slow stream costs the gateway two descriptors and the load generator one.
    let file_limit = host::raise_nofile(u64::from(args.slow_streams) * 3 + 4096);
    if file_limit.soft < u64::from(args.slow_streams) * 2 + 1024 {
        return Err(format!(
            "the open-files limit is {} and cannot be raised to {}; lower --slow-streams",
            file_limit.soft, file_limit.wanted
        ));
    }

    // The mock upstreams, on the load CPU.
    let tokens = args.tokens.to_string();
    let (mock_fast, fast_addr) = start_mock(
        loadgen_bin,
        dir,
        &args.load_cpu,
        "fast",
        &["--tokens".into(), tokens.clone()],
    )?;
    let (mock_paced, paced_addr) = start_mock(
        loadgen_bin,
        dir,
        &args.load_cpu,
        "paced",
        &[
            "--tokens".into(),
            tokens.clone(),
            "--itl-ms".into(),
            args.paced_itl_ms.to_string(),
        ],
    )?;
    let (mock_slow, slow_addr) = start_mock(
        loadgen_bin,
        dir,
        &args.load_cpu,
        "slow",
        &[
            "--tokens".into(),
            tokens.clone(),
            "--itl-ms".into(),
            args.slow_itl_ms.to_string(),
        ],
    )?;
    let routes = vec![
        Route {
            name: "fast".into(),
            upstream: fast_addr,
        },
        Route {
            name: "paced".into(),
            upstream: paced_addr,
        },
        Route {
            name: "slow".into(),
            upstream: slow_addr,
        },
    ];
    let route_names: [&'static str; 3] = ["fast", "paced", "slow"];
    let mocks = [&mock_fast, &mock_paced, &mock_slow];

    let mut peers: Vec<Option<Peer>> = Vec::new();
    let mut notes: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut keep: Vec<Child> = Vec::new();

    // A: direct.
    peers.push(Some(Peer {
        name: "direct",
        urls: route_names
            .iter()
            .zip(&routes)
            .map(|(n, r)| (*n, format!("http://{}/v1", r.upstream)))
            .collect(),
        pids: route_names
            .iter()
            .zip(mocks)
            .map(|(n, m)| (*n, m.pid()))
            .collect(),
        version: Some(format!("sluice-loadgen mock ({})", loadgen_bin.display())),
        fresh_rss_kib: procfs::rss_kib(mock_fast.pid()).ok(),
    }));

    // B: nginx.
    let nginx = if args.no_nginx {
        None
    } else {
        host::find_nginx()
    };
    match (&nginx, args.no_nginx) {
        (_, true) => {
            notes.insert("nginx", "left out (--no-nginx)".into());
            peers.push(None);
        }
        (None, false) => {
            let msg = "nginx is not installed (`which nginx` finds nothing, nor /usr/sbin/nginx): \
                       the nginx column stays empty. Install it with `apt-get install -y nginx-light`.";
            eprintln!("compare: {msg}");
            notes.insert("nginx", msg.into());
            peers.push(None);
        }
        (Some(nginx), false) => {
            match start_nginx(nginx, dir, &args.gateway_cpu, &routes, args.slow_streams) {
                Ok((child, ports)) => {
                    let pid = child.pid();
                    peers.push(Some(Peer {
                        name: "nginx",
                        urls: route_names
                            .iter()
                            .zip(&ports)
                            .map(|(n, p)| (*n, format!("http://127.0.0.1:{p}/v1")))
                            .collect(),
                        pids: route_names.iter().map(|n| (*n, pid)).collect(),
                        version: host::nginx_version(nginx),
                        fresh_rss_kib: procfs::family_rss_kib(pid).ok(),
                    }));
                    keep.push(child);
                }
                Err(e) => {
                    eprintln!("compare: nginx could not start, reporting without it: {e}");
                    notes.insert("nginx", format!("could not start: {e}"));
                    peers.push(None);
                }
            }
        }
    }

    // C: Sluice.
    let conf = dir.join("sluice.toml");
    std::fs::write(
        &conf,
        configs::sluice_toml(
            &SluiceBackends::Proxy(&routes),
            u64::from(args.slow_streams) * 2 + 1024,
        ),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let spec = Spec {
        name: "sluice".into(),
        program: sluice_bin.to_path_buf(),
        args: vec!["run".into(), "--config".into(), conf.display().to_string()],
        cpus: Some(args.gateway_cpu.clone()),
        log: dir.join("sluice.log"),
    };
    let (sluice, ready) = Child::spawn_ready(&spec, "sluice listening", Duration::from_secs(30))?;
    let client = ready
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("client="))
        .and_then(|a| a.split(',').next())
        .ok_or_else(|| format!("cannot read Sluice's address from `{ready}`"))?
        .to_owned();
    peers.push(Some(Peer {
        name: "sluice",
        urls: route_names
            .iter()
            .map(|n| (*n, format!("http://{client}/v1")))
            .collect(),
        pids: route_names.iter().map(|n| (*n, sluice.pid())).collect(),
        version: Some(format!(
            "sluice {} ({})",
            env!("CARGO_PKG_VERSION"),
            sluice_bin.display()
        )),
        fresh_rss_kib: procfs::rss_kib(sluice.pid()).ok(),
    }));

    let lg = Loadgen {
        binary: loadgen_bin.to_path_buf(),
        cpus: Some(args.load_cpu.clone()),
        dir: dir.to_path_buf(),
    };
    let timeout = Duration::from_secs(30);
    let run_for = |peer: &Peer,
                   sc: &report::Scenario,
                   duration: Duration,
                   warmup: Duration|
     -> Result<Run, String> {
        Ok(Run {
            url: peer
                .urls
                .get(sc.upstream)
                .ok_or("no URL for the route")?
                .clone(),
            model: sc.upstream.to_owned(),
            stream: sc.stream,
            concurrency: sc.concurrency,
            duration: Some(duration),
            requests: None,
            warmup,
            timeout,
            stall_threshold: None,
            max_tokens: args.tokens.max(1) * 2,
            prompt_tokens: 32,
            source_ips: None,
            rate: None,
            workers: 1,
        })
    };

    // Warm-up: every scenario against every peer, not recorded.
    eprintln!(
        "warm-up: {} per scenario and peer",
        humantime::format_duration(args.warmup)
    );
    for peer in peers.iter().flatten() {
        for sc in &SCENARIOS {
            let run = run_for(peer, sc, args.warmup, Duration::ZERO)?;
            let pid = *peer.pids.get(sc.upstream).ok_or("no pid")?;
            let (r, _) = lg.measured(&run, &format!("warmup-{}-{}", peer.name, sc.name), pid)?;
            if r.requests_ok == 0 {
                return Err(format!(
                    "warm-up of {} / {} got no successful response (errors: {:?}, e.g. {:?})",
                    peer.name, sc.name, r.errors, r.error_examples
                ));
            }
        }
    }

    // Interleaved rounds.
    let mut measures: BTreeMap<&'static str, BTreeMap<String, Vec<Measure>>> = BTreeMap::new();
    for round in 1..=args.rounds {
        for peer in peers.iter().flatten() {
            for sc in &SCENARIOS {
                let run = run_for(peer, sc, args.duration, args.run_warmup)?;
                let pid = *peer.pids.get(sc.upstream).ok_or("no pid")?;
                let tag = format!("r{round}-{}-{}", peer.name, sc.name);
                let (r, cpu) = lg.measured(&run, &tag, pid)?;
                let m = Measure::new(&r, cpu, ticks);
                eprintln!(
                    "round {round}/{} {:<6} {:<10} {:>9.1} req/s  cpu {:>7} us/req  p50 {:>7} ms  p99 {:>7} ms{}",
                    args.rounds,
                    peer.name,
                    sc.name,
                    m.rps,
                    m.cpu_us_per_request.map_or("-".into(), |v| format!("{v:.1}")),
                    m.latency_ms.p50.map_or("-".into(), |v| format!("{v:.3}")),
                    m.latency_ms.p99.map_or("-".into(), |v| format!("{v:.3}")),
                    if m.failed > 0 { format!("  FAILED {} {:?}", m.failed, r.error_examples) } else { String::new() },
                );
                measures
                    .entry(peer.name)
                    .or_default()
                    .entry(sc.name.to_owned())
                    .or_default()
                    .push(m);
            }
        }
    }

    // Memory: idle, then with many open slow streams.
    let mut memory: BTreeMap<&'static str, Memory> = BTreeMap::new();
    for peer in peers.iter().flatten() {
        let pid = *peer.pids.get("slow").ok_or("no pid")?;
        let idle = procfs::family_rss_kib(pid)?;
        let fds_idle = procfs::family_fds(pid)?;
        let n = args.slow_streams;
        let run = Run {
            url: peer.urls.get("slow").ok_or("no URL")?.clone(),
            model: "slow".into(),
            stream: true,
            concurrency: n,
            duration: None,
            requests: Some(u64::from(n)),
            warmup: Duration::ZERO,
            timeout: Duration::from_millis(args.slow_itl_ms * u64::from(args.tokens) * 3)
                + Duration::from_secs(30),
            stall_threshold: Some(Duration::from_millis(args.slow_itl_ms * 2)),
            max_tokens: args.tokens.max(1) * 2,
            prompt_tokens: 32,
            source_ips: None,
            rate: Some(2000.0),
            workers: 1,
        };
        let held = lg.holding(
            &run,
            &format!("slow-{}", peer.name),
            pid,
            Duration::from_millis(250),
            || None,
        )?;
        let m = Memory {
            idle_rss_kib: idle,
            streams: u64::from(n),
            streams_rss_kib: held.peak_rss_kib,
            kib_per_stream: Memory::per_stream(idle, held.peak_rss_kib, u64::from(n)),
            fds_idle,
            fds_with_streams: held.peak_fds,
            streams_ok: held.report.requests_ok,
            streams_failed: held.report.requests_failed,
            stalls: held.report.stalls,
        };
        eprintln!(
            "memory {:<6} idle {:.1} MiB, with {n} slow streams {:.1} MiB ({} KiB/stream), peak fds {}, ok {} failed {} stalls {}",
            peer.name,
            idle as f64 / 1024.0,
            held.peak_rss_kib as f64 / 1024.0,
            m.kib_per_stream.map_or("-".into(), |v| format!("{v:.2}")),
            held.peak_fds,
            m.streams_ok,
            m.streams_failed,
            m.stalls
        );
        memory.insert(peer.name, m);
    }

    // Report.
    let mut peer_reports = Vec::new();
    for (i, name) in PEERS.iter().enumerate() {
        let peer = peers.get(i).and_then(Option::as_ref);
        let rounds = measures.remove(name).unwrap_or_default();
        let summary: BTreeMap<String, Summary> = rounds
            .iter()
            .map(|(k, v)| (k.clone(), Summary::of(&v.iter().collect::<Vec<_>>())))
            .collect();
        peer_reports.push(PeerReport {
            name,
            available: peer.is_some(),
            note: notes.get(name).cloned(),
            version: peer.and_then(|p| p.version.clone()),
            fresh_rss_kib: peer.and_then(|p| p.fresh_rss_kib),
            rounds,
            summary,
            memory: memory.remove(name),
        });
    }
    let sums = [0, 1, 2].map(|i| {
        peer_reports
            .get(i)
            .filter(|p| p.available)
            .map(|p| &p.summary)
    });
    let mems = [0, 1, 2].map(|i| peer_reports.get(i).and_then(|p| p.memory.as_ref()));
    let rows = report::rows(sums, mems, u64::from(args.slow_streams));
    let table = report::table(&rows);
    let losses: Vec<String> = rows
        .iter()
        .filter(|r| r.sluice_loses_to_nginx(0.05))
        .map(|r| r.key.clone())
        .collect();
    let p50 = report::added_latency_us(&rows, "json_c1.latency_p50");
    let p99 = report::added_latency_us(&rows, "json_c1.latency_p99");

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let out = args.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("compare-{date}.json"))
    });
    let doc = CompareReport {
        bench: "sluice-bench compare",
        date,
        command,
        machine,
        revision,
        settings: Settings {
            rounds: args.rounds,
            duration_s: secs(args.duration),
            run_warmup_s: secs(args.run_warmup),
            warmup_s: secs(args.warmup),
            tokens: args.tokens,
            paced_itl_ms: args.paced_itl_ms,
            slow_streams: args.slow_streams,
            slow_itl_ms: args.slow_itl_ms,
            gateway_cpu: args.gateway_cpu.clone(),
            load_cpu: args.load_cpu.clone(),
            sluice_workers: 1,
            nginx_worker_processes: 1,
            scenarios: SCENARIOS.to_vec(),
            file_limit,
        },
        peers: peer_reports,
        rows,
        added_latency_c1_p50_us: p50,
        added_latency_c1_p99_us: p99,
        sluice_loses_to_nginx: losses.clone(),
        wall_time_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };

    println!("\n{table}");
    let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} us"));
    println!(
        "added latency over direct at c=1: nginx p50 {} p99 {}; sluice p50 {} p99 {}",
        us(p50[0]),
        us(p99[0]),
        us(p50[1]),
        us(p99[1])
    );
    for note in notes.values() {
        println!("note: {note}");
    }
    if !losses.is_empty() {
        println!("Sluice loses to nginx (>5%) on: {}", losses.join(", "));
    }
    session::write_report(&out, &doc, started)?;
    drop(keep);
    drop(sluice);
    Ok(())
}

fn start_nginx(
    nginx: &Path,
    dir: &Path,
    cpu: &str,
    routes: &[Route],
    streams: u32,
) -> Result<(Child, Vec<u16>), String> {
    let ports = routes
        .iter()
        .map(|_| children::free_port())
        .collect::<Result<Vec<_>, _>>()?;
    let conf_path = dir.join("nginx.conf");
    let conf = configs::nginx_conf(dir, routes, &ports, streams * 2 + 1024);
    std::fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
    let spec = Spec {
        name: "nginx".into(),
        program: nginx.to_path_buf(),
        args: vec![
            "-e".into(),
            dir.join("nginx-error.log").display().to_string(),
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            conf_path.display().to_string(),
        ],
        cpus: Some(cpu.to_owned()),
        log: dir.join("nginx.log"),
    };
    let mut child = Child::spawn(&spec)?;
    for p in &ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], *p));
        if let Err(e) = children::wait_port(addr, Duration::from_secs(10)) {
            let alive = child.alive();
            return Err(format!(
                "{e} (nginx {}); {}\n{}",
                if alive { "running" } else { "exited" },
                dir.join("nginx-error.log").display(),
                children::tail(&dir.join("nginx-error.log"), 10)
            ));
        }
    }
    // The worker must exist for its CPU time to be read.
    let deadline = Instant::now() + Duration::from_secs(5);
    while procfs::family(child.pid())?.len() < 2 {
        if Instant::now() > deadline {
            return Err("nginx started no worker process".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, ports))
}
