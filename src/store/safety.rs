//! What companion safety keeps (notices, activity, minor mode, crises and takeovers, and
//! the record of each step), behind its own seam; the in-process implementation.
use async_trait::async_trait;

use super::{InMemoryStore, StoreError};
use crate::domain::{
    Activity, Conversation, ConversationId, CrisisFlag, MinorMode, NoticeKind, PendingNotice, PolicyAgreement,
    SafetyEvent, Takeover, UserId,
};

/// Notices issued and activity recorded for one user in one write.
#[derive(Debug, Clone, Default)]
pub struct UserSafetyUpdate {
    /// Each replaces a pending notice of its kind.
    pub notices: Vec<PendingNotice>,
    pub activity: Option<Activity>,
}

#[async_trait]
pub trait SafetyStore: Send + Sync {
    async fn update_user_safety(&self, user: UserId, update: &UserSafetyUpdate) -> Result<(), StoreError>;
    /// Removes the pending notice if it is at `version`; false when it was not.
    async fn acknowledge_notice(&self, user: UserId, kind: NoticeKind, version: &str) -> Result<bool, StoreError>;
    async fn set_policy_agreement(&self, user: UserId, agreement: &PolicyAgreement) -> Result<(), StoreError>;
    /// Minor mode on (`Some`) or off; false without the user.
    async fn set_minor_mode(&self, user: UserId, mode: Option<&MinorMode>) -> Result<bool, StoreError>;

    async fn record_safety_event(&self, event: &SafetyEvent) -> Result<(), StoreError>;
    /// Newest first; one user's, or everyone's.
    async fn list_safety_events(&self, user: Option<UserId>, limit: usize) -> Result<Vec<SafetyEvent>, StoreError>;

    /// A human answers the conversation (`Some`) or the companion again; false without it.
    async fn set_takeover(&self, conversation: ConversationId, takeover: Option<&Takeover>)
        -> Result<bool, StoreError>;
    /// Puts the conversation in the crisis queue (again, if it was handled).
    async fn flag_crisis(&self, conversation: ConversationId, flag: &CrisisFlag) -> Result<(), StoreError>;
    /// The crisis queue: conversations ever flagged, newest flag first.
    async fn list_crisis_conversations(&self, limit: usize) -> Result<Vec<Conversation>, StoreError>;
    /// Any user's conversation, for operators.
    async fn find_conversation(&self, conversation: ConversationId) -> Result<Option<Conversation>, StoreError>;
}

#[async_trait]
impl SafetyStore for InMemoryStore {
    async fn update_user_safety(&self, user: UserId, update: &UserSafetyUpdate) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(stored) = inner.users.get_mut(&user) {
            for notice in &update.notices {
                stored.notices.retain(|n| n.kind != notice.kind);
                stored.notices.push(notice.clone());
            }
            stored.notices.sort_by_key(|n| n.kind);
            if let Some(activity) = update.activity {
                stored.activity = Some(activity);
            }
        }
        Ok(())
    }

    async fn acknowledge_notice(&self, user: UserId, kind: NoticeKind, version: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.users.get_mut(&user) else { return Ok(false) };
        let before = stored.notices.len();
        stored.notices.retain(|n| !(n.kind == kind && n.version == version));
        Ok(stored.notices.len() < before)
    }

    async fn set_minor_mode(&self, user: UserId, mode: Option<&MinorMode>) -> Result<bool, StoreError> {
        Ok(self.lock().users.get_mut(&user).map(|u| u.minor_mode = mode.cloned()).is_some())
    }

    async fn set_policy_agreement(&self, user: UserId, agreement: &PolicyAgreement) -> Result<(), StoreError> {
        if let Some(u) = self.lock().users.get_mut(&user) {
            u.agreed_policy = Some(agreement.clone());
        }
        Ok(())
    }

    async fn record_safety_event(&self, event: &SafetyEvent) -> Result<(), StoreError> {
        self.lock().safety_events.push(event.clone());
        Ok(())
    }

    async fn list_safety_events(&self, user: Option<UserId>, limit: usize) -> Result<Vec<SafetyEvent>, StoreError> {
        let inner = self.lock();
        let mine = inner.safety_events.iter().rev().filter(|e| user.is_none_or(|u| e.user_id == u));
        Ok(mine.take(limit).cloned().collect())
    }

    async fn set_takeover(
        &self,
        conversation: ConversationId,
        takeover: Option<&Takeover>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.conversations.get_mut(&conversation) else { return Ok(false) };
        stored.takeover = takeover.cloned();
        if takeover.is_none() {
            if let Some(crisis) = stored.crisis.as_mut() {
                crisis.handled_at.get_or_insert(crate::domain::now());
            }
        }
        Ok(true)
    }

    async fn flag_crisis(&self, conversation: ConversationId, flag: &CrisisFlag) -> Result<(), StoreError> {
        if let Some(stored) = self.lock().conversations.get_mut(&conversation) {
            stored.crisis = Some(flag.clone());
        }
        Ok(())
    }

    async fn list_crisis_conversations(&self, limit: usize) -> Result<Vec<Conversation>, StoreError> {
        let inner = self.lock();
        let mut flagged: Vec<Conversation> =
            inner.conversations.values().filter(|c| c.crisis.is_some()).cloned().collect();
        flagged.sort_by_key(|c| std::cmp::Reverse(c.crisis.as_ref().map(|f| f.at)));
        flagged.truncate(limit);
        Ok(flagged)
    }

    async fn find_conversation(&self, conversation: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self.lock().conversations.get(&conversation).cloned())
    }
}
