//! Who is calling: a request's credential (`Authorization: Bearer …` or `x-api-key`, read by
//! [`crate::http::parse_request_head`]) becomes an [`Identity`].
//!
//! An [`Authenticator`] is built once per config snapshot, off the request path: it parses the
//! JWT verification keys (an HMAC secret, a PEM public key, or every usable key of a JWKS,
//! keyed by `kid`) and the [`Validation`] for each, so a request never parses key material
//! itself. [`Authenticator::authenticate`] then decides:
//!
//! 1. No consumers and no `[auth.jwt]`: the gateway is open ([`Identity::Open`]), whatever the
//!    client sends (SDKs insist on sending some key).
//! 2. No credential (or an empty one): [`AuthError::Missing`].
//! 3. A consumer's API key: that consumer. One SHA-256 of the credential and a hash-map lookup
//!    ([`Config::consumer_by_key`]), no allocation.
//! 4. With `[auth.jwt]`, a credential shaped like a JWT (three base64url segments): the token is
//!    verified (signature, `exp` required, `nbf`, `iss` and `aud` per config, with the
//!    configured leeway) and its consumer claim (`sub` unless `consumer_claim` says otherwise)
//!    must name a configured consumer.
//! 5. Anything else: [`AuthError::Invalid`].
//!
//! Every failure is a 401 with a message that is safe to show the client: it never repeats the
//! credential. A valid token naming a consumer this gateway does not know is
//! [`AuthError::UnknownConsumer`], also a 401, not a 403: the token is genuine, but it
//! authenticates nobody here, so the request is unauthenticated rather than authenticated and
//! forbidden (403 is left for a known consumer asking for something it may not use).
//!
//! Algorithm confusion is impossible by construction: each key only ever verifies with the
//! configured algorithms of its own family (an RSA public key never becomes an HMAC secret),
//! and a token whose header names another algorithm is refused before any signature check.

use crate::config::{Config, Consumer, JwtKey, JwtSettings};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use std::collections::HashMap;
use std::fmt;

/// Who a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// No authentication is configured: anyone may call.
    Open,
    /// A configured consumer: the index into [`Config::consumers`].
    Consumer(usize),
}

impl Identity {
    /// The consumer, looked up in the snapshot the identity was found with.
    pub fn consumer(self, config: &Config) -> Option<&Consumer> {
        match self {
            Identity::Open => None,
            Identity::Consumer(i) => config.consumers.get(i),
        }
    }
}

/// Why a request is not let in. Every variant is an HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential was sent.
    Missing,
    /// A credential was sent but grants nothing: the reason is safe to show the client.
    Invalid(&'static str),
    /// A valid token whose consumer claim names no configured consumer. The name is for the
    /// log (truncated to [`MAX_LOGGED_NAME`] bytes); the client only sees [`Self::message`].
    UnknownConsumer(String),
}

/// Longest consumer name from a token kept in [`AuthError::UnknownConsumer`].
pub const MAX_LOGGED_NAME: usize = 128;

const INVALID_KEY: &str = "invalid API key";
const MALFORMED_TOKEN: &str = "the token is malformed";
const UNKNOWN_KID: &str = "the token's signing key (kid) is unknown";
const NO_KID: &str = "the token names no signing key (kid)";
const NO_CONSUMER_CLAIM: &str = "the token does not name a consumer";

impl AuthError {
    /// The HTTP status: always 401 (see the module documentation for why an unknown consumer
    /// is not a 403).
    pub fn status(&self) -> u16 {
        401
    }

    /// A message for the client: never contains the credential.
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::Missing => {
                "missing credential: send an API key as `Authorization: Bearer <key>` or `x-api-key: <key>`"
            }
            AuthError::Invalid(reason) => reason,
            AuthError::UnknownConsumer(_) => "the token's consumer is not known to this gateway",
        }
    }

    /// A short class for metrics and the audit log.
    pub fn class(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Invalid(_) => "auth_invalid",
            AuthError::UnknownConsumer(_) => "auth_unknown_consumer",
        }
    }

    /// The `WWW-Authenticate` value a 401 carries (RFC 7235, RFC 6750 section 3).
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            AuthError::Missing => "Bearer realm=\"sluice\"",
            AuthError::Invalid(_) | AuthError::UnknownConsumer(_) => {
                "Bearer realm=\"sluice\", error=\"invalid_token\""
            }
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthError {}

/// Why an [`Authenticator`] cannot be built from a config (a key that cannot serve the
/// configured algorithms, a private key where a public one belongs, a JWKS without a usable
/// key). The snapshot should be refused like an invalid config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSetupError(pub String);

impl fmt::Display for AuthSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthSetupError {}

/// The authentication of one config snapshot. Build it with [`Authenticator::new`] where the
/// snapshot is built (never per request) and pass the same snapshot to
/// [`Authenticator::authenticate`]. `Send + Sync`: it may be built on the control thread and
/// shared with the workers.
#[derive(Debug)]
pub struct Authenticator {
    /// Any consumer key configured (else the SHA-256 of each credential is skipped).
    has_keys: bool,
    jwt: Option<Jwt>,
    describe: &'static str,
    warnings: Vec<String>,
}

#[derive(Debug)]
struct Jwt {
    keys: JwtKeys,
    consumer_claim: String,
    /// Consumer name -> index in [`Config::consumers`].
    consumers: HashMap<String, usize>,
    audience_configured: bool,
}

#[derive(Debug)]
enum JwtKeys {
    /// A secret or a PEM public key: every token is checked against it, whatever its `kid`.
    Single(VerifyKey),
    /// A JWKS: the token's `kid` picks the key.
    Set {
        keys: Vec<VerifyKey>,
        by_kid: HashMap<String, usize>,
        /// A set of exactly one key: it also verifies tokens without a `kid` (and, when the
        /// key itself has no `kid`, tokens with any `kid`).
        sole: Option<Sole>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Sole {
    index: usize,
    has_kid: bool,
}

/// A decoding key with the validation of the algorithms it may verify.
#[derive(Debug)]
struct VerifyKey {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// Everything a request will need, prepared from the snapshot: the decoding keys, their
    /// validations, the consumer-name index. Fails on key material that cannot serve the
    /// configured algorithms.
    pub fn new(config: &Config) -> Result<Authenticator, AuthSetupError> {
        let mut warnings = Vec::new();
        let has_consumers = !config.consumers.is_empty();
        let has_keys = config.consumers.iter().any(|c| !c.key_digests.is_empty());
        let jwt = match &config.auth.jwt {
            None => None,
            Some(settings) => {
                if !has_consumers {
                    warnings.push(
                        "`auth.jwt` is configured but no consumers are: every token will be refused"
                            .to_owned(),
                    );
                }
                Some(Jwt::new(config, settings, &mut warnings)?)
            }
        };
        let describe = match (jwt.is_some(), has_consumers, has_keys) {
            (false, false, _) => "open",
            (false, true, _) => "API keys",
            (true, _, true) => "API keys + JWT",
            (true, _, false) => "JWT",
        };
        Ok(Authenticator {
            has_keys,
            jwt,
            describe,
            warnings,
        })
    }

    /// For the start-up and reload log line: `open`, `API keys`, `JWT` or `API keys + JWT`.
    pub fn describe(&self) -> &'static str {
        self.describe
    }

    /// Whether every request is let in (no consumers, no JWT).
    pub fn is_open(&self) -> bool {
        self.describe == "open"
    }

    /// Things worth a warning in the log (JWKS keys that were skipped and why, JWT without
    /// consumers). Never contains secrets.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Who is calling. `config` must be the snapshot this authenticator was built from.
    pub fn authenticate(
        &self,
        config: &Config,
        credential: Option<&str>,
    ) -> Result<Identity, AuthError> {
        if !config.auth_required() {
            return Ok(Identity::Open);
        }
        let credential = match credential {
            Some(c) if !c.is_empty() => c,
            _ => return Err(AuthError::Missing),
        };
        if self.has_keys {
            if let Some(consumer) = config.consumer_by_key(credential) {
                return index_of(config, consumer)
                    .map(Identity::Consumer)
                    .ok_or(AuthError::Invalid(INVALID_KEY));
            }
        }
        match &self.jwt {
            Some(jwt) if looks_like_jwt(credential) => jwt.verify(config, credential),
            _ => Err(AuthError::Invalid(INVALID_KEY)),
        }
    }
}

/// The position of `consumer` (a reference into `config.consumers`) in that vector, in O(1)
/// from its address; `None` if it is not an element of it.
fn index_of(config: &Config, consumer: &Consumer) -> Option<usize> {
    let size = std::mem::size_of::<Consumer>().max(1);
    let base = config.consumers.as_ptr() as usize;
    let offset = (consumer as *const Consumer as usize).checked_sub(base)?;
    let i = offset / size;
    config
        .consumers
        .get(i)
        .filter(|c| std::ptr::eq(*c, consumer))
        .map(|_| i)
}

/// Three non-empty dot-separated segments of base64url characters.
fn looks_like_jwt(credential: &str) -> bool {
    let mut segments = 0;
    for segment in credential.split('.') {
        segments += 1;
        if segments > 3
            || segment.is_empty()
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    segments == 3
}

/// A configured algorithm name (the config keeps them upper-cased) as an [`Algorithm`].
fn parse_algorithm(name: &str) -> Option<Algorithm> {
    if name.eq_ignore_ascii_case("EdDSA") {
        return Some(Algorithm::EdDSA);
    }
    name.to_ascii_uppercase().parse().ok()
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "HMAC",
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
    }
}

impl Jwt {
    fn new(
        config: &Config,
        settings: &JwtSettings,
        warnings: &mut Vec<String>,
    ) -> Result<Jwt, AuthSetupError> {
        let mut algorithms = Vec::with_capacity(settings.algorithms.len());
        for name in &settings.algorithms {
            match parse_algorithm(name) {
                Some(a) => algorithms.push(a),
                None => {
                    return Err(AuthSetupError(format!(
                        "`auth.jwt.algorithms`: `{name}` is not a supported JWT algorithm"
                    )))
                }
            }
        }
        // Only the configured algorithms of the key's own family; the JWK's `alg`, if any,
        // narrows that further.
        let usable = |family: AlgorithmFamily, only: Option<Algorithm>| -> Vec<Algorithm> {
            algorithms
                .iter()
                .copied()
                .filter(|a| a.family() == family && only.is_none_or(|o| o == *a))
                .collect()
        };
        let configured = settings.algorithms.join(", ");
        let keys = match &settings.key {
            JwtKey::Secret(secret) => {
                let algs = usable(AlgorithmFamily::Hmac, None);
                if algs.is_empty() {
                    return Err(AuthSetupError(format!(
                        "`auth.jwt.secret` verifies HS256/HS384/HS512 tokens, but `auth.jwt.algorithms` is {configured}"
                    )));
                }
                JwtKeys::Single(VerifyKey {
                    key: DecodingKey::from_secret(secret.expose().as_bytes()),
                    validation: validation(settings, algs),
                })
            }
            JwtKey::Pem { path, pem } => {
                if pem
                    .windows(b"PRIVATE KEY-----".len())
                    .any(|w| w == b"PRIVATE KEY-----")
                {
                    return Err(AuthSetupError(format!(
                        "`auth.jwt.key_file`: {} holds a private key; give the public key (openssl pkey -pubout)",
                        path.display()
                    )));
                }
                let key = DecodingKey::from_rsa_pem(pem)
                    .or_else(|_| DecodingKey::from_ec_pem(pem))
                    .or_else(|_| DecodingKey::from_ed_pem(pem))
                    .map_err(|_| {
                        AuthSetupError(format!(
                            "`auth.jwt.key_file`: {} holds no RSA, EC or Ed25519 public key in PEM",
                            path.display()
                        ))
                    })?;
                let algs = usable(key.family(), None);
                if algs.is_empty() {
                    return Err(AuthSetupError(format!(
                        "`auth.jwt.key_file`: {} holds an {} key, which cannot verify {configured}",
                        path.display(),
                        family_name(key.family())
                    )));
                }
                JwtKeys::Single(VerifyKey {
                    key,
                    validation: validation(settings, algs),
                })
            }
            JwtKey::Jwks { path, json } => {
                jwks(json, &usable, settings, warnings).map_err(|why| {
                    AuthSetupError(format!("`auth.jwt.jwks_file`: {}: {why}", path.display()))
                })?
            }
        };
        let consumers = config
            .consumers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Ok(Jwt {
            keys,
            consumer_claim: settings.consumer_claim.clone(),
            consumers,
            audience_configured: settings.audience.is_some(),
        })
    }

    fn verify(&self, config: &Config, token: &str) -> Result<Identity, AuthError> {
        let key = self.keys.select(token)?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            &key.validation,
        )
        .map_err(|e| AuthError::Invalid(self.reason(e.kind())))?;
        let name = data
            .claims
            .get(&self.consumer_claim)
            .and_then(serde_json::Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::Invalid(NO_CONSUMER_CLAIM))?;
        let by_index = self
            .consumers
            .get(name)
            .copied()
            .filter(|&i| config.consumers.get(i).is_some_and(|c| c.name == name));
        // Not found through the index: a snapshot other than the one this authenticator was
        // built from; search it directly rather than trust the index.
        let index = by_index.or_else(|| config.consumers.iter().position(|c| c.name == name));
        index
            .map(Identity::Consumer)
            .ok_or_else(|| AuthError::UnknownConsumer(truncate(name, MAX_LOGGED_NAME).to_owned()))
    }

    /// A client-safe reason for a verification failure.
    fn reason(&self, kind: &ErrorKind) -> &'static str {
        match kind {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
            ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
            ErrorKind::InvalidAudience if self.audience_configured => {
                "the token's audience (aud) is not accepted"
            }
            ErrorKind::InvalidAudience => {
                "the token has an audience (aud) claim, but this gateway accepts no audience"
            }
            ErrorKind::InvalidSignature => "the token's signature is invalid",
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                "the token's signing algorithm is not accepted"
            }
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => "the token has no expiry (exp)",
                "iss" => "the token has no issuer (iss)",
                "aud" => "the token has no audience (aud)",
                _ => "the token lacks a required claim",
            },
            ErrorKind::InvalidClaimFormat(_) => "the token has a malformed claim",
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => MALFORMED_TOKEN,
            _ => "the token could not be verified",
        }
    }
}

impl JwtKeys {
    fn select(&self, token: &str) -> Result<&VerifyKey, AuthError> {
        let (keys, by_kid, sole) = match self {
            JwtKeys::Single(key) => return Ok(key),
            JwtKeys::Set { keys, by_kid, sole } => (keys, by_kid, sole),
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid(MALFORMED_TOKEN))?;
        let index = match (header.kid.as_deref(), sole) {
            (Some(kid), _) => match by_kid.get(kid) {
                Some(&i) => i,
                None => match sole {
                    Some(s) if !s.has_kid => s.index,
                    _ => return Err(AuthError::Invalid(UNKNOWN_KID)),
                },
            },
            (None, Some(s)) => s.index,
            (None, None) => return Err(AuthError::Invalid(NO_KID)),
        };
        keys.get(index).ok_or(AuthError::Invalid(UNKNOWN_KID))
    }
}

/// The usable keys of a JWKS, indexed by `kid`. Keys that cannot verify any configured
/// algorithm are skipped with a warning; a set left without keys is an error.
fn jwks(
    json: &str,
    usable: &dyn Fn(AlgorithmFamily, Option<Algorithm>) -> Vec<Algorithm>,
    settings: &JwtSettings,
    warnings: &mut Vec<String>,
) -> Result<JwtKeys, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet =
        serde_json::from_str(json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    let mut by_kid = HashMap::new();
    let mut anonymous = 0usize;
    for (n, value) in raw.keys.into_iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("key #{}", n + 1), |k| format!("key `{k}`"));
        let mut skip = |why: String| warnings.push(format!("JWKS {label} skipped: {why}"));
        // Key by key, so one key the library cannot read does not take the whole set down.
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(j) => j,
            Err(e) => {
                skip(format!("not understood ({e})"));
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            skip("it is an encryption key (`use` = `enc`)".to_owned());
            continue;
        }
        if jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            skip("its `key_ops` do not include `verify`".to_owned());
            continue;
        }
        let only = match jwk.common.key_algorithm.map(Algorithm::try_from) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                skip("its `alg` is not a signature algorithm".to_owned());
                continue;
            }
        };
        let key = match DecodingKey::from_jwk(&jwk) {
            Ok(k) => k,
            Err(e) => {
                skip(format!("unusable ({e})"));
                continue;
            }
        };
        let algs = usable(key.family(), only);
        if algs.is_empty() {
            skip(format!(
                "an {} key{} cannot verify any of {}",
                family_name(key.family()),
                only.map_or_else(String::new, |a| format!(" for {a:?}")),
                settings.algorithms.join(", ")
            ));
            continue;
        }
        match jwk.common.key_id {
            Some(kid) if by_kid.contains_key(&kid) => {
                skip("its `kid` repeats an earlier key's".to_owned());
                continue;
            }
            Some(kid) => {
                by_kid.insert(kid, keys.len());
            }
            None => anonymous += 1,
        }
        keys.push(VerifyKey {
            key,
            validation: validation(settings, algs),
        });
    }
    match keys.len() {
        0 => {
            return Err(format!(
                "no key can verify {}",
                settings.algorithms.join(", ")
            ))
        }
        1 => {}
        _ if anonymous > 0 => warnings.push(format!(
            "JWKS: {anonymous} key(s) without a `kid` can never be selected (the set has several keys)"
        )),
        _ => {}
    }
    let sole = (keys.len() == 1).then_some(Sole {
        index: 0,
        has_kid: anonymous == 0,
    });
    Ok(JwtKeys::Set { keys, by_kid, sole })
}

/// The checks for one key: its algorithms, `exp` required, `nbf` checked when present, `iss`
/// and `aud` required and checked when configured (a token with an `aud` is refused when no
/// audience is configured: it was minted for someone else, RFC 7519 section 4.1.3).
fn validation(settings: &JwtSettings, algorithms: Vec<Algorithm>) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.algorithms = algorithms;
    v.leeway = settings.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &settings.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if let Some(aud) = &settings.audience {
        v.set_audience(&[aud]);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{key_digest, load_str};
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
    use serde_json::json;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fixed RSA keypair (`openssl genrsa -traditional 2048`; `openssl rsa -pubout`): the
    /// ring backend of rcgen cannot generate RSA keys. Test material only.
    const RSA_PRIVATE: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpQIBAAKCAQEAyV3sH5b9tz29o7zJqOLxXBrN6A9DBOMF2XDQOMa593Yu8qAn
0d1CPjIvGcknQJD6PahcN4T9lH6/FyhXhCTwPpxrKqUOa1Ax5e905irP9zCh9gFp
oahnPMf+fw74K9XF4G8ekPUdMT6H0Ce6Hlne6n90tjMtiAUxmgYJlsvsHCZyTt+l
mBk4RZa40WEKvD/NCQHG5A7xKBSUietjyyNanJ26xkRj/Avx0HDr5kas3qGjaprX
ftPLeOuDSS2UjyWwzxHYM7ZsArmPzX1LH0+45BYgbAtRbPoAosqFyOl21HauU3tv
+Mxmn/JlXJPSXMITc3i7X+uqfQwV564+GcEU9QIDAQABAoIBAAaG0kvrJ28PLmcx
C8eQZNVLkx1F6AdaWmAEAuO24Tku7fJJlEYo6eg9Kn9R9evm/GK6OGmeQwp97zCk
y0K1Cx+5udQohGagXfWqGhEJwIguXdmCOIvCUGeibdJtcvLCG4dHjWc9DUSsK60T
VI9+RzY037ILckWEhuk17+Kg2mwbw3XrmpQfMjrdaFKWuaXoDPPofSKLQLbA9j9m
i5LZpp1rHXE8CESC/H98/sZnkOCx1KVWErch79NTXGibxwjOq4SF1Gg4xYYdlxYX
wGlSS7xijbYPoMkSBL41vhYowrVkaNOn35jfZPmliYyahg+x/4T2SihV7YdnsSIz
OJNffNMCgYEA9/HKRV8bjeNRHK5swdLxYVrKPBhzxbRKl9b+Nc61IK9XfjDUA+G/
SfB1YZndx2XJDSRhB3Pv52axC+XjJfVW0LLevi3E5xTiPfeSlKYUppMv0vRcQA84
WuAAKxyRwTyd6ObPrHmLEwNoE5W7iPXPgEmSuyIV18MY3HLTbAlQaXcCgYEAz+i8
X6IMoKzBZjmvqVmVvnYQDBtnCOcvCojuTr1FskFtqauoUMWGUogBX6rVpll8fYxM
+AJ0qHGJGJqvuusnMijaMCHNO95hh4EXgTdIUlRR0CKeHQhVOVj/YvDGZp2OoFZZ
3IPbIC+CpJh/OWg51dW9XzwT02jLfTNUpqV5D/MCgYEA0isiSatUr/D/0FAJ4EHu
WZeb1VTkzbEFia+zy+hroEkA4PaCwMeaXhJ1bUX/uAWPZpRvquGbeYqSiINVB9fu
vvjf1lT1kusg22X/2gDtgEVDRI3dpG9CVcWKXwDYi/PV5pW/c3OTb4pzriY90NqM
CTJULku2OC4n5LVwgSNkBgECgYEAgFoS6Qs2tn7QSpa0Tl1C57klQQQtwL5QOTW9
wRhyDZD87XFO0MaQnSTfjDr/+Nln1G4oGjgR4udslqbwc/m2Ue4MfQhxFlO8bBYS
96+0UzdA5rhoWk4JpwS9bUxtf24nXe7RPSSdw6nxAkIu0Lb6dXullESXjL02Ws20
pcikC2cCgYEAp8LN3eXc9q1R3aihhwGv/RjgNS/qtPaH68R4/+4LFmg0llGIvk7g
A0qmHLjAzJIWlycdyQkH98S67we++tAIBG8iD6OMfEdDln6BK01Yv4ONTjagZpNh
//cLA5pzjTqco9TeScDNqJvxHKax/339nqFLe/rvalqeCXNQcKNzoDY=
-----END RSA PRIVATE KEY-----";
    const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyV3sH5b9tz29o7zJqOLx
XBrN6A9DBOMF2XDQOMa593Yu8qAn0d1CPjIvGcknQJD6PahcN4T9lH6/FyhXhCTw
PpxrKqUOa1Ax5e905irP9zCh9gFpoahnPMf+fw74K9XF4G8ekPUdMT6H0Ce6Hlne
6n90tjMtiAUxmgYJlsvsHCZyTt+lmBk4RZa40WEKvD/NCQHG5A7xKBSUietjyyNa
nJ26xkRj/Avx0HDr5kas3qGjaprXftPLeOuDSS2UjyWwzxHYM7ZsArmPzX1LH0+4
5BYgbAtRbPoAosqFyOl21HauU3tv+Mxmn/JlXJPSXMITc3i7X+uqfQwV564+GcEU
9QIDAQAB
-----END PUBLIC KEY-----";

    const ALICE_KEY: &str = "alice-key-0123456789";
    const BOB_KEY: &str = "bob-literal-key-0123456789";
    const CAROL_KEY: &str = "carol-hashed-key-0123456789";
    const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

    const BASE: &str = r#"
[backends.m]
provider = "mock"

[models.m]
targets = [{ backend = "m" }]
"#;

    fn env(name: &str) -> Option<String> {
        (name == "ALICE_KEY").then(|| ALICE_KEY.to_owned())
    }

    /// The three consumers: alice (`env:` key), bob (literal key), carol (`sha256:` digest).
    fn consumers() -> String {
        let hex: String = key_digest(CAROL_KEY)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            r#"
[consumers.alice]
keys = ["env:ALICE_KEY"]

[consumers.bob]
keys = ["{BOB_KEY}"]

[consumers.carol]
keys = ["sha256:{hex}"]
"#
        )
    }

    /// A directory of its own for each test, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sluice-auth-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, content: &str) {
            std::fs::write(self.0.join(name), content).unwrap();
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load(dir: &Path, extra: &str) -> Config {
        let text = format!("{BASE}{extra}");
        match load_str(&text, "t.toml", Some(&dir.join("t.toml")), &env) {
            Ok(c) => c,
            Err(e) => panic!("config does not load: {e:?}\n{text}"),
        }
    }

    /// A snapshot and its authenticator.
    struct Gate {
        config: Config,
        auth: Authenticator,
    }

    impl Gate {
        fn check(&self, credential: &str) -> Result<Identity, AuthError> {
            self.auth.authenticate(&self.config, Some(credential))
        }

        /// The identity of the consumer called `name`.
        fn id(&self, name: &str) -> Identity {
            let i = self.config.consumers.iter().position(|c| c.name == name);
            Identity::Consumer(i.unwrap())
        }
    }

    /// Config + authenticator for `extra` (consumers and `[auth]`).
    fn setup(dir: &Path, extra: &str) -> Gate {
        let config = load(dir, extra);
        let auth = Authenticator::new(&config).unwrap();
        Gate { config, auth }
    }

    /// The consumers and an `[auth.jwt]` table: `algorithms` comma-separated, `rest` its
    /// other lines.
    fn jwt_config(algorithms: &str, rest: &str) -> String {
        let list: Vec<String> = algorithms.split(',').map(|a| format!("\"{a}\"")).collect();
        format!(
            "{}\n[auth.jwt]\nalgorithms = [{}]\n{rest}\n",
            consumers(),
            list.join(", ")
        )
    }

    fn hs256_config(extra_jwt: &str) -> String {
        jwt_config("HS256", &format!("secret = \"{SECRET}\"\n{extra_jwt}"))
    }

    fn now() -> u64 {
        get_current_timestamp()
    }

    fn hs256(claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn rs256(claims: &serde_json::Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        encode(&header, claims, &key).unwrap()
    }

    /// A fresh P-256 keypair: (private PKCS#8 PEM, public SPKI PEM).
    fn ec_keypair() -> (String, String) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        (kp.serialize_pem(), kp.public_key_pem())
    }

    fn es256(private_pem: &str, claims: &serde_json::Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
        encode(&header, claims, &key).unwrap()
    }

    /// A JWKS document of public keys: (public key, algorithm, kid).
    fn jwks_json(keys: &[(DecodingKey, Algorithm, Option<&str>)]) -> String {
        let keys = keys
            .iter()
            .map(|(key, alg, kid)| {
                let mut jwk = Jwk::from_decoding_key(key, Some(*alg)).unwrap();
                jwk.common.key_id = kid.map(str::to_owned);
                jwk
            })
            .collect();
        serde_json::to_string(&JwkSet { keys }).unwrap()
    }

    fn valid_for(sub: &str) -> serde_json::Value {
        json!({ "sub": sub, "exp": now() + 600 })
    }

    fn invalid(reason: &'static str) -> Result<Identity, AuthError> {
        Err(AuthError::Invalid(reason))
    }

    #[test]
    fn an_open_gateway_lets_everyone_in() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), "");
        assert_eq!(gate.auth.describe(), "open");
        assert!(gate.auth.is_open());
        for credential in [None, Some(""), Some("sk-whatever"), Some("a.b.c")] {
            assert_eq!(
                gate.auth.authenticate(&gate.config, credential),
                Ok(Identity::Open),
                "{credential:?}"
            );
        }
        assert_eq!(Identity::Open.consumer(&gate.config).map(|c| &c.name), None);
    }

    #[test]
    fn consumer_keys() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), &consumers());
        assert_eq!(gate.auth.describe(), "API keys");
        assert!(!gate.auth.is_open());
        assert!(
            gate.auth.warnings().is_empty(),
            "{:?}",
            gate.auth.warnings()
        );
        for (key, name) in [(ALICE_KEY, "alice"), (BOB_KEY, "bob"), (CAROL_KEY, "carol")] {
            let id = gate.check(key).unwrap();
            assert_eq!(id, gate.id(name));
            assert_eq!(id.consumer(&gate.config).unwrap().name, name);
        }
        // Wrong and missing keys.
        assert_eq!(gate.check("alice-key-0123456780"), invalid(INVALID_KEY));
        assert_eq!(gate.check("sha256:00"), invalid(INVALID_KEY));
        assert_eq!(
            gate.auth.authenticate(&gate.config, None),
            Err(AuthError::Missing)
        );
        assert_eq!(gate.check(""), Err(AuthError::Missing));
        // Without JWT configured, a token-shaped credential is just a wrong key.
        let token = hs256(&valid_for("alice"));
        assert_eq!(gate.check(&token), invalid(INVALID_KEY));
    }

    #[test]
    fn index_of_only_accepts_elements_of_the_snapshot() {
        let dir = TempDir::new();
        let config = load(dir.path(), &consumers());
        for (i, c) in config.consumers.iter().enumerate() {
            assert_eq!(index_of(&config, c), Some(i));
        }
        let copy = config.consumers[1].clone();
        assert_eq!(index_of(&config, &copy), None);
    }

    #[test]
    fn errors_are_401_and_never_echo_the_credential() {
        let errors = [
            AuthError::Missing,
            AuthError::Invalid(INVALID_KEY),
            AuthError::UnknownConsumer("mallory".into()),
        ];
        for e in &errors {
            assert_eq!(e.status(), 401);
            assert!(e.www_authenticate().starts_with("Bearer realm="));
            assert_eq!(e.to_string(), e.message());
            assert!(!e.message().contains("mallory"));
        }
        assert_eq!(errors[0].class(), "auth_missing");
        assert_eq!(errors[1].class(), "auth_invalid");
        assert_eq!(errors[2].class(), "auth_unknown_consumer");
    }

    #[test]
    fn hs256_tokens() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), &hs256_config(""));
        assert_eq!(gate.auth.describe(), "API keys + JWT");
        let alice = gate.id("alice");
        let token = hs256(&valid_for("alice"));
        assert_eq!(gate.check(&token), Ok(alice));
        // Keys still work next to JWT.
        assert_eq!(gate.check(BOB_KEY), Ok(gate.id("bob")));
        // Within the default 30 s leeway.
        let late = hs256(&json!({ "sub": "alice", "exp": now() - 10 }));
        assert_eq!(gate.check(&late), Ok(alice));
        // Beyond it.
        let expired = hs256(&json!({ "sub": "alice", "exp": now() - 120 }));
        assert_eq!(gate.check(&expired), invalid("the token has expired"));
        let early = hs256(&json!({ "sub": "alice", "exp": now() + 7200, "nbf": now() + 3600 }));
        assert_eq!(
            gate.check(&early),
            invalid("the token is not valid yet (nbf)")
        );
        let no_exp = hs256(&json!({ "sub": "alice" }));
        assert_eq!(
            gate.check(&no_exp),
            invalid("the token has no expiry (exp)")
        );
        // A token minted for some audience, while this gateway names none.
        let aud = hs256(&json!({ "sub": "alice", "exp": now() + 600, "aud": "elsewhere" }));
        assert_eq!(
            gate.check(&aud),
            invalid("the token has an audience (aud) claim, but this gateway accepts no audience")
        );
        let no_sub = hs256(&json!({ "exp": now() + 600 }));
        assert_eq!(gate.check(&no_sub), invalid(NO_CONSUMER_CLAIM));
        let numeric_sub = hs256(&json!({ "sub": 7, "exp": now() + 600 }));
        assert_eq!(gate.check(&numeric_sub), invalid(NO_CONSUMER_CLAIM));
    }

    #[test]
    fn a_valid_token_for_an_unknown_consumer() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), &hs256_config(""));
        let token = hs256(&valid_for("mallory"));
        let err = gate.check(&token).unwrap_err();
        assert_eq!(err, AuthError::UnknownConsumer("mallory".into()));
        assert_eq!(err.status(), 401);
        let long = "m".repeat(1000);
        let token = hs256(&valid_for(&long));
        assert_eq!(
            gate.check(&token),
            Err(AuthError::UnknownConsumer("m".repeat(MAX_LOGGED_NAME)))
        );
    }

    #[test]
    fn issuer_audience_leeway_and_consumer_claim() {
        let dir = TempDir::new();
        let jwt = r#"issuer = "https://idp.example"
audience = "sluice"
leeway = "5s"
consumer_claim = "client_id""#;
        let gate = setup(dir.path(), &hs256_config(jwt));
        let carol = gate.id("carol");
        let ok = json!({ "client_id": "carol", "sub": "someone-else", "iss": "https://idp.example",
            "aud": "sluice", "exp": now() + 600 });
        assert_eq!(gate.check(&hs256(&ok)), Ok(carol));
        // `aud` as a list that contains ours.
        let mut list = ok.clone();
        list["aud"] = json!(["other", "sluice"]);
        assert_eq!(gate.check(&hs256(&list)), Ok(carol));
        let cases = [
            (
                "iss",
                json!("https://evil.example"),
                "the token's issuer (iss) is not accepted",
            ),
            (
                "aud",
                json!("other"),
                "the token's audience (aud) is not accepted",
            ),
            (
                "aud",
                json!(["a", "b"]),
                "the token's audience (aud) is not accepted",
            ),
            ("exp", json!(now() - 10), "the token has expired"),
            ("client_id", json!("mallory"), ""),
        ];
        for (claim, value, reason) in cases {
            let mut claims = ok.clone();
            claims[claim] = value;
            let got = gate.check(&hs256(&claims));
            if reason.is_empty() {
                assert_eq!(got, Err(AuthError::UnknownConsumer("mallory".into())));
            } else {
                assert_eq!(got, invalid(reason), "{claim}");
            }
        }
        for (claim, reason) in [
            ("iss", "the token has no issuer (iss)"),
            ("aud", "the token has no audience (aud)"),
            ("client_id", NO_CONSUMER_CLAIM),
        ] {
            let mut claims = ok.clone();
            claims.as_object_mut().unwrap().remove(claim);
            assert_eq!(gate.check(&hs256(&claims)), invalid(reason), "{claim}");
        }
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), &hs256_config(""));
        let token = hs256(&valid_for("alice"));
        let parts: Vec<&str> = token.split('.').collect();
        // The payload swapped for one naming bob, the signature kept.
        let bob_payload = hs256(&valid_for("bob"));
        let bob_payload = bob_payload.split('.').nth(1).unwrap();
        let forged = format!("{}.{}.{}", parts[0], bob_payload, parts[2]);
        assert_eq!(
            gate.check(&forged),
            invalid("the token's signature is invalid")
        );
        // One signature character changed (not the last: its low bits are padding).
        let mut sig: Vec<u8> = parts[2].bytes().collect();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        assert_eq!(
            gate.check(&tampered),
            invalid("the token's signature is invalid")
        );
        // Signed with another secret.
        let other = encode(
            &Header::new(Algorithm::HS256),
            &valid_for("alice"),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!"),
        )
        .unwrap();
        assert_eq!(
            gate.check(&other),
            invalid("the token's signature is invalid")
        );
        // `alg: none` (unsigned), and the same with an empty signature segment.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let unsigned = format!("{none_header}.{}.x", parts[1]);
        assert_eq!(gate.check(&unsigned), invalid(MALFORMED_TOKEN));
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(gate.check(&unsigned), invalid(INVALID_KEY));
    }

    #[test]
    fn garbage_is_neither_a_key_nor_a_token() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), &hs256_config(""));
        for garbage in [
            "not-a-key",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b+/.c",
            "ünïcödé.x.y",
        ] {
            assert_eq!(gate.check(garbage), invalid(INVALID_KEY), "{garbage}");
        }
        // JWT-shaped, but not a JWT.
        assert_eq!(gate.check("aaa.bbb.ccc"), invalid(MALFORMED_TOKEN));
        assert!(looks_like_jwt("eyJ.eyJ.sig-_0"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt(".."));
    }

    #[test]
    fn rs256_with_a_pem_key_and_the_algorithm_confusion_attack() {
        let dir = TempDir::new();
        dir.write("rsa.pem", RSA_PUBLIC);
        let extra = jwt_config("RS256", "key_file = \"rsa.pem\"");
        let gate = setup(dir.path(), &extra);
        let alice = gate.id("alice");
        let token = rs256(&valid_for("alice"), None);
        assert_eq!(gate.check(&token), Ok(alice));
        // A `kid` does not matter with a single key.
        let token = rs256(&valid_for("alice"), Some("whatever"));
        assert_eq!(gate.check(&token), Ok(alice));
        // The classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &valid_for("alice"),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            gate.check(&forged),
            invalid("the token's signing algorithm is not accepted")
        );
        // Another algorithm of the right family that is not configured.
        let mut header = Header::new(Algorithm::RS512);
        header.kid = None;
        let rs512 = encode(
            &header,
            &valid_for("alice"),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            gate.check(&rs512),
            invalid("the token's signing algorithm is not accepted")
        );
    }

    #[test]
    fn an_rs256_token_is_refused_where_hs256_is_configured() {
        let dir = TempDir::new();
        let gate = setup(dir.path(), &hs256_config(""));
        let token = rs256(&valid_for("alice"), None);
        assert_eq!(
            gate.check(&token),
            invalid("the token's signing algorithm is not accepted")
        );
    }

    #[test]
    fn es256_with_a_pem_key() {
        let dir = TempDir::new();
        let (private, public) = ec_keypair();
        dir.write("ec.pem", &public);
        let extra = jwt_config("ES256", "key_file = \"ec.pem\"");
        let gate = setup(dir.path(), &extra);
        let token = es256(&private, &valid_for("bob"), None);
        assert_eq!(gate.check(&token), Ok(gate.id("bob")));
        let (other_private, _) = ec_keypair();
        let token = es256(&other_private, &valid_for("bob"), None);
        assert_eq!(
            gate.check(&token),
            invalid("the token's signature is invalid")
        );
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid() {
        let dir = TempDir::new();
        let (k1_private, k1_public) = ec_keypair();
        let (k2_private, k2_public) = ec_keypair();
        let rsa = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
        let jwks = jwks_json(&[
            (
                DecodingKey::from_ec_pem(k1_public.as_bytes()).unwrap(),
                Algorithm::ES256,
                Some("k1"),
            ),
            (
                DecodingKey::from_ec_pem(k2_public.as_bytes()).unwrap(),
                Algorithm::ES256,
                Some("k2"),
            ),
            (rsa, Algorithm::RS256, Some("r1")),
        ]);
        dir.write("jwks.json", &jwks);
        let extra = jwt_config("ES256,RS256", "jwks_file = \"jwks.json\"");
        let gate = setup(dir.path(), &extra);
        assert!(
            gate.auth.warnings().is_empty(),
            "{:?}",
            gate.auth.warnings()
        );
        let alice = gate.id("alice");
        let claims = valid_for("alice");
        for token in [
            es256(&k1_private, &claims, Some("k1")),
            es256(&k2_private, &claims, Some("k2")),
            rs256(&claims, Some("r1")),
        ] {
            assert_eq!(gate.check(&token), Ok(alice));
        }
        // Signed by k2 but claiming to be k1.
        let token = es256(&k2_private, &claims, Some("k1"));
        assert_eq!(
            gate.check(&token),
            invalid("the token's signature is invalid")
        );
        // An RS256 token naming an EC key: that key only verifies ES256.
        let token = rs256(&claims, Some("k1"));
        assert_eq!(
            gate.check(&token),
            invalid("the token's signing algorithm is not accepted")
        );
        let token = es256(&k1_private, &claims, Some("nope"));
        assert_eq!(gate.check(&token), invalid(UNKNOWN_KID));
        let token = es256(&k1_private, &claims, None);
        assert_eq!(gate.check(&token), invalid(NO_KID));
    }

    #[test]
    fn a_jwks_of_one_key() {
        let dir = TempDir::new();
        let (private, public) = ec_keypair();
        let key = || DecodingKey::from_ec_pem(public.as_bytes()).unwrap();
        let extra = jwt_config("ES256", "jwks_file = \"jwks.json\"");
        let claims = valid_for("carol");

        // The key has a kid: tokens without one use it, tokens naming another kid do not.
        dir.write(
            "jwks.json",
            &jwks_json(&[(key(), Algorithm::ES256, Some("k1"))]),
        );
        let gate = setup(dir.path(), &extra);
        let carol = gate.id("carol");
        let token = es256(&private, &claims, None);
        assert_eq!(gate.check(&token), Ok(carol));
        let token = es256(&private, &claims, Some("k1"));
        assert_eq!(gate.check(&token), Ok(carol));
        let token = es256(&private, &claims, Some("k2"));
        assert_eq!(gate.check(&token), invalid(UNKNOWN_KID));

        // The key has no kid: it verifies every token.
        dir.write("jwks.json", &jwks_json(&[(key(), Algorithm::ES256, None)]));
        let gate = setup(dir.path(), &extra);
        for kid in [None, Some("any")] {
            let token = es256(&private, &claims, kid);
            assert_eq!(gate.check(&token), Ok(carol));
        }
    }

    #[test]
    fn jwks_keys_that_cannot_serve_are_skipped_with_a_warning() {
        let dir = TempDir::new();
        let (private, public) = ec_keypair();
        let ec = DecodingKey::from_ec_pem(public.as_bytes()).unwrap();
        let rsa = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
        let mut set: serde_json::Value = serde_json::from_str(&jwks_json(&[
            (ec, Algorithm::ES256, Some("ec")),
            (rsa, Algorithm::RS256, Some("rsa")),
        ]))
        .unwrap();
        let keys = set["keys"].as_array_mut().unwrap();
        keys.push(json!({ "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" }));
        keys.push(json!({ "kty": "weird", "kid": "odd" }));
        keys.push(keys[0].clone()); // a repeated kid
        dir.write("jwks.json", &set.to_string());
        let extra = jwt_config("ES256", "jwks_file = \"jwks.json\"");
        let gate = setup(dir.path(), &extra);
        let warnings = gate.auth.warnings().join("\n");
        for kid in ["rsa", "enc", "odd", "ec"] {
            assert!(
                warnings.contains(&format!("key `{kid}` skipped")),
                "{warnings}"
            );
        }
        let token = es256(&private, &valid_for("alice"), Some("ec"));
        assert_eq!(gate.check(&token), Ok(gate.id("alice")));
        let token = rs256(&valid_for("alice"), Some("rsa"));
        assert_eq!(gate.check(&token), invalid(UNKNOWN_KID));
    }

    #[test]
    fn keys_that_cannot_serve_the_algorithms_are_setup_errors() {
        let dir = TempDir::new();
        // (An EC private key in `key_file` is already refused by the config.)
        let (_, public) = ec_keypair();
        dir.write("rsa.pem", RSA_PUBLIC);
        dir.write("ec.pem", &public);
        dir.write("rsa-private.pem", RSA_PRIVATE);
        dir.write(
            "jwks.json",
            &jwks_json(&[(
                DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
                Algorithm::RS256,
                Some("r"),
            )]),
        );
        for (jwt, expect) in [
            (
                "algorithms = [\"ES256\"]\nkey_file = \"rsa.pem\"",
                "holds an RSA key",
            ),
            (
                "algorithms = [\"RS256\"]\nkey_file = \"ec.pem\"",
                "holds an EC key",
            ),
            (
                "algorithms = [\"RS256\"]\nkey_file = \"rsa-private.pem\"",
                "holds a private key",
            ),
            (
                "algorithms = [\"ES256\"]\njwks_file = \"jwks.json\"",
                "no key can verify ES256",
            ),
        ] {
            let config = load(dir.path(), &format!("{}\n[auth.jwt]\n{jwt}\n", consumers()));
            let err = Authenticator::new(&config).unwrap_err();
            assert!(err.0.contains(expect), "{jwt}: {err}");
        }
    }

    #[test]
    fn jwt_without_consumers_is_described_and_warned_about() {
        let dir = TempDir::new();
        let extra = format!("[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n");
        let gate = setup(dir.path(), &extra);
        assert_eq!(gate.auth.describe(), "JWT");
        assert!(!gate.auth.is_open());
        assert_eq!(gate.auth.warnings().len(), 1, "{:?}", gate.auth.warnings());
        assert_eq!(
            gate.auth.authenticate(&gate.config, None),
            Err(AuthError::Missing)
        );
        let token = hs256(&valid_for("alice"));
        assert_eq!(
            gate.check(&token),
            Err(AuthError::UnknownConsumer("alice".into()))
        );
        assert_eq!(gate.check(ALICE_KEY), invalid(INVALID_KEY));
    }

    #[test]
    fn the_authenticator_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Authenticator>();
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(parse_algorithm("es384"), Some(Algorithm::ES384));
        assert_eq!(parse_algorithm("EDDSA"), Some(Algorithm::EdDSA));
        assert_eq!(parse_algorithm("none"), None);
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hé", 3), "hé");
    }
}
