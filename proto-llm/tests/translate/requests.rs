//! Request translation: exact outputs, refusals, round trips.

use serde_json::{json, Value};
use sluice_proto_llm::track::Api;
use sluice_proto_llm::translate::{
    chat_to_messages, messages_to_chat, responses_to_chat, translate_request, TranslateError,
    Translated,
};

fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn parsed(translated: &Translated) -> Value {
    serde_json::from_slice(&translated.body).unwrap()
}

fn c2m(request: Value) -> Result<Translated, TranslateError> {
    chat_to_messages(&body(&request), "claude-up", 4096)
}

fn m2c(request: Value) -> Result<Translated, TranslateError> {
    messages_to_chat(&body(&request), "gpt-up")
}

fn r2c(request: Value) -> Result<Translated, TranslateError> {
    responses_to_chat(&body(&request), "gpt-up")
}

/// Each request is refused with that `param` and a message containing that text.
fn assert_refused(
    translate: fn(Value) -> Result<Translated, TranslateError>,
    cases: Vec<(Value, Option<&str>, &str)>,
) {
    for (request, param, message) in cases {
        let err = translate(request.clone()).unwrap_err();
        assert_eq!(err.param(), param, "{request}: {err}");
        assert!(err.message().contains(message), "{request}: {err}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn chat_to_messages_full_request() {
    let request = json!({
        "model": "client-alias",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/map.jpg"}}
            ], "name": "ada"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "error: no city"}]},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "max_completion_tokens": 300,
        "max_tokens": 100,
        "stop": "END",
        "temperature": 1.5,
        "top_p": 0.9,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "u-42",
        "n": 1,
        "logprobs": true,
        "presence_penalty": 0.5,
        "seed": 7,
        "response_format": {"type": "json_object"}
    });
    let translated = c2m(request).unwrap();
    assert_eq!(
        parsed(&translated),
        json!({
            "model": "claude-up",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in these?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/map.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "error: no city"}]},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "system": "You are terse.\n\nUse metric units.",
            "max_tokens": 300,
            "metadata": {"user_id": "u-42"},
            "stop_sequences": ["END"],
            "stream": true,
            "temperature": 1.0,
            "top_p": 0.9,
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        })
    );
    assert_eq!(
        translated.dropped,
        [
            "logprobs",
            "presence_penalty",
            "seed",
            "messages[].name",
            "temperature 1.5 (capped at 1)",
            "response_format json_object"
        ]
    );
}

#[test]
fn chat_to_messages_cache_control_and_merging() {
    let translated = c2m(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "d"}]},
            {"role": "user", "content": "e"},
            {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "r", "cache_control": {"type": "ephemeral"}}]}
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    }))
    .unwrap();
    assert_eq!(
        parsed(&translated),
        json!({
            "model": "claude-up",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "a"},
                    {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "r"}], "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "e"}
                ]}
            ],
            "system": [{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}],
            "max_tokens": 4096,
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}
        })
    );
    assert!(translated.dropped.is_empty());
}

#[test]
fn chat_to_messages_tool_choice_table() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    for (choice, parallel, expected) in [
        (json!("auto"), None, json!({"type": "auto"})),
        (json!("none"), Some(false), json!({"type": "none"})),
        (json!("required"), None, json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            Some(false),
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}),
        ),
        (
            Value::Null,
            Some(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
    ] {
        let mut request =
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools});
        if !choice.is_null() {
            request["tool_choice"] = choice.clone();
        }
        if let Some(parallel) = parallel {
            request["parallel_tool_calls"] = json!(parallel);
        }
        let out = parsed(&c2m(request).unwrap());
        assert_eq!(out["tool_choice"], expected, "{choice}");
        assert_eq!(
            out["tools"],
            json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
        );
    }
    // No tools: tool_choice means nothing and Anthropic would refuse it.
    let out = parsed(
        &c2m(json!({"model": "m", "messages": [], "tool_choice": "required", "parallel_tool_calls": false}))
            .unwrap(),
    );
    assert!(out.get("tool_choice").is_none() && out.get("tools").is_none());
}

#[test]
fn chat_to_messages_refusals() {
    let user =
        |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        (
            json!({"model": "m", "messages": [], "n": 2}),
            Some("n"),
            "Only n=1",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}),
            Some("messages"),
            "messages[0]: tool_calls[0].function.arguments is not a JSON object",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
            Some("messages"),
            "is not a JSON object",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            Some("messages"),
            "tool_call_id",
        ),
        (
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            Some("messages"),
            "'messages[0].role'",
        ),
        (
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            Some("messages"),
            "not supported by this backend",
        ),
        (
            user(
                json!([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]),
            ),
            Some("messages"),
            "Audio input is not supported by this backend",
        ),
        (
            user(json!([{"type": "file", "file": {"file_id": "file-1"}}])),
            Some("messages"),
            "file_id",
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])),
            Some("messages"),
            "image_url.url",
        ),
        (
            json!({"model": "m", "messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            Some("tools"),
            "The `custom` tool type is not supported by this backend",
        ),
        (
            json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}),
            Some("tool_choice"),
            "not supported",
        ),
        (
            json!({"model": "m", "messages": "hi"}),
            Some("messages"),
            "Invalid value for 'messages'",
        ),
        (
            json!({"messages": []}),
            Some("model"),
            "Missing required parameter: 'model'.",
        ),
    ];
    assert_refused(c2m, cases);
}

#[test]
fn chat_to_messages_pdf_from_file_data() {
    let out = parsed(
        &c2m(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "text", "text": "Summarise"}
        ]}]}))
        .unwrap(),
    );
    assert_eq!(
        out["messages"][0]["content"][0],
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}})
    );
}

#[test]
fn messages_to_chat_full_request() {
    let request = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "call the tool", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "18C"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ], "is_error": false},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "stream": true,
        "service_tier": "auto"
    });
    let translated = m2c(request).unwrap();
    assert_eq!(
        parsed(&translated),
        json!({
            "model": "gpt-up",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "content": "18C", "tool_call_id": "toolu_1"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "And tomorrow?"}
                ]}
            ],
            "max_tokens": 1024,
            "temperature": 0.2,
            "stream": true,
            "stream_options": {"include_usage": true},
            "stop": ["END"],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "u-1"
        })
    );
    assert_eq!(
        translated.dropped,
        ["service_tier", "cache_control", "thinking", "top_k"]
    );
}

#[test]
fn messages_to_chat_refusals_and_edge_blocks() {
    assert_refused(
        m2c,
        vec![
            (
                json!({"model": "m", "max_tokens": 1, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                Some("tools"),
                "The server tool `web_search_20250305` is not supported by this backend",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
                Some("messages"),
                "An image with a `file` source",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "robot", "content": "x"}]}),
                Some("messages"),
                "Invalid value for 'messages'",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [], "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool"}}),
                Some("tool_choice"),
                "tool_choice.name",
            ),
        ],
    );
    // Plain-text documents become text; unknown blocks are dropped and reported.
    let translated = m2c(json!({"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc body"}},
            {"type": "search_result", "source": "x", "title": "t", "content": []}
        ]},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "zzz"}]},
        {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}, {"type": "text", "text": "ok"}]}
    ]}))
    .unwrap();
    assert_eq!(
        parsed(&translated)["messages"],
        json!([
            {"role": "user", "content": "doc body"},
            {"role": "assistant", "content": "ok"}
        ])
    );
    assert_eq!(
        translated.dropped,
        ["search_result block", "thinking", "server_tool_use block"]
    );
}

#[test]
fn responses_to_chat_full_request() {
    let request = json!({
        "model": "gpt-5",
        "instructions": "You are terse.",
        "input": [
            {"role": "developer", "content": "Prefer metric."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather here?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [
                {"type": "output_text", "text": "Checking.", "annotations": []}
            ]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "09:00"}]},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [
            {"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}, "strict": true},
            {"type": "function", "name": "get_time", "parameters": {"type": "object"}, "strict": false}
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false,
        "max_output_tokens": 500,
        "temperature": 0.3,
        "top_p": 0.8,
        "stream": true,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"},
        "reasoning": {"effort": "low", "summary": "auto"},
        "store": true,
        "include": ["reasoning.encrypted_content"],
        "user": "u-9",
        "metadata": {"k": "v"}
    });
    let translated = r2c(request).unwrap();
    assert_eq!(
        parsed(&translated),
        json!({
            "model": "gpt-up",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": "Prefer metric."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
                {"role": "tool", "content": "09:00", "tool_call_id": "call_2"},
                {"role": "user", "content": "Thanks"}
            ],
            "max_tokens": 500,
            "temperature": 0.3,
            "top_p": 0.8,
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}, "strict": true}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}, "strict": false}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "user": "u-9",
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
            "reasoning_effort": "low"
        })
    );
    assert_eq!(
        translated.dropped,
        [
            "include",
            "store",
            "metadata",
            "input[].reasoning",
            "text.verbosity",
            "reasoning.summary"
        ]
    );
    let echo = translated.echo.unwrap();
    assert_eq!(echo.instructions.as_deref(), Some("You are terse."));
    assert_eq!(echo.tools.len(), 2);
    assert_eq!(echo.tools[0]["strict"], true);
    assert_eq!(
        echo.tool_choice,
        json!({"type": "function", "name": "get_weather"})
    );
    assert!(!echo.parallel_tool_calls);
    assert_eq!(echo.max_output_tokens, Some(500));
    assert_eq!(echo.metadata, json!({"k": "v"}));
    assert_eq!(echo.text["verbosity"], "low");
}

#[test]
fn responses_to_chat_string_input_and_defaults() {
    let translated = r2c(json!({"model": "m", "input": "Hello"})).unwrap();
    assert_eq!(
        parsed(&translated),
        json!({"model": "gpt-up", "messages": [{"role": "user", "content": "Hello"}]})
    );
    let echo = translated.echo.unwrap();
    assert_eq!(echo.tool_choice, "auto");
    assert!(echo.parallel_tool_calls);
    assert_eq!(echo.text, json!({"format": {"type": "text"}}));
    assert!(translated.dropped.is_empty());
}

#[test]
fn responses_to_chat_refusals() {
    assert_refused(
        r2c,
        vec![
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                Some("previous_response_id"),
                "`previous_response_id`",
            ),
            (
                json!({"model": "m", "input": "x", "conversation": "conv_1"}),
                Some("conversation"),
                "`conversation`",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                Some("background"),
                "`background` mode",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                Some("tools"),
                "The `web_search` tool is not supported by this backend",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                Some("input"),
                "`item_reference`",
            ),
            (
                json!({"model": "m", "input": [{"type": "local_shell_call", "id": "x"}]}),
                Some("input"),
                "The input item type `local_shell_call`",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
                Some("input"),
                "file_id",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "web_search_preview"}}),
                Some("tool_choice"),
                "not supported",
            ),
            (
                json!({"model": "m", "input": 42}),
                Some("input"),
                "Invalid value for 'input'",
            ),
        ],
    );
    // `background: false` is no background.
    assert!(r2c(json!({"model": "m", "input": "x", "background": false})).is_ok());
}

/// What a chat conversation means: roles, text, tool calls, tool results, tools, tool choice.
fn chat_semantics(request: &Value) -> Value {
    let messages: Vec<Value> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| p["text"].as_str().unwrap_or("<image>"))
                    .collect::<Vec<_>>()
                    .join("|"),
                _ => String::new(),
            };
            let calls: Vec<Value> = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    json!([
                        c["id"],
                        c["function"]["name"],
                        serde_json::from_str::<Value>(c["function"]["arguments"].as_str().unwrap())
                            .unwrap_or(json!({}))
                    ])
                })
                .collect();
            json!([m["role"], text, calls, m["tool_call_id"]])
        })
        .collect();
    json!({
        "messages": messages,
        "tools": request["tools"],
        "tool_choice": request["tool_choice"],
        "parallel_tool_calls": request["parallel_tool_calls"],
        "max_tokens": request["max_tokens"],
        "stop": request["stop"],
    })
}

#[test]
fn chat_round_trip_through_messages_keeps_the_meaning() {
    let original = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b", "content": "24C"},
            {"role": "assistant", "content": "Paris 18C, Rome 24C."},
            {"role": "user", "content": [{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
        "max_tokens": 77,
        "stop": ["X", "Y"]
    });
    let there = c2m(original.clone()).unwrap();
    assert!(there.dropped.is_empty(), "{:?}", there.dropped);
    let back = messages_to_chat(&there.body, "m").unwrap();
    assert!(back.dropped.is_empty(), "{:?}", back.dropped);
    assert_eq!(chat_semantics(&parsed(&back)), chat_semantics(&original));
}

#[test]
fn messages_round_trip_through_chat_keeps_the_meaning() {
    let original = json!({
        "model": "m",
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "Thanks!"}
            ]}
        ],
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 0.5
    });
    let there = m2c(original.clone()).unwrap();
    assert!(there.dropped.is_empty(), "{:?}", there.dropped);
    let back = chat_to_messages(&there.body, "m", 1).unwrap();
    assert!(back.dropped.is_empty(), "{:?}", back.dropped);
    let back = parsed(&back);
    for key in [
        "system",
        "tools",
        "tool_choice",
        "stop_sequences",
        "temperature",
        "max_tokens",
    ] {
        assert_eq!(back[key], original[key], "{key}");
    }
    assert_eq!(
        back["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "Thanks!"}
            ]}
        ])
    );
}

#[test]
fn responses_and_chat_agree_on_a_tool_conversation() {
    // The same conversation in both inbound APIs translates to the same chat request.
    let responses = json!({
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_a", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "18C"}
        ],
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "tool_choice": "required",
        "max_output_tokens": 50
    });
    let chat = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "18C"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "max_tokens": 50
    });
    let translated = parsed(&r2c(responses).unwrap());
    assert_eq!(chat_semantics(&translated), chat_semantics(&chat));
    // And through Messages and back, the chat form survives.
    let there = c2m(chat.clone()).unwrap();
    let back = parsed(&messages_to_chat(&there.body, "m").unwrap());
    assert_eq!(chat_semantics(&back), chat_semantics(&chat));
}

#[test]
fn dispatch_by_api_pair() {
    let chat = body(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert!(translate_request(Api::ChatCompletions, Api::Messages, &chat, "u", 10).is_some());
    assert!(
        translate_request(Api::ChatCompletions, Api::ChatCompletions, &chat, "u", 10).is_none()
    );
    assert!(translate_request(Api::Messages, Api::Responses, &chat, "u", 10).is_none());
    let responses = body(&json!({"model": "m", "input": "hi"}));
    let out = translate_request(Api::Responses, Api::ChatCompletions, &responses, "u", 10)
        .unwrap()
        .unwrap();
    assert!(out.echo.is_some());
    // Errors render in the client's API.
    let err = translate_request(Api::Messages, Api::ChatCompletions, b"{}", "u", 10)
        .unwrap()
        .unwrap_err();
    let body: Value = serde_json::from_slice(&err.body(Api::Messages)).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
