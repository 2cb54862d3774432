//! One client connection of the mock: HTTP/1.x framing (keep-alive, pipelining,
//! Content-Length and chunked bodies), routing and the plain GET routes. POSTs to the LLM
//! routes go to [`llm`](super::llm).
//!
//! The HTTP pieces (head parsing, chunked coding, response heads, `ClientConn::race` to notice
//! a client hanging up while we sleep) are the gateway's own, from `sluice-core`.

use super::llm;
use super::reply::{After, Out, Shape};
use super::stats::{bump, ActiveConnection};
use super::Shared;
use monoio::net::TcpStream;
use sluice_core::client::{BodyError, ClientConn};
use sluice_core::http::{
    parse_request_head, read_more, HeadError, Method, RequestHead, MAX_HEADERS,
};
use sluice_proto_llm::synth::{self, Endpoint};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head accepted (431 beyond).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// `created` of the listed models: fixed, so responses are reproducible.
const MODELS_CREATED: u64 = 1_700_000_000;

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
                let out = Out::new(1, false, None, Shape::OpenAi).error(status, &[], message);
                let _ = conn.write(out).await;
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
        let route = route(&head.path);
        let deadline = std::time::Instant::now() + BODY_TIMEOUT;
        let body = match conn.read_body(&head, MAX_BODY, deadline).await {
            Ok(body) => body,
            Err(e) => {
                let Some((status, message)) = body_refusal(e) else {
                    return;
                };
                let rid = head.request_id.as_deref();
                let out = Out::new(head.version, false, rid, route.shape());
                let _ = conn.write(out.error(status, &[], &message)).await;
                conn.linger_close().await;
                return;
            }
        };
        let after = respond(&mut conn, &shared, &head, route, headers, body).await;
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

    /// The error shape of the route: Anthropic's on the Messages route.
    fn shape(self) -> Shape {
        match self {
            Route::Llm(Endpoint::Messages) => Shape::Anthropic,
            _ => Shape::OpenAi,
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
        "/messages" => Route::Llm(Endpoint::Messages),
        "/responses" => Route::Llm(Endpoint::Responses),
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

async fn respond(
    conn: &mut ClientConn,
    shared: &Shared,
    head: &RequestHead,
    route: Route<'_>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> After {
    let stats = &shared.stats;
    if head.method == Method::Post {
        bump(&stats.requests);
        stats.record_post(&head.path, headers.clone(), &body);
    }
    let out = Out::new(
        head.version,
        head.keep_alive,
        head.request_id.as_deref(),
        route.shape(),
    );
    if route == Route::NotFound {
        let message = format!("Invalid URL ({} {})", method_name(head.method), head.path);
        return out.send(conn, out.error(404, &[], &message)).await;
    }
    if head.method != route.method() {
        let message = format!(
            "Invalid method for URL ({} {})",
            method_name(head.method),
            head.path
        );
        let allow: &[(&str, &[u8])] = &[("Allow", method_name(route.method()).as_bytes())];
        return out.send(conn, out.error(405, allow, &message)).await;
    }
    let body = match route {
        Route::Llm(endpoint) => {
            return llm::serve(conn, shared, endpoint, out, headers, body).await;
        }
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
    out.send(conn, out.json(200, &[], &body)).await
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
            ("/v1/messages", Route::Llm(Messages)),
            ("/messages?beta=true", Route::Llm(Messages)),
            ("/v1/responses", Route::Llm(Responses)),
            ("/responses", Route::Llm(Responses)),
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
        assert_eq!(Route::Llm(Messages).shape(), Shape::Anthropic);
        assert_eq!(Route::Llm(Responses).shape(), Shape::OpenAi);
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
}
