//! Anthropic Messages.

use super::*;
use serde_json::json;

fn messages(body: Value, tokens: Option<u64>) -> SynthRequest {
    parse(Endpoint::Messages, &body, tokens)
}

fn body_json(req: &SynthRequest) -> Value {
    serde_json::from_slice(&response_body(req, "msg_1", 1)).unwrap()
}

const WEATHER: &str = r#"{"name":"get_weather","description":"Weather now",
    "input_schema":{"type":"object","properties":{"city":{"type":"string"},
    "unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer"}},
    "required":["city"]}}"#;

fn weather() -> Value {
    serde_json::from_str(WEATHER).unwrap()
}

/// Checks the event grammar of a finished stream and returns (text deltas joined, partial
/// JSON deltas joined).
fn check_grammar(events: &[Event]) -> (String, String) {
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.get(1), Some(&"content_block_start"));
    // One ping, right after the first block start.
    assert_eq!(names.get(2), Some(&"ping"));
    assert_eq!(names.iter().filter(|n| **n == "ping").count(), 1);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    // Every block started is stopped, with the same index.
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "content_block_start")
        .map(|e| &e.data["index"])
        .collect();
    let stops: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "content_block_stop")
        .map(|e| &e.data["index"])
        .collect();
    assert_eq!(starts, stops);
    let mut text = String::new();
    let mut partial = String::new();
    for e in events {
        let expected = match e.name.as_str() {
            "message_start" | "content_block_start" => FrameKind::Start,
            "ping" => FrameKind::Ping,
            "content_block_delta" => FrameKind::Token,
            "content_block_stop" | "message_delta" => FrameKind::Finish,
            "message_stop" => FrameKind::Done,
            other => panic!("unexpected event {other}"),
        };
        assert_eq!(e.kind, expected, "{}", e.raw);
        if e.name == "content_block_delta" {
            assert_eq!(e.data["index"], 0);
            match e.data["delta"]["type"].as_str().unwrap() {
                "text_delta" => text.push_str(e.data["delta"]["text"].as_str().unwrap()),
                "input_json_delta" => {
                    partial.push_str(e.data["delta"]["partial_json"].as_str().unwrap())
                }
                other => panic!("unexpected delta {other}"),
            }
        }
    }
    (text, partial)
}

#[test]
fn body_is_anthropic_shape_byte_for_byte() {
    let req = messages(
        json!({"model":"claude-x","max_tokens":100,"system":"be brief",
               "messages":[{"role":"user","content":"hello \"big\" world"}]}),
        None,
    );
    // (4 + 3) + system (4 + 2) + 3
    assert_eq!(req.prompt_tokens(), 16);
    assert_eq!(
        String::from_utf8(response_body(&req, "msg_1", 1)).unwrap(),
        concat!(
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","#,
            r#""content":[{"type":"text","text":"hello \"big\" world"}],"#,
            r#""stop_reason":"end_turn","stop_sequence":null,"#,
            r#""usage":{"input_tokens":16,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"#,
            r#""cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"#,
            r#""output_tokens":3,"service_tier":"standard"}}"#
        )
    );
}

#[test]
fn stream_events_are_anthropic_shape() {
    let req = messages(
        json!({"model":"claude-x","max_tokens":100,"stream":true,
               "messages":[{"role":"user","content":"a b"}]}),
        None,
    );
    let events = events(&req, "msg_1");
    let raw: Vec<&str> = events.iter().map(|e| e.raw.as_str()).collect();
    assert_eq!(
        raw,
        [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"b\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":9,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":2}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ]
    );
    check_grammar(&events);
}

#[test]
fn deltas_concatenate_to_the_body_and_usage_is_cumulative() {
    for (content, tokens, max_tokens) in [
        (json!("one two  three"), None, 100),
        (json!("one two three"), Some(7), 100),
        (json!("one two three four five"), None, 2),
        (
            json!([{"type":"text","text":"look at"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}},
                {"type":"text","text":"this \"pic\" ü 🦀"}]),
            None,
            100,
        ),
        (json!(""), None, 100),
    ] {
        let body = json!({"model":"m","max_tokens":max_tokens,"stream":true,"messages":[
            {"role":"user","content":"earlier"},{"role":"assistant","content":"reply"},
            {"role":"user","content":content}]});
        let req = messages(body, tokens);
        let whole = body_json(&req);
        let text = whole["content"][0]["text"].as_str().unwrap();
        assert_eq!(text, req.reply_text());
        let events = events(&req, "msg_1");
        let (streamed, partial) = check_grammar(&events);
        assert_eq!(streamed, text);
        assert!(partial.is_empty());
        let start = &events[0].data["message"];
        assert_eq!(
            start["usage"]["input_tokens"],
            whole["usage"]["input_tokens"]
        );
        assert_eq!(start["usage"]["output_tokens"], 1);
        assert_eq!(start["content"], json!([]));
        assert_eq!(start["stop_reason"], Value::Null);
        let delta = &events[events.len() - 2].data;
        // Cumulative: the final total, the same as the non-streaming body's.
        assert_eq!(
            delta["usage"]["output_tokens"],
            whole["usage"]["output_tokens"]
        );
        assert_eq!(delta["usage"]["output_tokens"], req.completion_tokens());
        assert_eq!(delta["delta"]["stop_reason"], whole["stop_reason"]);
        let deltas = events.iter().filter(|e| e.kind == FrameKind::Token).count() as u64;
        assert_eq!(deltas, req.completion_tokens());
    }
}

#[test]
fn max_tokens_and_stop_sequences() {
    let msgs = json!([{"role":"user","content":"one two three four five"}]);
    let req = messages(json!({"model":"m","max_tokens":2,"messages":msgs}), None);
    let v = body_json(&req);
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["content"][0]["text"], "one two");
    assert_eq!(v["usage"]["output_tokens"], 2);
    // The reply ends before the first word containing a stop sequence.
    let req = messages(
        json!({"model":"m","max_tokens":100,"stop_sequences":["zzz","hre"],"messages":msgs}),
        None,
    );
    let v = body_json(&req);
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "hre");
    assert_eq!(v["content"][0]["text"], "one two");
    assert_eq!(req.stop_sequence(), Some("hre"));
    // A cap below the stop sequence wins.
    let req = messages(
        json!({"model":"m","max_tokens":1,"stop_sequences":["hre"],"messages":msgs}),
        None,
    );
    assert_eq!(body_json(&req)["stop_reason"], "max_tokens");
    // No match: a normal end.
    let req = messages(
        json!({"model":"m","max_tokens":100,"stop_sequences":["nope"],"messages":msgs}),
        None,
    );
    assert_eq!(body_json(&req)["stop_sequence"], Value::Null);
}

#[test]
fn system_blocks_and_tool_history_count_as_prompt() {
    let req = messages(
        json!({"model":"m","max_tokens":10,
               "system":[{"type":"text","text":"you are","cache_control":{"type":"ephemeral"}},
                         {"type":"text","text":"a mock"}],
               "metadata":{"user_id":"u1"},"temperature":0.5,
               "messages":[{"role":"user","content":[{"type":"text","text":"x y z"}]}]}),
        None,
    );
    // (4 + 3) + system (4 + 4) + 3
    assert_eq!(req.prompt_tokens(), 18);
    assert_eq!(req.reply_text(), "x y z");
}

#[test]
fn tool_calls_forced_or_asked_for() {
    let cases = [
        (json!({"type":"any"}), "what is the weather"),
        (
            json!({"type":"tool","name":"get_weather"}),
            "what is the weather",
        ),
        (json!({"type":"auto"}), "please call get_weather for Paris"),
        (Value::Null, "Call `get_weather`, now"),
    ];
    for (choice, prompt) in cases {
        let mut body = json!({"model":"m","max_tokens":1000,"tools":[weather()],
                              "messages":[{"role":"user","content":prompt}]});
        if !choice.is_null() {
            body["tool_choice"] = choice.clone();
        }
        let req = messages(body.clone(), Some(3));
        let (name, args) = req.tool_call().unwrap();
        assert_eq!(name, "get_weather");
        let input: Value = serde_json::from_str(args).unwrap();
        let echo = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(input, json!({"city": echo, "unit":"celsius","days":42}));
        // Schema order, not alphabetical.
        assert!(args.starts_with(r#"{"city":"#), "{args}");
        assert_eq!(req.finish_reason(), Some(FinishReason::ToolCalls));
        let v = body_json(&req);
        assert_eq!(v["stop_reason"], "tool_use");
        let block = &v["content"][0];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], input);
        let id = block["id"].as_str().unwrap();
        assert!(id.starts_with("toolu_01") && id.len() == 32, "{id}");
        // Deterministic from the message id.
        assert_eq!(body_json(&req)["content"][0]["id"], id);
        let other: Value = serde_json::from_slice(&response_body(&req, "msg_2", 1)).unwrap();
        assert_ne!(other["content"][0]["id"], id);

        body["stream"] = json!(true);
        let req = messages(body, None);
        let events = events(&req, "msg_1");
        let (text, partial) = check_grammar(&events);
        assert!(text.is_empty());
        assert_eq!(partial, args);
        let start = &events[1].data["content_block"];
        assert_eq!(
            start,
            &json!({"type":"tool_use","id":id,"name":"get_weather","input":{}})
        );
        // Fragments of about 8 bytes, each one token.
        let fragments: Vec<&Event> = events
            .iter()
            .filter(|e| e.kind == FrameKind::Token)
            .collect();
        assert_eq!(fragments.len() as u64, req.completion_tokens());
        assert_eq!(fragments.len(), args.len().div_ceil(8));
        assert_eq!(
            events[events.len() - 2].data["delta"]["stop_reason"],
            "tool_use"
        );
    }
}

#[test]
fn tool_results_are_echoed_and_none_means_text() {
    let history = json!([
        {"role":"user","content":"call get_weather for Paris"},
        {"role":"assistant","content":[{"type":"text","text":"Let me check."},
            {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
        {"role":"user","content":[
            {"type":"tool_result","tool_use_id":"toolu_1","content":"sunny and 21"},
            {"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"second result"}]}]}
    ]);
    let req = messages(
        json!({"model":"m","max_tokens":100,"tools":[weather()],"messages":history}),
        None,
    );
    assert!(req.tool_call().is_none());
    assert_eq!(req.reply_text(), "sunny and 21 second result");
    assert_eq!(body_json(&req)["stop_reason"], "end_turn");
    // A forced choice calls again.
    let req = messages(
        json!({"model":"m","max_tokens":100,"tools":[weather()],"tool_choice":{"type":"any"},
               "messages":history}),
        None,
    );
    let (_, args) = req.tool_call().unwrap();
    // The string arguments echo the last user message with text.
    assert!(args.contains("call get_weather for Paris"), "{args}");
    // none: text even when asked by name.
    let req = messages(
        json!({"model":"m","max_tokens":100,"tools":[weather()],"tool_choice":{"type":"none"},
               "messages":[{"role":"user","content":"call get_weather"}]}),
        None,
    );
    assert!(req.tool_call().is_none());
    // An unknown tool name is just words.
    let req = messages(
        json!({"model":"m","max_tokens":100,"tools":[weather()],
               "messages":[{"role":"user","content":"call get_time"}]}),
        None,
    );
    assert!(req.tool_call().is_none());
}

#[test]
fn truncated_tool_call() {
    let req = messages(
        json!({"model":"m","max_tokens":2,"tools":[weather()],"tool_choice":{"type":"any"},
               "messages":[{"role":"user","content":"a b c"}]}),
        None,
    );
    assert_eq!(req.finish_reason(), Some(FinishReason::Length));
    let v = body_json(&req);
    assert_eq!(v["stop_reason"], "max_tokens");
    // The partial arguments are not JSON: the body shows an empty input.
    assert_eq!(v["content"][0]["input"], json!({}));
    assert_eq!(req.tool_call().unwrap().1.len(), 16);
}

#[test]
fn in_stream_error_is_an_overloaded_error_event() {
    let req = messages(
        json!({"model":"m","max_tokens":100,"stream":true,
               "messages":[{"role":"user","content":"a b c d"}]}),
        None,
    );
    let (before, error) = failed_events(&req, "msg_1", 2);
    assert_eq!(
        before.iter().filter(|e| e.kind == FrameKind::Token).count(),
        2
    );
    assert_eq!(error.len(), 1);
    assert_eq!(error[0].name, "error");
    assert_eq!(
        error[0].data,
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
    );
}

#[test]
fn omit_usage_drops_usage_objects() {
    let mut req = messages(
        json!({"model":"m","max_tokens":100,"stream":true,
               "messages":[{"role":"user","content":"a"}]}),
        None,
    );
    req.omit_usage = true;
    assert!(body_json(&req).get("usage").is_none());
    assert!(events(&req, "m").iter().all(|e| !e.raw.contains("usage")));
}

#[test]
fn validation_errors() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            Some("max_tokens"),
            "max_tokens: Field required",
        ),
        (
            r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
            Some("max_tokens"),
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (
            r#"{"model":"m","max_tokens":"5","messages":[]}"#,
            Some("max_tokens"),
            "",
        ),
        (r#"{"max_tokens":5,"messages":[]}"#, Some("model"), ""),
        (
            r#"{"model":"m","max_tokens":5}"#,
            Some("messages"),
            "messages: Field required",
        ),
        (
            r#"{"model":"m","max_tokens":5,"messages":[]}"#,
            Some("messages"),
            "messages: at least one message is required",
        ),
        (
            r#"{"model":"m","max_tokens":5,"messages":{}}"#,
            Some("messages"),
            "messages: Input should be a valid list",
        ),
        (
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#,
            Some("messages"),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":7}]}"#,
            Some("messages"),
            "",
        ),
        (
            r#"{"model":"m","max_tokens":5,"system":3,"messages":[{"role":"user","content":"x"}]}"#,
            Some("system"),
            "",
        ),
        (
            r#"{"model":"m","max_tokens":5,"stop_sequences":"x","messages":[{"role":"user","content":"x"}]}"#,
            Some("stop_sequences"),
            "stop_sequences: Input should be a valid list",
        ),
        (
            r#"{"model":"m","max_tokens":5,"tools":[{"input_schema":{}}],"messages":[{"role":"user","content":"x"}]}"#,
            Some("tools"),
            "",
        ),
        (
            r#"{"model":"m","max_tokens":5,"tools":{},"messages":[{"role":"user","content":"x"}]}"#,
            Some("tools"),
            "",
        ),
        (
            r#"{"model":"m","max_tokens":5,"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"x"}]}"#,
            Some("tool_choice"),
            "",
        ),
        (
            r#"{"model":"m","max_tokens":5,"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"tool","name":"b"},"messages":[{"role":"user","content":"x"}]}"#,
            Some("tool_choice"),
            "",
        ),
        (
            r#"{"model":"m","max_tokens":5,"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"sometimes"},"messages":[{"role":"user","content":"x"}]}"#,
            Some("tool_choice"),
            "",
        ),
    ];
    for (body, param, message) in cases {
        let (got_message, got) = bad(Endpoint::Messages, body);
        assert_eq!(got, *param, "{body}: {got_message}");
        if !message.is_empty() {
            assert_eq!(&got_message, message, "{body}");
        }
    }
    // Server tools are accepted and never called.
    let req = messages(
        json!({"model":"m","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],
               "messages":[{"role":"user","content":"call web_search"}]}),
        None,
    );
    assert!(req.tool_call().is_none());
}
