use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConversationId, FinishReason, MessageId, ParseError, UserId};

/// The id a client gives a message it sends, so a retry of the same send (after a cut
/// connection or a 5xx) returns the original reply instead of sending twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub const MAX_LEN: usize = 64;
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(ParseError(format!("client_message_id must be 1-{} letters, digits, -, _, . or :", Self::MAX_LEN)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A send as first made under a client's id: what a retry of it resumes or returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub user_id: UserId,
    pub client_id: ClientMessageId,
    pub conversation_id: ConversationId,
    pub user_message_id: MessageId,
    pub reply_id: MessageId,
}

/// What a user sends: trimmed of surrounding blank space, never empty, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, ParseError> {
        let content = raw.trim();
        if content.is_empty() {
            return Err(ParseError("content must not be empty".into()));
        }
        if content.chars().count() > max_chars {
            return Err(ParseError(format!("content must be at most {max_chars} characters")));
        }
        Ok(Self(content.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// A human operator answering during a takeover (never the model).
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Complete,
    Streaming,
    Incomplete,
    Failed,
}

impl MessageStatus {
    pub fn is_final(self) -> bool {
        self != MessageStatus::Streaming
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_hit_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_miss_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// The prompt split into cache hits and misses; without DeepSeek's miss count, every
    /// prompt token that was not a hit is a miss.
    pub fn cache_split(&self) -> (u64, u64) {
        let hit = self.prompt_cache_hit_tokens.unwrap_or(0);
        (hit, self.prompt_cache_miss_tokens.unwrap_or(self.prompt_tokens.saturating_sub(hit)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageError {
    pub code: String,
    pub message: String,
    /// msgSecCheck's label for a refused input or withheld reply (20002 porn, 20006
    /// illegal…), for the console's moderation page; never shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
}

/// Which upstream answered a reply, and the model it reported serving (a provider can
/// swap models behind a name; this is what really answered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A stored message. Not serializable: what clients see is decided by the HTTP DTOs.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
    pub reasoning_content: Option<String>,
    pub usage: Option<Usage>,
    pub finish_reason: Option<FinishReason>,
    pub error: Option<MessageError>,
    pub served: Option<Served>,
    pub updated_at: DateTime<Utc>,
}

impl MessageError {
    /// Stored on a user's message that the input content check refused.
    pub fn content_rejected(label: Option<i64>) -> MessageError {
        MessageError {
            code: "content_rejected".into(),
            message: "the message did not pass the content-safety check; please rephrase it".into(),
            label,
        }
    }
}

/// The mutable part of an assistant message, saved as a generation goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageProgress {
    pub content: String,
    pub reasoning_content: Option<String>,
    pub status: MessageStatus,
    pub usage: Option<Usage>,
    pub finish_reason: Option<FinishReason>,
    pub error: Option<MessageError>,
    pub served: Option<Served>,
}

impl Message {
    /// A new message of `conversation`, created now.
    pub fn new(conversation: &super::Conversation, role: Role, content: &str, status: MessageStatus) -> Message {
        let at = super::now();
        Message {
            id: MessageId::new(),
            conversation_id: conversation.id,
            user_id: conversation.user_id,
            role,
            content: content.to_string(),
            status,
            created_at: at,
            reasoning_content: None,
            usage: None,
            finish_reason: None,
            error: None,
            served: None,
            updated_at: at,
        }
    }

    #[cfg(test)]
    pub fn placeholder_for_tests() -> Message {
        let at = super::now();
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            user_id: UserId::new(),
            role: Role::Assistant,
            content: String::new(),
            status: MessageStatus::Streaming,
            created_at: at,
            reasoning_content: None,
            usage: None,
            finish_reason: None,
            error: None,
            served: None,
            updated_at: at,
        }
    }

    pub fn apply(&mut self, progress: &MessageProgress, now: DateTime<Utc>) {
        self.content = progress.content.clone();
        self.reasoning_content = progress.reasoning_content.clone();
        self.status = progress.status;
        self.usage = progress.usage.clone();
        self.finish_reason = progress.finish_reason.clone();
        self.error = progress.error.clone();
        if progress.served.is_some() {
            self.served = progress.served.clone();
        }
        self.updated_at = now;
    }
}
