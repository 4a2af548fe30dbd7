//! The notices users must see (their text is the operator's, with Chinese defaults) and
//! how they travel: listed by `GET /api/me`, carried by the next reply as a `notice` event.
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::{NoticeKind, PendingNotice};

/// A version names the text a user was shown: the first 12 hex digits of its SHA-256.
pub fn version_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

#[derive(Debug, Clone)]
pub struct NoticeTexts {
    pub ai_disclosure: String,
    pub usage_reminder: String,
    /// The privacy policy in effect: its version (empty: none published) and notice text.
    pub privacy_policy_version: String,
    pub privacy_policy: String,
}

impl NoticeTexts {
    pub fn text(&self, kind: NoticeKind) -> &str {
        match kind {
            NoticeKind::AiDisclosure => &self.ai_disclosure,
            NoticeKind::UsageReminder => &self.usage_reminder,
            NoticeKind::PrivacyPolicy => &self.privacy_policy,
        }
    }

    /// A notice's version names what the user saw: the text's hash, or for the privacy
    /// policy the version the operator published.
    pub fn issue(&self, kind: NoticeKind, at: chrono::DateTime<chrono::Utc>) -> PendingNotice {
        let version = match kind {
            NoticeKind::PrivacyPolicy => self.privacy_policy_version.clone(),
            _ => version_of(self.text(kind)),
        };
        PendingNotice { kind, version, since: at }
    }
}

fn title(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::AiDisclosure => "AI 提示",
        NoticeKind::UsageReminder => "休息提醒",
        NoticeKind::PrivacyPolicy => "隐私政策更新",
    }
}

/// A notice as clients get it (in `/api/me`, a reply's `notice` event, a polled answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoticeEvent {
    pub kind: NoticeKind,
    pub version: String,
    pub title: &'static str,
    pub text: String,
    /// Sends are refused until it is acknowledged (`NOTICES_REQUIRED=true`).
    pub required: bool,
}

impl NoticeEvent {
    /// The privacy policy is always required; the others when the operator says so.
    pub fn of(pending: &PendingNotice, texts: &NoticeTexts, required: bool) -> Self {
        Self {
            kind: pending.kind,
            version: pending.version.clone(),
            title: title(pending.kind),
            text: texts.text(pending.kind).to_string(),
            required: required || pending.kind == NoticeKind::PrivacyPolicy,
        }
    }
}
