//! OpenAI Responses (`POST /v1/responses`): request parsing, the `response` object and the
//! `event:` stream with its `sequence_number`s.
//!
//! Field order follows the real API: the response object starts `id, object, created_at,
//! status` and then lists its fields alphabetically, ending with `usage, user, metadata`;
//! stream events start with `type` and list the rest alphabetically. The request's
//! `instructions`, `max_output_tokens`, `tools`, `tool_choice`, `temperature`, `top_p`,
//! `store`, `metadata`, `parallel_tool_calls`, `previous_response_id` and `user` are echoed.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{end_frame, start_event, write_json_str, write_raw_or, write_token, write_u64};
use super::openai::{check_tool_choice, content_text, tool_name};
use super::tools::{definitions, Tool, ToolChoice};
use super::words::{push_line, word_count};
use super::{
    hash, invalid_type, missing, unparsable, Content, Conversation, Endpoint, FinishReason,
    FrameKind, Kind, Reply, ReplySpec, SynthError, SynthRequest,
};
use crate::request;

/// The smallest `max_output_tokens` the real API accepts.
pub const MIN_MAX_OUTPUT_TOKENS: u64 = 16;

#[derive(Deserialize)]
struct Fields {
    input: Option<Value>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Box<RawValue>>,
    max_output_tokens: Option<Value>,
}

/// The request fields the response object echoes, ready to write: most as sent (their JSON
/// type checked), `tools` and `tool_choice` rendered by [`tools`] and [`tool_choice`].
#[derive(Debug, Deserialize)]
pub(super) struct Echo {
    instructions: Option<Box<RawValue>>,
    temperature: Option<Box<RawValue>>,
    top_p: Option<Box<RawValue>>,
    store: Option<Box<RawValue>>,
    metadata: Option<Box<RawValue>>,
    parallel_tool_calls: Option<Box<RawValue>>,
    previous_response_id: Option<Box<RawValue>>,
    user: Option<Box<RawValue>>,
    #[serde(skip)]
    max_output_tokens: Option<u64>,
    /// The `tools` array as the API echoes it.
    #[serde(skip)]
    tools: Vec<u8>,
    /// The `tool_choice` as sent, or `"auto"`.
    #[serde(skip)]
    tool_choice: Vec<u8>,
}

/// A field to check: its value, its name, and what its JSON text may look like.
type Check<'a> = (
    &'a Option<Box<RawValue>>,
    &'static str,
    &'a dyn Fn(&str) -> bool,
);

impl Echo {
    /// Refuses a value of the wrong JSON type (the first bytes of a JSON value tell its type).
    fn check(&self) -> Result<(), SynthError> {
        let string = |s: &str| s.starts_with('"');
        let number = |s: &str| s.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        let boolean = |s: &str| s == "true" || s == "false";
        let checks: [Check<'_>; 8] = [
            (&self.instructions, "instructions", &|s| {
                string(s) || s.starts_with('[')
            }),
            (&self.temperature, "temperature", &number),
            (&self.top_p, "top_p", &number),
            (&self.store, "store", &boolean),
            (&self.metadata, "metadata", &|s| s.starts_with('{')),
            (&self.parallel_tool_calls, "parallel_tool_calls", &boolean),
            (&self.previous_response_id, "previous_response_id", &string),
            (&self.user, "user", &string),
        ];
        for (raw, param, ok) in checks {
            if raw.as_deref().is_some_and(|raw| !ok(raw.get())) {
                return Err(SynthError::bad(
                    format!("Invalid type for '{param}'."),
                    param,
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn parse(body: &[u8], tokens: Option<u64>) -> Result<SynthRequest, SynthError> {
    let info = request::inspect(body)?;
    let fields: Fields = serde_json::from_slice(body).map_err(|e| unparsable(&e))?;
    let max_output_tokens = match fields.max_output_tokens {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= MIN_MAX_OUTPUT_TOKENS => Some(n),
            Some(n) => {
                return Err(SynthError::bad(
                    format!(
                        "Invalid 'max_output_tokens': integer below minimum value. Expected a \
                         value >= {MIN_MAX_OUTPUT_TOKENS}, but got {n} instead."
                    ),
                    "max_output_tokens",
                ))
            }
            None => {
                return Err(invalid_type(
                    "max_output_tokens",
                    "max_output_tokens",
                    "an integer",
                    &v,
                ))
            }
        },
    };
    let mut conversation = input(fields.input)?;
    let mut echo: Echo = serde_json::from_slice(body).map_err(|e| unparsable(&e))?;
    echo.check()?;
    if let Some(text) = echo
        .instructions
        .as_deref()
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    {
        conversation.prompt_tokens = conversation
            .prompt_tokens
            .saturating_add(4)
            .saturating_add(word_count(&text));
    }
    let (tools, tools_echo) = tools(fields.tools.as_deref())?;
    let (choice, choice_echo) = tool_choice(fields.tool_choice.as_deref(), &tools)?;
    echo.max_output_tokens = max_output_tokens;
    echo.tools = tools_echo;
    echo.tool_choice = choice_echo;
    let prompt_tokens = conversation.prompt_tokens;
    let mut reply = ReplySpec {
        conversation,
        tools: &tools,
        choice: &choice,
        tokens,
        max_tokens: max_output_tokens,
        stop_sequences: &[],
        choices: 1,
    }
    .build();
    reply.echo = Some(Arc::new(echo));
    Ok(SynthRequest {
        model: info.model,
        stream: info.stream,
        include_usage: false,
        omit_usage: false,
        endpoint: Endpoint::Responses,
        prompt_tokens,
        kind: Kind::Text(reply),
    })
}

const TEXT_PARTS: &[&str] = &["input_text", "output_text", "text"];

/// `input`: a string (one user message) or items: messages (`role`, `content`),
/// `function_call`, `function_call_output` (what a follow-up turn sends back) and others
/// (skipped).
fn input(input: Option<Value>) -> Result<Conversation, SynthError> {
    const P: &str = "input";
    let items = match input {
        None | Some(Value::Null) => return Err(missing(P)),
        Some(Value::String(text)) => {
            let prompt_tokens = 3 + 4 + word_count(&text);
            return Ok(Conversation {
                last_user: text,
                tool_results: None,
                prompt_tokens,
            });
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid_type(
                P,
                P,
                "a string or an array of input items",
                &other,
            ))
        }
    };
    let mut prompt_tokens = 3u64;
    let mut last_user = String::new();
    let mut results: Option<String> = None;
    for (i, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(invalid_type(P, &format!("input[{i}]"), "an object", item));
        };
        let what = format!("input[{i}]");
        let kind = item.get("type").and_then(Value::as_str);
        match (kind, item.get("role").and_then(Value::as_str)) {
            (Some("function_call_output"), _) => {
                let text = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    other => content_text(P, &what, other, TEXT_PARTS)?,
                };
                prompt_tokens = prompt_tokens
                    .saturating_add(4)
                    .saturating_add(word_count(&text));
                push_line(results.get_or_insert_with(String::new), &text);
            }
            (None | Some("message"), Some(role)) => {
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(SynthError::bad(
                        format!(
                            "Invalid value for '{what}.role': expected one of user, assistant, \
                             system, developer, got '{role}'."
                        ),
                        P,
                    ));
                }
                let text = content_text(P, &what, item.get("content"), TEXT_PARTS)?;
                prompt_tokens = prompt_tokens
                    .saturating_add(4)
                    .saturating_add(word_count(&text));
                if role == "user" {
                    last_user = text;
                }
                results = None;
            }
            (None | Some("message"), None) => {
                return Err(SynthError::bad(
                    format!("Missing required parameter: '{what}.role'."),
                    P,
                ))
            }
            // function_call, reasoning, item_reference...: part of the history, no text.
            _ => {
                prompt_tokens = prompt_tokens.saturating_add(4);
                results = None;
            }
        }
    }
    Ok(Conversation {
        last_user,
        tool_results: results,
        prompt_tokens,
    })
}

/// `tools`: function tools `{"type":"function","name":..,"parameters":{..}}` (others are
/// echoed and never called). Returns the tools and the array the response echoes.
fn tools(raw: Option<&RawValue>) -> Result<(Vec<Tool>, Vec<u8>), SynthError> {
    #[derive(Deserialize)]
    struct Def {
        #[serde(rename = "type")]
        kind: Option<String>,
        name: Option<Value>,
        description: Option<Box<RawValue>>,
        parameters: Option<Box<RawValue>>,
        strict: Option<Box<RawValue>>,
    }
    const P: &str = "tools";
    const INVALID: &str = "Invalid 'tools': expected an array of tool objects";
    let entries: Vec<Box<RawValue>> = definitions(raw, INVALID)?;
    let mut tools = Vec::with_capacity(entries.len());
    let mut echo = Vec::with_capacity(raw.map_or(0, |r| r.get().len()) + 64);
    echo.push(b'[');
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            echo.push(b',');
        }
        let def: Def = serde_json::from_str(entry.get())
            .map_err(|e| SynthError::bad(format!("{INVALID} ({e})."), P))?;
        if def.kind.as_deref() != Some("function") {
            echo.extend_from_slice(entry.get().as_bytes());
            continue;
        }
        let name = tool_name(def.name, &format!("tools[{i}].name"), P)?;
        echo.extend_from_slice(b"{\"type\":\"function\",\"description\":");
        write_raw_or(&mut echo, def.description.as_deref(), b"null");
        echo.extend_from_slice(b",\"name\":");
        write_json_str(&mut echo, &name);
        echo.extend_from_slice(b",\"parameters\":");
        write_raw_or(&mut echo, def.parameters.as_deref(), b"null");
        echo.extend_from_slice(b",\"strict\":");
        write_raw_or(&mut echo, def.strict.as_deref(), b"true");
        echo.push(b'}');
        tools.push(Tool {
            name,
            schema: def.parameters,
        });
    }
    echo.push(b']');
    Ok((tools, echo))
}

/// `tool_choice`: `none`, `auto`, `required` or `{"type":"function","name":..}` (other
/// objects, such as hosted tools or `allowed_tools`, count as `auto`). Returns the choice and
/// its echo.
fn tool_choice(
    raw: Option<&RawValue>,
    tools: &[Tool],
) -> Result<(ToolChoice, Vec<u8>), SynthError> {
    const P: &str = "tool_choice";
    let Some(raw) = raw else {
        return Ok((ToolChoice::Auto, b"\"auto\"".to_vec()));
    };
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| SynthError::bad(format!("Invalid 'tool_choice': {e}."), P))?;
    let choice = match &value {
        Value::String(s) if s == "none" => ToolChoice::None,
        Value::String(s) if s == "auto" => ToolChoice::Auto,
        Value::String(s) if s == "required" => ToolChoice::Any,
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name") {
                Some(Value::String(name)) => ToolChoice::Named(name.clone()),
                _ => {
                    return Err(SynthError::bad(
                        "Missing required parameter: 'tool_choice.name'.",
                        P,
                    ))
                }
            }
        }
        Value::Object(_) => ToolChoice::Auto,
        other => {
            return Err(SynthError::bad(
                format!(
                    "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a \
                     function, got {other}."
                ),
                P,
            ))
        }
    };
    let choice = check_tool_choice(choice, tools)?;
    // Echoed as sent.
    Ok((choice, raw.get().as_bytes().to_vec()))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A response's status, and what its object says in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Failed => "failed",
        }
    }

    /// Where a reply ends.
    fn of(reply: &Reply) -> Self {
        if reply.finish == FinishReason::Length {
            Status::Incomplete
        } else {
            Status::Completed
        }
    }
}

const ERROR_MESSAGE: &str = "The server had an error while processing your request. Sorry about \
                             that!";

/// The ids of a response's output item: (item id, call id).
#[derive(Debug, Clone)]
struct ItemIds {
    item: String,
    call: String,
}

impl ItemIds {
    fn new(reply: &Reply, id: &str) -> Self {
        let item = if reply.tool().is_some() {
            hash::derived_id("fc_", id, 2)
        } else {
            hash::derived_id("msg_", id, 1)
        };
        Self {
            item,
            call: hash::derived_id("call_", id, 3),
        }
    }
}

/// The output item: `in_progress` and empty when `text` is `None`, else with `text` (the
/// message text or the call's arguments) and the final status.
fn write_item(out: &mut Vec<u8>, reply: &Reply, ids: &ItemIds, text: Option<&str>) {
    let status = match text {
        None => Status::InProgress,
        Some(_) => Status::of(reply),
    };
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, &ids.item);
    match reply.tool() {
        Some(call) => {
            out.extend_from_slice(b",\"type\":\"function_call\",\"status\":");
            write_json_str(out, status.as_str());
            out.extend_from_slice(b",\"arguments\":");
            write_json_str(out, text.unwrap_or(""));
            out.extend_from_slice(b",\"call_id\":");
            write_json_str(out, &ids.call);
            out.extend_from_slice(b",\"name\":");
            write_json_str(out, &call.name);
            out.push(b'}');
        }
        None => {
            out.extend_from_slice(b",\"type\":\"message\",\"status\":");
            write_json_str(out, status.as_str());
            out.extend_from_slice(b",\"content\":[");
            if let Some(text) = text {
                write_part(out, text);
            }
            out.extend_from_slice(b"],\"role\":\"assistant\"}");
        }
    }
}

/// An `output_text` content part.
fn write_part(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(
        b"{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":",
    );
    write_json_str(out, text);
    out.push(b'}');
}

fn write_usage(out: &mut Vec<u8>, req: &SynthRequest) {
    out.extend_from_slice(b"{\"input_tokens\":");
    write_u64(out, req.prompt_tokens());
    out.extend_from_slice(
        b",\"input_tokens_details\":{\"cached_tokens\":0,\"cache_write_tokens\":0},\
          \"output_tokens\":",
    );
    write_u64(out, req.completion_tokens());
    out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
    write_u64(
        out,
        req.prompt_tokens().saturating_add(req.completion_tokens()),
    );
    out.push(b'}');
}

/// The response object in `status`; `output` (the reply text or arguments) for the finished
/// states, nothing for `in_progress` and `failed`.
fn write_response(
    out: &mut Vec<u8>,
    req: &SynthRequest,
    reply: &Reply,
    id: &str,
    created: u64,
    status: Status,
) {
    let finished = matches!(status, Status::Completed | Status::Incomplete);
    let echo = reply.echo.as_deref();
    out.extend_from_slice(b"{\"id\":");
    write_json_str(out, id);
    out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
    write_u64(out, created);
    out.extend_from_slice(b",\"status\":");
    write_json_str(out, status.as_str());
    out.extend_from_slice(b",\"background\":false,\"completed_at\":");
    if status == Status::Completed {
        write_u64(out, created);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"error\":");
    if status == Status::Failed {
        out.extend_from_slice(b"{\"code\":\"server_error\",\"message\":");
        write_json_str(out, ERROR_MESSAGE);
        out.push(b'}');
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"frequency_penalty\":0.0,\"incomplete_details\":");
    if status == Status::Incomplete {
        out.extend_from_slice(b"{\"reason\":\"max_output_tokens\"}");
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"instructions\":");
    write_raw_or(out, echo.and_then(|e| e.instructions.as_deref()), b"null");
    out.extend_from_slice(b",\"max_output_tokens\":");
    match echo.and_then(|e| e.max_output_tokens) {
        Some(n) => write_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"max_tool_calls\":null,\"model\":");
    write_json_str(out, &req.model);
    out.extend_from_slice(b",\"moderation\":null,\"output\":[");
    if finished {
        let ids = ItemIds::new(reply, id);
        write_item(out, reply, &ids, Some(&reply.text()));
    }
    out.extend_from_slice(b"],\"parallel_tool_calls\":");
    write_raw_or(
        out,
        echo.and_then(|e| e.parallel_tool_calls.as_deref()),
        b"true",
    );
    out.extend_from_slice(b",\"presence_penalty\":0.0,\"previous_response_id\":");
    write_raw_or(
        out,
        echo.and_then(|e| e.previous_response_id.as_deref()),
        b"null",
    );
    out.extend_from_slice(
        b",\"prompt_cache_key\":null,\"prompt_cache_retention\":null,\
          \"reasoning\":{\"effort\":null,\"summary\":null},\"safety_identifier\":null,\
          \"service_tier\":\"default\",\"store\":",
    );
    write_raw_or(out, echo.and_then(|e| e.store.as_deref()), b"true");
    out.extend_from_slice(b",\"temperature\":");
    write_raw_or(out, echo.and_then(|e| e.temperature.as_deref()), b"1.0");
    out.extend_from_slice(
        b",\"text\":{\"format\":{\"type\":\"text\"},\"verbosity\":\"medium\"},\"tool_choice\":",
    );
    match echo {
        Some(e) => out.extend_from_slice(&e.tool_choice),
        None => out.extend_from_slice(b"\"auto\""),
    }
    out.extend_from_slice(b",\"tools\":");
    match echo {
        Some(e) => out.extend_from_slice(&e.tools),
        None => out.extend_from_slice(b"[]"),
    }
    out.extend_from_slice(b",\"top_logprobs\":0,\"top_p\":");
    write_raw_or(out, echo.and_then(|e| e.top_p.as_deref()), b"1.0");
    out.extend_from_slice(b",\"truncation\":\"disabled\",\"usage\":");
    if finished && req.usage_written() {
        write_usage(out, req);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"user\":");
    write_raw_or(out, echo.and_then(|e| e.user.as_deref()), b"null");
    out.extend_from_slice(b",\"metadata\":");
    write_raw_or(out, echo.and_then(|e| e.metadata.as_deref()), b"{}");
    out.push(b'}');
}

/// The whole response object.
pub(super) fn body(req: &SynthRequest, reply: &Reply, id: &str, created: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    write_response(&mut out, req, reply, id, created, Status::of(reply));
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    InProgress,
    ItemAdded,
    PartAdded,
    Delta(u64),
    PartDone,
    ItemDone,
    Finished,
    End,
}

/// The events of a Responses stream.
#[derive(Debug, Clone)]
pub(super) struct Events {
    id: String,
    created: u64,
    ids: ItemIds,
    seq: u64,
    phase: Phase,
}

impl Events {
    pub(super) fn new(req: &SynthRequest, id: &str, created: u64) -> Self {
        let ids = match req.reply() {
            Some(reply) => ItemIds::new(reply, id),
            None => ItemIds {
                item: String::new(),
                call: String::new(),
            },
        };
        Self {
            id: id.to_owned(),
            created,
            ids,
            seq: 0,
            phase: Phase::Created,
        }
    }

    /// `event: NAME\ndata: {"type":"NAME"` (object left open).
    fn open(out: &mut Vec<u8>, name: &str) {
        start_event(out, name);
        out.extend_from_slice(b"{\"type\":");
        write_json_str(out, name);
    }

    /// `,"sequence_number":N`, the next number.
    fn seq_field(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"sequence_number\":");
        write_u64(out, self.seq);
        self.seq += 1;
    }

    /// `,"sequence_number":N}` and the frame's end.
    fn close(&mut self, out: &mut Vec<u8>) {
        self.seq_field(out);
        out.push(b'}');
        end_frame(out);
    }

    /// `,"item_id":..,"output_index":0`
    fn item_ref(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"item_id\":");
        write_json_str(out, &self.ids.item);
        out.extend_from_slice(b",\"output_index\":0");
    }

    pub(super) fn next(&mut self, req: &SynthRequest, out: &mut Vec<u8>) -> Option<FrameKind> {
        let reply = req.reply()?;
        let tool = matches!(reply.content, Content::Tool(_));
        let (kind, next) = match self.phase {
            Phase::Created | Phase::InProgress => {
                let (name, next) = if self.phase == Phase::Created {
                    ("response.created", Phase::InProgress)
                } else {
                    ("response.in_progress", Phase::ItemAdded)
                };
                Self::open(out, name);
                out.extend_from_slice(b",\"response\":");
                write_response(out, req, reply, &self.id, self.created, Status::InProgress);
                (FrameKind::Start, next)
            }
            Phase::ItemAdded => {
                Self::open(out, "response.output_item.added");
                out.extend_from_slice(b",\"item\":");
                write_item(out, reply, &self.ids, None);
                out.extend_from_slice(b",\"output_index\":0");
                let next = if tool {
                    Phase::Delta(0)
                } else {
                    Phase::PartAdded
                };
                (FrameKind::Start, next)
            }
            Phase::PartAdded => {
                Self::open(out, "response.content_part.added");
                out.extend_from_slice(b",\"content_index\":0");
                self.item_ref(out);
                out.extend_from_slice(b",\"part\":");
                write_part(out, "");
                (FrameKind::Start, Phase::Delta(0))
            }
            Phase::Delta(t) if t < reply.tokens => {
                let (piece, space) = reply.token(t);
                if tool {
                    Self::open(out, "response.function_call_arguments.delta");
                    out.extend_from_slice(b",\"delta\":");
                    write_json_str(out, piece);
                    self.item_ref(out);
                } else {
                    Self::open(out, "response.output_text.delta");
                    out.extend_from_slice(b",\"content_index\":0,\"delta\":");
                    write_token(out, piece, space);
                    out.extend_from_slice(b",\"item_id\":");
                    write_json_str(out, &self.ids.item);
                    out.extend_from_slice(b",\"logprobs\":[],\"output_index\":0");
                }
                (FrameKind::Token, Phase::Delta(t + 1))
            }
            Phase::Delta(_) => {
                let text = reply.text();
                if tool {
                    Self::open(out, "response.function_call_arguments.done");
                    out.extend_from_slice(b",\"arguments\":");
                    write_json_str(out, &text);
                    self.item_ref(out);
                    (FrameKind::Finish, Phase::ItemDone)
                } else {
                    Self::open(out, "response.output_text.done");
                    out.extend_from_slice(b",\"content_index\":0,\"item_id\":");
                    write_json_str(out, &self.ids.item);
                    out.extend_from_slice(b",\"logprobs\":[],\"output_index\":0");
                    // `sequence_number` comes before `text` in this one.
                    self.seq_field(out);
                    out.extend_from_slice(b",\"text\":");
                    write_json_str(out, &text);
                    out.push(b'}');
                    end_frame(out);
                    return self.advance(FrameKind::Finish, Phase::PartDone);
                }
            }
            Phase::PartDone => {
                Self::open(out, "response.content_part.done");
                out.extend_from_slice(b",\"content_index\":0");
                self.item_ref(out);
                out.extend_from_slice(b",\"part\":");
                write_part(out, &reply.text());
                (FrameKind::Finish, Phase::ItemDone)
            }
            Phase::ItemDone => {
                Self::open(out, "response.output_item.done");
                out.extend_from_slice(b",\"item\":");
                write_item(out, reply, &self.ids, Some(&reply.text()));
                out.extend_from_slice(b",\"output_index\":0");
                (FrameKind::Finish, Phase::Finished)
            }
            Phase::Finished => {
                let status = Status::of(reply);
                let name = if status == Status::Incomplete {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                Self::open(out, name);
                out.extend_from_slice(b",\"response\":");
                write_response(out, req, reply, &self.id, self.created, status);
                (FrameKind::Done, Phase::End)
            }
            Phase::End => return None,
        };
        self.close(out);
        self.advance(kind, next)
    }

    fn advance(&mut self, kind: FrameKind, next: Phase) -> Option<FrameKind> {
        self.phase = next;
        Some(kind)
    }

    /// An `error` event, then `response.failed`.
    pub(super) fn fail(&mut self, req: &SynthRequest, out: &mut Vec<u8>) {
        Self::open(out, "error");
        out.extend_from_slice(b",\"code\":\"server_error\",\"message\":");
        write_json_str(out, ERROR_MESSAGE);
        out.extend_from_slice(b",\"param\":null");
        self.close(out);
        if let Some(reply) = req.reply() {
            Self::open(out, "response.failed");
            out.extend_from_slice(b",\"response\":");
            write_response(out, req, reply, &self.id, self.created, Status::Failed);
            self.close(out);
        }
        self.phase = Phase::End;
    }
}
