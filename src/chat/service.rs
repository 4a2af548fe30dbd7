//! Starting replies and watching them: the steps behind every chat transport.
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use tokio::sync::watch;

use super::context::{build_messages, upstream_user_hash};
use super::generation::{self, GenerationJob};
use super::live::{GenerationHub, LiveReply, ReplyWatcher};
use super::personas::{Persona, Personas};
use super::preview::PreviewAccess;
use crate::configuration::Settings;
use crate::domain::{
    now, Conversation, ConversationId, Message, MessageContent, MessageError, MessageId, MessageProgress,
    MessageStatus, Role, UserId,
};
use crate::errors::ApiError;
use crate::llm::{ChatRequest, LlmClient};
use crate::protection::{DailyQuota, Decision, Moderator, OutputModeration};
use crate::store::{DynStore, GenerationClaim, StoreError};

#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub default_model: String,
    pub message_max_chars: usize,
    pub context_token_budget: usize,
    pub context_max_messages: usize,
    pub wait_timeout: Duration,
    pub keepalive: Duration,
    pub save_interval: Duration,
    pub lease: Duration,
    pub max_tokens: Option<u32>,
    /// How long a WebSocket may stay open without authenticating.
    pub ws_auth_timeout: Duration,
}

impl ChatConfig {
    pub fn from_settings(s: &Settings) -> Self {
        ChatConfig {
            default_model: s.deepseek_model.clone(),
            message_max_chars: s.message_max_chars,
            context_token_budget: s.context_token_budget,
            context_max_messages: s.context_max_messages,
            wait_timeout: Duration::from_millis(s.chat_wait_timeout_ms),
            keepalive: Duration::from_secs(s.sse_keepalive_secs.max(1)),
            save_interval: Duration::from_millis(s.progress_save_interval_ms.max(50)),
            lease: Duration::from_secs(s.generation_lease_secs.max(5)),
            max_tokens: s.deepseek_max_tokens,
            ws_auth_timeout: Duration::from_millis(s.ws_auth_timeout_ms),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidContent(String),
    #[error("no such conversation")]
    ConversationNotFound,
    #[error("a reply is still being generated in this conversation")]
    ReplyInProgress,
    #[error("today's quota is used up")]
    QuotaExceeded { retry_after: u64 },
    #[error("the message did not pass the content-safety check")]
    ContentRejected,
    #[error("the content-safety check is unavailable")]
    ModerationUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting the reply failed")]
    Internal(#[source] anyhow::Error),
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::InvalidContent(message) => ApiError::bad_request("invalid_content", message),
            ChatError::ConversationNotFound => ApiError::not_found("no such conversation"),
            ChatError::ReplyInProgress => ApiError::new(
                StatusCode::CONFLICT,
                "reply_in_progress",
                "a reply is still being generated in this conversation; wait for it or reattach",
            ),
            ChatError::QuotaExceeded { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                "today's chat quota is used up; it resets at midnight (China time)",
            )
            .with_retry_after(retry_after),
            ChatError::ContentRejected => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "content_rejected",
                "the message did not pass the content-safety check; please rephrase it",
            ),
            ChatError::ModerationUnavailable => ApiError::unavailable(
                "content_check_unavailable",
                "messages cannot be checked right now; please retry shortly",
                5,
            ),
            ChatError::Store(e) => e.into(),
            ChatError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// A reply that has started: both messages are stored, the generation runs.
pub struct StartedReply {
    pub user_message: Message,
    pub assistant_message: Message,
    pub live: watch::Receiver<LiveReply>,
}

pub struct ChatService {
    pub store: DynStore,
    pub llm: Arc<LlmClient>,
    pub personas: Arc<Personas>,
    pub hub: Arc<GenerationHub>,
    pub config: ChatConfig,
    pub preview: PreviewAccess,
    pub quota: DailyQuota,
    /// msgSecCheck on input and output; `None` when content checking is off.
    pub moderator: Option<Arc<Moderator>>,
}

impl ChatService {
    /// The conversation's persona, if this user may use it; otherwise the default one
    /// (a persona removed from the file, or a preview persona after its tester left).
    pub fn persona_for(&self, conversation: &Conversation, tester: bool) -> &Persona {
        match self.personas.get(&conversation.persona_id) {
            Some(persona) if tester || !persona.preview => persona,
            _ => {
                tracing::warn!(persona_id = %conversation.persona_id, "persona unavailable; using the default");
                self.personas.default_persona()
            }
        }
    }

    /// The personas this user may see and choose.
    pub fn personas_for(&self, tester: bool) -> Vec<&Persona> {
        self.personas.all().iter().filter(|p| tester || !p.preview).collect()
    }

    /// Stores the user's message, then starts the reply. Nothing reaches the model
    /// before the message is stored; a second send while a reply runs is refused.
    ///
    /// The steps run on the main runtime, not in the request: a client that disconnects
    /// midway must not leave a claimed conversation or a reply placeholder behind.
    pub async fn start_reply(
        self: Arc<Self>,
        user: UserId,
        conversation_id: ConversationId,
        raw_content: String,
    ) -> Result<StartedReply, ChatError> {
        let hub = self.hub.clone();
        let span = tracing::info_span!("chat.start_reply", conversation_id = %conversation_id);
        let steps = async move { self.start_reply_steps(user, conversation_id, &raw_content).await };
        hub.spawn(tracing::Instrument::instrument(steps, span)).await.map_err(|e| ChatError::Internal(e.into()))?
    }

    async fn start_reply_steps(
        &self,
        user: UserId,
        conversation_id: ConversationId,
        raw_content: &str,
    ) -> Result<StartedReply, ChatError> {
        let content = MessageContent::parse(raw_content, self.config.message_max_chars)
            .map_err(|e| ChatError::InvalidContent(e.to_string()))?;
        let conversation =
            self.store.get_conversation(user, conversation_id).await?.ok_or(ChatError::ConversationNotFound)?;
        let usage = self.quota.usage(&self.store, user).await?;
        if usage.exhausted() {
            let retry_after = (usage.resets_at - now()).num_seconds().max(1) as u64;
            return Err(ChatError::QuotaExceeded { retry_after });
        }
        let moderation = self.screen_input(&conversation, &content).await?;
        let user_message = new_message(&conversation, Role::User, content.as_str(), MessageStatus::Complete);
        let assistant_message = new_message(&conversation, Role::Assistant, "", MessageStatus::Streaming);

        self.claim(user, conversation_id, assistant_message.id).await?;
        if let Err(e) = self.store.insert_message(&user_message).await {
            self.release(conversation_id, assistant_message.id).await;
            return Err(e.into());
        }
        if let Err(e) = self.quota.record_message(&self.store, user).await {
            tracing::warn!(error = ?e, "could not count the message against the daily quota");
        }
        let request = match self.prepare(&conversation, &assistant_message).await {
            Ok(request) => request,
            Err(e) => {
                self.release(conversation_id, assistant_message.id).await;
                return Err(e);
            }
        };
        let live = generation::spawn(GenerationJob {
            store: self.store.clone(),
            llm: self.llm.clone(),
            hub: self.hub.clone(),
            conversation_id,
            assistant_id: assistant_message.id,
            request,
            save_interval: self.config.save_interval,
            lease: self.config.lease,
            quota: Some((self.quota, user)),
            moderation,
        });
        Ok(StartedReply { user_message, assistant_message, live })
    }

    /// Checks the user's text before anything reaches the model. A rejected message is
    /// stored (as `failed`, `content_rejected`, never sent upstream) and counted.
    async fn screen_input(
        &self,
        conversation: &Conversation,
        content: &MessageContent,
    ) -> Result<Option<OutputModeration>, ChatError> {
        let Some(moderator) = &self.moderator else { return Ok(None) };
        let user = self.store.get_user(conversation.user_id).await?.ok_or(ChatError::ConversationNotFound)?;
        match moderator.screen_input(&user.openid, content.as_str()).await {
            Err(()) => Err(ChatError::ModerationUnavailable),
            Ok(Decision::Allow) => Ok(Some(OutputModeration { moderator: moderator.clone(), openid: user.openid })),
            Ok(Decision::Block { label, .. }) => {
                tracing::info!(?label, "a message was rejected by the content check");
                let mut rejected = new_message(conversation, Role::User, content.as_str(), MessageStatus::Failed);
                rejected.error = Some(MessageError {
                    code: "content_rejected".into(),
                    message: "the message did not pass the content-safety check".into(),
                });
                self.store.insert_message(&rejected).await?;
                if let Err(e) = self.quota.record_message(&self.store, conversation.user_id).await {
                    tracing::warn!(error = ?e, "could not count the message against the daily quota");
                }
                Err(ChatError::ContentRejected)
            }
        }
    }

    async fn claim(&self, user: UserId, conversation: ConversationId, reply: MessageId) -> Result<(), ChatError> {
        let at = now();
        let until = at + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        match self.store.claim_generation(user, conversation, reply, at, until).await? {
            GenerationClaim::Claimed => Ok(()),
            GenerationClaim::Busy => Err(ChatError::ReplyInProgress),
            GenerationClaim::NoSuchConversation => Err(ChatError::ConversationNotFound),
        }
    }

    async fn release(&self, conversation: ConversationId, reply: MessageId) {
        if let Err(e) = self.store.release_generation(conversation, reply, now()).await {
            tracing::error!(error = ?e, "could not release the conversation");
        }
    }

    /// Stores the reply placeholder and builds the upstream request from history.
    async fn prepare(&self, conversation: &Conversation, reply: &Message) -> Result<ChatRequest, ChatError> {
        let marked = self.store.interrupt_abandoned_replies(conversation.id, reply.id, now()).await?;
        if marked > 0 {
            tracing::warn!(marked, "replies abandoned by a stopped replica were marked interrupted");
        }
        let history = self.store.list_messages(conversation.id, self.config.context_max_messages, None).await?;
        let tester = self.preview.is_tester(&self.store, conversation.user_id).await?;
        let persona = self.persona_for(conversation, tester);
        let model = self
            .preview
            .model_for(tester)
            .or(persona.model.as_deref())
            .unwrap_or(&self.config.default_model)
            .to_string();
        let request = ChatRequest {
            model,
            messages: build_messages(&persona.system_prompt, &history, self.config.context_token_budget),
            thinking: persona.thinking,
            reasoning_effort: persona.reasoning_effort.clone(),
            temperature: persona.temperature,
            max_tokens: self.config.max_tokens,
            user_hash: upstream_user_hash(conversation.user_id),
        };
        // The placeholder goes in last: nothing after it can fail before the generation starts.
        self.store.insert_message(reply).await?;
        Ok(request)
    }

    /// Waits until the configured bound after `received` (the request's arrival, so the
    /// answer stays under callContainer's 15 s cut) for the reply to end; returns the
    /// reply as it then stands (final, or still `streaming`).
    pub async fn wait_for_reply(
        &self,
        started: &mut StartedReply,
        received: tokio::time::Instant,
    ) -> Result<(bool, Message), ChatError> {
        let finished = matches!(
            tokio::time::timeout_at(
                received + self.config.wait_timeout,
                started.live.wait_for(|state| state.outcome.is_some()),
            )
            .await,
            Ok(Ok(_))
        );
        let id = started.assistant_message.id;
        let conversation = started.assistant_message.conversation_id;
        let current = self.store.get_message(conversation, id).await?;
        let mut message = current.unwrap_or_else(|| started.assistant_message.clone());
        if !finished {
            // Show the freshest text, not the last periodic save.
            message.content = started.live.borrow().content.clone();
        }
        Ok((finished, message))
    }

    /// A reply still `streaming` that no process has saved for twice the lease belongs to
    /// a generation that died (replica crash): it is stored and returned as
    /// `incomplete`, so pollers stop waiting for it.
    pub async fn settle_if_abandoned(&self, message: &mut Message) -> Result<(), ChatError> {
        let stale_after = chrono::Duration::from_std(self.config.lease * 2).unwrap_or_default();
        let abandoned = message.status == MessageStatus::Streaming
            && self.hub.subscribe(message.id).is_none()
            && now() - message.updated_at > stale_after;
        if abandoned {
            tracing::warn!(message_id = %message.id, "settling a reply abandoned by its generation");
            let progress = MessageProgress {
                content: message.content.clone(),
                reasoning_content: message.reasoning_content.clone(),
                status: MessageStatus::Incomplete,
                usage: message.usage.clone(),
                finish_reason: message.finish_reason.clone(),
                error: Some(crate::store::interrupted_error()),
            };
            let at = now();
            self.store.save_progress(message.id, &progress, at).await?;
            message.apply(&progress, at);
        }
        Ok(())
    }

    /// A watcher for a reply: live when this process generates it, otherwise following
    /// what the generating replica stores.
    pub fn watch(&self, message: &Message) -> ReplyWatcher {
        match self.hub.subscribe(message.id) {
            Some(rx) => ReplyWatcher::live(message.id, rx),
            None => ReplyWatcher::stored(
                message.id,
                self.store.clone(),
                message.conversation_id,
                Duration::from_millis(500),
                self.config.lease * 2,
            ),
        }
    }
}

fn new_message(conversation: &Conversation, role: Role, content: &str, status: MessageStatus) -> Message {
    let at = now();
    Message {
        id: MessageId::new(),
        conversation_id: conversation.id,
        user_id: conversation.user_id,
        role,
        content: content.to_string(),
        status,
        created_at: at,
        reasoning_content: None,
        usage: None,
        finish_reason: None,
        error: None,
        updated_at: at,
    }
}

/// The greeting that opens a new conversation.
pub fn greeting_message(conversation: &Conversation, persona: &Persona) -> Message {
    let mut message = new_message(conversation, Role::Assistant, &persona.greeting, MessageStatus::Complete);
    message.finish_reason = Some("stop".into());
    message
}
