//! Companion safety, as China's rules for anthropomorphic AI services ask (《人工智能拟人化
//! 互动服务管理暂行办法》): telling users they talk to an AI, reminders after long use, an
//! easy exit, a preset response and human takeover in a crisis, minor mode. Every step is
//! recorded in `safety_events`.
pub mod classifier;
pub mod labels;
mod notices;
pub mod phrases;
pub mod usage;

use std::time::Duration;

pub use notices::{version_of, NoticeEvent, NoticeTexts};

use crate::domain::{now, NoticeKind, PendingNotice, SafetyEvent, SafetyEventKind, User, UserId};
use crate::store::{DynStore, UserSafetyUpdate};

#[derive(Debug, Clone)]
pub struct SafetySettings {
    pub notices: NoticeTexts,
    /// Refuse a send while a notice is unacknowledged (only once every live client shows them).
    pub notices_required: bool,
    /// Continuous use before a reminder (zero: none).
    pub usage_reminder_after: Duration,
    /// A gap this long ends a stretch of use.
    pub usage_pause: Duration,
    pub exit_phrases: Vec<String>,
    pub exit_reply: String,
    pub crisis_phrases: Vec<String>,
    pub crisis_reply: String,
    /// Closes a human reply still awaited when an operator hands the conversation back.
    pub takeover_release_text: String,
    /// Use per day in minor mode (zero: no limit).
    pub minor_daily_limit: Duration,
    /// Labels of AI-generated content.
    pub labels: labels::ContentLabels,
}

/// The safety steps every transport shares.
pub struct CompanionSafety {
    pub store: DynStore,
    pub settings: SafetySettings,
}

impl CompanionSafety {
    /// The user's pending notices as clients see them: those issued, and a privacy policy
    /// version they have not agreed to.
    pub fn pending(&self, user: &User) -> Vec<NoticeEvent> {
        let mut pending = user.notices.clone();
        pending.extend(self.policy_pending(user));
        self.events(&pending)
    }

    /// Pending notices as clients get them (text, title, whether required).
    pub fn events<'a>(&self, notices: impl IntoIterator<Item = &'a PendingNotice>) -> Vec<NoticeEvent> {
        let required = self.settings.notices_required;
        notices.into_iter().map(|n| NoticeEvent::of(n, &self.settings.notices, required)).collect()
    }

    /// The published privacy policy, when the user has not agreed to its version.
    pub fn policy_pending(&self, user: &User) -> Option<PendingNotice> {
        let current = &self.settings.notices.privacy_policy_version;
        let agreed = user.agreed_policy.as_ref().is_some_and(|a| &a.version == current);
        (!current.is_empty() && !agreed).then(|| self.settings.notices.issue(NoticeKind::PrivacyPolicy, now()))
    }

    /// Records the user's agreement to the current privacy policy (at sign-in, or by
    /// acknowledging its notice); false when `version` is not the current one.
    pub async fn agree_to_policy(&self, user: UserId, version: &str) -> Result<bool, crate::store::StoreError> {
        let current = &self.settings.notices.privacy_policy_version;
        if current.is_empty() || version != current {
            return Ok(false);
        }
        let agreement = crate::domain::PolicyAgreement { version: version.to_string(), at: now() };
        self.store.set_policy_agreement(user, &agreement).await?;
        self.record(SafetyEvent::new(user, SafetyEventKind::PolicyAgreed, Some(version.to_string()))).await;
        Ok(true)
    }

    /// A sign-in: the AI disclosure is issued again, and the app's opening counts as use
    /// (so the first reply does not disclose twice).
    /// Returns the notices to show now.
    pub async fn signed_in(&self, user: &User, agreed_to_policy: bool) -> Vec<NoticeEvent> {
        let at = now();
        let pause = chrono::Duration::from_std(self.settings.usage_pause).unwrap_or(chrono::Duration::MAX);
        let activity = usage::next_activity(user.activity, at, pause);
        let issued = self.issue(user.id, &[NoticeKind::AiDisclosure], Some(activity)).await;
        let mut notices: Vec<PendingNotice> =
            user.notices.iter().filter(|n| !issued.iter().any(|i| i.kind == n.kind)).cloned().collect();
        notices.extend(issued);
        if !agreed_to_policy {
            notices.extend(self.policy_pending(user));
        }
        notices.sort_by_key(|n| n.kind);
        self.events(&notices)
    }

    /// Issues notices (recorded); a failure is logged: the user is not refused for it.
    pub async fn issue(
        &self,
        user: UserId,
        kinds: &[NoticeKind],
        activity: Option<crate::domain::Activity>,
    ) -> Vec<PendingNotice> {
        let at = now();
        let notices: Vec<PendingNotice> = kinds.iter().map(|k| self.settings.notices.issue(*k, at)).collect();
        let update = UserSafetyUpdate { notices: notices.clone(), activity };
        if let Err(e) = self.store.update_user_safety(user, &update).await {
            tracing::error!(error = ?e, "could not issue a notice");
            return Vec::new();
        }
        for notice in &notices {
            self.record(SafetyEvent::new(user, SafetyEventKind::NoticeIssued, Some(describe(notice)))).await;
        }
        notices
    }

    /// Saves (and records) a notice already shown.
    pub async fn issue_pending(&self, user: UserId, notice: &PendingNotice) {
        let update = UserSafetyUpdate { notices: vec![notice.clone()], activity: None };
        match self.store.update_user_safety(user, &update).await {
            Ok(()) => self.record(SafetyEvent::new(user, SafetyEventKind::NoticeIssued, Some(describe(notice)))).await,
            Err(e) => tracing::error!(error = ?e, "could not issue a notice"),
        }
    }

    /// Records a step; the record is a duty, but a failed write must not fail the chat.
    pub async fn record(&self, event: SafetyEvent) {
        if let Err(e) = self.store.record_safety_event(&event).await {
            tracing::error!(error = ?e, kind = ?event.kind, "could not record a safety event");
        }
    }
}

/// `ai_disclosure@3f2a…`: which notice, at which version.
pub fn describe(notice: &PendingNotice) -> String {
    format!("{}@{}", notice.kind.as_str(), notice.version)
}
