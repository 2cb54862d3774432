//! OpenAI Chat Completions and Completions (and the parsing of Embeddings requests): request
//! parsing, JSON bodies and `data:` chunk streams.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::embeddings::{is_token, EmbeddingsReply};
use super::json::{write_json_str, write_token, write_u64};
use super::tools::{definitions, has_tool, Tool, ToolChoice};
use super::words::{push_line, word_count};
use super::{
    hash, invalid_type, missing, unparsable, Content, Conversation, Endpoint, FrameKind, Kind,
    Reply, ReplySpec, SynthError, SynthRequest, MAX_CHOICES,
};
use crate::request;

const FINGERPRINT: &str = "fp_sluice_mock";

/// The request fields whose shape varies or that `request::inspect` does not read. `null` is
/// the same as absent for all of them.
#[derive(Deserialize)]
struct Fields {
    messages: Option<Value>,
    prompt: Option<Value>,
    input: Option<Value>,
    n: Option<Value>,
    dimensions: Option<Value>,
    encoding_format: Option<Value>,
    max_completion_tokens: Option<IgnoredAny>,
    stream_options: Option<IgnoredAny>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Value>,
}

pub(super) fn parse(
    endpoint: Endpoint,
    body: &[u8],
    tokens: Option<u64>,
) -> Result<SynthRequest, SynthError> {
    // The common fields, with the same checks and messages as the gateway's own reading.
    let info = request::inspect(body)?;
    let fields: Fields = serde_json::from_slice(body).map_err(|e| unparsable(&e))?;
    if endpoint == Endpoint::Embeddings {
        let (reply, prompt_tokens) =
            EmbeddingsReply::parse(fields.input, fields.dimensions, fields.encoding_format)?;
        return Ok(SynthRequest {
            model: info.model,
            stream: false,
            include_usage: false,
            omit_usage: false,
            endpoint,
            prompt_tokens,
            kind: Kind::Embeddings(reply),
        });
    }
    if fields.stream_options.is_some() && !info.stream {
        return Err(SynthError::bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    let choices = choices_of(fields.n)?;
    let (conversation, tools, choice) = if endpoint == Endpoint::ChatCompletions {
        if info.max_tokens == Some(0) {
            let param = if fields.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            return Err(SynthError::bad(
                format!(
                    "Invalid '{param}': integer below minimum value. Expected a value >= 1, but \
                     got 0 instead."
                ),
                param,
            ));
        }
        let tools = chat_tools(fields.tools.as_deref())?;
        let choice = chat_tool_choice(fields.tool_choice, &tools)?;
        (chat_messages(fields.messages)?, tools, choice)
    } else {
        (
            completion_prompt(fields.prompt)?,
            Vec::new(),
            ToolChoice::None,
        )
    };
    let prompt_tokens = conversation.prompt_tokens;
    let reply = ReplySpec {
        conversation,
        tools: &tools,
        choice: &choice,
        tokens,
        max_tokens: info.max_tokens,
        stop_sequences: &[],
        choices,
    }
    .build();
    Ok(SynthRequest {
        model: info.model,
        stream: info.stream,
        include_usage: info.stream && info.include_usage,
        omit_usage: false,
        endpoint,
        prompt_tokens,
        kind: Kind::Text(reply),
    })
}

// ---------------------------------------------------------------------------------------------
// Request parsing

fn choices_of(n: Option<Value>) -> Result<u32, SynthError> {
    let Some(n) = n else { return Ok(1) };
    match n.as_u64() {
        Some(v @ 1..=MAX_CHOICES) => Ok(u32::try_from(v).unwrap_or(1)),
        Some(v) => Err(SynthError::bad(
            format!("Invalid value for 'n': expected an integer from 1 to {MAX_CHOICES}, got {v}."),
            "n",
        )),
        None => Err(invalid_type("n", "n", "an integer", &n)),
    }
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The last user message, the tool results the conversation ends with, and the prompt token
/// estimate.
fn chat_messages(messages: Option<Value>) -> Result<Conversation, SynthError> {
    const P: &str = "messages";
    let messages = match messages {
        None => return Err(missing(P)),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(invalid_type(P, P, "an array", &other)),
    };
    if messages.is_empty() {
        return Err(SynthError::bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an \
             empty array instead.",
            P,
        ));
    }
    let mut prompt_tokens = 3u64;
    let mut last_user: Option<String> = None;
    let mut results: Option<String> = None;
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(invalid_type(
                P,
                &format!("messages[{i}]"),
                "an object",
                message,
            ));
        };
        let role = match message.get("role") {
            None | Some(Value::Null) => {
                return Err(SynthError::bad(
                    format!("Missing required parameter: 'messages[{i}].role'."),
                    P,
                ))
            }
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.as_str(),
            Some(other) => {
                return Err(SynthError::bad(
                    format!(
                        "Invalid value for 'messages[{i}].role': expected one of {}, got {other}.",
                        ROLES.join(", ")
                    ),
                    P,
                ))
            }
        };
        let text = content_text(
            P,
            &format!("messages[{i}]"),
            message.get("content"),
            &["text"],
        )?;
        prompt_tokens = prompt_tokens
            .saturating_add(4)
            .saturating_add(word_count(&text));
        if matches!(role, "tool" | "function") {
            push_line(results.get_or_insert_with(String::new), &text);
        } else {
            results = None;
        }
        if role == "user" {
            last_user = Some(text);
        }
    }
    Ok(Conversation {
        last_user: last_user.unwrap_or_default(),
        tool_results: results,
        prompt_tokens,
    })
}

/// The text parts of a message's `content` (a string, or an array of parts of which those
/// whose `type` is in `text_types` carry text), joined by newlines. `what` names the message
/// in error messages (`messages[2]`).
pub(super) fn content_text(
    param: &'static str,
    what: &str,
    content: Option<&Value>,
    text_types: &[&str],
) -> Result<String, SynthError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let Value::Object(part) = part else {
                    return Err(invalid_type(
                        param,
                        &format!("{what}.content[{j}]"),
                        "an object",
                        part,
                    ));
                };
                match part.get("type") {
                    Some(Value::String(t)) if text_types.contains(&t.as_str()) => {
                        match part.get("text") {
                            Some(Value::String(s)) => push_line(&mut text, s),
                            other => {
                                return Err(invalid_type(
                                    param,
                                    &format!("{what}.content[{j}].text"),
                                    "a string",
                                    other.unwrap_or(&Value::Null),
                                ))
                            }
                        }
                    }
                    // Images, audio, files, tool blocks...: no text to echo here.
                    Some(Value::String(_)) => {}
                    other => {
                        return Err(invalid_type(
                            param,
                            &format!("{what}.content[{j}].type"),
                            "a string",
                            other.unwrap_or(&Value::Null),
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(other) => Err(invalid_type(
            param,
            &format!("{what}.content"),
            "a string or an array of content parts",
            other,
        )),
    }
}

/// `tools`: `[{"type":"function","function":{"name":..,"parameters":{..}}}]`; other tool types
/// (`custom`) are accepted and never called.
fn chat_tools(raw: Option<&RawValue>) -> Result<Vec<Tool>, SynthError> {
    #[derive(Deserialize)]
    struct Def {
        #[serde(rename = "type")]
        kind: Option<String>,
        function: Option<Function>,
    }
    #[derive(Deserialize)]
    struct Function {
        name: Option<Value>,
        parameters: Option<Box<RawValue>>,
    }
    const P: &str = "tools";
    let defs: Vec<Def> = definitions(raw, "Invalid 'tools': expected an array of tool objects")?;
    let mut tools = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        if def.kind.as_deref().is_some_and(|k| k != "function") {
            continue;
        }
        let Some(function) = def.function else {
            return Err(SynthError::bad(
                format!("Missing required parameter: 'tools[{i}].function'."),
                P,
            ));
        };
        tools.push(Tool {
            name: tool_name(function.name, &format!("tools[{i}].function.name"), P)?,
            schema: function.parameters,
        });
    }
    Ok(tools)
}

/// A tool's `name`: a non-empty string.
pub(super) fn tool_name(
    name: Option<Value>,
    what: &str,
    param: &'static str,
) -> Result<String, SynthError> {
    match name {
        Some(Value::String(name)) if !name.is_empty() => Ok(name),
        None | Some(Value::Null) => Err(SynthError::bad(
            format!("Missing required parameter: '{what}'."),
            param,
        )),
        Some(other) => Err(invalid_type(param, what, "a non-empty string", &other)),
    }
}

/// `tool_choice`: `none`, `auto`, `required` or `{"type":"function","function":{"name":..}}`
/// (other objects, such as `allowed_tools`, count as `auto`).
fn chat_tool_choice(choice: Option<Value>, tools: &[Tool]) -> Result<ToolChoice, SynthError> {
    let named = |v: &Value| {
        v.get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let choice = match &choice {
        None => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "auto" => ToolChoice::Auto,
        Some(Value::String(s)) if s == "required" => ToolChoice::Any,
        Some(v @ Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            ToolChoice::Named(named(v).ok_or_else(|| {
                SynthError::bad(
                    "Missing required parameter: 'tool_choice.function.name'.",
                    "tool_choice",
                )
            })?)
        }
        Some(Value::Object(_)) => ToolChoice::Auto,
        Some(other) => {
            return Err(SynthError::bad(
                format!(
                    "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a \
                     named function, got {other}."
                ),
                "tool_choice",
            ))
        }
    };
    check_tool_choice(choice, tools)
}

/// The checks every API makes on a `tool_choice`: only with tools, and a named tool must be
/// one of them.
pub(super) fn check_tool_choice(
    choice: ToolChoice,
    tools: &[Tool],
) -> Result<ToolChoice, SynthError> {
    match &choice {
        ToolChoice::Any | ToolChoice::Named(_) if tools.is_empty() => Err(SynthError::bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are \
             specified.",
            "tool_choice",
        )),
        ToolChoice::Named(name) if !has_tool(tools, name) => Err(SynthError::bad(
            format!("Invalid value for 'tool_choice': no tool named '{name}' in 'tools'."),
            "tool_choice",
        )),
        _ => Ok(choice),
    }
}

fn is_token_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(is_token))
}

/// The (last) prompt and the prompt token estimate.
fn completion_prompt(prompt: Option<Value>) -> Result<Conversation, SynthError> {
    const P: &str = "prompt";
    const EXPECTED: &str = "a string, an array of strings, an array of token ids or an array of \
                            token id arrays";
    let conversation = |last_user: String, prompt_tokens| Conversation {
        last_user,
        tool_results: None,
        prompt_tokens,
    };
    match prompt {
        None => Err(missing(P)),
        Some(Value::String(s)) => {
            let tokens = word_count(&s);
            Ok(conversation(s, tokens))
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                let tokens = items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(word_count)
                    .sum::<u64>();
                let last = items
                    .into_iter()
                    .next_back()
                    .and_then(|v| match v {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .unwrap_or_default();
                Ok(conversation(last, tokens))
            } else if items.iter().all(is_token) {
                Ok(conversation(String::new(), items.len() as u64))
            } else if items.iter().all(is_token_array) {
                let tokens = items
                    .iter()
                    .filter_map(Value::as_array)
                    .map(|a| a.len() as u64)
                    .sum::<u64>();
                Ok(conversation(String::new(), tokens))
            } else {
                Err(SynthError::bad(
                    format!("Invalid value for 'prompt': expected {EXPECTED}."),
                    P,
                ))
            }
        }
        Some(Value::Array(_)) => Err(SynthError::bad(
            "Invalid 'prompt': empty array. Expected an array with minimum length 1, but got an \
             empty array instead.",
            P,
        )),
        Some(other) => Err(invalid_type(P, P, EXPECTED, &other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

fn write_chat_usage(out: &mut Vec<u8>, req: &SynthRequest) {
    write_usage_counts(out, req);
    out.extend_from_slice(
        b",\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\
          \"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\
          \"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
    );
}

fn write_completions_usage(out: &mut Vec<u8>, req: &SynthRequest) {
    write_usage_counts(out, req);
    out.push(b'}');
}

/// `{"prompt_tokens":..,"completion_tokens":..,"total_tokens":..` (object left open).
fn write_usage_counts(out: &mut Vec<u8>, req: &SynthRequest) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, req.prompt_tokens());
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, req.completion_tokens());
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(
        out,
        req.prompt_tokens().saturating_add(req.completion_tokens()),
    );
}

/// `{"id":..,"object":..,"created":..` (object left open).
fn write_envelope_start(out: &mut Vec<u8>, id: &str, object: &str, created: u64) {
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, id);
    out.extend_from_slice(b",\"object\":");
    write_json_str(out, object);
    out.extend_from_slice(b",\"created\":");
    write_u64(out, created);
}

/// The id of choice `choice`'s tool call.
fn call_id(id: &str, choice: u32) -> String {
    hash::derived_id("call_", id, u64::from(choice))
}

/// The whole chat or completions body.
pub(super) fn body(req: &SynthRequest, reply: &Reply, id: &str, created: u64) -> Vec<u8> {
    let text = reply.text();
    let mut out =
        Vec::with_capacity(512 + (text.len() + 200) * usize::try_from(reply.choices).unwrap_or(1));
    let chat = req.endpoint != Endpoint::Completions;
    let object = if chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    write_envelope_start(&mut out, id, object, created);
    out.extend_from_slice(b",\"model\":");
    write_json_str(&mut out, &req.model);
    out.extend_from_slice(b",\"choices\":[");
    for c in 0..reply.choices {
        if c > 0 {
            out.push(b',');
        }
        if chat {
            chat_choice(&mut out, reply, &text, id, c);
        } else {
            out.extend_from_slice(b"{\"text\":");
            write_json_str(&mut out, &text);
            out.extend_from_slice(b",\"index\":");
            write_u64(&mut out, u64::from(c));
            out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        }
        write_json_str(&mut out, reply.finish.as_str());
        out.push(b'}');
    }
    out.push(b']');
    if req.usage_written() {
        out.extend_from_slice(b",\"usage\":");
        if chat {
            write_chat_usage(&mut out, req);
        } else {
            write_completions_usage(&mut out, req);
        }
    }
    if chat {
        out.extend_from_slice(b",\"service_tier\":\"default\",\"system_fingerprint\":");
        write_json_str(&mut out, FINGERPRINT);
    }
    out.push(b'}');
    out
}

/// A chat choice up to its `"finish_reason":`.
fn chat_choice(out: &mut Vec<u8>, reply: &Reply, text: &str, id: &str, c: u32) {
    out.extend_from_slice(b"{\"index\":");
    write_u64(out, u64::from(c));
    out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
    match reply.tool() {
        Some(call) => {
            out.extend_from_slice(b"null,\"tool_calls\":[{\"id\":");
            write_json_str(out, &call_id(id, c));
            out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            write_json_str(out, &call.name);
            out.extend_from_slice(b",\"arguments\":");
            write_json_str(out, text);
            out.extend_from_slice(b"}}]");
        }
        None => write_json_str(out, text),
    }
    out.extend_from_slice(
        b",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":",
    );
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Role { choice: u32 },
    Token { token: u64, choice: u32 },
    Finish { choice: u32 },
    Usage,
    Body,
    Done,
    End,
}

/// The `data:` chunks of a chat or completions stream (or an embeddings "stream").
#[derive(Debug, Clone)]
pub(super) struct Chunks {
    id: String,
    created: u64,
    /// `data: {"id":..,...,"choices":[`: written before every chunk's choices.
    prefix: Vec<u8>,
    /// What follows the choices: `]`, `"model"` for completions, `"usage":null`, `}\n\n`.
    suffix: Vec<u8>,
    phase: Phase,
}

impl Chunks {
    pub(super) fn new(req: &SynthRequest, id: &str, created: u64) -> Self {
        let usage_null = req.include_usage && req.usage_written();
        let mut prefix = Vec::with_capacity(192 + id.len() + req.model.len());
        let mut suffix = Vec::with_capacity(32 + req.model.len());
        prefix.extend_from_slice(b"data: ");
        if req.endpoint == Endpoint::Completions {
            write_envelope_start(&mut prefix, id, "text_completion", created);
            prefix.extend_from_slice(b",\"choices\":[");
            suffix.extend_from_slice(b"],\"model\":");
            write_json_str(&mut suffix, &req.model);
        } else {
            write_envelope_start(&mut prefix, id, "chat.completion.chunk", created);
            prefix.extend_from_slice(b",\"model\":");
            write_json_str(&mut prefix, &req.model);
            prefix.extend_from_slice(b",\"service_tier\":\"default\",\"system_fingerprint\":");
            write_json_str(&mut prefix, FINGERPRINT);
            prefix.extend_from_slice(b",\"choices\":[");
            suffix.push(b']');
        }
        if usage_null {
            suffix.extend_from_slice(b",\"usage\":null");
        }
        suffix.extend_from_slice(b"}\n\n");
        let phase = match (&req.kind, req.endpoint) {
            (Kind::Embeddings(_), _) => Phase::Body,
            (Kind::Text(t), _) if t.choices == 0 => Phase::Usage,
            (Kind::Text(_), Endpoint::ChatCompletions) => Phase::Role { choice: 0 },
            (Kind::Text(_), _) => Phase::Token {
                token: 0,
                choice: 0,
            },
        };
        let mut chunks = Self {
            id: id.to_owned(),
            created,
            prefix,
            suffix,
            phase,
        };
        chunks.phase = chunks.settle(req, chunks.phase);
        chunks
    }

    pub(super) fn next(&mut self, req: &SynthRequest, out: &mut Vec<u8>) -> Option<FrameKind> {
        let Some(reply) = req.reply() else {
            return self.next_embeddings(req, out);
        };
        let chat = req.endpoint == Endpoint::ChatCompletions;
        let (kind, next) = match self.phase {
            Phase::Role { choice } => {
                out.extend_from_slice(&self.prefix);
                out.extend_from_slice(b"{\"index\":");
                write_u64(out, u64::from(choice));
                match reply.tool() {
                    Some(call) => {
                        out.extend_from_slice(
                            b",\"delta\":{\"role\":\"assistant\",\"content\":null,\
                              \"tool_calls\":[{\"index\":0,\"id\":",
                        );
                        write_json_str(out, &call_id(&self.id, choice));
                        out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                        write_json_str(out, &call.name);
                        out.extend_from_slice(b",\"arguments\":\"\"}}],\"refusal\":null}");
                    }
                    None => out.extend_from_slice(
                        b",\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
                    ),
                }
                out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":null}");
                out.extend_from_slice(&self.suffix);
                let next = if choice + 1 < reply.choices {
                    Phase::Role { choice: choice + 1 }
                } else {
                    Phase::Token {
                        token: 0,
                        choice: 0,
                    }
                };
                (FrameKind::Role, next)
            }
            Phase::Token { token, choice } => {
                let (word, space) = reply.token(token);
                out.extend_from_slice(&self.prefix);
                if chat {
                    out.extend_from_slice(b"{\"index\":");
                    write_u64(out, u64::from(choice));
                    if matches!(reply.content, Content::Tool(_)) {
                        out.extend_from_slice(
                            b",\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":",
                        );
                        write_json_str(out, word);
                        out.extend_from_slice(b"}}]}");
                    } else {
                        out.extend_from_slice(b",\"delta\":{\"content\":");
                        write_token(out, word, space);
                        out.push(b'}');
                    }
                    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":null}");
                } else {
                    out.extend_from_slice(b"{\"text\":");
                    write_token(out, word, space);
                    out.extend_from_slice(b",\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":null}");
                }
                out.extend_from_slice(&self.suffix);
                let next = if choice + 1 < reply.choices {
                    Phase::Token {
                        token,
                        choice: choice + 1,
                    }
                } else {
                    Phase::Token {
                        token: token + 1,
                        choice: 0,
                    }
                };
                (FrameKind::Token, next)
            }
            Phase::Finish { choice } => {
                out.extend_from_slice(&self.prefix);
                if chat {
                    out.extend_from_slice(b"{\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"delta\":{},\"logprobs\":null,\"finish_reason\":");
                } else {
                    out.extend_from_slice(b"{\"text\":\"\",\"index\":");
                    write_u64(out, u64::from(choice));
                    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
                }
                write_json_str(out, reply.finish.as_str());
                out.push(b'}');
                out.extend_from_slice(&self.suffix);
                let next = if choice + 1 < reply.choices {
                    Phase::Finish { choice: choice + 1 }
                } else {
                    Phase::Usage
                };
                (FrameKind::Finish, next)
            }
            Phase::Usage => {
                if chat {
                    // The chunk envelope with no choices, then the usage in place of `null`.
                    out.extend_from_slice(&self.prefix);
                    out.extend_from_slice(b"],\"usage\":");
                    write_chat_usage(out, req);
                } else {
                    out.extend_from_slice(b"data: ");
                    write_envelope_start(out, &self.id, "text_completion", self.created);
                    out.extend_from_slice(b",\"model\":");
                    write_json_str(out, &req.model);
                    out.extend_from_slice(b",\"usage\":");
                    write_completions_usage(out, req);
                    out.extend_from_slice(b",\"choices\":[]");
                }
                out.extend_from_slice(b"}\n\n");
                (FrameKind::Usage, Phase::Done)
            }
            Phase::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                (FrameKind::Done, Phase::End)
            }
            Phase::Body | Phase::End => return None,
        };
        self.phase = self.settle(req, next);
        Some(kind)
    }

    fn next_embeddings(&mut self, req: &SynthRequest, out: &mut Vec<u8>) -> Option<FrameKind> {
        match self.phase {
            Phase::Body => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&super::response_body(req, &self.id, self.created));
                out.extend_from_slice(b"\n\n");
                self.phase = Phase::Done;
                Some(FrameKind::Body)
            }
            Phase::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.phase = Phase::End;
                Some(FrameKind::Done)
            }
            _ => None,
        }
    }

    /// Skips phases that have nothing to write (tokens past the reply's end, a usage chunk
    /// nobody asked for).
    fn settle(&self, req: &SynthRequest, phase: Phase) -> Phase {
        let Some(reply) = req.reply() else {
            return phase;
        };
        let phase = match phase {
            Phase::Token { token, .. } if token >= reply.tokens => Phase::Finish { choice: 0 },
            other => other,
        };
        match phase {
            Phase::Usage if !(req.include_usage && req.usage_written()) => Phase::Done,
            other => other,
        }
    }
}

/// The in-stream error of an OpenAI stream: `data: {"error":{..}}`.
pub(super) fn error_frame(out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&crate::error::openai_error_body(
        "The server had an error while processing your request. Sorry about that!",
        crate::error::SERVER,
        None,
        None,
    ));
    out.extend_from_slice(b"\n\n");
}
