//! The audit log: one JSON line per finished request, written by a dedicated thread.
//!
//! Workers hand a finished [`Record`] to a bounded crossbeam channel with `try_send`; they never
//! wait for the disk. When the channel is full the record is dropped and counted
//! (`sluice_audit_dropped_total`), because a slow disk must not slow the gateway. The writer
//! thread batches lines through a `BufWriter` and flushes whenever the channel runs empty, so
//! records reach the file within one scheduling delay of the request's end.
//!
//! Log rotation: after the file is moved away, SIGHUP (or any config reload) makes the writer
//! reopen its path, so the next line goes to a new file at the configured place.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One request, as the audit log records it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339 UTC time the request finished, millisecond precision.
    pub time: String,
    pub request_id: String,
    /// The consumer (API key owner) when known.
    pub consumer: Option<Arc<str>>,
    /// Inbound API: `chat.completions`, `responses`, `messages`, `completions`, `embeddings`.
    pub api: &'static str,
    /// The model the client asked for.
    pub model: String,
    /// The backend that served it (the last one tried when all failed).
    pub backend: Option<Arc<str>>,
    /// The model name sent upstream.
    pub upstream_model: Option<String>,
    /// The API spoken upstream (differs from `api` when translated).
    pub upstream_api: Option<&'static str>,
    pub stream: bool,
    pub status: u16,
    /// All input tokens (cached and cache-write included).
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    /// Output tokens (reasoning included).
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// The token counts were computed by Sluice's tokenizer, not reported by the upstream.
    pub estimated: bool,
    /// The response did not finish (upstream failure, client disconnect, timeout).
    pub incomplete: bool,
    /// USD, from the model's price table; `None` when the model has no price.
    pub cost_usd: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub duration_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why the request failed, as a short class (`upstream_timeout`, `client_disconnect`, ...).
    pub error: Option<&'static str>,
}

#[derive(Debug)]
enum Message {
    Record(Box<Record>),
    /// Reopen at this path (`None`: stop writing).
    Reopen(Option<PathBuf>),
}

/// The workers' handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: Sender<Message>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the writer thread with a queue of `capacity` records, writing to `path`
    /// (`None`: records are discarded until a reload names a path).
    pub fn start(path: Option<PathBuf>, capacity: usize) -> std::io::Result<AuditSink> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            path: None,
            out: None,
            written: written.clone(),
        };
        writer.reopen(path);
        std::thread::Builder::new()
            .name("sluice-audit".into())
            .spawn(move || writer.run(&rx))?;
        Ok(AuditSink {
            tx,
            dropped,
            written,
        })
    }

    /// Queues a record; drops (and counts) it when the queue is full.
    pub fn record(&self, record: Record) {
        match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reopens the file (after rotation) or switches to a new path. Never dropped: waits for
    /// room in the queue (called from the control thread, not from workers).
    pub fn reopen(&self, path: Option<PathBuf>) {
        let _ = self.tx.send(Message::Reopen(path));
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

struct Writer {
    path: Option<PathBuf>,
    out: Option<BufWriter<File>>,
    written: Arc<AtomicU64>,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Message>) {
        let mut line = Vec::with_capacity(1024);
        while let Ok(msg) = rx.recv() {
            self.handle(msg, &mut line);
            // Drain what is queued, then flush once.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg, &mut line);
            }
            self.flush();
        }
        self.flush();
    }

    fn handle(&mut self, msg: Message, line: &mut Vec<u8>) {
        match msg {
            Message::Reopen(path) => self.reopen(path),
            Message::Record(record) => {
                let Some(out) = self.out.as_mut() else { return };
                line.clear();
                if serde_json::to_writer(&mut *line, &record).is_err() {
                    return;
                }
                line.push(b'\n');
                if let Err(e) = out.write_all(line) {
                    tracing::error!(path = ?self.path, "audit log write failed: {e}");
                    self.out = None;
                    return;
                }
                self.written.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                tracing::error!(path = ?self.path, "audit log flush failed: {e}");
                self.out = None;
            }
        }
    }

    fn reopen(&mut self, path: Option<PathBuf>) {
        self.flush();
        self.out = None;
        self.path = path;
        let Some(path) = &self.path else { return };
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => {
                tracing::info!(path = %path.display(), "audit log opened");
                self.out = Some(BufWriter::with_capacity(64 * 1024, f));
            }
            Err(e) => tracing::error!(path = %path.display(), "cannot open the audit log: {e}"),
        }
    }
}

/// `2026-11-23T10:44:20.552Z` for a Unix time in milliseconds (UTC, proleptic Gregorian).
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (year, month, d) = crate::time::civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

pub fn now_rfc3339() -> String {
    rfc3339_millis(crate::time::unix_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            time: rfc3339_millis(0),
            request_id: id.to_owned(),
            consumer: None,
            api: "chat.completions",
            model: "m".into(),
            backend: Some("b".into()),
            upstream_model: Some("u".into()),
            upstream_api: Some("chat.completions"),
            stream: true,
            status: 200,
            input_tokens: 10,
            cached_input_tokens: 2,
            cache_write_input_tokens: 0,
            output_tokens: 5,
            reasoning_tokens: 0,
            estimated: false,
            incomplete: false,
            cost_usd: Some(0.5),
            ttft_ms: Some(1.5),
            duration_ms: 3.0,
            bytes_in: 100,
            bytes_out: 200,
            error: None,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_430_661_007),
            "2026-11-23T10:44:21.007Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    fn wait_written(sink: &AuditSink, n: u64) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.written() < n {
            assert!(std::time::Instant::now() < end, "records not written");
            std::thread::yield_now();
        }
    }

    #[test]
    fn writes_json_lines_and_reopens_after_rotation() {
        let dir = std::env::temp_dir().join(format!("sluice-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let sink = AuditSink::start(Some(path.clone()), 64).unwrap();
        sink.record(record("r1"));
        sink.record(record("r2"));
        wait_written(&sink, 2);
        std::fs::rename(&path, dir.join("audit.jsonl.1")).unwrap();
        sink.reopen(Some(path.clone()));
        sink.record(record("r3"));
        wait_written(&sink, 3);
        // `written` counts lines handed to the BufWriter; the flush follows when the queue is
        // empty, so wait for the content too.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        while read(&path).lines().count() < 1 {
            assert!(std::time::Instant::now() < end);
            std::thread::yield_now();
        }
        let old = read(&dir.join("audit.jsonl.1"));
        let lines: Vec<serde_json::Value> = old
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["request_id"], "r1");
        assert_eq!(lines[0]["input_tokens"], 10);
        assert_eq!(lines[0]["cost_usd"], 0.5);
        assert_eq!(lines[0]["consumer"], serde_json::Value::Null);
        let new: serde_json::Value = serde_json::from_str(read(&path).trim()).unwrap();
        assert_eq!(new["request_id"], "r3");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A writer that never reads: the queue fills, then every record is dropped.
        let (tx, _rx) = crossbeam_channel::bounded(2);
        let sink = AuditSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            written: Arc::new(AtomicU64::new(0)),
        };
        for i in 0..5 {
            sink.record(record(&i.to_string()));
        }
        assert_eq!(sink.dropped(), 3);
    }
}
