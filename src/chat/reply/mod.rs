//! A reply and everything about it: the task that generates it (`generation`), the
//! replies running here (`registry`), the events transports render (`events`), the
//! watchers that produce them (`watcher`) and the one rule for dead replies
//! (`abandoned`). Transports get a [`ReplyHandle`] from `ChatService::send` or
//! `ChatService::open_reply` and only render what it gives them.
mod abandoned;
mod events;
mod generation;
mod progress;
mod registry;
mod sweeper;
mod watcher;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use events::{DoneEvent, ErrorEvent, ReplyEvent, StartEvent, TextEvent, UsageWire};
pub(super) use generation::{spawn as spawn_generation, Classify, GenerationJob, Remember, ReplySource};
pub use progress::ProgressSaver;
pub use registry::{Registry, CANCELLED_SAVE_WINDOW};
pub use sweeper::Sweeper;
pub use watcher::ReplyWatcher;

use crate::domain::{now, Message, ReplyEnd};
use crate::store::{DynStore, StoreError};

/// Everything a generation has produced so far.
#[derive(Debug, Clone, Default)]
pub struct LiveReply {
    pub content: String,
    pub reasoning: String,
    /// Which upstream answers, and the model it reports, once known.
    pub served: Option<crate::domain::Served>,
    pub end: Option<ReplyEnd>,
    /// The crisis classifier recognised the message: the text is the preset reply.
    pub crisis: bool,
}

/// What every reply handle needs to read replies, here or on other replicas.
pub struct Replies {
    pub(super) store: DynStore,
    pub(super) registry: Arc<Registry>,
    /// A reply not saved for this long, and not generated here, is abandoned.
    pub(super) stale_after: Duration,
    /// How often a follower reads a reply another replica generates.
    pub(super) follow_every: Duration,
    /// The label and metadata a reply's `start` carries.
    pub(super) labels: crate::safety::labels::ContentLabels,
}

/// One assistant reply, checked to belong to the caller and to be a reply.
pub struct ReplyHandle {
    replies: Arc<Replies>,
    reply: Message,
    /// Set for a fresh send: the stored user message, announced by a pre-queued `start`.
    user_message: Option<Message>,
    live: Option<watch::Receiver<LiveReply>>,
    /// Notices the user has not acknowledged, carried by this reply's events.
    notices: Vec<crate::safety::NoticeEvent>,
}

impl ReplyHandle {
    pub(super) fn fresh(
        replies: Arc<Replies>,
        user_message: Message,
        reply: Message,
        live: watch::Receiver<LiveReply>,
    ) -> Self {
        Self { replies, reply, user_message: Some(user_message), live: Some(live), notices: Vec::new() }
    }

    /// This reply carries the user's pending notices.
    pub(crate) fn with_notices(mut self, notices: Vec<crate::safety::NoticeEvent>) -> Self {
        self.notices = notices;
        self
    }

    /// The live reply, when it is generated here.
    pub(crate) fn live(&self) -> Option<watch::Receiver<LiveReply>> {
        self.live.clone()
    }

    pub fn notices(&self) -> &[crate::safety::NoticeEvent] {
        &self.notices
    }

    /// The original reply of a retried send: announced by `start` like a fresh one.
    pub(crate) fn resent(replies: Arc<Replies>, user_message: Message, reply: Message) -> Self {
        let live = replies.registry.subscribe(reply.id);
        Self { replies, reply, user_message: Some(user_message), live, notices: Vec::new() }
    }

    pub(super) fn existing(replies: Arc<Replies>, reply: Message) -> Self {
        let live = replies.registry.subscribe(reply.id);
        Self { replies, reply, user_message: None, live, notices: Vec::new() }
    }

    /// The user's message this reply answers, when the handle comes from a send.
    pub fn user_message(&self) -> Option<&Message> {
        self.user_message.as_ref()
    }

    pub fn reply_id(&self) -> crate::domain::MessageId {
        self.reply.id
    }

    /// The reply as it stands: the freshest text when generated here; an abandoned reply
    /// is settled (stored as interrupted) first.
    pub async fn snapshot(&self) -> Result<Message, StoreError> {
        // The live text is read before the store: if the reply ends in between, the store
        // then holds the final text, never less than a previous snapshot showed.
        let live_text = self.live.as_ref().map(|live| live.borrow().content.clone());
        let stored = self.replies.store.get_message(self.reply.conversation_id, self.reply.id).await?;
        let mut message = stored.unwrap_or_else(|| self.reply.clone());
        match live_text {
            Some(text) if !message.status.is_final() && text.len() > message.content.len() => message.content = text,
            Some(_) => {}
            None => {
                let generated_here = self.replies.registry.subscribe(message.id).is_some();
                if abandoned::is_abandoned(&message, generated_here, now(), self.replies.stale_after) {
                    message = abandoned::settle(&self.replies.store, message).await?;
                }
            }
        }
        Ok(message)
    }

    /// The reply's events: `start` first for a fresh send, then deltas, then exactly one
    /// `done` or `error`. Live when generated here, else following what is stored.
    pub fn events(&self) -> ReplyWatcher {
        let start = self.user_message.as_ref().map(|user| {
            ReplyEvent::Start(StartEvent {
                user_message_id: user.id,
                assistant_message_id: self.reply.id,
                label: self.replies.labels.label(self.reply.role),
                content_mark: self.replies.labels.mark(&self.reply),
            })
        });
        let source = match &self.live {
            Some(rx) => watcher::Source::Live { rx: rx.clone(), closed: false },
            None => watcher::Source::Stored {
                store: self.replies.store.clone(),
                conversation: self.reply.conversation_id,
                poll: self.replies.follow_every,
                stale_after: self.replies.stale_after,
                failures: 0,
                closing: self.replies.registry.closing_token(),
            },
        };
        let notices = self.notices.iter().cloned().map(ReplyEvent::Notice);
        ReplyWatcher::new(self.reply.id, source, start.into_iter().chain(notices).collect())
    }

    /// Stops the reply wherever it is generated: here at once, on another replica at its
    /// next save (within a second while text flows, a quarter lease otherwise). The text so
    /// far is kept (`cancelled`) and the conversation is freed. False when it had ended.
    pub async fn cancel(&self) -> Result<bool, StoreError> {
        let requested = self.replies.store.request_cancel(self.reply.conversation_id, self.reply.id).await?;
        let here = self.replies.registry.cancel(self.reply.id);
        Ok(requested || here)
    }

    /// Waits until `deadline` for the reply to end; returns whether it did, and the reply
    /// as it then stands.
    pub async fn wait_until(&mut self, deadline: tokio::time::Instant) -> Result<(bool, Message), StoreError> {
        if let Some(live) = &mut self.live {
            let _ = tokio::time::timeout_at(deadline, live.wait_for(|state| state.end.is_some())).await;
            let message = self.snapshot().await?;
            return Ok((message.status.is_final(), message));
        }
        // Generated elsewhere: follow what is stored.
        loop {
            let message = self.snapshot().await?;
            let next = tokio::time::Instant::now() + self.replies.follow_every;
            if message.status.is_final() || next >= deadline {
                return Ok((message.status.is_final(), message));
            }
            tokio::time::sleep_until(next).await;
        }
    }
}
