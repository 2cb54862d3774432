//! HTTP/1.1 server behaviour and every limit at its edge.

use crate::harness::*;
use std::io::{BufReader, Read, Write};

fn limits_config(url: &str) -> String {
    proxy_config(
        url,
        "max_header_bytes = 2048\nmax_body_bytes = 4096\nhead_timeout = \"300ms\"\nidle_timeout = \"300ms\"\nbody_timeout = \"300ms\"",
        "",
    )
}

/// A request whose head is exactly `size` bytes.
fn head_of_size(size: usize) -> String {
    let base = "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n";
    let pad = "a".repeat(size - base.len());
    format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n")
}

#[test]
fn header_limit_edge() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&limits_config(&m.url()), driver);
        let r = s.request(&head_of_size(2048));
        assert_eq!(
            r.status, 200,
            "{driver}: head of exactly the limit is accepted"
        );
        let r = s.request(&head_of_size(2049));
        assert_eq!(r.status, 431, "{driver}");
        assert_eq!(r.json()["error"]["code"], "headers_too_large");
    }
}

#[test]
fn body_limit_edge() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&limits_config(&m.url()), driver);
        // Valid JSON padded to exactly 4096 bytes is accepted.
        let base = chat_body(false, false, "");
        let pad = " ".repeat(4096 - base.len());
        let body = format!("{base}{pad}");
        assert_eq!(body.len(), 4096);
        let r = s.request(&post("/v1/chat/completions", &body));
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        let body = format!("{body} ");
        let r = s.request(&post("/v1/chat/completions", &body));
        assert_eq!(r.status, 413, "{driver}");
        assert_eq!(r.json()["error"]["code"], "request_too_large");
        // Same limit for chunked bodies.
        let chunked = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}{}0\r\n\r\n",
            String::from_utf8(chunk(&body.as_bytes()[..3000])).unwrap(),
            String::from_utf8(chunk(&body.as_bytes()[3000..])).unwrap()
        );
        let r = s.request(&chunked);
        assert_eq!(r.status, 413, "{driver}");
    }
}

#[test]
fn slow_head_and_idle_connections_are_closed() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&limits_config(&m.url()), driver);
        // Slowloris: half a head, then nothing. The server closes (after a 408).
        let mut c = connect(s.addr);
        c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert!(
            all.is_empty() || String::from_utf8_lossy(&all).starts_with("HTTP/1.1 408"),
            "{driver}"
        );
        // Idle keep-alive connection: closed after idle_timeout.
        let mut c = connect(s.addr);
        c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        assert_eq!(read_response(&mut r).unwrap().status, 200);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert!(s.metric("sluice_idle_timeouts_total") >= 1.0);
        assert!(s.metric("sluice_head_timeouts_total") >= 1.0);
    }
}

#[test]
fn malformed_requests_get_openai_errors() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&proxy_config(&m.url(), "", ""), driver);
        let r = s.request(&post("/v1/chat/completions", "{not json"));
        assert_eq!(r.status, 400, "{driver}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        let r = s.request(&post("/v1/chat/completions", r#"{"messages":[]}"#));
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["param"], "model");
        let r = s.request(&post(
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[]}"#,
        ));
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"]["code"], "model_not_found");
        let r = s.request(&post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":"yes"}"#,
        ));
        assert_eq!(r.status, 400);
        let r = s.request("GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 405);
        let r = s.request("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 404);
        let r = s.request("\x16\x03\x01garbage\r\n\r\n");
        assert_eq!(r.status, 400);
        let r = s.request("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.status, 400);
        let r = s.request(
            "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        );
        assert_eq!(r.status, 400);
        // The server is still healthy afterwards.
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(false, false, "ok"),
        ));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn http_framing_variants() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&proxy_config(&m.url(), "", ""), driver);
        let body = chat_body(false, false, "chunked body");
        // Chunked request body, split in two chunks.
        let (a, b) = body.split_at(10);
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}{}0\r\n\r\n",
            String::from_utf8(chunk(a.as_bytes())).unwrap(),
            String::from_utf8(chunk(b.as_bytes())).unwrap()
        );
        assert_eq!(s.request(&raw).status, 200, "{driver}");
        // Expect: 100-continue: the client waits for 100 before sending the body.
        let mut c = connect(s.addr);
        write!(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        let mut first = [0u8; 25];
        c.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.write_all(body.as_bytes()).unwrap();
        let mut r = BufReader::new(c);
        assert_eq!(read_response(&mut r).unwrap().status, 200);
        // HTTP/1.0: the response is close-delimited for streams and the connection closes.
        let stream = chat_body(true, false, "old client");
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{stream}",
            stream.len()
        );
        let r = s.request(&raw);
        assert_eq!(r.status, 200);
        assert!(r.header("transfer-encoding").is_none());
        assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
        // Connection: close is honoured.
        let mut c = connect(s.addr);
        c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert!(String::from_utf8_lossy(&all).contains("Connection: close"));
        // Pipelined requests on one connection are answered in order.
        let mut c = connect(s.addr);
        let two = format!(
            "{}{}",
            post("/v1/chat/completions", &chat_body(false, false, "first")),
            post("/v1/chat/completions", &chat_body(false, false, "second"))
        );
        c.write_all(two.as_bytes()).unwrap();
        let mut r = BufReader::new(c);
        let a = read_response(&mut r).unwrap();
        let b = read_response(&mut r).unwrap();
        assert!(a.text().contains("first") && b.text().contains("second"));
    }
}

#[test]
fn slow_body_gets_408() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&limits_config(&m.url()), driver);
        let mut c = connect(s.addr);
        c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":").unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 408 "), "{driver}: {text}");
        assert!(
            text.contains("timed out reading the request body"),
            "{text}"
        );
    }
}

#[test]
fn max_connections_edge() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(
            &proxy_config(&m.url(), "workers = 1\nmax_connections = 2", ""),
            driver,
        );
        // Two connections are served and stay open (keep-alive)...
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut c = connect(s.addr);
            c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            assert_eq!(read_response(&mut r).unwrap().status, 200, "{driver}");
            open.push((c, r));
        }
        // ...the third is closed at accept...
        let mut c = connect(s.addr);
        let _ = c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = Vec::new();
        let n = c.read_to_end(&mut buf).unwrap_or(0);
        assert_eq!(
            n,
            0,
            "{driver}: over-limit connection got {}",
            String::from_utf8_lossy(&buf)
        );
        assert!(s.wait_metric("sluice_connections_rejected_total", 1.0));
        // ...and once one closes, a new one is accepted again.
        drop(open.pop());
        assert!(s.wait_metric("sluice_active_connections{worker=\"0\"}", 1.0));
        let r = s.request("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
    }
}

#[test]
fn oversized_upstream_event_ends_the_stream_with_an_error() {
    let big = format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(2000));
    let small = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}\n\n";
    for driver in drivers() {
        let up = scripted(vec![
            Step::Send(sse_response_head()),
            Step::Send(chunk(small)),
            Step::Send(chunk(big.as_bytes())),
            Step::Send(chunk(b"data: [DONE]\n\n")),
            Step::Send(b"0\r\n\r\n".to_vec()),
        ]);
        let s = sluice(
            &proxy_config(
                &format!("http://{}/v1", up.addr),
                "",
                "max_event_bytes = \"1KiB\"",
            ),
            driver,
        );
        let r = s.request(&post("/v1/chat/completions", &chat_body(true, false, "hi")));
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            text.starts_with(std::str::from_utf8(small).unwrap()),
            "{driver}: {text}"
        );
        assert!(
            text.contains("\"error\"") && !text.contains("[DONE]") && !text.contains("xxxx"),
            "{driver}: {text}"
        );
    }
}

#[test]
fn oversized_upstream_body_is_502() {
    for driver in drivers() {
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(3000));
        let up = scripted(vec![Step::Send(
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
        )]);
        let s = sluice(
            &proxy_config(
                &format!("http://{}/v1", up.addr),
                "",
                "max_response_bytes = \"2KiB\"",
            ),
            driver,
        );
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body(false, false, "hi"),
        ));
        assert_eq!(r.status, 502, "{driver}: {}", r.text());
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_response_bytes"));
    }
}

#[test]
fn upstream_stalling_mid_stream_hits_read_timeout() {
    for driver in drivers() {
        let m = mock(&["--stall-after", "2", "--tokens", "10"]);
        let s = sluice(
            &proxy_config(&m.url(), "", "read_timeout = \"300ms\""),
            driver,
        );
        let r = s.request(&post("/v1/chat/completions", &chat_body(true, false, "hi")));
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            text.contains("\"content\"") && text.contains("\"error\"") && !text.contains("[DONE]"),
            "{driver}: {text}"
        );
        assert!(text.contains("upstream_stalled"), "{text}");
        assert!(s.wait_metric("sluice_upstream_timeouts_total", 1.0));
        // The stalled upstream connection is closed, not pooled.
        let end = std::time::Instant::now() + DEADLINE;
        while m.stats()["client_disconnects"] != 1 {
            assert!(
                std::time::Instant::now() < end,
                "mock never saw the gateway hang up"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
