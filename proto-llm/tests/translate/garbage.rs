//! Nothing a peer sends can panic a translator or a tracker, and whatever goes in, the client
//! gets a well-formed stream of its API (the readers in `common` assert the rules).

use sluice_proto_llm::track::{strip_injected_usage, Api, UsageTracker};
use sluice_proto_llm::translate::stream::{
    ChatToMessages, ChatToResponses, MessagesToChat, StreamOutcome, StreamTranslator,
};
use sluice_proto_llm::translate::{
    chat_response_to_messages, chat_response_to_responses, chat_to_messages, error_body,
    messages_response_to_chat, messages_to_chat, responses_to_chat, ResponseContext,
};

use crate::common::{
    anthropic_meaning, chat_meaning, events, fixture, frames_of, responses_meaning, translate,
};

/// A fixed LCG: deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap() % bound.max(1)
    }
}

/// A damaged copy of `input`: bytes flipped, cut, duplicated or shuffled frames.
fn mutate(input: &[u8], rng: &mut Lcg) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.next(5) {
        0 => {
            for _ in 0..1 + rng.next(8) {
                let at = rng.next(out.len());
                let alphabet = b"{}[]\":,\\\n x0\xff";
                out[at] = alphabet[rng.next(alphabet.len())];
            }
        }
        1 => out.truncate(rng.next(out.len())),
        2 => {
            let at = rng.next(out.len());
            let len = rng.next(40);
            let piece: Vec<u8> = out[at..(at + len).min(out.len())].to_vec();
            let to = rng.next(out.len());
            out.splice(to..to, piece);
        }
        3 => {
            let mut frames: Vec<Vec<u8>> = frames_of([input])
                .iter()
                .map(|f| f.raw().to_vec())
                .collect();
            for _ in 0..frames.len() {
                let (a, b) = (rng.next(frames.len()), rng.next(frames.len()));
                frames.swap(a, b);
            }
            out = frames.concat();
        }
        _ => {
            let mut frames: Vec<Vec<u8>> = frames_of([input])
                .iter()
                .map(|f| f.raw().to_vec())
                .collect();
            let at = rng.next(frames.len());
            let copy = frames[rng.next(frames.len())].clone();
            frames.insert(at, copy);
            out = frames.concat();
        }
    }
    out
}

fn ctx() -> ResponseContext {
    let mut ctx = ResponseContext::new("req-g", 1, "m");
    ctx.include_usage = true;
    ctx
}

#[test]
fn damaged_streams_give_well_formed_client_streams() {
    let mut rng = Lcg(0x5eed);
    let anthropic = [
        "anthropic_messages.sse",
        "anthropic_thinking_tools_cache.sse",
        "anthropic_overloaded_midstream.sse",
    ];
    let chat = [
        "openai_parallel_tools_interleaved.sse",
        "openai_keepalive_tool_calls.sse",
        "vllm_choices_null_usage.sse",
        "openai_usage_on_choices_chunk.sse",
    ];
    for round in 0..40 {
        for file in anthropic {
            let input = mutate(&fixture(file), &mut rng);
            let run = translate(Box::new(MessagesToChat::new(&ctx())), [input.as_slice()]);
            assert_ne!(run.outcome, StreamOutcome::Streaming);
            chat_meaning(&run.out, true, "m", 1);
            track_all(&input);
            let _ = round;
        }
        for file in chat {
            let input = mutate(&fixture(file), &mut rng);
            let run = translate(Box::new(ChatToMessages::new(&ctx())), [input.as_slice()]);
            assert_ne!(run.outcome, StreamOutcome::Streaming);
            anthropic_meaning(&run.out, "m");
            let run = translate(Box::new(ChatToResponses::new(&ctx())), [input.as_slice()]);
            assert_ne!(run.outcome, StreamOutcome::Streaming);
            responses_meaning(&run.out, "m");
            track_all(&input);
            for frame in frames_of([input.as_slice()]) {
                if let Some(data) = frame.data() {
                    let _ = strip_injected_usage(&data);
                }
            }
        }
    }
}

fn track_all(input: &[u8]) {
    for api in [Api::ChatCompletions, Api::Messages, Api::Responses] {
        let mut tracker = UsageTracker::new(api).with_text_capture(64);
        for frame in frames_of([input]) {
            tracker.observe(&frame);
        }
        tracker.observe_body(input);
        assert!(tracker.text().len() <= 64);
    }
}

#[test]
fn random_bytes_and_frames() {
    let mut rng = Lcg(7);
    for _ in 0..200 {
        let len = rng.next(300);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let alphabet = b"event: data:{}[]\",\n\r:typemessage_startchoices[DONE]error";
                alphabet[rng.next(alphabet.len())]
            })
            .collect();
        let translators: [Box<dyn StreamTranslator>; 3] = [
            Box::new(MessagesToChat::new(&ctx())),
            Box::new(ChatToMessages::new(&ctx())),
            Box::new(ChatToResponses::new(&ctx())),
        ];
        for translator in translators {
            let run = translate(translator, [bytes.as_slice(), b"\n\n".as_slice()]);
            events(&run.out);
        }
        track_all(&bytes);
        let _ = strip_injected_usage(&bytes);
    }
}

#[test]
fn damaged_bodies_are_errors_not_panics() {
    let mut rng = Lcg(42);
    let requests: [&[u8]; 3] = [
        br#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto","stop":["x"]}"#,
        br#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}]}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}],"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"f"}}"#,
        br#"{"model":"m","instructions":"i","input":[{"role":"user","content":[{"type":"input_text","text":"a"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"o"}],"tools":[{"type":"function","name":"f"}],"text":{"format":{"type":"json_schema","name":"n","schema":{}}}}"#,
    ];
    let responses: [&[u8]; 2] = [
        br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"#,
        br#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"a","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
    ];
    for _ in 0..300 {
        for (i, request) in requests.iter().enumerate() {
            let body = mutate(request, &mut rng);
            let result = match i {
                0 => chat_to_messages(&body, "u", 10),
                1 => messages_to_chat(&body, "u"),
                _ => responses_to_chat(&body, "u"),
            };
            if let Ok(translated) = result {
                serde_json::from_slice::<serde_json::Value>(&translated.body).unwrap();
            }
        }
        let body = mutate(responses[0], &mut rng);
        let _ = messages_response_to_chat(&body, &ctx());
        let body = mutate(responses[1], &mut rng);
        let _ = chat_response_to_messages(&body, &ctx());
        let _ = chat_response_to_responses(&body, &ctx());
        for (upstream, client) in [
            (Api::Messages, Api::ChatCompletions),
            (Api::ChatCompletions, Api::Messages),
        ] {
            let out = error_body(upstream, client, 500, &body);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }
}
