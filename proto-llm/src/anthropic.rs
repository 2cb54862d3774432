//! Anthropic Messages API (`POST /v1/messages`) wire types.
//!
//! Requests and responses are owned serde types, tolerant of what they do not know: unknown
//! top-level request fields land in `extra` (so a caller can report or forward them), unknown
//! content block types in [`ContentBlock::Other`], unknown fields inside known objects are
//! ignored. Shapes that are open by design (tool schemas, tool inputs, `thinking`) stay
//! [`serde_json::Value`].
//!
//! Stream events are read with [`StreamEvent`], one flat struct for every event type that
//! borrows its strings from the frame, so reading a `text_delta` does not allocate unless the
//! text has escapes. An event type this module does not know is still a valid `StreamEvent`
//! (only `type` is required); the caller decides what to do with it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// `POST /v1/messages` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model to call.
    pub model: String,
    /// The conversation, alternating `user` / `assistant` turns.
    #[serde(default)]
    pub messages: Vec<InputMessage>,
    /// Top-level system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Required by the API; optional here so a translator can supply a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// `{"user_id": ..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// `true` for an SSE response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling (no Chat Completions equivalent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// Client tools (`input_schema`) and server tools (a versioned `type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking configuration (open shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// `{"format": {"type": "json_schema", "schema": ..}, "effort": ..}` (open shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Value>,
    /// Every other top-level field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Names of the fields [`MessagesRequest`] reads, for error reporting.
pub const REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
];

/// `metadata` of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `system`: a string or text blocks (blocks can carry `cache_control`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Plain text.
    Text(String),
    /// Blocks; the API accepts only `text` ones.
    Blocks(Vec<ContentBlock>),
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (tool results included).
    User,
    /// The model.
    Assistant,
    /// A system message inside `messages` (newer API versions accept it there).
    System,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    /// `user`, `assistant` (or `system`).
    pub role: Role,
    /// A string or content blocks.
    pub content: MessageContent,
}

/// Message content: a string is shorthand for one text block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

/// A content block, in requests and responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// `text`.
    Text(TextBlock),
    /// `image`.
    Image(MediaBlock),
    /// `document` (PDF or plain text).
    Document(MediaBlock),
    /// `tool_use`: the model calls a client tool.
    ToolUse(ToolUseBlock),
    /// `tool_result`: the client answers a `tool_use`.
    ToolResult(ToolResultBlock),
    /// `thinking`: extended thinking with its signature.
    Thinking(ThinkingBlock),
    /// `redacted_thinking`.
    RedactedThinking(RedactedThinkingBlock),
    /// Any other block (server tool blocks, search results, newer types), kept as sent.
    #[serde(untagged)]
    Other(Value),
}

impl ContentBlock {
    /// The block's `type`, for reports.
    pub fn kind(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Image(_) => "image",
            Self::Document(_) => "document",
            Self::ToolUse(_) => "tool_use",
            Self::ToolResult(_) => "tool_result",
            Self::Thinking(_) => "thinking",
            Self::RedactedThinking(_) => "redacted_thinking",
            Self::Other(value) => value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
        }
    }
}

/// `{"type":"text","text":..}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    /// The text.
    pub text: String,
    /// Prompt-cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `image` / `document` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaBlock {
    /// Where the bytes are.
    pub source: MediaSource,
    /// Prompt-cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `source` of an image or document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MediaSource {
    /// Inline base64 data.
    Base64 {
        /// `image/png`, `application/pdf`, ...
        media_type: String,
        /// Base64 of the bytes.
        data: String,
    },
    /// A URL the API fetches.
    Url {
        /// The URL.
        url: String,
    },
    /// `file`, `text`, `content` and newer sources, kept as sent.
    #[serde(untagged)]
    Other(Value),
}

/// `{"type":"tool_use","id","name","input"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    /// `toolu_...`.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments: a JSON object.
    #[serde(default)]
    pub input: Value,
    /// Prompt-cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `{"type":"tool_result","tool_use_id","content","is_error"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    /// The `tool_use` this answers.
    pub tool_use_id: String,
    /// The result: a string or blocks (text, image, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// The tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Prompt-cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `{"type":"thinking","thinking","signature"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    /// The (possibly summarised) reasoning.
    #[serde(default)]
    pub thinking: String,
    /// Opaque signature the API checks when the block is sent back.
    #[serde(default)]
    pub signature: String,
}

/// `{"type":"redacted_thinking","data"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    /// Encrypted reasoning.
    #[serde(default)]
    pub data: String,
}

/// A tool: a client tool (`input_schema`, `type` absent or `custom`) or a server tool
/// (`type` such as `web_search_20250305`, other fields in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `custom` or a server tool's versioned type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The tool's name.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the input (client tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Prompt-cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Other fields (server tool settings, newer options).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Tool {
    /// A tool the client implements (as opposed to a server tool Anthropic runs).
    pub fn is_client_tool(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool, for `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At most one tool call per turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// A non-streaming response (`"type":"message"`), also the `message` of `message_start`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageResponse {
    /// `msg_...`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// The model that answered.
    pub model: String,
    /// The answer.
    pub content: Vec<ContentBlock>,
    /// Why the model stopped (`null` in `message_start`).
    pub stop_reason: Option<String>,
    /// The stop sequence that matched.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: Usage,
}

/// `usage` of a message (and, with every field optional but `output_tokens`, of
/// `message_delta`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Input tokens that were neither read from nor written to the prompt cache.
    pub input_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Output tokens (thinking included).
    pub output_tokens: u64,
    /// `{"thinking_tokens": n}`: how much of the output was reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputTokensDetails {
    /// Reasoning tokens (a part of `output_tokens`).
    pub thinking_tokens: u64,
}

/// `{"type":"error","error":{"type","message"}}`: an error body, also the `error` stream event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEnvelope {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: ErrorDetail,
}

/// `error` of an [`ErrorEnvelope`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    pub message: String,
}

/// `Option<Cow<str>>` that borrows from the input when it can (serde borrows a `Cow` only when
/// it is the field's whole type, so the option needs a hand).
pub(crate) fn opt_cow<'de, D>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'de>>::deserialize(deserializer)?.map(|b| b.0))
}

/// One stream event, every type in one flat struct; fields an event type does not have are
/// `None`. Strings borrow from the frame where they have no escapes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamEvent<'a> {
    /// `message_start`, `content_block_delta`, ... or a type this module does not know.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Content block index (`content_block_*`).
    #[serde(default)]
    pub index: Option<u64>,
    /// `message_start.message`.
    #[serde(default)]
    pub message: Option<StartMessage<'a>>,
    /// `content_block_start.content_block`.
    #[serde(default, borrow)]
    pub content_block: Option<EventBlock<'a>>,
    /// `content_block_delta.delta` or `message_delta.delta`.
    #[serde(default, borrow)]
    pub delta: Option<EventDelta<'a>>,
    /// `message_delta.usage` (cumulative).
    #[serde(default, borrow)]
    pub usage: Option<&'a RawValue>,
    /// `error.error`.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// What a stream translator needs of `message_start.message`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StartMessage<'a> {
    /// `msg_...`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    /// The model that answers.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub model: Option<Cow<'a, str>>,
}

/// `content_block_start.content_block`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventBlock<'a> {
    /// `text`, `tool_use`, `thinking`, ...
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `tool_use.id`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    /// `tool_use.name`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    /// Initial text of a `text` block (normally empty).
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub text: Option<Cow<'a, str>>,
}

/// `content_block_delta.delta` (typed) or `message_delta.delta` (no `type`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventDelta<'a> {
    /// `text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`, ...
    #[serde(rename = "type", default, borrow, deserialize_with = "opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    /// `text_delta.text`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub text: Option<Cow<'a, str>>,
    /// `input_json_delta.partial_json`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub partial_json: Option<Cow<'a, str>>,
    /// `message_delta.delta.stop_reason`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub stop_reason: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trips_and_keeps_unknown_fields() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
                ]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            "tool_choice": {"type": "auto"},
            "future_field": {"x": 1}
        });
        let req: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra.get("future_field"), Some(&json!({"x": 1})));
        let tools = req.tools.as_ref().unwrap();
        assert!(tools[0].is_client_tool());
        assert!(!tools[1].is_client_tool());
        assert_eq!(tools[1].extra.get("max_uses"), Some(&json!(3)));
        let MessageContent::Blocks(blocks) = &req.messages[1].content else {
            panic!("blocks expected");
        };
        assert_eq!(
            blocks.iter().map(ContentBlock::kind).collect::<Vec<_>>(),
            ["thinking", "tool_use", "server_tool_use"]
        );
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn stream_events_borrow_and_tolerate_unknown_types() {
        let data = br#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"hi"}}"#;
        let event: StreamEvent<'_> = serde_json::from_slice(data).unwrap();
        let delta = event.delta.unwrap();
        assert!(matches!(delta.text, Some(Cow::Borrowed("hi"))));
        assert_eq!(event.index, Some(1));

        let data = br#"{"type":"brand_new_event","payload":{"deep":[1,2]}}"#;
        let event: StreamEvent<'_> = serde_json::from_slice(data).unwrap();
        assert_eq!(event.kind, "brand_new_event");

        let data =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let event: StreamEvent<'_> = serde_json::from_slice(data).unwrap();
        assert_eq!(event.error.unwrap().kind, "overloaded_error");
    }
}
