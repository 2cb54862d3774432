//! Chat Completions stream -> OpenAI Responses stream.

use serde::Serialize;
use serde_json::Value;

use super::{feed_chat, impl_stream_translator, ChatSink, Common, StreamOutcome, ToolFragment};
use crate::responses::{IncompleteDetails, OutputContent, OutputItem, ResponseObject};
use crate::sse::SseFrame;
use crate::track::Api;
use crate::translate::response::{
    function_item_id, response_object, responses_error, responses_status,
};
use crate::translate::Dropped;
use crate::translate::{derive_id, write_sse, ResponseContext};

/// Chat upstream, Responses client.
///
/// The first upstream chunk sends `response.created` and `response.in_progress` (status
/// `in_progress`, no output). Text opens a `message` item (`response.output_item.added`,
/// `response.content_part.added`) and streams as `response.output_text.delta`; each tool call
/// is a `function_call` item (`response.output_item.added`, then
/// `response.function_call_arguments.delta`). Items are keyed by `output_index`, so calls whose
/// fragments interleave stream live. The finish chunk closes every item
/// (`response.output_text.done`, `response.content_part.done`,
/// `response.function_call_arguments.done`, `response.output_item.done`); `[DONE]` sends
/// `response.completed`, or `response.incomplete` when the answer was cut by its length limit,
/// with the full response and its usage. Every event has `type`, a `sequence_number` counting
/// from 0, and an `event:` line with the same name.
pub struct ChatToResponses {
    common: Common,
    ctx: ResponseContext,
    id: String,
    started: bool,
    sequence: u64,
    items: Vec<Item>,
    /// Output index of the open message item.
    message: Option<usize>,
    finish_reason: Option<String>,
}

#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
        done: bool,
    },
    Function {
        chat_index: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        done: bool,
    },
}

const NO_LOGPROBS: &[Value] = &[];

#[derive(Serialize)]
#[serde(tag = "type")]
enum Event<'a> {
    #[serde(rename = "response.created")]
    Created {
        response: &'a ResponseObject,
        sequence_number: u64,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        response: &'a ResponseObject,
        sequence_number: u64,
    },
    #[serde(rename = "response.completed")]
    Completed {
        response: &'a ResponseObject,
        sequence_number: u64,
    },
    #[serde(rename = "response.incomplete")]
    Incomplete {
        response: &'a ResponseObject,
        sequence_number: u64,
    },
    #[serde(rename = "response.failed")]
    Failed {
        response: &'a ResponseObject,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        output_index: usize,
        item: &'a OutputItem,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        output_index: usize,
        item: &'a OutputItem,
        sequence_number: u64,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        part: &'a OutputContent,
        sequence_number: u64,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        part: &'a OutputContent,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        delta: &'a str,
        logprobs: &'static [Value],
        sequence_number: u64,
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        text: &'a str,
        logprobs: &'static [Value],
        sequence_number: u64,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta {
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
        sequence_number: u64,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        item_id: &'a str,
        output_index: usize,
        arguments: &'a str,
        sequence_number: u64,
    },
    #[serde(rename = "error")]
    Error {
        code: Option<&'a str>,
        message: &'a str,
        param: Option<&'a str>,
        sequence_number: u64,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
            Self::ItemAdded { .. } => "response.output_item.added",
            Self::ItemDone { .. } => "response.output_item.done",
            Self::PartAdded { .. } => "response.content_part.added",
            Self::PartDone { .. } => "response.content_part.done",
            Self::TextDelta { .. } => "response.output_text.delta",
            Self::TextDone { .. } => "response.output_text.done",
            Self::ArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::ArgumentsDone { .. } => "response.function_call_arguments.done",
            Self::Error { .. } => "error",
        }
    }
}

fn text_part(text: &str) -> OutputContent {
    OutputContent::OutputText {
        text: text.to_owned(),
        annotations: Vec::new(),
        logprobs: Vec::new(),
    }
}

impl Item {
    /// The item as `output` shows it.
    fn output(&self, status: &str) -> OutputItem {
        match self {
            Self::Message { id, text, .. } => OutputItem::Message {
                id: id.clone(),
                status: status.to_owned(),
                role: "assistant".to_owned(),
                content: if status == "in_progress" {
                    Vec::new()
                } else {
                    vec![text_part(text)]
                },
            },
            Self::Function {
                id,
                call_id,
                name,
                arguments,
                ..
            } => OutputItem::FunctionCall {
                id: id.clone(),
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: if status == "in_progress" {
                    String::new()
                } else {
                    arguments.clone()
                },
                status: status.to_owned(),
            },
        }
    }
}

impl ChatToResponses {
    /// A translator using `ctx` (`model`, `created`, the request echo).
    pub fn new(ctx: &ResponseContext) -> Self {
        Self {
            common: Common::new(Api::ChatCompletions),
            ctx: ctx.clone(),
            id: String::new(),
            started: false,
            sequence: 0,
            items: Vec::new(),
            message: None,
            finish_reason: None,
        }
    }

    /// Writes `event` with the next sequence number (set by `make`).
    fn emit<'a>(&mut self, out: &mut Vec<u8>, make: impl FnOnce(u64) -> Event<'a>) {
        let event = make(self.sequence);
        self.sequence += 1;
        write_sse(out, Some(event.name()), &event);
    }

    /// Appends an item at the next output index and announces it.
    fn add_item(&mut self, item: Item, out: &mut Vec<u8>) {
        let output_index = self.items.len();
        let added = item.output("in_progress");
        self.items.push(item);
        self.emit(out, |sequence_number| Event::ItemAdded {
            output_index,
            item: &added,
            sequence_number,
        });
    }

    /// Closes every open item, in output order.
    fn close_items(&mut self, status: &str, out: &mut Vec<u8>) {
        self.message = None;
        for output_index in 0..self.items.len() {
            let closing = match self.items.get_mut(output_index) {
                Some(Item::Message { id, text, done }) if !*done => {
                    *done = true;
                    Closing::Text(id.clone(), text.clone())
                }
                Some(Item::Function {
                    id,
                    arguments,
                    done,
                    ..
                }) if !*done => {
                    *done = true;
                    Closing::Arguments(id.clone(), arguments.clone())
                }
                _ => continue,
            };
            match closing {
                Closing::Text(id, text) => {
                    self.emit(out, |sequence_number| Event::TextDone {
                        item_id: &id,
                        output_index,
                        content_index: 0,
                        text: &text,
                        logprobs: NO_LOGPROBS,
                        sequence_number,
                    });
                    let part = text_part(&text);
                    self.emit(out, |sequence_number| Event::PartDone {
                        item_id: &id,
                        output_index,
                        content_index: 0,
                        part: &part,
                        sequence_number,
                    });
                }
                Closing::Arguments(id, arguments) => {
                    self.emit(out, |sequence_number| Event::ArgumentsDone {
                        item_id: &id,
                        output_index,
                        arguments: &arguments,
                        sequence_number,
                    });
                }
            }
            let finished = self.items.get(output_index).map(|item| item.output(status));
            if let Some(finished) = finished {
                self.emit(out, |sequence_number| Event::ItemDone {
                    output_index,
                    item: &finished,
                    sequence_number,
                });
            }
        }
    }

    fn final_response(&self, status: &str, item_status: &str) -> ResponseObject {
        let output = self
            .items
            .iter()
            .map(|item| item.output(item_status))
            .collect();
        response_object(
            self.id.clone(),
            status,
            &self.ctx,
            output,
            self.common.tracker.usage(),
        )
    }

    fn write_error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        // The SDK's stream helper wants `response.created` first, whatever follows.
        self.start(None, out);
        let error = responses_error(kind, message);
        self.emit(out, |sequence_number| Event::Error {
            code: Some(&error.code),
            message,
            param: None,
            sequence_number,
        });
        let mut response = self.final_response("failed", "incomplete");
        response.error = Some(error.clone());
        self.emit(out, |sequence_number| Event::Failed {
            response: &response,
            sequence_number,
        });
    }

    fn on_frame(&mut self, frame: &SseFrame, out: &mut Vec<u8>) {
        feed_chat(self, frame, out);
    }

    fn on_fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.write_error("server_error", message, out);
    }
}

impl ChatSink for ChatToResponses {
    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = derive_id("resp_", upstream_id, &self.ctx.id);
        let response = response_object(self.id.clone(), "in_progress", &self.ctx, Vec::new(), None);
        self.emit(out, |sequence_number| Event::Created {
            response: &response,
            sequence_number,
        });
        self.emit(out, |sequence_number| Event::InProgress {
            response: &response,
            sequence_number,
        });
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let output_index = match self.message {
            Some(index) => index,
            None => {
                let output_index = self.items.len();
                let id = derive_id("msg_", Some(&self.id), &self.ctx.id);
                let id = if output_index == 0 {
                    id
                } else {
                    format!("{id}_{output_index}")
                };
                self.add_item(
                    Item::Message {
                        id: id.clone(),
                        text: String::new(),
                        done: false,
                    },
                    out,
                );
                self.message = Some(output_index);
                let part = text_part("");
                self.emit(out, |sequence_number| Event::PartAdded {
                    item_id: &id,
                    output_index,
                    content_index: 0,
                    part: &part,
                    sequence_number,
                });
                output_index
            }
        };
        let sequence_number = self.sequence;
        if let Some(Item::Message { id, text: all, .. }) = self.items.get_mut(output_index) {
            all.push_str(text);
            let event = Event::TextDelta {
                item_id: id,
                output_index,
                content_index: 0,
                delta: text,
                logprobs: NO_LOGPROBS,
                sequence_number,
            };
            write_sse(out, Some(event.name()), &event);
            self.sequence += 1;
        }
    }

    fn tool(&mut self, fragment: &ToolFragment<'_>, out: &mut Vec<u8>) {
        let (chat_index, id, name) = (
            fragment.index,
            fragment.id.as_deref(),
            fragment.name.as_deref(),
        );
        let piece = fragment.arguments.as_deref().unwrap_or_default();
        let existing = self.items.iter().position(
            |item| matches!(item, Item::Function { chat_index: c, .. } if *c == chat_index),
        );
        let output_index = match existing {
            Some(index) => index,
            None => {
                let output_index = self.items.len();
                let call_id = match id.filter(|id| !id.is_empty()) {
                    Some(id) => id.to_owned(),
                    None => format!("call_{}_{chat_index}", self.id.trim_start_matches("resp_")),
                };
                let item = Item::Function {
                    chat_index,
                    id: function_item_id(&self.id, &call_id, output_index),
                    call_id,
                    name: name.unwrap_or_default().to_owned(),
                    arguments: String::new(),
                    done: false,
                };
                self.add_item(item, out);
                output_index
            }
        };
        let sequence_number = self.sequence;
        match self.items.get_mut(output_index) {
            Some(Item::Function {
                id,
                arguments,
                done: false,
                ..
            }) if !piece.is_empty() => {
                arguments.push_str(piece);
                let event = Event::ArgumentsDelta {
                    item_id: id,
                    output_index,
                    delta: piece,
                    sequence_number,
                };
                write_sse(out, Some(event.name()), &event);
                self.sequence += 1;
            }
            Some(Item::Function { done: true, .. }) if !piece.trim().is_empty() => {
                self.common
                    .dropped
                    .note("tool call fragment after its item closed");
            }
            _ => {}
        }
    }

    fn dropped(&mut self) -> &mut Dropped {
        &mut self.common.dropped
    }

    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>) {
        let (_, incomplete) = responses_status(Some(reason));
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        self.finish_reason = Some(reason.to_owned());
        self.close_items(status, out);
    }

    fn upstream_error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        self.write_error(kind, message, out);
        self.common.outcome = StreamOutcome::Failed;
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(None, out);
        let (status, incomplete) = responses_status(self.finish_reason.as_deref());
        let item_status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        self.close_items(item_status, out);
        let mut response = self.final_response(status, item_status);
        response.incomplete_details = incomplete.map(|reason| IncompleteDetails {
            reason: reason.to_owned(),
        });
        if incomplete.is_some() {
            self.emit(out, |sequence_number| Event::Incomplete {
                response: &response,
                sequence_number,
            });
        } else {
            self.emit(out, |sequence_number| Event::Completed {
                response: &response,
                sequence_number,
            });
        }
        self.common.outcome = StreamOutcome::Completed;
    }
}

enum Closing {
    Text(String, String),
    Arguments(String, String),
}

impl_stream_translator!(ChatToResponses);
