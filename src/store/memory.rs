//! In-process store for local development: nothing survives a restart.
use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationCursor, ExpiredLease, GenerationClaim, Store, StoreError};
use crate::domain::{
    now, Ban, ClientMessageId, Conversation, ConversationId, ConversationSummary, ConversationTitle, MemoryFact,
    MemoryId, MemoryJob, MemoryText, Message, MessageId, MessageProgress, MessageStatus, OpenId, ProfilePatch,
    QuotaLimits, SendRecord, User, UserId,
};

#[derive(Default)]
pub(super) struct Inner {
    pub(super) users: HashMap<UserId, User>,
    user_by_openid: HashMap<String, UserId>,
    pub(super) conversations: HashMap<ConversationId, Conversation>,
    pub(super) safety_events: Vec<crate::domain::SafetyEvent>,
    leases: HashMap<ConversationId, (MessageId, DateTime<Utc>)>,
    messages: HashMap<MessageId, Message>,
    cancel_requested: std::collections::HashSet<MessageId>,
    sends: HashMap<(UserId, String), SendRecord>,
    counters: HashMap<String, (i64, DateTime<Utc>)>,
    memories: HashMap<MemoryId, MemoryFact>,
    memory_jobs: HashMap<ConversationId, PendingJob>,
    pub(super) reports: Vec<crate::domain::Report>,
    pub(super) exports: HashMap<String, (crate::domain::DataExport, Vec<String>)>,
    /// Erased accounts, without personal content.
    pub(super) deletions: Vec<String>,
}

impl Inner {
    /// Everything kept about `user`, except reports still open.
    pub(super) fn erase(&mut self, user: &User, record: &str) {
        let id = user.id;
        self.users.remove(&id);
        self.user_by_openid.remove(user.openid.as_str());
        let conversations: Vec<ConversationId> =
            self.conversations.values().filter(|c| c.user_id == id).map(|c| c.id).collect();
        for conversation in &conversations {
            self.conversations.remove(conversation);
            self.leases.remove(conversation);
            self.memory_jobs.remove(conversation);
        }
        self.messages.retain(|_, m| m.user_id != id);
        self.sends.retain(|(user, _), _| *user != id);
        let mark = id.to_string();
        self.counters.retain(|key, _| !key.contains(&mark));
        self.memories.retain(|_, f| f.user_id != id);
        self.memory_jobs.retain(|_, j| j.job.user_id != id);
        self.safety_events.retain(|e| e.user_id != id);
        self.reports.retain(|r| r.user_id != id || r.status == crate::domain::ReportStatus::Pending);
        self.exports.retain(|_, (e, _)| e.user_id != id);
        self.deletions.push(record.to_string());
    }
}

struct PendingJob {
    job: MemoryJob,
    due: DateTime<Utc>,
    leased_until: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct InMemoryStore {
    inner: Mutex<Inner>,
    pub(super) console: Mutex<super::console::MemoryConsole>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for InMemoryStore {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn find_or_create_user(&self, openid: &OpenId) -> Result<User, StoreError> {
        let mut inner = self.lock();
        if let Some(id) = inner.user_by_openid.get(openid.as_str()) {
            return Ok(inner.users[id].clone());
        }
        let user = User {
            id: UserId::new(),
            openid: openid.clone(),
            nickname: None,
            avatar_url: None,
            created_at: now(),
            session_version: 0,
            ban: None,
            quota: None,
            notices: Vec::new(),
            activity: None,
            minor_mode: None,
            agreed_policy: None,
            deletion_due: None,
        };
        inner.user_by_openid.insert(openid.as_str().to_string(), user.id);
        inner.users.insert(user.id, user.clone());
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn update_user_profile(&self, id: UserId, patch: &ProfilePatch) -> Result<Option<User>, StoreError> {
        let mut inner = self.lock();
        let Some(user) = inner.users.get_mut(&id) else { return Ok(None) };
        if let Some(nickname) = &patch.nickname {
            user.nickname = Some(nickname.clone());
        }
        if let Some(avatar_url) = &patch.avatar_url {
            user.avatar_url = Some(avatar_url.clone());
        }
        Ok(Some(user.clone()))
    }

    async fn insert_conversation(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.lock().conversations.insert(conversation.id, conversation.clone());
        Ok(())
    }

    async fn list_conversations(
        &self,
        user: UserId,
        limit: usize,
        after: Option<&ConversationCursor>,
    ) -> Result<Vec<Conversation>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<Conversation> = inner
            .conversations
            .values()
            .filter(|c| c.user_id == user && after.is_none_or(|cursor| cursor.precedes(c)))
            .cloned()
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse((c.last_active_at, c.id)));
        found.truncate(limit);
        Ok(found)
    }

    async fn get_conversation(&self, user: UserId, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self.lock().conversations.get(&id).filter(|c| c.user_id == user).cloned())
    }

    async fn rename_conversation(
        &self,
        user: UserId,
        id: ConversationId,
        title: &ConversationTitle,
    ) -> Result<Option<Conversation>, StoreError> {
        let mut inner = self.lock();
        let Some(c) = inner.conversations.get_mut(&id).filter(|c| c.user_id == user) else {
            return Ok(None);
        };
        c.title = title.clone();
        Ok(Some(c.clone()))
    }

    async fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.conversations.get(&id).is_none_or(|c| c.user_id != user) {
            return Ok(false);
        }
        inner.conversations.remove(&id);
        inner.leases.remove(&id);
        inner.messages.retain(|_, m| m.conversation_id != id);
        Ok(true)
    }

    async fn claim_generation(
        &self,
        user: UserId,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<GenerationClaim, StoreError> {
        let mut inner = self.lock();
        if inner.conversations.get(&id).is_none_or(|c| c.user_id != user) {
            return Ok(GenerationClaim::NoSuchConversation);
        }
        if let Some((holder, until)) = inner.leases.get(&id).filter(|(_, until)| *until >= now) {
            return Ok(GenerationClaim::Busy { holder: *holder, until: *until });
        }
        inner.leases.insert(id, (message, lease_until));
        if let Some(c) = inner.conversations.get_mut(&id) {
            c.last_active_at = now;
        }
        Ok(GenerationClaim::Claimed)
    }

    async fn take_over_generation(
        &self,
        id: ConversationId,
        holder: MessageId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.leases.get(&id).is_none_or(|(m, _)| *m != holder) {
            return Ok(false);
        }
        inner.leases.insert(id, (message, lease_until));
        if let Some(c) = inner.conversations.get_mut(&id) {
            c.last_active_at = now;
        }
        Ok(true)
    }

    async fn renew_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(lease) = self.lock().leases.get_mut(&id).filter(|(m, _)| *m == message) {
            lease.1 = lease_until;
        }
        Ok(())
    }

    async fn release_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.leases.get(&id).is_some_and(|(m, _)| *m == message) {
            inner.leases.remove(&id);
            if let Some(c) = inner.conversations.get_mut(&id) {
                c.last_active_at = now;
            }
        }
        Ok(())
    }

    async fn insert_message(&self, message: &Message) -> Result<(), StoreError> {
        self.lock().messages.insert(message.id, message.clone());
        Ok(())
    }

    async fn list_messages(
        &self,
        conversation: ConversationId,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<Message>, StoreError> {
        let inner = self.lock();
        let anchor = match before {
            Some(id) => match inner.messages.get(&id).filter(|m| m.conversation_id == conversation) {
                Some(m) => Some((m.created_at, m.id)),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let mut found: Vec<Message> = inner
            .messages
            .values()
            .filter(|m| m.conversation_id == conversation && anchor.is_none_or(|anchor| (m.created_at, m.id) < anchor))
            .cloned()
            .collect();
        found.sort_by_key(|m| (m.created_at, m.id));
        let skip = found.len().saturating_sub(limit);
        Ok(found.split_off(skip))
    }

    async fn list_flagged_messages(&self, codes: &[&str], limit: usize) -> Result<Vec<Message>, StoreError> {
        let inner = self.lock();
        let mut flagged: Vec<Message> = inner
            .messages
            .values()
            .filter(|m| m.error.as_ref().is_some_and(|e| codes.contains(&e.code.as_str())))
            .cloned()
            .collect();
        flagged.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id.to_string())));
        flagged.truncate(limit);
        Ok(flagged)
    }

    async fn get_message(&self, conversation: ConversationId, id: MessageId) -> Result<Option<Message>, StoreError> {
        Ok(self.lock().messages.get(&id).filter(|m| m.conversation_id == conversation).cloned())
    }

    async fn save_progress(
        &self,
        id: MessageId,
        progress: &MessageProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let cancelled = inner.cancel_requested.contains(&id);
        match inner.messages.get_mut(&id) {
            Some(_) if cancelled && progress.status == MessageStatus::Streaming => Ok(false),
            Some(message) if message.status == MessageStatus::Streaming => {
                message.apply(progress, now);
                if progress.status != MessageStatus::Streaming {
                    inner.cancel_requested.remove(&id);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn insert_memory(&self, fact: &MemoryFact) -> Result<(), StoreError> {
        self.lock().memories.insert(fact.id, fact.clone());
        Ok(())
    }

    async fn list_memories(&self, user: UserId, persona: &str) -> Result<Vec<MemoryFact>, StoreError> {
        let inner = self.lock();
        let mut facts: Vec<MemoryFact> =
            inner.memories.values().filter(|f| f.belongs_to(user, persona)).cloned().collect();
        facts.sort_by_key(|f| (f.learned_at, f.id));
        Ok(facts)
    }

    async fn update_memory(
        &self,
        user: UserId,
        persona: &str,
        id: MemoryId,
        text: &MemoryText,
        now: DateTime<Utc>,
    ) -> Result<Option<MemoryFact>, StoreError> {
        let mut inner = self.lock();
        let Some(fact) = inner.memories.get_mut(&id).filter(|f| f.belongs_to(user, persona)) else {
            return Ok(None);
        };
        fact.text = text.clone();
        fact.updated_at = now;
        Ok(Some(fact.clone()))
    }

    async fn delete_memory(&self, user: UserId, persona: &str, id: MemoryId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let theirs = inner.memories.get(&id).is_some_and(|f| f.belongs_to(user, persona));
        if theirs {
            inner.memories.remove(&id);
        }
        Ok(theirs)
    }

    async fn delete_memories(&self, user: UserId, persona: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.memories.len();
        inner.memories.retain(|_, f| !f.belongs_to(user, persona));
        let forgotten = (before - inner.memories.len()) as u64;
        for c in inner.conversations.values_mut().filter(|c| c.user_id == user && c.persona_id == persona) {
            c.learned_through = c.learned_through.max(Some(at));
        }
        Ok(forgotten)
    }

    async fn mark_learned(&self, conversation: ConversationId, through: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(c) = self.lock().conversations.get_mut(&conversation) {
            c.learned_through = c.learned_through.max(Some(through));
        }
        Ok(())
    }

    async fn save_summary(
        &self,
        conversation: ConversationId,
        summary: &ConversationSummary,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(c) = inner.conversations.get_mut(&conversation) else { return Ok(false) };
        if c.summary.as_ref().is_some_and(|s| s.through_at >= summary.through_at) {
            return Ok(false);
        }
        c.summary = Some(summary.clone());
        Ok(true)
    }

    async fn schedule_memory_job(
        &self,
        conversation: ConversationId,
        user: UserId,
        persona: &str,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let pending = inner.memory_jobs.entry(conversation).or_insert_with(|| PendingJob {
            job: MemoryJob {
                conversation_id: conversation,
                user_id: user,
                persona_id: persona.to_string(),
                version: 0,
                attempts: 0,
                lease_token: String::new(),
            },
            due,
            leased_until: None,
        });
        pending.job.version += 1;
        pending.job.attempts = 0;
        pending.job.persona_id = persona.to_string();
        pending.due = due;
        Ok(())
    }

    async fn claim_memory_job(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<MemoryJob>, StoreError> {
        let mut inner = self.lock();
        let claimable = inner
            .memory_jobs
            .values_mut()
            .filter(|p| p.due <= now && p.leased_until.is_none_or(|until| until <= now))
            .min_by_key(|p| p.due);
        Ok(claimable.map(|pending| {
            pending.leased_until = Some(lease_until);
            pending.job.lease_token = MemoryId::new().to_string();
            pending.job.clone()
        }))
    }

    async fn finish_memory_job(&self, job: &MemoryJob) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match inner.memory_jobs.get_mut(&job.conversation_id) {
            Some(pending) if pending.job.lease_token != job.lease_token => {}
            Some(pending) if pending.job.version == job.version => {
                inner.memory_jobs.remove(&job.conversation_id);
            }
            Some(pending) => pending.leased_until = None,
            None => {}
        }
        Ok(())
    }

    async fn retry_memory_job(&self, job: &MemoryJob, due: DateTime<Utc>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let held = inner.memory_jobs.get_mut(&job.conversation_id).filter(|p| p.job.lease_token == job.lease_token);
        if let Some(pending) = held {
            pending.leased_until = None;
            if pending.job.version == job.version {
                pending.job.attempts += 1;
                pending.due = due;
            }
        }
        Ok(())
    }

    async fn save_progress_many(
        &self,
        saves: &[(MessageId, MessageProgress)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut saved = Vec::with_capacity(saves.len());
        for (id, progress) in saves {
            saved.push(self.save_progress(*id, progress, now).await?);
        }
        Ok(saved)
    }

    async fn renew_generations(
        &self,
        leases: &[(ConversationId, MessageId)],
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for (id, message) in leases {
            self.renew_generation(*id, *message, lease_until).await?;
        }
        Ok(())
    }

    async fn interrupt_abandoned_replies(
        &self,
        conversation: ConversationId,
        except: MessageId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut marked = 0;
        for message in self.lock().messages.values_mut() {
            if message.conversation_id == conversation
                && message.id != except
                && message.role == crate::domain::Role::Assistant
                && message.status == MessageStatus::Streaming
            {
                let settled = super::interrupted(!message.content.is_empty());
                message.status = settled.status;
                message.error = settled.failure.map(|f| f.to_error());
                message.updated_at = now;
                marked += 1;
            }
        }
        Ok(marked)
    }

    async fn set_user_ban(&self, id: UserId, ban: Option<&Ban>) -> Result<bool, StoreError> {
        Ok(self.lock().users.get_mut(&id).map(|user| user.ban = ban.cloned()).is_some())
    }

    async fn set_user_quota(&self, id: UserId, quota: Option<QuotaLimits>) -> Result<bool, StoreError> {
        Ok(self.lock().users.get_mut(&id).map(|user| user.quota = quota).is_some())
    }

    async fn find_user(&self, openid: &OpenId) -> Result<Option<User>, StoreError> {
        let inner = self.lock();
        Ok(inner.user_by_openid.get(openid.as_str()).map(|id| inner.users[id].clone()))
    }

    async fn bump_session_version(&self, id: UserId) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().users.get_mut(&id).map(|user| {
            user.session_version += 1;
            user.session_version
        }))
    }

    async fn insert_send(&self, send: &SendRecord) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let key = (send.user_id, send.client_id.as_str().to_string());
        if inner.sends.contains_key(&key) {
            return Ok(false);
        }
        inner.sends.insert(key, send.clone());
        Ok(true)
    }

    async fn find_send(&self, user: UserId, client_id: &ClientMessageId) -> Result<Option<SendRecord>, StoreError> {
        Ok(self.lock().sends.get(&(user, client_id.as_str().to_string())).cloned())
    }

    async fn request_cancel(&self, conversation: ConversationId, message: MessageId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let streaming = inner
            .messages
            .get(&message)
            .is_some_and(|m| m.conversation_id == conversation && m.status == MessageStatus::Streaming);
        if streaming {
            inner.cancel_requested.insert(message);
        }
        Ok(streaming)
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExpiredLease>, StoreError> {
        let inner = self.lock();
        let expired = inner.leases.iter().filter(|(_, (_, until))| *until < now).filter_map(|(c, (m, _))| {
            let user = inner.conversations.get(c)?.user_id;
            Some(ExpiredLease { user, conversation: *c, holder: *m })
        });
        Ok(expired.take(limit).collect())
    }

    async fn increment_counter(&self, key: &str, by: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut inner = self.lock();
        let at = now();
        inner.counters.retain(|_, (_, expiry)| *expiry > at);
        let entry = inner.counters.entry(key.to_string()).or_insert((0, expires_at));
        entry.0 += by;
        entry.1 = expires_at;
        Ok(entry.0)
    }

    async fn read_counter(&self, key: &str) -> Result<i64, StoreError> {
        let at = now();
        Ok(self.lock().counters.get(key).filter(|(_, expiry)| *expiry > at).map_or(0, |(count, _)| *count))
    }
}
