//! The relay phase: an upstream response (its head already read) goes to the client, as it
//! arrives for streams, whole for JSON bodies. Usage is read on the way; when the client's API
//! differs from the upstream's, the body or the stream is translated.
//!
//! **Invariants** (see ARCHITECTURE.md): native streams are relayed byte for byte, except the
//! usage chunk Sluice asked for on the client's behalf, which is removed; a broken upstream
//! never looks like a clean finish; only a fully read, reusable upstream connection goes back
//! to the pool.

use crate::client::{ClientConn, Head, Raced};
use crate::config::Backend;
use crate::errors::{ErrorKind, GatewayError};
use crate::http::chunked::write_body;
use crate::http::read_more;
use crate::metrics::{Event, Shard};
use crate::upstream::{BodyDecoder, Exchange, Upstreams};
use crate::worker::{After, Worker};
use bytes::Bytes;
use sluice_proto_llm::closer::{ClientFormat, CloseContext, CloseUsage, StreamCloser};
use sluice_proto_llm::sse::{SseFrame, SseFramer};
use sluice_proto_llm::synth::Endpoint;
use sluice_proto_llm::track::{
    strip_injected_usage_frame, Api, StripResult, TrackedUsage, UsageTracker,
};
use sluice_proto_llm::translate::{self, ResponseContext, StreamTranslator};
use std::time::{Duration, Instant};

/// Least free space for one read of a stream from upstream. SSE events are a few hundred
/// bytes and arrive one or a few per read, so 4 KiB reads cost a burst little, while a buffer
/// per stream of 16 KiB (the non-streaming read size) would be most of an idle stream's memory.
const STREAM_READ: usize = 4 * 1024;

/// Output text kept per stream for token estimation when the upstream sends no usage.
pub const MAX_CAPTURED_TEXT: usize = 1 << 20;

/// What one attempt produced for the client, for the observe phase.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: u16,
    pub usage: Option<TrackedUsage>,
    /// Output text seen in the upstream's frames, kept only when it reported no usage.
    pub output_text: Option<String>,
    /// The response did not finish: upstream failure, client gone, timeout.
    pub incomplete: bool,
    pub ttft: Option<Duration>,
    /// Short failure class for metrics and the audit log.
    pub error: Option<&'static str>,
    pub bytes_out: u64,
}

/// Why an attempt produced no (complete) response.
pub enum Failed {
    /// Nothing was sent to the client: the caller may try another target or answer `e`.
    Error(GatewayError),
    /// The client went away; what was relayed until then is in the outcome.
    ClientGone(Outcome),
}

impl Failed {
    /// The client left before anything was relayed.
    pub fn gone() -> Failed {
        Failed::ClientGone(Outcome {
            status: 499,
            incomplete: true,
            error: Some("client_disconnect"),
            ..Outcome::default()
        })
    }
}

/// How a stream reaches the client.
pub enum StreamMode {
    /// Same API on both sides: frames go through as they are, except (`strip_usage`) the
    /// usage Sluice asked for when the client did not.
    Native {
        strip_usage: bool,
    },
    Translated(Box<dyn StreamTranslator>),
}

/// Everything the relay needs about the request.
pub struct RelayCtx<'a> {
    pub worker: &'a Worker,
    pub backend: &'a Backend,
    pub rid: &'a str,
    pub keep_alive: bool,
    pub started: Instant,
    /// The client's endpoint (for error events in its format).
    pub client: Endpoint,
    /// The upstream's API (`None`: completions, embeddings).
    pub upstream_api: Api,
    /// Set when the response must be translated: the client's API and the context.
    pub translate: Option<(Api, ResponseContext)>,
    /// Headers Sluice adds to the response (`x-ratelimit-*`); when present, the upstream's own
    /// `x-ratelimit-*` headers are not passed on.
    pub headers: &'a [(&'static str, Vec<u8>)],
    /// Set when a limit of this request is enforced mid-stream.
    pub enforce: Option<Enforce<'a>>,
}

/// Mid-stream budget enforcement for one stream: when the tokens relayed so far push a
/// mid-stream limit over, the stream ends well-formed (finish_reason `length`, usage if asked,
/// `[DONE]`; Anthropic `max_tokens` + `message_stop`; Responses `response.incomplete`).
pub struct Enforce<'a> {
    pub reservation: &'a crate::quota::Reservation,
    /// Counts the output relayed so far.
    pub encoding: sluice_proto_llm::tokenize::Encoding,
    pub prompt_estimate: u64,
    pub price: Option<crate::config::Price>,
    pub format: ClientFormat,
    pub close: CloseContext,
}

impl Enforce<'_> {
    /// The mid-stream limit `output_tokens` of output would exceed, if any.
    pub fn over(&self, output_tokens: u64) -> Option<String> {
        let cost = self.price.map_or(0, |p| {
            (p.cost(self.prompt_estimate, 0, 0, output_tokens) * 1e6).ceil() as u64
        });
        let used = crate::quota::Amounts {
            requests: 1,
            input_tokens: self.prompt_estimate,
            output_tokens,
            cost,
        };
        self.reservation
            .over_mid_stream(used, crate::time::unix_ms())
    }
}

/// The running state of [`Enforce`] in one stream.
struct Budget<'a> {
    rules: &'a Enforce<'a>,
    closer: StreamCloser,
    /// Output tokens counted so far, and how much of the captured text they cover.
    tokens: u64,
    counted: usize,
    /// Re-frames translated output so the closer sees it as the client does.
    framer: SseFramer,
}

impl Budget<'_> {
    /// Counts the new output text; `Some(limit)` when a mid-stream limit is now exceeded.
    fn check(&mut self, text: &str) -> Option<String> {
        if let Some(new) = text.get(self.counted..) {
            if !new.is_empty() {
                self.tokens += sluice_proto_llm::tokenize::count(self.rules.encoding, new);
                self.counted = text.len();
            }
        }
        self.rules.over(self.tokens)
    }

    fn observe_bytes(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
        while let Ok(Some(f)) = self.framer.next_frame() {
            self.closer.observe(&f);
        }
    }
}

/// The response head's extra headers: the upstream's rate-limit hints (unless Sluice sets its
/// own), then Sluice's.
fn add_headers(mut h: Head, ctx: &RelayCtx<'_>, passthrough: &[(String, Vec<u8>)]) -> Head {
    for (name, value) in passthrough {
        if ctx.headers.is_empty() || !name.starts_with("x-ratelimit-") {
            h = h.header(name, value);
        }
    }
    for (name, value) in ctx.headers {
        h = h.header(name, value);
    }
    h
}

/// Decrements the active-stream gauge on every exit path.
pub struct StreamGauge<'a>(&'a Shard);

impl<'a> StreamGauge<'a> {
    pub fn new(s: &'a Shard) -> Self {
        Shard::gauge_add(&s.active_streams, 1);
        Self(s)
    }
}

impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        Shard::gauge_add(&self.0.active_streams, -1);
    }
}

/// Relays a response whose head has been read: as a stream when it is a 2xx event stream,
/// else whole.
pub async fn relay(
    ctx: &RelayCtx<'_>,
    conn: &mut ClientConn,
    ex: Exchange,
    upstreams: &Upstreams,
    mode: StreamMode,
) -> Result<(After, Outcome), Failed> {
    if ex.head.is_event_stream() && (200..300).contains(&ex.head.status) {
        relay_stream(ctx, conn, ex, upstreams, mode).await
    } else {
        relay_body(ctx, conn, ex, upstreams).await
    }
}

/// A new tracker for the upstream's API, keeping output text for estimates.
fn tracker(api: Api) -> UsageTracker {
    UsageTracker::new(api).with_text_capture(MAX_CAPTURED_TEXT)
}

fn upstream_error(backend: &Backend, kind: ErrorKind, what: impl std::fmt::Display) -> Failed {
    Failed::Error(GatewayError::new(
        kind,
        format!("backend `{}`: {what}", backend.name),
    ))
}

/// Relays a non-streaming response (JSON, or an error with any content type). The body is read
/// whole (up to `max_response_bytes`) before it is answered: that gives the usage and a
/// `Content-Length`, so the client connection stays reusable, and lets it be translated.
async fn relay_body(
    ctx: &RelayCtx<'_>,
    conn: &mut ClientConn,
    ex: Exchange,
    upstreams: &Upstreams,
) -> Result<(After, Outcome), Failed> {
    let (worker, backend) = (ctx.worker, ctx.backend);
    let Exchange {
        conn: mut up,
        head,
        leftover,
        pool_key,
        ..
    } = ex;
    let mut decoder = BodyDecoder::new(head.framing);
    let mut raw = leftover;
    let mut payload: Vec<u8> = Vec::new();
    loop {
        let used = decoder
            .decode(&raw, &mut payload)
            .map_err(|e| upstream_error(backend, ErrorKind::UpstreamProtocol, e))?;
        raw.drain(..used);
        if payload.len() > backend.max_response_bytes {
            return Err(upstream_error(
                backend,
                ErrorKind::UpstreamProtocol,
                format_args!(
                    "response body larger than max_response_bytes ({} bytes)",
                    backend.max_response_bytes
                ),
            ));
        }
        if decoder.is_done() {
            break;
        }
        let read = monoio::time::timeout(backend.read_timeout, read_more(&mut up, raw, 16 * 1024));
        let (res, b) = match conn.race(std::pin::pin!(read)).await {
            Raced::ClientGone => return Err(Failed::gone()),
            Raced::Done(Err(_)) => {
                worker.metrics.count(Event::UpstreamTimeouts);
                return Err(upstream_error(
                    backend,
                    ErrorKind::UpstreamTimeout,
                    format_args!("response body stalled for {:?}", backend.read_timeout),
                ));
            }
            Raced::Done(Ok(r)) => r,
        };
        raw = b;
        match res {
            Ok(0) if decoder.eof_is_clean() => break,
            Ok(0) => {
                worker.metrics.count(Event::UpstreamBrokenStreams);
                return Err(upstream_error(
                    backend,
                    ErrorKind::UpstreamProtocol,
                    "closed the connection mid-response",
                ));
            }
            Ok(n) => worker.metrics.add_bytes_from_upstream(n),
            Err(e) => {
                return Err(upstream_error(
                    backend,
                    ErrorKind::UpstreamProtocol,
                    format_args!("reading the response failed: {e}"),
                ))
            }
        }
    }
    if head.keep_alive && decoder.is_done() && raw.is_empty() {
        upstreams.release(&pool_key, up, backend.pool_max_idle);
    }
    let ok = (200..300).contains(&head.status);
    let mut usage = None;
    let mut output_text = None;
    let mut content_type = head
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".to_owned());
    if ok {
        let mut t = tracker(ctx.upstream_api);
        t.observe_body(&payload);
        usage = t.usage();
        if usage.is_none() {
            output_text = Some(t.text().to_owned());
        }
    }
    let body = match &ctx.translate {
        Some((client, rctx)) if ok => {
            match translate::translate_response(ctx.upstream_api, *client, &payload, rctx) {
                Some(Ok(t)) => {
                    if !t.dropped.is_empty() {
                        tracing::debug!(request_id = ctx.rid, dropped = ?t.dropped, "translation dropped fields without an equivalent");
                    }
                    content_type = "application/json".to_owned();
                    t.body
                }
                Some(Err(e)) => {
                    return Err(upstream_error(backend, ErrorKind::UpstreamProtocol, e));
                }
                None => payload,
            }
        }
        Some((client, _)) => {
            content_type = "application/json".to_owned();
            translate::error_body(ctx.upstream_api, *client, head.status, &payload)
        }
        None => payload,
    };
    let h = Head::new(conn.version, head.status)
        .header("Content-Type", content_type.as_bytes())
        .header("X-Request-Id", ctx.rid.as_bytes());
    let out = add_headers(h, ctx, &head.passthrough).with_body(ctx.keep_alive, &body);
    let bytes_out = out.len() as u64;
    worker.metrics.add_bytes_to_client(out.len());
    let (res, _) = conn.write(out).await;
    let mut outcome = Outcome {
        status: head.status,
        usage,
        output_text,
        bytes_out,
        error: (head.status >= 400).then_some("upstream_status"),
        ..Outcome::default()
    };
    if res.is_err() {
        outcome.incomplete = true;
        outcome.error = Some("client_disconnect");
        return Err(Failed::ClientGone(outcome));
    }
    let after = if ctx.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    };
    Ok((after, outcome))
}

/// Relays an SSE stream frame by frame, written as soon as each read completes them. Native
/// frames are the upstream's bytes (inside our own chunked envelope); translated ones are the
/// client API's.
async fn relay_stream(
    ctx: &RelayCtx<'_>,
    conn: &mut ClientConn,
    ex: Exchange,
    upstreams: &Upstreams,
    mut mode: StreamMode,
) -> Result<(After, Outcome), Failed> {
    let (worker, backend) = (ctx.worker, ctx.backend);
    let Exchange {
        conn: mut up,
        head,
        leftover,
        pool_key,
        ..
    } = ex;
    let _gauge = StreamGauge::new(&worker.metrics);
    conn.release_idle_buffer();
    let chunked = conn.version == 1;
    let keep_alive = ctx.keep_alive && chunked;
    let native = matches!(mode, StreamMode::Native { .. });
    let ct = if native {
        head.content_type.as_deref().unwrap_or("text/event-stream")
    } else {
        "text/event-stream"
    };
    let mut h = Head::new(conn.version, head.status)
        .header("Content-Type", ct.as_bytes())
        .header("Cache-Control", b"no-cache")
        .header("X-Accel-Buffering", b"no")
        .header("X-Request-Id", ctx.rid.as_bytes());
    h = add_headers(h, ctx, &head.passthrough);
    let mut out = h.streaming(conn.version, keep_alive);
    let mut decoder = BodyDecoder::new(head.framing);
    // Small first buffers: a node holds many long-lived streams, most of them idle between
    // small events; buffers grow when a burst needs it (see STREAM_READ).
    let mut framer = SseFramer::with_capacity(backend.max_event_bytes, 1024);
    let mut usage_tracker = tracker(ctx.upstream_api);
    let mut outcome = Outcome {
        status: head.status,
        ..Outcome::default()
    };
    // Boxed: ~3 KB (a closer and a framer) that only budget-enforced streams need, and the
    // stream's future would carry it for every stream otherwise.
    let mut budget = ctx.enforce.as_ref().map(|rules| {
        Box::new(Budget {
            rules,
            closer: StreamCloser::new(rules.format, rules.close.clone()),
            tokens: 0,
            counted: 0,
            framer: SseFramer::new(backend.max_event_bytes.max(1 << 20)),
        })
    });
    let mut cut_by: Option<String> = None;
    let mut raw = leftover;
    let mut payload: Vec<u8> = Vec::new();
    // Native frames are slices of the framer's buffer; translated output is built here.
    let mut frames: Vec<Bytes> = Vec::with_capacity(16);
    let mut translated: Vec<u8> = Vec::new();
    let mut frames_relayed = 0u64;
    let mut clean_end = false;
    let mut failure: Option<&'static str> = None;
    loop {
        payload.clear();
        match decoder.decode(&raw, &mut payload) {
            Ok(used) => {
                raw.drain(..used);
            }
            Err(_) => failure = Some("upstream_protocol"),
        }
        // Release the previous read's frames first: they share the framer's buffer, and while
        // they live the framer cannot reuse it (an allocation every ~8 KiB of stream).
        frames.clear();
        translated.clear();
        framer.push(&payload);
        loop {
            let f = match framer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    failure = Some("sse_frame_too_large");
                    break;
                }
            };
            usage_tracker.observe(&f);
            match &mut mode {
                StreamMode::Native { strip_usage } => {
                    if *strip_usage {
                        match strip_injected_usage_frame(&f) {
                            StripResult::Keep => frames.push(f.raw().clone()),
                            StripResult::Drop => continue,
                            StripResult::Rewrite(bytes) => frames.push(Bytes::from(bytes)),
                        }
                    } else {
                        frames.push(f.raw().clone());
                    }
                    if let Some(b) = budget.as_mut() {
                        b.closer.observe(&f);
                    }
                    if !f.is_comment() {
                        frames_relayed += 1;
                    }
                }
                StreamMode::Translated(t) => t.frame(&f, &mut translated),
            }
        }
        if let Some(b) = budget.as_mut() {
            if !translated.is_empty() {
                b.observe_bytes(&translated);
            }
            if failure.is_none() {
                cut_by = b.check(usage_tracker.text());
            }
        }
        // Frames completed before a failure in the same read still go out.
        let produced = !frames.is_empty() || !translated.is_empty();
        if produced {
            if outcome.ttft.is_none() {
                outcome.ttft = Some(ctx.started.elapsed());
            }
            write_body(&mut out, &frames, chunked, false);
            write_body(&mut out, &[&translated], chunked, false);
        }
        if failure.is_some() || cut_by.is_some() {
            break;
        }
        if decoder.is_done() {
            clean_end = true;
            break;
        }
        if !out.is_empty() {
            let n = out.len();
            let (res, b) = conn.write(out).await;
            out = b;
            out.clear();
            if res.is_err() {
                return Err(stream_gone(outcome, &usage_tracker));
            }
            outcome.bytes_out += n as u64;
            worker.metrics.add_bytes_to_client(n);
        }
        let read =
            monoio::time::timeout(backend.read_timeout, read_more(&mut up, raw, STREAM_READ));
        let (res, b) = match conn.race(std::pin::pin!(read)).await {
            Raced::ClientGone => return Err(stream_gone(outcome, &usage_tracker)),
            Raced::Done(Err(_)) => {
                worker.metrics.count(Event::UpstreamTimeouts);
                failure = Some("upstream_stalled");
                raw = Vec::new();
                break;
            }
            Raced::Done(Ok(r)) => r,
        };
        raw = b;
        match res {
            Ok(0) => {
                if decoder.eof_is_clean() {
                    clean_end = true;
                } else {
                    failure = Some("upstream_broken_stream");
                }
                break;
            }
            Ok(n) => worker.metrics.add_bytes_from_upstream(n),
            Err(_) => {
                failure = Some("upstream_broken_stream");
                break;
            }
        }
    }
    if let (Some(limit), Some(b)) = (&cut_by, budget.as_mut()) {
        // The budget ran out mid-stream: end the client's stream as a length cut. The upstream
        // connection is dropped (never pooled): the rest of its response is unwanted.
        worker.metrics.count(Event::StreamsCutByBudget);
        tracing::info!(request_id = ctx.rid, limit = %limit, tokens = b.tokens, "budget exhausted mid-stream, ending the stream");
        let usage = CloseUsage {
            input_tokens: b.rules.prompt_estimate,
            output_tokens: b.tokens,
            cached_input_tokens: 0,
        };
        b.closer.close(usage, &mut translated);
        write_body(&mut out, &[&translated], chunked, false);
        write_body::<&[u8]>(&mut out, &[], chunked, true);
        let n = out.len();
        let (res, _) = conn.write(out).await;
        outcome.incomplete = true;
        outcome.error = Some("budget_exhausted");
        outcome.usage = usage_tracker.usage();
        if outcome.usage.is_none() {
            outcome.output_text = Some(usage_tracker.text().to_owned());
        }
        if res.is_err() {
            outcome.error = Some("client_disconnect");
            return Err(Failed::ClientGone(outcome));
        }
        outcome.bytes_out += n as u64;
        worker.metrics.add_bytes_to_client(n);
        let after = if keep_alive {
            After::KeepAlive
        } else {
            After::Close
        };
        return Ok((after, outcome));
    }
    // Whatever is left in the framer is an incomplete event. After a clean end it is relayed
    // as is (native) or fed to the translator; after a failure it is dropped: it can never be
    // completed, and the error event must not be glued onto it as one corrupt event.
    let rest = framer.take_remainder();
    translated.clear();
    match &mut mode {
        StreamMode::Native { .. } => {
            if !rest.is_empty() && failure.is_none() {
                write_body(&mut out, &[rest], chunked, false);
            }
        }
        StreamMode::Translated(t) => {
            if !rest.is_empty() && failure.is_none() {
                let last = SseFrame::new(rest);
                usage_tracker.observe(&last);
                t.frame(&last, &mut translated);
            }
        }
    }
    let upstream_said_error = usage_tracker.saw_error();
    if failure.is_none() && clean_end && !usage_tracker.saw_end() {
        // The body ended cleanly but the stream's own end marker never came: an upstream that
        // closed mid-generation (or a server that does not send one; native relays pass its
        // bytes through either way, but the record says incomplete).
        if !native {
            failure = Some("upstream_cut_stream");
        } else {
            outcome.incomplete = true;
            outcome.error = Some("upstream_cut_stream");
        }
    }
    match (&mut mode, failure) {
        (StreamMode::Native { .. }, Some(reason)) => {
            worker.metrics.count(Event::UpstreamBrokenStreams);
            tracing::warn!(request_id = ctx.rid, backend = %backend.name, reason, "upstream stream ended abnormally");
            let msg = format!(
                "upstream stream from backend `{}` ended abnormally ({reason})",
                backend.name
            );
            let ev = client_error_event(ctx.client, &msg, reason, frames_relayed);
            write_body(&mut out, &[ev], chunked, false);
        }
        (StreamMode::Translated(t), Some(reason)) => {
            worker.metrics.count(Event::UpstreamBrokenStreams);
            tracing::warn!(request_id = ctx.rid, backend = %backend.name, reason, "upstream stream ended abnormally");
            let msg = format!(
                "upstream stream from backend `{}` ended abnormally ({reason})",
                backend.name
            );
            t.fail(&msg, &mut translated);
        }
        (StreamMode::Translated(t), None) => {
            t.finish(&mut translated);
            if !t.dropped().is_empty() {
                tracing::debug!(request_id = ctx.rid, dropped = ?t.dropped(), "translation dropped parts without an equivalent");
            }
        }
        (StreamMode::Native { .. }, None) => {}
    }
    write_body(&mut out, &[&translated], chunked, false);
    write_body::<&[u8]>(&mut out, &[], chunked, true);
    let n = out.len();
    let (res, _) = conn.write(out).await;
    if failure.is_some() || upstream_said_error {
        outcome.incomplete = true;
        outcome.error = outcome.error.or(failure).or(Some("upstream_error_event"));
    }
    outcome.usage = usage_tracker.usage();
    if outcome.usage.is_none() {
        outcome.output_text = Some(usage_tracker.text().to_owned());
    }
    if res.is_err() {
        outcome.incomplete = true;
        outcome.error = Some("client_disconnect");
        return Err(Failed::ClientGone(outcome));
    }
    outcome.bytes_out += n as u64;
    worker.metrics.add_bytes_to_client(n);
    if clean_end && failure.is_none() && head.keep_alive && decoder.is_done() && raw.is_empty() {
        upstreams.release(&pool_key, up, backend.pool_max_idle);
    }
    let after = if keep_alive && failure.is_none() {
        After::KeepAlive
    } else {
        After::Close
    };
    Ok((after, outcome))
}

/// The client left mid-stream: what was relayed until then, for the record.
fn stream_gone(mut outcome: Outcome, tracker: &UsageTracker) -> Failed {
    outcome.incomplete = true;
    outcome.error = Some("client_disconnect");
    outcome.usage = tracker.usage();
    if outcome.usage.is_none() {
        outcome.output_text = Some(tracker.text().to_owned());
    }
    Failed::ClientGone(outcome)
}

/// An error event in the client's stream format, written when a natively relayed stream
/// breaks. No clean end follows it (`[DONE]`, `message_stop`, `response.completed`).
pub fn client_error_event(client: Endpoint, message: &str, code: &str, sequence: u64) -> Vec<u8> {
    use sluice_proto_llm::error::{anthropic_error_body, openai_error_body};
    let mut ev = Vec::with_capacity(160 + message.len());
    match client {
        Endpoint::Messages => {
            ev.extend_from_slice(b"event: error\ndata: ");
            ev.extend_from_slice(&anthropic_error_body("api_error", message));
        }
        Endpoint::Responses => {
            let data = serde_json::json!({
                "type": "error",
                "code": code,
                "message": message,
                "param": null,
                "sequence_number": sequence,
            });
            ev.extend_from_slice(b"event: error\ndata: ");
            ev.extend_from_slice(data.to_string().as_bytes());
        }
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            ev.extend_from_slice(b"data: ");
            ev.extend_from_slice(&openai_error_body(
                message,
                "upstream_error",
                None,
                Some(code),
            ));
        }
    }
    ev.extend_from_slice(b"\n\n");
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_events_in_each_format() {
        let chat =
            String::from_utf8(client_error_event(Endpoint::ChatCompletions, "m", "c", 0)).unwrap();
        assert!(chat.starts_with("data: {\"error\":") && chat.ends_with("\n\n"));
        let msg = String::from_utf8(client_error_event(Endpoint::Messages, "m", "c", 0)).unwrap();
        assert!(
            msg.starts_with("event: error\ndata: {\"type\":\"error\""),
            "{msg}"
        );
        let resp = String::from_utf8(client_error_event(Endpoint::Responses, "m", "c", 7)).unwrap();
        let data: serde_json::Value = serde_json::from_str(
            resp.trim_end()
                .strip_prefix("event: error\ndata: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["sequence_number"], 7);
        assert_eq!(data["type"], "error");
    }
}
