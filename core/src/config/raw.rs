//! The config file exactly as written: serde structs with `deny_unknown_fields`, every value a
//! user can get wrong wrapped in `Spanned` so its error can point at it. Nothing here is
//! validated; `mod.rs` turns these into the checked [`super::Config`].

use super::units::RawSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub backends: BTreeMap<Spanned<String>, RawBackend>,
    #[serde(default)]
    pub models: BTreeMap<Spanned<String>, RawModel>,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub consumers: BTreeMap<Spanned<String>, RawConsumer>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub quota: RawQuota,
}

/// `[consumers.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    pub models: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub limits: RawLimits,
    /// `[consumers.NAME.model_limits."MODEL"]`: limits of this consumer on one model.
    #[serde(default)]
    pub model_limits: BTreeMap<Spanned<String>, RawLimits>,
}

/// `metric_per_window = N` or `{ limit = N, mid_stream = bool }`, names checked later.
pub type RawLimits = BTreeMap<Spanned<String>, Spanned<RawLimit>>;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawLimit {
    Int(i64),
    Float(f64),
    Table(RawLimitTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitTable {
    pub limit: f64,
    pub mid_stream: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub jwt: Option<Spanned<RawJwt>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub algorithms: Option<Vec<Spanned<String>>>,
    pub secret: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub jwks_file: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub consumer_claim: Option<Spanned<String>>,
    pub leeway: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub backend: Option<Spanned<String>>,
    pub redis_url: Option<Spanned<String>>,
    pub sync_interval: Option<Spanned<String>>,
    pub redis_timeout: Option<Spanned<String>>,
    pub fail_closed: Option<bool>,
    pub default_max_tokens: Option<Spanned<i64>>,
    pub key_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub path: Option<Spanned<String>>,
    pub buffer: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub admin: Option<Spanned<String>>,
    pub workers: Option<Spanned<i64>>,
    pub pin_workers: Option<bool>,
    pub io_driver: Option<Spanned<String>>,
    pub uring_entries: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<RawSize>>,
    pub max_body_bytes: Option<Spanned<RawSize>>,
    pub head_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub watch_config: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub provider: Spanned<String>,
    pub base_url: Option<Spanned<String>>,
    pub api_keys: Option<Vec<Spanned<String>>>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub first_byte_timeout: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub pool_max_idle: Option<Spanned<i64>>,
    pub max_response_bytes: Option<Spanned<RawSize>>,
    pub max_event_bytes: Option<Spanned<RawSize>>,
    pub tls: Option<Spanned<RawTls>>,
    pub mock: Option<Spanned<RawMock>>,
    pub api_version: Option<Spanned<String>>,
    pub anthropic_version: Option<Spanned<String>>,
    pub responses_api: Option<Spanned<String>>,
    pub default_max_tokens: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub roots: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    pub tokens: Option<Spanned<i64>>,
    pub ttft: Option<Spanned<String>>,
    pub tokens_per_second: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub targets: Spanned<Vec<Spanned<RawTarget>>>,
    pub price: Option<Spanned<RawPrice>>,
    pub tokenizer: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: RawLimits,
}

/// USD per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: Spanned<f64>,
    pub output: Spanned<f64>,
    pub cached_input: Option<Spanned<f64>>,
    pub cache_write: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub backend: Spanned<String>,
    pub model: Option<Spanned<String>>,
}
