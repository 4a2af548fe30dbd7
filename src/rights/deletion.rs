//! Account deletion (注销): everything kept about the user is erased (conversations,
//! messages, memories, counters, safety record, exports, the profile and the openid's
//! mapping: a later sign-in starts a new, empty user). Reports still open are kept until
//! handled. The deletion is recorded without personal content: a hash of the user id and
//! the time. An optional cooling-off period delays it; the user can cancel meanwhile.
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::UserRights;
use crate::chat::ChatError;
use crate::domain::{now, SafetyEvent, SafetyEventKind, User, UserId};
use crate::store::{DynStore, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionOutcome {
    Erased,
    Scheduled { due_at: DateTime<Utc> },
}

impl UserRights {
    pub async fn delete_account(&self, user: UserId) -> Result<DeletionOutcome, ChatError> {
        let found = self.store.get_user(user).await?.ok_or(ChatError::ConversationNotFound)?;
        if self.settings.deletion_cooling_off.is_zero() {
            erase(&self.store, &found).await?;
            return Ok(DeletionOutcome::Erased);
        }
        let wait = chrono::Duration::from_std(self.settings.deletion_cooling_off).unwrap_or(chrono::Duration::days(7));
        let due_at = now() + wait;
        self.store.schedule_deletion(user, Some(due_at)).await?;
        let event = SafetyEvent::new(user, SafetyEventKind::DeletionRequested, Some(due_at.to_rfc3339()));
        self.chat.safety().record(event).await;
        Ok(DeletionOutcome::Scheduled { due_at })
    }

    pub async fn cancel_deletion(&self, user: UserId) -> Result<(), ChatError> {
        self.store.schedule_deletion(user, None).await?;
        self.chat.safety().record(SafetyEvent::new(user, SafetyEventKind::DeletionCancelled, None)).await;
        Ok(())
    }
}

/// What the deletion record keeps: enough to show that a given user id was erased (hash
/// it and compare), nothing that names a person.
fn record_of(user: &User, at: DateTime<Utc>) -> String {
    let hash = hex::encode(&Sha256::digest(user.id.to_string().as_bytes())[..8]);
    format!("user-sha256:{hash} erased-at:{}", at.to_rfc3339())
}

async fn erase(store: &DynStore, user: &User) -> Result<(), StoreError> {
    store.erase_user(user, &record_of(user, now())).await?;
    tracing::info!("an account was erased at its owner's request");
    Ok(())
}

/// Erases accounts whose cooling-off period ended, every `every`, until `stop`.
pub async fn erase_due_accounts(store: DynStore, every: std::time::Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let due = match store.due_deletions(now(), 20).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = ?e, "could not read the accounts due for deletion");
                continue;
            }
        };
        for user in due {
            if let Err(e) = erase(&store, &user).await {
                tracing::error!(error = ?e, "could not erase an account due for deletion; next round retries");
            }
        }
    }
}
