//! `sluice-loadgen run`: a load generator for OpenAI-compatible endpoints, itself thread per
//! core so that it can hold far more streams than the server it measures.
//!
//! Sans-IO parts, each with unit tests:
//! - [`args`] – the flags, and the validated [`args::Settings`] (target, request bytes).
//! - [`request`] – the request body and head, built once per run.
//! - [`schedule`] – open-loop arrivals (constant or seeded Poisson) split over the workers.
//! - [`events`] – what an SSE event means (content, done, error).
//! - [`report`] – per-worker recorders (hdrhistogram), merging, percentiles, table and JSON.
//!
//! IO parts:
//! - [`worker`] – a runtime per thread, one task per virtual user, a control task.
//! - [`client`] – one user's keep-alive connection and request/response exchange.
//! - [`limits`] – `RLIMIT_NOFILE`.
//!
//! This module runs the whole thing: starts the workers, starts them all at the same instant,
//! prints progress, turns signals into a stop, merges the results and reports them.

mod args;
mod client;
mod events;
mod limits;
mod report;
mod request;
mod schedule;
mod worker;

pub use args::RunArgs;

use args::Settings;
use report::{Recorder, Report, RunInfo};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Msg, Shared};

/// Exit status when no request got a response, the run could not start or the report could
/// not be written.
const EXIT_FAILED: u8 = 1;
/// Exit status for bad arguments (clap uses the same for the errors it finds).
const EXIT_USAGE: u8 = 2;
/// How long requests in flight get after an interrupt.
const GRACE: Duration = Duration::from_secs(2);
/// How long the workers may take to start their runtimes.
const STARTUP: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Runs the load and reports. See `--help` for the exit status.
pub fn run(args: RunArgs) -> ExitCode {
    let settings = match Settings::try_from(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-loadgen run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Created now, so a bad path fails before the run rather than after it.
    let json = match &settings.json {
        None => None,
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some((path.clone(), f)),
            Err(e) => {
                eprintln!("sluice-loadgen run: --json {}: {e}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let needed = settings.concurrency as u64 + limits::SPARE_FILES;
    let files = limits::raise_nofile(needed);
    if files < needed {
        eprintln!(
            "sluice-loadgen run: warning: the open-files limit is {files} but --concurrency {} \
             needs about {needed}; connections beyond it fail as `connect` errors (raise it \
             with `ulimit -n`)",
            settings.concurrency
        );
    }
    let heading = heading(&settings);
    let config = config_json(&settings);
    let (report, responses) = match execute(settings, config) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("sluice-loadgen run: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{heading}\n{}", report.table());
    let _ = stdout.flush();
    if let Some((path, file)) = json {
        let written = serde_json::to_writer_pretty(std::io::BufWriter::new(file), &report)
            .map_err(|e| e.to_string());
        if let Err(e) = written {
            eprintln!("sluice-loadgen run: writing {}: {e}", path.display());
            return ExitCode::from(EXIT_FAILED);
        }
    }
    if responses == 0 {
        eprintln!("sluice-loadgen run: no request got a response");
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::SUCCESS
}

/// Starts the workers, runs until they are done, and merges their results. Returns the report
/// and how many requests got a response.
fn execute(settings: Settings, config: serde_json::Value) -> Result<(Report, u64), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let workers = settings.workers;
    let warmup = settings.warmup;
    let show_progress = !settings.quiet && std::io::stderr().is_terminal();
    let shared = Arc::new(Shared::new(settings));
    let (tx, rx) = mpsc::channel::<Msg>();

    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    let signal_handle = signals.handle();
    let signal_tx = tx.clone();
    std::thread::Builder::new()
        .name("loadgen-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if signal_tx.send(Msg::Signal).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    let mut go = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let (go_tx, go_rx) = mpsc::channel();
        let (shared, tx) = (shared.clone(), tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("loadgen-w{id}"))
            .spawn(move || worker::run(id, shared, tx, go_rx))
            .map_err(|e| format!("cannot start worker thread {id}: {e}"))?;
        go.push(go_tx);
        threads.push(thread);
    }
    drop(tx);

    // Every runtime up (and its driver known) before anything is sent.
    let mut drivers = vec![""; workers];
    let mut failure = None;
    let mut ready = 0;
    while ready < workers && failure.is_none() {
        match rx.recv_timeout(STARTUP) {
            Ok(Msg::Ready(id, Ok(driver))) => {
                if let Some(slot) = drivers.get_mut(id) {
                    *slot = driver;
                }
                ready += 1;
            }
            Ok(Msg::Ready(_, Err(e))) => failure = Some(e),
            Ok(Msg::Signal) => failure = Some("interrupted while starting".to_owned()),
            Ok(Msg::Gone(id)) => failure = Some(format!("worker {id} ended while starting")),
            Ok(Msg::Finished(..)) => {}
            Err(_) => failure = Some("the workers did not start in time".to_owned()),
        }
    }
    if let Some(e) = failure {
        for g in &go {
            let _ = g.send(None);
        }
        signal_handle.close();
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }

    let t0 = Instant::now();
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for g in &go {
        let _ = g.send(Some(t0));
    }

    let mut merged = Recorder::new()?;
    let mut reported = vec![false; workers];
    let mut abandoned = 0;
    let mut responses = 0;
    let mut warmup_requests = 0;
    let mut interrupted_at: Option<Instant> = None;
    let mut progress = ProgressLine::new(show_progress, t0, warmup);
    while reported.iter().any(|r| !r) {
        let mut wake = progress.next;
        if let Some(at) = interrupted_at {
            wake = wake.min(at + GRACE);
        }
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Msg::Finished(id, outcome)) => {
                if let Some(r) = reported.get_mut(id) {
                    *r = true;
                }
                match outcome {
                    Ok(o) => {
                        merged.merge(&o.recorder);
                        abandoned += o.abandoned;
                        responses += o.responses;
                        warmup_requests += o.warmup;
                    }
                    Err(e) => eprintln!("sluice-loadgen run: worker {id}: {e}"),
                }
            }
            Ok(Msg::Signal) if interrupted_at.is_none() => {
                interrupted_at = Some(Instant::now());
                shared.interrupted.store(true, Ordering::Relaxed);
                progress.clear();
                eprintln!(
                    "sluice-loadgen run: interrupted: no new requests; waiting up to {} s for \
                     those in flight (signal again to stop now)",
                    GRACE.as_secs()
                );
            }
            Ok(Msg::Signal) => shared.abort.store(true, Ordering::Relaxed),
            Ok(Msg::Gone(id)) => {
                // After `Finished` when the worker ended normally; alone if it died.
                if let Some(r) = reported.get_mut(id).filter(|r| !**r) {
                    *r = true;
                    eprintln!("sluice-loadgen run: worker {id} died; its results are missing");
                }
            }
            Ok(Msg::Ready(..)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if interrupted_at.is_some_and(|at| at.elapsed() >= GRACE) {
            shared.abort.store(true, Ordering::Relaxed);
        }
        progress.tick(&shared);
    }
    progress.clear();
    signal_handle.close();
    for t in threads {
        let _ = t.join();
    }

    let measure_from = t0 + warmup;
    let end = merged.last_end.unwrap_or_else(Instant::now);
    let info = RunInfo {
        measured: end.saturating_duration_since(measure_from),
        interrupted: interrupted_at.is_some(),
        abandoned,
        warmup: warmup_requests,
        started_at,
        drivers,
        config,
    };
    Ok((Report::new(&merged, info), responses))
}

/// The live line on stderr (only on a terminal).
struct ProgressLine {
    enabled: bool,
    t0: Instant,
    warmup: Duration,
    next: Instant,
    last: (Instant, u64),
    shown: bool,
}

impl ProgressLine {
    fn new(enabled: bool, t0: Instant, warmup: Duration) -> Self {
        ProgressLine {
            enabled,
            t0,
            warmup,
            next: t0 + PROGRESS_EVERY,
            last: (t0, 0),
            shown: false,
        }
    }

    fn tick(&mut self, shared: &Shared) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + PROGRESS_EVERY;
        if !self.enabled {
            return;
        }
        let sum = |f: fn(&worker::Progress) -> u64| shared.progress.iter().map(f).sum::<u64>();
        let ok = sum(|p| p.ok.load(Ordering::Relaxed));
        let failed = sum(|p| p.failed.load(Ordering::Relaxed));
        let warm = sum(|p| p.warmup.load(Ordering::Relaxed));
        let in_flight = sum(|p| p.in_flight.load(Ordering::Relaxed));
        let finished = ok + failed + warm;
        let dt = now.saturating_duration_since(self.last.0).as_secs_f64();
        let rps = if dt > 0.0 {
            finished.saturating_sub(self.last.1) as f64 / dt
        } else {
            0.0
        };
        self.last = (now, finished);
        let elapsed = now.saturating_duration_since(self.t0);
        let phase = if elapsed < self.warmup {
            " warm-up"
        } else {
            ""
        };
        eprint!(
            "\r\x1b[K[{:>6.1}s{phase}] ok {ok}  failed {failed}  rps {rps:.1}  in flight {in_flight}",
            elapsed.as_secs_f64()
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

/// The first lines of the table: what was run.
fn heading(s: &Settings) -> String {
    let stream = match (s.stream, s.include_usage) {
        (false, _) => "",
        (true, true) => ", stream with usage",
        (true, false) => ", stream without usage",
    };
    let mode = match s.rate {
        None => format!("closed loop, {} users", s.concurrency),
        Some(r) => format!(
            "open loop {} req/s {} (seed {}), at most {} in flight",
            r.per_second,
            r.arrival.name(),
            s.seed,
            s.concurrency
        ),
    };
    format!(
        "{} (POST {}), model {}{stream}\n{mode}, {} workers\n",
        s.url, s.path, s.model, s.workers
    )
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The settings, as the report's `config`. Header values and the API key are left out: they
/// may be secrets.
fn config_json(s: &Settings) -> serde_json::Value {
    use clap::ValueEnum;
    serde_json::json!({
        "url": s.url,
        "target": s.target.to_string(),
        "path": s.path,
        "endpoint": s.endpoint,
        "model": s.model,
        "stream": s.stream,
        "include_usage": s.include_usage,
        "concurrency": s.concurrency,
        "duration_s": s.duration.map(secs),
        "requests": s.requests,
        "rate": s.rate.map(|r| r.per_second),
        "arrival": s.rate.map(|r| r.arrival),
        "seed": s.seed,
        "prompt_tokens": s.prompt_tokens,
        "max_tokens": s.max_tokens,
        "warmup_s": secs(s.warmup),
        "timeout_s": secs(s.timeout),
        "stall_threshold_ms": secs(s.stall_threshold) * 1000.0,
        "workers": s.workers,
        "io_driver": s.io_driver.to_possible_value().map(|v| v.get_name().to_owned()),
        "source_ips": s.source_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "headers": s.header_names,
        "api_key": s.api_key,
    })
}
