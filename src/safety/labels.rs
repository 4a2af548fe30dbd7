//! Labels of AI-generated content (《人工智能生成合成内容标识办法》, GB 45438-2025): every
//! reply carries an explicit label the client shows ("内容由AI生成"; a human operator's
//! reply is labelled as a human's, never as AI) and implicit metadata (who produced it,
//! the content id, when, which model) in the API and in exports.
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Message, MessageId, Role};

#[derive(Debug, Clone)]
pub struct ContentLabels {
    /// Shown with every AI reply.
    pub ai: String,
    /// Shown with a human operator's reply.
    pub human: String,
    /// The service provider's name or code, in the implicit metadata.
    pub producer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    Ai,
    Human,
}

/// The explicit label a client shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub author: Author,
    pub text: String,
}

/// The implicit metadata of a generated message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentMark {
    pub producer: String,
    pub content_id: MessageId,
    pub generated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl ContentLabels {
    /// The label of a reply by `role`; a user's own message has none.
    pub fn label(&self, role: Role) -> Option<Label> {
        match role {
            Role::User => None,
            Role::Assistant => Some(Label { author: Author::Ai, text: self.ai.clone() }),
            Role::Operator => Some(Label { author: Author::Human, text: self.human.clone() }),
        }
    }

    /// The implicit metadata of an AI reply (a human's words are not generated content).
    pub fn mark(&self, message: &Message) -> Option<ContentMark> {
        (message.role == Role::Assistant).then(|| ContentMark {
            producer: self.producer.clone(),
            content_id: message.id,
            generated_at: message.created_at,
            model: message.served.as_ref().and_then(|s| s.model.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ai_replies_are_labelled_as_ai_operator_replies_as_human_and_user_messages_not_at_all() {
        let labels =
            ContentLabels { ai: "内容由AI生成".into(), human: "人工回复".into(), producer: "demo".into() };
        let cases = [
            (Role::Assistant, Some((Author::Ai, "内容由AI生成"))),
            (Role::Operator, Some((Author::Human, "人工回复"))),
            (Role::User, None),
        ];
        for (role, expected) in cases {
            let label = labels.label(role);
            assert_eq!(label.as_ref().map(|l| (l.author, l.text.as_str())), expected, "{role:?}");
        }
    }
}
