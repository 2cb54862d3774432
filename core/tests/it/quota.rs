//! Consumers, auth and token quotas through the real binary.

use crate::harness::*;
use std::io::{BufReader, Write};

pub const KEY_A: &str = "sk-team-a-0123456789abcdef";
pub const KEY_B: &str = "sk-team-b-0123456789abcdef";

pub fn config(limits_a: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 2

{extra}

[backends.mock]
provider = "mock"

[models.gpt]
targets = [{{ backend = "mock" }}]
price = {{ input = 1.0, output = 2.0 }}

[models.secret-model]
targets = [{{ backend = "mock" }}]

[consumers.team-a]
keys = ["env:TEAM_A_KEY"]
models = ["gpt"]

[consumers.team-a.limits]
{limits_a}

[consumers.team-b]
keys = ["sha256:{}"]
"#,
        sha256_hex(KEY_B)
    )
}

fn sha256_hex(s: &str) -> String {
    sluice_core::config::key_digest(s)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Drives `threads` keep-alive connections (spread over `addrs`), `per_thread` team-a
/// requests each, and returns when each admitted request was answered (seconds from the
/// start, sorted). Anything but 200 or 429 fails the test.
pub fn admission_times(
    addrs: &[std::net::SocketAddr],
    threads: usize,
    per_thread: usize,
) -> Vec<f64> {
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addrs[t % addrs.len()];
            std::thread::spawn(move || {
                let mut c = connect(addr);
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut admitted_at = Vec::new();
                for _ in 0..per_thread {
                    c.write_all(chat(Some(KEY_A), "gpt", 1, "x").as_bytes())
                        .unwrap();
                    let resp = read_response(&mut r).unwrap();
                    assert!(resp.status == 200 || resp.status == 429, "{}", resp.text());
                    if resp.status == 200 {
                        admitted_at.push(started.elapsed().as_secs_f64());
                    }
                }
                admitted_at
            })
        })
        .collect();
    let mut times: Vec<f64> = handles
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The most of the sorted `times` that fall within any `window` seconds.
pub fn busiest(times: &[f64], window: f64) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t - times[i] <= window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

pub fn start(cfg: &str, driver: &str) -> Sluice {
    sluice_env(cfg, driver, &[("TEAM_A_KEY", KEY_A)])
}

pub fn chat(key: Option<&str>, model: &str, max_tokens: u64, content: &str) -> String {
    let body = format!(
        r#"{{"model":"{model}","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"{content}"}}]}}"#
    );
    let auth = key.map_or_else(String::new, |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn keys_consumers_and_models() {
    for driver in drivers() {
        let mut s = start(&config("requests_per_minute = 1000", ""), driver);
        assert!(
            s.proc.wait_log("authentication: API keys"),
            "{}",
            s.proc.log_text()
        );
        let r = s.request(&chat(None, "gpt", 5, "hi"));
        assert_eq!(r.status, 401, "{driver}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        assert_eq!(r.json()["error"]["code"], "invalid_api_key");
        let r = s.request(&chat(Some("sk-wrong-wrong-wrong-wrong"), "gpt", 5, "hi"));
        assert_eq!(r.status, 401);
        assert!(
            !r.text().contains("sk-wrong"),
            "the credential is never echoed"
        );
        let r = s.request(&chat(Some(KEY_A), "gpt", 5, "hi there"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("1000"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("999"));
        // x-api-key works too, and a sha256: key matches its key.
        let raw = chat(Some(KEY_B), "secret-model", 5, "b").replace(
            &format!("Authorization: Bearer {KEY_B}"),
            &format!("x-api-key: {KEY_B}"),
        );
        assert_eq!(s.request(&raw).status, 200);
        // team-a may only use gpt.
        let r = s.request(&chat(Some(KEY_A), "secret-model", 5, "hi"));
        assert_eq!(r.status, 403);
        assert_eq!(r.json()["error"]["code"], "model_not_allowed");
        // Anthropic clients get Anthropic-shaped errors.
        let body = r#"{"model":"gpt","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#;
        let raw = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = s.request(&raw);
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        assert_eq!(s.metric("sluice_auth_missing_total"), 2.0);
        assert_eq!(s.metric("sluice_model_forbidden_total"), 1.0);
    }
}

#[test]
fn open_gateway_says_so() {
    let mut s = sluice(&proxy_config("http://127.0.0.1:9/v1", "", ""), "epoll");
    assert!(
        s.proc.wait_log("authentication: OPEN"),
        "{}",
        s.proc.log_text()
    );
}

#[test]
fn request_limit_gives_429_with_retry_after_and_headers() {
    // One worker so the count is exact (the cross-worker bound has its own test).
    let cfg = config("requests_per_minute = 3", "").replace("workers = 2", "workers = 1");
    let s = start(&cfg, "epoll");
    for i in 0..3 {
        let r = s.request(&chat(Some(KEY_A), "gpt", 5, "hi"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(
            r.header("x-ratelimit-remaining-requests"),
            Some(&*(2 - i).to_string())
        );
    }
    let r = s.request(&chat(Some(KEY_A), "gpt", 5, "hi"));
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=120).contains(&retry), "{retry}");
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    let v = r.json();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    // Other consumers are not affected.
    assert_eq!(s.request(&chat(Some(KEY_B), "gpt", 5, "hi")).status, 200);
    assert_eq!(
        s.metric(r#"sluice_quota_rejected_total{consumer="team-a",limit="requests_per_minute"}"#),
        1.0
    );
    assert_eq!(
        s.metric(r#"sluice_quota_admitted_total{consumer="team-a"}"#),
        3.0
    );
}

#[test]
fn settlement_refunds_the_unused_reservation() {
    // Each request reserves prompt estimate + max_tokens (100) but uses a handful of tokens:
    // after settlement the budget is charged the real usage, so many more fit than 1000/100.
    let cfg = config("tokens_per_day = 1000", "").replace("workers = 2", "workers = 1");
    let s = start(&cfg, "uring");
    let mut ok = 0;
    for _ in 0..40 {
        let r = s.request(&chat(Some(KEY_A), "gpt", 100, "two words"));
        if r.status == 200 {
            ok += 1;
        } else {
            assert_eq!(r.status, 429, "{}", r.text());
            assert_eq!(
                r.json()["error"]["type"],
                "insufficient_quota",
                "day budgets are quota"
            );
            break;
        }
    }
    assert!(
        ok > 20,
        "only {ok} requests fit: reservations were not refunded"
    );
    // The tokens counted per consumer are the real ones.
    let out = s.metric(r#"sluice_consumer_tokens_total{consumer="team-a",kind="output"}"#);
    assert_eq!(out, 2.0 * ok as f64);
}

#[test]
fn a_request_larger_than_the_limit_is_refused_at_once() {
    let s = start(&config("output_tokens_per_minute = 100", ""), "epoll");
    let r = s.request(&chat(Some(KEY_A), "gpt", 500, "x"));
    assert_eq!(r.status, 429);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lower max_tokens"),
        "{}",
        r.text()
    );
}

#[test]
fn jwt_consumers() {
    let secret = "a-very-long-shared-secret-for-hs256-tokens";
    let extra = format!("[auth]\njwt = {{ algorithms = [\"HS256\"], secret = \"{secret}\", issuer = \"idp\", audience = \"sluice\" }}");
    let s = start(&config("requests_per_minute = 1000", &extra), "epoll");
    let token = |sub: &str, exp_offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims =
            serde_json::json!({"sub": sub, "iss": "idp", "aud": "sluice", "exp": now + exp_offset});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    assert_eq!(
        s.request(&chat(Some(&token("team-a", 600)), "gpt", 5, "jwt"))
            .status,
        200
    );
    let r = s.request(&chat(Some(&token("team-a", -600)), "gpt", 5, "jwt"));
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        r.text()
    );
    assert_eq!(
        s.request(&chat(Some(&token("nobody", 600)), "gpt", 5, "jwt"))
            .status,
        401
    );
    // The consumer's model list applies to token holders too.
    assert_eq!(
        s.request(&chat(Some(&token("team-a", 600)), "secret-model", 5, "jwt"))
            .status,
        403
    );
}

#[test]
fn audit_records_carry_the_consumer() {
    let dir = TempDir::new();
    let audit = dir.0.join("audit.jsonl");
    let extra = format!("[audit]\npath = \"{}\"", audit.display());
    let s = start(&config("requests_per_minute = 1000", &extra), "epoll");
    assert_eq!(
        s.request(&chat(Some(KEY_A), "gpt", 5, "audited")).status,
        200
    );
    let end = std::time::Instant::now() + DEADLINE;
    let line = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if let Some(l) = text.lines().next() {
            break l.to_owned();
        }
        assert!(std::time::Instant::now() < end);
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["consumer"], "team-a");
}

/// Both workers driven at one limit from many connections: the admitted total stays within
/// the documented bound, `limit + (W - 1) x (what one worker admits in one sync_interval)`,
/// computed from the rate this run actually reached.
#[test]
fn cross_worker_over_admission_stays_within_the_bound() {
    let limit = 400u64;
    let cfg = config(
        &format!("requests_per_minute = {limit}"),
        "[quota]\nsync_interval = \"10ms\"",
    );
    let s = start(&cfg, "epoll");
    let times = admission_times(&[s.addr], 16, 50);
    let admitted = times.len() as u64;
    // What the workers admitted in the busiest window of one interval (plus a millisecond of
    // clock granularity and a millisecond of client-side timestamp jitter): the other worker
    // can be blind to at most that much, in a 2-worker gateway half of it on average.
    let window = 0.012;
    let busiest = busiest(&times, window);
    let rate_per_worker = busiest as f64 / window / 2.0;
    let bound = limit as f64 + (2.0 - 1.0) * busiest as f64 / 2.0;
    eprintln!("admitted {admitted} of limit {limit}; bound {bound:.1} at {rate_per_worker:.0}/s per worker");
    assert!(
        admitted >= limit,
        "admitted {admitted} < limit {limit}: the limit refused too early"
    );
    assert!(
        admitted as f64 <= bound.ceil(),
        "admitted {admitted} > bound {bound:.1} (rate {rate_per_worker:.0}/s per worker)"
    );
}

/// A budget that runs out during a stream ends it well-formed. A request without
/// `max_tokens` reserves `quota.default_max_tokens` (5 here), so its stream can outgrow its
/// reservation; when the tokens relayed push `tokens_per_day` over, the client gets a `length`
/// finish (usage chunk if asked, `[DONE]`), not an error or a hang.
#[test]
fn budget_running_out_mid_stream_ends_the_stream_cleanly() {
    let m = mock(&["--tokens", "200"]);
    let extra = format!(
        "[quota]\ndefault_max_tokens = 5\n\n[backends.up]\nprovider = \"openai\"\nbase_url = \"{}\"\n\n[models.remote]\ntargets = [{{ backend = \"up\" }}]\n",
        m.url()
    );
    let cfg = config("tokens_per_day = 120", &extra)
        .replace("models = [\"gpt\"]", "models = [\"gpt\", \"remote\"]");
    for driver in drivers() {
        let s = start(&cfg, driver);
        let body = r#"{"model":"remote","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"please write a lot of words"}]}"#;
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = s.request(&raw);
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        let text = r.text();
        assert!(text.ends_with("data: [DONE]\n\n"), "{driver}: {text}");
        assert!(
            text.contains(r#""finish_reason":"length""#),
            "{driver}: {text}"
        );
        let deltas = text.matches(r#""content":""#).count();
        assert!(
            deltas < 150,
            "{driver}: the stream was not cut ({deltas} deltas)"
        );
        let usage = text
            .split("\n\n")
            .filter(|f| f.contains(r#""choices":[]"#))
            .last()
            .unwrap();
        assert!(usage.contains("completion_tokens"), "{usage}");
        assert_eq!(s.metric("sluice_streams_cut_by_budget_total"), 1.0);
        // What is left of the budget (the admission estimate is biased upwards, the settlement
        // counts exactly) is small: the next stream is refused, or cut again early.
        let r = s.request(&raw);
        if r.status == 200 {
            assert!(
                r.text().contains(r#""finish_reason":"length""#),
                "{}",
                r.text()
            );
            assert!(
                r.text().matches(r#""content":""#).count() < 100,
                "the second stream was not cut: {}",
                r.text()
            );
        } else {
            assert_eq!(r.status, 429, "{}", r.text());
        }
    }
    // Responses clients of the built-in mock: `response.incomplete`, never `completed`.
    let cfg = cfg.replace(
        "provider = \"mock\"\n",
        "provider = \"mock\"\nmock = { tokens = 200 }\n",
    );
    let s = start(&cfg, "epoll");
    let body = r#"{"model":"gpt","stream":true,"input":"write a lot"}"#;
    let raw = format!(
        "POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = s.request(&raw);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: response.incomplete"), "{text}");
    assert!(!text.contains("response.completed"));
}
