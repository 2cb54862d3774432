//! OpenAI Responses.

use super::*;
use serde_json::json;

fn responses(body: Value, tokens: Option<u64>) -> SynthRequest {
    parse(Endpoint::Responses, &body, tokens)
}

fn body_json(req: &SynthRequest) -> Value {
    serde_json::from_slice(&response_body(req, "resp_1", 1700000000)).unwrap()
}

const WEATHER: &str = r#"{"type":"function","name":"get_weather","description":"Weather now",
    "parameters":{"type":"object","properties":{"city":{"type":"string"},"when":{"type":"object",
    "properties":{"day":{"type":"string"},"hour":{"type":"integer"}},"required":["hour"]}},
    "required":["city","when"],"additionalProperties":false},"strict":true}"#;

fn weather() -> Value {
    serde_json::from_str(WEATHER).unwrap()
}

/// What the SDK's `Response` model requires, and the real API's leading field order.
fn check_response(v: &Value, raw: &str) {
    for field in [
        "id",
        "created_at",
        "model",
        "object",
        "output",
        "parallel_tool_calls",
        "tool_choice",
        "tools",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    assert_eq!(v["object"], "response");
    assert!(
        raw.starts_with(r#"{"id":"resp_1","object":"response","created_at":1700000000,"status":"#),
        "{raw}"
    );
    assert!(
        raw.ends_with(r#""metadata":{}}"#) || v["metadata"] != json!({}),
        "{raw}"
    );
}

/// Checks a finished stream's grammar; returns the deltas joined.
fn check_grammar(events: &[Event]) -> String {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.data["sequence_number"], i, "{}", e.raw);
        // `type` first, as the real API writes it.
        assert!(
            e.raw.contains(&format!("data: {{\"type\":\"{}\"", e.name)),
            "{}",
            e.raw
        );
    }
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names[..3],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ]
    );
    for e in &events[..2] {
        assert_eq!(e.data["response"]["status"], "in_progress");
        assert_eq!(e.data["response"]["output"], json!([]));
        assert_eq!(e.data["response"]["usage"], Value::Null);
    }
    let mut deltas = String::new();
    for e in events {
        let expected = match e.name.as_str() {
            "response.created"
            | "response.in_progress"
            | "response.output_item.added"
            | "response.content_part.added" => FrameKind::Start,
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                deltas.push_str(e.data["delta"].as_str().unwrap());
                FrameKind::Token
            }
            "response.output_text.done"
            | "response.function_call_arguments.done"
            | "response.content_part.done"
            | "response.output_item.done" => FrameKind::Finish,
            "response.completed" | "response.incomplete" => FrameKind::Done,
            other => panic!("unexpected event {other}"),
        };
        assert_eq!(e.kind, expected, "{}", e.raw);
    }
    deltas
}

#[test]
fn body_has_every_required_field_in_the_real_order() {
    let req = responses(json!({"model":"gpt-x","input":"hello \"big\" world"}), None);
    assert_eq!(req.prompt_tokens(), 3 + 4 + 3);
    let raw = String::from_utf8(response_body(&req, "resp_1", 1700000000)).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    check_response(&v, &raw);
    let msg_id = v["output"][0]["id"].as_str().unwrap().to_owned();
    assert!(msg_id.starts_with("msg_"));
    assert_eq!(
        raw,
        format!(
            concat!(
                r#"{{"id":"resp_1","object":"response","created_at":1700000000,"status":"completed","#,
                r#""background":false,"completed_at":1700000000,"error":null,"frequency_penalty":0.0,"#,
                r#""incomplete_details":null,"instructions":null,"max_output_tokens":null,"#,
                r#""max_tool_calls":null,"model":"gpt-x","moderation":null,"output":[{{"id":"{}","#,
                r#""type":"message","status":"completed","content":[{{"type":"output_text","#,
                r#""annotations":[],"logprobs":[],"text":"hello \"big\" world"}}],"role":"assistant"}}],"#,
                r#""parallel_tool_calls":true,"presence_penalty":0.0,"previous_response_id":null,"#,
                r#""prompt_cache_key":null,"prompt_cache_retention":null,"#,
                r#""reasoning":{{"effort":null,"summary":null}},"safety_identifier":null,"#,
                r#""service_tier":"default","store":true,"temperature":1.0,"#,
                r#""text":{{"format":{{"type":"text"}},"verbosity":"medium"}},"tool_choice":"auto","#,
                r#""tools":[],"top_logprobs":0,"top_p":1.0,"truncation":"disabled","#,
                r#""usage":{{"input_tokens":10,"input_tokens_details":{{"cached_tokens":0,"cache_write_tokens":0}},"#,
                r#""output_tokens":3,"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":13}},"#,
                r#""user":null,"metadata":{{}}}}"#
            ),
            msg_id
        )
    );
    assert_eq!(v["output_text"], Value::Null);
}

#[test]
fn request_fields_are_echoed() {
    let req = responses(
        json!({"model":"m","input":[{"role":"user","content":"hi"}],"instructions":"be kind",
               "max_output_tokens":64,"temperature":0.2,"top_p":0.9,"store":false,
               "metadata":{"k":"v"},"parallel_tool_calls":false,"previous_response_id":"resp_0",
               "user":"u1","tools":[weather(),{"type":"web_search_preview"}],
               "tool_choice":"none"}),
        None,
    );
    // instructions (4 + 2) + message (4 + 1) + 3
    assert_eq!(req.prompt_tokens(), 14);
    let v = body_json(&req);
    assert_eq!(v["instructions"], "be kind");
    assert_eq!(v["max_output_tokens"], 64);
    assert_eq!(v["temperature"], 0.2);
    assert_eq!(v["top_p"], 0.9);
    assert_eq!(v["store"], false);
    assert_eq!(v["metadata"], json!({"k":"v"}));
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["previous_response_id"], "resp_0");
    assert_eq!(v["user"], "u1");
    assert_eq!(v["tool_choice"], "none");
    let mut tool = weather();
    tool.as_object_mut().unwrap().remove("strict");
    tool["strict"] = json!(true);
    assert_eq!(v["tools"], json!([tool, {"type":"web_search_preview"}]));
    // In the real order: type, description, name, parameters, strict.
    let raw = String::from_utf8(response_body(&req, "resp_1", 1)).unwrap();
    assert!(raw.contains(r#""tools":[{"type":"function","description":"Weather now","name":"get_weather","parameters":{"#));
    assert!(req.tool_call().is_none());
    // tool_choice as sent, key order included (json! would sort the keys).
    let body = format!(
        r#"{{"model":"m","input":"x","tools":[{WEATHER}],"tool_choice":{{"type":"function","name":"get_weather"}}}}"#
    );
    let req = SynthRequest::parse(Endpoint::Responses, body.as_bytes(), None).unwrap();
    let raw = String::from_utf8(response_body(&req, "resp_1", 1)).unwrap();
    assert!(
        raw.contains(r#""tool_choice":{"type":"function","name":"get_weather"},"#),
        "{raw}"
    );
}

#[test]
fn stream_events_match_the_body() {
    for (input, tokens) in [
        (json!("one two  three"), None),
        (json!("one two three"), Some(5)),
        (
            json!([{"type":"message","role":"developer","content":"sys"},
                {"role":"user","content":[{"type":"input_text","text":"look at"},
                 {"type":"input_image","image_url":"data:x"},{"type":"input_text","text":"ü 🦀"}]}]),
            None,
        ),
        (json!([]), None),
    ] {
        let req = responses(json!({"model":"m","stream":true,"input":input}), tokens);
        let events = events(&req, "resp_1");
        let deltas = check_grammar(&events);
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let n = names.len();
        assert_eq!(names[3], "response.content_part.added");
        assert_eq!(
            names[n - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let text = req.reply_text();
        assert_eq!(deltas, text);
        let done = &events[n - 4].data;
        assert_eq!(done["text"], text.as_str());
        assert_eq!(events[n - 3].data["part"]["text"], text.as_str());
        let item = &events[n - 2].data["item"];
        assert_eq!(item["status"], "completed");
        assert_eq!(item["content"][0]["text"], text.as_str());
        assert_eq!(events[2].data["item"]["id"], item["id"]);
        assert_eq!(done["item_id"], item["id"]);
        // The final response is the non-streaming body, byte for byte.
        let last = &events[n - 1];
        let body = String::from_utf8(response_body(&req, "resp_1", 1700000000)).unwrap();
        assert!(
            last.raw.contains(&format!("\"response\":{body},")),
            "{}",
            last.raw
        );
        check_response(&last.data["response"], &body);
    }
}

#[test]
fn max_output_tokens_makes_it_incomplete() {
    let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let req = responses(
        json!({"model":"m","stream":true,"max_output_tokens":16,"input":words.join(" ")}),
        None,
    );
    assert_eq!(req.completion_tokens(), 16);
    let v = body_json(&req);
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason":"max_output_tokens"})
    );
    assert_eq!(v["completed_at"], Value::Null);
    assert_eq!(v["output"][0]["status"], "incomplete");
    assert_eq!(v["usage"]["output_tokens"], 16);
    let events = events(&req, "resp_1");
    check_grammar(&events);
    let last = events.last().unwrap();
    assert_eq!(last.name, "response.incomplete");
    assert_eq!(last.data["response"], v);
}

#[test]
fn function_calls() {
    for (choice, input) in [
        (json!("required"), json!("what is the weather")),
        (
            json!({"type":"function","name":"get_weather"}),
            json!("what is the weather"),
        ),
        (json!("auto"), json!("call get_weather for Paris")),
    ] {
        let body = json!({"model":"m","tools":[weather()],"tool_choice":choice,"input":input});
        let req = responses(body.clone(), None);
        let (name, args) = req.tool_call().unwrap();
        assert_eq!(name, "get_weather");
        let parsed: Value = serde_json::from_str(args).unwrap();
        let echo = input.as_str().unwrap();
        // Nested objects get their required properties only.
        assert_eq!(parsed, json!({"city": echo, "when": {"hour": 42}}));
        let v = body_json(&req);
        assert_eq!(v["status"], "completed");
        let item = &v["output"][0];
        assert_eq!(item["type"], "function_call");
        assert_eq!(item["arguments"], args);
        assert!(item["id"].as_str().unwrap().starts_with("fc_"));
        assert!(item["call_id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(v["tool_choice"], choice);

        let mut body = body;
        body["stream"] = json!(true);
        let req = responses(body, None);
        let events = events(&req, "resp_1");
        let deltas = check_grammar(&events);
        assert_eq!(deltas, args);
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert!(!names.contains(&"response.content_part.added"));
        let n = names.len();
        assert_eq!(
            names[n - 3..],
            [
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let added = &events[2].data["item"];
        assert_eq!(added["status"], "in_progress");
        assert_eq!(added["arguments"], "");
        assert_eq!(added["call_id"], item["call_id"]);
        assert_eq!(events[n - 3].data["arguments"], args);
        assert_eq!(events[n - 2].data["item"], *item);
        assert_eq!(events[n - 1].data["response"], v);
    }
}

#[test]
fn function_call_outputs_are_echoed() {
    let req = responses(
        json!({"model":"m","tools":[weather()],"input":[
            {"role":"user","content":"call get_weather for Paris"},
            {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},
            {"type":"function_call_output","call_id":"call_1","output":"sunny and 21"}]}),
        None,
    );
    assert!(req.tool_call().is_none());
    assert_eq!(req.reply_text(), "sunny and 21");
    assert_eq!(body_json(&req)["output"][0]["type"], "message");
}

#[test]
fn in_stream_error_then_response_failed() {
    let req = responses(json!({"model":"m","stream":true,"input":"a b c d"}), None);
    let (before, error) = failed_events(&req, "resp_1", 1);
    let names: Vec<&str> = error.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["error", "response.failed"]);
    let all: Vec<&Event> = before.iter().chain(&error).collect();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.data["sequence_number"], i);
    }
    assert_eq!(error[0].data["code"], "server_error");
    assert!(error[0].data["message"].is_string());
    let failed = &error[1].data["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert_eq!(failed["usage"], Value::Null);
}

#[test]
fn omit_usage_writes_null() {
    let mut req = responses(json!({"model":"m","input":"a"}), None);
    req.omit_usage = true;
    assert_eq!(body_json(&req)["usage"], Value::Null);
}

#[test]
fn validation_errors() {
    let cases: &[(&str, Option<&str>)] = &[
        (r#"{"model":"m"}"#, Some("input")),
        (r#"{"model":"m","input":5}"#, Some("input")),
        (r#"{"model":"m","input":[5]}"#, Some("input")),
        (r#"{"model":"m","input":[{"content":"x"}]}"#, Some("input")),
        (
            r#"{"model":"m","input":[{"role":"robot","content":"x"}]}"#,
            Some("input"),
        ),
        (r#"{"input":"x"}"#, Some("model")),
        (
            r#"{"model":"m","input":"x","max_output_tokens":15}"#,
            Some("max_output_tokens"),
        ),
        (
            r#"{"model":"m","input":"x","max_output_tokens":"20"}"#,
            Some("max_output_tokens"),
        ),
        (
            r#"{"model":"m","input":"x","instructions":5}"#,
            Some("instructions"),
        ),
        (
            r#"{"model":"m","input":"x","temperature":"hot"}"#,
            Some("temperature"),
        ),
        (
            r#"{"model":"m","input":"x","metadata":[]}"#,
            Some("metadata"),
        ),
        (r#"{"model":"m","input":"x","tools":{}}"#, Some("tools")),
        (
            r#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
            Some("tools"),
        ),
        (
            r#"{"model":"m","input":"x","tool_choice":"required"}"#,
            Some("tool_choice"),
        ),
        (
            r#"{"model":"m","input":"x","tool_choice":7}"#,
            Some("tool_choice"),
        ),
        (
            r#"{"model":"m","input":"x","tools":[{"type":"function","name":"a"}],"tool_choice":{"type":"function","name":"b"}}"#,
            Some("tool_choice"),
        ),
        (
            r#"{"model":"m","input":"x","stream":"yes"}"#,
            Some("stream"),
        ),
    ];
    for (body, param) in cases {
        let (message, got) = bad(Endpoint::Responses, body);
        assert_eq!(got, *param, "{body}: {message}");
    }
    assert_eq!(
        bad(
            Endpoint::Responses,
            r#"{"model":"m","input":"x","max_output_tokens":15}"#
        )
        .0,
        "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but \
         got 15 instead."
    );
}
