//! The upstream side: per-worker keep-alive pools, connecting (TCP, TLS), writing requests,
//! parsing response heads and decoding response bodies.
//!
//! **Architecture invariant:** a pool belongs to one worker (`Rc`, `RefCell`): connections never
//! move between cores, so nothing here locks.

pub mod conn;
pub mod tls;

pub use conn::UpConn;

use crate::config::{Backend, Provider, UpstreamUrl};
use crate::errors::{ErrorKind, GatewayError};
use crate::http::chunked::{ChunkedDecoder, ChunkedError};
use crate::http::{read_more, MAX_HEADERS};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Largest upstream response head we accept.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// How long resolved addresses are reused before asking the resolver again.
const DNS_TTL: Duration = Duration::from_secs(30);

struct IdleConn {
    conn: UpConn,
    since: Instant,
}

/// One worker's upstream state: idle connections per backend and a small DNS cache.
#[derive(Default)]
pub struct Upstreams {
    idle: RefCell<HashMap<String, Vec<IdleConn>>>,
    dns: RefCell<HashMap<String, (Vec<SocketAddr>, Instant)>>,
    pub tls: tls::TlsClients,
}

/// Identifies a pool: backends with the same scheme, host and port share connections.
pub fn pool_key(u: &UpstreamUrl) -> String {
    format!(
        "{}://{}:{}",
        if u.tls { "https" } else { "http" },
        u.host,
        u.port
    )
}

impl Upstreams {
    pub fn new(tls: tls::TlsClients) -> Rc<Self> {
        Rc::new(Self {
            tls,
            ..Default::default()
        })
    }

    /// A pooled connection that has not been idle for too long (most recently used first, so
    /// the rest age out).
    fn take_idle(&self, key: &str, idle_timeout: Duration) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < idle_timeout {
                return Some(c.conn);
            }
        }
        None
    }

    /// Return a connection whose last response was read completely.
    pub fn release(&self, key: &str, conn: UpConn, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key.to_owned()).or_default();
        if list.len() >= max_idle {
            // Drop the oldest.
            list.remove(0);
        }
        list.push(IdleConn {
            conn,
            since: Instant::now(),
        });
    }

    /// Number of idle connections (for tests and the admin view).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    /// Close idle connections that outlived their backend's idle timeout.
    pub fn sweep(&self, max_age: Duration) {
        for list in self.idle.borrow_mut().values_mut() {
            list.retain(|c| c.since.elapsed() < max_age);
        }
    }

    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = format!("{host}:{port}");
        if let Some((addrs, at)) = self.dns.borrow().get(&key) {
            if at.elapsed() < DNS_TTL {
                return Ok(addrs.clone());
            }
        }
        // Blocking lookup through the system resolver; cached above so it runs at most once per
        // host per TTL per worker. (A non-blocking resolver is future work; see ARCHITECTURE.md.)
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no addresses",
            ));
        }
        self.dns
            .borrow_mut()
            .insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }

    /// Open a new connection to the backend (TCP, then TLS if the URL is https).
    pub async fn connect(
        &self,
        backend: &Backend,
        url: &UpstreamUrl,
    ) -> Result<UpConn, GatewayError> {
        let unreachable = |what: String| {
            GatewayError::new(
                ErrorKind::UpstreamUnreachable,
                format!("backend `{}` is unreachable: {what}", backend.name),
            )
        };
        let addrs = self
            .resolve(&url.host, url.port)
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", url.host)))?;
        let mut last_err = String::from("no address");
        let mut tcp = None;
        for addr in addrs {
            match monoio::time::timeout(backend.connect_timeout, TcpStream::connect_addr(addr))
                .await
            {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last_err = format!("connect to {addr}: {e}"),
                Err(_) => {
                    return Err(GatewayError::new(
                        ErrorKind::UpstreamTimeout,
                        format!(
                            "backend `{}`: connect to {addr} timed out after {:?}",
                            backend.name, backend.connect_timeout
                        ),
                    ))
                }
            }
        }
        let tcp = tcp.ok_or_else(|| unreachable(last_err))?;
        let _ = tcp.set_nodelay(true);
        if !url.tls {
            return Ok(UpConn::Plain(tcp));
        }
        let (connector, name) = self
            .tls
            .get(&backend.name)
            .ok_or_else(|| GatewayError::new(ErrorKind::Internal, "TLS client not configured"))?;
        match monoio::time::timeout(
            backend.connect_timeout,
            connector.connect(name.clone(), tcp),
        )
        .await
        {
            Ok(Ok(s)) => Ok(UpConn::Tls(Box::new(s))),
            Ok(Err(e)) => Err(unreachable(format!(
                "TLS handshake with {} failed: {e}",
                url.host
            ))),
            Err(_) => Err(GatewayError::new(
                ErrorKind::UpstreamTimeout,
                format!("backend `{}`: TLS handshake timed out", backend.name),
            )),
        }
    }

    /// Send one request and read the response head. On a pooled connection that turns out to
    /// be dead (closed by the peer while idle), retries once on a fresh connection: nothing
    /// reached the upstream's application in that case.
    pub async fn exchange(
        &self,
        backend: &Backend,
        url: &UpstreamUrl,
        request: Vec<u8>,
        metrics: &crate::metrics::Shard,
    ) -> Result<Exchange, GatewayError> {
        let key = pool_key(url);
        let mut request = request;
        let mut pooled = self.take_idle(&key, backend.pool_idle_timeout);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(c) => {
                    metrics.count(crate::metrics::Event::UpstreamReused);
                    c
                }
                None => {
                    metrics.count(crate::metrics::Event::UpstreamConnects);
                    match self.connect(backend, url).await {
                        Ok(c) => c,
                        Err(e) => {
                            metrics.count(crate::metrics::Event::UpstreamConnectErrors);
                            return Err(e);
                        }
                    }
                }
            };
            let (res, req_back) = conn.write_all(request).await;
            request = req_back;
            if let Err(e) = res {
                if reused {
                    continue;
                }
                return Err(GatewayError::new(
                    ErrorKind::UpstreamUnreachable,
                    format!(
                        "backend `{}`: writing the request failed: {e}",
                        backend.name
                    ),
                ));
            }
            let sent_at = Instant::now();
            match monoio::time::timeout(backend.first_byte_timeout, read_head(&mut conn)).await {
                Err(_) => {
                    metrics.count(crate::metrics::Event::UpstreamTimeouts);
                    return Err(GatewayError::new(
                        ErrorKind::UpstreamTimeout,
                        format!(
                            "backend `{}` did not answer within {:?}",
                            backend.name, backend.first_byte_timeout
                        ),
                    ));
                }
                Ok(Err(HeadReadError::ClosedBeforeResponse)) if reused => continue,
                Ok(Err(e)) => {
                    return Err(GatewayError::new(
                        ErrorKind::UpstreamProtocol,
                        format!("backend `{}`: {e}", backend.name),
                    ))
                }
                Ok(Ok((head, leftover))) => {
                    return Ok(Exchange {
                        conn,
                        head,
                        leftover,
                        pool_key: key,
                        latency: sent_at.elapsed(),
                    })
                }
            }
        }
    }
}

/// A response whose head has been read.
pub struct Exchange {
    pub conn: UpConn,
    pub head: ResponseHead,
    /// Body bytes that arrived with the head.
    pub leftover: Vec<u8>,
    pub pool_key: String,
    /// Time from request written to response head parsed.
    pub latency: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespFraming {
    Length(u64),
    Chunked,
    /// Delimited by the connection closing.
    Close,
    Empty,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub content_type: Option<String>,
    pub framing: RespFraming,
    pub keep_alive: bool,
    /// Headers worth passing to the client (rate-limit hints, retry-after).
    pub passthrough: Vec<(String, Vec<u8>)>,
}

impl ResponseHead {
    pub fn is_event_stream(&self) -> bool {
        self.content_type.as_deref().is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
    }
}

#[derive(Debug)]
pub enum HeadReadError {
    ClosedBeforeResponse,
    Io(std::io::Error),
    Malformed(String),
    TooLarge,
}

impl std::fmt::Display for HeadReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadReadError::ClosedBeforeResponse => {
                f.write_str("connection closed before a response")
            }
            HeadReadError::Io(e) => write!(f, "reading the response failed: {e}"),
            HeadReadError::Malformed(m) => write!(f, "malformed response: {m}"),
            HeadReadError::TooLarge => f.write_str("response head too large"),
        }
    }
}

/// Read and parse a response head; skips interim 1xx responses.
async fn read_head(conn: &mut UpConn) -> Result<(ResponseHead, Vec<u8>), HeadReadError> {
    // `read_more` makes 4 KiB of room: a head is usually a few hundred bytes, and this
    // buffer lives on as the stream's read buffer.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (res, b) = read_more(conn, buf, 4096).await;
        buf = b;
        match res {
            Ok(0) => {
                return Err(if buf.is_empty() {
                    HeadReadError::ClosedBeforeResponse
                } else {
                    HeadReadError::Malformed("connection closed in the response head".into())
                })
            }
            Ok(_) => {}
            Err(e) if buf.is_empty() => {
                return Err(match e.kind() {
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                        HeadReadError::ClosedBeforeResponse
                    }
                    _ => HeadReadError::Io(e),
                })
            }
            Err(e) => return Err(HeadReadError::Io(e)),
        }
        loop {
            match parse_response_head(&buf)? {
                None => break,
                Some((head, len)) if (100..200).contains(&head.status) => {
                    buf.drain(..len);
                    continue;
                }
                Some((head, len)) => {
                    buf.drain(..len);
                    return Ok((head, buf));
                }
            }
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(HeadReadError::TooLarge);
        }
    }
}

/// Parse a response head at the start of `buf`; `Ok(None)` = need more bytes.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadReadError::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let version = resp.version.unwrap_or(1);
    let mut content_type = None;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = version == 0;
    let mut passthrough = Vec::new();
    for h in resp.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("content-type") {
            content_type = std::str::from_utf8(h.value).ok().map(str::to_owned);
        } else if n.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            if content_length.is_none() {
                return Err(HeadReadError::Malformed("invalid Content-Length".into()));
            }
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|b| *b == b',')
                .next_back()
                .is_some_and(|t| crate::http::trim_ascii(t).eq_ignore_ascii_case(b"chunked"));
        } else if n.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|b| *b == b',') {
                let t = crate::http::trim_ascii(t);
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                    close = false;
                }
            }
        } else if n.eq_ignore_ascii_case("retry-after")
            || n.len() > 12
                && n.get(..12)
                    .is_some_and(|p| p.eq_ignore_ascii_case("x-ratelimit-"))
        {
            passthrough.push((n.to_ascii_lowercase(), h.value.to_vec()));
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        RespFraming::Empty
    } else if chunked {
        RespFraming::Chunked
    } else if let Some(n) = content_length {
        if n == 0 {
            RespFraming::Empty
        } else {
            RespFraming::Length(n)
        }
    } else {
        close = true;
        RespFraming::Close
    };
    Ok(Some((
        ResponseHead {
            status,
            content_type,
            framing,
            keep_alive: !close,
            passthrough,
        },
        len,
    )))
}

/// Decodes a response body according to its framing.
#[derive(Debug)]
pub enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    Close,
    Done,
}

impl BodyDecoder {
    pub fn new(framing: RespFraming) -> Self {
        match framing {
            RespFraming::Length(n) => BodyDecoder::Length { remaining: n },
            RespFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            RespFraming::Close => BodyDecoder::Close,
            RespFraming::Empty => BodyDecoder::Done,
        }
    }

    /// Decode body bytes from `input` into `out`; returns input bytes consumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        match self {
            BodyDecoder::Length { remaining } => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                out.extend_from_slice(input.get(..take).unwrap_or_default());
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok(take)
            }
            BodyDecoder::Chunked(d) => {
                let n = d.decode(input, out)?;
                if d.is_done() {
                    *self = BodyDecoder::Done;
                }
                Ok(n)
            }
            BodyDecoder::Close => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
            BodyDecoder::Done => Ok(0),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// At EOF from the upstream: true if that is a clean end of the body.
    pub fn eof_is_clean(&self) -> bool {
        matches!(self, BodyDecoder::Close | BodyDecoder::Done)
    }
}

/// What an upstream request asks for; with the backend's provider it decides the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

impl Operation {
    fn suffix(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "/chat/completions",
            Operation::Completions => "/completions",
            Operation::Embeddings => "/embeddings",
            Operation::Responses => "/responses",
            Operation::Messages => "/messages",
        }
    }
}

/// The request path (and query) for `op` on `backend`:
/// - OpenAI-compatible: `{base}/chat/completions`, `{base}/responses`, ...
/// - Azure OpenAI: `{base}/deployments/{deployment}/chat/completions?api-version=V` (the
///   target's model names the deployment); Responses: `{base}/responses?api-version=V`.
/// - Anthropic: `{base}/messages`.
pub fn request_path(backend: &Backend, url: &UpstreamUrl, op: Operation, model: &str) -> String {
    let mut path = String::with_capacity(url.base_path.len() + 64);
    path.push_str(&url.base_path);
    match backend.provider {
        Provider::AzureOpenAi if op != Operation::Responses => {
            path.push_str("/deployments/");
            path.extend(percent_encoding::utf8_percent_encode(model, PATH_SEGMENT));
            path.push_str(op.suffix());
        }
        _ => path.push_str(op.suffix()),
    }
    if let Some(v) = &backend.api_version {
        path.push_str("?api-version=");
        path.extend(percent_encoding::utf8_percent_encode(v, PATH_SEGMENT));
    }
    path
}

/// Characters escaped in a path segment (RFC 3986 `pchar` minus `/`).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// One upstream request, before it is written as bytes.
pub struct Outgoing<'a> {
    /// Path and query (see [`request_path`]).
    pub path: &'a str,
    pub request_id: &'a str,
    /// The backend key, sent the way the provider expects it.
    pub api_key: Option<&'a str>,
    pub stream: bool,
    /// Per-request headers (e.g. `anthropic-version`, a client's `anthropic-beta`).
    pub extra: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// Build the upstream request head + body. Built from scratch: nothing of the client's head
/// (credentials above all) reaches the upstream except what `req.extra` names.
pub fn build_request(backend: &Backend, url: &UpstreamUrl, req: &Outgoing<'_>) -> Vec<u8> {
    use crate::http::write_header;
    let mut out = Vec::with_capacity(320 + req.body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", url.host_header.as_bytes());
    write_header(&mut out, "Content-Type", b"application/json");
    let accept: &[u8] = if req.stream {
        b"text/event-stream"
    } else {
        b"application/json"
    };
    write_header(&mut out, "Accept", accept);
    write_header(
        &mut out,
        "User-Agent",
        concat!("sluice/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    write_header(&mut out, "X-Request-Id", req.request_id.as_bytes());
    if let Some(k) = req.api_key {
        match backend.provider {
            Provider::AzureOpenAi => write_header(&mut out, "api-key", k.as_bytes()),
            Provider::Anthropic => write_header(&mut out, "x-api-key", k.as_bytes()),
            Provider::OpenAi | Provider::Mock => {
                out.extend_from_slice(b"Authorization: Bearer ");
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    for (name, value) in req.extra {
        write_header(&mut out, name, value);
    }
    for (name, value) in &backend.headers {
        write_header(&mut out, name, value.as_bytes());
    }
    crate::http::write_header_u64(&mut out, "Content-Length", req.body.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_response_head() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\nx-ratelimit-remaining-requests: 9\r\n\r\n5\r\nhello";
        let (h, len) = parse_response_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(h.is_event_stream());
        assert_eq!(h.framing, RespFraming::Chunked);
        assert!(h.keep_alive);
        assert_eq!(h.passthrough.len(), 1);
        assert_eq!(&raw[len..], b"5\r\nhello");
    }

    #[test]
    fn close_delimited_and_length() {
        let (h, _) = parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, RespFraming::Close);
        assert!(!h.keep_alive);
        let (h, _) = parse_response_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, RespFraming::Length(3));
        let mut d = BodyDecoder::new(h.framing);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"abcdef", &mut out).unwrap(), 3);
        assert!(d.is_done());
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-")
            .unwrap()
            .is_none());
    }

    fn backend(toml: &str) -> Backend {
        let text = format!("{toml}\n[models.m]\ntargets = [{{ backend = \"b\" }}]\n");
        let cfg = crate::config::load_str(&text, "t.toml", None, &|_| None).unwrap();
        cfg.backends[0].clone()
    }

    #[test]
    fn paths_per_provider() {
        let b = backend(
            "[backends.b]\nprovider = \"openai\"\nbase_url = \"https://api.openai.com/v1\"",
        );
        let u = b.upstream.clone().unwrap();
        assert_eq!(
            request_path(&b, &u, Operation::ChatCompletions, "gpt"),
            "/v1/chat/completions"
        );
        assert_eq!(
            request_path(&b, &u, Operation::Responses, "gpt"),
            "/v1/responses"
        );
        let b = backend("[backends.b]\nprovider = \"azure-openai\"\nbase_url = \"https://r.openai.azure.com/openai\"\napi_version = \"2024-10-21\"");
        let u = b.upstream.clone().unwrap();
        assert_eq!(
            request_path(&b, &u, Operation::ChatCompletions, "my deploy/1"),
            "/openai/deployments/my%20deploy%2F1/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            request_path(&b, &u, Operation::Embeddings, "emb"),
            "/openai/deployments/emb/embeddings?api-version=2024-10-21"
        );
        let b = backend(
            "[backends.b]\nprovider = \"anthropic\"\nbase_url = \"https://api.anthropic.com/v1\"",
        );
        let u = b.upstream.clone().unwrap();
        assert_eq!(
            request_path(&b, &u, Operation::Messages, "claude"),
            "/v1/messages"
        );
    }

    #[test]
    fn keys_go_where_each_provider_wants_them() {
        for (provider, url, header) in [
            ("openai", "http://h/v1", "Authorization: Bearer sk-1\r\n"),
            ("azure-openai", "https://h/openai", "api-key: sk-1\r\n"),
            ("anthropic", "https://h/v1", "x-api-key: sk-1\r\n"),
        ] {
            let b = backend(&format!("[backends.b]\nprovider = \"{provider}\"\nbase_url = \"{url}\"\nheaders = {{ \"X-Team\" = \"a\" }}"));
            let u = b.upstream.clone().unwrap();
            let extra: [(&str, &[u8]); 1] = [("anthropic-version", b"2023-06-01")];
            let raw = build_request(
                &b,
                &u,
                &Outgoing {
                    path: "/p",
                    request_id: "r1",
                    api_key: Some("sk-1"),
                    stream: true,
                    extra: &extra,
                    body: b"{}",
                },
            );
            let text = String::from_utf8(raw).unwrap();
            assert!(
                text.starts_with("POST /p HTTP/1.1\r\nHost: h\r\n"),
                "{text}"
            );
            assert!(text.contains(header), "{provider}: {text}");
            assert_eq!(text.matches("sk-1").count(), 1, "{text}");
            assert!(
                text.contains("Accept: text/event-stream\r\n")
                    && text.contains("anthropic-version: 2023-06-01\r\n")
            );
            assert!(
                text.contains("X-Team: a\r\n") && text.ends_with("Content-Length: 2\r\n\r\n{}"),
                "{text}"
            );
        }
    }
}
