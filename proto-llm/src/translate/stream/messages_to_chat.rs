//! Anthropic Messages stream -> Chat Completions stream.

use serde::Serialize;

use super::{impl_stream_translator, Common, StreamOutcome};
use crate::anthropic::StreamEvent;
use crate::error::openai_error_body;
use crate::sse::SseFrame;
use crate::track::Api;
use crate::translate::chat::ChatUsage;
use crate::translate::response::finish_reason_of_stop_reason;
use crate::translate::{derive_id, write_sse, ResponseContext};

/// Anthropic upstream, Chat client.
///
/// `message_start` -> the first chunk (`role: assistant`, `content: ""`); `text_delta` ->
/// `delta.content`; a `tool_use` block -> a `tool_calls` entry (`index` counts tool blocks from
/// 0) whose `input_json_delta` fragments become `arguments` fragments; `message_delta` -> the
/// finish chunk; `message_stop` -> the usage chunk (when the client asked for
/// `include_usage`) and `[DONE]`. `ping` becomes an SSE comment (keeps idle proxies from closing
/// the connection while the model thinks); thinking, citations and unknown events are dropped.
/// Every chunk carries `id`, `object`, `created`, `model`, and `"usage": null` only when the
/// client asked for usage, as OpenAI does.
pub struct MessagesToChat {
    common: Common,
    id: String,
    fallback_id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    /// Anthropic block index -> Chat tool call index.
    tool_blocks: Vec<(u64, u32)>,
    finish_sent: bool,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    /// Absent without `include_usage`; `null` on content chunks, set on the usage chunk with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<ChatUsage>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl MessagesToChat {
    /// A translator writing chunks with `ctx`'s `created`, `model` and `include_usage`.
    pub fn new(ctx: &ResponseContext) -> Self {
        Self {
            common: Common::new(Api::Messages),
            id: String::new(),
            fallback_id: ctx.id.clone(),
            created: ctx.created,
            model: ctx.model.clone(),
            include_usage: ctx.include_usage,
            started: false,
            tool_blocks: Vec::new(),
            finish_sent: false,
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        let choices = [Choice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        };
        write_sse(out, None, &chunk);
    }

    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = derive_id("chatcmpl-", upstream_id, &self.fallback_id);
        let delta = Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        };
        self.chunk(out, delta, None);
    }

    fn send_finish(&mut self, reason: &str, out: &mut Vec<u8>) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.chunk(out, Delta::default(), Some(reason));
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(None, out);
        let reason = if self.tool_blocks.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        self.send_finish(reason, out);
        if self.include_usage {
            let usage = self.common.tracker.usage().unwrap_or_default();
            let chunk = Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(Some(usage.to_chat())),
            };
            write_sse(out, None, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.common.outcome = StreamOutcome::Completed;
    }

    fn write_error(error_type: &str, code: Option<&str>, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&openai_error_body(message, error_type, None, code));
        out.extend_from_slice(b"\n\n");
    }

    fn on_frame(&mut self, frame: &SseFrame, out: &mut Vec<u8>) {
        let Some(data) = frame.data() else {
            return;
        };
        match serde_json::from_slice::<StreamEvent<'_>>(&data) {
            Ok(event) => self.event(event, out),
            Err(_) => self.common.dropped.note("unparseable event"),
        }
    }

    fn on_fail(&mut self, message: &str, out: &mut Vec<u8>) {
        Self::write_error(crate::error::SERVER, None, message, out);
    }

    fn event(&mut self, event: StreamEvent<'_>, out: &mut Vec<u8>) {
        match event.kind.as_ref() {
            "message_start" => {
                let id = event.message.as_ref().and_then(|m| m.id.as_deref());
                self.start(id, out);
            }
            "content_block_start" => {
                self.start(None, out);
                let Some(block) = event.content_block else {
                    return;
                };
                match block.kind.as_ref() {
                    "text" => {
                        if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                            let delta = Delta {
                                content: Some(text),
                                ..Delta::default()
                            };
                            self.chunk(out, delta, None);
                        }
                    }
                    "tool_use" => {
                        let tool_index = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                        self.tool_blocks
                            .push((event.index.unwrap_or_default(), tool_index));
                        let delta = Delta {
                            tool_calls: Some([ToolCall {
                                index: tool_index,
                                id: Some(block.id.as_deref().unwrap_or_default()),
                                kind: Some("function"),
                                function: Function {
                                    name: Some(block.name.as_deref().unwrap_or_default()),
                                    arguments: "",
                                },
                            }]),
                            ..Delta::default()
                        };
                        self.chunk(out, delta, None);
                    }
                    "thinking" | "redacted_thinking" => self.common.dropped.note("thinking"),
                    other => self.common.dropped.note(&format!("{other} block")),
                }
            }
            "content_block_delta" => {
                let Some(delta) = event.delta else {
                    return;
                };
                match delta.kind.as_deref().unwrap_or_default() {
                    "text_delta" => {
                        if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                            self.start(None, out);
                            let delta = Delta {
                                content: Some(text),
                                ..Delta::default()
                            };
                            self.chunk(out, delta, None);
                        }
                    }
                    "input_json_delta" => {
                        let block = event.index.unwrap_or_default();
                        let tool = self.tool_blocks.iter().find(|(b, _)| *b == block);
                        let fragment = delta.partial_json.as_deref().unwrap_or_default();
                        match tool {
                            Some(&(_, index)) if !fragment.is_empty() => {
                                let delta = Delta {
                                    tool_calls: Some([ToolCall {
                                        index,
                                        id: None,
                                        kind: None,
                                        function: Function {
                                            name: None,
                                            arguments: fragment,
                                        },
                                    }]),
                                    ..Delta::default()
                                };
                                self.chunk(out, delta, None);
                            }
                            Some(_) => {}
                            // Input of a server tool block (dropped with its block).
                            None => self
                                .common
                                .dropped
                                .note("input_json_delta of a dropped block"),
                        }
                    }
                    "thinking_delta" | "signature_delta" => self.common.dropped.note("thinking"),
                    "citations_delta" => self.common.dropped.note("citations"),
                    other => self.common.dropped.note(other),
                }
            }
            "content_block_stop" => {}
            "message_delta" => {
                if let Some(reason) = event.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    self.start(None, out);
                    self.send_finish(finish_reason_of_stop_reason(reason), out);
                }
            }
            "message_stop" => self.complete(out),
            "ping" => out.extend_from_slice(b": ping\n\n"),
            "error" => {
                let error = event.error.unwrap_or_default();
                let message = if error.message.is_empty() {
                    "The upstream reported an error."
                } else {
                    &error.message
                };
                let code = (!error.kind.is_empty()).then_some(error.kind.as_str());
                let openai_type = match error.kind.as_str() {
                    "invalid_request_error" => "invalid_request_error",
                    "rate_limit_error" => "rate_limit_error",
                    _ => crate::error::SERVER,
                };
                Self::write_error(openai_type, code, message, out);
                self.common.outcome = StreamOutcome::Failed;
            }
            other => self.common.dropped.note(&format!("event {other}")),
        }
    }
}

impl_stream_translator!(MessagesToChat);
