//! OpenAI Responses request -> Chat Completions request.

use serde_json::{Map, Value};

use super::{
    include_usage_if, json_schema_format, map_tools, named_function_choice, system_message,
    user_message,
};
use crate::responses::{self, Content, ContentPart, Input, InputItem, ResponsesRequest};
use crate::translate::chat::{
    self, ChatContent, ChatMessage, ChatPart, ChatRequest, ChatTool, ChatToolCall, FileRef,
    FunctionCall, FunctionDef,
};
use crate::translate::{
    parse_request, to_json, Dropped, ResponsesEcho, TranslateError, Translated,
};

/// OpenAI Responses request -> Chat Completions request for `upstream_model`.
///
/// - `instructions` -> a first `system` message; `input` (a string, or items) -> messages:
///   `message` items (any role; `input_text` / `output_text` / `input_image` / `input_file`
///   parts), `function_call` items -> `tool_calls` of the assistant message they follow,
///   `function_call_output` items -> `tool` messages; `reasoning` items dropped.
/// - `tools` (function tools only), `tool_choice`, `parallel_tool_calls`, `max_output_tokens`
///   -> `max_tokens`, `temperature`, `top_p`, `text.format` -> `response_format`,
///   `reasoning.effort` -> `reasoning_effort`, `user`, `stream` (+ `include_usage`).
/// - Refused: `previous_response_id` and `conversation` (the gateway keeps no state),
///   `background`, stored `prompt`s, hosted tools, `item_reference` and other item types.
/// - [`Translated::echo`] carries what the response object must repeat.
pub fn responses_to_chat(body: &[u8], upstream_model: &str) -> Result<Translated, TranslateError> {
    let mut req: ResponsesRequest = parse_request(body, responses::REQUEST_FIELDS)?;
    if req.previous_response_id.is_some() {
        return Err(TranslateError::unsupported(
            "`previous_response_id` (the gateway keeps no conversation state; send the whole input)",
            "previous_response_id",
        ));
    }
    for (field, what) in [
        (
            "conversation",
            "`conversation` (the gateway keeps no conversation state)",
        ),
        ("background", "`background` mode"),
        ("prompt", "A stored `prompt`"),
    ] {
        let set = req
            .extra
            .remove(field)
            .is_some_and(|v| !v.is_null() && v != Value::Bool(false));
        if set {
            return Err(TranslateError::unsupported(what, field));
        }
    }
    let mut dropped = Dropped::default();
    dropped.note_extra("", &req.extra);
    if req.store == Some(true) {
        dropped.note("store");
    }
    if req.metadata.is_some() {
        dropped.note("metadata");
    }

    let echo = ResponsesEcho {
        instructions: req.instructions.clone(),
        tools: req
            .tools
            .iter()
            .flatten()
            .map(|tool| serde_json::to_value(tool).unwrap_or(Value::Null))
            .collect(),
        tool_choice: req
            .tool_choice
            .clone()
            .unwrap_or_else(|| Value::from("auto")),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_output_tokens,
        text: req
            .text
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or_else(|| ResponsesEcho::default().text),
        reasoning: req.reasoning.clone(),
        metadata: req
            .metadata
            .clone()
            .unwrap_or_else(|| Value::Object(Map::new())),
        user: req.user.clone(),
    };

    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions {
        messages.push(system_message(instructions));
    }
    match req.input {
        None => {}
        Some(Input::Text(text)) => messages.push(user_message(ChatContent::Text(text))),
        Some(Input::Items(items)) => {
            for item in items {
                input_item(item, &mut messages, &mut dropped)?;
            }
        }
    }

    let tools = map_tools(req.tools, |tool| chat_tool_of_responses(tool, &mut dropped))?;
    let tool_choice = match req.tool_choice {
        Some(choice) if tools.is_some() => Some(chat_tool_choice_of_responses(choice)?),
        _ => None,
    };
    let response_format = match req.text {
        Some(text) => {
            if text.verbosity.is_some() {
                dropped.note("text.verbosity");
            }
            dropped.note_extra("text.", &text.extra);
            text.format
                .and_then(|format| responses_format_to_chat(format, &mut dropped))
        }
        None => None,
    };
    let reasoning_effort = match req.reasoning {
        Some(Value::Object(mut reasoning)) => {
            let effort = reasoning
                .remove("effort")
                .and_then(|e| e.as_str().map(str::to_owned));
            for (key, value) in &reasoning {
                if !value.is_null() {
                    dropped.note(&format!("reasoning.{key}"));
                }
            }
            effort
        }
        _ => None,
    };

    let stream = req.stream;
    let out = ChatRequest {
        model: upstream_model.to_owned(),
        messages,
        max_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream,
        stream_options: include_usage_if(stream),
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| tools.is_some()),
        tools,
        tool_choice,
        user: req.user,
        response_format,
        reasoning_effort,
        ..ChatRequest::default()
    };
    Ok(Translated {
        body: to_json(&out),
        dropped: dropped.into_vec(),
        echo: Some(echo),
    })
}

fn input_item(
    item: InputItem,
    out: &mut Vec<ChatMessage>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    match item.kind() {
        "message" => {
            let role = item.role.unwrap_or_else(|| "user".to_owned());
            let content = item.content.unwrap_or(Content::Text(String::new()));
            match role.as_str() {
                "assistant" => {
                    let text = match content {
                        Content::Text(text) => text,
                        Content::Parts(parts) => parts
                            .into_iter()
                            .filter_map(|p| p.text.or(p.refusal))
                            .collect::<Vec<_>>()
                            .concat(),
                    };
                    out.push(ChatMessage {
                        role,
                        content: Some(ChatContent::Text(text)),
                        ..ChatMessage::default()
                    });
                }
                "user" | "system" | "developer" => {
                    let content = match content {
                        Content::Text(text) => ChatContent::Text(text),
                        Content::Parts(parts) => ChatContent::Parts(
                            parts
                                .into_iter()
                                .map(chat_part_of_input)
                                .collect::<Result<_, _>>()?,
                        ),
                    };
                    out.push(ChatMessage {
                        role,
                        content: Some(content),
                        ..ChatMessage::default()
                    });
                }
                other => {
                    return Err(TranslateError::invalid(
                        format!("Invalid value for 'input[].role': '{other}'."),
                        Some("input"),
                    ))
                }
            }
        }
        "function_call" => {
            let call = ChatToolCall {
                id: item.call_id.unwrap_or_default(),
                kind: "function".to_owned(),
                function: Some(FunctionCall {
                    name: item.name.unwrap_or_default(),
                    arguments: item.arguments.unwrap_or_default(),
                }),
            };
            match out.last_mut() {
                // Calls of one turn follow the assistant message (or each other).
                Some(last) if last.role == "assistant" => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call);
                }
                _ => out.push(ChatMessage {
                    role: "assistant".to_owned(),
                    tool_calls: Some(vec![call]),
                    ..ChatMessage::default()
                }),
            }
        }
        "function_call_output" => {
            let mut images = Vec::new();
            let text = match item.output {
                None => String::new(),
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match part.text {
                            Some(t) => text.push_str(&t),
                            // A tool message holds only text.
                            None => images.push(chat_part_of_input(part)?),
                        }
                    }
                    text
                }
            };
            out.push(ChatMessage {
                role: "tool".to_owned(),
                content: Some(ChatContent::Text(text)),
                tool_call_id: item.call_id,
                ..ChatMessage::default()
            });
            if !images.is_empty() {
                out.push(user_message(ChatContent::Parts(images)));
            }
        }
        "reasoning" => dropped.note("input[].reasoning"),
        "item_reference" => {
            return Err(TranslateError::unsupported(
                "`item_reference` (the gateway keeps no stored items)",
                "input",
            ))
        }
        other => {
            return Err(TranslateError::unsupported(
                &format!("The input item type `{other}`"),
                "input",
            ))
        }
    }
    Ok(())
}

fn chat_part_of_input(part: ContentPart) -> Result<ChatPart, TranslateError> {
    match part.kind.as_str() {
        "input_text" | "output_text" | "text" => Ok(ChatPart::text(part.text.unwrap_or_default())),
        "refusal" => Ok(ChatPart::text(part.refusal.unwrap_or_default())),
        "input_image" => match part.image_url {
            Some(url) => Ok(ChatPart {
                image_url: Some(chat::ImageUrl {
                    url,
                    detail: part.detail,
                }),
                ..ChatPart::image("")
            }),
            None => Err(TranslateError::unsupported(
                "An image referenced by `file_id`",
                "input",
            )),
        },
        "input_file" => match part.file_data {
            Some(data) => Ok(ChatPart {
                kind: "file".to_owned(),
                file: Some(FileRef {
                    file_data: Some(data),
                    file_id: None,
                    filename: part.filename,
                }),
                ..ChatPart::default()
            }),
            None => Err(TranslateError::unsupported(
                "A file referenced by `file_id` or `file_url`",
                "input",
            )),
        },
        other => Err(TranslateError::unsupported(
            &format!("The content part type `{other}`"),
            "input",
        )),
    }
}

fn chat_tool_of_responses(
    tool: responses::Tool,
    dropped: &mut Dropped,
) -> Result<ChatTool, TranslateError> {
    if tool.kind != "function" {
        return Err(TranslateError::unsupported(
            &format!("The `{}` tool", tool.kind),
            "tools",
        ));
    }
    let Some(name) = tool.name else {
        return Err(TranslateError::invalid(
            "Missing required parameter: 'tools[].name'.",
            Some("tools"),
        ));
    };
    dropped.note_extra("tools[].", &tool.extra);
    Ok(ChatTool {
        kind: "function".to_owned(),
        function: Some(FunctionDef {
            name,
            description: tool.description,
            parameters: tool.parameters,
            strict: tool.strict,
        }),
        extra: Map::new(),
    })
}

fn chat_tool_choice_of_responses(choice: Value) -> Result<Value, TranslateError> {
    match &choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(choice),
        Value::Object(object) if object.get("type").and_then(Value::as_str) == Some("function") => {
            match object.get("name").and_then(Value::as_str) {
                Some(name) => Ok(named_function_choice(name.to_owned())),
                None => Err(TranslateError::invalid(
                    "Missing required parameter: 'tool_choice.name'.",
                    Some("tool_choice"),
                )),
            }
        }
        _ => Err(TranslateError::unsupported(
            "This `tool_choice`",
            "tool_choice",
        )),
    }
}

/// Responses `text.format` -> Chat `response_format`.
fn responses_format_to_chat(format: Value, dropped: &mut Dropped) -> Option<Value> {
    let Value::Object(mut format) = format else {
        return None;
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") | None => None,
        Some("json_object") => Some(Value::Object(format)),
        Some("json_schema") => {
            format.remove("type");
            Some(json_schema_format(format))
        }
        Some(other) => {
            dropped.note(&format!("text.format {other}"));
            None
        }
    }
}
