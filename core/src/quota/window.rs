//! Window arithmetic: which window instance ("slot") a moment falls in, and how much of a
//! counter still counts.
//!
//! **Semantics.** Seconds, minutes and hours are *sliding* windows approximated with two
//! fixed slots (the sliding-window-counter scheme): the usage "in the last minute" at time `t`
//! is the current slot's count plus the previous slot's count weighted by the part of the
//! previous slot that still lies within the last minute. It never forgets a burst at a slot
//! boundary (a fixed window would allow 2x the limit across one) and costs two integers per
//! counter. Days and months are *calendar* windows in UTC: a `tokens_per_day` budget resets at
//! midnight UTC, a `cost_per_month` budget on the 1st, as budgets are expected to.

use crate::config::Window;

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;

/// A counter's two slots: `cur` belongs to slot `slot`, `prev` to `slot - 1`. Counts are
/// signed so that settling a reservation can subtract; they are read clamped at zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub slot: u64,
    pub cur: i64,
    pub prev: i64,
}

impl Counts {
    /// The same counts seen from `slot` (which may be later): older slots roll off.
    pub fn at(self, slot: u64) -> Counts {
        if slot == self.slot {
            self
        } else if slot == self.slot.wrapping_add(1) {
            Counts {
                slot,
                cur: 0,
                prev: self.cur,
            }
        } else if slot > self.slot {
            Counts {
                slot,
                cur: 0,
                prev: 0,
            }
        } else {
            // A counter ahead of us (another core's clock ran a tick ahead): what it holds for
            // our slot is its `prev`.
            if self.slot == slot.wrapping_add(1) {
                Counts {
                    slot,
                    cur: self.prev,
                    prev: 0,
                }
            } else {
                Counts {
                    slot,
                    cur: 0,
                    prev: 0,
                }
            }
        }
    }

    /// Sum of two counters, both seen from `slot`.
    pub fn plus(self, other: Counts, slot: u64) -> Counts {
        let a = self.at(slot);
        let b = other.at(slot);
        Counts {
            slot,
            cur: a.cur.saturating_add(b.cur),
            prev: a.prev.saturating_add(b.prev),
        }
    }

    /// Adds `delta` to the slot it belongs to, if that slot is still counted.
    pub fn add(&mut self, slot: u64, delta: i64) {
        if slot == self.slot {
            self.cur = self.cur.saturating_add(delta);
        } else if slot.wrapping_add(1) == self.slot {
            self.prev = self.prev.saturating_add(delta);
        } else if slot > self.slot {
            *self = self.at(slot);
            self.cur = self.cur.saturating_add(delta);
        }
    }
}

/// The slot of `window` that `now_ms` (Unix milliseconds) falls in.
pub fn slot(window: Window, now_ms: u64) -> u64 {
    match window {
        Window::Second => now_ms / SECOND,
        Window::Minute => now_ms / MINUTE,
        Window::Hour => now_ms / HOUR,
        Window::Day => now_ms / DAY,
        Window::Month => {
            let (y, m, _) = crate::time::civil_from_days((now_ms / DAY) as i64);
            u64::try_from(y * 12 + i64::from(m) - 1).unwrap_or(0)
        }
    }
}

/// Start of a slot, Unix milliseconds.
pub fn slot_start(window: Window, slot: u64) -> u64 {
    match window {
        Window::Second => slot * SECOND,
        Window::Minute => slot * MINUTE,
        Window::Hour => slot * HOUR,
        Window::Day => slot * DAY,
        Window::Month => {
            let (y, m) = ((slot / 12) as i64, (slot % 12) as u32 + 1);
            u64::try_from(crate::time::days_from_civil(y, m, 1)).unwrap_or(0) * DAY
        }
    }
}

/// Whether `window` slides (weighs in the previous slot); days and months are calendar windows.
pub fn is_sliding(window: Window) -> bool {
    sliding_len(window).is_some()
}

fn sliding_len(window: Window) -> Option<u64> {
    match window {
        Window::Second => Some(SECOND),
        Window::Minute => Some(MINUTE),
        Window::Hour => Some(HOUR),
        Window::Day | Window::Month => None,
    }
}

/// Usage that counts against a limit at `now_ms`.
pub fn effective(window: Window, now_ms: u64, counts: Counts) -> u64 {
    effective_in(window, now_ms, slot(window, now_ms), counts)
}

/// [`effective`] when the caller already knows `s = slot(window, now_ms)`.
pub fn effective_in(window: Window, now_ms: u64, s: u64, counts: Counts) -> u64 {
    let c = counts.at(s);
    let cur = u64::try_from(c.cur).unwrap_or(0);
    match sliding_len(window) {
        None => cur,
        Some(len) => {
            let prev = u64::try_from(c.prev).unwrap_or(0);
            if prev == 0 {
                return cur;
            }
            let elapsed = now_ms.saturating_sub(slot_start(window, s));
            let remaining = len.saturating_sub(elapsed);
            // Rounded up: never under-count. u64 unless the product could overflow.
            let weighted = match prev.checked_mul(remaining) {
                Some(p) => p.div_ceil(len),
                None => {
                    let w = (u128::from(prev) * u128::from(remaining)).div_ceil(u128::from(len));
                    u64::try_from(w).unwrap_or(u64::MAX)
                }
            };
            cur.saturating_add(weighted)
        }
    }
}

/// When the usage falls to or below `target` (milliseconds from `now_ms`), if nothing new is
/// added: for `Retry-After` and `x-ratelimit-reset-*`. Calendar windows: the next slot's start.
pub fn time_until(window: Window, now_ms: u64, counts: Counts, target: u64) -> u64 {
    if effective(window, now_ms, counts) <= target {
        return 0;
    }
    let s = slot(window, now_ms);
    let next = slot_start(window, s.saturating_add(1));
    let Some(len) = sliding_len(window) else {
        return next.saturating_sub(now_ms);
    };
    let c = counts.at(s);
    let cur = u64::try_from(c.cur).unwrap_or(0);
    let prev = u64::try_from(c.prev).unwrap_or(0);
    // Within this slot only `prev`'s weight decays.
    if cur <= target && prev > 0 {
        // cur + prev * (len - e) / len <= target  <=>  e >= len - (target - cur) * len / prev
        let allowed = u128::from(target - cur) * u128::from(len) / u128::from(prev);
        let e_needed = u128::from(len).saturating_sub(allowed);
        let at = slot_start(window, s) + u64::try_from(e_needed).unwrap_or(u64::MAX);
        return at.saturating_sub(now_ms).max(1);
    }
    // Next slot: today's `cur` becomes the decaying `prev`.
    if cur == 0 {
        return next.saturating_sub(now_ms).max(1);
    }
    let allowed = u128::from(target) * u128::from(len) / u128::from(cur);
    let e_needed = u128::from(len).saturating_sub(allowed);
    (next + u64::try_from(e_needed).unwrap_or(u64::MAX))
        .saturating_sub(now_ms)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: [Window; 5] = [
        Window::Second,
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Month,
    ];

    #[test]
    fn slots_and_starts() {
        let t = 1_795_430_661_007; // 2026-11-23T10:44:21.007Z
        assert_eq!(
            slot_start(Window::Minute, slot(Window::Minute, t)),
            1_795_430_640_000
        );
        assert_eq!(
            slot_start(Window::Day, slot(Window::Day, t)),
            1_795_392_000_000
        );
        // 2026-11-01T00:00:00Z and the next month, 2026-12-01.
        assert_eq!(
            slot_start(Window::Month, slot(Window::Month, t)),
            1_793_491_200_000
        );
        assert_eq!(
            slot_start(Window::Month, slot(Window::Month, t) + 1),
            1_796_083_200_000
        );
    }

    #[test]
    fn sliding_window_weighs_the_previous_minute() {
        let start = 60_000 * 100;
        let c = Counts {
            slot: 100,
            cur: 0,
            prev: 0,
        };
        let mut c = c;
        c.add(100, 600);
        // 15 s into the next minute, 45 s of the previous one still count: 600 * 45/60.
        assert_eq!(effective(Window::Minute, start + 60_000 + 15_000, c), 450);
        // Two minutes later nothing counts.
        assert_eq!(effective(Window::Minute, start + 120_000, c), 0);
        // A calendar day forgets at midnight.
        let mut d = Counts {
            slot: 5,
            ..Counts::default()
        };
        d.add(5, 10);
        assert_eq!(effective(Window::Day, 6 * DAY, d), 0);
        assert_eq!(effective(Window::Day, 6 * DAY - 1, d), 10);
    }

    #[test]
    fn time_until_fits_examples() {
        let start = 60_000 * 100;
        let c = Counts {
            slot: 100,
            cur: 600,
            prev: 0,
        };
        // At the end of the slot: 600 all count; to get to 300 we need 30 s into the next.
        assert_eq!(
            time_until(Window::Minute, start + 59_000, c, 300),
            1_000 + 30_000
        );
        let d = Counts {
            slot: 5,
            cur: 10,
            prev: 0,
        };
        assert_eq!(time_until(Window::Day, 5 * DAY + 1000, d, 0), DAY - 1000);
        assert_eq!(time_until(Window::Day, 5 * DAY + 1000, d, 10), 0);
    }

    proptest! {
        /// Reading a counter never loses what was added in the current slot, and the effective
        /// value is monotone non-increasing as time passes with no new usage.
        #[test]
        fn effective_is_monotone_and_counts_the_current_slot(
            w in 0usize..5,
            t in 1_000_000_000_000u64..2_000_000_000_000,
            a in 0i64..1_000_000,
            b in 0i64..1_000_000,
            dt1 in 0u64..200_000_000,
            dt2 in 0u64..200_000_000,
        ) {
            let window = W[w];
            let s = slot(window, t);
            let mut c = Counts { slot: s, ..Counts::default() };
            c.add(s, a);
            c.add(s.wrapping_sub(1), b);
            prop_assert!(effective(window, t, c) >= a as u64);
            let (early, late) = (t + dt1.min(dt2), t + dt1.max(dt2));
            prop_assert!(effective(window, early, c) >= effective(window, late, c));
        }

        /// `time_until` is exact: waiting that long gets to the target, and (when positive) a
        /// millisecond less does not.
        #[test]
        fn time_until_is_tight(
            w in 0usize..5,
            t in 1_000_000_000_000u64..2_000_000_000_000,
            cur in 0i64..100_000,
            prev in 0i64..100_000,
            target in 0u64..100_000,
        ) {
            let window = W[w];
            let s = slot(window, t);
            let c = Counts { slot: s, cur, prev };
            let wait = time_until(window, t, c, target);
            prop_assert!(effective(window, t + wait, c) <= target, "wait {wait}");
            if wait > 1 {
                prop_assert!(effective(window, t + wait - 2, c) > target, "wait {wait} is not tight");
            }
        }

        /// Adding across slots and summing counters seen from a later slot agree.
        #[test]
        fn plus_and_at_agree(s in 10u64..1000, a in 0i64..1000, b in 0i64..1000, later in 0u64..3) {
            let x = Counts { slot: s, cur: a, prev: b };
            let y = Counts { slot: s + 1, cur: b, prev: a };
            let sum = x.plus(y, s + 1 + later);
            let expect = match later {
                0 => Counts { slot: s + 1, cur: b, prev: a + a },
                1 => Counts { slot: s + 2, cur: 0, prev: b },
                _ => Counts { slot: s + 1 + later, cur: 0, prev: 0 },
            };
            prop_assert_eq!(sum, expect);
        }
    }
}
