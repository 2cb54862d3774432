//! The flags of `sluice-loadgen run`, and the [`Settings`] built from them (parse, don't
//! validate: once built, a `Settings` holds only meaningful values, the target address is
//! resolved and the request bytes are ready to send).

use super::request::{self, Endpoint};
use super::schedule::Arrival;
use bytes::Bytes;
use sluice_core::config::IoDriver;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Most addresses `--source-ips` may list (a /16 of IPv4 is far more than any machine needs).
pub const MAX_SOURCE_IPS: usize = 65_536;
/// Most virtual users one process runs.
pub const MAX_CONCURRENCY: u32 = 1_000_000;

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct RunArgs {
    /// Base URL of the OpenAI-compatible server (plain http). The endpoint path is appended:
    /// `/v1/chat/completions` etc., or `/chat/completions` etc. when the URL already ends in
    /// `/v1`.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Model name sent in every request.
    #[arg(long, value_name = "NAME", default_value = "gpt-4o-mini")]
    pub model: String,

    /// Which API to call.
    #[arg(long, value_enum, default_value_t = Endpoint::Chat)]
    pub endpoint: Endpoint,

    /// Virtual users: one keep-alive connection each. Closed loop (no --rate): each sends its
    /// next request as soon as the last one finished. Open loop: the cap on requests in flight.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: u32,

    /// How long to measure, after the warm-up (`500ms`, `20s`, `2m`). With --requests the run
    /// ends at whichever comes first. Requests in flight at the end still finish (each bounded
    /// by --timeout) and are counted.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after N measured requests have finished (warm-up requests do not count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open loop: start R requests per second whatever the server does. Latency is measured
    /// from each request's intended start, so queueing for a free user is not hidden
    /// (coordinated omission).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Arrival process of the open loop: constant spacing or Poisson (exponential gaps).
    #[arg(long, value_enum, default_value_t = Arrival::Poisson, requires = "rate")]
    pub arrival: Arrival,

    /// Seed of the Poisson arrivals: the same seed and workers give the same schedule.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Ask for streamed responses (SSE), with `stream_options.include_usage: true`.
    #[arg(long)]
    pub stream: bool,

    /// Streams: do not ask for the usage chunk; output tokens are then counted from content
    /// events.
    #[arg(long, requires = "stream")]
    pub no_include_usage: bool,

    /// Approximate prompt size: N words of filler text in the user message (the prompt, the
    /// input).
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub prompt_tokens: u32,

    /// Sent as `max_tokens` (chat and completions).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,

    /// Sent as `Authorization: Bearer KEY`. Never written to the report.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Extra request header (repeatable). `Host` replaces the default; `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are refused.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Send requests for this long before measuring; they are not recorded.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Bound on each request, from connecting to the end of its response (a whole stream); a
    /// request that exceeds it is a `timeout` error.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// A gap between two SSE data events of a stream longer than this counts as a stall
    /// (comments and keep-alives do not end a gap).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub stall_threshold: Duration,

    /// Worker threads, each with its own runtime; default: every core this process may use.
    /// Never more than --concurrency.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// IO driver: auto (io_uring, falling back to epoll), uring or epoll.
    #[arg(long, value_enum, default_value_t = IoDriver::Auto)]
    pub io_driver: IoDriver,

    /// Local addresses to connect from, round-robin over the virtual users, to get past the
    /// ephemeral ports of one address (about 28k connections per source address and
    /// destination): a range
    /// `127.0.0.2-127.0.0.9`, a comma list, or both (`127.0.0.2-127.0.0.5,127.0.0.9`).
    #[arg(long, value_name = "IPS", value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,

    /// Also write the results as JSON to FILE (created at start, written at the end).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// No live progress line on stderr (it is only shown when stderr is a terminal).
    #[arg(long)]
    pub quiet: bool,
}

const AFTER_HELP: &str = "\
Measures (milliseconds, from the intended send time of each request):
  ttft     to the first content event: a chunk with a non-empty \"content\", \"text\" or
           \"tool_calls\" (streams only)
  itl      gaps between consecutive content events
  tpot     (end - first token) / (output tokens - 1), requests with 2+ output tokens
  latency  to the end of the response
Output tokens: completion_tokens of the usage when the server sends it, else the number of
content events (the report says which: output_tokens_source).
Open loop: the intended send time is the scheduled one. A request that starts later because
every virtual user was busy still has its clock started then (no coordinated omission); only
the timer's 1 ms resolution is forgiven. Starts more than 2 ms late are counted (late_starts).
Only successful requests feed the measures; errors are counted by class: connect,
http_<status>, broken_stream (no [DONE], an error event, or a body cut short), timeout, io,
protocol (not HTTP/SSE). stalls: gaps above --stall-threshold between two data events.

Exit status:
  0  the run completed (even if requests failed)
  1  nothing could be sent (no request got a response), the run could not start, or the
     report could not be written
  2  bad arguments

Ctrl-C (SIGINT) or SIGTERM: stop starting requests, give those in flight up to 2 s, then
report what finished (\"interrupted\": true). A second signal stops at once.";

/// Parses `500ms`, `20s`, `2m`, `1h`, `1m 30s` (humantime's syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 500ms, 20s or 2m)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 10_000_000.0 {
        Ok(v)
    } else {
        Err("expected requests per second, > 0 and <= 10000000".to_owned())
    }
}

/// Header names we write ourselves and will not let a flag duplicate.
const RESERVED_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or("expected `Name: value`".to_owned())?;
    let (name, value) = (name.trim(), value.trim());
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("header values cannot contain line breaks".to_owned());
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name} is set by sluice-loadgen"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The addresses of `--source-ips`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(pub Vec<IpAddr>);

/// Parses `A-B` IPv4 ranges and single addresses (v4 or v6), separated by commas.
pub fn parse_source_ips(s: &str) -> Result<SourceIps, String> {
    let mut ips = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            None => ips.push(
                part.parse::<IpAddr>()
                    .map_err(|_| format!("`{part}` is not an IP address"))?,
            ),
            Some((a, b)) => {
                let parse = |t: &str| {
                    t.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|_| format!("`{t}` is not an IPv4 address (ranges are IPv4)"))
                };
                let (first, last) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if first > last {
                    return Err(format!("range `{part}` runs backwards"));
                }
                if (last - first) as usize >= MAX_SOURCE_IPS {
                    return Err(format!("range `{part}` is larger than {MAX_SOURCE_IPS}"));
                }
                ips.extend((first..=last).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
        }
        if ips.len() > MAX_SOURCE_IPS {
            return Err(format!("more than {MAX_SOURCE_IPS} source addresses"));
        }
    }
    if ips.is_empty() {
        return Err("no addresses given".to_owned());
    }
    Ok(SourceIps(ips))
}

/// Open-loop pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub arrival: Arrival,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL as given, for the report.
    pub url: String,
    /// Where to connect (the URL's host, resolved once at start).
    pub target: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// `None`: closed loop.
    pub rate: Option<Rate>,
    pub seed: u64,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub warmup: Duration,
    pub timeout: Duration,
    pub stall_threshold: Duration,
    /// Worker threads (at most `concurrency`).
    pub workers: usize,
    pub io_driver: IoDriver,
    pub source_ips: Vec<IpAddr>,
    pub json: Option<PathBuf>,
    pub quiet: bool,
    /// Names of the extra headers (values may be secrets, so the report lists names only).
    pub header_names: Vec<String>,
    pub api_key: bool,
    /// The complete request (head and body), sent as is by every virtual user.
    pub request: Bytes,
}

impl TryFrom<&RunArgs> for Settings {
    type Error = String;

    fn try_from(a: &RunArgs) -> Result<Self, String> {
        if a.duration.is_none() && a.requests.is_none() {
            return Err(
                "say when to stop: --duration (e.g. 20s), --requests N, or both".to_owned(),
            );
        }
        if a.duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be longer than 0".to_owned());
        }
        if a.timeout.is_zero() {
            return Err("--timeout must be longer than 0".to_owned());
        }
        if a.stream && a.endpoint == Endpoint::Embeddings {
            return Err("--stream does not apply to --endpoint embeddings".to_owned());
        }
        if a.model.is_empty() {
            return Err("--model must not be empty".to_owned());
        }
        let target = Target::parse(&a.url, a.endpoint)?;
        let source_ips = a.source_ips.clone().map(|s| s.0).unwrap_or_default();
        if let Some(ip) = source_ips
            .iter()
            .find(|ip| ip.is_ipv4() != target.addr.is_ipv4())
        {
            return Err(format!(
                "--source-ips {ip} is not of the same family as the target {}",
                target.addr
            ));
        }
        if let Some(key) = &a.api_key {
            if key.is_empty() || key.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err("--api-key must be non-empty printable ASCII without spaces".into());
            }
            if a.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                return Err("give either --api-key or --header 'Authorization: ...'".into());
            }
        }
        let concurrency = a.concurrency as usize;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = a
            .workers
            .map_or(cores, usize::from)
            .clamp(1, concurrency.max(1));
        let include_usage = a.stream && !a.no_include_usage;
        let body = request::body(&request::BodySpec {
            endpoint: a.endpoint,
            model: &a.model,
            prompt_words: a.prompt_tokens,
            max_tokens: a.max_tokens,
            stream: a.stream,
            include_usage,
        });
        let host = a
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map_or(target.host_header.as_str(), |(_, v)| v.as_str());
        let extra: Vec<(&str, &str)> = a
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = request::head_and_body(&request::HeadSpec {
            path: &target.path,
            host,
            stream: a.stream,
            api_key: a.api_key.as_deref(),
            headers: &extra,
            body: &body,
        });
        Ok(Settings {
            url: a.url.clone(),
            target: target.addr,
            path: target.path,
            endpoint: a.endpoint,
            model: a.model.clone(),
            stream: a.stream,
            include_usage,
            concurrency,
            duration: a.duration,
            requests: a.requests,
            rate: a.rate.map(|per_second| Rate {
                per_second,
                arrival: a.arrival,
            }),
            seed: a.seed,
            prompt_tokens: a.prompt_tokens,
            max_tokens: a.max_tokens,
            warmup: a.warmup,
            timeout: a.timeout,
            stall_threshold: a.stall_threshold,
            workers,
            io_driver: a.io_driver,
            source_ips,
            json: a.json.clone(),
            quiet: a.quiet,
            header_names: a.headers.iter().map(|(n, _)| n.clone()).collect(),
            api_key: a.api_key.is_some(),
            request: Bytes::from(request),
        })
    }
}

/// Where the requests go, from `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
}

impl Target {
    /// Parses the URL, resolves its host (once, with the system resolver) and appends the
    /// endpoint's path.
    pub fn parse(url: &str, endpoint: Endpoint) -> Result<Target, String> {
        let u = url::Url::parse(url.trim()).map_err(|e| format!("--url `{url}`: {e}"))?;
        match u.scheme() {
            "http" => {}
            "https" => {
                return Err(format!(
                    "--url `{url}`: https is not supported; benchmark the plain-HTTP listener"
                ))
            }
            other => return Err(format!("--url `{url}`: unsupported scheme `{other}`")),
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(format!("--url `{url}`: no query or fragment, please"));
        }
        let host = u
            .host_str()
            .ok_or_else(|| format!("--url `{url}` has no host"))?;
        let port = u.port_or_known_default().unwrap_or(80);
        // `host_str` keeps the brackets of an IPv6 literal; the resolver wants them off.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| format!("--url `{url}`: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url `{url}`: {host} has no address"))?;
        let host_header = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let base = u.path().trim_end_matches('/');
        let prefix = if base.ends_with("/v1") { "" } else { "/v1" };
        Ok(Target {
            addr,
            host_header,
            path: format!("{base}{prefix}{}", endpoint.path()),
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
        args: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::try_from(&cli.args)
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["20", "", "s", "-1s", "2x", "1.5.s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_ip_ranges_and_lists() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        let SourceIps(ips) = parse_source_ips("127.0.0.2-127.0.0.9").unwrap();
        assert_eq!(ips.len(), 8);
        assert_eq!(ips.first(), Some(&v4("127.0.0.2")));
        assert_eq!(ips.last(), Some(&v4("127.0.0.9")));
        // Across an octet boundary, mixed with single addresses (v6 too).
        let SourceIps(ips) = parse_source_ips("10.0.0.255-10.0.1.1, 127.0.0.5,::1").unwrap();
        assert_eq!(
            ips,
            ["10.0.0.255", "10.0.1.0", "10.0.1.1", "127.0.0.5", "::1"].map(v4)
        );
        assert_eq!(parse_source_ips("127.0.0.7-127.0.0.7").unwrap().0.len(), 1);
        for bad in [
            "",
            ",",
            "127.0.0.9-127.0.0.2",
            "127.0.0.1-",
            "::1-::2",
            "localhost",
            "10.0.0.0-10.2.0.0",
            "1.2.3.4.5",
        ] {
            assert!(parse_source_ips(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(
            parse_header("X-Team:  bench "),
            Ok(("X-Team".to_owned(), "bench".to_owned()))
        );
        assert_eq!(
            parse_header("a:b:c"),
            Ok(("a".to_owned(), "b:c".to_owned()))
        );
        for bad in [
            "novalue",
            ": v",
            "bad name: v",
            "Content-Length: 3",
            "connection: close",
            "X: a\r\nInjected: 1",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_paths() {
        let t = Target::parse("http://127.0.0.1:8080", Endpoint::Chat).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/v1/chat/completions");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = Target::parse("http://127.0.0.1:8080/v1/", Endpoint::Completions).unwrap();
        assert_eq!(t.path, "/v1/completions");
        let t = Target::parse("http://127.0.0.1/openai", Endpoint::Embeddings).unwrap();
        assert_eq!(t.path, "/openai/v1/embeddings");
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.host_header, "127.0.0.1");
        let t = Target::parse("http://[::1]:9/x/v1", Endpoint::Chat).unwrap();
        assert_eq!(t.path, "/x/v1/chat/completions");
        assert_eq!(t.host_header, "[::1]:9");
        for bad in [
            "https://127.0.0.1",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
            "http://127.0.0.1/?a=1",
        ] {
            assert!(Target::parse(bad, Endpoint::Chat).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_request_bytes() {
        let s = parse(&["--url", "http://127.0.0.1:1", "--requests", "5"]).unwrap();
        assert_eq!(s.concurrency, 64);
        assert_eq!(s.endpoint, Endpoint::Chat);
        assert_eq!(s.model, "gpt-4o-mini");
        assert!(!s.stream && !s.include_usage);
        assert_eq!(s.rate, None);
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.stall_threshold, Duration::from_secs(1));
        assert_eq!(s.warmup, Duration::ZERO);
        assert_eq!((s.prompt_tokens, s.max_tokens), (32, 64));
        assert!(s.workers >= 1);
        let text = String::from_utf8(s.request.to_vec()).unwrap();
        assert!(text.starts_with("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
        assert!(text.contains("\r\nAccept: application/json\r\n"));
        assert!(!text.contains("Authorization"));
    }

    #[test]
    fn all_flags() {
        let s = parse(&[
            "--url",
            "http://127.0.0.1:8080/v1",
            "--model",
            "m",
            "--endpoint",
            "completions",
            "--concurrency",
            "3",
            "--duration",
            "2m",
            "--requests",
            "9",
            "--rate",
            "12.5",
            "--arrival",
            "constant",
            "--seed",
            "7",
            "--stream",
            "--no-include-usage",
            "--prompt-tokens",
            "4",
            "--max-tokens",
            "5",
            "--api-key",
            "sk-1",
            "--header",
            "X-A: 1",
            "--header",
            "Host: gw.example",
            "--warmup",
            "2s",
            "--timeout",
            "300ms",
            "--stall-threshold",
            "250ms",
            "--workers",
            "8",
            "--io-driver",
            "epoll",
            "--source-ips",
            "127.0.0.2-127.0.0.3",
            "--json",
            "/tmp/x.json",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(s.path, "/v1/completions");
        assert_eq!(s.concurrency, 3);
        // Never more workers than virtual users.
        assert_eq!(s.workers, 3);
        assert_eq!(s.duration, Some(Duration::from_secs(120)));
        assert_eq!(s.requests, Some(9));
        assert_eq!(
            s.rate,
            Some(Rate {
                per_second: 12.5,
                arrival: Arrival::Constant
            })
        );
        assert_eq!(s.seed, 7);
        assert!(s.stream && !s.include_usage);
        assert_eq!(s.warmup, Duration::from_secs(2));
        assert_eq!(s.timeout, Duration::from_millis(300));
        assert_eq!(s.stall_threshold, Duration::from_millis(250));
        assert_eq!(s.io_driver, IoDriver::Epoll);
        assert_eq!(s.source_ips.len(), 2);
        assert!(s.api_key && s.quiet);
        assert_eq!(s.header_names, ["X-A", "Host"]);
        let text = String::from_utf8(s.request.to_vec()).unwrap();
        assert!(text.starts_with("POST /v1/completions HTTP/1.1\r\nHost: gw.example\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer sk-1\r\n"));
        assert!(text.contains("\r\nX-A: 1\r\n"));
        assert!(text.contains("\r\nAccept: text/event-stream\r\n"));
    }

    #[test]
    fn rejected_flags() {
        let url = "http://127.0.0.1:1";
        for args in [
            &["--url", url][..],
            &["--url", url, "--requests", "0"],
            &["--url", "https://127.0.0.1", "--requests", "1"],
            &["--requests", "1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
        let valid = ["--url", url, "--requests", "1"];
        for extra in [
            &["--duration", "0s"][..],
            &["--duration", "20"],
            &["--concurrency", "0"],
            &["--rate", "0"],
            &["--rate", "-3"],
            &["--rate", "inf"],
            &["--arrival", "constant"],
            &["--no-include-usage"],
            &["--timeout", "0s"],
            &["--endpoint", "images"],
            &["--endpoint", "embeddings", "--stream"],
            &["--source-ips", "::1"],
            &["--api-key", "a b"],
            &["--api-key", "k", "--header", "authorization: x"],
            &["--workers", "0"],
            &["--io-driver", "kqueue"],
        ] {
            let args: Vec<&str> = valid.iter().chain(extra).copied().collect();
            assert!(parse(&args).is_err(), "{args:?} was accepted");
        }
        assert!(parse(&valid).is_ok());
    }
}
