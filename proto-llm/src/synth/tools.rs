//! Tool calls: which tool a reply calls, and its arguments, generated from the tool's JSON
//! schema.
//!
//! The three chat-like APIs spell tools, `tool_choice` and tool results differently; their
//! parsers turn them into [`Tool`] and [`ToolChoice`], and [`pick`] decides the same way for
//! all of them.

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{write_json_str, write_value};
use super::SynthError;

/// Bytes per streamed arguments fragment (rounded up to a character boundary).
pub(super) const FRAGMENT_BYTES: usize = 8;

/// A function tool the request offers.
#[derive(Debug)]
pub(super) struct Tool {
    pub(super) name: String,
    /// `parameters` (OpenAI) or `input_schema` (Anthropic), as sent.
    pub(super) schema: Option<Box<RawValue>>,
}

/// The request's `tool_choice`, in the three APIs' common terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToolChoice {
    /// The model decides (here: a tool call only when the user asks for one by name).
    Auto,
    /// Never call a tool.
    None,
    /// Must call some tool (chat / Responses `required`, Anthropic `any`).
    Any,
    /// Must call this tool.
    Named(String),
}

/// The tool a reply calls, if any.
///
/// Forced choices (`Any`, `Named`) always call a tool: the named one; for `Any` the tool the
/// last user message names (`call NAME`), else the first. With `Auto`, a conversation that
/// ends with tool results is answered in text; otherwise the last user message calls a tool by
/// containing the word `call` followed by the tool's name.
pub(super) fn pick<'a>(
    tools: &'a [Tool],
    choice: &ToolChoice,
    last_user: &str,
    ends_with_results: bool,
) -> Option<&'a Tool> {
    match choice {
        ToolChoice::None => None,
        ToolChoice::Named(name) => tools.iter().find(|t| &t.name == name),
        ToolChoice::Any => named_in(last_user, tools).or_else(|| tools.first()),
        ToolChoice::Auto if ends_with_results => None,
        ToolChoice::Auto => named_in(last_user, tools),
    }
}

/// The first tool named right after the word `call` in `text` (case-insensitive `call`,
/// punctuation around the name ignored).
fn named_in<'a>(text: &str, tools: &'a [Tool]) -> Option<&'a Tool> {
    let mut after_call = false;
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
        if after_call {
            if let Some(tool) = tools.iter().find(|t| t.name == word) {
                return Some(tool);
            }
        }
        after_call = word.eq_ignore_ascii_case("call");
    }
    None
}

/// A tool call: the tool's name and the arguments JSON, streamed in fragments.
#[derive(Debug)]
pub(super) struct ToolCall {
    pub(super) name: String,
    pub(super) arguments: String,
    /// Start offsets of the fragments in `arguments` (the first is 0).
    starts: Vec<usize>,
}

impl ToolCall {
    /// A call of `tool`, its string arguments filled with `echo`.
    pub(super) fn new(tool: &Tool, echo: &str) -> Self {
        let arguments = arguments(tool.schema.as_deref(), echo);
        let mut starts = Vec::with_capacity(arguments.len() / FRAGMENT_BYTES + 1);
        let mut at = 0;
        while at < arguments.len() {
            starts.push(at);
            at += FRAGMENT_BYTES;
            while at < arguments.len() && !arguments.is_char_boundary(at) {
                at += 1;
            }
        }
        Self {
            name: tool.name.clone(),
            arguments,
            starts,
        }
    }

    /// Number of fragments (each one token).
    pub(super) fn fragments(&self) -> u64 {
        self.starts.len() as u64
    }

    /// Fragment `i` (empty past the end).
    pub(super) fn fragment(&self, i: u64) -> &str {
        let Ok(i) = usize::try_from(i) else {
            return "";
        };
        let (Some(&start), end) = (self.starts.get(i), self.starts.get(i + 1)) else {
            return "";
        };
        let end = end.copied().unwrap_or(self.arguments.len());
        self.arguments.get(start..end).unwrap_or("")
    }

    /// The first `n` fragments: the arguments as far as a reply cut at `n` tokens got.
    pub(super) fn arguments_upto(&self, n: u64) -> &str {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.starts.get(n).copied())
            .unwrap_or(self.arguments.len());
        self.arguments.get(..end).unwrap_or("")
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments from a JSON schema

/// A JSON object for `schema`: every top-level property in schema order; strings are `echo`,
/// integers and numbers 42, booleans `true`, arrays `[]`, `enum` / `const` their (first)
/// value; a nested object gets its `required` properties (one level), deeper objects `{}`.
/// `$ref` (to `#/$defs/..` or `#/definitions/..`), `anyOf` / `oneOf` / `allOf` use the first
/// usable branch. A schema that is missing or not understood gives `{}`.
fn arguments(schema: Option<&RawValue>, echo: &str) -> String {
    let root: Value = schema
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null);
    let order = schema.and_then(|raw| property_order(raw.get()));
    let mut out = Vec::with_capacity(64);
    let gen = Gen { root: &root, echo };
    gen.object(&mut out, &root, order, 0);
    String::from_utf8(out).unwrap_or_else(|_| "{}".to_owned())
}

struct Gen<'a> {
    root: &'a Value,
    echo: &'a str,
}

impl Gen<'_> {
    /// Follows `$ref` and the first branch of `anyOf` / `oneOf` / `allOf` (a bounded number
    /// of times: schemas may be cyclic).
    fn resolve<'s>(&'s self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..8 {
            if let Some(Value::String(r)) = schema.get("$ref") {
                let target = r
                    .strip_prefix("#/$defs/")
                    .map(|name| ("$defs", name))
                    .or_else(|| r.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
                    .and_then(|(defs, name)| self.root.get(defs)?.get(name));
                match target {
                    Some(t) => {
                        schema = t;
                        continue;
                    }
                    None => return schema,
                }
            }
            let branch = ["anyOf", "oneOf", "allOf"].iter().find_map(|k| {
                schema
                    .get(k)?
                    .as_array()?
                    .iter()
                    .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            });
            match branch {
                Some(b) if schema.get("type").is_none() => schema = b,
                _ => return schema,
            }
        }
        schema
    }

    fn value(&self, out: &mut Vec<u8>, schema: &Value, depth: u32) {
        let schema = self.resolve(schema);
        if let Some(v) = schema.get("const") {
            return write_value(out, v);
        }
        if let Some(v) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return write_value(out, v);
        }
        match type_of(schema) {
            "integer" | "number" => out.extend_from_slice(b"42"),
            "boolean" => out.extend_from_slice(b"true"),
            "array" => out.extend_from_slice(b"[]"),
            "null" => out.extend_from_slice(b"null"),
            "object" => {
                // Nested objects get their required properties only.
                let required = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                self.object(out, schema, Some(required), depth);
            }
            _ => write_json_str(out, self.echo),
        }
    }

    /// An object with `keys` (default: all properties) at nesting `depth` (0 = the arguments
    /// themselves).
    fn object(&self, out: &mut Vec<u8>, schema: &Value, keys: Option<Vec<String>>, depth: u32) {
        let schema = self.resolve(schema);
        let props = schema.get("properties").and_then(Value::as_object);
        out.push(b'{');
        if let (Some(props), true) = (props, depth < 2) {
            let keys = keys.unwrap_or_else(|| props.keys().cloned().collect());
            let mut first = true;
            for key in &keys {
                let Some(prop) = props.get(key) else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_str(out, key);
                out.push(b':');
                self.value(out, prop, depth + 1);
            }
        }
        out.push(b'}');
    }
}

/// The schema's type: `type` (the first non-null one of a list), else guessed from the
/// keywords present; strings by default.
fn type_of(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    }
}

/// The keys of the schema's top-level `properties`, in the order the client wrote them
/// (`serde_json::Map` sorts them).
fn property_order(schema: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Root {
        properties: Option<Keys>,
    }
    struct Keys(Vec<String>);
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(KeysVisitor)
        }
    }
    struct KeysVisitor;
    impl<'de> Visitor<'de> for KeysVisitor {
        type Value = Keys;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            Ok(Keys(keys))
        }
    }
    let mut de = serde_json::Deserializer::from_str(schema);
    let root = Root::deserialize(&mut de).ok()?;
    root.properties.map(|k| k.0)
}

/// The entries of a `tools` array, each read as `T` (`null` or absent: none). A malformed
/// array is refused with `message` and the parser's reason.
pub(super) fn definitions<T: serde::de::DeserializeOwned>(
    raw: Option<&RawValue>,
    message: &str,
) -> Result<Vec<T>, SynthError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(Vec::new());
    };
    serde_json::from_str(raw.get())
        .map_err(|e| SynthError::bad(format!("{message} ({e})."), "tools"))
}

/// Tools by name, for `tool_choice` validation.
pub(super) fn has_tool(tools: &[Tool], name: &str) -> bool {
    tools.iter().any(|t| t.name == name)
}

/// A parsed schema object, for tests.
#[cfg(test)]
pub(super) fn arguments_for(schema: &str, echo: &str) -> String {
    let raw = RawValue::from_string(schema.to_owned()).ok();
    arguments(raw.as_deref(), echo)
}
