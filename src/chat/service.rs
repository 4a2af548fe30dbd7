//! The chat core's one entry point for every transport: send a message, open a reply,
//! read a message, and the persona rules. Nothing here knows about HTTP.
use std::sync::Arc;
use std::time::Duration;

use super::catalog::PersonaCatalog;
use super::learner::{LearnerSettings, LearnerStats, MemoryLearner};
use super::personas::{Persona, Personas};
use super::preview::PreviewAccess;
use super::reply::{ProgressSaver, Registry, Replies, ReplyHandle};
use crate::configuration::ChatSettings;
use crate::domain::{Conversation, ConversationId, ConversationTitle, Message, MessageId, MessageStatus, Role, UserId};
use crate::llm::LlmClient;
use crate::protection::{DailyQuota, Moderator, QuotaUsage};
use crate::store::{DynStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidContent(String),
    #[error("no such conversation")]
    ConversationNotFound,
    #[error("no such message")]
    MessageNotFound,
    #[error("no such persona")]
    PersonaNotFound,
    #[error("no such memory")]
    MemoryNotFound,
    #[error("only assistant replies can be streamed")]
    NotAReply,
    #[error("a reply is still being generated in this conversation")]
    ReplyInProgress { reply: MessageId, retry_after: u64 },
    #[error("too many replies are running for this user")]
    TooManyReplies,
    #[error("today's quota is used up")]
    QuotaExceeded { retry_after: u64 },
    #[error("the message did not pass the content-safety check")]
    ContentRejected,
    #[error("the content-safety check is unavailable")]
    ModerationUnavailable,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("this instance runs as many replies as it may")]
    CompanionBusy,
    #[error("the user is banned")]
    UserBanned,
    #[error("the account no longer exists")]
    AccountGone,
    #[error("a notice is waiting for the user's acknowledgement")]
    NoticeRequired,
    #[error("this companion needs a guardian's consent in minor mode")]
    GuardianConsentRequired,
    #[error("this companion is not offered in minor mode")]
    PersonaNotForMinors,
    #[error("today's time in minor mode is used up")]
    MinorTimeLimit { retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting the reply failed")]
    Internal(#[source] anyhow::Error),
}

impl ChatError {
    /// An internal failure, logged here (with its cause chain) where it happens.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        tracing::error!(error.cause_chain = ?e, "chat: internal error");
        ChatError::Internal(e)
    }
}

/// What `ChatService` is built from.
pub struct ChatParts {
    pub store: DynStore,
    pub llm: Arc<LlmClient>,
    pub personas: Personas,
    pub registry: Arc<Registry>,
    pub config: ChatSettings,
    pub preview: PreviewAccess,
    pub quota: DailyQuota,
    /// msgSecCheck on input and output; `None` when content checking is off.
    pub moderator: Option<Arc<Moderator>>,
    pub instruments: Arc<crate::instruments::Instruments>,
}

pub struct ChatService {
    pub(super) store: DynStore,
    pub(super) llm: Arc<LlmClient>,
    pub(super) personas: Arc<PersonaCatalog>,
    pub(super) registry: Arc<Registry>,
    pub(super) replies: Arc<Replies>,
    pub(super) config: ChatSettings,
    pub(super) preview: PreviewAccess,
    pub(super) quota: DailyQuota,
    pub(super) moderator: Option<Arc<Moderator>>,
    pub(super) capacity: super::Capacity,
    pub(super) progress: Arc<ProgressSaver>,
    learner_stats: Arc<LearnerStats>,
    pub(super) tallies: Arc<crate::stats::LocalTallies>,
    pub(super) instruments: Arc<crate::instruments::Instruments>,
    pub(super) safety: Arc<crate::safety::CompanionSafety>,
}

/// How often a follower reads the progress another replica stores.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

impl ChatService {
    pub fn new(parts: ChatParts) -> Self {
        let replies = Arc::new(Replies {
            store: parts.store.clone(),
            registry: parts.registry.clone(),
            stale_after: parts.config.lease * 2,
            follow_every: FOLLOW_EVERY,
            labels: parts.config.safety.labels.clone(),
        });
        let progress = ProgressSaver::start(parts.store.clone(), parts.config.save_interval, parts.config.lease);
        let safety = Arc::new(crate::safety::CompanionSafety {
            store: parts.store.clone(),
            settings: parts.config.safety.clone(),
        });
        ChatService {
            safety,
            store: parts.store,
            llm: parts.llm,
            personas: Arc::new(PersonaCatalog::new(parts.personas)),
            registry: parts.registry,
            replies,
            capacity: super::Capacity::new(parts.config.max_concurrent_generations),
            progress,
            config: parts.config,
            preview: parts.preview,
            quota: parts.quota,
            moderator: parts.moderator,
            learner_stats: Arc::default(),
            tallies: Arc::default(),
            instruments: parts.instruments,
        }
    }

    /// The background learner of memories and summaries, sharing this service's parts.
    pub fn learner(&self, settings: LearnerSettings) -> MemoryLearner {
        MemoryLearner {
            store: self.store.clone(),
            llm: self.llm.clone(),
            personas: self.personas.clone(),
            moderator: self.moderator.clone(),
            stats: self.learner_stats.clone(),
            settings,
        }
    }

    /// The user's notices waiting for acknowledgement, as clients see them.
    pub async fn pending_notices(&self, user: UserId) -> Result<Vec<crate::safety::NoticeEvent>, ChatError> {
        let found = self.store.get_user(user).await?;
        Ok(found.map(|u| self.safety.pending(&u)).unwrap_or_default())
    }

    /// The tracker of this instance's background work.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// How AI-generated content is labelled.
    pub fn labels(&self) -> &crate::safety::labels::ContentLabels {
        &self.safety.settings.labels
    }

    /// Notices, exit, crisis and minor-mode steps every transport shares.
    pub fn safety(&self) -> &Arc<crate::safety::CompanionSafety> {
        &self.safety
    }

    /// This instance's Prometheus instruments.
    pub fn instruments(&self) -> &Arc<crate::instruments::Instruments> {
        &self.instruments
    }

    /// Refusals counted on this instance, for the day's figures.
    pub fn tallies(&self) -> &Arc<crate::stats::LocalTallies> {
        &self.tallies
    }

    /// What the learner on this instance did and cost.
    pub fn learner_stats(&self) -> &LearnerStats {
        &self.learner_stats
    }

    pub fn config(&self) -> &ChatSettings {
        &self.config
    }

    /// Replies generated on this instance now.
    pub fn running_generations(&self) -> usize {
        self.registry.running()
    }

    /// Each upstream by name, and whether its circuit is open (skipped).
    pub fn upstream_circuits(&self) -> Vec<(String, bool)> {
        match &*self.llm {
            LlmClient::Upstreams(pool) => {
                pool.upstreams().iter().map(|u| (u.name.clone(), u.breaker.is_open())).collect()
            }
            LlmClient::Offline(_) => Vec::new(),
        }
    }

    /// The one persona visibility rule: enabled ones, and `preview` ones only for testers.
    fn visible(persona: &Persona, tester: bool) -> bool {
        persona.enabled && (tester || !persona.preview)
    }

    /// The conversation's persona, if this user may use it; otherwise the default one
    /// (a persona removed or disabled, or a preview persona after its tester left).
    pub(super) fn persona_for(&self, conversation: &Conversation, tester: bool) -> Persona {
        let personas = self.personas.current();
        match personas.get(&conversation.persona_id) {
            Some(persona) if Self::visible(persona, tester) => persona.clone(),
            _ => {
                tracing::warn!(persona_id = %conversation.persona_id, "persona unavailable; using the default");
                personas.default_persona().clone()
            }
        }
    }

    /// The personas this user may see and choose.
    /// In minor mode, companions the operator marked not for minors are hidden.
    pub async fn personas_for(&self, user: UserId) -> Result<Vec<Persona>, StoreError> {
        let found = self.store.get_user(user).await?;
        Ok(self.offered(found.as_ref()))
    }

    /// The companions `user` may choose, each with whether it waits on a guardian's
    /// consent (minor mode), for the personas list.
    pub async fn persona_offers(&self, user: UserId) -> Result<Vec<(Persona, bool)>, StoreError> {
        let found = self.store.get_user(user).await?;
        let consent = |p: &Persona| found.as_ref().is_some_and(|u| Self::needs_guardian_consent(u, p));
        Ok(self
            .offered(found.as_ref())
            .into_iter()
            .map(|p| {
                let needs = consent(&p);
                (p, needs)
            })
            .collect())
    }

    fn offered(&self, found: Option<&crate::domain::User>) -> Vec<Persona> {
        let tester = found.is_some_and(|u| self.preview.includes(u));
        let minor = found.is_some_and(|u| u.minor_mode.is_some());
        let offered = |p: &&Persona| Self::visible(p, tester) && !(minor && p.not_for_minors);
        self.personas.current().all().iter().filter(offered).cloned().collect()
    }

    /// The persona a new conversation gets: the requested one if this user may choose
    /// it (`None` when not), or the default.
    pub async fn persona_to_start(&self, user: UserId, requested: Option<&str>) -> Result<Option<Persona>, StoreError> {
        match requested {
            None => Ok(Some(self.personas.current().default_persona().clone())),
            Some(id) => Ok(self.personas_for(user).await?.into_iter().find(|p| p.id == id)),
        }
    }

    /// The companions in effect, and where they are kept and changed.
    pub fn persona_catalog(&self) -> &Arc<PersonaCatalog> {
        &self.personas
    }

    /// Today's quota use of `user`.
    pub async fn usage(&self, user: UserId) -> Result<QuotaUsage, StoreError> {
        let found = self.store.get_user(user).await?;
        self.quota.usage(&self.store, user, self.quota.limits_for(found.as_ref())).await
    }

    /// A message of one of `user`'s conversations, as it stands now.
    pub async fn message(
        &self,
        user: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Message, ChatError> {
        let message = self.stored_message(user, conversation, id).await?;
        if message.role != Role::Assistant {
            return Ok(message);
        }
        Ok(ReplyHandle::existing(self.replies.clone(), message).snapshot().await?)
    }

    /// Up to `limit` messages of one of `user`'s conversations older than `before`,
    /// chronological, each as it stands now (replies by the same rules as `message`), and
    /// whether older ones exist.
    pub async fn history(
        &self,
        user: UserId,
        conversation: ConversationId,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<(Vec<Message>, bool), ChatError> {
        self.store.get_conversation(user, conversation).await?.ok_or(ChatError::ConversationNotFound)?;
        // One extra tells whether another page exists.
        let mut items = self.store.list_messages(conversation, limit + 1, before).await?;
        let more = items.len() > limit;
        if more {
            items.remove(0);
        }
        for item in items.iter_mut().filter(|m| !m.status.is_final()) {
            *item = ReplyHandle::existing(self.replies.clone(), item.clone()).snapshot().await?;
        }
        Ok((items, more))
    }

    /// Opens a conversation with `persona` for `user`, greeted by the persona.
    pub async fn start_conversation(
        &self,
        user: UserId,
        persona: &Persona,
        title: ConversationTitle,
    ) -> Result<Conversation, ChatError> {
        // An account erased moments ago (another replica may still trust its token for a
        // few seconds) gets nothing new stored under its id.
        if self.store.get_user(user).await?.is_none() {
            return Err(ChatError::AccountGone);
        }
        let at = crate::domain::now();
        let conversation = Conversation::new(user, &persona.id, title, at);
        self.store.insert_conversation(&conversation).await?;
        crate::stats::record(&self.store, crate::stats::Tally::ConversationStarted, at).await;
        if !persona.greeting.trim().is_empty() {
            self.store.insert_message(&greeting_message(&conversation, persona)).await?;
        }
        Ok(conversation)
    }

    /// Stops a reply of one of `user`'s conversations (see `ReplyHandle::cancel`); the
    /// handle then shows how it ended.
    pub async fn cancel_reply(
        &self,
        user: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<ReplyHandle, ChatError> {
        let reply = self.open_reply(user, conversation, id).await?;
        reply.cancel().await?;
        Ok(reply)
    }

    /// An assistant reply of one of `user`'s conversations, to watch or wait for.
    pub async fn open_reply(
        &self,
        user: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<ReplyHandle, ChatError> {
        let message = self.stored_message(user, conversation, id).await?;
        if message.role == Role::User {
            return Err(ChatError::NotAReply);
        }
        Ok(ReplyHandle::existing(self.replies.clone(), message))
    }

    async fn stored_message(
        &self,
        user: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Message, ChatError> {
        self.store.get_conversation(user, conversation).await?.ok_or(ChatError::ConversationNotFound)?;
        self.store.get_message(conversation, id).await?.ok_or(ChatError::MessageNotFound)
    }
}

/// The greeting that opens a new conversation.
pub fn greeting_message(conversation: &Conversation, persona: &Persona) -> Message {
    let mut message = Message::new(conversation, Role::Assistant, &persona.greeting, MessageStatus::Complete);
    message.finish_reason = Some(crate::domain::FinishReason::Stop);
    message
}
