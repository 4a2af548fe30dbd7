//! Companion safety in MongoDB: pending notices, activity and minor mode on the user's
//! document; takeover and crisis flag on the conversation's; the record in
//! `safety_events`. Times set by `$set` are epoch milliseconds (`compat.rs`, gap 5).
use std::collections::BTreeMap;

use async_trait::async_trait;
use mongodb::bson::{self, doc, Document};
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use super::mongo::{find_all, from_millis, unavailable};
use super::safety::{SafetyStore, UserSafetyUpdate};
use super::{MongoStore, StoreError};
use crate::domain::{
    now, Activity, Conversation, ConversationId, CrisisFlag, GuardianConsent, MinorMode, NoticeKind, PendingNotice,
    PolicyAgreement, SafetyEvent, SafetyEventKind, Takeover, UserId,
};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct NoticeDoc {
    version: String,
    since_ms: i64,
}

/// Pending notices by kind (`notices.ai_disclosure`), so each is set and removed alone.
pub(super) type NoticesDoc = BTreeMap<String, NoticeDoc>;

pub(super) fn notices_into_domain(notices: Option<NoticesDoc>) -> Vec<PendingNotice> {
    let mut pending: Vec<PendingNotice> = notices
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(kind, n)| {
            Some(PendingNotice { kind: NoticeKind::parse(&kind)?, version: n.version, since: from_millis(n.since_ms) })
        })
        .collect();
    pending.sort_by_key(|n| n.kind);
    pending
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ActivityDoc {
    start_ms: i64,
    last_ms: i64,
    /// 0: no reminder in this session (a missing field cannot be matched on the test server).
    #[serde(default)]
    reminded_ms: i64,
}

impl ActivityDoc {
    fn of(a: &Activity) -> Self {
        Self {
            start_ms: a.session_start.timestamp_millis(),
            last_ms: a.last.timestamp_millis(),
            reminded_ms: a.reminded_session.map_or(0, |t| t.timestamp_millis()),
        }
    }
    pub(super) fn into_domain(self) -> Activity {
        Activity {
            session_start: from_millis(self.start_ms),
            last: from_millis(self.last_ms),
            reminded_session: (self.reminded_ms > 0).then(|| from_millis(self.reminded_ms)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MinorDoc {
    since_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consent: Option<ConsentDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ConsentDoc {
    by: String,
    at_ms: i64,
    note: String,
}

impl MinorDoc {
    fn of(m: &MinorMode) -> Self {
        let consent = m.guardian_consent.as_ref().map(|c| ConsentDoc {
            by: c.by.clone(),
            at_ms: c.at.timestamp_millis(),
            note: c.note.clone(),
        });
        Self { since_ms: m.since.timestamp_millis(), consent }
    }
    pub(super) fn into_domain(self) -> MinorMode {
        MinorMode {
            since: from_millis(self.since_ms),
            guardian_consent: self.consent.map(|c| GuardianConsent {
                by: c.by,
                at: from_millis(c.at_ms),
                note: c.note,
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PolicyDoc {
    version: String,
    at_ms: i64,
}

impl PolicyDoc {
    pub(super) fn into_domain(self) -> PolicyAgreement {
        PolicyAgreement { version: self.version, at: from_millis(self.at_ms) }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TakeoverDoc {
    by: String,
    at_ms: i64,
}

impl TakeoverDoc {
    pub(super) fn into_domain(self) -> Takeover {
        Takeover { by: self.by, at: from_millis(self.at_ms) }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CrisisDoc {
    at_ms: i64,
    detected_by: String,
    /// 0 until handled.
    #[serde(default)]
    handled_ms: i64,
}

impl CrisisDoc {
    pub(super) fn into_domain(self) -> CrisisFlag {
        CrisisFlag {
            at: from_millis(self.at_ms),
            detected_by: self.detected_by,
            handled_at: (self.handled_ms > 0).then(|| from_millis(self.handled_ms)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SafetyEventDoc {
    at_ms: i64,
    user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<String>,
    kind: SafetyEventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn to_doc<T: Serialize>(value: &T) -> Result<bson::Bson, StoreError> {
    bson::to_bson(value).map_err(|e| StoreError::Corrupt(e.into()))
}

impl MongoStore {
    fn safety_events(&self) -> Collection<SafetyEventDoc> {
        self.db.collection("safety_events")
    }

    fn raw_users(&self) -> Collection<Document> {
        self.db.collection("users")
    }

    fn raw_conversations(&self) -> Collection<Document> {
        self.db.collection("conversations")
    }
}

#[async_trait]
impl SafetyStore for MongoStore {
    async fn update_user_safety(&self, user: UserId, update: &UserSafetyUpdate) -> Result<(), StoreError> {
        let mut set = Document::new();
        for n in &update.notices {
            let notice = NoticeDoc { version: n.version.clone(), since_ms: n.since.timestamp_millis() };
            set.insert(format!("notices.{}", n.kind.as_str()), to_doc(&notice)?);
        }
        if let Some(activity) = &update.activity {
            set.insert("activity", to_doc(&ActivityDoc::of(activity))?);
        }
        if set.is_empty() {
            return Ok(());
        }
        let filter = doc! {"user_id": user.to_string()};
        self.raw_users().update_one(filter, doc! {"$set": set}).await.map_err(unavailable)?;
        Ok(())
    }

    async fn acknowledge_notice(&self, user: UserId, kind: NoticeKind, version: &str) -> Result<bool, StoreError> {
        let field = format!("notices.{}", kind.as_str());
        let filter = doc! {"user_id": user.to_string(), format!("{field}.version"): version};
        let updated = self.raw_users().update_one(filter, doc! {"$unset": {field: ""}}).await.map_err(unavailable)?;
        Ok(updated.modified_count == 1)
    }

    async fn set_minor_mode(&self, user: UserId, mode: Option<&MinorMode>) -> Result<bool, StoreError> {
        let update = match mode {
            Some(mode) => doc! {"$set": {"minor_mode": to_doc(&MinorDoc::of(mode))?}},
            None => doc! {"$unset": {"minor_mode": ""}},
        };
        let updated =
            self.raw_users().update_one(doc! {"user_id": user.to_string()}, update).await.map_err(unavailable)?;
        Ok(updated.matched_count == 1)
    }

    async fn set_policy_agreement(&self, user: UserId, agreement: &PolicyAgreement) -> Result<(), StoreError> {
        let agreed = PolicyDoc { version: agreement.version.clone(), at_ms: agreement.at.timestamp_millis() };
        let update = doc! {"$set": {"agreed_policy": to_doc(&agreed)?}};
        self.raw_users().update_one(doc! {"user_id": user.to_string()}, update).await.map_err(unavailable)?;
        Ok(())
    }

    async fn record_safety_event(&self, event: &SafetyEvent) -> Result<(), StoreError> {
        let document = SafetyEventDoc {
            at_ms: event.at.timestamp_millis(),
            user_id: event.user_id.to_string(),
            conversation_id: event.conversation_id.map(|c| c.to_string()),
            kind: event.kind,
            detail: event.detail.clone(),
        };
        self.safety_events().insert_one(document).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_safety_events(&self, user: Option<UserId>, limit: usize) -> Result<Vec<SafetyEvent>, StoreError> {
        let filter = match user {
            Some(user) => doc! {"user_id": user.to_string()},
            None => doc! {},
        };
        let docs: Vec<SafetyEventDoc> =
            find_all(self.safety_events().find(filter).sort(doc! {"at_ms": -1}).limit(limit as i64)).await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                Some(SafetyEvent {
                    at: from_millis(d.at_ms),
                    user_id: UserId::parse(&d.user_id)?,
                    conversation_id: d.conversation_id.as_deref().and_then(ConversationId::parse),
                    kind: d.kind,
                    detail: d.detail,
                })
            })
            .collect())
    }

    async fn set_takeover(
        &self,
        conversation: ConversationId,
        takeover: Option<&Takeover>,
    ) -> Result<bool, StoreError> {
        let filter = doc! {"_id": conversation.to_string()};
        let update = match takeover {
            Some(t) => doc! {"$set": {"takeover": {"by": &t.by, "at_ms": t.at.timestamp_millis()}}},
            None => doc! {"$unset": {"takeover": ""}},
        };
        let updated = self.raw_conversations().update_one(filter.clone(), update).await.map_err(unavailable)?;
        if takeover.is_none() {
            // Released: the crisis (if any) was handled.
            let mut flagged = filter;
            flagged.insert("crisis.handled_ms", 0);
            let handled = doc! {"$set": {"crisis.handled_ms": now().timestamp_millis()}};
            self.raw_conversations().update_one(flagged, handled).await.map_err(unavailable)?;
        }
        Ok(updated.matched_count == 1)
    }

    async fn flag_crisis(&self, conversation: ConversationId, flag: &CrisisFlag) -> Result<(), StoreError> {
        let crisis =
            CrisisDoc { at_ms: flag.at.timestamp_millis(), detected_by: flag.detected_by.clone(), handled_ms: 0 };
        let update = doc! {"$set": {"crisis": to_doc(&crisis)?}};
        self.raw_conversations()
            .update_one(doc! {"_id": conversation.to_string()}, update)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_crisis_conversations(&self, limit: usize) -> Result<Vec<Conversation>, StoreError> {
        self.find_conversations(doc! {"crisis.at_ms": {"$gt": 0}}, doc! {"crisis.at_ms": -1}, limit).await
    }

    async fn find_conversation(&self, conversation: ConversationId) -> Result<Option<Conversation>, StoreError> {
        let found = self.find_conversations(doc! {"_id": conversation.to_string()}, doc! {}, 1).await?;
        Ok(found.into_iter().next())
    }
}
