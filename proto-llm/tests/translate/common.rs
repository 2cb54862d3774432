//! Helpers: fixtures, framing at any split, reference readings of upstream streams, and
//! checked readings of translated streams (each asserts its API's well-formedness rules).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use sluice_proto_llm::sse::{SseFrame, SseFramer};
use sluice_proto_llm::track::TrackedUsage;
use sluice_proto_llm::translate::stream::{StreamOutcome, StreamTranslator};

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Frames of `input` pushed in the given chunks; a trailing partial frame is returned as one.
pub fn frames_of<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<SseFrame> {
    let mut framer = SseFramer::new(1 << 20);
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame().unwrap() {
            frames.push(frame);
        }
    }
    let rest = framer.take_remainder();
    if !rest.is_empty() {
        frames.push(SseFrame::new(rest));
    }
    frames
}

pub struct Run {
    pub out: Vec<u8>,
    pub outcome: StreamOutcome,
    pub usage: Option<TrackedUsage>,
    pub dropped: Vec<String>,
}

/// Feeds `chunks` through a framer into `translator`, then ends the upstream.
pub fn translate<'a>(
    mut translator: Box<dyn StreamTranslator>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Run {
    let mut out = Vec::new();
    let mut framer = SseFramer::new(1 << 20);
    for chunk in chunks {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame().unwrap() {
            translator.frame(&frame, &mut out);
        }
    }
    // An incomplete trailing event is dropped, as the gateway does at upstream EOF.
    drop(framer.take_remainder());
    translator.finish(&mut out);
    Run {
        out,
        outcome: translator.outcome(),
        usage: translator.usage(),
        dropped: translator.dropped().to_vec(),
    }
}

/// One client-side event of a translated stream.
#[derive(Debug, Clone)]
pub struct OutEvent {
    pub event: Option<String>,
    pub data: Option<String>,
    pub comment: bool,
}

/// Splits translated output into events; every event must be complete.
pub fn events(out: &[u8]) -> Vec<OutEvent> {
    let mut framer = SseFramer::new(1 << 20);
    framer.push(out);
    let mut events = Vec::new();
    while let Some(frame) = framer.next_frame().unwrap() {
        events.push(OutEvent {
            event: frame
                .event()
                .map(|e| String::from_utf8(e.to_vec()).unwrap()),
            data: frame.data().map(|d| String::from_utf8(d.to_vec()).unwrap()),
            comment: frame.is_comment(),
        });
    }
    assert!(
        framer.take_remainder().is_empty(),
        "output ends with an incomplete event"
    );
    events
}

/// What a stream says, independent of its API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meaning {
    pub text: String,
    /// (id, name, arguments as parsed JSON), in order.
    pub tools: Vec<(String, String, Value)>,
    /// Normalised to Chat's vocabulary.
    pub finish: Option<String>,
    pub usage: Option<TrackedUsage>,
    /// The error message, if the stream failed.
    pub error: Option<String>,
    /// Ended with the API's clean end.
    pub clean_end: bool,
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Arguments as JSON; arguments that are not JSON (garbage in) stay a string.
fn args_value(args: &str) -> Value {
    if args.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_owned()))
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Reads an upstream Chat stream directly.
pub fn chat_reference(input: &[u8]) -> Meaning {
    let mut m = Meaning::default();
    let mut tools: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    for frame in frames_of([input]) {
        if frame.is_done() {
            m.clean_end = true;
            continue;
        }
        let Some(data) = frame.data() else { continue };
        let chunk: Value = serde_json::from_slice(&data).unwrap();
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            m.usage = Some(TrackedUsage {
                input_tokens: u(&usage["prompt_tokens"]),
                cached_input_tokens: u(&usage["prompt_tokens_details"]["cached_tokens"]),
                cache_creation_input_tokens: 0,
                output_tokens: u(&usage["completion_tokens"]),
                reasoning_tokens: u(&usage["completion_tokens_details"]["reasoning_tokens"]),
            });
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                m.text.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let entry = tools.entry(call["index"].as_u64().unwrap()).or_default();
                if let Some(id) = call["id"].as_str() {
                    entry.0 = id.to_owned();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.1 = name.to_owned();
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    entry.2.push_str(args);
                }
            }
            if let Some(finish) = choice["finish_reason"].as_str() {
                m.finish = Some(finish.to_owned());
            }
        }
    }
    m.tools = tools
        .into_values()
        .map(|(id, name, args)| (id, name, args_value(&args)))
        .collect();
    m
}

/// Reads an upstream Anthropic stream directly.
pub fn anthropic_reference(input: &[u8]) -> Meaning {
    let mut m = Meaning::default();
    let mut tools: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut counts = [0u64; 5]; // input, cache read, cache creation, output, thinking
    let mut seen_usage = false;
    let update = |usage: &Value, counts: &mut [u64; 5]| {
        for (i, key) in [
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "output_tokens",
        ]
        .iter()
        .enumerate()
        {
            if let Some(v) = usage[key].as_u64() {
                counts[i] = v;
            }
        }
        if let Some(v) = usage["output_tokens_details"]["thinking_tokens"].as_u64() {
            counts[4] = v;
        }
    };
    for frame in frames_of([input]) {
        let Some(data) = frame.data() else { continue };
        let event: Value = serde_json::from_slice(&data).unwrap();
        match event["type"].as_str().unwrap() {
            "message_start" => {
                update(&event["message"]["usage"], &mut counts);
                seen_usage = true;
            }
            "content_block_start" if event["content_block"]["type"] == "tool_use" => {
                let block = &event["content_block"];
                tools.insert(
                    event["index"].as_u64().unwrap(),
                    (
                        block["id"].as_str().unwrap().to_owned(),
                        block["name"].as_str().unwrap().to_owned(),
                        String::new(),
                    ),
                );
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => m.text.push_str(delta["text"].as_str().unwrap()),
                    "input_json_delta" => tools
                        .get_mut(&event["index"].as_u64().unwrap())
                        .unwrap()
                        .2
                        .push_str(delta["partial_json"].as_str().unwrap()),
                    _ => {}
                }
            }
            "message_delta" => {
                update(&event["usage"], &mut counts);
                let stop = event["delta"]["stop_reason"].as_str().unwrap();
                m.finish = Some(
                    match stop {
                        "max_tokens" => "length",
                        "tool_use" => "tool_calls",
                        "refusal" => "content_filter",
                        _ => "stop",
                    }
                    .to_owned(),
                );
            }
            "message_stop" => m.clean_end = true,
            "error" => m.error = Some(event["error"]["message"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    if seen_usage {
        let [input, read, creation, output, thinking] = counts;
        m.usage = Some(TrackedUsage {
            input_tokens: input + read + creation,
            cached_input_tokens: read,
            cache_creation_input_tokens: creation,
            output_tokens: output,
            reasoning_tokens: thinking,
        });
    }
    m.tools = tools
        .into_values()
        .map(|(id, name, args)| (id, name, args_value(&args)))
        .collect();
    m
}

/// Reads a translated Chat stream, asserting OpenAI's rules: every chunk carries the same `id`,
/// `object`, `created`, `model`; `"usage": null` on every chunk iff `include_usage`, then one
/// `choices: []` usage chunk; `[DONE]` exactly once and last on a clean end, never after an
/// error.
pub fn chat_meaning(out: &[u8], include_usage: bool, model: &str, created: u64) -> Meaning {
    let mut m = Meaning::default();
    let mut tools: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut id: Option<String> = None;
    let events = events(out);
    let data: Vec<&OutEvent> = events.iter().filter(|e| !e.comment).collect();
    for (i, event) in data.iter().enumerate() {
        assert!(event.event.is_none(), "chat events have no `event:` line");
        let text = event.data.as_deref().expect("every chat event has data");
        let last = i + 1 == data.len();
        if text == "[DONE]" {
            assert!(last, "[DONE] must be last");
            assert!(m.error.is_none());
            m.clean_end = true;
            continue;
        }
        let chunk = json(text);
        if let Some(error) = chunk.get("error") {
            assert!(last, "an error ends the stream");
            assert!(error["type"].is_string() && error.get("param").is_some());
            m.error = Some(error["message"].as_str().unwrap().to_owned());
            continue;
        }
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], model);
        assert_eq!(chunk["created"], created);
        let chunk_id = chunk["id"].as_str().unwrap().to_owned();
        assert!(chunk_id.starts_with("chatcmpl-"), "{chunk_id}");
        assert_eq!(id.get_or_insert(chunk_id.clone()), &chunk_id);
        let choices = chunk["choices"].as_array().unwrap();
        if include_usage {
            let usage = chunk.get("usage").expect("usage key with include_usage");
            if choices.is_empty() {
                assert!(usage.is_object());
                assert_eq!(
                    data.get(i + 1).and_then(|e| e.data.as_deref()),
                    Some("[DONE]"),
                    "the usage chunk comes right before [DONE]"
                );
                m.usage = Some(TrackedUsage {
                    input_tokens: u(&usage["prompt_tokens"]),
                    cached_input_tokens: u(&usage["prompt_tokens_details"]["cached_tokens"]),
                    cache_creation_input_tokens: u(
                        &usage["prompt_tokens_details"]["cache_write_tokens"]
                    ),
                    output_tokens: u(&usage["completion_tokens"]),
                    reasoning_tokens: u(&usage["completion_tokens_details"]["reasoning_tokens"]),
                });
                assert_eq!(
                    u(&usage["total_tokens"]),
                    u(&usage["prompt_tokens"]) + u(&usage["completion_tokens"])
                );
            } else {
                assert!(usage.is_null(), "usage is null on content chunks");
            }
        } else {
            assert!(
                chunk.get("usage").is_none(),
                "no usage key without include_usage"
            );
            assert!(!choices.is_empty());
        }
        for choice in choices {
            assert_eq!(choice["index"], 0);
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                m.text.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap();
                let fresh = !tools.contains_key(&index);
                let entry = tools.entry(index).or_default();
                if fresh {
                    assert_eq!(call["type"], "function", "first fragment has the type");
                    entry.0 = call["id"]
                        .as_str()
                        .expect("first fragment has the id")
                        .to_owned();
                    entry.1 = call["function"]["name"].as_str().unwrap().to_owned();
                } else {
                    assert!(call.get("id").is_none());
                }
                entry
                    .2
                    .push_str(call["function"]["arguments"].as_str().unwrap());
            }
            if let Some(finish) = choice["finish_reason"].as_str() {
                assert!(m.finish.is_none(), "one finish chunk");
                m.finish = Some(finish.to_owned());
            }
        }
    }
    let indices: Vec<u64> = tools.keys().copied().collect();
    assert_eq!(indices, (0..indices.len() as u64).collect::<Vec<_>>());
    m.tools = tools
        .into_values()
        .map(|(id, name, args)| (id, name, args_value(&args)))
        .collect();
    m
}

/// Reads a translated Anthropic stream, asserting: every event has an `event:` line equal to
/// its `type`; `message_start` first; blocks indexed 0, 1, 2... in order, never two open at
/// once, each started and stopped exactly once, deltas only inside their block and of its
/// kind; `message_delta` then `message_stop` last on a clean end; `error` last otherwise.
pub fn anthropic_meaning(out: &[u8], model: &str) -> Meaning {
    let mut m = Meaning::default();
    let events = events(out);
    let mut open: Option<(u64, String)> = None;
    let mut next_index = 0;
    let mut message_delta = false;
    let mut args = String::new();
    let mut counts = [0u64; 4];
    for (i, event) in events.iter().enumerate() {
        assert!(!event.comment);
        let data = json(event.data.as_deref().unwrap());
        let kind = data["type"].as_str().unwrap();
        assert_eq!(
            event.event.as_deref(),
            Some(kind),
            "event line matches type"
        );
        let last = i + 1 == events.len();
        if i == 0 && kind != "error" {
            assert_eq!(kind, "message_start");
        }
        match kind {
            "message_start" => {
                assert_eq!(i, 0);
                let message = &data["message"];
                assert!(message["id"].as_str().unwrap().starts_with("msg_"));
                assert_eq!(message["type"], "message");
                assert_eq!(message["role"], "assistant");
                assert_eq!(message["model"], model);
                assert_eq!(message["content"], serde_json::json!([]));
                assert!(message["stop_reason"].is_null());
                let usage = &message["usage"];
                counts = [
                    u(&usage["input_tokens"]),
                    u(&usage["cache_read_input_tokens"]),
                    u(&usage["cache_creation_input_tokens"]),
                    u(&usage["output_tokens"]),
                ];
            }
            "content_block_start" => {
                assert!(open.is_none(), "a block is still open");
                assert!(!message_delta);
                let index = data["index"].as_u64().unwrap();
                assert_eq!(index, next_index, "block indices are consecutive");
                next_index += 1;
                let block = &data["content_block"];
                let block_kind = block["type"].as_str().unwrap().to_owned();
                match block_kind.as_str() {
                    "text" => assert_eq!(block["text"], ""),
                    "tool_use" => {
                        assert_eq!(block["input"], serde_json::json!({}));
                        m.tools.push((
                            block["id"].as_str().unwrap().to_owned(),
                            block["name"].as_str().unwrap().to_owned(),
                            Value::Null,
                        ));
                        args.clear();
                    }
                    other => panic!("unexpected block {other}"),
                }
                open = Some((index, block_kind));
            }
            "content_block_delta" => {
                let (index, block_kind) = open.as_ref().expect("delta outside a block");
                assert_eq!(data["index"].as_u64().unwrap(), *index);
                let delta = &data["delta"];
                match (block_kind.as_str(), delta["type"].as_str().unwrap()) {
                    ("text", "text_delta") => m.text.push_str(delta["text"].as_str().unwrap()),
                    ("tool_use", "input_json_delta") => {
                        args.push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("delta {other:?}"),
                }
            }
            "content_block_stop" => {
                let (index, block_kind) = open.take().expect("stop without start");
                assert_eq!(data["index"].as_u64().unwrap(), index);
                if block_kind == "tool_use" {
                    m.tools.last_mut().unwrap().2 = args_value(&args);
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "blocks close before message_delta");
                assert!(!message_delta);
                message_delta = true;
                assert!(data["delta"]["stop_sequence"].is_null());
                let stop = data["delta"]["stop_reason"].as_str().unwrap();
                m.finish = Some(
                    match stop {
                        "max_tokens" => "length",
                        "tool_use" => "tool_calls",
                        "refusal" => "content_filter",
                        "end_turn" => "stop",
                        other => panic!("stop reason {other}"),
                    }
                    .to_owned(),
                );
                let usage = &data["usage"];
                assert!(usage["output_tokens"].is_u64());
                for (slot, key) in counts.iter_mut().zip([
                    "input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                    "output_tokens",
                ]) {
                    if let Some(v) = usage[key].as_u64() {
                        *slot = v;
                    }
                }
            }
            "message_stop" => {
                assert!(message_delta, "message_delta before message_stop");
                assert!(last, "message_stop is last");
                m.clean_end = true;
            }
            "error" => {
                assert!(last, "error is last");
                assert!(data["error"]["type"].is_string());
                m.error = Some(data["error"]["message"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let [input, read, creation, output] = counts;
    m.usage = Some(TrackedUsage {
        input_tokens: input + read + creation,
        cached_input_tokens: read,
        cache_creation_input_tokens: creation,
        output_tokens: output,
        reasoning_tokens: 0,
    });
    m
}

/// Reads a translated Responses stream, asserting: `event:` equals `type`; `sequence_number`
/// 0, 1, 2...; `response.created` then `response.in_progress` first; every item added once at
/// a fresh `output_index`, its deltas only while open, closed by `.done` events whose full
/// text / arguments equal the concatenated deltas; a final `response.completed` /
/// `.incomplete` whose output equals the closed items, or `error` + `response.failed`.
pub fn responses_meaning(out: &[u8], model: &str) -> (Meaning, Value) {
    let mut m = Meaning::default();
    let events = events(out);
    let mut items: BTreeMap<u64, (Value, String, bool)> = BTreeMap::new();
    let mut final_response = Value::Null;
    let mut response_id: Option<String> = None;
    for (i, event) in events.iter().enumerate() {
        let data = json(event.data.as_deref().unwrap());
        let kind = data["type"].as_str().unwrap();
        assert_eq!(event.event.as_deref(), Some(kind));
        assert_eq!(data["sequence_number"].as_u64(), Some(i as u64), "{kind}");
        let last = i + 1 == events.len();
        match (i, kind) {
            (0, k) => assert_eq!(k, "response.created"),
            (1, k) => assert_eq!(k, "response.in_progress"),
            _ => {}
        }
        if let Some(response) = data.get("response") {
            assert_eq!(response["object"], "response");
            assert_eq!(response["model"], model);
            let id = response["id"].as_str().unwrap().to_owned();
            assert!(id.starts_with("resp_"));
            assert_eq!(response_id.get_or_insert(id.clone()), &id);
        }
        match kind {
            "response.created" | "response.in_progress" => {
                assert_eq!(data["response"]["status"], "in_progress");
                assert_eq!(data["response"]["output"], serde_json::json!([]));
            }
            "response.output_item.added" => {
                let index = data["output_index"].as_u64().unwrap();
                assert_eq!(index, items.len() as u64, "output indices are consecutive");
                let item = data["item"].clone();
                assert_eq!(item["status"], "in_progress");
                items.insert(index, (item, String::new(), false));
            }
            "response.content_part.added" => {
                let (item, _, done) = &items[&data["output_index"].as_u64().unwrap()];
                assert!(!done);
                assert_eq!(data["item_id"], item["id"]);
                assert_eq!(data["part"]["type"], "output_text");
            }
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                let (item, acc, done) = items
                    .get_mut(&data["output_index"].as_u64().unwrap())
                    .unwrap();
                assert!(!*done, "delta after done");
                assert_eq!(data["item_id"], item["id"]);
                if kind == "response.output_text.delta" {
                    assert_eq!(data["logprobs"], serde_json::json!([]));
                    assert_eq!(item["type"], "message");
                } else {
                    assert_eq!(item["type"], "function_call");
                }
                acc.push_str(data["delta"].as_str().unwrap());
            }
            "response.output_text.done" => {
                let (_, acc, _) = &items[&data["output_index"].as_u64().unwrap()];
                assert_eq!(data["text"].as_str().unwrap(), acc);
            }
            "response.content_part.done" => {
                let (_, acc, _) = &items[&data["output_index"].as_u64().unwrap()];
                assert_eq!(data["part"]["text"].as_str().unwrap(), acc);
            }
            "response.function_call_arguments.done" => {
                let (_, acc, _) = &items[&data["output_index"].as_u64().unwrap()];
                assert_eq!(data["arguments"].as_str().unwrap(), acc);
            }
            "response.output_item.done" => {
                let index = data["output_index"].as_u64().unwrap();
                let (item, acc, done) = items.get_mut(&index).unwrap();
                assert!(!*done, "item closed twice");
                *done = true;
                let finished = &data["item"];
                assert_eq!(finished["id"], item["id"]);
                assert_ne!(finished["status"], "in_progress");
                match finished["type"].as_str().unwrap() {
                    "message" => {
                        assert_eq!(finished["content"][0]["text"].as_str().unwrap(), acc);
                        m.text.push_str(acc);
                    }
                    "function_call" => {
                        assert_eq!(finished["arguments"].as_str().unwrap(), acc);
                        m.tools.push((
                            finished["call_id"].as_str().unwrap().to_owned(),
                            finished["name"].as_str().unwrap().to_owned(),
                            args_value(acc),
                        ));
                    }
                    other => panic!("item type {other}"),
                }
                *item = finished.clone();
            }
            "response.completed" | "response.incomplete" => {
                assert!(last);
                assert!(
                    items.values().all(|(_, _, done)| *done),
                    "items closed first"
                );
                let response = &data["response"];
                let output: Vec<Value> = items.values().map(|(item, _, _)| item.clone()).collect();
                assert_eq!(response["output"], Value::Array(output));
                if kind == "response.incomplete" {
                    assert_eq!(response["status"], "incomplete");
                    m.finish = Some(
                        match response["incomplete_details"]["reason"].as_str().unwrap() {
                            "max_output_tokens" => "length",
                            "content_filter" => "content_filter",
                            other => panic!("{other}"),
                        }
                        .to_owned(),
                    );
                } else {
                    assert_eq!(response["status"], "completed");
                    m.finish = Some(
                        if m.tools.is_empty() {
                            "stop"
                        } else {
                            "tool_calls"
                        }
                        .to_owned(),
                    );
                }
                if let Some(usage) = response["usage"].as_object() {
                    m.usage = Some(TrackedUsage {
                        input_tokens: u(&usage["input_tokens"]),
                        cached_input_tokens: u(&usage["input_tokens_details"]["cached_tokens"]),
                        cache_creation_input_tokens: u(
                            &usage["input_tokens_details"]["cache_write_tokens"]
                        ),
                        output_tokens: u(&usage["output_tokens"]),
                        reasoning_tokens: u(&usage["output_tokens_details"]["reasoning_tokens"]),
                    });
                }
                m.clean_end = true;
                final_response = response.clone();
            }
            "error" => {
                assert_eq!(
                    events.get(i + 1).and_then(|e| e.event.as_deref()),
                    Some("response.failed")
                );
                m.error = Some(data["message"].as_str().unwrap().to_owned());
            }
            "response.failed" => {
                assert!(last);
                assert_eq!(data["response"]["status"], "failed");
                assert!(data["response"]["error"]["code"].is_string());
                final_response = data["response"].clone();
            }
            other => panic!("unexpected event {other}"),
        }
    }
    (m, final_response)
}
