//! Ending a client's stream early and well-formed: mid-stream budget enforcement.
//!
//! When a consumer's token budget runs out during a stream, the gateway stops reading the
//! upstream and ends the client's stream as if the model had hit its length limit: never as an
//! error, never leaving the client's parser with an open choice, block, part or item.
//! [`StreamCloser::observe`] sees every frame the client is sent (native or translated, in the
//! client's format) and keeps what it takes to close the stream; [`StreamCloser::close`] then
//! appends the closing frames:
//!
//! | format | closing frames |
//! | --- | --- |
//! | Chat Completions | per choice not finished yet, a chunk `delta: {}`, `finish_reason: "length"` (and `"usage": null` when the stream's chunks carry `usage`); the usage chunk (`choices: []`) when the client asked for `include_usage`; `data: [DONE]` |
//! | Completions | the same with `text_completion` chunks (`text: ""`) |
//! | Messages | `message_start` if none went out; `content_block_stop` per open block; `message_delta` (`stop_reason: "max_tokens"`, the usage); `message_stop` |
//! | Responses | `response.created` and `.in_progress` if none went out; for every open item, the `.done` events of its open parts (`output_text`, `refusal`, reasoning text and summary), of its arguments (function and custom tool calls), then `response.output_item.done` with status `incomplete`; `response.incomplete` (`incomplete_details.reason: "max_output_tokens"`, every output item, the usage), continuing the stream's `sequence_number`s |
//!
//! A stream that already ended (`[DONE]`, `message_stop`, `response.completed` /
//! `.incomplete` / `.failed`, or an error event) gets nothing.
//!
//! **Cost of `observe`** (every relayed frame): the event name (or a byte search for `"type"`)
//! and a few byte searches decide which frames are read at all. Chat and Completions parse the
//! first chunk (its `id`, `created`, `model`), a chunk that opens a choice (Chat: a `role`
//! delta) and one that finishes a choice; the others cost a few `memmem` searches. Messages
//! parses `message_start` and the `content_block_start` / `_stop` events. Responses parses the
//! small events that add items and parts and the `.delta` events (to keep the text of open
//! parts); it keeps a copy of `response.created` and of each `response.output_item.done`
//! unread, for `response.incomplete`. Everything else is read by [`StreamCloser::close`], which
//! runs at most once.
//!
//! **Architecture invariant:** sans-IO. The caller passes ids and timestamps in
//! [`CloseContext`]; nothing here reads a clock.

use std::borrow::Cow;

use memchr::memmem;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::anthropic::{self, MessageResponse};
use crate::error::write_json_str;
use crate::sse::SseFrame;
use crate::track::{event_kind, trim_start, Api, TrackedUsage};
use crate::translate::response::response_object;
use crate::translate::{to_json, write_sse, ResponseContext};

/// The format of the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientFormat {
    /// OpenAI Chat Completions chunks.
    Chat,
    /// OpenAI (legacy) Completions chunks.
    Completions,
    /// Anthropic Messages events.
    Messages,
    /// OpenAI Responses events.
    Responses,
}

impl From<Api> for ClientFormat {
    fn from(api: Api) -> Self {
        match api {
            Api::ChatCompletions => Self::Chat,
            Api::Messages => Self::Messages,
            Api::Responses => Self::Responses,
        }
    }
}

/// What the closing frames need that the stream may not have shown yet. The stream's own id,
/// model and `created` win over these once a frame carrying them was observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseContext {
    /// Chunk, message or response id, used as is.
    pub id: String,
    /// Unix seconds (`created`, `created_at`).
    pub created: u64,
    /// The model name shown to the client.
    pub model: String,
    /// Chat / Completions: the client asked for `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Token counts for the closing frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseUsage {
    /// All input tokens, cached ones included. Messages: 0 means not known, and
    /// `message_delta` then leaves the input counts of `message_start` alone.
    pub input_tokens: u64,
    /// Output tokens generated so far.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache (a part of `input_tokens`).
    pub cached_input_tokens: u64,
}

impl From<TrackedUsage> for CloseUsage {
    fn from(u: TrackedUsage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
        }
    }
}

impl CloseUsage {
    /// With the cache writes the stream reported (Messages `message_start`), which are a part
    /// of `input_tokens` too.
    fn tracked(self, cache_creation_input_tokens: u64) -> TrackedUsage {
        TrackedUsage {
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_creation_input_tokens,
            output_tokens: self.output_tokens,
            reasoning_tokens: 0,
        }
    }
}

/// Watches a client's stream and closes it on demand (see the module documentation).
#[derive(Debug)]
pub struct StreamCloser {
    format: ClientFormat,
    ctx: CloseContext,
    ended: bool,
    keys: Keys,
    state: State,
}

/// The keys `observe` searches frames for, built once per closer.
#[derive(Debug)]
struct Keys {
    type_key: memmem::Finder<'static>,
    usage: memmem::Finder<'static>,
    choices: memmem::Finder<'static>,
    finish_reason: memmem::Finder<'static>,
    role: memmem::Finder<'static>,
    index: memmem::Finder<'static>,
    error: memmem::Finder<'static>,
    /// The top-level `sequence_number` comes last: searched from the end.
    sequence: memmem::FinderRev<'static>,
    output_index: memmem::Finder<'static>,
    content_index: memmem::Finder<'static>,
    summary_index: memmem::Finder<'static>,
}

impl Keys {
    fn new() -> Self {
        let key = |needle: &'static [u8]| memmem::Finder::new(needle);
        Self {
            type_key: key(b"\"type\""),
            usage: key(b"\"usage\""),
            choices: key(b"\"choices\""),
            finish_reason: key(b"\"finish_reason\""),
            role: key(b"\"role\""),
            index: key(b"\"index\""),
            error: key(b"\"error\""),
            sequence: memmem::FinderRev::new(b"\"sequence_number\""),
            output_index: key(b"\"output_index\""),
            content_index: key(b"\"content_index\""),
            summary_index: key(b"\"summary_index\""),
        }
    }
}

#[derive(Debug)]
enum State {
    Chat(Box<ChatState>),
    Messages(Box<MessagesState>),
    Responses(Box<ResponsesState>),
}

impl StreamCloser {
    /// A closer for a stream in `format`.
    pub fn new(format: ClientFormat, ctx: CloseContext) -> Self {
        let state = match format {
            ClientFormat::Chat => State::Chat(Box::new(ChatState::new(false))),
            ClientFormat::Completions => State::Chat(Box::new(ChatState::new(true))),
            ClientFormat::Messages => State::Messages(Box::new(MessagesState::new())),
            ClientFormat::Responses => State::Responses(Box::new(ResponsesState::new())),
        };
        Self {
            format,
            ctx,
            ended: false,
            keys: Keys::new(),
            state,
        }
    }

    /// The format of the stream.
    pub fn format(&self) -> ClientFormat {
        self.format
    }

    /// The stream has ended: its own end or error went out, or [`Self::close`] ran.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// One complete frame as the client is sent it. Frames after the end are ignored.
    pub fn observe(&mut self, frame: &SseFrame) {
        if self.ended || frame.is_comment() {
            return;
        }
        self.ended = match &mut self.state {
            State::Chat(state) => state.observe(frame, &self.keys, &self.ctx),
            State::Messages(state) => state.observe(frame, &self.keys),
            State::Responses(state) => state.observe(frame, &self.keys),
        };
    }

    /// Appends the frames that end the stream as cut by its length limit, with `usage`.
    /// Nothing is appended if the stream has already ended; afterwards it has.
    pub fn close(&mut self, usage: CloseUsage, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &mut self.state {
            State::Chat(state) => state.close(&self.ctx, usage, out),
            State::Messages(state) => state.close(&self.ctx, usage, out),
            State::Responses(state) => state.close(&self.ctx, usage, out),
        }
    }
}

/// An `event:` frame whose data is `{"type": kind, fields.., "sequence_number"}`: the type
/// first, as the APIs write it.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<u64>,
}

fn write_event(out: &mut Vec<u8>, kind: &str, fields: Map<String, Value>, sequence: Option<u64>) {
    let event = Event {
        kind,
        fields,
        sequence_number: sequence,
    };
    write_sse(out, Some(kind), &event);
}

/// A JSON object of `pairs`.
fn object<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A value of ours as JSON (`null` should serialising ever fail).
fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Each value of `key` in `data`: the bytes after `"key"`, a colon and whitespace. A match
/// without a colon (the key's text used as a string value) is skipped. Generated text cannot
/// match: inside a JSON string every `"` is escaped.
fn values_after<'a>(
    data: &'a [u8],
    key: &'a memmem::Finder<'static>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let len = key.needle().len();
    key.find_iter(data)
        .filter_map(move |at| value_at(data, at + len))
}

/// The value after a key that ends at `end`.
fn value_at(data: &[u8], end: usize) -> Option<&[u8]> {
    let rest = trim_start(data.get(end..)?);
    Some(trim_start(rest.strip_prefix(b":")?))
}

/// The first integer value of `key` in `data`.
fn first_u64(data: &[u8], key: &memmem::Finder<'static>) -> Option<u64> {
    values_after(data, key).find_map(leading_u64)
}

/// The integer `bytes` start with.
fn leading_u64(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(bytes.get(..digits)?).ok()?.parse().ok()
}

fn insert_sorted(set: &mut Vec<u64>, value: u64) {
    if let Err(at) = set.binary_search(&value) {
        set.insert(at, value);
    }
}

/// Chat Completions and Completions.
#[derive(Debug)]
struct ChatState {
    completions: bool,
    /// `id`, `created`, `model` of the first chunk (the context's where it has none).
    head: Option<Head>,
    /// Choices the client has seen open (Chat: a `role` delta; Completions: any chunk).
    choices: Vec<u64>,
    /// Choices whose `finish_reason` went out.
    finished: Vec<u64>,
    /// Chunks carry a `usage` member.
    carries_usage: bool,
    /// The usage chunk went out.
    usage_sent: bool,
}

#[derive(Debug)]
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl ChatState {
    fn new(completions: bool) -> Self {
        Self {
            completions,
            head: None,
            choices: Vec::new(),
            finished: Vec::new(),
            carries_usage: false,
            usage_sent: false,
        }
    }

    /// Returns whether the stream ended.
    fn observe(&mut self, frame: &SseFrame, keys: &Keys, ctx: &CloseContext) -> bool {
        if frame.is_done() {
            return true;
        }
        let Some(data) = frame.data() else {
            return false;
        };
        if values_after(&data, &keys.error).any(|v| !v.starts_with(b"null")) {
            // `data: {"error":..}`: the stream ended with an error.
            return true;
        }
        let mut usage = values_after(&data, &keys.usage).peekable();
        if usage.peek().is_some() {
            self.carries_usage = true;
            if usage.any(|v| v.starts_with(b"{")) && choices_empty(&data, &keys.choices) {
                self.usage_sent = true;
            }
        }
        drop(usage);
        if self.completions {
            // Completions chunks have no tool calls: every `index` is a choice's.
            for index in values_after(&data, &keys.index).filter_map(leading_u64) {
                insert_sorted(&mut self.choices, index);
            }
        }
        let finish = values_after(&data, &keys.finish_reason).any(|v| v.starts_with(b"\""));
        let opens = !self.completions && keys.role.find(&data).is_some();
        if self.head.is_none() || finish || opens {
            self.read_chunk(&data, ctx);
        }
        false
    }

    /// Parses a chunk: its head (first chunk only), its choices and their finish reasons.
    fn read_chunk(&mut self, data: &[u8], ctx: &CloseContext) {
        let chunk: Value = serde_json::from_slice(data).unwrap_or_default();
        if self.head.is_none() {
            let text = |key: &str, fallback: &str| {
                chunk
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or(fallback)
                    .to_owned()
            };
            self.head = Some(Head {
                id: text("id", &ctx.id),
                created: chunk
                    .get("created")
                    .and_then(Value::as_u64)
                    .unwrap_or(ctx.created),
                model: text("model", &ctx.model),
            });
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            insert_sorted(&mut self.choices, index);
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                insert_sorted(&mut self.finished, index);
            }
        }
    }

    fn close(&mut self, ctx: &CloseContext, usage: CloseUsage, out: &mut Vec<u8>) {
        // Before the first chunk, the stream would have carried usage if the client asked.
        let usage_member = match self.head {
            Some(_) => self.carries_usage,
            None => ctx.include_usage,
        };
        let head = self.head.take().unwrap_or_else(|| Head {
            id: ctx.id.clone(),
            created: ctx.created,
            model: ctx.model.clone(),
        });
        if !self.usage_sent {
            insert_sorted(&mut self.choices, 0);
            for &index in self.choices.iter().filter(|c| !self.finished.contains(c)) {
                let choice = if self.completions {
                    format!(
                        r#"[{{"text":"","index":{index},"logprobs":null,"finish_reason":"length"}}]"#
                    )
                } else {
                    format!(
                        r#"[{{"index":{index},"delta":{{}},"logprobs":null,"finish_reason":"length"}}]"#
                    )
                };
                let null = usage_member.then_some(b"null".as_slice());
                self.write_chunk(&head, choice.as_bytes(), null, out);
            }
            if ctx.include_usage {
                let usage = to_json(&usage.tracked(0).to_chat());
                self.write_chunk(&head, b"[]", Some(&usage), out);
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// `data: {"id","object","created","model","choices"[,"usage"]}`, written by hand in the
    /// order OpenAI uses.
    fn write_chunk(&self, head: &Head, choices: &[u8], usage: Option<&[u8]>, out: &mut Vec<u8>) {
        let object = if self.completions {
            "text_completion"
        } else {
            "chat.completion.chunk"
        };
        out.extend_from_slice(b"data: {\"id\":");
        write_json_str(out, &head.id);
        out.extend_from_slice(b",\"object\":");
        write_json_str(out, object);
        out.extend_from_slice(b",\"created\":");
        out.extend_from_slice(itoa::Buffer::new().format(head.created).as_bytes());
        out.extend_from_slice(b",\"model\":");
        write_json_str(out, &head.model);
        out.extend_from_slice(b",\"choices\":");
        out.extend_from_slice(choices);
        if let Some(usage) = usage.filter(|u| !u.is_empty()) {
            out.extend_from_slice(b",\"usage\":");
            out.extend_from_slice(usage);
        }
        out.extend_from_slice(b"}\n\n");
    }
}

/// The chunk's `choices` is empty, `null` or absent (a usage chunk, with a `usage` object).
fn choices_empty(data: &[u8], key: &memmem::Finder<'static>) -> bool {
    match values_after(data, key).next() {
        None => true,
        Some(value) => {
            value.starts_with(b"null")
                || value
                    .strip_prefix(b"[")
                    .is_some_and(|rest| trim_start(rest).starts_with(b"]"))
        }
    }
}

/// Anthropic Messages.
#[derive(Debug)]
struct MessagesState {
    started: bool,
    /// Indices of content blocks started and not stopped.
    open_blocks: Vec<u64>,
    /// A `message_delta` (the stop reason) went out.
    stop_sent: bool,
    /// `message_start`'s `cache_creation_input_tokens`.
    cache_creation: u64,
}

/// What the closer reads of a `content_block_start` / `_stop`.
#[derive(Deserialize)]
struct BlockEvent {
    #[serde(default)]
    index: Option<u64>,
}

impl MessagesState {
    fn new() -> Self {
        Self {
            started: false,
            open_blocks: Vec::new(),
            stop_sent: false,
            cache_creation: 0,
        }
    }

    fn observe(&mut self, frame: &SseFrame, keys: &Keys) -> bool {
        let Some(data) = frame.data() else {
            return false;
        };
        let block = || {
            serde_json::from_slice::<BlockEvent>(&data)
                .ok()
                .and_then(|e| e.index)
        };
        match event_kind(frame, &data, &keys.type_key) {
            b"message_start" => {
                self.started = true;
                let start: Value = serde_json::from_slice(&data).unwrap_or_default();
                self.cache_creation = start
                    .pointer("/message/usage/cache_creation_input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            b"content_block_start" => {
                if let Some(index) = block() {
                    insert_sorted(&mut self.open_blocks, index);
                }
            }
            b"content_block_stop" => {
                if let Some(index) = block() {
                    self.open_blocks.retain(|&open| open != index);
                }
            }
            b"message_delta" => self.stop_sent = true,
            b"message_stop" | b"error" => return true,
            _ => {}
        }
        false
    }

    fn close(&mut self, ctx: &CloseContext, usage: CloseUsage, out: &mut Vec<u8>) {
        let counts = usage.tracked(self.cache_creation).to_anthropic();
        if !self.started {
            let message = MessageResponse {
                id: ctx.id.clone(),
                kind: "message".to_owned(),
                role: "assistant".to_owned(),
                model: ctx.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: anthropic::Usage {
                    output_tokens: 0,
                    ..counts
                },
            };
            let fields = object([("message", to_value(&message))]);
            write_event(out, "message_start", fields, None);
        }
        for index in self.open_blocks.drain(..) {
            write_event(
                out,
                "content_block_stop",
                object([("index", index.into())]),
                None,
            );
        }
        if !self.stop_sent {
            let delta = object([
                ("stop_reason", "max_tokens".into()),
                ("stop_sequence", Value::Null),
            ]);
            let mut counts = match to_value(&counts) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if usage.input_tokens == 0 {
                counts.retain(|key, _| key == "output_tokens");
            }
            let fields = object([
                ("delta", Value::Object(delta)),
                ("usage", Value::Object(counts)),
            ]);
            write_event(out, "message_delta", fields, None);
        }
        write_event(out, "message_stop", Map::new(), None);
    }
}

/// OpenAI Responses.
#[derive(Debug)]
struct ResponsesState {
    last_sequence: Option<u64>,
    /// `response.created` went out.
    created_sent: bool,
    /// Its data, read at close.
    created: Vec<u8>,
    /// Output items in the order they were added.
    items: Vec<ItemState>,
}

/// Which index a part or its text has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// `content_index`: output text, refusal and reasoning text parts.
    Content,
    /// `summary_index`: reasoning summary parts.
    Summary,
    /// A function or custom tool call's input (no part).
    Input,
}

#[derive(Debug)]
struct ItemState {
    output_index: u64,
    /// The item as `response.output_item.added` showed it.
    item: Map<String, Value>,
    parts: Vec<PartState>,
    /// Arguments of a function call, input of a custom tool call.
    input: String,
    input_done: bool,
    /// Data of its `response.output_item.done`, read at close.
    done: Option<Vec<u8>>,
}

#[derive(Debug)]
struct PartState {
    group: Group,
    index: u64,
    /// The part as added.
    part: Map<String, Value>,
    text: String,
    text_done: bool,
    done: bool,
}

/// What the closer reads of the events that add items and parts
/// (`response.output_item.added`, `.content_part.added`, `.reasoning_summary_part.added`) and
/// of the `.delta` events.
#[derive(Default, Deserialize)]
#[serde(default)]
struct ItemEvent<'a> {
    output_index: u64,
    content_index: Option<u64>,
    summary_index: Option<u64>,
    item: Option<Map<String, Value>>,
    part: Option<Map<String, Value>>,
    #[serde(borrow)]
    delta: Cow<'a, str>,
}

impl ItemEvent<'_> {
    /// The part the event is about; a call's input when it names none.
    fn part(&self) -> (Group, u64) {
        match (self.content_index, self.summary_index) {
            (Some(index), _) => (Group::Content, index),
            (None, Some(index)) => (Group::Summary, index),
            (None, None) => (Group::Input, 0),
        }
    }
}

/// Item types whose `status` may be `incomplete`.
const INCOMPLETE_STATUS: &[&str] = &[
    "message",
    "function_call",
    "reasoning",
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "computer_call",
];

impl ResponsesState {
    fn new() -> Self {
        Self {
            last_sequence: None,
            created_sent: false,
            created: Vec::new(),
            items: Vec::new(),
        }
    }

    fn observe(&mut self, frame: &SseFrame, keys: &Keys) -> bool {
        let Some(data) = frame.data() else {
            return false;
        };
        let len = keys.sequence.needle().len();
        if let Some(sequence) = keys
            .sequence
            .rfind_iter(&data)
            .filter_map(|at| value_at(&data, at + len))
            .find_map(leading_u64)
        {
            self.last_sequence = Some(sequence);
        }
        match event_kind(frame, &data, &keys.type_key) {
            b"response.created" => {
                self.created_sent = true;
                self.created = data.to_vec();
            }
            b"response.completed" | b"response.incomplete" | b"response.failed" | b"error" => {
                return true
            }
            b"response.output_item.added" => self.add(&data, false),
            b"response.content_part.added" | b"response.reasoning_summary_part.added" => {
                self.add(&data, true);
            }
            b"response.output_text.delta"
            | b"response.refusal.delta"
            | b"response.reasoning_text.delta"
            | b"response.reasoning_summary_text.delta"
            | b"response.function_call_arguments.delta"
            | b"response.custom_tool_call_input.delta" => self.delta(&data),
            b"response.output_text.done"
            | b"response.refusal.done"
            | b"response.reasoning_text.done" => self.mark(&data, keys, Group::Content, false),
            b"response.reasoning_summary_text.done" => {
                self.mark(&data, keys, Group::Summary, false)
            }
            b"response.function_call_arguments.done" | b"response.custom_tool_call_input.done" => {
                self.mark(&data, keys, Group::Input, false);
            }
            b"response.content_part.done" => self.mark(&data, keys, Group::Content, true),
            b"response.reasoning_summary_part.done" => self.mark(&data, keys, Group::Summary, true),
            b"response.output_item.done" => {
                let output_index = first_u64(&data, &keys.output_index);
                if let Some(item) = self.item(output_index.unwrap_or(0)) {
                    // Only the final form matters now; the text kept so far can go.
                    item.done = Some(data.to_vec());
                    item.parts.clear();
                    item.input = String::new();
                }
            }
            _ => {}
        }
        false
    }

    fn item(&mut self, output_index: u64) -> Option<&mut ItemState> {
        self.items
            .iter_mut()
            .rev()
            .find(|item| item.output_index == output_index)
    }

    /// An item or (`part`) a part was added.
    fn add(&mut self, data: &[u8], part: bool) {
        let Ok(event) = serde_json::from_slice::<ItemEvent<'_>>(data) else {
            return;
        };
        let output_index = event.output_index;
        if !part {
            self.items.push(ItemState {
                output_index,
                item: event.item.unwrap_or_default(),
                parts: Vec::new(),
                input: String::new(),
                input_done: false,
                done: None,
            });
            return;
        }
        let (group, index) = event.part();
        if let Some(item) = self.item(output_index) {
            item.parts.push(PartState {
                group,
                index,
                part: event.part.unwrap_or_default(),
                text: String::new(),
                text_done: false,
                done: false,
            });
        }
    }

    fn delta(&mut self, data: &[u8]) {
        let Ok(event) = serde_json::from_slice::<ItemEvent<'_>>(data) else {
            return;
        };
        let Some(item) = self.item(event.output_index) else {
            return;
        };
        match event.part() {
            (Group::Input, _) => item.input.push_str(&event.delta),
            (group, index) => {
                if let Some(part) = item.part(group, index) {
                    part.text.push_str(&event.delta);
                }
            }
        }
    }

    /// A part's text (`part` false) or the part itself is done; for `Group::Input`, a call's
    /// input.
    fn mark(&mut self, data: &[u8], keys: &Keys, group: Group, part: bool) {
        let output_index = first_u64(data, &keys.output_index).unwrap_or(0);
        let index = match group {
            Group::Content => first_u64(data, &keys.content_index),
            Group::Summary => first_u64(data, &keys.summary_index),
            Group::Input => None,
        };
        let Some(item) = self.item(output_index) else {
            return;
        };
        if group == Group::Input {
            item.input_done = true;
        } else if let Some(state) = item.part(group, index.unwrap_or(0)) {
            if part {
                state.done = true;
            } else {
                state.text_done = true;
            }
        }
    }

    fn close(&mut self, ctx: &CloseContext, usage: CloseUsage, out: &mut Vec<u8>) {
        let mut sequence = Sequence(self.last_sequence.map_or(0, |s| s.saturating_add(1)));
        let created = self.created_sent.then(|| read_response(&self.created));
        let mut response = match created.flatten() {
            Some(response) => response,
            None => {
                let context = ResponseContext::new(ctx.id.clone(), ctx.created, ctx.model.clone());
                let fresh =
                    response_object(ctx.id.clone(), "in_progress", &context, Vec::new(), None);
                let fresh = match to_value(&fresh) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                if !self.created_sent {
                    for kind in ["response.created", "response.in_progress"] {
                        let fields = object([("response", Value::Object(fresh.clone()))]);
                        sequence.write(out, kind, fields);
                    }
                }
                fresh
            }
        };
        self.items.sort_by_key(|item| item.output_index);
        let output: Vec<Value> = self
            .items
            .iter_mut()
            .map(|item| match item.done.as_deref().and_then(read_done_item) {
                Some(done) => done,
                None => item.close(&mut sequence, out),
            })
            .collect();
        let required = [
            ("id", Value::from(ctx.id.as_str())),
            ("object", "response".into()),
            ("created_at", ctx.created.into()),
            ("model", ctx.model.as_str().into()),
            ("parallel_tool_calls", true.into()),
            ("tool_choice", "auto".into()),
            ("tools", Value::Array(Vec::new())),
        ];
        for (key, value) in required {
            response.entry(key).or_insert(value);
        }
        let reason = object([("reason", "max_output_tokens".into())]);
        let usage = to_value(&usage.tracked(0).to_responses());
        for (key, value) in [
            ("status", "incomplete".into()),
            ("incomplete_details", Value::Object(reason)),
            ("output", Value::Array(output)),
            ("usage", usage),
        ] {
            response.insert(key.to_owned(), value);
        }
        let fields = object([("response", Value::Object(response))]);
        sequence.write(out, "response.incomplete", fields);
    }
}

/// The next `sequence_number`, and the writer of numbered events.
struct Sequence(u64);

impl Sequence {
    fn write(&mut self, out: &mut Vec<u8>, kind: &str, fields: Map<String, Value>) {
        write_event(out, kind, fields, Some(self.0));
        self.0 = self.0.saturating_add(1);
    }
}

/// `response` of a `response.created` event.
fn read_response(data: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(data)
        .ok()?
        .get_mut("response")?
        .take()
    {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// `item` of a `response.output_item.done` event.
fn read_done_item(data: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(data)
        .ok()?
        .get_mut("item")
        .map(Value::take)
        .filter(Value::is_object)
}

impl ItemState {
    fn part(&mut self, group: Group, index: u64) -> Option<&mut PartState> {
        self.parts
            .iter_mut()
            .rev()
            .find(|part| part.group == group && part.index == index)
    }

    /// Writes the `.done` events of the open parts, of the input and of the item; returns the
    /// item in its final form (status `incomplete`).
    fn close(&mut self, sequence: &mut Sequence, out: &mut Vec<u8>) -> Value {
        let output_index = Value::from(self.output_index);
        let item_id = self.item.get("id").cloned().unwrap_or_else(|| "".into());
        let at = |index_key: &str, index: u64| {
            object([
                ("item_id", item_id.clone()),
                ("output_index", output_index.clone()),
                (index_key, index.into()),
            ])
        };
        let mut content = Vec::new();
        let mut summary = Vec::new();
        for part in &self.parts {
            let (index_key, part_done) = match part.group {
                Group::Summary => ("summary_index", "response.reasoning_summary_part.done"),
                Group::Content | Group::Input => ("content_index", "response.content_part.done"),
            };
            let kind = part.part.get("type").and_then(Value::as_str).unwrap_or("");
            let (text_key, text_done) = match kind {
                "output_text" => ("text", Some("response.output_text.done")),
                "refusal" => ("refusal", Some("response.refusal.done")),
                "reasoning_text" => ("text", Some("response.reasoning_text.done")),
                "summary_text" => ("text", Some("response.reasoning_summary_text.done")),
                _ => ("text", None),
            };
            let mut finished = part.part.clone();
            if text_done.is_some() {
                finished.insert(text_key.to_owned(), part.text.as_str().into());
            }
            if !part.done {
                if let Some(text_done) = text_done.filter(|_| !part.text_done) {
                    let mut fields = at(index_key, part.index);
                    fields.insert(text_key.to_owned(), part.text.as_str().into());
                    if kind == "output_text" {
                        fields.insert("logprobs".to_owned(), Value::Array(Vec::new()));
                    }
                    sequence.write(out, text_done, fields);
                }
                let mut fields = at(index_key, part.index);
                fields.insert("part".to_owned(), Value::Object(finished.clone()));
                sequence.write(out, part_done, fields);
            }
            match part.group {
                Group::Summary => summary.push(Value::Object(finished)),
                Group::Content | Group::Input => content.push(Value::Object(finished)),
            }
        }
        let mut item = std::mem::take(&mut self.item);
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let input_key = match kind.as_str() {
            "function_call" => Some(("arguments", "response.function_call_arguments.done")),
            "custom_tool_call" => Some(("input", "response.custom_tool_call_input.done")),
            _ => None,
        };
        if let Some((key, done)) = input_key {
            if !self.input_done {
                let mut fields = object([
                    ("item_id", item_id.clone()),
                    ("output_index", output_index.clone()),
                ]);
                fields.insert(key.to_owned(), self.input.as_str().into());
                sequence.write(out, done, fields);
            }
            item.insert(key.to_owned(), self.input.as_str().into());
        }
        if !content.is_empty() || kind == "message" {
            item.insert("content".to_owned(), Value::Array(content));
        }
        if !summary.is_empty() {
            item.insert("summary".to_owned(), Value::Array(summary));
        }
        if INCOMPLETE_STATUS.contains(&kind.as_str()) {
            item.insert("status".to_owned(), "incomplete".into());
        }
        let item = Value::Object(item);
        let fields = object([("item", item.clone()), ("output_index", output_index)]);
        sequence.write(out, "response.output_item.done", fields);
        item
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(raw: &str) -> SseFrame {
        SseFrame::new(Bytes::from(raw.to_owned()))
    }

    fn ctx(include_usage: bool) -> CloseContext {
        CloseContext {
            id: "req-1".to_owned(),
            created: 1700000000,
            model: "gpt-test".to_owned(),
            include_usage,
        }
    }

    fn usage() -> CloseUsage {
        CloseUsage {
            input_tokens: 20,
            output_tokens: 7,
            cached_input_tokens: 4,
        }
    }

    fn closed(format: ClientFormat, include_usage: bool, frames: &[&str]) -> String {
        let mut closer = StreamCloser::new(format, ctx(include_usage));
        for raw in frames {
            closer.observe(&frame(raw));
        }
        let mut out = Vec::new();
        closer.close(usage(), &mut out);
        assert!(closer.is_ended());
        let mut again = Vec::new();
        closer.close(usage(), &mut again);
        assert!(again.is_empty(), "a second close writes nothing");
        String::from_utf8(out).unwrap()
    }

    fn data_lines(text: &str) -> Vec<Value> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn scanning_helpers() {
        let key = memmem::Finder::new(b"\"index\"");
        let data = br#"{"a":"\"index\":9","index" : 12,"x":{"index":3},"t":"index"}"#;
        let found: Vec<u64> = values_after(data, &key).filter_map(leading_u64).collect();
        assert_eq!(found, [12, 3]);
        assert_eq!(first_u64(b"{\"index\":x}", &key), None);
        assert_eq!(leading_u64(b"99999999999999999999999"), None, "overflow");
        let choices = memmem::Finder::new(b"\"choices\"");
        assert!(choices_empty(br#"{"choices": [ ],"usage":{}}"#, &choices));
        assert!(choices_empty(br#"{"choices":null}"#, &choices));
        assert!(choices_empty(br#"{"usage":{}}"#, &choices));
        assert!(!choices_empty(br#"{"choices":[{"index":0}]}"#, &choices));
    }

    #[test]
    fn chat_before_any_chunk_uses_the_context() {
        let out = closed(ClientFormat::Chat, true, &[]);
        assert_eq!(
            out,
            "data: {\"id\":\"req-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
             \"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\
             \"finish_reason\":\"length\"}],\"usage\":null}\n\n\
             data: {\"id\":\"req-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
             \"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\
             \"completion_tokens\":7,\"total_tokens\":27,\"prompt_tokens_details\":\
             {\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n\
             data: [DONE]\n\n"
        );
    }

    #[test]
    fn chat_prefers_the_stream_head_and_closes_open_choices() {
        let frames = [
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":5,"model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":5,"model":"up","choices":[{"index":1,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":5,"model":"up","choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#,
            ": keep-alive",
        ]
        .map(|f| format!("{f}\n\n"));
        let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
        let out = closed(ClientFormat::Chat, false, &frames);
        let chunks = data_lines(&out);
        assert_eq!(chunks.len(), 1, "{out}");
        assert_eq!(chunks[0]["id"], "chatcmpl-9");
        assert_eq!(chunks[0]["model"], "up");
        assert_eq!(chunks[0]["created"], 5);
        assert_eq!(chunks[0]["choices"][0]["index"], 0);
        assert!(chunks[0].get("usage").is_none(), "no usage member: {out}");
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn completions_choice_without_usage_member() {
        let out = closed(
            ClientFormat::Completions,
            false,
            &["data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\"hi\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"m\"}\n\n"],
        );
        let chunks = data_lines(&out);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["object"], "text_completion");
        assert_eq!(
            chunks[0]["choices"],
            serde_json::json!([{"text":"","index":0,"logprobs":null,"finish_reason":"length"}])
        );
    }

    #[test]
    fn ended_streams_get_nothing() {
        let cases = [
            (ClientFormat::Chat, "data: [DONE]\n\n"),
            (
                ClientFormat::Chat,
                "data: {\"error\":{\"message\":\"x\",\"type\":\"server_error\"}}\n\n",
            ),
            (
                ClientFormat::Messages,
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            ),
            (
                ClientFormat::Messages,
                "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n",
            ),
            (
                ClientFormat::Responses,
                "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{},\"sequence_number\":3}\n\n",
            ),
        ];
        for (format, last) in cases {
            let mut closer = StreamCloser::new(format, ctx(true));
            closer.observe(&frame(last));
            assert!(closer.is_ended(), "{last}");
            let mut out = Vec::new();
            closer.close(usage(), &mut out);
            assert!(out.is_empty(), "{last}");
        }
    }

    #[test]
    fn messages_before_message_start() {
        let out = closed(ClientFormat::Messages, false, &[]);
        let events = data_lines(&out);
        assert_eq!(
            types(&events),
            ["message_start", "message_delta", "message_stop"]
        );
        assert_eq!(events[0]["message"]["id"], "req-1");
        assert_eq!(events[0]["message"]["usage"]["input_tokens"], 16);
        assert_eq!(events[0]["message"]["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(events[1]["delta"]["stop_reason"], "max_tokens");
        assert_eq!(events[1]["usage"]["output_tokens"], 7);
        assert!(out.starts_with("event: message_start\ndata: {\"type\":\"message_start\","));
    }

    #[test]
    fn messages_without_input_counts_keep_message_start_ones() {
        let mut closer = StreamCloser::new(ClientFormat::Messages, ctx(false));
        closer.observe(&frame(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":10,\"output_tokens\":1}}}\n\n",
        ));
        closer.observe(&frame(
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        ));
        let mut out = Vec::new();
        closer.close(
            CloseUsage {
                input_tokens: 0,
                output_tokens: 5,
                cached_input_tokens: 0,
            },
            &mut out,
        );
        let events = data_lines(std::str::from_utf8(&out).unwrap());
        assert_eq!(
            events[0],
            serde_json::json!({"type":"content_block_stop","index":0})
        );
        assert_eq!(events[1]["usage"], serde_json::json!({"output_tokens":5}));

        // With input counts, the uncached part excludes the cache writes message_start showed.
        let mut closer = StreamCloser::new(ClientFormat::Messages, ctx(false));
        closer.observe(&frame(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":10}}}\n\n",
        ));
        let mut out = Vec::new();
        closer.close(usage(), &mut out);
        let events = data_lines(std::str::from_utf8(&out).unwrap());
        assert_eq!(
            events[0]["usage"],
            serde_json::json!({"input_tokens":6,"cache_creation_input_tokens":10,
                               "cache_read_input_tokens":4,"output_tokens":7})
        );
    }

    #[test]
    fn responses_before_response_created() {
        let out = closed(ClientFormat::Responses, false, &[]);
        let events = data_lines(&out);
        assert_eq!(
            types(&events),
            [
                "response.created",
                "response.in_progress",
                "response.incomplete"
            ]
        );
        for (n, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], n as u64);
            assert_eq!(event["response"]["id"], "req-1");
        }
        let response = &events[2]["response"];
        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(response["usage"]["total_tokens"], 27);
        assert_eq!(response["output"], serde_json::json!([]));
    }

    #[test]
    fn responses_closes_reasoning_refusal_and_custom_calls() {
        let frames = [
            r#"{"type":"response.created","response":{"id":"resp_1","object":"response","created_at":9,"model":"o","output":[],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"status":"in_progress"},"sequence_number":0}"#,
            r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]},"sequence_number":1}"#,
            r#"{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""},"sequence_number":2}"#,
            r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Think","sequence_number":3}"#,
            r#"{"type":"response.output_item.added","output_index":1,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]},"sequence_number":4}"#,
            r#"{"type":"response.content_part.added","item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"refusal","refusal":""},"sequence_number":5}"#,
            r#"{"type":"response.refusal.delta","item_id":"msg_1","output_index":1,"content_index":0,"delta":"No \"way\"","sequence_number":6}"#,
            r#"{"type":"response.output_item.added","output_index":2,"item":{"id":"ctc_1","type":"custom_tool_call","call_id":"call_1","name":"sh","input":""},"sequence_number":7}"#,
            r#"{"type":"response.custom_tool_call_input.delta","item_id":"ctc_1","output_index":2,"delta":"ls -","sequence_number":8}"#,
        ]
        .map(|data| {
            let kind: Value = serde_json::from_str(data).unwrap();
            format!("event: {}\ndata: {data}\n\n", kind["type"].as_str().unwrap())
        });
        let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
        let out = closed(ClientFormat::Responses, false, &frames);
        let events = data_lines(&out);
        assert_eq!(
            types(&events),
            [
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.incomplete",
            ]
        );
        for (n, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], 9 + n as u64);
        }
        assert_eq!(events[0]["text"], "Think");
        assert_eq!(events[3]["refusal"], "No \"way\"");
        assert_eq!(events[6]["input"], "ls -");
        let output = &events[8]["response"]["output"];
        assert_eq!(output[0]["summary"][0]["text"], "Think");
        assert_eq!(output[0]["status"], "incomplete");
        assert_eq!(output[1]["content"][0]["refusal"], "No \"way\"");
        assert_eq!(output[2]["input"], "ls -");
        assert!(output[2].get("status").is_none());
        assert_eq!(events[8]["response"]["id"], "resp_1");
        assert_eq!(events[8]["response"]["created_at"], 9);
    }
}
