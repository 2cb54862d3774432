//! Fleet mode: several Sluice processes share their limits through a real `redis-server`
//! (Debian's `redis-server` package; the test script installs it).

use crate::harness::*;
use crate::quota::{admission_times, busiest, chat, config, start, KEY_A, KEY_B};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `redis-server` on a loopback port, without persistence, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::on(free_port())
    }

    /// Starts on `port` and waits until it accepts connections.
    fn on(port: u16) -> Redis {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run ./scripts/test.sh, which installs it");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(DEADLINE).is_err() {
            let _ = child.kill();
            panic!("redis-server on port {port} did not become ready");
        }
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye to the clients, and (without persistence) every key is lost.
    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A key prefix of its own per test, so tests sharing nothing cannot see each other's counts.
fn prefix(test: &str) -> String {
    format!("it-{}-{test}", std::process::id())
}

/// The quota config of one node: team-a limited by `limits`, Redis at `url`.
fn node_config(limits: &str, url: &str, test: &str, extra_quota: &str) -> String {
    config(
        limits,
        &format!(
            "[quota]\nbackend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{}\"\nsync_interval = \"10ms\"\n{extra_quota}",
            prefix(test)
        ),
    )
    .replace("workers = 2", "workers = 1")
}

fn quota_json(s: &Sluice) -> serde_json::Value {
    let r = http(s.admin, "GET /admin/quota HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits until every worker of the node has re-read the shared counts since now: after
/// this, admission sees what `/admin/quota` showed.
fn wait_workers_synced(s: &Sluice) {
    let since = quota_json(s)["now_ms"].as_u64().unwrap();
    let end = Instant::now() + DEADLINE;
    while quota_json(s)["workers_synced_ms"].as_u64().unwrap() <= since {
        assert!(Instant::now() < end, "workers stopped syncing");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One limit of the node's view (`GET /admin/quota`).
fn view(s: &Sluice, limit: &str) -> serde_json::Value {
    let v = quota_json(s);
    v["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["consumer"] == "team-a" && l["limit"] == limit)
        .cloned()
        .unwrap_or_else(|| panic!("no team-a {limit} in {v}"))
}

/// Waits until the node's view of `limit` satisfies `pred` (the sync threads work on their
/// own clock); returns the last view seen.
fn wait_view(
    s: &Sluice,
    limit: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + DEADLINE;
    loop {
        let v = view(s, limit);
        if pred(&v) || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status(addr: SocketAddr, key: &str) -> u16 {
    http(addr, &chat(Some(key), "gpt", 1, "x")).status
}

fn count_log(s: &Sluice, needle: &str) -> usize {
    s.proc
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until `needle` has been logged at least `n` times; returns how often it was.
fn wait_count_log(s: &Sluice, needle: &str, n: usize) -> usize {
    let end = Instant::now() + DEADLINE;
    while count_log(s, needle) < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    count_log(s, needle)
}

/// What node A admits, node B refuses once the counts have gone through Redis: the limit is
/// the fleet's, not each node's.
#[test]
fn two_nodes_share_one_limit_through_redis() {
    let redis = Redis::start();
    for driver in drivers() {
        let test = format!("share-{driver}");
        // Day windows: fixed, so the counts do not slide away while the test looks at them.
        let cfg = node_config("requests_per_day = 10", &redis.url(), &test, "");
        let (a, b) = (start(&cfg, driver), start(&cfg, driver));
        assert_eq!(a.metric("sluice_quota_fleet_up"), 1.0, "{driver}");
        for i in 0..10 {
            assert_eq!(status(a.addr, KEY_A), 200, "{driver}: request {i} on A");
        }
        let v = wait_view(&b, "requests_per_day", |v| v["used"] == 10);
        assert_eq!(v["used"], 10, "{driver}: B never saw A's requests: {v}");
        assert_eq!(v["node"], 0, "{driver}: {v}");
        assert_eq!(v["fleet"], 10, "{driver}: {v}");
        wait_workers_synced(&b);
        let r = b.request(&chat(Some(KEY_A), "gpt", 1, "x"));
        assert_eq!(
            r.status,
            429,
            "{driver}: B admitted past the fleet limit: {}",
            r.text()
        );
        assert!(
            r.text().contains("requests_per_day"),
            "{driver}: {}",
            r.text()
        );
        assert_eq!(status(a.addr, KEY_A), 429, "{driver}");
        // team-b has no limits: Redis is not in its way.
        assert_eq!(status(b.addr, KEY_B), 200, "{driver}");
        assert!(b.metric("sluice_quota_redis_syncs_total") > 0.0, "{driver}");
        assert_eq!(
            b.metric("sluice_quota_redis_sync_errors_total"),
            0.0,
            "{driver}"
        );
    }
}

/// Two nodes driven at one limit from many connections at once: the fleet admits at least
/// the limit and at most the limit plus what it admits within one propagation lag
/// (3 x sync_interval + 2 Redis round trips; 50 ms here, generous for a loaded CI machine).
/// Without the shared counts each node would admit the whole limit: twice the limit.
#[test]
fn concurrent_nodes_stay_within_the_fleet_bound() {
    let redis = Redis::start();
    let limit = 300u64;
    let cfg = node_config(
        &format!("requests_per_minute = {limit}"),
        &redis.url(),
        "bound",
        "",
    );
    let (a, b) = (start(&cfg, "uring"), start(&cfg, "epoll"));
    let times = admission_times(&[a.addr, b.addr], 16, 60);
    let admitted = times.len() as u64;
    let busiest = busiest(&times, 0.050) as u64;
    let bound = limit + busiest;
    eprintln!("fleet admitted {admitted} of limit {limit}; bound {bound} ({busiest} in the busiest 50 ms)");
    assert!(admitted >= limit, "admitted {admitted} < limit {limit}");
    assert!(
        admitted <= bound,
        "admitted {admitted} > bound {bound}: the nodes did not share the limit"
    );
    assert!(
        bound < 2 * limit,
        "the load was too slow to tell sharing from not sharing"
    );
}

/// Redis killed mid-run: every request is still served (fail open) and the outage is
/// logged once and shown as a metric; when Redis comes back empty, the nodes rewrite their
/// counts and the fleet view is whole again.
#[test]
fn redis_outage_loses_no_request_and_recovers() {
    let redis = Redis::start();
    let cfg = node_config(
        "requests_per_day = 100000",
        &redis.url(),
        "outage",
        "redis_timeout = \"50ms\"",
    );
    let (a, b) = (start(&cfg, "epoll"), start(&cfg, "uring"));
    for _ in 0..5 {
        assert_eq!(status(a.addr, KEY_A), 200);
    }
    let v = wait_view(&b, "requests_per_day", |v| v["fleet"] == 5);
    assert_eq!(v["fleet"], 5, "{v}");

    let port = redis.kill();
    for i in 0..20 {
        assert_eq!(status(a.addr, KEY_A), 200, "A, request {i} with Redis down");
        assert_eq!(status(b.addr, KEY_A), 200, "B, request {i} with Redis down");
    }
    assert!(
        a.wait_metric("sluice_quota_fleet_up", 0.0),
        "A never noticed"
    );
    assert!(
        b.wait_metric("sluice_quota_fleet_up", 0.0),
        "B never noticed"
    );
    // Many failed rounds, one warning each.
    let errors_seen = b.metric("sluice_quota_redis_sync_errors_total");
    let end = Instant::now() + DEADLINE;
    while b.metric("sluice_quota_redis_sync_errors_total") < errors_seen + 2.0
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        wait_count_log(&b, "quota: Redis unavailable", 1),
        1,
        "{}",
        b.proc.log_text()
    );

    let _redis = Redis::on(port);
    assert!(
        a.wait_metric("sluice_quota_fleet_up", 1.0),
        "A never reconnected"
    );
    assert!(
        b.wait_metric("sluice_quota_fleet_up", 1.0),
        "B never reconnected"
    );
    // Redis came back empty; each node's next write restores its whole count: A served
    // 5 + 20 requests, B 20.
    let v = wait_view(&b, "requests_per_day", |v| v["fleet"] == 25);
    assert_eq!((&v["node"], &v["fleet"]), (&20.into(), &25.into()), "{v}");
    let v = wait_view(&a, "requests_per_day", |v| v["fleet"] == 20);
    assert_eq!((&v["node"], &v["fleet"]), (&25.into(), &20.into()), "{v}");
    assert_eq!(
        wait_count_log(&b, "quota: Redis reachable", 2),
        2,
        "{}",
        b.proc.log_text()
    );
}

/// `fail_closed = true`: while Redis is down, requests that have limits get 429
/// `fleet_unavailable`-style refusals; requests without limits are served. When Redis
/// appears, service resumes.
#[test]
fn fail_closed_refuses_limited_requests_until_redis_is_up() {
    let port = free_port();
    let cfg = node_config(
        "requests_per_minute = 100",
        &format!("redis://127.0.0.1:{port}"),
        "closed",
        "fail_closed = true\nredis_timeout = \"50ms\"",
    );
    let s = start(&cfg, "epoll");
    assert_eq!(s.metric("sluice_quota_fleet_up"), 0.0);
    assert_eq!(wait_count_log(&s, "quota: Redis unavailable", 1), 1);
    let r = s.request(&chat(Some(KEY_A), "gpt", 1, "x"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let err = &r.json()["error"];
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("quota service is unavailable"),
        "{err}"
    );
    assert_eq!(status(s.addr, KEY_B), 200, "team-b has no limits");

    let _redis = Redis::on(port);
    assert!(
        s.wait_metric("sluice_quota_fleet_up", 1.0),
        "never reconnected"
    );
    assert_eq!(status(s.addr, KEY_A), 200);
}
