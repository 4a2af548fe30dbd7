//! The one rule for a reply whose generation died (its replica crashed or was killed):
//! it is still `streaming`, no generation in this process owns it, and nobody has saved
//! it for `stale_after` (twice the lease). Poll, reattach and followers all ask here, and
//! settle it with [`settle`]. (A send that claims the conversation has stronger evidence,
//! the free lease, and settles the others through `Store::interrupt_abandoned_replies`,
//! with the same stored outcome: `store::interrupted`.)
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{now, Message, MessageProgress, MessageStatus, Role};
use crate::store::{DynStore, StoreError};

pub fn is_abandoned(message: &Message, generated_here: bool, now: DateTime<Utc>, stale_after: Duration) -> bool {
    let stale_after = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    // A human reply awaited during a takeover has no generation: it waits for an operator.
    message.status == MessageStatus::Streaming
        && message.role != Role::Operator
        && !generated_here
        && now - message.updated_at > stale_after
}

/// What an abandoned reply is stored as: the part received is kept.
pub fn settled_progress(message: &Message) -> MessageProgress {
    let conclusion = crate::store::interrupted(!message.content.is_empty());
    MessageProgress {
        content: message.content.clone(),
        reasoning_content: message.reasoning_content.clone(),
        status: conclusion.status,
        usage: message.usage.clone(),
        finish_reason: message.finish_reason.clone(),
        error: conclusion.failure.map(|f| f.to_error()),
        served: message.served.clone(),
    }
}

/// Stores an abandoned reply as settled, unless it became final meanwhile (then that
/// state stands); returns the reply as stored.
pub async fn settle(store: &DynStore, mut message: Message) -> Result<Message, StoreError> {
    tracing::warn!(message_id = %message.id, "settling a reply abandoned by its generation");
    let progress = settled_progress(&message);
    let at = now();
    if store.save_progress(message.id, &progress, at).await? {
        message.apply(&progress, at);
        return Ok(message);
    }
    Ok(store.get_message(message.conversation_id, message.id).await?.unwrap_or(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stale_streaming_reply_owned_by_nobody_here_is_abandoned() {
        let stale_after = Duration::from_secs(30);
        let now = crate::domain::now();
        let cases = [
            ("stale and not generated here", MessageStatus::Streaming, false, 31, true),
            ("generated here", MessageStatus::Streaming, true, 300, false),
            ("saved recently", MessageStatus::Streaming, false, 29, false),
            ("already final", MessageStatus::Complete, false, 300, false),
            ("incomplete is final too", MessageStatus::Incomplete, false, 300, false),
        ];
        for (label, status, here, age_secs, expected) in cases {
            let mut message = Message::placeholder_for_tests();
            message.status = status;
            message.updated_at = now - chrono::Duration::seconds(age_secs);
            assert_eq!(is_abandoned(&message, here, now, stale_after), expected, "{label}");
        }
    }

    #[test]
    fn an_abandoned_reply_keeps_its_text_as_incomplete_or_fails_without_any() {
        let mut message = Message::placeholder_for_tests();
        let empty = settled_progress(&message);
        assert_eq!(empty.status, MessageStatus::Failed);
        assert_eq!(empty.error.unwrap().code, "generation_interrupted");
        message.content = "部分".into();
        let partial = settled_progress(&message);
        assert_eq!((partial.status, partial.content.as_str()), (MessageStatus::Incomplete, "部分"));
    }
}
