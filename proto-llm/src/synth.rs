//! Synthetic OpenAI responses: the generator behind `sluice-loadgen mock` and the gateway's
//! built-in `mock` provider.
//!
//! The output is the OpenAI wire format byte for byte (field names and order as OpenAI sends
//! them, compact JSON, SSE frames `data: {json}\n\n` ending with `data: [DONE]\n\n`), so that
//! clients, the official SDKs and the gateway's own relay see exactly what a real upstream
//! would send.
//!
//! # What the reply says
//!
//! The reply echoes the last `user` message (chat; the text parts of a content array) or the
//! prompt (completions; the last string of a prompt array), split on whitespace. One word is
//! one token. Each token's delta is the word followed by a space, except the last, so the
//! deltas concatenate to the words joined by single spaces. No words (or a token-array prompt)
//! means a fixed filler sentence is used instead.
//!
//! A fixed reply length (`tokens`) cycles through the words. `max_completion_tokens` (or else
//! `max_tokens`) caps the reply; a capped reply ends with `finish_reason: "length"`, any other
//! with `"stop"`. Every one of the `n` choices gets the same text.
//!
//! # Token counts
//!
//! `prompt_tokens` is a deterministic estimate, not a tokenizer:
//! - chat: the sum over messages of (4 + words in the message's text parts), plus 3;
//! - completions: the words in the prompt strings, or the number of token ids of a token-array
//!   prompt;
//! - embeddings: for each input, its words (string) or token ids (token array), at least 1.
//!
//! `completion_tokens` is the reply length times the number of choices.
//!
//! **Architecture invariant:** no IO, no clock, no randomness: `id` and `created` come from the
//! caller, embeddings are a hash of their input, and the same request always produces the same
//! bytes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::error::write_json_str;
use crate::request::{self, RequestError};

/// The OpenAI endpoint a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions` (legacy text completions)
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
}

/// Why a request was refused. Every variant is an HTTP 400 in the OpenAI error shape
/// (`invalid_request_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthError {
    /// The body is not a request this endpoint accepts.
    BadRequest {
        /// Human-readable explanation, in OpenAI's wording where there is one.
        message: String,
        /// The offending field, for the error body's `param`.
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
    /// The reply was cut at `max_tokens` / `max_completion_tokens`.
    Length,
}

impl FinishReason {
    /// The wire name: `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
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

/// The reply used when the request has no words to echo.
const FILLER: &[&str] = &[
    "This",
    "is",
    "a",
    "synthetic",
    "reply",
    "from",
    "the",
    "Sluice",
    "mock.",
];

const FINGERPRINT: &str = "fp_sluice_mock";

/// A validated request, ready to be answered.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    /// The `model` as sent; callers may overwrite it with the name to echo.
    pub model: String,
    /// `stream: true` (always `false` for embeddings, which never stream).
    pub stream: bool,
    /// `stream_options.include_usage: true`: `"usage":null` on every chunk and a usage chunk
    /// before `[DONE]`.
    pub include_usage: bool,
    /// Never write usage, whatever the request asked: models servers that do not report it.
    pub omit_usage: bool,
    endpoint: Endpoint,
    prompt_tokens: u64,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Text(TextReply),
    Embeddings(EmbeddingsReply),
}

#[derive(Debug, Clone)]
struct TextReply {
    words: Arc<Words>,
    choices: u32,
    /// Reply length per choice, after the `max_tokens` cap.
    tokens: u64,
    finish: FinishReason,
}

#[derive(Debug, Clone)]
struct EmbeddingsReply {
    /// One hash per input; the vector is generated from it.
    seeds: Vec<u64>,
    dimensions: u32,
    encoding: EncodingFormat,
}

/// The words a reply cycles through: spans of an owned text, or the filler.
#[derive(Debug)]
enum Words {
    Filler,
    Text {
        text: String,
        spans: Vec<(usize, usize)>,
    },
}

impl Words {
    fn from_text(text: String) -> Self {
        let spans = word_spans(&text);
        if spans.is_empty() {
            Self::Filler
        } else {
            Self::Text { text, spans }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Filler => FILLER.len(),
            Self::Text { spans, .. } => spans.len(),
        }
    }

    /// Word `i` modulo the word count.
    fn word(&self, i: u64) -> &str {
        // `len()` is never 0: `from_text` falls back to the filler.
        let len = self.len().max(1) as u64;
        let i = usize::try_from(i % len).unwrap_or(0);
        match self {
            Self::Filler => FILLER.get(i).copied().unwrap_or(""),
            Self::Text { text, spans } => spans
                .get(i)
                .and_then(|&(start, end)| text.get(start..end))
                .unwrap_or(""),
        }
    }
}

/// Byte ranges of the whitespace-separated words of `text` (the same split as
/// `str::split_whitespace`).
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                spans.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The request fields whose shape varies or that `request::inspect` does not read. `null` is
/// the same as absent for all of them.
#[derive(Deserialize)]
struct Fields {
    messages: Option<Value>,
    prompt: Option<Value>,
    input: Option<Value>,
    n: Option<Value>,
    dimensions: Option<Value>,
    encoding_format: Option<Value>,
    max_completion_tokens: Option<IgnoredAny>,
    stream_options: Option<IgnoredAny>,
}

impl SynthRequest {
    /// Parses and validates a request body for `endpoint`.
    ///
    /// `tokens`: fixed reply length in tokens (`None` = echo the last user message once).
    ///
    /// Refused (HTTP 400, with `param`): a body that is not a JSON object; a missing or
    /// non-string `model`; `stream`, `stream_options`, `max_tokens`,
    /// `max_completion_tokens` of the wrong type; `stream_options` without `stream: true`;
    /// `n` outside `1..=8`; chat `max_tokens: 0`; chat `messages` missing, empty or holding a
    /// message without a valid `role`; completions without `prompt`; embeddings with a missing
    /// or empty `input`, `dimensions` outside `1..=4096` or an `encoding_format` other than
    /// `float` / `base64`.
    pub fn parse(
        endpoint: Endpoint,
        body: &[u8],
        tokens: Option<u64>,
    ) -> Result<SynthRequest, SynthError> {
        // The common fields, with the same checks and messages as the gateway's own reading.
        let info = request::inspect(body)?;
        let fields: Fields = serde_json::from_slice(body).map_err(|e| SynthError::BadRequest {
            message: format!("We could not parse the JSON body of your request: {e}."),
            param: None,
        })?;
        if endpoint == Endpoint::Embeddings {
            let (seeds, prompt_tokens) = embedding_inputs(fields.input)?;
            let reply = EmbeddingsReply {
                seeds,
                dimensions: dimensions_of(fields.dimensions)?,
                encoding: encoding_of(fields.encoding_format)?,
            };
            return Ok(SynthRequest {
                model: info.model,
                stream: false,
                include_usage: false,
                omit_usage: false,
                endpoint,
                prompt_tokens,
                kind: Kind::Embeddings(reply),
            });
        }
        if fields.stream_options.is_some() && !info.stream {
            return Err(SynthError::bad(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            ));
        }
        let choices = choices_of(fields.n)?;
        let (words, prompt_tokens) = if endpoint == Endpoint::ChatCompletions {
            if info.max_tokens == Some(0) {
                let param = if fields.max_completion_tokens.is_some() {
                    "max_completion_tokens"
                } else {
                    "max_tokens"
                };
                return Err(SynthError::bad(
                    format!(
                        "Invalid '{param}': integer below minimum value. Expected a value >= 1, \
                         but got 0 instead."
                    ),
                    param,
                ));
            }
            chat_messages(fields.messages)?
        } else {
            completion_prompt(fields.prompt)?
        };
        let natural = tokens.unwrap_or(words.len() as u64);
        let (reply_tokens, finish) = match info.max_tokens {
            Some(max) if natural > max => (max, FinishReason::Length),
            _ => (natural, FinishReason::Stop),
        };
        Ok(SynthRequest {
            model: info.model,
            stream: info.stream,
            include_usage: info.stream && info.include_usage,
            omit_usage: false,
            endpoint,
            prompt_tokens,
            kind: Kind::Text(TextReply {
                words: Arc::new(words),
                choices,
                tokens: reply_tokens,
                finish,
            }),
        })
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

    /// Reply length of each choice in tokens; 0 for embeddings.
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

    /// The reply text of each choice (the token deltas concatenated); empty for embeddings.
    pub fn reply_text(&self) -> String {
        match &self.kind {
            Kind::Text(t) => t.text(),
            Kind::Embeddings(_) => String::new(),
        }
    }

    /// Number of embedding inputs (0 for chat and completions).
    pub fn embedding_inputs(&self) -> usize {
        match &self.kind {
            Kind::Embeddings(e) => e.seeds.len(),
            Kind::Text(_) => 0,
        }
    }

    fn usage_written(&self) -> bool {
        !self.omit_usage
    }
}

impl TextReply {
    /// Token `t`'s text and whether a space follows it.
    fn token(&self, t: u64) -> (&str, bool) {
        (self.words.word(t), t + 1 < self.tokens)
    }

    fn text(&self) -> String {
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

// ---------------------------------------------------------------------------------------------
// Request parsing

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

fn choices_of(n: Option<Value>) -> Result<u32, SynthError> {
    let Some(n) = n else { return Ok(1) };
    match n.as_u64() {
        Some(v @ 1..=MAX_CHOICES) => Ok(u32::try_from(v).unwrap_or(1)),
        Some(v) => Err(SynthError::bad(
            format!("Invalid value for 'n': expected an integer from 1 to {MAX_CHOICES}, got {v}."),
            "n",
        )),
        None => Err(invalid_type("n", "n", "an integer", &n)),
    }
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The words of the last user message and the prompt token estimate.
fn chat_messages(messages: Option<Value>) -> Result<(Words, u64), SynthError> {
    const P: &str = "messages";
    let messages = match messages {
        None => return Err(missing(P)),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(invalid_type(P, P, "an array", &other)),
    };
    if messages.is_empty() {
        return Err(SynthError::bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an \
             empty array instead.",
            P,
        ));
    }
    let mut prompt_tokens = 3u64;
    let mut last_user: Option<String> = None;
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(invalid_type(
                P,
                &format!("messages[{i}]"),
                "an object",
                message,
            ));
        };
        let role = match message.get("role") {
            None | Some(Value::Null) => {
                return Err(SynthError::bad(
                    format!("Missing required parameter: 'messages[{i}].role'."),
                    P,
                ))
            }
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.as_str(),
            Some(other) => {
                return Err(SynthError::bad(
                    format!(
                        "Invalid value for 'messages[{i}].role': expected one of {}, got {other}.",
                        ROLES.join(", ")
                    ),
                    P,
                ))
            }
        };
        let text = message_text(i, message.get("content"))?;
        prompt_tokens = prompt_tokens
            .saturating_add(4)
            .saturating_add(word_count(&text));
        if role == "user" {
            last_user = Some(text);
        }
    }
    let words = Words::from_text(last_user.unwrap_or_default());
    Ok((words, prompt_tokens))
}

/// The text parts of a message's `content`, joined by newlines.
fn message_text(i: usize, content: Option<&Value>) -> Result<String, SynthError> {
    const P: &str = "messages";
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let Value::Object(part) = part else {
                    return Err(invalid_type(
                        P,
                        &format!("messages[{i}].content[{j}]"),
                        "an object",
                        part,
                    ));
                };
                match part.get("type") {
                    Some(Value::String(t)) if t == "text" => match part.get("text") {
                        Some(Value::String(s)) => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(s);
                        }
                        other => {
                            return Err(invalid_type(
                                P,
                                &format!("messages[{i}].content[{j}].text"),
                                "a string",
                                other.unwrap_or(&Value::Null),
                            ))
                        }
                    },
                    // Images, audio, files...: no text to echo.
                    Some(Value::String(_)) => {}
                    other => {
                        return Err(invalid_type(
                            P,
                            &format!("messages[{i}].content[{j}].type"),
                            "a string",
                            other.unwrap_or(&Value::Null),
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(other) => Err(invalid_type(
            P,
            &format!("messages[{i}].content"),
            "a string or an array of content parts",
            other,
        )),
    }
}

fn is_token(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn is_token_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(is_token))
}

/// The words of the (last) prompt and the prompt token estimate.
fn completion_prompt(prompt: Option<Value>) -> Result<(Words, u64), SynthError> {
    const P: &str = "prompt";
    const EXPECTED: &str = "a string, an array of strings, an array of token ids or an array of \
                            token id arrays";
    match prompt {
        None => Err(missing(P)),
        Some(Value::String(s)) => {
            let tokens = word_count(&s);
            Ok((Words::from_text(s), tokens))
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                let tokens = items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(word_count)
                    .sum::<u64>();
                let last = items
                    .into_iter()
                    .next_back()
                    .and_then(|v| match v {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .unwrap_or_default();
                Ok((Words::from_text(last), tokens))
            } else if items.iter().all(is_token) {
                Ok((Words::Filler, items.len() as u64))
            } else if items.iter().all(is_token_array) {
                let tokens = items
                    .iter()
                    .filter_map(Value::as_array)
                    .map(|a| a.len() as u64)
                    .sum::<u64>();
                Ok((Words::Filler, tokens))
            } else {
                Err(SynthError::bad(
                    format!("Invalid value for 'prompt': expected {EXPECTED}."),
                    P,
                ))
            }
        }
        Some(Value::Array(_)) => Err(SynthError::bad(
            "Invalid 'prompt': empty array. Expected an array with minimum length 1, but got an \
             empty array instead.",
            P,
        )),
        Some(other) => Err(invalid_type(P, P, EXPECTED, &other)),
    }
}

/// One seed and the token count per input.
fn embedding_inputs(input: Option<Value>) -> Result<(Vec<u64>, u64), SynthError> {
    const P: &str = "input";
    let empty = || SynthError::bad("Invalid value for 'input': inputs must not be empty.", P);
    let invalid = || {
        SynthError::bad(
            "Invalid value for 'input': expected a string, an array of strings, an array of \
             token ids or an array of token id arrays.",
            P,
        )
    };
    let items = match input {
        None => return Err(missing(P)),
        Some(Value::String(s)) => {
            if s.is_empty() {
                return Err(empty());
            }
            return Ok((vec![text_seed(&s)], word_count(&s).max(1)));
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid()),
    };
    if items.is_empty() {
        return Err(empty());
    }
    if items.len() > MAX_EMBEDDING_INPUTS {
        return Err(SynthError::bad(
            format!(
                "Invalid 'input': array too long. Expected an array with maximum length \
                 {MAX_EMBEDDING_INPUTS}, but got an array with length {} instead.",
                items.len()
            ),
            P,
        ));
    }
    if items.iter().all(is_token) {
        // One input given as token ids.
        let ids: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
        return Ok((vec![token_seed(&ids)], ids.len() as u64));
    }
    let mut seeds = Vec::with_capacity(items.len());
    let mut tokens = 0u64;
    for item in &items {
        match item {
            Value::String(s) if s.is_empty() => return Err(empty()),
            Value::String(s) => {
                seeds.push(text_seed(s));
                tokens = tokens.saturating_add(word_count(s).max(1));
            }
            Value::Array(a) if a.is_empty() => return Err(empty()),
            Value::Array(a) if a.iter().all(is_token) => {
                let ids: Vec<u64> = a.iter().filter_map(Value::as_u64).collect();
                seeds.push(token_seed(&ids));
                tokens = tokens.saturating_add(ids.len() as u64);
            }
            _ => return Err(invalid()),
        }
    }
    Ok((seeds, tokens))
}

fn dimensions_of(v: Option<Value>) -> Result<u32, SynthError> {
    let Some(v) = v else {
        return Ok(DEFAULT_DIMENSIONS);
    };
    match v.as_u64() {
        Some(d @ 1..=MAX_DIMENSIONS) => Ok(u32::try_from(d).unwrap_or(DEFAULT_DIMENSIONS)),
        Some(d) => Err(SynthError::bad(
            format!(
                "Invalid value for 'dimensions': expected an integer from 1 to {MAX_DIMENSIONS}, \
                 got {d}."
            ),
            "dimensions",
        )),
        None => Err(invalid_type("dimensions", "dimensions", "an integer", &v)),
    }
}

fn encoding_of(v: Option<Value>) -> Result<EncodingFormat, SynthError> {
    const P: &str = "encoding_format";
    match v {
        None => Ok(EncodingFormat::Float),
        Some(Value::String(s)) if s == "float" => Ok(EncodingFormat::Float),
        Some(Value::String(s)) if s == "base64" => Ok(EncodingFormat::Base64),
        Some(Value::String(s)) => Err(SynthError::bad(
            format!(
                "Invalid value for 'encoding_format': expected 'float' or 'base64', got '{s}'."
            ),
            P,
        )),
        Some(other) => Err(invalid_type(P, P, "a string", &other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Embedding vectors

/// FNV-1a: a stable hash (std's hashers may change between releases).
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn text_seed(text: &str) -> u64 {
    fnv1a(FNV_OFFSET, text.as_bytes())
}

fn token_seed(ids: &[u64]) -> u64 {
    // A different domain than text, so `[1]` and `"\u{1}..."` do not collide by construction.
    ids.iter().fold(fnv1a(FNV_OFFSET, b"tokens:"), |h, id| {
        fnv1a(h, &id.to_le_bytes())
    })
}

/// SplitMix64 step: a well-distributed sequence from any seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The L2-normalised vector for `seed`, written into `out` (cleared first).
fn embedding_vector(seed: u64, dimensions: u32, out: &mut Vec<f32>) {
    out.clear();
    let mut state = seed;
    for _ in 0..dimensions {
        // 24 random bits mapped to [-1, 1): exact in f32.
        let bits = (splitmix64(&mut state) >> 40) as f32;
        out.push(bits / 8_388_608.0 - 1.0);
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for v in out.iter_mut() {
            *v /= norm;
        }
    } else if let Some(first) = out.first_mut() {
        *first = 1.0;
    }
}

// ---------------------------------------------------------------------------------------------
// Writing JSON

fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn write_f32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"0.0");
    }
}

/// `s` as a JSON string, with a space inside the closing quote when `space`.
fn write_token(out: &mut Vec<u8>, s: &str, space: bool) {
    write_json_str(out, s);
    if space {
        // Replace the closing quote: `"word"` becomes `"word "`.
        out.pop();
        out.extend_from_slice(b" \"");
    }
}

fn write_chat_usage(out: &mut Vec<u8>, req: &SynthRequest) {
    write_usage_counts(out, req);
    out.extend_from_slice(
        b",\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\
          \"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\
          \"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
    );
}

fn write_completions_usage(out: &mut Vec<u8>, req: &SynthRequest) {
    write_usage_counts(out, req);
    out.push(b'}');
}

/// `{"prompt_tokens":..,"completion_tokens":..,"total_tokens":..` (object left open).
fn write_usage_counts(out: &mut Vec<u8>, req: &SynthRequest) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, req.prompt_tokens());
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, req.completion_tokens());
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(
        out,
        req.prompt_tokens().saturating_add(req.completion_tokens()),
    );
}

/// `{"id":..,"object":..,"created":..` (object left open).
fn write_envelope_start(out: &mut Vec<u8>, id: &str, object: &str, created: u64) {
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, id);
    out.extend_from_slice(b",\"object\":");
    write_json_str(out, object);
    out.extend_from_slice(b",\"created\":");
    write_u64(out, created);
}

/// The whole non-streaming JSON body.
pub fn response_body(req: &SynthRequest, id: &str, created: u64) -> Vec<u8> {
    match &req.kind {
        Kind::Text(reply) => {
            let text = reply.text();
            let mut out = Vec::with_capacity(
                512 + (text.len() + 160) * usize::try_from(reply.choices).unwrap_or(1),
            );
            match req.endpoint {
                Endpoint::Completions => completions_body(&mut out, req, reply, &text, id, created),
                _ => chat_body(&mut out, req, reply, &text, id, created),
            }
            out
        }
        Kind::Embeddings(reply) => embeddings_body(req, reply),
    }
}

fn chat_body(
    out: &mut Vec<u8>,
    req: &SynthRequest,
    reply: &TextReply,
    text: &str,
    id: &str,
    created: u64,
) {
    write_envelope_start(out, id, "chat.completion", created);
    out.extend_from_slice(b",\"model\":");
    write_json_str(out, &req.model);
    out.extend_from_slice(b",\"choices\":[");
    for c in 0..reply.choices {
        if c > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"index\":");
        write_u64(out, u64::from(c));
        out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
        write_json_str(out, text);
        out.extend_from_slice(
            b",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":",
        );
        write_json_str(out, reply.finish.as_str());
        out.push(b'}');
    }
    out.push(b']');
    if req.usage_written() {
        out.extend_from_slice(b",\"usage\":");
        write_chat_usage(out, req);
    }
    out.extend_from_slice(b",\"service_tier\":\"default\",\"system_fingerprint\":");
    write_json_str(out, FINGERPRINT);
    out.push(b'}');
}

fn completions_body(
    out: &mut Vec<u8>,
    req: &SynthRequest,
    reply: &TextReply,
    text: &str,
    id: &str,
    created: u64,
) {
    write_envelope_start(out, id, "text_completion", created);
    out.extend_from_slice(b",\"model\":");
    write_json_str(out, &req.model);
    out.extend_from_slice(b",\"choices\":[");
    for c in 0..reply.choices {
        if c > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"text\":");
        write_json_str(out, text);
        out.extend_from_slice(b",\"index\":");
        write_u64(out, u64::from(c));
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        write_json_str(out, reply.finish.as_str());
        out.push(b'}');
    }
    out.push(b']');
    if req.usage_written() {
        out.extend_from_slice(b",\"usage\":");
        write_completions_usage(out, req);
    }
    out.push(b'}');
}

fn embeddings_body(req: &SynthRequest, reply: &EmbeddingsReply) -> Vec<u8> {
    let dims = usize::try_from(reply.dimensions).unwrap_or(0);
    let per_vector = match reply.encoding {
        EncodingFormat::Float => dims * 12,
        EncodingFormat::Base64 => dims * 16 / 3 + 4,
    };
    let mut out = Vec::with_capacity(128 + req.model.len() + reply.seeds.len() * (per_vector + 48));
    let mut vector = Vec::with_capacity(dims);
    let mut bytes = Vec::with_capacity(dims * 4);
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, &seed) in reply.seeds.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        write_u64(&mut out, i as u64);
        out.extend_from_slice(b",\"embedding\":");
        embedding_vector(seed, reply.dimensions, &mut vector);
        match reply.encoding {
            EncodingFormat::Float => {
                out.push(b'[');
                for (j, v) in vector.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_f32(&mut out, *v);
                }
                out.push(b']');
            }
            EncodingFormat::Base64 => {
                bytes.clear();
                for v in &vector {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                out.push(b'"');
                // Base64 output needs no JSON escaping.
                let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
                out.extend_from_slice(encoded.as_bytes());
                out.push(b'"');
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"model\":");
    write_json_str(&mut out, &req.model);
    if req.usage_written() {
        out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
        write_u64(&mut out, req.prompt_tokens());
        out.extend_from_slice(b",\"total_tokens\":");
        write_u64(&mut out, req.prompt_tokens());
        out.push(b'}');
    }
    out.push(b'}');
    out
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
    write_json_str(out, id);
    out.extend_from_slice(b",\"object\":\"model\",\"created\":");
    write_u64(out, created);
    out.extend_from_slice(b",\"owned_by\":");
    write_json_str(out, owned_by);
    out.push(b'}');
}

// ---------------------------------------------------------------------------------------------
// Streaming

/// When the frames of a synthetic reply are due: the same pacing for the mock upstream and the
/// gateway's built-in mock provider.
///
/// The first frame waits `ttft`; after that each token frame but the first waits `gap`; other
/// frames (finish, usage, `[DONE]`) follow at once. So the first token arrives after `ttft`
/// and the rest `gap` apart, as a real server's would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacing {
    /// Delay before the first frame.
    pub ttft: Duration,
    /// Delay between token frames (zero: unpaced).
    pub gap: Duration,
}

impl Pacing {
    /// Pacing from a token rate; a rate of 0 (or too small to express) means unpaced.
    pub fn from_rate(ttft: Duration, tokens_per_second: f64) -> Self {
        let gap = if tokens_per_second > 0.0 {
            Duration::try_from_secs_f64(1.0 / tokens_per_second).unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        };
        Self { ttft, gap }
    }

    /// How long to wait before writing a frame of `kind`, given whether it is the stream's
    /// first frame and how many token frames (this one included) have been generated.
    pub fn before(&self, kind: FrameKind, first_frame: bool, token_frames: u64) -> Duration {
        if first_frame {
            self.ttft
        } else if kind == FrameKind::Token && token_frames > 1 {
            self.gap
        } else {
            Duration::ZERO
        }
    }

    /// When a non-streaming reply of `tokens` tokens is due: when the last token would have
    /// been streamed.
    pub fn whole(&self, tokens: u64) -> Duration {
        let gaps = u32::try_from(tokens.saturating_sub(1)).unwrap_or(u32::MAX);
        self.ttft.saturating_add(self.gap.saturating_mul(gaps))
    }
}

/// What a stream frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Chat: the first delta of a choice (`role: assistant`).
    Role,
    /// One token of one choice.
    Token,
    /// The end of a choice (`finish_reason`).
    Finish,
    /// The usage chunk (`choices: []`), only with `include_usage`.
    Usage,
    /// An embeddings "stream": the whole body as one frame.
    Body,
    /// `data: [DONE]`.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Role { choice: u32 },
    Token { token: u64, choice: u32 },
    Finish { choice: u32 },
    Usage,
    Body,
    Done,
    End,
}

/// The SSE frames of a streamed response, one at a time, so the caller can pace them.
///
/// Chat: a role chunk per choice, one chunk per token (interleaved across choices: choice 0
/// token 0, choice 1 token 0, ...), a finish chunk per choice, the usage chunk when
/// `include_usage`, then `[DONE]`. Completions: the same without role chunks.
#[derive(Debug, Clone)]
pub struct SynthStream {
    req: SynthRequest,
    id: String,
    created: u64,
    /// `data: {"id":..,...,"choices":[`: written before every chunk's choices.
    prefix: Vec<u8>,
    /// What follows the choices: `]`, `"model"` for completions, `"usage":null`, `}\n\n`.
    suffix: Vec<u8>,
    phase: Phase,
    tokens_sent: u64,
}

impl SynthStream {
    /// A stream for `req` (chat or completions; an embeddings request yields its whole body as
    /// one frame, then `[DONE]`).
    pub fn new(req: &SynthRequest, id: &str, created: u64) -> SynthStream {
        let usage_null = req.include_usage && req.usage_written();
        let mut prefix = Vec::with_capacity(192 + id.len() + req.model.len());
        let mut suffix = Vec::with_capacity(32 + req.model.len());
        prefix.extend_from_slice(b"data: ");
        match req.endpoint {
            Endpoint::Completions => {
                write_envelope_start(&mut prefix, id, "text_completion", created);
                prefix.extend_from_slice(b",\"choices\":[");
                suffix.extend_from_slice(b"],\"model\":");
                write_json_str(&mut suffix, &req.model);
            }
            _ => {
                write_envelope_start(&mut prefix, id, "chat.completion.chunk", created);
                prefix.extend_from_slice(b",\"model\":");
                write_json_str(&mut prefix, &req.model);
                prefix.extend_from_slice(b",\"service_tier\":\"default\",\"system_fingerprint\":");
                write_json_str(&mut prefix, FINGERPRINT);
                prefix.extend_from_slice(b",\"choices\":[");
                suffix.push(b']');
            }
        }
        if usage_null {
            suffix.extend_from_slice(b",\"usage\":null");
        }
        suffix.extend_from_slice(b"}\n\n");
        let phase = match (&req.kind, req.endpoint) {
            (Kind::Embeddings(_), _) => Phase::Body,
            (Kind::Text(t), _) if t.choices == 0 => Phase::Usage,
            (Kind::Text(_), Endpoint::ChatCompletions) => Phase::Role { choice: 0 },
            (Kind::Text(_), _) => Phase::Token {
                token: 0,
                choice: 0,
            },
        };
        let mut stream = SynthStream {
            req: req.clone(),
            id: id.to_owned(),
            created,
            prefix,
            suffix,
            phase,
            tokens_sent: 0,
        };
        stream.phase = stream.settle(stream.phase);
        stream
    }

    /// Appends the next complete SSE frame to `out`; returns true if more frames follow. The
    /// last frame is `data: [DONE]\n\n` (returns false). Once finished, writes nothing and
    /// returns false.
    pub fn next_frame(&mut self, out: &mut Vec<u8>) -> bool {
        self.next_kind(out);
        self.phase != Phase::End
    }

    /// Like [`next_frame`](Self::next_frame), but says what the written frame was (`None`:
    /// the stream had already ended, nothing was written).
    pub fn next_kind(&mut self, out: &mut Vec<u8>) -> Option<FrameKind> {
        let Kind::Text(reply) = &self.req.kind else {
            return self.next_embeddings(out);
        };
        let chat = self.req.endpoint == Endpoint::ChatCompletions;
        let (kind, next) = match self.phase {
            Phase::Role { choice } => {
                out.extend_from_slice(&self.prefix);
                out.extend_from_slice(b"{\"index\":");
                write_u64(out, u64::from(choice));
                out.extend_from_slice(
                    b",\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\
                      \"logprobs\":null,\"finish_reason\":null}",
                );
                out.extend_from_slice(&self.suffix);
                let next = if choice + 1 < reply.choices {
                    Phase::Role { choice: choice + 1 }
                } else {
                    Phase::Token {
                        token: 0,
                        choice: 0,
                    }
                };
                (FrameKind::Role, next)
            }
            Phase::Token { token, choice } => {
                let (word, space) = reply.token(token);
                out.extend_from_slice(&self.prefix);
                if chat {
                    out.extend_from_slice(b"{\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"delta\":{\"content\":");
                    write_token(out, word, space);
                    out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}");
                } else {
                    out.extend_from_slice(b"{\"text\":");
                    write_token(out, word, space);
                    out.extend_from_slice(b",\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":null}");
                }
                out.extend_from_slice(&self.suffix);
                self.tokens_sent += 1;
                let next = if choice + 1 < reply.choices {
                    Phase::Token {
                        token,
                        choice: choice + 1,
                    }
                } else {
                    Phase::Token {
                        token: token + 1,
                        choice: 0,
                    }
                };
                (FrameKind::Token, next)
            }
            Phase::Finish { choice } => {
                out.extend_from_slice(&self.prefix);
                if chat {
                    out.extend_from_slice(b"{\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"delta\":{},\"logprobs\":null,\"finish_reason\":");
                } else {
                    out.extend_from_slice(b"{\"text\":\"\",\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
                }
                write_json_str(out, reply.finish.as_str());
                out.push(b'}');
                out.extend_from_slice(&self.suffix);
                let next = if choice + 1 < reply.choices {
                    Phase::Finish { choice: choice + 1 }
                } else {
                    Phase::Usage
                };
                (FrameKind::Finish, next)
            }
            Phase::Usage => {
                if chat {
                    // The chunk envelope with no choices, then the usage in place of `null`.
                    out.extend_from_slice(&self.prefix);
                    out.extend_from_slice(b"],\"usage\":");
                    write_chat_usage(out, &self.req);
                } else {
                    out.extend_from_slice(b"data: ");
                    write_envelope_start(out, &self.id, "text_completion", self.created);
                    out.extend_from_slice(b",\"model\":");
                    write_json_str(out, &self.req.model);
                    out.extend_from_slice(b",\"usage\":");
                    write_completions_usage(out, &self.req);
                    out.extend_from_slice(b",\"choices\":[]");
                }
                out.extend_from_slice(b"}\n\n");
                (FrameKind::Usage, Phase::Done)
            }
            Phase::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                (FrameKind::Done, Phase::End)
            }
            Phase::Body | Phase::End => return None,
        };
        self.phase = self.settle(next);
        Some(kind)
    }

    fn next_embeddings(&mut self, out: &mut Vec<u8>) -> Option<FrameKind> {
        match self.phase {
            Phase::Body => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&response_body(&self.req, &self.id, self.created));
                out.extend_from_slice(b"\n\n");
                self.phase = Phase::Done;
                Some(FrameKind::Body)
            }
            Phase::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.phase = Phase::End;
                Some(FrameKind::Done)
            }
            _ => None,
        }
    }

    /// Skips phases that have nothing to write (tokens past the reply's end, a usage chunk
    /// nobody asked for).
    fn settle(&self, phase: Phase) -> Phase {
        let Kind::Text(reply) = &self.req.kind else {
            return phase;
        };
        let phase = match phase {
            Phase::Token { token, .. } if token >= reply.tokens => Phase::Finish { choice: 0 },
            other => other,
        };
        match phase {
            Phase::Usage if !(self.req.include_usage && self.req.usage_written()) => Phase::Done,
            other => other,
        }
    }

    /// Token frames written so far (over all choices).
    pub fn token_frames_sent(&self) -> u64 {
        self.tokens_sent
    }

    /// True once `[DONE]` was written.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::End
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value, tokens: Option<u64>) -> SynthRequest {
        SynthRequest::parse(
            Endpoint::ChatCompletions,
            body.to_string().as_bytes(),
            tokens,
        )
        .unwrap()
    }

    fn frames(req: &SynthRequest) -> Vec<(FrameKind, String)> {
        let mut s = SynthStream::new(req, "chatcmpl-1", 1700000000);
        let mut out = Vec::new();
        let mut frames = Vec::new();
        loop {
            out.clear();
            let Some(kind) = s.next_kind(&mut out) else {
                break;
            };
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(
                text.starts_with("data: ") && text.ends_with("\n\n"),
                "{text}"
            );
            frames.push((kind, text));
        }
        assert!(s.is_finished());
        frames
    }

    fn data_json(frame: &str) -> Value {
        let data = frame
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    fn bad(endpoint: Endpoint, body: &str) -> (String, Option<&'static str>) {
        match SynthRequest::parse(endpoint, body.as_bytes(), None) {
            Err(SynthError::BadRequest { message, param }) => (message, param),
            Ok(r) => panic!("{body} was accepted: {r:?}"),
        }
    }

    #[test]
    fn chat_body_is_openai_shape_byte_for_byte() {
        let req = chat(
            json!({"model":"gpt-x","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":"hello  \"big\"\n world"}
            ]}),
            None,
        );
        // (4 + 2) + (4 + 3) + 3
        assert_eq!(req.prompt_tokens(), 16);
        assert_eq!(req.completion_tokens(), 3);
        let body = String::from_utf8(response_body(&req, "chatcmpl-1", 42)).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"id":"chatcmpl-1","object":"chat.completion","created":42,"model":"gpt-x","#,
                r#""choices":[{"index":0,"message":{"role":"assistant","content":"hello \"big\" world","#,
                r#""refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"#,
                r#""usage":{"prompt_tokens":16,"completion_tokens":3,"total_tokens":19,"#,
                r#""prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"#,
                r#""completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"#,
                r#""accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"#,
                r#""service_tier":"default","system_fingerprint":"fp_sluice_mock"}"#
            )
        );
    }

    #[test]
    fn chat_stream_with_usage_is_openai_shape() {
        let req = chat(
            json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
                   "messages":[{"role":"user","content":"a b"}]}),
            None,
        );
        let f = frames(&req);
        let kinds: Vec<FrameKind> = f.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                FrameKind::Role,
                FrameKind::Token,
                FrameKind::Token,
                FrameKind::Finish,
                FrameKind::Usage,
                FrameKind::Done
            ]
        );
        let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","service_tier":"default","system_fingerprint":"fp_sluice_mock","choices":["#;
        let expected = [
            format!(
                r#"{head}{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
            format!(
                r#"{head}{{"index":0,"delta":{{"content":"a "}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
            format!(
                r#"{head}{{"index":0,"delta":{{"content":"b"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
            format!(
                r#"{head}{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
            ),
            format!(
                r#"{head}],"usage":{{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#
            ),
            "data: [DONE]".to_owned(),
        ];
        for ((_, got), want) in f.iter().zip(&expected) {
            assert_eq!(got, &format!("{want}\n\n"));
        }
        for (_, frame) in &f[..f.len() - 1] {
            data_json(frame);
        }
    }

    #[test]
    fn chat_stream_without_usage_has_no_usage_key() {
        let req = chat(
            json!({"model":"m","stream":true,"messages":[{"role":"user","content":"x y z"}]}),
            None,
        );
        let f = frames(&req);
        assert_eq!(f.len(), 1 + 3 + 1 + 1);
        for (kind, frame) in &f {
            assert!(!frame.contains("usage"), "{frame}");
            if *kind != FrameKind::Done {
                let v = data_json(frame);
                assert_eq!(v["object"], "chat.completion.chunk");
                assert_eq!(v["choices"].as_array().unwrap().len(), 1);
            }
        }
        // include_usage: false is the same as absent.
        let req = chat(
            json!({"model":"m","stream":true,"stream_options":{"include_usage":false},
                   "messages":[{"role":"user","content":"x y z"}]}),
            None,
        );
        assert!(frames(&req).iter().all(|(_, f)| !f.contains("usage")));
    }

    #[test]
    fn stream_deltas_concatenate_to_the_non_streaming_content() {
        for (content, tokens) in [
            (json!("one two  three\tfour"), None),
            (json!("one two three"), Some(7)),
            (json!(""), None),
            (json!("   "), Some(3)),
            (
                json!([{"type":"text","text":"look at"},{"type":"image_url","image_url":{"url":"x"}},
                       {"type":"text","text":"this \"pic\" ü 🦀"}]),
                None,
            ),
        ] {
            let body = json!({"model":"m","stream":true,"messages":[
                {"role":"user","content":"earlier message"},
                {"role":"assistant","content":"reply"},
                {"role":"user","content":content}]});
            let req = chat(body, tokens);
            let whole: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
            let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
            assert_eq!(content, req.reply_text());
            let mut streamed = String::new();
            for (kind, frame) in frames(&req) {
                if kind == FrameKind::Token {
                    streamed.push_str(
                        data_json(&frame)["choices"][0]["delta"]["content"]
                            .as_str()
                            .unwrap(),
                    );
                }
            }
            assert_eq!(streamed, content);
            assert_eq!(
                content.split(' ').count() as u64,
                whole["usage"]["completion_tokens"].as_u64().unwrap()
            );
        }
    }

    #[test]
    fn echo_uses_last_user_message_and_filler() {
        let req = chat(
            json!({"model":"m","messages":[{"role":"user","content":"first"},
                   {"role":"user","content":"second one"},{"role":"assistant","content":"x"}]}),
            None,
        );
        assert_eq!(req.reply_text(), "second one");
        let req = chat(
            json!({"model":"m","messages":[{"role":"system","content":"only system"}]}),
            None,
        );
        assert_eq!(req.reply_text(), FILLER.join(" "));
        assert_eq!(req.prompt_tokens(), 4 + 2 + 3);
    }

    #[test]
    fn fixed_token_count_cycles_through_the_words() {
        let req = chat(
            json!({"model":"m","messages":[{"role":"user","content":"a b c"}]}),
            Some(7),
        );
        assert_eq!(req.reply_text(), "a b c a b c a");
        assert_eq!(req.completion_tokens(), 7);
        assert_eq!(req.finish_reason(), Some(FinishReason::Stop));
        let req = chat(
            json!({"model":"m","messages":[{"role":"user","content":"a b c"}]}),
            Some(0),
        );
        assert_eq!(req.reply_text(), "");
        assert_eq!(
            frames(&req)
                .iter()
                .filter(|(k, _)| *k == FrameKind::Token)
                .count(),
            0
        );
    }

    #[test]
    fn max_tokens_truncates_with_length() {
        let msgs = json!([{"role":"user","content":"one two three four five six seven"}]);
        let req = chat(json!({"model":"m","max_tokens":5,"messages":msgs}), None);
        assert_eq!(req.reply_text(), "one two three four five");
        assert_eq!(req.finish_reason(), Some(FinishReason::Length));
        let v: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 5);
        // max_completion_tokens wins over max_tokens.
        let req = chat(
            json!({"model":"m","max_tokens":2,"max_completion_tokens":10,"messages":msgs}),
            Some(30),
        );
        assert_eq!(req.completion_tokens(), 10);
        assert_eq!(req.finish_reason(), Some(FinishReason::Length));
        // Exactly at the cap is a normal stop.
        let req = chat(json!({"model":"m","max_tokens":7,"messages":msgs}), None);
        assert_eq!(req.finish_reason(), Some(FinishReason::Stop));
        let f = frames(&chat(
            json!({"model":"m","stream":true,"max_tokens":2,"messages":msgs}),
            None,
        ));
        assert!(f[f.len() - 2].1.contains(r#""finish_reason":"length""#));
    }

    #[test]
    fn several_choices() {
        let req = chat(
            json!({"model":"m","n":3,"stream":true,"stream_options":{"include_usage":true},
                   "messages":[{"role":"user","content":"p q"}]}),
            None,
        );
        assert_eq!(req.completion_tokens(), 6);
        let v: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(c["index"], i);
            assert_eq!(c["message"]["content"], "p q");
        }
        let f = frames(&req);
        let order: Vec<(FrameKind, u64, String)> = f
            .iter()
            .filter(|(k, _)| matches!(k, FrameKind::Role | FrameKind::Token | FrameKind::Finish))
            .map(|(k, frame)| {
                let v = data_json(frame);
                let c = &v["choices"][0];
                (
                    *k,
                    c["index"].as_u64().unwrap(),
                    c["delta"]["content"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect();
        let expected: Vec<(FrameKind, u64, String)> = [
            (FrameKind::Role, 0, ""),
            (FrameKind::Role, 1, ""),
            (FrameKind::Role, 2, ""),
            (FrameKind::Token, 0, "p "),
            (FrameKind::Token, 1, "p "),
            (FrameKind::Token, 2, "p "),
            (FrameKind::Token, 0, "q"),
            (FrameKind::Token, 1, "q"),
            (FrameKind::Token, 2, "q"),
            (FrameKind::Finish, 0, "-"),
            (FrameKind::Finish, 1, "-"),
            (FrameKind::Finish, 2, "-"),
        ]
        .into_iter()
        .map(|(k, i, s)| (k, i, s.to_owned()))
        .collect();
        assert_eq!(order, expected);
        let usage = data_json(&f[f.len() - 2].1);
        assert_eq!(usage["usage"]["completion_tokens"], 6);
        let mut s = SynthStream::new(&req, "i", 1);
        let mut out = Vec::new();
        while s.next_frame(&mut out) {}
        assert_eq!(s.token_frames_sent(), 6);
        assert!(out.ends_with(b"data: [DONE]\n\n"));
        // Finished: nothing more.
        let len = out.len();
        assert!(!s.next_frame(&mut out));
        assert_eq!(out.len(), len);
    }

    #[test]
    fn completions_shapes() {
        let req = SynthRequest::parse(
            Endpoint::Completions,
            br#"{"model":"inst","prompt":"say this please"}"#,
            None,
        )
        .unwrap();
        assert_eq!(req.prompt_tokens(), 3);
        let body = String::from_utf8(response_body(&req, "cmpl-1", 5)).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"id":"cmpl-1","object":"text_completion","created":5,"model":"inst","#,
                r#""choices":[{"text":"say this please","index":0,"logprobs":null,"finish_reason":"stop"}],"#,
                r#""usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}"#
            )
        );
        let req = SynthRequest::parse(
            Endpoint::Completions,
            br#"{"model":"inst","prompt":"a b","stream":true,"stream_options":{"include_usage":true}}"#,
            None,
        )
        .unwrap();
        let mut s = SynthStream::new(&req, "cmpl-1", 5);
        let mut out = Vec::new();
        while s.next_frame(&mut out) {}
        let text = String::from_utf8(out).unwrap();
        let h = r#"data: {"id":"cmpl-1","object":"text_completion","created":5,"choices":["#;
        let t = r#"],"model":"inst","usage":null}"#;
        assert_eq!(
            text,
            format!(
                "{h}{{\"text\":\"a \",\"index\":0,\"logprobs\":null,\"finish_reason\":null}}{t}\n\n\
                 {h}{{\"text\":\"b\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}}{t}\n\n\
                 {h}{{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}}{t}\n\n\
                 data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"inst\",\
                 \"usage\":{{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}},\"choices\":[]}}\n\n\
                 data: [DONE]\n\n"
            )
        );
        // Without include_usage: no usage key at all.
        let req = SynthRequest::parse(
            Endpoint::Completions,
            br#"{"model":"inst","prompt":["x y","a b c"],"stream":true,"max_tokens":0}"#,
            None,
        )
        .unwrap();
        assert_eq!(req.prompt_tokens(), 5);
        assert_eq!(req.finish_reason(), Some(FinishReason::Length));
        let f = frames(&req);
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|(_, f)| !f.contains("usage")));
        assert!(f[0]
            .1
            .contains(r#"{"text":"","index":0,"logprobs":null,"finish_reason":"length"}"#));
        // Token prompts.
        for (prompt, tokens) in [("[1,2,3]", 3), ("[[1,2],[3]]", 3)] {
            let body = format!(r#"{{"model":"m","prompt":{prompt}}}"#);
            let req = SynthRequest::parse(Endpoint::Completions, body.as_bytes(), None).unwrap();
            assert_eq!(req.prompt_tokens(), tokens);
            assert_eq!(req.reply_text(), FILLER.join(" "));
        }
    }

    #[test]
    fn embeddings_float_and_base64() {
        let req = SynthRequest::parse(
            Endpoint::Embeddings,
            br#"{"model":"e","input":["hello world","hello world","other"],"dimensions":8}"#,
            None,
        )
        .unwrap();
        assert_eq!(req.prompt_tokens(), 5);
        assert!(!req.stream);
        let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "e");
        assert_eq!(v["usage"], json!({"prompt_tokens":5,"total_tokens":5}));
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        let vecs: Vec<Vec<f64>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                assert_eq!(d["object"], "embedding");
                assert_eq!(d["index"], i);
                d["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        for v in &vecs {
            assert_eq!(v.len(), 8);
            let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        assert_eq!(vecs[0], vecs[1]);
        assert_ne!(vecs[0], vecs[2]);
        let key_order = String::from_utf8(response_body(&req, "x", 1)).unwrap();
        assert!(key_order.starts_with(
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":["#
        ));

        let req = SynthRequest::parse(
            Endpoint::Embeddings,
            br#"{"model":"e","input":["hello world","other"],"dimensions":8,"encoding_format":"base64"}"#,
            None,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
        for (i, want) in [&vecs[0], &vecs[2]].into_iter().enumerate() {
            let b64 = v["data"][i]["embedding"].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let floats: Vec<f64> = bytes
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            // The float encoding is the shortest text that round-trips the same f32.
            let want: Vec<f64> = want.iter().map(|x| f64::from(*x as f32)).collect();
            assert_eq!(floats, want);
        }
        // Default dimensions; token inputs.
        for (input, count, tokens) in [
            (r#""one""#, 1, 1),
            ("[1,2,3]", 1, 3),
            ("[[1,2],[3]]", 2, 3),
            (r#"["a b c", "d"]"#, 2, 4),
        ] {
            let body = format!(r#"{{"model":"e","input":{input}}}"#);
            let req = SynthRequest::parse(Endpoint::Embeddings, body.as_bytes(), None).unwrap();
            assert_eq!(req.embedding_inputs(), count, "{input}");
            assert_eq!(req.prompt_tokens(), tokens, "{input}");
            let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
            assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
        }
    }

    #[test]
    fn omit_usage_removes_usage_everywhere() {
        let mut req = chat(
            json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
                   "messages":[{"role":"user","content":"a"}]}),
            None,
        );
        req.omit_usage = true;
        assert!(!String::from_utf8(response_body(&req, "i", 1))
            .unwrap()
            .contains("usage"));
        let f = frames(&req);
        assert!(f
            .iter()
            .all(|(k, f)| *k != FrameKind::Usage && !f.contains("usage")));
        assert_eq!(f.last().unwrap().1, "data: [DONE]\n\n");
    }

    #[test]
    fn model_can_be_overwritten_and_is_escaped() {
        let mut req = chat(
            json!({"model":"m","messages":[{"role":"user","content":"a"}]}),
            None,
        );
        req.model = "we\"ird".to_owned();
        let v: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
        assert_eq!(v["model"], "we\"ird");
    }

    #[test]
    fn validation_errors_name_the_param() {
        use Endpoint::*;
        let cases: &[(Endpoint, &str, Option<&str>)] = &[
            (ChatCompletions, "[]", None),
            (ChatCompletions, "not json", None),
            (
                ChatCompletions,
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (ChatCompletions, r#"{"model":"m"}"#, Some("messages")),
            (
                ChatCompletions,
                r#"{"model":"m","messages":null}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":"hi"}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":[]}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":[1]}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
                Some("messages"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","n":0,"messages":[{"role":"user","content":"x"}]}"#,
                Some("n"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","n":9,"messages":[{"role":"user","content":"x"}]}"#,
                Some("n"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","n":"2","messages":[{"role":"user","content":"x"}]}"#,
                Some("n"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
                Some("max_tokens"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","max_completion_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
                Some("max_completion_tokens"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
                Some("max_tokens"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","max_tokens":"5","messages":[{"role":"user","content":"x"}]}"#,
                Some("max_tokens"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
                Some("stream"),
            ),
            (
                ChatCompletions,
                r#"{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#,
                Some("stream_options"),
            ),
            (Completions, r#"{"model":"m"}"#, Some("prompt")),
            (Completions, r#"{"model":"m","prompt":[]}"#, Some("prompt")),
            (
                Completions,
                r#"{"model":"m","prompt":{"a":1}}"#,
                Some("prompt"),
            ),
            (
                Completions,
                r#"{"model":"m","prompt":["a",1]}"#,
                Some("prompt"),
            ),
            (Embeddings, r#"{"model":"m"}"#, Some("input")),
            (Embeddings, r#"{"model":"m","input":""}"#, Some("input")),
            (Embeddings, r#"{"model":"m","input":[]}"#, Some("input")),
            (
                Embeddings,
                r#"{"model":"m","input":["a",""]}"#,
                Some("input"),
            ),
            (Embeddings, r#"{"model":"m","input":[[]]}"#, Some("input")),
            (Embeddings, r#"{"model":"m","input":5}"#, Some("input")),
            (
                Embeddings,
                r#"{"model":"m","input":"a","dimensions":0}"#,
                Some("dimensions"),
            ),
            (
                Embeddings,
                r#"{"model":"m","input":"a","dimensions":4097}"#,
                Some("dimensions"),
            ),
            (
                Embeddings,
                r#"{"model":"m","input":"a","dimensions":"8"}"#,
                Some("dimensions"),
            ),
            (
                Embeddings,
                r#"{"model":"m","input":"a","encoding_format":"hex"}"#,
                Some("encoding_format"),
            ),
            (
                Embeddings,
                r#"{"model":"m","input":"a","encoding_format":1}"#,
                Some("encoding_format"),
            ),
        ];
        for (endpoint, body, param) in cases {
            let (message, got) = bad(*endpoint, body);
            assert_eq!(got, *param, "{body}: {message}");
            assert!(!message.is_empty());
            // The error renders as an OpenAI body clients can parse.
            let e = SynthError::BadRequest {
                message,
                param: got,
            };
            let v: Value = serde_json::from_slice(&crate::error::openai_error_body(
                &e.to_string(),
                crate::error::INVALID_REQUEST,
                e.param(),
                None,
            ))
            .unwrap();
            assert_eq!(v["error"]["param"], json!(param));
        }
    }

    #[test]
    fn nulls_are_defaults() {
        let req = chat(
            json!({"model":"m","n":null,"max_tokens":null,"stream":null,"stream_options":null,
                   "messages":[{"role":"assistant","content":null,"tool_calls":[]},
                               {"role":"user","content":"hi"}]}),
            None,
        );
        assert_eq!(req.choices(), 1);
        assert!(!req.stream);
        let req = SynthRequest::parse(
            Endpoint::Embeddings,
            br#"{"model":"m","input":"a","dimensions":null,"encoding_format":null}"#,
            None,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    }

    #[test]
    fn model_objects() {
        assert_eq!(
            String::from_utf8(models_body(["a", "b\"c"], 7, "me")).unwrap(),
            r#"{"object":"list","data":[{"id":"a","object":"model","created":7,"owned_by":"me"},{"id":"b\"c","object":"model","created":7,"owned_by":"me"}]}"#
        );
        assert_eq!(
            String::from_utf8(models_body([], 7, "me")).unwrap(),
            r#"{"object":"list","data":[]}"#
        );
        assert_eq!(
            String::from_utf8(model_body("x", 1, "o")).unwrap(),
            r#"{"id":"x","object":"model","created":1,"owned_by":"o"}"#
        );
    }

    #[test]
    fn embeddings_stream_is_one_body_frame() {
        let req = SynthRequest::parse(Endpoint::Embeddings, br#"{"model":"m","input":"a"}"#, None)
            .unwrap();
        let f = frames(&req);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, FrameKind::Body);
        assert_eq!(data_json(&f[0].1)["object"], "list");
    }

    #[test]
    fn pacing() {
        let p = Pacing::from_rate(Duration::from_millis(100), 50.0);
        assert_eq!(p.gap, Duration::from_millis(20));
        assert_eq!(
            p.before(FrameKind::Role, true, 0),
            Duration::from_millis(100)
        );
        assert_eq!(p.before(FrameKind::Token, false, 1), Duration::ZERO);
        assert_eq!(
            p.before(FrameKind::Token, false, 2),
            Duration::from_millis(20)
        );
        assert_eq!(p.before(FrameKind::Done, false, 5), Duration::ZERO);
        assert_eq!(p.whole(5), Duration::from_millis(180));
        assert_eq!(p.whole(0), Duration::from_millis(100));
        assert_eq!(Pacing::from_rate(Duration::ZERO, 0.0), Pacing::default());
        assert_eq!(
            Pacing::from_rate(Duration::ZERO, 1e-300).gap,
            Duration::ZERO
        );
        // Absurd lengths saturate instead of overflowing.
        assert!(
            Pacing::from_rate(Duration::ZERO, 1e-6).whole(u64::MAX) > Duration::from_secs(1 << 50)
        );
    }
}
