use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ConversationId, ParseError, UserId};

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
}
