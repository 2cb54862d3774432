//! The request every virtual user sends: built once per run, head and body together, so the
//! hot path only writes a shared buffer.

use serde_json::json;

/// The API called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completions,
    /// `/v1/embeddings`
    Embeddings,
}

impl Endpoint {
    /// The path after `/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

/// Words the filler prompt cycles through: common English words, so a real tokenizer sees
/// roughly one token per word.
const FILLER: [&str; 16] = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
    "bright", "stars", "watch", "the", "river",
];

/// `words` words of filler text.
pub fn filler(words: u32) -> String {
    let mut out = String::with_capacity(words as usize * 6);
    for (i, w) in FILLER.iter().cycle().take(words as usize).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// What goes into the JSON body.
pub struct BodySpec<'a> {
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub prompt_words: u32,
    pub max_tokens: u32,
    pub stream: bool,
    pub include_usage: bool,
}

/// The JSON request body.
pub fn body(spec: &BodySpec<'_>) -> Vec<u8> {
    let text = filler(spec.prompt_words);
    let mut doc = match spec.endpoint {
        Endpoint::Chat => json!({
            "model": spec.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": spec.max_tokens,
        }),
        Endpoint::Completions => json!({
            "model": spec.model,
            "prompt": text,
            "max_tokens": spec.max_tokens,
        }),
        Endpoint::Embeddings => json!({"model": spec.model, "input": text}),
    };
    if spec.stream {
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("stream".into(), true.into());
            if spec.include_usage {
                obj.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
    }
    doc.to_string().into_bytes()
}

/// What goes into the request head.
pub struct HeadSpec<'a> {
    pub path: &'a str,
    pub host: &'a str,
    pub stream: bool,
    pub api_key: Option<&'a str>,
    /// Extra headers, already checked (no CR/LF, no framing headers).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The complete HTTP/1.1 request: head and body.
pub fn head_and_body(spec: &HeadSpec<'_>) -> Vec<u8> {
    use sluice_core::http::{write_header, write_header_u64};
    let mut out = Vec::with_capacity(512 + spec.body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(spec.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", spec.host.as_bytes());
    write_header(&mut out, "Content-Type", b"application/json");
    let accept: &[u8] = if spec.stream {
        b"text/event-stream"
    } else {
        b"application/json"
    };
    write_header(&mut out, "Accept", accept);
    let agent = concat!("sluice-loadgen/", env!("CARGO_PKG_VERSION"));
    write_header(&mut out, "User-Agent", agent.as_bytes());
    if let Some(key) = spec.api_key {
        write_header(
            &mut out,
            "Authorization",
            format!("Bearer {key}").as_bytes(),
        );
    }
    for (name, value) in spec.headers {
        write_header(&mut out, name, value.as_bytes());
    }
    write_header_u64(&mut out, "Content-Length", spec.body.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(spec.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec(endpoint: Endpoint, stream: bool, include_usage: bool) -> Value {
        let b = body(&BodySpec {
            endpoint,
            model: "m",
            prompt_words: 3,
            max_tokens: 9,
            stream,
            include_usage,
        });
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn filler_has_the_asked_word_count() {
        assert_eq!(filler(1), "the");
        assert_eq!(filler(3), "the quick brown");
        assert_eq!(filler(100).split(' ').count(), 100);
    }

    #[test]
    fn bodies() {
        let v = spec(Endpoint::Chat, true, true);
        assert_eq!(v["model"], "m");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["messages"][0]["content"], "the quick brown");
        assert_eq!(v["max_tokens"], 9);
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        let v = spec(Endpoint::Chat, true, false);
        assert!(v.get("stream_options").is_none());
        let v = spec(Endpoint::Completions, false, false);
        assert_eq!(v["prompt"], "the quick brown");
        assert!(v.get("stream").is_none());
        let v = spec(Endpoint::Embeddings, false, false);
        assert_eq!(v["input"], "the quick brown");
        assert!(v.get("max_tokens").is_none());
    }

    #[test]
    fn request_is_parseable_http() {
        let out = head_and_body(&HeadSpec {
            path: "/v1/chat/completions",
            host: "h:1",
            stream: true,
            api_key: Some("k"),
            headers: &[("X-A", "b")],
            body: b"{}",
        });
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(&out).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(req.method, Some("POST"));
        assert_eq!(req.path, Some("/v1/chat/completions"));
        let get = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.to_vec())
        };
        assert_eq!(get("host").unwrap(), b"h:1");
        assert_eq!(get("authorization").unwrap(), b"Bearer k");
        assert_eq!(get("accept").unwrap(), b"text/event-stream");
        assert_eq!(get("x-a").unwrap(), b"b");
        assert_eq!(get("content-length").unwrap(), b"2");
        assert_eq!(&out[len..], b"{}");
    }
}
