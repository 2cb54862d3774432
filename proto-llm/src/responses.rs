//! OpenAI Responses API (`POST /v1/responses`) wire types.
//!
//! The request side is tolerant the same way as [`crate::anthropic`]: unknown top-level fields
//! land in `extra`, input items are one flat struct whose `type` (absent for the "easy" message
//! form) decides which fields matter, tools keep their unknown fields so they can be echoed.
//!
//! The response side ([`ResponseObject`], [`OutputItem`], [`Usage`]) is written by the
//! translators and follows the openai SDK's `Response` model: every field the model requires is
//! always present.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/responses` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    /// The model to call.
    pub model: String,
    /// A string (one user message) or a list of input items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// A system (developer) message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Function tools and hosted tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `none` / `auto` / `required` or an object (open shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Allow several tool calls per turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output cap, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// `true` for an SSE response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `text.format` (structured output) and `text.verbosity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// `{"effort": .., "summary": ..}` (open shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    /// Continue a stored response (needs server-side state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Store the response server-side (defaults to `true` at OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Key-value pairs attached to the response (open shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other top-level field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Names of the fields [`ResponsesRequest`] reads, for error reporting.
pub const REQUEST_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "text",
    "reasoning",
    "previous_response_id",
    "store",
    "metadata",
    "user",
];

/// `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Messages, function calls, function call outputs, reasoning items, ...
    Items(Vec<InputItem>),
}

/// One input item. `kind` is `None` for the "easy" message form (`{"role","content"}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputItem {
    /// `message`, `function_call`, `function_call_output`, `reasoning`, `item_reference`, ...
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Item id (output items sent back as input carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Message role: `user`, `assistant`, `system`, `developer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Message content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Function call / output id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// Function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Function arguments (a JSON string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// Function call output: a string or content parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Content>,
    /// Other fields (`status`, `phase`, `encrypted_content`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InputItem {
    /// The item type, `message` for the easy form.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("message")
    }
}

/// Message content or function output: a string or parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// A content part: `input_text`, `output_text`, `input_image`, `input_file`, `refusal`, ...
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `input_text` / `output_text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `refusal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// `input_image`: a URL or a `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// `input_image` / `input_file`: an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// `input_image` detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `input_file`: base64 data (a `data:` URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// `input_file`: the file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool: `function` (name, parameters, ...) or a hosted tool (other fields in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function`, `web_search`, `file_search`, `mcp`, `custom`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the function does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Other fields, kept so the tool can be echoed as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `text` of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// `{"type":"text"}`, `{"type":"json_object"}` or
    /// `{"type":"json_schema","name","schema","strict","description"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// `low` / `medium` / `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `response` object: the non-streaming body and the payload of the lifecycle events
/// (`response.created`, `.in_progress`, `.completed`, `.incomplete`, `.failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    /// `resp_...`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete`, `failed`.
    pub status: String,
    /// Set when `status` is `failed`.
    pub error: Option<ResponseError>,
    /// Set when `status` is `incomplete`.
    pub incomplete_details: Option<IncompleteDetails>,
    /// Echo of the request.
    pub instructions: Option<String>,
    /// Echo of the request.
    pub max_output_tokens: Option<u64>,
    /// The model name shown to the client.
    pub model: String,
    /// Generated items.
    pub output: Vec<OutputItem>,
    /// Echo of the request (default `true`).
    pub parallel_tool_calls: bool,
    /// Always `null`: the gateway is stateless.
    pub previous_response_id: Option<String>,
    /// Echo of the request.
    pub reasoning: Option<Value>,
    /// Echo of the request.
    pub temperature: Option<f64>,
    /// Echo of the request (default `{"format":{"type":"text"}}`).
    pub text: Value,
    /// Echo of the request (default `auto`).
    pub tool_choice: Value,
    /// Echo of the request.
    pub tools: Vec<Value>,
    /// Echo of the request.
    pub top_p: Option<f64>,
    /// Always `disabled`.
    pub truncation: String,
    /// Token counts; `null` until the end, or when the upstream gave none.
    pub usage: Option<Usage>,
    /// Echo of the request.
    pub user: Option<String>,
    /// Echo of the request (default `{}`).
    pub metadata: Value,
}

/// `error` of a failed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// One of the SDK's codes (`server_error`, `rate_limit_exceeded`, ...).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// `incomplete_details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

/// An output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// An assistant message.
    Message {
        /// `msg_...`.
        id: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: String,
        /// Always `assistant`.
        role: String,
        /// Text and refusal parts.
        content: Vec<OutputContent>,
    },
    /// A function call.
    FunctionCall {
        /// `fc_...`.
        id: String,
        /// The id the client answers with a `function_call_output`.
        call_id: String,
        /// The function.
        name: String,
        /// Arguments, a JSON string.
        arguments: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: String,
    },
}

/// A part of an output message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    /// Text.
    OutputText {
        /// The text.
        text: String,
        /// Always empty here.
        annotations: Vec<Value>,
        /// Always empty here.
        logprobs: Vec<Value>,
    },
    /// A refusal.
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub input_tokens: u64,
    /// Cache details.
    pub input_tokens_details: InputTokensDetails,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// Reasoning details.
    pub output_tokens_details: OutputTokensDetails,
    /// Input plus output.
    pub total_tokens: u64,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputTokensDetails {
    /// Input tokens read from the prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (the SDK requires the field).
    pub cache_write_tokens: u64,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputTokensDetails {
    /// Reasoning tokens (a part of `output_tokens`).
    pub reasoning_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_items_of_every_form() {
        let body = json!({
            "model": "gpt-4.1",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"}
                ]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "zzz"},
                {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "42"}
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true},
                      {"type": "web_search", "search_context_size": "low"}],
            "include": ["reasoning.encrypted_content"]
        });
        let req: ResponsesRequest = serde_json::from_value(body.clone()).unwrap();
        let Some(Input::Items(items)) = &req.input else {
            panic!("items expected")
        };
        let kinds: Vec<&str> = items.iter().map(InputItem::kind).collect();
        assert_eq!(
            kinds,
            [
                "message",
                "message",
                "reasoning",
                "function_call",
                "function_call_output"
            ]
        );
        assert_eq!(items[2].extra.get("encrypted_content"), Some(&json!("zzz")));
        assert!(req.extra.contains_key("include"));
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }
}
