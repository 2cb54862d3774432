//! Request translation: the client's body in, the upstream's body out.
//!
//! Each function parses the whole request into its typed form, builds the target API's typed
//! request and serialises it compactly. Fields with no equivalent are listed in
//! [`Translated::dropped`](super::Translated::dropped); requests whose meaning cannot survive the
//! translation are refused with a [`TranslateError`] naming the field.

mod chat_to_messages;
mod messages_to_chat;
mod responses_to_chat;

pub use chat_to_messages::chat_to_messages;
pub use messages_to_chat::messages_to_chat;
pub use responses_to_chat::responses_to_chat;

use serde_json::{Map, Value};

use super::chat::{ChatContent, ChatMessage, StreamOptions};
use super::{to_json, TranslateError};

/// Tools translated one by one; an empty list is no list (APIs refuse `tools: []` with a
/// `tool_choice`, and it means nothing).
fn map_tools<T, U>(
    tools: Option<Vec<T>>,
    translate: impl FnMut(T) -> Result<U, TranslateError>,
) -> Result<Option<Vec<U>>, TranslateError> {
    let tools = tools
        .unwrap_or_default()
        .into_iter()
        .map(translate)
        .collect::<Result<Vec<U>, _>>()?;
    Ok((!tools.is_empty()).then_some(tools))
}

fn empty_object_schema() -> Value {
    let mut schema = Map::new();
    schema.insert("type".to_owned(), Value::from("object"));
    schema.insert("properties".to_owned(), Value::Object(Map::new()));
    Value::Object(schema)
}

/// `data:<media type>[;params];base64,<data>` -> (media type, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let header = header.strip_suffix(";base64")?;
    let media_type = header.split(';').next().unwrap_or(header);
    (!media_type.is_empty()).then_some((media_type, data))
}

fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

/// `stream_options: {include_usage: true}` for a streamed request: the gateway meters usage.
fn include_usage_if(stream: Option<bool>) -> Option<StreamOptions> {
    (stream == Some(true)).then(|| StreamOptions {
        include_usage: Some(true),
        extra: Map::new(),
    })
}

fn system_message(text: String) -> ChatMessage {
    ChatMessage {
        role: "system".to_owned(),
        content: Some(ChatContent::Text(text)),
        ..ChatMessage::default()
    }
}

fn user_message(content: ChatContent) -> ChatMessage {
    ChatMessage {
        role: "user".to_owned(),
        content: Some(content),
        ..ChatMessage::default()
    }
}

/// `{"type":"function","function":{"name":..}}`.
fn named_function_choice(name: String) -> Value {
    let mut function = Map::new();
    function.insert("name".to_owned(), Value::from(name));
    let mut choice = Map::new();
    choice.insert("type".to_owned(), Value::from("function"));
    choice.insert("function".to_owned(), Value::Object(function));
    Value::Object(choice)
}

fn json_schema_format(schema: Map<String, Value>) -> Value {
    let mut format = Map::new();
    format.insert("type".to_owned(), Value::from("json_schema"));
    format.insert("json_schema".to_owned(), Value::Object(schema));
    Value::Object(format)
}

/// `input` as the compact JSON string Chat wants in `arguments` (`{}` for a missing input).
pub(crate) fn compact_arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        other => String::from_utf8(to_json(other)).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(
            parse_data_url("data:application/pdf;name=x.pdf;base64,JVBE"),
            Some(("application/pdf", "JVBE"))
        );
        assert_eq!(parse_data_url("data:image/png,AAAA"), None);
        assert_eq!(parse_data_url("data:;base64,AAAA"), None);
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(data_url("image/png", "AAAA"), "data:image/png;base64,AAAA");
    }

    #[test]
    fn compact() {
        assert_eq!(compact_arguments(&Value::Null), "{}");
        assert_eq!(
            compact_arguments(&serde_json::json!({"a": [1, 2]})),
            r#"{"a":[1,2]}"#
        );
    }
}
