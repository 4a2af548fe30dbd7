//! Turns a reply's progress (live in this process, or as another replica stores it) into
//! events. A generation publishes its whole state through a `watch` channel; a watcher
//! keeps only how much it has already sent, so a slow client never holds back the
//! generation or other clients: it receives the accumulated text in fewer pieces.
use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;

use super::abandoned::is_abandoned;
use super::events::{ReplyEvent, TextEvent};
use super::LiveReply;
use crate::domain::{now, ConversationId, MessageId, ReplyEnd, ReplyFailure};
use crate::store::DynStore;

/// Reads of stored progress that may fail in a row before followers give up.
const MAX_READ_FAILURES: u32 = 5;

pub(super) enum Source {
    Live {
        rx: watch::Receiver<LiveReply>,
        closed: bool,
    },
    /// Another replica (or an earlier process) owns the reply: follow what it stores.
    /// `closing` ends the follower with `server_shutdown` when this replica drains: the
    /// reply goes on elsewhere, and the client reattaches to another replica.
    Stored {
        store: DynStore,
        conversation: ConversationId,
        poll: Duration,
        stale_after: Duration,
        failures: u32,
        closing: tokio_util::sync::CancellationToken,
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
    /// `first`: what is sent before the reply's own events (`start`, then any notices).
    pub(super) fn new(assistant_id: MessageId, source: Source, first: Vec<ReplyEvent>) -> Self {
        Self {
            source,
            assistant_id,
            sent_content: 0,
            sent_reasoning: 0,
            queue: first.into(),
            primed: false,
            finished: false,
        }
    }

    /// The next event; `None` after the terminal `done`/`error`. Cancel-safe: an event is
    /// queued before anything awaits, and nothing is lost when a call is dropped.
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
                    let (reasoning, content, end) = {
                        let state = rx.borrow_and_update();
                        (
                            unsent(&state.reasoning, self.sent_reasoning).to_string(),
                            unsent(&state.content, self.sent_content).to_string(),
                            state.end.clone(),
                        )
                    };
                    let lost = *closed && end.is_none();
                    self.push_progress(&reasoning, &content, end);
                    if lost {
                        self.push_terminal(ReplyEvent::failed(&ReplyFailure::GenerationLost));
                    }
                }
                Source::Stored { store, conversation, poll, stale_after, failures, closing } => {
                    if closing.is_cancelled() {
                        self.push_terminal(ReplyEvent::failed(&ReplyFailure::ServerShutdown));
                        continue;
                    }
                    if !first {
                        tokio::select! {
                            _ = tokio::time::sleep(*poll) => {}
                            _ = closing.cancelled() => continue,
                        }
                    }
                    let store = store.clone();
                    let read = store.get_message(*conversation, self.assistant_id).await;
                    if read.is_ok() {
                        *failures = 0;
                    } else {
                        *failures += 1;
                    }
                    let (failures, stale_after) = (*failures, *stale_after);
                    match read {
                        Ok(Some(message)) => {
                            let abandoned = is_abandoned(&message, false, now(), stale_after);
                            let reasoning = message.reasoning_content.as_deref().unwrap_or_default();
                            let reasoning = unsent(reasoning, self.sent_reasoning).to_string();
                            let content = unsent(&message.content, self.sent_content).to_string();
                            self.push_progress(&reasoning, &content, ReplyEnd::of_stored(&message));
                            if abandoned {
                                // Settled by the one rule, so every view then agrees.
                                let end = match super::abandoned::settle(&store, message).await {
                                    Ok(settled) => ReplyEnd::of_stored(&settled),
                                    Err(_) => None,
                                };
                                let end = end.unwrap_or_else(|| ReplyEnd::failed(&ReplyFailure::GenerationInterrupted));
                                self.push_terminal(ReplyEvent::terminal(self.assistant_id, end));
                            }
                        }
                        Ok(None) => self.push_terminal(ReplyEvent::failed(&ReplyFailure::MessageGone)),
                        Err(e) => {
                            tracing::warn!(error = ?e, "reading reply progress failed");
                            if failures >= MAX_READ_FAILURES {
                                self.push_terminal(ReplyEvent::failed(&ReplyFailure::StorageUnavailable));
                            }
                        }
                    }
                }
            }
        }
    }

    fn push_progress(&mut self, reasoning: &str, content: &str, end: Option<ReplyEnd>) {
        if !reasoning.is_empty() {
            self.queue.push_back(ReplyEvent::Reasoning(TextEvent { content: reasoning.to_string() }));
            self.sent_reasoning += reasoning.len();
        }
        if !content.is_empty() {
            self.queue.push_back(ReplyEvent::Delta(TextEvent { content: content.to_string() }));
            self.sent_content += content.len();
        }
        if let Some(end) = end {
            self.push_terminal(ReplyEvent::terminal(self.assistant_id, end));
        }
    }

    fn push_terminal(&mut self, event: ReplyEvent) {
        if !self.finished {
            self.queue.push_back(event);
            self.finished = true;
        }
    }
}

/// The part of `text` after the first `sent` bytes (text only ever grows).
fn unsent(text: &str, sent: usize) -> &str {
    text.get(sent..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FinishReason;

    fn live(rx: watch::Receiver<LiveReply>, first: Option<ReplyEvent>) -> ReplyWatcher {
        ReplyWatcher::new(MessageId::new(), Source::Live { rx, closed: false }, first.into_iter().collect())
    }

    fn delta(text: &str) -> ReplyEvent {
        ReplyEvent::Delta(TextEvent { content: text.into() })
    }

    #[tokio::test]
    async fn a_watcher_sends_only_what_is_new_and_then_exactly_one_end() {
        let (tx, rx) = watch::channel(LiveReply::default());
        let mut watcher = live(rx, None);
        tx.send_modify(|s| s.content.push_str("你好"));
        assert_eq!(watcher.next_event().await, Some(delta("你好")));
        // Several changes before the watcher looks again arrive as one piece.
        tx.send_modify(|s| s.content.push_str("，世"));
        tx.send_modify(|s| s.content.push('界'));
        assert_eq!(watcher.next_event().await, Some(delta("，世界")));
        tx.send_modify(|s| s.end = Some(ReplyEnd::Done { finish_reason: FinishReason::Stop, usage: None }));
        assert!(matches!(watcher.next_event().await, Some(ReplyEvent::Done(_))));
        drop(tx);
        assert_eq!(watcher.next_event().await, None);
    }

    #[tokio::test]
    async fn a_generation_that_vanishes_without_an_end_is_reported_lost() {
        let (tx, rx) = watch::channel(LiveReply::default());
        let mut watcher = live(rx, None);
        tx.send_modify(|s| s.reasoning.push_str("think"));
        drop(tx);
        let events = [watcher.next_event().await, watcher.next_event().await, watcher.next_event().await];
        assert_eq!(events[0], Some(ReplyEvent::Reasoning(TextEvent { content: "think".into() })));
        assert_eq!(events[1], Some(ReplyEvent::failed(&ReplyFailure::GenerationLost)));
        assert_eq!(events[2], None);
    }

    #[tokio::test]
    async fn a_pre_queued_start_comes_first_and_a_dropped_wait_loses_nothing() {
        let (tx, rx) = watch::channel(LiveReply::default());
        let start = ReplyEvent::failed(&ReplyFailure::EmptyReply);
        let mut watcher = live(rx, Some(start.clone()));
        assert_eq!(watcher.next_event().await, Some(start));
        // Nothing new yet: the first look queues nothing; a timed-out wait is dropped.
        let waited = tokio::time::timeout(Duration::from_millis(20), watcher.next_event()).await;
        assert!(waited.is_err());
        tx.send_modify(|s| s.content.push('a'));
        assert_eq!(watcher.next_event().await, Some(delta("a")));
    }
}
