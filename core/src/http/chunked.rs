//! Sans-IO decoder for HTTP/1.1 `Transfer-Encoding: chunked` bodies.
//!
//! Used for request bodies from clients and response bodies from upstreams. It copies payload
//! bytes into a caller-owned buffer (so the caller can keep one reusable buffer per
//! connection) and never looks at more input than it was given.

use std::fmt;

/// Longest chunk-size line we accept (size, extensions and CRLF). Real peers send a handful of
/// hex digits; anything longer is garbage or an attack.
const MAX_SIZE_LINE: usize = 1024;
/// Longest trailer section we skip over.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size line; holds the size parsed so far and whether an extension started.
    Size {
        size: u64,
        digits: usize,
        ext: bool,
        line_len: usize,
    },
    /// Saw `\r` at the end of the size line.
    SizeLf {
        size: u64,
    },
    /// Inside chunk data, `remaining` bytes to go.
    Data {
        remaining: u64,
    },
    /// After chunk data: expecting `\r`.
    DataCr,
    /// After chunk data: expecting `\n`.
    DataLf,
    /// After the last chunk: trailer lines until an empty line. `line_len` counts the current line.
    Trailer {
        line_len: usize,
        total: usize,
        cr: bool,
    },
    Done,
}

/// What went wrong: the peer sent something that is not chunked encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedError {
    BadSize,
    SizeLineTooLong,
    MissingCrlf,
    TrailersTooLarge,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            ChunkedError::BadSize => "invalid chunk size",
            ChunkedError::SizeLineTooLong => "chunk size line too long",
            ChunkedError::MissingCrlf => "missing CRLF after chunk data",
            ChunkedError::TrailersTooLarge => "chunked trailers too large",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for ChunkedError {}

/// Incremental chunked-body decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::Size {
                size: 0,
                digits: 0,
                ext: false,
                line_len: 0,
            },
        }
    }

    /// True once the terminating zero-size chunk and trailers were consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode as much of `input` as possible, appending payload bytes to `out`.
    /// Returns how many input bytes were consumed. Stops at the end of the body (bytes after it,
    /// e.g. a pipelined request, are left unconsumed).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut pos = 0usize;
        while pos < input.len() {
            let Some(rest) = input.get(pos..) else { break };
            match self.state {
                State::Done => return Ok(pos),
                State::Data { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    out.extend_from_slice(rest.get(..take).unwrap_or_default());
                    pos += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                }
                _ => {
                    let Some(&b) = rest.first() else { break };
                    pos += 1;
                    self.state = self.step(b)?;
                }
            }
        }
        Ok(pos)
    }

    fn step(&self, b: u8) -> Result<State, ChunkedError> {
        Ok(match self.state {
            State::Size {
                size,
                digits,
                ext,
                line_len,
            } => {
                if line_len + 1 > MAX_SIZE_LINE {
                    return Err(ChunkedError::SizeLineTooLong);
                }
                match b {
                    b'\r' => {
                        if digits == 0 {
                            return Err(ChunkedError::BadSize);
                        }
                        State::SizeLf { size }
                    }
                    b'\n' => {
                        // Tolerate a bare LF line end, as most servers do.
                        if digits == 0 {
                            return Err(ChunkedError::BadSize);
                        }
                        Self::after_size(size)
                    }
                    _ if ext => State::Size {
                        size,
                        digits,
                        ext,
                        line_len: line_len + 1,
                    },
                    b';' | b' ' | b'\t' => {
                        if digits == 0 {
                            return Err(ChunkedError::BadSize);
                        }
                        State::Size {
                            size,
                            digits,
                            ext: true,
                            line_len: line_len + 1,
                        }
                    }
                    _ => {
                        let d = (b as char).to_digit(16).ok_or(ChunkedError::BadSize)?;
                        if digits >= 15 {
                            // 16 hex digits could overflow; nobody sends a chunk that large.
                            return Err(ChunkedError::BadSize);
                        }
                        State::Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                            ext,
                            line_len: line_len + 1,
                        }
                    }
                }
            }
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(ChunkedError::MissingCrlf);
                }
                Self::after_size(size)
            }
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => Self::size_start(),
                _ => return Err(ChunkedError::MissingCrlf),
            },
            State::DataLf => {
                if b != b'\n' {
                    return Err(ChunkedError::MissingCrlf);
                }
                Self::size_start()
            }
            State::Trailer {
                line_len,
                total,
                cr,
            } => {
                if total + 1 > MAX_TRAILERS {
                    return Err(ChunkedError::TrailersTooLarge);
                }
                match b {
                    b'\n' if line_len == 0 => State::Done,
                    b'\n' => State::Trailer {
                        line_len: 0,
                        total: total + 1,
                        cr: false,
                    },
                    b'\r' => State::Trailer {
                        line_len,
                        total: total + 1,
                        cr: true,
                    },
                    _ => {
                        let _ = cr;
                        State::Trailer {
                            line_len: line_len + 1,
                            total: total + 1,
                            cr: false,
                        }
                    }
                }
            }
            State::Data { .. } | State::Done => self.state,
        })
    }

    fn size_start() -> State {
        State::Size {
            size: 0,
            digits: 0,
            ext: false,
            line_len: 0,
        }
    }

    fn after_size(size: u64) -> State {
        if size == 0 {
            State::Trailer {
                line_len: 0,
                total: 0,
                cr: false,
            }
        } else {
            State::Data { remaining: size }
        }
    }
}

/// Append one chunk (header, payload, CRLF) to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, payload: &[u8]) {
    encode_chunk_parts(out, &[payload]);
}

/// Append one chunk whose payload is the concatenation of `parts` (no copy into a temporary
/// buffer first). Writes nothing when the parts are all empty: a zero-size chunk would end the
/// body.
pub fn encode_chunk_parts<P: AsRef<[u8]>>(out: &mut Vec<u8>, parts: &[P]) {
    let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    if total == 0 {
        return;
    }
    out.reserve(total + 20);
    write_hex(out, total);
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p.as_ref());
    }
    out.extend_from_slice(b"\r\n");
}

/// Append response body bytes in the response's framing: one chunk when `chunked`, raw bytes
/// otherwise (a close-delimited HTTP/1.0 body). `last` also ends a chunked body.
pub fn write_body<P: AsRef<[u8]>>(out: &mut Vec<u8>, parts: &[P], chunked: bool, last: bool) {
    if chunked {
        encode_chunk_parts(out, parts);
        if last {
            out.extend_from_slice(LAST_CHUNK);
        }
    } else {
        for p in parts {
            out.extend_from_slice(p.as_ref());
        }
    }
}

/// The zero-size chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn write_hex(out: &mut Vec<u8>, mut n: usize) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        let digit = (n & 0xf) as u8;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = if digit < 10 {
                b'0' + digit
            } else {
                b'a' + digit - 10
            };
        }
        n >>= 4;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or_default());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_simple_body() {
        let (out, n, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(n, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".len());
    }

    #[test]
    fn decodes_split_at_every_offset() {
        let input =
            b"4;ext=1\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..=input.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&input[..split], &mut out).unwrap();
            assert_eq!(a, split);
            let b = d.decode(&input[split..], &mut out).unwrap();
            assert_eq!(a + b, input.len());
            assert!(d.is_done(), "split {split}");
            assert_eq!(out, b"wikipedia in\r\n\r\nchunks.");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_all(b"zz\r\n").unwrap_err(), ChunkedError::BadSize);
        assert_eq!(decode_all(b"\r\n").unwrap_err(), ChunkedError::BadSize);
        assert_eq!(
            decode_all(b"3\r\nabcX").unwrap_err(),
            ChunkedError::MissingCrlf
        );
        assert_eq!(
            decode_all(b"ffffffffffffffffff\r\n").unwrap_err(),
            ChunkedError::BadSize
        );
        let long = vec![b'1'; 2000];
        assert!(decode_all(&long).is_err());
    }

    #[test]
    fn encodes_round_trip() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"data: x\n\n");
        encode_chunk(&mut out, &[7u8; 300]);
        out.extend_from_slice(LAST_CHUNK);
        assert!(out.starts_with(b"9\r\ndata: x\n\n\r\n12c\r\n"));
        let (decoded, n, done) = decode_all(&out).unwrap();
        assert!(done);
        assert_eq!(n, out.len());
        assert_eq!(decoded.len(), 9 + 300);
    }
}
