//! The events every transport carries (SSE events, WebSocket frames), typed: the wire
//! shape is decided by these derives and nothing else.
use serde::Serialize;

use crate::domain::{FinishReason, MessageError, MessageId, ReplyEnd, ReplyFailure, Usage};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartEvent {
    pub user_message_id: MessageId,
    pub assistant_message_id: MessageId,
    /// The label the client shows with the reply (AI, or a human operator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<crate::safety::labels::Label>,
    /// AI content's implicit metadata (the model is in the stored message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_mark: Option<crate::safety::labels::ContentMark>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextEvent {
    pub content: String,
}

/// Token usage as clients see it (the domain `Usage` is the stored form).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageWire {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_cache_hit_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_cache_miss_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

impl From<&Usage> for UsageWire {
    fn from(u: &Usage) -> Self {
        UsageWire {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_cache_hit_tokens: u.prompt_cache_hit_tokens,
            prompt_cache_miss_tokens: u.prompt_cache_miss_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoneEvent {
    pub assistant_message_id: MessageId,
    pub finish_reason: FinishReason,
    pub usage: Option<UsageWire>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorEvent {
    pub code: String,
    pub message: String,
}

impl From<MessageError> for ErrorEvent {
    fn from(e: MessageError) -> Self {
        ErrorEvent { code: e.code, message: e.message }
    }
}

impl From<&MessageError> for ErrorEvent {
    fn from(e: &MessageError) -> Self {
        ErrorEvent { code: e.code.clone(), message: e.message.clone() }
    }
}

impl From<&ReplyFailure> for ErrorEvent {
    fn from(failure: &ReplyFailure) -> Self {
        failure.to_error().into()
    }
}

/// Internally tagged, so a WebSocket frame is `{"type":"delta","content":…}`; an SSE
/// event carries the name as `event:` and [`ReplyEvent::data`] as `data:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ReplyEvent {
    Start(StartEvent),
    Delta(TextEvent),
    Reasoning(TextEvent),
    Done(DoneEvent),
    Error(ErrorEvent),
    /// A notice the user must see (AI disclosure, usage reminder), after `start`.
    Notice(crate::safety::NoticeEvent),
}

impl ReplyEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ReplyEvent::Start(_) => "start",
            ReplyEvent::Delta(_) => "delta",
            ReplyEvent::Reasoning(_) => "reasoning",
            ReplyEvent::Done(_) => "done",
            ReplyEvent::Error(_) => "error",
            ReplyEvent::Notice(_) => "notice",
        }
    }

    /// The event's fields as JSON, without the tag (SSE `data:`).
    pub fn data(&self) -> String {
        let json = match self {
            ReplyEvent::Start(e) => serde_json::to_string(e),
            ReplyEvent::Delta(e) | ReplyEvent::Reasoning(e) => serde_json::to_string(e),
            ReplyEvent::Done(e) => serde_json::to_string(e),
            ReplyEvent::Error(e) => serde_json::to_string(e),
            ReplyEvent::Notice(e) => serde_json::to_string(e),
        };
        json.expect("reply events always serialize")
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, ReplyEvent::Done(_) | ReplyEvent::Error(_))
    }

    pub(super) fn terminal(assistant_message_id: MessageId, end: ReplyEnd) -> ReplyEvent {
        match end {
            ReplyEnd::Done { finish_reason, usage } => ReplyEvent::Done(DoneEvent {
                assistant_message_id,
                finish_reason,
                usage: usage.as_ref().map(UsageWire::from),
            }),
            ReplyEnd::Failed(error) => ReplyEvent::Error(error.into()),
        }
    }

    pub(super) fn failed(failure: &ReplyFailure) -> ReplyEvent {
        ReplyEvent::Error(failure.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_the_wire_shape_the_mini_program_reads() {
        let id = MessageId::parse("65f0a1b2c3d4e5f601234567").unwrap();
        let cases = [
            (
                ReplyEvent::Start(StartEvent {
                    user_message_id: id,
                    assistant_message_id: id,
                    label: None,
                    content_mark: None,
                }),
                "start",
                r#"{"user_message_id":"65f0a1b2c3d4e5f601234567","assistant_message_id":"65f0a1b2c3d4e5f601234567"}"#,
            ),
            (ReplyEvent::Delta(TextEvent { content: "你好".into() }), "delta", r#"{"content":"你好"}"#),
            (ReplyEvent::Reasoning(TextEvent { content: "hm".into() }), "reasoning", r#"{"content":"hm"}"#),
            (
                ReplyEvent::Done(DoneEvent {
                    assistant_message_id: id,
                    finish_reason: FinishReason::Stop,
                    usage: None,
                }),
                "done",
                r#"{"assistant_message_id":"65f0a1b2c3d4e5f601234567","finish_reason":"stop","usage":null}"#,
            ),
            (
                ReplyEvent::failed(&ReplyFailure::ServerShutdown),
                "error",
                r#"{"code":"server_shutdown","message":"the server restarted mid-reply; the part received is kept"}"#,
            ),
        ];
        for (event, name, data) in cases {
            assert_eq!(event.name(), name);
            assert_eq!(event.data(), data, "{name}");
            let tagged = serde_json::to_value(&event).unwrap();
            assert_eq!(tagged["type"], name, "the WebSocket frame is tagged with the SSE event name");
        }
    }
}
