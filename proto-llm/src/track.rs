//! Token usage, end and error tracking for every API, for the native relay (frames forwarded
//! byte for byte) and for the stream translators.
//!
//! [`UsageTracker`] looks at each upstream frame as cheaply as it can: the `event:` name (or a
//! byte search) says what a frame is, a byte search says whether it may carry usage, and only
//! then is the frame parsed, into buffers reused from frame to frame (the same machinery as
//! [`crate::usage::UsageExtractor`]). Per API:
//!
//! | API | usage | clean end | error inside a 200 stream |
//! | --- | --- | --- | --- |
//! | Chat Completions | any chunk's top-level `usage` (the last wins) | `data: [DONE]` | `data: {"error":..}` |
//! | Messages | `message_start.message.usage`, then each `message_delta.usage` (cumulative: the last wins, never summed) | `message_stop` | `event: error` |
//! | Responses | `response.usage` of `response.completed` / `.incomplete` / `.failed` | one of those three | `event: error`, `response.failed` |
//!
//! [`strip_injected_usage`] undoes the gateway's own `stream_options.include_usage` on a Chat
//! stream whose client did not ask for usage.

use std::fmt;
use std::sync::LazyLock;

use memchr::memmem;
use simd_json::prelude::*;
use simd_json::tape::Value as TapeValue;

use crate::anthropic;
use crate::request::subslice_range;
use crate::responses;
use crate::sse::SseFrame;
use crate::textscan;
use crate::translate::chat::{ChatUsage, CompletionTokensDetails, PromptTokensDetails};
use crate::usage::{read_usage, Usage, UsageExtractor};

/// An LLM API, inbound (what the client speaks) or upstream (what the backend speaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
    /// Anthropic Messages, `POST /v1/messages`.
    Messages,
}

impl Api {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Responses => "responses",
            Self::Messages => "messages",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token counts in one shape for every API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackedUsage {
    /// All input tokens: uncached, read from the cache and written to it.
    pub input_tokens: u64,
    /// Input tokens read from the prompt cache (a part of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache (a part of `input_tokens`).
    pub cache_creation_input_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// Reasoning tokens (a part of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl TrackedUsage {
    /// Input plus output.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Input tokens that were neither read from nor written to the cache (Anthropic's
    /// `input_tokens`).
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_creation_input_tokens)
    }

    /// The Chat Completions `usage` object.
    pub fn to_chat(&self) -> ChatUsage {
        ChatUsage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.total_tokens(),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: self.cached_input_tokens,
                cache_write_tokens: (self.cache_creation_input_tokens > 0)
                    .then_some(self.cache_creation_input_tokens),
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: self.reasoning_tokens,
            }),
        }
    }

    /// The Anthropic `usage` object (cache fields always present, as Anthropic sends them).
    pub fn to_anthropic(&self) -> anthropic::Usage {
        anthropic::Usage {
            input_tokens: self.uncached_input_tokens(),
            cache_creation_input_tokens: Some(self.cache_creation_input_tokens),
            cache_read_input_tokens: Some(self.cached_input_tokens),
            output_tokens: self.output_tokens,
            output_tokens_details: None,
        }
    }

    /// The Responses `usage` object.
    pub fn to_responses(&self) -> responses::Usage {
        responses::Usage {
            input_tokens: self.input_tokens,
            input_tokens_details: responses::InputTokensDetails {
                cached_tokens: self.cached_input_tokens,
                cache_write_tokens: self.cache_creation_input_tokens,
            },
            output_tokens: self.output_tokens,
            output_tokens_details: responses::OutputTokensDetails {
                reasoning_tokens: self.reasoning_tokens,
            },
            total_tokens: self.total_tokens(),
        }
    }
}

impl From<Usage> for TrackedUsage {
    /// `Usage` does not know cache writes: they count as plain input.
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            cached_input_tokens: u.cached_tokens,
            cache_creation_input_tokens: 0,
            output_tokens: u.completion_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

impl From<TrackedUsage> for Usage {
    fn from(u: TrackedUsage) -> Self {
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens(),
            cached_tokens: u.cached_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

impl From<&ChatUsage> for TrackedUsage {
    fn from(u: &ChatUsage) -> Self {
        let prompt = u.prompt_tokens_details.unwrap_or_default();
        Self {
            input_tokens: u.prompt_tokens,
            cached_input_tokens: prompt.cached_tokens,
            cache_creation_input_tokens: prompt.cache_write_tokens.unwrap_or(0),
            output_tokens: u.completion_tokens,
            reasoning_tokens: u
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
        }
    }
}

impl From<&anthropic::Usage> for TrackedUsage {
    fn from(u: &anthropic::Usage) -> Self {
        let cache_read = u.cache_read_input_tokens.unwrap_or(0);
        let cache_creation = u.cache_creation_input_tokens.unwrap_or(0);
        Self {
            input_tokens: u
                .input_tokens
                .saturating_add(cache_read)
                .saturating_add(cache_creation),
            cached_input_tokens: cache_read,
            cache_creation_input_tokens: cache_creation,
            output_tokens: u.output_tokens,
            reasoning_tokens: u.output_tokens_details.map_or(0, |d| d.thinking_tokens),
        }
    }
}

impl From<&responses::Usage> for TrackedUsage {
    fn from(u: &responses::Usage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            cached_input_tokens: u.input_tokens_details.cached_tokens,
            cache_creation_input_tokens: u.input_tokens_details.cache_write_tokens,
            output_tokens: u.output_tokens,
            reasoning_tokens: u.output_tokens_details.reasoning_tokens,
        }
    }
}

/// Anthropic counters as the API reports them; `message_delta` overwrites what it carries.
#[derive(Debug, Clone, Copy, Default)]
struct AnthropicCounts {
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    output: u64,
    thinking: u64,
}

impl AnthropicCounts {
    /// Overwrites every counter `usage` carries (`message_start` carries all of them).
    fn update(&mut self, usage: TapeValue<'_, '_>) {
        let set = |slot: &mut u64, value: Option<u64>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut self.input, usage.get_u64("input_tokens"));
        set(
            &mut self.cache_read,
            usage.get_u64("cache_read_input_tokens"),
        );
        set(
            &mut self.cache_creation,
            usage.get_u64("cache_creation_input_tokens"),
        );
        set(&mut self.output, usage.get_u64("output_tokens"));
        set(
            &mut self.thinking,
            usage
                .get("output_tokens_details")
                .and_then(|d| d.get_u64("thinking_tokens")),
        );
    }

    fn tracked(&self) -> TrackedUsage {
        TrackedUsage::from(&anthropic::Usage {
            input_tokens: self.input,
            cache_creation_input_tokens: Some(self.cache_creation),
            cache_read_input_tokens: Some(self.cache_read),
            output_tokens: self.output,
            output_tokens_details: Some(anthropic::OutputTokensDetails {
                thinking_tokens: self.thinking,
            }),
        })
    }
}

/// Where generated text is under a `delta` member (see [`textscan`]): a Chat chunk's
/// `choices[].delta` (content, refusal, reasoning, tool-call `arguments`) and an Anthropic
/// `content_block_delta`'s `delta`; a Responses text event's `delta` is the text itself. A
/// legacy completions chunk has no `delta`: `choices[].text`. The fields the parsed path reads.
const CHAT_DELTA: &[textscan::Member] = &[
    (b"content", 1),
    (b"refusal", 1),
    (b"reasoning_content", 1),
    (b"reasoning", 1),
    (b"arguments", 4),
];
const LEGACY_TEXT: &[textscan::Member] = &[(b"text", 3)];
const MESSAGES_DELTA: &[textscan::Member] = &[(b"text", 1), (b"thinking", 1), (b"partial_json", 1)];

/// Byte patterns the pre-checks look for. Built once per process and shared: each `Finder` is
/// ~300 bytes, and a node holds a tracker per open stream.
struct Finders {
    error: memmem::Finder<'static>,
    type_key: memmem::Finder<'static>,
    delta: textscan::DeltaText,
}

static FINDERS: LazyLock<Finders> = LazyLock::new(|| Finders {
    error: memmem::Finder::new(b"\"error\""),
    type_key: memmem::Finder::new(b"\"type\""),
    delta: textscan::DeltaText::new(),
});

/// Usage, end and error of one response, fed frame by frame (or with the whole body).
pub struct UsageTracker {
    api: Api,
    extractor: UsageExtractor,
    finders: &'static Finders,
    usage: Option<TrackedUsage>,
    anthropic: AnthropicCounts,
    saw_end: bool,
    saw_error: bool,
    text: String,
    text_limit: usize,
    text_truncated: bool,
}

impl UsageTracker {
    /// A tracker for a response in `api`'s format, without text capture.
    pub fn new(api: Api) -> Self {
        Self {
            api,
            extractor: UsageExtractor::new(),
            finders: &FINDERS,
            usage: None,
            anthropic: AnthropicCounts::default(),
            saw_end: false,
            saw_error: false,
            text: String::new(),
            text_limit: 0,
            text_truncated: false,
        }
    }

    /// Also collect the generated text (content, refusals, reasoning, tool-call arguments),
    /// decoded, up to `max_bytes`, so the gateway can count output tokens itself when the
    /// upstream reports no usage (a cut stream, a server without usage).
    ///
    /// Cost: a text frame is not parsed; one byte search finds its `delta` members and only
    /// those are lexed and decoded ([`textscan`]) into one reused `String`. Frames that carry usage, an end or an error are parsed as without
    /// capture, and their text is read from the parse.
    /// Past `max_bytes` the text is cut at a character boundary and
    /// [`Self::text_truncated`] says so.
    pub fn with_text_capture(mut self, max_bytes: usize) -> Self {
        self.text_limit = max_bytes;
        // Small to start: a node holds many streams, most replies are a few KB; doubling costs a
        // handful of allocations per stream, none per frame.
        self.text = String::with_capacity(max_bytes.min(512));
        self
    }

    /// The API this tracker reads.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Usage reported so far. Anthropic: after `message_start` alone, `output_tokens` is that
    /// event's placeholder (a token or two) until a `message_delta` brings the count; trust
    /// it when [`Self::saw_end`].
    pub fn usage(&self) -> Option<TrackedUsage> {
        self.usage
    }

    /// The upstream's stream reached its own clean end (`[DONE]`, `message_stop`,
    /// `response.completed` / `.incomplete` / `.failed`).
    pub fn saw_end(&self) -> bool {
        self.saw_end
    }

    /// The upstream reported an error inside a 2xx response.
    pub fn saw_error(&self) -> bool {
        self.saw_error
    }

    /// The captured text (empty without [`Self::with_text_capture`]).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Text was cut at the capture limit.
    pub fn text_truncated(&self) -> bool {
        self.text_truncated
    }

    /// Reads one upstream frame.
    pub fn observe(&mut self, frame: &SseFrame) {
        if frame.is_comment() {
            return;
        }
        match self.api {
            Api::ChatCompletions => self.observe_chat(frame),
            Api::Messages => self.observe_messages(frame),
            Api::Responses => self.observe_responses(frame),
        }
    }

    /// Reads a whole non-streaming JSON body.
    pub fn observe_body(&mut self, body: &[u8]) {
        let capture = self.text_limit > 0;
        if self.finders.error.find(body).is_some() && self.with_tape(body, has_error) {
            self.saw_error = true;
        }
        let usage = match self.api {
            Api::ChatCompletions => self.extractor.may_have_usage(body),
            Api::Messages | Api::Responses => true,
        };
        if !usage && !capture {
            return;
        }
        let api = self.api;
        let mut text = TextSink::new(&mut self.text, self.text_limit, capture);
        let found = self.extractor.with_tape(body, |doc| {
            match api {
                Api::ChatCompletions => {
                    if let Some(choices) = doc.get("choices").and_then(|c| c.as_array()) {
                        for choice in choices.iter() {
                            text.chat_message(choice.get("message"));
                        }
                    }
                }
                Api::Messages => {
                    if let Some(blocks) = doc.get("content").and_then(|c| c.as_array()) {
                        for block in blocks.iter() {
                            text.push(block.get_str("text"));
                            text.push(block.get_str("thinking"));
                        }
                    }
                }
                Api::Responses => {
                    if let Some(items) = doc.get("output").and_then(|c| c.as_array()) {
                        for item in items.iter() {
                            text.push(item.get_str("arguments"));
                            if let Some(parts) = item.get("content").and_then(|c| c.as_array()) {
                                for part in parts.iter() {
                                    text.push(part.get_str("text"));
                                    text.push(part.get_str("refusal"));
                                }
                            }
                        }
                    }
                }
            }
            Some(read_body_usage(api, doc))
        });
        self.text_truncated |= text.truncated;
        match found.flatten() {
            Some(BodyUsage::Tracked(usage)) => self.usage = Some(usage),
            Some(BodyUsage::Anthropic(counts)) => {
                self.anthropic = counts;
                self.usage = Some(counts.tracked());
            }
            None => {}
        }
    }

    /// Appends the text of a frame's `delta` members (see [`textscan`]): no parse. A Chat
    /// frame without one may be a legacy completions chunk.
    fn scan_text(&mut self, data: &[u8], members: &[textscan::Member]) {
        let mut text = TextSink::new(&mut self.text, self.text_limit, true);
        let found = self
            .finders
            .delta
            .text(data, members, |s| text.push(Some(s)));
        if !found && self.api == Api::ChatCompletions {
            textscan::string_members(data, LEGACY_TEXT, |s| text.push(Some(s)));
        }
        self.text_truncated |= text.truncated;
    }

    fn with_tape(&mut self, json: &[u8], read: fn(TapeValue<'_, '_>) -> bool) -> bool {
        self.extractor
            .with_tape(json, |doc| Some(read(doc)))
            .unwrap_or(false)
    }

    fn observe_chat(&mut self, frame: &SseFrame) {
        if frame.is_done() {
            self.saw_end = true;
            return;
        }
        let Some(data) = frame.data() else {
            return;
        };
        let need_usage = self.extractor.may_have_usage(&data);
        let need_error = self.finders.error.find(&data).is_some();
        let capture = self.text_limit > 0;
        if !need_usage && !need_error {
            // The common frame: text only, scanned without a parse.
            if capture {
                self.scan_text(&data, CHAT_DELTA);
            }
            return;
        }
        let mut text = TextSink::new(&mut self.text, self.text_limit, capture);
        let read = self.extractor.with_tape(&data, |doc| {
            if let Some(choices) = doc.get("choices").and_then(|c| c.as_array()) {
                for choice in choices.iter() {
                    text.chat_message(choice.get("delta"));
                    // Legacy completions stream `choices[].text`.
                    text.push(choice.get_str("text"));
                }
            }
            let usage = need_usage.then(|| read_chat_usage(doc)).flatten();
            Some((usage, need_error && has_error(doc)))
        });
        self.text_truncated |= text.truncated;
        if let Some((usage, error)) = read {
            if usage.is_some() {
                self.usage = usage;
            }
            self.saw_error |= error;
        }
    }

    fn observe_messages(&mut self, frame: &SseFrame) {
        let Some(data) = frame.data() else {
            return;
        };
        let kind = event_kind(frame, &data, &self.finders.type_key);
        match kind {
            b"message_start" | b"message_delta" => {
                let counts = &mut self.anthropic;
                let found = self.extractor.with_tape(&data, |doc| {
                    let usage = match doc.get("message") {
                        Some(message) => message.get("usage"),
                        None => doc.get("usage"),
                    }?;
                    usage.is_object().then(|| counts.update(usage))
                });
                if found.is_some() {
                    self.usage = Some(self.anthropic.tracked());
                }
            }
            b"message_stop" => self.saw_end = true,
            b"error" => self.saw_error = true,
            b"content_block_delta" if self.text_limit > 0 => self.scan_text(&data, MESSAGES_DELTA),
            _ => {}
        }
    }

    fn observe_responses(&mut self, frame: &SseFrame) {
        let Some(data) = frame.data() else {
            return;
        };
        let kind = event_kind(frame, &data, &self.finders.type_key);
        match kind {
            b"response.completed" | b"response.incomplete" | b"response.failed" => {
                self.saw_end = true;
                if kind == b"response.failed" {
                    self.saw_error = true;
                }
                if self.extractor.may_have_usage(&data) {
                    let usage = self.extractor.with_tape(&data, |doc| {
                        read_responses_usage(doc.get("response")?.get("usage")?)
                    });
                    if usage.is_some() {
                        self.usage = usage;
                    }
                }
            }
            b"error" => self.saw_error = true,
            b"response.output_text.delta"
            | b"response.refusal.delta"
            | b"response.function_call_arguments.delta"
            | b"response.reasoning_text.delta"
            | b"response.reasoning_summary_text.delta"
                if self.text_limit > 0 =>
            {
                self.scan_text(&data, &[])
            }
            _ => {}
        }
    }
}

impl fmt::Debug for UsageTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageTracker")
            .field("api", &self.api)
            .field("usage", &self.usage)
            .field("saw_end", &self.saw_end)
            .field("saw_error", &self.saw_error)
            .field("text_len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// What a frame is: its `event:` name, or else the value of the first `"type"` key of its data
/// (OpenAI and Anthropic write `type` first). Empty if neither.
pub(crate) fn event_kind<'a>(
    frame: &'a SseFrame,
    data: &'a [u8],
    type_key: &memmem::Finder<'_>,
) -> &'a [u8] {
    if let Some(event) = frame.event() {
        return event;
    }
    let Some(at) = type_key.find(data) else {
        return b"";
    };
    let rest = data.get(at + b"\"type\"".len()..).unwrap_or_default();
    let rest = trim_start(rest);
    let Some(rest) = rest.strip_prefix(b":") else {
        return b"";
    };
    let Some(rest) = trim_start(rest).strip_prefix(b"\"") else {
        return b"";
    };
    match memchr::memchr(b'"', rest) {
        Some(end) => rest.get(..end).unwrap_or_default(),
        None => b"",
    }
}

pub(crate) fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// A top-level `error` that is not `null` (Chat: `{"error":{..}}`; Anthropic: `"type":"error"`;
/// Responses: `"type":"error"` events, or a body whose `error` is set).
fn has_error(doc: TapeValue<'_, '_>) -> bool {
    doc.get("error").is_some_and(|e| !e.is_null()) || doc.get_str("type") == Some("error")
}

fn read_chat_usage(doc: TapeValue<'_, '_>) -> Option<TrackedUsage> {
    let usage = read_usage(doc)?;
    let cache_write = doc
        .get("usage")
        .and_then(|u| u.get("prompt_tokens_details"))
        .and_then(|d| d.get_u64("cache_write_tokens"))
        .unwrap_or(0);
    Some(TrackedUsage {
        cache_creation_input_tokens: cache_write,
        ..TrackedUsage::from(usage)
    })
}

fn read_responses_usage(usage: TapeValue<'_, '_>) -> Option<TrackedUsage> {
    if !usage.is_object() {
        return None;
    }
    let input = usage.get("input_tokens_details");
    let output = usage.get("output_tokens_details");
    let detail = |d: Option<TapeValue<'_, '_>>, key: &str| d.and_then(|d| d.get_u64(key));
    Some(TrackedUsage {
        input_tokens: usage.get_u64("input_tokens").unwrap_or(0),
        cached_input_tokens: detail(input, "cached_tokens").unwrap_or(0),
        cache_creation_input_tokens: detail(input, "cache_write_tokens").unwrap_or(0),
        output_tokens: usage.get_u64("output_tokens").unwrap_or(0),
        reasoning_tokens: detail(output, "reasoning_tokens").unwrap_or(0),
    })
}

enum BodyUsage {
    Tracked(TrackedUsage),
    Anthropic(AnthropicCounts),
}

fn read_body_usage(api: Api, doc: TapeValue<'_, '_>) -> Option<BodyUsage> {
    match api {
        Api::ChatCompletions => read_chat_usage(doc).map(BodyUsage::Tracked),
        Api::Responses => read_responses_usage(doc.get("usage")?).map(BodyUsage::Tracked),
        Api::Messages => {
            let usage = doc.get("usage").filter(|u| u.is_object())?;
            let mut counts = AnthropicCounts::default();
            counts.update(usage);
            Some(BodyUsage::Anthropic(counts))
        }
    }
}

/// Appends captured text up to a limit.
struct TextSink<'a> {
    text: &'a mut String,
    limit: usize,
    enabled: bool,
    truncated: bool,
}

impl<'a> TextSink<'a> {
    fn new(text: &'a mut String, limit: usize, enabled: bool) -> Self {
        Self {
            text,
            limit,
            enabled,
            truncated: false,
        }
    }

    fn push(&mut self, s: Option<&str>) {
        let Some(s) = s.filter(|s| self.enabled && !s.is_empty()) else {
            return;
        };
        let room = self.limit.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return;
        }
        self.truncated = true;
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(s.get(..cut).unwrap_or_default());
    }

    /// A Chat `message` or `delta`: text, refusal, reasoning and tool-call arguments.
    fn chat_message(&mut self, message: Option<TapeValue<'_, '_>>) {
        let Some(message) = message.filter(|_| self.enabled) else {
            return;
        };
        self.push(message.get_str("content"));
        self.push(message.get_str("refusal"));
        self.push(message.get_str("reasoning_content"));
        self.push(message.get_str("reasoning"));
        if let Some(calls) = message.get("tool_calls").and_then(|c| c.as_array()) {
            for call in calls.iter() {
                let arguments = call.get("function").and_then(|f| f.get("arguments"));
                self.push(arguments.and_then(TapeValue::into_string));
            }
        }
    }
}

/// What to do with a Chat chunk when the gateway injected `include_usage` and the client did not
/// ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripResult {
    /// Forward the frame unchanged (no `usage` member).
    Keep,
    /// Do not forward it: a usage-only chunk (`choices` empty, `null` or absent).
    Drop,
    /// Forward these bytes instead: the same JSON without its `usage` member.
    Rewrite(Vec<u8>),
}

/// Decides what happens to the `data` payload of a Chat chunk so that a client that did not ask
/// for usage sees exactly the stream it would have seen without `include_usage`: usage-only
/// chunks go, and every other chunk loses its `usage` member (`"usage":null` included, since
/// OpenAI sends no usage key at all then). Every other byte is kept: only the member and one
/// comma next to it are cut out. Payloads that are not JSON objects are kept.
pub fn strip_injected_usage(data: &[u8]) -> StripResult {
    if memmem::find(data, b"\"usage\"").is_none() {
        return StripResult::Keep;
    }
    let Ok(top) = UsageMembers::parse(data) else {
        return StripResult::Keep;
    };
    let Some(usage) = top.usage else {
        return StripResult::Keep;
    };
    if top.usage_count == 1 && usage.get() != "null" && top.choices_empty {
        return StripResult::Drop;
    }
    if top.usage_count > 1 {
        // Parsers disagree on duplicates; rebuild without any of them.
        return match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
            Ok(mut map) => {
                let usage_set = map.remove("usage").is_some_and(|u| !u.is_null());
                if usage_set && top.choices_empty {
                    StripResult::Drop
                } else {
                    StripResult::Rewrite(serde_json::to_vec(&map).unwrap_or_default())
                }
            }
            Err(_) => StripResult::Keep,
        };
    }
    match member_span(data, usage.get().as_bytes()) {
        Some((start, end)) => {
            let mut out = Vec::with_capacity(data.len());
            out.extend_from_slice(data.get(..start).unwrap_or_default());
            out.extend_from_slice(data.get(end..).unwrap_or_default());
            StripResult::Rewrite(out)
        }
        None => StripResult::Keep,
    }
}

/// [`strip_injected_usage`] for a whole frame: `Rewrite` holds the new frame (its other lines
/// and line ends kept when the data was a single line).
pub fn strip_injected_usage_frame(frame: &SseFrame) -> StripResult {
    let Some(data) = frame.data() else {
        return StripResult::Keep;
    };
    if frame.is_done() {
        return StripResult::Keep;
    }
    match strip_injected_usage(&data) {
        StripResult::Rewrite(new_data) => {
            let raw = frame.raw();
            let mut out = Vec::with_capacity(raw.len());
            match subslice_range(raw, &data) {
                Some(range) => {
                    out.extend_from_slice(raw.get(..range.start).unwrap_or_default());
                    out.extend_from_slice(&new_data);
                    out.extend_from_slice(raw.get(range.end..).unwrap_or_default());
                }
                None => {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&new_data);
                    out.extend_from_slice(b"\n\n");
                }
            }
            StripResult::Rewrite(out)
        }
        other => other,
    }
}

/// The top-level `usage` and `choices` of a chunk, as raw JSON borrowed from it.
struct UsageMembers<'a> {
    usage: Option<&'a serde_json::value::RawValue>,
    usage_count: usize,
    choices_empty: bool,
}

impl<'a> UsageMembers<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, serde_json::Error> {
        use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UsageMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = UsageMembers {
                    usage: None,
                    usage_count: 0,
                    choices_empty: true,
                };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "usage" => {
                            out.usage_count += 1;
                            out.usage = Some(map.next_value()?);
                        }
                        "choices" => {
                            let raw: &'de serde_json::value::RawValue = map.next_value()?;
                            out.choices_empty = is_empty_or_null(raw.get());
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_slice(data);
        let out = de.deserialize_map(V)?;
        de.end()?;
        Ok(out)
    }
}

fn is_empty_or_null(raw: &str) -> bool {
    let raw = raw.trim();
    raw == "null"
        || raw
            .strip_prefix('[')
            .is_some_and(|rest| rest.trim_start().starts_with(']'))
}

/// The byte span of the member whose value is `value` (a slice of `data`), with one adjacent
/// comma: the one after it if any, else the one before it.
fn member_span(data: &[u8], value: &[u8]) -> Option<(usize, usize)> {
    let range = subslice_range(data, value)?;
    let before = data.get(..range.start)?;
    // Walk back over `"usage" :`.
    let colon = before.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if before.get(colon) != Some(&b':') {
        return None;
    }
    let key_end = before
        .get(..colon)?
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())?
        + 1;
    let key_start = key_end.checked_sub(b"\"usage\"".len())?;
    if data.get(key_start..key_end) != Some(b"\"usage\"".as_slice()) {
        return None;
    }
    let after = data.get(range.end..)?;
    let next = after.iter().position(|b| !b.is_ascii_whitespace())?;
    if after.get(next) == Some(&b',') {
        return Some((key_start, range.end + next + 1));
    }
    let prev = data
        .get(..key_start)?
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())?;
    if data.get(prev) == Some(&b',') {
        return Some((prev, range.end));
    }
    Some((key_start, range.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(data: &str) -> StripResult {
        strip_injected_usage(data.as_bytes())
    }

    fn rewritten(data: &str) -> String {
        match strip(data) {
            StripResult::Rewrite(out) => String::from_utf8(out).unwrap(),
            other => panic!("{data}: {other:?}"),
        }
    }

    #[test]
    fn strip_cases() {
        assert_eq!(
            strip(r#"{"choices":[{"delta":{"content":"x"}}]}"#),
            StripResult::Keep
        );
        assert_eq!(
            strip(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#),
            StripResult::Drop
        );
        assert_eq!(
            strip(r#"{"choices":null,"usage":{"prompt_tokens":1}}"#),
            StripResult::Drop
        );
        assert_eq!(strip(r#"{"usage":{"prompt_tokens":1}}"#), StripResult::Drop);
        assert_eq!(
            rewritten(r#"{"id":"c","choices":[{"delta":{"content":"\"usage\""}}],"usage":null}"#),
            r#"{"id":"c","choices":[{"delta":{"content":"\"usage\""}}]}"#
        );
        assert_eq!(
            rewritten(r#"{"usage" : {"prompt_tokens":1} , "choices":[{"index":0}],"x":1.50}"#),
            r#"{ "choices":[{"index":0}],"x":1.50}"#
        );
        assert_eq!(
            rewritten(r#"{"choices":[ ],"usage":null}"#),
            r#"{"choices":[ ]}"#
        );
        assert_eq!(rewritten(r#"{"usage":null}"#), "{}");
        assert_eq!(strip("not json \"usage\""), StripResult::Keep);
        assert_eq!(strip(r#"["usage"]"#), StripResult::Keep);
        // Duplicates are rebuilt without any copy.
        assert_eq!(
            rewritten(r#"{"usage":null,"choices":[{"index":0}],"usage":null}"#),
            r#"{"choices":[{"index":0}]}"#
        );
    }

    #[test]
    fn strip_keeps_frame_lines() {
        let raw = bytes::Bytes::from_static(
            b"id: 7\r\ndata: {\"choices\":[{\"index\":0}],\"usage\":null}\r\n\r\n",
        );
        let frame = SseFrame::new(raw);
        assert_eq!(
            strip_injected_usage_frame(&frame),
            StripResult::Rewrite(b"id: 7\r\ndata: {\"choices\":[{\"index\":0}]}\r\n\r\n".to_vec())
        );
        let done = SseFrame::new(bytes::Bytes::from_static(b"data: [DONE]\n\n"));
        assert_eq!(strip_injected_usage_frame(&done), StripResult::Keep);
    }

    #[test]
    fn conversions_between_shapes() {
        let tracked = TrackedUsage {
            input_tokens: 600,
            cached_input_tokens: 128,
            cache_creation_input_tokens: 72,
            output_tokens: 89,
            reasoning_tokens: 20,
        };
        let anthropic = tracked.to_anthropic();
        assert_eq!(anthropic.input_tokens, 400);
        assert_eq!(TrackedUsage::from(&anthropic).input_tokens, 600);
        assert_eq!(
            TrackedUsage::from(&tracked.to_chat()),
            tracked,
            "chat keeps every field"
        );
        assert_eq!(TrackedUsage::from(&tracked.to_responses()), tracked);
        let usage = Usage::from(tracked);
        assert_eq!(usage.total_tokens, 689);
        assert_eq!(
            TrackedUsage::from(usage),
            TrackedUsage {
                cache_creation_input_tokens: 0,
                ..tracked
            }
        );
    }

    #[test]
    fn event_kind_falls_back_to_type() {
        let finder = memmem::Finder::new(b"\"type\"");
        let frame = SseFrame::new(bytes::Bytes::from_static(
            b"data: {\"type\" : \"message_stop\"}\n\n",
        ));
        let data = frame.data().unwrap();
        assert_eq!(event_kind(&frame, &data, &finder), b"message_stop");
        let frame = SseFrame::new(bytes::Bytes::from_static(b"data: {\"a\":1}\n\n"));
        let data = frame.data().unwrap();
        assert_eq!(event_kind(&frame, &data, &finder), b"");
    }
}
