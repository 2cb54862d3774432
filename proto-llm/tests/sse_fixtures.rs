//! Table tests of the SSE framer and usage extractor over the streams in `fixtures/`.
//!
//! Each fixture is fed whole, split in two at every byte offset, byte by byte and in
//! pseudo-random chunks; every way must give the same frames, and the frames' raw bytes must
//! add up to the input exactly (the relay forwards them verbatim).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use bytes::Bytes;
use sluice_proto_llm::sse::{SseError, SseFrame, SseFramer};
use sluice_proto_llm::usage::{Usage, UsageExtractor};

/// What a frame means, independent of how its line ends were split across reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    data: Option<Vec<u8>>,
    event: Option<Vec<u8>>,
    done: bool,
    comment: bool,
}

fn summary(frame: &SseFrame) -> Summary {
    Summary {
        data: frame.data().map(|d| d.to_vec()),
        event: frame.event().map(<[u8]>::to_vec),
        done: frame.is_done(),
        comment: frame.is_comment(),
    }
}

struct Run {
    frames: Vec<SseFrame>,
    remainder: Bytes,
}

impl Run {
    fn summaries(&self) -> Vec<Summary> {
        self.frames.iter().map(summary).collect()
    }

    fn reassembled(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.frames.iter().flat_map(|f| f.raw().to_vec()).collect();
        out.extend_from_slice(&self.remainder);
        out
    }
}

fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limit: usize) -> Result<Run, SseError> {
    let mut framer = SseFramer::new(limit);
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame()? {
            frames.push(frame);
        }
    }
    let pending = framer.pending_len();
    let remainder = framer.take_remainder();
    assert_eq!(remainder.len(), pending);
    assert_eq!(framer.pending_len(), 0);
    Ok(Run { frames, remainder })
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const NO_LIMIT: usize = 1 << 20;

struct Case {
    file: &'static str,
    frames: usize,
    comments: usize,
    /// `event:` values in order, for frames that have one.
    events: &'static [&'static str],
    /// The last usage found in the stream's data payloads.
    usage: Option<Usage>,
    /// Number of frames whose usage extraction returns `Some`.
    usage_frames: usize,
}

fn chat_usage() -> Option<Usage> {
    Some(Usage {
        prompt_tokens: 19,
        completion_tokens: 11,
        total_tokens: 30,
        ..Usage::default()
    })
}

fn cases() -> Vec<Case> {
    let chat = |file| Case {
        file,
        frames: 10,
        comments: 0,
        events: &[],
        usage: chat_usage(),
        usage_frames: 1,
    };
    vec![
        chat("openai_chat_include_usage.sse"),
        chat("openai_chat_include_usage_crlf.sse"),
        chat("openai_chat_include_usage_cr.sse"),
        chat("openai_chat_mixed_line_ends.sse"),
        Case {
            file: "openai_keepalive_tool_calls.sse",
            frames: 15,
            comments: 5,
            events: &[],
            usage: Some(Usage {
                prompt_tokens: 81,
                completion_tokens: 210,
                total_tokens: 291,
                cached_tokens: 64,
                reasoning_tokens: 192,
            }),
            usage_frames: 1,
        },
        Case {
            file: "multiline_data.sse",
            frames: 5,
            comments: 0,
            events: &["message"],
            usage: Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 2,
                total_tokens: 9,
                ..Usage::default()
            }),
            usage_frames: 1,
        },
        Case {
            file: "vllm_choices_null_usage.sse",
            frames: 9,
            comments: 0,
            events: &[],
            usage: Some(Usage {
                prompt_tokens: 42,
                completion_tokens: 5,
                total_tokens: 47,
                ..Usage::default()
            }),
            usage_frames: 8,
        },
        Case {
            file: "anthropic_messages.sse",
            frames: 14,
            comments: 0,
            events: &[
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ],
            // Anthropic usage has another shape; the OpenAI extractor must not misread it.
            usage: None,
            usage_frames: 0,
        },
    ]
}

/// Checks a whole-input run against the table and returns its summaries.
fn check_reference(case: &Case, input: &[u8]) -> Vec<Summary> {
    let reference = run([input], NO_LIMIT).unwrap();
    let file = case.file;
    assert_eq!(reference.reassembled(), input, "{file}");
    assert!(
        reference.remainder.is_empty(),
        "{file}: every fixture ends with a blank line"
    );
    assert_eq!(reference.frames.len(), case.frames, "{file}");

    let summaries = reference.summaries();
    assert_eq!(
        summaries.iter().filter(|s| s.comment).count(),
        case.comments,
        "{file}"
    );
    let events: Vec<&[u8]> = summaries
        .iter()
        .filter_map(|s| s.event.as_deref())
        .collect();
    let expected: Vec<&[u8]> = case.events.iter().map(|e| e.as_bytes()).collect();
    assert_eq!(events, expected, "{file}");

    let is_openai = case.events.iter().all(|e| *e == "message");
    if is_openai {
        // OpenAI streams end with exactly one `[DONE]`, as the last frame with data.
        let with_data: Vec<&Summary> = summaries.iter().filter(|s| s.data.is_some()).collect();
        assert!(with_data.last().unwrap().done, "{file}");
        assert_eq!(summaries.iter().filter(|s| s.done).count(), 1, "{file}");
    } else {
        assert!(summaries.iter().all(|s| !s.done), "{file}");
    }

    let mut extractor = UsageExtractor::new();
    let mut last_usage = None;
    let mut usage_frames = 0;
    for s in &summaries {
        let Some(data) = s.data.as_deref().filter(|_| !s.done) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("{file}: data is not JSON ({e}): {data:?}"));
        if let Some(event) = &s.event {
            if !is_openai {
                // Anthropic repeats the event name as `type`.
                assert_eq!(json["type"].as_str().unwrap().as_bytes(), event.as_slice());
            }
        }
        if let Some(usage) = extractor.extract(data) {
            usage_frames += 1;
            last_usage = Some(usage);
        }
    }
    assert_eq!(last_usage, case.usage, "{file}");
    assert_eq!(usage_frames, case.usage_frames, "{file}");
    summaries
}

fn check_run(file: &str, how: &str, input: &[u8], expected: &[Summary], got: &Run) {
    assert_eq!(
        got.reassembled(),
        input,
        "{file} ({how}): bytes lost or reordered"
    );
    assert!(
        got.remainder.is_empty(),
        "{file} ({how}): remainder {:?}",
        got.remainder
    );
    assert_eq!(got.summaries(), expected, "{file} ({how})");
}

#[test]
fn fixtures_whole() {
    for case in cases() {
        check_reference(&case, &fixture(case.file));
    }
}

#[test]
fn fixtures_split_at_every_offset() {
    for case in cases() {
        let input = fixture(case.file);
        let expected = check_reference(&case, &input);
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            let got = run([head, tail], NO_LIMIT).unwrap();
            check_run(
                case.file,
                &format!("split at {at}"),
                &input,
                &expected,
                &got,
            );
        }
    }
}

#[test]
fn fixtures_byte_by_byte() {
    for case in cases() {
        let input = fixture(case.file);
        let expected = check_reference(&case, &input);
        let got = run(input.chunks(1), NO_LIMIT).unwrap();
        check_run(case.file, "byte by byte", &input, &expected, &got);
    }
}

#[test]
fn fixtures_random_chunks() {
    // A fixed LCG keeps the test deterministic without a dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(state >> 33).unwrap() % bound
    };
    for case in cases() {
        let input = fixture(case.file);
        let expected = check_reference(&case, &input);
        for round in 0..200 {
            let mut chunks = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at((1 + next(64)).min(rest.len()));
                chunks.push(chunk);
                rest = tail;
            }
            let got = run(chunks, NO_LIMIT).unwrap();
            check_run(
                case.file,
                &format!("random round {round}"),
                &input,
                &expected,
                &got,
            );
        }
    }
}

#[test]
fn line_end_variants_carry_the_same_events() {
    let lf = run(
        [fixture("openai_chat_include_usage.sse").as_slice()],
        NO_LIMIT,
    )
    .unwrap();
    for variant in [
        "openai_chat_include_usage_crlf.sse",
        "openai_chat_include_usage_cr.sse",
        "openai_chat_mixed_line_ends.sse",
    ] {
        let other = run([fixture(variant).as_slice()], NO_LIMIT).unwrap();
        assert_eq!(other.summaries(), lf.summaries(), "{variant}");
    }
}

/// Rebuilds the LF chat stream with every blank-line form of the spec, starting the rotation at
/// each form in turn (so lone-`\r` ends are seen both before and after any `\r\n`).
#[test]
fn every_line_end_mix_splits_cleanly() {
    const ENDS: [&[u8]; 7] = [
        b"\n\r",
        b"\r\r",
        b"\r\n\n",
        b"\n\r\n",
        b"\r\r\n",
        b"\r\n\r\n",
        b"\n\n",
    ];
    let lf = run(
        [fixture("openai_chat_include_usage.sse").as_slice()],
        NO_LIMIT,
    )
    .unwrap();
    let expected = lf.summaries();
    for first in 0..ENDS.len() {
        let mut input = Vec::new();
        for (i, frame) in lf.frames.iter().enumerate() {
            let raw = frame.raw();
            input.extend_from_slice(&raw[..raw.len() - 2]);
            input.extend_from_slice(ENDS[(first + i) % ENDS.len()]);
        }
        let how = format!("rotation {first}");
        // A final lone `\r` cannot be told apart from half a `\r\n` on a stream that used `\r\n`.
        let final_cr = input.ends_with(b"\n\r") || input.ends_with(b"\r\r");
        let whole = run([input.as_slice()], NO_LIMIT).unwrap();
        assert_eq!(whole.reassembled(), input, "{how}");
        if final_cr {
            let mut frames = whole.summaries();
            frames.push(summary(&SseFrame::new(whole.remainder.clone())));
            assert_eq!(frames, expected, "{how}");
            continue;
        }
        check_run("generated", &how, &input, &expected, &whole);
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            let got = run([head, tail], NO_LIMIT).unwrap();
            check_run(
                "generated",
                &format!("{how}, split at {at}"),
                &input,
                &expected,
                &got,
            );
        }
        let got = run(input.chunks(1), NO_LIMIT).unwrap();
        check_run(
            "generated",
            &format!("{how}, byte by byte"),
            &input,
            &expected,
            &got,
        );
    }
}

#[test]
fn multiline_data_is_joined_exactly() {
    let got = run([fixture("multiline_data.sse").as_slice()], NO_LIMIT).unwrap();
    let data: Vec<Option<Vec<u8>>> = got.summaries().into_iter().map(|s| s.data).collect();
    assert_eq!(data[0], None, "the retry-only frame has no data");
    assert_eq!(
        data[1].as_deref(),
        Some(
            &b"{\n  \"id\": \"chatcmpl-ml1\",\n  \"object\": \"chat.completion.chunk\",\n  \"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": \"multi\"}, \"finish_reason\": null}]\n}"[..]
        )
    );
    assert!(data[2]
        .as_deref()
        .unwrap()
        .starts_with(b"{\"id\":\"chatcmpl-ml1\""));
}

#[test]
fn frame_too_large_edge_on_every_fixture() {
    for case in cases() {
        let input = fixture(case.file);
        let reference = run([input.as_slice()], NO_LIMIT).unwrap();
        let largest = reference
            .frames
            .iter()
            .map(|f| f.raw().len())
            .max()
            .unwrap();

        // Exactly the limit is fine, however the input is split.
        run([input.as_slice()], largest).unwrap();
        let got = run(input.chunks(1), largest).unwrap();
        assert_eq!(got.reassembled(), input, "{}", case.file);

        // One byte less is refused, whole or byte by byte.
        let limit = largest - 1;
        let refused = Err(SseError::FrameTooLarge { limit });
        assert_eq!(
            run([input.as_slice()], limit).map(|_| ()),
            refused,
            "{}",
            case.file
        );
        assert_eq!(
            run(input.chunks(1), limit).map(|_| ()),
            refused,
            "{}",
            case.file
        );
    }
}

#[test]
fn truncated_stream_leaves_the_partial_frame_as_remainder() {
    let input = fixture("openai_chat_include_usage.sse");
    let cut = input.len() - b"data: [DONE]\n\n".len() + 7;
    let got = run([&input[..cut]], NO_LIMIT).unwrap();
    assert_eq!(got.frames.len(), 9);
    assert_eq!(got.remainder.as_ref(), b"data: [");
    assert_eq!(got.reassembled(), &input[..cut]);
}
