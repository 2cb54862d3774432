//! Proxying: streaming relay, non-streaming, upstream errors, disconnects, routing.

use crate::harness::*;
use std::io::{BufReader, Read, Write};

#[test]
fn streaming_relay_is_byte_exact() {
    // Recorded-style stream with the awkward parts: CRLF line ends, a comment heartbeat, a
    // multi-line data event, an unknown event type, frames split across TCP writes and chunk
    // boundaries, and several frames in one write.
    let frames: Vec<&[u8]> = vec![
        b": keep-alive\n\n",
        b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n\r\n",
        b"event: vendor.custom\ndata: {\"x\":1}\n\n",
        b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
        b"data: {\"multi\":\ndata: \"line\"}\n\n",
        b"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
        b"data: [DONE]\n\n",
    ];
    let expected: Vec<u8> = frames.concat();
    // Split the byte stream at awkward places across chunks and writes.
    let mut steps = vec![Step::Send(sse_response_head())];
    let mut pos = 0;
    for (i, cut) in [3usize, 17, 40, 41, 150, 151, 290, 400].iter().enumerate() {
        let cut = (*cut).min(expected.len());
        if cut > pos {
            steps.push(Step::Send(chunk(&expected[pos..cut])));
            if i % 2 == 0 {
                steps.push(Step::WaitGo);
            }
            pos = cut;
        }
    }
    steps.push(Step::Send(chunk(&expected[pos..])));
    steps.push(Step::Send(b"0\r\n\r\n".to_vec()));
    for driver in drivers() {
        let up = scripted(steps.clone());
        let s = sluice(
            &proxy_config(&format!("http://{}/v1", up.addr), "", ""),
            driver,
        );
        for _ in 0..8 {
            let _ = up.go.send(());
        }
        let r = s.request(&post("/v1/chat/completions", &chat_body(true, true, "hi")));
        assert_eq!(r.status, 200, "{driver}");
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.header("x-accel-buffering"), Some("no"));
        assert!(r.header("x-request-id").is_some());
        assert_eq!(
            r.text(),
            String::from_utf8_lossy(&expected),
            "{driver}: relayed bytes differ"
        );
        // The upstream got the upstream model name and no client credentials.
        let req = String::from_utf8(up.requests.recv().unwrap()).unwrap();
        assert!(
            req.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("\"model\":\"mock-small\""), "{req}");
    }
}

#[test]
fn streaming_and_non_streaming_through_the_mock() {
    for driver in drivers() {
        let m = mock(&[]);
        let s = sluice(&proxy_config(&m.url(), "", ""), driver);
        // Non-streaming.
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(false, false, "one two three"),
        ));
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        let v = r.json();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "mock-small");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("one"));
        // Streaming with usage: frames are valid, the usage chunk and [DONE] come last.
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(true, true, "one two three"),
        ));
        assert_eq!(r.status, 200);
        let text = r.text();
        let datas: Vec<&str> = text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
        let usage: serde_json::Value = serde_json::from_str(datas[datas.len() - 2]).unwrap();
        assert!(usage["choices"].as_array().unwrap().is_empty());
        assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
        // Without include_usage there is no usage chunk.
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(true, false, "one two"),
        ));
        assert!(!r.text().contains("\"usage\":{"), "{}", r.text());
        // Completions and embeddings and models.
        let r = s.request(&post(
            "/v1/completions",
            r#"{"model":"gpt-4o-mini","prompt":"say this"}"#,
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["object"], "text_completion");
        let r = s.request(&post(
            "/v1/embeddings",
            r#"{"model":"gpt-4o-mini","input":["a","b"]}"#,
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
        let r = s.request("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["data"][0]["id"], "gpt-4o-mini");
        // Metrics saw it.
        let text = s.metrics();
        assert!(
            text.contains(
                r#"sluice_requests_total{model="gpt-4o-mini",backend="local",status="200"} 5"#
            ),
            "{text}"
        );
    }
}

#[test]
fn keep_alive_reuses_connections_both_sides() {
    let m = mock(&[]);
    let s = sluice(&proxy_config(&m.url(), "workers = 1", ""), "epoll");
    let mut c = connect(s.addr);
    let mut r = BufReader::new(c.try_clone().unwrap());
    for i in 0..5 {
        c.write_all(post("/v1/chat/completions", &chat_body(i % 2 == 0, false, "hi")).as_bytes())
            .unwrap();
        let resp = read_response(&mut r).unwrap();
        assert_eq!(resp.status, 200);
    }
    // One upstream connection served all five (the rest were reused from the pool).
    assert_eq!(s.metric("sluice_upstream_connects_total"), 1.0);
    assert_eq!(s.metric("sluice_upstream_reused_total"), 4.0);
}

#[test]
fn backend_key_replaces_client_key() {
    for driver in drivers() {
        let m = mock(&["--require-key", "sk-backend"]);
        let cfg = proxy_config(&m.url(), "", r#"api_keys = ["env:SLUICE_TEST_KEY"]"#);
        let s = sluice_env(&cfg, driver, &[("SLUICE_TEST_KEY", "sk-backend")]);
        let body = chat_body(false, false, "hi");
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-client\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = s.request(&raw);
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        assert_eq!(m.stats()["last_authorization"], "Bearer sk-backend");
    }
}

#[test]
fn upstream_errors_pass_through_with_status() {
    for driver in drivers() {
        let m = mock(&["--fault-status", "429"]);
        let s = sluice(&proxy_config(&m.url(), "", ""), driver);
        let r = s.request(&post("/v1/chat/completions", &chat_body(true, false, "hi")));
        assert_eq!(r.status, 429, "{driver}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.json()["error"]["message"].is_string());
        let m = mock(&["--fault-status", "503"]);
        let s = sluice(&proxy_config(&m.url(), "", ""), driver);
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(false, false, "hi"),
        ));
        assert_eq!(r.status, 503);
    }
}

#[test]
fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for driver in drivers() {
        let s = sluice(&proxy_config(&format!("http://{dead}/v1"), "", ""), driver);
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(false, false, "hi"),
        ));
        assert_eq!(r.status, 502, "{driver}");
        assert_eq!(r.json()["error"]["code"], "upstream_unreachable");

        let m = mock(&["--delay-headers-ms", "5000"]);
        let s = sluice(
            &proxy_config(&m.url(), "", r#"first_byte_timeout = "200ms""#),
            driver,
        );
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(false, false, "hi"),
        ));
        assert_eq!(r.status, 504, "{driver}");
        assert_eq!(r.json()["error"]["code"], "upstream_timeout");
    }
}

#[test]
fn fallback_to_next_target_when_first_is_unreachable() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let m = mock(&[]);
    let cfg = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 1

[backends.dead]
provider = "openai"
base_url = "http://{dead}/v1"

[backends.live]
provider = "openai"
base_url = "{}"

[models."gpt-4o-mini"]
targets = [{{ backend = "dead" }}, {{ backend = "live", model = "mock-small" }}]
"#,
        m.url()
    );
    let s = sluice(&cfg, "epoll");
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body(false, false, "hi"),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(m.stats()["last_model"], "mock-small");
}

#[test]
fn upstream_dying_mid_stream_is_not_a_clean_finish() {
    for driver in drivers() {
        let m = mock(&["--drop-after", "3", "--tokens", "20"]);
        let s = sluice(&proxy_config(&m.url(), "", ""), driver);
        let r = s.request(&post("/v1/chat/completions", &chat_body(true, false, "hi")));
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(!text.contains("[DONE]"), "{text}");
        assert!(text.contains("\"error\""), "{text}");
        assert!(s.wait_metric("sluice_upstream_broken_streams_total", 1.0));
    }
}

#[test]
fn client_disconnect_mid_stream_abandons_upstream() {
    for driver in drivers() {
        let first = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";
        let up = scripted(vec![
            Step::Send(sse_response_head()),
            Step::Send(chunk(first)),
            Step::AwaitPeerClose,
        ]);
        let s = sluice(
            &proxy_config(&format!("http://{}/v1", up.addr), "", ""),
            driver,
        );
        let mut c = connect(s.addr);
        c.write_all(post("/v1/chat/completions", &chat_body(true, false, "hi")).as_bytes())
            .unwrap();
        // Read until the first frame arrived, then hang up.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("delta") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(s.wait_metric_sum("sluice_active_streams", 1.0));
        drop(c);
        // The upstream sees its connection closed promptly (the stream is stalled, so only the
        // disconnect detection can close it).
        up.closed
            .recv_timeout(DEADLINE)
            .expect("upstream connection was not closed");
        assert!(
            s.wait_metric("sluice_client_disconnects_total", 1.0),
            "{driver}"
        );
        assert!(s.wait_metric_sum("sluice_active_streams", 0.0));
    }
}

#[test]
fn builtin_mock_provider_streams_without_upstream() {
    let cfg = r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 2

[backends.mock]
provider = "mock"

[models.mock]
targets = [{ backend = "mock" }]
"#;
    for driver in drivers() {
        let s = sluice(cfg, driver);
        let body = r#"{"model":"mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"echo these words"}]}"#;
        let r = s.request(&post("/v1/chat/completions", body));
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            text.contains("echo") && text.ends_with("data: [DONE]\n\n"),
            "{text}"
        );
        let r = s.request(&post(
            "/v1/chat/completions",
            r#"{"model":"mock","messages":[{"role":"user","content":"hi there"}]}"#,
        ));
        assert_eq!(r.status, 200);
        assert!(r.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
}
