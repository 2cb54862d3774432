//! Synthetic LLM responses: the generator behind `sluice-loadgen mock` and the gateway's
//! built-in `mock` provider.
//!
//! The output is each API's wire format byte for byte (field names and order as the real
//! servers send them, compact JSON), so that clients, the official SDKs and the gateway's own
//! relay see exactly what a real upstream would send:
//! - OpenAI Chat Completions and (legacy) Completions: SSE frames `data: {json}\n\n` ending with
//!   `data: [DONE]\n\n`; Embeddings (never streamed);
//! - Anthropic Messages: `event: NAME\ndata: {json}\n\n` frames from `message_start` to
//!   `message_stop`, one `ping` after the first `content_block_start`;
//! - OpenAI Responses: `event: NAME\ndata: {json}\n\n` frames with consecutive
//!   `sequence_number`s from `response.created` to `response.completed` (or
//!   `response.incomplete` when `max_output_tokens` cut the reply).
//!
//! # What the reply says
//!
//! The reply echoes the last user message (chat and Messages: the text parts of its content;
//! Responses: the `input` string or the last user message item; completions: the prompt, the
//! last string of a prompt array), split on whitespace. One word is one token. Each token's
//! delta is the word followed by a space, except the last, so the deltas concatenate to the
//! words joined by single spaces. No words (or a token-array prompt) means a fixed filler
//! sentence is used instead.
//!
//! A fixed reply length (`tokens`) cycles through the words. `max_completion_tokens` (or else
//! `max_tokens`; Messages: `max_tokens`; Responses: `max_output_tokens`) caps the reply; a
//! capped reply ends with `finish_reason: "length"` (`stop_reason: "max_tokens"`, Responses
//! status `incomplete`), any other with `"stop"` (`"end_turn"`, `completed`). Every one of the
//! `n` choices gets the same text. Messages `stop_sequences`: the reply ends before the first
//! word that contains one (`stop_reason: "stop_sequence"`).
//!
//! # Tool calls
//!
//! When the request offers function tools, the reply is a call of one of them instead of text
//! if `tool_choice` forces it (chat / Responses `required` or a named function, Anthropic
//! `{"type":"any"}` / `{"type":"tool","name":..}`) or if the last user message says `call`
//! followed by a tool's name ("please call get_weather for Paris"). The arguments are a JSON
//! object generated from the tool's schema (see `tools.rs`), streamed in fragments of about
//! 8 bytes, one token each; ids (`call_…`, `toolu_…`, `fc_…`) derive from the response id. A
//! conversation that ends with tool results (chat `role: tool`, Anthropic `tool_result` blocks,
//! Responses `function_call_output` items) is answered in text that echoes the results, unless
//! `tool_choice` forces another call. `tokens` applies to text replies only.
//!
//! # Token counts
//!
//! `prompt_tokens` is a deterministic estimate, not a tokenizer:
//! - chat: the sum over messages of (4 + words in the message's text parts), plus 3;
//! - Messages: the same over `system` (when present) and the messages, counting text blocks and
//!   tool results;
//! - Responses: the same over `instructions` (when present) and the input items (an `input`
//!   string is one message), counting message text and function call outputs;
//! - completions: the words in the prompt strings, or the number of token ids of a token-array
//!   prompt;
//! - embeddings: for each input, its words (string) or token ids (token array), at least 1.
//!
//! `completion_tokens` is the reply length times the number of choices.
//!
//! **Architecture invariant:** no IO, no clock, no randomness: ids and timestamps come from the
//! caller, embeddings are a hash of their input, pacing jitter is a number the caller draws,
//! and the same request always produces the same bytes.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::request::RequestError;

mod embeddings;
mod hash;
mod json;
mod messages;
mod openai;
mod pacing;
mod responses;
mod tools;
mod words;

#[cfg(test)]
mod tests;

pub use pacing::Pacing;
pub use responses::MIN_MAX_OUTPUT_TOKENS;

use tools::{Tool, ToolCall, ToolChoice};
use words::Words;

/// The API endpoint a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions` (legacy text completions)
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/messages` (Anthropic Messages)
    Messages,
    /// `POST /v1/responses` (OpenAI Responses)
    Responses,
}

/// Why a request was refused. Every variant is an HTTP 400 `invalid_request_error` (in the
/// endpoint's error shape: OpenAI, or Anthropic for [`Endpoint::Messages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthError {
    /// The body is not a request this endpoint accepts.
    BadRequest {
        /// Human-readable explanation, in the real API's wording where there is one.
        message: String,
        /// The offending field, for the OpenAI error body's `param`.
        param: Option<&'static str>,
    },
}

impl SynthError {
    fn bad(message: impl Into<String>, param: &'static str) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: Some(param),
        }
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            Self::BadRequest { message, .. } => message,
        }
    }

    /// The error's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::BadRequest { param, .. } => *param,
        }
    }
}

impl fmt::Display for SynthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for SynthError {}

impl From<RequestError> for SynthError {
    fn from(e: RequestError) -> Self {
        Self::BadRequest {
            message: e.to_string(),
            param: e.param(),
        }
    }
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The reply is complete.
    Stop,
    /// The reply was cut at `max_tokens` / `max_completion_tokens` / `max_output_tokens`.
    Length,
    /// The reply is a tool call.
    ToolCalls,
    /// The reply ended before one of the request's `stop_sequences` (Messages).
    StopSequence,
}

impl FinishReason {
    /// The OpenAI `finish_reason`: `"stop"`, `"length"` or `"tool_calls"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop | Self::StopSequence => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
        }
    }

    /// The Anthropic `stop_reason`: `"end_turn"`, `"max_tokens"`, `"tool_use"` or
    /// `"stop_sequence"`.
    pub fn anthropic_str(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::Length => "max_tokens",
            Self::ToolCalls => "tool_use",
            Self::StopSequence => "stop_sequence",
        }
    }
}

/// How embedding vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    Float,
    /// Standard base64 of the little-endian `f32` bytes (what the official Python SDK asks for).
    Base64,
}

/// Most choices (`n`) a request may ask for.
pub const MAX_CHOICES: u64 = 8;
/// Embedding size when the request names none.
pub const DEFAULT_DIMENSIONS: u32 = 256;
/// Largest `dimensions` accepted.
pub const MAX_DIMENSIONS: u64 = 4096;
/// Most inputs one embeddings request may carry (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// A validated request, ready to be answered.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    /// The `model` as sent; callers may overwrite it with the name to echo.
    pub model: String,
    /// `stream: true` (always `false` for embeddings, which never stream).
    pub stream: bool,
    /// `stream_options.include_usage: true` (chat and completions): `"usage":null` on every
    /// chunk and a usage chunk before `[DONE]`.
    pub include_usage: bool,
    /// Never write usage, whatever the request asked: models servers that do not report it
    /// (Responses: `"usage":null`; Messages: no `usage` objects at all).
    pub omit_usage: bool,
    endpoint: Endpoint,
    prompt_tokens: u64,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Text(Reply),
    Embeddings(embeddings::EmbeddingsReply),
}

/// A chat-like reply: text or a tool call, the same for every choice.
#[derive(Debug, Clone)]
struct Reply {
    content: Content,
    choices: u32,
    /// Reply length per choice in tokens, after the cap.
    tokens: u64,
    finish: FinishReason,
    /// The stop sequence that ended the reply (Messages).
    stop_sequence: Option<String>,
    /// The request fields a Responses reply echoes.
    echo: Option<Arc<responses::Echo>>,
}

#[derive(Debug, Clone)]
enum Content {
    Words(Arc<Words>),
    Tool(Arc<ToolCall>),
}

impl Reply {
    /// Token `t`'s text and whether a space follows it.
    fn token(&self, t: u64) -> (&str, bool) {
        match &self.content {
            Content::Words(words) => (words.word(t), t + 1 < self.tokens),
            Content::Tool(call) => (call.fragment(t), false),
        }
    }

    /// The tool call, if the reply is one.
    fn tool(&self) -> Option<&ToolCall> {
        match &self.content {
            Content::Tool(call) => Some(call),
            Content::Words(_) => None,
        }
    }

    /// The text (the token deltas concatenated); for a tool call, its arguments as far as the
    /// reply got.
    fn text(&self) -> String {
        if let Content::Tool(call) = &self.content {
            return call.arguments_upto(self.tokens).to_owned();
        }
        let mut text = String::new();
        for t in 0..self.tokens {
            let (word, space) = self.token(t);
            text.push_str(word);
            if space {
                text.push(' ');
            }
        }
        text
    }
}

/// What a chat-like parser learned about the conversation.
struct Conversation {
    /// The text of the last user message.
    last_user: String,
    /// The text of the tool results the conversation ends with, if it does.
    tool_results: Option<String>,
    prompt_tokens: u64,
}

/// Everything that decides a chat-like reply.
struct ReplySpec<'a> {
    conversation: Conversation,
    tools: &'a [Tool],
    choice: &'a ToolChoice,
    /// Fixed length of text replies.
    tokens: Option<u64>,
    max_tokens: Option<u64>,
    stop_sequences: &'a [String],
    choices: u32,
}

impl ReplySpec<'_> {
    fn build(self) -> Reply {
        let Conversation {
            last_user,
            tool_results,
            ..
        } = self.conversation;
        let cap = |natural: u64, finish: FinishReason| match self.max_tokens {
            Some(max) if natural > max => (max, FinishReason::Length),
            _ => (natural, finish),
        };
        let reply = |content, (tokens, finish), stop_sequence| Reply {
            content,
            choices: self.choices,
            tokens,
            finish,
            stop_sequence,
            echo: None,
        };
        if let Some(tool) = tools::pick(self.tools, self.choice, &last_user, tool_results.is_some())
        {
            let echo = Words::from_text(last_user)
                .echo()
                .unwrap_or_else(|| "mock".to_owned());
            let call = ToolCall::new(tool, &echo);
            let natural = call.fragments();
            return reply(
                Content::Tool(Arc::new(call)),
                cap(natural, FinishReason::ToolCalls),
                None,
            );
        }
        let words = Words::from_text(tool_results.unwrap_or(last_user));
        let natural = self.tokens.unwrap_or(words.len() as u64);
        // Words repeat with the word count as period: one round finds any stop sequence.
        let stop = (0..natural.min(words.len() as u64)).find_map(|t| {
            let word = words.word(t);
            self.stop_sequences
                .iter()
                .find(|s| !s.is_empty() && word.contains(s.as_str()))
                .map(|s| (t, s.clone()))
        });
        match stop {
            Some((t, seq)) => reply(
                Content::Words(Arc::new(words)),
                cap(t, FinishReason::StopSequence),
                Some(seq),
            ),
            None => reply(
                Content::Words(Arc::new(words)),
                cap(natural, FinishReason::Stop),
                None,
            ),
        }
    }
}

impl SynthRequest {
    /// Parses and validates a request body for `endpoint`.
    ///
    /// `tokens`: fixed reply length in tokens (`None` = echo the last user message once); tool
    /// call replies ignore it.
    ///
    /// Refused (HTTP 400, with `param`), every endpoint: a body that is not a JSON object; a
    /// missing or non-string `model`; `stream`, `max_tokens` of the wrong type. Chat and
    /// completions: `stream_options`, `max_completion_tokens` of the wrong type;
    /// `stream_options` without `stream: true`; `n` outside `1..=8`; chat `max_tokens: 0`;
    /// chat `messages` missing, empty or holding a message without a valid `role`; malformed
    /// `tools` or `tool_choice`, or a `tool_choice` naming a tool that is not offered;
    /// completions without `prompt`; embeddings with a missing or empty `input`, `dimensions`
    /// outside `1..=4096` or an `encoding_format` other than `float` / `base64`. Messages:
    /// `max_tokens` missing or below 1, `messages` missing, empty or with a role other than
    /// `user` / `assistant`, malformed `system`, `stop_sequences`, `tools`, `tool_choice`.
    /// Responses: `input` missing or malformed, `max_output_tokens` below 16, malformed
    /// `instructions`, `tools`, `tool_choice`.
    pub fn parse(
        endpoint: Endpoint,
        body: &[u8],
        tokens: Option<u64>,
    ) -> Result<SynthRequest, SynthError> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
                openai::parse(endpoint, body, tokens)
            }
            Endpoint::Messages => messages::parse(body, tokens),
            Endpoint::Responses => responses::parse(body, tokens),
        }
    }

    /// The endpoint the request was parsed for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The prompt token estimate (see the module documentation for the formula).
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    /// Completion tokens over all choices (0 for embeddings).
    pub fn completion_tokens(&self) -> u64 {
        match &self.kind {
            Kind::Text(t) => t.tokens.saturating_mul(u64::from(t.choices)),
            Kind::Embeddings(_) => 0,
        }
    }

    /// Number of choices (`n`); 0 for embeddings.
    pub fn choices(&self) -> u32 {
        match &self.kind {
            Kind::Text(t) => t.choices,
            Kind::Embeddings(_) => 0,
        }
    }

    /// Reply length of each choice in tokens (a tool call's argument fragments); 0 for
    /// embeddings.
    pub fn reply_tokens(&self) -> u64 {
        match &self.kind {
            Kind::Text(t) => t.tokens,
            Kind::Embeddings(_) => 0,
        }
    }

    /// Why the reply ends; `None` for embeddings.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        match &self.kind {
            Kind::Text(t) => Some(t.finish),
            Kind::Embeddings(_) => None,
        }
    }

    /// The reply text of each choice (the token deltas concatenated; for a tool call, its
    /// arguments); empty for embeddings.
    pub fn reply_text(&self) -> String {
        match &self.kind {
            Kind::Text(t) => t.text(),
            Kind::Embeddings(_) => String::new(),
        }
    }

    /// The tool call the reply makes, as (tool name, arguments JSON as far as the reply got).
    pub fn tool_call(&self) -> Option<(&str, &str)> {
        match &self.kind {
            Kind::Text(t) => t
                .tool()
                .map(|call| (call.name.as_str(), call.arguments_upto(t.tokens))),
            Kind::Embeddings(_) => None,
        }
    }

    /// The stop sequence that ended the reply (Messages `stop_sequences`).
    pub fn stop_sequence(&self) -> Option<&str> {
        match &self.kind {
            Kind::Text(t) => t.stop_sequence.as_deref(),
            Kind::Embeddings(_) => None,
        }
    }

    /// Number of embedding inputs (0 for the other endpoints).
    pub fn embedding_inputs(&self) -> usize {
        match &self.kind {
            Kind::Embeddings(e) => e.inputs(),
            Kind::Text(_) => 0,
        }
    }

    fn usage_written(&self) -> bool {
        !self.omit_usage
    }

    fn reply(&self) -> Option<&Reply> {
        match &self.kind {
            Kind::Text(t) => Some(t),
            Kind::Embeddings(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request parsing helpers shared by the endpoints

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn missing(param: &'static str) -> SynthError {
    SynthError::bad(format!("Missing required parameter: '{param}'."), param)
}

fn invalid_type(param: &'static str, what: &str, expected: &str, got: &Value) -> SynthError {
    SynthError::bad(
        format!(
            "Invalid type for '{what}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        param,
    )
}

/// A JSON parse error in the OpenAI wording.
fn unparsable(e: &serde_json::Error) -> SynthError {
    SynthError::BadRequest {
        message: format!("We could not parse the JSON body of your request: {e}."),
        param: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Whole bodies

/// The whole non-streaming JSON body. `created` is the Unix time to report (Responses:
/// `created_at` and `completed_at`).
pub fn response_body(req: &SynthRequest, id: &str, created: u64) -> Vec<u8> {
    match (&req.kind, req.endpoint) {
        (Kind::Embeddings(reply), _) => embeddings::body(req, reply),
        (Kind::Text(reply), Endpoint::Messages) => messages::body(req, reply, id),
        (Kind::Text(reply), Endpoint::Responses) => responses::body(req, reply, id, created),
        (Kind::Text(reply), _) => openai::body(req, reply, id, created),
    }
}

/// One model object: `{"id":..,"object":"model","created":..,"owned_by":..}`.
pub fn model_body(id: &str, created: u64, owned_by: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + id.len() + owned_by.len());
    write_model(&mut out, id, created, owned_by);
    out
}

/// The model list: `{"object":"list","data":[model objects]}`.
pub fn models_body<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    created: u64,
    owned_by: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_model(&mut out, id, created, owned_by);
    }
    out.extend_from_slice(b"]}");
    out
}

fn write_model(out: &mut Vec<u8>, id: &str, created: u64, owned_by: &str) {
    out.extend_from_slice(b"{\"id\":");
    json::write_json_str(out, id);
    out.extend_from_slice(b",\"object\":\"model\",\"created\":");
    json::write_u64(out, created);
    out.extend_from_slice(b",\"owned_by\":");
    json::write_json_str(out, owned_by);
    out.push(b'}');
}

// ---------------------------------------------------------------------------------------------
// Streaming

/// What a stream frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Chat: the first delta of a choice (`role: assistant`; with the tool call's id and name
    /// when the reply is a tool call).
    Role,
    /// An event that opens the stream or a part of it: Messages `message_start`,
    /// `content_block_start`; Responses `response.created`, `response.in_progress`,
    /// `response.output_item.added`, `response.content_part.added`.
    Start,
    /// Messages `ping`.
    Ping,
    /// One token of one choice (a text delta, or a fragment of a tool call's arguments).
    Token,
    /// The end of a choice (`finish_reason`), of a content block or output item, or the
    /// message's stop reason (Messages `message_delta`).
    Finish,
    /// The usage chunk (`choices: []`), only with `include_usage`.
    Usage,
    /// An embeddings "stream": the whole body as one frame.
    Body,
    /// The stream's last frame: `data: [DONE]`, Messages `message_stop`, Responses
    /// `response.completed` / `response.incomplete`.
    Done,
    /// An in-stream error ([`SynthStream::fail`]): the stream's last frame; no `[DONE]` and no
    /// completion event follow.
    Error,
}

#[derive(Debug, Clone)]
enum State {
    OpenAi(openai::Chunks),
    Messages(messages::Events),
    Responses(responses::Events),
}

/// The SSE frames of a streamed response, one at a time, so the caller can pace them.
///
/// Chat: a role chunk per choice, one chunk per token (interleaved across choices: choice 0
/// token 0, choice 1 token 0, ...), a finish chunk per choice, the usage chunk when
/// `include_usage`, then `[DONE]`. Completions: the same without role chunks. Messages and
/// Responses: their event sequences (see the module documentation).
#[derive(Debug, Clone)]
pub struct SynthStream {
    req: SynthRequest,
    state: State,
    tokens_sent: u64,
    finished: bool,
}

impl SynthStream {
    /// A stream for `req` (an embeddings request yields its whole body as one frame, then
    /// `[DONE]`). `id` is the response id; `created` the Unix time to report.
    pub fn new(req: &SynthRequest, id: &str, created: u64) -> SynthStream {
        let state = match req.endpoint {
            Endpoint::Messages => State::Messages(messages::Events::new(req, id)),
            Endpoint::Responses => State::Responses(responses::Events::new(req, id, created)),
            _ => State::OpenAi(openai::Chunks::new(req, id, created)),
        };
        SynthStream {
            req: req.clone(),
            state,
            tokens_sent: 0,
            finished: false,
        }
    }

    /// Appends the next complete SSE frame to `out`; returns true if more frames follow. Once
    /// finished, writes nothing and returns false.
    pub fn next_frame(&mut self, out: &mut Vec<u8>) -> bool {
        self.next_kind(out);
        !self.finished
    }

    /// Like [`next_frame`](Self::next_frame), but says what the written frame was (`None`:
    /// the stream had already ended, nothing was written).
    pub fn next_kind(&mut self, out: &mut Vec<u8>) -> Option<FrameKind> {
        if self.finished {
            return None;
        }
        let kind = match &mut self.state {
            State::OpenAi(s) => s.next(&self.req, out),
            State::Messages(s) => s.next(&self.req, out),
            State::Responses(s) => s.next(&self.req, out),
        };
        match kind {
            Some(FrameKind::Token) => self.tokens_sent += 1,
            Some(FrameKind::Done) | None => self.finished = true,
            Some(_) => {}
        }
        kind
    }

    /// Ends the stream with an in-stream error, in the endpoint's shape: chat and completions
    /// `data: {"error":{..}}` (no `[DONE]`); Messages `event: error` with an
    /// `overloaded_error`; Responses an `error` event then `response.failed` (two SSE frames,
    /// written together). Returns [`FrameKind::Error`], or `None` (and writes nothing) if the
    /// stream had already ended.
    pub fn fail(&mut self, out: &mut Vec<u8>) -> Option<FrameKind> {
        if self.finished {
            return None;
        }
        self.finished = true;
        match &mut self.state {
            State::OpenAi(_) => openai::error_frame(out),
            State::Messages(_) => messages::error_frame(out),
            State::Responses(s) => s.fail(&self.req, out),
        }
        Some(FrameKind::Error)
    }

    /// Token frames written so far (over all choices).
    pub fn token_frames_sent(&self) -> u64 {
        self.tokens_sent
    }

    /// True once the last frame (or an error) was written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}
