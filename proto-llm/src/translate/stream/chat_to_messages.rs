//! Chat Completions stream -> Anthropic Messages stream.

use std::collections::VecDeque;

use serde::de::IgnoredAny;
use serde::Serialize;

use super::{feed_chat, impl_stream_translator, ChatSink, Common, StreamOutcome, ToolFragment};
use crate::anthropic::{MessageResponse, Usage};
use crate::sse::SseFrame;
use crate::track::Api;
use crate::translate::response::stop_reason_of_finish_reason;
use crate::translate::Dropped;
use crate::translate::{derive_id, write_sse, ResponseContext};

/// Chat upstream, Anthropic client.
///
/// The first upstream chunk opens the message (`message_start`, with the gateway's prompt-token
/// estimate as `input_tokens` unless the chunk carries usage). Each text run and each tool call
/// becomes a content block, opened with `content_block_start` (clients such as Claude Code
/// need it), filled with `text_delta` / `input_json_delta` and closed with
/// `content_block_stop`, indexed from 0 in order. The finish chunk closes the open block; the
/// upstream's `[DONE]` sends `message_delta` (mapped `stop_reason`, `stop_sequence: null`, the
/// upstream's usage) and `message_stop`.
///
/// Anthropic blocks do not interleave, Chat tool calls may: a tool call streams live while it
/// is the only one in flight; a fragment for another call (or text) arriving while the live
/// call's arguments are not yet a complete JSON value is held back and replayed, in arrival
/// order, as soon as they are (or at the finish). Text is never reordered relative to text.
pub struct ChatToMessages {
    common: Common,
    ctx_id: String,
    model: String,
    input_tokens_hint: Option<u64>,
    id: String,
    started: bool,
    next_index: u64,
    open: Option<Open>,
    pending: VecDeque<Pending>,
    tools: Vec<ToolState>,
    finish_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text { index: u64 },
    Tool { tool: usize, index: u64 },
}

#[derive(Debug)]
enum Pending {
    Text(String),
    Tool(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Held,
    Live,
    Closed,
}

#[derive(Debug)]
struct ToolState {
    chat_index: u64,
    id: String,
    name: String,
    arguments: String,
    phase: Phase,
    /// `arguments.len()` when completeness was last checked, and the answer.
    checked: Option<(usize, bool)>,
}

impl ToolState {
    /// The arguments so far are a whole JSON value: the call is most likely finished.
    fn complete(&mut self) -> bool {
        match self.checked {
            Some((len, answer)) if len == self.arguments.len() => answer,
            _ => {
                let answer = serde_json::from_str::<IgnoredAny>(&self.arguments).is_ok();
                self.checked = Some((self.arguments.len(), answer));
                answer
            }
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: &'a MessageResponse,
    },
    ContentBlockStart {
        index: u64,
        content_block: Block<'a>,
    },
    ContentBlockDelta {
        index: u64,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: MessageDelta<'a>,
        usage: DeltaUsage,
    },
    MessageStop,
    Error {
        error: ErrorDetail<'a>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Error { .. } => "error",
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_sse(out, Some(self.name()), self);
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

/// Serialises as `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct MessageDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

/// `message_delta.usage`: input fields only when the upstream reported them, so a client keeps
/// `message_start`'s values otherwise.
#[derive(Serialize)]
struct DeltaUsage {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
    output_tokens: u64,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl ChatToMessages {
    /// A translator using `ctx`'s `model` and `input_tokens_hint`.
    pub fn new(ctx: &ResponseContext) -> Self {
        Self {
            common: Common::new(Api::ChatCompletions),
            ctx_id: ctx.id.clone(),
            model: ctx.model.clone(),
            input_tokens_hint: ctx.input_tokens_hint,
            id: String::new(),
            started: false,
            next_index: 0,
            open: None,
            pending: VecDeque::new(),
            tools: Vec::new(),
            finish_reason: None,
        }
    }

    fn next_index(&mut self) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            Some(Open::Text { index }) => Event::ContentBlockStop { index }.write(out),
            Some(Open::Tool { tool, index }) => {
                if let Some(state) = self.tools.get_mut(tool) {
                    state.phase = Phase::Closed;
                }
                Event::ContentBlockStop { index }.write(out);
            }
            None => {}
        }
    }

    fn open_text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = self.next_index();
        Event::ContentBlockStart {
            index,
            content_block: Block::Text { text: "" },
        }
        .write(out);
        self.open = Some(Open::Text { index });
        Self::text_delta(index, text, out);
    }

    fn text_delta(index: u64, text: &str, out: &mut Vec<u8>) {
        if !text.is_empty() {
            Event::ContentBlockDelta {
                index,
                delta: Delta::TextDelta { text },
            }
            .write(out);
        }
    }

    fn open_tool(&mut self, tool: usize, out: &mut Vec<u8>) {
        let index = self.next_index();
        let fallback = format!("toolu_{}_{index}", self.id.trim_start_matches("msg_"));
        let Some(state) = self.tools.get_mut(tool) else {
            return;
        };
        state.phase = Phase::Live;
        let id = if state.id.is_empty() {
            fallback.as_str()
        } else {
            &state.id
        };
        Event::ContentBlockStart {
            index,
            content_block: Block::ToolUse {
                id,
                name: &state.name,
                input: Empty {},
            },
        }
        .write(out);
        if !state.arguments.is_empty() {
            Event::ContentBlockDelta {
                index,
                delta: Delta::InputJsonDelta {
                    partial_json: &state.arguments,
                },
            }
            .write(out);
        }
        self.open = Some(Open::Tool { tool, index });
    }

    /// The open block is a tool call whose arguments are not complete yet.
    fn open_tool_busy(&mut self) -> bool {
        match self.open {
            Some(Open::Tool { tool, .. }) => {
                !self.tools.get_mut(tool).is_some_and(ToolState::complete)
            }
            _ => false,
        }
    }

    /// Replays held items while the live tool call is complete (or `force`).
    fn drain(&mut self, force: bool, out: &mut Vec<u8>) {
        while !self.pending.is_empty() {
            if !force && self.open_tool_busy() {
                return;
            }
            self.close_open(out);
            match self.pending.pop_front() {
                Some(Pending::Text(text)) => self.open_text(&text, out),
                Some(Pending::Tool(tool)) => self.open_tool(tool, out),
                None => {}
            }
        }
        if force {
            self.close_open(out);
        }
    }

    fn write_error(error_type: &str, message: &str, out: &mut Vec<u8>) {
        Event::Error {
            error: ErrorDetail {
                kind: error_type,
                message,
            },
        }
        .write(out);
    }

    fn on_frame(&mut self, frame: &SseFrame, out: &mut Vec<u8>) {
        feed_chat(self, frame, out);
        if self.common.open() {
            self.drain(false, out);
        }
    }

    fn on_fail(&mut self, message: &str, out: &mut Vec<u8>) {
        Self::write_error("api_error", message, out);
    }
}

impl ChatSink for ChatToMessages {
    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = derive_id("msg_", upstream_id, &self.ctx_id);
        let usage = match self.common.tracker.usage() {
            Some(usage) => usage.to_anthropic(),
            None => Usage {
                input_tokens: self.input_tokens_hint.unwrap_or(0),
                cache_creation_input_tokens: Some(0),
                cache_read_input_tokens: Some(0),
                output_tokens: 0,
                output_tokens_details: None,
            },
        };
        let message = MessageResponse {
            id: self.id.clone(),
            kind: "message".to_owned(),
            role: "assistant".to_owned(),
            model: self.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                output_tokens: 0,
                ..usage
            },
        };
        Event::MessageStart { message: &message }.write(out);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if let Some(Pending::Text(held)) = self.pending.back_mut() {
            held.push_str(text);
            return;
        }
        if !self.pending.is_empty() || self.open_tool_busy() {
            self.pending.push_back(Pending::Text(text.to_owned()));
            return;
        }
        match self.open {
            Some(Open::Text { index }) => Self::text_delta(index, text, out),
            _ => {
                self.close_open(out);
                self.open_text(text, out);
            }
        }
    }

    fn tool(&mut self, fragment: &ToolFragment<'_>, out: &mut Vec<u8>) {
        let (chat_index, id, name) = (
            fragment.index,
            fragment.id.as_deref(),
            fragment.name.as_deref(),
        );
        let piece = fragment.arguments.as_deref().unwrap_or_default();
        let tool = match self.tools.iter().position(|t| t.chat_index == chat_index) {
            Some(tool) => tool,
            None => {
                self.tools.push(ToolState {
                    chat_index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    phase: Phase::New,
                    checked: None,
                });
                self.tools.len() - 1
            }
        };
        let Some(state) = self.tools.get_mut(tool) else {
            return;
        };
        match state.phase {
            Phase::Live => {
                state.arguments.push_str(piece);
                if let (Some(Open::Tool { index, .. }), false) = (self.open, piece.is_empty()) {
                    Event::ContentBlockDelta {
                        index,
                        delta: Delta::InputJsonDelta {
                            partial_json: piece,
                        },
                    }
                    .write(out);
                }
            }
            Phase::Held => state.arguments.push_str(piece),
            Phase::Closed => {
                if !piece.trim().is_empty() {
                    self.common
                        .dropped
                        .note("tool call fragment after its block closed");
                }
            }
            Phase::New => {
                if let Some(id) = id {
                    id.clone_into(&mut state.id);
                }
                if let Some(name) = name {
                    name.clone_into(&mut state.name);
                }
                state.arguments.push_str(piece);
                if !self.pending.is_empty() || self.open_tool_busy() {
                    if let Some(state) = self.tools.get_mut(tool) {
                        state.phase = Phase::Held;
                    }
                    self.pending.push_back(Pending::Tool(tool));
                } else {
                    self.close_open(out);
                    self.open_tool(tool, out);
                }
            }
        }
    }

    fn dropped(&mut self) -> &mut Dropped {
        &mut self.common.dropped
    }

    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>) {
        self.finish_reason = Some(reason.to_owned());
        // Nothing follows a finish reason: close the blocks now; `message_delta` waits for
        // `[DONE]`, since the usage chunk may come in between.
        self.drain(true, out);
    }

    fn upstream_error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        let kind = match kind {
            "invalid_request_error" | "rate_limit_error" | "authentication_error" => kind,
            _ => "api_error",
        };
        Self::write_error(kind, message, out);
        self.common.outcome = StreamOutcome::Failed;
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(None, out);
        self.drain(true, out);
        let stop_reason = match self.finish_reason.as_deref() {
            Some(reason) => stop_reason_of_finish_reason(reason),
            None if !self.tools.is_empty() => "tool_use",
            None => "end_turn",
        };
        let usage = match self.common.tracker.usage() {
            Some(usage) => {
                let usage = usage.to_anthropic();
                DeltaUsage {
                    input_tokens: Some(usage.input_tokens),
                    cache_creation_input_tokens: usage.cache_creation_input_tokens,
                    cache_read_input_tokens: usage.cache_read_input_tokens,
                    output_tokens: usage.output_tokens,
                }
            }
            None => DeltaUsage {
                input_tokens: None,
                cache_creation_input_tokens: None,
                cache_read_input_tokens: None,
                output_tokens: 0,
            },
        };
        Event::MessageDelta {
            delta: MessageDelta {
                stop_reason,
                stop_sequence: None,
            },
            usage,
        }
        .write(out);
        Event::MessageStop.write(out);
        self.common.outcome = StreamOutcome::Completed;
    }
}

impl_stream_translator!(ChatToMessages);
