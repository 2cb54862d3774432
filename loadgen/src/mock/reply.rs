//! Writing responses: JSON bodies with `Content-Length`, and errors in the shape of the route
//! (OpenAI's `{"error":{..}}`, or Anthropic's `{"type":"error","error":{..}}` on
//! `/v1/messages`), injected faults included.

use super::settings::Fault;
use sluice_core::client::{ClientConn, Head};
use sluice_proto_llm::error::{
    anthropic_error_body, openai_error_body, AUTHENTICATION, INVALID_REQUEST, NOT_FOUND,
    OVERLOADED, PERMISSION, RATE_LIMIT, SERVER,
};

/// What the connection does after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
}

/// The error body shape a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

/// Extra response headers: (name, value) pairs.
pub type Headers = &'static [(&'static str, &'static [u8])];

/// How the responses to one request go out.
#[derive(Debug, Clone, Copy)]
pub struct Out<'a> {
    pub version: u8,
    pub keep_alive: bool,
    pub request_id: Option<&'a str>,
    pub shape: Shape,
}

impl<'a> Out<'a> {
    pub fn new(version: u8, keep_alive: bool, request_id: Option<&'a str>, shape: Shape) -> Self {
        Self {
            version,
            keep_alive,
            request_id,
            shape,
        }
    }

    /// A complete JSON response with `Content-Length`.
    pub fn json(&self, status: u16, extra: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
        let mut head = Head::new(self.version, status).header("Content-Type", b"application/json");
        for (name, value) in extra {
            head = head.header(name, value);
        }
        if let Some(id) = self.request_id {
            head = head.header("X-Request-Id", id.as_bytes());
        }
        head.with_body(self.keep_alive, body)
    }

    /// An error response whose type follows from `status`.
    pub fn error(&self, status: u16, extra: &[(&str, &[u8])], message: &str) -> Vec<u8> {
        self.error_with(status, extra, message, None, None)
    }

    /// An error response with an OpenAI `param` and `code` (Anthropic bodies have neither).
    pub fn error_with(
        &self,
        status: u16,
        extra: &[(&str, &[u8])],
        message: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Vec<u8> {
        let body = match self.shape {
            Shape::OpenAi => openai_error_body(message, openai_type(status), param, code),
            Shape::Anthropic => anthropic_error_body(anthropic_type(status), message),
        };
        self.json(status, extra, &body)
    }

    /// Writes a complete response; what the connection does next.
    pub async fn send(&self, conn: &mut ClientConn, out: Vec<u8>) -> After {
        let (res, _) = conn.write(out).await;
        if res.is_ok() && self.keep_alive {
            After::KeepAlive
        } else {
            After::Close
        }
    }
}

/// The OpenAI error `type` of a status.
fn openai_type(status: u16) -> &'static str {
    match status {
        403 => PERMISSION,
        429 => RATE_LIMIT,
        500..=599 => SERVER,
        // OpenAI answers a bad key (401) with invalid_request_error too.
        _ => INVALID_REQUEST,
    }
}

/// The Anthropic error `type` of a status.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => AUTHENTICATION,
        403 => PERMISSION,
        404 | 405 => NOT_FOUND,
        413 => "request_too_large",
        429 => RATE_LIMIT,
        503 | 529 => OVERLOADED,
        500..=599 => "api_error",
        _ => INVALID_REQUEST,
    }
}

/// The message, OpenAI `code` and extra headers of an injected fault.
pub fn fault(fault: Fault, shape: Shape) -> (&'static str, Option<&'static str>, Headers) {
    const OPENAI_RATE_LIMITED: Headers = &[
        ("Retry-After", b"1"),
        ("x-ratelimit-limit-requests", b"60"),
        ("x-ratelimit-remaining-requests", b"0"),
        ("x-ratelimit-reset-requests", b"1s"),
    ];
    const ANTHROPIC_RATE_LIMITED: Headers = &[
        ("Retry-After", b"1"),
        ("anthropic-ratelimit-requests-limit", b"60"),
        ("anthropic-ratelimit-requests-remaining", b"0"),
    ];
    match (fault.status, shape) {
        (429, Shape::OpenAi) => (
            "Rate limit reached for requests (injected by sluice-loadgen mock).",
            Some("rate_limit_exceeded"),
            OPENAI_RATE_LIMITED,
        ),
        (429, Shape::Anthropic) => (
            "Number of requests has exceeded your rate limit (injected by sluice-loadgen mock).",
            None,
            ANTHROPIC_RATE_LIMITED,
        ),
        (401, _) => (
            "Incorrect API key provided (injected by sluice-loadgen mock).",
            Some("invalid_api_key"),
            &[],
        ),
        (403, _) => (
            "You are not allowed to use this model (injected by sluice-loadgen mock).",
            None,
            &[],
        ),
        (503 | 529, Shape::Anthropic) => {
            ("Overloaded (injected by sluice-loadgen mock).", None, &[])
        }
        (500..=599, _) => (
            "The server had an error while processing your request (injected by \
             sluice-loadgen mock).",
            None,
            &[],
        ),
        _ => (
            "The request was refused (injected by sluice-loadgen mock).",
            None,
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body_of(response: &[u8]) -> Value {
        let text = std::str::from_utf8(response).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn errors_in_both_shapes() {
        let openai = Out::new(1, true, Some("r1"), Shape::OpenAi);
        let anthropic = Out {
            shape: Shape::Anthropic,
            ..openai
        };
        for (status, openai_kind, anthropic_kind) in [
            (400, "invalid_request_error", "invalid_request_error"),
            (401, "invalid_request_error", "authentication_error"),
            (403, "permission_error", "permission_error"),
            (404, "invalid_request_error", "not_found_error"),
            (413, "invalid_request_error", "request_too_large"),
            (429, "rate_limit_error", "rate_limit_error"),
            (500, "server_error", "api_error"),
            (529, "server_error", "overloaded_error"),
        ] {
            let v = body_of(&openai.error_with(status, &[], "m", Some("p"), Some("c")));
            assert_eq!(
                v,
                serde_json::json!({"error":{"message":"m","type":openai_kind,"param":"p","code":"c"}})
            );
            let v = body_of(&anthropic.error_with(status, &[], "m", Some("p"), Some("c")));
            assert_eq!(
                v,
                serde_json::json!({"type":"error","error":{"type":anthropic_kind,"message":"m"}})
            );
        }
        let response = String::from_utf8(openai.json(200, &[("A", b"1")], b"{}")).unwrap();
        assert!(response.contains("\r\nA: 1\r\n") && response.contains("X-Request-Id: r1"));
    }

    #[test]
    fn fault_headers() {
        let f = |status| Fault { status, rate: 1.0 };
        let (_, code, extra) = fault(f(429), Shape::OpenAi);
        assert_eq!(code, Some("rate_limit_exceeded"));
        assert!(extra.iter().any(|(n, v)| *n == "Retry-After" && *v == b"1"));
        let (_, _, extra) = fault(f(429), Shape::Anthropic);
        assert!(extra
            .iter()
            .any(|(n, _)| *n == "anthropic-ratelimit-requests-remaining"));
        for status in [400, 401, 403, 404, 500, 503, 529] {
            for shape in [Shape::OpenAi, Shape::Anthropic] {
                let (message, _, extra) = fault(f(status), shape);
                assert!(!message.is_empty());
                assert!(extra.is_empty());
            }
        }
    }
}
