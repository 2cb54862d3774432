//! Deterministic inputs for the benches and their accuracy tests: a recorded-style SSE stream,
//! stream chunks, text in several scripts, streaming deltas and request bodies.
//!
//! Everything is generated from fixed seeds, so every run (and every machine) measures the same
//! bytes. Text is assembled from hand-written sentences rather than random letters: tokenizers
//! behave very differently on real words than on noise, and a bench on noise would flatter or
//! punish them unfairly.

use serde_json::{json, Value};
use sluice_proto_llm::sse::SseFramer;

/// The OpenAI chat stream fixture (`include_usage`, `"usage":null` on every chunk, a final usage
/// chunk, `[DONE]`), as the framer tests use it.
pub const OPENAI_STREAM_FIXTURE: &[u8] =
    include_bytes!("../../proto-llm/fixtures/openai_chat_include_usage.sse");

/// A 252-byte `chat.completion.chunk` as OpenAI streams it with `include_usage`: one content
/// delta and `"usage":null`.
pub const CONTENT_CHUNK: &[u8] = br#"{"id":"chatcmpl-BxQ3kL9vT2mNf8aYp0cRz1Wd","object":"chat.completion.chunk","created":1753960123,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":" Here"},"finish_reason":null}],"usage":null}"#;

/// The final chunk of the same stream: no choices, the usage object with its details.
pub const USAGE_CHUNK: &[u8] = br#"{"id":"chatcmpl-BxQ3kL9vT2mNf8aYp0cRz1Wd","object":"chat.completion.chunk","created":1753960123,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

/// `copies` back-to-back copies of [`OPENAI_STREAM_FIXTURE`] (a long stream of the same shape)
/// and the number of SSE frames in it.
pub fn openai_stream(copies: usize) -> (Vec<u8>, u64) {
    let stream = OPENAI_STREAM_FIXTURE.repeat(copies);
    let mut framer = SseFramer::new(usize::MAX);
    framer.push(&stream);
    let mut frames = 0;
    while let Ok(Some(_)) = framer.next_frame() {
        frames += 1;
    }
    (stream, frames)
}

/// A small deterministic generator (64-bit LCG, top bits out); good enough to pick sentences.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The high half of an LCG state is the random part.
        u32::try_from(self.0 >> 32).unwrap_or_default()
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u32()).unwrap_or_default() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = self.below(items.len());
        items.get(i).copied().unwrap_or_default()
    }
}

const ENGLISH: &[&str] = &[
    "The gateway forwards each request to the first healthy backend and remembers which one answered.",
    "When the upstream stalls for longer than the read timeout, the client receives an error event instead of silence.",
    "She opened the report, skimmed the summary, and decided that the numbers needed another look before Monday.",
    "Rate limits are enforced per key, per model and per project, so one noisy tenant cannot starve the others.",
    "It was late in the afternoon when the train finally pulled into the station, nearly forty minutes behind schedule.",
    "Please summarize the following meeting notes in three bullet points and list any open action items.",
    "The committee reviewed 14 proposals in 2024 and approved 9 of them, with a total budget of $1.2 million.",
    "Could you explain why the second approach uses less memory, even though it allocates a larger buffer up front?",
    "Our customers in Europe expect their data to stay in the region; the routing table must respect that.",
    "He didn't know whether the bridge would hold, but there was no other way across the river before nightfall.",
    "Token usage is reported in the final chunk of the stream, after the last content delta and before [DONE].",
    "Write a short, friendly reply to a customer who was charged twice for the same order (#48213) last week.",
    "The results were surprising: latency dropped by 37% while throughput stayed within 2% of the baseline.",
    "If you can't reproduce the bug locally, try running the test suite with the same seed the CI job used.",
    "Translate the paragraph below into plain English, keeping the technical terms but removing the jargon.",
    "Across the valley, the old stone farmhouse had been converted into a small museum about the region's history.",
    "We'll need the quarterly figures, the hiring plan and a draft of the press release by Thursday at 10:30.",
    "Keep answers concise. If the question is ambiguous, ask one clarifying question before you answer.",
    "The model's context window is large, but long prompts still cost money and add latency to every call.",
    "According to the survey, 62 percent of respondents preferred remote work at least three days a week.",
    "Each worker owns its sockets, its timers and its metrics shard, which is why no request ever takes a lock.",
    "You are a helpful assistant that answers questions about the company's internal documentation.",
    "Mr. O'Neill's well-known e-mail arrived at 9:05 a.m.; it said, \"Don't forget the 3rd-floor meeting!\"",
    "Photosynthesis converts light energy into chemical energy, storing it in the bonds of glucose molecules.",
];

const CODE: &[&str] = &[
    "fn main() {\n    let args: Vec<String> = std::env::args().collect();\n    println!(\"{:?}\", args);\n}\n",
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "const res = await fetch(`${baseUrl}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify(req) });\n",
    "SELECT user_id, COUNT(*) AS requests FROM usage_log WHERE ts >= NOW() - INTERVAL '1 day' GROUP BY user_id ORDER BY 2 DESC;\n",
    "{\"model\": \"gpt-4o\", \"temperature\": 0.2, \"max_tokens\": 512, \"stop\": [\"\\n\\n\"]}\n",
    "for (int i = 0; i < n; ++i) {\n\tif (buf[i] == '\\n') { lines++; }\n}\n",
    "impl<T: Clone + Send + 'static> Pool<T> {\n    pub fn get(&self) -> Option<T> { self.items.lock().ok()?.pop() }\n}\n",
    "$ cargo bench -p sluice-bench --bench tokens -- --warm-up-time 1\n",
    "    if err != nil {\n        return nil, fmt.Errorf(\"dial %s: %w\", addr, err)\n    }\n",
    "<div class=\"card\"><h2>{{ title }}</h2><p>{{ body | truncate(120) }}</p></div>\n",
];

const OTHER_SCRIPTS: &[&str] = &[
    "网关把每个请求转发到第一个健康的后端，并记录是哪一个回答的。",
    "令牌用量在流的最后一个数据块中报告。",
    "今日は天気が良いので、午後から公園を散歩する予定です。",
    "このモデルは長い文脈を扱えますが、コストと遅延が増えます。",
    "요청이 실패하면 다음 백엔드로 자동으로 다시 시도합니다.",
    "Шлюз перенаправляет каждый запрос первому доступному серверу.",
    "Η πύλη προωθεί κάθε αίτημα στον πρώτο διαθέσιμο διακομιστή.",
    "البوابة تعيد توجيه كل طلب إلى أول خادم متاح.",
    "गेटवे हर अनुरोध को पहले उपलब्ध सर्वर पर भेजता है।",
    "Der Schlüssel wurde für größere Änderungen am Übertragungsprotokoll geändert.",
    "L'équipe a déjà vérifié les données à Paris, Zürich et São Paulo.",
    "Ship it 🚀🚀 — all tests green ✅, latency down 📉, coffee ☕ needed.",
    "Family: 👨‍👩‍👧‍👦 flags: 🇯🇵🇩🇪🇧🇷 skin tones: 👍🏽👋🏿 hearts: ❤️💙💚",
    "数学公式 E=mc² 和 ∑ᵢ xᵢ² ≤ ∞ 在文本中混合出现。",
];

/// Text of about `len` bytes (never cut inside a character) made of `sources` sentences, each
/// followed by a space or, now and then, a paragraph break.
fn text_from(sources: &[&[&str]], seed: u64, len: usize) -> String {
    let mut rng = Lcg::new(seed);
    let mut out = String::with_capacity(len + 256);
    while out.len() < len {
        let group = sources
            .get(rng.below(sources.len()))
            .copied()
            .unwrap_or(ENGLISH);
        out.push_str(rng.pick(group));
        out.push_str(if rng.below(6) == 0 { "\n\n" } else { " " });
    }
    let mut end = len.min(out.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// Machine data of about `len` bytes, as agents feed tool results back: JSON records and log
/// lines with ids, hashes, timestamps and numbers (the hardest case for a byte-count estimate:
/// hex and digits pack fewer bytes per token than words).
fn data(seed: u64, len: usize) -> String {
    let mut rng = Lcg::new(seed);
    let mut out = String::with_capacity(len + 256);
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let paths = [
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/healthz",
    ];
    while out.len() < len {
        let id = format!("{:08x}{:08x}", rng.next_u32(), rng.next_u32());
        let (h, m, s, ms) = (rng.below(24), rng.below(60), rng.below(60), rng.below(1000));
        if rng.below(2) == 0 {
            out.push_str(&format!(
                "{{\"id\":\"req_{id}\",\"ts\":\"2026-11-{:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z\",\"status\":{},\"latency_ms\":{}.{},\"tokens\":{},\"path\":\"{}\"}}\n",
                1 + rng.below(28),
                [200, 200, 200, 429, 500].get(rng.below(5)).copied().unwrap_or(200),
                rng.below(5000),
                rng.below(10),
                rng.below(100_000),
                rng.pick(&paths),
            ));
        } else {
            out.push_str(&format!(
                "2026-11-22 {h:02}:{m:02}:{s:02}.{ms:03} {} worker={} request_id={id} sha256={:08x}{:08x}{:08x}{:08x} bytes={} duration={}ms\n",
                rng.pick(&levels),
                rng.below(64),
                rng.next_u32(),
                rng.next_u32(),
                rng.next_u32(),
                rng.next_u32(),
                rng.below(1 << 20),
                rng.below(30_000),
            ));
        }
    }
    out.truncate(len.min(out.len()));
    out
}

/// English prose of about `len` bytes.
pub fn english(len: usize) -> String {
    text_from(&[ENGLISH], 1, len)
}

/// Mixed text of about `len` bytes: English, source code, CJK, other scripts and emoji.
pub fn mixed(len: usize) -> String {
    text_from(&[ENGLISH, CODE, OTHER_SCRIPTS, OTHER_SCRIPTS], 2, len)
}

/// Source code only, about `len` bytes.
pub fn code(len: usize) -> String {
    text_from(&[CODE], 3, len)
}

/// Text in non-Latin scripts and emoji only, about `len` bytes.
pub fn other_scripts(len: usize) -> String {
    text_from(&[OTHER_SCRIPTS], 4, len)
}

/// `n` content deltas as a model streams them: mostly one word with its leading space, some
/// punctuation, pieces of code, a few CJK characters or an emoji; about 1 to 3 tokens each.
pub fn deltas(n: usize) -> Vec<String> {
    let text = mixed(64 * 1024);
    let chars: Vec<char> = text.chars().collect();
    let mut rng = Lcg::new(5);
    let mut out = Vec::with_capacity(n);
    let mut at = 0usize;
    while out.len() < n {
        if at >= chars.len() {
            at = 0;
        }
        let start = at;
        // A leading space belongs to the word after it, as in BPE vocabularies.
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        let take = if chars.get(at).is_some_and(|c| !c.is_ascii()) {
            1 + rng.below(3)
        } else {
            chars
                .iter()
                .skip(at)
                .take_while(|c| c.is_ascii_alphanumeric())
                .count()
                .clamp(1, 12)
        };
        at = (at + take).min(chars.len());
        out.push(chars.get(start..at).unwrap_or_default().iter().collect());
    }
    out
}

/// A 32-byte content delta (one of the deltas a code answer streams).
pub const DELTA_32: &str = " the upstream's `read_timeout` (";

/// Strings whose token counts must agree between tokenizer implementations: edge cases
/// written by hand, then slices of generated text at arbitrary character offsets and lengths.
pub fn parity_corpus() -> Vec<String> {
    let mut out: Vec<String> = [
        "",
        " ",
        "  ",
        "\n",
        "\n\n\n",
        "\r\n",
        "\t\t\t",
        "                                                                ",
        "a   b\t\tc\n\n\nd    ",
        "trailing spaces   ",
        "   leading spaces",
        "hello world",
        "Hello, world!",
        "<|endoftext|>",
        "<|endoftext|><|fim_prefix|><|fim_middle|><|fim_suffix|><|endofprompt|>",
        "text <|im_start|>user\nhi<|im_end|> more",
        "<|start|>assistant<|message|>",
        "0",
        "1234567890",
        "3.14159265358979323846264338327950288419716939937510",
        "-0.000001e-10",
        "2024-11-22T10:53:25Z",
        "+1 (555) 010-9999",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "Supercalifragilisticexpialidocious",
        "antidisestablishmentarianism's",
        "donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
        "I'm you're we've they'll she'd it's DON'T WON'T",
        "😀",
        "👨‍👩‍👧‍👦",
        "🇺🇸🇫🇷",
        "👍🏽",
        "❤️",
        "\u{200d}\u{200d}",
        "\u{feff}bom",
        "e\u{301}",
        "é",
        "你好，世界",
        "日本語のテキスト",
        "한국어 텍스트",
        "مرحبا بالعالم",
        "שלום עולם",
        "Привет, мир",
        "नमस्ते दुनिया",
        "ภาษาไทย",
        "mixed: abc 你好 123 😀 Привет",
        "https://example.com/path?query=1&other=two#frag",
        "user@example.com",
        "C:\\Users\\admin\\file.txt",
        "SGVsbG8gV29ybGQhIFRoaXMgaXMgYmFzZTY0IGVuY29kZWQgdGV4dA==",
        "0x7fffffffffffffff 0b1010 0o777",
        "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0",
        "!!!???...,,,;;;:::",
        "```rust\nfn main() {}\n```",
        "{\"key\": [1, 2, {\"nested\": null}]}",
        "\u{0}\u{1}\u{7f}",
        "\u{fffd}\u{fffd}",
        "Ünïcödé",
        "ﬁ ﬂ",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗̻",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let ws = [" ", "  ", "\n", " \n ", "\t", "   \n\n"];
    for (i, w) in ws.iter().enumerate() {
        out.push(format!("word{w}word"));
        out.push(format!("{w}x{w}"));
        out.push(w.repeat(i + 3));
    }
    out.push("a".repeat(1000));
    out.push("ab ".repeat(300));
    out.push("9".repeat(100));
    out.push("😀".repeat(50));
    out.push("的".repeat(200));
    out.push(" ".repeat(1000) + "x");

    // Slices of generated text of all kinds, at character boundaries.
    let sources = [
        english(20_000),
        mixed(20_000),
        code(20_000),
        other_scripts(20_000),
    ];
    let mut rng = Lcg::new(6);
    for i in 0..400 {
        let src = sources
            .get(i % sources.len())
            .map(String::as_str)
            .unwrap_or_default();
        let chars: Vec<char> = src.chars().collect();
        let start = rng.below(chars.len());
        let len = match rng.below(4) {
            0 => rng.below(8),
            1 => rng.below(64),
            2 => rng.below(512),
            _ => rng.below(4096),
        };
        let end = (start + len).min(chars.len());
        out.push(chars.get(start..end).unwrap_or_default().iter().collect());
    }
    out
}

/// What a request body mainly carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    English,
    Code,
    Mixed,
    OtherScripts,
    /// JSON records and log lines (tool results).
    Data,
}

impl Content {
    pub const ALL: [Content; 5] = [
        Content::English,
        Content::Code,
        Content::Mixed,
        Content::OtherScripts,
        Content::Data,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Content::English => "English",
            Content::Code => "code",
            Content::Mixed => "mixed",
            Content::OtherScripts => "CJK/other scripts/emoji",
            Content::Data => "logs/JSON data",
        }
    }

    fn text(self, seed: u64, len: usize) -> String {
        if self == Content::Data {
            return data(seed, len);
        }
        let sources: &[&[&str]] = match self {
            Content::English => &[ENGLISH],
            Content::Code => &[CODE],
            Content::Mixed => &[ENGLISH, CODE, OTHER_SCRIPTS, OTHER_SCRIPTS],
            Content::OtherScripts | Content::Data => &[OTHER_SCRIPTS],
        };
        text_from(sources, seed, len)
    }
}

/// The API a request body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions: `messages` with `role` and `content`.
    Chat,
    /// Chat Completions with content parts (`[{"type":"text","text":…}]`).
    ChatParts,
    /// Anthropic Messages: `system` plus `messages`.
    Messages,
    /// OpenAI Responses: `instructions` plus `input` items.
    Responses,
}

impl Api {
    pub const ALL: [Api; 4] = [Api::Chat, Api::ChatParts, Api::Messages, Api::Responses];

    pub fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::ChatParts => "chat (content parts)",
            Api::Messages => "anthropic messages",
            Api::Responses => "responses",
        }
    }
}

/// A request body of about `len` bytes: a system prompt and a conversation of `turns` user /
/// assistant messages whose text is `content`. The JSON is compact (what SDKs send).
pub fn request_body(api: Api, content: Content, len: usize, turns: usize) -> Vec<u8> {
    let turns = turns.max(1);
    let system = content.text(7, (len / 8).clamp(40, 2_000));
    let per_turn = len.saturating_sub(system.len() + 120) / turns;
    let messages: Vec<(&str, String)> = (0..turns)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            let text = content.text(100 + i as u64, per_turn.saturating_sub(40).max(1));
            (role, text)
        })
        .collect();
    let body = match api {
        Api::Chat => {
            let mut all = vec![json!({"role": "system", "content": system})];
            all.extend(
                messages
                    .iter()
                    .map(|(role, text)| json!({"role": role, "content": text})),
            );
            json!({"model": "gpt-4o", "messages": all, "stream": true, "stream_options": {"include_usage": true}})
        }
        Api::ChatParts => {
            let mut all = vec![json!({"role": "system", "content": system})];
            all.extend(messages.iter().map(
                |(role, text)| json!({"role": role, "content": [{"type": "text", "text": text}]}),
            ));
            json!({"model": "gpt-4.1-mini", "messages": all})
        }
        Api::Messages => {
            let all: Vec<Value> = messages
                .iter()
                .map(|(role, text)| json!({"role": role, "content": text}))
                .collect();
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": system, "messages": all})
        }
        Api::Responses => {
            let all: Vec<Value> = messages
                .iter()
                .map(|(role, text)| {
                    let kind = if *role == "user" {
                        "input_text"
                    } else {
                        "output_text"
                    };
                    json!({"role": role, "content": [{"type": kind, "text": text}]})
                })
                .collect();
            json!({"model": "gpt-5-mini", "instructions": system, "input": all})
        }
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The same JSON with every non-ASCII character written as `\uXXXX` escapes (what Python's
/// `json.dumps` does by default, so some SDKs send this).
pub fn ascii_escaped(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(body.len() * 2);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

/// The `(role, text)` pairs of a request body made by [`request_body`] (any of the APIs), for
/// the exact count `sluice_proto_llm::tokenize::count_chat_prompt` that the estimate is
/// measured against. A system prompt outside `messages` (Anthropic `system`, Responses
/// `instructions`) is one more message; content parts are joined.
pub fn prompt_messages(body: &[u8]) -> Vec<(String, String)> {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["system", "instructions"] {
        if let Some(text) = doc.get(key).and_then(Value::as_str) {
            out.push(("system".to_owned(), text.to_owned()));
        }
    }
    let messages = doc
        .get("messages")
        .or_else(|| doc.get("input"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for message in messages {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let text = match message.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        };
        out.push((role.to_owned(), text));
    }
    out
}
