//! The words a text reply cycles through.

/// The reply used when the request has no words to echo.
pub(super) const FILLER: &[&str] = &[
    "This",
    "is",
    "a",
    "synthetic",
    "reply",
    "from",
    "the",
    "Sluice",
    "mock.",
];

/// The words of an owned text (as spans), or the filler when it has none.
#[derive(Debug)]
pub(super) enum Words {
    Filler,
    Text {
        text: String,
        spans: Vec<(usize, usize)>,
    },
}

impl Words {
    pub(super) fn from_text(text: String) -> Self {
        let spans = word_spans(&text);
        if spans.is_empty() {
            Self::Filler
        } else {
            Self::Text { text, spans }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Filler => FILLER.len(),
            Self::Text { spans, .. } => spans.len(),
        }
    }

    /// Word `i` modulo the word count.
    pub(super) fn word(&self, i: u64) -> &str {
        // `len()` is never 0: `from_text` falls back to the filler.
        let len = self.len().max(1) as u64;
        let i = usize::try_from(i % len).unwrap_or(0);
        match self {
            Self::Filler => FILLER.get(i).copied().unwrap_or(""),
            Self::Text { text, spans } => spans
                .get(i)
                .and_then(|&(start, end)| text.get(start..end))
                .unwrap_or(""),
        }
    }

    /// The words joined by single spaces; `None` for the filler (there was nothing to echo).
    pub(super) fn echo(&self) -> Option<String> {
        match self {
            Self::Filler => None,
            Self::Text { .. } => Some(
                (0..self.len() as u64)
                    .map(|i| self.word(i))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
}

/// Byte ranges of the whitespace-separated words of `text` (the same split as
/// `str::split_whitespace`).
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                spans.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

pub(super) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Appends `part` to `text` on a new line.
pub(super) fn push_line(text: &mut String, part: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(part);
}
