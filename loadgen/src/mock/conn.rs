//! One client connection of the mock: HTTP/1.x framing (keep-alive, pipelining,
//! Content-Length and chunked bodies), routing, responses, pacing and injected faults.
//!
//! The HTTP pieces (head parsing, chunked coding, response heads, `ClientConn::race` to notice
//! a client hanging up while we sleep) are the gateway's own, from `sluice-core`.

use super::settings::{Cut, Fault};
use super::stats::{bump, ActiveConnection, Stats};
use super::Shared;
use monoio::net::TcpStream;
use sluice_core::client::{BodyError, ClientConn, Head, Raced};
use sluice_core::http::chunked::write_body;
use sluice_core::http::{
    parse_request_head, read_more, HeadError, Method, RequestHead, MAX_HEADERS,
};
use sluice_proto_llm::error::{openai_error_body, INVALID_REQUEST, PERMISSION, RATE_LIMIT, SERVER};
use sluice_proto_llm::synth::{self, Endpoint, FrameKind, SynthRequest, SynthStream};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head accepted (431 beyond).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// `created` of the listed models: fixed, so responses are reproducible.
const MODELS_CREATED: u64 = 1_700_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
}

/// Serves one connection until the client closes it or a response ends it.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _active = ActiveConnection::new(&shared.stats);
    let _ = stream.set_nodelay(true);
    let mut conn = ClientConn::new(stream);
    loop {
        let head = match read_head(&mut conn).await {
            HeadRead::Head(head) => head,
            HeadRead::Closed => return,
            HeadRead::Refused(status, message) => {
                let body = openai_error_body(message, INVALID_REQUEST, None, None);
                let _ = conn
                    .write(json_response(1, status, false, None, &[], &body))
                    .await;
                conn.linger_close().await;
                return;
            }
        };
        conn.version = head.version;
        conn.watch = true;
        let head_len = head.head_len.min(conn.buf.len());
        let headers = if head.method == Method::Post {
            header_list(conn.buf.get(..head_len).unwrap_or_default())
        } else {
            Vec::new()
        };
        conn.buf.drain(..head_len);
        let deadline = std::time::Instant::now() + BODY_TIMEOUT;
        let body = match conn.read_body(&head, MAX_BODY, deadline).await {
            Ok(body) => body,
            Err(e) => {
                let Some((status, message)) = body_refusal(e) else {
                    return;
                };
                let body = openai_error_body(&message, INVALID_REQUEST, None, None);
                let rid = head.request_id.as_deref();
                let out = json_response(head.version, status, false, rid, &[], &body);
                let _ = conn.write(out).await;
                conn.linger_close().await;
                return;
            }
        };
        let after = respond(&mut conn, &shared, &head, headers, body).await;
        if after == After::Close || !head.keep_alive {
            return;
        }
    }
}

enum HeadRead {
    Head(RequestHead),
    Closed,
    Refused(u16, &'static str),
}

/// Reads until a complete request head is buffered (pipelined bytes stay in `conn.buf`).
async fn read_head(conn: &mut ClientConn) -> HeadRead {
    loop {
        if !conn.buf.is_empty() {
            match parse_request_head(&conn.buf, MAX_HEAD) {
                Ok(Some(head)) => return HeadRead::Head(head),
                Ok(None) => {}
                Err(HeadError::TooLarge) => {
                    return HeadRead::Refused(431, "request head too large")
                }
                Err(HeadError::Malformed(why)) => return HeadRead::Refused(400, why),
                Err(HeadError::UnsupportedTransferEncoding) => {
                    return HeadRead::Refused(501, "unsupported Transfer-Encoding")
                }
            }
        }
        let (res, buf) = read_more(&mut conn.stream, std::mem::take(&mut conn.buf), 4096).await;
        conn.buf = buf;
        match res {
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {}
        }
    }
}

/// Every header of a request head, names in lower case, values as (lossy) text.
fn header_list(head: &[u8]) -> Vec<(String, String)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return Vec::new();
    }
    req.headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).trim().to_owned();
            (h.name.to_ascii_lowercase(), value)
        })
        .collect()
}

/// Body timeout: the mock is a test peer, so a generous fixed bound is enough.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the mock refuses a body, as (status, message); `None` when the client went away.
fn body_refusal(e: BodyError) -> Option<(u16, String)> {
    match e {
        BodyError::Closed => None,
        BodyError::TimedOut => Some((408, "timed out reading the request body".to_owned())),
        BodyError::TooLarge => Some((
            413,
            format!("request body exceeds the limit of {MAX_BODY} bytes"),
        )),
        BodyError::Malformed(e) => Some((400, format!("bad chunked body: {e}"))),
    }
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Llm(Endpoint),
    Models,
    Model(&'a str),
    Stats,
    Health,
    NotFound,
}

impl Route<'_> {
    /// The one method the route answers.
    fn method(self) -> Method {
        match self {
            Route::Llm(_) => Method::Post,
            _ => Method::Get,
        }
    }
}

/// Routes a request path; `/v1` is optional and the query string is ignored.
fn route(path: &str) -> Route<'_> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = match path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    };
    match path {
        "/chat/completions" => Route::Llm(Endpoint::ChatCompletions),
        "/completions" => Route::Llm(Endpoint::Completions),
        "/embeddings" => Route::Llm(Endpoint::Embeddings),
        "/models" => Route::Models,
        "/mock/stats" => Route::Stats,
        "/healthz" => Route::Health,
        _ => match path.strip_prefix("/models/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Route::Model(id),
            _ => Route::NotFound,
        },
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Head => "HEAD",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Other => "OTHER",
    }
}

/// A complete JSON response with `Content-Length`.
fn json_response(
    version: u8,
    status: u16,
    keep_alive: bool,
    request_id: Option<&str>,
    extra: &[(&str, &[u8])],
    body: &[u8],
) -> Vec<u8> {
    let mut head = Head::new(version, status).header("Content-Type", b"application/json");
    for (name, value) in extra {
        head = head.header(name, value);
    }
    if let Some(id) = request_id {
        head = head.header("X-Request-Id", id.as_bytes());
    }
    head.with_body(keep_alive, body)
}

async fn send(conn: &mut ClientConn, out: Vec<u8>, keep_alive: bool) -> After {
    let (res, _) = conn.write(out).await;
    if res.is_ok() && keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

async fn respond(
    conn: &mut ClientConn,
    shared: &Shared,
    head: &RequestHead,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> After {
    let stats = &shared.stats;
    if head.method == Method::Post {
        bump(&stats.requests);
        stats.record_post(&head.path, headers.clone(), &body);
    }
    let rid = head.request_id.as_deref();
    let keep_alive = head.keep_alive;
    let version = head.version;
    let route = route(&head.path);
    if route == Route::NotFound {
        let message = format!("Invalid URL ({} {})", method_name(head.method), head.path);
        let body = openai_error_body(&message, INVALID_REQUEST, None, None);
        return send(
            conn,
            json_response(version, 404, keep_alive, rid, &[], &body),
            keep_alive,
        )
        .await;
    }
    if head.method != route.method() {
        let message = format!(
            "Invalid method for URL ({} {})",
            method_name(head.method),
            head.path
        );
        let body = openai_error_body(&message, INVALID_REQUEST, None, None);
        let allow: &[(&str, &[u8])] = &[("Allow", method_name(route.method()).as_bytes())];
        return send(
            conn,
            json_response(version, 405, keep_alive, rid, allow, &body),
            keep_alive,
        )
        .await;
    }
    let body = match route {
        Route::Llm(endpoint) => return llm(conn, shared, endpoint, head, &headers, &body).await,
        Route::Models => synth::models_body(
            shared.settings.models.iter().map(String::as_str),
            MODELS_CREATED,
            "sluice-mock",
        ),
        Route::Model(id) => synth::model_body(id, MODELS_CREATED, "sluice-mock"),
        Route::Stats => stats.to_json(),
        Route::Health => b"{\"status\":\"ok\"}".to_vec(),
        Route::NotFound => Vec::new(),
    };
    send(
        conn,
        json_response(version, 200, keep_alive, rid, &[], &body),
        keep_alive,
    )
    .await
}

/// Whether an `Authorization` value is `Bearer KEY` (the scheme is case-insensitive).
fn bearer_is(value: &str, key: &str) -> bool {
    let value = value.trim();
    value
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
        && value.get(7..).is_some_and(|token| token.trim() == key)
}

/// Extra response headers: (name, value) pairs.
type Headers = &'static [(&'static str, &'static [u8])];

/// Error body and extra headers of an injected fault.
fn fault_response(fault: Fault) -> (Vec<u8>, Headers) {
    const RATE_LIMITED: Headers = &[
        ("Retry-After", b"1"),
        ("x-ratelimit-limit-requests", b"60"),
        ("x-ratelimit-remaining-requests", b"0"),
        ("x-ratelimit-reset-requests", b"1s"),
    ];
    let (message, kind, code, extra): (&str, &str, Option<&str>, Headers) = match fault.status {
        429 => (
            "Rate limit reached for requests (injected by sluice-loadgen mock).",
            RATE_LIMIT,
            Some("rate_limit_exceeded"),
            RATE_LIMITED,
        ),
        401 => (
            "Incorrect API key provided (injected by sluice-loadgen mock).",
            INVALID_REQUEST,
            Some("invalid_api_key"),
            &[],
        ),
        403 => (
            "You are not allowed to use this model (injected by sluice-loadgen mock).",
            PERMISSION,
            None,
            &[],
        ),
        500..=599 => (
            "The server had an error while processing your request (injected by \
                 sluice-loadgen mock).",
            SERVER,
            None,
            &[],
        ),
        _ => (
            "The request was refused (injected by sluice-loadgen mock).",
            INVALID_REQUEST,
            None,
            &[],
        ),
    };
    (openai_error_body(message, kind, None, code), extra)
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
    match conn.race(monoio::time::sleep(delay)).await {
        Raced::Done(()) => true,
        Raced::ClientGone => {
            bump(&stats.client_disconnects);
            false
        }
    }
}

/// A POST to one of the LLM endpoints.
async fn llm(
    conn: &mut ClientConn,
    shared: &Shared,
    endpoint: Endpoint,
    head: &RequestHead,
    headers: &[(String, String)],
    body: &[u8],
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
    });
    let (version, keep_alive, rid) = (head.version, head.keep_alive, head.request_id.as_deref());
    if !pause(conn, stats, settings.delay_headers).await {
        return After::Close;
    }
    if let Some(key) = &settings.require_key {
        let given = headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_str());
        if !given.is_some_and(|v| bearer_is(v, key)) {
            let message = match given {
                None => {
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                }
                Some(_) => "Incorrect API key provided.",
            };
            let body = openai_error_body(message, INVALID_REQUEST, None, Some("invalid_api_key"));
            let out = json_response(version, 401, keep_alive, rid, &[], &body);
            return send(conn, out, keep_alive).await;
        }
    }
    if let Some(fault) = settings.fault.filter(|f| f.hits(n)) {
        bump(&stats.faults);
        let (body, extra) = fault_response(fault);
        let out = json_response(version, fault.status, keep_alive, rid, extra, &body);
        return send(conn, out, keep_alive).await;
    }
    let mut req = match SynthRequest::parse(endpoint, body, settings.tokens) {
        Ok(req) => req,
        Err(e) => {
            let body = openai_error_body(e.message(), INVALID_REQUEST, e.param(), None);
            let out = json_response(version, 400, keep_alive, rid, &[], &body);
            return send(conn, out, keep_alive).await;
        }
    };
    req.omit_usage = settings.no_usage;
    let prefix = match endpoint {
        Endpoint::Completions => "cmpl",
        _ => "chatcmpl",
    };
    let id = format!("{prefix}-mock{n}");
    let created = unix_now();
    if req.stream {
        return stream(conn, shared, &req, &id, created, head).await;
    }
    // A non-streaming reply arrives when the whole generation would have finished.
    if !pause(conn, stats, settings.pacing().whole(req.reply_tokens())).await {
        return After::Close;
    }
    let body = synth::response_body(&req, &id, created);
    send(
        conn,
        json_response(version, 200, keep_alive, rid, &[], &body),
        keep_alive,
    )
    .await
}

/// A streamed reply: one HTTP chunk per SSE frame, each written as soon as it is due.
async fn stream(
    conn: &mut ClientConn,
    shared: &Shared,
    req: &SynthRequest,
    id: &str,
    created: u64,
    head: &RequestHead,
) -> After {
    let (settings, stats) = (&shared.settings, &shared.stats);
    bump(&stats.streams);
    // HTTP/1.0 has no chunked coding: the body ends when the connection closes.
    let chunked = head.version == 1;
    let keep_alive = head.keep_alive && chunked;
    let mut response = Head::new(head.version, 200)
        .header("Content-Type", b"text/event-stream")
        .header("Cache-Control", b"no-cache")
        .header("X-Accel-Buffering", b"no");
    if let Some(rid) = &head.request_id {
        response = response.header("X-Request-Id", rid.as_bytes());
    }
    let (res, mut out) = conn
        .write(response.streaming(head.version, keep_alive))
        .await;
    if res.is_err() {
        bump(&stats.client_disconnects);
        return After::Close;
    }
    let mut frames = SynthStream::new(req, id, created);
    let mut frame = Vec::with_capacity(512);
    let mut first = true;
    loop {
        if let Some(cut) = settings.cut {
            if frames.token_frames_sent() >= cut.after() && !frames.is_finished() {
                return cut_short(conn, stats, cut).await;
            }
        }
        frame.clear();
        let Some(kind) = frames.next_kind(&mut frame) else {
            break;
        };
        let delay = settings
            .pacing()
            .before(kind, first, frames.token_frames_sent());
        first = false;
        if !pause(conn, stats, delay).await {
            return After::Close;
        }
        out.clear();
        write_body(&mut out, &[&frame], chunked, kind == FrameKind::Done);
        let (res, buf) = conn.write(out).await;
        out = buf;
        if res.is_err() {
            bump(&stats.client_disconnects);
            return After::Close;
        }
        if kind == FrameKind::Token {
            bump(&stats.token_chunks_sent);
        }
    }
    bump(&stats.streams_completed);
    if keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// `--drop-after`: close now, mid-body. `--stall-after`: write nothing more and wait for the
/// client to hang up.
async fn cut_short(conn: &mut ClientConn, stats: &Stats, cut: Cut) -> After {
    match cut {
        Cut::Drop(_) => bump(&stats.streams_dropped),
        Cut::Stall(_) => {
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
        }
    }
    After::Close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        use Endpoint::*;
        for (path, want) in [
            ("/v1/chat/completions", Route::Llm(ChatCompletions)),
            ("/chat/completions", Route::Llm(ChatCompletions)),
            ("/v1/chat/completions?x=1", Route::Llm(ChatCompletions)),
            ("/v1/completions", Route::Llm(Completions)),
            ("/completions", Route::Llm(Completions)),
            ("/v1/embeddings", Route::Llm(Embeddings)),
            ("/embeddings", Route::Llm(Embeddings)),
            ("/v1/models", Route::Models),
            ("/models", Route::Models),
            ("/v1/models/gpt-4o", Route::Model("gpt-4o")),
            ("/models/ft:x:y", Route::Model("ft:x:y")),
            ("/v1/models/", Route::NotFound),
            ("/v1/models/a/b", Route::NotFound),
            ("/mock/stats", Route::Stats),
            ("/v1/mock/stats", Route::Stats),
            ("/healthz", Route::Health),
            ("/v1", Route::NotFound),
            ("/v1x/chat/completions", Route::NotFound),
            ("/v1/v1/chat/completions", Route::NotFound),
            ("/", Route::NotFound),
            ("", Route::NotFound),
        ] {
            assert_eq!(route(path), want, "{path}");
        }
        assert_eq!(Route::Llm(Embeddings).method(), Method::Post);
        assert_eq!(Route::Models.method(), Method::Get);
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
    fn headers_are_listed_in_lower_case() {
        let head =
            b"POST /v1/x HTTP/1.1\r\nHost: a\r\nX-Thing:  v \r\nAuthorization: Bearer k\r\n\r\n";
        assert_eq!(
            header_list(head),
            [
                ("host".to_owned(), "a".to_owned()),
                ("x-thing".to_owned(), "v".to_owned()),
                ("authorization".to_owned(), "Bearer k".to_owned())
            ]
        );
        assert!(header_list(b"\x00garbage").is_empty());
    }

    #[test]
    fn faults_have_openai_bodies() {
        let (body, extra) = fault_response(Fault {
            status: 429,
            rate: 1.0,
        });
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(extra.iter().any(|(n, v)| *n == "Retry-After" && *v == b"1"));
        for status in [400, 401, 403, 404, 500, 503, 529] {
            let (body, extra) = fault_response(Fault { status, rate: 1.0 });
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v["error"]["message"].is_string(), "{status}");
            assert!(extra.is_empty());
        }
    }
}
