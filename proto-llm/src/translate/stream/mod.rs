//! Stream translation: upstream SSE frames in, the client API's SSE frames out.
//!
//! A translator is a state machine fed one complete upstream frame at a time (from
//! [`crate::sse::SseFramer`]); it appends zero or more complete client frames to the caller's
//! buffer, so the caller writes whatever a read produced in one go. Every translator:
//!
//! - closes the client's stream itself when the upstream's own end marker arrives (`[DONE]`,
//!   `message_stop`), and from then on ignores further frames;
//! - turns an upstream error event into the client's error form, with **no** clean end (Chat:
//!   `data: {"error":..}` and no `[DONE]`; Anthropic: `event: error` and no `message_stop`;
//!   Responses: `error` then `response.failed`, never `response.completed`);
//! - reads usage with an embedded [`UsageTracker`] for the upstream's API;
//! - drops what the client's API cannot carry (thinking, reasoning, unknown events, extra
//!   choices) and records each kind once in [`StreamTranslator::dropped`] for the caller's log;
//! - never fails: frames it cannot parse are dropped and recorded too.

mod chain;
mod chat_to_messages;
mod chat_to_responses;
mod messages_to_chat;

use std::borrow::Cow;

pub use chain::Chain;
pub use chat_to_messages::ChatToMessages;
pub use chat_to_responses::ChatToResponses;
pub use messages_to_chat::MessagesToChat;

use super::chat::ChatChunk;
use super::{Dropped, ResponseContext};
use crate::sse::SseFrame;
use crate::track::{Api, TrackedUsage, UsageTracker};

/// Where a translated stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Still open.
    Streaming,
    /// Closed with the client API's clean end.
    Completed,
    /// Closed with the client API's error form.
    Failed,
}

/// One translated stream.
pub trait StreamTranslator {
    /// One upstream frame in; zero or more complete client frames appended to `out`.
    fn frame(&mut self, frame: &SseFrame, out: &mut Vec<u8>);

    /// The upstream's body ended. If its end marker was seen, the client's stream is already
    /// closed and nothing is added; otherwise the upstream was cut short, and this appends the
    /// client's error form (a cut stream must never look finished).
    fn finish(&mut self, out: &mut Vec<u8>);

    /// The upstream failed mid-stream (read error, timeout, oversized event): append an error
    /// in the client's format and no clean end. Nothing is added if the stream is closed.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>);

    /// Usage seen so far in the upstream's frames.
    fn usage(&self) -> Option<TrackedUsage>;

    /// What was dropped, each kind once (`"thinking"`, `"event foo"`, ...), for the log.
    fn dropped(&self) -> &[String];

    /// Where the client's stream stands.
    fn outcome(&self) -> StreamOutcome;
}

/// A translator from the `upstream` API's stream to the `client` API's, or `None` for a pair
/// this module does not translate.
pub fn new_stream_translator(
    upstream: Api,
    client: Api,
    ctx: &ResponseContext,
) -> Option<Box<dyn StreamTranslator>> {
    match (upstream, client) {
        (Api::Messages, Api::ChatCompletions) => Some(Box::new(MessagesToChat::new(ctx))),
        (Api::ChatCompletions, Api::Messages) => Some(Box::new(ChatToMessages::new(ctx))),
        (Api::ChatCompletions, Api::Responses) => Some(Box::new(ChatToResponses::new(ctx))),
        (Api::Messages, Api::Responses) => {
            // Through Chat: the middle stream must carry usage for the second translator.
            let mut middle = ctx.clone();
            middle.include_usage = true;
            Some(Box::new(Chain::new(
                Box::new(MessagesToChat::new(&middle)),
                Box::new(ChatToResponses::new(ctx)),
            )))
        }
        _ => None,
    }
}

/// What a Chat upstream frame means, for the two translators that read Chat streams.
enum ChatEvent<'a> {
    /// Text of choice 0 (content or refusal).
    Text(Cow<'a, str>),
    /// A tool call fragment of choice 0.
    Tool(ToolFragment<'a>),
    /// `finish_reason` of choice 0.
    Finish(Cow<'a, str>),
}

/// A piece of a Chat tool call.
struct ToolFragment<'a> {
    /// Which call (several may stream at once).
    index: u64,
    /// Set on a call's first fragment.
    id: Option<Cow<'a, str>>,
    /// Set on a call's first fragment.
    name: Option<Cow<'a, str>>,
    /// A piece of the arguments JSON.
    arguments: Option<Cow<'a, str>>,
}

/// Reads a Chat upstream frame: its id, its events in order, or the error it carries.
struct ChatFrame<'a> {
    id: Option<Cow<'a, str>>,
    events: Vec<ChatEvent<'a>>,
    error: Option<(String, String)>,
}

/// Parses the `data` of a Chat chunk; `None` (recorded) if it is not a chunk.
fn read_chat_frame<'a>(data: &'a [u8], dropped: &mut Dropped) -> Option<ChatFrame<'a>> {
    let chunk: ChatChunk<'a> = match serde_json::from_slice(data) {
        Ok(chunk) => chunk,
        Err(_) => {
            dropped.note("unparseable chunk");
            return None;
        }
    };
    let error = chunk.error.filter(|e| !e.is_null()).map(|error| {
        let field = |key: &str| {
            error
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let message = error
            .as_str()
            .map(str::to_owned)
            .or_else(|| field("message"))
            .unwrap_or_else(|| "The upstream reported an error.".to_owned());
        (field("type").unwrap_or_default(), message)
    });
    let mut events = Vec::new();
    for choice in chunk.choices.into_iter().flatten() {
        if choice.index != 0 {
            dropped.note("choices[1..]");
            continue;
        }
        if let Some(delta) = choice.delta {
            if delta.reasoning_content.is_some() || delta.reasoning.is_some() {
                dropped.note("reasoning");
            }
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    events.push(ChatEvent::Text(text));
                }
            }
            for (position, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                events.push(ChatEvent::Tool(ToolFragment {
                    index: call.index.unwrap_or(position as u64),
                    id: call.id,
                    name,
                    arguments,
                }));
            }
        }
        if let Some(reason) = choice.finish_reason {
            events.push(ChatEvent::Finish(reason));
        }
    }
    Some(ChatFrame {
        id: chunk.id,
        events,
        error,
    })
}

/// Shared bookkeeping of every translator: usage, drops, outcome.
struct Common {
    tracker: UsageTracker,
    dropped: Dropped,
    outcome: StreamOutcome,
}

impl Common {
    fn new(upstream: Api) -> Self {
        Self {
            tracker: UsageTracker::new(upstream),
            dropped: Dropped::default(),
            outcome: StreamOutcome::Streaming,
        }
    }

    fn open(&self) -> bool {
        self.outcome == StreamOutcome::Streaming
    }
}

/// The message a cut stream ends with.
const CUT_SHORT: &str = "The upstream stream ended before it was complete.";

/// Implements [`StreamTranslator`] for a translator with a `common: Common` field and two
/// inherent methods: `on_frame` (a non-comment frame while the stream is open, its usage already
/// read) and `on_fail` (write the client's error end; called at most once).
macro_rules! impl_stream_translator {
    ($name:ty) => {
        impl $crate::translate::stream::StreamTranslator for $name {
            fn frame(&mut self, frame: &$crate::sse::SseFrame, out: &mut Vec<u8>) {
                if self.common.open() && !frame.is_comment() {
                    self.common.tracker.observe(frame);
                    self.on_frame(frame, out);
                }
            }

            fn finish(&mut self, out: &mut Vec<u8>) {
                self.fail($crate::translate::stream::CUT_SHORT, out);
            }

            fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
                if self.common.open() {
                    self.on_fail(message, out);
                    self.common.outcome = $crate::translate::stream::StreamOutcome::Failed;
                }
            }

            fn usage(&self) -> Option<$crate::track::TrackedUsage> {
                self.common.tracker.usage()
            }

            fn dropped(&self) -> &[String] {
                self.common.dropped.as_slice()
            }

            fn outcome(&self) -> $crate::translate::stream::StreamOutcome {
                self.common.outcome
            }
        }
    };
}
pub(crate) use impl_stream_translator;

/// What a translator of a Chat upstream does with each part of it.
trait ChatSink {
    fn dropped(&mut self) -> &mut Dropped;
    /// Before the first content: open the client's stream.
    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>);
    fn text(&mut self, text: &str, out: &mut Vec<u8>);
    fn tool(&mut self, fragment: &ToolFragment<'_>, out: &mut Vec<u8>);
    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>);
    /// `{"error":..}` inside the stream, with the upstream's error type and message.
    fn upstream_error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>);
    /// `[DONE]`: write the client's clean end.
    fn complete(&mut self, out: &mut Vec<u8>);
}

/// Reads one Chat upstream frame into `sink`.
fn feed_chat(sink: &mut impl ChatSink, frame: &SseFrame, out: &mut Vec<u8>) {
    if frame.is_done() {
        sink.complete(out);
        return;
    }
    let Some(data) = frame.data() else {
        return;
    };
    let Some(chunk) = read_chat_frame(&data, sink.dropped()) else {
        return;
    };
    if let Some((kind, message)) = chunk.error {
        sink.upstream_error(&kind, &message, out);
        return;
    }
    sink.start(chunk.id.as_deref(), out);
    for event in chunk.events {
        match event {
            ChatEvent::Text(text) => sink.text(&text, out),
            ChatEvent::Tool(fragment) => sink.tool(&fragment, out),
            ChatEvent::Finish(reason) => sink.finish_reason(&reason, out),
        }
    }
}
