//! HTTP/1.1 pieces shared by the client-facing server and the upstream client: request head
//! parsing (httparse), response heads, chunked transfer coding, reading into rented buffers.

pub mod chunked;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use std::io;

/// Most headers we look at in one message; more is answered with 431.
pub const MAX_HEADERS: usize = 96;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// The parts of a client request head the gateway acts on. Header values we keep are copied
/// out so the read buffer can be reused for the body.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub framing: BodyFraming,
    pub expect_continue: bool,
    /// Whether the connection may be reused after this request.
    pub keep_alive: bool,
    /// Bearer token or `x-api-key`, if any (used for consumer auth; never sent upstream).
    pub credential: Option<String>,
    pub request_id: Option<String>,
    /// `anthropic-version`, forwarded to Anthropic backends on native Messages requests.
    pub anthropic_version: Option<String>,
    /// `anthropic-beta`, forwarded to Anthropic backends on native Messages requests.
    pub anthropic_beta: Option<String>,
    /// Length of the head in bytes, including the final blank line.
    pub head_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Head,
    Delete,
    Options,
    Other,
}

/// Why a request head was refused. Each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Head larger than the configured limit, or too many headers: 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed(&'static str),
    /// Transfer-Encoding we do not implement: 501.
    UnsupportedTransferEncoding,
}

/// Parse a request head from the start of `buf`. `Ok(None)` means "need more bytes".
pub fn parse_request_head(buf: &[u8], max_head: usize) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed("unsupported HTTP version"))
        }
        Err(_) => {
            return if buf.len() > max_head {
                Err(HeadError::TooLarge)
            } else {
                Err(HeadError::Malformed("malformed request head"))
            }
        }
    };
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            return if buf.len() >= max_head {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
    };
    if head_len > max_head {
        return Err(HeadError::TooLarge);
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "HEAD" => Method::Head,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let version = req.version.unwrap_or(1);
    let path = req.path.unwrap_or("/").to_owned();
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut credential = None;
    let mut request_id = None;
    let mut anthropic_version = None;
    let mut anthropic_beta = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(HeadError::Malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|old| old != v) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(v);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).unwrap_or("");
            // Only `chunked` (optionally the last of a list we cannot decode anyway) is supported.
            if v.trim().eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else {
                return Err(HeadError::UnsupportedTransferEncoding);
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = trim_ascii(token);
                if t.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            if let Ok(v) = std::str::from_utf8(h.value) {
                let v = v.trim();
                if v.len() > 7
                    && v.get(..7)
                        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
                {
                    credential = v.get(7..).map(|s| s.trim().to_owned());
                }
            }
        } else if name.eq_ignore_ascii_case("x-api-key") {
            if credential.is_none() {
                credential = std::str::from_utf8(h.value)
                    .ok()
                    .map(|s| s.trim().to_owned());
            }
        } else if name.eq_ignore_ascii_case("anthropic-version") {
            anthropic_version = forwardable(h.value);
        } else if name.eq_ignore_ascii_case("anthropic-beta") {
            anthropic_beta = forwardable(h.value);
        } else if name.eq_ignore_ascii_case("x-request-id") {
            if let Ok(v) = std::str::from_utf8(h.value) {
                let v = v.trim();
                // Accept only ids that are safe to echo in a header and a log line.
                if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) {
                    request_id = Some(v.to_owned());
                }
            }
        }
    }
    // RFC 9112 6.3: chunked wins over Content-Length, but both together smells of smuggling.
    if chunked && content_length.is_some() {
        return Err(HeadError::Malformed(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    let framing = if chunked {
        BodyFraming::Chunked
    } else {
        match content_length {
            Some(0) | None => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };
    let keep_alive = if version == 0 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };
    Ok(Some(RequestHead {
        method,
        path,
        version,
        framing,
        expect_continue,
        keep_alive,
        credential,
        request_id,
        anthropic_version,
        anthropic_beta,
        head_len,
    }))
}

/// A header value safe to copy into an upstream request: visible ASCII and spaces, at most
/// 512 bytes, trimmed.
fn forwardable(value: &[u8]) -> Option<String> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let ok =
        !v.is_empty() && v.len() <= 512 && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    ok.then(|| v.to_owned())
}

pub fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

/// Reason phrase for the status codes Sluice produces or relays.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Unknown",
    }
}

/// Append a status line to `out`.
pub fn write_status_line(out: &mut Vec<u8>, version: u8, status: u16) {
    out.extend_from_slice(if version == 0 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    let mut tmp = itoa_buf(u64::from(status));
    out.append(&mut tmp);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub fn write_header_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    let v = itoa_buf(value);
    write_header(out, name, &v);
}

fn itoa_buf(mut n: u64) -> Vec<u8> {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    tmp.get(i..).unwrap_or_default().to_vec()
}

/// Read more bytes into the spare capacity at the end of `buf` (monoio's rent-style IO writes a
/// `Vec` from its start, so we hand it the tail slice). Grows `buf` so at least `min_spare`
/// bytes are free. Returns the number of bytes read (0 = EOF).
pub async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    mut buf: Vec<u8>,
    min_spare: usize,
) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parses_post_with_length() {
        let raw = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nAuthorization: Bearer sk-1\r\n\r\n{}";
        let h = parse_request_head(raw, 1024).unwrap().unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path, "/v1/chat/completions");
        assert_eq!(h.framing, BodyFraming::Length(12));
        assert!(h.keep_alive);
        assert_eq!(h.credential.as_deref(), Some("sk-1"));
        assert_eq!(h.head_len, raw.len() - 2);
    }

    #[test]
    fn partial_and_limits() {
        assert!(parse_request_head(b"POST / HTTP/1.1\r\nHost", 1024)
            .unwrap()
            .is_none());
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(
            parse_request_head(&big, 1024).unwrap_err(),
            HeadError::TooLarge
        );
        assert!(matches!(
            parse_request_head(b"\x00\x01garbage\r\n\r\n", 1024),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn http10_and_connection_header() {
        let h = parse_request_head(b"GET /v1/models HTTP/1.0\r\n\r\n", 1024)
            .unwrap()
            .unwrap();
        assert_eq!(h.version, 0);
        assert!(!h.keep_alive);
        let h = parse_request_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1024)
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse_request_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", 1024)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn rejects_smuggling_shapes() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_request_head(raw, 1024).is_err());
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(parse_request_head(raw, 1024).is_err());
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(
            parse_request_head(raw, 1024).unwrap_err(),
            HeadError::UnsupportedTransferEncoding
        );
    }

    #[test]
    fn status_line() {
        let mut out = Vec::new();
        write_status_line(&mut out, 1, 431);
        assert_eq!(out, b"HTTP/1.1 431 Request Header Fields Too Large\r\n");
        let mut out = Vec::new();
        write_header_u64(&mut out, "Content-Length", 0);
        write_header_u64(&mut out, "X", 1234567890);
        assert_eq!(out, b"Content-Length: 0\r\nX: 1234567890\r\n");
    }
}
