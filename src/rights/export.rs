//! A download of everything kept about a user, as one JSON document: the profile,
//! conversations with their messages (labels and metadata included), memories, today's
//! usage, reports, consents and the safety record. Prepared in the background, stored in
//! parts, downloadable until it expires; never another user's data, never a secret (no
//! openid, no session key).
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::UserRights;
use crate::chat::{ChatError, ChatService};
use crate::domain::{now, DataExport, ExportStatus, SafetyEvent, SafetyEventKind, User, UserId};
use crate::routes::dto::{MessageDto, UsageDto};
use crate::store::{ConversationCursor, DynStore, StoreError};

/// Each export is a full copy of the user's data: a few a day are plenty.
const EXPORTS_PER_DAY: i64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error("too many exports today")]
    TooMany { retry_after: u64 },
}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        ExportError::Chat(e.into())
    }
}

/// Parts of at most this many bytes (a MongoDB document holds 16 MB).
const PART_BYTES: usize = 1 << 20;
const PAGE: usize = 200;

impl UserRights {
    /// Starts preparing the user's export (at most `EXPORTS_PER_DAY` a day); the caller
    /// polls its status.
    pub async fn start_export(&self, user: UserId) -> Result<DataExport, ExportError> {
        if self.store.get_user(user).await?.is_none() {
            return Err(ChatError::AccountGone.into());
        }
        let at = now();
        let (day, ends) = crate::protection::china_day(at);
        let asked =
            self.store.increment_counter(&format!("exports:{user}:{day}"), 1, ends + chrono::Duration::days(1)).await?;
        if asked > EXPORTS_PER_DAY {
            return Err(ExportError::TooMany { retry_after: (ends - at).num_seconds().max(1) as u64 });
        }
        let ttl = chrono::Duration::from_std(self.settings.export_ttl).unwrap_or(chrono::Duration::hours(24));
        let export = DataExport {
            id: uuid::Uuid::new_v4().simple().to_string(),
            user_id: user,
            status: ExportStatus::Preparing,
            created_at: at,
            expires_at: at + ttl,
            parts: 0,
        };
        self.store.insert_export(&export).await.map_err(ChatError::from)?;
        let event = SafetyEvent::new(user, SafetyEventKind::ExportRequested, Some(export.id.clone()));
        self.chat.safety().record(event).await;
        let (store, chat, prepared) = (self.store.clone(), self.chat.clone(), export.clone());
        self.registry.spawn(async move {
            let status = match prepare(&store, &chat, &prepared).await {
                Ok(parts) => (ExportStatus::Ready, parts),
                Err(e) => {
                    tracing::error!(error = ?e, "could not prepare a data export");
                    (ExportStatus::Failed, 0)
                }
            };
            if let Err(e) = store.finish_export(&prepared.id, status.0, status.1).await {
                tracing::error!(error = ?e, "could not mark a data export finished");
            }
        });
        Ok(export)
    }

    /// The user's export, unless it expired.
    pub async fn export(&self, user: UserId, id: &str) -> Result<Option<DataExport>, StoreError> {
        Ok(self.store.get_export(user, id).await?.filter(|e| e.expires_at > now()))
    }
}

async fn prepare(store: &DynStore, chat: &Arc<ChatService>, export: &DataExport) -> Result<u32, StoreError> {
    let user = store
        .get_user(export.user_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(anyhow::anyhow!("the user of an export is gone")))?;
    let document = document(store, chat, &user).await?.to_string();
    let mut parts = 0u32;
    let mut rest = document.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        store.save_export_part(export, parts, &rest[..cut]).await?;
        rest = &rest[cut..];
        parts += 1;
    }
    Ok(parts)
}

/// What a safety record's detail tells the user: operators' names stay the operator's.
fn users_part(event: &crate::domain::SafetyEvent) -> Option<&str> {
    use SafetyEventKind::*;
    match event.kind {
        TakenOver | OperatorReplied | Released | GuardianConsent | MinorModeOff => None,
        _ => event.detail.as_deref(),
    }
}

/// The whole document. Only this user's data is read, by their id.
async fn document(store: &DynStore, chat: &ChatService, user: &User) -> Result<Value, StoreError> {
    let labels = chat.labels();
    let mut conversations = Vec::new();
    let mut personas = BTreeSet::new();
    let mut cursor: Option<ConversationCursor> = None;
    loop {
        let page = store.list_conversations(user.id, PAGE, cursor.as_ref()).await?;
        for conversation in &page {
            personas.insert(conversation.persona_id.clone());
            let mut messages = Vec::new();
            let mut before = None;
            loop {
                let older = store.list_messages(conversation.id, PAGE, before).await?;
                before = older.first().map(|m| m.id);
                let done = older.len() < PAGE;
                let mut page: Vec<Value> = older.iter().map(|m| json!(MessageDto::new(m, labels))).collect();
                page.append(&mut messages);
                messages = page;
                if done {
                    break;
                }
            }
            conversations.push(json!({
                "id": conversation.id, "persona_id": conversation.persona_id, "title": conversation.title.as_str(),
                "created_at": conversation.created_at, "last_active_at": conversation.last_active_at,
                "summary": conversation.summary.as_ref().map(|s| s.text.as_str()),
                "messages": messages,
            }));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => {
                cursor = Some(ConversationCursor { last_active_at: last.last_active_at, id: last.id })
            }
            _ => break,
        }
    }
    // Memories outlive deleted conversations: every companion's, not only those talked to.
    personas.extend(chat.persona_catalog().current().all().iter().map(|p| p.id.clone()));
    let mut memories = Vec::new();
    for persona in &personas {
        for fact in store.list_memories(user.id, persona).await? {
            memories.push(
                json!({"persona_id": fact.persona_id, "text": fact.text.as_str(), "learned_at": fact.learned_at}),
            );
        }
    }
    let reports: Vec<Value> =
        store.list_user_reports(user.id, 10_000).await?.iter().map(super::reports::report_json).collect();
    let events = store.list_safety_events(Some(user.id), 100_000).await?;
    let usage = chat.usage(user.id).await?;
    Ok(json!({
        "exported_at": now(),
        "producer": labels.producer,
        "user": {
            "id": user.id, "nickname": user.nickname.as_ref().map(|n| n.as_str()),
            "avatar_url": user.avatar_url.as_ref().map(|a| a.as_str()), "created_at": user.created_at,
        },
        "conversations": conversations,
        "memories": memories,
        "usage_today": UsageDto::from(&usage),
        "reports": reports,
        "consents": {
            "privacy_policy": user.agreed_policy.as_ref().map(|p| json!({"version": p.version, "agreed_at": p.at})),
            "minor_mode": user.minor_mode.as_ref().map(|m| json!({
                "since": m.since, "guardian_consent_at": m.guardian_consent.as_ref().map(|c| c.at),
            })),
        },
        "notices_acknowledged": events.iter().filter(|e| e.kind == SafetyEventKind::NoticeAcknowledged)
            .map(|e| json!({"notice": e.detail, "at": e.at})).collect::<Vec<_>>(),
        "safety_record": events.iter().map(|e| json!({"kind": e.kind, "at": e.at, "detail": users_part(e)})).collect::<Vec<_>>(),
    }))
}
