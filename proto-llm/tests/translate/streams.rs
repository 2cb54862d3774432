//! Stream translators over the fixtures: split-invariance, well-formedness of the output, and
//! equivalence with a direct reading of the upstream stream.

use sluice_proto_llm::sse::SseFramer;
use sluice_proto_llm::track::{Api, TrackedUsage};
use sluice_proto_llm::translate::stream::{
    new_stream_translator, ChatToMessages, ChatToResponses, MessagesToChat, StreamOutcome,
    StreamTranslator,
};
use sluice_proto_llm::translate::ResponseContext;

use crate::common::{
    anthropic_meaning, anthropic_reference, chat_meaning, chat_reference, fixture,
    responses_meaning, translate, Meaning, Run,
};

const MODEL: &str = "client-model";
const CREATED: u64 = 1_700_000_000;

fn ctx(include_usage: bool) -> ResponseContext {
    let mut ctx = ResponseContext::new("req-1", CREATED, MODEL);
    ctx.include_usage = include_usage;
    ctx.input_tokens_hint = Some(17);
    ctx
}

#[derive(Clone, Copy, Debug)]
enum Pair {
    MessagesToChat { include_usage: bool },
    ChatToMessages,
    ChatToResponses,
}

impl Pair {
    fn make(self) -> Box<dyn StreamTranslator> {
        match self {
            Self::MessagesToChat { include_usage } => {
                Box::new(MessagesToChat::new(&ctx(include_usage)))
            }
            Self::ChatToMessages => Box::new(ChatToMessages::new(&ctx(false))),
            Self::ChatToResponses => Box::new(ChatToResponses::new(&ctx(false))),
        }
    }

    /// Reads and checks the translated output.
    fn meaning(self, out: &[u8]) -> Meaning {
        match self {
            Self::MessagesToChat { include_usage } => {
                chat_meaning(out, include_usage, MODEL, CREATED)
            }
            Self::ChatToMessages => anthropic_meaning(out, MODEL),
            Self::ChatToResponses => responses_meaning(out, MODEL).0,
        }
    }

    fn reference(self, input: &[u8]) -> Meaning {
        match self {
            Self::MessagesToChat { .. } => anthropic_reference(input),
            Self::ChatToMessages | Self::ChatToResponses => chat_reference(input),
        }
    }
}

const ANTHROPIC: &[&str] = &[
    "anthropic_messages.sse",
    "anthropic_thinking_tools_cache.sse",
    "anthropic_overloaded_midstream.sse",
];

const CHAT: &[&str] = &[
    "openai_chat_include_usage.sse",
    "openai_chat_include_usage_crlf.sse",
    "openai_chat_mixed_line_ends.sse",
    "openai_keepalive_tool_calls.sse",
    "openai_parallel_tools_interleaved.sse",
    "openai_usage_on_choices_chunk.sse",
    "vllm_choices_null_usage.sse",
    "multiline_data.sse",
];

fn cases() -> Vec<(Pair, &'static str)> {
    let mut cases = Vec::new();
    for file in ANTHROPIC {
        for include_usage in [false, true] {
            cases.push((Pair::MessagesToChat { include_usage }, *file));
        }
    }
    for file in CHAT {
        cases.push((Pair::ChatToMessages, *file));
        cases.push((Pair::ChatToResponses, *file));
    }
    cases
}

/// What the client must see, from what the upstream said.
fn expected(pair: Pair, reference: &Meaning) -> Meaning {
    let mut expected = reference.clone();
    match pair {
        // The usage chunk comes only when asked for, and only on a clean end.
        Pair::MessagesToChat { include_usage } => {
            expected.usage = reference
                .usage
                .filter(|_| include_usage && reference.clean_end);
        }
        // Anthropic usage has no reasoning count; without upstream usage, message_start's hint
        // stays and the output count is 0.
        Pair::ChatToMessages => {
            expected.usage = Some(match reference.usage {
                Some(usage) => TrackedUsage {
                    reasoning_tokens: 0,
                    ..usage
                },
                None => TrackedUsage {
                    input_tokens: 17,
                    ..TrackedUsage::default()
                },
            });
        }
        Pair::ChatToResponses => {}
    }
    expected
}

fn check(pair: Pair, file: &str, run: &Run, reference: &Meaning) {
    let got = pair.meaning(&run.out);
    assert_eq!(got, expected(pair, reference), "{pair:?} {file}");
    let outcome = if reference.clean_end {
        StreamOutcome::Completed
    } else {
        StreamOutcome::Failed
    };
    assert_eq!(run.outcome, outcome, "{pair:?} {file}");
    assert_eq!(
        run.usage, reference.usage,
        "{pair:?} {file}: the translator reports the upstream's usage"
    );
}

#[test]
fn every_translator_over_every_fixture() {
    for (pair, file) in cases() {
        let input = fixture(file);
        let reference = pair.reference(&input);
        let run = translate(pair.make(), [input.as_slice()]);
        check(pair, file, &run, &reference);
    }
}

/// Split offsets that matter to a translator: around every frame end (where a read can end a
/// frame early or late), the last bytes (the end marker), and a stride through the rest. Every
/// offset of every fixture would cost half a minute in a debug build; how the framer cuts at
/// *every* offset is `tests/sse_fixtures.rs`'s business, and a translator only sees frames.
fn split_points(input: &[u8]) -> Vec<usize> {
    let mut points: Vec<usize> = (0..=input.len()).step_by(53).collect();
    let mut end = 0;
    for frame in crate::common::frames_of([input]) {
        end += frame.raw().len();
        points.extend(end.saturating_sub(2)..=(end + 1).min(input.len()));
    }
    points.extend(input.len().saturating_sub(24)..=input.len());
    points.sort_unstable();
    points.dedup();
    points
}

#[test]
fn output_does_not_depend_on_how_the_upstream_was_split() {
    for (pair, file) in cases() {
        let input = fixture(file);
        let whole = translate(pair.make(), [input.as_slice()]);
        for at in split_points(&input) {
            let (head, tail) = input.split_at(at);
            let split = translate(pair.make(), [head, tail]);
            assert!(
                split.out == whole.out,
                "{pair:?} {file}: split at {at} changes the output"
            );
        }
        let bytes = translate(pair.make(), input.chunks(1));
        assert!(bytes.out == whole.out, "{pair:?} {file}: byte by byte");
    }
}

#[test]
fn dropped_kinds_are_reported() {
    let run = translate(
        Pair::MessagesToChat {
            include_usage: false,
        }
        .make(),
        [fixture("anthropic_thinking_tools_cache.sse").as_slice()],
    );
    assert_eq!(run.dropped, ["thinking"]);
    let run = translate(
        Pair::MessagesToChat {
            include_usage: false,
        }
        .make(),
        [fixture("anthropic_overloaded_midstream.sse").as_slice()],
    );
    assert_eq!(run.dropped, ["event content_block_annotation"]);
    let run = translate(
        Pair::ChatToMessages.make(),
        [fixture("openai_parallel_tools_interleaved.sse").as_slice()],
    );
    assert!(run.dropped.is_empty(), "{:?}", run.dropped);
}

#[test]
fn anthropic_pings_become_comments_and_usage_takes_the_last_delta() {
    let run = translate(
        Pair::MessagesToChat {
            include_usage: true,
        }
        .make(),
        [fixture("anthropic_thinking_tools_cache.sse").as_slice()],
    );
    let text = String::from_utf8(run.out.clone()).unwrap();
    assert_eq!(text.matches(": ping\n\n").count(), 2);
    // Cumulative message_delta usage: the last value (142), not the sum (260).
    assert_eq!(
        run.usage,
        Some(TrackedUsage {
            input_tokens: 35 + 2048 + 1200,
            cached_input_tokens: 2048,
            cache_creation_input_tokens: 1200,
            output_tokens: 142,
            reasoning_tokens: 61,
        })
    );
    let usage_chunk = text
        .split("\n\n")
        .filter(|e| e.contains("\"choices\":[]"))
        .collect::<Vec<_>>();
    assert_eq!(usage_chunk.len(), 1);
    assert!(usage_chunk[0].contains(
        r#""usage":{"prompt_tokens":3283,"completion_tokens":142,"total_tokens":3425,"prompt_tokens_details":{"cached_tokens":2048,"cache_write_tokens":1200}"#
    ));
}

#[test]
fn first_chunks_look_like_openai() {
    let run = translate(
        Pair::MessagesToChat {
            include_usage: false,
        }
        .make(),
        [fixture("anthropic_messages.sse").as_slice()],
    );
    let text = String::from_utf8(run.out).unwrap();
    let mut lines = text.split("\n\n").filter(|e| *e != ": ping");
    assert_eq!(
        lines.next().unwrap(),
        r#"data: {"id":"chatcmpl-01XFDUDYJgAACzvnptvVoYEL","object":"chat.completion.chunk","created":1700000000,"model":"client-model","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#
    );
    assert_eq!(
        lines.next().unwrap(),
        r#"data: {"id":"chatcmpl-01XFDUDYJgAACzvnptvVoYEL","object":"chat.completion.chunk","created":1700000000,"model":"client-model","choices":[{"index":0,"delta":{"content":"Okay, let me check"},"logprobs":null,"finish_reason":null}]}"#
    );
    assert!(text.contains(r#""delta":{"tool_calls":[{"index":0,"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","type":"function","function":{"name":"get_weather","arguments":""}}]}"#));
    assert!(text.ends_with("\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n"));
}

#[test]
fn chat_to_messages_output_is_byte_exact_for_the_simple_stream() {
    let run = translate(
        Pair::ChatToMessages.make(),
        [fixture("openai_chat_include_usage.sse").as_slice()],
    );
    let expected = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_BxQ3kL9vT2mNf8aYp0cRz1Wd","type":"message","role":"assistant","model":"client-model","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}"#,
        "\n\nevent: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        "\n\n"
    );
    let out = String::from_utf8(run.out).unwrap();
    assert!(out.starts_with(expected), "{out}");
    assert!(out.ends_with(concat!(
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\nevent: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":11}}"#,
        "\n\nevent: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n"
    )));
}

#[test]
fn interleaved_tool_calls_become_sequential_blocks() {
    let run = translate(
        Pair::ChatToMessages.make(),
        [fixture("openai_parallel_tools_interleaved.sse").as_slice()],
    );
    let got = anthropic_meaning(&run.out, MODEL);
    assert_eq!(got.text, "Checking both cities.");
    assert_eq!(
        got.tools,
        [
            (
                "call_Paris8d2K".to_owned(),
                "get_forecast".to_owned(),
                serde_json::json!({"city": "Paris", "days": 3})
            ),
            (
                "call_Zrh3Qm7x".to_owned(),
                "get_forecast".to_owned(),
                serde_json::json!({"city": "Zürich", "days": 2})
            ),
        ]
    );
    // The first call streamed live: its first fragment went out before the second call's.
    let out = String::from_utf8(run.out).unwrap();
    let live = out.find(r#""partial_json":"{\"city\":""#).unwrap();
    let second = out.find(r#""id":"call_Zrh3Qm7x""#).unwrap();
    assert!(live < second);

    // Responses items are keyed by output_index: both stream live, interleaved.
    let run = translate(
        Pair::ChatToResponses.make(),
        [fixture("openai_parallel_tools_interleaved.sse").as_slice()],
    );
    let (got, response) = responses_meaning(&run.out, MODEL);
    assert_eq!(got.tools.len(), 2);
    assert_eq!(response["output"][1]["call_id"], "call_Paris8d2K");
    assert_eq!(response["output"][2]["call_id"], "call_Zrh3Qm7x");
    let out = String::from_utf8(run.out).unwrap();
    let deltas: Vec<&str> = out
        .split("\n\n")
        .filter(|e| e.starts_with("event: response.function_call_arguments.delta"))
        .map(|e| {
            if e.contains("\"output_index\":1") {
                "a"
            } else {
                "b"
            }
        })
        .collect();
    assert_eq!(deltas.concat(), "ababa");
}

#[test]
fn a_text_run_after_an_unfinished_tool_call_waits_for_it() {
    let chunk = |delta: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-x\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let input = [
        chunk(r#"{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":"{\"x\""}}]}"#),
        chunk(r#"{"content":"text while "}"#),
        chunk(r#"{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}}]}"#),
        chunk(r#"{"content":"a call is open"}"#),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}"#),
        chunk(r#"{"content":" - then live"}"#),
        "data: {\"id\":\"chatcmpl-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let run = translate(Pair::ChatToMessages.make(), [input.as_bytes()]);
    let got = anthropic_meaning(&run.out, MODEL);
    assert_eq!(got.text, "text while a call is open - then live");
    assert_eq!(got.tools.len(), 2);
    assert_eq!(got.tools[0].2, serde_json::json!({"x": 1}));
    let out = String::from_utf8(run.out).unwrap();
    let starts: Vec<&str> = out
        .split("\n\n")
        .filter(|e| e.starts_with("event: content_block_start"))
        .map(|e| {
            if e.contains("call_a") {
                "a"
            } else if e.contains("call_b") {
                "b"
            } else {
                "t"
            }
        })
        .collect();
    // Arrival order: tool a (live), the held text, tool b, the text that came after b.
    assert_eq!(starts.concat(), "atbt");
}

#[test]
fn upstream_errors_never_look_like_a_clean_end() {
    // Anthropic `event: error` mid-stream -> chat error data, no [DONE].
    for include_usage in [false, true] {
        let run = translate(
            Pair::MessagesToChat { include_usage }.make(),
            [fixture("anthropic_overloaded_midstream.sse").as_slice()],
        );
        let out = String::from_utf8(run.out).unwrap();
        assert!(out.ends_with(
            "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded_error\"}}\n\n"
        ));
        assert!(!out.contains("[DONE]"));
        assert_eq!(run.outcome, StreamOutcome::Failed);
    }
    // A chat error inside a 200 stream -> Anthropic error event / Responses failure.
    let input = concat!(
        "data: {\"id\":\"chatcmpl-e\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n",
        "data: {\"error\":{\"message\":\"upstream exploded\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
        "data: [DONE]\n\n"
    );
    let run = translate(Pair::ChatToMessages.make(), [input.as_bytes()]);
    let got = anthropic_meaning(&run.out, MODEL);
    assert_eq!(got.error.as_deref(), Some("upstream exploded"));
    assert!(!got.clean_end);
    let run = translate(Pair::ChatToResponses.make(), [input.as_bytes()]);
    let (got, response) = responses_meaning(&run.out, MODEL);
    assert_eq!(got.error.as_deref(), Some("upstream exploded"));
    assert_eq!(response["error"]["code"], "server_error");
    assert_eq!(response["output"][0]["content"][0]["text"], "par");
}

#[test]
fn a_cut_upstream_ends_with_an_error() {
    for (pair, file) in cases() {
        let input = fixture(file);
        // Drop the last event (the end marker, or the error).
        let frames = crate::common::frames_of([input.as_slice()]);
        let kept: Vec<u8> = frames[..frames.len() - 1]
            .iter()
            .flat_map(|f| f.raw().to_vec())
            .collect();
        let run = translate(pair.make(), [kept.as_slice()]);
        let got = pair.meaning(&run.out);
        assert!(!got.clean_end, "{pair:?} {file}");
        assert!(got.error.is_some(), "{pair:?} {file}");
        assert_eq!(run.outcome, StreamOutcome::Failed);

        // fail() in the middle does the same, and nothing follows it.
        let mut translator = pair.make();
        let mut out = Vec::new();
        for frame in crate::common::frames_of([&input[..input.len() / 2]]) {
            translator.frame(&frame, &mut out);
        }
        translator.fail("read timeout", &mut out);
        let len = out.len();
        for frame in crate::common::frames_of([input.as_slice()]) {
            translator.frame(&frame, &mut out);
        }
        translator.finish(&mut out);
        translator.fail("again", &mut out);
        assert_eq!(out.len(), len, "{pair:?} {file}: output after the end");
        let got = pair.meaning(&out);
        assert_eq!(
            got.error.as_deref(),
            Some("read timeout"),
            "{pair:?} {file}"
        );
    }
}

#[test]
fn fail_before_anything_still_makes_a_valid_client_stream() {
    for pair in [
        Pair::MessagesToChat {
            include_usage: true,
        },
        Pair::ChatToMessages,
        Pair::ChatToResponses,
    ] {
        let mut out = Vec::new();
        let mut translator = pair.make();
        translator.fail("connection reset", &mut out);
        let got = pair.meaning(&out);
        assert_eq!(got.error.as_deref(), Some("connection reset"), "{pair:?}");
    }
}

#[test]
fn constructor_covers_the_translated_pairs() {
    let ctx = ResponseContext::new("r", 1, "m");
    for (upstream, client, some) in [
        (Api::Messages, Api::ChatCompletions, true),
        (Api::ChatCompletions, Api::Messages, true),
        (Api::ChatCompletions, Api::Responses, true),
        (Api::ChatCompletions, Api::ChatCompletions, false),
        (Api::Responses, Api::ChatCompletions, false),
        (Api::Messages, Api::Responses, true),
        (Api::Responses, Api::Messages, false),
    ] {
        assert_eq!(
            new_stream_translator(upstream, client, &ctx).is_some(),
            some,
            "{upstream} -> {client}"
        );
    }
}

/// Anthropic upstream, Responses client: the chain through Chat gives a well-formed Responses
/// stream with the text and the upstream's usage.
#[test]
fn chain_turns_an_anthropic_stream_into_a_responses_stream() {
    let ctx = ResponseContext::new("r", 1, "m");
    let mut t = new_stream_translator(Api::Messages, Api::Responses, &ctx).unwrap();
    let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let mut framer = SseFramer::new(1 << 20);
    framer.push(stream);
    let mut out = Vec::new();
    while let Some(f) = framer.next_frame().unwrap() {
        t.frame(&f, &mut out);
    }
    t.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(text.contains("\"delta\":\"Hi there\""), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: response.completed\n"), "{last}");
    assert!(
        last.contains("\"output_tokens\":2") && last.contains("\"input_tokens\":7"),
        "{last}"
    );
    assert_eq!(t.usage().unwrap().output_tokens, 2);
    assert_eq!(t.outcome(), StreamOutcome::Completed);
}
