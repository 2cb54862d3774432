//! When open-loop requests are due (sans-IO: instants in, instants out).
//!
//! The total rate R is split over the W workers so that together they make exactly the asked
//! process: with constant spacing worker w sends at `(w + k*W) / R` (their union is `k / R`);
//! with Poisson arrivals each worker runs an independent Poisson process of rate `R / W` (the
//! union of independent Poisson processes is a Poisson process of the summed rate), seeded from
//! `--seed` and the worker's index so a run can be repeated.
//!
//! A virtual user takes the next due time when it is free and sleeps until then. When every
//! user is busy, due times pass unserved; the next free user takes the oldest one at once and
//! its latency clock still starts at the due time (no coordinated omission).

use rand::{RngExt, SeedableRng};
use std::time::{Duration, Instant};

/// Arrival process of the open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced: one request every 1/R seconds.
    Constant,
    /// Exponentially distributed gaps with mean 1/R (a Poisson process).
    Poisson,
}

impl Arrival {
    pub fn name(self) -> &'static str {
        match self {
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
        }
    }
}

/// One worker's share of the arrival process, as offsets from the start of the run.
#[derive(Debug, Clone)]
pub struct Arrivals {
    kind: Arrival,
    /// Mean gap between this worker's arrivals, in seconds (`W / R`).
    gap: f64,
    /// Constant: the first offset (`w / R`). Poisson: the last offset handed out.
    base: f64,
    /// Arrivals handed out so far.
    count: u64,
    rng: rand::rngs::Xoshiro256PlusPlus,
}

impl Arrivals {
    /// Worker `worker` of `workers` (0-based) for a total of `rate` arrivals per second.
    pub fn new(kind: Arrival, rate: f64, worker: usize, workers: usize, seed: u64) -> Self {
        let workers = workers.max(1) as f64;
        // Different seeds per worker; `seed_from_u64` scrambles the value, so neighbours are
        // unrelated streams.
        let stream = seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Arrivals {
            kind,
            gap: workers / rate,
            base: match kind {
                Arrival::Constant => worker as f64 / rate,
                Arrival::Poisson => 0.0,
            },
            count: 0,
            rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(stream),
        }
    }

    /// Offset of the next arrival from the start of the run, in seconds.
    pub fn next_secs(&mut self) -> f64 {
        let at = match self.kind {
            // Multiplied, not summed, so spacing stays exact over millions of arrivals.
            Arrival::Constant => self.base + self.count as f64 * self.gap,
            Arrival::Poisson => {
                // 1 - U is in (0, 1], so the logarithm is finite.
                let u: f64 = self.rng.random();
                self.base += -(1.0 - u).ln() * self.gap;
                self.base
            }
        };
        self.count += 1;
        at
    }
}

/// A worker's open-loop schedule: its arrivals, cut at the end of the run and at its share of
/// `--requests` (arrivals during the warm-up do not count against the share).
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    start: Instant,
    measure_from: Instant,
    end: Option<Instant>,
    /// Measured arrivals still allowed; `None` = no limit.
    remaining: Option<u64>,
}

impl Schedule {
    pub fn new(
        arrivals: Arrivals,
        start: Instant,
        measure_from: Instant,
        end: Option<Instant>,
        limit: Option<u64>,
    ) -> Self {
        Schedule {
            arrivals,
            start,
            measure_from,
            end,
            remaining: limit,
        }
    }

    /// The next intended start, or `None` once the schedule is over.
    pub fn next_due(&mut self) -> Option<Instant> {
        if self.remaining == Some(0) {
            return None;
        }
        let offset = Duration::try_from_secs_f64(self.arrivals.next_secs()).ok()?;
        let at = self.start.checked_add(offset)?;
        if self.end.is_some_and(|end| at >= end) {
            self.remaining = Some(0);
            return None;
        }
        if at >= self.measure_from {
            if let Some(n) = self.remaining.as_mut() {
                *n -= 1;
            }
        }
        Some(at)
    }
}

/// Splits `total` as evenly as possible into `parts`; part `i` gets its share.
pub fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts.max(1) as u64;
    let i = i as u64;
    total / parts + u64::from(i < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_spacing_is_exact_across_workers() {
        let rate = 250.0;
        for workers in [1, 2, 3, 7] {
            let mut all: Vec<f64> = (0..workers)
                .flat_map(|w| {
                    let mut a = Arrivals::new(Arrival::Constant, rate, w, workers, 1);
                    (0..1000).map(move |_| a.next_secs())
                })
                .collect();
            all.sort_by(f64::total_cmp);
            for (k, at) in all.iter().enumerate() {
                let want = k as f64 / rate;
                assert!((at - want).abs() < 1e-9, "workers {workers}: #{k} at {at}");
            }
        }
    }

    #[test]
    fn poisson_is_deterministic_per_seed() {
        let run = |seed, worker| {
            let mut a = Arrivals::new(Arrival::Poisson, 100.0, worker, 2, seed);
            (0..50).map(|_| a.next_secs()).collect::<Vec<_>>()
        };
        assert_eq!(run(42, 0), run(42, 0));
        assert_ne!(run(42, 0), run(43, 0));
        assert_ne!(run(42, 0), run(42, 1));
        let times = run(42, 1);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] > 0.0);
    }

    #[test]
    fn poisson_has_the_right_mean_and_spread() {
        // 200k gaps at 1000/s over 4 workers (250/s each, mean gap 4 ms).
        let (rate, workers, n) = (1000.0, 4, 50_000);
        let mut gaps = Vec::new();
        let mut total_span = 0.0f64;
        for w in 0..workers {
            let mut a = Arrivals::new(Arrival::Poisson, rate, w, workers, 9);
            let mut last = 0.0;
            for _ in 0..n {
                let t = a.next_secs();
                gaps.push(t - last);
                last = t;
            }
            total_span = total_span.max(last);
        }
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let want = workers as f64 / rate;
        assert!(
            (mean / want - 1.0).abs() < 0.01,
            "mean gap {mean}, want {want}"
        );
        // Exponential: the standard deviation equals the mean.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((var.sqrt() / mean - 1.0).abs() < 0.02, "sd {}", var.sqrt());
        // Together the workers made about `rate` arrivals per second.
        let achieved = (workers * n) as f64 / total_span;
        assert!((achieved / rate - 1.0).abs() < 0.02, "{achieved}/s");
    }

    #[test]
    fn schedule_stops_at_the_end_and_at_the_limit() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 100/s constant: due at 0, 10, 20, ... ms. Measured from 25 ms, ends at 100 ms.
        let mk = |limit| {
            Schedule::new(
                Arrivals::new(Arrival::Constant, 100.0, 0, 1, 0),
                t0,
                t0 + ms(25),
                Some(t0 + ms(100)),
                limit,
            )
        };
        let mut s = mk(None);
        let due: Vec<Duration> = std::iter::from_fn(|| s.next_due())
            .map(|t| t - t0)
            .collect();
        assert_eq!(due.len(), 10);
        assert_eq!(due[3], ms(30));
        assert_eq!(s.next_due(), None);
        // The warm-up arrivals (0, 10, 20 ms) do not count against the limit of 2.
        let mut s = mk(Some(2));
        let due: Vec<Duration> = std::iter::from_fn(|| s.next_due())
            .map(|t| t - t0)
            .collect();
        assert_eq!(due, [ms(0), ms(10), ms(20), ms(30), ms(40)]);
    }

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(10u64, 3usize), (2, 4), (0, 2), (1000, 7)] {
            let shares: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 1);
        }
    }
}
