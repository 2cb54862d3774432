//! Zero-copy Server-Sent Events framer.
//!
//! The relay forwards upstream bytes exactly as they came, so the framer only finds where each
//! event ends and hands out that slice of its buffer ([`SseFrame::raw`]); the field accessors
//! look inside the slice without copying it. What the framer deliberately does *not* do is
//! interpret events: `[DONE]`, usage chunks and errors are the caller's business.
//!
//! Line ends follow the SSE spec: `\r\n`, `\n` or a lone `\r`, mixed freely. An event ends at
//! the first empty line.
//!
//! **Invariant:** concatenating the `raw` bytes of every frame, followed by
//! [`SseFramer::take_remainder`], gives back exactly the bytes pushed, however they were split.

use std::fmt;

use bytes::{Bytes, BytesMut};
use memchr::memchr2;

/// First allocation of the buffer for [`SseFramer::new`]; most chat chunks are a few hundred
/// bytes.
const INITIAL_CAPACITY: usize = 8 * 1024;

/// Splits a byte stream into SSE events, one [`SseFrame`] per event.
///
/// The buffer is scanned once: the same pass that finds where a frame ends notes where its
/// `data` and `event` fields are, so cutting a frame never looks at its bytes again.
#[derive(Debug)]
pub struct SseFramer {
    /// Pushed bytes not yet returned as a frame. Frames are split off its front, so they share
    /// its allocation; once the caller drops them, `reserve` reclaims the space.
    buf: BytesMut,
    /// Bytes of `buf` before this offset are already scanned and hold no frame end, so a frame
    /// that arrives in many small reads is still scanned once in total.
    scan: usize,
    /// Start of the line `scan` is in; `scan == line_start` means `scan` sits at the start of a
    /// line (an empty line there ends the frame).
    line_start: usize,
    /// The fields of the lines of the current frame scanned so far (offsets into `buf`).
    fields: Fields,
    /// The byte before `scan` was a `\r` that was the last byte pushed at the time: if the next
    /// byte is `\n`, the two are one line end and the `\n` must not count as an empty line.
    skip_lf: bool,
    /// The stream has used `\r\n` line ends, so a `\r` at the end of a read is most likely
    /// followed by `\n` in the next one.
    crlf_seen: bool,
    max_frame_bytes: usize,
}

impl SseFramer {
    /// A framer that refuses events longer than `max_frame_bytes` (terminating blank line
    /// included), so a peer that never ends an event cannot make us buffer without bound.
    ///
    /// Allocates an 8 KiB buffer (less if `max_frame_bytes` is smaller); see
    /// [`Self::with_capacity`] to choose.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self::with_capacity(max_frame_bytes, INITIAL_CAPACITY)
    }

    /// Like [`Self::new`], with a first buffer of `initial_capacity` bytes (capped at
    /// `max_frame_bytes + 1`; `0` allocates nothing until the first push). The buffer grows
    /// as needed.
    ///
    /// A small buffer saves memory per idle stream, but `bytes` also takes this size as the
    /// smallest *new* buffer it allocates when the current one is still shared with frames
    /// the caller holds: a caller that drops its frames before the next [`Self::push`] reuses
    /// the buffer whatever its size, one that keeps them across a push allocates about once
    /// per `initial_capacity` bytes of stream.
    pub fn with_capacity(max_frame_bytes: usize, initial_capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(initial_capacity.min(max_frame_bytes.saturating_add(1))),
            scan: 0,
            line_start: 0,
            fields: Fields::NONE,
            skip_lf: false,
            crlf_seen: false,
            max_frame_bytes,
        }
    }

    /// Append bytes just read from the upstream (after HTTP transfer decoding).
    #[inline]
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Next complete frame, if any.
    ///
    /// A frame ends at a blank line (`\n\n`, `\r\n\r\n`, `\r\r`, or any mix such as `\r\n\n`).
    ///
    /// When the blank line is a `\r` that is the last byte pushed, the framer cannot know yet
    /// whether a `\n` completes it. On a stream that has used `\r\n` it waits for the next byte,
    /// so each frame keeps its whole line end. Otherwise (a `\r`-only stream, where waiting
    /// would delay every event by one read) the frame is returned at once, and a `\n` that
    /// does follow becomes the first byte of the next frame (or of the remainder), read as the
    /// tail of that line end rather than as an empty line.
    ///
    /// Errs if a frame (or the pending bytes, when no frame end is in sight) is longer than
    /// `max_frame_bytes`. The framer keeps erring after that: the stream is unusable.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<SseFrame>, SseError> {
        match self.find_frame_end() {
            Some(end) if end > self.max_frame_bytes => Err(self.too_large()),
            Some(end) => {
                let raw = self.buf.split_to(end).freeze();
                self.scan = 0;
                self.line_start = 0;
                let fields = std::mem::replace(&mut self.fields, Fields::NONE);
                Ok(Some(SseFrame { raw, fields }))
            }
            None if self.buf.len() > self.max_frame_bytes => Err(self.too_large()),
            None => Ok(None),
        }
    }

    /// Bytes left over (an incomplete frame), used at upstream EOF. Resets the framer.
    ///
    /// On a stream that used `\r\n`, an event whose blank line is a lone `\r` at EOF is still
    /// here (see [`Self::next_frame`]); [`SseFrame::new`] reads it.
    pub fn take_remainder(&mut self) -> Bytes {
        self.scan = 0;
        self.line_start = 0;
        self.fields = Fields::NONE;
        self.skip_lf = false;
        self.crlf_seen = false;
        self.buf.split().freeze()
    }

    /// Number of buffered bytes not yet returned as a frame.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    fn too_large(&self) -> SseError {
        SseError::FrameTooLarge {
            limit: self.max_frame_bytes,
        }
    }

    /// Length of the first complete frame in `buf`, resuming the scan where the last call
    /// stopped, and noting the fields of each line passed on the way.
    fn find_frame_end(&mut self) -> Option<usize> {
        loop {
            if self.skip_lf {
                // Wait for the byte that decides whether the `\r` was half of a `\r\n`.
                let next = *self.buf.get(self.scan)?;
                self.skip_lf = false;
                if next == b'\n' {
                    self.scan += 1;
                    self.line_start = self.scan;
                    self.crlf_seen = true;
                }
            }
            let rest = self.buf.get(self.scan..)?;
            // A line end right here (an empty line, in the common case) needs no search.
            let offset = match rest.first()? {
                b'\r' | b'\n' => 0,
                _ => match memchr2(b'\r', b'\n', rest) {
                    Some(offset) => offset,
                    None => {
                        self.scan = self.buf.len();
                        return None;
                    }
                },
            };
            let at = self.scan + offset;
            let empty_line = at == self.line_start;
            let line_end_len = match (self.buf.get(at), self.buf.get(at + 1)) {
                (Some(b'\r'), Some(b'\n')) => {
                    self.crlf_seen = true;
                    2
                }
                (Some(b'\r'), None) if empty_line && self.crlf_seen => {
                    // Look at this `\r` again once the next byte is here.
                    self.scan = at;
                    return None;
                }
                (Some(b'\r'), None) => {
                    self.skip_lf = true;
                    1
                }
                _ => 1,
            };
            if !empty_line {
                if let Some(line) = self.buf.get(self.line_start..at) {
                    self.fields.line(self.line_start, line);
                }
            }
            self.scan = at + line_end_len;
            self.line_start = self.scan;
            if empty_line {
                return Some(self.scan);
            }
        }
    }
}

/// One SSE event: its exact bytes plus where its `data` and `event` fields sit in them.
///
/// The positions are found when the frame is cut (by the framer, in the same pass that finds
/// the frame's end), so the accessors are cheap enough to call on every frame of the hot path.
#[derive(Clone, Debug)]
pub struct SseFrame {
    raw: Bytes,
    fields: Fields,
}

/// What the lines of a frame hold, as offsets into the frame (or into the framer's buffer,
/// which starts with the frame, while it is being scanned).
#[derive(Clone, Copy, Debug)]
struct Fields {
    data: DataLines,
    /// The value of the last `event` line.
    event: Option<(usize, usize)>,
    /// Some line is a comment (starts with `:`).
    comment: bool,
    /// Some non-empty line is not a comment.
    field: bool,
}

/// Where the `data` payload is; a single line is by far the common case and needs no copy.
#[derive(Clone, Copy, Debug)]
enum DataLines {
    None,
    One(usize, usize),
    Many,
}

impl Fields {
    const NONE: Self = Self {
        data: DataLines::None,
        event: None,
        comment: false,
        field: false,
    };

    /// Notes one line (line end excluded) that starts at offset `start`.
    fn line(&mut self, start: usize, line: &[u8]) {
        match line.first() {
            None => {}
            Some(b':') => self.comment = true,
            Some(_) => {
                self.field = true;
                let end = start + line.len();
                if let Some(value) = field_value(line, b"data") {
                    self.data = match self.data {
                        DataLines::None => DataLines::One(start + value, end),
                        DataLines::One(..) | DataLines::Many => DataLines::Many,
                    };
                } else if let Some(value) = field_value(line, b"event") {
                    // The spec lets a later `event` line override an earlier one.
                    self.event = Some((start + value, end));
                }
            }
        }
    }
}

/// If `line` is a field named `name`, the offset of its value: the value follows the first
/// `:` and loses one leading space; a line without `:` is a field with an empty value.
fn field_value(line: &[u8], name: &[u8]) -> Option<usize> {
    match line.strip_prefix(name)? {
        [] => Some(name.len()),
        [b':', b' ', ..] => Some(name.len() + 2),
        [b':', ..] => Some(name.len() + 1),
        _ => None,
    }
}

impl SseFrame {
    /// Interpret `raw` as one event, for example the remainder of a stream that ended without a
    /// blank line. Lines without a line end are accepted.
    pub fn new(raw: Bytes) -> Self {
        let mut fields = Fields::NONE;
        for (start, end) in Lines::new(&raw) {
            if let Some(line) = raw.get(start..end) {
                fields.line(start, line);
            }
        }
        Self { raw, fields }
    }

    /// The exact bytes of the frame including its terminating blank line (a slice of the
    /// framer's buffer, not a copy).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The `data` payload: for a single `data:` line a zero-copy slice (one leading space
    /// stripped); several `data` lines are joined with `\n` as the spec says (this allocates);
    /// `None` if there is no `data` line.
    pub fn data(&self) -> Option<Bytes> {
        match self.fields.data {
            DataLines::None => None,
            DataLines::One(start, end) => {
                // Positions come from scanning `raw` itself; the check keeps a logic error from
                // turning into a panic.
                (start <= end && end <= self.raw.len()).then(|| self.raw.slice(start..end))
            }
            DataLines::Many => Some(self.join_data()),
        }
    }

    /// `event:` field value if present (one leading space stripped; the last one wins).
    pub fn event(&self) -> Option<&[u8]> {
        let (start, end) = self.fields.event?;
        self.raw.get(start..end)
    }

    /// `true` if the data payload is exactly `[DONE]` (the OpenAI end-of-stream marker).
    pub fn is_done(&self) -> bool {
        match self.fields.data {
            DataLines::One(start, end) => self.raw.get(start..end) == Some(b"[DONE]".as_slice()),
            DataLines::None | DataLines::Many => false,
        }
    }

    /// `true` if every non-empty line is a comment (starts with `:`), e.g. a keep-alive
    /// heartbeat. A frame of nothing but blank lines is not a comment.
    pub fn is_comment(&self) -> bool {
        self.fields.comment && !self.fields.field
    }

    fn join_data(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.raw.len());
        let mut first = true;
        for (start, end) in Lines::new(&self.raw) {
            let Some(line) = self.raw.get(start..end) else {
                continue;
            };
            if let Some(value_start) = field_value(line, b"data") {
                if !first {
                    out.extend_from_slice(b"\n");
                }
                first = false;
                out.extend_from_slice(line.get(value_start..).unwrap_or_default());
            }
        }
        out.freeze()
    }
}

/// Iterator over the lines of a frame as `(start, end)` offsets, line ends excluded.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
}

impl Iterator for Lines<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let start = self.pos;
        let rest = self.buf.get(start..).filter(|rest| !rest.is_empty())?;
        match memchr2(b'\r', b'\n', rest) {
            Some(offset) => {
                let end = start + offset;
                let crlf = rest.get(offset..offset + 2) == Some(b"\r\n".as_slice());
                self.pos = end + if crlf { 2 } else { 1 };
                Some((start, end))
            }
            None => {
                self.pos = self.buf.len();
                Some((start, self.buf.len()))
            }
        }
    }
}

/// The upstream sent something the framer refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// An event grew past the configured limit before it ended.
    FrameTooLarge {
        /// The configured `max_frame_bytes`.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { limit } => {
                write!(f, "upstream SSE event exceeds the {limit}-byte limit")
            }
        }
    }
}

impl std::error::Error for SseError {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn frames_of(input: &[u8]) -> (Vec<SseFrame>, Bytes) {
        let mut framer = SseFramer::new(1 << 20);
        framer.push(input);
        let mut frames = Vec::new();
        while let Some(frame) = framer.next_frame().unwrap() {
            frames.push(frame);
        }
        (frames, framer.take_remainder())
    }

    fn raws(frames: &[SseFrame]) -> Vec<&[u8]> {
        frames.iter().map(|f| f.raw().as_ref()).collect()
    }

    #[test]
    fn every_blank_line_form_ends_a_frame() {
        for (input, first) in [
            (&b"data: a\n\ndata: b\n\n"[..], &b"data: a\n\n"[..]),
            (b"data: a\r\n\r\ndata: b\r\n\r\n", b"data: a\r\n\r\n"),
            (b"data: a\r\rdata: b\r\r", b"data: a\r\r"),
            (b"data: a\r\n\ndata: b\n\n", b"data: a\r\n\n"),
            (b"data: a\n\r\ndata: b\n\n", b"data: a\n\r\n"),
            (b"data: a\n\rdata: b\n\n", b"data: a\n\r"),
            (b"data: a\r\r\ndata: b\n\n", b"data: a\r\r\n"),
        ] {
            let (frames, rest) = frames_of(input);
            assert_eq!(frames.len(), 2, "{input:?}");
            assert_eq!(frames[0].raw().as_ref(), first);
            assert_eq!(frames[0].data().unwrap().as_ref(), b"a");
            assert_eq!(frames[1].data().unwrap().as_ref(), b"b");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn single_line_ends_do_not_end_a_frame() {
        let (frames, rest) = frames_of(b"event: x\r\ndata: a\rid: 1\n");
        assert!(frames.is_empty());
        assert_eq!(rest.as_ref(), b"event: x\r\ndata: a\rid: 1\n");
    }

    #[test]
    fn cr_at_end_of_read_waits_for_next_byte_inside_a_frame() {
        let mut framer = SseFramer::new(1024);
        framer.push(b"data: a\r");
        assert!(framer.next_frame().unwrap().is_none());
        framer.push(b"\n");
        assert!(framer.next_frame().unwrap().is_none());
        framer.push(b"\r\n");
        let frame = framer.next_frame().unwrap().unwrap();
        assert_eq!(frame.raw().as_ref(), b"data: a\r\n\r\n");
    }

    #[test]
    fn crlf_stream_waits_for_the_lf_of_a_final_cr() {
        let mut framer = SseFramer::new(1024);
        framer.push(b"data: a\r\n\r");
        assert!(framer.next_frame().unwrap().is_none());
        assert!(framer.next_frame().unwrap().is_none());
        framer.push(b"\ndata: b\r\n\r");
        let frame = framer.next_frame().unwrap().unwrap();
        assert_eq!(frame.raw().as_ref(), b"data: a\r\n\r\n");
        assert!(framer.next_frame().unwrap().is_none());
        framer.push(b"x");
        // Not `\n`: the lone `\r` was the blank line after all.
        let frame = framer.next_frame().unwrap().unwrap();
        assert_eq!(frame.raw().as_ref(), b"data: b\r\n\r");
        assert_eq!(framer.take_remainder().as_ref(), b"x");
    }

    #[test]
    fn cr_stream_releases_at_once_and_a_late_lf_joins_the_next_frame() {
        let mut framer = SseFramer::new(1024);
        framer.push(b"data: a\r\r");
        let frame = framer.next_frame().unwrap().unwrap();
        assert_eq!(frame.raw().as_ref(), b"data: a\r\r");
        framer.push(b"\n");
        assert!(framer.next_frame().unwrap().is_none());
        framer.push(b"data: b\n\n");
        let frame = framer.next_frame().unwrap().unwrap();
        assert_eq!(frame.raw().as_ref(), b"\ndata: b\n\n");
        assert_eq!(frame.data().unwrap().as_ref(), b"b");
        assert!(framer.next_frame().unwrap().is_none());
        assert_eq!(framer.pending_len(), 0);
    }

    #[test]
    fn extra_blank_lines_become_empty_frames() {
        let (frames, _) = frames_of(b"data: a\n\n\ndata: b\n\n");
        assert_eq!(raws(&frames), [&b"data: a\n\n"[..], b"\n", b"data: b\n\n"]);
        let empty = &frames[1];
        assert!(empty.data().is_none() && empty.event().is_none());
        assert!(!empty.is_comment() && !empty.is_done());
    }

    #[test]
    fn fields_are_parsed() {
        let (frames, _) =
            frames_of(b"event:first\nevent: message_start\nid: 7\ndata:{\"a\":1}\nretry: 10\n\n");
        let frame = &frames[0];
        assert_eq!(frame.event(), Some(&b"message_start"[..]));
        assert_eq!(frame.data().unwrap().as_ref(), b"{\"a\":1}");
        assert!(!frame.is_comment());
    }

    #[test]
    fn only_one_space_is_stripped() {
        let (frames, _) = frames_of(b"data:  two\n\n");
        assert_eq!(frames[0].data().unwrap().as_ref(), b" two");
    }

    #[test]
    fn data_without_colon_is_empty_value() {
        let (frames, _) = frames_of(b"data\n\n");
        assert_eq!(frames[0].data().unwrap().as_ref(), b"");
        let (frames, _) = frames_of(b"data\ndata\n\n");
        assert_eq!(frames[0].data().unwrap().as_ref(), b"\n");
    }

    #[test]
    fn single_data_line_is_zero_copy() {
        let (frames, _) = frames_of(b"data: hello\n\n");
        let raw = frames[0].raw().as_ptr() as usize;
        let data = frames[0].data().unwrap();
        assert_eq!(data.as_ptr() as usize, raw + 6);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let (frames, _) = frames_of(b"data: {\ndata:  \"a\": 1\n: note\ndata: }\n\n");
        assert_eq!(frames[0].data().unwrap().as_ref(), b"{\n \"a\": 1\n}");
        assert!(!frames[0].is_done());
    }

    #[test]
    fn done_and_comments() {
        let (frames, _) =
            frames_of(b"data: [DONE]\n\n: keep-alive\n\n:\n: x\r\n\r\ndata: [DONE] \n\n");
        assert!(frames[0].is_done());
        assert!(frames[1].is_comment() && frames[1].data().is_none());
        assert!(frames[2].is_comment());
        assert!(!frames[3].is_done());
    }

    #[test]
    fn comment_with_data_is_not_comment() {
        let (frames, _) = frames_of(b": hi\ndata: x\n\n");
        assert!(!frames[0].is_comment());
    }

    #[test]
    fn remainder_is_incomplete_frame_and_can_be_parsed() {
        let (frames, rest) = frames_of(b"data: a\n\ndata: [DONE]");
        assert_eq!(frames.len(), 1);
        assert_eq!(rest.as_ref(), b"data: [DONE]");
        assert!(SseFrame::new(rest).is_done());
    }

    #[test]
    fn frame_too_large_at_the_edge() {
        let frame = b"data: 0123456789\n\n";
        let mut ok = SseFramer::new(frame.len());
        ok.push(frame);
        assert_eq!(ok.next_frame().unwrap().unwrap().raw().as_ref(), frame);

        let mut too_small = SseFramer::new(frame.len() - 1);
        too_small.push(frame);
        assert_eq!(
            too_small.next_frame().unwrap_err(),
            SseError::FrameTooLarge {
                limit: frame.len() - 1
            }
        );

        // Byte by byte: pending bytes may reach the limit but not pass it.
        let mut framer = SseFramer::new(10);
        for (i, b) in b"data: 0123456789".iter().enumerate() {
            framer.push(&[*b]);
            match framer.next_frame() {
                Ok(None) => assert!(i < 10, "byte {i} should have been refused"),
                Ok(Some(_)) => panic!("no frame end was pushed"),
                Err(e) => {
                    assert_eq!(i, 10);
                    assert_eq!(e, SseError::FrameTooLarge { limit: 10 });
                    break;
                }
            }
        }
        assert!(framer.next_frame().is_err(), "the error is sticky");
    }

    #[test]
    fn complete_frame_before_an_oversized_one_is_still_returned() {
        let mut framer = SseFramer::new(12);
        framer.push(b"data: ok\n\ndata: far too long");
        assert_eq!(
            framer.next_frame().unwrap().unwrap().raw().as_ref(),
            b"data: ok\n\n"
        );
        assert!(framer.next_frame().is_err());
    }

    #[test]
    fn display() {
        assert_eq!(
            SseError::FrameTooLarge { limit: 5 }.to_string(),
            "upstream SSE event exceeds the 5-byte limit"
        );
    }
}
