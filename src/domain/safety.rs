//! What China's rules for anthropomorphic AI ask the service to keep about a user and a
//! conversation: notices waiting to be acknowledged, continuous use, minor mode, crises
//! and human takeovers, and the record of each step.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConversationId, UserId};

/// A notice the user must see and acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// "You are talking to an AI": at first use, every sign-in, and after long use.
    AiDisclosure,
    /// "You have been chatting for two hours": after continuous use passes the limit.
    UsageReminder,
    /// A privacy policy version the user has not agreed to: required before chatting.
    PrivacyPolicy,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 3] = [NoticeKind::AiDisclosure, NoticeKind::UsageReminder, NoticeKind::PrivacyPolicy];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::AiDisclosure => "ai_disclosure",
            NoticeKind::UsageReminder => "usage_reminder",
            NoticeKind::PrivacyPolicy => "privacy_policy",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// A notice waiting for the user's acknowledgement, at the version (of its text) issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    pub kind: NoticeKind,
    pub version: String,
    pub since: DateTime<Utc>,
}

/// One stretch of use: activity with gaps shorter than the pause counts as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub session_start: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// The session a usage reminder was issued for (at most one per session).
    pub reminded_session: Option<DateTime<Utc>>,
}

/// Minor mode: on by the user's choice or a declared age under 18; guardian consent is
/// recorded by an operator after their own verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinorMode {
    pub since: DateTime<Utc>,
    pub guardian_consent: Option<GuardianConsent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianConsent {
    pub by: String,
    pub at: DateTime<Utc>,
    pub note: String,
}

/// A human operator answers this conversation instead of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Why a conversation is in the crisis queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrisisFlag {
    pub at: DateTime<Utc>,
    /// What recognised it: a phrase of the list, or the persona's classifier.
    pub detected_by: String,
    /// Set when an operator released the conversation (the crisis was handled).
    pub handled_at: Option<DateTime<Utc>>,
}

/// The record of each safety step, kept for the operator (and an assessment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafetyEventKind {
    NoticeIssued,
    NoticeAcknowledged,
    ExitPhrase,
    CrisisDetected,
    TakenOver,
    OperatorReplied,
    Released,
    MinorModeOn,
    MinorModeOff,
    GuardianConsent,
    MinorTimeLimit,
    /// The user agreed to a privacy policy version (at sign-in or by acknowledging it).
    PolicyAgreed,
    ReportFiled,
    ExportRequested,
    DeletionRequested,
    DeletionCancelled,
}

/// The privacy policy version a user agreed to, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAgreement {
    pub version: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyEvent {
    pub at: DateTime<Utc>,
    pub user_id: UserId,
    pub conversation_id: Option<ConversationId>,
    pub kind: SafetyEventKind,
    /// What it was about (a notice kind and version, an operator's name…): never the
    /// user's words.
    pub detail: Option<String>,
}

impl SafetyEvent {
    pub fn new(user_id: UserId, kind: SafetyEventKind, detail: Option<String>) -> Self {
        Self { at: super::now(), user_id, conversation_id: None, kind, detail }
    }

    pub fn in_conversation(mut self, conversation: ConversationId) -> Self {
        self.conversation_id = Some(conversation);
        self
    }
}
