//! A store that counts what passes through it: operations by name, reads and writes, and
//! "rounds" (a call that starts while no other call is in flight begins a new one, so
//! calls made concurrently count once). The server wraps its store in one to publish
//! store traffic (`/metrics`); tests use the rounds to bound a send's critical path.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rights::RightsStore;
use super::safety::{SafetyStore, UserSafetyUpdate};
use super::ConsoleStore;
use super::{ConversationCursor, DynStore, ExpiredLease, GenerationClaim, Store, StoreError};
use crate::domain::{
    ApiKey, AuditEntry, Ban, ClientMessageId, Conversation, ConversationId, ConversationSummary, ConversationTitle,
    MemoryFact, MemoryId, MemoryJob, MemoryText, Message, MessageId, MessageProgress, OpenId, Operator, OperatorName,
    OperatorSession, ProfilePatch, QuotaLimits, SendRecord, User, UserId,
};
use crate::domain::{CrisisFlag, MinorMode, NoticeKind, PolicyAgreement, SafetyEvent, Takeover};
use crate::domain::{DataExport, ExportStatus, Report, ReportDecision, ReportStatus};

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
}

/// Every operation's name, in the trait's order.
const OPERATIONS: &[&str] = &[
    "ping",
    "find_or_create_user",
    "get_user",
    "update_user_profile",
    "bump_session_version",
    "insert_conversation",
    "list_conversations",
    "get_conversation",
    "rename_conversation",
    "delete_conversation",
    "claim_generation",
    "take_over_generation",
    "renew_generation",
    "release_generation",
    "insert_message",
    "list_messages",
    "get_message",
    "list_flagged_messages",
    "save_progress",
    "interrupt_abandoned_replies",
    "insert_send",
    "find_send",
    "request_cancel",
    "expired_leases",
    "increment_counter",
    "read_counter",
    "save_progress_many",
    "insert_memory",
    "list_memories",
    "update_memory",
    "delete_memory",
    "delete_memories",
    "set_user_ban",
    "set_user_quota",
    "find_user",
    "mark_learned",
    "save_summary",
    "schedule_memory_job",
    "claim_memory_job",
    "finish_memory_job",
    "retry_memory_job",
    "renew_generations",
    "update_user_safety",
    "acknowledge_notice",
    "set_minor_mode",
    "set_policy_agreement",
    "record_safety_event",
    "list_safety_events",
    "set_takeover",
    "flag_crisis",
    "list_crisis_conversations",
    "find_conversation",
];

pub struct CountingStore {
    inner: DynStore,
    calls: BTreeMap<&'static str, AtomicU64>,
    reads: AtomicU64,
    writes: AtomicU64,
    in_flight: AtomicUsize,
    rounds: AtomicU64,
    /// Added before every call (tests: an in-process store answers at once, so calls made
    /// together would never overlap and could not be told from calls made in turn).
    latency: Option<std::time::Duration>,
    /// Where each call's time is observed (`companion_store_operation_seconds`), once set.
    instruments: std::sync::OnceLock<Arc<crate::instruments::Instruments>>,
}

/// Store traffic so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreTraffic {
    pub reads: u64,
    pub writes: u64,
    pub rounds: u64,
    /// Calls per operation (only those made at least once).
    pub calls: BTreeMap<&'static str, u64>,
}

/// Leaves the in-flight count when the call ends or is dropped midway.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CountingStore {
    pub fn new(inner: DynStore) -> Self {
        CountingStore {
            inner,
            calls: OPERATIONS.iter().map(|name| (*name, AtomicU64::new(0))).collect(),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            rounds: AtomicU64::new(0),
            latency: None,
            instruments: std::sync::OnceLock::new(),
        }
    }

    /// Like `new`, and every call takes at least `latency`, as over a network.
    pub fn with_latency(inner: DynStore, latency: std::time::Duration) -> Self {
        CountingStore { latency: Some(latency), ..Self::new(inner) }
    }

    pub fn traffic(&self) -> StoreTraffic {
        StoreTraffic {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::SeqCst),
            calls: self
                .calls
                .iter()
                .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }

    async fn track<T>(&self, operation: &'static str, kind: Kind, call: impl Future<Output = T>) -> T {
        if let Some(count) = self.calls.get(operation) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        match kind {
            Kind::Read => self.reads.fetch_add(1, Ordering::Relaxed),
            Kind::Write => self.writes.fetch_add(1, Ordering::Relaxed),
        };
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.rounds.fetch_add(1, Ordering::SeqCst);
        }
        let _in_flight = InFlight(&self.in_flight);
        if let Some(latency) = self.latency {
            tokio::time::sleep(latency).await;
        }
        let started = std::time::Instant::now();
        let result = call.await;
        if let Some(instruments) = self.instruments.get() {
            instruments.store_operations.with_label_values(&[operation]).observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Observes every call's time in `instruments` from now on.
    pub fn observe_with(&self, instruments: Arc<crate::instruments::Instruments>) {
        let _ = self.instruments.set(instruments);
    }
}

#[async_trait]
impl Store for CountingStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.track("ping", Kind::Read, self.inner.ping()).await
    }

    async fn find_or_create_user(&self, openid: &OpenId) -> Result<User, StoreError> {
        self.track("find_or_create_user", Kind::Write, self.inner.find_or_create_user(openid)).await
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.track("get_user", Kind::Read, self.inner.get_user(id)).await
    }

    async fn update_user_profile(&self, id: UserId, patch: &ProfilePatch) -> Result<Option<User>, StoreError> {
        self.track("update_user_profile", Kind::Write, self.inner.update_user_profile(id, patch)).await
    }

    async fn set_user_ban(&self, id: UserId, ban: Option<&Ban>) -> Result<bool, StoreError> {
        self.track("set_user_ban", Kind::Write, self.inner.set_user_ban(id, ban)).await
    }

    async fn set_user_quota(&self, id: UserId, quota: Option<QuotaLimits>) -> Result<bool, StoreError> {
        self.track("set_user_quota", Kind::Write, self.inner.set_user_quota(id, quota)).await
    }

    async fn find_user(&self, openid: &OpenId) -> Result<Option<User>, StoreError> {
        self.track("find_user", Kind::Read, self.inner.find_user(openid)).await
    }

    async fn bump_session_version(&self, id: UserId) -> Result<Option<i64>, StoreError> {
        self.track("bump_session_version", Kind::Write, self.inner.bump_session_version(id)).await
    }

    async fn insert_conversation(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.track("insert_conversation", Kind::Write, self.inner.insert_conversation(conversation)).await
    }

    async fn list_conversations(
        &self,
        user: UserId,
        limit: usize,
        after: Option<&ConversationCursor>,
    ) -> Result<Vec<Conversation>, StoreError> {
        self.track("list_conversations", Kind::Read, self.inner.list_conversations(user, limit, after)).await
    }

    async fn get_conversation(&self, user: UserId, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.track("get_conversation", Kind::Read, self.inner.get_conversation(user, id)).await
    }

    async fn rename_conversation(
        &self,
        user: UserId,
        id: ConversationId,
        title: &ConversationTitle,
    ) -> Result<Option<Conversation>, StoreError> {
        self.track("rename_conversation", Kind::Write, self.inner.rename_conversation(user, id, title)).await
    }

    async fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<bool, StoreError> {
        self.track("delete_conversation", Kind::Write, self.inner.delete_conversation(user, id)).await
    }

    async fn claim_generation(
        &self,
        user: UserId,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<GenerationClaim, StoreError> {
        self.track("claim_generation", Kind::Write, self.inner.claim_generation(user, id, message, now, lease_until))
            .await
    }

    async fn take_over_generation(
        &self,
        id: ConversationId,
        holder: MessageId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.track(
            "take_over_generation",
            Kind::Write,
            self.inner.take_over_generation(id, holder, message, now, lease_until),
        )
        .await
    }

    async fn renew_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.track("renew_generation", Kind::Write, self.inner.renew_generation(id, message, lease_until)).await
    }

    async fn release_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.track("release_generation", Kind::Write, self.inner.release_generation(id, message, now)).await
    }

    async fn insert_message(&self, message: &Message) -> Result<(), StoreError> {
        self.track("insert_message", Kind::Write, self.inner.insert_message(message)).await
    }

    async fn list_messages(
        &self,
        conversation: ConversationId,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<Message>, StoreError> {
        self.track("list_messages", Kind::Read, self.inner.list_messages(conversation, limit, before)).await
    }

    async fn list_flagged_messages(&self, codes: &[&str], limit: usize) -> Result<Vec<Message>, StoreError> {
        self.track("list_flagged_messages", Kind::Read, self.inner.list_flagged_messages(codes, limit)).await
    }

    async fn get_message(&self, conversation: ConversationId, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.track("get_message", Kind::Read, self.inner.get_message(conversation, id)).await
    }

    async fn save_progress(
        &self,
        id: MessageId,
        progress: &MessageProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.track("save_progress", Kind::Write, self.inner.save_progress(id, progress, now)).await
    }

    async fn interrupt_abandoned_replies(
        &self,
        conversation: ConversationId,
        except: MessageId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.track(
            "interrupt_abandoned_replies",
            Kind::Write,
            self.inner.interrupt_abandoned_replies(conversation, except, now),
        )
        .await
    }

    async fn insert_send(&self, send: &SendRecord) -> Result<bool, StoreError> {
        self.track("insert_send", Kind::Write, self.inner.insert_send(send)).await
    }

    async fn find_send(&self, user: UserId, client_id: &ClientMessageId) -> Result<Option<SendRecord>, StoreError> {
        self.track("find_send", Kind::Read, self.inner.find_send(user, client_id)).await
    }

    async fn request_cancel(&self, conversation: ConversationId, message: MessageId) -> Result<bool, StoreError> {
        self.track("request_cancel", Kind::Write, self.inner.request_cancel(conversation, message)).await
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExpiredLease>, StoreError> {
        self.track("expired_leases", Kind::Read, self.inner.expired_leases(now, limit)).await
    }

    async fn increment_counter(&self, key: &str, by: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.track("increment_counter", Kind::Write, self.inner.increment_counter(key, by, expires_at)).await
    }

    async fn read_counter(&self, key: &str) -> Result<i64, StoreError> {
        self.track("read_counter", Kind::Read, self.inner.read_counter(key)).await
    }

    async fn save_progress_many(
        &self,
        saves: &[(MessageId, MessageProgress)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.track("save_progress_many", Kind::Write, self.inner.save_progress_many(saves, now)).await
    }

    async fn renew_generations(
        &self,
        leases: &[(ConversationId, MessageId)],
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.track("renew_generations", Kind::Write, self.inner.renew_generations(leases, lease_until)).await
    }

    async fn insert_memory(&self, fact: &MemoryFact) -> Result<(), StoreError> {
        self.track("insert_memory", Kind::Write, self.inner.insert_memory(fact)).await
    }

    async fn list_memories(&self, user: UserId, persona: &str) -> Result<Vec<MemoryFact>, StoreError> {
        self.track("list_memories", Kind::Read, self.inner.list_memories(user, persona)).await
    }

    async fn update_memory(
        &self,
        user: UserId,
        persona: &str,
        id: MemoryId,
        text: &MemoryText,
        now: DateTime<Utc>,
    ) -> Result<Option<MemoryFact>, StoreError> {
        self.track("update_memory", Kind::Write, self.inner.update_memory(user, persona, id, text, now)).await
    }

    async fn delete_memory(&self, user: UserId, persona: &str, id: MemoryId) -> Result<bool, StoreError> {
        self.track("delete_memory", Kind::Write, self.inner.delete_memory(user, persona, id)).await
    }

    async fn delete_memories(&self, user: UserId, persona: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        self.track("delete_memories", Kind::Write, self.inner.delete_memories(user, persona, at)).await
    }

    async fn mark_learned(&self, conversation: ConversationId, through: DateTime<Utc>) -> Result<(), StoreError> {
        self.track("mark_learned", Kind::Write, self.inner.mark_learned(conversation, through)).await
    }

    async fn save_summary(
        &self,
        conversation: ConversationId,
        summary: &ConversationSummary,
    ) -> Result<bool, StoreError> {
        self.track("save_summary", Kind::Write, self.inner.save_summary(conversation, summary)).await
    }

    async fn schedule_memory_job(
        &self,
        conversation: ConversationId,
        user: UserId,
        persona: &str,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.track("schedule_memory_job", Kind::Write, self.inner.schedule_memory_job(conversation, user, persona, due))
            .await
    }

    async fn claim_memory_job(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<MemoryJob>, StoreError> {
        self.track("claim_memory_job", Kind::Write, self.inner.claim_memory_job(now, lease_until)).await
    }

    async fn finish_memory_job(&self, job: &MemoryJob) -> Result<(), StoreError> {
        self.track("finish_memory_job", Kind::Write, self.inner.finish_memory_job(job)).await
    }

    async fn retry_memory_job(&self, job: &MemoryJob, due: DateTime<Utc>) -> Result<(), StoreError> {
        self.track("retry_memory_job", Kind::Write, self.inner.retry_memory_job(job, due)).await
    }
}

#[async_trait]
impl SafetyStore for CountingStore {
    async fn update_user_safety(&self, user: UserId, update: &UserSafetyUpdate) -> Result<(), StoreError> {
        self.track("update_user_safety", Kind::Write, self.inner.update_user_safety(user, update)).await
    }
    async fn acknowledge_notice(&self, user: UserId, kind: NoticeKind, version: &str) -> Result<bool, StoreError> {
        self.track("acknowledge_notice", Kind::Write, self.inner.acknowledge_notice(user, kind, version)).await
    }
    async fn set_minor_mode(&self, user: UserId, mode: Option<&MinorMode>) -> Result<bool, StoreError> {
        self.track("set_minor_mode", Kind::Write, self.inner.set_minor_mode(user, mode)).await
    }
    async fn set_policy_agreement(&self, user: UserId, agreement: &PolicyAgreement) -> Result<(), StoreError> {
        self.track("set_policy_agreement", Kind::Write, self.inner.set_policy_agreement(user, agreement)).await
    }
    async fn record_safety_event(&self, event: &SafetyEvent) -> Result<(), StoreError> {
        self.track("record_safety_event", Kind::Write, self.inner.record_safety_event(event)).await
    }
    async fn list_safety_events(&self, user: Option<UserId>, limit: usize) -> Result<Vec<SafetyEvent>, StoreError> {
        self.track("list_safety_events", Kind::Read, self.inner.list_safety_events(user, limit)).await
    }
    async fn set_takeover(
        &self,
        conversation: ConversationId,
        takeover: Option<&Takeover>,
    ) -> Result<bool, StoreError> {
        self.track("set_takeover", Kind::Write, self.inner.set_takeover(conversation, takeover)).await
    }
    async fn flag_crisis(&self, conversation: ConversationId, flag: &CrisisFlag) -> Result<(), StoreError> {
        self.track("flag_crisis", Kind::Write, self.inner.flag_crisis(conversation, flag)).await
    }
    async fn list_crisis_conversations(&self, limit: usize) -> Result<Vec<Conversation>, StoreError> {
        self.track("list_crisis_conversations", Kind::Read, self.inner.list_crisis_conversations(limit)).await
    }
    async fn find_conversation(&self, conversation: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.track("find_conversation", Kind::Read, self.inner.find_conversation(conversation)).await
    }
}

/// Users' rights: passed through, not counted (rare, not chat traffic).
#[async_trait]
impl RightsStore for CountingStore {
    async fn insert_report(&self, report: &Report) -> Result<(), StoreError> {
        self.inner.insert_report(report).await
    }
    async fn list_user_reports(&self, user: UserId, limit: usize) -> Result<Vec<Report>, StoreError> {
        self.inner.list_user_reports(user, limit).await
    }
    async fn list_reports(&self, status: Option<ReportStatus>, limit: usize) -> Result<Vec<Report>, StoreError> {
        self.inner.list_reports(status, limit).await
    }
    async fn decide_report(
        &self,
        id: &str,
        status: ReportStatus,
        decision: &ReportDecision,
    ) -> Result<bool, StoreError> {
        self.inner.decide_report(id, status, decision).await
    }
    async fn delete_report(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete_report(id).await
    }
    async fn schedule_deletion(&self, user: UserId, due: Option<DateTime<Utc>>) -> Result<bool, StoreError> {
        self.inner.schedule_deletion(user, due).await
    }
    async fn due_deletions(&self, at: DateTime<Utc>, limit: usize) -> Result<Vec<User>, StoreError> {
        self.inner.due_deletions(at, limit).await
    }
    async fn erase_user(&self, user: &User, record: &str) -> Result<(), StoreError> {
        self.inner.erase_user(user, record).await
    }
    async fn insert_export(&self, export: &DataExport) -> Result<(), StoreError> {
        self.inner.insert_export(export).await
    }
    async fn save_export_part(&self, export: &DataExport, index: u32, data: &str) -> Result<(), StoreError> {
        self.inner.save_export_part(export, index, data).await
    }
    async fn finish_export(&self, id: &str, status: ExportStatus, parts: u32) -> Result<(), StoreError> {
        self.inner.finish_export(id, status, parts).await
    }
    async fn get_export(&self, user: UserId, id: &str) -> Result<Option<DataExport>, StoreError> {
        self.inner.get_export(user, id).await
    }
    async fn read_export_part(&self, id: &str, index: u32) -> Result<Option<String>, StoreError> {
        self.inner.read_export_part(id, index).await
    }
}

/// Console traffic is not chat traffic: passed through, not counted.
#[async_trait]
impl ConsoleStore for CountingStore {
    async fn insert_operator(&self, operator: &Operator) -> Result<bool, StoreError> {
        self.inner.insert_operator(operator).await
    }
    async fn get_operator(&self, name: &OperatorName) -> Result<Option<Operator>, StoreError> {
        self.inner.get_operator(name).await
    }
    async fn save_operator(&self, operator: &Operator) -> Result<bool, StoreError> {
        self.inner.save_operator(operator).await
    }
    async fn list_operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.inner.list_operators().await
    }
    async fn change_operator_password(
        &self,
        name: &OperatorName,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        self.inner.change_operator_password(name, old_hash, new_hash).await
    }
    async fn insert_operator_session(&self, session: &OperatorSession) -> Result<(), StoreError> {
        self.inner.insert_operator_session(session).await
    }
    async fn get_operator_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OperatorSession>, StoreError> {
        self.inner.get_operator_session(token_hash, now).await
    }
    async fn delete_operator_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.inner.delete_operator_session(token_hash).await
    }
    async fn delete_operator_sessions(&self, name: &OperatorName) -> Result<u64, StoreError> {
        self.inner.delete_operator_sessions(name).await
    }
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.inner.insert_audit(entry).await
    }
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.list_audit(limit).await
    }
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.insert_api_key(key).await
    }
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.inner.find_api_key(key_hash).await
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list_api_keys().await
    }
    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.revoke_api_key(id, at).await
    }
    async fn bump_daily_stats(&self, day: &str, bumps: &[(String, i64)]) -> Result<(), StoreError> {
        self.inner.bump_daily_stats(day, bumps).await
    }
    async fn read_daily_stats(
        &self,
        days: &[String],
    ) -> Result<Vec<(String, std::collections::BTreeMap<String, i64>)>, StoreError> {
        self.inner.read_daily_stats(days).await
    }
    async fn load_personas(&self) -> Result<(i64, Vec<crate::chat::Persona>), StoreError> {
        self.inner.load_personas().await
    }
    async fn save_personas(&self, personas: &[crate::chat::Persona], revision: i64) -> Result<bool, StoreError> {
        self.inner.save_personas(personas, revision).await
    }
}
