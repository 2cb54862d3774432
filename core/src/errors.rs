//! Gateway errors: what went wrong, whose fault it is, whether a retry may help, and the one
//! place that turns them into HTTP responses (OpenAI-style JSON bodies).

use sluice_proto_llm::error::{anthropic_error_body, openai_error_body};
use std::fmt;

/// Who is to blame. Drives metrics and logging levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON, missing or invalid field.
    InvalidRequest,
    /// Model not configured.
    ModelNotFound,
    /// Unknown path.
    NotFound,
    MethodNotAllowed,
    BodyTooLarge,
    HeaderTooLarge,
    MalformedHttp,
    /// The request head or body did not arrive in time: 408.
    RequestTimeout,
    NotImplemented,
    /// Could not connect or TLS failed: 502.
    UpstreamUnreachable,
    /// Upstream sent something that is not HTTP or broke the connection early: 502.
    UpstreamProtocol,
    /// Connect or first-byte timeout: 504.
    UpstreamTimeout,
    /// The backend cannot serve this endpoint (embeddings on Anthropic): 400, but another
    /// target of the model may.
    Unsupported,
    /// No or a wrong key or token: 401.
    Unauthorized,
    /// The consumer may not use this model: 403.
    Forbidden,
    /// A rate limit was reached: 429, retry later.
    RateLimited,
    /// A budget (cost, day, month) is spent: 429 `insufficient_quota`, not worth retrying.
    QuotaExceeded,
    /// The gateway is shutting down: 503.
    Draining,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::MalformedHttp | ErrorKind::Unsupported => 400,
            ErrorKind::ModelNotFound | ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::HeaderTooLarge => 431,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::RateLimited | ErrorKind::QuotaExceeded => 429,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::NotImplemented => 501,
            ErrorKind::UpstreamUnreachable | ErrorKind::UpstreamProtocol => 502,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::Draining => 503,
            ErrorKind::Internal => 500,
        }
    }

    pub fn side(self) -> Side {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::ModelNotFound
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::BodyTooLarge
            | ErrorKind::HeaderTooLarge
            | ErrorKind::MalformedHttp
            | ErrorKind::RequestTimeout
            | ErrorKind::Unsupported
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::RateLimited
            | ErrorKind::QuotaExceeded
            | ErrorKind::NotImplemented => Side::Client,
            ErrorKind::UpstreamUnreachable
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamTimeout => Side::Upstream,
            ErrorKind::Draining | ErrorKind::Internal => Side::Internal,
        }
    }

    /// May another target be tried (nothing was sent to the client yet)?
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::UpstreamUnreachable | ErrorKind::UpstreamTimeout | ErrorKind::Unsupported
        )
    }

    /// A short class for metrics and the audit log.
    pub fn class(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::HeaderTooLarge => "header_too_large",
            ErrorKind::MalformedHttp => "malformed_http",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::Unsupported => "unsupported_by_backend",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Draining => "draining",
            ErrorKind::Internal => "internal",
        }
    }

    /// The OpenAI `error.type` string.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => return "authentication_error",
            ErrorKind::Forbidden => return "permission_error",
            ErrorKind::RateLimited => return "rate_limit_error",
            ErrorKind::QuotaExceeded => return "insufficient_quota",
            _ => {}
        }
        match self.side() {
            Side::Client => "invalid_request_error",
            Side::Upstream => "upstream_error",
            Side::Internal => "server_error",
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            ErrorKind::ModelNotFound => Some("model_not_found"),
            ErrorKind::BodyTooLarge => Some("request_too_large"),
            ErrorKind::HeaderTooLarge => Some("headers_too_large"),
            ErrorKind::RequestTimeout => Some("request_timeout"),
            ErrorKind::Unsupported => Some("unsupported_by_backend"),
            ErrorKind::Unauthorized => Some("invalid_api_key"),
            ErrorKind::Forbidden => Some("model_not_allowed"),
            ErrorKind::RateLimited => Some("rate_limit_exceeded"),
            ErrorKind::QuotaExceeded => Some("insufficient_quota"),
            ErrorKind::UpstreamUnreachable => Some("upstream_unreachable"),
            ErrorKind::UpstreamTimeout => Some("upstream_timeout"),
            ErrorKind::UpstreamProtocol => Some("upstream_protocol_error"),
            ErrorKind::NotFound => Some("unknown_url"),
            ErrorKind::MethodNotAllowed => Some("method_not_allowed"),
            _ => None,
        }
    }
}

/// Which error shape a client understands: OpenAI's (`{"error":{message,type,param,code}}`) for
/// the OpenAI APIs, Anthropic's (`{"type":"error","error":{type,message}}`) for `/v1/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    OpenAi,
    Anthropic,
}

impl ErrorFormat {
    /// The shape a request to `path` expects (used before the request is routed, e.g. for 413).
    pub fn for_path(path: &str) -> Self {
        let path = path.split('?').next().unwrap_or(path);
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            ErrorFormat::Anthropic
        } else {
            ErrorFormat::OpenAi
        }
    }
}

/// Anthropic's `error.type` for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 | 431 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<&'static str>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
        }
    }

    pub fn with_param(mut self, param: Option<&'static str>) -> Self {
        self.param = param;
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body sent to the client, in the OpenAI shape.
    pub fn body(&self) -> Vec<u8> {
        self.body_in(ErrorFormat::OpenAi)
    }

    /// The JSON body in the inbound API's own shape.
    pub fn body_in(&self, format: ErrorFormat) -> Vec<u8> {
        match format {
            ErrorFormat::OpenAi => openai_error_body(
                &self.message,
                self.kind.error_type(),
                self.param,
                self.kind.code(),
            ),
            ErrorFormat::Anthropic => {
                anthropic_error_body(anthropic_error_type(self.status()), &self.message)
            }
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_openai_errors() {
        let e = GatewayError::new(ErrorKind::ModelNotFound, "The model `x` does not exist")
            .with_param(Some("model"));
        assert_eq!(e.status(), 404);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(
            GatewayError::new(ErrorKind::UpstreamTimeout, "t").status(),
            504
        );
        assert!(ErrorKind::UpstreamUnreachable.retryable());
        assert!(!ErrorKind::UpstreamProtocol.retryable());
    }

    #[test]
    fn anthropic_shape_for_messages_clients() {
        let e = GatewayError::new(ErrorKind::BodyTooLarge, "too big");
        let v: serde_json::Value =
            serde_json::from_slice(&e.body_in(ErrorFormat::Anthropic)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "error": {"type": "request_too_large", "message": "too big"}})
        );
        assert_eq!(
            ErrorFormat::for_path("/v1/messages?beta=true"),
            ErrorFormat::Anthropic
        );
        assert_eq!(
            ErrorFormat::for_path("/v1/chat/completions"),
            ErrorFormat::OpenAi
        );
        assert_eq!(anthropic_error_type(504), "api_error");
        assert_eq!(anthropic_error_type(529), "overloaded_error");
    }
}
