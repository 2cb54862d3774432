//! Configuration: a TOML file becomes an immutable, validated [`Config`] snapshot.
//!
//! Parse, don't validate: [`raw`] holds the file as written (serde, `deny_unknown_fields`,
//! spans kept); [`Config`] holds only checked values in their final types (`Duration`,
//! `usize`, `SocketAddr`, resolved secrets, backend indices instead of names). Everything that
//! can be wrong is found at load time and reported together with `FILE:LINE:COLUMN`, so a
//! reload either installs a complete snapshot or changes nothing.
//!
//! Every rejection rule has a fixture in `configs/invalid/` and a test that loads it.

mod access;
mod error;
mod raw;
mod units;

pub use access::{
    key_digest, micros_to_usd, Auth, Consumer, JwtKey, JwtSettings, Limit, Metric, Quota,
    QuotaBackend, Window,
};
pub use error::{ConfigError, ConfigErrors};

use error::Locator;
use raw::{RawBackend, RawConfig, RawModel, RawServer};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use units::{parse_duration, parse_size, RawSize};

/// `api-version` sent to Azure OpenAI when the config names none.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
/// `anthropic-version` sent to Anthropic when neither the client nor the config names one.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The config `sluice` runs with when given no `--config`: model `mock` on the built-in mock
/// provider.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// A validated, immutable config snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub backends: Vec<Backend>,
    pub models: Vec<Model>,
    /// Model name -> index in `models`.
    model_index: HashMap<String, usize>,
    pub audit: Audit,
    /// When any are configured, every LLM request needs a key or a JWT.
    pub consumers: Vec<Consumer>,
    /// SHA-256 of a key -> index in `consumers`.
    key_index: HashMap<[u8; 32], usize>,
    pub auth: Auth,
    pub quota: Quota,
    pub source: Source,
}

/// The audit log: one JSON line per request, written by a dedicated thread.
#[derive(Debug, Clone)]
pub struct Audit {
    /// `None`: no audit log.
    pub path: Option<PathBuf>,
    /// Records queued for the writer thread; when full, records are dropped and counted.
    pub buffer: usize,
}

/// Where a snapshot came from (shown by `/admin/config`).
#[derive(Debug, Clone)]
pub struct Source {
    /// `None` for the embedded default.
    pub path: Option<PathBuf>,
    /// First 16 hex digits of the SHA-256 of the file's bytes.
    pub hash: String,
    pub loaded_at_unix: u64,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    /// `None` when `admin = "off"`.
    pub admin: Option<SocketAddr>,
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: IoDriver,
    pub uring_entries: u32,
    /// Open client connections for the whole process (each worker takes its share).
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    /// Reload when the config file changes (SIGHUP always reloads).
    pub watch_config: bool,
}

impl Server {
    /// This worker's share of `max_connections` (rounded up, at least 1).
    pub fn max_connections_per_worker(&self) -> usize {
        self.max_connections.div_ceil(self.workers.max(1)).max(1)
    }
}

/// Which monoio driver the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoDriver {
    /// io_uring, falling back to epoll (with a log line) when the ring cannot be set up.
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, Clone)]
pub struct Log {
    /// A `tracing` filter such as `info` or `sluice_core=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI and OpenAI-compatible servers (vLLM, Ollama, DeepSeek, ...).
    OpenAi,
    /// Azure OpenAI: deployment URLs, `api-key` header, `api-version` query parameter.
    AzureOpenAi,
    /// Anthropic Messages API: `x-api-key` and `anthropic-version` headers.
    Anthropic,
    /// The built-in synthetic provider (no network).
    Mock,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::AzureOpenAi => "azure-openai",
            Provider::Anthropic => "anthropic",
            Provider::Mock => "mock",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "openai" => Provider::OpenAi,
            "azure-openai" => Provider::AzureOpenAi,
            "anthropic" => Provider::Anthropic,
            "mock" => Provider::Mock,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub provider: Provider,
    /// Where to connect; `None` for the mock provider.
    pub upstream: Option<UpstreamUrl>,
    /// Sent upstream as `Authorization: Bearer`, round-robin per worker.
    pub api_keys: Vec<Secret>,
    /// Extra request headers for this backend (names validated, values resolved).
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub read_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    pub max_response_bytes: usize,
    pub max_event_bytes: usize,
    pub tls: TlsSettings,
    pub mock: MockSettings,
    /// Azure OpenAI `api-version` query parameter.
    pub api_version: Option<String>,
    /// Anthropic `anthropic-version` header (when the client sends none).
    pub anthropic_version: String,
    /// The backend serves `/responses` itself; otherwise Responses requests are translated to
    /// Chat Completions.
    pub native_responses: bool,
    /// `max_tokens` sent to an Anthropic backend when a translated request has none (the
    /// Messages API requires it).
    pub default_max_tokens: u64,
}

/// A parsed `base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    /// Host to resolve / connect to (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Value of the `Host` header (port only when not the scheme's default).
    pub host_header: String,
    /// Path prefix without a trailing slash, e.g. `/v1` (may be empty).
    pub base_path: String,
    /// The URL as configured, for logs and summaries.
    pub display: String,
}

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub roots: TlsRoots,
    /// Trust only this PEM bundle (instead of `roots`).
    pub ca_file: Option<PathBuf>,
    /// Name to verify instead of the URL's host.
    pub server_name: Option<String>,
    pub danger_accept_invalid_certs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRoots {
    System,
    Webpki,
    #[default]
    SystemAndWebpki,
}

/// Settings of the built-in mock provider.
#[derive(Debug, Clone, Default)]
pub struct MockSettings {
    /// Fixed reply length in tokens; `None` echoes the last user message.
    pub tokens: Option<u64>,
    /// Delay before the first token.
    pub ttft: Duration,
    /// Pacing of streamed tokens; 0 = as fast as possible.
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    /// Tried in order; the next one only when nothing reached the client.
    pub targets: Vec<Target>,
    /// Prices for the audit log and cost metrics; `None`: cost unknown.
    pub price: Option<Price>,
    /// Tokenizer for estimates when an upstream reports no usage (`o200k_base` or
    /// `cl100k_base`); `None`: chosen from the model family.
    pub tokenizer: Option<String>,
    /// Limits on the model for all consumers together (protecting a backend).
    pub limits: Vec<Limit>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Uncached input.
    pub input: f64,
    /// Input read from the provider's prompt cache.
    pub cached_input: f64,
    /// Input written to the provider's prompt cache (Anthropic).
    pub cache_write: f64,
    pub output: f64,
}

impl Price {
    /// Cost in USD of one request. `input_tokens` includes cached and cache-write tokens.
    pub fn cost(
        &self,
        input_tokens: u64,
        cached: u64,
        cache_write: u64,
        output_tokens: u64,
    ) -> f64 {
        let plain = input_tokens
            .saturating_sub(cached)
            .saturating_sub(cache_write);
        (plain as f64 * self.input
            + cached as f64 * self.cached_input
            + cache_write as f64 * self.cache_write
            + output_tokens as f64 * self.output)
            / 1e6
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    /// Index into [`Config::backends`].
    pub backend: usize,
    /// Model name sent upstream.
    pub model: String,
}

/// A secret from the config (or the environment). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Config {
    /// The embedded default config (model `mock` on the built-in mock provider).
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        load_str(EMBEDDED_DEFAULT, "<embedded default>", None, &env_lookup)
    }

    /// The consumer owning a key (looked up by the key's SHA-256).
    pub fn consumer_by_key(&self, key: &str) -> Option<&Consumer> {
        let digest = key_digest(key);
        let i = *self.key_index.get(&digest)?;
        let c = self.consumers.get(i)?;
        // The map lookup is on the digest, not the key; confirm in constant time anyway.
        c.key_digests
            .iter()
            .any(|d| constant_time_eq(d, &digest))
            .then_some(c)
    }

    pub fn consumer(&self, name: &str) -> Option<&Consumer> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// Whether requests need a consumer key (any consumer or JWT auth is configured).
    pub fn auth_required(&self) -> bool {
        !self.consumers.is_empty() || self.auth.jwt.is_some()
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.model_index.get(name).and_then(|&i| self.models.get(i))
    }

    /// Index of `name` in [`Self::models`].
    pub fn model_position(&self, name: &str) -> Option<usize> {
        self.model_index.get(name).copied()
    }

    /// Human summary for `sluice check` (no secrets).
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let s = &self.server;
        let mut out = String::new();
        let listen: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "listen: {} ({} workers, io driver {:?})",
            listen.join(", "),
            s.workers,
            s.io_driver
        );
        let _ = writeln!(
            out,
            "admin: {}",
            s.admin.map_or_else(|| "off".to_owned(), |a| a.to_string())
        );
        let _ = writeln!(out, "backends ({}):", self.backends.len());
        for b in &self.backends {
            let url = b
                .upstream
                .as_ref()
                .map_or("(built in)", |u| u.display.as_str());
            let keys = match b.api_keys.len() {
                0 => String::new(),
                1 => ", 1 key".to_owned(),
                n => format!(", {n} keys"),
            };
            let _ = writeln!(out, "  {}: {} {url}{keys}", b.name, b.provider.as_str());
        }
        let _ = writeln!(out, "models ({}):", self.models.len());
        for m in &self.models {
            let targets: Vec<String> = m
                .targets
                .iter()
                .map(|t| {
                    let backend = self
                        .backends
                        .get(t.backend)
                        .map_or("?", |b| b.name.as_str());
                    if t.model == m.name {
                        backend.to_owned()
                    } else {
                        format!("{backend} (as {})", t.model)
                    }
                })
                .collect();
            let _ = writeln!(out, "  {} -> {}", m.name, targets.join(", then "));
        }
        if !self.consumers.is_empty() {
            let _ = writeln!(out, "consumers ({}):", self.consumers.len());
            for c in &self.consumers {
                let limits: Vec<String> = c
                    .limits
                    .iter()
                    .map(|l| match l.metric {
                        Metric::Cost => format!("{} = {} USD", l.name, micros_to_usd(l.limit)),
                        _ => format!("{} = {}", l.name, l.limit),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "  {}: {} key(s){}{}",
                    c.name,
                    c.key_digests.len(),
                    if limits.is_empty() { "" } else { "; " },
                    limits.join(", ")
                );
            }
            let q = &self.quota;
            let backend = match &q.backend {
                QuotaBackend::Local => "local (this node's workers)".to_owned(),
                QuotaBackend::Redis { .. } => format!(
                    "redis (shared by every node with key prefix `{}`{})",
                    q.key_prefix,
                    if q.fail_closed { ", fail closed" } else { "" }
                ),
            };
            let _ = writeln!(out, "quota: {backend}, sync every {:?}", q.sync_interval);
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// Equal-length byte comparison whose time does not depend on where the bytes differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Load and validate a config file; `env:NAME` references read the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            location: name.clone(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    load_str(&text, &name, Some(path), &env_lookup)
}

/// Load and validate config text. `name` labels error locations; `path` (if any) is recorded
/// in the snapshot and relative file paths in the config are resolved against its directory;
/// `env` resolves `env:NAME` references.
pub fn load_str(
    text: &str,
    name: &str,
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let loc = Locator::new(name, text);
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigErrors(vec![loc.error(e.span(), e.message())]))?;
    let base_dir = path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut v = Validator {
        loc,
        env,
        base_dir,
        errors: Vec::new(),
    };
    let server = v.server(&raw.server);
    let log = v.log(&raw.log);
    let mut backends = Vec::with_capacity(raw.backends.len());
    for (name, b) in &raw.backends {
        if let Some(b) = v.backend(name, b) {
            backends.push(b);
        }
    }
    let backend_names: Vec<&str> = raw.backends.keys().map(|k| k.get_ref().as_str()).collect();
    let mut models = Vec::with_capacity(raw.models.len());
    for (name, m) in &raw.models {
        if let Some(m) = v.model(name, m, &backend_names) {
            models.push(m);
        }
    }
    let audit = v.audit(&raw.audit);
    let model_names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let mut consumers = Vec::with_capacity(raw.consumers.len());
    let mut consumer_spans = Vec::with_capacity(raw.consumers.len());
    for (name, c) in &raw.consumers {
        if let Some(c) = v.consumer(name, c, &model_names) {
            consumers.push(c);
            consumer_spans.push(span(name));
        }
    }
    let mut key_index = HashMap::new();
    for (i, c) in consumers.iter().enumerate() {
        for d in &c.key_digests {
            if let Some(other) = key_index.insert(*d, i) {
                let first = consumers
                    .get(other)
                    .map_or("?", |c: &Consumer| c.name.as_str());
                let at = consumer_spans.get(i).cloned().flatten();
                v.err(
                    at,
                    format!("consumers `{first}` and `{}` share a key", c.name),
                );
            }
        }
    }
    let auth = v.auth(&raw.auth);
    let quota = v.quota(&raw.quota);
    if models.is_empty() && v.errors.is_empty() {
        v.err(
            None,
            "no models are configured: add a [models.NAME] table with `targets`",
        );
    }
    if !v.errors.is_empty() {
        return Err(ConfigErrors(v.errors));
    }
    let model_index = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    Ok(Config {
        server,
        log,
        backends,
        models,
        model_index,
        audit,
        consumers,
        key_index,
        auth,
        quota,
        source: Source {
            path: path.map(Path::to_path_buf),
            hash: content_hash(text),
            loaded_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    })
}

fn content_hash(text: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Collects every error while converting raw values; each check returns a usable default so
/// validation can go on and report the rest.
struct Validator<'a> {
    loc: Locator<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

fn span<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Validator<'_> {
    fn err(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        let e = self.loc.error(at, message);
        self.errors.push(e);
    }

    fn duration(
        &mut self,
        raw: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match parse_duration(raw.get_ref()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.err(span(raw), format!("`{key}` must be greater than zero"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.err(span(raw), format!("`{key}`: {e}"));
                default
            }
        }
    }

    fn size(
        &mut self,
        raw: Option<&Spanned<RawSize>>,
        key: &str,
        default: usize,
        range: (usize, usize),
    ) -> usize {
        let Some(raw) = raw else { return default };
        match parse_size(raw.get_ref()) {
            Ok(n) if n < range.0 || n > range.1 => {
                self.err(
                    span(raw),
                    format!(
                        "`{key}` must be between {} and {} bytes, got {n}",
                        range.0, range.1
                    ),
                );
                default
            }
            Ok(n) => n,
            Err(e) => {
                self.err(span(raw), format!("`{key}`: {e}"));
                default
            }
        }
    }

    fn int(
        &mut self,
        raw: Option<&Spanned<i64>>,
        key: &str,
        default: usize,
        range: (usize, usize),
    ) -> usize {
        let Some(raw) = raw else { return default };
        match usize::try_from(*raw.get_ref()) {
            Ok(n) if n >= range.0 && n <= range.1 => n,
            _ => {
                self.err(
                    span(raw),
                    format!(
                        "`{key}` must be between {} and {}, got {}",
                        range.0,
                        range.1,
                        raw.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// Resolves `env:NAME`; other values are literal.
    fn secret_value(&mut self, raw: &Spanned<String>, key: &str) -> Option<String> {
        let value = raw.get_ref();
        let Some(var) = value.strip_prefix("env:") else {
            return Some(value.clone());
        };
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.err(
                span(raw),
                format!("`{key}`: `{value}` is not a valid environment reference (env:NAME)"),
            );
            return None;
        }
        match (self.env)(var) {
            Some(v) if !v.is_empty() => Some(v),
            Some(_) => {
                self.err(
                    span(raw),
                    format!("`{key}`: environment variable `{var}` is empty"),
                );
                None
            }
            None => {
                self.err(
                    span(raw),
                    format!("`{key}`: environment variable `{var}` is not set"),
                );
                None
            }
        }
    }

    fn server(&mut self, raw: &RawServer) -> Server {
        let listen = match &raw.listen {
            None => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.err(span(list), "`server.listen` must name at least one address");
                }
                let mut out = Vec::new();
                for a in list.get_ref() {
                    match a.get_ref().trim().parse::<SocketAddr>() {
                        Ok(addr) if out.contains(&addr) => {
                            self.err(span(a), format!("`server.listen`: `{addr}` is listed twice"));
                        }
                        Ok(addr) => out.push(addr),
                        Err(_) => self.err(
                            span(a),
                            format!("`server.listen`: `{}` is not an IP:port address such as 0.0.0.0:8080", a.get_ref()),
                        ),
                    }
                }
                out
            }
        };
        let admin = match &raw.admin {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            Some(a) if a.get_ref().trim() == "off" => None,
            Some(a) => match a.get_ref().trim().parse::<SocketAddr>() {
                Ok(addr) => {
                    if addr.port() != 0 && listen.contains(&addr) {
                        self.err(
                            span(a),
                            format!("`server.admin`: `{addr}` is also a client listen address"),
                        );
                    }
                    Some(addr)
                }
                Err(_) => {
                    self.err(
                        span(a),
                        format!(
                            "`server.admin`: `{}` is not an IP:port address (or \"off\")",
                            a.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let io_driver = match raw.io_driver.as_ref().map(|d| (d, d.get_ref().as_str())) {
            None | Some((_, "auto")) => IoDriver::Auto,
            Some((_, "uring" | "io_uring")) => IoDriver::Uring,
            Some((_, "epoll")) => IoDriver::Epoll,
            Some((d, other)) => {
                self.err(
                    span(d),
                    format!("`server.io_driver`: `{other}` is not one of auto, uring, epoll"),
                );
                IoDriver::Auto
            }
        };
        let uring_entries = self.int(
            raw.uring_entries.as_ref(),
            "server.uring_entries",
            1024,
            (8, 1 << 20),
        );
        Server {
            listen,
            admin,
            workers: self.int(raw.workers.as_ref(), "server.workers", cores, (1, 1024)),
            pin_workers: raw.pin_workers.unwrap_or(true),
            io_driver,
            uring_entries: u32::try_from(uring_entries).unwrap_or(1024),
            max_connections: self.int(
                raw.max_connections.as_ref(),
                "server.max_connections",
                100_000,
                (1, 10_000_000),
            ),
            max_header_bytes: self.size(
                raw.max_header_bytes.as_ref(),
                "server.max_header_bytes",
                16 * 1024,
                (1024, 1024 * 1024),
            ),
            max_body_bytes: self.size(
                raw.max_body_bytes.as_ref(),
                "server.max_body_bytes",
                32 << 20,
                (1024, 1 << 30),
            ),
            head_timeout: self.duration(
                raw.head_timeout.as_ref(),
                "server.head_timeout",
                Duration::from_secs(10),
                false,
            ),
            body_timeout: self.duration(
                raw.body_timeout.as_ref(),
                "server.body_timeout",
                Duration::from_secs(60),
                false,
            ),
            idle_timeout: self.duration(
                raw.idle_timeout.as_ref(),
                "server.idle_timeout",
                Duration::from_secs(60),
                false,
            ),
            drain_timeout: self.duration(
                raw.drain_timeout.as_ref(),
                "server.drain_timeout",
                Duration::from_secs(30),
                true,
            ),
            watch_config: raw.watch_config.unwrap_or(true),
        }
    }

    fn log(&mut self, raw: &raw::RawLog) -> Log {
        let level = match &raw.level {
            None => "info".to_owned(),
            Some(l) => {
                if !valid_log_filter(l.get_ref()) {
                    self.err(
                        span(l),
                        format!("`log.level`: `{}` is not a valid filter (e.g. \"info\", \"sluice_core=debug,warn\")", l.get_ref()),
                    );
                }
                l.get_ref().clone()
            }
        };
        let format = match raw.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((f, other)) => {
                self.err(
                    span(f),
                    format!("`log.format`: `{other}` is not one of text, json"),
                );
                LogFormat::Text
            }
        };
        Log { level, format }
    }

    fn backend(&mut self, name: &Spanned<String>, raw: &RawBackend) -> Option<Backend> {
        let n = name.get_ref().as_str();
        if !valid_name(n) {
            self.err(
                span(name),
                format!("backend name `{n}` may only contain letters, digits, `-`, `_` and `.`"),
            );
        }
        let key = |k: &str| format!("backends.{n}.{k}");
        let Some(provider) = Provider::parse(raw.provider.get_ref()) else {
            self.err(
                span(&raw.provider),
                format!(
                    "`{}`: unknown provider `{}` (expected \"openai\", \"azure-openai\", \"anthropic\" or \"mock\")",
                    key("provider"),
                    raw.provider.get_ref()
                ),
            );
            return None;
        };
        let upstream = match (provider, &raw.base_url) {
            (Provider::Mock, None) => None,
            (Provider::Mock, Some(u)) => {
                self.err(
                    span(u),
                    format!(
                        "backend `{n}` uses the built-in mock provider and takes no `base_url`"
                    ),
                );
                None
            }
            (_, None) => {
                self.err(
                    span(&raw.provider),
                    format!("backend `{n}` needs a `base_url`"),
                );
                None
            }
            (_, Some(u)) => match parse_base_url(u.get_ref()) {
                Ok(url) => Some(url),
                Err(e) => {
                    self.err(span(u), format!("`{}`: {e}", key("base_url")));
                    None
                }
            },
        };
        let api_version = match (&raw.api_version, provider) {
            (None, Provider::AzureOpenAi) => Some(DEFAULT_AZURE_API_VERSION.to_owned()),
            (None, _) => None,
            (Some(v), Provider::AzureOpenAi) => {
                let text = v.get_ref().trim();
                let ok = !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !ok {
                    self.err(
                        span(v),
                        format!(
                            "`{}`: `{text}` is not an API version such as 2024-10-21",
                            key("api_version")
                        ),
                    );
                }
                Some(text.to_owned())
            }
            (Some(v), _) => {
                self.err(
                    span(v),
                    format!(
                        "`{}` only applies to provider = \"azure-openai\"",
                        key("api_version")
                    ),
                );
                None
            }
        };
        let anthropic_version = match (&raw.anthropic_version, provider) {
            (None, _) => DEFAULT_ANTHROPIC_VERSION.to_owned(),
            (Some(v), Provider::Anthropic) => {
                if !valid_header_value(v.get_ref()) || v.get_ref().trim().is_empty() {
                    self.err(
                        span(v),
                        format!(
                            "`{}` must be a version such as 2023-06-01",
                            key("anthropic_version")
                        ),
                    );
                }
                v.get_ref().trim().to_owned()
            }
            (Some(v), _) => {
                self.err(
                    span(v),
                    format!(
                        "`{}` only applies to provider = \"anthropic\"",
                        key("anthropic_version")
                    ),
                );
                DEFAULT_ANTHROPIC_VERSION.to_owned()
            }
        };
        let native_responses = match (&raw.responses_api, provider) {
            (None, Provider::OpenAi) => upstream
                .as_ref()
                .is_some_and(|u| u.host == "api.openai.com"),
            (None, _) => false,
            (Some(r), Provider::OpenAi | Provider::AzureOpenAi) => match r.get_ref().as_str() {
                "native" => true,
                "translate" => false,
                other => {
                    self.err(
                        span(r),
                        format!(
                            "`{}`: `{other}` is not one of native, translate",
                            key("responses_api")
                        ),
                    );
                    false
                }
            },
            (Some(r), _) => {
                self.err(
                    span(r),
                    format!(
                        "`{}` only applies to OpenAI and Azure OpenAI backends",
                        key("responses_api")
                    ),
                );
                false
            }
        };
        let default_max_tokens = self.int(
            raw.default_max_tokens.as_ref(),
            &key("default_max_tokens"),
            4096,
            (1, 1_000_000),
        ) as u64;
        let mut api_keys = Vec::new();
        for k in raw.api_keys.iter().flatten() {
            if k.get_ref().trim().is_empty() {
                self.err(
                    span(k),
                    format!("`{}`: a key must not be empty", key("api_keys")),
                );
                continue;
            }
            if let Some(v) = self.secret_value(k, &key("api_keys")) {
                if !valid_header_value(&v) {
                    self.err(
                        span(k),
                        format!(
                            "`{}`: a key may not contain control characters",
                            key("api_keys")
                        ),
                    );
                    continue;
                }
                api_keys.push(Secret(v));
            }
        }
        let mut headers = Vec::new();
        for (hn, hv) in raw.headers.iter().flatten() {
            let hname = hn.get_ref();
            if !valid_header_name(hname) {
                self.err(
                    span(hn),
                    format!("`{}`: `{hname}` is not a valid header name", key("headers")),
                );
                continue;
            }
            if let Some(reason) = reserved_header(hname) {
                self.err(
                    span(hn),
                    format!(
                        "`{}`: `{hname}` cannot be set here ({reason})",
                        key("headers")
                    ),
                );
                continue;
            }
            if let Some(v) = self.secret_value(hv, &key("headers")) {
                if !valid_header_value(&v) {
                    self.err(span(hv), format!("`{}`: the value of `{hname}` contains a line break or control character", key("headers")));
                    continue;
                }
                headers.push((hname.clone(), v));
            }
        }
        let tls = self.tls(n, raw, upstream.as_ref());
        let mock = match &raw.mock {
            None => MockSettings::default(),
            Some(m) if provider != Provider::Mock => {
                self.err(
                    span(m),
                    format!("`{}` only applies to provider = \"mock\"", key("mock")),
                );
                MockSettings::default()
            }
            Some(m) => {
                let m = m.get_ref();
                let tokens = m
                    .tokens
                    .as_ref()
                    .map(|t| self.int(Some(t), &key("mock.tokens"), 16, (1, 1_000_000)) as u64);
                let tps = match &m.tokens_per_second {
                    None => 0.0,
                    Some(t)
                        if t.get_ref().is_finite()
                            && *t.get_ref() >= 0.0
                            && *t.get_ref() <= 1e6 =>
                    {
                        *t.get_ref()
                    }
                    Some(t) => {
                        self.err(
                            span(t),
                            format!(
                                "`{}` must be between 0 and 1000000",
                                key("mock.tokens_per_second")
                            ),
                        );
                        0.0
                    }
                };
                MockSettings {
                    tokens,
                    ttft: self.duration(m.ttft.as_ref(), &key("mock.ttft"), Duration::ZERO, true),
                    tokens_per_second: tps,
                }
            }
        };
        Some(Backend {
            name: n.to_owned(),
            provider,
            upstream,
            api_keys,
            headers,
            connect_timeout: self.duration(
                raw.connect_timeout.as_ref(),
                &key("connect_timeout"),
                Duration::from_secs(5),
                false,
            ),
            first_byte_timeout: self.duration(
                raw.first_byte_timeout.as_ref(),
                &key("first_byte_timeout"),
                Duration::from_secs(300),
                false,
            ),
            read_timeout: self.duration(
                raw.read_timeout.as_ref(),
                &key("read_timeout"),
                Duration::from_secs(300),
                false,
            ),
            pool_idle_timeout: self.duration(
                raw.pool_idle_timeout.as_ref(),
                &key("pool_idle_timeout"),
                Duration::from_secs(90),
                false,
            ),
            pool_max_idle: self.int(
                raw.pool_max_idle.as_ref(),
                &key("pool_max_idle"),
                64,
                (0, 100_000),
            ),
            max_response_bytes: self.size(
                raw.max_response_bytes.as_ref(),
                &key("max_response_bytes"),
                64 << 20,
                (1024, 1 << 30),
            ),
            max_event_bytes: self.size(
                raw.max_event_bytes.as_ref(),
                &key("max_event_bytes"),
                4 << 20,
                (1024, 256 << 20),
            ),
            tls,
            mock,
            api_version,
            anthropic_version,
            native_responses,
            default_max_tokens,
        })
    }

    fn tls(&mut self, backend: &str, raw: &RawBackend, url: Option<&UpstreamUrl>) -> TlsSettings {
        let Some(t) = &raw.tls else {
            return TlsSettings::default();
        };
        if url.is_some_and(|u| !u.tls) {
            self.err(
                span(t),
                format!("`backends.{backend}.tls` is set but `base_url` is not https"),
            );
        }
        let t = t.get_ref();
        let roots = match t.roots.as_ref().map(|r| (r, r.get_ref().as_str())) {
            None | Some((_, "system+webpki")) => TlsRoots::SystemAndWebpki,
            Some((_, "system")) => TlsRoots::System,
            Some((_, "webpki")) => TlsRoots::Webpki,
            Some((r, other)) => {
                self.err(
                    span(r),
                    format!("`backends.{backend}.tls.roots`: `{other}` is not one of system, webpki, system+webpki"),
                );
                TlsRoots::default()
            }
        };
        let ca_file = t.ca_file.as_ref().and_then(|f| {
            let p = self.base_dir.join(f.get_ref());
            if p.is_file() {
                Some(p)
            } else {
                self.err(
                    span(f),
                    format!(
                        "`backends.{backend}.tls.ca_file`: {} is not a readable file",
                        p.display()
                    ),
                );
                None
            }
        });
        let server_name = t.server_name.as_ref().and_then(|s| {
            if rustls::pki_types::ServerName::try_from(s.get_ref().as_str()).is_ok() {
                Some(s.get_ref().clone())
            } else {
                self.err(
                    span(s),
                    format!("`backends.{backend}.tls.server_name`: `{}` is not a DNS name or IP address", s.get_ref()),
                );
                None
            }
        });
        TlsSettings {
            roots,
            ca_file,
            server_name,
            danger_accept_invalid_certs: t.danger_accept_invalid_certs,
        }
    }

    fn audit(&mut self, raw: &raw::RawAudit) -> Audit {
        let buffer = self.int(
            raw.buffer.as_ref(),
            "audit.buffer",
            65_536,
            (16, 16_777_216),
        );
        let path = raw.path.as_ref().and_then(|p| {
            if p.get_ref().trim().is_empty() {
                self.err(span(p), "`audit.path` must not be empty");
                return None;
            }
            let path = self.base_dir.join(p.get_ref());
            match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                    self.err(
                        span(p),
                        format!("`audit.path`: directory {} does not exist", dir.display()),
                    );
                    None
                }
                _ => Some(path),
            }
        });
        Audit { path, buffer }
    }

    fn model(
        &mut self,
        name: &Spanned<String>,
        raw: &RawModel,
        backends: &[&str],
    ) -> Option<Model> {
        let n = name.get_ref();
        if n.trim().is_empty() {
            self.err(span(name), "a model name must not be empty");
            return None;
        }
        if raw.targets.get_ref().is_empty() {
            self.err(span(&raw.targets), format!("model `{n}` has no targets"));
            return None;
        }
        let mut targets = Vec::new();
        for t in raw.targets.get_ref() {
            let t = t.get_ref();
            let b = t.backend.get_ref();
            let Some(index) = backends.iter().position(|x| x == b) else {
                let known = if backends.is_empty() {
                    "none are configured".to_owned()
                } else {
                    backends.join(", ")
                };
                self.err(
                    span(&t.backend),
                    format!("model `{n}`: unknown backend `{b}` (known: {known})"),
                );
                continue;
            };
            let model = match &t.model {
                Some(m) if m.get_ref().trim().is_empty() => {
                    self.err(
                        span(m),
                        format!("model `{n}`: the upstream model name must not be empty"),
                    );
                    continue;
                }
                Some(m) => m.get_ref().clone(),
                None => n.clone(),
            };
            targets.push(Target {
                backend: index,
                model,
            });
        }
        let price = raw.price.as_ref().map(|p| {
            let p = p.get_ref();
            let mut get = |v: Option<&Spanned<f64>>, what: &str, default: f64| match v {
                None => default,
                Some(x) if x.get_ref().is_finite() && *x.get_ref() >= 0.0 => *x.get_ref(),
                Some(x) => {
                    self.err(
                        span(x),
                        format!(
                            "model `{n}`: price `{what}` must be a non-negative number (USD per million tokens)"
                        ),
                    );
                    0.0
                }
            };
            let input = get(Some(&p.input), "input", 0.0);
            let output = get(Some(&p.output), "output", 0.0);
            let cached_input = get(p.cached_input.as_ref(), "cached_input", input);
            let cache_write = get(p.cache_write.as_ref(), "cache_write", input);
            Price { input, cached_input, cache_write, output }
        });
        let tokenizer = raw.tokenizer.as_ref().and_then(|t| match t.get_ref().as_str() {
            name @ ("o200k_base" | "cl100k_base") => Some(name.to_owned()),
            other => {
                self.err(
                    span(t),
                    format!("model `{n}`: tokenizer `{other}` is not one of o200k_base, cl100k_base"),
                );
                None
            }
        });
        let limits = self.limits(&raw.limits, &format!("model `{n}`"));
        Some(Model {
            name: n.clone(),
            targets,
            price,
            tokenizer,
            limits,
        })
    }
}

/// A `tracing` filter whose bare words are level names: `EnvFilter` reads a bare `verbose` as a
/// target name, which would silently turn logging off.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let bare_words_are_levels = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .all(|d| {
            d.contains('=') || d.contains('[') || LEVELS.iter().any(|l| l.eq_ignore_ascii_case(d))
        });
    bare_words_are_levels && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// RFC 9110 token characters.
fn valid_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs only: no line breaks that could inject headers.
fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Headers Sluice writes itself (or that would break framing), with the reason.
fn reserved_header(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "host" | "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        | "upgrade" | "te" | "trailer" | "expect" => Some("it controls HTTP framing"),
        "authorization" => Some("use `api_keys`"),
        "content-type" | "accept" | "user-agent" | "x-request-id" => Some("Sluice sets it"),
        _ => None,
    }
}

/// Parses `http(s)://host[:port][/path]`.
pub fn parse_base_url(text: &str) -> Result<UpstreamUrl, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "scheme `{other}` is not supported (use http or https)"
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not supported: use `api_keys`".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL may not have a query or a fragment".to_owned());
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(format!("`{text}` has no host")),
    };
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let host_str = url.host_str().unwrap_or_default();
    let host_header = match url.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str.to_owned(),
    };
    let base_path = url.path().trim_end_matches('/').to_owned();
    Ok(UpstreamUrl {
        tls,
        host,
        port,
        host_header,
        base_path,
        display: text.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "LOCAL_KEY" => Some("sk-local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        load_str(text, "test.toml", None, &env)
    }

    const CONTRACT: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
admin = "127.0.0.1:9090"
workers = 2                      # default: one per available core

[backends.local]
provider = "openai"              # OpenAI wire format; "mock" = the built-in mock provider
base_url = "http://127.0.0.1:19100/v1"
api_keys = ["env:LOCAL_KEY"]     # optional; sent upstream as Bearer; "env:NAME" reads the environment

[models."gpt-4o-mini"]
targets = [{ backend = "local", model = "mock-small" }]   # the model name sent upstream may differ
"#;

    #[test]
    fn the_contract_loads() {
        let c = load(CONTRACT).unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.server.admin, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.server.workers, 2);
        let b = &c.backends[0];
        assert_eq!(b.provider, Provider::OpenAi);
        assert_eq!(b.api_keys[0].expose(), "sk-local");
        let u = b.upstream.as_ref().unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.base_path.as_str()),
            (false, "127.0.0.1", 19100, "/v1")
        );
        assert_eq!(u.host_header, "127.0.0.1:19100");
        let m = c.model("gpt-4o-mini").unwrap();
        assert_eq!(m.targets[0].model, "mock-small");
        assert_eq!(c.model_position("gpt-4o-mini"), Some(0));
        assert!(c.model("nope").is_none());
        assert_eq!(c.source.hash.len(), 16);
        assert!(
            c.summary().contains("gpt-4o-mini -> local (as mock-small)"),
            "{}",
            c.summary()
        );
        assert!(
            !format!("{c:?}").contains("sk-local"),
            "secrets never reach Debug output"
        );
    }

    #[test]
    fn embedded_default_is_the_mock() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.server.admin, Some("127.0.0.1:9090".parse().unwrap()));
        let m = c.model("mock").unwrap();
        assert_eq!(c.backends[m.targets[0].backend].provider, Provider::Mock);
    }

    #[test]
    fn defaults() {
        let c = load(
            "[backends.m]\nprovider = \"mock\"\n[models.x]\ntargets = [{ backend = \"m\" }]\n",
        )
        .unwrap();
        let s = &c.server;
        assert_eq!(s.max_header_bytes, 16 * 1024);
        assert_eq!(s.max_body_bytes, 32 << 20);
        assert_eq!(s.head_timeout, Duration::from_secs(10));
        assert_eq!(s.io_driver, IoDriver::Auto);
        assert!(s.workers >= 1);
        assert_eq!(
            c.models[0].targets[0].model, "x",
            "the upstream model defaults to the model's name"
        );
        let b = &c.backends[0];
        assert_eq!(b.connect_timeout, Duration::from_secs(5));
        assert_eq!(b.pool_max_idle, 64);
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = "[server]\nworkers = 0\nhead_timeout = \"10\"\n\n[backends.a]\nprovider = \"openai\"\n\n[models.x]\ntargets = [{ backend = \"b\" }]\n";
        let errs = load(text).unwrap_err();
        let lines: Vec<&str> = errs.0.iter().map(|e| e.location.as_str()).collect();
        assert_eq!(
            lines,
            [
                "test.toml:2:11",
                "test.toml:3:16",
                "test.toml:6:12",
                "test.toml:9:24"
            ],
            "{errs}"
        );
        assert!(
            errs.to_string().contains("unknown backend `b` (known: a)"),
            "{errs}"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_point_at_the_place() {
        let errs = load("[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n").unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].location, "test.toml:3:1");
        assert!(
            errs.0[0].message.contains("unknown field `bogus`"),
            "{errs}"
        );
        let errs = load("[server\n").unwrap_err();
        assert!(errs.0[0].location.starts_with("test.toml:1:"), "{errs}");
    }

    #[test]
    fn env_references() {
        let cfg = |key: &str| {
            format!("[backends.a]\nprovider = \"openai\"\nbase_url = \"http://h/v1\"\napi_keys = [\"{key}\"]\n[models.x]\ntargets = [{{ backend = \"a\" }}]\n")
        };
        assert!(load(&cfg("env:LOCAL_KEY")).is_ok());
        assert_eq!(
            load(&cfg("literal-key")).unwrap().backends[0].api_keys[0].expose(),
            "literal-key"
        );
        let e = load(&cfg("env:NOT_SET_ANYWHERE")).unwrap_err().to_string();
        assert!(
            e.contains("environment variable `NOT_SET_ANYWHERE` is not set"),
            "{e}"
        );
        assert!(load(&cfg("env:EMPTY"))
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        assert!(load(&cfg("env:"))
            .unwrap_err()
            .to_string()
            .contains("not a valid environment reference"));
    }

    #[test]
    fn base_urls() {
        let u = parse_base_url("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header.as_str(), u.base_path.as_str()),
            (true, 443, "api.openai.com", "/v1")
        );
        let u = parse_base_url("http://[::1]:8000").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.host_header.as_str(),
                u.base_path.as_str()
            ),
            ("::1", 8000, "[::1]:8000", "")
        );
        let u = parse_base_url("http://localhost:80/openai/v1").unwrap();
        assert_eq!(u.host_header, "localhost");
        for bad in [
            "ftp://x/v1",
            "http://u:p@x/v1",
            "http://x/v1?a=1",
            "http://x/v1#f",
            "not a url",
            "http://",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    fn configs_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
    }

    fn fixture_env(name: &str) -> Option<String> {
        matches!(
            name,
            "LOCAL_KEY" | "OPENAI_API_KEY" | "TEAM_A_KEY" | "SLUICE_JWT_SECRET"
        )
        .then(|| format!("test-value-of-{name}-padded-to-be-long-enough"))
    }

    fn load_fixture(path: &Path) -> (String, Result<Config, ConfigErrors>) {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = load_str(&text, &name, Some(path), &fixture_env);
        (text, result)
    }

    /// Every file in configs/invalid/ is refused, with the message its `# expect:` line names
    /// and a FILE:LINE:COLUMN location for every error.
    #[test]
    fn every_invalid_fixture_is_rejected_as_documented() {
        let mut seen = 0;
        for entry in std::fs::read_dir(configs_dir().join("invalid")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            seen += 1;
            let (text, result) = load_fixture(&path);
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| {
                    panic!("{}: first line must be `# expect: ...`", path.display())
                });
            let errs = match result {
                Ok(_) => panic!("{} loaded but must be rejected", path.display()),
                Err(e) => e,
            };
            let shown = errs.to_string();
            assert!(
                shown.contains(expect),
                "{}: expected `{expect}` in:\n{shown}",
                path.display()
            );
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for e in &errs.0 {
                let pinned = e
                    .location
                    .strip_prefix(&format!("{name}:"))
                    .is_some_and(|rest| {
                        rest.split(':')
                            .take(2)
                            .all(|n| n.parse::<usize>().is_ok_and(|n| n > 0))
                    });
                assert!(
                    pinned || name == "no_models.toml",
                    "{name}: error without a line: {shown}"
                );
            }
        }
        assert!(seen >= 40, "only {seen} invalid fixtures found");
    }

    #[test]
    fn shipped_example_configs_load() {
        let mut names: Vec<_> = std::fs::read_dir(configs_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        names.sort();
        assert!(names.len() >= 3, "{names:?}");
        for path in names {
            let (_, result) = load_fixture(&path);
            if let Err(e) = result {
                panic!("{}:\n{e}", path.display());
            }
        }
        let (_, quick) = load_fixture(&configs_dir().join("quickstart.toml"));
        let quick = quick.unwrap();
        assert_eq!(
            quick.model("gpt-4o-mini").unwrap().targets[0].model,
            "mock-small"
        );
    }

    #[test]
    fn log_filters() {
        for good in [
            "info",
            "WARN",
            "sluice_core=debug,info",
            "off",
            "info,sluice_core::worker=trace",
        ] {
            assert!(valid_log_filter(good), "{good}");
        }
        for bad in ["verbose", "warning", "foo=bar", "info,[", "=debug"] {
            assert!(!valid_log_filter(bad), "{bad}");
        }
    }

    #[test]
    fn max_connections_share() {
        let mut c = load(
            "[backends.m]\nprovider = \"mock\"\n[models.x]\ntargets = [{ backend = \"m\" }]\n",
        )
        .unwrap();
        c.server.workers = 3;
        c.server.max_connections = 10;
        assert_eq!(c.server.max_connections_per_worker(), 4);
    }
}
