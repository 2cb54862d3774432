//! Anthropic Messages request -> Chat Completions request.

use serde_json::{Map, Value};

use super::{
    compact_arguments, data_url, empty_object_schema, include_usage_if, json_schema_format,
    map_tools, named_function_choice, system_message, user_message,
};
use crate::anthropic::{
    self, ContentBlock, MediaSource, MessageContent, MessagesRequest, Role, SystemPrompt, Tool,
    ToolChoice,
};
use crate::translate::chat::{
    self, ChatContent, ChatMessage, ChatPart, ChatRequest, ChatTool, ChatToolCall, FileRef,
    FunctionCall, FunctionDef,
};
use crate::translate::{parse_request, to_json, Dropped, TranslateError, Translated};

/// Anthropic Messages request -> Chat Completions request for `upstream_model`.
///
/// - `system` -> a first `system` message; `system` messages inside `messages` stay in place.
/// - `user` blocks: text / images (base64 -> `data:` URL) / PDFs (-> `file` parts) /
///   plain-text documents (-> text); `tool_result` blocks -> `tool` messages placed before the
///   rest of their user message (images inside a result move to that user message: a `tool`
///   message holds only text).
/// - `assistant` blocks: text -> `content`, `tool_use` -> `tool_calls` (`arguments` = compact JSON
///   of `input`); `thinking` dropped.
/// - `max_tokens` -> `max_tokens` (the name every server knows), `stop_sequences` -> `stop`,
///   `temperature`, `top_p`, `metadata.user_id` -> `user`, `tools`, `tool_choice`
///   (`disable_parallel_tool_use` -> `parallel_tool_calls: false`), `output_config.format`
///   -> `response_format`, `stream` (+ `stream_options.include_usage`: the gateway needs the
///   usage).
/// - Dropped and reported: `top_k`, `thinking`, `cache_control`, `is_error`, unknown blocks.
/// - Refused: server tools (web search, code execution...), file-id and URL documents.
pub fn messages_to_chat(body: &[u8], upstream_model: &str) -> Result<Translated, TranslateError> {
    let req: MessagesRequest = parse_request(body, anthropic::REQUEST_FIELDS)?;
    let mut dropped = Dropped::default();
    dropped.note_extra("", &req.extra);
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        messages.push(system_message(system_text_of(system, &mut dropped)));
    }
    for message in req.messages {
        match message.role {
            Role::System => {
                let text = match message.content {
                    MessageContent::Text(text) => text,
                    MessageContent::Blocks(blocks) => joined_text(blocks, &mut dropped),
                };
                messages.push(system_message(text));
            }
            Role::User => user_messages(message.content, &mut messages, &mut dropped)?,
            Role::Assistant => {
                messages.extend(assistant_message(message.content, &mut dropped));
            }
        }
    }
    if req.top_k.is_some() {
        dropped.note("top_k");
    }
    if req.thinking.is_some() {
        dropped.note("thinking");
    }
    let response_format = req
        .output_config
        .as_ref()
        .and_then(|config| output_config_to_chat_format(config, &mut dropped));

    let tools = map_tools(req.tools, |tool| chat_tool_of_anthropic(tool, &mut dropped))?;
    let (tool_choice, parallel_tool_calls) = match (&req.tool_choice, tools.is_some()) {
        (Some(choice), true) => chat_tool_choice_of_anthropic(choice)?,
        _ => (None, None),
    };
    let stream = req.stream;
    let out = ChatRequest {
        model: upstream_model.to_owned(),
        messages,
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream,
        stream_options: include_usage_if(stream),
        stop: req.stop_sequences.map(chat::Stop::Many),
        tools,
        tool_choice,
        parallel_tool_calls,
        user: req.metadata.and_then(|m| m.user_id),
        response_format,
        ..ChatRequest::default()
    };
    Ok(Translated {
        body: to_json(&out),
        dropped: dropped.into_vec(),
        echo: None,
    })
}

fn system_text_of(system: SystemPrompt, dropped: &mut Dropped) -> String {
    match system {
        SystemPrompt::Text(text) => text,
        SystemPrompt::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for block in blocks {
                match block {
                    ContentBlock::Text(b) => {
                        if b.cache_control.is_some() {
                            dropped.note("cache_control");
                        }
                        texts.push(b.text);
                    }
                    other => dropped.note(&format!("system {} block", other.kind())),
                }
            }
            texts.join("\n\n")
        }
    }
}

/// The text of text blocks, other blocks reported.
fn joined_text(blocks: Vec<ContentBlock>, dropped: &mut Dropped) -> String {
    let mut text = String::new();
    for block in blocks {
        match block {
            ContentBlock::Text(b) => {
                if b.cache_control.is_some() {
                    dropped.note("cache_control");
                }
                text.push_str(&b.text);
            }
            other => dropped.note(&format!("{} block", other.kind())),
        }
    }
    text
}

fn user_messages(
    content: MessageContent,
    out: &mut Vec<ChatMessage>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let blocks = match content {
        MessageContent::Text(text) => {
            out.push(user_message(ChatContent::Text(text)));
            return Ok(());
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::ToolResult(result) => {
                if result.is_error == Some(true) {
                    dropped.note("tool_result.is_error");
                }
                if result.cache_control.is_some() {
                    dropped.note("cache_control");
                }
                let mut text = String::new();
                match result.content {
                    None => {}
                    Some(MessageContent::Text(t)) => text = t,
                    Some(MessageContent::Blocks(inner)) => {
                        for block in inner {
                            match block {
                                ContentBlock::Text(b) => {
                                    if !text.is_empty() {
                                        text.push('\n');
                                    }
                                    text.push_str(&b.text);
                                }
                                // A tool message holds only text: the image goes to the user
                                // message that follows the tool messages.
                                other => parts.extend(chat_part_of_block(other, dropped)?),
                            }
                        }
                    }
                }
                out.push(ChatMessage {
                    role: "tool".to_owned(),
                    content: Some(ChatContent::Text(text)),
                    tool_call_id: Some(result.tool_use_id),
                    ..ChatMessage::default()
                });
            }
            other => parts.extend(chat_part_of_block(other, dropped)?),
        }
    }
    match parts.as_mut_slice() {
        [] => {}
        [ChatPart {
            kind,
            text: Some(text),
            ..
        }] if kind == "text" => out.push(user_message(ChatContent::Text(std::mem::take(text)))),
        _ => out.push(user_message(ChatContent::Parts(parts))),
    }
    Ok(())
}

/// A user block as a Chat content part (`None`: dropped and reported).
fn chat_part_of_block(
    block: ContentBlock,
    dropped: &mut Dropped,
) -> Result<Option<ChatPart>, TranslateError> {
    let (media, is_image) = match block {
        ContentBlock::Text(b) => {
            if b.cache_control.is_some() {
                dropped.note("cache_control");
            }
            return Ok(Some(ChatPart::text(b.text)));
        }
        ContentBlock::Image(media) => (media, true),
        ContentBlock::Document(media) => (media, false),
        other => {
            dropped.note(&format!("{} block", other.kind()));
            return Ok(None);
        }
    };
    if media.cache_control.is_some() {
        dropped.note("cache_control");
    }
    let part = match (media.source, is_image) {
        (MediaSource::Base64 { media_type, data }, true) => {
            ChatPart::image(data_url(&media_type, &data))
        }
        (MediaSource::Url { url }, true) => ChatPart::image(url),
        (MediaSource::Base64 { media_type, data }, false) => ChatPart {
            kind: "file".to_owned(),
            file: Some(FileRef {
                file_data: Some(data_url(&media_type, &data)),
                file_id: None,
                filename: Some("document.pdf".to_owned()),
            }),
            ..ChatPart::default()
        },
        (MediaSource::Other(source), false)
            if source.get("type").and_then(Value::as_str) == Some("text") =>
        {
            let text = source
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            ChatPart::text(text)
        }
        (source, is_image) => {
            let kind = match &source {
                MediaSource::Url { .. } => "url",
                MediaSource::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
                MediaSource::Base64 { .. } => "base64",
            };
            let what = if is_image { "An image" } else { "A document" };
            return Err(TranslateError::unsupported(
                &format!("{what} with a `{kind}` source"),
                "messages",
            ));
        }
    };
    Ok(Some(part))
}

fn assistant_message(content: MessageContent, dropped: &mut Dropped) -> Option<ChatMessage> {
    let blocks = match content {
        MessageContent::Text(text) => {
            return Some(ChatMessage {
                role: "assistant".to_owned(),
                content: Some(ChatContent::Text(text)),
                ..ChatMessage::default()
            })
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(b) => {
                if b.cache_control.is_some() {
                    dropped.note("cache_control");
                }
                text.get_or_insert_with(String::new).push_str(&b.text);
            }
            ContentBlock::ToolUse(call) => {
                if call.cache_control.is_some() {
                    dropped.note("cache_control");
                }
                calls.push(ChatToolCall {
                    id: call.id,
                    kind: "function".to_owned(),
                    function: Some(FunctionCall {
                        name: call.name,
                        arguments: compact_arguments(&call.input),
                    }),
                });
            }
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {
                dropped.note("thinking");
            }
            other => dropped.note(&format!("{} block", other.kind())),
        }
    }
    if text.is_none() && calls.is_empty() {
        return None;
    }
    Some(ChatMessage {
        role: "assistant".to_owned(),
        content: text.map(ChatContent::Text),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..ChatMessage::default()
    })
}

fn chat_tool_of_anthropic(tool: Tool, dropped: &mut Dropped) -> Result<ChatTool, TranslateError> {
    if !tool.is_client_tool() {
        return Err(TranslateError::unsupported(
            &format!(
                "The server tool `{}`",
                tool.kind.as_deref().unwrap_or_default()
            ),
            "tools",
        ));
    }
    if tool.cache_control.is_some() {
        dropped.note("cache_control");
    }
    dropped.note_extra("tools[].", &tool.extra);
    Ok(ChatTool {
        kind: "function".to_owned(),
        function: Some(FunctionDef {
            name: tool.name,
            description: tool.description,
            parameters: Some(tool.input_schema.unwrap_or_else(empty_object_schema)),
            strict: tool.strict,
        }),
        extra: Map::new(),
    })
}

fn chat_tool_choice_of_anthropic(
    choice: &ToolChoice,
) -> Result<(Option<Value>, Option<bool>), TranslateError> {
    let value = match choice.kind.as_str() {
        "auto" => Value::from("auto"),
        "any" => Value::from("required"),
        "none" => Value::from("none"),
        "tool" => {
            let name = choice.name.clone().ok_or_else(|| {
                TranslateError::invalid("`tool_choice.name` is required", Some("tool_choice"))
            })?;
            named_function_choice(name)
        }
        other => {
            return Err(TranslateError::invalid(
                format!("Invalid value for 'tool_choice.type': '{other}'."),
                Some("tool_choice"),
            ))
        }
    };
    let parallel = (choice.disable_parallel_tool_use == Some(true)).then_some(false);
    Ok((Some(value), parallel))
}

/// Anthropic `output_config` -> Chat `response_format` (`effort` has no Chat equivalent).
fn output_config_to_chat_format(config: &Value, dropped: &mut Dropped) -> Option<Value> {
    if let Some(object) = config.as_object() {
        for key in object.keys().filter(|k| *k != "format") {
            dropped.note(&format!("output_config.{key}"));
        }
    }
    let format = config.get("format").filter(|f| !f.is_null())?;
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        dropped.note("output_config.format");
        return None;
    }
    let mut schema = Map::new();
    schema.insert("name".to_owned(), Value::from("output"));
    schema.insert(
        "schema".to_owned(),
        format.get("schema").cloned().unwrap_or(Value::Null),
    );
    schema.insert("strict".to_owned(), Value::from(true));
    Some(json_schema_format(schema))
}
