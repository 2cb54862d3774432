//! Two translators in a row, for the pairs no single translator covers: an Anthropic upstream
//! and a Responses client go through Chat (`MessagesToChat` then `ChatToResponses`).
//!
//! The first translator's output is framed again (it is complete SSE frames, so the framer only
//! finds their ends) and fed to the second. Usage is the upstream's, as the first one read it.

use super::{StreamOutcome, StreamTranslator};
use crate::sse::SseFramer;
use crate::track::TrackedUsage;

/// Frames the inner translator writes are small; this bound only guards against a bug.
const MAX_INNER_FRAME: usize = 16 << 20;

/// `first` reads the upstream, `second` writes for the client.
pub struct Chain {
    first: Box<dyn StreamTranslator>,
    second: Box<dyn StreamTranslator>,
    framer: SseFramer,
    middle: Vec<u8>,
    dropped: Vec<String>,
}

impl Chain {
    pub fn new(first: Box<dyn StreamTranslator>, second: Box<dyn StreamTranslator>) -> Self {
        Self {
            first,
            second,
            framer: SseFramer::new(MAX_INNER_FRAME),
            middle: Vec::with_capacity(1024),
            dropped: Vec::new(),
        }
    }

    /// Feeds what the first translator wrote to the second.
    fn pass_on(&mut self, out: &mut Vec<u8>) {
        self.framer.push(&self.middle);
        self.middle.clear();
        while let Ok(Some(frame)) = self.framer.next_frame() {
            self.second.frame(&frame, out);
        }
        self.refresh_dropped();
    }

    fn refresh_dropped(&mut self) {
        for d in self.first.dropped().iter().chain(self.second.dropped()) {
            if !self.dropped.contains(d) {
                self.dropped.push(d.clone());
            }
        }
    }
}

impl StreamTranslator for Chain {
    fn frame(&mut self, frame: &crate::sse::SseFrame, out: &mut Vec<u8>) {
        self.first.frame(frame, &mut self.middle);
        self.pass_on(out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.first.finish(&mut self.middle);
        self.pass_on(out);
        // The first translator closed (cleanly, or with its error form, which the second
        // turned into the client's); close the client's stream either way.
        self.second.finish(out);
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.first.fail(message, &mut self.middle);
        self.pass_on(out);
        self.second.fail(message, out);
    }

    fn usage(&self) -> Option<TrackedUsage> {
        self.first.usage()
    }

    fn dropped(&self) -> &[String] {
        &self.dropped
    }

    fn outcome(&self) -> StreamOutcome {
        self.second.outcome()
    }
}
