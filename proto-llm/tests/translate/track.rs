//! Usage, end and error tracking on native streams and bodies; usage stripping.

use serde_json::Value;
use sluice_proto_llm::sse::SseFrame;
use sluice_proto_llm::track::{
    strip_injected_usage, strip_injected_usage_frame, Api, StripResult, TrackedUsage, UsageTracker,
};
use sluice_proto_llm::usage::Usage;

use crate::common::{anthropic_reference, chat_reference, fixture, frames_of};

fn track(api: Api, input: &[u8], capture: usize) -> UsageTracker {
    let mut tracker = UsageTracker::new(api).with_text_capture(capture);
    for frame in frames_of([input]) {
        tracker.observe(&frame);
    }
    tracker
}

fn frame(text: &str) -> SseFrame {
    SseFrame::new(bytes::Bytes::copy_from_slice(text.as_bytes()))
}

#[test]
fn chat_fixtures() {
    for file in [
        "openai_chat_include_usage.sse",
        "openai_chat_include_usage_cr.sse",
        "openai_keepalive_tool_calls.sse",
        "openai_parallel_tools_interleaved.sse",
        "openai_usage_on_choices_chunk.sse",
        "vllm_choices_null_usage.sse",
        "multiline_data.sse",
    ] {
        let input = fixture(file);
        let reference = chat_reference(&input);
        let tracker = track(Api::ChatCompletions, &input, 1 << 16);
        assert_eq!(tracker.usage(), reference.usage, "{file}");
        assert!(tracker.saw_end() && !tracker.saw_error(), "{file}");
        // Captured text: every content and argument fragment, decoded.
        let arguments = raw_argument_len(&input);
        assert_eq!(
            tracker.text().len(),
            reference.text.len() + arguments,
            "{file}"
        );
        if arguments == 0 {
            assert_eq!(tracker.text(), reference.text, "{file}");
        }
    }
}

/// Bytes of tool-call argument fragments in a chat stream (decoded).
fn raw_argument_len(input: &[u8]) -> usize {
    frames_of([input])
        .iter()
        .filter_map(|f| f.data())
        .filter_map(|d| serde_json::from_slice::<Value>(&d).ok())
        .flat_map(|chunk| {
            chunk["choices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|c| {
                    c["delta"]["tool_calls"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|call| call["function"]["arguments"].as_str().unwrap_or("").len())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[test]
fn chat_text_capture_keeps_order() {
    let tracker = track(
        Api::ChatCompletions,
        &fixture("openai_parallel_tools_interleaved.sse"),
        1 << 16,
    );
    assert_eq!(
        tracker.text(),
        "Checking both cities.{\"city\":{\"city\":\"Zü\"Paris\",rich\",\"days\":2}\"days\":3}"
    );
}

#[test]
fn anthropic_fixtures() {
    for (file, end, error) in [
        ("anthropic_messages.sse", true, false),
        ("anthropic_thinking_tools_cache.sse", true, false),
        ("anthropic_overloaded_midstream.sse", false, true),
    ] {
        let input = fixture(file);
        let reference = anthropic_reference(&input);
        let tracker = track(Api::Messages, &input, 1 << 16);
        assert_eq!(tracker.usage(), reference.usage, "{file}");
        assert_eq!(
            (tracker.saw_end(), tracker.saw_error()),
            (end, error),
            "{file}"
        );
    }
    let tracker = track(
        Api::Messages,
        &fixture("anthropic_thinking_tools_cache.sse"),
        1 << 16,
    );
    // Cumulative: the last message_delta (142) wins; message_start's placeholder (1) and the
    // first delta (118) are never added.
    assert_eq!(
        tracker.usage(),
        Some(TrackedUsage {
            input_tokens: 3283,
            cached_input_tokens: 2048,
            cache_creation_input_tokens: 1200,
            output_tokens: 142,
            reasoning_tokens: 61,
        })
    );
    assert_eq!(
        tracker.text(),
        "The user wants the forecast for two cities; I should call the tool.Checking \"Paris\" and Zürich…\nOne moment.{\"city\": \"Paris\", \"days\": 3}{\"city\": \"Zürich\", \"days\": 3}"
    );
    // Cut after message_start: input known, output is the placeholder, no end.
    let input = fixture("anthropic_messages.sse");
    let first = frames_of([input.as_slice()]).remove(0);
    let mut tracker = UsageTracker::new(Api::Messages);
    tracker.observe(&first);
    assert_eq!(tracker.usage().map(|u| u.output_tokens), Some(2));
    assert_eq!(tracker.usage().map(|u| u.input_tokens), Some(600));
    assert!(!tracker.saw_end());
}

#[test]
fn responses_fixture() {
    let tracker = track(
        Api::Responses,
        &fixture("responses_text_function_call.sse"),
        1 << 16,
    );
    assert_eq!(
        tracker.usage(),
        Some(TrackedUsage {
            input_tokens: 1523,
            cached_input_tokens: 1280,
            cache_creation_input_tokens: 0,
            output_tokens: 310,
            reasoning_tokens: 256,
        })
    );
    assert!(tracker.saw_end() && !tracker.saw_error());
    assert_eq!(
        tracker.text(),
        "Let me look that up for Zürich.{\"city\":\"Zürich\"}"
    );
}

#[test]
fn responses_failures() {
    let mut tracker = UsageTracker::new(Api::Responses);
    tracker.observe(&frame("event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null,\"sequence_number\":3}\n\n"));
    assert!(tracker.saw_error() && !tracker.saw_end());
    tracker.observe(&frame("event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":0,\"total_tokens\":5}},\"sequence_number\":4}\n\n"));
    assert!(tracker.saw_end());
    assert_eq!(tracker.usage().map(|u| u.input_tokens), Some(5));
    // Without `event:` lines the type is read from the data.
    let mut tracker = UsageTracker::new(Api::Responses);
    tracker.observe(&frame("data: {\"type\":\"response.incomplete\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":4,\"output_tokens_details\":{\"reasoning_tokens\":4}}}}\n\n"));
    assert!(tracker.saw_end() && !tracker.saw_error());
    assert_eq!(tracker.usage().map(|u| u.reasoning_tokens), Some(4));
}

#[test]
fn chat_errors_and_missing_usage() {
    let mut tracker = UsageTracker::new(Api::ChatCompletions);
    tracker.observe(&frame("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"an \\\"error\\\" in text\"}}]}\n\n"));
    assert!(!tracker.saw_error(), "the word in content is not an error");
    tracker.observe(&frame(
        "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
    ));
    assert!(tracker.saw_error());
    assert_eq!(tracker.usage(), None, "no usage seen");
    assert!(!tracker.saw_end());
    assert_eq!(tracker.text(), "", "no capture unless asked");
}

/// A text frame is scanned, a frame with usage or an error is parsed: both read the same
/// fields, whatever the frame's shape (reasoning beside OpenRouter-style `reasoning_details`,
/// refusals, legacy `choices[].text`, `logprobs.content`, escapes, several choices).
#[test]
fn chat_text_is_the_same_scanned_or_parsed() {
    let chunks = [
        r#"{"choices":[{"index":0,"delta":{"reasoning":"think","reasoning_details":[{"type":"reasoning.text","text":"think"}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"reasoning_content":"why \u00e9\n"},"logprobs":{"content":[{"token":"w","logprob":-0.1}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"a \"b\" \ud83d\ude00","refusal":null}},{"index":1,"delta":{"refusal":"no"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"x\":"}}]}}]}"#,
        r#"{"choices":[{"index":0,"text":"legacy","logprobs":null,"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":null},"finish_reason":"stop"}]}"#,
    ];
    for chunk in chunks {
        let mut scanned = UsageTracker::new(Api::ChatCompletions).with_text_capture(1 << 10);
        scanned.observe(&frame(&format!("data: {chunk}\n\n")));
        // The same chunk carrying usage goes through the parse.
        let with_usage = format!(
            "{},\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}}}",
            chunk.strip_suffix('}').unwrap()
        );
        let mut parsed = UsageTracker::new(Api::ChatCompletions).with_text_capture(1 << 10);
        parsed.observe(&frame(&format!("data: {with_usage}\n\n")));
        assert!(parsed.usage().is_some(), "{with_usage}");
        assert_eq!(scanned.text(), parsed.text(), "{chunk}");
    }
    let mut all = UsageTracker::new(Api::ChatCompletions).with_text_capture(1 << 10);
    for chunk in chunks {
        all.observe(&frame(&format!("data: {chunk}\n\n")));
    }
    assert_eq!(
        all.text(),
        "thinkwhy \u{e9}\na \"b\" \u{1f600}no{\"x\":legacy"
    );
}

#[test]
fn bodies_of_every_api() {
    let mut chat = UsageTracker::new(Api::ChatCompletions).with_text_capture(100);
    chat.observe_body(br#"{"choices":[{"message":{"content":"Hi","tool_calls":[{"function":{"arguments":"{}"}}]}}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4,"cache_write_tokens":2}}}"#);
    assert_eq!(
        chat.usage(),
        Some(TrackedUsage {
            input_tokens: 9,
            cached_input_tokens: 4,
            cache_creation_input_tokens: 2,
            output_tokens: 3,
            reasoning_tokens: 0,
        })
    );
    assert_eq!(chat.text(), "Hi{}");

    let mut messages = UsageTracker::new(Api::Messages).with_text_capture(100);
    messages.observe_body(br#"{"type":"message","content":[{"type":"text","text":"Hello"}],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":7}}"#);
    assert_eq!(
        messages.usage(),
        Some(TrackedUsage {
            input_tokens: 15,
            cached_input_tokens: 5,
            cache_creation_input_tokens: 0,
            output_tokens: 7,
            reasoning_tokens: 0,
        })
    );
    assert_eq!(messages.text(), "Hello");
    let mut error = UsageTracker::new(Api::Messages);
    error.observe_body(br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#);
    assert!(error.saw_error());
    assert_eq!(error.usage(), None);

    let mut responses = UsageTracker::new(Api::Responses).with_text_capture(100);
    responses.observe_body(br#"{"object":"response","error":null,"output":[{"type":"message","content":[{"type":"output_text","text":"Yo"}]},{"type":"function_call","arguments":"{\"a\":1}"}],"usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":1},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":5}}"#);
    assert_eq!(responses.usage().map(|u| u.total_tokens()), Some(5));
    assert_eq!(responses.text(), "Yo{\"a\":1}");
    assert!(!responses.saw_error(), "`error: null` is no error");

    let mut none = UsageTracker::new(Api::ChatCompletions);
    none.observe_body(br#"{"choices":[{"message":{"content":"Hi"}}]}"#);
    assert_eq!(none.usage(), None);
}

#[test]
fn text_capture_stops_at_the_limit_on_a_char_boundary() {
    let tracker = track(
        Api::ChatCompletions,
        &fixture("openai_chat_include_usage.sse"),
        44,
    );
    assert!(tracker.text_truncated());
    assert!(tracker.text().len() <= 44);
    assert!("Hello! Here is a \"quote\" and a newline:\ncafé ☕ 日本".starts_with(tracker.text()));
    // 44 bytes end inside the two bytes of "é": the cut moves back before it.
    assert_eq!(
        tracker.text(),
        "Hello! Here is a \"quote\" and a newline:\ncaf"
    );
}

#[test]
fn usage_conversions_round_trip() {
    let usage = Usage {
        prompt_tokens: 81,
        completion_tokens: 210,
        total_tokens: 291,
        cached_tokens: 64,
        reasoning_tokens: 192,
    };
    assert_eq!(Usage::from(TrackedUsage::from(usage)), usage);
}

#[test]
fn stripping_gives_the_stream_a_client_without_usage_would_see() {
    for file in [
        "openai_chat_include_usage.sse",
        "openai_chat_include_usage_crlf.sse",
        "openai_keepalive_tool_calls.sse",
        "vllm_choices_null_usage.sse",
        "openai_usage_on_choices_chunk.sse",
    ] {
        let input = fixture(file);
        let mut out = Vec::new();
        let mut dropped = 0;
        for frame in frames_of([input.as_slice()]) {
            match strip_injected_usage_frame(&frame) {
                StripResult::Keep => out.extend_from_slice(frame.raw()),
                StripResult::Drop => dropped += 1,
                StripResult::Rewrite(bytes) => {
                    let before = frame.data().unwrap();
                    let after = SseFrame::new(bytes.clone().into()).data().unwrap();
                    let mut expected: serde_json::Map<String, Value> =
                        serde_json::from_slice(&before).unwrap();
                    expected.remove("usage");
                    let got: serde_json::Map<String, Value> =
                        serde_json::from_slice(&after).unwrap();
                    assert_eq!(got, expected, "{file}");
                    assert!(before.len() - after.len() >= b"\"usage\":null".len());
                    out.extend_from_slice(&bytes);
                }
            }
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("\"usage\""), "{file}: {text}");
        assert!(text.contains("[DONE]"));
        let expected_drops = usize::from(file != "openai_usage_on_choices_chunk.sse");
        assert_eq!(dropped, expected_drops, "{file}");
        // Comments and [DONE] pass untouched.
        assert_eq!(
            text.matches(": keep-alive").count(),
            String::from_utf8_lossy(&input)
                .matches(": keep-alive")
                .count()
        );
    }
    assert_eq!(strip_injected_usage(b"[DONE]"), StripResult::Keep);
}
