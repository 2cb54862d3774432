//! Token usage from OpenAI-shaped JSON (stream chunks and whole response bodies).
//!
//! This runs on every relayed chunk, so it is built to cost nothing on chunks without usage: a
//! byte search decides whether a parse is needed at all, and the parse reuses one scratch
//! buffer and one simd-json tape instead of allocating per chunk.
//!
//! **Scope:** only the OpenAI Chat Completions / Completions / Embeddings `usage` object at the
//! top level. Responses API (`response.usage`) and Anthropic (`message.usage`, cumulative
//! `message_delta.usage`) have other shapes and semantics: `crate::track` reads them, on the
//! same reused parse buffers.

use std::fmt;
use std::sync::LazyLock;

use memchr::memmem;
use simd_json::prelude::*;
use simd_json::{Buffers, Tape};

/// Token counts reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Output tokens, reasoning tokens included.
    pub completion_tokens: u64,
    /// As reported, or `prompt_tokens + completion_tokens` when the upstream omits it.
    pub total_tokens: u64,
    /// `usage.prompt_tokens_details.cached_tokens` (0 when absent).
    pub cached_tokens: u64,
    /// `usage.completion_tokens_details.reasoning_tokens` (0 when absent).
    pub reasoning_tokens: u64,
}

/// The key as it appears on the wire; JSON strings cannot contain a raw `"`, so this only
/// matches a real `"usage"` token (a key, or a string value that happens to be "usage").
const USAGE_KEY: &[u8] = b"\"usage\"";

/// One searcher for the whole process (a `Finder` is ~300 bytes; every stream has an
/// extractor).
static USAGE_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(USAGE_KEY));

/// Reusable extractor. It holds a scratch buffer (simd-json parses in place and needs padding)
/// and the parse buffers, so a steady stream of chunks does not allocate.
pub struct UsageExtractor {
    scratch: Vec<u8>,
    buffers: Buffers,
    /// Kept empty between calls; only its allocation is reused.
    tape: Tape<'static>,
}

impl UsageExtractor {
    /// A new extractor; buffers grow to the largest document seen and stay that size.
    pub fn new() -> Self {
        Self {
            scratch: Vec::new(),
            buffers: Buffers::new(1024),
            tape: Tape(Vec::new()),
        }
    }

    /// Usage from an OpenAI `chat.completion.chunk` / completion chunk `data:` payload or a
    /// whole non-streaming response body.
    ///
    /// `Some` when the top level has a non-null `usage` object with `prompt_tokens` or
    /// `completion_tokens` (embeddings report only `prompt_tokens` and `total_tokens`). Where
    /// the usage sits does not matter: servers put it on chunks with non-empty `choices` or
    /// with `choices: null` (vLLM), not only on the `choices: []` chunk the spec describes.
    /// `"usage": null`, a non-object `usage`, invalid JSON or a non-object document give
    /// `None`.
    pub fn extract(&mut self, json: &[u8]) -> Option<Usage> {
        if !self.may_have_usage(json) {
            return None;
        }
        self.with_tape(json, read_usage)
    }

    /// Parses `json` into the reused buffers and hands the document to `read`; `None` if it is
    /// not valid JSON. Other readers of the same parse machinery (`crate::track`) use this, so a
    /// tracker holds one set of buffers whatever the API.
    pub(crate) fn with_tape<T>(
        &mut self,
        json: &[u8],
        read: impl FnOnce(simd_json::tape::Value<'_, '_>) -> Option<T>,
    ) -> Option<T> {
        let len = json.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(json);
        self.scratch.resize(len + simd_json::INPUT_PADDING, 0);

        let mut tape: Tape<'_> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let value =
            match simd_json::fill_tape_padded(&mut self.scratch, len, &mut self.buffers, &mut tape)
            {
                Ok(()) => read(tape.as_value()),
                Err(_) => None,
            };
        self.tape = tape.reset();
        value
    }

    /// Cheap pre-check: is there a `"usage"` key whose value is not `null`? Every chunk of an
    /// `include_usage` stream carries `"usage":null`, so a bare search would parse them all.
    pub(crate) fn may_have_usage(&self, json: &[u8]) -> bool {
        USAGE_FINDER.find_iter(json).any(|at| {
            let after = json.get(at + USAGE_KEY.len()..).unwrap_or_default();
            let after = skip_ws(after);
            match after.split_first() {
                Some((b':', value)) => !skip_ws(value).starts_with(b"null"),
                // Not a key (e.g. the string value "usage"): nothing to read here.
                _ => false,
            }
        })
    }
}

impl Default for UsageExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UsageExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageExtractor")
            .field("scratch_capacity", &self.scratch.capacity())
            .finish_non_exhaustive()
    }
}

/// `bytes` without leading JSON whitespace.
pub(crate) fn skip_ws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

pub(crate) fn read_usage(doc: simd_json::tape::Value<'_, '_>) -> Option<Usage> {
    let usage = doc.get("usage")?;
    if !usage.is_object() {
        return None;
    }
    let prompt = usage.get_u64("prompt_tokens");
    let completion = usage.get_u64("completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    let prompt_tokens = prompt.unwrap_or(0);
    let completion_tokens = completion.unwrap_or(0);
    let detail = |details: &str, field: &str| {
        usage
            .get(details)
            .and_then(|d| d.get_u64(field))
            .unwrap_or(0)
    };
    Some(Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: usage
            .get_u64("total_tokens")
            .unwrap_or_else(|| prompt_tokens.saturating_add(completion_tokens)),
        cached_tokens: detail("prompt_tokens_details", "cached_tokens"),
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn extract(json: &str) -> Option<Usage> {
        UsageExtractor::new().extract(json.as_bytes())
    }

    #[test]
    fn spec_usage_chunk() {
        let chunk = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0}}}"#;
        assert_eq!(
            extract(chunk),
            Some(Usage {
                prompt_tokens: 19,
                completion_tokens: 10,
                total_tokens: 29,
                cached_tokens: 3,
                reasoning_tokens: 4
            })
        );
    }

    #[test]
    fn no_usage_or_null_usage() {
        assert_eq!(extract(r#"{"choices":[{"delta":{"content":"hi"}}]}"#), None);
        assert_eq!(extract(r#"{"choices":[],"usage":null}"#), None);
        assert_eq!(extract(r#"{"choices":[],"usage" :  null }"#), None);
        assert_eq!(extract(r#"{"usage":"usage"}"#), None);
        assert_eq!(extract(r#"{"usage":[1,2]}"#), None);
        assert_eq!(extract(r#"{"usage":{}}"#), None);
    }

    #[test]
    fn usage_word_in_content_is_not_usage() {
        let chunk = r#"{"choices":[{"delta":{"content":"\"usage\": {\"prompt_tokens\": 1}"}}],"usage":null}"#;
        assert_eq!(extract(chunk), None);
        let chunk = r#"{"choices":[{"delta":{"content":"usage"}}],"usage":null}"#;
        assert_eq!(extract(chunk), None);
    }

    #[test]
    fn nested_usage_is_not_top_level() {
        assert_eq!(
            extract(r#"{"response":{"usage":{"prompt_tokens":1,"completion_tokens":2}}}"#),
            None
        );
    }

    #[test]
    fn usage_on_chunk_with_choices() {
        let chunk = r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        assert_eq!(
            extract(chunk),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7,
                total_tokens: 12,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn usage_with_choices_null() {
        let chunk = r#"{"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":null,"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10,"prompt_tokens_details":null}}"#;
        assert_eq!(
            extract(chunk),
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 2,
                total_tokens: 10,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn total_defaults_to_sum() {
        assert_eq!(
            extract(r#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#)
                .map(|u| u.total_tokens),
            Some(7)
        );
    }

    #[test]
    fn embeddings_usage() {
        let body = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            extract(body),
            Some(Usage {
                prompt_tokens: 8,
                total_tokens: 8,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn whole_response_body() {
        let body = "{\n  \"id\": \"chatcmpl-2\",\n  \"object\": \"chat.completion\",\n  \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"Hi\"}, \"finish_reason\": \"stop\"}],\n  \"usage\": {\n    \"prompt_tokens\": 9,\n    \"completion_tokens\": 1,\n    \"total_tokens\": 10\n  }\n}\n";
        assert_eq!(extract(body).map(|u| u.total_tokens), Some(10));
    }

    #[test]
    fn invalid_input_is_none() {
        for bad in [
            r#"{"usage":{"prompt_tokens":1"#,
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":"2"}}"#,
            r#"["usage":{}]"#,
            r#"[{"usage":{"prompt_tokens":1}}]"#,
            "\"usage\"",
            "\"usage\":",
            "",
            "\u{0}\"usage\": {\u{ff}",
        ] {
            assert_eq!(extract(bad), None, "{bad}");
        }
        assert_eq!(
            UsageExtractor::new().extract(b"{\"usage\":{\"prompt_tokens\":1,\xff}"),
            None
        );
    }

    #[test]
    fn extractor_is_reusable_across_sizes_and_errors() {
        let mut ex = UsageExtractor::default();
        let big = format!(
            r#"{{"pad":"{}","usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#,
            "x".repeat(100_000)
        );
        assert_eq!(ex.extract(big.as_bytes()).map(|u| u.total_tokens), Some(2));
        assert_eq!(ex.extract(b"{\"usage\":{"), None);
        assert_eq!(
            ex.extract(br#"{"usage":{"prompt_tokens":4,"completion_tokens":1}}"#)
                .map(|u| u.total_tokens),
            Some(5)
        );
    }
}
