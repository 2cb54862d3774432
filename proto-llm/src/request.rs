//! Inspection of an inbound request body without a typed parse of the whole request.
//!
//! The gateway needs five top-level fields to route, admit and meter a request; everything
//! else (messages, tools, ...) is the upstream's business and is skipped without being
//! materialised. The same reading works for OpenAI Chat Completions and Anthropic Messages
//! bodies, which share these field names.
//!
//! A field that appears twice at the top level is refused: JSON parsers disagree on which copy
//! wins, and a gateway that meters one `model` while the upstream serves the other is a
//! bypass.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::write_json_str;

/// What the gateway needs to know about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The `model` the client asked for, as sent (before any alias mapping).
    pub model: String,
    /// `stream: true`; absent or `null` means `false`.
    pub stream: bool,
    /// `stream_options.include_usage` as sent (only meaningful when `stream` is true).
    pub include_usage: bool,
    /// `max_completion_tokens` if present, else `max_tokens`.
    pub max_tokens: Option<u64>,
}

/// Why a request body was refused; every variant is the client's fault (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Not valid JSON; carries the parser's description.
    InvalidJson(String),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// `model` absent, `null` or empty.
    MissingModel,
    /// A known field has the wrong type or value, or appears twice.
    InvalidField {
        /// The field's name (`stream_options.include_usage` for the nested one).
        field: &'static str,
        /// What was wrong, for the client.
        message: String,
    },
}

impl RequestError {
    /// The `param` of an OpenAI error body: the offending field, when there is one.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::MissingModel => Some("model"),
            Self::InvalidField { field, .. } => Some(field),
            Self::InvalidJson(_) | Self::NotAnObject => None,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson(detail) => write!(
                f,
                "We could not parse the JSON body of your request: {detail}. \
                 The API expects a JSON object."
            ),
            Self::NotAnObject => f.write_str("The request body must be a JSON object."),
            Self::MissingModel => f.write_str("you must provide a model parameter"),
            Self::InvalidField { field, message } => {
                write!(f, "Invalid value for '{field}': {message}.")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Reads the fields the gateway needs and checks their types.
///
/// The body must be a JSON object; `model` a non-empty string; `stream` and
/// `stream_options.include_usage` booleans (`null` = absent); `stream_options` an object;
/// `max_tokens` / `max_completion_tokens` non-negative integers. Other fields are skipped
/// unread.
pub fn inspect(body: &[u8]) -> Result<RequestInfo, RequestError> {
    let top = TopLevel::parse(body)?;
    if let Some(field) = top.duplicate {
        return Err(duplicate(field));
    }
    let model = model_of(top.model)?;
    let stream = opt_bool(top.stream, "stream")?.unwrap_or(false);
    let include_usage = match non_null(top.stream_options) {
        Some(options) => include_usage_of(options)?,
        None => false,
    };
    let max_tokens = opt_u64(top.max_tokens, "max_tokens")?;
    let max_completion_tokens = opt_u64(top.max_completion_tokens, "max_completion_tokens")?;
    Ok(RequestInfo {
        model,
        stream,
        include_usage,
        max_tokens: max_completion_tokens.or(max_tokens),
    })
}

/// The body with the top-level `model` value replaced by `new_model`.
///
/// Works on the bytes: only the old value's bytes are swapped, so every other field, its order,
/// spacing and number formatting reach the upstream exactly as the client sent them.
pub fn rewrite_model(body: &[u8], new_model: &str) -> Result<Vec<u8>, RequestError> {
    let top = TopLevel::parse(body)?;
    if top.duplicate == Some("model") {
        return Err(duplicate("model"));
    }
    let raw = non_null(top.model).ok_or(RequestError::MissingModel)?;
    check_model(raw)?;
    let old = raw.get();
    let Range { start, end } = subslice_range(body, old.as_bytes()).ok_or_else(|| {
        // serde_json borrows raw values from the input; this cannot happen.
        RequestError::InvalidJson("could not locate the model value".to_owned())
    })?;
    let mut out = Vec::with_capacity(body.len() - old.len() + new_model.len() + 2);
    out.extend_from_slice(body.get(..start).unwrap_or_default());
    write_json_str(&mut out, new_model);
    out.extend_from_slice(body.get(end..).unwrap_or_default());
    Ok(out)
}

/// The body of a streamed Chat request with `stream_options.include_usage: true`, for a gateway
/// that must read the usage whatever the client asked (see `track::strip_injected_usage` for
/// the way back).
///
/// Works on the bytes like [`rewrite_model`]: an absent `stream_options` is inserted first in
/// the object, a `null` one replaced, an existing object re-written with `include_usage`
/// set and its other options kept; every other byte is unchanged.
pub fn force_include_usage(body: &[u8]) -> Result<Vec<u8>, RequestError> {
    const OPTIONS: &str = r#"{"include_usage":true}"#;
    let top = TopLevel::parse(body)?;
    if top.duplicate == Some("stream_options") {
        return Err(duplicate("stream_options"));
    }
    let (start, end, replacement) = match top.stream_options {
        Some(raw) => {
            let range = subslice_range(body, raw.get().as_bytes()).ok_or_else(|| {
                RequestError::InvalidJson("could not locate stream_options".to_owned())
            })?;
            let replacement = match non_null(Some(raw)) {
                None => OPTIONS.to_owned(),
                Some(options) => {
                    include_usage_of(options)?;
                    let mut map: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(options.get()).map_err(|e| {
                            RequestError::InvalidField {
                                field: "stream_options",
                                message: e.to_string(),
                            }
                        })?;
                    map.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
                    serde_json::to_string(&map).map_err(|e| RequestError::InvalidField {
                        field: "stream_options",
                        message: e.to_string(),
                    })?
                }
            };
            (range.start, range.end, replacement)
        }
        None => {
            // Insert right after the opening brace (`TopLevel::parse` saw an object).
            let open = body
                .iter()
                .position(|&b| b == b'{')
                .ok_or(RequestError::NotAnObject)?;
            let after = body.get(open + 1..).unwrap_or_default();
            let empty = after
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'}');
            let comma = if empty { "" } else { "," };
            (
                open + 1,
                open + 1,
                format!(r#""stream_options":{OPTIONS}{comma}"#),
            )
        }
    };
    let mut out = Vec::with_capacity(body.len() + replacement.len());
    out.extend_from_slice(body.get(..start).unwrap_or_default());
    out.extend_from_slice(replacement.as_bytes());
    out.extend_from_slice(body.get(end..).unwrap_or_default());
    Ok(out)
}

/// The prompt of a request as `(role, text)` pairs, for counting its tokens when the upstream
/// reports no usage. Reads every shape Sluice accepts: Chat `messages` (string or part
/// contents), Anthropic `system` and `messages` (text and tool blocks), Responses
/// `instructions` and `input` (string or items), Completions `prompt` and Embeddings `input`
/// (strings). Tool call arguments and tool results count as text; images and other media are
/// not counted. Returns an empty list for a body that is not a JSON object.
pub fn prompt_messages(body: &[u8]) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["system", "instructions"] {
        if let Some(v) = top.get(key) {
            push_text(&mut out, "system", v);
        }
    }
    for key in ["messages", "input", "prompt"] {
        match top.get(key) {
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    let role = item
                        .get("role")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(if key == "messages" { "user" } else { "" });
                    push_text(&mut out, role, item);
                }
            }
            Some(v) => push_text(&mut out, "user", v),
            None => {}
        }
    }
    out
}

/// Appends the text of `value` as one message: strings as they are, and in objects and arrays
/// the strings under the keys that carry text.
fn push_text(out: &mut Vec<(String, String)>, role: &str, value: &serde_json::Value) {
    let mut text = String::new();
    collect_text(value, &mut text, 0);
    if !text.is_empty() || matches!(value, serde_json::Value::Object(_)) {
        out.push((role.to_owned(), text));
    }
}

fn collect_text(value: &serde_json::Value, text: &mut String, depth: usize) {
    const TEXT_KEYS: [&str; 9] = [
        "content",
        "text",
        "tool_calls",
        "function",
        "arguments",
        "output",
        "input",
        "name",
        "thinking",
    ];
    if depth > 16 {
        return;
    }
    match value {
        serde_json::Value::String(s) => {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(s);
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_text(item, text, depth + 1);
            }
        }
        serde_json::Value::Object(map) => {
            for key in TEXT_KEYS {
                if let Some(v) = map.get(key) {
                    if key == "input" && v.is_object() {
                        // A tool_use block's input: count its JSON form.
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&v.to_string());
                    } else {
                        collect_text(v, text, depth + 1);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The top-level fields we care about, each as its raw JSON text borrowed from the body.
#[derive(Default)]
struct TopLevel<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    stream_options: Option<&'a RawValue>,
    max_tokens: Option<&'a RawValue>,
    max_completion_tokens: Option<&'a RawValue>,
    /// The first known field seen twice.
    duplicate: Option<&'static str>,
}

impl<'a> TopLevel<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, RequestError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let top = de
            .deserialize_map(TopVisitor)
            .and_then(|top| de.end().map(|()| top));
        top.map_err(|e| match e.classify() {
            // Our visitor accepts any value in any field, so a data error means the document
            // is not an object; it may still be broken JSON after the first byte.
            serde_json::error::Category::Data
                if serde_json::from_slice::<IgnoredAny>(body).is_ok() =>
            {
                RequestError::NotAnObject
            }
            _ => RequestError::InvalidJson(e.to_string()),
        })
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
        let mut top = TopLevel::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, name) = match key {
                Key::Model => (&mut top.model, "model"),
                Key::Stream => (&mut top.stream, "stream"),
                Key::StreamOptions => (&mut top.stream_options, "stream_options"),
                Key::MaxTokens => (&mut top.max_tokens, "max_tokens"),
                Key::MaxCompletionTokens => {
                    (&mut top.max_completion_tokens, "max_completion_tokens")
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.replace(map.next_value::<&'de RawValue>()?).is_some() {
                top.duplicate.get_or_insert(name);
            }
        }
        Ok(top)
    }
}

/// A top-level key, matched without allocating.
enum Key {
    Model,
    Stream,
    StreamOptions,
    MaxTokens,
    MaxCompletionTokens,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "model" => Key::Model,
            "stream" => Key::Stream,
            "stream_options" => Key::StreamOptions,
            "max_tokens" => Key::MaxTokens,
            "max_completion_tokens" => Key::MaxCompletionTokens,
            _ => Key::Other,
        })
    }
}

#[derive(Deserialize)]
struct StreamOptions<'a> {
    #[serde(borrow, default)]
    include_usage: Option<&'a RawValue>,
}

fn duplicate(field: &'static str) -> RequestError {
    RequestError::InvalidField {
        field,
        message: "the field appears more than once".to_owned(),
    }
}

fn non_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|raw| raw.get() != "null")
}

/// A short description of a JSON value's type for error messages.
fn kind(raw: &RawValue) -> String {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => "a string".to_owned(),
        Some(b'{') => "an object".to_owned(),
        Some(b'[') => "an array".to_owned(),
        Some(b't' | b'f') => "a boolean".to_owned(),
        Some(b'n') => "null".to_owned(),
        _ if text.len() <= 32 => text.to_owned(),
        _ => "a number".to_owned(),
    }
}

fn wrong_type(field: &'static str, expected: &str, raw: &RawValue) -> RequestError {
    RequestError::InvalidField {
        field,
        message: format!("expected {expected}, got {}", kind(raw)),
    }
}

fn check_model(raw: &RawValue) -> Result<(), RequestError> {
    match raw.get() {
        "\"\"" => Err(RequestError::MissingModel),
        text if text.starts_with('"') => Ok(()),
        _ => Err(wrong_type("model", "a string", raw)),
    }
}

fn model_of(raw: Option<&RawValue>) -> Result<String, RequestError> {
    let raw = non_null(raw).ok_or(RequestError::MissingModel)?;
    check_model(raw)?;
    serde_json::from_str(raw.get()).map_err(|_| wrong_type("model", "a string", raw))
}

fn opt_bool(raw: Option<&RawValue>, field: &'static str) -> Result<Option<bool>, RequestError> {
    non_null(raw)
        .map(|raw| serde_json::from_str(raw.get()).map_err(|_| wrong_type(field, "a boolean", raw)))
        .transpose()
}

fn opt_u64(raw: Option<&RawValue>, field: &'static str) -> Result<Option<u64>, RequestError> {
    non_null(raw)
        .map(|raw| {
            serde_json::from_str(raw.get())
                .map_err(|_| wrong_type(field, "a non-negative integer", raw))
        })
        .transpose()
}

fn include_usage_of(options: &RawValue) -> Result<bool, RequestError> {
    const FIELD: &str = "stream_options.include_usage";
    // A derived struct would also accept an array positionally, so check the shape first.
    if !options.get().starts_with('{') {
        return Err(wrong_type("stream_options", "an object", options));
    }
    let parsed: StreamOptions<'_> =
        serde_json::from_str(options.get()).map_err(|e| RequestError::InvalidField {
            field: FIELD,
            message: e.to_string(),
        })?;
    Ok(opt_bool(parsed.include_usage, FIELD)?.unwrap_or(false))
}

/// Where `part`, a slice borrowed from `whole`, sits in it.
pub(crate) fn subslice_range(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (whole.get(start..end) == Some(part)).then_some(start..end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn info(model: &str, stream: bool, include_usage: bool, max: Option<u64>) -> RequestInfo {
        RequestInfo {
            model: model.to_owned(),
            stream,
            include_usage,
            max_tokens: max,
        }
    }

    fn field_err(body: &str) -> (&'static str, String) {
        match inspect(body.as_bytes()) {
            Err(RequestError::InvalidField { field, message }) => (field, message),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn minimal_and_full_requests() {
        assert_eq!(
            inspect(br#"{"model":"gpt-4o","messages":[]}"#),
            Ok(info("gpt-4o", false, false, None))
        );
        let body = br#"{
            "messages": [{"role": "user", "content": "hi \"model\": \"x\""}],
            "model": "gpt-4o-mini",
            "stream": true,
            "stream_options": {"include_usage": true, "other": 1},
            "max_tokens": 100,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"model": 1}}}]
        }"#;
        assert_eq!(
            inspect(body),
            Ok(info("gpt-4o-mini", true, true, Some(100)))
        );
    }

    #[test]
    fn nulls_mean_absent() {
        let body = br#"{"model":"m","stream":null,"stream_options":null,"max_tokens":null,"max_completion_tokens":null}"#;
        assert_eq!(inspect(body), Ok(info("m", false, false, None)));
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":null}}"#;
        assert_eq!(inspect(body), Ok(info("m", true, false, None)));
    }

    #[test]
    fn max_completion_tokens_wins() {
        let body = br#"{"model":"m","max_tokens":10,"max_completion_tokens":20}"#;
        assert_eq!(inspect(body).unwrap().max_tokens, Some(20));
        let body = br#"{"model":"m","max_completion_tokens":0}"#;
        assert_eq!(inspect(body).unwrap().max_tokens, Some(0));
    }

    #[test]
    fn escaped_model_is_decoded() {
        assert_eq!(inspect(br#"{"model":"a\/b\u00e9"}"#).unwrap().model, "a/bé");
    }

    #[test]
    fn invalid_json() {
        for body in [
            &b""[..],
            b"{",
            b"{\"model\":\"m\"} x",
            b"{'model':'m'}",
            b"[1,2",
            b"\xff",
        ] {
            let err = inspect(body).unwrap_err();
            assert!(
                matches!(err, RequestError::InvalidJson(_)),
                "{body:?}: {err:?}"
            );
            assert!(err
                .to_string()
                .starts_with("We could not parse the JSON body of your request"));
            assert_eq!(err.param(), None);
        }
        let bad_utf8 = b"{\"model\":\"m\xff\"}";
        assert!(matches!(
            inspect(bad_utf8),
            Err(RequestError::InvalidJson(_))
        ));
    }

    #[test]
    fn not_an_object() {
        for body in [
            "[]",
            "[{\"model\":\"m\"}]",
            "\"model\"",
            "42",
            "null",
            " true ",
        ] {
            assert_eq!(
                inspect(body.as_bytes()),
                Err(RequestError::NotAnObject),
                "{body}"
            );
        }
        assert_eq!(RequestError::NotAnObject.param(), None);
    }

    #[test]
    fn missing_model() {
        for body in [
            "{}",
            r#"{"model":null}"#,
            r#"{"model":""}"#,
            r#"{"messages":[{"model":"m"}]}"#,
        ] {
            let err = inspect(body.as_bytes()).unwrap_err();
            assert_eq!(err, RequestError::MissingModel, "{body}");
            assert_eq!(err.param(), Some("model"));
            assert_eq!(err.to_string(), "you must provide a model parameter");
        }
    }

    #[test]
    fn invalid_fields() {
        let cases = [
            (r#"{"model":42}"#, "model"),
            (r#"{"model":["m"]}"#, "model"),
            (r#"{"model":"m","stream":"true"}"#, "stream"),
            (r#"{"model":"m","stream":1}"#, "stream"),
            (r#"{"model":"m","stream_options":true}"#, "stream_options"),
            (r#"{"model":"m","stream_options":[true]}"#, "stream_options"),
            (
                r#"{"model":"m","stream_options":{"include_usage":"yes"}}"#,
                "stream_options.include_usage",
            ),
            (
                r#"{"model":"m","stream_options":{"include_usage":true,"include_usage":false}}"#,
                "stream_options.include_usage",
            ),
            (r#"{"model":"m","max_tokens":-1}"#, "max_tokens"),
            (r#"{"model":"m","max_tokens":1.5}"#, "max_tokens"),
            (r#"{"model":"m","max_tokens":"10"}"#, "max_tokens"),
            (
                r#"{"model":"m","max_completion_tokens":18446744073709551616}"#,
                "max_completion_tokens",
            ),
            (
                r#"{"model":"m","max_tokens":10,"max_completion_tokens":-5}"#,
                "max_completion_tokens",
            ),
            (r#"{"model":"a","model":"b"}"#, "model"),
            (r#"{"model":"a","stream":false,"stream":true}"#, "stream"),
        ];
        for (body, field) in cases {
            let (got, message) = field_err(body);
            assert_eq!(got, field, "{body}: {message}");
            let err = RequestError::InvalidField {
                field: got,
                message,
            };
            assert_eq!(err.param(), Some(field));
            assert!(err
                .to_string()
                .starts_with(&format!("Invalid value for '{field}': ")));
        }
        assert_eq!(
            field_err(r#"{"model":"m","stream":"yes"}"#).1,
            "expected a boolean, got a string"
        );
        assert_eq!(
            field_err(r#"{"model":"m","max_tokens":-1}"#).1,
            "expected a non-negative integer, got -1"
        );
    }

    #[test]
    fn rewrite_preserves_everything_else() {
        let body =
            br#"{ "z": 1.50, "model" : "gpt-4o" , "messages":[{"model":"keep"}], "a":"\u00e9" }"#;
        let out = rewrite_model(body, "gpt-4o-2024-08-06").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{ "z": 1.50, "model" : "gpt-4o-2024-08-06" , "messages":[{"model":"keep"}], "a":"\u00e9" }"#
        );
    }

    #[test]
    fn rewrite_escapes_new_model() {
        let out = rewrite_model(br#"{"model":"m\"x"}"#, "we\"ird\\ 🦀\n").unwrap();
        assert_eq!(inspect(&out).unwrap().model, "we\"ird\\ 🦀\n");
    }

    #[test]
    fn force_include_usage_cases() {
        let force =
            |body: &str| String::from_utf8(force_include_usage(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            force(r#"{"model":"m","stream":true}"#),
            r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        assert_eq!(
            force(r#" { } "#),
            r#" {"stream_options":{"include_usage":true} } "#
        );
        assert_eq!(
            force(r#"{"model":"m", "stream_options" : null, "x": 1.50}"#),
            r#"{"model":"m", "stream_options" : {"include_usage":true}, "x": 1.50}"#
        );
        assert_eq!(
            force(
                r#"{"stream_options":{"include_obfuscation":false,"include_usage":false},"model":"m"}"#
            ),
            r#"{"stream_options":{"include_obfuscation":false,"include_usage":true},"model":"m"}"#
        );
        let forced =
            force_include_usage(br#"{"model":"m","stream":true,"stream_options":{}}"#).unwrap();
        assert!(inspect(&forced).unwrap().include_usage);
        for bad in [
            &br#"{"model":"m","stream_options":true}"#[..],
            br#"{"model":"m","stream_options":{"include_usage":"yes"}}"#,
            br#"{"stream_options":{},"stream_options":{}}"#,
            b"[]",
            b"{",
        ] {
            assert!(force_include_usage(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rewrite_errors() {
        assert_eq!(rewrite_model(b"{}", "x"), Err(RequestError::MissingModel));
        assert_eq!(rewrite_model(b"[]", "x"), Err(RequestError::NotAnObject));
        assert!(matches!(
            rewrite_model(b"{", "x"),
            Err(RequestError::InvalidJson(_))
        ));
        assert!(matches!(
            rewrite_model(br#"{"model":1}"#, "x"),
            Err(RequestError::InvalidField { field: "model", .. })
        ));
        assert!(matches!(
            rewrite_model(br#"{"model":"a","model":"b"}"#, "x"),
            Err(RequestError::InvalidField { field: "model", .. })
        ));
    }

    #[test]
    fn prompt_messages_of_every_api() {
        let chat = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}]}"#;
        let m = prompt_messages(chat);
        assert_eq!(m[0], ("system".to_owned(), "be brief".to_owned()));
        assert_eq!(m[1], ("user".to_owned(), "hi".to_owned()));
        assert!(m[2].1.contains("{\"a\":1}") && m[2].1.contains('f'));
        let anthropic = br#"{"model":"m","max_tokens":5,"system":"sys","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(
            prompt_messages(anthropic),
            vec![
                ("system".to_owned(), "sys".to_owned()),
                ("user".to_owned(), "hello".to_owned())
            ]
        );
        let responses = br#"{"model":"m","instructions":"inst","input":"question"}"#;
        assert_eq!(prompt_messages(responses).len(), 2);
        assert_eq!(
            prompt_messages(br#"{"model":"m","prompt":"p"}"#),
            vec![("user".to_owned(), "p".to_owned())]
        );
        assert!(prompt_messages(b"not json").is_empty());
    }
}
