//! A candidate usage extractor for the `usage_extract` bench: the production pre-check, then a
//! targeted scan instead of a parse.
//!
//! The scan walks the top-level object key by key, jumps over values it does not need
//! (strings with `memchr`, containers by counting brackets outside strings) and reads only
//! the integers of the `usage` object. It builds no tree and copies nothing. Unlike a parser
//! it does not validate what it skips, so it accepts some invalid JSON a parser rejects; that
//! is the price of its speed and the reason it is only a candidate.

use std::sync::LazyLock;

use memchr::{memchr2, memmem};
use sluice_proto_llm::usage::Usage;

const USAGE_KEY: &[u8] = b"\"usage\"";

/// Built once: building a searcher costs more than running it on a chunk.
static FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(USAGE_KEY));

/// Bytes that matter while skipping a container: quotes and brackets.
fn structural(b: u8) -> bool {
    matches!(b, b'"' | b'{' | b'}' | b'[' | b']')
}

/// Usage from an OpenAI chunk or response body, or `None`; agrees with
/// `sluice_proto_llm::usage::UsageExtractor::extract` on valid JSON.
pub fn scan_usage(json: &[u8]) -> Option<Usage> {
    if !may_have_usage(json) {
        return None;
    }
    let mut cur = Cursor { json, at: 0 };
    cur.expect(b'{')?;
    if cur.peek_ws()? == b'}' {
        return None;
    }
    loop {
        let key = cur.string()?;
        cur.expect(b':')?;
        if key == b"usage" {
            return cur.usage();
        }
        cur.skip_value()?;
        match cur.next_ws()? {
            b',' => {}
            _ => return None,
        }
    }
}

/// The same pre-check as production: a `"usage"` key whose value is not `null`.
fn may_have_usage(json: &[u8]) -> bool {
    FINDER.find_iter(json).any(|at| {
        let mut cur = Cursor {
            json,
            at: at + USAGE_KEY.len(),
        };
        cur.expect(b':').is_some() && !cur.rest_ws().starts_with(b"null")
    })
}

struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest_ws(&mut self) -> &'a [u8] {
        while matches!(self.json.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
        self.json.get(self.at..).unwrap_or_default()
    }

    fn peek_ws(&mut self) -> Option<u8> {
        self.rest_ws().first().copied()
    }

    fn next_ws(&mut self) -> Option<u8> {
        let b = self.peek_ws()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next_ws()? == want).then_some(())
    }

    /// A string's raw bytes (escapes left as they are), cursor after its closing quote.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            let rest = self.json.get(self.at..)?;
            let i = memchr2(b'"', b'\\', rest)?;
            if rest.get(i) == Some(&b'\\') {
                self.at += i + 2;
                continue;
            }
            let raw = self.json.get(start..self.at + i)?;
            self.at += i + 1;
            return Some(raw);
        }
    }

    /// Skip one value of any kind.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek_ws()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    let rest = self.json.get(self.at..)?;
                    let skip = rest.iter().position(|&b| structural(b))?;
                    self.at += skip;
                    match rest.get(skip)? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.at += 1;
                        }
                        _ => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                return Some(());
                            }
                        }
                    }
                }
            }
            _ => {
                // A number or a literal: up to the next delimiter.
                let rest = self.json.get(self.at..)?;
                let len = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                    .unwrap_or(rest.len());
                self.at += len;
                (len > 0).then_some(())
            }
        }
    }

    /// A non-negative integer value, or `None` (and the value skipped) for anything else.
    fn u64_value(&mut self) -> Option<Option<u64>> {
        self.rest_ws();
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(d) = self.json.get(self.at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        if self.at > start && !matches!(self.json.get(self.at), Some(b'.' | b'e' | b'E')) {
            return Some(Some(n));
        }
        self.at = start;
        self.skip_value()?;
        Some(None)
    }

    /// Walk an object, calling `field` for each key with the cursor on its value; `field`
    /// must consume the value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek_ws()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            field(self, key)?;
            match self.next_ws()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// One integer from a details object such as `prompt_tokens_details`; `null` reads as 0.
    fn detail(&mut self, name: &[u8]) -> Option<u64> {
        if self.peek_ws()? != b'{' {
            self.skip_value()?;
            return Some(0);
        }
        let mut found = 0;
        self.object(|cur, key| {
            if key == name {
                found = cur.u64_value()?.unwrap_or(0);
                Some(())
            } else {
                cur.skip_value()
            }
        })?;
        Some(found)
    }

    fn usage(&mut self) -> Option<Usage> {
        if self.peek_ws()? != b'{' {
            return None;
        }
        let (mut prompt, mut completion, mut total) = (None, None, None);
        let (mut cached, mut reasoning) = (0, 0);
        self.object(|cur, key| {
            match key {
                b"prompt_tokens" => prompt = cur.u64_value()?,
                b"completion_tokens" => completion = cur.u64_value()?,
                b"total_tokens" => total = cur.u64_value()?,
                b"prompt_tokens_details" => cached = cur.detail(b"cached_tokens")?,
                b"completion_tokens_details" => reasoning = cur.detail(b"reasoning_tokens")?,
                _ => cur.skip_value()?,
            }
            Some(())
        })?;
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let prompt_tokens = prompt.unwrap_or(0);
        let completion_tokens = completion.unwrap_or(0);
        Some(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: total.unwrap_or(prompt_tokens.saturating_add(completion_tokens)),
            cached_tokens: cached,
            reasoning_tokens: reasoning,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::corpus;
    use sluice_proto_llm::sse::SseFramer;
    use sluice_proto_llm::usage::UsageExtractor;

    #[test]
    fn agrees_with_the_production_extractor() {
        let mut inputs: Vec<Vec<u8>> = vec![
            corpus::CONTENT_CHUNK.to_vec(),
            corpus::USAGE_CHUNK.to_vec(),
            br#"{"choices":[],"usage" : { "prompt_tokens" : 1 , "completion_tokens":2 } }"#.to_vec(),
            br#"{"choices":null,"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10,"prompt_tokens_details":null}}"#.to_vec(),
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#.to_vec(),
            br#"{"object":"list","data":[{"embedding":[0.1,-2e-3]}],"usage":{"prompt_tokens":8,"total_tokens":8}}"#.to_vec(),
            br#"{"response":{"usage":{"prompt_tokens":1,"completion_tokens":2}}}"#.to_vec(),
            br#"{"choices":[{"delta":{"content":"\"usage\": {\"prompt_tokens\": 1}"}}],"usage":null}"#.to_vec(),
            br#"{"usage":"usage"}"#.to_vec(),
            br#"{"usage":[1,2]}"#.to_vec(),
            br#"{"usage":{}}"#.to_vec(),
            br#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#.to_vec(),
            br#"{"a":{"b":[{"c":"}]"}]},"usage":{"prompt_tokens":5,"completion_tokens":6,"completion_tokens_details":{"reasoning_tokens":4}}}"#.to_vec(),
            b"{\"usage\":{".to_vec(),
            Vec::new(),
        ];
        for fixture in [
            &include_bytes!("../../proto-llm/fixtures/openai_chat_include_usage.sse")[..],
            include_bytes!("../../proto-llm/fixtures/openai_keepalive_tool_calls.sse"),
            include_bytes!("../../proto-llm/fixtures/vllm_choices_null_usage.sse"),
        ] {
            let mut framer = SseFramer::new(1 << 20);
            framer.push(fixture);
            while let Some(frame) = framer.next_frame().unwrap() {
                if let Some(data) = frame.data() {
                    inputs.push(data.to_vec());
                }
            }
        }
        let mut extractor = UsageExtractor::new();
        let mut with_usage = 0;
        for input in &inputs {
            let expected = extractor.extract(input);
            with_usage += usize::from(expected.is_some());
            assert_eq!(
                scan_usage(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(with_usage >= 8, "{with_usage}");
    }
}
