//! Fleet mode: the nodes of a fleet share their quota counts through Redis.
//!
//! **Shape.** One thread per node (`sluice-quota-sync`), off the request path, wakes every
//! `quota.sync_interval`. It sums the node's workers' published [`Slot`]s per limit (what this
//! node has counted), writes that total into Redis and reads back what every other node
//! wrote, all in one pipelined round trip, then publishes the other nodes' total into
//! [`Board::fleet`]. Workers add `fleet` to their view at their own next sync, so admission
//! never waits on Redis.
//!
//! **Keys.** One hash per limit and window slot: `PREFIX:LIMIT KEY:SLOT` (e.g.
//! `sluice:c:team-a:tokens_per_minute:29577316`), one field per node holding that node's
//! count for the slot, and an absolute expiry at the end of the next slot (a sliding window
//! reads the previous slot too) plus a minute. Each node writes its *absolute* count rather
//! than increments: a write that is retried after a timeout cannot count twice, and a Redis
//! that restarted empty is refilled by every node's next write, so nothing is lost and
//! nothing needs a resync protocol. A node writes only the limits whose count changed since
//! its last successful write (all of them after a reconnect), and reads every limit each
//! round. A node that stops keeps its field until the slot expires: its usage happened.
//!
//! **Failure.** A Redis that refuses, errs or is slower than `quota.redis_timeout` makes the
//! fleet view unavailable ([`Board::fleet_ok`] false, logged once per change of state, the
//! `sluice_quota_fleet_up` gauge at 0): workers go on with their local counts and the last
//! fleet counts they saw (fail open), or refuse limited requests with 429
//! `fleet_unavailable` when `quota.fail_closed` is set. Reconnects are tried at most once per
//! [`RECONNECT_BACKOFF`] (or per interval, if longer).
//!
//! **Bound.** Another node learns of an admission after the admitting worker publishes it
//! (at once), this node's next round (one interval + one round trip), the other node's next
//! round (the same), and that node's worker's next sync (one interval): about
//! `3 x sync_interval + 2 x RTT` of the other nodes' admissions on top of the per-node bound
//! (see ARCHITECTURE.md, "Quotas").

use super::window::{self, Counts};
use super::{Board, BoardCell, LimitSpec};
use crate::config::{Quota, QuotaBackend, Window};
use crate::metrics::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least time between two connection attempts while Redis is unreachable.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Counters of the sync thread, for `/metrics` (single writer: the sync thread).
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Rounds that completed.
    pub syncs: AtomicU64,
    /// Rounds (or connection attempts) that failed.
    pub errors: AtomicU64,
    /// Duration of each completed round trip.
    pub latency: Histogram,
}

/// The node's link to Redis. Drive it with [`FleetSync::round`], or let [`FleetSync::spawn`]
/// run it on its own thread.
pub struct FleetSync {
    client: redis::Client,
    conn: Option<redis::Connection>,
    /// `redis_url` without its password, for logs.
    shown_url: String,
    prefix: String,
    /// This process's field name in every hash.
    node: String,
    timeout: Duration,
    interval: Duration,
    fail_closed: bool,
    /// What this node last wrote, per limit key: unchanged counts are not rewritten.
    written: HashMap<String, Counts>,
    /// The board of the last round: right after a reload the workers have not yet published
    /// into the new board's slots, so that round only reads.
    last_board: Option<Arc<Board>>,
    /// The state last logged (`None` before the first round).
    up: Option<bool>,
    next_connect: Instant,
    stats: Arc<FleetStats>,
}

impl FleetSync {
    /// `None` unless `quota.backend = "redis"`.
    pub fn new(quota: &Quota, stats: Arc<FleetStats>) -> Result<Option<FleetSync>, String> {
        let QuotaBackend::Redis { url } = &quota.backend else {
            return Ok(None);
        };
        let client =
            redis::Client::open(url.as_str()).map_err(|e| format!("quota.redis_url: {e}"))?;
        Ok(Some(FleetSync {
            client,
            conn: None,
            shown_url: redact(url),
            prefix: quota.key_prefix.clone(),
            node: node_id(),
            timeout: quota.redis_timeout,
            interval: quota.sync_interval,
            fail_closed: quota.fail_closed,
            written: HashMap::new(),
            last_board: None,
            up: None,
            next_connect: Instant::now(),
            stats,
        }))
    }

    /// This node's field name in Redis.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// One round: write this node's changed counts, read everyone's, publish the others'
    /// into `board.fleet`. Updates `board.fleet_ok`, the stats and the log.
    pub fn round(&mut self, board: &Arc<Board>, now_ms: u64) {
        let result = self.exchange(board, now_ms);
        let ok = match result {
            Ok(()) => true,
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                // The connection may hold half a reply: start afresh, and rewrite everything
                // then (Redis may have restarted empty).
                self.conn = None;
                self.written.clear();
                if self.up != Some(false) {
                    let mode = if self.fail_closed {
                        "refusing requests that have limits (fail_closed)"
                    } else {
                        "serving from this node's counts (fail open)"
                    };
                    tracing::warn!(redis = %self.shown_url, error = %e, "quota: Redis unavailable, {mode}");
                }
                false
            }
        };
        if ok && self.up != Some(true) {
            tracing::info!(redis = %self.shown_url, node = %self.node, "quota: Redis reachable, fleet counts in sync");
        }
        self.up = Some(ok);
        board.fleet_ok.store(ok, Ordering::Relaxed);
        self.last_board = Some(board.clone());
    }

    fn connection(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            let now = Instant::now();
            if now < self.next_connect {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "not connected (waiting before the next attempt)",
                )));
            }
            self.next_connect = now + RECONNECT_BACKOFF.max(self.interval);
            let conn = self.client.get_connection_with_timeout(self.timeout)?;
            conn.set_read_timeout(Some(self.timeout))?;
            conn.set_write_timeout(Some(self.timeout))?;
            self.written.clear();
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "connection vanished")))
    }

    fn exchange(&mut self, board: &Arc<Board>, now_ms: u64) -> redis::RedisResult<()> {
        if board.table.is_empty() {
            return Ok(());
        }
        let fresh_board = self
            .last_board
            .as_ref()
            .is_some_and(|b| !Arc::ptr_eq(b, board));
        let mut pipe = redis::pipe();
        let mut plan = Vec::with_capacity(board.table.len());
        let mut writes = Vec::new();
        for (i, spec) in board.table.specs.iter().enumerate() {
            let win = spec.limit.window;
            let s = window::slot(win, now_ms);
            // A slot that could not be read consistently: not written this round.
            let node = board
                .node_counts(i, s)
                .filter(|n| n.complete)
                .map(|n| n.counts);
            let cur_key = self.key(spec, s);
            let prev_key = window::is_sliding(win).then(|| self.key(spec, s.wrapping_sub(1)));
            let last = self.written.get(&spec.key).map(|c| c.at(s));
            if let Some(node) = node.filter(|n| !fresh_board && last != Some(*n)) {
                pipe.hset(&cur_key, &self.node, node.cur).ignore();
                pipe.cmd("PEXPIREAT")
                    .arg(&cur_key)
                    .arg(expiry(win, s))
                    .ignore();
                if let Some(prev_key) = &prev_key {
                    if last.map(|l| l.prev) != Some(node.prev) {
                        pipe.hset(prev_key, &self.node, node.prev).ignore();
                        pipe.cmd("PEXPIREAT")
                            .arg(prev_key)
                            .arg(expiry(win, s.wrapping_sub(1)))
                            .ignore();
                    }
                }
                writes.push((spec.key.clone(), node));
            }
            pipe.hgetall(&cur_key);
            if let Some(prev_key) = &prev_key {
                pipe.hgetall(prev_key);
            }
            plan.push((s, prev_key.is_some()));
        }
        let started = Instant::now();
        let replies: Vec<HashMap<String, i64>> = {
            let conn = self.connection()?;
            pipe.query(conn)?
        };
        self.stats.latency.observe(started.elapsed());
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        let mut replies = replies.into_iter();
        for (i, (s, with_prev)) in plan.into_iter().enumerate() {
            let cur = others_sum(replies.next().as_ref(), &self.node);
            let prev = if with_prev {
                others_sum(replies.next().as_ref(), &self.node)
            } else {
                0
            };
            if let Some(slot) = board.fleet.get(i) {
                slot.publish(Counts { slot: s, cur, prev });
            }
        }
        self.written.extend(writes);
        Ok(())
    }

    fn key(&self, spec: &LimitSpec, slot: u64) -> String {
        format!("{}:{}:{}", self.prefix, spec.key, slot)
    }

    /// Runs rounds every `sync_interval` on a thread of its own until `stop` is dropped or
    /// sent to. The board is re-read every round, so reloads are followed.
    pub fn spawn(
        mut self,
        boards: BoardCell,
        stop: crossbeam_channel::Receiver<()>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sluice-quota-sync".to_owned())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    next += self.interval;
                    let now = Instant::now();
                    if next < now {
                        // A slow round: start the next one now rather than catch up in a burst.
                        next = now;
                    }
                    match stop.recv_deadline(next) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    }
                    let board = boards.current();
                    self.round(&board, crate::time::unix_ms());
                }
            })
    }
}

/// Unix ms at which the key of `slot` may go: after the next slot, which reads it as its
/// previous one, plus a minute of clock skew between nodes.
fn expiry(window: Window, slot: u64) -> u64 {
    window::slot_start(window, slot.saturating_add(2)).saturating_add(60_000)
}

/// The sum of the other nodes' fields of one hash, never negative.
fn others_sum(fields: Option<&HashMap<String, i64>>, node: &str) -> i64 {
    fields
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != node)
        .fold(0i64, |acc, (_, v)| acc.saturating_add(*v))
        .max(0)
}

/// A name for this process, unique in the fleet: host, pid and start time.
fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{}-{:x}",
        if host.is_empty() { "node" } else { &host },
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = url.get(scheme_end..).unwrap_or_default();
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = rest.get(..at).unwrap_or_default();
    let user = userinfo.split(':').next().unwrap_or_default();
    format!(
        "{}{}{}{}",
        url.get(..scheme_end).unwrap_or_default(),
        user,
        if userinfo.contains(':') { ":***" } else { "" },
        rest.get(at..).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact("redis://user:s3cret@h:6379/0"),
            "redis://user:***@h:6379/0"
        );
        assert_eq!(redact("redis://:s3cret@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("rediss://u@h"), "rediss://u@h");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn others_sum_leaves_out_this_node_and_never_goes_negative() {
        let mut h = HashMap::new();
        h.insert("me".to_owned(), 100);
        h.insert("a".to_owned(), 7);
        h.insert("b".to_owned(), 5);
        assert_eq!(others_sum(Some(&h), "me"), 12);
        h.insert("c".to_owned(), -20);
        assert_eq!(others_sum(Some(&h), "me"), 0);
        assert_eq!(others_sum(None, "me"), 0);
    }

    #[test]
    fn keys_outlive_the_slot_that_reads_them_as_previous() {
        let now = 1_700_000_000_000u64;
        for w in [
            Window::Second,
            Window::Minute,
            Window::Hour,
            Window::Day,
            Window::Month,
        ] {
            let s = window::slot(w, now);
            let next_end = window::slot_start(w, s + 2);
            assert!(expiry(w, s) > next_end, "{w:?}");
            assert!(expiry(w, s) > now, "{w:?}");
        }
    }

    #[test]
    fn node_ids_differ_between_processes_and_are_valid_fields() {
        let id = node_id();
        assert!(id.contains(&std::process::id().to_string()));
        assert!(!id.contains(char::is_whitespace));
    }
}
