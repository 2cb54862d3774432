//! Tests of the generator, by API. Helpers shared by all of them live here.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use serde_json::Value;
use std::time::Duration;

mod messages;
mod openai;
mod responses;
mod tools;

fn parse(endpoint: Endpoint, body: &Value, tokens: Option<u64>) -> SynthRequest {
    SynthRequest::parse(endpoint, body.to_string().as_bytes(), tokens)
        .unwrap_or_else(|e| panic!("{body} was refused: {e}"))
}

fn chat(body: Value, tokens: Option<u64>) -> SynthRequest {
    parse(Endpoint::ChatCompletions, &body, tokens)
}

/// The `data:` frames of an OpenAI stream.
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

/// One `event:` frame: its kind, event name, data, and raw text.
#[derive(Debug)]
struct Event {
    kind: FrameKind,
    name: String,
    data: Value,
    raw: String,
}

/// Splits one `event: NAME\ndata: JSON\n\n` frame (or several, for an error) and checks that
/// each event's name matches its data's `type`.
fn split_events(kind: FrameKind, text: &str) -> Vec<Event> {
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let name = event.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap())
                .unwrap_or_else(|e| panic!("{e}: {frame}"));
            assert_eq!(data["type"], name.as_str(), "{frame}");
            Event {
                kind,
                name,
                data,
                raw: format!("{frame}\n\n"),
            }
        })
        .collect()
}

/// Every event of a Messages or Responses stream, each frame checked.
fn events(req: &SynthRequest, id: &str) -> Vec<Event> {
    let mut s = SynthStream::new(req, id, 1700000000);
    let mut out = Vec::new();
    let mut events = Vec::new();
    while let Some(kind) = s.next_kind(&mut out) {
        let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
        let mut split = split_events(kind, &text);
        assert_eq!(split.len(), 1, "{text}");
        events.append(&mut split);
    }
    assert!(s.is_finished());
    assert!(!s.next_frame(&mut out) && out.is_empty());
    events
}

/// The events of a stream failed after `after` token frames.
fn failed_events(req: &SynthRequest, id: &str, after: u64) -> (Vec<Event>, Vec<Event>) {
    let mut s = SynthStream::new(req, id, 1700000000);
    let mut out = Vec::new();
    let mut before = Vec::new();
    while s.token_frames_sent() < after {
        let kind = s.next_kind(&mut out).unwrap();
        let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
        before.append(&mut split_events(kind, &text));
    }
    assert_eq!(s.fail(&mut out), Some(FrameKind::Error));
    assert!(s.is_finished());
    let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
    let error = split_events(FrameKind::Error, &text);
    assert!(s.fail(&mut out).is_none() && out.is_empty());
    assert_eq!(s.next_kind(&mut out), None);
    (before, error)
}
