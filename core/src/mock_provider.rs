//! The built-in `mock` provider: the same synthetic generator as `sluice-loadgen mock`
//! (`proto-llm::synth`), served in-process with no socket, in the client's own API (Chat
//! Completions, Completions, Embeddings, Responses, Messages), paced by the backend's `mock`
//! settings.

use crate::client::{ClientConn, Head, Raced};
use crate::config::Backend;
use crate::errors::{ErrorFormat, ErrorKind, GatewayError};
use crate::http::chunked::write_body;
use crate::metrics::Event;
use crate::relay::{Enforce, Failed, Outcome, StreamGauge};
use crate::worker::{After, Worker};
use sluice_proto_llm::closer::{CloseUsage, StreamCloser};
use sluice_proto_llm::synth::{self, Endpoint, FrameKind, Pacing, SynthRequest, SynthStream};
use sluice_proto_llm::track::TrackedUsage;
use std::time::Instant;

/// Serves one request from the synthetic generator.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    worker: &Worker,
    conn: &mut ClientConn,
    endpoint: Endpoint,
    backend: &Backend,
    served_model: &str,
    rid: &str,
    body: &[u8],
    keep_alive: bool,
    started: Instant,
    headers: &[(&'static str, Vec<u8>)],
    enforce: Option<&Enforce<'_>>,
) -> Result<(After, Outcome), Failed> {
    let format = if endpoint == Endpoint::Messages {
        ErrorFormat::Anthropic
    } else {
        ErrorFormat::OpenAi
    };
    let mut req = match SynthRequest::parse(endpoint, body, backend.mock.tokens) {
        Ok(r) => r,
        Err(synth::SynthError::BadRequest { message, param }) => {
            // The client's mistake, not the backend's: answer it, do not try another target.
            let err = GatewayError::new(ErrorKind::InvalidRequest, message).with_param(param);
            let out = crate::client::json_response(
                conn.version,
                400,
                keep_alive,
                Some(rid),
                &err.body_in(format),
            );
            let bytes_out = out.len() as u64;
            let (res, _) = conn.write(out).await;
            let outcome = Outcome {
                status: 400,
                error: Some("invalid_request"),
                bytes_out,
                ..Outcome::default()
            };
            return if res.is_ok() {
                Ok((
                    if keep_alive {
                        After::KeepAlive
                    } else {
                        After::Close
                    },
                    outcome,
                ))
            } else {
                Err(Failed::ClientGone(outcome))
            };
        }
    };
    req.model = served_model.to_owned();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = match endpoint {
        Endpoint::Completions => "cmpl-",
        Endpoint::ChatCompletions | Endpoint::Embeddings => "chatcmpl-",
        Endpoint::Messages => "msg_",
        Endpoint::Responses => "resp_",
    };
    let id = format!("{prefix}{rid}");
    let usage = TrackedUsage {
        input_tokens: req.prompt_tokens(),
        output_tokens: req.completion_tokens(),
        ..TrackedUsage::default()
    };
    let pacing = Pacing::from_rate(backend.mock.ttft, backend.mock.tokens_per_second);
    let mut outcome = Outcome {
        status: 200,
        usage: Some(usage),
        ..Outcome::default()
    };
    if !req.stream {
        let due = pacing.whole(req.reply_tokens());
        if !due.is_zero() {
            if let Raced::ClientGone = conn.race(std::pin::pin!(monoio::time::sleep(due))).await {
                return Err(Failed::gone());
            }
        }
        let body = synth::response_body(&req, &id, created);
        let mut h = Head::new(conn.version, 200)
            .header("Content-Type", b"application/json")
            .header("X-Request-Id", rid.as_bytes());
        for (name, value) in headers {
            h = h.header(name, value);
        }
        let out = h.with_body(keep_alive, &body);
        outcome.bytes_out = out.len() as u64;
        worker.metrics.add_bytes_to_client(out.len());
        let (res, _) = conn.write(out).await;
        if res.is_err() {
            outcome.incomplete = true;
            outcome.error = Some("client_disconnect");
            return Err(Failed::ClientGone(outcome));
        }
        return Ok((
            if keep_alive {
                After::KeepAlive
            } else {
                After::Close
            },
            outcome,
        ));
    }
    let _gauge = StreamGauge::new(&worker.metrics);
    let chunked = conn.version == 1;
    let keep_alive = keep_alive && chunked;
    let mut head = Head::new(conn.version, 200)
        .header("Content-Type", b"text/event-stream")
        .header("Cache-Control", b"no-cache")
        .header("X-Accel-Buffering", b"no")
        .header("X-Request-Id", rid.as_bytes());
    for (name, value) in headers {
        head = head.header(name, value);
    }
    let head = head.streaming(conn.version, keep_alive);
    let (res, mut out) = conn.write(head).await;
    if res.is_err() {
        return Err(Failed::gone());
    }
    let mut gen = SynthStream::new(&req, &id, created);
    let mut frame = Vec::with_capacity(512);
    let mut first = true;
    let mut closer = enforce.map(|e| StreamCloser::new(e.format, e.close.clone()));
    let gone = |mut outcome: Outcome, tokens: u64| {
        // Count what was generated before the client left.
        outcome.usage = Some(TrackedUsage {
            output_tokens: tokens,
            ..usage
        });
        outcome.incomplete = true;
        outcome.error = Some("client_disconnect");
        Failed::ClientGone(outcome)
    };
    loop {
        frame.clear();
        let Some(kind) = gen.next_kind(&mut frame) else {
            break;
        };
        let delay = pacing.before(kind, first, gen.token_frames_sent());
        first = false;
        if !delay.is_zero() {
            if let Raced::ClientGone = conn.race(std::pin::pin!(monoio::time::sleep(delay))).await {
                return Err(gone(outcome, gen.token_frames_sent().saturating_sub(1)));
            }
        }
        out.clear();
        if let (Some(e), Some(c)) = (enforce, closer.as_mut()) {
            let tokens = gen.token_frames_sent();
            if kind == FrameKind::Token && e.over(tokens).is_some() {
                // The budget ran out: end the stream as a length cut instead of this token.
                worker.metrics.count(Event::StreamsCutByBudget);
                let mut closing = Vec::new();
                let used = tokens.saturating_sub(1);
                c.close(
                    CloseUsage {
                        input_tokens: req.prompt_tokens(),
                        output_tokens: used,
                        cached_input_tokens: 0,
                    },
                    &mut closing,
                );
                write_body(&mut out, &[&closing], chunked, true);
                let n = out.len();
                let (res, _) = conn.write(out).await;
                outcome.usage = Some(TrackedUsage {
                    output_tokens: used,
                    ..usage
                });
                outcome.incomplete = true;
                outcome.error = Some("budget_exhausted");
                if res.is_err() {
                    return Err(gone(outcome, used));
                }
                outcome.bytes_out += n as u64;
                worker.metrics.add_bytes_to_client(n);
                return Ok((
                    if keep_alive {
                        After::KeepAlive
                    } else {
                        After::Close
                    },
                    outcome,
                ));
            }
            c.observe(&sluice_proto_llm::sse::SseFrame::new(
                bytes::Bytes::copy_from_slice(&frame),
            ));
        }
        write_body(&mut out, &[&frame], chunked, kind == FrameKind::Done);
        let n = out.len();
        let (res, b) = conn.write(out).await;
        out = b;
        if res.is_err() {
            return Err(gone(outcome, gen.token_frames_sent()));
        }
        outcome.bytes_out += n as u64;
        worker.metrics.add_bytes_to_client(n);
        if outcome.ttft.is_none() {
            outcome.ttft = Some(started.elapsed());
        }
    }
    Ok((
        if keep_alive {
            After::KeepAlive
        } else {
            After::Close
        },
        outcome,
    ))
}
