//! Gateway errors: what went wrong, whose fault it is, whether a retry may help, and the one
//! place that turns them into HTTP responses (OpenAI-style JSON bodies).

use sluice_proto_llm::error::openai_error_body;
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
    NotImplemented,
    /// Could not connect or TLS failed: 502.
    UpstreamUnreachable,
    /// Upstream sent something that is not HTTP or broke the connection early: 502.
    UpstreamProtocol,
    /// Connect or first-byte timeout: 504.
    UpstreamTimeout,
    /// The gateway is shutting down: 503.
    Draining,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::MalformedHttp => 400,
            ErrorKind::ModelNotFound | ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::HeaderTooLarge => 431,
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
            ErrorKind::UpstreamUnreachable | ErrorKind::UpstreamTimeout
        )
    }

    /// The OpenAI `error.type` string.
    pub fn error_type(self) -> &'static str {
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
            ErrorKind::UpstreamUnreachable => Some("upstream_unreachable"),
            ErrorKind::UpstreamTimeout => Some("upstream_timeout"),
            ErrorKind::UpstreamProtocol => Some("upstream_protocol_error"),
            ErrorKind::NotFound => Some("unknown_url"),
            ErrorKind::MethodNotAllowed => Some("method_not_allowed"),
            _ => None,
        }
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

    /// The JSON body sent to the client.
    pub fn body(&self) -> Vec<u8> {
        openai_error_body(
            &self.message,
            self.kind.error_type(),
            self.param,
            self.kind.code(),
        )
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
}
