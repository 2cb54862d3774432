//! Process start-up and control: binds the listeners, starts one pinned worker thread per
//! core (io_uring with an epoll fallback), runs the admin listener, and then runs the control
//! loop: signals (SIGHUP reload, SIGTERM/SIGINT drain), config file changes, worker exits.
//!
//! The control thread is the only place that builds config snapshots. It hands each worker the
//! new `Arc<Config>` over the worker's channel; the worker swaps it in between requests.

use crate::admin::AdminState;
use crate::audit::AuditSink;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::quota::{Board, BoardCell, LimitTable};
use crate::runtime::Driver;
use crate::upstream::tls::TlsConfigs;
use crate::worker::Control;
use crossbeam_channel::{Receiver, Sender};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Called with every config the control thread installs (start-up included), e.g. to apply
/// its log level.
pub type ConfigHook = Box<dyn Fn(&Config) + Send>;

pub struct RunOptions {
    pub config: Config,
    /// Where the config came from (reloaded on SIGHUP and on change); None = embedded default.
    pub config_path: Option<PathBuf>,
    pub on_config: Option<ConfigHook>,
}

/// How long start-up waits for every worker to report its IO driver.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// File-change events closer together than this are one change (editors write in steps).
const WATCH_DEBOUNCE: Duration = Duration::from_millis(150);

/// Create a listening socket with SO_REUSEPORT so every worker can have its own.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// What the control loop reacts to.
enum Event {
    Signal(i32),
    /// Something changed in the config file's directory.
    FileChanged,
    WorkerExited(usize),
}

pub fn config_info_json(cfg: &Config) -> String {
    serde_json::json!({
        "path": cfg.source.path.as_ref().map(|p| p.display().to_string()),
        "hash": cfg.source.hash,
        "loaded_at_unix": cfg.source.loaded_at_unix,
        "workers": cfg.server.workers,
        "backends": cfg.backends.iter().map(|b| serde_json::json!({
            "name": b.name,
            "provider": b.provider.as_str(),
            "base_url": b.upstream.as_ref().map(|u| u.display.clone()),
            "api_keys": b.api_keys.len(),
        })).collect::<Vec<_>>(),
        "models": cfg.models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

/// Binds every address in `addrs` once per worker with SO_REUSEPORT: the first socket per
/// address resolves port 0, then every other worker binds the same port. Returns the sockets
/// per worker and the bound addresses.
pub fn bind_listeners(
    addrs: &[SocketAddr],
    workers: usize,
) -> Result<(Vec<Vec<std::net::TcpListener>>, Vec<SocketAddr>), String> {
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers.max(1)).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in addrs {
        let first =
            bind_reuseport(*addr, 4096).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let actual = first.local_addr().map_err(|e| e.to_string())?;
        bound.push(actual);
        let mut slots = per_worker.iter_mut();
        if let Some(slot) = slots.next() {
            slot.push(first);
        }
        for slot in slots {
            slot.push(
                bind_reuseport(actual, 4096)
                    .map_err(|e| format!("cannot listen on {actual}: {e}"))?,
            );
        }
    }
    Ok((per_worker, bound))
}

pub fn run(opts: RunOptions) -> Result<(), String> {
    let config = Arc::new(opts.config);
    if let Some(hook) = &opts.on_config {
        hook(&config);
    }
    let tls = Arc::new(crate::upstream::tls::build(&config)?);
    let workers = config.server.workers.max(1);
    let (per_worker, bound) = bind_listeners(&config.server.listen, workers)?;

    // Signals are caught from here on, so a SIGTERM during start-up is not lost.
    let (events_tx, events) = crossbeam_channel::unbounded::<Event>();
    forward_signals(events_tx.clone())?;

    let audit = AuditSink::start(config.audit.path.clone(), config.audit.buffer)
        .map_err(|e| format!("cannot start the audit writer: {e}"))?;
    let board = BoardCell::new(Board::new(Arc::new(LimitTable::build(&config)), workers));
    let auth = Arc::new(Authenticator::new(&config).map_err(|e| e.to_string())?);
    log_auth(&config, &auth);
    let mut metrics = Metrics::new(workers);
    metrics.audit = Some(audit.clone());
    metrics.board = Some(board.clone());
    // Fleet mode: one round with Redis before serving, so the first requests see the fleet's
    // counts (and `fail_closed` refuses from the start if Redis is down), then a thread.
    let fleet_stats = Arc::new(crate::quota::fleet::FleetStats::default());
    let mut fleet = crate::quota::fleet::FleetSync::new(&config.quota, fleet_stats.clone())?;
    if let Some(f) = &mut fleet {
        metrics.fleet = Some(fleet_stats);
        f.round(&board.current(), crate::time::unix_ms());
    }
    let state = Arc::new(AdminState {
        workers,
        ..Default::default()
    });
    state.set_config_info(config_info_json(&config));
    let admin_addr = match config.server.admin {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on admin {addr}: {e}"))?;
            let actual = l.local_addr().map_err(|e| e.to_string())?;
            crate::admin::spawn(l, metrics.clone(), state.clone()).map_err(|e| e.to_string())?;
            Some(actual)
        }
        None => None,
    };

    let cores = if config.server.pin_workers {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let (started_tx, started) = crossbeam_channel::bounded::<Result<Driver, String>>(workers);
    let mut controls = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for (id, listeners) in per_worker.into_iter().enumerate() {
        let (tx, rx) = crossbeam_channel::unbounded::<Control>();
        controls.push(tx);
        let spec = WorkerSpec {
            id,
            config: config.clone(),
            tls: tls.clone(),
            listeners,
            shard: metrics
                .shards
                .get(id)
                .cloned()
                .ok_or("metrics shard missing")?,
            state: state.clone(),
            core: if cores.is_empty() {
                None
            } else {
                cores.get(id % cores.len()).copied()
            },
            control: rx,
            started: started_tx.clone(),
            exited: events_tx.clone(),
            audit: audit.clone(),
            board: board.current(),
            auth: auth.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("sluice-w{id}"))
            .spawn(move || worker_thread(spec))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        handles.push(handle);
    }
    drop(started_tx);

    // Every worker must be running before we say we are listening.
    let mut failure = None;
    for _ in 0..workers {
        match started.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert_with(|| "a worker did not start in time".to_owned());
                break;
            }
        }
    }
    if let Some(e) = failure {
        for c in &controls {
            let _ = c.send(Control::Drain(Instant::now()));
        }
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }

    // The machine-readable ready line tests and scripts wait for.
    let listen_list: Vec<String> = bound.iter().map(ToString::to_string).collect();
    let admin_str = admin_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(listen = %listen_list.join(","), admin = %admin_str, workers, "sluice started");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sluice listening client={} admin={}",
            listen_list.join(","),
            admin_str
        );
        let _ = out.flush();
    }

    // Keep the watcher alive for as long as the control loop runs.
    let _watcher = match &opts.config_path {
        Some(path) if config.server.watch_config => watch_config(path, events_tx.clone()),
        _ => None,
    };
    drop(events_tx);
    let (fleet_stop, fleet_stopped) = crossbeam_channel::bounded::<()>(1);
    let fleet_thread = match fleet {
        Some(f) => Some(
            f.spawn(board.clone(), fleet_stopped)
                .map_err(|e| format!("cannot start the quota sync thread: {e}"))?,
        ),
        None => None,
    };
    let mut control = ControlLoop {
        running: config,
        path: opts.config_path,
        controls,
        state,
        on_config: opts.on_config,
        workers_left: workers,
        audit,
        board,
    };
    control.run(&events);
    for h in handles {
        if h.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    drop(fleet_stop);
    if let Some(h) = fleet_thread {
        if h.join().is_err() {
            tracing::error!("the quota sync thread panicked");
        }
    }
    tracing::info!("sluice stopped");
    Ok(())
}

/// Everything one worker thread needs.
struct WorkerSpec {
    id: usize,
    config: Arc<Config>,
    tls: Arc<TlsConfigs>,
    listeners: Vec<std::net::TcpListener>,
    shard: Arc<crate::metrics::Shard>,
    state: Arc<AdminState>,
    core: Option<core_affinity::CoreId>,
    control: Receiver<Control>,
    started: Sender<Result<Driver, String>>,
    exited: Sender<Event>,
    audit: AuditSink,
    board: Arc<Board>,
    auth: Arc<Authenticator>,
}

/// Tells the control loop a worker thread ended, however it ended (panics included).
struct ExitNotice(usize, Sender<Event>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.1.send(Event::WorkerExited(self.0));
    }
}

fn worker_thread(spec: WorkerSpec) {
    let WorkerSpec {
        id,
        config,
        tls,
        listeners,
        shard,
        state,
        core,
        control,
        started,
        exited,
        audit,
        board,
        auth,
    } = spec;
    let _notice = ExitNotice(id, exited);
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(worker = id, "could not pin to core {}", core.id);
        }
    }
    let choice = config.server.io_driver;
    let entries = config.server.uring_entries;
    let announce = |d: Driver| {
        let code = match d {
            Driver::Uring => 1,
            Driver::Epoll => 2,
        };
        shard.io_driver.store(code, Ordering::Relaxed);
        state.workers_ready.fetch_add(1, Ordering::Relaxed);
        let _ = started.send(Ok(d));
    };
    let fut = crate::worker::run(crate::worker::Init {
        id,
        config,
        tls,
        listeners,
        metrics: shard.clone(),
        control,
        audit,
        board,
        auth,
    });
    if let Err(e) = crate::runtime::block_on(id, choice, entries, announce, fut) {
        let _ = started.send(Err(e));
    }
}

/// Says who may use the gateway; loudly when anyone may.
fn log_auth(config: &Config, auth: &Authenticator) {
    if auth.is_open() {
        tracing::warn!(
            "authentication: OPEN (no consumers configured): anyone who reaches the client listener may use every model"
        );
    } else {
        tracing::info!(
            consumers = config.consumers.len(),
            "authentication: {}",
            auth.describe()
        );
    }
    for w in auth.warnings() {
        tracing::warn!("authentication: {w}");
    }
}

/// Forwards SIGHUP, SIGINT and SIGTERM to the control loop from a small thread.
fn forward_signals(tx: Sender<Event>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// Watches the config file's directory (editors and Kubernetes replace files by renaming, so
/// watching the file itself would miss changes). Any event there may be a change; the control
/// loop compares content hashes before reloading.
fn watch_config(path: &Path, tx: Sender<Event>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(Event::FileChanged);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch the config file (reload with SIGHUP instead): {e}");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), "cannot watch the config directory (reload with SIGHUP instead): {e}");
        return None;
    }
    tracing::info!(path = %path.display(), "watching the config file for changes");
    Some(watcher)
}

struct ControlLoop {
    running: Arc<Config>,
    path: Option<PathBuf>,
    controls: Vec<Sender<Control>>,
    state: Arc<AdminState>,
    on_config: Option<ConfigHook>,
    workers_left: usize,
    audit: AuditSink,
    board: BoardCell,
}

impl ControlLoop {
    fn run(&mut self, events: &Receiver<Event>) {
        let mut draining = false;
        while let Ok(ev) = events.recv() {
            if let Event::FileChanged = ev {
                // Let a burst of events (write, chmod, rename) settle into one reload; handle
                // anything else that arrives meanwhile afterwards, in order.
                let mut later = Vec::new();
                while let Ok(next) = events.recv_timeout(WATCH_DEBOUNCE) {
                    if !matches!(next, Event::FileChanged) {
                        later.push(next);
                    }
                }
                self.reload("file change", false);
                for ev in later {
                    self.handle(ev, &mut draining);
                }
            } else {
                self.handle(ev, &mut draining);
            }
            if self.workers_left == 0 {
                return;
            }
        }
    }

    fn handle(&mut self, ev: Event, draining: &mut bool) {
        match ev {
            Event::Signal(signal_hook::consts::SIGHUP) => self.reload("SIGHUP", true),
            Event::Signal(_) if *draining => {
                tracing::warn!("second stop signal: exiting without waiting for streams");
                self.workers_left = 0;
            }
            Event::Signal(_) => {
                *draining = true;
                let timeout = self.running.server.drain_timeout;
                tracing::info!(
                    ?timeout,
                    "draining: no new connections, finishing in-flight requests"
                );
                self.state.draining.store(true, Ordering::Relaxed);
                let deadline = Instant::now() + timeout;
                for c in &self.controls {
                    let _ = c.send(Control::Drain(deadline));
                }
            }
            Event::WorkerExited(id) => {
                self.workers_left = self.workers_left.saturating_sub(1);
                if !*draining {
                    tracing::error!(worker = id, "worker exited unexpectedly");
                }
            }
            Event::FileChanged => self.reload("file change", false),
        }
    }

    /// Re-reads the config file and installs it if it is valid. A file change that left the
    /// content as it was is ignored; SIGHUP (`forced`) reloads anyway, since files the config
    /// points to (such as a `ca_file`) may have changed.
    fn reload(&mut self, why: &str, forced: bool) {
        if forced {
            // SIGHUP also means "logs were rotated": reopen even if the config is unchanged
            // or invalid.
            self.audit.reopen(self.running.audit.path.clone());
        }
        let Some(path) = self.path.clone() else {
            tracing::info!("{why}: running on the embedded default config, nothing to reload");
            return;
        };
        let mut new = match crate::config::load_file(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload rejected ({why}), keeping the old config:\n{e}");
                return;
            }
        };
        if !forced && new.source.hash == self.running.source.hash {
            tracing::debug!("{why}: config file unchanged");
            return;
        }
        let tls = match crate::upstream::tls::build(&new) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("config reload rejected ({why}), keeping the old config: {e}");
                return;
            }
        };
        // Settings that shape threads and sockets apply only on restart: keep the running ones
        // so values derived from them (per-worker shares) stay right.
        let old = &self.running.server;
        let s = &mut new.server;
        if s.listen != old.listen
            || s.admin != old.admin
            || s.workers != old.workers
            || s.pin_workers != old.pin_workers
            || s.io_driver != old.io_driver
            || s.uring_entries != old.uring_entries
        {
            tracing::warn!(
                "listen, admin, workers, pin_workers, io_driver and uring_entries change only on restart; other changes applied"
            );
            s.listen.clone_from(&old.listen);
            s.admin = old.admin;
            s.workers = old.workers;
            s.pin_workers = old.pin_workers;
            s.io_driver = old.io_driver;
            s.uring_entries = old.uring_entries;
        }
        let (q, old_q) = (&mut new.quota, &self.running.quota);
        if q.backend != old_q.backend
            || q.key_prefix != old_q.key_prefix
            || q.redis_timeout != old_q.redis_timeout
        {
            tracing::warn!(
                "quota.backend, redis_url, key_prefix and redis_timeout change only on restart; other changes applied"
            );
            q.backend = old_q.backend.clone();
            q.key_prefix.clone_from(&old_q.key_prefix);
            q.redis_timeout = old_q.redis_timeout;
        }
        if let Some(hook) = &self.on_config {
            hook(&new);
        }
        self.state.set_config_info(config_info_json(&new));
        let new = Arc::new(new);
        let tls = Arc::new(tls);
        let auth = match Authenticator::new(&new) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                tracing::error!("config reload rejected ({why}), keeping the old config: {e}");
                return;
            }
        };
        log_auth(&new, &auth);
        let board = Board::new(Arc::new(LimitTable::build(&new)), self.controls.len());
        board.inherit_fleet(&self.board.current());
        self.board.publish(board.clone());
        for c in &self.controls {
            let _ = c.send(Control::Config(Box::new(crate::worker::Install {
                config: new.clone(),
                tls: tls.clone(),
                board: board.clone(),
                auth: auth.clone(),
            })));
        }
        if new.audit.path != self.running.audit.path {
            self.audit.reopen(new.audit.path.clone());
        }
        tracing::info!(hash = %new.source.hash, trigger = why, "config reloaded");
        self.running = new;
    }
}
