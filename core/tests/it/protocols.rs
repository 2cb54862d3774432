//! The three inbound APIs against backends of each format: native relay, translation both
//! ways (streaming and not, tool calls), usage accounting, audit records, errors in the
//! client's own format.

use crate::harness::*;

/// A gateway with one model per (backend format): `chat-model` on an OpenAI-format mock,
/// `claude` on an Anthropic-format mock (the same mock binary serves `/v1/messages`),
/// `native-resp` on an OpenAI backend that serves `/v1/responses` itself.
fn config(mock_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 2

{extra}

[backends.oai]
provider = "openai"
base_url = "{mock_url}"

[backends.oai-native-resp]
provider = "openai"
base_url = "{mock_url}"
responses_api = "native"

[backends.anth]
provider = "anthropic"
base_url = "{mock_url}"
api_keys = ["sk-ant-test"]

[models.chat-model]
targets = [{{ backend = "oai", model = "mock-small" }}]
price = {{ input = 1.0, output = 2.0 }}

[models.claude]
targets = [{{ backend = "anth", model = "claude-mock" }}]

[models.native-resp]
targets = [{{ backend = "oai-native-resp" }}]
"#
    )
}

fn messages_req(model: &str, stream: bool, content: &str) -> String {
    let raw = format!(
        r#"{{"model":"{model}","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"{content}"}}]}}"#
    );
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: client-key\r\nanthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{raw}",
        raw.len()
    )
}

/// `(event name, data JSON)` of every SSE event in `text`.
fn events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty() && !f.starts_with(':'))
        .filter_map(|f| {
            let mut name = String::new();
            let mut data = None;
            for line in f.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(if v == "[DONE]" {
                        serde_json::json!("[DONE]")
                    } else {
                        serde_json::from_str(v).ok()?
                    });
                }
            }
            data.map(|d| (name, d))
        })
        .collect()
}

#[test]
fn native_messages_relay_and_anthropic_headers() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&config(&m.url(), ""), driver);
        let r = s.request(&messages_req("claude", true, "native messages stream"));
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        let ev = events(&r.text());
        assert_eq!(ev.first().unwrap().0, "message_start");
        assert_eq!(ev.last().unwrap().0, "message_stop");
        let text: String = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, "native messages stream");
        let stats = m.stats();
        assert_eq!(stats["last_path"], "/v1/messages");
        assert_eq!(
            stats["last_headers"]["x-api-key"], "sk-ant-test",
            "the backend key, never the client's"
        );
        assert_eq!(stats["last_headers"]["anthropic-version"], "2023-06-01");
        assert!(stats["last_headers"].get("authorization").is_none());
        let metrics = s.metrics();
        assert!(
            metrics
                .contains(r#"sluice_tokens_total{model="claude",backend="anth",kind="output"} 3"#),
            "{metrics}"
        );
    }
}

#[test]
fn chat_client_on_anthropic_backend_streams_text_and_tool_calls() {
    let m = mock(&[]);
    for driver in drivers() {
        let s = sluice(&config(&m.url(), ""), driver);
        // Non-streaming text.
        let r = s.request(&post(
            "/v1/chat/completions",
            r#"{"model":"claude","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hello there"}]}"#,
        ));
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        let v = r.json();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "hello there");
        assert_eq!(v["model"], "claude");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        let upstream: serde_json::Value =
            serde_json::from_str(m.stats()["last_body"].as_str().unwrap()).unwrap();
        assert_eq!(upstream["system"], "sys");
        assert_eq!(upstream["model"], "claude-mock");
        assert!(upstream["max_tokens"].as_u64().unwrap() > 0);
        // Streaming with usage.
        let r = s.request(&post(
            "/v1/chat/completions",
            &chat_body_for("claude", true, true, "one two three"),
        ));
        let ev = events(&r.text());
        let content: String = ev
            .iter()
            .filter_map(|(_, d)| {
                d["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(content, "one two three");
        assert_eq!(ev.last().unwrap().1, "[DONE]");
        let usage = &ev[ev.len() - 2].1;
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 3);
        // A streamed tool call.
        let body = r#"{"model":"claude","stream":true,"tool_choice":"required","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"messages":[{"role":"user","content":"weather in Paris"}]}"#;
        let r = s.request(&post("/v1/chat/completions", body));
        let ev = events(&r.text());
        let mut args = String::new();
        let mut name = None;
        for (_, d) in &ev {
            if let Some(calls) = d["choices"][0]["delta"]["tool_calls"].as_array() {
                for c in calls {
                    if let Some(n) = c["function"]["name"].as_str() {
                        name = Some(n.to_owned());
                    }
                    args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
                }
            }
        }
        assert_eq!(name.as_deref(), Some("get_weather"), "{}", r.text());
        let args: serde_json::Value = serde_json::from_str(&args).unwrap();
        assert!(args["city"].is_string());
        assert!(ev
            .iter()
            .any(|(_, d)| d["choices"][0]["finish_reason"] == "tool_calls"));
    }
}

#[test]
fn messages_client_on_openai_backend() {
    let m = mock(&[]);
    let s = sluice(&config(&m.url(), ""), "epoll");
    let r = s.request(&messages_req("chat-model", false, "translated reply"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "translated reply");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() == 2);
    // The upstream got a Chat request (with the usage Sluice needs on streams).
    let r = s.request(&messages_req("chat-model", true, "streamed and translated"));
    let ev = events(&r.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert!(names.contains(&"content_block_start") && names.contains(&"content_block_stop"));
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["usage"]["output_tokens"], 3);
    let upstream: serde_json::Value =
        serde_json::from_str(m.stats()["last_body"].as_str().unwrap()).unwrap();
    assert_eq!(upstream["stream_options"]["include_usage"], true);
    assert_eq!(m.stats()["last_path"], "/v1/chat/completions");
}

#[test]
fn responses_client_translated_native_and_via_anthropic() {
    let m = mock(&[]);
    let s = sluice(&config(&m.url(), ""), "uring");
    for (model, path) in [
        ("chat-model", "/v1/chat/completions"),
        ("native-resp", "/v1/responses"),
        ("claude", "/v1/messages"),
    ] {
        let r = s.request(&post(
            "/v1/responses",
            &format!(r#"{{"model":"{model}","input":"respond to this"}}"#),
        ));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        assert_eq!(v["object"], "response", "{model}");
        assert_eq!(
            v["output"][0]["content"][0]["text"], "respond to this",
            "{model}: {v}"
        );
        assert_eq!(m.stats()["last_path"], path, "{model}");
        let r = s.request(&post(
            "/v1/responses",
            &format!(r#"{{"model":"{model}","stream":true,"input":"stream this too"}}"#),
        ));
        let ev = events(&r.text());
        assert_eq!(
            ev.first().unwrap().0,
            "response.created",
            "{model}: {}",
            r.text()
        );
        assert_eq!(ev.last().unwrap().0, "response.completed", "{model}");
        let text: String = ev
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .filter_map(|(_, d)| d["delta"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, "stream this too", "{model}");
        let seq: Vec<u64> = ev
            .iter()
            .filter_map(|(_, d)| d["sequence_number"].as_u64())
            .collect();
        assert!(seq.windows(2).all(|w| w[1] == w[0] + 1), "{model}: {seq:?}");
        assert!(
            ev.last().unwrap().1["response"]["usage"]["output_tokens"]
                .as_u64()
                .unwrap()
                == 3
        );
    }
}

#[test]
fn client_gets_exactly_the_stream_it_asked_for() {
    // The upstream stream with the usage chunk Sluice asked for on the client's behalf.
    let frames: [&[u8]; 4] = [
        b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        b"data: [DONE]\n\n",
    ];
    let mut steps = vec![Step::Send(sse_response_head())];
    for f in frames {
        steps.push(Step::Send(chunk(f)));
    }
    steps.push(Step::Send(b"0\r\n\r\n".to_vec()));
    let up = scripted(steps.clone());
    let s = sluice(
        &proxy_config(&format!("http://{}/v1", up.addr), "", ""),
        "epoll",
    );
    // Asked for usage: byte for byte what the upstream sent.
    let r = s.request(&post("/v1/chat/completions", &chat_body(true, true, "hi")));
    assert_eq!(r.body, frames.concat());
    let sent = String::from_utf8(up.requests.recv().unwrap()).unwrap();
    assert!(
        sent.contains(r#""stream_options":{"include_usage":true}"#),
        "{sent}"
    );
    // Did not ask: the usage chunk and the `"usage":null` members are gone, nothing else.
    let r = s.request(&post("/v1/chat/completions", &chat_body(true, false, "hi")));
    let text = r.text();
    assert!(!text.contains("usage"), "{text}");
    assert!(
        text.contains(r#""content":"Hi""#) && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    let sent = String::from_utf8(up.requests.recv().unwrap()).unwrap();
    assert!(
        sent.contains(r#""include_usage":true"#),
        "Sluice asked upstream for usage: {sent}"
    );
    // Either way the tokens were counted.
    assert!(s.wait_metric(
        r#"sluice_tokens_total{model="gpt-4o-mini",backend="local",kind="output"}"#,
        2.0
    ));
}

#[test]
fn audit_log_records_tokens_cost_and_estimates() {
    let m = mock(&[]);
    let no_usage = mock(&["--no-usage"]);
    let dir = TempDir::new();
    let audit = dir.0.join("audit.jsonl");
    let extra = format!("[audit]\npath = \"{}\"", audit.display());
    let cfg = format!(
        "{}\n[backends.silent]\nprovider = \"openai\"\nbase_url = \"{}\"\n\n[models.silent]\ntargets = [{{ backend = \"silent\" }}]\n",
        config(&m.url(), &extra),
        no_usage.url()
    );
    let s = sluice(&cfg, "epoll");
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body_for("chat-model", false, false, "count these four words"),
    ));
    assert_eq!(r.status, 200);
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body_for("silent", true, false, "no usage from upstream"),
    ));
    assert_eq!(r.status, 200);
    let r = s.request(&messages_req("nope", false, "x"));
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["type"],
        "error",
        "Messages clients get Anthropic-shaped errors"
    );
    let lines = wait_lines(&audit, 2);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["api"], "chat.completions");
    assert_eq!(first["model"], "chat-model");
    assert_eq!(first["backend"], "oai");
    assert_eq!(first["upstream_model"], "mock-small");
    assert_eq!(first["status"], 200);
    assert_eq!(first["output_tokens"], 4);
    assert_eq!(first["estimated"], false);
    let (input, output) = (first["input_tokens"].as_f64().unwrap(), 4.0);
    let cost = first["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (input * 1.0 + output * 2.0) / 1e6).abs() < 1e-12,
        "{first}"
    );
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["estimated"], true, "{second}");
    assert_eq!(
        second["output_tokens"], 4,
        "our tokenizer counted `no usage from upstream`"
    );
    assert!(second["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(second["cost_usd"], serde_json::Value::Null);
    // Rotation: move the file away, SIGHUP, the next record goes to a new file.
    std::fs::rename(&audit, dir.0.join("audit.jsonl.1")).unwrap();
    let mut s = s;
    s.signal(1);
    assert!(s.proc.wait_log("audit log opened"));
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body_for("chat-model", false, false, "after rotation"),
    ));
    assert_eq!(r.status, 200);
    let lines = wait_lines(&audit, 1);
    assert!(lines[0].contains("\"status\":200"));
}

fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < end,
            "audit log has {} lines, want {n}",
            lines.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn upstream_error_inside_a_stream_reaches_each_client_as_its_own_error() {
    let m = mock(&["--error-event-after", "2", "--tokens", "10"]);
    let s = sluice(&config(&m.url(), ""), "epoll");
    // Anthropic client, OpenAI upstream sending `data: {"error":..}` mid-stream.
    let r = s.request(&messages_req("chat-model", true, "x"));
    let ev = events(&r.text());
    assert!(ev.iter().any(|(n, _)| n == "error"), "{}", r.text());
    assert!(!ev.iter().any(|(n, _)| n == "message_stop"), "{}", r.text());
    // OpenAI client, Anthropic upstream sending `event: error`.
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body_for("claude", true, false, "x"),
    ));
    let text = r.text();
    assert!(
        text.contains("\"error\"") && !text.contains("[DONE]"),
        "{text}"
    );
}

#[test]
fn backend_that_cannot_serve_an_endpoint_is_skipped_or_refused() {
    let m = mock(&[]);
    let cfg = format!(
        "{}\n[models.mixed]\ntargets = [{{ backend = \"anth\" }}, {{ backend = \"oai\", model = \"emb\" }}]\n",
        config(&m.url(), "")
    );
    let s = sluice(&cfg, "epoll");
    let r = s.request(&post("/v1/embeddings", r#"{"model":"claude","input":"x"}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unsupported_by_backend");
    // With another target that can serve it, that one is used.
    let r = s.request(&post("/v1/embeddings", r#"{"model":"mixed","input":"x"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(m.stats()["last_model"], "emb");
}

#[test]
fn azure_deployment_paths_and_api_key_header() {
    let up = scripted(vec![Step::Send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            .to_vec(),
    )]);
    let cfg = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 1

[backends.az]
provider = "azure-openai"
base_url = "http://{}/openai"
api_keys = ["az-key"]
api_version = "2024-10-21"

[models.gpt]
targets = [{{ backend = "az", model = "my-deployment" }}]
"#,
        up.addr
    );
    let s = sluice(&cfg, "epoll");
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body_for("gpt", false, false, "x"),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = String::from_utf8(up.requests.recv().unwrap()).unwrap();
    assert!(
        sent.starts_with("POST /openai/deployments/my-deployment/chat/completions?api-version=2024-10-21 HTTP/1.1\r\n"),
        "{sent}"
    );
    assert!(
        sent.contains("api-key: az-key\r\n") && !sent.to_lowercase().contains("authorization"),
        "{sent}"
    );
}
