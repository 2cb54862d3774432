//! Translation between the three APIs Sluice serves and speaks: OpenAI Chat Completions,
//! OpenAI Responses and Anthropic Messages.
//!
//! The gateway translates when the client's API differs from the backend's:
//!
//! | client \ backend | Chat | Responses | Messages |
//! | --- | --- | --- | --- |
//! | Chat | native | - | [`chat_to_messages`] |
//! | Responses | [`responses_to_chat`] | native | [`responses_to_messages`] (via Chat) |
//! | Messages | [`messages_to_chat`] | - | native |
//!
//! Each direction has three parts: the request ([`request`]), the non-streaming response
//! ([`response`]) and the stream ([`stream`]). Errors have a fourth: [`error_body`] rewrites an
//! upstream error body into the client's shape.
//!
//! What has no equivalent on the other side is dropped and *reported* (the `dropped` lists), never
//! silently: the gateway logs it. What cannot be dropped without changing the meaning of the
//! request (`n > 1`, hosted tools, `previous_response_id`) is refused with a [`TranslateError`] the
//! gateway answers as a 400 in the client's format.
//!
//! **Architecture invariant:** pure functions and state machines over bytes. No clock (the caller
//! passes `created`), no randomness (ids derive from the upstream's ids or the caller's), no IO.

pub mod chat;
pub mod request;
pub mod response;
pub mod stream;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{anthropic_error_body, openai_error_body, INVALID_REQUEST};
use crate::track::Api;

pub use request::{chat_to_messages, messages_to_chat, responses_to_chat};
pub use response::{
    chat_response_to_messages, chat_response_to_responses, error_body, messages_response_to_chat,
};
pub use stream::{
    new_stream_translator, ChatToMessages, ChatToResponses, MessagesToChat, StreamTranslator,
};

/// A translated body and what could not be carried over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translated {
    /// The body to send on (compact JSON).
    pub body: Vec<u8>,
    /// Fields, blocks or items with no equivalent in the target API, for the gateway's log
    /// (`"logprobs"`, `"messages[].name"`, `"thinking"`, ...). Each name appears once.
    pub dropped: Vec<String>,
    /// Set by [`responses_to_chat`]: the request fields a Responses client expects echoed in
    /// the response object. Hand it to [`ResponseContext::echo`].
    pub echo: Option<ResponsesEcho>,
}

/// Whose fault a [`TranslateError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client's request is malformed or asks for something the backend's API cannot do
    /// (HTTP 400, `invalid_request_error`).
    InvalidRequest,
    /// The upstream's body is not what its API promises (HTTP 502).
    InvalidUpstream,
}

/// Why a body could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    kind: ErrorKind,
    message: String,
    param: Option<&'static str>,
}

impl TranslateError {
    /// A client error (400) about `param`.
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            kind: ErrorKind::InvalidRequest,
            message: message.into(),
            param,
        }
    }

    /// A feature the backend's API does not have (400).
    pub(crate) fn unsupported(what: &str, param: &'static str) -> Self {
        Self::invalid(
            format!("{what} is not supported by this backend"),
            Some(param),
        )
    }

    /// The upstream answered something unreadable (502).
    pub fn upstream(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidUpstream,
            message: message.into(),
            param: None,
        }
    }

    /// Whose fault it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The offending top-level request field, if any.
    pub fn param(&self) -> Option<&'static str> {
        self.param
    }

    /// The HTTP status to answer with: 400 or 502.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::InvalidUpstream => 502,
        }
    }

    /// The error body in the client's API format.
    pub fn body(&self, client: Api) -> Vec<u8> {
        let (openai_type, anthropic_type) = match self.kind {
            ErrorKind::InvalidRequest => (INVALID_REQUEST, INVALID_REQUEST),
            ErrorKind::InvalidUpstream => (crate::error::SERVER, "api_error"),
        };
        match client {
            Api::ChatCompletions | Api::Responses => {
                openai_error_body(&self.message, openai_type, self.param, None)
            }
            Api::Messages => anthropic_error_body(anthropic_type, &self.message),
        }
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

/// What the response and stream translators need besides the upstream's bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseContext {
    /// Id base used when the upstream gives none (for example the request id). Ids shown to
    /// the client are derived from the upstream's id: its prefix (`chatcmpl-`, `msg_`, `resp_`)
    /// is swapped for the client API's.
    pub id: String,
    /// Unix seconds, for `created` / `created_at`.
    pub created: u64,
    /// The model name to show the client.
    pub model: String,
    /// Chat clients: `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// Anthropic clients of a Chat upstream: the gateway's prompt-token estimate for
    /// `message_start` (the Chat usage only comes at the end).
    pub input_tokens_hint: Option<u64>,
    /// Responses clients: the request fields to echo.
    pub echo: ResponsesEcho,
}

impl ResponseContext {
    /// A context with the three fields every translator uses.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            created,
            model: model.into(),
            ..Self::default()
        }
    }
}

/// Request fields of a Responses request that the `response` object repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesEcho {
    /// `instructions`.
    pub instructions: Option<String>,
    /// `tools`, as sent.
    pub tools: Vec<Value>,
    /// `tool_choice`, default `"auto"`.
    pub tool_choice: Value,
    /// `parallel_tool_calls`, default `true`.
    pub parallel_tool_calls: bool,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `max_output_tokens`.
    pub max_output_tokens: Option<u64>,
    /// `text`, default `{"format":{"type":"text"}}`.
    pub text: Value,
    /// `reasoning`.
    pub reasoning: Option<Value>,
    /// `metadata`, default `{}`.
    pub metadata: Value,
    /// `user`.
    pub user: Option<String>,
}

impl Default for ResponsesEcho {
    fn default() -> Self {
        let mut format = Map::new();
        format.insert("type".to_owned(), Value::from("text"));
        let mut text = Map::new();
        text.insert("format".to_owned(), Value::Object(format));
        Self {
            instructions: None,
            tools: Vec::new(),
            tool_choice: Value::from("auto"),
            parallel_tool_calls: true,
            temperature: None,
            top_p: None,
            max_output_tokens: None,
            text: Value::Object(text),
            reasoning: None,
            metadata: Value::Object(Map::new()),
            user: None,
        }
    }
}

/// Translate a request body from the client's API to the backend's; `None` for a pair this
/// module does not translate (see the table in the module docs). `default_max_tokens` is used
/// when an Anthropic backend needs `max_tokens` and the client gave none.
pub fn translate_request(
    client: Api,
    upstream: Api,
    body: &[u8],
    upstream_model: &str,
    default_max_tokens: u64,
) -> Option<Result<Translated, TranslateError>> {
    match (client, upstream) {
        (Api::ChatCompletions, Api::Messages) => {
            Some(chat_to_messages(body, upstream_model, default_max_tokens))
        }
        (Api::Messages, Api::ChatCompletions) => Some(messages_to_chat(body, upstream_model)),
        (Api::Responses, Api::ChatCompletions) => Some(responses_to_chat(body, upstream_model)),
        (Api::Responses, Api::Messages) => Some(responses_to_messages(
            body,
            upstream_model,
            default_max_tokens,
        )),
        _ => None,
    }
}

/// Responses -> Messages, through Chat (no direct translator: the two meet in Chat's model of
/// messages and tools). What either step drops is reported.
pub fn responses_to_messages(
    body: &[u8],
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Translated, TranslateError> {
    let chat = responses_to_chat(body, upstream_model)?;
    let mut messages = chat_to_messages(&chat.body, upstream_model, default_max_tokens)?;
    // `stream_options` is Chat's own addition, not something the client lost.
    let mut dropped = chat.dropped;
    for d in messages.dropped.drain(..) {
        if d != "stream_options" && !dropped.contains(&d) {
            dropped.push(d);
        }
    }
    messages.dropped = dropped;
    messages.echo = chat.echo;
    Ok(messages)
}

/// Translate a non-streaming 2xx response body from the backend's API to the client's; `None`
/// for a pair this module does not translate.
pub fn translate_response(
    upstream: Api,
    client: Api,
    body: &[u8],
    ctx: &ResponseContext,
) -> Option<Result<Translated, TranslateError>> {
    match (upstream, client) {
        (Api::Messages, Api::ChatCompletions) => Some(messages_response_to_chat(body, ctx)),
        (Api::ChatCompletions, Api::Messages) => Some(chat_response_to_messages(body, ctx)),
        (Api::ChatCompletions, Api::Responses) => Some(chat_response_to_responses(body, ctx)),
        (Api::Messages, Api::Responses) => Some(
            messages_response_to_chat(body, ctx)
                .and_then(|chat| chat_response_to_responses(&chat.body, ctx)),
        ),
        _ => None,
    }
}

/// Names of what was dropped, each once, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dropped(Vec<String>);

impl Dropped {
    pub(crate) fn note(&mut self, what: &str) {
        if !self.0.iter().any(|seen| seen == what) {
            self.0.push(what.to_owned());
        }
    }

    /// Notes every key of an `extra` map (fields the target API does not have), except those
    /// whose value says nothing (`null`, `[]`, `{}`).
    pub(crate) fn note_extra(&mut self, prefix: &str, extra: &Map<String, Value>) {
        for (key, value) in extra {
            let empty = match value {
                Value::Null => true,
                Value::Array(items) => items.is_empty(),
                Value::Object(fields) => fields.is_empty(),
                _ => false,
            };
            if !empty {
                self.note(&format!("{prefix}{key}"));
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// `prefix` + the upstream id without its own API prefix, or `prefix` + `fallback`.
pub(crate) fn derive_id(prefix: &str, upstream: Option<&str>, fallback: &str) -> String {
    const PREFIXES: [&str; 6] = ["chatcmpl-", "msg_", "resp_", "cmpl-", "fc_", "call_"];
    let strip = |id: &str| -> String {
        let bare = PREFIXES
            .iter()
            .find_map(|p| id.strip_prefix(p))
            .unwrap_or(id);
        bare.to_owned()
    };
    let bare = upstream
        .map(strip)
        .filter(|bare| !bare.is_empty())
        .unwrap_or_else(|| strip(fallback));
    format!("{prefix}{bare}")
}

/// Parses a request body, blaming the top-level field that does not fit when it fails.
pub(crate) fn parse_request<T: DeserializeOwned>(
    body: &[u8],
    fields: &[&'static str],
) -> Result<T, TranslateError> {
    let err = match serde_json::from_slice::<T>(body) {
        Ok(parsed) => return Ok(parsed),
        Err(err) => err,
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(match serde_json::from_slice::<Value>(body) {
            Ok(_) => TranslateError::invalid("The request body must be a JSON object.", None),
            Err(e) => TranslateError::invalid(
                format!("We could not parse the JSON body of your request: {e}."),
                None,
            ),
        });
    };
    let detail = err.to_string();
    // serde names a missing required field in its message.
    if let Some(field) = fields
        .iter()
        .find(|f| detail.starts_with(&format!("missing field `{f}`")))
    {
        return Err(TranslateError::invalid(
            format!("Missing required parameter: '{field}'."),
            Some(field),
        ));
    }
    // Otherwise the culprit is the field whose removal makes the error go away or turn into
    // "missing field" for that same field. Error path only, so the re-parses do not matter.
    for field in fields {
        if !map.contains_key(*field) {
            continue;
        }
        let mut without = map.clone();
        without.remove(*field);
        let blamed = match T::deserialize(&Value::Object(without)) {
            Ok(_) => true,
            Err(e) => e
                .to_string()
                .starts_with(&format!("missing field `{field}`")),
        };
        if blamed {
            return Err(TranslateError::invalid(
                format!("Invalid value for '{field}': {}.", strip_position(&detail)),
                Some(field),
            ));
        }
    }
    Err(TranslateError::invalid(
        format!("Invalid request body: {detail}."),
        None,
    ))
}

/// serde_json's message without its " at line L column C" tail when the whole message is about
/// a blamed field (the position is kept when nothing could be blamed).
fn strip_position(detail: &str) -> &str {
    detail
        .rfind(" at line ")
        .and_then(|at| detail.get(..at))
        .unwrap_or(detail)
}

/// Compact JSON of a value built by this module. Serialising our own types into a `Vec` cannot
/// fail (no IO, string keys only); should it ever, the output is empty rather than torn.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Appends `event: {name}\ndata: {json}\n\n` (or just the data line when `name` is `None`).
pub(crate) fn write_sse<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: Option<&str>, data: &T) {
    let start = out.len();
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, data).is_err() {
        out.truncate(start);
        return;
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::{self, MessagesRequest};

    #[test]
    fn ids_swap_prefixes() {
        assert_eq!(derive_id("msg_", Some("chatcmpl-abc"), "x"), "msg_abc");
        assert_eq!(derive_id("chatcmpl-", Some("msg_01X"), "x"), "chatcmpl-01X");
        assert_eq!(derive_id("resp_", Some("weird"), "x"), "resp_weird");
        assert_eq!(derive_id("resp_", None, "req-1"), "resp_req-1");
        assert_eq!(derive_id("resp_", Some("chatcmpl-"), "req-1"), "resp_req-1");
    }

    #[test]
    fn parse_errors_blame_the_field() {
        let parse = |body: &str| {
            parse_request::<MessagesRequest>(body.as_bytes(), anthropic::REQUEST_FIELDS)
                .unwrap_err()
        };
        let err = parse(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#);
        assert_eq!(err.param(), Some("messages"));
        assert!(err.message().starts_with("Invalid value for 'messages'"));
        let err = parse(r#"{"model":"m","messages":[],"max_tokens":"many"}"#);
        assert_eq!(err.param(), Some("max_tokens"));
        let err = parse(r#"{"messages":[]}"#);
        assert_eq!(err.param(), Some("model"));
        assert_eq!(err.message(), "Missing required parameter: 'model'.");
        let err = parse("[1]");
        assert_eq!(
            (err.param(), err.message()),
            (None, "The request body must be a JSON object.")
        );
        let err = parse("{");
        assert!(err
            .message()
            .starts_with("We could not parse the JSON body"));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn error_bodies_follow_the_client_api() {
        let err = TranslateError::invalid("n must be 1", Some("n"));
        let openai: Value = serde_json::from_slice(&err.body(Api::ChatCompletions)).unwrap();
        assert_eq!(openai["error"]["param"], "n");
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        let anthropic: Value = serde_json::from_slice(&err.body(Api::Messages)).unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["message"], "n must be 1");
        let upstream = TranslateError::upstream("garbage");
        assert_eq!(upstream.status(), 502);
        let body: Value = serde_json::from_slice(&upstream.body(Api::Messages)).unwrap();
        assert_eq!(body["error"]["type"], "api_error");
    }
}
