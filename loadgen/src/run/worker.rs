//! A worker thread: its own monoio runtime (io_uring, or epoll as a fallback), its share of
//! the virtual users (one task and one keep-alive connection each) and a control task that
//! publishes progress and reacts to the stop signals.
//!
//! **Invariant:** nothing here is shared between workers except [`Shared`] (settings, the stop
//! flags, the ticket counter of a closed loop with `--requests`, and the progress counters, each
//! written by one worker). Results stay in the worker's own [`Recorder`] until the end.

use super::args::Settings;
use super::client::{self, Env, Failure, Observed, User};
use super::events::Classifier;
use super::report::{ErrorClass, Finished, Recorder};
use super::schedule::{share, Arrivals, Schedule};
use sluice_proto_llm::usage::UsageExtractor;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// io_uring submission queue entries per worker.
const RING_ENTRIES: u32 = 2048;
/// How often the control task publishes progress and looks at the stop flags.
const TICK: Duration = Duration::from_millis(10);
/// Longest sleep of a user waiting for its next due time, so an interrupt is seen quickly.
const WAKE_CHECK: Duration = Duration::from_millis(50);
/// Closed loop: pause of a user whose connection attempt failed, so a refused port does not
/// turn into a busy loop of errors; doubled for each failure in a row, up to the maximum.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What all workers and the main thread share.
pub struct Shared {
    pub settings: Settings,
    /// Stop starting requests (the first SIGINT or SIGTERM).
    pub interrupted: AtomicBool,
    /// Give up on the requests in flight (2 s after the interrupt, or a second signal).
    pub abort: AtomicBool,
    /// Closed loop with `--requests`: measured requests not yet started, over all workers.
    tickets: AtomicU64,
    /// One per worker.
    pub progress: Vec<Progress>,
}

impl Shared {
    pub fn new(settings: Settings) -> Self {
        let workers = settings.workers;
        Shared {
            tickets: AtomicU64::new(settings.requests.unwrap_or(u64::MAX)),
            settings,
            interrupted: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            progress: (0..workers).map(|_| Progress::default()).collect(),
        }
    }

    /// Takes the right to start one measured request.
    fn take_ticket(&self) -> bool {
        self.tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// A worker's live counters, written by that worker only and read for the progress line.
/// Aligned so that two workers' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Progress {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Requests finished during the warm-up (not recorded).
    pub warmup: AtomicU64,
    pub in_flight: AtomicU64,
}

/// What a worker hands back.
pub struct Outcome {
    pub recorder: Recorder,
    /// Requests in flight when the run was aborted.
    pub abandoned: u64,
    /// Requests (warm-up included) that got a response head.
    pub responses: u64,
    /// Requests finished during the warm-up (not recorded).
    pub warmup: u64,
}

/// Messages to the main thread.
pub enum Msg {
    /// The worker's runtime is up, on this driver (or could not start).
    Ready(usize, Result<&'static str, String>),
    Finished(usize, Result<Box<Outcome>, String>),
    /// The worker thread is ending (sent on unwinding too, so a worker that dies is noticed).
    Gone(usize),
    /// SIGINT or SIGTERM.
    Signal,
}

/// Runs worker `id`: reports `Ready`, waits for the start time on `go` (`None`: the run is
/// called off), then runs its users and reports `Finished`.
pub fn run(id: usize, shared: Arc<Shared>, tx: Sender<Msg>, go: Receiver<Option<Instant>>) {
    let _gone = Gone(id, tx.clone());
    let start: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
    let started = {
        let (start, tx) = (start.clone(), tx.clone());
        move |driver: sluice_core::runtime::Driver| {
            let _ = tx.send(Msg::Ready(id, Ok(driver.as_str())));
            start.set(go.recv().ok().flatten());
        }
    };
    let driver = shared.settings.io_driver;
    let done = tx.clone();
    let fut = async move {
        let Some(t0) = start.get() else { return };
        let outcome = drive(id, shared, t0).await;
        // Sent from inside the runtime, so the results are out even if tearing the runtime
        // down (with abandoned tasks in it) went wrong.
        let _ = done.send(Msg::Finished(id, outcome));
    };
    if let Err(e) = sluice_core::runtime::block_on(id, driver, RING_ENTRIES, started, fut) {
        let _ = tx.send(Msg::Ready(id, Err(e)));
    }
}

/// Sends [`Msg::Gone`] when dropped.
struct Gone(usize, Sender<Msg>);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = self.1.send(Msg::Gone(self.0));
    }
}

/// A worker's state, shared by its tasks.
struct Ctx {
    shared: Arc<Shared>,
    id: usize,
    measure_from: Instant,
    end: Option<Instant>,
    /// Open loop only.
    schedule: Option<RefCell<Schedule>>,
    recorder: RefCell<Recorder>,
    usage: RefCell<UsageExtractor>,
    classifier: Classifier,
    in_flight: Cell<u64>,
    live_users: Cell<usize>,
    /// Interrupted: users start nothing new.
    stopping: Cell<bool>,
    responses: Cell<u64>,
    warmup_done: Cell<u64>,
}

async fn drive(id: usize, shared: Arc<Shared>, t0: Instant) -> Result<Box<Outcome>, String> {
    let s = &shared.settings;
    let measure_from = t0 + s.warmup;
    let end = s.duration.map(|d| measure_from + d);
    let users = share(s.concurrency as u64, s.workers, id);
    let schedule = s.rate.map(|rate| {
        let arrivals = Arrivals::new(rate.arrival, rate.per_second, id, s.workers, s.seed);
        let limit = s.requests.map(|n| share(n, s.workers, id));
        RefCell::new(Schedule::new(arrivals, t0, measure_from, end, limit))
    });
    let ctx = Rc::new(Ctx {
        id,
        measure_from,
        end,
        schedule,
        recorder: RefCell::new(Recorder::new()?),
        usage: RefCell::new(UsageExtractor::new()),
        classifier: Classifier::new(),
        in_flight: Cell::new(0),
        live_users: Cell::new(0),
        stopping: Cell::new(false),
        responses: Cell::new(0),
        warmup_done: Cell::new(0),
        shared: shared.clone(),
    });
    // Users of all workers are numbered `id + k * workers`, which spreads the source
    // addresses evenly.
    for k in 0..users as usize {
        let live = LiveUser::new(ctx.clone());
        monoio::spawn(user(live, id + k * s.workers));
    }
    let abandoned = control(&ctx).await;
    let recorder = ctx.recorder.borrow().clone();
    Ok(Box::new(Outcome {
        recorder,
        abandoned,
        responses: ctx.responses.get(),
        warmup: ctx.warmup_done.get(),
    }))
}

/// Counts a user task as live from its spawn until it ends (or is dropped).
struct LiveUser(Rc<Ctx>);

impl LiveUser {
    fn new(ctx: Rc<Ctx>) -> Self {
        ctx.live_users.set(ctx.live_users.get() + 1);
        LiveUser(ctx)
    }
}

impl Drop for LiveUser {
    fn drop(&mut self) {
        self.0
            .live_users
            .set(self.0.live_users.get().saturating_sub(1));
    }
}

/// Publishes progress until every user has ended (or the run is aborted); returns how many
/// requests were abandoned.
async fn control(ctx: &Ctx) -> u64 {
    let progress = ctx.shared.progress.get(ctx.id);
    loop {
        if let Some(p) = progress {
            let r = ctx.recorder.borrow();
            p.ok.store(r.ok, Ordering::Relaxed);
            p.failed.store(r.failed, Ordering::Relaxed);
            p.warmup.store(ctx.warmup_done.get(), Ordering::Relaxed);
            p.in_flight.store(ctx.in_flight.get(), Ordering::Relaxed);
        }
        if ctx.live_users.get() == 0 {
            return 0;
        }
        if ctx.shared.abort.load(Ordering::Relaxed) {
            return ctx.in_flight.get();
        }
        if ctx.shared.interrupted.load(Ordering::Relaxed) {
            ctx.stopping.set(true);
        }
        monoio::time::sleep(TICK).await;
    }
}

/// One virtual user: requests back to back (closed loop) or at the due times of the
/// schedule (open loop), on its own keep-alive connection.
async fn user(live: LiveUser, index: usize) {
    let ctx = &*live.0;
    let s = &ctx.shared.settings;
    let source = match s.source_ips.len() {
        0 => None,
        n => s.source_ips.get(index % n).copied(),
    };
    let env = Env {
        target: s.target,
        request: &s.request,
        stall_threshold: s.stall_threshold,
        classifier: &ctx.classifier,
        usage: &ctx.usage,
        responses: &ctx.responses,
    };
    let mut user = User::new(source);
    let mut seen = Observed::default();
    let mut backoff = CONNECT_BACKOFF;
    loop {
        let intended = match &ctx.schedule {
            Some(schedule) => {
                let due = schedule.borrow_mut().next_due();
                let Some(due) = due else { break };
                if !wait_until(ctx, due).await {
                    break;
                }
                Some(due)
            }
            None => {
                let now = Instant::now();
                if ctx.stopping.get() || ctx.end.is_some_and(|end| now >= end) {
                    break;
                }
                if now >= ctx.measure_from && !ctx.shared.take_ticket() {
                    break;
                }
                // Closed loop: the request is due when it starts.
                None
            }
        };
        let class = one_request(ctx, &env, &mut user, &mut seen, intended).await;
        if class != Some(ErrorClass::Connect) {
            backoff = CONNECT_BACKOFF;
        } else if ctx.schedule.is_none() {
            monoio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
        }
    }
}

/// Sleeps until `due`; false if the run was interrupted first.
async fn wait_until(ctx: &Ctx, due: Instant) -> bool {
    loop {
        if ctx.stopping.get() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        monoio::time::sleep((due - now).min(WAKE_CHECK)).await;
    }
}

/// Runs one request and records it; returns its error class, if it failed. `due`: the
/// intended start of an open-loop request (latency counts from it); `None` means now.
async fn one_request(
    ctx: &Ctx,
    env: &Env<'_>,
    user: &mut User,
    seen: &mut Observed,
    due: Option<Instant>,
) -> Option<ErrorClass> {
    let timeout = ctx.shared.settings.timeout;
    seen.reset();
    user.gaps_us.clear();
    let started = Instant::now();
    let due = due.unwrap_or(started);
    ctx.in_flight.set(ctx.in_flight.get() + 1);
    let result = match monoio::time::timeout(timeout, client::send(env, user, seen)).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            class: ErrorClass::Timeout,
            message: format!(
                "no complete response within {}",
                humantime::format_duration(timeout)
            ),
        }),
    };
    let end = Instant::now();
    ctx.in_flight.set(ctx.in_flight.get().saturating_sub(1));
    if due >= ctx.measure_from {
        ctx.recorder.borrow_mut().record(&Finished {
            due,
            started,
            end,
            error: result.as_ref().err().map(|f| (f.class, f.message.as_str())),
            first_token: seen.first_token,
            usage_tokens: seen.usage_tokens,
            content_events: seen.content_events,
            streamed: seen.streamed,
            gaps_us: &user.gaps_us,
            stalls: seen.stalls,
        });
    } else {
        ctx.warmup_done.set(ctx.warmup_done.get() + 1);
    }
    result.err().map(|f| f.class)
}
