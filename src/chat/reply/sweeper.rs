//! Every replica, every few seconds, settles the replies whose generation died: their
//! conversation is still held by a lease that ran out. Idempotent, so replicas may race:
//! the sweeper first takes the expired lease over like a send would, and only the one
//! that gets it settles the conversation. A reply generated here is never swept.
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Registry;
use crate::domain::{now, MessageId};
use crate::store::{DynStore, ExpiredLease, GenerationClaim};

/// Conversations settled per sweep at most; the next sweep takes the rest.
const PER_SWEEP: usize = 50;

pub struct Sweeper {
    pub store: DynStore,
    pub registry: Arc<Registry>,
    pub every: Duration,
}

impl Sweeper {
    /// Sweeps until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = ?e, "sweeping abandoned replies failed; will retry");
            }
        }
    }

    /// One pass; returns how many replies it settled.
    pub async fn sweep(&self) -> Result<u64, crate::store::StoreError> {
        let mut settled = 0;
        for lease in self.store.expired_leases(now(), PER_SWEEP).await? {
            if self.registry.subscribe(lease.holder).is_some() {
                continue; // Ours and alive; its renewal will catch up.
            }
            settled += self.settle(lease).await?;
        }
        Ok(settled)
    }

    async fn settle(&self, lease: ExpiredLease) -> Result<u64, crate::store::StoreError> {
        let sweeper = MessageId::new();
        let at = now();
        let hold = at + chrono::Duration::seconds(30);
        match self.store.claim_generation(lease.user, lease.conversation, sweeper, at, hold).await? {
            GenerationClaim::Claimed => {}
            // A send took it over first: it settles the old replies itself.
            GenerationClaim::Busy { .. } | GenerationClaim::NoSuchConversation => return Ok(0),
        }
        let settled = self.store.interrupt_abandoned_replies(lease.conversation, sweeper, at).await;
        self.store.release_generation(lease.conversation, sweeper, now()).await?;
        let settled = settled?;
        if settled > 0 {
            tracing::warn!(conversation_id = %lease.conversation, settled, "settled replies abandoned by a dead replica");
        }
        Ok(settled)
    }
}
