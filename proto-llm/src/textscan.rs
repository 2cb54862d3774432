//! Generated text out of a stream frame without parsing it.
//!
//! The usage tracker captures the text of every content frame (for the token count it needs
//! when an upstream reports no usage). Parsing each ~300-byte chunk costs about as much as the
//! rest of the relay; so does lexing the whole chunk. Every streaming API puts its text under a
//! member named `delta` (Chat `choices[].delta`, Anthropic `content_block_delta.delta`,
//! Responses `*.delta`), so [`DeltaText`] finds the `"delta"` members with one `memmem` search
//! and lexes only their values, usually a dozen bytes.
//!
//! It is exact on well-formed JSON. A match of `"delta"` whose first quote is not preceded by a
//! backslash is a member name: its closing quote is unescaped, so it cannot lie inside a
//! string, and neither can the opening one (a quote inside a string is escaped). Inside a
//! value the lexer skips every string as a whole, escapes included, and a string followed by
//! `:` is a member name. Malformed input yields whatever well-formed strings it holds; a string
//! with an invalid escape or invalid UTF-8 yields nothing.

use memchr::{memchr, memchr2, memmem};

use crate::usage::skip_ws;

/// A member to collect inside a `delta` object: its name, and how deep it is (members of the
/// `delta` object itself are at depth 1; each enclosing object or array adds one, so a Chat
/// tool call's `{"tool_calls":[{"function":{"arguments":..}}]}` is at depth 4).
pub type Member = (&'static [u8], u32);

/// Finds the text of `delta` members (see the module docs). Build once, reuse per frame.
pub struct DeltaText {
    key: memmem::Finder<'static>,
}

impl DeltaText {
    pub fn new() -> Self {
        Self {
            key: memmem::Finder::new(b"\"delta\""),
        }
    }

    /// Calls `sink` with the text of every `delta` member of `json`, in document order: the
    /// decoded string when the `delta` is a string (Responses), and when it is an object, the
    /// string values of its `members`. An escaped string arrives in pieces (the runs between
    /// escapes and each decoded character). Returns whether `json` has a `delta` member at all.
    pub fn text(&self, json: &[u8], members: &[Member], mut sink: impl FnMut(&str)) -> bool {
        let mut found = false;
        for at in self.key.find_iter(json) {
            let Some(value) = value_after_key(json, at + b"\"delta\"".len(), at) else {
                continue;
            };
            found = true;
            let offset = json.len() - value.len();
            match value.first() {
                Some(b'"') => {
                    if let Some(end) = string_end(json, offset + 1) {
                        decode(json.get(offset + 1..end).unwrap_or_default(), &mut sink);
                    }
                }
                Some(b'{') => string_members(value, members, &mut sink),
                _ => {}
            }
        }
        found
    }
}

impl Default for DeltaText {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DeltaText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeltaText")
    }
}

/// The value of the member whose name ends just before `after` (its opening quote at `quote`):
/// `None` unless the name's quote is unescaped and a `:` follows.
fn value_after_key(json: &[u8], after: usize, quote: usize) -> Option<&[u8]> {
    if quote > 0 && json.get(quote - 1) == Some(&b'\\') {
        return None;
    }
    match skip_ws(json.get(after..)?).split_first() {
        Some((b':', value)) => Some(skip_ws(value)),
        _ => None,
    }
}

/// Calls `sink` with the decoded text of every member matching one of `members` whose value is
/// a string, in document order, from the value starting `json` to its end (the lexer stops when
/// the nesting returns to the level it started at). Depths as [`Member`] counts them.
pub fn string_members(json: &[u8], members: &[Member], mut sink: impl FnMut(&str)) {
    let mut at = 0;
    let mut depth = 0u32;
    while let Some(open) = json.get(at..).and_then(|rest| memchr(b'"', rest)) {
        // Outside strings only structure, numbers and literals: track the nesting.
        for b in json.get(at..at + open).unwrap_or_default() {
            match b {
                b'{' | b'[' => depth = depth.saturating_add(1),
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
        let start = at + open + 1;
        let Some(end) = string_end(json, start) else {
            return;
        };
        at = end + 1;
        let Some(value) = value_after_key(json, at, start - 1) else {
            // A value, not a member name: go on after it.
            continue;
        };
        let name = json.get(start..end).unwrap_or_default();
        if value.first() != Some(&b'"') || !members.iter().any(|&(n, d)| n == name && d == depth) {
            // Not wanted, or not a string (null, an array, an object: the scan goes on
            // into it).
            continue;
        }
        let value_start = json.len() - value.len() + 1;
        let Some(value_end) = string_end(json, value_start) else {
            return;
        };
        decode(
            json.get(value_start..value_end).unwrap_or_default(),
            &mut sink,
        );
        at = value_end + 1;
    }
}

/// Index of the quote closing the string whose content starts at `start`.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    loop {
        let rest = json.get(at..)?;
        let hit = memchr2(b'"', b'\\', rest)?;
        match rest.get(hit) {
            Some(b'"') => return Some(at + hit),
            // A backslash escapes the next byte (for `\u` the rest are hex digits).
            _ => at += hit + 2,
        }
    }
}

/// Decodes the raw content of a JSON string. Nothing reaches `sink` if it is not valid (bad
/// escape, invalid UTF-8, lone surrogate), as a parser would reject the document.
fn decode(raw: &[u8], sink: &mut impl FnMut(&str)) {
    let Some(first) = memchr(b'\\', raw) else {
        if let Ok(s) = std::str::from_utf8(raw) {
            sink(s);
        }
        return;
    };
    if !valid_escapes(raw, first) {
        return;
    }
    let mut rest = raw;
    while let Some(slash) = memchr(b'\\', rest) {
        let (run, escape) = rest.split_at(slash);
        match std::str::from_utf8(run) {
            Ok(s) if !s.is_empty() => sink(s),
            Ok(_) => {}
            Err(_) => return,
        }
        let Some((ch, used)) = unescape(escape) else {
            return;
        };
        sink(ch.encode_utf8(&mut [0; 4]));
        rest = escape.get(used..).unwrap_or_default();
    }
    if let Ok(s) = std::str::from_utf8(rest) {
        if !s.is_empty() {
            sink(s);
        }
    }
}

/// Every escape from `first` on decodes, and every run between them is UTF-8: checked before
/// anything is handed out, so a bad string yields nothing rather than a prefix.
fn valid_escapes(raw: &[u8], first: usize) -> bool {
    if std::str::from_utf8(raw).is_err() {
        return false;
    }
    let mut rest = raw.get(first..).unwrap_or_default();
    while let Some(slash) = memchr(b'\\', rest) {
        let escape = rest.get(slash..).unwrap_or_default();
        let Some((_, used)) = unescape(escape) else {
            return false;
        };
        rest = escape.get(used..).unwrap_or_default();
    }
    true
}

/// The character an escape (starting at its backslash) stands for, and its length in bytes.
fn unescape(escape: &[u8]) -> Option<(char, usize)> {
    let ch = match escape.get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(escape.get(2..6)?)?;
            if !(0xD800..0xE000).contains(&unit) {
                return Some((char::from_u32(unit)?, 6));
            }
            // A surrogate: only a high one followed by an escaped low one makes a character.
            if unit >= 0xDC00 || escape.get(6..8)? != b"\\u" {
                return None;
            }
            let low = hex4(escape.get(8..12)?)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            return Some((char::from_u32(code)?, 12));
        }
        _ => return None,
    };
    Some((ch, 2))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(json: &str, members: &[Member]) -> String {
        let mut out = String::new();
        string_members(json.as_bytes(), members, |s| out.push_str(s));
        out
    }

    const CHAT: &[Member] = &[(b"content", 4), (b"arguments", 7)];
    const TOP: &[Member] = &[(b"content", 1)];

    #[test]
    fn finds_members_in_document_order() {
        let json = r#"{"id":"x","choices":[{"delta":{"content":"Hi "}},{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#;
        assert_eq!(scan(json, CHAT), "Hi {\"a\":1}");
    }

    #[test]
    fn text_that_looks_like_a_key_is_not_one() {
        // A value containing `"content":"x"` (escaped), a value equal to a key name, a member
        // name with an escaped quote.
        let json =
            r#"{"a":"say \"content\":\"no\"","type":"content","x\"content":"no","content":"yes"}"#;
        assert_eq!(scan(json, TOP), "yes");
    }

    #[test]
    fn non_string_values_are_skipped_and_searched() {
        let json = r#"{"content":null,"logprobs":{"content":[{"token":"t"}]},"content" : "ok"}"#;
        assert_eq!(scan(json, TOP), "ok");
    }

    #[test]
    fn members_at_other_depths_are_not_collected() {
        // OpenRouter-style reasoning details beside the reasoning text, a content array.
        let json = r#"{"choices":[{"delta":{"reasoning":"r","reasoning_details":[{"type":"reasoning.text","text":"r"}],"content":"c"},"logprobs":{"content":[{"token":"c"}]}}]}"#;
        let members: &[Member] = &[(b"reasoning", 4), (b"content", 4), (b"text", 3)];
        assert_eq!(scan(json, members), "rc");
    }

    fn delta(json: &str, members: &[Member]) -> (String, bool) {
        let mut out = String::new();
        let found = DeltaText::new().text(json.as_bytes(), members, |s| out.push_str(s));
        (out, found)
    }

    const DELTA: &[Member] = &[(b"content", 1), (b"text", 1), (b"arguments", 4)];

    #[test]
    fn delta_members_of_every_api() {
        // Chat, two choices, a tool call; what follows a delta is not read.
        let chat = r#"{"choices":[{"delta":{"content":"a"},"logprobs":{"content":[{"token":"a"}]}},{"delta":{"tool_calls":[{"function":{"arguments":"{\"q\":1}"}}]},"text":"no"}],"content":"no"}"#;
        assert_eq!(delta(chat, DELTA), ("a{\"q\":1}".to_owned(), true));
        // Anthropic: the delta's own `type` is not text.
        let messages =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert_eq!(delta(messages, DELTA), ("Hi".to_owned(), true));
        // Responses: the delta is the string.
        let responses = r#"{"type":"response.output_text.delta","item_id":"m","delta":"Yo \u00e9","sequence_number":3}"#;
        assert_eq!(delta(responses, &[]), ("Yo é".to_owned(), true));
        // No delta member: a string mentioning one, a member name ending in one.
        let none = r#"{"choices":[{"text":"say \"delta\": {}","x\"delta":{"content":"no"}}]}"#;
        assert_eq!(delta(none, DELTA), (String::new(), false));
        // Spaces around the colon (Python's json.dumps).
        let spaced = r#"{"choices": [{"delta" : {"content": "sp"}}]}"#;
        assert_eq!(delta(spaced, DELTA), ("sp".to_owned(), true));
    }

    #[test]
    fn escapes_decode_like_a_parser() {
        let json = r#"{"content":"a\nb\t\"q\"\\ \/ \u00e9 \ud83d\ude00 caf\u00E9 ☕"}"#;
        let expected: String = serde_json::from_str::<serde_json::Value>(json).unwrap()["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(scan(json, TOP), expected);
    }

    #[test]
    fn invalid_strings_yield_nothing() {
        for json in [
            r#"{"content":"bad \x escape"}"#,
            r#"{"content":"lone \ud83d surrogate"}"#,
            r#"{"content":"low first \ude00"}"#,
            r#"{"content":"short \u12"}"#,
            r#"{"content":"cut"#,
            r#"{"content":"#,
            r#"{"content""#,
            "",
        ] {
            assert_eq!(scan(json, TOP), "", "{json}");
        }
        let mut pieces = 0;
        string_members(b"{\"content\":\"\xff\xfe\"}", TOP, |_| pieces += 1);
        assert_eq!(pieces, 0);
    }

    #[test]
    fn agrees_with_serde_json_on_escaped_strings() {
        // Every escapable character and a spread of code points, one per value.
        let samples: Vec<String> = (0u32..0x3000)
            .step_by(7)
            .chain([0x1F600, 0x10FFFF, 0x22, 0x5C, 0x2F])
            .filter_map(char::from_u32)
            .map(|c| format!("x{c}y"))
            .collect();
        for s in samples {
            let json = serde_json::json!({ "content": s }).to_string();
            assert_eq!(scan(&json, TOP), s, "{json}");
            // And with every non-ASCII character written as \u escapes.
            let ascii: String = json
                .chars()
                .flat_map(|c| {
                    if c.is_ascii() {
                        vec![c.to_string()]
                    } else {
                        let mut units = [0u16; 2];
                        c.encode_utf16(&mut units)
                            .iter()
                            .map(|u| format!("\\u{u:04x}"))
                            .collect()
                    }
                })
                .collect();
            assert_eq!(scan(&ascii, TOP), s, "{ascii}");
        }
    }
}
