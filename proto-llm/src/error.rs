//! Error bodies in the shapes clients parse.
//!
//! The official SDKs read `error.message` / `error.type` to build their exceptions, so a body a
//! client cannot parse turns a clear refusal into a confusing crash. The bodies are written by
//! hand (no serde round trip) so building one cannot fail.

/// `type` for a malformed or unsupported request (HTTP 400, 404 on an unknown model, 413).
pub const INVALID_REQUEST: &str = "invalid_request_error";
/// `type` for a missing or wrong API key (HTTP 401).
pub const AUTHENTICATION: &str = "authentication_error";
/// `type` for a key that may not use this model or route (HTTP 403).
pub const PERMISSION: &str = "permission_error";
/// `type` for an unknown route or resource (HTTP 404).
pub const NOT_FOUND: &str = "not_found_error";
/// `type` for a rate limit hit (HTTP 429, with `Retry-After`).
pub const RATE_LIMIT: &str = "rate_limit_error";
/// `type` OpenAI uses when a budget or quota is spent (HTTP 429); clients do not retry it.
pub const INSUFFICIENT_QUOTA: &str = "insufficient_quota";
/// `type` for a failure on our side or the upstream's (HTTP 500/502/504).
pub const SERVER: &str = "server_error";
/// `type` Anthropic uses when it is overloaded (HTTP 529).
pub const OVERLOADED: &str = "overloaded_error";

/// `{"error":{"message":..,"type":..,"param":..,"code":..}}` with `param` / `code` `null` when
/// `None`: the OpenAI error shape.
pub fn openai_error_body(
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len() + error_type.len());
    out.extend_from_slice(b"{\"error\":{\"message\":");
    write_json_str(&mut out, message);
    out.extend_from_slice(b",\"type\":");
    write_json_str(&mut out, error_type);
    out.extend_from_slice(b",\"param\":");
    write_opt_json_str(&mut out, param);
    out.extend_from_slice(b",\"code\":");
    write_opt_json_str(&mut out, code);
    out.extend_from_slice(b"}}");
    out
}

/// `{"type":"error","error":{"type":..,"message":..}}`: the Anthropic Messages error shape.
pub fn anthropic_error_body(error_type: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + message.len() + error_type.len());
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":");
    write_json_str(&mut out, error_type);
    out.extend_from_slice(b",\"message\":");
    write_json_str(&mut out, message);
    out.extend_from_slice(b"}}");
    out
}

fn write_opt_json_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => write_json_str(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `s` as a JSON string literal. Only `"`, `\` and control characters need escaping;
/// everything else, non-ASCII included, is valid as is in UTF-8 JSON.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut clean_from = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(s.as_bytes().get(clean_from..i).unwrap_or_default());
        clean_from = i + 1;
        if escape.is_empty() {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(s.as_bytes().get(clean_from..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn openai_body_round_trips_awkward_messages() {
        let messages = [
            "plain",
            "",
            "quotes \" and backslash \\ and slash /",
            "new\nline\r\ttab\u{8}\u{c}",
            "control \u{0} \u{1f} \u{7f}",
            "unicode: héllo 日本語 🦀 \u{2028}",
        ];
        for message in messages {
            let body = openai_error_body(message, INVALID_REQUEST, Some("model"), Some("x\"y"));
            let parsed: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                parsed,
                json!({"error": {"message": message, "type": "invalid_request_error",
                                 "param": "model", "code": "x\"y"}}),
            );
        }
    }

    #[test]
    fn openai_body_nulls() {
        let body = openai_error_body("no", RATE_LIMIT, None, None);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"error":{"message":"no","type":"rate_limit_error","param":null,"code":null}}"#
        );
    }

    #[test]
    fn anthropic_body_round_trips() {
        let body = anthropic_error_body(OVERLOADED, "busy \"now\"\n🦀");
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy \"now\"\n🦀"}})
        );
    }

    #[test]
    fn control_characters_use_unicode_escapes() {
        let mut out = Vec::new();
        write_json_str(&mut out, "\u{1}\u{1b}");
        assert_eq!(out, br#""\u0001\u001b""#);
    }
}
