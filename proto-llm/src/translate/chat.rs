//! OpenAI Chat Completions wire types, as far as translation needs them.
//!
//! The native Chat path never parses a whole request (see [`crate::request`]); these types exist
//! for the other two APIs' translators. Requests are owned and tolerant (unknown fields land in
//! `extra`); stream chunks borrow their strings from the frame.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model to call.
    pub model: String,
    /// The conversation.
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    /// Output cap (older name, widest server support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Output cap (newer name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// `true` for an SSE response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `{"include_usage": bool}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// A stop sequence or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Tools (`{"type":"function","function":{..}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ChatTool>>,
    /// `none` / `auto` / `required` or `{"type":"function","function":{"name"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Allow several tool calls per turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `{"type":"text" | "json_object" | "json_schema", ..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// `minimal` / `low` / `medium` / `high` (reasoning models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Every other top-level field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Names of the fields [`ChatRequest`] reads, for error reporting.
pub const REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "response_format",
    "reasoning_effort",
];

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Other options.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// A message of any role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant`, `tool` (or the deprecated `function`).
    pub role: String,
    /// A string or content parts; `null` on assistant messages with tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ChatContent>,
    /// A participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Assistant tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ChatToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Assistant refusal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Other fields (`reasoning_content`, `audio`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatContent {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ChatPart>),
}

/// A content part: `text`, `image_url`, `file`, `refusal`, `input_audio`, ...
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatPart {
    /// The part type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `refusal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// `image_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    /// `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    /// Anthropic-style prompt-cache breakpoint some clients put on parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatPart {
    /// A `text` part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: "text".to_owned(),
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// An `image_url` part.
    pub fn image(url: impl Into<String>) -> Self {
        Self {
            kind: "image_url".to_owned(),
            image_url: Some(ImageUrl {
                url: url.into(),
                detail: None,
            }),
            ..Self::default()
        }
    }
}

/// `image_url` of a part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `auto` / `low` / `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `file` of a part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    /// `data:application/pdf;base64,...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// An uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// An assistant tool call (request history and non-streaming responses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatToolCall {
    /// `call_...`.
    #[serde(default)]
    pub id: String,
    /// `function` (or `custom`).
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall>,
}

fn function_kind() -> String {
    "function".to_owned()
}

/// `function` of a tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function.
    #[serde(default)]
    pub name: String,
    /// Arguments, a JSON string.
    #[serde(default)]
    pub arguments: String,
}

/// A tool definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    /// `function` (or `custom`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
    /// Other fields (`custom`, `cache_control`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `function` of a tool definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// The function's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A non-streaming `chat.completion` body (what the response translators read).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: Option<String>,
    /// The choices; translators read the first.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Option<ChatUsage>,
}

/// A choice of a [`ChatCompletion`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ChatChoice {
    /// The answer.
    pub message: ChatMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`.
    pub finish_reason: Option<String>,
}

/// Chat `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatUsage {
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// All output tokens, reasoning included.
    pub completion_tokens: u64,
    /// Input plus output.
    pub total_tokens: u64,
    /// Cache details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Reasoning details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptTokensDetails {
    /// Input tokens read from the prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (only some servers report it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens (a part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

/// A `chat.completion.chunk`, as far as the stream translators read it. `usage` is read
/// separately (by [`crate::track::UsageTracker`]) so that an odd usage shape never hides the
/// content of the chunk.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChatChunk<'a> {
    /// `chatcmpl-...`.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub id: Option<Cow<'a, str>>,
    /// `[]` on a usage chunk, `null` on vLLM's.
    #[serde(borrow)]
    pub choices: Option<Vec<ChunkChoice<'a>>>,
    /// An error reported inside a 200 stream: an object or, on some servers, a string.
    pub error: Option<Value>,
}

/// A choice of a chunk.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChunkChoice<'a> {
    /// The choice index; translators read choice 0.
    pub index: u64,
    /// What is new.
    #[serde(borrow)]
    pub delta: Option<ChunkDelta<'a>>,
    /// Set on the last content chunk.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// `delta` of a chunk choice.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChunkDelta<'a> {
    /// Text.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub content: Option<Cow<'a, str>>,
    /// Refusal text.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub refusal: Option<Cow<'a, str>>,
    /// Reasoning text (DeepSeek, vLLM: `reasoning_content`).
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// Reasoning text (other servers: `reasoning`).
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub reasoning: Option<Cow<'a, str>>,
    /// Tool call fragments.
    #[serde(borrow)]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

/// A tool call fragment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ToolCallDelta<'a> {
    /// Which tool call (several may stream at once).
    pub index: Option<u64>,
    /// Set on the first fragment of a call.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub id: Option<Cow<'a, str>>,
    /// Name and arguments fragment.
    #[serde(borrow)]
    pub function: Option<FunctionDelta<'a>>,
}

/// `function` of a tool call fragment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FunctionDelta<'a> {
    /// Set on the first fragment of a call.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub name: Option<Cow<'a, str>>,
    /// A piece of the arguments JSON.
    #[serde(borrow, deserialize_with = "crate::anthropic::opt_cow")]
    pub arguments: Option<Cow<'a, str>>,
}
