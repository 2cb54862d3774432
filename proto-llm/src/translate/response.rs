//! Non-streaming response translation, stop-reason mapping and error bodies.

use serde::Serialize;
use serde_json::Value;

use super::chat::{ChatCompletion, ChatContent, ChatUsage};
use super::request::compact_arguments;
use super::{derive_id, to_json, Dropped, ResponseContext, TranslateError, Translated};
use crate::anthropic::{self, ContentBlock, ErrorEnvelope, MessageResponse, TextBlock};
use crate::error::{anthropic_error_body, openai_error_body};
use crate::responses::{
    IncompleteDetails, OutputContent, OutputItem, ResponseError, ResponseObject,
};
use crate::track::{Api, TrackedUsage};

/// Anthropic `stop_reason` -> Chat `finish_reason`.
///
/// `end_turn`, `stop_sequence` and `pause_turn` (the turn may be resumed; Chat has no such
/// state) -> `stop`; `max_tokens` and `model_context_window_exceeded` -> `length`; `tool_use` ->
/// `tool_calls`; `refusal` -> `content_filter`; anything newer -> `stop`.
pub fn finish_reason_of_stop_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Chat `finish_reason` -> Anthropic `stop_reason`: `length` -> `max_tokens`, `tool_calls` /
/// `function_call` -> `tool_use`, `content_filter` -> `refusal`, anything else -> `end_turn`.
pub fn stop_reason_of_finish_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The `chat.completion` object as this module writes it.
#[derive(Serialize)]
struct ChatCompletionOut<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut; 1],
    usage: ChatUsage,
}

#[derive(Serialize)]
struct ChoiceOut {
    index: u32,
    message: MessageOut,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut {
    role: &'static str,
    content: Option<String>,
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut>,
}

#[derive(Serialize)]
struct ToolCallOut {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut,
}

#[derive(Serialize)]
struct FunctionOut {
    name: String,
    arguments: String,
}

fn parse_upstream<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    what: &str,
) -> Result<T, TranslateError> {
    serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream(format!("The upstream sent an invalid {what}: {e}")))
}

/// Anthropic message -> `chat.completion`. Text blocks are joined into `content`, `tool_use`
/// blocks become `tool_calls`; thinking and server-tool blocks are dropped (reported). Usage:
/// `prompt_tokens` counts every input token (uncached, cache reads and cache writes),
/// `prompt_tokens_details.cached_tokens` the cache reads.
pub fn messages_response_to_chat(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<Translated, TranslateError> {
    let message: MessageResponse = parse_upstream(body, "Anthropic message")?;
    let mut dropped = Dropped::default();
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            ContentBlock::Text(TextBlock { text: t, .. }) => {
                text.get_or_insert_with(String::new).push_str(&t);
            }
            ContentBlock::ToolUse(call) => tool_calls.push(ToolCallOut {
                id: call.id,
                kind: "function",
                function: FunctionOut {
                    name: call.name,
                    arguments: compact_arguments(&call.input),
                },
            }),
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {
                dropped.note("thinking");
            }
            other => dropped.note(&format!("{} block", other.kind())),
        }
    }
    let finish_reason = finish_reason_of_stop_reason(message.stop_reason.as_deref().unwrap_or(""));
    // OpenAI sends `content: null` next to tool calls and a string otherwise.
    let content = match text {
        Some(text) => Some(text),
        None if tool_calls.is_empty() => Some(String::new()),
        None => None,
    };
    let out = ChatCompletionOut {
        id: derive_id("chatcmpl-", Some(&message.id), &ctx.id),
        object: "chat.completion",
        created: ctx.created,
        model: &ctx.model,
        choices: [ChoiceOut {
            index: 0,
            message: MessageOut {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason,
        }],
        usage: TrackedUsage::from(&message.usage).to_chat(),
    };
    Ok(Translated {
        body: to_json(&out),
        dropped: dropped.into_vec(),
        echo: None,
    })
}

/// The first choice of a `chat.completion`, read the way both Chat translators need it.
struct ChatAnswer {
    id: Option<String>,
    text: Option<String>,
    refusal: Option<String>,
    /// `(id, name, arguments)`.
    tool_calls: Vec<(String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<TrackedUsage>,
}

fn chat_answer(body: &[u8], dropped: &mut Dropped) -> Result<ChatAnswer, TranslateError> {
    let completion: ChatCompletion = parse_upstream(body, "chat completion")?;
    if completion.choices.len() > 1 {
        dropped.note("choices[1..]");
    }
    let choice = completion.choices.into_iter().next().unwrap_or_default();
    let message = choice.message;
    dropped.note_extra("message.", &message.extra);
    let text = match message.content {
        None => None,
        Some(ChatContent::Text(text)) => Some(text),
        Some(ChatContent::Parts(parts)) => Some(
            parts
                .into_iter()
                .filter_map(|p| p.text)
                .collect::<Vec<_>>()
                .concat(),
        ),
    };
    let tool_calls = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .filter_map(|call| {
            let function = call.function?;
            Some((call.id, function.name, function.arguments))
        })
        .collect();
    Ok(ChatAnswer {
        id: completion.id,
        text: text.filter(|t| !t.is_empty()),
        refusal: message.refusal.filter(|r| !r.is_empty()),
        tool_calls,
        finish_reason: choice.finish_reason,
        usage: completion.usage.as_ref().map(TrackedUsage::from),
    })
}

/// `chat.completion` -> Anthropic message: text and refusal -> text blocks, tool calls ->
/// `tool_use` blocks (arguments that are not a JSON object become `{}`, reported),
/// `stop_sequence: null`, usage split back into uncached input and cache reads / writes.
pub fn chat_response_to_messages(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<Translated, TranslateError> {
    let mut dropped = Dropped::default();
    let answer = chat_answer(body, &mut dropped)?;
    let mut content = Vec::new();
    for text in [answer.text, answer.refusal].into_iter().flatten() {
        content.push(ContentBlock::Text(TextBlock {
            text,
            cache_control: None,
        }));
    }
    for (id, name, arguments) in answer.tool_calls {
        let input = match serde_json::from_str::<Value>(&arguments) {
            Ok(input @ Value::Object(_)) => input,
            _ => {
                dropped.note("tool_calls[].function.arguments (not a JSON object)");
                Value::Object(serde_json::Map::new())
            }
        };
        content.push(ContentBlock::ToolUse(anthropic::ToolUseBlock {
            id,
            name,
            input,
            cache_control: None,
        }));
    }
    let stop_reason = stop_reason_of_finish_reason(answer.finish_reason.as_deref().unwrap_or(""));
    let message = MessageResponse {
        id: derive_id("msg_", answer.id.as_deref(), &ctx.id),
        kind: "message".to_owned(),
        role: "assistant".to_owned(),
        model: ctx.model.clone(),
        content,
        stop_reason: Some(stop_reason.to_owned()),
        stop_sequence: None,
        usage: answer.usage.unwrap_or_default().to_anthropic(),
    };
    Ok(Translated {
        body: to_json(&message),
        dropped: dropped.into_vec(),
        echo: None,
    })
}

/// How a Responses `response` ends.
pub(crate) fn responses_status(
    finish_reason: Option<&str>,
) -> (&'static str, Option<&'static str>) {
    match finish_reason {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// A `response` object with the request's echo fields.
pub(crate) fn response_object(
    id: String,
    status: &str,
    ctx: &ResponseContext,
    output: Vec<OutputItem>,
    usage: Option<TrackedUsage>,
) -> ResponseObject {
    let echo = &ctx.echo;
    ResponseObject {
        id,
        object: "response".to_owned(),
        created_at: ctx.created,
        status: status.to_owned(),
        error: None,
        incomplete_details: None,
        instructions: echo.instructions.clone(),
        max_output_tokens: echo.max_output_tokens,
        model: ctx.model.clone(),
        output,
        parallel_tool_calls: echo.parallel_tool_calls,
        previous_response_id: None,
        reasoning: echo.reasoning.clone(),
        temperature: echo.temperature,
        text: echo.text.clone(),
        tool_choice: echo.tool_choice.clone(),
        tools: echo.tools.clone(),
        top_p: echo.top_p,
        truncation: "disabled".to_owned(),
        usage: usage.map(|u| u.to_responses()),
        user: echo.user.clone(),
        metadata: echo.metadata.clone(),
    }
}

/// `fc_...` id of the function call item for the chat tool call `call_id` (or position `i`).
pub(crate) fn function_item_id(response_id: &str, call_id: &str, i: usize) -> String {
    if call_id.is_empty() {
        let bare = response_id.strip_prefix("resp_").unwrap_or(response_id);
        format!("fc_{bare}_{i}")
    } else {
        derive_id("fc_", Some(call_id), "")
    }
}

/// `chat.completion` -> Responses `response`: a `message` item with the text (or refusal) and
/// one `function_call` item per tool call; `status: incomplete` with
/// `incomplete_details.reason: max_output_tokens` when the chat answer hit its length limit.
/// The request's fields come back from [`ResponseContext::echo`].
pub fn chat_response_to_responses(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<Translated, TranslateError> {
    let mut dropped = Dropped::default();
    let answer = chat_answer(body, &mut dropped)?;
    let id = derive_id("resp_", answer.id.as_deref(), &ctx.id);
    let (status, incomplete) = responses_status(answer.finish_reason.as_deref());
    let item_status = if status == "incomplete" {
        "incomplete"
    } else {
        "completed"
    };
    let mut output = Vec::new();
    let mut content = Vec::new();
    if let Some(text) = answer.text {
        content.push(OutputContent::OutputText {
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        });
    }
    if let Some(refusal) = answer.refusal {
        content.push(OutputContent::Refusal { refusal });
    }
    if !content.is_empty() || answer.tool_calls.is_empty() {
        output.push(OutputItem::Message {
            id: derive_id("msg_", Some(&id), &ctx.id),
            status: item_status.to_owned(),
            role: "assistant".to_owned(),
            content,
        });
    }
    for (i, (call_id, name, arguments)) in answer.tool_calls.into_iter().enumerate() {
        output.push(OutputItem::FunctionCall {
            id: function_item_id(&id, &call_id, i),
            call_id,
            name,
            arguments,
            status: "completed".to_owned(),
        });
    }
    let mut response = response_object(id, status, ctx, output, answer.usage);
    response.incomplete_details = incomplete.map(|reason| IncompleteDetails {
        reason: reason.to_owned(),
    });
    Ok(Translated {
        body: to_json(&response),
        dropped: dropped.into_vec(),
        echo: None,
    })
}

/// The error type and message of an error body in any of the APIs' shapes.
struct UpstreamError {
    kind: Option<String>,
    message: Option<String>,
}

fn read_error(body: &[u8]) -> UpstreamError {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return UpstreamError {
            kind: None,
            message: (!text.is_empty()).then(|| truncate(text, 1000).to_owned()),
        };
    };
    // Both shapes keep the details under `error`; some servers put a bare string there.
    let error = value.get("error").unwrap_or(&value);
    if let Some(message) = error.as_str() {
        return UpstreamError {
            kind: None,
            message: Some(message.to_owned()),
        };
    }
    let envelope: ErrorEnvelope = serde_json::from_value(value.clone()).unwrap_or_default();
    let field = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    UpstreamError {
        kind: field("type").or((!envelope.error.kind.is_empty()).then_some(envelope.error.kind)),
        message: field("message"),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
}

/// Anthropic's error `type` for an HTTP status.
pub fn anthropic_error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// OpenAI's error `type` for an HTTP status.
pub fn openai_error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Anthropic error type -> OpenAI error type.
fn openai_type_of_anthropic(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "invalid_request_error" | "request_too_large" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" => "rate_limit_error",
        "billing_error" => "insufficient_quota",
        "api_error" | "overloaded_error" | "timeout_error" => "server_error",
        _ => return None,
    })
}

/// OpenAI error type -> Anthropic error type.
fn anthropic_type_of_openai(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "invalid_request_error" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" | "tokens" | "requests" => "rate_limit_error",
        "insufficient_quota" => "billing_error",
        "server_error" => "api_error",
        _ => return None,
    })
}

/// An upstream error body (`upstream`'s shape, any status) rewritten in the client's shape.
///
/// The HTTP status is kept as it is (the caller sends the upstream's): clients retry on 429 and
/// 5xx whatever the body says, and Anthropic's 529 is a 5xx to OpenAI clients too. The type
/// follows the body when it names one the other side has, else the status. For an OpenAI
/// client the original Anthropic type goes into `code` (`overloaded_error` stays visible). A
/// body that is not JSON becomes the message (cut at 1000 bytes); an empty one, a message
/// naming the status.
pub fn error_body(upstream: Api, client: Api, status: u16, body: &[u8]) -> Vec<u8> {
    let error = read_error(body);
    let message = error
        .message
        .unwrap_or_else(|| format!("The upstream returned HTTP {status}."));
    let kind = error.kind.as_deref();
    let client_is_openai = matches!(client, Api::ChatCompletions | Api::Responses);
    let upstream_is_openai = matches!(upstream, Api::ChatCompletions | Api::Responses);
    match (upstream_is_openai, client_is_openai) {
        (false, true) => {
            let openai_type = kind
                .and_then(openai_type_of_anthropic)
                .unwrap_or_else(|| openai_error_type_for_status(status));
            openai_error_body(&message, openai_type, None, kind)
        }
        (true, false) => {
            let anthropic_type = kind
                .and_then(anthropic_type_of_openai)
                .unwrap_or_else(|| anthropic_error_type_for_status(status));
            anthropic_error_body(anthropic_type, &message)
        }
        (true, true) => {
            let openai_type = kind.unwrap_or_else(|| openai_error_type_for_status(status));
            openai_error_body(&message, openai_type, None, None)
        }
        (false, false) => {
            let anthropic_type = kind.unwrap_or_else(|| anthropic_error_type_for_status(status));
            anthropic_error_body(anthropic_type, &message)
        }
    }
}

/// A Responses `error.code` for an upstream error type (the SDK knows a fixed list).
pub(crate) fn responses_error(kind: &str, message: &str) -> ResponseError {
    let code = match kind {
        "rate_limit_error" | "rate_limit_exceeded" => "rate_limit_exceeded",
        "invalid_request_error" | "invalid_prompt" => "invalid_prompt",
        _ => "server_error",
    };
    ResponseError {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn stop_reasons_both_ways() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("something_new", "stop"),
        ] {
            assert_eq!(finish_reason_of_stop_reason(stop), finish, "{stop}");
        }
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
            ("", "end_turn"),
        ] {
            assert_eq!(stop_reason_of_finish_reason(finish), stop, "{finish}");
        }
    }

    #[test]
    fn error_bodies_cross_over() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let out = parse(&error_body(
            Api::Messages,
            Api::ChatCompletions,
            529,
            anthropic,
        ));
        assert_eq!(
            out,
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null,
                             "code": "overloaded_error"}})
        );
        let openai = br#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;
        let out = parse(&error_body(
            Api::ChatCompletions,
            Api::Messages,
            429,
            openai,
        ));
        assert_eq!(
            out,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
        );
        // vLLM-style errors without a known type fall back to the status.
        let vllm = br#"{"object":"error","message":"bad things","type":"BadRequestError","param":null,"code":400}"#;
        let out = parse(&error_body(Api::ChatCompletions, Api::Messages, 400, vllm));
        assert_eq!(out["error"]["type"], "invalid_request_error");
        assert_eq!(out["error"]["message"], "bad things");
        let out = parse(&error_body(
            Api::Messages,
            Api::Responses,
            502,
            b"<html>bad gateway</html>",
        ));
        assert_eq!(out["error"]["message"], "<html>bad gateway</html>");
        assert_eq!(out["error"]["type"], "server_error");
        let out = parse(&error_body(Api::ChatCompletions, Api::Messages, 503, b""));
        assert_eq!(out["error"]["message"], "The upstream returned HTTP 503.");
        assert_eq!(out["error"]["type"], "api_error");
        let out = parse(&error_body(
            Api::ChatCompletions,
            Api::Messages,
            500,
            br#"{"error":"boom"}"#,
        ));
        assert_eq!(out["error"]["message"], "boom");
    }
}
