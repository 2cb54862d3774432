//! Mid-stream budget enforcement: realistic streams (fixtures, `synth` streams of every
//! format, translated streams) are cut after every frame; the closer sees the frames before the
//! cut and closes the stream. Each result must be a complete, valid stream of its format that
//! ends as cut by its length limit, and a stream that had already ended gets nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "translate/common.rs"]
mod common;

use std::collections::BTreeMap;

use common::{events, fixture, frames_of, OutEvent};
use serde_json::{json, Value};
use sluice_proto_llm::closer::{ClientFormat, CloseContext, CloseUsage, StreamCloser};
use sluice_proto_llm::sse::SseFrame;
use sluice_proto_llm::synth::{Endpoint, SynthRequest, SynthStream};
use sluice_proto_llm::track::Api;
use sluice_proto_llm::translate::{new_stream_translator, ResponseContext};

const USAGE: CloseUsage = CloseUsage {
    input_tokens: 120,
    output_tokens: 33,
    cached_input_tokens: 20,
};

struct Case {
    name: String,
    format: ClientFormat,
    include_usage: bool,
    stream: Vec<u8>,
}

fn case(name: &str, format: ClientFormat, include_usage: bool, stream: Vec<u8>) -> Case {
    Case {
        name: name.to_owned(),
        format,
        include_usage,
        stream,
    }
}

fn ctx(include_usage: bool) -> CloseContext {
    CloseContext {
        id: "gw-req-1".to_owned(),
        created: 1_761_000_000,
        model: "gw-model".to_owned(),
        include_usage,
    }
}

/// A whole synthetic stream (or one failed after `fail_after` token frames).
fn synth(endpoint: Endpoint, body: Value, tokens: Option<u64>, fail_after: Option<u64>) -> Vec<u8> {
    let req = SynthRequest::parse(endpoint, body.to_string().as_bytes(), tokens)
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    let id = match endpoint {
        Endpoint::Messages => "msg_synth1",
        Endpoint::Responses => "resp_synth1",
        _ => "chatcmpl-synth1",
    };
    let mut stream = SynthStream::new(&req, id, 1_700_000_000);
    let mut out = Vec::new();
    loop {
        if fail_after.is_some_and(|n| stream.token_frames_sent() >= n) {
            stream.fail(&mut out);
            return out;
        }
        if !stream.next_frame(&mut out) {
            return out;
        }
    }
}

/// A whole stream translated from `upstream` to `client`, as the gateway relays it.
fn translated(upstream: Api, client: Api, input: &[u8], include_usage: bool) -> Vec<u8> {
    let mut rctx = ResponseContext::new("req-tr", 1_761_111_111, "tr-model");
    rctx.include_usage = include_usage;
    common::translate(
        new_stream_translator(upstream, client, &rctx).unwrap(),
        [input],
    )
    .out
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn cases() -> Vec<Case> {
    use ClientFormat::{Chat, Completions, Messages, Responses};
    let user = json!([{"role": "user", "content": "tell me about the rain in Spain"}]);
    let chat = |extra: Value| {
        let mut body = json!({"model": "m", "stream": true, "messages": user});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let usage_on = json!({"stream_options": {"include_usage": true}});
    let mut cases = vec![
        case(
            "chat fixture",
            Chat,
            true,
            fixture("openai_chat_include_usage.sse"),
        ),
        case(
            "chat crlf",
            Chat,
            true,
            fixture("openai_chat_include_usage_crlf.sse"),
        ),
        case(
            "chat cr",
            Chat,
            true,
            fixture("openai_chat_include_usage_cr.sse"),
        ),
        case(
            "chat mixed",
            Chat,
            true,
            fixture("openai_chat_mixed_line_ends.sse"),
        ),
        case(
            "chat keep-alive tools",
            Chat,
            true,
            fixture("openai_keepalive_tool_calls.sse"),
        ),
        case(
            "chat parallel tools",
            Chat,
            true,
            fixture("openai_parallel_tools_interleaved.sse"),
        ),
        case(
            "chat usage on choices",
            Chat,
            false,
            fixture("openai_usage_on_choices_chunk.sse"),
        ),
        case(
            "chat vllm",
            Chat,
            true,
            fixture("vllm_choices_null_usage.sse"),
        ),
        case("chat multiline", Chat, true, fixture("multiline_data.sse")),
        case(
            "messages fixture",
            Messages,
            false,
            fixture("anthropic_messages.sse"),
        ),
        case(
            "messages thinking",
            Messages,
            false,
            fixture("anthropic_thinking_tools_cache.sse"),
        ),
        case(
            "messages overloaded",
            Messages,
            false,
            fixture("anthropic_overloaded_midstream.sse"),
        ),
        case(
            "responses fixture",
            Responses,
            false,
            fixture("responses_text_function_call.sse"),
        ),
    ];
    let synthetic = [
        (
            "synth chat",
            Chat,
            true,
            Endpoint::ChatCompletions,
            chat(usage_on.clone()),
            None,
        ),
        (
            "synth chat no usage",
            Chat,
            false,
            Endpoint::ChatCompletions,
            chat(json!({})),
            None,
        ),
        (
            "synth chat n=3",
            Chat,
            true,
            Endpoint::ChatCompletions,
            chat(json!({"n": 3, "stream_options": {"include_usage": true}})),
            None,
        ),
        (
            "synth chat tool",
            Chat,
            false,
            Endpoint::ChatCompletions,
            chat(json!({"tools": tools(), "tool_choice": "required"})),
            None,
        ),
        (
            "synth chat failed",
            Chat,
            true,
            Endpoint::ChatCompletions,
            chat(usage_on.clone()),
            Some(3),
        ),
        (
            "synth completions",
            Completions,
            true,
            Endpoint::Completions,
            json!({"model": "m", "stream": true, "prompt": "a b c d e",
                   "stream_options": {"include_usage": true}}),
            None,
        ),
        (
            "synth completions n=2",
            Completions,
            false,
            Endpoint::Completions,
            json!({"model": "m", "stream": true, "prompt": "a b c", "n": 2}),
            None,
        ),
        (
            "synth messages",
            Messages,
            false,
            Endpoint::Messages,
            json!({"model": "m", "stream": true, "max_tokens": 64, "messages": user}),
            None,
        ),
        (
            "synth messages tool",
            Messages,
            false,
            Endpoint::Messages,
            json!({"model": "m", "stream": true, "max_tokens": 64, "messages": user,
                   "tool_choice": {"type": "any"},
                   "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                       "properties": {"city": {"type": "string"}}}}]}),
            None,
        ),
        (
            "synth messages failed",
            Messages,
            false,
            Endpoint::Messages,
            json!({"model": "m", "stream": true, "max_tokens": 64, "messages": user}),
            Some(2),
        ),
        (
            "synth responses",
            Responses,
            false,
            Endpoint::Responses,
            json!({"model": "m", "stream": true, "input": "the rain in Spain"}),
            None,
        ),
        (
            "synth responses tool",
            Responses,
            false,
            Endpoint::Responses,
            json!({"model": "m", "stream": true, "input": "please call get_weather",
                   "tools": [{"type": "function", "name": "get_weather", "parameters":
                       {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
            None,
        ),
        (
            "synth responses capped",
            Responses,
            false,
            Endpoint::Responses,
            json!({"model": "m", "stream": true, "input": "x", "max_output_tokens": 16}),
            None,
        ),
        (
            "synth responses failed",
            Responses,
            false,
            Endpoint::Responses,
            json!({"model": "m", "stream": true, "input": "the rain in Spain"}),
            Some(2),
        ),
    ];
    for (name, format, include_usage, endpoint, body, fail_after) in synthetic {
        let tokens = (name == "synth responses capped").then_some(40);
        cases.push(case(
            name,
            format,
            include_usage,
            synth(endpoint, body, tokens, fail_after),
        ));
    }
    // Streams the gateway translated for the client.
    let parallel = fixture("openai_parallel_tools_interleaved.sse");
    let anthropic = fixture("anthropic_messages.sse");
    let translations = [
        (
            "chat -> messages",
            Messages,
            Api::ChatCompletions,
            &parallel,
            false,
        ),
        (
            "chat -> responses",
            Responses,
            Api::ChatCompletions,
            &parallel,
            false,
        ),
        ("messages -> chat", Chat, Api::Messages, &anthropic, true),
        (
            "messages -> responses",
            Responses,
            Api::Messages,
            &anthropic,
            false,
        ),
    ];
    for (name, format, upstream, input, include_usage) in translations {
        let client = match format {
            Chat => Api::ChatCompletions,
            Messages => Api::Messages,
            _ => Api::Responses,
        };
        let stream = translated(upstream, client, input, include_usage);
        cases.push(case(name, format, include_usage, stream));
    }
    cases
}

/// A frame as [`events`] reads it (the prefix is not framed again: a cut may end on a lone
/// `\r` that a framer would wait on).
fn out_event(frame: &SseFrame) -> OutEvent {
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
    OutEvent {
        event: frame.event().map(text),
        data: frame.data().map(|d| text(&d)),
        comment: frame.is_comment(),
    }
}

fn data_json(event: &OutEvent) -> Value {
    serde_json::from_str(event.data.as_deref().unwrap()).unwrap()
}

/// The stream's own end (or error) is among `events`, read without the closer.
fn has_ended(format: ClientFormat, events: &[OutEvent]) -> bool {
    events.iter().filter(|e| !e.comment).any(|e| {
        let data = e.data.as_deref().unwrap_or_default();
        if data == "[DONE]" {
            return true;
        }
        let Ok(data) = serde_json::from_str::<Value>(data) else {
            return false;
        };
        match format {
            ClientFormat::Chat | ClientFormat::Completions => {
                data.get("error").is_some_and(|e| !e.is_null())
            }
            ClientFormat::Messages => {
                matches!(data["type"].as_str(), Some("message_stop" | "error"))
            }
            ClientFormat::Responses => matches!(
                data["type"].as_str(),
                Some("response.completed" | "response.incomplete" | "response.failed" | "error")
            ),
        }
    })
}

#[test]
fn every_cut_closes_into_a_valid_stream() {
    let mut checked = 0;
    for case in cases() {
        let frames = frames_of([case.stream.as_slice()]);
        assert!(frames.len() > 3, "{}", case.name);
        for cut in 0..=frames.len() {
            let mut closer = StreamCloser::new(case.format, ctx(case.include_usage));
            let mut full = Vec::new();
            for frame in &frames[..cut] {
                closer.observe(frame);
                full.extend_from_slice(frame.raw());
            }
            let prefix: Vec<OutEvent> = frames[..cut].iter().map(out_event).collect();
            let ended = has_ended(case.format, &prefix);
            assert_eq!(closer.is_ended(), ended, "{} cut at {cut}", case.name);
            let mut closing = Vec::new();
            closer.close(USAGE, &mut closing);
            assert!(closer.is_ended());
            if ended {
                assert!(
                    closing.is_empty(),
                    "{} cut at {cut}: wrote after the end",
                    case.name
                );
                continue;
            }
            full.extend_from_slice(&closing);
            let all = events(&full);
            let what = format!(
                "{} cut at {cut}:\n{}",
                case.name,
                String::from_utf8_lossy(&full)
            );
            match case.format {
                ClientFormat::Chat | ClientFormat::Completions => {
                    check_chat(&prefix, &all, case.format, case.include_usage, &what)
                }
                ClientFormat::Messages => check_messages(&prefix, &all, &what),
                ClientFormat::Responses => check_responses(&prefix, &all, &what),
            }
            let mut again = Vec::new();
            closer.close(USAGE, &mut again);
            assert!(again.is_empty(), "{what}");
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked} cuts checked");
}

/// Chat and Completions: well-formed chunks with one id; every choice that appeared finishes
/// exactly once, those still open at the cut with `length`; the usage chunk (empty `choices`)
/// exactly when the client asked, right before a single, final `[DONE]`; the closing chunks
/// carry `"usage": null` exactly when the stream's chunks carry `usage`.
fn check_chat(
    prefix: &[OutEvent],
    all: &[OutEvent],
    format: ClientFormat,
    usage: bool,
    what: &str,
) {
    // Events without data (`retry:` alone) are not dispatched.
    let data: Vec<&OutEvent> = all.iter().filter(|e| e.data.is_some()).collect();
    let (done, chunks) = data.split_last().expect(what);
    assert_eq!(done.data.as_deref(), Some("[DONE]"), "{what}");
    let chunks: Vec<Value> = chunks.iter().map(|e| data_json(e)).collect();
    let prefix_chunks = prefix.iter().filter(|e| e.data.is_some()).count();
    // Before any chunk, the stream would carry usage if the client asked.
    let carries_usage = match prefix_chunks {
        0 => usage,
        _ => chunks[..prefix_chunks]
            .iter()
            .any(|c| c.get("usage").is_some()),
    };
    let object = match format {
        ClientFormat::Completions => "text_completion",
        _ => "chat.completion.chunk",
    };
    let mut finishes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut usage_chunks = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        assert!(chunk.get("error").is_none(), "{what}");
        assert_eq!(chunk["object"], object, "{what}");
        if i >= prefix_chunks {
            // The closer's chunks: the stream's head where it had one, else the context's.
            let first = chunks.first().unwrap();
            let or = |key: &str, fallback: Value| match first.get(key) {
                Some(value) => value.clone(),
                None => fallback,
            };
            assert_eq!(chunk["id"], or("id", "gw-req-1".into()), "{what}");
            assert_eq!(chunk["model"], or("model", "gw-model".into()), "{what}");
            assert_eq!(
                chunk["created"],
                or("created", 1_761_000_000.into()),
                "{what}"
            );
        }
        let choices = chunk["choices"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if choices.is_empty() && chunk["usage"].is_object() {
            usage_chunks += 1;
            assert_eq!(i + 1, chunks.len(), "the usage chunk is last: {what}");
        }
        for choice in choices {
            let index = choice["index"].as_u64().expect(what);
            let finishes = finishes.entry(index).or_default();
            if let Some(reason) = choice["finish_reason"].as_str() {
                finishes.push(reason.to_owned());
            }
        }
        if i >= prefix_chunks && !choices.is_empty() {
            // A closing chunk.
            assert_eq!(chunk.get("usage").is_some(), carries_usage, "{what}");
            assert!(chunk.get("usage").is_none_or(Value::is_null), "{what}");
            let choice = &choices[0];
            assert_eq!(choices.len(), 1, "{what}");
            assert_eq!(choice["finish_reason"], "length", "{what}");
            assert!(choice["logprobs"].is_null(), "{what}");
            match format {
                ClientFormat::Completions => assert_eq!(choice["text"], "", "{what}"),
                _ => assert_eq!(choice["delta"], json!({}), "{what}"),
            }
        }
    }
    assert!(finishes.contains_key(&0), "choice 0 finishes: {what}");
    for (index, reasons) in &finishes {
        assert_eq!(reasons.len(), 1, "choice {index} finishes once: {what}");
    }
    assert_eq!(usage_chunks, usize::from(usage), "{what}");
    if usage
        && chunks[..prefix_chunks]
            .iter()
            .all(|c| !c["usage"].is_object())
    {
        let last = chunks.last().unwrap();
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 120, "completion_tokens": 33, "total_tokens": 153,
                   "prompt_tokens_details": {"cached_tokens": 20},
                   "completion_tokens_details": {"reasoning_tokens": 0}}),
            "{what}"
        );
    }
}

/// Messages: `event:` equals `type`; one `message_start`, first; every block started is
/// stopped once, deltas only inside open blocks; `message_delta` after the blocks (the
/// closer's says `max_tokens` with the output count), then `message_stop`, last.
fn check_messages(prefix: &[OutEvent], all: &[OutEvent], what: &str) {
    let stop_before = prefix
        .iter()
        .any(|e| e.event.as_deref() == Some("message_delta"));
    let mut open: Vec<u64> = Vec::new();
    let mut stopped: Vec<u64> = Vec::new();
    let mut deltas = 0;
    for (i, event) in all.iter().enumerate() {
        let data = data_json(event);
        let kind = data["type"].as_str().expect(what);
        assert_eq!(event.event.as_deref(), Some(kind), "{what}");
        assert_eq!(i == 0, kind == "message_start", "{what}");
        let index = data["index"].as_u64();
        match kind {
            "message_start" => {
                let message = &data["message"];
                assert!(
                    message["id"].is_string() && message["model"].is_string(),
                    "{what}"
                );
                assert_eq!(message["content"], json!([]), "{what}");
                assert!(message["usage"]["output_tokens"].is_u64(), "{what}");
            }
            "content_block_start" => {
                let index = index.expect(what);
                assert!(
                    !open.contains(&index) && !stopped.contains(&index),
                    "{what}"
                );
                open.push(index);
            }
            "content_block_delta" => assert!(open.contains(&index.expect(what)), "{what}"),
            "content_block_stop" => {
                let index = index.expect(what);
                assert!(open.contains(&index), "{what}");
                open.retain(|&o| o != index);
                stopped.push(index);
            }
            "message_delta" => {
                assert!(open.is_empty(), "blocks stop before message_delta: {what}");
                deltas += 1;
                assert!(data["delta"]["stop_sequence"].is_null(), "{what}");
                if !stop_before {
                    assert_eq!(data["delta"]["stop_reason"], "max_tokens", "{what}");
                    assert_eq!(data["usage"]["output_tokens"], 33, "{what}");
                    assert_eq!(data["usage"]["cache_read_input_tokens"], 20, "{what}");
                }
            }
            "message_stop" => assert_eq!(i + 1, all.len(), "message_stop is last: {what}"),
            // Upstream events from the future pass through; the closer writes none.
            other => assert!(i < prefix.len(), "unexpected {other}: {what}"),
        }
    }
    // Anthropic may send several (cumulative) `message_delta`s; the closer adds one only when
    // none went out.
    assert!(deltas >= 1, "{what}");
    assert!(stop_before || deltas == 1, "{what}");
    assert_eq!(
        all.last().and_then(|e| e.event.as_deref()),
        Some("message_stop"),
        "{what}"
    );
}

/// Responses: `event:` equals `type`; `sequence_number`s 0, 1, 2...; `response.created` first,
/// one response id; every item and part added is done once, after its deltas, with the text /
/// arguments its deltas add up to (the items the closer ends: `incomplete`); `response.incomplete` last, with every field the SDK's
/// `Response` requires, `max_output_tokens`, the usage and the items as their `.done` events
/// showed them.
fn check_responses(prefix: &[OutEvent], all: &[OutEvent], what: &str) {
    // Per item: its final form; per (item, part): accumulated text.
    let mut items: BTreeMap<u64, Option<Value>> = BTreeMap::new();
    let mut parts: BTreeMap<(u64, &str, u64), (String, bool)> = BTreeMap::new();
    let mut arguments: BTreeMap<u64, String> = BTreeMap::new();
    let datas: Vec<Value> = all.iter().map(data_json).collect();
    for (i, (event, data)) in all.iter().zip(&datas).enumerate() {
        let kind = data["type"].as_str().expect(what);
        assert_eq!(event.event.as_deref(), Some(kind), "{what}");
        assert_eq!(data["sequence_number"], i as u64, "{kind}: {what}");
        assert_eq!(i == 0, kind == "response.created", "{what}");
        if let Some(response) = data.get("response") {
            assert_eq!(response["id"], datas[0]["response"]["id"], "{what}");
        }
        let output_index = data["output_index"].as_u64();
        let part_key = |data: &Value| {
            let (group, index) = match data.get("summary_index") {
                Some(index) => ("summary", index),
                None => ("content", &data["content_index"]),
            };
            (output_index.unwrap(), group, index.as_u64().unwrap())
        };
        let open_item = |items: &BTreeMap<u64, Option<Value>>| {
            assert!(
                matches!(items.get(&output_index.unwrap()), Some(None)),
                "{kind} outside an open item: {what}"
            );
        };
        match kind {
            "response.created" | "response.in_progress" => {}
            "response.output_item.added" => {
                assert!(
                    items.insert(output_index.unwrap(), None).is_none(),
                    "{what}"
                );
            }
            "response.output_item.done" => {
                open_item(&items);
                let item = data["item"].clone();
                if i >= prefix.len() {
                    // Closed by the closer.
                    assert_eq!(item["status"], "incomplete", "{what}");
                }
                assert!(parts
                    .iter()
                    .all(|(key, (_, done))| key.0 != output_index.unwrap() || *done));
                if item["type"] == "function_call" {
                    let args = arguments
                        .get(&output_index.unwrap())
                        .cloned()
                        .unwrap_or_default();
                    assert_eq!(item["arguments"], args.as_str(), "{what}");
                }
                items.insert(output_index.unwrap(), Some(item));
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                open_item(&items);
                assert!(parts
                    .insert(part_key(data), (String::new(), false))
                    .is_none());
            }
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.reasoning_summary_text.delta" => {
                let (text, done) = parts.get_mut(&part_key(data)).expect(what);
                assert!(!*done, "{what}");
                text.push_str(data["delta"].as_str().unwrap());
            }
            "response.output_text.done" | "response.reasoning_summary_text.done" => {
                let (text, _) = &parts[&part_key(data)];
                assert_eq!(data["text"], text.as_str(), "{what}");
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                let (text, done) = parts.get_mut(&part_key(data)).expect(what);
                assert!(!*done, "part done twice: {what}");
                *done = true;
                assert_eq!(data["part"]["text"], text.as_str(), "{what}");
            }
            "response.function_call_arguments.delta" => {
                open_item(&items);
                let args = arguments.entry(output_index.unwrap()).or_default();
                args.push_str(data["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.done" => {
                open_item(&items);
                let args = arguments
                    .get(&output_index.unwrap())
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(data["arguments"], args.as_str(), "{what}");
            }
            "response.incomplete" => {
                assert_eq!(i + 1, all.len(), "{what}");
                let response = &data["response"];
                for key in [
                    "id",
                    "created_at",
                    "model",
                    "object",
                    "output",
                    "parallel_tool_calls",
                    "tool_choice",
                    "tools",
                ] {
                    assert!(response.get(key).is_some(), "{key}: {what}");
                }
                assert_eq!(response["object"], "response", "{what}");
                assert_eq!(response["status"], "incomplete", "{what}");
                assert_eq!(
                    response["incomplete_details"],
                    json!({"reason": "max_output_tokens"}),
                    "{what}"
                );
                assert_eq!(response["usage"]["input_tokens"], 120, "{what}");
                assert_eq!(response["usage"]["output_tokens"], 33, "{what}");
                assert_eq!(response["usage"]["total_tokens"], 153, "{what}");
                assert_eq!(
                    response["usage"]["input_tokens_details"]["cached_tokens"], 20,
                    "{what}"
                );
                let output: Vec<Value> = items
                    .values()
                    .map(|item| item.clone().expect("every item is done"))
                    .collect();
                assert_eq!(response["output"], Value::Array(output), "{what}");
            }
            other => panic!("unexpected {other}: {what}"),
        }
    }
    assert_eq!(
        all.last().and_then(|e| e.event.as_deref()),
        Some("response.incomplete"),
        "{what}"
    );
}

#[test]
fn closing_items_marks_them_incomplete() {
    // Cut in the middle of the fixture's function call: the item the closer ends is
    // `incomplete` with the arguments so far, the message before it keeps its own form.
    let frames = frames_of([fixture("responses_text_function_call.sse").as_slice()]);
    let cut = frames
        .iter()
        .position(|f| f.event() == Some(b"response.function_call_arguments.delta".as_slice()))
        .unwrap()
        + 1;
    let mut closer = StreamCloser::new(ClientFormat::Responses, ctx(false));
    for frame in &frames[..cut] {
        closer.observe(frame);
    }
    let mut out = Vec::new();
    closer.close(USAGE, &mut out);
    let closing: Vec<Value> = events(&out).iter().map(data_json).collect();
    let kinds: Vec<&str> = closing
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.incomplete"
        ]
    );
    assert_eq!(closing[0]["sequence_number"], 12);
    assert_eq!(closing[0]["arguments"], "{\"city\":");
    assert_eq!(closing[1]["item"]["status"], "incomplete");
    assert_eq!(closing[1]["item"]["call_id"], "call_Rk2Lp9Wq");
    let response = &closing[2]["response"];
    assert_eq!(response["output"][0]["status"], "completed");
    assert_eq!(response["output"][1], closing[1]["item"]);
    // The rest of the upstream's response object is kept.
    assert_eq!(response["instructions"], "You are terse.");
    assert_eq!(response["reasoning"]["effort"], "low");
    assert_eq!(response["tools"][0]["name"], "get_forecast");
}

#[test]
fn tool_call_in_flight_still_finishes_with_length() {
    let frames = frames_of([fixture("openai_keepalive_tool_calls.sse").as_slice()]);
    let mut closer = StreamCloser::new(ClientFormat::Chat, ctx(false));
    for frame in &frames[..5] {
        closer.observe(frame);
    }
    let mut out = Vec::new();
    closer.close(USAGE, &mut out);
    let chunk = data_json(&events(&out)[0]);
    assert_eq!(chunk["id"], "chatcmpl-C1aa7Hf0WqK2");
    assert_eq!(chunk["model"], "o4-mini-2025-04-16");
    assert_eq!(chunk["created"], 1753960123);
    assert_eq!(chunk["choices"][0]["finish_reason"], "length");
    assert_eq!(
        chunk["usage"],
        Value::Null,
        "the stream carries usage members"
    );
    assert!(out.ends_with(b"data: [DONE]\n\n"));
}
