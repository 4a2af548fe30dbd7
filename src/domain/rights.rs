//! What users' rights keep: reports (投诉举报) with a snapshot of what was reported and the
//! operator's decision, and data exports prepared for download.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConversationId, MessageId, Role, UserId};

/// Why a user reports: a fixed list (the client shows the Chinese words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    Illegal,
    Pornographic,
    Abusive,
    Fraud,
    Misinformation,
    HarmfulToMinors,
    Privacy,
    SelfHarm,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Pending,
    Accepted,
    Dismissed,
}

/// A message as it was when reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedMessage {
    pub id: MessageId,
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDecision {
    pub by: String,
    pub at: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: String,
    pub user_id: UserId,
    pub conversation_id: ConversationId,
    /// The message reported; `None` for the whole conversation.
    pub message_id: Option<MessageId>,
    pub reason: ReportReason,
    pub text: Option<String>,
    pub snapshot: Vec<ReportedMessage>,
    pub created_at: DateTime<Utc>,
    /// When the operator promised to have handled it.
    pub due_at: DateTime<Utc>,
    pub status: ReportStatus,
    pub decision: Option<ReportDecision>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Preparing,
    Ready,
    Failed,
}

/// A data export: prepared in the background, downloadable until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataExport {
    pub id: String,
    pub user_id: UserId,
    pub status: ExportStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The JSON document, in parts of at most a megabyte.
    pub parts: u32,
}
