//! MongoDB store (CloudBase MongoDB 4.4+ in production).
//!
//! Documents carry `schema_version`; readers accept older shapes through serde defaults,
//! so two versions of the service can share one database during a gray release.
//!
//! Ids are stored as 24-digit hex strings: they sort like the ObjectIds they come from,
//! and string equality behaves the same on every MongoDB-compatible server.
//! Timestamps that are later changed with `$set` are epoch milliseconds (`*_ms`), not
//! BSON dates: the test server turns a date written by `$set` into a string, and
//! numbers compare and sort the same everywhere. Write-once timestamps stay dates.
//! No index has `_id` as a component (the wire-compatible test server rejects writes to
//! such collections); ties inside one millisecond are ordered by `_id` in the sort.
//! Every such choice is listed, with the gap it avoids, in `compat`.
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReadPreference, ReturnDocument, SelectionCriteria};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::compat::{and_any, bool_of, lenient_bool};
use super::{ConversationCursor, ExpiredLease, GenerationClaim, Store, StoreError};
use crate::domain::{
    now, AvatarUrl, Ban, ClientMessageId, Conversation, ConversationId, ConversationSummary, ConversationTitle,
    FinishReason, MemoryFact, MemoryId, MemoryJob, MemoryText, Message, MessageError, MessageId, MessageProgress,
    MessageStatus, Nickname, OpenId, ProfilePatch, QuotaLimits, Role, SendRecord, Served, SummaryText, Usage, User,
    UserId,
};

const SCHEMA_VERSION: i32 = 1;
const DUPLICATE_KEY: i32 = 11000;

pub struct MongoStoreOptions {
    pub max_pool_size: u32,
    pub min_pool_size: u32,
    pub connect_timeout: Duration,
    pub server_selection_timeout: Duration,
}

pub struct MongoStore {
    pub(super) db: Database,
}

fn schema_v0() -> i32 {
    0
}

#[derive(Debug, Serialize, Deserialize)]
struct UserDoc {
    /// The openid is the key, so concurrent first logins race on `_id` and one wins.
    #[serde(rename = "_id")]
    openid: String,
    user_id: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    created_at: bson::DateTime,
    #[serde(default)]
    session_version: i64,
    #[serde(default = "schema_v0")]
    schema_version: i32,
    /// Set by `$set` (epoch milliseconds, see `compat.rs`); removed when the ban is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ban: Option<BanDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notices: Option<super::safety_mongo::NoticesDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activity: Option<super::safety_mongo::ActivityDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minor_mode: Option<super::safety_mongo::MinorDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agreed_policy: Option<super::safety_mongo::PolicyDoc>,
    /// 0: no deletion scheduled (a field that is always there can be compared).
    #[serde(default)]
    deletion_due_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct QuotaDoc {
    messages: i64,
    tokens: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct BanDoc {
    reason: String,
    at_ms: i64,
    by: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct GenerationLeaseDoc {
    message_id: String,
    expires_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ConversationDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    #[serde(default = "default_persona")]
    persona_id: String,
    title: String,
    created_at: bson::DateTime,
    last_active_ms: i64,
    #[serde(default)]
    generation: Option<GenerationLeaseDoc>,
    #[serde(default = "schema_v0")]
    schema_version: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<SummaryDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learned_through_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    takeover: Option<super::safety_mongo::TakeoverDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crisis: Option<super::safety_mongo::CrisisDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SummaryDoc {
    text: String,
    through_id: String,
    through_ms: i64,
    updated_ms: i64,
}

impl SummaryDoc {
    fn from_domain(summary: &ConversationSummary) -> Self {
        Self {
            text: summary.text.as_str().to_string(),
            through_id: summary.through.to_string(),
            through_ms: summary.through_at.timestamp_millis(),
            updated_ms: summary.updated_at.timestamp_millis(),
        }
    }

    /// `None` for a summary that no longer reads: the conversation then goes on without it.
    fn into_domain(self) -> Option<ConversationSummary> {
        Some(ConversationSummary {
            text: SummaryText::parse(&self.text).ok()?,
            through: MessageId::parse(&self.through_id)?,
            through_at: from_millis(self.through_ms),
            updated_at: from_millis(self.updated_ms),
        })
    }
}

fn default_persona() -> String {
    "default".to_string()
}

#[derive(Debug, Serialize, Deserialize)]
struct MessageDoc {
    #[serde(rename = "_id")]
    id: String,
    conversation_id: String,
    user_id: String,
    role: Role,
    content: String,
    #[serde(default = "complete")]
    status: MessageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<MessageError>,
    /// Which upstream and model answered (replies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    served: Option<Served>,
    created_at: bson::DateTime,
    #[serde(default)]
    updated_ms: Option<i64>,
    /// Always written (see `compat`, gap 8), so streaming saves can require `false`.
    #[serde(default, deserialize_with = "lenient_bool")]
    cancel_requested: bool,
    #[serde(default = "schema_v0")]
    schema_version: i32,
}

/// A send under a client's id; `_id` is `<user id>:<client id>`, so a retry is a
/// duplicate key on every MongoDB-compatible server (no partial or sparse index needed).
#[derive(Debug, Serialize, Deserialize)]
struct SendDoc {
    #[serde(rename = "_id")]
    key: String,
    user_id: String,
    client_id: String,
    conversation_id: String,
    user_message_id: String,
    reply_id: String,
    created_at: bson::DateTime,
}

/// A remembered fact. Both instants are epoch milliseconds (`updated_ms` changes by
/// `$set`, see `compat` gap 3); `learned_ms` orders a persona's memories.
#[derive(Debug, Serialize, Deserialize)]
struct MemoryDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    persona_id: String,
    text: String,
    learned_ms: i64,
    updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_message_id: Option<String>,
    #[serde(default = "schema_v0")]
    schema_version: i32,
}

impl MemoryDoc {
    fn from_domain(f: &MemoryFact) -> Self {
        MemoryDoc {
            id: f.id.to_string(),
            user_id: f.user_id.to_string(),
            persona_id: f.persona_id.clone(),
            text: f.text.as_str().to_string(),
            learned_ms: f.learned_at.timestamp_millis(),
            updated_ms: f.updated_at.timestamp_millis(),
            source_message_id: f.source_message_id.map(|m| m.to_string()),
            schema_version: SCHEMA_VERSION,
        }
    }

    fn into_domain(self) -> Result<MemoryFact, StoreError> {
        Ok(MemoryFact {
            id: parse_id(&self.id, MemoryId::parse)?,
            user_id: parse_id(&self.user_id, UserId::parse)?,
            persona_id: self.persona_id,
            text: MemoryText::parse(&self.text)
                .map_err(|e| StoreError::Corrupt(anyhow::anyhow!("memory text: {e}")))?,
            learned_at: from_millis(self.learned_ms),
            updated_at: from_millis(self.updated_ms),
            source_message_id: self.source_message_id.as_deref().and_then(MessageId::parse),
        })
    }
}

/// Pending memory work of one conversation (`_id`). `lease_ms` is 0 when nobody holds it.
#[derive(Debug, Serialize, Deserialize)]
struct MemoryJobDoc {
    #[serde(rename = "_id")]
    conversation_id: String,
    user_id: String,
    persona_id: String,
    version: i64,
    #[serde(default)]
    attempts: i64,
    due_ms: i64,
    #[serde(default)]
    lease_ms: i64,
    #[serde(default)]
    lease_token: String,
}

impl MemoryJobDoc {
    fn into_domain(self) -> Result<MemoryJob, StoreError> {
        Ok(MemoryJob {
            conversation_id: parse_id(&self.conversation_id, ConversationId::parse)?,
            user_id: parse_id(&self.user_id, UserId::parse)?,
            persona_id: self.persona_id,
            version: self.version,
            attempts: self.attempts.clamp(0, i64::from(u32::MAX)) as u32,
            lease_token: self.lease_token,
        })
    }
}

impl SendDoc {
    fn key(user: UserId, client_id: &ClientMessageId) -> String {
        format!("{user}:{}", client_id.as_str())
    }

    fn into_domain(self) -> Option<SendRecord> {
        Some(SendRecord {
            user_id: UserId::parse(&self.user_id)?,
            client_id: ClientMessageId::parse(&self.client_id).ok()?,
            conversation_id: ConversationId::parse(&self.conversation_id)?,
            user_message_id: MessageId::parse(&self.user_message_id)?,
            reply_id: MessageId::parse(&self.reply_id)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CounterDoc {
    #[serde(rename = "_id")]
    key: String,
    #[serde(default)]
    count: i64,
}

fn complete() -> MessageStatus {
    MessageStatus::Complete
}

pub(super) fn to_bson_date(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

pub(super) fn from_bson_date(t: bson::DateTime) -> DateTime<Utc> {
    from_millis(t.timestamp_millis())
}

pub(super) fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

fn parse_id<T>(raw: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(raw).ok_or_else(|| StoreError::Corrupt(anyhow::anyhow!("malformed id {raw:?}")))
}

/// A failed MongoDB operation, logged here where it happens (callers only map it).
pub(super) fn unavailable(e: mongodb::error::Error) -> StoreError {
    tracing::error!(error = %e, "MongoDB operation failed");
    StoreError::Unavailable(e.into())
}

/// Runs a `find` and reads every document it returns; either step failing means the
/// store is unavailable.
pub(super) async fn find_all<T>(
    find: impl std::future::IntoFuture<Output = mongodb::error::Result<mongodb::Cursor<T>>>,
) -> Result<Vec<T>, StoreError>
where
    T: serde::de::DeserializeOwned + Send + Sync + Unpin,
{
    find.await.map_err(unavailable)?.try_collect().await.map_err(unavailable)
}

pub(super) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(we)) if we.code == DUPLICATE_KEY
    )
}

impl UserDoc {
    fn into_domain(self) -> Result<User, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(anyhow::anyhow!("user {}: bad {what}", self.user_id));
        Ok(User {
            id: parse_id(&self.user_id, UserId::parse)?,
            openid: OpenId::parse(&self.openid).map_err(|_| corrupt("openid"))?,
            nickname: self.nickname.as_deref().and_then(|n| Nickname::parse(n).ok()),
            avatar_url: self.avatar_url.as_deref().and_then(|a| AvatarUrl::parse(a).ok()),
            created_at: from_bson_date(self.created_at),
            session_version: self.session_version,
            ban: self.ban.map(|b| Ban { reason: b.reason, at: from_millis(b.at_ms), by: b.by }),
            quota: self.quota.map(|q| QuotaLimits { messages: q.messages, tokens: q.tokens }),
            notices: super::safety_mongo::notices_into_domain(self.notices),
            activity: self.activity.map(super::safety_mongo::ActivityDoc::into_domain),
            minor_mode: self.minor_mode.map(super::safety_mongo::MinorDoc::into_domain),
            agreed_policy: self.agreed_policy.map(super::safety_mongo::PolicyDoc::into_domain),
            deletion_due: (self.deletion_due_ms > 0).then(|| from_millis(self.deletion_due_ms)),
        })
    }
}

impl ConversationDoc {
    fn into_domain(self) -> Result<Conversation, StoreError> {
        Ok(Conversation {
            id: parse_id(&self.id, ConversationId::parse)?,
            user_id: parse_id(&self.user_id, UserId::parse)?,
            persona_id: self.persona_id,
            // Titles were validated on write; an old untitled document still reads.
            title: ConversationTitle::parse(&self.title)
                .unwrap_or_else(|_| ConversationTitle::parse("对话").expect("static title")),
            created_at: from_bson_date(self.created_at),
            last_active_at: from_millis(self.last_active_ms),
            summary: self.summary.and_then(SummaryDoc::into_domain),
            learned_through: self.learned_through_ms.map(from_millis),
            takeover: self.takeover.map(super::safety_mongo::TakeoverDoc::into_domain),
            crisis: self.crisis.map(super::safety_mongo::CrisisDoc::into_domain),
        })
    }
}

impl MessageDoc {
    fn from_domain(m: &Message) -> Self {
        MessageDoc {
            id: m.id.to_string(),
            conversation_id: m.conversation_id.to_string(),
            user_id: m.user_id.to_string(),
            role: m.role,
            content: m.content.clone(),
            status: m.status,
            reasoning_content: m.reasoning_content.clone(),
            usage: m.usage.clone(),
            finish_reason: m.finish_reason.as_ref().map(|f| f.as_str().to_string()),
            error: m.error.clone(),
            served: m.served.clone(),
            created_at: to_bson_date(m.created_at),
            updated_ms: Some(m.updated_at.timestamp_millis()),
            cancel_requested: false,
            schema_version: SCHEMA_VERSION,
        }
    }

    fn into_domain(self) -> Result<Message, StoreError> {
        let created_at = from_bson_date(self.created_at);
        Ok(Message {
            id: parse_id(&self.id, MessageId::parse)?,
            conversation_id: parse_id(&self.conversation_id, ConversationId::parse)?,
            user_id: parse_id(&self.user_id, UserId::parse)?,
            role: self.role,
            content: self.content,
            status: self.status,
            created_at,
            reasoning_content: self.reasoning_content,
            usage: self.usage,
            finish_reason: self.finish_reason.as_deref().map(FinishReason::parse),
            error: self.error,
            served: self.served,
            updated_at: self.updated_ms.map(from_millis).unwrap_or(created_at),
        })
    }
}

impl MongoStore {
    pub async fn connect(uri: &str, db_name: &str, options: &MongoStoreOptions) -> anyhow::Result<MongoStore> {
        let mut client_options = ClientOptions::parse(uri).await.context("MONGODB_URI could not be parsed")?;
        client_options.app_name = Some("companion-backend".into());
        client_options.max_pool_size = Some(options.max_pool_size);
        client_options.min_pool_size = Some(options.min_pool_size);
        client_options.connect_timeout = Some(options.connect_timeout);
        client_options.server_selection_timeout = Some(options.server_selection_timeout);
        let client = mongodb::Client::with_options(client_options)?;
        Ok(MongoStore { db: client.database(db_name) })
    }

    /// Conversations matching `filter`, in `sort` order (operators' lists across users).
    pub(super) async fn find_conversations(
        &self,
        filter: bson::Document,
        sort: bson::Document,
        limit: usize,
    ) -> Result<Vec<Conversation>, StoreError> {
        let docs: Vec<ConversationDoc> =
            find_all(self.conversations().find(filter).sort(sort).limit(limit as i64)).await?;
        docs.into_iter().map(ConversationDoc::into_domain).collect()
    }

    fn users(&self) -> Collection<UserDoc> {
        self.db.collection("users")
    }
    fn conversations(&self) -> Collection<ConversationDoc> {
        self.db.collection("conversations")
    }
    fn messages(&self) -> Collection<MessageDoc> {
        self.db.collection("messages")
    }
    fn sends(&self) -> Collection<SendDoc> {
        self.db.collection("sends")
    }
    fn memories(&self) -> Collection<MemoryDoc> {
        self.db.collection("memories")
    }
    fn memory_jobs(&self) -> Collection<MemoryJobDoc> {
        self.db.collection("memory_jobs")
    }
    fn counters(&self) -> Collection<CounterDoc> {
        self.db.collection("counters")
    }

    /// One `update` command with many statements (unordered): one round trip, whatever
    /// their number. Returns how many documents matched.
    async fn bulk_update(&self, collection: &str, statements: Vec<Document>) -> Result<u64, StoreError> {
        if statements.is_empty() {
            return Ok(0);
        }
        let reply = self
            .db
            .run_command(doc! {"update": collection, "updates": statements, "ordered": false})
            .await
            .map_err(unavailable)?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            if !errors.is_empty() {
                tracing::error!(collection, errors = errors.len(), "some statements of a bulk update failed");
                return Err(StoreError::Unavailable(anyhow::anyhow!(
                    "{} statements of a bulk update failed",
                    errors.len()
                )));
            }
        }
        Ok(match reply.get("n") {
            Some(Bson::Int32(n)) => *n as u64,
            Some(Bson::Int64(n)) => *n as u64,
            Some(Bson::Double(n)) => *n as u64,
            _ => 0,
        })
    }

    /// After a bulk save that did not match every reply: which ones it saved. A streaming
    /// save applies only to a streaming reply with no cancel asked and leaves it so, stamped
    /// with this save's time: a reply in that state with that stamp was saved (a final save
    /// in the same millisecond leaves it no longer streaming).
    async fn which_saved(
        &self,
        batch: &[(MessageId, MessageProgress)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.to_string()).collect();
        let mut cursor = self
            .db
            .collection::<Document>("messages")
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"_id": 1, "updated_ms": 1, "status": 1, "cancel_requested": 1})
            // What was just written: a lagging secondary would cancel healthy replies.
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .await
            .map_err(unavailable)?;
        let streaming = bson_of(&MessageStatus::Streaming)?;
        let mut saved = std::collections::HashSet::new();
        while let Some(found) = cursor.try_next().await.map_err(unavailable)? {
            let at = match found.get("updated_ms") {
                Some(Bson::Int64(ms)) => *ms,
                Some(Bson::Int32(ms)) => i64::from(*ms),
                _ => continue,
            };
            let cancelled = found.get("cancel_requested").is_some_and(bool_of);
            if at == now.timestamp_millis() && found.get("status") == Some(&streaming) && !cancelled {
                saved.insert(found.get_str("_id").unwrap_or_default().to_string());
            }
        }
        Ok(batch
            .iter()
            .map(|(id, progress)| progress.status == MessageStatus::Streaming && saved.contains(&id.to_string()))
            .collect())
    }

    /// Creates the indexes the queries rely on; repeating it is harmless.
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.users()
            .create_index(IndexModel::builder().keys(doc! {"user_id": 1}).options(unique).build())
            .await
            .context("creating users index")?;
        self.conversations()
            .create_index(IndexModel::builder().keys(doc! {"user_id": 1, "last_active_ms": -1}).build())
            .await
            .context("creating conversations index")?;
        // The sweeper's query: held leases by expiry.
        self.conversations()
            .create_index(IndexModel::builder().keys(doc! {"generation.expires_ms": 1}).build())
            .await
            .context("creating the lease expiry index")?;
        self.messages()
            .create_index(IndexModel::builder().keys(doc! {"conversation_id": 1, "created_at": -1}).build())
            .await
            .context("creating messages index")?;
        // The console's moderation review: refused messages, newest first.
        self.messages()
            .create_index(IndexModel::builder().keys(doc! {"error.code": 1, "created_at": -1}).build())
            .await
            .context("creating flagged messages index")?;
        self.memories()
            .create_index(IndexModel::builder().keys(doc! {"user_id": 1, "persona_id": 1, "learned_ms": 1}).build())
            .await
            .context("creating memories index")?;
        self.memory_jobs()
            .create_index(IndexModel::builder().keys(doc! {"due_ms": 1}).build())
            .await
            .context("creating memory jobs index")?;
        // Rate-limit and quota windows delete themselves once over.
        let ttl = IndexOptions::builder().expire_after(Duration::from_secs(0)).build();
        self.counters()
            .create_index(IndexModel::builder().keys(doc! {"expires_at": 1}).options(ttl).build())
            .await
            .context("creating counters TTL index")?;
        self.ensure_rights_indexes().await?;
        self.ensure_console_indexes().await
    }

    /// Users matching `filter` (operators' and sweepers' lists).
    pub(super) async fn find_users(&self, filter: bson::Document, limit: usize) -> Result<Vec<User>, StoreError> {
        let docs: Vec<UserDoc> = find_all(self.users().find(filter).limit(limit as i64)).await?;
        docs.into_iter().map(UserDoc::into_domain).collect()
    }

    async fn find_user_by_openid(&self, openid: &OpenId) -> Result<Option<User>, StoreError> {
        self.users()
            .find_one(doc! {"_id": openid.as_str()})
            .await
            .map_err(unavailable)?
            .map(UserDoc::into_domain)
            .transpose()
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! {"ping": 1}).await.map_err(unavailable)?;
        Ok(())
    }

    async fn find_or_create_user(&self, openid: &OpenId) -> Result<User, StoreError> {
        if let Some(user) = self.find_user_by_openid(openid).await? {
            return Ok(user);
        }
        let fresh = UserDoc {
            openid: openid.as_str().to_string(),
            user_id: UserId::new().to_string(),
            nickname: None,
            avatar_url: None,
            created_at: to_bson_date(now()),
            session_version: 0,
            schema_version: SCHEMA_VERSION,
            ban: None,
            quota: None,
            notices: None,
            activity: None,
            minor_mode: None,
            agreed_policy: None,
            deletion_due_ms: 0,
        };
        match self.users().insert_one(&fresh).await {
            Ok(_) => fresh.into_domain(),
            // Another request created this user first: theirs is the one.
            Err(e) if is_duplicate_key(&e) => self
                .find_user_by_openid(openid)
                .await?
                .ok_or_else(|| StoreError::Corrupt(anyhow::anyhow!("user vanished after duplicate key"))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn set_user_ban(&self, id: UserId, ban: Option<&Ban>) -> Result<bool, StoreError> {
        let update = match ban {
            Some(ban) => {
                doc! {"$set": {"ban": {"reason": &ban.reason, "at_ms": ban.at.timestamp_millis(), "by": &ban.by}}}
            }
            None => doc! {"$unset": {"ban": ""}},
        };
        let updated = self.users().update_one(doc! {"user_id": id.to_string()}, update).await.map_err(unavailable)?;
        Ok(updated.matched_count == 1)
    }

    async fn set_user_quota(&self, id: UserId, quota: Option<QuotaLimits>) -> Result<bool, StoreError> {
        let update = match quota {
            Some(q) => doc! {"$set": {"quota": {"messages": q.messages, "tokens": q.tokens}}},
            None => doc! {"$unset": {"quota": ""}},
        };
        let updated = self.users().update_one(doc! {"user_id": id.to_string()}, update).await.map_err(unavailable)?;
        Ok(updated.matched_count == 1)
    }

    async fn find_user(&self, openid: &OpenId) -> Result<Option<User>, StoreError> {
        self.find_user_by_openid(openid).await
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.users()
            .find_one(doc! {"user_id": id.to_string()})
            .await
            .map_err(unavailable)?
            .map(UserDoc::into_domain)
            .transpose()
    }

    async fn update_user_profile(&self, id: UserId, patch: &ProfilePatch) -> Result<Option<User>, StoreError> {
        let mut set = doc! {"updated_ms": now().timestamp_millis()};
        if let Some(nickname) = &patch.nickname {
            set.insert("nickname", nickname.as_str());
        }
        if let Some(avatar_url) = &patch.avatar_url {
            set.insert("avatar_url", avatar_url.as_str());
        }
        self.users().update_one(doc! {"user_id": id.to_string()}, doc! {"$set": set}).await.map_err(unavailable)?;
        self.get_user(id).await
    }

    async fn bump_session_version(&self, id: UserId) -> Result<Option<i64>, StoreError> {
        let bumped = self
            .users()
            .find_one_and_update(doc! {"user_id": id.to_string()}, doc! {"$inc": {"session_version": 1}})
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        Ok(bumped.map(|user| user.session_version))
    }

    async fn insert_conversation(&self, c: &Conversation) -> Result<(), StoreError> {
        let document = ConversationDoc {
            id: c.id.to_string(),
            user_id: c.user_id.to_string(),
            persona_id: c.persona_id.clone(),
            title: c.title.as_str().to_string(),
            created_at: to_bson_date(c.created_at),
            last_active_ms: c.last_active_at.timestamp_millis(),
            generation: None,
            schema_version: SCHEMA_VERSION,
            summary: c.summary.as_ref().map(SummaryDoc::from_domain),
            learned_through_ms: c.learned_through.map(|t| t.timestamp_millis()),
            takeover: None,
            crisis: None,
        };
        self.conversations().insert_one(document).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_conversations(
        &self,
        user: UserId,
        limit: usize,
        after: Option<&ConversationCursor>,
    ) -> Result<Vec<Conversation>, StoreError> {
        let mut filter = doc! {"user_id": user.to_string()};
        if let Some(cursor) = after {
            let at = cursor.last_active_at.timestamp_millis();
            filter = and_any(
                filter,
                vec![
                    doc! {"last_active_ms": {"$lt": at}},
                    doc! {"last_active_ms": at, "_id": {"$lt": cursor.id.to_string()}},
                ],
            );
        }
        let docs: Vec<ConversationDoc> = find_all(
            self.conversations().find(filter).sort(doc! {"last_active_ms": -1, "_id": -1}).limit(limit as i64),
        )
        .await?;
        docs.into_iter().map(ConversationDoc::into_domain).collect()
    }

    async fn get_conversation(&self, user: UserId, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self
            .conversations()
            .find_one(doc! {"_id": id.to_string(), "user_id": user.to_string()})
            .await
            .map_err(unavailable)?
            .map(ConversationDoc::into_domain)
            .transpose()?)
    }

    async fn rename_conversation(
        &self,
        user: UserId,
        id: ConversationId,
        title: &ConversationTitle,
    ) -> Result<Option<Conversation>, StoreError> {
        let result = self
            .conversations()
            .update_one(
                doc! {"_id": id.to_string(), "user_id": user.to_string()},
                doc! {"$set": {"title": title.as_str()}},
            )
            .await
            .map_err(unavailable)?;
        if result.matched_count == 0 {
            return Ok(None);
        }
        self.get_conversation(user, id).await
    }

    async fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<bool, StoreError> {
        // The conversation goes first: orphaned messages are unreachable, never shown.
        let deleted = self
            .conversations()
            .delete_one(doc! {"_id": id.to_string(), "user_id": user.to_string()})
            .await
            .map_err(unavailable)?;
        if deleted.deleted_count == 0 {
            return Ok(false);
        }
        self.messages().delete_many(doc! {"conversation_id": id.to_string()}).await.map_err(unavailable)?;
        Ok(true)
    }

    async fn claim_generation(
        &self,
        user: UserId,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<GenerationClaim, StoreError> {
        let owned = doc! {"_id": id.to_string(), "user_id": user.to_string()};
        let claimable = and_any(
            owned.clone(),
            vec![doc! {"generation": Bson::Null}, doc! {"generation.expires_ms": {"$lt": now.timestamp_millis()}}],
        );
        let update = doc! {"$set": {
            "generation": {"message_id": message.to_string(), "expires_ms": lease_until.timestamp_millis()},
            "last_active_ms": now.timestamp_millis(),
        }};
        // Twice at most: the claim may be released (or run out) between the two steps.
        for _ in 0..2 {
            let result =
                self.conversations().update_one(claimable.clone(), update.clone()).await.map_err(unavailable)?;
            if result.matched_count == 1 {
                return Ok(GenerationClaim::Claimed);
            }
            let Some(conversation) = self.conversations().find_one(owned.clone()).await.map_err(unavailable)? else {
                return Ok(GenerationClaim::NoSuchConversation);
            };
            let lease = conversation.generation.filter(|g| g.expires_ms >= now.timestamp_millis());
            if let Some(holder) = lease.as_ref().and_then(|g| MessageId::parse(&g.message_id)) {
                return Ok(GenerationClaim::Busy { holder, until: from_millis(lease.map_or(0, |g| g.expires_ms)) });
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!("the conversation's claim kept changing under us")))
    }

    async fn take_over_generation(
        &self,
        id: ConversationId,
        holder: MessageId,
        message: MessageId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .conversations()
            .update_one(
                doc! {"_id": id.to_string(), "generation.message_id": holder.to_string()},
                doc! {"$set": {
                    "generation": {"message_id": message.to_string(), "expires_ms": lease_until.timestamp_millis()},
                    "last_active_ms": now.timestamp_millis(),
                }},
            )
            .await
            .map_err(unavailable)?;
        Ok(result.matched_count == 1)
    }

    async fn renew_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conversations()
            .update_one(
                doc! {"_id": id.to_string(), "generation.message_id": message.to_string()},
                doc! {"$set": {"generation.expires_ms": lease_until.timestamp_millis()}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release_generation(
        &self,
        id: ConversationId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conversations()
            .update_one(
                doc! {"_id": id.to_string(), "generation.message_id": message.to_string()},
                doc! {"$set": {"generation": Bson::Null, "last_active_ms": now.timestamp_millis()}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_message(&self, message: &Message) -> Result<(), StoreError> {
        self.messages().insert_one(MessageDoc::from_domain(message)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_messages(
        &self,
        conversation: ConversationId,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<Message>, StoreError> {
        let mut filter = doc! {"conversation_id": conversation.to_string()};
        if let Some(before) = before {
            // Older than `before`: earlier millisecond, or the same one and a smaller id.
            let Some(anchor) = self.get_message(conversation, before).await? else {
                return Ok(Vec::new());
            };
            let at = to_bson_date(anchor.created_at);
            filter = and_any(
                filter,
                vec![doc! {"created_at": {"$lt": at}}, doc! {"created_at": at, "_id": {"$lt": before.to_string()}}],
            );
        }
        let mut docs: Vec<MessageDoc> =
            find_all(self.messages().find(filter).sort(doc! {"created_at": -1, "_id": -1}).limit(limit as i64)).await?;
        docs.reverse();
        docs.into_iter().map(MessageDoc::into_domain).collect()
    }

    async fn list_flagged_messages(&self, codes: &[&str], limit: usize) -> Result<Vec<Message>, StoreError> {
        let docs: Vec<MessageDoc> = find_all(
            self.messages()
                .find(doc! {"error.code": {"$in": codes}})
                .sort(doc! {"created_at": -1, "_id": -1})
                .limit(limit as i64),
        )
        .await?;
        docs.into_iter().map(MessageDoc::into_domain).collect()
    }

    async fn get_message(&self, conversation: ConversationId, id: MessageId) -> Result<Option<Message>, StoreError> {
        Ok(self
            .messages()
            .find_one(doc! {"_id": id.to_string(), "conversation_id": conversation.to_string()})
            .await
            .map_err(unavailable)?
            .map(MessageDoc::into_domain)
            .transpose()?)
    }

    async fn save_progress(
        &self,
        id: MessageId,
        progress: &MessageProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (filter, update) = progress_statement(id, progress, now)?;
        let result = self.messages().update_one(filter, update).await.map_err(unavailable)?;
        Ok(result.matched_count == 1)
    }

    async fn insert_memory(&self, fact: &MemoryFact) -> Result<(), StoreError> {
        self.memories().insert_one(MemoryDoc::from_domain(fact)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_memories(&self, user: UserId, persona: &str) -> Result<Vec<MemoryFact>, StoreError> {
        let mut cursor = self
            .memories()
            .find(doc! {"user_id": user.to_string(), "persona_id": persona})
            .sort(doc! {"learned_ms": 1, "_id": 1})
            .await
            .map_err(unavailable)?;
        let mut facts = Vec::new();
        while let Some(found) = cursor.try_next().await.map_err(unavailable)? {
            // One unreadable fact (another version's rules) must not hide the others.
            match found.into_domain() {
                Ok(fact) => facts.push(fact),
                Err(e) => tracing::warn!(error = ?e, "skipped an unreadable memory"),
            }
        }
        Ok(facts)
    }

    async fn update_memory(
        &self,
        user: UserId,
        persona: &str,
        id: MemoryId,
        text: &MemoryText,
        now: DateTime<Utc>,
    ) -> Result<Option<MemoryFact>, StoreError> {
        let updated = self
            .memories()
            .find_one_and_update(
                doc! {"_id": id.to_string(), "user_id": user.to_string(), "persona_id": persona},
                doc! {"$set": {"text": text.as_str(), "updated_ms": now.timestamp_millis()}},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        updated.map(MemoryDoc::into_domain).transpose()
    }

    async fn delete_memory(&self, user: UserId, persona: &str, id: MemoryId) -> Result<bool, StoreError> {
        let deleted = self
            .memories()
            .delete_one(doc! {"_id": id.to_string(), "user_id": user.to_string(), "persona_id": persona})
            .await
            .map_err(unavailable)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn delete_memories(&self, user: UserId, persona: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let theirs = doc! {"user_id": user.to_string(), "persona_id": persona};
        let deleted = self.memories().delete_many(theirs.clone()).await.map_err(unavailable)?;
        self.conversations()
            .update_many(theirs, doc! {"$max": {"learned_through_ms": at.timestamp_millis()}})
            .await
            .map_err(unavailable)?;
        Ok(deleted.deleted_count)
    }

    async fn mark_learned(&self, conversation: ConversationId, through: DateTime<Utc>) -> Result<(), StoreError> {
        self.conversations()
            .update_one(
                doc! {"_id": conversation.to_string()},
                doc! {"$max": {"learned_through_ms": through.timestamp_millis()}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn save_summary(
        &self,
        conversation: ConversationId,
        summary: &ConversationSummary,
    ) -> Result<bool, StoreError> {
        let newer = summary.through_at.timestamp_millis();
        let filter = and_any(
            doc! {"_id": conversation.to_string()},
            vec![doc! {"summary.through_ms": {"$exists": false}}, doc! {"summary.through_ms": {"$lt": newer}}],
        );
        let document =
            bson::to_document(&SummaryDoc::from_domain(summary)).map_err(|e| StoreError::Corrupt(e.into()))?;
        let saved =
            self.conversations().update_one(filter, doc! {"$set": {"summary": document}}).await.map_err(unavailable)?;
        Ok(saved.matched_count == 1)
    }

    async fn schedule_memory_job(
        &self,
        conversation: ConversationId,
        user: UserId,
        persona: &str,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // `$max` writes `lease_ms: 0` into a new job and leaves a running job's lease alone.
        let update = doc! {
            "$set": {"user_id": user.to_string(), "persona_id": persona, "due_ms": due.timestamp_millis(), "attempts": 0},
            "$inc": {"version": 1_i64},
            "$max": {"lease_ms": 0_i64},
        };
        self.memory_jobs()
            .update_one(doc! {"_id": conversation.to_string()}, update)
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim_memory_job(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<MemoryJob>, StoreError> {
        let at = now.timestamp_millis();
        let claimed = self
            .memory_jobs()
            .find_one_and_update(
                doc! {"due_ms": {"$lte": at}, "lease_ms": {"$lte": at}},
                doc! {"$set": {"lease_ms": lease_until.timestamp_millis(), "lease_token": MemoryId::new().to_string()}},
            )
            .sort(doc! {"due_ms": 1})
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        claimed.map(MemoryJobDoc::into_domain).transpose()
    }

    async fn finish_memory_job(&self, job: &MemoryJob) -> Result<(), StoreError> {
        let id = job.conversation_id.to_string();
        let done =
            self.memory_jobs().delete_one(doc! {"_id": &id, "version": job.version}).await.map_err(unavailable)?;
        if done.deleted_count == 0 {
            // New turns came meanwhile: release it for its (new) due time.
            self.memory_jobs()
                .update_one(doc! {"_id": &id}, doc! {"$set": {"lease_ms": 0_i64}})
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn retry_memory_job(&self, job: &MemoryJob, due: DateTime<Utc>) -> Result<(), StoreError> {
        let id = job.conversation_id.to_string();
        let retried = self
            .memory_jobs()
            .update_one(
                doc! {"_id": &id, "version": job.version, "lease_token": &job.lease_token},
                doc! {"$set": {"lease_ms": 0_i64, "due_ms": due.timestamp_millis()}, "$inc": {"attempts": 1_i64}},
            )
            .await
            .map_err(unavailable)?;
        if retried.matched_count == 0 {
            self.memory_jobs()
                .update_one(doc! {"_id": &id, "lease_token": &job.lease_token}, doc! {"$set": {"lease_ms": 0_i64}})
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn save_progress_many(
        &self,
        saves: &[(MessageId, MessageProgress)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut saved = Vec::with_capacity(saves.len());
        for batch in batches(saves, |(_, p)| p.content.len() + p.reasoning_content.as_ref().map_or(0, String::len)) {
            let mut statements = Vec::with_capacity(batch.len());
            for (id, progress) in batch {
                let (q, u) = progress_statement(*id, progress, now)?;
                statements.push(doc! {"q": q, "u": u});
            }
            let matched = self.bulk_update("messages", statements).await?;
            if matched == batch.len() as u64 {
                saved.extend(std::iter::repeat_n(true, batch.len()));
            } else {
                saved.extend(self.which_saved(batch, now).await?);
            }
        }
        Ok(saved)
    }

    async fn renew_generations(
        &self,
        leases: &[(ConversationId, MessageId)],
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for batch in batches(leases, |_| 0) {
            let statements = batch
                .iter()
                .map(|(id, message)| {
                    doc! {
                        "q": {"_id": id.to_string(), "generation.message_id": message.to_string()},
                        "u": {"$set": {"generation.expires_ms": lease_until.timestamp_millis()}},
                    }
                })
                .collect();
            self.bulk_update("conversations", statements).await?;
        }
        Ok(())
    }

    async fn interrupt_abandoned_replies(
        &self,
        conversation: ConversationId,
        except: MessageId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut settled = 0;
        // Empty and partial replies settle differently; one update for each.
        for has_text in [false, true] {
            let conclusion = super::interrupted(has_text);
            let content = if has_text {
                doc! {"$ne": ""}
            } else {
                doc! {"$eq": ""}
            };
            let result = self
                .messages()
                .update_many(
                    doc! {
                        "conversation_id": conversation.to_string(),
                        "status": bson_of(&MessageStatus::Streaming)?,
                        "role": "assistant",
                        "_id": {"$ne": except.to_string()},
                        "content": content,
                    },
                    doc! {"$set": {
                        "status": bson_of(&conclusion.status)?,
                        "error": bson_of(&conclusion.failure.map(|f| f.to_error()))?,
                        "updated_ms": now.timestamp_millis(),
                    }},
                )
                .await
                .map_err(unavailable)?;
            settled += result.modified_count;
        }
        Ok(settled)
    }

    async fn insert_send(&self, send: &SendRecord) -> Result<bool, StoreError> {
        let doc = SendDoc {
            key: SendDoc::key(send.user_id, &send.client_id),
            user_id: send.user_id.to_string(),
            client_id: send.client_id.as_str().to_string(),
            conversation_id: send.conversation_id.to_string(),
            user_message_id: send.user_message_id.to_string(),
            reply_id: send.reply_id.to_string(),
            created_at: to_bson_date(now()),
        };
        match self.sends().insert_one(doc).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn find_send(&self, user: UserId, client_id: &ClientMessageId) -> Result<Option<SendRecord>, StoreError> {
        let found = self.sends().find_one(doc! {"_id": SendDoc::key(user, client_id)}).await.map_err(unavailable)?;
        Ok(found.and_then(SendDoc::into_domain))
    }

    async fn request_cancel(&self, conversation: ConversationId, message: MessageId) -> Result<bool, StoreError> {
        let result = self
            .messages()
            .update_one(
                doc! {
                    "_id": message.to_string(),
                    "conversation_id": conversation.to_string(),
                    "status": bson_of(&MessageStatus::Streaming)?,
                },
                doc! {"$set": {"cancel_requested": true}},
            )
            .await
            .map_err(unavailable)?;
        Ok(result.matched_count == 1)
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExpiredLease>, StoreError> {
        let filter = doc! {"generation.expires_ms": {"$lt": now.timestamp_millis()}};
        let found: Vec<ConversationDoc> = find_all(self.conversations().find(filter).limit(limit as i64)).await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let lease = c.generation?;
                Some(ExpiredLease {
                    user: UserId::parse(&c.user_id)?,
                    conversation: ConversationId::parse(&c.id)?,
                    holder: MessageId::parse(&lease.message_id)?,
                })
            })
            .collect())
    }

    /// Counts by `key`; an expired counter starts again from zero. The test server has no
    /// pipeline updates (see `compat`), so this is up to three plain steps, the common
    /// case one round trip, each safe under concurrent increments.
    async fn increment_counter(&self, key: &str, by: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        let at = now().timestamp_millis();
        let expiry = doc! {"expires_at": to_bson_date(expires_at), "expires_ms": expires_at.timestamp_millis()};
        // 1. A live counter: add to it.
        let live = self
            .counters()
            .find_one_and_update(live_counter(key, at), doc! {"$inc": {"count": by}, "$set": expiry.clone()})
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        if let Some(counter) = live {
            return Ok(counter.count);
        }
        // 2. An expired one (TTL deletion lags): restart it, unless another increment did.
        let mut restart = expiry.clone();
        restart.insert("count", by);
        let restarted = self
            .counters()
            .find_one_and_update(doc! {"_id": key, "expires_ms": {"$lte": at}}, doc! {"$set": restart})
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        if let Some(counter) = restarted {
            return Ok(counter.count);
        }
        // 3. None yet (or one just made live by another increment): create or add.
        match self.upsert_increment(key, by, &expiry).await {
            Ok(count) => Ok(count),
            // Two first increments raced to create the counter: the loser updates it.
            Err(e) if is_duplicate_key(&e) => self.upsert_increment(key, by, &expiry).await.map_err(unavailable),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_counter(&self, key: &str) -> Result<i64, StoreError> {
        let live = live_counter(key, now().timestamp_millis());
        Ok(self.counters().find_one(live).await.map_err(unavailable)?.map_or(0, |c| c.count))
    }
}

impl MongoStore {
    async fn upsert_increment(&self, key: &str, by: i64, expiry: &Document) -> mongodb::error::Result<i64> {
        let updated = self
            .counters()
            .find_one_and_update(doc! {"_id": key}, doc! {"$inc": {"count": by}, "$set": expiry.clone()})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await?;
        Ok(updated.map_or(by, |c| c.count))
    }
}

/// The counter `key` if it has not expired. Counters written by older versions have no
/// `expires_ms` and count as live (mixed versions share the database in a gray release).
fn live_counter(key: &str, at_ms: i64) -> Document {
    and_any(doc! {"_id": key}, vec![doc! {"expires_ms": {"$gt": at_ms}}, doc! {"expires_ms": {"$exists": false}}])
}

fn bson_of<T: Serialize>(value: &T) -> Result<Bson, StoreError> {
    bson::to_bson(value).map_err(|e| StoreError::Corrupt(e.into()))
}

/// The filter and update that save a reply's progress: only while it is `streaming`, and
/// a `streaming` save only while no cancel was asked for.
fn progress_statement(
    id: MessageId,
    progress: &MessageProgress,
    now: DateTime<Utc>,
) -> Result<(Document, Document), StoreError> {
    let mut set: Document = doc! {
        "content": &progress.content,
        "reasoning_content": bson_of(&progress.reasoning_content)?,
        "status": bson_of(&progress.status)?,
        "usage": bson_of(&progress.usage)?,
        "finish_reason": bson_of(&progress.finish_reason.as_ref().map(FinishReason::as_str))?,
        "error": bson_of(&progress.error)?,
        "updated_ms": now.timestamp_millis(),
    };
    if let Some(served) = &progress.served {
        set.insert("served", bson_of(served)?);
    }
    let mut filter = doc! {"_id": id.to_string(), "status": bson_of(&MessageStatus::Streaming)?};
    if progress.status == MessageStatus::Streaming {
        filter.insert("cancel_requested", false);
    }
    Ok((filter, doc! {"$set": set}))
}

/// Statements per bulk command, and their text per command: well under MongoDB's
/// 100,000 statements and 16 MiB per command.
const BULK_STATEMENTS: usize = 1000;
const BULK_BYTES: usize = 4 * 1024 * 1024;

/// `items` cut into bulk-command-sized slices, by count and by `size`.
fn batches<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut slices = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let item_bytes = size(item);
        if i > start && (i - start >= BULK_STATEMENTS || bytes + item_bytes > BULK_BYTES) {
            slices.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        slices.push(&items[start..]);
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_writes_are_cut_by_statement_count_and_by_size() {
        let cases: Vec<(&str, Vec<usize>, Vec<usize>)> = vec![
            ("nothing", vec![], vec![]),
            ("one small", vec![10], vec![1]),
            ("exactly the statement cap", vec![1; BULK_STATEMENTS], vec![BULK_STATEMENTS]),
            ("one over the statement cap", vec![1; BULK_STATEMENTS + 1], vec![BULK_STATEMENTS, 1]),
            ("cut where the bytes would overflow", vec![BULK_BYTES / 2, BULK_BYTES / 2, 1], vec![2, 1]),
            ("an oversized item still goes, alone", vec![1, BULK_BYTES * 2, 1], vec![1, 1, 1]),
        ];
        for (label, sizes, expected) in cases {
            let cut: Vec<usize> = batches(&sizes, |s| *s).iter().map(|b| b.len()).collect();
            assert_eq!(cut, expected, "{label}");
        }
    }
}
