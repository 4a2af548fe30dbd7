//! Storage behind one seam: MongoDB in production, an in-process store for local
//! development only. Both pass the same contract tests (`tests/api/store_contract.rs`).
mod compat;
mod console;
mod console_mongo;
mod counting;
mod memory;
mod mongo;
mod rights;
mod rights_mongo;
mod safety;
mod safety_mongo;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Ban, ClientMessageId, Conversation, ConversationId, ConversationSummary, ConversationTitle, MemoryFact, MemoryId,
    MemoryJob, MemoryText, Message, MessageId, MessageProgress, OpenId, ProfilePatch, QuotaLimits, SendRecord, User,
    UserId,
};

pub use console::ConsoleStore;
pub use counting::{CountingStore, StoreTraffic};
pub use memory::InMemoryStore;
pub use mongo::{MongoStore, MongoStoreOptions};
pub use rights::RightsStore;
pub use safety::{SafetyStore, UserSafetyUpdate};

pub type DynStore = Arc<dyn Store>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("stored data could not be read")]
    Corrupt(#[source] anyhow::Error),
}

/// Where to continue a newest-first list of conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCursor {
    pub last_active_at: DateTime<Utc>,
    pub id: ConversationId,
}

impl ConversationCursor {
    pub fn after(conversation: &Conversation) -> Self {
        Self { last_active_at: conversation.last_active_at, id: conversation.id }
    }
    pub fn encode(&self) -> String {
        format!("{}_{}", self.last_active_at.timestamp_millis(), self.id)
    }
    pub fn decode(raw: &str) -> Option<Self> {
        let (millis, id) = raw.split_once('_')?;
        Some(Self {
            last_active_at: DateTime::from_timestamp_millis(millis.parse().ok()?)?,
            id: ConversationId::parse(id)?,
        })
    }
    /// True when `c` comes after this cursor in newest-first order.
    pub fn precedes(&self, c: &Conversation) -> bool {
        (c.last_active_at, c.id) < (self.last_active_at, self.id)
    }
}

/// A conversation still held by a reply whose lease ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredLease {
    pub user: UserId,
    pub conversation: ConversationId,
    pub holder: MessageId,
}

/// Outcome of claiming a conversation for one reply at a time (across replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationClaim {
    Claimed,
    /// Held by the reply `holder` until `until` (unless renewed).
    Busy {
        holder: MessageId,
        until: DateTime<Utc>,
    },
    NoSuchConversation,
}

#[async_trait]
pub trait Store: ConsoleStore + SafetyStore + RightsStore + Send + Sync + 'static {
    /// "mongodb" or "in-process", for readiness reports.
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;

    /// The one user of this openid, created on first sight; safe under concurrency.
    async fn find_or_create_user(&self, openid: &OpenId) -> Result<User, StoreError>;
    async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn update_user_profile(&self, id: UserId, patch: &ProfilePatch) -> Result<Option<User>, StoreError>;

    /// Bans the user (`Some`) or lifts the ban (`None`); false without the user.
    async fn set_user_ban(&self, id: UserId, ban: Option<&Ban>) -> Result<bool, StoreError>;
    /// Gives the user their own daily limits (`Some`) or the service's again (`None`);
    /// false without the user.
    async fn set_user_quota(&self, id: UserId, quota: Option<QuotaLimits>) -> Result<bool, StoreError>;
    /// The user of this openid, if there is one (never creates it).
    async fn find_user(&self, openid: &OpenId) -> Result<Option<User>, StoreError>;

    /// Revokes every token of the user (logout); the new version, `None` without the user.
    async fn bump_session_version(&self, id: UserId) -> Result<Option<i64>, StoreError>;

    async fn insert_conversation(&self, conversation: &Conversation) -> Result<(), StoreError>;
    /// Most recently active first.
    async fn list_conversations(
        &self,
        user: UserId,
        limit: usize,
        after: Option<&ConversationCursor>,
    ) -> Result<Vec<Conversation>, StoreError>;
    async fn get_conversation(&self, user: UserId, id: ConversationId) -> Result<Option<Conversation>, StoreError>;
    async fn rename_conversation(
        &self,
        user: UserId,
        id: ConversationId,
        title: &ConversationTitle,
    ) -> Result<Option<Conversation>, StoreError>;
    /// Removes the conversation and its messages; false when there was none.
    async fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<bool, StoreError>;

    /// Claims the conversation for the reply `message`, unless another unexpired claim
    /// holds it. Marks the conversation active at `now`.
    async fn claim_generation(
        &self,
        user: UserId,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<GenerationClaim, StoreError>;
    /// Moves the claim from `holder` to `message`, only if `holder` still holds it.
    async fn take_over_generation(
        &self,
        id: ConversationId,
        holder: MessageId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn renew_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Releases the claim held by `message` (no-op when it holds none).
    async fn release_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    async fn insert_message(&self, message: &Message) -> Result<(), StoreError>;
    /// Up to `limit` messages older than `before` (or the newest), in chronological order.
    async fn list_messages(
        &self,
        conversation: ConversationId,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<Message>, StoreError>;
    async fn get_message(&self, conversation: ConversationId, id: MessageId) -> Result<Option<Message>, StoreError>;
    /// The newest `limit` messages, across all users, stored with one of these error codes
    /// (the content check's refusals, for the console's moderation review).
    async fn list_flagged_messages(&self, codes: &[&str], limit: usize) -> Result<Vec<Message>, StoreError>;
    /// Saves a reply's progress, only while it is still `streaming`: a final reply never
    /// changes again. A `streaming` save is also refused once the reply's owner asked to
    /// cancel it (the generation, wherever it runs, learns so here). Returns whether it
    /// was saved.
    async fn save_progress(
        &self,
        id: MessageId,
        progress: &MessageProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Saves many replies' progress in one write (one bulk update per interval for every
    /// reply streaming here, not one write per reply); the same rule as `save_progress`
    /// for each. Returns, in order, whether each was saved.
    async fn save_progress_many(
        &self,
        saves: &[(MessageId, MessageProgress)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;
    /// Renews many conversations' leases in one write, each only while its reply holds it.
    async fn renew_generations(
        &self,
        leases: &[(ConversationId, MessageId)],
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Settles replies still `streaming` in this conversation, other than `except`, as
    /// interrupted (the part received kept as `incomplete`, none as `failed`, by
    /// `domain::Conclusion`): called by the holder of a fresh claim, so no live generation
    /// owns them (their replica died before finishing). Returns how many were settled.
    async fn interrupt_abandoned_replies(
        &self,
        conversation: ConversationId,
        except: MessageId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Records a send under its client id; false when one is already recorded (a retry).
    async fn insert_send(&self, send: &SendRecord) -> Result<bool, StoreError>;
    async fn find_send(&self, user: UserId, client_id: &ClientMessageId) -> Result<Option<SendRecord>, StoreError>;

    /// Marks a `streaming` reply as cancelled by its owner; false when it is not streaming.
    async fn request_cancel(&self, conversation: ConversationId, message: MessageId) -> Result<bool, StoreError>;
    /// Conversations whose reply lease ran out before `now` while still held: their
    /// generation died without releasing it.
    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExpiredLease>, StoreError>;

    /// Remembers a fact about a user, for one persona.
    async fn insert_memory(&self, fact: &MemoryFact) -> Result<(), StoreError>;
    /// What the persona remembers about the user, oldest learned first (a stable order,
    /// so the prompt's memory block only changes when a memory does).
    async fn list_memories(&self, user: UserId, persona: &str) -> Result<Vec<MemoryFact>, StoreError>;
    /// Rewrites one memory of the user's; `None` when there is no such memory of theirs.
    async fn update_memory(
        &self,
        user: UserId,
        persona: &str,
        id: MemoryId,
        text: &MemoryText,
        now: DateTime<Utc>,
    ) -> Result<Option<MemoryFact>, StoreError>;
    /// Forgets one memory; false when there was none of the user's.
    async fn delete_memory(&self, user: UserId, persona: &str, id: MemoryId) -> Result<bool, StoreError>;
    /// Forgets everything the persona remembers about the user; how many were forgotten.
    /// What was said before `at` in their conversations is not learned from again.
    async fn delete_memories(&self, user: UserId, persona: &str, at: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Memory has learned from the conversation's turns up to `through` (never moves back).
    async fn mark_learned(&self, conversation: ConversationId, through: DateTime<Utc>) -> Result<(), StoreError>;
    /// Replaces the conversation's rolling summary, unless the stored one already reaches
    /// as far (a late writer never undoes a newer summary). Whether it was saved.
    async fn save_summary(
        &self,
        conversation: ConversationId,
        summary: &ConversationSummary,
    ) -> Result<bool, StoreError>;

    /// Asks for `conversation`'s new turns to be learned from at `due` (a later call
    /// pushes it back: debounced), with its attempts reset.
    async fn schedule_memory_job(
        &self,
        conversation: ConversationId,
        user: UserId,
        persona: &str,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Claims one job due by `now` that nobody holds (or whose holder's lease ran out).
    async fn claim_memory_job(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<MemoryJob>, StoreError>;
    /// Done: removed, unless new turns came meanwhile (then it waits for its due time).
    async fn finish_memory_job(&self, job: &MemoryJob) -> Result<(), StoreError>;
    /// Failed: released, to be tried again at `due`, with one more attempt counted.
    async fn retry_memory_job(&self, job: &MemoryJob, due: DateTime<Utc>) -> Result<(), StoreError>;

    /// Adds `by` to the counter `key` (created at 0) and returns the new value. Counters
    /// are shared by every replica and vanish after `expires_at`.
    async fn increment_counter(&self, key: &str, by: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError>;
    /// The counter's value (0 when absent or expired).
    async fn read_counter(&self, key: &str) -> Result<i64, StoreError>;
}

/// How a reply whose generation died is stored (the one mapping, in the domain).
pub fn interrupted(has_text: bool) -> crate::domain::Conclusion {
    use crate::domain::{Conclusion, GenerationEnd, ReplyFailure};
    Conclusion::of(GenerationEnd::Failed(ReplyFailure::GenerationInterrupted), has_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "65f1c0ffee0123456789abcd";

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).expect("a representable instant")
    }

    fn id(hex: &str) -> ConversationId {
        ConversationId::parse(hex).expect("a valid id")
    }

    fn conversation(last_active_millis: i64, hex: &str) -> Conversation {
        let title = ConversationTitle::parse("a title").expect("a valid title");
        Conversation {
            id: id(hex),
            last_active_at: at(last_active_millis),
            ..Conversation::new(UserId::new(), "xiaoxi", title, at(0))
        }
    }

    #[test]
    fn a_cursor_survives_a_round_trip() {
        const CASES: &[(&str, i64, &str)] = &[
            ("a recent instant", 1_790_000_000_123, ID),
            ("the epoch", 0, "000000000000000000000001"),
            ("an instant before the epoch", -1_234_567, "ffffffffffffffffffffffff"),
            ("a whole second", 1_700_000_000_000, ID),
        ];
        for &(label, millis, hex) in CASES {
            let cursor = ConversationCursor { last_active_at: at(millis), id: id(hex) };

            let encoded = cursor.encode();

            assert_eq!(encoded, format!("{millis}_{hex}"), "{label}: the wire form");
            assert_eq!(ConversationCursor::decode(&encoded), Some(cursor), "{label}");
        }
    }

    #[test]
    fn a_cursor_after_a_conversation_points_at_it() {
        let c = conversation(1_790_000_000_123, ID);

        let decoded = ConversationCursor::decode(&ConversationCursor::after(&c).encode()).expect("decodes");

        assert_eq!((decoded.last_active_at, decoded.id), (c.last_active_at, c.id));
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        let too_far = format!("{}_{ID}", i64::MAX);
        let cases: &[(&str, &str)] = &[
            ("empty", ""),
            ("no underscore", "1790000000123"),
            ("only an underscore", "_"),
            ("no millis", "_65f1c0ffee0123456789abcd"),
            ("no id", "1790000000123_"),
            ("non-numeric millis", "abc_65f1c0ffee0123456789abcd"),
            ("fractional millis", "1.5_65f1c0ffee0123456789abcd"),
            ("millis with spaces", " 17_65f1c0ffee0123456789abcd"),
            ("millis beyond i64", "99999999999999999999_65f1c0ffee0123456789abcd"),
            ("millis beyond the representable dates", &too_far),
            ("an id that is not hex", "1790000000123_zzzzzzzzzzzzzzzzzzzzzzzz"),
            ("an id that is too short", "1790000000123_65f1c0ffee"),
            ("an id that is too long", "1790000000123_65f1c0ffee0123456789abcd00"),
            ("a second underscore", "1790000000123_65f1c0ffee0123456789abcd_1"),
            ("the parts swapped", "65f1c0ffee0123456789abcd_1790000000123"),
        ];
        for &(label, raw) in cases {
            assert_eq!(ConversationCursor::decode(raw), None, "{label}: {raw:?}");
        }
    }

    #[test]
    fn only_conversations_after_the_cursor_in_newest_first_order_follow_it() {
        const MIDDLE: &str = "000000000000000000000005";
        let cursor = ConversationCursor { last_active_at: at(10_000), id: id(MIDDLE) };
        const CASES: &[(&str, i64, &str, bool)] = &[
            ("less recently active", 9_999, "00000000000000000000000f", true),
            ("more recently active", 10_001, "000000000000000000000001", false),
            ("same instant, smaller id", 10_000, "000000000000000000000004", true),
            ("same instant, same id (the cursor's own)", 10_000, MIDDLE, false),
            ("same instant, larger id", 10_000, "000000000000000000000006", false),
        ];
        for &(label, millis, hex, follows) in CASES {
            assert_eq!(cursor.precedes(&conversation(millis, hex)), follows, "{label}");
        }
    }
}
