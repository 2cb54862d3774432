//! Token quotas: limits enforced on every core without a lock and without waiting on another
//! core.
//!
//! **Shape.** A config snapshot's limits become a [`LimitTable`] (one row per limit, keyed by a
//! stable name such as `c:team-a:tokens_per_minute`). A [`Board`] built with it holds one row
//! of single-writer [`Slot`]s per worker (what that worker has counted) and one row for the
//! rest of the fleet (filled from Redis by the node's sync thread). Each worker keeps its own
//! counters in a [`QuotaShard`] (`Rc`, `RefCell`: no atomics on the admit path) and, every
//! `sync_interval`, publishes them to its row and re-reads the others' rows into a cached
//! "others" total. Admission compares `own + others` with the limit: pure local arithmetic.
//!
//! **Over-admission bound.** A worker publishes each reservation to its slots the moment it
//! makes it, and re-reads the others' slots every `sync_interval` (on its housekeeping tick,
//! or inline at admission when the tick is late). So it learns what the others admitted at
//! most one `sync_interval` late, and with `W` workers the admitted total can exceed a limit
//! by at most what the other `W - 1` workers admit in one interval:
//! `(W - 1) x rate_per_worker x sync_interval x reservation`. Fleet
//! mode adds the Redis round trip to the lag of other nodes. Reservations count as used the
//! moment they are made, so requests in flight never add to it; settlement only refunds,
//! except when the real input exceeds the estimate (the estimate is biased upwards). See
//! ARCHITECTURE.md and the `quota_bound` integration test.

pub mod fleet;
pub mod window;

use crate::config::{micros_to_usd, Config, Limit, Metric, Window};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use window::Counts;

/// Which requests a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Consumer(usize),
    ConsumerModel(usize, usize),
    Model(usize),
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct LimitSpec {
    /// Stable across reloads and nodes: `c:NAME:LIMIT`, `cm:NAME:MODEL:LIMIT`, `m:MODEL:LIMIT`.
    pub key: String,
    pub scope: Scope,
    /// The consumer's name, for metrics and logs (`None` for model-wide limits).
    pub consumer: Option<String>,
    pub limit: Limit,
}

/// The limits of one config snapshot, with the lists each request looks up.
#[derive(Debug, Default)]
pub struct LimitTable {
    pub specs: Vec<LimitSpec>,
    by_consumer: Vec<Vec<usize>>,
    by_model: Vec<Vec<usize>>,
    by_consumer_model: HashMap<(usize, usize), Vec<usize>>,
}

impl LimitTable {
    pub fn build(cfg: &Config) -> LimitTable {
        let mut t = LimitTable {
            by_consumer: vec![Vec::new(); cfg.consumers.len()],
            by_model: vec![Vec::new(); cfg.models.len()],
            ..LimitTable::default()
        };
        for (ci, c) in cfg.consumers.iter().enumerate() {
            for l in &c.limits {
                let i = t.push(
                    format!("c:{}:{}", c.name, l.name),
                    Scope::Consumer(ci),
                    Some(&c.name),
                    l,
                );
                if let Some(list) = t.by_consumer.get_mut(ci) {
                    list.push(i);
                }
            }
            for (model, limits) in &c.model_limits {
                let Some(mi) = cfg.model_position(model) else {
                    continue;
                };
                for l in limits {
                    let key = format!("cm:{}:{}:{}", c.name, model, l.name);
                    let i = t.push(key, Scope::ConsumerModel(ci, mi), Some(&c.name), l);
                    t.by_consumer_model.entry((ci, mi)).or_default().push(i);
                }
            }
        }
        for (mi, m) in cfg.models.iter().enumerate() {
            for l in &m.limits {
                let i = t.push(
                    format!("m:{}:{}", m.name, l.name),
                    Scope::Model(mi),
                    None,
                    l,
                );
                if let Some(list) = t.by_model.get_mut(mi) {
                    list.push(i);
                }
            }
        }
        t
    }

    fn push(&mut self, key: String, scope: Scope, consumer: Option<&str>, limit: &Limit) -> usize {
        self.specs.push(LimitSpec {
            key,
            scope,
            consumer: consumer.map(str::to_owned),
            limit: limit.clone(),
        });
        self.specs.len() - 1
    }

    /// The limits a request of `consumer` for `model` is checked against, as three lists
    /// (consumer, consumer x model, model), iterated in place: nothing copied per request.
    pub fn applicable(&self, consumer: Option<usize>, model: usize) -> Applicable<'_> {
        let none: &[usize] = &[];
        let by_consumer = consumer
            .and_then(|c| self.by_consumer.get(c))
            .map_or(none, Vec::as_slice);
        // Most tables have no per-model consumer limits: skip the hash then.
        let by_consumer_model = match consumer {
            Some(c) if !self.by_consumer_model.is_empty() => self
                .by_consumer_model
                .get(&(c, model))
                .map_or(none, Vec::as_slice),
            _ => none,
        };
        let by_model = self.by_model.get(model).map_or(none, Vec::as_slice);
        Applicable([by_consumer, by_consumer_model, by_model])
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Each limit's position by key, to carry state over to the table of a new snapshot.
    pub fn positions(&self) -> HashMap<&str, usize> {
        self.specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key.as_str(), i))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// The limits that apply to one request: see [`LimitTable::applicable`].
#[derive(Debug, Clone, Copy)]
pub struct Applicable<'a>([&'a [usize]; 3]);

impl Applicable<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|l| l.is_empty())
    }

    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().flat_map(|l| l.iter().copied())
    }
}

/// A counter published by one writer and read by others. A sequence number (odd while
/// writing) lets readers see the three fields consistently without a lock.
#[derive(Debug, Default)]
pub struct Slot {
    seq: AtomicU64,
    slot: AtomicU64,
    cur: AtomicI64,
    prev: AtomicI64,
}

impl Slot {
    /// Publish (single writer only).
    pub fn publish(&self, c: Counts) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        self.slot.store(c.slot, Ordering::Relaxed);
        self.cur.store(c.cur, Ordering::Relaxed);
        self.prev.store(c.prev, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A consistent read; `None` if the writer kept us out (then the caller keeps what it had).
    pub fn read(&self) -> Option<Counts> {
        for _ in 0..8 {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let c = Counts {
                slot: self.slot.load(Ordering::Relaxed),
                cur: self.cur.load(Ordering::Relaxed),
                prev: self.prev.load(Ordering::Relaxed),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(c);
            }
        }
        None
    }
}

/// The shared state of one limit table: every worker's published counts and the fleet's.
#[derive(Debug)]
pub struct Board {
    pub table: Arc<LimitTable>,
    /// `workers[w][limit]`, written only by worker `w`.
    pub workers: Vec<Box<[Slot]>>,
    /// What the rest of the fleet counted (other nodes), written only by the Redis sync thread.
    pub fleet: Box<[Slot]>,
    /// The fleet view is current (Redis reachable, or not used).
    pub fleet_ok: AtomicBool,
    /// Unix ms of each worker's last publish (gossip lag).
    pub published_at: Vec<AtomicU64>,
}

impl Board {
    pub fn new(table: Arc<LimitTable>, workers: usize) -> Arc<Board> {
        let row = |n: usize| {
            (0..n)
                .map(|_| Slot::default())
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Arc::new(Board {
            workers: (0..workers).map(|_| row(table.len())).collect(),
            fleet: row(table.len()),
            fleet_ok: AtomicBool::new(true),
            published_at: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            table,
        })
    }
}

impl Board {
    /// Carries the fleet counts and state over from the board this one replaces (config
    /// reload), so the workers' view does not lose the other nodes until the next Redis round.
    /// Call before the new board is shared.
    pub fn inherit_fleet(&self, old: &Board) {
        self.fleet_ok
            .store(old.fleet_ok.load(Ordering::Relaxed), Ordering::Relaxed);
        let index = old.table.positions();
        for (i, spec) in self.table.specs.iter().enumerate() {
            let Some(&j) = index.get(spec.key.as_str()) else {
                continue;
            };
            if let (Some(dst), Some(src)) =
                (self.fleet.get(i), old.fleet.get(j).and_then(Slot::read))
            {
                dst.publish(src);
            }
        }
    }
}

/// What a node's workers have counted against one limit (see [`Board::node_counts`]).
#[derive(Debug, Clone, Copy)]
pub struct NodeCounts {
    pub counts: Counts,
    /// Every worker's slot was read consistently (a writer can keep a reader out).
    pub complete: bool,
}

impl Board {
    /// The sum of the workers' published counts for limit `i`, seen from slot `s`; `None` if
    /// there is no such limit.
    pub fn node_counts(&self, i: usize, s: u64) -> Option<NodeCounts> {
        let mut total = NodeCounts {
            counts: Counts {
                slot: s,
                cur: 0,
                prev: 0,
            },
            complete: true,
        };
        for row in &self.workers {
            match row.get(i)?.read() {
                Some(c) => total.counts = total.counts.plus(c, s),
                None => total.complete = false,
            }
        }
        Some(total)
    }

    /// The node's view of every limit as JSON, for `GET /admin/quota`: what this node's
    /// workers counted (`node`), what the other nodes counted at the last Redis round
    /// (`fleet`), and what is left. Cost is in USD.
    pub fn view_json(&self, now_ms: u64) -> String {
        let limits: Vec<serde_json::Value> = self
            .table
            .specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let (win, value) = (spec.limit.window, spec.limit.limit);
                let s = window::slot(win, now_ms);
                let node = self
                    .node_counts(i, s)
                    .map_or(Counts::default(), |n| n.counts);
                let fleet = self.fleet.get(i).and_then(Slot::read).unwrap_or_default();
                let used = window::effective(win, now_ms, node.plus(fleet, s));
                let unit = |n: u64| match spec.limit.metric {
                    Metric::Cost => serde_json::json!(micros_to_usd(n)),
                    _ => serde_json::json!(n),
                };
                serde_json::json!({
                    "key": spec.key,
                    "consumer": spec.consumer,
                    "limit": spec.limit.name,
                    "window": win.as_str(),
                    "value": unit(value),
                    "node": unit(window::effective(win, now_ms, node)),
                    "fleet": unit(window::effective(win, now_ms, fleet)),
                    "used": unit(used),
                    "remaining": unit(value.saturating_sub(used)),
                })
            })
            .collect();
        // The oldest worker view: every worker has re-read the others' (and the fleet's)
        // counts as they were at this time.
        let synced_ms = self
            .published_at
            .iter()
            .map(|t| t.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        serde_json::json!({
            "now_ms": now_ms,
            "workers_synced_ms": synced_ms,
            "fleet_ok": self.fleet_ok.load(Ordering::Relaxed),
            "limits": limits,
        })
        .to_string()
    }
}

/// The current board, for threads off the request path (control, Redis sync). Workers get
/// their board through their control channel instead.
#[derive(Debug, Clone)]
pub struct BoardCell(Arc<std::sync::Mutex<Arc<Board>>>);

impl BoardCell {
    pub fn new(board: Arc<Board>) -> BoardCell {
        BoardCell(Arc::new(std::sync::Mutex::new(board)))
    }

    pub fn current(&self) -> Arc<Board> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn publish(&self, board: Arc<Board>) {
        match self.0.lock() {
            Ok(mut g) => *g = board,
            Err(p) => *p.into_inner() = board,
        }
    }
}

/// What a request is expected to use (reserved at admission) or used (settled at the end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Micro-USD.
    pub cost: u64,
}

impl Amounts {
    pub fn of(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Requests => self.requests,
            Metric::Tokens => self.input_tokens.saturating_add(self.output_tokens),
            Metric::InputTokens => self.input_tokens,
            Metric::OutputTokens => self.output_tokens,
            Metric::Cost => self.cost,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The limit's name, e.g. `tokens_per_minute`.
    pub limit: String,
    pub metric: Metric,
    pub window: Window,
    pub consumer: Option<String>,
    /// The limit's value and what is left of it now.
    pub value: u64,
    pub remaining: u64,
    /// What this request needed of it.
    pub needed: u64,
    /// Milliseconds until the request could fit, if nothing else is used meanwhile.
    pub retry_after_ms: u64,
}

/// The headroom of the tightest limit of a kind, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// What admission tells the response: the tightest request and token limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Headroom>,
    pub tokens: Option<Headroom>,
}

/// One worker's counters for the current board.
#[derive(Debug)]
pub struct QuotaShard {
    worker: usize,
    board: RefCell<Arc<Board>>,
    /// This worker's own counts, per limit.
    own: RefCell<Vec<Counts>>,
    /// The other workers' and the fleet's counts at the last sync, per limit.
    others: RefCell<Vec<Counts>>,
    /// Emptied entry lists of settled reservations, for the next admissions.
    pool: RefCell<Vec<Vec<Entry>>>,
    /// Board generation, so a reservation made on an older board settles nowhere.
    generation: Cell<u64>,
    /// Refuse while the fleet view is unavailable (`quota.fail_closed`).
    fail_closed: Cell<bool>,
    /// `quota.sync_interval` in ms, and when we last synced: admission syncs inline when a
    /// tick is due, so a busy event loop (late timers) does not make the view staler.
    interval_ms: Cell<u64>,
    last_sync_ms: Cell<u64>,
    /// (day, month slot) of the last monthly window looked up.
    month: Cell<Option<(u64, u64)>>,
}

impl QuotaShard {
    pub fn new(worker: usize, board: Arc<Board>, fail_closed: bool) -> Rc<QuotaShard> {
        let n = board.table.len();
        Rc::new(QuotaShard {
            worker,
            board: RefCell::new(board),
            own: RefCell::new(vec![Counts::default(); n]),
            others: RefCell::new(vec![Counts::default(); n]),
            pool: RefCell::new(Vec::new()),
            generation: Cell::new(0),
            fail_closed: Cell::new(fail_closed),
            interval_ms: Cell::new(10),
            last_sync_ms: Cell::new(0),
            month: Cell::new(None),
        })
    }

    /// Sets the gossip interval (`quota.sync_interval`).
    pub fn set_interval(&self, interval: std::time::Duration) {
        self.interval_ms.set(
            u64::try_from(interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    }

    /// Syncs when the interval has passed since the last sync.
    pub fn sync_if_due(&self, now_ms: u64) {
        if now_ms
            >= self
                .last_sync_ms
                .get()
                .saturating_add(self.interval_ms.get())
        {
            self.sync(now_ms);
        }
    }

    pub fn board(&self) -> Arc<Board> {
        self.board.borrow().clone()
    }

    /// Switch to a new board (config reload): counters of limits that still exist (same key)
    /// carry over; the others start from zero.
    pub fn install(&self, board: Arc<Board>, fail_closed: bool) {
        self.fail_closed.set(fail_closed);
        let old = self.board.replace(board.clone());
        let old_own = self.own.replace(vec![Counts::default(); board.table.len()]);
        let old_others = self
            .others
            .replace(vec![Counts::default(); board.table.len()]);
        let index = old.table.positions();
        let (mut own, mut others) = (self.own.borrow_mut(), self.others.borrow_mut());
        for (i, spec) in board.table.specs.iter().enumerate() {
            if let Some(&j) = index.get(spec.key.as_str()) {
                if let (Some(dst), Some(src)) = (own.get_mut(i), old_own.get(j)) {
                    *dst = *src;
                }
                if let (Some(dst), Some(src)) = (others.get_mut(i), old_others.get(j)) {
                    *dst = *src;
                }
            }
        }
        self.generation.set(self.generation.get().wrapping_add(1));
    }

    /// Publish our counts and refresh our view of the others'. Called every `sync_interval`
    /// by the worker's housekeeping task.
    pub fn sync(&self, now_ms: u64) {
        self.last_sync_ms.set(now_ms);
        let board = self.board.borrow().clone();
        let own = self.own.borrow();
        if let Some(row) = board.workers.get(self.worker) {
            for (slot, c) in row.iter().zip(own.iter()) {
                slot.publish(*c);
            }
        }
        let mut others = self.others.borrow_mut();
        for (i, spec) in board.table.specs.iter().enumerate() {
            let s = window::slot(spec.limit.window, now_ms);
            let mut total = Counts {
                slot: s,
                cur: 0,
                prev: 0,
            };
            let peers = board
                .workers
                .iter()
                .enumerate()
                .filter(|(w, _)| *w != self.worker)
                .filter_map(|(_, row)| row.get(i));
            for slot in peers.chain(board.fleet.get(i)) {
                if let Some(c) = slot.read() {
                    total = total.plus(c, s);
                } else if let Some(old) = others.get(i) {
                    total = total.plus(*old, s);
                }
            }
            if let Some(o) = others.get_mut(i) {
                *o = total;
            }
        }
        // Last, so a reader that sees this time knows our view includes what was published
        // before it.
        if let Some(t) = board.published_at.get(self.worker) {
            t.store(now_ms, Ordering::Release);
        }
    }

    /// [`window::slot`], with the calendar month of the current day cached: the civil-date
    /// arithmetic would otherwise cost every admission with a monthly budget ~10 ns.
    fn slot(&self, window: Window, now_ms: u64) -> u64 {
        if window != Window::Month {
            return window::slot(window, now_ms);
        }
        let day = now_ms / window::DAY;
        if let Some((cached_day, month)) = self.month.get() {
            if cached_day == day {
                return month;
            }
        }
        let month = window::slot(Window::Month, now_ms);
        self.month.set(Some((day, month)));
        month
    }

    /// Usage counted against limit `i` at `now_ms`: ours plus the others' last known.
    fn view(&self, i: usize, window: Window, now_ms: u64) -> u64 {
        let s = window::slot(window, now_ms);
        let own = self.own.borrow().get(i).copied().unwrap_or_default();
        let others = self.others.borrow().get(i).copied().unwrap_or_default();
        window::effective(window, now_ms, own.plus(others, s))
    }

    /// Admission: reserve `amounts` against every limit that applies to (consumer, model), or
    /// refuse with the first limit that would be exceeded. Never waits on another core.
    pub fn admit(
        self: &Rc<Self>,
        consumer: Option<usize>,
        model: usize,
        amounts: Amounts,
        now_ms: u64,
    ) -> Result<Reservation, Rejection> {
        let board = self.board.borrow();
        let applicable = board.table.applicable(consumer, model);
        if applicable.is_empty() {
            drop(board);
            return Ok(self.reservation(Vec::new(), amounts, RateHeaders::default()));
        }
        // Reads the board too (shared borrows), and borrows `own`/`others` only inside.
        self.sync_if_due(now_ms);
        if !board.fleet_ok.load(Ordering::Relaxed) && self.fail_closed.get() {
            let spec = applicable.first().and_then(|i| board.table.specs.get(i));
            return Err(Rejection {
                limit: "fleet_unavailable".to_owned(),
                metric: spec.map_or(Metric::Requests, |s| s.limit.metric),
                window: spec.map_or(Window::Minute, |s| s.limit.window),
                consumer: spec.and_then(|s| s.consumer.clone()),
                value: 0,
                remaining: 0,
                needed: 0,
                retry_after_ms: 1000,
            });
        }
        let mut headers = RateHeaders::default();
        let mut entries = self.pool.borrow_mut().pop().unwrap_or_default();
        {
            let (own, others) = (self.own.borrow(), self.others.borrow());
            for i in applicable.iter() {
                let Some(spec) = board.table.specs.get(i) else {
                    continue;
                };
                let (metric, win, limit) = (spec.limit.metric, spec.limit.window, spec.limit.limit);
                let want = amounts.of(metric);
                let s = self.slot(win, now_ms);
                let counts = own
                    .get(i)
                    .copied()
                    .unwrap_or_default()
                    .plus(others.get(i).copied().unwrap_or_default(), s);
                let used = window::effective_in(win, now_ms, s, counts);
                let remaining = limit.saturating_sub(used);
                if want > remaining {
                    let target = limit.saturating_sub(want);
                    let rejection = Rejection {
                        limit: spec.limit.name.clone(),
                        metric,
                        window: win,
                        consumer: spec.consumer.clone(),
                        value: limit,
                        remaining,
                        needed: want,
                        retry_after_ms: if want > limit {
                            0
                        } else {
                            window::time_until(win, now_ms, counts, target)
                        },
                    };
                    self.recycle(entries);
                    return Err(rejection);
                }
                let left = remaining - want;
                let best = match metric {
                    Metric::Requests => Some(&mut headers.requests),
                    Metric::Tokens | Metric::InputTokens | Metric::OutputTokens => {
                        Some(&mut headers.tokens)
                    }
                    Metric::Cost => None,
                };
                if let Some(best) = best {
                    if best.is_none_or(|h| left < h.remaining) {
                        let reset_ms =
                            window::slot_start(win, s.saturating_add(1)).saturating_sub(now_ms);
                        *best = Some(Headroom {
                            limit,
                            remaining: left,
                            reset_ms,
                        });
                    }
                }
                let Ok(limit) = u32::try_from(i) else {
                    continue;
                };
                entries.push(Entry {
                    limit,
                    metric,
                    slot: s,
                    reserved: want,
                });
            }
        }
        // Every limit has room: count the reservation now, and publish it at once, so the
        // other workers see it at their next refresh rather than after our next tick.
        let mut own = self.own.borrow_mut();
        let row = board.workers.get(self.worker);
        for e in &entries {
            if let Some(c) = own.get_mut(e.index()) {
                c.add(e.slot, i64::try_from(e.reserved).unwrap_or(i64::MAX));
                if let Some(slot) = row.and_then(|r| r.get(e.index())) {
                    slot.publish(*c);
                }
            }
        }
        drop(own);
        Ok(self.reservation(entries, amounts, headers))
    }

    /// Returns a reservation's entry list to the pool, emptied, keeping its capacity.
    fn recycle(&self, mut entries: Vec<Entry>) {
        if entries.capacity() > 0 {
            entries.clear();
            self.pool.borrow_mut().push(entries);
        }
    }

    #[inline]
    fn reservation(
        self: &Rc<Self>,
        entries: Vec<Entry>,
        amounts: Amounts,
        headers: RateHeaders,
    ) -> Reservation {
        Reservation {
            shard: self.clone(),
            generation: self.generation.get(),
            entries,
            reserved: amounts,
            actual: Cell::new(None),
            headers,
            settled: false,
        }
    }

    fn settle(&self, generation: u64, entries: &[Entry], actual: Amounts) {
        if generation != self.generation.get() {
            // The table changed since: the old counters are gone (carried-over limits keep the
            // reservation, which errs on the safe side).
            return;
        }
        let mut own = self.own.borrow_mut();
        let board = self.board.borrow();
        let row = board.workers.get(self.worker);
        for e in entries {
            let delta = i128::from(actual.of(e.metric)) - i128::from(e.reserved);
            if delta == 0 {
                // The usual case for request counts: nothing to refund, nothing to publish.
                continue;
            }
            if let (Some(c), Ok(delta)) = (own.get_mut(e.index()), i64::try_from(delta)) {
                c.add(e.slot, delta);
                if let Some(slot) = row.and_then(|r| r.get(e.index())) {
                    slot.publish(*c);
                }
            }
        }
    }

    /// Whether `used_so_far` (what this request has used until now) pushes any of its
    /// mid-stream limits over: the others' usage plus ours without this request's reservation.
    pub fn over_mid_stream(
        &self,
        r: &Reservation,
        used_so_far: Amounts,
        now_ms: u64,
    ) -> Option<String> {
        if r.generation != self.generation.get() {
            return None;
        }
        let board = self.board.borrow();
        for e in &r.entries {
            let Some(spec) = board.table.specs.get(e.index()) else {
                continue;
            };
            if !spec.limit.mid_stream {
                continue;
            }
            let without_us = self
                .view(e.index(), spec.limit.window, now_ms)
                .saturating_sub(e.reserved);
            if without_us.saturating_add(used_so_far.of(e.metric)) > spec.limit.limit {
                return Some(spec.limit.name.clone());
            }
        }
        None
    }

    /// Whether any limit of this reservation is enforced mid-stream.
    pub fn has_mid_stream(&self, r: &Reservation) -> bool {
        let board = self.board.borrow();
        r.entries.iter().any(|e| {
            board
                .table
                .specs
                .get(e.index())
                .is_some_and(|s| s.limit.mid_stream)
        })
    }
}

/// One limit a reservation counts against.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index in the table.
    limit: u32,
    metric: Metric,
    /// The window slot the reservation went into.
    slot: u64,
    reserved: u64,
}

impl Entry {
    fn index(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(usize::MAX)
    }
}

/// An admitted request's reservation. Settles on drop: to the usage recorded with
/// [`Reservation::record`] (the real usage, or what was seen before the request ended), or,
/// if nothing was recorded, to what was reserved (the safe side: a request whose outcome is
/// unknown keeps its reservation).
#[derive(Debug)]
pub struct Reservation {
    shard: Rc<QuotaShard>,
    generation: u64,
    /// From the shard's pool, returned to it on drop: no allocation per request once the pool
    /// holds as many lists as requests are in flight, and the reservation (moved on every
    /// admission) stays small.
    entries: Vec<Entry>,
    reserved: Amounts,
    actual: Cell<Option<Amounts>>,
    pub headers: RateHeaders,
    settled: bool,
}

impl Reservation {
    /// The usage so far (or final). Settlement uses the last value recorded.
    pub fn record(&self, actual: Amounts) {
        self.actual.set(Some(actual));
    }

    pub fn reserved(&self) -> Amounts {
        self.reserved
    }

    /// Whether any limit counts this request mid-stream.
    pub fn has_mid_stream(&self) -> bool {
        self.shard.has_mid_stream(self)
    }

    /// The first mid-stream limit `used_so_far` exceeds, if any.
    pub fn over_mid_stream(&self, used_so_far: Amounts, now_ms: u64) -> Option<String> {
        self.shard.over_mid_stream(self, used_so_far, now_ms)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.settled = true;
            let actual = self.actual.get().unwrap_or(self.reserved);
            self.shard.settle(self.generation, &self.entries, actual);
            self.shard.recycle(std::mem::take(&mut self.entries));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[backends.m]\nprovider = \"mock\"\n[models.gpt]\ntargets = [{{ backend = \"m\" }}]\n[models.other]\ntargets = [{{ backend = \"m\" }}]\n{extra}"
        );
        crate::config::load_str(&text, "t.toml", None, &|_| None).unwrap()
    }

    const TEAM: &str = "[consumers.team]\nkeys = [\"key-of-team-a-0123456\"]\n[consumers.team.limits]\nrequests_per_minute = 3\ntokens_per_day = 1000\n[consumers.team.model_limits.gpt]\noutput_tokens_per_hour = 500\n";

    fn board(cfg: &Config, workers: usize) -> Arc<Board> {
        Board::new(Arc::new(LimitTable::build(cfg)), workers)
    }

    fn req(input: u64, output: u64) -> Amounts {
        Amounts {
            requests: 1,
            input_tokens: input,
            output_tokens: output,
            cost: 0,
        }
    }

    const NOW: u64 = 1_795_430_661_007;

    #[test]
    fn table_lists_the_applicable_limits() {
        let cfg = config(TEAM);
        let t = LimitTable::build(&cfg);
        let keys: Vec<&str> = t.specs.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "c:team:requests_per_minute",
                "c:team:tokens_per_day",
                "cm:team:gpt:output_tokens_per_hour"
            ]
        );
        let list = |c, m| t.applicable(c, m).iter().collect::<Vec<_>>();
        assert_eq!(list(Some(0), 0), [0, 1, 2]);
        assert_eq!(
            list(Some(0), 1),
            [0, 1],
            "model limits only for their model"
        );
        assert!(list(None, 0).is_empty());
        assert!(t.applicable(None, 0).is_empty());
        assert_eq!(t.applicable(Some(0), 0).first(), Some(0));
    }

    #[test]
    fn admits_until_a_limit_is_reached_then_refuses_with_retry_after() {
        let cfg = config(TEAM);
        let shard = QuotaShard::new(0, board(&cfg, 1), false);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(shard.admit(Some(0), 0, req(10, 10), NOW).unwrap());
        }
        let r = shard.admit(Some(0), 0, req(10, 10), NOW).unwrap_err();
        assert_eq!(r.limit, "requests_per_minute");
        assert_eq!(r.remaining, 0);
        assert!(r.retry_after_ms > 0 && r.retry_after_ms <= 120_000, "{r:?}");
        // A request larger than a whole limit can never fit.
        drop(held);
        let r = shard
            .admit(Some(0), 1, req(600, 600), NOW + 120_000)
            .unwrap_err();
        assert_eq!(r.limit, "tokens_per_day");
        assert_eq!(r.retry_after_ms, 0);
    }

    #[test]
    fn settlement_refunds_to_the_real_usage_on_every_path() {
        let cfg = config(TEAM);
        let shard = QuotaShard::new(0, board(&cfg, 1), false);
        let r = shard.admit(Some(0), 1, req(100, 400), NOW).unwrap();
        assert_eq!(
            shard.view(1, Window::Day, NOW),
            500,
            "reserved counts at once"
        );
        r.record(req(100, 50));
        drop(r);
        assert_eq!(
            shard.view(1, Window::Day, NOW),
            150,
            "settled to the real usage"
        );
        // Dropped without a record (cancelled before anything was known): keeps the reservation.
        drop(shard.admit(Some(0), 1, req(100, 100), NOW).unwrap());
        assert_eq!(shard.view(1, Window::Day, NOW), 350);
    }

    #[test]
    fn workers_see_each_other_within_one_interval() {
        let cfg = config(TEAM);
        let b = board(&cfg, 2);
        let a = QuotaShard::new(0, b.clone(), false);
        let c = QuotaShard::new(1, b, false);
        let r1 = a.admit(Some(0), 1, req(150, 150), NOW).unwrap();
        // Worker 1 syncs before its first admission (it is due) and sees worker 0's
        // reservation, published when it was made.
        let r2 = c.admit(Some(0), 1, req(150, 150), NOW).unwrap();
        assert_eq!(c.view(1, Window::Day, NOW), 600);
        // Within one interval of its last sync, worker 1 does not re-read: what worker 0 admits
        // meanwhile is invisible to it. That is the documented over-admission window.
        let r3 = a.admit(Some(0), 1, req(150, 150), NOW + 1).unwrap();
        assert_eq!(
            c.view(1, Window::Day, NOW + 2),
            600,
            "stale by design until the next sync"
        );
        c.sync_if_due(NOW + 10);
        assert_eq!(c.view(1, Window::Day, NOW + 10), 900);
        // (The fourth request also meets requests_per_minute = 3.)
        assert!(c.admit(Some(0), 1, req(100, 100), NOW + 10).is_err());
        drop((r1, r2, r3));
    }

    #[test]
    fn reload_keeps_counters_of_limits_that_still_exist() {
        let cfg = config(TEAM);
        let shard = QuotaShard::new(0, board(&cfg, 1), false);
        let r = shard.admit(Some(0), 1, req(10, 10), NOW).unwrap();
        r.record(req(10, 10));
        drop(r);
        let cfg2 = config(&TEAM.replace("requests_per_minute = 3\n", ""));
        shard.install(board(&cfg2, 1), false);
        assert_eq!(shard.board().table.specs[0].key, "c:team:tokens_per_day");
        assert_eq!(shard.view(0, Window::Day, NOW), 20);
    }

    #[test]
    fn mid_stream_check_counts_the_stream_so_far() {
        let cfg = config(TEAM);
        let shard = QuotaShard::new(0, board(&cfg, 1), false);
        let r = shard.admit(Some(0), 1, req(100, 100), NOW).unwrap();
        assert!(
            r.has_mid_stream(),
            "day budgets are enforced mid-stream by default"
        );
        assert_eq!(r.over_mid_stream(req(100, 800), NOW), None);
        assert_eq!(
            r.over_mid_stream(req(100, 901), NOW).as_deref(),
            Some("tokens_per_day")
        );
    }

    #[test]
    fn fleet_counts_join_the_view_and_survive_a_reload() {
        let cfg = config(TEAM);
        let b = board(&cfg, 1);
        let shard = QuotaShard::new(0, b.clone(), true);
        let day = window::slot(Window::Day, NOW);
        // The sync thread published 950 tokens used by other nodes today.
        b.fleet[1].publish(Counts {
            slot: day,
            cur: 950,
            prev: 0,
        });
        let r = shard.admit(Some(0), 1, req(20, 20), NOW).unwrap();
        assert_eq!(shard.view(1, Window::Day, NOW), 990);
        drop(r);
        let v: serde_json::Value = serde_json::from_str(&b.view_json(NOW)).unwrap();
        let day_limit = &v["limits"][1];
        assert_eq!(day_limit["limit"], "tokens_per_day");
        assert_eq!(
            (&day_limit["node"], &day_limit["fleet"]),
            (&40.into(), &950.into())
        );
        assert_eq!(day_limit["remaining"], 10);
        assert_eq!(v["fleet_ok"], true);

        // Reload: the new board starts with the old fleet counts and state.
        b.fleet_ok.store(false, Ordering::Relaxed);
        let b2 = board(&config(&TEAM.replace("requests_per_minute = 3\n", "")), 1);
        b2.inherit_fleet(&b);
        assert_eq!(b2.fleet[0].read().map(|c| c.cur), Some(950));
        assert!(!b2.fleet_ok.load(Ordering::Relaxed));
        // fail_closed: with the fleet view unavailable, limited requests are refused.
        shard.install(b2, true);
        let err = shard.admit(Some(0), 1, req(1, 1), NOW + 20).unwrap_err();
        assert_eq!(err.limit, "fleet_unavailable");
        // Requests without limits are not.
        assert!(shard.admit(None, 0, req(1, 1), NOW + 20).is_ok());
    }

    #[test]
    fn slots_read_what_was_published() {
        let s = Slot::default();
        assert_eq!(s.read(), Some(Counts::default()));
        s.publish(Counts {
            slot: 7,
            cur: 3,
            prev: -1,
        });
        assert_eq!(
            s.read(),
            Some(Counts {
                slot: 7,
                cur: 3,
                prev: -1
            })
        );
    }
}
