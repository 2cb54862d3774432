//! What an SSE event of an OpenAI-style stream means to the load generator (sans-IO).
//!
//! The rules, kept cheap (a few `memmem` searches over the `data` payload, no JSON parse):
//! - **done**: the payload is exactly `[DONE]`.
//! - **error**: an `event: error` field, a key `"error"` anywhere in the payload (OpenAI and
//!   Sluice send `data: {"error": {...}}` mid-stream), or `"object": "error"` (vLLM).
//! - **content**: a key `"content"` or `"text"` whose value is a non-empty string, or a key
//!   `"tool_calls"` whose value is a non-empty array. The role chunk
//!   (`"content":""`), finish and usage chunks are not content. Inside a JSON string a quote is
//!   escaped (`\"`), so text that merely mentions `"content":"x"` never matches.
//!   `reasoning_content` does not count: `"content"` must be the whole key.
//! - anything else (role, finish, usage chunks, comments, keep-alives) is **other**.

use memchr::memmem::Finder;

/// One event's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Carries output (a token or more).
    Content,
    /// `data: [DONE]`.
    Done,
    /// The server reports a failure inside the stream.
    Error,
    Other,
}

/// Reusable classifier (its searchers are built once per worker).
pub struct Classifier {
    content: Finder<'static>,
    text: Finder<'static>,
    tool_calls: Finder<'static>,
    error: Finder<'static>,
    object: Finder<'static>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    pub fn new() -> Self {
        Classifier {
            content: Finder::new(b"\"content\""),
            text: Finder::new(b"\"text\""),
            tool_calls: Finder::new(b"\"tool_calls\""),
            error: Finder::new(b"\"error\""),
            object: Finder::new(b"\"object\""),
        }
    }

    /// Classifies one event from its `event` field and its `data` payload.
    pub fn classify(&self, event: Option<&[u8]>, data: Option<&[u8]>) -> EventKind {
        if event.is_some_and(|e| e == b"error") {
            return EventKind::Error;
        }
        let Some(data) = data else {
            return EventKind::Other;
        };
        if data == b"[DONE]" {
            return EventKind::Done;
        }
        if self.is_error(data) {
            return EventKind::Error;
        }
        let non_empty_string = |v: &[u8]| v.first() == Some(&b'"') && v.get(1) != Some(&b'"');
        let non_empty_array = |v: &[u8]| {
            v.first() == Some(&b'[')
                && v.get(1..).unwrap_or_default().trim_ascii_start().first() != Some(&b']')
        };
        if values(&self.content, data).any(non_empty_string)
            || values(&self.text, data).any(non_empty_string)
            || values(&self.tool_calls, data).any(non_empty_array)
        {
            EventKind::Content
        } else {
            EventKind::Other
        }
    }

    fn is_error(&self, data: &[u8]) -> bool {
        values(&self.error, data).next().is_some()
            || values(&self.object, data).any(|v| v.starts_with(b"\"error\""))
    }
}

/// For each occurrence of `"key"` followed by a colon: the bytes of its value onwards.
fn values<'a>(key: &'a Finder<'static>, data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let len = key.needle().len();
    key.find_iter(data).filter_map(move |at| {
        let after = data.get(at + len..)?.trim_ascii_start();
        match after.split_first() {
            Some((b':', value)) => Some(value.trim_ascii_start()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_proto_llm::sse::SseFramer;
    use sluice_proto_llm::synth::{Endpoint, SynthRequest, SynthStream};

    fn kind(data: &str) -> EventKind {
        Classifier::new().classify(None, Some(data.as_bytes()))
    }

    #[test]
    fn chat_chunks() {
        use EventKind::*;
        let role = r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}"#;
        let token = r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#;
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        let tool =
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#;
        assert_eq!(kind(role), Other);
        assert_eq!(kind(token), Content);
        assert_eq!(kind(finish), Other);
        assert_eq!(kind(usage), Other);
        assert_eq!(kind(tool), Content);
        assert_eq!(kind(r#"{"choices":[{"delta":{"tool_calls":[ ]}}]}"#), Other);
        assert_eq!(kind(r#"{"choices":[{"delta":{"content": "x"}}]}"#), Content);
        assert_eq!(kind(r#"{"choices":[{"delta":{"content":null}}]}"#), Other);
        assert_eq!(
            kind(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#),
            Other
        );
        // Quotes inside a string are escaped, so this is one (non-empty) content value.
        assert_eq!(
            kind(r#"{"choices":[{"delta":{"content":"\"content\":\"\""}}]}"#),
            Content
        );
        assert_eq!(
            kind(r#"{"choices":[{"delta":{"content":"","refusal":"\"content\":\"x\""}}]}"#),
            Other
        );
    }

    #[test]
    fn completions_done_and_errors() {
        use EventKind::*;
        let c = Classifier::new();
        assert_eq!(kind(r#"{"choices":[{"text":" a","index":0}]}"#), Content);
        assert_eq!(
            kind(r#"{"choices":[{"text":"","finish_reason":"length"}]}"#),
            Other
        );
        assert_eq!(kind("[DONE]"), Done);
        assert_eq!(kind("[DONE] "), Other);
        assert_eq!(
            kind(r#"{"error":{"message":"upstream failed","type":"server_error"}}"#),
            Error
        );
        assert_eq!(kind(r#"{"object":"error","message":"boom"}"#), Error);
        assert_eq!(
            kind(r#"{"choices":[{"delta":{"content":"error"}}]}"#),
            Content
        );
        assert_eq!(c.classify(Some(b"error"), Some(b"{}")), Error);
        assert_eq!(c.classify(Some(b"message"), None), Other);
        assert_eq!(c.classify(None, None), Other);
    }

    /// The mock's own streams, through the framer: every token frame is content, `[DONE]`
    /// ends them.
    #[test]
    fn synthetic_streams_classify_as_generated() {
        let c = Classifier::new();
        for (endpoint, body) in [
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c d"}]}"#,
            ),
            (
                Endpoint::Completions,
                r#"{"model":"m","stream":true,"prompt":"a b c d e"}"#,
            ),
        ] {
            let req = SynthRequest::parse(endpoint, body.as_bytes(), None).unwrap();
            let mut gen = SynthStream::new(&req, "id", 1);
            let mut wire = Vec::new();
            while gen.next_frame(&mut wire) {}
            let mut framer = SseFramer::new(1 << 20);
            framer.push(&wire);
            let mut kinds = Vec::new();
            while let Some(f) = framer.next_frame().unwrap() {
                let data: Option<Bytes> = f.data();
                kinds.push(c.classify(f.event(), data.as_deref()));
            }
            let content = kinds.iter().filter(|k| **k == EventKind::Content).count();
            assert_eq!(content as u64, req.completion_tokens(), "{endpoint:?}");
            assert_eq!(kinds.last(), Some(&EventKind::Done));
            assert!(!kinds.contains(&EventKind::Error));
        }
    }
}
