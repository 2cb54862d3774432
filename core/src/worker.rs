//! One worker: a monoio runtime pinned to a core, its listeners, its connections, its upstream
//! pools and its config snapshot. Workers share nothing mutable; they learn about shutdown and
//! new config snapshots through the control channel, polled by the housekeeping task.

use crate::audit::AuditSink;
use crate::auth::Authenticator;
use crate::client::{BodyError, ClientConn};
use crate::config::Config;
use crate::errors::{ErrorFormat, ErrorKind, GatewayError};
use crate::http::{parse_request_head, read_more, HeadError, RequestHead};
use crate::metrics::{ConsumerCells, Event, RouteCells, Shard};
use crate::upstream::Upstreams;
use monoio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Messages from the control thread to a worker.
pub enum Control {
    /// Install a new config snapshot (in-flight requests keep the old one).
    Config(Box<Install>),
    /// Stop accepting, finish in-flight work until the deadline, then exit.
    Drain(Instant),
}

/// A new config snapshot with what is built from it off the request path.
pub struct Install {
    pub config: Arc<Config>,
    pub tls: Arc<crate::upstream::tls::TlsConfigs>,
    pub board: Arc<crate::quota::Board>,
    pub auth: Arc<Authenticator>,
}

/// A config snapshot as one worker sees it: the shared immutable config plus this worker's
/// metric cells for each (model, target) pair and each consumer.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// `cells[model_index][target_index]`.
    pub cells: Vec<Vec<Arc<RouteCells>>>,
    pub auth: Arc<Authenticator>,
    /// `consumers[consumer_index]`, plus one last entry for requests of an open gateway.
    pub consumers: Vec<Arc<ConsumerCells>>,
}

impl Snapshot {
    fn new(config: Arc<Config>, auth: Arc<Authenticator>, shard: &Shard) -> Self {
        let model_limits: Vec<String> = config
            .models
            .iter()
            .flat_map(|m| m.limits.iter().map(|l| l.name.clone()))
            .collect();
        let mut consumers: Vec<Arc<ConsumerCells>> = config
            .consumers
            .iter()
            .map(|c| {
                let mut names: Vec<String> = c.limits.iter().map(|l| l.name.clone()).collect();
                names.extend(
                    c.model_limits
                        .iter()
                        .flat_map(|(_, l)| l.iter().map(|l| l.name.clone())),
                );
                names.extend(model_limits.iter().cloned());
                shard.consumer_cells(&c.name, &names)
            })
            .collect();
        consumers.push(shard.consumer_cells("", &model_limits));
        let cells = config
            .models
            .iter()
            .map(|m| {
                m.targets
                    .iter()
                    .map(|t| {
                        let backend = config
                            .backends
                            .get(t.backend)
                            .map_or("", |b| b.name.as_str());
                        shard.route_cells(&m.name, backend)
                    })
                    .collect()
            })
            .collect();
        Self {
            config,
            cells,
            auth,
            consumers,
        }
    }
}

/// A level-triggered, single-thread signal: once fired, every waiter (now or later) wakes.
#[derive(Default)]
pub struct LocalSignal {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl LocalSignal {
    pub fn fire(&self) {
        self.fired.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

pub struct Worker {
    pub id: usize,
    snapshot: RefCell<Rc<Snapshot>>,
    pub upstreams: RefCell<Rc<Upstreams>>,
    pub metrics: Arc<Shard>,
    pub draining: LocalSignal,
    pub connections: Cell<usize>,
    request_seq: Cell<u64>,
    key_rr: Cell<usize>,
    id_prefix: String,
    pub audit: AuditSink,
    pub quota: Rc<crate::quota::QuotaShard>,
}

impl Worker {
    pub fn snapshot(&self) -> Rc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.snapshot.borrow().config.clone()
    }

    /// A request id unique across workers and restarts.
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.get() + 1;
        self.request_seq.set(n);
        format!("{}{:x}", self.id_prefix, n)
    }

    /// Round-robin over a backend's keys.
    pub fn next_key_index(&self, len: usize) -> usize {
        let n = self.key_rr.get().wrapping_add(1);
        self.key_rr.set(n);
        if len == 0 {
            0
        } else {
            n % len
        }
    }
}

/// What a worker starts from.
pub struct Init {
    pub id: usize,
    pub config: Arc<Config>,
    pub tls: Arc<crate::upstream::tls::TlsConfigs>,
    pub listeners: Vec<std::net::TcpListener>,
    pub metrics: Arc<Shard>,
    pub control: crossbeam_channel::Receiver<Control>,
    pub audit: AuditSink,
    pub board: Arc<crate::quota::Board>,
    pub auth: Arc<Authenticator>,
}

/// Entry point of a worker thread's runtime.
pub async fn run(init: Init) {
    let Init {
        id,
        config,
        tls,
        listeners,
        metrics,
        control,
        audit,
        board,
        auth,
    } = init;
    let quota = crate::quota::QuotaShard::new(id, board, config.quota.fail_closed);
    quota.set_interval(config.quota.sync_interval);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let worker = Rc::new(Worker {
        id,
        snapshot: RefCell::new(Rc::new(Snapshot::new(config, auth, &metrics))),
        upstreams: RefCell::new(Upstreams::new(crate::upstream::tls::TlsClients::new(&tls))),
        metrics,
        draining: LocalSignal::default(),
        connections: Cell::new(0),
        request_seq: Cell::new(0),
        key_rr: Cell::new(id),
        id_prefix: format!("{:x}-{id}-", start & 0xffff_ffff_ffff),
        audit,
        quota,
    });
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => {
                monoio::spawn(accept_loop(worker.clone(), l));
            }
            Err(e) => tracing::error!(worker = id, "cannot register listener: {e}"),
        }
    }
    let deadline = housekeeping(worker.clone(), control).await;
    // Draining: wait for connections to finish, up to the deadline.
    while worker.connections.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    if worker.connections.get() > 0 {
        tracing::warn!(
            worker = id,
            open = worker.connections.get(),
            "drain deadline reached, closing connections"
        );
    }
}

/// Polls the control channel and sweeps idle upstream connections. Returns the drain deadline
/// when told to drain (or when the control channel is gone).
async fn housekeeping(
    worker: Rc<Worker>,
    control: crossbeam_channel::Receiver<Control>,
) -> Instant {
    let mut last_sweep = Instant::now();
    loop {
        // The tick is the quota gossip interval (capped at 10 ms for the control channel).
        let tick = worker
            .config()
            .quota
            .sync_interval
            .min(Duration::from_millis(10));
        monoio::time::sleep(tick).await;
        worker.quota.sync_if_due(crate::time::unix_ms());
        loop {
            match control.try_recv() {
                Ok(Control::Config(install)) => {
                    let Install {
                        config: cfg,
                        tls,
                        board,
                        auth,
                    } = *install;
                    let hash = cfg.source.hash.clone();
                    worker.quota.install(board, cfg.quota.fail_closed);
                    worker.quota.set_interval(cfg.quota.sync_interval);
                    let snap = Snapshot::new(cfg, auth, &worker.metrics);
                    *worker.snapshot.borrow_mut() = Rc::new(snap);
                    *worker.upstreams.borrow_mut() =
                        Upstreams::new(crate::upstream::tls::TlsClients::new(&tls));
                    tracing::info!(worker = worker.id, %hash, "config snapshot installed");
                }
                Ok(Control::Drain(deadline)) => {
                    worker.draining.fire();
                    return deadline;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    worker.draining.fire();
                    return Instant::now();
                }
            }
        }
        if last_sweep.elapsed() > Duration::from_secs(1) {
            last_sweep = Instant::now();
            let max = worker
                .config()
                .backends
                .iter()
                .map(|b| b.pool_idle_timeout)
                .max()
                .unwrap_or(Duration::from_secs(90));
            worker.upstreams.borrow().sweep(max);
        }
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
    loop {
        let accepted = {
            let accept = std::pin::pin!(listener.accept());
            let drain = std::pin::pin!(worker.draining.wait());
            monoio::select! {
                r = accept => Some(r),
                _ = drain => None,
            }
        };
        let Some(res) = accepted else { return };
        match res {
            Ok((stream, _addr)) => {
                let max = worker.config().server.max_connections_per_worker();
                if worker.connections.get() >= max {
                    worker.metrics.count(Event::ConnectionsRejected);
                    drop(stream);
                    continue;
                }
                worker.metrics.count(Event::ConnectionsAccepted);
                monoio::spawn(connection(worker.clone(), stream));
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                tracing::warn!(worker = worker.id, "accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Counts a connection for its lifetime.
struct ConnGuard(Rc<Worker>);

impl ConnGuard {
    fn new(w: Rc<Worker>) -> Self {
        w.connections.set(w.connections.get() + 1);
        Shard::gauge_add(&w.metrics.active_connections, 1);
        Self(w)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0
            .connections
            .set(self.0.connections.get().saturating_sub(1));
        Shard::gauge_add(&self.0.metrics.active_connections, -1);
    }
}

/// What the connection loop does after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
}

async fn connection(worker: Rc<Worker>, stream: TcpStream) {
    let _guard = ConnGuard::new(worker.clone());
    let _ = stream.set_nodelay(true);
    let mut conn = ClientConn::new(stream);
    let mut first = true;
    loop {
        let cfg = worker.config();
        let server = &cfg.server;
        // Wait for the first byte of the next request: idle timeout between requests, head
        // timeout for a fresh connection; draining closes idle connections at once.
        if conn.buf.is_empty() {
            if worker.draining.is_fired() && !first {
                return;
            }
            let wait = if first {
                server.head_timeout
            } else {
                server.idle_timeout
            };
            let buf = std::mem::take(&mut conn.buf);
            let read = std::pin::pin!(monoio::time::timeout(
                wait,
                read_more(&mut conn.stream, buf, 4096)
            ));
            let drain = std::pin::pin!(worker.draining.wait());
            let res = monoio::select! {
                r = read => Some(r),
                _ = drain => None,
            };
            match res {
                None => return,
                Some(Err(_)) => {
                    worker.metrics.count(if first {
                        Event::HeadTimeouts
                    } else {
                        Event::IdleTimeouts
                    });
                    return;
                }
                Some(Ok((Ok(0), _))) | Some(Ok((Err(_), _))) => return,
                Some(Ok((Ok(_), b))) => conn.buf = b,
            }
        }
        first = false;
        let head_deadline = Instant::now() + server.head_timeout;
        // Read until the head is complete.
        let head = loop {
            match parse_request_head(&conn.buf, server.max_header_bytes) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    let (kind, msg, ev) = match e {
                        HeadError::TooLarge => (
                            ErrorKind::HeaderTooLarge,
                            format!(
                                "request headers exceed the limit of {} bytes",
                                server.max_header_bytes
                            ),
                            Event::HeaderTooLarge,
                        ),
                        HeadError::Malformed(m) => (
                            ErrorKind::MalformedHttp,
                            m.to_owned(),
                            Event::MalformedRequests,
                        ),
                        HeadError::UnsupportedTransferEncoding => (
                            ErrorKind::NotImplemented,
                            "unsupported Transfer-Encoding".to_owned(),
                            Event::MalformedRequests,
                        ),
                    };
                    worker.metrics.count(ev);
                    let err = GatewayError::new(kind, msg);
                    respond_error(&worker, &mut conn, &err, None, false, ErrorFormat::OpenAi).await;
                    conn.linger_close().await;
                    return;
                }
            }
            let left = head_deadline.saturating_duration_since(Instant::now());
            let buf = std::mem::take(&mut conn.buf);
            match monoio::time::timeout(left, read_more(&mut conn.stream, buf, 4096)).await {
                Err(_) => {
                    worker.metrics.count(Event::HeadTimeouts);
                    let err = GatewayError::new(
                        ErrorKind::RequestTimeout,
                        "timed out reading the request head",
                    );
                    respond_error(&worker, &mut conn, &err, None, false, ErrorFormat::OpenAi).await;
                    return;
                }
                Ok((Ok(0), _)) | Ok((Err(_), _)) => return,
                Ok((Ok(_), b)) => conn.buf = b,
            }
        };
        conn.version = head.version;
        conn.watch = true;
        conn.buf.drain(..head.head_len);
        let body = match read_body(&worker, &mut conn, &head).await {
            Ok(b) => b,
            Err(None) => return,
            Err(Some(err)) => {
                respond_error(
                    &worker,
                    &mut conn,
                    &err,
                    head.request_id.as_deref(),
                    false,
                    ErrorFormat::for_path(&head.path),
                )
                .await;
                if err.kind != ErrorKind::RequestTimeout {
                    conn.linger_close().await;
                }
                return;
            }
        };
        let keep_alive = head.keep_alive && !worker.draining.is_fired();
        let after = crate::pipeline::dispatch(&worker, &mut conn, &head, body, keep_alive).await;
        if after == After::Close || !keep_alive {
            return;
        }
    }
}

/// Read the request body per its framing, enforcing the size limit and the body timeout.
/// `Err(None)`: the connection is gone or timed out (answered already, or nothing to
/// answer); `Err(Some(e))`: answer `e` and close.
async fn read_body(
    worker: &Worker,
    conn: &mut ClientConn,
    head: &RequestHead,
) -> Result<Vec<u8>, Option<GatewayError>> {
    let cfg = worker.config();
    let max = cfg.server.max_body_bytes;
    let deadline = Instant::now() + cfg.server.body_timeout;
    match conn.read_body(head, max, deadline).await {
        Ok(body) => Ok(body),
        Err(BodyError::Closed) => Err(None),
        Err(BodyError::TimedOut) => Err(Some(GatewayError::new(
            ErrorKind::RequestTimeout,
            "timed out reading the request body",
        ))),
        Err(BodyError::TooLarge) => {
            worker.metrics.count(Event::BodyTooLarge);
            Err(Some(GatewayError::new(
                ErrorKind::BodyTooLarge,
                format!("request body exceeds the limit of {max} bytes"),
            )))
        }
        Err(BodyError::Malformed(e)) => {
            worker.metrics.count(Event::MalformedRequests);
            Err(Some(GatewayError::new(
                ErrorKind::MalformedHttp,
                format!("bad chunked body: {e}"),
            )))
        }
    }
}

/// Send an error response (the connection is closed after it when `keep_alive` is false).
pub async fn respond_error(
    worker: &Worker,
    conn: &mut ClientConn,
    err: &GatewayError,
    request_id: Option<&str>,
    keep_alive: bool,
    format: ErrorFormat,
) -> After {
    worker.metrics.unrouted.count_status(err.status());
    let out = crate::client::json_response(
        conn.version,
        err.status(),
        keep_alive,
        request_id,
        &err.body_in(format),
    );
    let (res, _) = conn.write(out).await;
    if res.is_err() || !keep_alive {
        After::Close
    } else {
        After::KeepAlive
    }
}
