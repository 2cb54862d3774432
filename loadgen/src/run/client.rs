//! One virtual user's side of HTTP/1.1: its keep-alive connection, connecting (optionally from
//! a chosen source address), and one request/response exchange with the SSE stream read event
//! by event.
//!
//! The HTTP and SSE pieces are the gateway's: `parse_response_head` and `BodyDecoder` from
//! `sluice-core`'s upstream client, `SseFramer` and `UsageExtractor` from `sluice-proto-llm`.
//! What is new here is only the bookkeeping: when each content event arrived.

use super::events::{Classifier, EventKind};
use super::report::ErrorClass;
use bytes::Bytes;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use sluice_core::http::read_more;
use sluice_core::upstream::{parse_response_head, BodyDecoder};
use sluice_proto_llm::sse::SseFramer;
use sluice_proto_llm::usage::UsageExtractor;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Free space kept at the end of the read buffer for each read. Small on purpose: a virtual
/// user holds its buffers for the whole run, and there may be 50,000 of them.
const READ_SPARE: usize = 2048;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest SSE event accepted.
const MAX_EVENT: usize = 1024 * 1024;
/// Largest non-streamed body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How much of an error response's body is kept for the report's example message.
const ERROR_SNIPPET: usize = 300;

/// What a request needs from its worker.
pub struct Env<'a> {
    pub target: SocketAddr,
    pub request: &'a Bytes,
    pub stall_threshold: Duration,
    pub classifier: &'a Classifier,
    pub usage: &'a RefCell<UsageExtractor>,
    /// Counts responses (heads) received, whatever becomes of their requests.
    pub responses: &'a Cell<u64>,
}

/// A virtual user's connection and buffers, reused across its requests.
pub struct User {
    conn: Option<TcpStream>,
    source: Option<IpAddr>,
    raw: Vec<u8>,
    body: Vec<u8>,
    /// Made at the first streamed response (a user that never streams never pays for it).
    framer: Option<SseFramer>,
    /// Gaps between consecutive content events of the current request, in microseconds.
    pub gaps_us: Vec<u64>,
}

impl User {
    pub fn new(source: Option<IpAddr>) -> Self {
        User {
            conn: None,
            source,
            raw: Vec::new(),
            body: Vec::new(),
            framer: None,
            gaps_us: Vec::new(),
        }
    }
}

/// What one request observed (filled while it runs, so a timeout keeps what was seen).
#[derive(Debug, Default)]
pub struct Observed {
    pub streamed: bool,
    pub first_token: Option<Instant>,
    last_content: Option<Instant>,
    last_event: Option<Instant>,
    pub content_events: u64,
    pub usage_tokens: Option<u64>,
    pub stalls: u64,
    done: bool,
    /// The first error event's payload.
    error_event: Option<String>,
}

impl Observed {
    pub fn reset(&mut self) {
        *self = Observed::default();
    }
}

/// Why a request failed, and a message for the report.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }
}

/// How an exchange on one connection went.
enum Step {
    /// A response was read: whether the connection can carry the next request, and the result.
    Done {
        keep: bool,
        result: Result<(), Failure>,
    },
    /// The connection closed before any response byte: on a reused connection, the server
    /// had closed it while idle, so the request is sent again on a new one.
    Stale(String),
    Failed(Failure),
}

/// Sends the request on the user's connection (connecting first when it has none) and reads
/// the whole response.
pub async fn send(env: &Env<'_>, user: &mut User, seen: &mut Observed) -> Result<(), Failure> {
    loop {
        let reused = user.conn.is_some();
        let mut stream = match user.conn.take() {
            Some(s) => s,
            None => connect(env.target, user.source).await.map_err(|e| {
                let from = user
                    .source
                    .map(|ip| format!(" from {ip}"))
                    .unwrap_or_default();
                Failure::new(
                    ErrorClass::Connect,
                    format!("connect to {}{from}: {e}", env.target),
                )
            })?,
        };
        match exchange(env, user, &mut stream, seen).await {
            Step::Done { keep, result } => {
                if keep {
                    user.conn = Some(stream);
                }
                return result;
            }
            Step::Stale(_) if reused => continue,
            Step::Stale(message) => return Err(Failure::new(ErrorClass::Io, message)),
            Step::Failed(f) => return Err(f),
        }
    }
}

/// Opens a connection; with a source address, binds to it before connecting. The port is
/// left to `connect` (`IP_BIND_ADDRESS_NO_PORT`), which only needs the whole 4-tuple to be
/// unique: a port chosen at `bind` would have to be free for every destination, and finding
/// one gets slow when tens of thousands are taken or in TIME_WAIT.
async fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect_addr(target).await?,
        Some(ip) => {
            use socket2::{Domain, Protocol, Socket, Type};
            let socket = Socket::new(
                Domain::for_address(target),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_nonblocking(true)?;
            // Best effort (Linux 4.2+): without it the kernel picks the port at `bind`.
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            );
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            match socket.connect(&target.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(e),
            }
            let stream = TcpStream::from_std(socket.into())?;
            stream.writable(false).await?;
            if let Err(not_connected) = stream.peer_addr() {
                // The connect failed; its error (SO_ERROR) is what the next read reports.
                use monoio::io::AsyncReadRent;
                let mut stream = stream;
                let (res, _) = stream.read(Vec::with_capacity(1)).await;
                return Err(res.err().unwrap_or(not_connected));
            }
            stream
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn exchange(
    env: &Env<'_>,
    user: &mut User,
    stream: &mut TcpStream,
    seen: &mut Observed,
) -> Step {
    let (res, _) = stream.write_all(env.request.clone()).await;
    if let Err(e) = res {
        return Step::Stale(format!("writing the request: {e}"));
    }
    user.raw.clear();
    let head = loop {
        match parse_response_head(&user.raw) {
            Ok(Some((head, len))) => {
                user.raw.drain(..len.min(user.raw.len()));
                if (100..200).contains(&head.status) {
                    continue;
                }
                break head;
            }
            Ok(None) if user.raw.len() > MAX_HEAD => {
                return Step::Failed(Failure::new(
                    ErrorClass::Protocol,
                    "response head too large",
                ))
            }
            Ok(None) => {}
            Err(e) => return Step::Failed(Failure::new(ErrorClass::Protocol, e.to_string())),
        }
        let (res, buf) = read_more(stream, std::mem::take(&mut user.raw), READ_SPARE).await;
        user.raw = buf;
        match res {
            Ok(0) if user.raw.is_empty() => {
                return Step::Stale("connection closed before a response".to_owned())
            }
            Ok(0) => {
                return Step::Failed(Failure::new(
                    ErrorClass::Protocol,
                    "connection closed inside the response head",
                ))
            }
            Ok(_) => {}
            Err(e)
                if user.raw.is_empty()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
            {
                return Step::Stale(format!("connection reset before a response: {e}"))
            }
            Err(e) => {
                return Step::Failed(Failure::new(
                    ErrorClass::Io,
                    format!("reading the response: {e}"),
                ))
            }
        }
    };
    env.responses.set(env.responses.get() + 1);
    let ok = (200..300).contains(&head.status);
    seen.streamed = ok && head.is_event_stream();
    let mut decoder = BodyDecoder::new(head.framing);
    let mut now = Instant::now();
    let mut clean = true;
    user.body.clear();
    if seen.streamed {
        // Whatever an earlier stream left unframed is dropped with its reset.
        let framer = user.framer.get_or_insert_with(|| SseFramer::new(MAX_EVENT));
        let _ = framer.take_remainder();
    }
    // What a failure after the head is: the status when it was not 2xx, else a broken body.
    let cut = |why: String| {
        if ok {
            Failure::new(ErrorClass::BrokenStream, why)
        } else {
            Failure::new(ErrorClass::Http(head.status), why)
        }
    };
    loop {
        if !user.raw.is_empty() && !decoder.is_done() {
            let used = match decoder.decode(&user.raw, &mut user.body) {
                Ok(n) => n,
                Err(e) => {
                    return Step::Failed(Failure::new(
                        ErrorClass::Protocol,
                        format!("bad chunked body: {e}"),
                    ))
                }
            };
            user.raw.drain(..used.min(user.raw.len()));
            if let Some(framer) = user.framer.as_mut().filter(|_| seen.streamed) {
                framer.push(&user.body);
                user.body.clear();
                if let Err(f) = events(env, framer, &mut user.gaps_us, seen, now) {
                    return Step::Failed(f);
                }
            } else if !ok {
                user.body.truncate(ERROR_SNIPPET);
            } else if user.body.len() > MAX_BODY {
                return Step::Failed(Failure::new(
                    ErrorClass::Protocol,
                    format!("response body larger than {MAX_BODY} bytes"),
                ));
            }
        }
        if decoder.is_done() {
            break;
        }
        let (res, buf) = read_more(stream, std::mem::take(&mut user.raw), READ_SPARE).await;
        user.raw = buf;
        now = Instant::now();
        match res {
            Ok(0) if decoder.eof_is_clean() => {
                // A close-delimited body ends here; the connection is gone.
                clean = false;
                break;
            }
            Ok(0) => {
                return Step::Failed(cut(
                    "connection closed before the end of the body".to_owned()
                ))
            }
            Ok(_) => {}
            Err(e) => return Step::Failed(cut(format!("reading the body: {e}"))),
        }
    }
    // Bytes past the body would be an answer to a request we did not send.
    let keep = clean && head.keep_alive && user.raw.is_empty();
    let result = if !ok {
        let snippet = String::from_utf8_lossy(&user.body);
        Err(Failure::new(
            ErrorClass::Http(head.status),
            format!("HTTP {}: {}", head.status, snippet.trim()),
        ))
    } else if seen.streamed {
        if let Some(payload) = seen.error_event.take() {
            Err(Failure::new(
                ErrorClass::BrokenStream,
                format!("error event: {payload}"),
            ))
        } else if !seen.done {
            Err(Failure::new(
                ErrorClass::BrokenStream,
                "stream ended without [DONE]",
            ))
        } else {
            Ok(())
        }
    } else {
        let usage = env.usage.borrow_mut().extract(&user.body);
        seen.usage_tokens = usage.map(|u| u.completion_tokens);
        Ok(())
    };
    Step::Done { keep, result }
}

/// Takes every complete event out of the framer and books it, as arrived at `now`.
fn events(
    env: &Env<'_>,
    framer: &mut SseFramer,
    gaps_us: &mut Vec<u64>,
    seen: &mut Observed,
    now: Instant,
) -> Result<(), Failure> {
    loop {
        let frame = match framer.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Failure::new(ErrorClass::Protocol, e.to_string())),
        };
        let data = frame.data();
        let kind = env.classifier.classify(frame.event(), data.as_deref());
        if data.is_none() && kind != EventKind::Error {
            // Comments and events without data (keep-alives) carry nothing; they must not
            // hide a stall either.
            continue;
        }
        let data = data.unwrap_or_default();
        if let Some(prev) = seen.last_event {
            if now.saturating_duration_since(prev) > env.stall_threshold {
                seen.stalls += 1;
            }
        }
        seen.last_event = Some(now);
        match kind {
            EventKind::Content => {
                seen.content_events += 1;
                match seen.last_content {
                    Some(prev) => {
                        let gap = now.saturating_duration_since(prev).as_micros();
                        gaps_us.push(u64::try_from(gap).unwrap_or(u64::MAX));
                    }
                    None => seen.first_token = Some(now),
                }
                seen.last_content = Some(now);
            }
            EventKind::Done => {
                seen.done = true;
                continue;
            }
            EventKind::Error => {
                if seen.error_event.is_none() {
                    let shown = data.get(..ERROR_SNIPPET).unwrap_or(&data);
                    seen.error_event = Some(String::from_utf8_lossy(shown).into_owned());
                }
            }
            EventKind::Other => {}
        }
        if let Some(usage) = env.usage.borrow_mut().extract(&data) {
            seen.usage_tokens = Some(usage.completion_tokens);
        }
    }
}
