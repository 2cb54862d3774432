//! Writing compact JSON by hand: no serde round trip, so field order is exactly the order the
//! real servers use and writing can never fail.

use serde_json::value::RawValue;

pub(super) use crate::error::write_json_str;

pub(super) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub(super) fn write_f32(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"0.0");
    }
}

/// `s` as a JSON string, with a space inside the closing quote when `space`.
pub(super) fn write_token(out: &mut Vec<u8>, s: &str, space: bool) {
    write_json_str(out, s);
    if space {
        // Replace the closing quote: `"word"` becomes `"word "`.
        out.pop();
        out.extend_from_slice(b" \"");
    }
}

/// A string or `null`.
pub(super) fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A value the client sent, as it sent it, or `default` when it sent none.
pub(super) fn write_raw_or(out: &mut Vec<u8>, raw: Option<&RawValue>, default: &[u8]) {
    match raw {
        Some(raw) => out.extend_from_slice(raw.get().as_bytes()),
        None => out.extend_from_slice(default),
    }
}

/// Any JSON value, compact (used for schema `enum` / `const` values).
pub(super) fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    match serde_json::to_vec(v) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(_) => out.extend_from_slice(b"null"),
    }
}

/// An SSE frame with an event name: `event: NAME\ndata: ` (the caller writes the JSON and
/// [`end_frame`]).
pub(super) fn start_event(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
}

/// Ends an SSE frame.
pub(super) fn end_frame(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\n\n");
}
