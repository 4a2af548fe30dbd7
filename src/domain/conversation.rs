use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ConversationId, MessageId, ParseError, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConversationTitle(String);

impl ConversationTitle {
    pub const MAX_CHARS: usize = 100;
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let title = raw.trim();
        let chars = title.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(ParseError(format!("title must be 1-{} characters", Self::MAX_CHARS)));
        }
        if title.chars().any(char::is_control) {
            return Err(ParseError("title must not contain control characters".into()));
        }
        Ok(Self(title.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub user_id: UserId,
    pub persona_id: String,
    pub title: ConversationTitle,
    pub created_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    /// The turns that no longer fit the context, folded into a few sentences.
    pub summary: Option<ConversationSummary>,
    /// The newest turn memory has learned from: later runs read only newer turns, so a
    /// fact the user deleted is not learned again from what was already read.
    pub learned_through: Option<DateTime<Utc>>,
    /// A human operator answers instead of the model (crisis response).
    pub takeover: Option<super::Takeover>,
    /// In the operator's crisis queue.
    pub crisis: Option<super::CrisisFlag>,
}

impl Conversation {
    pub fn new(user_id: UserId, persona_id: &str, title: ConversationTitle, at: DateTime<Utc>) -> Self {
        Self {
            id: ConversationId::new(),
            user_id,
            persona_id: persona_id.to_string(),
            title,
            created_at: at,
            last_active_at: at,
            summary: None,
            learned_through: None,
            takeover: None,
            crisis: None,
        }
    }
}

/// A rolling summary of a conversation's older turns, through one message (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub text: SummaryText,
    pub through: MessageId,
    pub through_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A summary's text: 1–1000 characters, no control characters other than line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryText(String);

impl SummaryText {
    pub const MAX_CHARS: usize = 1000;
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(ParseError(format!("a summary must be 1-{} characters", Self::MAX_CHARS)));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ParseError("a summary must not contain control characters".into()));
        }
        Ok(Self(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
