//! Who may use the gateway and how much: consumers and their keys, JWT, limits, the quota
//! backend. Validated like the rest of the config; secrets are only ever kept as SHA-256
//! digests (keys) or as the material JWT verification needs.

use super::raw::{RawAuth, RawConsumer, RawLimit, RawLimits, RawQuota};
use super::{span, valid_name, Secret, Validator};
use sha2::Digest as _;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Cost limits and counts are kept in micro-USD (integers); this is the amount in USD.
pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Requests,
    /// Input + output tokens.
    Tokens,
    InputTokens,
    OutputTokens,
    /// Cost in micro-USD (limits are written in USD).
    Cost,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
            Metric::InputTokens => "input_tokens",
            Metric::OutputTokens => "output_tokens",
            Metric::Cost => "cost",
        }
    }
}

/// The window a limit applies to. Minutes and hours slide; days and months are calendar
/// windows in UTC (budgets reset at midnight / on the 1st). See ARCHITECTURE.md, "Quotas".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// Budgets (days and months) are enforced mid-stream by default.
    fn is_budget(self) -> bool {
        matches!(self, Window::Day | Window::Month)
    }
}

/// One limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// As written: `tokens_per_minute`.
    pub name: String,
    pub metric: Metric,
    pub window: Window,
    /// In the metric's unit (micro-USD for cost).
    pub limit: u64,
    /// End a stream well-formed when the limit is crossed during it.
    pub mid_stream: bool,
}

/// A consumer: an API key owner with allowed models and limits.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub name: String,
    /// SHA-256 digests of its keys (keys themselves are never kept).
    pub key_digests: Vec<[u8; 32]>,
    /// Allowed models; `None`: all.
    pub models: Option<Vec<String>>,
    pub limits: Vec<Limit>,
    /// Limits of this consumer on one model.
    pub model_limits: Vec<(String, Vec<Limit>)>,
}

impl Consumer {
    pub fn may_use(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub jwt: Option<JwtSettings>,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `HS256`, `RS256`, `ES256`, ...
    pub algorithms: Vec<String>,
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The claim whose value names the consumer.
    pub consumer_claim: String,
    pub leeway: Duration,
}

#[derive(Debug, Clone)]
pub enum JwtKey {
    Secret(Secret),
    /// A PEM public key (RSA or EC).
    Pem {
        path: PathBuf,
        pem: Vec<u8>,
    },
    /// A JWKS document (keys chosen by `kid`).
    Jwks {
        path: PathBuf,
        json: String,
    },
}

/// `[quota]`.
#[derive(Debug, Clone)]
pub struct Quota {
    pub backend: QuotaBackend,
    /// How often workers publish their counts to each other (and the node syncs with Redis).
    pub sync_interval: Duration,
    pub redis_timeout: Duration,
    /// Reject when the fleet view is unavailable (Redis down) instead of using local views.
    pub fail_closed: bool,
    /// Output tokens reserved when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    pub key_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaBackend {
    Local,
    Redis { url: String },
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            backend: QuotaBackend::Local,
            sync_interval: Duration::from_millis(10),
            redis_timeout: Duration::from_millis(100),
            fail_closed: false,
            default_max_tokens: 4096,
            key_prefix: "sluice".to_owned(),
        }
    }
}

/// SHA-256 of a key, as consumers' keys are stored and compared.
pub fn key_digest(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        let pair = hex.get(i * 2..i * 2 + 2)?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl Validator<'_> {
    pub(super) fn limits(&mut self, raw: &RawLimits, owner: &str) -> Vec<Limit> {
        let mut out: Vec<Limit> = Vec::new();
        for (name, value) in raw {
            let n = name.get_ref();
            let Some((metric, window)) = parse_limit_name(n) else {
                self.err(
                    span(name),
                    format!(
                        "{owner}: unknown limit `{n}` (expected METRIC_per_WINDOW: requests, tokens, input_tokens, output_tokens or cost, per second, minute, hour, day or month)"
                    ),
                );
                continue;
            };
            let (amount, mid_stream) = match value.get_ref() {
                RawLimit::Int(i) => (*i as f64, None),
                RawLimit::Float(f) => (*f, None),
                RawLimit::Table(t) => (t.limit, t.mid_stream),
            };
            let scaled = if metric == Metric::Cost {
                amount * 1e6
            } else {
                amount
            };
            if !scaled.is_finite() || !(0.0..=1e18).contains(&scaled) {
                self.err(
                    span(value),
                    format!("{owner}: limit `{n}` must be a non-negative number"),
                );
                continue;
            }
            if metric != Metric::Cost && amount.fract() != 0.0 {
                self.err(
                    span(value),
                    format!("{owner}: limit `{n}` must be a whole number"),
                );
                continue;
            }
            out.push(Limit {
                name: n.clone(),
                metric,
                window,
                limit: scaled.round() as u64,
                mid_stream: mid_stream.unwrap_or(metric == Metric::Cost || window.is_budget()),
            });
        }
        out
    }

    pub(super) fn consumer(
        &mut self,
        name: &Spanned<String>,
        raw: &RawConsumer,
        models: &[&str],
    ) -> Option<Consumer> {
        let n = name.get_ref();
        if !valid_name(n) {
            self.err(
                span(name),
                format!("consumer name `{n}` may only contain letters, digits, `-`, `_` and `.`"),
            );
        }
        let owner = format!("consumer `{n}`");
        let mut key_digests = Vec::new();
        for k in &raw.keys {
            let text = k.get_ref();
            if let Some(hex) = text.strip_prefix("sha256:") {
                match parse_hex_digest(&hex.to_ascii_lowercase()) {
                    Some(d) => key_digests.push(d),
                    None => self.err(
                        span(k),
                        format!("{owner}: `sha256:` must be followed by 64 hex digits"),
                    ),
                }
                continue;
            }
            if text.trim().is_empty() {
                self.err(span(k), format!("{owner}: a key must not be empty"));
                continue;
            }
            if let Some(v) = self.secret_value(k, &format!("consumers.{n}.keys")) {
                if v.len() < 16 {
                    self.err(
                        span(k),
                        format!("{owner}: a key must be at least 16 characters long"),
                    );
                    continue;
                }
                key_digests.push(key_digest(&v));
            }
        }
        let allowed = raw.models.as_ref().map(|list| {
            let mut out = Vec::new();
            for m in list {
                if models.contains(&m.get_ref().as_str()) {
                    out.push(m.get_ref().clone());
                } else {
                    self.err(span(m), format!("{owner}: unknown model `{}`", m.get_ref()));
                }
            }
            out
        });
        let limits = self.limits(&raw.limits, &owner);
        let mut model_limits = Vec::new();
        for (m, l) in &raw.model_limits {
            if !models.contains(&m.get_ref().as_str()) {
                self.err(
                    span(m),
                    format!("{owner}: model_limits for unknown model `{}`", m.get_ref()),
                );
                continue;
            }
            let l = self.limits(l, &format!("{owner} on model `{}`", m.get_ref()));
            model_limits.push((m.get_ref().clone(), l));
        }
        Some(Consumer {
            name: n.clone(),
            key_digests,
            models: allowed,
            limits,
            model_limits,
        })
    }

    pub(super) fn auth(&mut self, raw: &RawAuth) -> Auth {
        let Some(j) = &raw.jwt else {
            return Auth::default();
        };
        let at = span(j);
        let j = j.get_ref();
        let algorithms: Vec<String> = match &j.algorithms {
            None => vec!["RS256".to_owned()],
            Some(list) => list
                .iter()
                .filter_map(|a| {
                    // As written (`EdDSA`), or upper-cased (`rs256`).
                    let name = [a.get_ref().clone(), a.get_ref().to_ascii_uppercase()]
                        .into_iter()
                        .find(|n| n.parse::<jsonwebtoken::Algorithm>().is_ok());
                    if let Some(name) = name {
                        Some(name)
                    } else {
                        self.err(
                            span(a),
                            format!(
                                "`auth.jwt.algorithms`: `{}` is not a JWT algorithm",
                                a.get_ref()
                            ),
                        );
                        None
                    }
                })
                .collect(),
        };
        let sources = [
            j.secret.is_some(),
            j.key_file.is_some(),
            j.jwks_file.is_some(),
        ];
        if sources.iter().filter(|&&s| s).count() != 1 {
            self.err(
                at.clone(),
                "`auth.jwt` needs exactly one of `secret`, `key_file`, `jwks_file`",
            );
            return Auth::default();
        }
        let hmac = algorithms.iter().any(|a| a.starts_with("HS"));
        let asymmetric = algorithms.iter().any(|a| !a.starts_with("HS"));
        if hmac && asymmetric {
            self.err(at.clone(), "`auth.jwt.algorithms` mixes HMAC (HS*) and public-key algorithms; one key cannot serve both");
        }
        let key = if let Some(s) = &j.secret {
            if !hmac {
                self.err(span(s), "`auth.jwt.secret` is for HS256/HS384/HS512; public-key algorithms need `key_file` or `jwks_file`");
            }
            match self.secret_value(s, "auth.jwt.secret") {
                Some(v) if v.len() >= 32 => JwtKey::Secret(Secret::new(v)),
                Some(_) => {
                    self.err(span(s), "`auth.jwt.secret` must be at least 32 bytes");
                    return Auth::default();
                }
                None => return Auth::default(),
            }
        } else if let Some(f) = &j.key_file {
            let path = self.base_dir.join(f.get_ref());
            match std::fs::read(&path) {
                Ok(pem) => {
                    let ok = jsonwebtoken::DecodingKey::from_rsa_pem(&pem).is_ok()
                        || jsonwebtoken::DecodingKey::from_ec_pem(&pem).is_ok()
                        || jsonwebtoken::DecodingKey::from_ed_pem(&pem).is_ok();
                    if !ok {
                        self.err(span(f), format!("`auth.jwt.key_file`: {} holds no RSA, EC or Ed25519 public key in PEM", path.display()));
                    }
                    JwtKey::Pem { path, pem }
                }
                Err(e) => {
                    self.err(
                        span(f),
                        format!("`auth.jwt.key_file`: cannot read {}: {e}", path.display()),
                    );
                    return Auth::default();
                }
            }
        } else if let Some(f) = &j.jwks_file {
            let path = self.base_dir.join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(json) => {
                    if serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&json).is_err() {
                        self.err(
                            span(f),
                            format!(
                                "`auth.jwt.jwks_file`: {} is not a JWKS document",
                                path.display()
                            ),
                        );
                    }
                    JwtKey::Jwks { path, json }
                }
                Err(e) => {
                    self.err(
                        span(f),
                        format!("`auth.jwt.jwks_file`: cannot read {}: {e}", path.display()),
                    );
                    return Auth::default();
                }
            }
        } else {
            return Auth::default();
        };
        let leeway = self.duration(
            j.leeway.as_ref(),
            "auth.jwt.leeway",
            Duration::from_secs(30),
            true,
        );
        Auth {
            jwt: Some(JwtSettings {
                algorithms,
                key,
                issuer: j.issuer.as_ref().map(|s| s.get_ref().clone()),
                audience: j.audience.as_ref().map(|s| s.get_ref().clone()),
                consumer_claim: j
                    .consumer_claim
                    .as_ref()
                    .map_or_else(|| "sub".to_owned(), |s| s.get_ref().clone()),
                leeway,
            }),
        }
    }

    pub(super) fn quota(&mut self, raw: &RawQuota) -> Quota {
        let d = Quota::default();
        let backend = match raw.backend.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "local")) => {
                if let Some(u) = &raw.redis_url {
                    self.err(
                        span(u),
                        "`quota.redis_url` needs `quota.backend = \"redis\"`",
                    );
                }
                QuotaBackend::Local
            }
            Some((b, "redis")) => {
                match &raw.redis_url {
                    None => {
                        self.err(
                            span(b),
                            "`quota.backend = \"redis\"` needs `quota.redis_url`",
                        );
                        QuotaBackend::Local
                    }
                    Some(u) => {
                        let url = self.secret_value(u, "quota.redis_url").unwrap_or_default();
                        if redis::Client::open(url.as_str()).is_err() {
                            self.err(span(u), "`quota.redis_url` is not a Redis URL such as redis://127.0.0.1:6379");
                        }
                        QuotaBackend::Redis { url }
                    }
                }
            }
            Some((b, other)) => {
                self.err(
                    span(b),
                    format!("`quota.backend`: `{other}` is not one of local, redis"),
                );
                QuotaBackend::Local
            }
        };
        let sync_interval = self.duration(
            raw.sync_interval.as_ref(),
            "quota.sync_interval",
            d.sync_interval,
            false,
        );
        if sync_interval > Duration::from_secs(10) {
            if let Some(s) = &raw.sync_interval {
                self.err(span(s), "`quota.sync_interval` must be at most 10s");
            }
        }
        let key_prefix = match &raw.key_prefix {
            None => d.key_prefix,
            Some(p) if valid_name(p.get_ref()) => p.get_ref().clone(),
            Some(p) => {
                self.err(
                    span(p),
                    "`quota.key_prefix` may only contain letters, digits, `-`, `_` and `.`",
                );
                d.key_prefix
            }
        };
        Quota {
            backend,
            sync_interval,
            redis_timeout: self.duration(
                raw.redis_timeout.as_ref(),
                "quota.redis_timeout",
                d.redis_timeout,
                false,
            ),
            fail_closed: raw.fail_closed.unwrap_or(false),
            default_max_tokens: self.int(
                raw.default_max_tokens.as_ref(),
                "quota.default_max_tokens",
                4096,
                (1, 10_000_000),
            ) as u64,
            key_prefix,
        }
    }
}

/// `tokens_per_minute` -> (Tokens, Minute).
fn parse_limit_name(name: &str) -> Option<(Metric, Window)> {
    let (metric, window) = name.rsplit_once("_per_")?;
    let metric = match metric {
        "requests" => Metric::Requests,
        "tokens" => Metric::Tokens,
        "input_tokens" => Metric::InputTokens,
        "output_tokens" => Metric::OutputTokens,
        "cost" => Metric::Cost,
        _ => return None,
    };
    let window = match window {
        "second" => Window::Second,
        "minute" => Window::Minute,
        "hour" => Window::Hour,
        "day" => Window::Day,
        "month" => Window::Month,
        _ => return None,
    };
    Some((metric, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_names() {
        assert_eq!(
            parse_limit_name("tokens_per_minute"),
            Some((Metric::Tokens, Window::Minute))
        );
        assert_eq!(
            parse_limit_name("input_tokens_per_day"),
            Some((Metric::InputTokens, Window::Day))
        );
        assert_eq!(
            parse_limit_name("cost_per_month"),
            Some((Metric::Cost, Window::Month))
        );
        assert_eq!(parse_limit_name("tokens_per_fortnight"), None);
        assert_eq!(parse_limit_name("tokens"), None);
    }

    #[test]
    fn hex_digests() {
        let d = key_digest("abc");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hex_digest(&hex), Some(d));
        assert_eq!(parse_hex_digest("zz"), None);
    }
}
