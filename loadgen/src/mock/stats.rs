//! Counters summed over all workers, and the last POST, for `GET /mock/stats`.
//!
//! The mock is a test tool, not the gateway: shared atomics and one mutex (taken once per POST
//! and per stats request) are fine here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How much of the last POST body `last_body` keeps.
pub const LAST_BODY_MAX: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Stats {
    /// Every POST, whatever its path or outcome.
    pub requests: AtomicU64,
    pub chat: AtomicU64,
    pub completions: AtomicU64,
    pub embeddings: AtomicU64,
    /// POSTs to /v1/messages (Anthropic).
    pub messages: AtomicU64,
    /// POSTs to /v1/responses.
    pub responses: AtomicU64,
    /// Replies that were tool calls (streamed or not).
    pub tool_calls: AtomicU64,
    /// Streamed responses started (head written or about to be).
    pub streams: AtomicU64,
    /// Streams that reached `[DONE]`.
    pub streams_completed: AtomicU64,
    /// Streams cut by `--drop-after`.
    pub streams_dropped: AtomicU64,
    /// Streams stopped by `--stall-after`.
    pub streams_stalled: AtomicU64,
    /// Streams ended by an in-stream error (`--error-event-after`).
    pub streams_errored: AtomicU64,
    /// Clients that hung up before their response was complete.
    pub client_disconnects: AtomicU64,
    /// POSTs answered with `--fault-status`.
    pub faults: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    pub active_connections: AtomicU64,
    /// Token chunks written, over all streams.
    pub token_chunks_sent: AtomicU64,
    last: Mutex<Last>,
}

#[derive(Debug, Default)]
struct Last {
    model: Option<String>,
    path: Option<String>,
    authorization: Option<String>,
    body: Option<String>,
    headers: Vec<(String, String)>,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// Remembers a POST: its path, headers (lower-case names), body and model.
    pub fn record_post(&self, path: &str, headers: Vec<(String, String)>, body: &[u8]) {
        let model = sluice_proto_llm::request::inspect(body)
            .ok()
            .map(|i| i.model);
        let authorization = headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| value.clone());
        let kept = body.get(..LAST_BODY_MAX).unwrap_or(body);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Last {
            model,
            path: Some(path.to_owned()),
            authorization,
            body: Some(String::from_utf8_lossy(kept).into_owned()),
            headers,
        };
    }

    /// The stats document.
    pub fn to_json(&self) -> Vec<u8> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let mut headers = serde_json::Map::new();
        for (name, value) in &last.headers {
            // Repeated headers are joined the way HTTP allows for list values.
            let joined = match headers.get(name).and_then(|v| v.as_str()) {
                Some(prev) => format!("{prev}, {value}"),
                None => value.clone(),
            };
            headers.insert(name.clone(), joined.into());
        }
        let doc = serde_json::json!({
            "requests": get(&self.requests),
            "chat": get(&self.chat),
            "completions": get(&self.completions),
            "embeddings": get(&self.embeddings),
            "messages": get(&self.messages),
            "responses": get(&self.responses),
            "tool_calls": get(&self.tool_calls),
            "streams": get(&self.streams),
            "streams_completed": get(&self.streams_completed),
            "streams_dropped": get(&self.streams_dropped),
            "streams_stalled": get(&self.streams_stalled),
            "streams_errored": get(&self.streams_errored),
            "client_disconnects": get(&self.client_disconnects),
            "faults": get(&self.faults),
            "connections": get(&self.connections),
            "active_connections": get(&self.active_connections),
            "token_chunks_sent": get(&self.token_chunks_sent),
            "last_model": last.model,
            "last_path": last.path,
            "last_authorization": last.authorization,
            "last_body": last.body,
            "last_headers": headers,
        });
        doc.to_string().into_bytes()
    }
}

/// Counts an open connection for its lifetime.
pub struct ActiveConnection<'a>(&'a Stats);

impl<'a> ActiveConnection<'a> {
    pub fn new(stats: &'a Stats) -> Self {
        bump(&stats.connections);
        bump(&stats.active_connections);
        Self(stats)
    }
}

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn empty_stats() {
        let v: Value = serde_json::from_slice(&Stats::default().to_json()).unwrap();
        assert_eq!(v["requests"], 0);
        assert_eq!(v["last_model"], Value::Null);
        assert_eq!(v["last_body"], Value::Null);
        assert_eq!(v["last_headers"], serde_json::json!({}));
    }

    #[test]
    fn records_the_last_post() {
        let s = Stats::default();
        s.record_post("/x", vec![], b"{\"model\":\"first\"}");
        let body = format!(
            "{{\"model\":\"m\",\"pad\":\"{}\"}}",
            "é".repeat(LAST_BODY_MAX)
        );
        s.record_post(
            "/v1/chat/completions",
            vec![
                ("authorization".into(), "Bearer k".into()),
                ("x-a".into(), "1".into()),
                ("x-a".into(), "2".into()),
            ],
            body.as_bytes(),
        );
        {
            let _a = ActiveConnection::new(&s);
            let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
            assert_eq!(v["active_connections"], 1);
        }
        let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["connections"], 1);
        assert_eq!(v["active_connections"], 0);
        assert_eq!(v["last_model"], "m");
        assert_eq!(v["last_path"], "/v1/chat/completions");
        assert_eq!(v["last_authorization"], "Bearer k");
        assert_eq!(v["last_headers"]["x-a"], "1, 2");
        // Cut at 64 KiB, possibly inside a character (replaced, not an error).
        let kept = v["last_body"].as_str().unwrap();
        assert!(kept.starts_with("{\"model\":\"m\""));
        assert!(kept.len() <= LAST_BODY_MAX + 3);
        // Not JSON: no model.
        s.record_post("/v1/embeddings", vec![], b"garbage");
        let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["last_model"], Value::Null);
        assert_eq!(v["last_body"], "garbage");
    }
}
