//! Metrics: one shard per worker, merged on scrape.
//!
//! Every counter has exactly one writer (its worker), so plain relaxed atomics suffice and the
//! request path takes no lock. Label sets are known when a config snapshot is installed (model x
//! backend pairs), so their cells are created then, off the request path; the per-shard
//! registry mutex is taken only by that installation and by the scraper.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

/// A fixed-bucket histogram with a single writer.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                bump(b, 1);
            }
        }
        bump(&self.count, 1);
        bump(
            &self.sum_ns,
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        );
    }
}

/// Single-writer increment: a relaxed load and store, no locked instruction needed.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

#[derive(Debug, Default, Clone)]
struct HistSnapshot {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_ns: u64,
}

impl HistSnapshot {
    fn merge(&mut self, h: &Histogram) {
        for (dst, src) in self.buckets.iter_mut().zip(h.buckets.iter()) {
            *dst += src.load(Relaxed);
        }
        self.count += h.count.load(Relaxed);
        self.sum_ns += h.sum_ns.load(Relaxed);
    }

    fn encode(&self, enc: &mut prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result {
        let mut cumulative = 0u64;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (bound, n) in LATENCY_BUCKETS.iter().zip(self.buckets.iter()) {
            cumulative += n;
            buckets.push((*bound, cumulative));
        }
        buckets.push((f64::INFINITY, self.count));
        enc.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_ns as f64 / 1e9,
            self.count,
            &buckets,
            None,
        )
    }
}

/// Counters for one (model, backend) pair on one worker.
#[derive(Debug)]
pub struct RouteCells {
    pub model: String,
    pub backend: String,
    /// Responses by status code (index = status, clamped to 599).
    statuses: Box<[AtomicU64; 600]>,
    pub upstream_latency: Histogram,
    pub ttft: Histogram,
    pub duration: Histogram,
    /// Time per output token after the first (streams only).
    pub tpot: Histogram,
    /// Tokens by kind (see [`TOKEN_KINDS`]).
    tokens: [AtomicU64; TOKEN_KINDS.len()],
    /// Requests whose token counts were estimated by Sluice's tokenizer.
    estimated: AtomicU64,
    /// Cost in nano-USD.
    cost_nano_usd: AtomicU64,
}

/// The `kind` label of `sluice_tokens_total`.
pub const TOKEN_KINDS: [&str; 5] = [
    "input",
    "cached_input",
    "cache_write_input",
    "output",
    "reasoning",
];

/// Token counts of one finished request, for [`RouteCells::count_tokens`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenCounts {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write_input: u64,
    pub output: u64,
    pub reasoning: u64,
    pub estimated: bool,
}

impl RouteCells {
    fn new(model: &str, backend: &str) -> Self {
        Self {
            model: model.to_owned(),
            backend: backend.to_owned(),
            statuses: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            upstream_latency: Histogram::default(),
            ttft: Histogram::default(),
            duration: Histogram::default(),
            tpot: Histogram::default(),
            tokens: std::array::from_fn(|_| AtomicU64::new(0)),
            estimated: AtomicU64::new(0),
            cost_nano_usd: AtomicU64::new(0),
        }
    }

    pub fn count_tokens(&self, t: &TokenCounts) {
        let values = [
            t.input,
            t.cached_input,
            t.cache_write_input,
            t.output,
            t.reasoning,
        ];
        for (cell, v) in self.tokens.iter().zip(values) {
            if v > 0 {
                bump(cell, v);
            }
        }
        if t.estimated {
            bump(&self.estimated, 1);
        }
    }

    pub fn count_cost(&self, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            bump(&self.cost_nano_usd, (usd * 1e9).round() as u64);
        }
    }

    pub fn count_status(&self, status: u16) {
        if let Some(c) = self.statuses.get(usize::from(status.min(599))) {
            bump(c, 1);
        }
    }
}

/// Events counted per worker without labels.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Event {
    ConnectionsAccepted,
    ClientDisconnects,
    HeadTimeouts,
    IdleTimeouts,
    HeaderTooLarge,
    BodyTooLarge,
    MalformedRequests,
    UpstreamConnects,
    UpstreamReused,
    UpstreamConnectErrors,
    UpstreamTimeouts,
    UpstreamBrokenStreams,
    ConnectionsRejected,
    AuthMissing,
    AuthInvalid,
    AuthUnknownConsumer,
    ModelForbidden,
    StreamsCutByBudget,
}

const EVENTS: [(&str, &str); 18] = [
    ("sluice_connections_accepted", "Client connections accepted"),
    (
        "sluice_client_disconnects",
        "Requests abandoned because the client went away before the response ended",
    ),
    (
        "sluice_head_timeouts",
        "Connections closed because the request head did not arrive in time",
    ),
    (
        "sluice_idle_timeouts",
        "Keep-alive connections closed after being idle",
    ),
    ("sluice_header_too_large", "Requests refused with 431"),
    ("sluice_body_too_large", "Requests refused with 413"),
    (
        "sluice_malformed_requests",
        "Requests refused as malformed HTTP (400)",
    ),
    (
        "sluice_upstream_connects",
        "New upstream connections opened",
    ),
    (
        "sluice_upstream_reused",
        "Upstream requests sent on a pooled keep-alive connection",
    ),
    (
        "sluice_upstream_connect_errors",
        "Upstream connection attempts that failed",
    ),
    (
        "sluice_upstream_timeouts",
        "Upstream requests that timed out",
    ),
    (
        "sluice_upstream_broken_streams",
        "Upstream responses that ended before their end marker",
    ),
    (
        "sluice_connections_rejected",
        "Client connections closed at accept because the worker was at max_connections",
    ),
    (
        "sluice_auth_missing",
        "Requests refused with 401: no key or token",
    ),
    (
        "sluice_auth_invalid",
        "Requests refused with 401: unknown key or invalid token",
    ),
    (
        "sluice_auth_unknown_consumer",
        "Requests refused with 401: a valid token naming no configured consumer",
    ),
    (
        "sluice_model_forbidden",
        "Requests refused with 403: the consumer may not use the model",
    ),
    (
        "sluice_streams_cut_by_budget",
        "Streams ended early (finish_reason length) because a budget ran out during them",
    ),
];

/// Quota and usage counters of one consumer on one worker. Created when a snapshot is
/// installed; `consumer` is empty for requests of an open gateway.
#[derive(Debug)]
pub struct ConsumerCells {
    pub consumer: String,
    pub admitted: AtomicU64,
    /// Rejections by limit name (the consumer's limits and the models' limits).
    rejected: Vec<(String, AtomicU64)>,
    tokens: [AtomicU64; 2],
    cost_nano_usd: AtomicU64,
}

impl ConsumerCells {
    fn new(consumer: &str, limits: &[String]) -> Self {
        let mut rejected: Vec<(String, AtomicU64)> = Vec::new();
        for l in limits
            .iter()
            .map(String::as_str)
            .chain(["fleet_unavailable"])
        {
            if !rejected.iter().any(|(n, _)| n == l) {
                rejected.push((l.to_owned(), AtomicU64::new(0)));
            }
        }
        Self {
            consumer: consumer.to_owned(),
            admitted: AtomicU64::new(0),
            rejected,
            tokens: [AtomicU64::new(0), AtomicU64::new(0)],
            cost_nano_usd: AtomicU64::new(0),
        }
    }

    pub fn count_admitted(&self) {
        bump(&self.admitted, 1);
    }

    pub fn count_rejected(&self, limit: &str) {
        if let Some((_, c)) = self.rejected.iter().find(|(n, _)| n == limit) {
            bump(c, 1);
        }
    }

    pub fn count_usage(&self, input: u64, output: u64, cost_usd: Option<f64>) {
        let [i, o] = &self.tokens;
        bump(i, input);
        bump(o, output);
        if let Some(c) = cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            bump(&self.cost_nano_usd, (c * 1e9).round() as u64);
        }
    }
}

/// One worker's shard.
#[derive(Debug)]
pub struct Shard {
    pub worker: usize,
    /// 0 = starting, 1 = io_uring, 2 = epoll.
    pub io_driver: AtomicU8,
    pub active_connections: AtomicI64,
    pub active_streams: AtomicI64,
    pub bytes_to_clients: AtomicU64,
    pub bytes_from_upstreams: AtomicU64,
    events: [AtomicU64; EVENTS.len()],
    /// Cells for requests that never got routed (bad request, unknown model, ...).
    pub unrouted: Arc<RouteCells>,
    routes: Mutex<Vec<Arc<RouteCells>>>,
    consumers: Mutex<Vec<Arc<ConsumerCells>>>,
}

impl Shard {
    pub fn new(worker: usize) -> Self {
        Self {
            worker,
            io_driver: AtomicU8::new(0),
            active_connections: AtomicI64::new(0),
            active_streams: AtomicI64::new(0),
            bytes_to_clients: AtomicU64::new(0),
            bytes_from_upstreams: AtomicU64::new(0),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            unrouted: Arc::new(RouteCells::new("", "")),
            routes: Mutex::new(Vec::new()),
            consumers: Mutex::new(Vec::new()),
        }
    }

    pub fn count(&self, e: Event) {
        if let Some(c) = self.events.get(e as usize) {
            bump(c, 1);
        }
    }

    pub fn add_bytes_to_client(&self, n: usize) {
        bump(&self.bytes_to_clients, n as u64);
    }

    pub fn add_bytes_from_upstream(&self, n: usize) {
        bump(&self.bytes_from_upstreams, n as u64);
    }

    pub fn gauge_add(g: &AtomicI64, d: i64) {
        g.store(g.load(Relaxed) + d, Relaxed);
    }

    /// The cells for a (model, backend) pair, created if new. Called when a worker installs a
    /// config snapshot, never per request.
    pub fn route_cells(&self, model: &str, backend: &str) -> Arc<RouteCells> {
        let mut routes = match self.routes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = routes
            .iter()
            .find(|c| c.model == model && c.backend == backend)
        {
            return c.clone();
        }
        let c = Arc::new(RouteCells::new(model, backend));
        routes.push(c.clone());
        c
    }
}

impl Shard {
    /// The cells of a consumer with these limit names, created if new (when a snapshot is
    /// installed, never per request). A reload that changes the limits gets fresh cells; the
    /// old ones keep being exported, so counters never go backwards.
    pub fn consumer_cells(&self, consumer: &str, limits: &[String]) -> Arc<ConsumerCells> {
        let mut all = match self.consumers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let fits = |c: &ConsumerCells| {
            c.consumer == consumer
                && limits
                    .iter()
                    .all(|l| c.rejected.iter().any(|(n, _)| n == l))
        };
        if let Some(c) = all.iter().rev().find(|c| fits(c)) {
            return c.clone();
        }
        let c = Arc::new(ConsumerCells::new(consumer, limits));
        all.push(c.clone());
        c
    }
}

/// All shards, for the scraper.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub shards: Arc<Vec<Arc<Shard>>>,
    pub started_unix: u64,
    /// The audit writer's counters, when it runs.
    pub audit: Option<crate::audit::AuditSink>,
    /// The quota board, for the gossip lag gauge.
    pub board: Option<crate::quota::BoardCell>,
    /// The Redis sync thread's counters, in fleet mode.
    pub fleet: Option<Arc<crate::quota::fleet::FleetStats>>,
}

impl Metrics {
    pub fn new(workers: usize) -> Self {
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            shards: Arc::new((0..workers).map(|w| Arc::new(Shard::new(w))).collect()),
            started_unix,
            audit: None,
            board: None,
            fleet: None,
        }
    }

    /// Render the Prometheus / OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

type Labels = Vec<(&'static str, String)>;

impl Metrics {
    fn encode_quota(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        #[derive(Default)]
        struct Sums {
            admitted: u64,
            rejected: BTreeMap<String, u64>,
            tokens: [u64; 2],
            cost_nano_usd: u64,
        }
        let mut by_consumer: BTreeMap<String, Sums> = BTreeMap::new();
        for s in self.shards.iter() {
            let cells = match s.consumers.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            for c in cells.iter() {
                let sums = by_consumer.entry(c.consumer.clone()).or_default();
                sums.admitted += c.admitted.load(Relaxed);
                for (limit, n) in &c.rejected {
                    *sums.rejected.entry(limit.clone()).or_default() += n.load(Relaxed);
                }
                for (dst, src) in sums.tokens.iter_mut().zip(c.tokens.iter()) {
                    *dst += src.load(Relaxed);
                }
                sums.cost_nano_usd += c.cost_nano_usd.load(Relaxed);
            }
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_quota_admitted",
            "Requests admitted by the quota check, by consumer (empty: open gateway)",
            None,
            MetricType::Counter,
        )?;
        for (consumer, v) in &by_consumer {
            let labels: Labels = vec![("consumer", consumer.clone())];
            ConstCounter::new(v.admitted).encode(enc.encode_family(&labels)?)?;
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_quota_rejected",
            "Requests refused with 429, by consumer and the limit that refused them",
            None,
            MetricType::Counter,
        )?;
        for (consumer, v) in &by_consumer {
            for (limit, n) in &v.rejected {
                let labels: Labels = vec![("consumer", consumer.clone()), ("limit", limit.clone())];
                ConstCounter::new(*n).encode(enc.encode_family(&labels)?)?;
            }
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_consumer_tokens",
            "Tokens by consumer and kind (input, output)",
            None,
            MetricType::Counter,
        )?;
        for (consumer, v) in &by_consumer {
            for (kind, n) in ["input", "output"].iter().zip(v.tokens.iter()) {
                let labels: Labels =
                    vec![("consumer", consumer.clone()), ("kind", (*kind).to_owned())];
                ConstCounter::new(*n).encode(enc.encode_family(&labels)?)?;
            }
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_consumer_cost_usd",
            "Cost in USD by consumer",
            None,
            MetricType::Counter,
        )?;
        for (consumer, v) in &by_consumer {
            let labels: Labels = vec![("consumer", consumer.clone())];
            ConstCounter::new(v.cost_nano_usd as f64 / 1e9).encode(enc.encode_family(&labels)?)?;
        }
        if let Some(board) = &self.board {
            let board = board.current();
            let now = crate::time::unix_ms();
            let lag = board
                .published_at
                .iter()
                .map(|t| t.load(Relaxed))
                .filter(|&t| t > 0)
                .map(|t| now.saturating_sub(t))
                .max()
                .unwrap_or(0);
            let enc = encoder.encode_descriptor(
                "sluice_quota_gossip_lag_seconds",
                "Age of the oldest worker's last published quota counts",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(lag as f64 / 1e3).encode(enc)?;
            let enc = encoder.encode_descriptor(
                "sluice_quota_fleet_up",
                "1 when the fleet view (Redis) is current or not used, 0 while it is unavailable",
                None,
                MetricType::Gauge,
            )?;
            let up = i64::from(board.fleet_ok.load(Relaxed));
            ConstGauge::new(up).encode(enc)?;
        }
        if let Some(fleet) = &self.fleet {
            let enc = encoder.encode_descriptor(
                "sluice_quota_redis_syncs",
                "Completed quota sync round trips with Redis",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(fleet.syncs.load(Relaxed)).encode(enc)?;
            let enc = encoder.encode_descriptor(
                "sluice_quota_redis_sync_errors",
                "Quota sync rounds with Redis that failed (refused, error or timeout)",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(fleet.errors.load(Relaxed)).encode(enc)?;
            let mut enc = encoder.encode_descriptor(
                "sluice_quota_redis_sync_duration_seconds",
                "Round-trip time of completed quota sync rounds with Redis",
                None,
                MetricType::Histogram,
            )?;
            let mut h = HistSnapshot::default();
            h.merge(&fleet.latency);
            h.encode(&mut enc)?;
        }
        Ok(())
    }
}

/// Token and cost counters of one (model, backend) pair merged across shards.
#[derive(Default)]
struct RouteSums {
    tokens: [u64; TOKEN_KINDS.len()],
    estimated: u64,
    cost_nano_usd: u64,
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Merge route cells across shards by (model, backend).
        let mut statuses: BTreeMap<(String, String, u16), u64> = BTreeMap::new();
        let mut hist: BTreeMap<(&'static str, String, String), HistSnapshot> = BTreeMap::new();
        let mut route_sums: BTreeMap<(String, String), RouteSums> = BTreeMap::new();
        let mut merge_cells = |c: &RouteCells| {
            for (code, n) in c.statuses.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    *statuses
                        .entry((c.model.clone(), c.backend.clone(), code as u16))
                        .or_default() += n;
                }
            }
            let route = (c.model.clone(), c.backend.clone());
            let sums = route_sums.entry(route).or_default();
            for (dst, src) in sums.tokens.iter_mut().zip(c.tokens.iter()) {
                *dst += src.load(Relaxed);
            }
            sums.estimated += c.estimated.load(Relaxed);
            sums.cost_nano_usd += c.cost_nano_usd.load(Relaxed);
            for (name, h) in [
                ("upstream", &c.upstream_latency),
                ("ttft", &c.ttft),
                ("duration", &c.duration),
                ("tpot", &c.tpot),
            ] {
                if h.count.load(Relaxed) > 0 {
                    hist.entry((name, c.model.clone(), c.backend.clone()))
                        .or_default()
                        .merge(h);
                }
            }
        };
        for s in self.shards.iter() {
            merge_cells(&s.unrouted);
            let routes = match s.routes.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            for c in routes.iter() {
                merge_cells(c);
            }
        }

        let mut enc = encoder.encode_descriptor(
            "sluice_requests",
            "LLM API responses by model asked, backend and status code",
            None,
            MetricType::Counter,
        )?;
        for ((model, backend, status), n) in &statuses {
            let labels: Labels = vec![
                ("model", model.clone()),
                ("backend", backend.clone()),
                ("status", status.to_string()),
            ];
            ConstCounter::new(*n).encode(enc.encode_family(&labels)?)?;
        }

        for (kind, name, help) in [
            (
                "upstream",
                "sluice_upstream_latency_seconds",
                "Time from sending the request upstream to the response head",
            ),
            (
                "ttft",
                "sluice_time_to_first_token_seconds",
                "Time from request received to the first streamed event relayed",
            ),
            (
                "duration",
                "sluice_request_duration_seconds",
                "Time from request received to response finished",
            ),
            (
                "tpot",
                "sluice_time_per_output_token_seconds",
                "Stream time after the first token divided by the output tokens after the first",
            ),
        ] {
            let mut enc = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for ((k, model, backend), h) in &hist {
                if *k != kind {
                    continue;
                }
                let labels: Labels = vec![("model", model.clone()), ("backend", backend.clone())];
                h.encode(&mut enc.encode_family(&labels)?)?;
            }
        }

        // Routes that never saw a request add nothing but noise.
        route_sums.retain(|_, v| {
            v.tokens.iter().any(|&n| n > 0) || v.cost_nano_usd > 0 || v.estimated > 0
        });
        let mut enc = encoder.encode_descriptor(
            "sluice_tokens",
            "Tokens by model asked, backend and kind (input includes cached and cache-write input; output includes reasoning)",
            None,
            MetricType::Counter,
        )?;
        for ((model, backend), v) in &route_sums {
            for (kind, n) in TOKEN_KINDS.iter().zip(v.tokens.iter()) {
                let labels: Labels = vec![
                    ("model", model.clone()),
                    ("backend", backend.clone()),
                    ("kind", (*kind).to_owned()),
                ];
                ConstCounter::new(*n).encode(enc.encode_family(&labels)?)?;
            }
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_tokens_estimated_requests",
            "Requests whose token counts Sluice estimated with its tokenizer (the upstream sent no usage)",
            None,
            MetricType::Counter,
        )?;
        for ((model, backend), v) in &route_sums {
            let labels: Labels = vec![("model", model.clone()), ("backend", backend.clone())];
            ConstCounter::new(v.estimated).encode(enc.encode_family(&labels)?)?;
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_cost_usd",
            "Cost in USD from the models' price tables",
            None,
            MetricType::Counter,
        )?;
        for ((model, backend), v) in &route_sums {
            let labels: Labels = vec![("model", model.clone()), ("backend", backend.clone())];
            ConstCounter::new(v.cost_nano_usd as f64 / 1e9).encode(enc.encode_family(&labels)?)?;
        }
        if let Some(audit) = &self.audit {
            let enc = encoder.encode_descriptor(
                "sluice_audit_records",
                "Audit records written",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(audit.written()).encode(enc)?;
            let enc = encoder.encode_descriptor(
                "sluice_audit_dropped",
                "Audit records dropped because the writer's queue was full",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(audit.dropped()).encode(enc)?;
        }

        self.encode_quota(&mut encoder)?;

        for (i, (name, help)) in EVENTS.iter().enumerate() {
            let total: u64 = self
                .shards
                .iter()
                .map(|s| s.events.get(i).map_or(0, |a| a.load(Relaxed)))
                .sum();
            let enc = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(total).encode(enc)?;
        }

        let sum = |f: &dyn Fn(&Shard) -> u64| -> u64 { self.shards.iter().map(|s| f(s)).sum() };
        let enc = encoder.encode_descriptor(
            "sluice_bytes_to_clients",
            "Response bytes written to clients",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(sum(&|s| s.bytes_to_clients.load(Relaxed))).encode(enc)?;
        let enc = encoder.encode_descriptor(
            "sluice_bytes_from_upstreams",
            "Response bytes read from upstreams",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(sum(&|s| s.bytes_from_upstreams.load(Relaxed))).encode(enc)?;

        let mut enc = encoder.encode_descriptor(
            "sluice_active_streams",
            "Streaming responses in progress",
            None,
            MetricType::Gauge,
        )?;
        for s in self.shards.iter() {
            let labels: Labels = vec![("worker", s.worker.to_string())];
            ConstGauge::new(s.active_streams.load(Relaxed)).encode(enc.encode_family(&labels)?)?;
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_active_connections",
            "Open client connections",
            None,
            MetricType::Gauge,
        )?;
        for s in self.shards.iter() {
            let labels: Labels = vec![("worker", s.worker.to_string())];
            ConstGauge::new(s.active_connections.load(Relaxed))
                .encode(enc.encode_family(&labels)?)?;
        }
        let mut enc = encoder.encode_descriptor(
            "sluice_worker_io_driver",
            "IO driver each worker runs (1 for the active driver)",
            None,
            MetricType::Gauge,
        )?;
        for s in self.shards.iter() {
            let driver = match s.io_driver.load(Relaxed) {
                1 => "io_uring",
                2 => "epoll",
                _ => "starting",
            };
            let labels: Labels = vec![
                ("worker", s.worker.to_string()),
                ("driver", driver.to_owned()),
            ];
            ConstGauge::new(1i64).encode(enc.encode_family(&labels)?)?;
        }
        let enc = encoder.encode_descriptor(
            "sluice_start_time_seconds",
            "Unix time the process started",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.started_unix as i64).encode(enc)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn merges_shards_on_scrape() {
        let m = Metrics::new(2);
        let a = m.shards[0].route_cells("gpt", "local");
        let b = m.shards[1].route_cells("gpt", "local");
        a.count_status(200);
        b.count_status(200);
        b.count_status(502);
        a.ttft.observe(Duration::from_millis(3));
        m.shards[0].count(Event::ClientDisconnects);
        m.shards[1].io_driver.store(2, Relaxed);
        let text = m.render();
        assert!(
            text.contains(r#"sluice_requests_total{model="gpt",backend="local",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_requests_total{model="gpt",backend="local",status="502"} 1"#)
        );
        assert!(text.contains("sluice_client_disconnects_total 1"));
        assert!(text.contains(r#"sluice_worker_io_driver{worker="1",driver="epoll"} 1"#));
        assert!(
            text.contains(
                r#"sluice_time_to_first_token_seconds_count{model="gpt",backend="local"} 1"#
            ),
            "{text}"
        );
    }
}
