//! The client side of a connection: writing responses, and noticing when the client goes away
//! while we wait on something else.

use crate::http::chunked::{ChunkedDecoder, ChunkedError};
use crate::http::{
    read_more, write_header, write_header_u64, write_status_line, BodyFraming, RequestHead,
};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Longest we keep reading (and discarding) from a client after refusing its request.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes we discard while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The client closed the connection (nothing to answer).
    Closed,
    /// The body did not arrive before the deadline (408).
    TimedOut,
    /// Larger than the limit (413).
    TooLarge,
    /// Broken chunked encoding (400).
    Malformed(ChunkedError),
}

/// Result of racing work against the client's connection.
pub enum Raced<T> {
    Done(T),
    ClientGone,
}

/// Client connection plus what we learned about it.
pub struct ClientConn {
    pub stream: TcpStream,
    /// Bytes read past the current request (pipelined), kept for the next one.
    pub buf: Vec<u8>,
    /// False once the client sent bytes while we were busy (pipelining): from then on we stop
    /// watching for EOF and rely on write errors.
    pub watch: bool,
    /// HTTP version of the current request (0 = 1.0).
    pub version: u8,
}

enum Event<T> {
    Done(T),
    Readable(std::io::Result<()>),
}

enum Peek {
    Gone,
    Data,
    Nothing,
}

fn peek(stream: &TcpStream) -> Peek {
    let fd = stream.as_raw_fd();
    let mut byte = 0u8;
    // SAFETY: `fd` is the open socket owned by `stream`, which outlives this call; we pass a
    // valid pointer to one writable byte and its length 1. MSG_PEEK leaves the data queued and
    // MSG_DONTWAIT keeps the call from blocking.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast::<libc::c_void>(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n > 0 {
        Peek::Data
    } else if n == 0 {
        Peek::Gone
    } else {
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peek::Nothing,
            _ => Peek::Gone,
        }
    }
}

impl ClientConn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            // The first read makes room (4 KiB): an idle connection holds nothing before it.
            buf: Vec::new(),
            watch: true,
            version: 1,
        }
    }

    /// Frees the read buffer if it holds nothing (no pipelined request): a streaming
    /// response can last minutes, and the next request's read makes room again.
    pub fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Run `fut` to completion unless the client closes its connection first. The future is
    /// never dropped half-way except when the client is gone (then the caller abandons the
    /// upstream work anyway), so no upstream bytes are lost to cancellation.
    ///
    /// The caller pins `fut` (`std::pin::pin!`): taking it by value would store it twice in
    /// this future's state (the argument and the pinned local), and a streaming response
    /// awaits this for its whole life, so every byte of it counts per open stream.
    pub async fn race<F: Future>(&mut self, mut fut: Pin<&mut F>) -> Raced<F::Output> {
        while self.watch {
            let ev = {
                let mut readable = pin!(self.stream.readable(false));
                poll_fn(|cx| {
                    if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                        return Poll::Ready(Event::Done(v));
                    }
                    if let Poll::Ready(r) = readable.as_mut().poll(cx) {
                        return Poll::Ready(Event::Readable(r));
                    }
                    Poll::Pending
                })
                .await
            };
            match ev {
                Event::Done(v) => return Raced::Done(v),
                Event::Readable(Err(_)) => return Raced::ClientGone,
                Event::Readable(Ok(())) => match peek(&self.stream) {
                    Peek::Gone => return Raced::ClientGone,
                    Peek::Data => self.watch = false,
                    Peek::Nothing => {}
                },
            }
        }
        Raced::Done(fut.await)
    }

    /// Read the request body that follows `head` (already removed from `buf`), per its
    /// framing: at most `max` bytes (after chunked decoding), all of it before `deadline`.
    /// Sends `100 Continue` first when the client asked for it. Bytes after the body stay in
    /// `buf` for the next (pipelined) request.
    pub async fn read_body(
        &mut self,
        head: &RequestHead,
        max: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, BodyError> {
        let (mut body, mut chunked) = match head.framing {
            BodyFraming::None => return Ok(Vec::new()),
            BodyFraming::Length(n) if n > max as u64 => return Err(BodyError::TooLarge),
            // `n <= max`, so it fits in memory we agreed to spend.
            BodyFraming::Length(n) => (Vec::with_capacity(usize::try_from(n).unwrap_or(0)), None),
            BodyFraming::Chunked => (Vec::new(), Some(ChunkedDecoder::new())),
        };
        if head.expect_continue && head.version == 1 {
            let (res, _) = self.write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
            if res.is_err() {
                return Err(BodyError::Closed);
            }
        }
        loop {
            // Consume what is buffered.
            match (&mut chunked, head.framing) {
                (Some(decoder), _) => {
                    let used = decoder
                        .decode(&self.buf, &mut body)
                        .map_err(BodyError::Malformed)?;
                    self.buf.drain(..used.min(self.buf.len()));
                    if body.len() > max {
                        return Err(BodyError::TooLarge);
                    }
                    if decoder.is_done() {
                        return Ok(body);
                    }
                }
                (None, BodyFraming::Length(n)) => {
                    let want = usize::try_from(n).unwrap_or(usize::MAX);
                    let take = want.saturating_sub(body.len()).min(self.buf.len());
                    body.extend_from_slice(self.buf.get(..take).unwrap_or_default());
                    self.buf.drain(..take);
                    if body.len() == want {
                        return Ok(body);
                    }
                }
                (None, _) => return Ok(body),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let buf = std::mem::take(&mut self.buf);
            match monoio::time::timeout(left, read_more(&mut self.stream, buf, 16 * 1024)).await {
                Err(_) => return Err(BodyError::TimedOut),
                Ok((Ok(0) | Err(_), _)) => return Err(BodyError::Closed),
                Ok((Ok(_), b)) => self.buf = b,
            }
        }
    }

    /// Close politely after answering a request we did not read in full (413, 431, 400): stop
    /// writing, then discard what the client is still sending for a bounded time. Closing a
    /// socket with unread bytes makes the kernel send a RST, which can destroy our error
    /// response before the client reads it.
    pub async fn linger_close(&mut self) {
        use monoio::io::AsyncWriteRent;
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut buf = std::mem::take(&mut self.buf);
        let mut discarded = 0usize;
        while discarded < LINGER_BYTES {
            buf.clear();
            let left = deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, read_more(&mut self.stream, buf, 16 * 1024)).await {
                Ok((Ok(n), b)) if n > 0 => {
                    discarded += n;
                    buf = b;
                }
                _ => return,
            }
        }
    }

    /// Write all of `buf`; returns the buffer for reuse. Err = client gone.
    pub async fn write(&mut self, buf: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
        let (res, buf) = self.stream.write_all(buf).await;
        (res.map(|_| ()), buf)
    }
}

/// Response head builder for the client side.
pub struct Head {
    pub out: Vec<u8>,
    version: u8,
}

impl Head {
    pub fn new(version: u8, status: u16) -> Self {
        let mut out = Vec::with_capacity(256);
        write_status_line(&mut out, version, status);
        out.extend_from_slice(b"Server: sluice\r\n");
        Self { out, version }
    }

    pub fn header(mut self, name: &str, value: &[u8]) -> Self {
        write_header(&mut self.out, name, value);
        self
    }

    /// Finish a head for a body of known length (body appended).
    pub fn with_body(mut self, keep_alive: bool, body: &[u8]) -> Vec<u8> {
        write_header_u64(&mut self.out, "Content-Length", body.len() as u64);
        if !keep_alive {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == 0 {
            // HTTP/1.0 clients keep the connection only when told so.
            self.out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.out
    }

    /// Finish a head for a body streamed after it: chunked on HTTP/1.1, close-delimited on 1.0.
    pub fn streaming(mut self, version: u8, keep_alive: bool) -> Vec<u8> {
        if version == 0 {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else {
            self.out
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            if !keep_alive {
                self.out.extend_from_slice(b"Connection: close\r\n");
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self.out
    }
}

/// A complete JSON response.
pub fn json_response(
    version: u8,
    status: u16,
    keep_alive: bool,
    request_id: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut h = Head::new(version, status).header("Content-Type", b"application/json");
    if let Some(id) = request_id {
        h = h.header("X-Request-Id", id.as_bytes());
    }
    h.with_body(keep_alive, body)
}
