//! Chat Completions request -> Anthropic Messages request.

use serde_json::{Map, Value};

use super::{empty_object_schema, map_tools, parse_data_url};
use crate::anthropic::{
    ContentBlock, InputMessage, MediaBlock, MediaSource, MessageContent, MessagesRequest, Metadata,
    Role, SystemPrompt, TextBlock, Tool, ToolChoice, ToolResultBlock, ToolUseBlock,
};
use crate::translate::chat::{self, ChatContent, ChatMessage, ChatRequest, ChatTool};
use crate::translate::{parse_request, to_json, Dropped, TranslateError, Translated};

/// Chat Completions request -> Anthropic Messages request for `upstream_model`.
///
/// - `system` / `developer` messages (wherever they are) -> top-level `system`: one string
///   (joined with blank lines), or text blocks when any part carries `cache_control`.
/// - `user` / `assistant` messages -> blocks (text, images, PDFs from `file_data`, `tool_use`
///   from `tool_calls`); consecutive `tool` messages -> one `user` message of `tool_result`
///   blocks. Consecutive messages of the same role are merged (Anthropic wants alternating
///   roles), `tool_result` blocks first as Anthropic requires. `cache_control` on a part stays
///   on its block.
/// - `tools`, `tool_choice`, `parallel_tool_calls: false` (-> `disable_parallel_tool_use`),
///   `max_completion_tokens` / `max_tokens` (else `default_max_tokens`), `stop`,
///   `temperature` (capped at Anthropic's 1.0, reported), `top_p`, `stream`, `user`
///   (-> `metadata.user_id`), `response_format` `json_schema` (-> `output_config.format`).
/// - Refused: `n > 1`, custom (non-function) tools, audio input, `file_id` references,
///   assistant tool-call arguments that are not a JSON object.
pub fn chat_to_messages(
    body: &[u8],
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Translated, TranslateError> {
    let req: ChatRequest = parse_request(body, chat::REQUEST_FIELDS)?;
    let mut dropped = Dropped::default();
    dropped.note_extra("", &req.extra);
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::invalid(
            "Only n=1 is supported by this backend (Anthropic has no `n`).",
            Some("n"),
        ));
    }

    let mut system: Vec<TextBlock> = Vec::new();
    let mut turns = Turns::default();
    for (i, message) in req.messages.into_iter().enumerate() {
        if message.name.is_some() {
            dropped.note("messages[].name");
        }
        dropped.note_extra("messages[].", &message.extra);
        match message.role.as_str() {
            "system" | "developer" => system.extend(system_text(message.content, i)?),
            "user" => turns.push(Role::User, user_blocks(message.content, i)?),
            "assistant" => turns.push(Role::Assistant, assistant_blocks(message, i)?),
            "tool" => turns.push(Role::User, vec![tool_result(message, i)?]),
            "function" => {
                return Err(TranslateError::unsupported(
                    "The deprecated `function` role",
                    "messages",
                ))
            }
            other => {
                return Err(TranslateError::invalid(
                    format!("Invalid value for 'messages[{i}].role': '{other}'."),
                    Some("messages"),
                ))
            }
        }
    }

    let tools = map_tools(req.tools, |tool| anthropic_tool(tool, &mut dropped))?;
    let tool_choice = anthropic_tool_choice(
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
        tools.is_some(),
    )?;

    let mut temperature = req.temperature;
    if let Some(t) = temperature.filter(|t| *t > 1.0) {
        dropped.note(&format!("temperature {t} (capped at 1)"));
        temperature = Some(1.0);
    }
    if let Some(effort) = &req.reasoning_effort {
        dropped.note(&format!("reasoning_effort {effort}"));
    }
    let output_config = match req.response_format {
        Some(format) => chat_format_to_output_config(&format, &mut dropped),
        None => None,
    };

    let out = MessagesRequest {
        model: upstream_model.to_owned(),
        messages: turns.into_messages(),
        system: system_prompt(system),
        max_tokens: Some(
            req.max_completion_tokens
                .or(req.max_tokens)
                .unwrap_or(default_max_tokens),
        ),
        metadata: req.user.map(|user| Metadata {
            user_id: Some(user),
        }),
        stop_sequences: req
            .stop
            .map(chat::Stop::into_vec)
            .filter(|stop| !stop.is_empty()),
        stream: req.stream,
        temperature,
        top_p: req.top_p,
        top_k: None,
        tools,
        tool_choice,
        thinking: None,
        output_config,
        extra: Map::new(),
    };
    Ok(Translated {
        body: to_json(&out),
        dropped: dropped.into_vec(),
        echo: None,
    })
}

/// Anthropic turns being built, merging consecutive messages of one role.
#[derive(Default)]
struct Turns(Vec<(Role, Vec<ContentBlock>)>);

impl Turns {
    fn push(&mut self, role: Role, blocks: Vec<ContentBlock>) {
        if blocks.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((last, existing)) if *last == role => {
                // `tool_result` blocks must open a user message: insert new ones after the
                // existing results, before any other block.
                for block in blocks {
                    if matches!(block, ContentBlock::ToolResult(_)) {
                        let at = existing
                            .iter()
                            .position(|b| !matches!(b, ContentBlock::ToolResult(_)))
                            .unwrap_or(existing.len());
                        existing.insert(at, block);
                    } else {
                        existing.push(block);
                    }
                }
            }
            _ => self.0.push((role, blocks)),
        }
    }

    fn into_messages(self) -> Vec<InputMessage> {
        self.0
            .into_iter()
            .map(|(role, mut blocks)| {
                let content = match blocks.as_mut_slice() {
                    [ContentBlock::Text(TextBlock {
                        text,
                        cache_control: None,
                    })] => MessageContent::Text(std::mem::take(text)),
                    _ => MessageContent::Blocks(blocks),
                };
                InputMessage { role, content }
            })
            .collect()
    }
}

fn system_prompt(blocks: Vec<TextBlock>) -> Option<SystemPrompt> {
    if blocks.is_empty() {
        return None;
    }
    if blocks.iter().any(|b| b.cache_control.is_some()) {
        return Some(SystemPrompt::Blocks(
            blocks.into_iter().map(ContentBlock::Text).collect(),
        ));
    }
    let texts: Vec<String> = blocks.into_iter().map(|b| b.text).collect();
    Some(SystemPrompt::Text(texts.join("\n\n")))
}

fn messages_error(i: usize, what: &str) -> TranslateError {
    TranslateError::invalid(format!("messages[{i}]: {what}"), Some("messages"))
}

/// Text blocks of a system / developer message.
fn system_text(content: Option<ChatContent>, i: usize) -> Result<Vec<TextBlock>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(ChatContent::Text(text)) => Ok(non_empty_text(text, None).into_iter().collect()),
        Some(ChatContent::Parts(parts)) => parts
            .into_iter()
            .filter_map(|part| match part.kind.as_str() {
                "text" => non_empty_text(part.text.unwrap_or_default(), part.cache_control).map(Ok),
                other => Some(Err(messages_error(
                    i,
                    &format!("a system message can only hold text, not `{other}`"),
                ))),
            })
            .collect(),
    }
}

/// Anthropic refuses empty text blocks; an empty one carries no meaning anyway.
fn non_empty_text(text: String, cache_control: Option<Value>) -> Option<TextBlock> {
    (!text.is_empty()).then_some(TextBlock {
        text,
        cache_control,
    })
}

fn user_blocks(
    content: Option<ChatContent>,
    i: usize,
) -> Result<Vec<ContentBlock>, TranslateError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(ChatContent::Text(text)) => {
            return Ok(non_empty_text(text, None)
                .map(ContentBlock::Text)
                .into_iter()
                .collect())
        }
        Some(ChatContent::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part.kind.as_str() {
            "text" | "input_text" => {
                blocks.extend(
                    non_empty_text(part.text.unwrap_or_default(), part.cache_control)
                        .map(ContentBlock::Text),
                );
            }
            "image_url" => {
                let url = part.image_url.map(|u| u.url).unwrap_or_default();
                blocks.push(ContentBlock::Image(MediaBlock {
                    source: media_source(&url).ok_or_else(|| {
                        messages_error(i, "`image_url.url` must be an http(s) or base64 data URL")
                    })?,
                    cache_control: part.cache_control,
                }));
            }
            "file" => {
                let file = part.file.unwrap_or_default();
                let Some(data) = file.file_data else {
                    return Err(TranslateError::unsupported(
                        "A file referenced by `file_id`",
                        "messages",
                    ));
                };
                let source = match parse_data_url(&data) {
                    Some((media_type, data)) => MediaSource::Base64 {
                        media_type: media_type.to_owned(),
                        data: data.to_owned(),
                    },
                    None => {
                        return Err(messages_error(
                            i,
                            "`file.file_data` must be a base64 data URL",
                        ))
                    }
                };
                blocks.push(ContentBlock::Document(MediaBlock {
                    source,
                    cache_control: part.cache_control,
                }));
            }
            "input_audio" => return Err(TranslateError::unsupported("Audio input", "messages")),
            other => {
                return Err(TranslateError::unsupported(
                    &format!("The content part type `{other}`"),
                    "messages",
                ))
            }
        }
    }
    Ok(blocks)
}

fn assistant_blocks(message: ChatMessage, i: usize) -> Result<Vec<ContentBlock>, TranslateError> {
    let mut blocks = Vec::new();
    match message.content {
        None => {}
        Some(ChatContent::Text(text)) => {
            blocks.extend(non_empty_text(text, None).map(ContentBlock::Text));
        }
        Some(ChatContent::Parts(parts)) => {
            for part in parts {
                let text = part.text.or(part.refusal).unwrap_or_default();
                blocks.extend(non_empty_text(text, part.cache_control).map(ContentBlock::Text));
            }
        }
    }
    if let Some(refusal) = message.refusal {
        blocks.extend(non_empty_text(refusal, None).map(ContentBlock::Text));
    }
    for (j, call) in message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some(function) = call.function.filter(|_| call.kind == "function") else {
            return Err(TranslateError::unsupported(
                &format!("The tool call type `{}`", call.kind),
                "messages",
            ));
        };
        if call.id.is_empty() {
            return Err(messages_error(
                i,
                &format!("tool_calls[{j}].id is required"),
            ));
        }
        blocks.push(ContentBlock::ToolUse(ToolUseBlock {
            id: call.id,
            name: function.name,
            input: arguments_object(&function.arguments).ok_or_else(|| {
                messages_error(
                    i,
                    &format!("tool_calls[{j}].function.arguments is not a JSON object"),
                )
            })?,
            cache_control: None,
        }));
    }
    Ok(blocks)
}

/// Tool-call arguments as the JSON object Anthropic wants; empty arguments are `{}`.
fn arguments_object(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
}

fn tool_result(message: ChatMessage, i: usize) -> Result<ContentBlock, TranslateError> {
    let Some(tool_use_id) = message.tool_call_id.filter(|id| !id.is_empty()) else {
        return Err(messages_error(
            i,
            "a `tool` message needs its `tool_call_id`",
        ));
    };
    let mut cache_control = None;
    let content = match message.content {
        None => None,
        Some(ChatContent::Text(text)) => Some(MessageContent::Text(text)),
        Some(ChatContent::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                cache_control = cache_control.or(part.cache_control.clone());
                blocks.extend(user_blocks(Some(ChatContent::Parts(vec![part])), i)?);
            }
            // The cache breakpoint belongs to the result block as a whole.
            for block in &mut blocks {
                match block {
                    ContentBlock::Text(b) => b.cache_control = None,
                    ContentBlock::Image(b) | ContentBlock::Document(b) => b.cache_control = None,
                    _ => {}
                }
            }
            Some(MessageContent::Blocks(blocks))
        }
    };
    Ok(ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id,
        content,
        is_error: None,
        cache_control,
    }))
}

fn anthropic_tool(tool: ChatTool, dropped: &mut Dropped) -> Result<Tool, TranslateError> {
    let Some(function) = tool.function.filter(|_| tool.kind == "function") else {
        return Err(TranslateError::unsupported(
            &format!("The `{}` tool type", tool.kind),
            "tools",
        ));
    };
    let mut extra = tool.extra;
    let cache_control = extra.remove("cache_control");
    dropped.note_extra("tools[].", &extra);
    Ok(Tool {
        kind: None,
        name: function.name,
        description: function.description,
        input_schema: Some(function.parameters.unwrap_or_else(empty_object_schema)),
        strict: function.strict,
        cache_control,
        extra: Map::new(),
    })
}

fn anthropic_tool_choice(
    choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
    has_tools: bool,
) -> Result<Option<ToolChoice>, TranslateError> {
    if !has_tools {
        // Anthropic refuses a tool_choice without tools; without tools it means nothing.
        return Ok(None);
    }
    let mode = |kind: &str| ToolChoice {
        kind: kind.to_owned(),
        ..ToolChoice::default()
    };
    let mut choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => mode("auto"),
            "required" => mode("any"),
            "none" => mode("none"),
            other => {
                return Err(TranslateError::invalid(
                    format!("Invalid value for 'tool_choice': '{other}'."),
                    Some("tool_choice"),
                ))
            }
        }),
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| object.get("type").and_then(Value::as_str) == Some("function"));
            match name {
                Some(name) => Some(ToolChoice {
                    kind: "tool".to_owned(),
                    name: Some(name.to_owned()),
                    disable_parallel_tool_use: None,
                }),
                None => {
                    return Err(TranslateError::unsupported(
                        "This `tool_choice`",
                        "tool_choice",
                    ))
                }
            }
        }
    };
    if parallel_tool_calls == Some(false) {
        let choice = choice.get_or_insert_with(|| mode("auto"));
        if choice.kind != "none" {
            choice.disable_parallel_tool_use = Some(true);
        }
    }
    Ok(choice)
}

/// Chat `response_format` -> Anthropic `output_config`: only `json_schema` has an equivalent.
fn chat_format_to_output_config(format: &Value, dropped: &mut Dropped) -> Option<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") | None => None,
        Some("json_schema") => {
            let schema = format.get("json_schema")?.get("schema")?.clone();
            Some(output_config_format(schema))
        }
        Some(other) => {
            dropped.note(&format!("response_format {other}"));
            None
        }
    }
}

fn output_config_format(schema: Value) -> Value {
    let mut format = Map::new();
    format.insert("type".to_owned(), Value::from("json_schema"));
    format.insert("schema".to_owned(), schema);
    let mut config = Map::new();
    config.insert("format".to_owned(), Value::Object(format));
    Value::Object(config)
}

/// An image URL as an Anthropic source: `data:` -> base64, `http(s)` -> url.
fn media_source(url: &str) -> Option<MediaSource> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(MediaSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    (url.starts_with("https://") || url.starts_with("http://")).then(|| MediaSource::Url {
        url: url.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sources() {
        assert_eq!(
            media_source("http://x/y.png"),
            Some(MediaSource::Url {
                url: "http://x/y.png".to_owned()
            })
        );
        assert_eq!(
            media_source("data:image/gif;base64,R0lG"),
            Some(MediaSource::Base64 {
                media_type: "image/gif".to_owned(),
                data: "R0lG".to_owned()
            })
        );
        assert_eq!(media_source("ftp://x"), None);
    }

    #[test]
    fn arguments() {
        assert_eq!(arguments_object(""), Some(Value::Object(Map::new())));
        assert_eq!(arguments_object(" {\"a\":1} ").unwrap()["a"], 1);
        assert_eq!(arguments_object("[1]"), None);
        assert_eq!(arguments_object("{\"a\":"), None);
    }
}
