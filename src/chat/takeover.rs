//! A human in the conversation (crisis response): an operator takes it over, answers as
//! a human (`role: "operator"`), and hands it back to the companion. The user's messages
//! meanwhile wait for the operator (`send` stores them; no model is called).
use super::service::{ChatError, ChatService};
use crate::domain::{
    now, Conversation, ConversationId, FinishReason, Message, MessageContent, MessageProgress, MessageStatus, Role,
    SafetyEvent, SafetyEventKind, Takeover,
};

/// How many recent messages are searched for human replies the user awaits.
const AWAITED_LOOKBACK: usize = 200;

impl ChatService {
    /// Any user's conversation, for an operator.
    pub async fn conversation_for_operator(&self, id: ConversationId) -> Result<Conversation, ChatError> {
        self.store.find_conversation(id).await?.ok_or(ChatError::ConversationNotFound)
    }

    /// From now on an operator answers: the model is not called for this conversation.
    pub async fn take_over(&self, id: ConversationId, operator: &str) -> Result<Conversation, ChatError> {
        let conversation = self.conversation_for_operator(id).await?;
        let takeover = Takeover { by: operator.to_string(), at: now() };
        self.store.set_takeover(id, Some(&takeover)).await?;
        let event = SafetyEvent::new(conversation.user_id, SafetyEventKind::TakenOver, Some(operator.to_string()));
        self.safety.record(event.in_conversation(id)).await;
        Ok(conversation)
    }

    /// The operator's words, as a human reply: they complete the reply the user awaits
    /// (delivered on whatever transport watches it), or are added as a new message.
    pub async fn operator_reply(&self, id: ConversationId, operator: &str, text: &str) -> Result<Message, ChatError> {
        let content = MessageContent::parse(text, self.config.message_max_chars)
            .map_err(|e| ChatError::InvalidContent(e.to_string()))?;
        let conversation = self.conversation_for_operator(id).await?;
        if conversation.takeover.is_none() {
            return Err(ChatError::InvalidContent("take the conversation over before replying".into()));
        }
        let message = self.say_as_operator(&conversation, content.as_str()).await?;
        let event = SafetyEvent::new(conversation.user_id, SafetyEventKind::OperatorReplied, Some(operator.into()));
        self.safety.record(event.in_conversation(id)).await;
        Ok(message)
    }

    /// The companion answers again; a reply still awaited is closed with the release text,
    /// and the crisis (if any) is marked handled.
    pub async fn hand_back(&self, id: ConversationId, operator: &str) -> Result<(), ChatError> {
        let conversation = self.conversation_for_operator(id).await?;
        // Released first: a message sent meanwhile goes to the companion, not to a human
        // reply nobody will write (and `await_operator` re-checks after it waits).
        self.store.set_takeover(id, None).await?;
        self.close_awaited(&conversation).await?;
        let event = SafetyEvent::new(conversation.user_id, SafetyEventKind::Released, Some(operator.to_string()));
        self.safety.record(event.in_conversation(id)).await;
        Ok(())
    }

    /// Human replies the user awaits, oldest first (two sends at once may each open one).
    pub(super) async fn awaited_replies(&self, id: ConversationId) -> Result<Vec<Message>, ChatError> {
        let recent = self.store.list_messages(id, AWAITED_LOOKBACK, None).await?;
        Ok(recent.into_iter().filter(|m| m.role == Role::Operator && !m.status.is_final()).collect())
    }

    /// Closes what the user still awaits with the release text (the companion answers next).
    pub(super) async fn close_awaited(&self, conversation: &Conversation) -> Result<(), ChatError> {
        if !self.awaited_replies(conversation.id).await?.is_empty() {
            let text = self.safety.settings.takeover_release_text.clone();
            self.say_as_operator(conversation, &text).await?;
        }
        Ok(())
    }

    /// The operator's words answer every human reply awaited (each watcher gets them; only
    /// a rare double send awaits two), or are added as a new message.
    async fn say_as_operator(&self, conversation: &Conversation, text: &str) -> Result<Message, ChatError> {
        let progress = MessageProgress {
            content: text.to_string(),
            reasoning_content: None,
            status: MessageStatus::Complete,
            usage: None,
            finish_reason: Some(FinishReason::Stop),
            error: None,
            served: None,
        };
        let mut answered = None;
        for mut awaited in self.awaited_replies(conversation.id).await? {
            let at = now();
            if self.store.save_progress(awaited.id, &progress, at).await? {
                awaited.apply(&progress, at);
                answered = Some(awaited);
            }
        }
        if let Some(message) = answered {
            return Ok(message);
        }
        let message = Message::new(conversation, Role::Operator, text, MessageStatus::Complete);
        self.store.insert_message(&message).await?;
        Ok(message)
    }
}
