//! End-to-end tests of `sluice-loadgen mock`: the real binary on an ephemeral port, spoken to
//! over raw TCP. Every wait is on an event (the ready line, a byte, EOF) bounded by a deadline;
//! the only polling is of `/mock/stats`, for counters updated after the client has gone.
// The helpers below are test code too: a failed expectation should panic loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use serde_json::{json, Value};
use sluice_proto_llm::synth::{Endpoint, SynthRequest, SynthStream};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound of any single wait.
const DEADLINE: Duration = Duration::from_secs(10);

/// A running mock, killed on drop (also when a test panics).
struct Mock {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mock(args: &[&str]) -> Mock {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["mock", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice-loadgen");
    let stdout = child.stdout.take().unwrap();
    let mut m = Mock {
        child,
        addr: "0.0.0.0:0".parse().unwrap(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(DEADLINE)
        .expect("no ready line (the mock failed to start?)");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first stdout line: {line}"));
    m.addr = addr.parse().unwrap();
    m
}

impl Mock {
    fn connect(&self) -> Conn {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Conn {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// One request on a fresh connection.
    fn request(&self, raw: &str) -> Response {
        let mut c = self.connect();
        c.send(raw);
        c.response()
    }

    fn stats(&self) -> Value {
        self.request("GET /mock/stats HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .json()
    }

    /// Polls `/mock/stats` until `field` equals `want`.
    fn wait_stat(&self, field: &str, want: u64) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let stats = self.stats();
            if stats[field] == want {
                return stats;
            }
            assert!(
                Instant::now() < end,
                "{field} never reached {want}: {stats}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The HTTP chunks, for chunked bodies.
    chunks: Vec<Vec<u8>>,
    /// False when the connection ended before the body did (no terminating chunk).
    complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

impl Conn {
    fn send(&mut self, raw: &str) {
        self.w.write_all(raw.as_bytes()).unwrap();
    }

    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        assert!(
            self.r.read_line(&mut line).unwrap() > 0,
            "connection closed"
        );
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                return (status, headers);
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }

    /// The next chunk of a chunked body; `None` at the terminating chunk or at EOF.
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        if self.r.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut data = vec![0; n + 2];
        self.r.read_exact(&mut data).unwrap();
        assert_eq!(&data[n..], b"\r\n");
        data.truncate(n);
        (n > 0).then_some(data)
    }

    fn response(&mut self) -> Response {
        let (status, headers) = self.head();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
            chunks: Vec::new(),
            complete: true,
        };
        if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                if self.r.read_line(&mut size).unwrap() == 0 {
                    r.complete = false;
                    break;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut data = vec![0; n + 2];
                self.r.read_exact(&mut data).unwrap();
                assert_eq!(&data[n..], b"\r\n");
                if n == 0 {
                    break;
                }
                data.truncate(n);
                r.body.extend_from_slice(&data);
                r.chunks.push(data);
            }
        } else if let Some(n) = r.header("content-length") {
            r.body = vec![0; n.parse().unwrap()];
            self.r.read_exact(&mut r.body).unwrap();
        } else {
            self.r.read_to_end(&mut r.body).unwrap();
        }
        r
    }

    /// True if the server closed the connection (EOF) without sending anything more.
    fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// SSE `data:` payloads of a stream body.
fn datas(body: &str) -> Vec<&str> {
    body.split_terminator("\n\n")
        .map(|f| f.strip_prefix("data: ").unwrap())
        .collect()
}

#[test]
fn streaming_chat_is_exact_openai_shape_on_both_drivers() {
    for driver in ["epoll", "uring"] {
        let m = mock(&["--io-driver", driver]);
        for usage in [true, false] {
            let opts = if usage {
                r#","stream_options":{"include_usage":true}"#
            } else {
                ""
            };
            let body = format!(
                r#"{{"model":"gpt-test","stream":true{opts},"messages":[{{"role":"system","content":"s"}},{{"role":"user","content":"one two three"}}]}}"#
            );
            let r = m.request(&post(
                "/v1/chat/completions",
                &body,
                "X-Request-Id: rid-7\r\n",
            ));
            assert_eq!(r.status, 200, "{driver}");
            assert!(r.complete);
            assert_eq!(r.header("content-type"), Some("text/event-stream"));
            assert_eq!(r.header("transfer-encoding"), Some("chunked"));
            assert_eq!(r.header("cache-control"), Some("no-cache"));
            assert_eq!(r.header("x-request-id"), Some("rid-7"));
            // One HTTP chunk per SSE frame.
            for chunk in &r.chunks {
                let chunk = std::str::from_utf8(chunk).unwrap();
                assert!(
                    chunk.starts_with("data: ") && chunk.ends_with("\n\n"),
                    "{chunk:?}"
                );
                assert_eq!(chunk.matches("\n\n").count(), 1, "{chunk:?}");
            }
            let text = r.text();
            let frames = datas(&text);
            assert_eq!(frames.last(), Some(&"[DONE]"));
            let first: Value = serde_json::from_str(frames[0]).unwrap();
            assert_eq!(first["object"], "chat.completion.chunk");
            assert_eq!(first["model"], "gpt-test");
            assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
            let content: String = frames[..frames.len() - 1]
                .iter()
                .map(|f| serde_json::from_str::<Value>(f).unwrap())
                .filter_map(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            assert_eq!(content, "one two three");
            if usage {
                let u: Value = serde_json::from_str(frames[frames.len() - 2]).unwrap();
                assert_eq!(u["choices"], json!([]));
                assert_eq!(u["usage"]["completion_tokens"], 3);
                assert_eq!(u["usage"]["prompt_tokens"], (4 + 1) + (4 + 3) + 3);
                assert_eq!(u["usage"]["total_tokens"], 15 + 3);
                assert!(frames[..frames.len() - 2]
                    .iter()
                    .all(|f| f.ends_with(r#","usage":null}"#)));
            } else {
                assert!(!text.contains("usage"), "{text}");
            }
            // Byte for byte what the generator produces for this id and time.
            let req =
                SynthRequest::parse(Endpoint::ChatCompletions, body.as_bytes(), None).unwrap();
            let id = first["id"].as_str().unwrap();
            let mut gen = SynthStream::new(&req, id, first["created"].as_u64().unwrap());
            let mut want = Vec::new();
            while gen.next_frame(&mut want) {}
            assert_eq!(text, String::from_utf8(want).unwrap(), "{driver}");
        }
    }
}

#[test]
fn non_streaming_completions_and_embeddings() {
    let m = mock(&["--models", "a,b"]);
    let r = m.request(&post(
        "/v1/chat/completions",
        r#"{"model":"m1","n":2,"messages":[{"role":"user","content":"one two three"}]}"#,
        "",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-request-id").is_none());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m1");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["choices"][1]["message"]["content"], "one two three");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert!(r.text().starts_with(r#"{"id":"chatcmpl-"#));

    let r = m.request(&post(
        "/v1/completions",
        r#"{"model":"inst","prompt":"say this","max_tokens":1}"#,
        "",
    ));
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "say");
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    let float = m
        .request(&post(
            "/v1/embeddings",
            r#"{"model":"e","input":["a b","c"],"dimensions":16}"#,
            "",
        ))
        .json();
    assert_eq!(float["object"], "list");
    assert_eq!(
        float["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let b64 = m
        .request(&post(
            "/v1/embeddings",
            r#"{"model":"e","input":["a b","c"],"dimensions":16,"encoding_format":"base64"}"#,
            "",
        ))
        .json();
    for i in 0..2 {
        let floats: Vec<f32> = float["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(floats.len(), 16);
        let norm: f32 = floats.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, floats);
    }
    let stats = m.stats();
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["chat"], 1);
    assert_eq!(stats["completions"], 1);
    assert_eq!(stats["embeddings"], 2);
    assert_eq!(stats["last_model"], "e");
    assert_eq!(stats["last_path"], "/v1/embeddings");
    assert_eq!(stats["last_headers"]["content-type"], "application/json");
    assert!(stats["last_body"].as_str().unwrap().contains("base64"));
}

#[test]
fn models_routes_and_errors() {
    let m = mock(&["--models", "alpha,beta"]);
    let v = m
        .request("GET /v1/models HTTP/1.1\r\nHost: m\r\n\r\n")
        .json();
    assert_eq!(
        v,
        json!({"object": "list", "data": [
            {"id": "alpha", "object": "model", "created": 1_700_000_000, "owned_by": "sluice-mock"},
            {"id": "beta", "object": "model", "created": 1_700_000_000, "owned_by": "sluice-mock"}]})
    );
    let v = m
        .request("GET /models/anything HTTP/1.1\r\nHost: m\r\n\r\n")
        .json();
    assert_eq!(v["id"], "anything");
    assert_eq!(v["object"], "model");
    let r = m.request("GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(r.status, 200);

    let r = m.request("GET /v1/nope HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Invalid URL (GET /v1/nope)");
    let r = m.request("GET /v1/chat/completions HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(r.json()["error"]["message"].is_string());

    // Without the /v1 prefix too; validation errors are OpenAI-style 400s.
    let r = m.request(&post(
        "/chat/completions",
        r#"{"model":"m","messages":[]}"#,
        "",
    ));
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "messages");
    let r = m.request(&post("/v1/chat/completions", "[1]", ""));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], Value::Null);

    // Over the body limit: 413 before reading the body.
    let r = m.request(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: 33554433\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]["message"].is_string());
}

#[test]
fn keep_alive_pipelining_chunked_bodies_and_http10() {
    let m = mock(&[]);
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi there"}]}"#;
    let stream = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi there"}]}"#;
    let mut c = m.connect();
    c.send(&post("/v1/chat/completions", chat, ""));
    assert_eq!(
        c.response().json()["choices"][0]["message"]["content"],
        "hi there"
    );
    c.send(&post("/v1/chat/completions", stream, ""));
    let r = c.response();
    assert!(r.complete && r.text().ends_with("data: [DONE]\n\n"));
    // Two pipelined requests in one write, the second with a chunked body.
    let (a, b) = stream.split_at(20);
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    c.send(&format!(
        "{}{chunked}",
        post("/v1/completions", r#"{"model":"m","prompt":"p q"}"#, "")
    ));
    assert_eq!(c.response().json()["choices"][0]["text"], "p q");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(r#""content":"there""#), "{}", r.text());
    // Stats on the same connection: one connection served everything.
    c.send("GET /mock/stats HTTP/1.1\r\nHost: m\r\n\r\n");
    let stats = c.response().json();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["active_connections"], 1);
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["streams"], 2);
    assert_eq!(stats["streams_completed"], 2);
    assert_eq!(stats["token_chunks_sent"], 4);
    // Connection: close is honoured.
    c.send("GET /healthz HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response().status, 200);
    assert!(c.at_eof());

    // HTTP/1.0: keep-alive only when asked; streams are close-delimited.
    let mut c = m.connect();
    c.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let raw = post("/v1/chat/completions", stream, "").replace("HTTP/1.1", "HTTP/1.0");
    c.send(&raw);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    assert!(c.at_eof());
}

#[test]
fn fault_status_429_with_retry_after_and_fault_rate() {
    let m = mock(&["--fault-status", "429"]);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    let r = m.request(&post("/v1/chat/completions", body, ""));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("1s"));
    assert!(r.header("x-ratelimit-limit-requests").is_some());
    let v = r.json();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    // GETs are never faulted.
    assert_eq!(
        m.request("GET /v1/models HTTP/1.1\r\nHost: m\r\n\r\n")
            .status,
        200
    );
    assert_eq!(m.stats()["faults"], 1);

    let m = mock(&["--fault-status", "503", "--fault-rate", "0.5"]);
    let statuses: Vec<u16> = (0..6)
        .map(|_| m.request(&post("/v1/chat/completions", body, "")).status)
        .collect();
    assert_eq!(statuses, [200, 503, 200, 503, 200, 503]);
    assert_eq!(m.stats()["faults"], 3);
}

#[test]
fn require_key() {
    let m = mock(&["--require-key", "sk-test"]);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    for auth in [
        "",
        "Authorization: Bearer nope\r\n",
        "x-api-key: sk-test\r\n",
    ] {
        let r = m.request(&post("/v1/chat/completions", body, auth));
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    }
    let r = m.request(&post(
        "/v1/chat/completions",
        body,
        "Authorization: Bearer sk-test\r\n",
    ));
    assert_eq!(r.status, 200);
    let stats = m.stats();
    assert_eq!(stats["last_authorization"], "Bearer sk-test");
    assert_eq!(stats["requests"], 4);
    // Models need no key.
    assert_eq!(
        m.request("GET /v1/models HTTP/1.1\r\nHost: m\r\n\r\n")
            .status,
        200
    );
}

fn token_frames(chunks: &[Vec<u8>]) -> usize {
    chunks
        .iter()
        .filter(|c| {
            std::str::from_utf8(c)
                .unwrap()
                .contains(r#""delta":{"content""#)
        })
        .count()
}

#[test]
fn drop_after_cuts_the_body_without_the_last_chunk() {
    let m = mock(&["--drop-after", "3", "--tokens", "20"]);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let mut c = m.connect();
    c.send(&post("/v1/chat/completions", body, ""));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the stream ended cleanly: {}", r.text());
    assert_eq!(token_frames(&r.chunks), 3);
    assert!(!r.text().contains("[DONE]"));
    let stats = m.stats();
    assert_eq!(stats["streams_dropped"], 1);
    assert_eq!(stats["streams_completed"], 0);
    assert_eq!(stats["token_chunks_sent"], 3);
}

#[test]
fn stall_after_keeps_the_connection_until_the_client_leaves() {
    let m = mock(&["--stall-after", "2", "--tokens", "20"]);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let mut c = m.connect();
    c.send(&post("/v1/chat/completions", body, ""));
    let (status, _) = c.head();
    assert_eq!(status, 200);
    let mut chunks = Vec::new();
    while token_frames(&chunks) < 2 {
        chunks.push(c.chunk().expect("stream ended early"));
    }
    // Nothing more comes, and the connection stays open.
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    match c.r.read(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected a stalled open connection, got {other:?}"),
    }
    let stats = m.wait_stat("streams_stalled", 1);
    assert_eq!(stats["client_disconnects"], 0);
    drop(c);
    let stats = m.wait_stat("client_disconnects", 1);
    assert_eq!(stats["streams_completed"], 0);
    assert_eq!(stats["token_chunks_sent"], 2);
}

#[test]
fn pacing_delays_and_hang_up_detection() {
    // Lower bounds only: the mock may be slower than asked, never faster.
    let m = mock(&["--ttft-ms", "60", "--itl-ms", "20", "--tokens", "5"]);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let start = Instant::now();
    let r = m.request(&post("/v1/chat/completions", body, ""));
    assert!(r.complete);
    assert_eq!(token_frames(&r.chunks), 5);
    assert!(
        start.elapsed() >= Duration::from_millis(60 + 4 * 20),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let r = m.request(&post(
        "/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        "",
    ));
    assert_eq!(r.status, 200);
    // Non-streaming replies come when the last token would have been streamed.
    assert!(start.elapsed() >= Duration::from_millis(60 + 4 * 20));

    let m = mock(&["--delay-headers-ms", "150"]);
    let start = Instant::now();
    let mut c = m.connect();
    c.send(&post(
        "/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        "",
    ));
    let (status, _) = c.head();
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(150));

    // A client that hangs up during a slow stream is noticed while the mock sleeps.
    let m = mock(&["--itl-ms", "60000", "--tokens", "5"]);
    let mut c = m.connect();
    c.send(&post("/v1/chat/completions", body, ""));
    c.head();
    let first = c.chunk().unwrap();
    assert!(String::from_utf8(first).unwrap().contains("assistant"));
    assert!(token_frames(&[c.chunk().unwrap()]) == 1);
    drop(c);
    let stats = m.wait_stat("client_disconnects", 1);
    assert_eq!(stats["streams_completed"], 0);
    // Only the stats request's own connection is left.
    m.wait_stat("active_connections", 1);
}

#[test]
fn several_workers_share_one_port_and_one_set_of_counters() {
    let m = mock(&["--workers", "2", "--no-usage"]);
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x y"}]}"#;
    let conns: Vec<Conn> = (0..6)
        .map(|_| {
            let mut c = m.connect();
            c.send(&post("/v1/chat/completions", body, ""));
            c
        })
        .collect();
    for mut c in conns {
        let r = c.response();
        assert!(r.complete);
        // --no-usage: no usage chunk and no usage:null, even though the client asked.
        assert!(!r.text().contains("usage"), "{}", r.text());
        assert!(r.text().ends_with("data: [DONE]\n\n"));
    }
    let non_stream = m.request(&post(
        "/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        "",
    ));
    assert!(non_stream.json().get("usage").is_none());
    let stats = m.stats();
    assert_eq!(stats["requests"], 7);
    assert_eq!(stats["streams_completed"], 6);
    assert_eq!(stats["connections"], 8);
}

#[test]
fn bad_flags_fail_fast() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["mock", "--fault-rate", "0.5"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let help = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["mock", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--stall-after"));
}

/// `event:` frames of a stream body: (name, data), each name checked against its `type`.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split_terminator("\n\n")
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let name = event.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str(), "{frame}");
            (name, data)
        })
        .collect()
}

/// What the generator produces for `body` with the id and time the mock chose.
fn generated(endpoint: Endpoint, body: &str, id: &str, created: u64) -> String {
    let req = SynthRequest::parse(endpoint, body.as_bytes(), None).unwrap();
    let mut gen = SynthStream::new(&req, id, created);
    let mut want = Vec::new();
    while gen.next_frame(&mut want) {}
    String::from_utf8(want).unwrap()
}

const ANTHROPIC: &str = "anthropic-version: 2023-06-01\r\n";

#[test]
fn anthropic_messages_on_both_drivers() {
    for driver in ["epoll", "uring"] {
        let m = mock(&["--io-driver", driver, "--require-key", "sk-ant"]);
        let key = "x-api-key: sk-ant\r\n";
        let body = r#"{"model":"claude-test","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"one two three"}]}"#;
        // The real API requires anthropic-version; errors come in Anthropic's shape.
        let r = m.request(&post("/v1/messages", body, key));
        assert_eq!(r.status, 400, "{driver}");
        assert_eq!(
            r.json(),
            json!({"type":"error","error":{"type":"invalid_request_error",
                   "message":"anthropic-version: header is required"}})
        );
        let r = m.request(&post("/v1/messages", body, ANTHROPIC));
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        let r = m.request(&post(
            "/v1/messages",
            r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            &format!("{key}{ANTHROPIC}"),
        ));
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["type"], "error");
        assert_eq!(r.json()["error"]["message"], "max_tokens: Field required");
        let r = m.request("GET /v1/messages HTTP/1.1\r\nHost: m\r\n\r\n");
        assert_eq!(r.status, 405);
        assert_eq!(r.json()["error"]["type"], "not_found_error");

        // Non-streaming: the generator's body for this id.
        let r = m.request(&post("/v1/messages", body, &format!("{key}{ANTHROPIC}")));
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"][0]["text"], "one two three");
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"]["output_tokens"], 3);
        let id = v["id"].as_str().unwrap();
        assert!(id.starts_with("msg_"));
        let req = SynthRequest::parse(Endpoint::Messages, body.as_bytes(), None).unwrap();
        assert_eq!(
            r.text(),
            String::from_utf8(sluice_proto_llm::synth::response_body(&req, id, 0)).unwrap()
        );

        // Streaming, with a Bearer key this time: one HTTP chunk per event.
        let stream = body.replacen('{', r#"{"stream":true,"#, 1);
        let r = m.request(&post(
            "/v1/messages",
            &stream,
            &format!("Authorization: Bearer sk-ant\r\n{ANTHROPIC}"),
        ));
        assert_eq!(r.status, 200);
        assert!(r.complete);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        for chunk in &r.chunks {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(chunk.starts_with("event: ") && chunk.ends_with("\n\n"));
            assert_eq!(chunk.matches("\n\n").count(), 1, "{chunk:?}");
        }
        let text = r.text();
        let events = events(&text);
        let names = names(&events);
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let id = events[0].1["message"]["id"].as_str().unwrap();
        assert_eq!(text, generated(Endpoint::Messages, &stream, id, 0));
        assert_eq!(events[7].1["usage"]["output_tokens"], 3);

        let stats = m.stats();
        assert_eq!(stats["messages"], 5);
        assert_eq!(stats["streams_completed"], 1);
        assert_eq!(stats["last_path"], "/v1/messages");
        assert_eq!(stats["last_headers"]["anthropic-version"], "2023-06-01");
        assert_eq!(stats["last_authorization"], "Bearer sk-ant");
        let r = m.request(&post("/v1/messages", body, &format!("{key}{ANTHROPIC}")));
        assert_eq!(r.status, 200);
        assert_eq!(m.stats()["last_headers"]["x-api-key"], "sk-ant");
    }
}

const WEATHER_TOOL: &str = r#"{"name":"get_weather","description":"d","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}"#;

#[test]
fn anthropic_tool_call_and_in_stream_error() {
    let m = mock(&[]);
    let body = format!(
        r#"{{"model":"m","max_tokens":500,"stream":true,"tools":[{WEATHER_TOOL}],"messages":[{{"role":"user","content":"please call get_weather for Paris"}}]}}"#
    );
    let r = m.request(&post("/v1/messages", &body, ANTHROPIC));
    assert!(r.complete);
    let events = events(&r.text());
    assert_eq!(events[1].1["content_block"]["type"], "tool_use");
    assert_eq!(events[1].1["content_block"]["name"], "get_weather");
    assert_eq!(events[1].1["content_block"]["input"], json!({}));
    let partial: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    let input: Value = serde_json::from_str(&partial).unwrap();
    assert_eq!(
        input,
        json!({"city":"please call get_weather for Paris","days":42})
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    // The follow-up turn with the tool result gets the result echoed.
    let follow = format!(
        r#"{{"model":"m","max_tokens":500,"tools":[{WEATHER_TOOL}],"messages":[
            {{"role":"user","content":"please call get_weather for Paris"}},
            {{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{input}}}]}},
            {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny, 21 C"}}]}}]}}"#
    );
    let v = m.request(&post("/v1/messages", &follow, ANTHROPIC)).json();
    assert_eq!(v["content"][0]["text"], "sunny, 21 C");
    assert_eq!(m.stats()["tool_calls"], 1);

    // An error inside the 200 stream: event: error, then the body ends cleanly.
    let m = mock(&["--error-event-after", "2", "--tokens", "10"]);
    let body = r#"{"model":"m","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"a b c"}]}"#;
    let r = m.request(&post("/v1/messages", body, ANTHROPIC));
    assert!(r.complete, "the body must end with its terminating chunk");
    let events = events_of(&r);
    let names = names(&events);
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(events[5].1["error"]["type"], "overloaded_error");
    let stats = m.stats();
    assert_eq!(stats["streams_errored"], 1);
    assert_eq!(stats["streams_completed"], 0);
    assert_eq!(stats["token_chunks_sent"], 2);
}

#[test]
fn responses_stream_body_tool_call_and_error() {
    let m = mock(&[]);
    let body = r#"{"model":"gpt-test","input":"one two three","instructions":"be brief","max_output_tokens":100}"#;
    let r = m.request(&post("/v1/responses", body, ""));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["instructions"], "be brief");
    assert_eq!(v["output"][0]["content"][0]["text"], "one two three");
    assert_eq!(v["usage"]["output_tokens"], 3);
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"));

    let stream = body.replacen('{', r#"{"stream":true,"#, 1);
    let r = m.request(&post("/v1/responses", &stream, ""));
    assert!(r.complete);
    assert_eq!(r.chunks.len(), 3 + 3 + 4 + 1);
    let text = r.text();
    let events = events(&text);
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i);
    }
    let created = &events[0].1["response"];
    let id = created["id"].as_str().unwrap();
    let at = created["created_at"].as_u64().unwrap();
    assert_eq!(text, generated(Endpoint::Responses, &stream, id, at));
    assert_eq!(events.last().unwrap().0, "response.completed");

    // A function call, streamed.
    let tools = r#"[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]"#;
    let call = format!(
        r#"{{"model":"m","stream":true,"tools":{tools},"tool_choice":"required","input":"Paris"}}"#
    );
    let events = events_of(&m.request(&post("/v1/responses", &call, "")));
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city":"Paris"})
    );
    let done = &events[events.len() - 1].1["response"]["output"][0];
    assert_eq!(done["type"], "function_call");
    assert_eq!(done["arguments"], args.as_str());
    // The follow-up with the output.
    let follow = format!(
        r#"{{"model":"m","tools":{tools},"input":[{{"role":"user","content":"Paris"}},
            {{"type":"function_call","call_id":"{}","name":"get_weather","arguments":"{{}}"}},
            {{"type":"function_call_output","call_id":"{}","output":"rainy"}}]}}"#,
        done["call_id"].as_str().unwrap(),
        done["call_id"].as_str().unwrap()
    );
    let v = m.request(&post("/v1/responses", &follow, "")).json();
    assert_eq!(v["output"][0]["content"][0]["text"], "rainy");
    let stats = m.stats();
    assert_eq!(stats["responses"], 4);
    assert_eq!(stats["tool_calls"], 1);

    // Validation errors are OpenAI-shaped here.
    let r = m.request(&post(
        "/v1/responses",
        r#"{"model":"m","input":"x","max_output_tokens":8}"#,
        "",
    ));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "max_output_tokens");

    // error, then response.failed, and a clean end of body.
    let m = mock(&["--error-event-after", "1"]);
    let r = m.request(&post("/v1/responses", &stream, ""));
    assert!(r.complete);
    let events = events_of(&r);
    let names = names(&events);
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "error",
            "response.failed"
        ]
    );
    assert_eq!(events[6].1["response"]["status"], "failed");
    assert_eq!(events[6].1["sequence_number"], 6);
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn events_of(r: &Response) -> Vec<(String, Value)> {
    assert_eq!(r.status, 200);
    events(&r.text())
}

#[test]
fn chat_tool_call_and_in_stream_error() {
    let m = mock(&["--error-event-after", "2", "--tokens", "9"]);
    let tools = r#"[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"}}}}}]"#;
    let body = format!(
        r#"{{"model":"m","stream":true,"tools":{tools},"messages":[{{"role":"user","content":"call lookup with a rather long query"}}]}}"#
    );
    // The call's argument fragments count as tokens: the error comes after two of them.
    let r = m.request(&post("/v1/chat/completions", &body, ""));
    assert_eq!(r.status, 200);
    assert!(r.complete);
    let text = r.text();
    let frames = datas(&text);
    assert!(!text.contains("[DONE]"));
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(last["error"]["message"].is_string());
    let first: Value = serde_json::from_str(frames[0]).unwrap();
    assert_eq!(
        first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "lookup"
    );
    assert_eq!(frames.len(), 1 + 2 + 1);

    // Without the error, the fragments make the arguments.
    let m = mock(&[]);
    let r = m.request(&post("/v1/chat/completions", &body, ""));
    let text = r.text();
    let frames = datas(&text);
    assert_eq!(frames.last(), Some(&"[DONE]"));
    let mut args = String::new();
    let mut finish = Value::Null;
    for f in &frames[..frames.len() - 1] {
        let v: Value = serde_json::from_str(f).unwrap();
        if let Some(a) = v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            args.push_str(a);
        }
        if !v["choices"][0]["finish_reason"].is_null() {
            finish = v["choices"][0]["finish_reason"].clone();
        }
    }
    assert_eq!(finish, "tool_calls");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"q":"call lookup with a rather long query","n":42})
    );
}

#[test]
fn faults_use_the_route_shape() {
    let m = mock(&["--fault-status", "529"]);
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    let r = m.request(&post(
        "/v1/messages",
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
        ANTHROPIC,
    ));
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    let r = m.request(&post("/v1/responses", r#"{"model":"m","input":"x"}"#, ""));
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = m.request(&post("/v1/chat/completions", chat, ""));
    assert_eq!(r.json()["error"]["type"], "server_error");
    let m = mock(&["--fault-status", "429"]);
    let r = m.request(&post(
        "/v1/messages",
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
        ANTHROPIC,
    ));
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
}

#[test]
fn jittered_pacing_keeps_its_lower_bound() {
    // Gaps of 40 ms +-50%: never below 20 ms each. Lower bounds only.
    let m = mock(&[
        "--itl-ms",
        "40",
        "--itl-jitter",
        "50",
        "--seed",
        "3",
        "--tokens",
        "6",
    ]);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let start = Instant::now();
    let r = m.request(&post("/v1/chat/completions", body, ""));
    assert!(r.complete);
    assert_eq!(token_frames(&r.chunks), 6);
    assert!(
        start.elapsed() >= Duration::from_millis(5 * 20),
        "{:?}",
        start.elapsed()
    );
}
