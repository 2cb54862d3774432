//! A POST to one of the LLM routes: key and version checks, injected faults, then the reply
//! from `sluice_proto_llm::synth`, whole or streamed, paced, and cut short on request.
//!
//! A paced stream costs a timer and a few small buffers while it waits: no task polls in a
//! loop, the connection's read buffer is released for the stream's duration, and the request
//! body is dropped once parsed.

use super::reply::{self, After, Out, Shape};
use super::settings::{Cut, Draws};
use super::stats::{bump, Stats};
use super::Shared;
use sluice_core::client::{ClientConn, Head, Raced};
use sluice_core::http::chunked::write_body;
use sluice_core::http::read_more;
use sluice_proto_llm::synth::{self, Endpoint, FrameKind, SynthRequest, SynthStream};
use std::time::Duration;

/// What a stream's frame buffers keep between frames (token frames fit).
const FRAME_CAPACITY: usize = 512;

/// Serves a POST to `endpoint`.
pub async fn serve(
    conn: &mut ClientConn,
    shared: &Shared,
    endpoint: Endpoint,
    out: Out<'_>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> After {
    let (settings, stats) = (&shared.settings, &shared.stats);
    let n = shared
        .posts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    bump(match endpoint {
        Endpoint::ChatCompletions => &stats.chat,
        Endpoint::Completions => &stats.completions,
        Endpoint::Embeddings => &stats.embeddings,
        Endpoint::Messages => &stats.messages,
        Endpoint::Responses => &stats.responses,
    });
    if !pause(conn, stats, settings.delay_headers).await {
        return After::Close;
    }
    if let Some(key) = &settings.require_key {
        if let Err(message) = authorize(&headers, key, out.shape) {
            let response = out.error_with(401, &[], message, None, Some("invalid_api_key"));
            return out.send(conn, response).await;
        }
    }
    if endpoint == Endpoint::Messages {
        if let Err(message) = anthropic_version(&headers) {
            return out.send(conn, out.error(400, &[], &message)).await;
        }
    }
    if let Some(fault) = settings.fault.filter(|f| f.hits(n)) {
        bump(&stats.faults);
        let (message, code, extra) = reply::fault(fault, out.shape);
        let response = out.error_with(fault.status, extra, message, None, code);
        return out.send(conn, response).await;
    }
    let mut req = match SynthRequest::parse(endpoint, &body, settings.tokens) {
        Ok(req) => req,
        Err(e) => {
            let response = out.error_with(400, &[], e.message(), e.param(), None);
            return out.send(conn, response).await;
        }
    };
    // Nothing of the request is needed while the reply is paced.
    drop(body);
    drop(headers);
    req.omit_usage = settings.no_usage;
    if req.tool_call().is_some() {
        bump(&stats.tool_calls);
    }
    let id = match endpoint {
        Endpoint::Completions => format!("cmpl-mock{n}"),
        Endpoint::Messages => format!("msg_mock{n}"),
        Endpoint::Responses => format!("resp_mock{n}"),
        Endpoint::ChatCompletions | Endpoint::Embeddings => format!("chatcmpl-mock{n}"),
    };
    let created = unix_now();
    if req.stream {
        return stream(conn, shared, &req, &id, created, out, n).await;
    }
    // A non-streaming reply arrives when the whole generation would have finished.
    if !pause(conn, stats, settings.pacing().whole(req.reply_tokens())).await {
        return After::Close;
    }
    let body = synth::response_body(&req, &id, created);
    out.send(conn, out.json(200, &[], &body)).await
}

/// The value of a header; repeated headers are joined with `, `, as HTTP reads them.
fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |all, v| all + ", " + v))
}

/// Whether an `Authorization` value is `Bearer KEY` (the scheme is case-insensitive).
fn bearer_is(value: &str, key: &str) -> bool {
    let value = value.trim();
    value
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
        && value.get(7..).is_some_and(|token| token.trim() == key)
}

/// `--require-key`: `Authorization: Bearer KEY`, or on the Anthropic route `x-api-key: KEY`.
/// The error is the real API's message.
fn authorize(headers: &[(String, String)], key: &str, shape: Shape) -> Result<(), &'static str> {
    let bearer = header(headers, "authorization");
    if bearer.as_deref().is_some_and(|v| bearer_is(v, key)) {
        return Ok(());
    }
    match shape {
        Shape::Anthropic => match header(headers, "x-api-key") {
            Some(given) if given == key => Ok(()),
            None if bearer.is_none() => Err("x-api-key header is required"),
            _ => Err("invalid x-api-key"),
        },
        Shape::OpenAi => match bearer {
            None => Err(
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ),
            Some(_) => Err("Incorrect API key provided."),
        },
    }
}

/// The Messages route requires an `anthropic-version`, as the real API does. Any date
/// (`YYYY-MM-DD`) passes: SDKs send newer versions than `2023-06-01`. A repeated header reads
/// as a list, which is no version (a real gateway bug the real API rejects).
fn anthropic_version(headers: &[(String, String)]) -> Result<(), String> {
    let is_date = |v: &str| {
        v.len() == 10
            && v.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    match header(headers, "anthropic-version") {
        None => Err("anthropic-version: header is required".to_owned()),
        Some(v) if is_date(&v) => Ok(()),
        Some(v) => Err(format!("anthropic-version: \"{v}\" is not a valid version")),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sleeps for `delay` unless the client hangs up first (then counts it and returns false).
async fn pause(conn: &mut ClientConn, stats: &Stats, delay: Duration) -> bool {
    if delay.is_zero() {
        return true;
    }
    match conn.race(std::pin::pin!(monoio::time::sleep(delay))).await {
        Raced::Done(()) => true,
        Raced::ClientGone => {
            bump(&stats.client_disconnects);
            false
        }
    }
}

/// A streamed reply: one HTTP chunk per SSE frame (the frames of an in-stream error share
/// one), each written as soon as it is due.
async fn stream(
    conn: &mut ClientConn,
    shared: &Shared,
    req: &SynthRequest,
    id: &str,
    created: u64,
    out: Out<'_>,
    n: u64,
) -> After {
    let (settings, stats) = (&shared.settings, &shared.stats);
    bump(&stats.streams);
    // HTTP/1.0 has no chunked coding: the body ends when the connection closes.
    let chunked = out.version == 1;
    let keep_alive = out.keep_alive && chunked;
    let mut response = Head::new(out.version, 200)
        .header("Content-Type", b"text/event-stream")
        .header("Cache-Control", b"no-cache")
        .header("X-Accel-Buffering", b"no");
    if let Some(rid) = out.request_id {
        response = response.header("X-Request-Id", rid.as_bytes());
    }
    let (res, mut buf) = conn
        .write(response.streaming(out.version, keep_alive))
        .await;
    if res.is_err() {
        bump(&stats.client_disconnects);
        return After::Close;
    }
    // Between requests the read buffer only holds pipelined bytes; without any, give its
    // memory back while the stream lasts (the next read allocates again).
    if conn.buf.is_empty() {
        conn.buf = Vec::new();
    }
    let pacing = settings.pacing();
    let mut draws = Draws::new(settings.seed, n);
    let mut frames = SynthStream::new(req, id, created);
    let mut frame = Vec::with_capacity(FRAME_CAPACITY);
    let mut first = true;
    loop {
        let due = |after: u64| frames.token_frames_sent() >= after && !frames.is_finished();
        match settings.cut {
            Some(Cut::Error(after)) if due(after) => {
                frame.clear();
                frames.fail(&mut frame);
                buf.clear();
                write_body(&mut buf, &[&frame], chunked, true);
                if conn.write(buf).await.0.is_err() {
                    bump(&stats.client_disconnects);
                    return After::Close;
                }
                bump(&stats.streams_errored);
                break;
            }
            Some(Cut::Drop(after)) if due(after) => {
                bump(&stats.streams_dropped);
                return After::Close;
            }
            Some(Cut::Stall(after)) if due(after) => return stall(conn, stats).await,
            _ => {}
        }
        frame.clear();
        let Some(kind) = frames.next_kind(&mut frame) else {
            bump(&stats.streams_completed);
            break;
        };
        let draw = if kind == FrameKind::Token {
            draws.next_unit()
        } else {
            0.5
        };
        let delay = pacing.before_jittered(kind, first, frames.token_frames_sent(), draw);
        first = false;
        if !pause(conn, stats, delay).await {
            return After::Close;
        }
        buf.clear();
        write_body(&mut buf, &[&frame], chunked, kind == FrameKind::Done);
        let (res, back) = conn.write(buf).await;
        buf = back;
        if res.is_err() {
            bump(&stats.client_disconnects);
            return After::Close;
        }
        if kind == FrameKind::Token {
            bump(&stats.token_chunks_sent);
        }
        // A long stream idles between small frames: keep no memory a big one needed.
        frame.shrink_to(FRAME_CAPACITY);
        buf.shrink_to(FRAME_CAPACITY);
    }
    if keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// `--stall-after`: write nothing more and wait for the client to hang up.
async fn stall(conn: &mut ClientConn, stats: &Stats) -> After {
    bump(&stats.streams_stalled);
    // Whatever the client sends now is discarded: this connection serves nothing more.
    loop {
        let mut buf = std::mem::take(&mut conn.buf);
        buf.clear();
        let (res, buf) = read_more(&mut conn.stream, buf, 4096).await;
        conn.buf = buf;
        if !matches!(res, Ok(n) if n > 0) {
            break;
        }
    }
    bump(&stats.client_disconnects);
    After::Close
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn bearer_matching() {
        assert!(bearer_is("Bearer sk-1", "sk-1"));
        assert!(bearer_is("bearer  sk-1 ", "sk-1"));
        assert!(!bearer_is("Bearer sk-2", "sk-1"));
        assert!(!bearer_is("Basic sk-1", "sk-1"));
        assert!(!bearer_is("sk-1", "sk-1"));
        assert!(!bearer_is("Bearer", "sk-1"));
    }

    #[test]
    fn keys_by_route() {
        let bearer = headers(&[("authorization", "Bearer k")]);
        let x_api_key = headers(&[("x-api-key", "k")]);
        let wrong = headers(&[("x-api-key", "nope")]);
        assert_eq!(authorize(&bearer, "k", Shape::OpenAi), Ok(()));
        assert_eq!(authorize(&bearer, "k", Shape::Anthropic), Ok(()));
        assert_eq!(authorize(&x_api_key, "k", Shape::Anthropic), Ok(()));
        assert!(authorize(&x_api_key, "k", Shape::OpenAi).is_err());
        assert_eq!(
            authorize(&[], "k", Shape::Anthropic),
            Err("x-api-key header is required")
        );
        assert_eq!(
            authorize(&wrong, "k", Shape::Anthropic),
            Err("invalid x-api-key")
        );
        assert_eq!(
            authorize(
                &headers(&[("authorization", "Bearer no")]),
                "k",
                Shape::Anthropic
            ),
            Err("invalid x-api-key")
        );
    }

    #[test]
    fn anthropic_versions() {
        for ok in ["2023-06-01", "2026-10-21"] {
            assert!(anthropic_version(&headers(&[("anthropic-version", ok)])).is_ok());
        }
        for bad in ["", "latest", "2023-6-01", "2023_06_01", "2023-06-011"] {
            assert!(anthropic_version(&headers(&[("anthropic-version", bad)])).is_err());
        }
        assert_eq!(
            anthropic_version(&[]),
            Err("anthropic-version: header is required".to_owned())
        );
        // A repeated header reads as a list, which is no version.
        assert_eq!(
            anthropic_version(&headers(&[
                ("anthropic-version", "2023-06-01"),
                ("anthropic-version", "2023-06-01")
            ])),
            Err("anthropic-version: \"2023-06-01, 2023-06-01\" is not a valid version".to_owned())
        );
    }
}
