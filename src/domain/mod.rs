//! Types parsed once at the edge; a value of these types is valid by construction.
mod conversation;
mod ids;
mod memory;
mod message;
mod operator;
#[cfg(test)]
mod parse_tests;
mod reply;
mod rights;
mod safety;
mod user;

pub use conversation::{Conversation, ConversationSummary, ConversationTitle, SummaryText};
pub use ids::{ConversationId, MemoryId, MessageId, UserId};
pub use memory::{MemoryFact, MemoryJob, MemoryText};
pub use message::{
    ClientMessageId, Message, MessageContent, MessageError, MessageProgress, MessageStatus, Role, SendRecord, Served,
    Usage,
};
pub use operator::{ApiKey, AuditAction, AuditEntry, Operator, OperatorName, OperatorRole, OperatorSession, Reason};
pub use reply::{Conclusion, FinishReason, GenerationEnd, ReplyEnd, ReplyFailure};
pub use rights::{DataExport, ExportStatus, Report, ReportDecision, ReportReason, ReportStatus, ReportedMessage};
pub use safety::{
    Activity, CrisisFlag, GuardianConsent, MinorMode, NoticeKind, PendingNotice, PolicyAgreement, SafetyEvent,
    SafetyEventKind, Takeover,
};
pub use user::{AvatarUrl, Ban, LoginCode, Nickname, OpenId, ProfilePatch, QuotaLimits, User};

/// Why a value from a client was refused; the text is safe to show to that client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Now, at the millisecond precision MongoDB stores, so values round-trip exactly.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
