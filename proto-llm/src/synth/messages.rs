//! Anthropic Messages (`POST /v1/messages`): request parsing, the message body and the
//! `event:` stream.
//!
//! Field order follows the real API: `id, type, role, model, content, stop_reason,
//! stop_sequence, usage`, and in `usage` `input_tokens, cache_creation_input_tokens,
//! cache_read_input_tokens, cache_creation, output_tokens, service_tier`. The stream sends one
//! `ping` after the first `content_block_start`, as the real API does, and `message_delta`
//! carries the cumulative usage.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{end_frame, start_event, write_json_str, write_opt_str, write_token, write_u64};
use super::openai::{check_tool_choice, content_text, tool_name};
use super::tools::{definitions, Tool, ToolChoice};
use super::words::{push_line, word_count};
use super::{
    hash, invalid_type, unparsable, Content, Conversation, Endpoint, FrameKind, Kind, Reply,
    ReplySpec, SynthError, SynthRequest,
};
use crate::request;

#[derive(Deserialize)]
struct Fields {
    messages: Option<Value>,
    system: Option<Value>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Value>,
    stop_sequences: Option<Value>,
}

pub(super) fn parse(body: &[u8], tokens: Option<u64>) -> Result<SynthRequest, SynthError> {
    // model, stream and max_tokens: the same reading as the gateway's.
    let info = request::inspect(body)?;
    let fields: Fields = serde_json::from_slice(body).map_err(|e| unparsable(&e))?;
    let max_tokens = match info.max_tokens {
        None => return Err(SynthError::bad("max_tokens: Field required", "max_tokens")),
        Some(0) => {
            return Err(SynthError::bad(
                "max_tokens: Input should be greater than or equal to 1",
                "max_tokens",
            ))
        }
        Some(n) => n,
    };
    let mut conversation = messages(fields.messages)?;
    let system = system_text(fields.system)?;
    if let Some(system) = system {
        conversation.prompt_tokens = conversation
            .prompt_tokens
            .saturating_add(4)
            .saturating_add(word_count(&system));
    }
    let stop_sequences = stop_sequences(fields.stop_sequences)?;
    let tools = tools(fields.tools.as_deref())?;
    let choice = tool_choice(fields.tool_choice, &tools)?;
    let prompt_tokens = conversation.prompt_tokens;
    let reply = ReplySpec {
        conversation,
        tools: &tools,
        choice: &choice,
        tokens,
        max_tokens: Some(max_tokens),
        stop_sequences: &stop_sequences,
        choices: 1,
    }
    .build();
    Ok(SynthRequest {
        model: info.model,
        stream: info.stream,
        include_usage: false,
        omit_usage: false,
        endpoint: Endpoint::Messages,
        prompt_tokens,
        kind: Kind::Text(reply),
    })
}

fn bad(message: String, param: &'static str) -> SynthError {
    SynthError::bad(message, param)
}

/// `messages`: roles `user` / `assistant`; content a string or blocks (`text`, `image`,
/// `document`, `tool_use`, `tool_result`, `thinking`, ...). A user message made of
/// `tool_result` blocks at the end of the conversation is what the reply echoes.
fn messages(messages: Option<Value>) -> Result<Conversation, SynthError> {
    const P: &str = "messages";
    let messages = match messages {
        None | Some(Value::Null) => return Err(bad("messages: Field required".to_owned(), P)),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(bad("messages: Input should be a valid list".to_owned(), P)),
    };
    if messages.is_empty() {
        return Err(bad(
            "messages: at least one message is required".to_owned(),
            P,
        ));
    }
    let mut prompt_tokens = 3u64;
    let mut last_user = String::new();
    let mut results: Option<String> = None;
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(bad(
                format!("messages.{i}: Input should be a valid dictionary"),
                P,
            ));
        };
        let user = match message.get("role").and_then(Value::as_str) {
            Some("user") => true,
            Some("assistant") => false,
            _ => {
                return Err(bad(
                    format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                    P,
                ))
            }
        };
        let what = format!("messages.{i}");
        let content = message.get("content");
        let text = content_text(P, &what, content, &["text"])?;
        let tool_results = tool_results(&what, content)?;
        prompt_tokens = prompt_tokens
            .saturating_add(4)
            .saturating_add(word_count(&text))
            .saturating_add(tool_results.as_deref().map_or(0, word_count));
        if !user {
            results = None;
            continue;
        }
        if tool_results.is_none() || !text.is_empty() {
            last_user = text;
        }
        results = tool_results;
    }
    Ok(Conversation {
        last_user,
        tool_results: results,
        prompt_tokens,
    })
}

/// The text of the `tool_result` blocks of a message's content (a string or text blocks
/// each), joined by newlines; `None` when it has none.
fn tool_results(what: &str, content: Option<&Value>) -> Result<Option<String>, SynthError> {
    let Some(Value::Array(blocks)) = content else {
        return Ok(None);
    };
    let mut results: Option<String> = None;
    for (j, block) in blocks.iter().enumerate() {
        if block.get("type").and_then(Value::as_str) != Some("tool_result") {
            continue;
        }
        let text = content_text(
            "messages",
            &format!("{what}.content.{j}"),
            block.get("content"),
            &["text"],
        )?;
        push_line(results.get_or_insert_with(String::new), &text);
    }
    Ok(results)
}

/// `system`: a string or an array of text blocks.
fn system_text(system: Option<Value>) -> Result<Option<String>, SynthError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(v @ (Value::String(_) | Value::Array(_))) => {
            content_text("system", "system", Some(&v), &["text"]).map(Some)
        }
        Some(other) => Err(invalid_type(
            "system",
            "system",
            "a string or an array of text blocks",
            &other,
        )),
    }
}

fn stop_sequences(v: Option<Value>) -> Result<Vec<String>, SynthError> {
    const P: &str = "stop_sequences";
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                _ => Err(bad(
                    format!("stop_sequences.{i}: Input should be a valid string"),
                    P,
                )),
            })
            .collect(),
        Some(_) => Err(bad(
            "stop_sequences: Input should be a valid list".to_owned(),
            P,
        )),
    }
}

/// `tools`: custom tools `{"name":..,"input_schema":{..}}`; server and built-in tools (a
/// `type` other than `custom`) are accepted and never called.
fn tools(raw: Option<&RawValue>) -> Result<Vec<Tool>, SynthError> {
    #[derive(Deserialize)]
    struct Def {
        #[serde(rename = "type")]
        kind: Option<String>,
        name: Option<Value>,
        input_schema: Option<Box<RawValue>>,
    }
    let defs: Vec<Def> = definitions(raw, "tools: Input should be a valid list of tools")?;
    let mut tools = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        if def.kind.as_deref().is_some_and(|k| k != "custom") {
            continue;
        }
        tools.push(Tool {
            name: tool_name(def.name, &format!("tools.{i}.name"), "tools")?,
            schema: def.input_schema,
        });
    }
    Ok(tools)
}

/// `tool_choice`: `{"type":"auto"|"any"|"none"}` or `{"type":"tool","name":..}`.
fn tool_choice(choice: Option<Value>, tools: &[Tool]) -> Result<ToolChoice, SynthError> {
    const P: &str = "tool_choice";
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok(ToolChoice::Auto);
    };
    let choice = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Any,
        Some("none") => ToolChoice::None,
        Some("tool") => match choice.get("name") {
            Some(Value::String(name)) => ToolChoice::Named(name.clone()),
            _ => return Err(bad("tool_choice.tool.name: Field required".to_owned(), P)),
        },
        _ => {
            return Err(bad(
                "tool_choice: Input tag found using 'type' does not match any of the expected \
                 tags: 'auto', 'any', 'tool', 'none'"
                    .to_owned(),
                P,
            ))
        }
    };
    check_tool_choice(choice, tools)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// The `toolu_…` id of the reply's tool call.
fn tool_use_id(id: &str) -> String {
    hash::derived_id("toolu_01", id, 0)
}

/// `{"id":..,"type":"message","role":"assistant","model":..,"content":[` (array left open).
fn write_message_start(out: &mut Vec<u8>, req: &SynthRequest, id: &str) {
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, id);
    out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    write_json_str(out, &req.model);
    out.extend_from_slice(b",\"content\":[");
}

/// `,"usage":{..}` of a message (nothing with `omit_usage`).
fn write_usage(out: &mut Vec<u8>, req: &SynthRequest, output_tokens: u64) {
    if !req.usage_written() {
        return;
    }
    out.extend_from_slice(b",\"usage\":{\"input_tokens\":");
    write_u64(out, req.prompt_tokens());
    out.extend_from_slice(
        b",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\
          \"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":0},\
          \"output_tokens\":",
    );
    write_u64(out, output_tokens);
    out.extend_from_slice(b",\"service_tier\":\"standard\"}");
}

/// `"stop_reason":..,"stop_sequence":..`
fn write_stop(out: &mut Vec<u8>, reply: &Reply) {
    out.extend_from_slice(b"\"stop_reason\":");
    write_json_str(out, reply.finish.anthropic_str());
    out.extend_from_slice(b",\"stop_sequence\":");
    write_opt_str(out, reply.stop_sequence.as_deref());
}

/// The whole Message.
pub(super) fn body(req: &SynthRequest, reply: &Reply, id: &str) -> Vec<u8> {
    let text = reply.text();
    let mut out = Vec::with_capacity(384 + id.len() + req.model.len() + text.len());
    write_message_start(&mut out, req, id);
    match reply.tool() {
        Some(call) => {
            out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
            write_json_str(&mut out, &tool_use_id(id));
            out.extend_from_slice(b",\"name\":");
            write_json_str(&mut out, &call.name);
            out.extend_from_slice(b",\"input\":");
            // A call cut by max_tokens has no complete input to show.
            if reply.tokens >= call.fragments() {
                out.extend_from_slice(call.arguments.as_bytes());
            } else {
                out.extend_from_slice(b"{}");
            }
            out.push(b'}');
        }
        None => {
            out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
            write_json_str(&mut out, &text);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b"],");
    write_stop(&mut out, reply);
    write_usage(&mut out, req, req.completion_tokens());
    out.push(b'}');
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    MessageStart,
    BlockStart,
    Ping,
    Delta(u64),
    MessageDelta,
    MessageStop,
    End,
}

/// The events of a Messages stream.
#[derive(Debug, Clone)]
pub(super) struct Events {
    id: String,
    phase: Phase,
}

impl Events {
    pub(super) fn new(_req: &SynthRequest, id: &str) -> Self {
        Self {
            id: id.to_owned(),
            phase: Phase::MessageStart,
        }
    }

    pub(super) fn next(&mut self, req: &SynthRequest, out: &mut Vec<u8>) -> Option<FrameKind> {
        let reply = req.reply()?;
        let (kind, next) = match self.phase {
            Phase::MessageStart => {
                start_event(out, "message_start");
                out.extend_from_slice(b"{\"type\":\"message_start\",\"message\":");
                write_message_start(out, req, &self.id);
                out.extend_from_slice(b"],\"stop_reason\":null,\"stop_sequence\":null");
                write_usage(out, req, 1);
                out.extend_from_slice(b"}}");
                (FrameKind::Start, Phase::BlockStart)
            }
            Phase::BlockStart => {
                start_event(out, "content_block_start");
                out.extend_from_slice(
                    b"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":",
                );
                match reply.tool() {
                    Some(call) => {
                        out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
                        write_json_str(out, &tool_use_id(&self.id));
                        out.extend_from_slice(b",\"name\":");
                        write_json_str(out, &call.name);
                        out.extend_from_slice(b",\"input\":{}}}");
                    }
                    None => out.extend_from_slice(b"{\"type\":\"text\",\"text\":\"\"}}"),
                }
                (FrameKind::Start, Phase::Ping)
            }
            Phase::Ping => {
                // The real API writes this one with a space.
                start_event(out, "ping");
                out.extend_from_slice(b"{\"type\": \"ping\"}");
                (FrameKind::Ping, Phase::Delta(0))
            }
            Phase::Delta(t) if t < reply.tokens => {
                let (piece, space) = reply.token(t);
                start_event(out, "content_block_delta");
                out.extend_from_slice(
                    b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":",
                );
                if matches!(reply.content, Content::Tool(_)) {
                    out.extend_from_slice(b"\"input_json_delta\",\"partial_json\":");
                    write_json_str(out, piece);
                } else {
                    out.extend_from_slice(b"\"text_delta\",\"text\":");
                    write_token(out, piece, space);
                }
                out.extend_from_slice(b"}}");
                (FrameKind::Token, Phase::Delta(t + 1))
            }
            Phase::Delta(_) => {
                start_event(out, "content_block_stop");
                out.extend_from_slice(b"{\"type\":\"content_block_stop\",\"index\":0}");
                (FrameKind::Finish, Phase::MessageDelta)
            }
            Phase::MessageDelta => {
                start_event(out, "message_delta");
                out.extend_from_slice(b"{\"type\":\"message_delta\",\"delta\":{");
                write_stop(out, reply);
                out.push(b'}');
                if req.usage_written() {
                    // Cumulative: the totals so far, not an increment.
                    out.extend_from_slice(b",\"usage\":{\"input_tokens\":");
                    write_u64(out, req.prompt_tokens());
                    out.extend_from_slice(
                        b",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\
                          \"output_tokens\":",
                    );
                    write_u64(out, req.completion_tokens());
                    out.push(b'}');
                }
                out.push(b'}');
                (FrameKind::Finish, Phase::MessageStop)
            }
            Phase::MessageStop => {
                start_event(out, "message_stop");
                out.extend_from_slice(b"{\"type\":\"message_stop\"}");
                (FrameKind::Done, Phase::End)
            }
            Phase::End => return None,
        };
        end_frame(out);
        self.phase = next;
        Some(kind)
    }
}

/// The in-stream error of a Messages stream: `event: error` with an `overloaded_error`.
pub(super) fn error_frame(out: &mut Vec<u8>) {
    start_event(out, "error");
    out.extend_from_slice(&crate::error::anthropic_error_body(
        crate::error::OVERLOADED,
        "Overloaded",
    ));
    end_frame(out);
}
