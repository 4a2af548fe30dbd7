//! Sending a message: the start-up steps of a reply. Nothing reaches the model before
//! the user's message is stored; a second send while a reply runs is refused.
use std::sync::Arc;

use super::context::{build_prompt, memory_block, upstream_user_hash};
use super::reply::{spawn_generation, GenerationJob, Remember, ReplyHandle, ReplySource};
use super::safety_steps::Turn;
use super::service::{ChatError, ChatService};
use super::Slot;
use crate::domain::{
    now, ClientMessageId, Conversation, ConversationId, Message, MessageContent, MessageId, MessageStatus, QuotaLimits,
    Role, SendRecord, User, UserId,
};
use crate::llm::ChatRequest;
use crate::protection::{Decision, OutputModeration, Refusal, Reservation};
use crate::store::GenerationClaim;

/// Longer than a send's start-up steps ever take: a claim this old without its reply
/// placeholder belongs to a send that died.
const START_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The ids a send stores its messages under, and its record when it has a client id.
struct SendIds {
    user_message: MessageId,
    reply: MessageId,
    record: Option<SendRecord>,
    /// Finishing an earlier attempt, which may have stored the user's message already.
    resumed: bool,
}

impl SendIds {
    fn fresh(user: UserId, conversation: ConversationId, client_id: Option<ClientMessageId>) -> Self {
        let (user_message, reply) = (MessageId::new(), MessageId::new());
        let record = client_id.map(|client_id| SendRecord {
            user_id: user,
            client_id,
            conversation_id: conversation,
            user_message_id: user_message,
            reply_id: reply,
        });
        SendIds { user_message, reply, record, resumed: false }
    }
}

enum Retry {
    Answered(Box<ReplyHandle>),
    Resume,
}

enum Started {
    Fresh(Box<ReplyHandle>),
    /// A retry under a client id answered with the original reply.
    Resent(Box<ReplyHandle>),
}

impl ChatService {
    /// Stores the user's message, then starts the reply.
    ///
    /// The steps run as a tracked task on the main runtime, not in the request: a client
    /// that disconnects midway must not leave a claimed conversation or a reply
    /// placeholder behind, and a shutdown waits for them.
    ///
    /// With a `client_id`, a retry of the same send returns the original reply (still
    /// running, or as stored), and a send that died before its reply was stored is finished
    /// with the same ids: a message is never stored twice.
    pub async fn send(
        self: Arc<Self>,
        user: UserId,
        conversation: ConversationId,
        text: String,
        client_id: Option<ClientMessageId>,
    ) -> Result<ReplyHandle, ChatError> {
        let registry = self.registry.clone();
        if registry.is_closing() {
            return Err(ChatError::ShuttingDown);
        }
        // Taken before anything is read or stored; the generation holds it to its end.
        let Some(slot) = self.capacity.try_take() else {
            tracing::warn!(running = self.capacity.in_use(), "at the cap on running generations; send refused");
            return Err(ChatError::CompanionBusy);
        };
        let span = tracing::info_span!("chat.send", conversation_id = %conversation);
        let steps = async move { self.start_reply(user, conversation, &text, client_id, slot).await };
        registry.spawn(tracing::Instrument::instrument(steps, span)).await.map_err(ChatError::internal)?
    }

    /// The critical path before the upstream call is four store round trips: (1) the
    /// conversation, the user, an earlier send under the client id and the quota
    /// reservation, concurrently; (2) the claim and the send record; (3) the user's
    /// message and the history; (4) the reply placeholder. Settling replies abandoned in
    /// this conversation waits until the reply is under way.
    async fn start_reply(
        &self,
        user_id: UserId,
        conversation_id: ConversationId,
        raw_text: &str,
        client_id: Option<ClientMessageId>,
        slot: Slot,
    ) -> Result<ReplyHandle, ChatError> {
        let content = MessageContent::parse(raw_text, self.config.message_max_chars)
            .map_err(|e| ChatError::InvalidContent(e.to_string()))?;
        let (loaded, counted) = tokio::join!(
            self.load(user_id, conversation_id, client_id.as_ref()),
            self.quota.count(&self.store, user_id)
        );
        let always_answered = loaded
            .as_ref()
            .is_ok_and(|(conversation, ..)| self.turn_for(conversation, content.as_str()).always_answered());
        let limits = match always_answered {
            true => QuotaLimits { messages: 0, tokens: 0 },
            false => self.quota.limits_for(loaded.as_ref().ok().map(|(_, user, _)| user)),
        };
        let reservation = match self.quota.judge(&self.store, counted, limits).await {
            Ok(Ok(reservation)) => reservation,
            // A client's mistake (no such conversation) is named before a refusal, and a
            // retry of an accepted send still gets its reply: it costs no quota.
            Ok(Err(refusal)) => {
                let (conversation, _, earlier) = loaded?;
                if let Some(earlier) = earlier {
                    if let Retry::Answered(reply) = self.retried(&earlier, &conversation).await? {
                        return Ok(*reply);
                    }
                }
                return Err(match refusal {
                    Refusal::QuotaExceeded { retry_after } => {
                        self.tallies.add(crate::stats::Tally::QuotaExceeded);
                        ChatError::QuotaExceeded { retry_after }
                    }
                    Refusal::TooManyActive => ChatError::TooManyReplies,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let started = async {
            let (conversation, user, earlier) = loaded?;
            let ids = match earlier {
                Some(earlier) => match self.retried(&earlier, &conversation).await? {
                    Retry::Answered(reply) => return Ok(Started::Resent(reply)),
                    Retry::Resume => SendIds {
                        user_message: earlier.user_message_id,
                        reply: earlier.reply_id,
                        record: None,
                        resumed: true,
                    },
                },
                None => SendIds::fresh(user_id, conversation_id, client_id),
            };
            let reply = self.start_reserved(&conversation, &user, &content, reservation.clone(), ids, slot).await?;
            Ok(Started::Fresh(Box::new(reply)))
        };
        match started.await {
            Ok(Started::Fresh(reply)) => Ok(*reply),
            Ok(Started::Resent(reply)) => {
                // A retry returns the original reply; it costs no quota.
                self.quota.release(&self.store, &reservation, false).await;
                Ok(*reply)
            }
            Err(e) => {
                // A message refused by the content check was stored, so it stays counted.
                let keep_message = matches!(e, ChatError::ContentRejected);
                self.quota.release(&self.store, &reservation, keep_message).await;
                Err(e)
            }
        }
    }

    /// The conversation, its owner and an earlier send under `client_id`, read together.
    async fn load(
        &self,
        user_id: UserId,
        conversation_id: ConversationId,
        client_id: Option<&ClientMessageId>,
    ) -> Result<(Conversation, User, Option<SendRecord>), ChatError> {
        let earlier = async {
            match client_id {
                Some(client_id) => self.store.find_send(user_id, client_id).await,
                None => Ok(None),
            }
        };
        let (conversation, user, earlier) = tokio::try_join!(
            self.store.get_conversation(user_id, conversation_id),
            self.store.get_user(user_id),
            earlier
        )?;
        let conversation = conversation.ok_or(ChatError::ConversationNotFound)?;
        let user = user.ok_or(ChatError::ConversationNotFound)?;
        // Also on a socket opened before the ban: nothing new is generated for them.
        if user.ban.is_some() {
            return Err(ChatError::UserBanned);
        }
        Ok((conversation, user, earlier))
    }

    /// The steps after the quota is reserved; the generation then owns the reservation.
    async fn start_reserved(
        &self,
        conversation: &Conversation,
        user: &User,
        content: &MessageContent,
        reservation: Reservation,
        ids: SendIds,
        slot: Slot,
    ) -> Result<ReplyHandle, ChatError> {
        let turn = self.turn_for(conversation, content.as_str());
        if !turn.always_answered() {
            self.admit(user, conversation).await?;
        }
        let (notices, first_use) = self.notices_for(user);
        if let Some(disclosure) = &first_use {
            // Saved before it is shown, so its acknowledgement finds it.
            self.safety.issue_pending(user.id, disclosure).await;
        }
        let mut user_message = Message::new(conversation, Role::User, content.as_str(), MessageStatus::Complete);
        user_message.id = ids.user_message;
        if turn == Turn::Human {
            drop(slot);
            let handle = self.await_operator(conversation, &user_message, &reservation).await?;
            self.after_send(&handle, user, conversation, &turn);
            return Ok(handle.with_notices(notices));
        }
        let preset = self.preset_text(&turn);
        // Preset text is the operator's: only what the model answers is checked.
        let moderation = match preset {
            None => self.screen_input(conversation, user, content).await?,
            Some(_) => None,
        };
        let mut reply = Message::new(conversation, Role::Assistant, "", MessageStatus::Streaming);
        reply.id = ids.reply;

        self.claim_and_record(user.id, conversation.id, reply.id, &ids).await?;
        let prepared = self.store_and_prepare(conversation, user, &user_message, &reply, &ids, preset.is_none()).await;
        let source = match (prepared, preset) {
            (Ok(_), Some(text)) => Ok(ReplySource::Preset(text)),
            (Ok(Some(request)), None) => {
                let classify = self.classifier_for(&turn, user, conversation, content.as_str());
                Ok(ReplySource::Model { request, classify })
            }
            (Ok(None), None) => Err(ChatError::internal(anyhow::anyhow!("a model turn without a prompt"))),
            (Err(e), _) => Err(e),
        };
        let source = match source {
            Ok(source) => source,
            Err(e) => {
                self.release(conversation.id, reply.id).await;
                return Err(e);
            }
        };
        let remember = match &source {
            ReplySource::Model { .. } => self.remember(user, conversation),
            ReplySource::Preset(_) => None,
        };
        let live = spawn_generation(GenerationJob {
            store: self.store.clone(),
            llm: self.llm.clone(),
            registry: self.registry.clone(),
            conversation_id: conversation.id,
            user_id: user.id,
            instruments: self.instruments.clone(),
            assistant_id: reply.id,
            source,
            progress: self.progress.clone(),
            lease: self.config.lease,
            quota: Some((self.quota, reservation)),
            moderation,
            slot: Some(slot),
            remember,
        });
        let handle = ReplyHandle::fresh(self.replies.clone(), user_message, reply, live).with_notices(notices);
        self.after_send(&handle, user, conversation, &turn);
        Ok(handle)
    }

    /// A conversation taken over by a human: the user's message is stored and waits, with
    /// the human reply the client watches (one awaited reply at a time, shared by the
    /// messages sent meanwhile). No model is called; the message costs no tokens.
    async fn await_operator(
        &self,
        conversation: &Conversation,
        user_message: &Message,
        reservation: &Reservation,
    ) -> Result<ReplyHandle, ChatError> {
        let (stored, awaited) =
            tokio::join!(self.store.insert_message(user_message), self.awaited_replies(conversation.id));
        // Talking to a human costs no quota.
        self.quota.release(&self.store, reservation, false).await;
        stored?;
        let reply = match awaited?.pop() {
            Some(reply) => reply,
            None => {
                let reply = Message::new(conversation, Role::Operator, "", MessageStatus::Streaming);
                self.store.insert_message(&reply).await?;
                // Handed back meanwhile: nobody would answer it.
                let current = self.store.find_conversation(conversation.id).await?;
                if current.is_some_and(|c| c.takeover.is_none()) {
                    self.close_awaited(conversation).await?;
                }
                reply
            }
        };
        Ok(ReplyHandle::resent(self.replies.clone(), user_message.clone(), reply))
    }

    /// Whether (and how) this conversation is learned from after a completed reply: its
    /// summary is kept up whatever the persona; its facts only when the persona remembers.
    fn remember(&self, user: &User, conversation: &Conversation) -> Option<Remember> {
        let memory = &self.config.memory;
        let persona = self.persona_for(conversation, self.preview.includes(user));
        memory.extraction.then(|| Remember {
            user: user.id,
            persona: persona.id.clone(),
            debounce: memory.debounce,
            off_peak_only: memory.off_peak_only,
        })
    }

    /// Claims the conversation and records the send under its client id, together. A
    /// record whose claim failed is harmless: a retry under that id finishes the send.
    async fn claim_and_record(
        &self,
        user: UserId,
        conversation: ConversationId,
        reply: MessageId,
        ids: &SendIds,
    ) -> Result<(), ChatError> {
        let record = async {
            match &ids.record {
                Some(record) => self.store.insert_send(record).await,
                None => Ok(true),
            }
        };
        let (claimed, recorded) = tokio::join!(self.claim(user, conversation, reply), record);
        claimed?;
        match recorded {
            Ok(true) => Ok(()),
            Ok(false) => {
                // The same send arrived twice at once: the one that recorded it goes on
                // (and a retry under this id resumes it if it lost the claim).
                self.release(conversation, reply).await;
                let recorded = match &ids.record {
                    Some(record) => self.store.find_send(record.user_id, &record.client_id).await?,
                    None => None,
                };
                let reply = recorded.map_or(reply, |r| r.reply_id);
                Err(ChatError::ReplyInProgress { reply, retry_after: 1 })
            }
            Err(e) => {
                self.release(conversation, reply).await;
                Err(e.into())
            }
        }
    }

    /// What a retried send (same client id) gets: the original reply if it was stored, or
    /// the go-ahead to finish the original send with its own ids.
    async fn retried(&self, earlier: &SendRecord, conversation: &Conversation) -> Result<Retry, ChatError> {
        if earlier.conversation_id != conversation.id {
            return Err(ChatError::InvalidContent(
                "this client_message_id was already used in another conversation".into(),
            ));
        }
        let Some(reply) = self.store.get_message(conversation.id, earlier.reply_id).await? else {
            tracing::info!(reply_id = %earlier.reply_id, "finishing a send that died before its reply was stored");
            return Ok(Retry::Resume);
        };
        let user_message = self.store.get_message(conversation.id, earlier.user_message_id).await?;
        let user_message = user_message.ok_or(ChatError::MessageNotFound)?;
        tracing::info!(reply_id = %reply.id, "a retried send gets its original reply");
        Ok(Retry::Answered(Box::new(ReplyHandle::resent(self.replies.clone(), user_message, reply))))
    }

    /// Checks the user's text before anything reaches the model. A rejected message is
    /// stored (as `failed`, `content_rejected`, never sent upstream) and counted.
    async fn screen_input(
        &self,
        conversation: &Conversation,
        user: &User,
        content: &MessageContent,
    ) -> Result<Option<OutputModeration>, ChatError> {
        let Some(moderator) = &self.moderator else { return Ok(None) };
        match moderator.screen_input(&user.openid, content.as_str()).await {
            Err(()) => Err(ChatError::ModerationUnavailable),
            Ok(Decision::Allow) => {
                Ok(Some(OutputModeration { moderator: moderator.clone(), openid: user.openid.clone() }))
            }
            Ok(Decision::Block { label, .. }) => {
                tracing::info!(?label, "a message was rejected by the content check");
                let mut rejected = Message::new(conversation, Role::User, content.as_str(), MessageStatus::Failed);
                rejected.error = Some(crate::domain::MessageError::content_rejected(label));
                self.store.insert_message(&rejected).await?;
                Err(ChatError::ContentRejected)
            }
        }
    }

    /// Claims the conversation for `reply`. A claim whose send died in its start-up steps
    /// (no placeholder stored long after the claim, not running here) is taken over, so a
    /// storage hiccup mid-send does not lock the conversation for a whole lease.
    async fn claim(&self, user: UserId, conversation: ConversationId, reply: MessageId) -> Result<(), ChatError> {
        let at = now();
        let until = at + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        let (holder, held_until) = match self.store.claim_generation(user, conversation, reply, at, until).await? {
            GenerationClaim::Claimed => return Ok(()),
            GenerationClaim::NoSuchConversation => return Err(ChatError::ConversationNotFound),
            GenerationClaim::Busy { holder, until } => (holder, until),
        };
        if self.start_up_died(conversation, holder, held_until).await?
            && self.store.take_over_generation(conversation, holder, reply, at, until).await?
        {
            tracing::warn!(%holder, "took over a claim whose send died before storing its reply");
            return Ok(());
        }
        let retry_after = (held_until - at).num_seconds().clamp(1, 60) as u64;
        Err(ChatError::ReplyInProgress { reply: holder, retry_after })
    }

    async fn start_up_died(
        &self,
        conversation: ConversationId,
        holder: MessageId,
        held_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, ChatError> {
        let claimed_at = held_until - chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        let long_ago = now() - claimed_at > chrono::Duration::from_std(START_UP_GRACE).unwrap_or_default();
        if !long_ago || self.registry.subscribe(holder).is_some() {
            return Ok(false);
        }
        Ok(self.store.get_message(conversation, holder).await?.is_none())
    }

    async fn release(&self, conversation: ConversationId, reply: MessageId) {
        if let Err(e) = self.store.release_generation(conversation, reply, now()).await {
            tracing::error!(error = ?e, "could not release the conversation");
        }
    }

    /// Stores the user's message (once: a resumed send may have stored it already) while
    /// reading the history, builds the upstream request, and stores the reply placeholder
    /// last: nothing after it can fail before the generation starts.
    async fn store_and_prepare(
        &self,
        conversation: &Conversation,
        user: &User,
        user_message: &Message,
        reply: &Message,
        ids: &SendIds,
        needs_prompt: bool,
    ) -> Result<Option<ChatRequest>, ChatError> {
        let store_message = async {
            let stored_before =
                ids.resumed && self.store.get_message(conversation.id, user_message.id).await?.is_some();
            if !stored_before {
                self.store.insert_message(user_message).await?;
            }
            Ok::<_, crate::store::StoreError>(())
        };
        if !needs_prompt {
            store_message.await?;
            self.store.insert_message(reply).await?;
            return Ok(None);
        }
        let limit = self.config.context_max_messages;
        let tester = self.preview.includes(user);
        let persona = self.persona_for(conversation, tester);
        let memories = async {
            match persona.memory {
                true => self.store.list_memories(user.id, &persona.id).await,
                false => Ok(Vec::new()),
            }
        };
        let (stored, history, memories) =
            tokio::join!(store_message, self.store.list_messages(conversation.id, limit, None), memories);
        stored?;
        let history = with_latest(history?, user_message, limit);
        // Memories are a bonus: without them the reply still goes out.
        let memories = memories.unwrap_or_else(|e| {
            tracing::warn!(error = ?e, "could not read memories; replying without them");
            Vec::new()
        });
        let memory = memory_block(&memories);
        let model = self
            .preview
            .model_for(tester)
            .or(persona.model.as_deref())
            .unwrap_or(&self.config.default_model)
            .to_string();
        let request = ChatRequest {
            model,
            messages: build_prompt(
                &persona.system_prompt,
                memory.as_deref(),
                conversation.summary.as_ref(),
                &history,
                self.config.context_token_budget,
            ),
            thinking: persona.thinking,
            reasoning_effort: persona.reasoning_effort,
            temperature: persona.temperature,
            max_tokens: self.config.max_tokens,
            user_hash: upstream_user_hash(conversation.user_id),
            json_output: false,
        };
        self.store.insert_message(reply).await?;
        Ok(Some(request))
    }
}

/// The history read alongside the insert of `latest` may or may not contain it: it is
/// made to end with it exactly once, at most `limit` long.
fn with_latest(mut history: Vec<Message>, latest: &Message, limit: usize) -> Vec<Message> {
    history.retain(|m| m.id != latest.id);
    history.push(latest.clone());
    let excess = history.len().saturating_sub(limit);
    history.drain(..excess);
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_ends_with_the_new_message_exactly_once_within_the_limit() {
        let title = crate::domain::ConversationTitle::parse("t").unwrap();
        let conversation = Conversation::new(UserId::new(), "p", title, crate::domain::now());
        let said = |text: &str| Message::new(&conversation, Role::User, text, MessageStatus::Complete);
        let (a, b, latest) = (said("a"), said("b"), said("new"));
        let cases: Vec<(&str, Vec<Message>, usize, Vec<&str>)> = vec![
            ("read before the insert", vec![a.clone(), b.clone()], 10, vec!["a", "b", "new"]),
            ("read after the insert", vec![a.clone(), b.clone(), latest.clone()], 10, vec!["a", "b", "new"]),
            ("over the limit, the oldest goes", vec![a.clone(), b.clone()], 2, vec!["b", "new"]),
            ("a limit of one keeps only the new one", vec![a.clone(), latest.clone()], 1, vec!["new"]),
            ("no history", vec![], 5, vec!["new"]),
        ];
        for (label, history, limit, expected) in cases {
            let texts: Vec<String> = with_latest(history, &latest, limit).into_iter().map(|m| m.content).collect();
            assert_eq!(texts, expected, "{label}");
        }
    }
}
