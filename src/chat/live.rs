//! Replies being generated in this process, and watchers that turn a reply's progress
//! (live, or as stored in MongoDB) into client events.
//!
//! A generation publishes its whole state through a `watch` channel; each watcher keeps
//! only how much it has already sent. A slow client therefore never holds back the
//! generation or other clients: it simply receives the accumulated text in fewer pieces.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{ConversationId, Message, MessageId, MessageStatus, Usage};
use crate::store::DynStore;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done { finish_reason: String, usage: Option<Usage> },
    Failed { code: String, message: String },
}

/// Everything a generation has produced so far.
#[derive(Debug, Clone, Default)]
pub struct LiveReply {
    pub content: String,
    pub reasoning: String,
    pub outcome: Option<Outcome>,
}

/// The events every transport carries (SSE events, WebSocket frames).
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    Start { user_message_id: MessageId, assistant_message_id: MessageId },
    Delta { content: String },
    Reasoning { content: String },
    Done { assistant_message_id: MessageId, finish_reason: String, usage: Option<Usage> },
    Error { code: String, message: String },
}

impl ReplyEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ReplyEvent::Start { .. } => "start",
            ReplyEvent::Delta { .. } => "delta",
            ReplyEvent::Reasoning { .. } => "reasoning",
            ReplyEvent::Done { .. } => "done",
            ReplyEvent::Error { .. } => "error",
        }
    }

    pub fn payload(&self) -> Value {
        match self {
            ReplyEvent::Start { user_message_id, assistant_message_id } => json!({
                "user_message_id": user_message_id, "assistant_message_id": assistant_message_id,
            }),
            ReplyEvent::Delta { content } | ReplyEvent::Reasoning { content } => json!({"content": content}),
            ReplyEvent::Done { assistant_message_id, finish_reason, usage } => json!({
                "assistant_message_id": assistant_message_id, "finish_reason": finish_reason, "usage": usage,
            }),
            ReplyEvent::Error { code, message } => json!({"code": code, "message": message}),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, ReplyEvent::Done { .. } | ReplyEvent::Error { .. })
    }
}

/// Generations running in this process.
pub struct GenerationHub {
    live: Mutex<HashMap<MessageId, watch::Receiver<LiveReply>>>,
    shutdown: CancellationToken,
    /// The application's main runtime. actix runs each worker on a runtime of its own
    /// that is dropped when the worker stops; replies must outlive workers, so they are
    /// spawned here.
    runtime: tokio::runtime::Handle,
}

impl GenerationHub {
    /// Must be called on the runtime that outlives the server (the one running `main`).
    pub fn new() -> Self {
        Self { live: Mutex::default(), shutdown: CancellationToken::new(), runtime: tokio::runtime::Handle::current() }
    }

    /// Runs `task` on the main runtime, independent of any request or worker.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, watch::Receiver<LiveReply>>> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(&self, id: MessageId) -> watch::Sender<LiveReply> {
        let (tx, rx) = watch::channel(LiveReply::default());
        self.map().insert(id, rx);
        tx
    }

    pub fn subscribe(&self, id: MessageId) -> Option<watch::Receiver<LiveReply>> {
        self.map().get(&id).cloned()
    }

    pub fn finish(&self, id: MessageId) {
        self.map().remove(&id);
    }

    pub fn active(&self) -> usize {
        self.map().len()
    }

    /// Cancelled when the grace period after SIGTERM runs out.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits up to `grace` for running generations to finish; then tells the rest to
    /// stop (they store what they have as `incomplete`) and waits for them to do so.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.active() > 0 {
            tracing::warn!(active = self.active(), "grace period over: storing unfinished replies as incomplete");
            self.shutdown.cancel();
            let hard_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.active() > 0 && tokio::time::Instant::now() < hard_deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Where a watcher reads progress from.
enum Source {
    Live {
        rx: watch::Receiver<LiveReply>,
        closed: bool,
    },
    /// Another replica (or an earlier process) owns the reply: follow what it stores.
    Stored {
        store: DynStore,
        conversation: ConversationId,
        poll: Duration,
        stale_after: Duration,
        failures: u32,
    },
}

pub struct ReplyWatcher {
    source: Source,
    assistant_id: MessageId,
    sent_content: usize,
    sent_reasoning: usize,
    queue: VecDeque<ReplyEvent>,
    primed: bool,
    finished: bool,
}

impl ReplyWatcher {
    pub fn live(assistant_id: MessageId, rx: watch::Receiver<LiveReply>) -> Self {
        Self::with_source(assistant_id, Source::Live { rx, closed: false })
    }

    pub fn stored(
        assistant_id: MessageId,
        store: DynStore,
        conversation: ConversationId,
        poll: Duration,
        stale_after: Duration,
    ) -> Self {
        Self::with_source(assistant_id, Source::Stored { store, conversation, poll, stale_after, failures: 0 })
    }

    fn with_source(assistant_id: MessageId, source: Source) -> Self {
        Self {
            source,
            assistant_id,
            sent_content: 0,
            sent_reasoning: 0,
            queue: VecDeque::new(),
            primed: false,
            finished: false,
        }
    }

    /// The next event; `None` after the terminal `done`/`error`. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<ReplyEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            let first = !self.primed;
            self.primed = true;
            match &mut self.source {
                Source::Live { rx, closed } => {
                    if !first && !*closed && rx.changed().await.is_err() {
                        *closed = true;
                    }
                    // Copy only what this watcher has not sent yet.
                    let (reasoning, content, outcome) = {
                        let state = rx.borrow_and_update();
                        (
                            unsent(&state.reasoning, self.sent_reasoning).to_string(),
                            unsent(&state.content, self.sent_content).to_string(),
                            state.outcome.clone(),
                        )
                    };
                    let lost = *closed && outcome.is_none();
                    self.push_new(&reasoning, &content, outcome);
                    if lost {
                        self.push_terminal(ReplyEvent::Error {
                            code: "generation_lost".into(),
                            message: "the reply stopped unexpectedly; reload the message".into(),
                        });
                    }
                }
                Source::Stored { store, conversation, poll, stale_after, failures } => {
                    if !first {
                        tokio::time::sleep(*poll).await;
                    }
                    match store.get_message(*conversation, self.assistant_id).await {
                        Ok(Some(message)) => {
                            *failures = 0;
                            let stale = message.status == MessageStatus::Streaming
                                && crate::domain::now() - message.updated_at
                                    > chrono::Duration::from_std(*stale_after).unwrap_or_default();
                            let outcome = outcome_of(&message);
                            let reasoning = message.reasoning_content.as_deref().unwrap_or_default();
                            let new_reasoning = unsent(reasoning, self.sent_reasoning).to_string();
                            let new_content = unsent(&message.content, self.sent_content).to_string();
                            self.push_new(&new_reasoning, &new_content, outcome);
                            if stale && !self.finished {
                                self.push_terminal(ReplyEvent::Error {
                                    code: "generation_interrupted".into(),
                                    message: "the reply was interrupted; the part received is kept".into(),
                                });
                            }
                        }
                        Ok(None) => self.push_terminal(ReplyEvent::Error {
                            code: "not_found".into(),
                            message: "the message no longer exists".into(),
                        }),
                        Err(e) => {
                            *failures += 1;
                            tracing::warn!(error = ?e, "reading reply progress failed");
                            if *failures >= 5 {
                                self.push_terminal(ReplyEvent::Error {
                                    code: "storage_unavailable".into(),
                                    message: "storage is temporarily unavailable; please retry".into(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    fn push_new(&mut self, reasoning: &str, content: &str, outcome: Option<Outcome>) {
        if !reasoning.is_empty() {
            self.queue.push_back(ReplyEvent::Reasoning { content: reasoning.to_string() });
            self.sent_reasoning += reasoning.len();
        }
        if !content.is_empty() {
            self.queue.push_back(ReplyEvent::Delta { content: content.to_string() });
            self.sent_content += content.len();
        }
        match outcome {
            Some(Outcome::Done { finish_reason, usage }) => {
                self.push_terminal(ReplyEvent::Done { assistant_message_id: self.assistant_id, finish_reason, usage })
            }
            Some(Outcome::Failed { code, message }) => self.push_terminal(ReplyEvent::Error { code, message }),
            None => {}
        }
    }

    fn push_terminal(&mut self, event: ReplyEvent) {
        self.queue.push_back(event);
        self.finished = true;
    }
}

/// The part of `text` after the first `sent` bytes (text only ever grows).
fn unsent(text: &str, sent: usize) -> &str {
    text.get(sent..).unwrap_or_default()
}

/// The terminal outcome a stored message represents, if it is final.
pub fn outcome_of(message: &Message) -> Option<Outcome> {
    if !message.status.is_final() {
        return None;
    }
    Some(match &message.error {
        Some(error) => Outcome::Failed { code: error.code.clone(), message: error.message.clone() },
        None => Outcome::Done {
            finish_reason: message.finish_reason.clone().unwrap_or_else(|| "stop".into()),
            usage: message.usage.clone(),
        },
    })
}
