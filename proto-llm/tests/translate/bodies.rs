//! Non-streaming response translation and error bodies.

use serde_json::{json, Value};
use sluice_proto_llm::track::Api;
use sluice_proto_llm::translate::{
    chat_response_to_messages, chat_response_to_responses, error_body, messages_response_to_chat,
    responses_to_chat, translate_response, ErrorKind, ResponseContext,
};

fn ctx() -> ResponseContext {
    ResponseContext::new("req-1", 1_700_000_000, "client-model")
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

const ANTHROPIC_MESSAGE: &str = r#"{
  "id": "msg_01ABC",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [
    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
    {"type": "text", "text": "Let me check "},
    {"type": "text", "text": "that."},
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "units": ["c"]}}
  ],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300, "output_tokens": 50, "service_tier": "standard"}
}"#;

#[test]
fn anthropic_message_to_chat_completion() {
    let out = messages_response_to_chat(ANTHROPIC_MESSAGE.as_bytes(), &ctx()).unwrap();
    assert_eq!(
        parse(&out.body),
        json!({
            "id": "chatcmpl-01ABC",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "client-model",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check that.",
                    "refusal": null,
                    "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"units\":[\"c\"]}"}}]
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {
                "prompt_tokens": 420,
                "completion_tokens": 50,
                "total_tokens": 470,
                "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 20},
                "completion_tokens_details": {"reasoning_tokens": 0}
            }
        })
    );
    assert_eq!(out.dropped, ["thinking"]);
}

#[test]
fn anthropic_stop_reasons_reach_chat() {
    for (stop, finish, content) in [
        ("end_turn", "stop", json!("")),
        ("max_tokens", "length", json!("")),
        ("refusal", "content_filter", json!("")),
        ("pause_turn", "stop", json!("")),
        ("stop_sequence", "stop", json!("")),
    ] {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "x",
                          "content": [], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 1}});
        let out = parse(
            &messages_response_to_chat(&serde_json::to_vec(&body).unwrap(), &ctx())
                .unwrap()
                .body,
        );
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        assert_eq!(out["choices"][0]["message"]["content"], content);
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
    }
}

const CHAT_COMPLETION: &str = r#"{
  "id": "chatcmpl-XYZ",
  "object": "chat.completion",
  "created": 1,
  "model": "gpt-4.1",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "Checking.", "refusal": null, "annotations": [],
                "tool_calls": [
                  {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                  {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "not json"}}
                ]},
    "logprobs": null,
    "finish_reason": "tool_calls"
  }],
  "usage": {"prompt_tokens": 500, "completion_tokens": 40, "total_tokens": 540,
            "prompt_tokens_details": {"cached_tokens": 384}, "completion_tokens_details": {"reasoning_tokens": 12}}
}"#;

#[test]
fn chat_completion_to_anthropic_message() {
    let out = chat_response_to_messages(CHAT_COMPLETION.as_bytes(), &ctx()).unwrap();
    assert_eq!(
        parse(&out.body),
        json!({
            "id": "msg_XYZ",
            "type": "message",
            "role": "assistant",
            "model": "client-model",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 116, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 384, "output_tokens": 40}
        })
    );
    assert_eq!(
        out.dropped,
        ["tool_calls[].function.arguments (not a JSON object)"]
    );
}

#[test]
fn chat_completion_to_responses_object() {
    let request = json!({
        "model": "gpt-5", "instructions": "Be brief.", "input": "Weather?",
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "temperature": 0.5, "max_output_tokens": 99
    });
    let translated = responses_to_chat(&serde_json::to_vec(&request).unwrap(), "up").unwrap();
    let mut ctx = ctx();
    ctx.echo = translated.echo.unwrap();
    let out = chat_response_to_responses(CHAT_COMPLETION.as_bytes(), &ctx).unwrap();
    let response = parse(&out.body);
    assert_eq!(
        response,
        json!({
            "id": "resp_XYZ",
            "object": "response",
            "created_at": 1_700_000_000,
            "status": "completed",
            "error": null,
            "incomplete_details": null,
            "instructions": "Be brief.",
            "max_output_tokens": 99,
            "model": "client-model",
            "output": [
                {"type": "message", "id": "msg_XYZ", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                 "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
                {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "get_time",
                 "arguments": "not json", "status": "completed"}
            ],
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": null,
            "temperature": 0.5,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "top_p": null,
            "truncation": "disabled",
            "usage": {
                "input_tokens": 500,
                "input_tokens_details": {"cached_tokens": 384, "cache_write_tokens": 0},
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 12},
                "total_tokens": 540
            },
            "user": null,
            "metadata": {}
        })
    );
}

#[test]
fn chat_length_is_an_incomplete_response() {
    let body = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut"}, "finish_reason": "length"}]});
    let response = parse(
        &chat_response_to_responses(&serde_json::to_vec(&body).unwrap(), &ctx())
            .unwrap()
            .body,
    );
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert!(response["usage"].is_null(), "no usage from the upstream");
    let message = parse(
        &chat_response_to_messages(&serde_json::to_vec(&body).unwrap(), &ctx())
            .unwrap()
            .body,
    );
    assert_eq!(message["stop_reason"], "max_tokens");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0})
    );
}

#[test]
fn refusals_and_empty_answers() {
    let body = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "finish_reason": "content_filter"}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let message = parse(&chat_response_to_messages(&bytes, &ctx()).unwrap().body);
    assert_eq!(message["stop_reason"], "refusal");
    assert_eq!(message["content"][0]["text"], "I can't help with that.");
    let response = parse(&chat_response_to_responses(&bytes, &ctx()).unwrap().body);
    assert_eq!(
        response["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I can't help with that."}])
    );
    assert_eq!(response["incomplete_details"]["reason"], "content_filter");

    // No choices at all: an empty message, not an error.
    let message = parse(
        &chat_response_to_messages(br#"{"id":"x","choices":[]}"#, &ctx())
            .unwrap()
            .body,
    );
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["stop_reason"], "end_turn");
}

#[test]
fn unreadable_upstream_bodies_are_502() {
    for body in [&b"not json"[..], b"[1,2]", br#"{"choices":"many"}"#] {
        for result in [
            chat_response_to_messages(body, &ctx()),
            chat_response_to_responses(body, &ctx()),
        ] {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidUpstream, "{body:?}");
            assert_eq!(err.status(), 502);
        }
    }
    let err = messages_response_to_chat(b"{\"content\":7}", &ctx()).unwrap_err();
    assert_eq!(err.status(), 502);
    let body: Value = serde_json::from_slice(&err.body(Api::ChatCompletions)).unwrap();
    assert_eq!(body["error"]["type"], "server_error");
}

#[test]
fn error_bodies_in_each_clients_shape() {
    let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"},"request_id":"req_1"}"#;
    assert_eq!(
        parse(&error_body(Api::Messages, Api::Responses, 400, anthropic)),
        json!({"error": {"message": "max_tokens: too large", "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}})
    );
    let openai = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    assert_eq!(
        parse(&error_body(
            Api::ChatCompletions,
            Api::Messages,
            401,
            openai
        )),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Incorrect API key provided"}})
    );
    let unknown = br#"{"error":{"message":"quota","type":"insufficient_quota"}}"#;
    assert_eq!(
        parse(&error_body(
            Api::ChatCompletions,
            Api::Messages,
            429,
            unknown
        ))["error"]["type"],
        "billing_error"
    );
}

#[test]
fn dispatch_by_api_pair() {
    for (upstream, client, body) in [
        (Api::Messages, Api::ChatCompletions, ANTHROPIC_MESSAGE),
        (Api::ChatCompletions, Api::Messages, CHAT_COMPLETION),
        (Api::ChatCompletions, Api::Responses, CHAT_COMPLETION),
    ] {
        assert!(
            translate_response(upstream, client, body.as_bytes(), &ctx())
                .unwrap()
                .is_ok()
        );
    }
    assert!(translate_response(Api::Responses, Api::Messages, b"{}", &ctx()).is_none());
}
