//! When the frames of a synthetic reply are due.

use std::time::Duration;

use super::FrameKind;

/// When the frames of a synthetic reply are due: the same pacing for the mock upstream and the
/// gateway's built-in mock provider.
///
/// The first frame waits `ttft`; after that each token frame but the first waits `gap`; other
/// frames (finish, usage, `[DONE]`, Anthropic and Responses bookkeeping events) follow at once.
/// So the first token arrives after `ttft` and the rest `gap` apart, as a real server's would.
///
/// With `jitter_pct`, each gap is drawn uniformly within ±`jitter_pct`% of `gap` from a number
/// the caller supplies ([`before_jittered`](Self::before_jittered)): this module has no
/// randomness of its own, so the same draws give the same schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacing {
    /// Delay before the first frame.
    pub ttft: Duration,
    /// Nominal delay between token frames (zero: unpaced).
    pub gap: Duration,
    /// Spread of each gap around `gap`, in percent (0 = every gap is `gap`; values above 100
    /// count as 100).
    pub jitter_pct: u8,
}

impl Pacing {
    /// Pacing from a token rate; a rate of 0 (or too small to express) means unpaced.
    pub fn from_rate(ttft: Duration, tokens_per_second: f64) -> Self {
        let gap = if tokens_per_second > 0.0 {
            Duration::try_from_secs_f64(1.0 / tokens_per_second).unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        };
        Self {
            ttft,
            gap,
            jitter_pct: 0,
        }
    }

    /// The same pacing with gaps spread by ±`pct`%.
    pub fn with_jitter(self, pct: u8) -> Self {
        Self {
            jitter_pct: pct.min(100),
            ..self
        }
    }

    /// How long to wait before writing a frame of `kind`, given whether it is the stream's
    /// first frame and how many token frames (this one included) have been generated. Gaps
    /// are nominal (no jitter).
    pub fn before(&self, kind: FrameKind, first_frame: bool, token_frames: u64) -> Duration {
        self.before_jittered(kind, first_frame, token_frames, 0.5)
    }

    /// Like [`before`](Self::before), with the gap spread by `draw`, a number the caller drew
    /// uniformly from `[0, 1)`: the gap becomes `gap × (1 + j × (2 × draw − 1))` with
    /// `j = jitter_pct / 100`, so draws spread gaps evenly over `gap × [1 − j, 1 + j)` and
    /// `0.5` gives `gap` exactly. Draws outside `[0, 1]` are clamped.
    pub fn before_jittered(
        &self,
        kind: FrameKind,
        first_frame: bool,
        token_frames: u64,
        draw: f64,
    ) -> Duration {
        if first_frame {
            self.ttft
        } else if kind == FrameKind::Token && token_frames > 1 {
            self.jittered_gap(draw)
        } else {
            Duration::ZERO
        }
    }

    fn jittered_gap(&self, draw: f64) -> Duration {
        if self.jitter_pct == 0 || self.gap.is_zero() {
            return self.gap;
        }
        let draw = if draw.is_nan() {
            0.5
        } else {
            draw.clamp(0.0, 1.0)
        };
        let spread = f64::from(self.jitter_pct.min(100)) / 100.0;
        let factor = 1.0 + spread * (2.0 * draw - 1.0);
        // `try_from`: never panics, whatever the gap (an absurd one stays as it is).
        Duration::try_from_secs_f64(self.gap.as_secs_f64() * factor.max(0.0)).unwrap_or(self.gap)
    }

    /// When a non-streaming reply of `tokens` tokens is due: when the last token would have
    /// been streamed (at nominal gaps).
    pub fn whole(&self, tokens: u64) -> Duration {
        let gaps = u32::try_from(tokens.saturating_sub(1)).unwrap_or(u32::MAX);
        self.ttft.saturating_add(self.gap.saturating_mul(gaps))
    }
}
