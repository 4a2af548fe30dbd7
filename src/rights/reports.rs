//! Reports (投诉举报): a user reports a message or a whole conversation with a reason from
//! the fixed list; what was reported is kept as it was; an operator accepts or dismisses
//! it with a note the user sees, before the promised time.
use super::UserRights;
use crate::chat::ChatError;
use crate::domain::{
    now, ConversationId, MessageId, Report, ReportReason, ReportStatus, ReportedMessage, SafetyEvent, UserId,
};
use crate::protection::china_day;

/// The newest messages a conversation report keeps.
const CONVERSATION_SNAPSHOT: usize = 50;
/// The most a report's own words may be.
pub const MAX_REPORT_TEXT: usize = 500;

pub struct NewReport {
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    pub reason: ReportReason,
    pub text: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error("too many reports today")]
    TooMany { retry_after: u64 },
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::store::StoreError> for ReportError {
    fn from(e: crate::store::StoreError) -> Self {
        ReportError::Chat(e.into())
    }
}

impl UserRights {
    pub async fn report(&self, user: UserId, asked: NewReport) -> Result<Report, ReportError> {
        let text = asked.text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_REPORT_TEXT || t.chars().any(char::is_control)) {
            return Err(ReportError::Invalid(format!("the text is at most {MAX_REPORT_TEXT} characters on one line")));
        }
        self.count_report(user).await?;
        let conversation = self.store.get_conversation(user, asked.conversation_id).await?;
        let conversation = conversation.ok_or(ChatError::ConversationNotFound)?;
        let snapshot: Vec<ReportedMessage> = match asked.message_id {
            Some(id) => {
                let message = self.store.get_message(conversation.id, id).await?.ok_or(ChatError::MessageNotFound)?;
                vec![snapshot_of(&message)]
            }
            None => self
                .store
                .list_messages(conversation.id, CONVERSATION_SNAPSHOT, None)
                .await?
                .iter()
                .map(snapshot_of)
                .collect(),
        };
        let at = now();
        let due = chrono::Duration::from_std(self.settings.report_handling).unwrap_or(chrono::Duration::days(7));
        let report = Report {
            id: uuid::Uuid::new_v4().simple().to_string(),
            user_id: user,
            conversation_id: conversation.id,
            message_id: asked.message_id,
            reason: asked.reason,
            text,
            snapshot,
            created_at: at,
            due_at: at + due,
            status: ReportStatus::Pending,
            decision: None,
        };
        self.store.insert_report(&report).await?;
        let event = SafetyEvent::new(user, crate::domain::SafetyEventKind::ReportFiled, Some(report.id.clone()));
        self.chat.safety().record(event.in_conversation(conversation.id)).await;
        Ok(report)
    }

    /// At most `reports_per_day` a day per user.
    async fn count_report(&self, user: UserId) -> Result<(), ReportError> {
        let at = now();
        let (day, ends) = china_day(at);
        let key = format!("reports:{user}:{day}");
        let filed = self.store.increment_counter(&key, 1, ends + chrono::Duration::days(1)).await?;
        if self.settings.reports_per_day > 0 && filed > self.settings.reports_per_day {
            return Err(ReportError::TooMany { retry_after: (ends - at).num_seconds().max(1) as u64 });
        }
        Ok(())
    }
}

fn snapshot_of(m: &crate::domain::Message) -> ReportedMessage {
    ReportedMessage { id: m.id, role: m.role, content: m.content.clone(), created_at: m.created_at }
}

/// A report as its author (and the export) sees it: the operator's decision and note
/// included, the operator's name not.
pub fn report_json(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "conversation_id": r.conversation_id, "message_id": r.message_id, "reason": r.reason,
        "text": r.text, "status": r.status, "created_at": r.created_at, "due_at": r.due_at,
        "decided_at": r.decision.as_ref().map(|d| d.at), "note": r.decision.as_ref().map(|d| d.note.as_str()),
        "snapshot": r.snapshot,
    })
}
