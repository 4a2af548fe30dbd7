//! Progress of every reply streaming on this instance, saved together: the replies are
//! dealt into `SLICES` slices, and every `interval / SLICES` one slice is saved in one
//! bulk write (the replies whose text changed, and those due a sign of life), with one
//! more for its leases due a renewal. So each reply is saved once per interval, store
//! writes stay at most `2 × SLICES` per interval however many streams are open (10,000
//! streams saved one by one each second would be 10,000 writes a second, more than a
//! small CloudBase MongoDB takes), and no single flush is big enough to stall the relay.
//!
//! A save the store refuses means the reply's owner asked to cancel it (perhaps on
//! another replica) or it was settled elsewhere: its generation is told to stop.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::LiveReply;
use crate::domain::{now, ConversationId, MessageId, MessageProgress, MessageStatus};
use crate::store::DynStore;

/// How many slices the replies are dealt into (one flush each per interval).
const SLICES: u64 = 8;

pub struct ProgressSaver {
    store: DynStore,
    interval: Duration,
    lease: Duration,
    replies: Mutex<HashMap<MessageId, Tracked>>,
    /// The slice the next tracked reply joins.
    next_slice: std::sync::atomic::AtomicU64,
}

struct Tracked {
    slice: u64,
    conversation: ConversationId,
    live: watch::Receiver<LiveReply>,
    /// Lengths of text and reasoning last saved.
    saved: (usize, usize),
    last_renewal: Instant,
    /// The last renewal failed: try again at the next interval.
    renew_now: bool,
    /// Stops the generation when the store refuses its progress.
    stop: CancellationToken,
}

/// One interval's work, taken under the lock and done without it.
#[derive(Default)]
struct Batch {
    saves: Vec<(MessageId, MessageProgress)>,
    renewals: Vec<(ConversationId, MessageId)>,
}

impl ProgressSaver {
    /// Starts the saver; it runs for as long as someone holds it.
    pub fn start(store: DynStore, interval: Duration, lease: Duration) -> Arc<ProgressSaver> {
        let saver = Arc::new(ProgressSaver {
            store,
            interval,
            lease,
            replies: Mutex::new(HashMap::new()),
            next_slice: Default::default(),
        });
        // Outlives any one reply and ends with the service (it holds only a weak
        // reference); a drain waits for the replies, whose final saves are their own.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(run(Arc::downgrade(&saver), interval));
        saver
    }

    /// Saves `reply`'s progress from now on, until `untrack`.
    pub fn track(
        &self,
        reply: MessageId,
        conversation: ConversationId,
        live: watch::Receiver<LiveReply>,
        stop: CancellationToken,
    ) {
        let slice = self.next_slice.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLICES;
        let tracked =
            Tracked { slice, conversation, live, saved: (0, 0), last_renewal: Instant::now(), renew_now: false, stop };
        self.lock().insert(reply, tracked);
    }

    /// Stops saving `reply` (its generation saves the final state itself).
    pub fn untrack(&self, reply: MessageId) {
        self.lock().remove(&reply);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, Tracked>> {
        self.replies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is due now: changed replies, and those whose lease wants renewing (they are
    /// saved too, so `updated_at` shows followers elsewhere that the reply is alive).
    fn due(&self, slice: u64) -> Batch {
        let renew_every = self.lease / 4;
        let mut batch = Batch::default();
        for (id, tracked) in self.lock().iter_mut().filter(|(_, t)| t.slice == slice) {
            let renewal_due = tracked.renew_now || tracked.last_renewal.elapsed() >= renew_every;
            let state = tracked.live.borrow();
            let lengths = (state.content.len(), state.reasoning.len());
            if lengths != tracked.saved || renewal_due {
                tracked.saved = lengths;
                batch.saves.push((*id, streaming_progress(&state)));
            }
            drop(state);
            if renewal_due {
                tracked.last_renewal = Instant::now();
                tracked.renew_now = false;
                batch.renewals.push((tracked.conversation, *id));
            }
        }
        batch
    }

    async fn flush(&self, slice: u64) {
        let Batch { saves, renewals } = self.due(slice);
        // A store that hangs must not hold up the next slices' saves and renewals.
        let patience = self.lease / 8;
        if !saves.is_empty() {
            match tokio::time::timeout(patience, self.store.save_progress_many(&saves, now())).await {
                Ok(Ok(saved)) => self.stop_refused(&saves, &saved),
                failed => {
                    let why = if failed.is_err() { "timed out" } else { "failed" };
                    tracing::warn!(why, replies = saves.len(), "could not save progress; will retry");
                    self.retry(saves.iter().map(|(id, _)| *id), false);
                }
            }
        }
        if !renewals.is_empty() {
            let until = now() + chrono::Duration::from_std(self.lease).unwrap_or_default();
            if !matches!(
                tokio::time::timeout(patience, self.store.renew_generations(&renewals, until)).await,
                Ok(Ok(()))
            ) {
                tracing::warn!(leases = renewals.len(), "could not renew conversation leases; will retry");
                self.retry(renewals.iter().map(|(_, id)| *id), true);
            }
        }
    }

    /// Replies whose save was refused: cancelled by their owner, or settled elsewhere.
    fn stop_refused(&self, saves: &[(MessageId, MessageProgress)], saved: &[bool]) {
        let replies = self.lock();
        for ((id, _), ok) in saves.iter().zip(saved) {
            if !ok {
                if let Some(tracked) = replies.get(id) {
                    tracked.stop.cancel();
                }
            }
        }
    }

    /// Makes the next interval try again.
    fn retry(&self, ids: impl Iterator<Item = MessageId>, renewal: bool) {
        let mut replies = self.lock();
        for id in ids {
            if let Some(tracked) = replies.get_mut(&id) {
                if renewal {
                    tracked.renew_now = true;
                } else {
                    tracked.saved = (usize::MAX, usize::MAX);
                }
            }
        }
    }
}

fn streaming_progress(state: &LiveReply) -> MessageProgress {
    MessageProgress {
        content: state.content.clone(),
        reasoning_content: (!state.reasoning.is_empty()).then(|| state.reasoning.clone()),
        status: MessageStatus::Streaming,
        usage: None,
        finish_reason: None,
        error: None,
        served: state.served.clone(),
    }
}

async fn run(saver: Weak<ProgressSaver>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval / SLICES as u32);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for tick in 0u64.. {
        ticks.tick().await;
        let Some(saver) = saver.upgrade() else { return };
        saver.flush(tick % SLICES).await;
    }
}

impl std::fmt::Debug for ProgressSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressSaver").field("interval", &self.interval).finish_non_exhaustive()
    }
}
