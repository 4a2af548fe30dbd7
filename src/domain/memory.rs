//! What a companion remembers about its user: short facts, per user and persona.
use chrono::{DateTime, Utc};

use super::{MemoryId, MessageId, ParseError, UserId};

/// One remembered fact: trimmed, one line, bounded (a fact, not a diary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryText(String);

impl MemoryText {
    pub const MAX_CHARS: usize = 200;
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(ParseError(format!("a memory must be 1-{} characters", Self::MAX_CHARS)));
        }
        // Line and paragraph separators and invisible format characters would let a
        // memory pose as more than one line of data in a prompt.
        let hidden = |c: char| {
            c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
        };
        if text.chars().any(hidden) {
            return Err(ParseError("a memory must be one line without control characters".into()));
        }
        Ok(Self(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryFact {
    pub id: MemoryId,
    pub user_id: UserId,
    pub persona_id: String,
    pub text: MemoryText,
    pub learned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The message the fact was learned from, when it came from a conversation.
    pub source_message_id: Option<MessageId>,
}

impl MemoryFact {
    pub fn new(user_id: UserId, persona_id: &str, text: MemoryText, source: Option<MessageId>) -> Self {
        let at = super::now();
        MemoryFact {
            id: MemoryId::new(),
            user_id,
            persona_id: persona_id.to_string(),
            text,
            learned_at: at,
            updated_at: at,
            source_message_id: source,
        }
    }

    /// Whether this is what `persona` remembers about `user`.
    pub fn belongs_to(&self, user: UserId, persona: &str) -> bool {
        self.user_id == user && self.persona_id == persona
    }
}

/// Pending work of learning facts from a conversation's new turns: one per conversation,
/// run by whichever replica claims it (with a lease) once it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryJob {
    pub conversation_id: super::ConversationId,
    pub user_id: UserId,
    pub persona_id: String,
    /// Bumped by every new turn: a job finished at an older version has more to learn.
    pub version: i64,
    /// Failed runs since the last new turn.
    pub attempts: u32,
    /// This claim's token: a holder whose lease ran out (and whose job another replica
    /// took over) can neither finish nor release it.
    pub lease_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_is_one_trimmed_bounded_line() {
        let long = "猫".repeat(MemoryText::MAX_CHARS + 1);
        let exact = "猫".repeat(MemoryText::MAX_CHARS);
        let cases: Vec<(&str, &str, Option<&str>)> = vec![
            ("plain", "养了一只叫咪咪的猫", Some("养了一只叫咪咪的猫")),
            ("trimmed", "  在准备考研 \n", Some("在准备考研")),
            ("empty", "", None),
            ("blank", "   ", None),
            ("two lines", "不喜欢\n被叫全名", None),
            ("a control character", "a\u{0007}b", None),
            ("a line separator", "a\u{2028}b", None),
            ("a right-to-left override", "a\u{202E}b", None),
            ("a zero-width space", "a\u{200B}b", None),
            ("at the limit", &exact, Some(&exact)),
            ("over the limit", &long, None),
        ];
        for (label, raw, expected) in cases {
            assert_eq!(MemoryText::parse(raw).ok().as_ref().map(MemoryText::as_str), expected, "{label}");
        }
    }
}
