//! The mock's flags and the settings they become (parse, don't validate: once built, a
//! [`Settings`] holds only meaningful values).

use std::net::SocketAddr;
use std::time::Duration;

pub use sluice_core::config::IoDriver;

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = ROUTES)]
pub struct MockArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is printed on stdout
    /// as `listening on ADDR` once the mock is serving.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Worker threads, each with its own runtime and its own SO_REUSEPORT listener.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,

    /// IO driver: auto (io_uring, falling back to epoll), uring or epoll.
    #[arg(long, value_enum, default_value_t = IoDriver::Auto)]
    pub io_driver: IoDriver,

    /// Fixed reply length in tokens (words), cycling through the words of the last user
    /// message. Default: echo the last user message (or the prompt) once. `max_tokens` still
    /// caps it (finish_reason "length").
    #[arg(long, value_name = "N")]
    pub tokens: Option<u64>,

    /// Pace token chunks of streams at this rate (0 = unpaced). Non-streaming replies are
    /// delayed by the time their tokens would take.
    #[arg(long, value_name = "R", default_value_t = 0.0, value_parser = parse_rate_per_second)]
    pub tokens_per_second: f64,

    /// Gap between token chunks in milliseconds (an alternative to --tokens-per-second).
    /// Long slow streams are cheap: `--itl-ms 5000 --tokens 60` holds a stream open for five
    /// minutes at one token every 5 s.
    #[arg(long, value_name = "MS", conflicts_with = "tokens_per_second")]
    pub itl_ms: Option<u64>,

    /// Spread each gap between token chunks uniformly within +-PCT% of the nominal gap
    /// (0-100). Deterministic: the draws come from a PRNG seeded by --seed and the request's
    /// number.
    #[arg(long, value_name = "PCT", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub itl_jitter: u8,

    /// Seed of the --itl-jitter draws: the same seed and request order give the same gaps.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Delay before the first stream chunk (time to first token) in milliseconds; added to the
    /// delay of non-streaming replies.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub ttft_ms: u64,

    /// Delay before writing the response head of every POST, in milliseconds (for first-byte
    /// timeout tests).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay_headers_ms: u64,

    /// Answer POSTs with this HTTP status (400-599) and an error body in the route's shape
    /// (Anthropic on /v1/messages, OpenAI elsewhere). 429 also sends Retry-After: 1 and rate
    /// limit headers (x-ratelimit-*, or anthropic-ratelimit-* on /v1/messages).
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(400..=599))]
    pub fault_status: Option<u16>,

    /// Fraction of POSTs (0 to 1) that get --fault-status; default 1. Deterministic: POST
    /// number n (from 1) faults when floor(n*F) != floor((n-1)*F).
    #[arg(long, value_name = "F", requires = "fault_status", value_parser = parse_fraction)]
    pub fault_rate: Option<f64>,

    /// Streams: after N token chunks (a tool call's argument fragments count), close the
    /// connection abruptly (no terminating chunk, no [DONE]).
    #[arg(long, value_name = "N", conflicts_with_all = ["stall_after", "error_event_after"])]
    pub drop_after: Option<u64>,

    /// Streams: after N token chunks, stop writing but keep the connection open until the
    /// client closes it (counted in client_disconnects).
    #[arg(long, value_name = "N", conflicts_with = "error_event_after")]
    pub stall_after: Option<u64>,

    /// Streams: after N token chunks, send an error inside the 200 stream and end the body
    /// cleanly: chat and completions `data: {"error":..}` without [DONE]; Messages
    /// `event: error` (overloaded_error); Responses `error` then `response.failed`.
    #[arg(long, value_name = "N")]
    pub error_event_after: Option<u64>,

    /// Never send usage: no usage chunk and no `"usage":null` in streams even when
    /// stream_options.include_usage asks for them, no usage in JSON bodies. Models servers that
    /// do not report usage.
    #[arg(long)]
    pub no_usage: bool,

    /// Require `Authorization: Bearer KEY` on POSTs (on /v1/messages `x-api-key: KEY` works
    /// too); otherwise answer 401 in the route's error shape.
    #[arg(long, value_name = "KEY")]
    pub require_key: Option<String>,

    /// Model ids listed by GET /v1/models (comma-separated). POSTs accept any model name and
    /// echo it.
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        default_value = "mock-small,mock-large"
    )]
    pub models: Vec<String>,
}

const ROUTES: &str = "\
Routes (also without the /v1 prefix):
  POST /v1/chat/completions   POST /v1/completions   POST /v1/embeddings
  POST /v1/messages (Anthropic; needs the anthropic-version header)   POST /v1/responses
  GET  /v1/models             GET  /v1/models/{id}
  GET  /mock/stats (counters and the last POST, JSON)   GET /healthz

Replies echo the last user message. When the request offers tools and tool_choice forces one,
or the last user message says `call NAME` with NAME a tool, the reply is a call of that tool
with arguments generated from its schema; a conversation ending in tool results gets an echo
of the results.";

fn parse_rate_per_second(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err("expected a finite number >= 0".to_owned())
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("expected a number from 0 to 1".to_owned())
    }
}

/// An injected error status and how often it applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub status: u16,
    /// Fraction of POSTs, in `0..=1`.
    pub rate: f64,
}

impl Fault {
    /// Whether POST number `n` (counting from 1) gets the fault. Spreads the faults evenly:
    /// exactly `floor(n * rate)` of the first `n` POSTs fault.
    pub fn hits(&self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        // f64 is exact for every count this process will ever see (< 2^53).
        let at = |k: u64| (k as f64 * self.rate).floor();
        at(n) != at(n - 1)
    }
}

/// Where a stream is cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close the connection after this many token chunks.
    Drop(u64),
    /// Stop writing after this many token chunks; wait for the client to hang up.
    Stall(u64),
    /// Send an in-stream error after this many token chunks and end the body cleanly.
    Error(u64),
}

/// The jitter draws of one stream: xorshift64* seeded by `--seed` and the POST number, so the
/// same seed and request order give the same gaps (and streams differ from one another).
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64, request: u64) -> Self {
        // Never zero: xorshift would stay at zero.
        Self((seed ^ request.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// The next number, uniformly in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        // The top 53 bits, exactly representable.
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The validated settings every worker reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tokens: Option<u64>,
    /// Gap between token chunks; `None` = unpaced.
    pub gap: Option<Duration>,
    pub ttft: Duration,
    /// Spread of the gaps, in percent of `gap`.
    pub jitter_pct: u8,
    /// Seed of the jitter draws.
    pub seed: u64,
    pub delay_headers: Duration,
    pub fault: Option<Fault>,
    pub cut: Option<Cut>,
    pub no_usage: bool,
    /// The key POSTs must present as `Authorization: Bearer KEY`.
    pub require_key: Option<String>,
    pub models: Vec<String>,
}

impl Settings {
    /// When frames are due (shared with the gateway's built-in mock provider).
    pub fn pacing(&self) -> sluice_proto_llm::synth::Pacing {
        sluice_proto_llm::synth::Pacing {
            ttft: self.ttft,
            gap: self.gap.unwrap_or_default(),
            jitter_pct: self.jitter_pct,
        }
    }
}

impl TryFrom<&MockArgs> for Settings {
    type Error = String;

    fn try_from(args: &MockArgs) -> Result<Self, String> {
        let gap = match args.itl_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None if args.tokens_per_second > 0.0 => Some(
                Duration::try_from_secs_f64(1.0 / args.tokens_per_second)
                    .map_err(|e| format!("--tokens-per-second {}: {e}", args.tokens_per_second))?,
            ),
            None => None,
        };
        let models: Vec<String> = args
            .models
            .iter()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        if models.is_empty() {
            return Err("--models needs at least one model id".to_owned());
        }
        if let Some(key) = &args.require_key {
            if key.is_empty() || key.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(
                    "--require-key must be non-empty printable ASCII without spaces".to_owned(),
                );
            }
        }
        let cuts = [
            args.drop_after.map(Cut::Drop),
            args.stall_after.map(Cut::Stall),
            args.error_event_after.map(Cut::Error),
        ];
        let mut cuts = cuts.into_iter().flatten();
        let cut = cuts.next();
        if cuts.next().is_some() {
            return Err(
                "--drop-after, --stall-after and --error-event-after exclude each other".to_owned(),
            );
        }
        Ok(Settings {
            tokens: args.tokens,
            gap,
            ttft: Duration::from_millis(args.ttft_ms),
            jitter_pct: args.itl_jitter,
            seed: args.seed,
            delay_headers: Duration::from_millis(args.delay_headers_ms),
            fault: args.fault_status.map(|status| Fault {
                status,
                rate: args.fault_rate.unwrap_or(1.0),
            }),
            cut,
            no_usage: args.no_usage,
            require_key: args.require_key.clone(),
            models,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("mock").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::try_from(&cli.args)
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["mock"]).unwrap();
        assert_eq!(cli.args.workers, 1);
        assert_eq!(cli.args.io_driver, IoDriver::Auto);
        assert_eq!(cli.args.listen, "127.0.0.1:8000".parse().unwrap());
        let s = Settings::try_from(&cli.args).unwrap();
        assert_eq!(s.models, ["mock-small", "mock-large"]);
        assert_eq!(s.gap, None);
        assert_eq!(s.fault, None);
        assert_eq!(s.cut, None);
        assert_eq!(s.tokens, None);
        assert!(!s.no_usage);
        assert_eq!(s.require_key, None);
        assert_eq!(s.jitter_pct, 0);
        assert_eq!(s.seed, 0);
    }

    #[test]
    fn all_flags() {
        let s = parse(&[
            "--listen",
            "0.0.0.0:0",
            "--workers",
            "3",
            "--io-driver",
            "epoll",
            "--tokens",
            "20",
            "--tokens-per-second",
            "50",
            "--ttft-ms",
            "7",
            "--delay-headers-ms",
            "9",
            "--fault-status",
            "503",
            "--fault-rate",
            "0.25",
            "--stall-after",
            "2",
            "--no-usage",
            "--require-key",
            "sk-1",
            "--models",
            "a, b,,c",
        ])
        .unwrap();
        assert_eq!(s.tokens, Some(20));
        assert_eq!(s.gap, Some(Duration::from_millis(20)));
        assert_eq!(s.ttft, Duration::from_millis(7));
        assert_eq!(s.delay_headers, Duration::from_millis(9));
        assert_eq!(
            s.fault,
            Some(Fault {
                status: 503,
                rate: 0.25
            })
        );
        assert_eq!(s.cut, Some(Cut::Stall(2)));
        assert!(s.no_usage);
        assert_eq!(s.require_key.as_deref(), Some("sk-1"));
        assert_eq!(s.models, ["a", "b", "c"]);
    }

    #[test]
    fn itl_and_fault_defaults() {
        let s = parse(&[
            "--itl-ms",
            "15",
            "--itl-jitter",
            "25",
            "--seed",
            "9",
            "--fault-status",
            "429",
            "--drop-after",
            "0",
        ])
        .unwrap();
        assert_eq!(s.jitter_pct, 25);
        assert_eq!(s.seed, 9);
        assert_eq!(s.pacing().jitter_pct, 25);
        assert_eq!(s.pacing().gap, Duration::from_millis(15));
        assert_eq!(s.gap, Some(Duration::from_millis(15)));
        assert_eq!(
            s.fault,
            Some(Fault {
                status: 429,
                rate: 1.0
            })
        );
        assert_eq!(s.cut, Some(Cut::Drop(0)));
        assert_eq!(parse(&["--itl-ms", "0"]).unwrap().gap, None);
        assert_eq!(
            parse(&["--error-event-after", "4"]).unwrap().cut,
            Some(Cut::Error(4))
        );
        assert_eq!(parse(&["--tokens-per-second", "0"]).unwrap().gap, None);
    }

    #[test]
    fn rejected_flags() {
        for args in [
            &["--workers", "0"][..],
            &["--io-driver", "kqueue"],
            &["--tokens-per-second", "-1"],
            &["--tokens-per-second", "inf"],
            &["--tokens-per-second", "NaN"],
            &["--tokens-per-second", "5", "--itl-ms", "3"],
            &["--fault-status", "200"],
            &["--fault-status", "600"],
            &["--fault-rate", "0.5"],
            &["--fault-status", "500", "--fault-rate", "1.5"],
            &["--drop-after", "1", "--stall-after", "2"],
            &["--drop-after", "1", "--error-event-after", "2"],
            &["--stall-after", "1", "--error-event-after", "2"],
            &["--itl-jitter", "101"],
            &["--itl-jitter", "-1"],
            &["--seed", "x"],
            &["--models", ","],
            &["--require-key", ""],
            &["--require-key", "a b"],
            &["--listen", "nowhere"],
            &["--bogus"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn jitter_draws_are_uniform_and_reproducible() {
        let draws = |seed, request| {
            let mut d = Draws::new(seed, request);
            (0..1000).map(|_| d.next_unit()).collect::<Vec<f64>>()
        };
        let a = draws(7, 1);
        assert_eq!(a, draws(7, 1));
        assert_ne!(a, draws(7, 2));
        assert_ne!(a, draws(8, 1));
        assert!(a.iter().all(|x| (0.0..1.0).contains(x)));
        // Roughly uniform: every tenth of [0, 1) gets its share.
        for decile in 0..10 {
            let lo = f64::from(decile) / 10.0;
            let n = a.iter().filter(|x| (lo..lo + 0.1).contains(*x)).count();
            assert!((60..=140).contains(&n), "decile {decile}: {n}");
        }
        assert!(Draws::new(0, 0).next_unit() > 0.0);
    }

    #[test]
    fn fault_rate_arithmetic() {
        let count = |rate: f64, n: u64| {
            (1..=n)
                .filter(|&i| Fault { status: 500, rate }.hits(i))
                .count()
        };
        assert_eq!(count(1.0, 100), 100);
        assert_eq!(count(0.0, 100), 0);
        assert_eq!(count(0.25, 100), 25);
        assert_eq!(count(0.1, 1000), 100);
        assert_eq!(count(0.3, 10), 3);
        // Evenly spread: every other request at 0.5, starting with the second.
        let half = Fault {
            status: 500,
            rate: 0.5,
        };
        let pattern: Vec<bool> = (1..=6).map(|n| half.hits(n)).collect();
        assert_eq!(pattern, [false, true, false, true, false, true]);
        // Any prefix holds floor(n * rate) faults, and at a rate of 1/3 never two in a row.
        let third = Fault {
            status: 500,
            rate: 1.0 / 3.0,
        };
        let mut seen = 0u64;
        for n in 1..=300u64 {
            if third.hits(n) {
                seen += 1;
                assert!(!third.hits(n - 1), "n={n}");
            }
            assert_eq!(seen, (n as f64 * third.rate).floor() as u64, "n={n}");
        }
        assert_eq!(seen, 100);
        assert!(!Fault {
            status: 500,
            rate: 1.0
        }
        .hits(0));
    }
}
