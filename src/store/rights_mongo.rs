//! Users' rights in MongoDB: `reports`, `exports` and `export_parts` (expiring with a TTL
//! index on real MongoDB), `deletions`, and erasing an account across every collection.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc, Document};
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use super::mongo::{find_all, from_millis, unavailable};
use super::rights::RightsStore;
use super::{MongoStore, StoreError};
use crate::domain::{
    ConversationId, DataExport, ExportStatus, MessageId, Report, ReportDecision, ReportReason, ReportStatus,
    ReportedMessage, User, UserId,
};

#[derive(Debug, Serialize, Deserialize)]
struct ReportDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    conversation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    reason: ReportReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    snapshot: Vec<ReportedMessage>,
    created_ms: i64,
    due_ms: i64,
    status: ReportStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decision: Option<DecisionDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DecisionDoc {
    by: String,
    at_ms: i64,
    note: String,
}

impl ReportDoc {
    fn of(r: &Report) -> Self {
        Self {
            id: r.id.clone(),
            user_id: r.user_id.to_string(),
            conversation_id: r.conversation_id.to_string(),
            message_id: r.message_id.map(|m| m.to_string()),
            reason: r.reason,
            text: r.text.clone(),
            snapshot: r.snapshot.clone(),
            created_ms: r.created_at.timestamp_millis(),
            due_ms: r.due_at.timestamp_millis(),
            status: r.status,
            decision: None,
        }
    }

    fn into_domain(self) -> Option<Report> {
        Some(Report {
            id: self.id,
            user_id: UserId::parse(&self.user_id)?,
            conversation_id: ConversationId::parse(&self.conversation_id)?,
            message_id: self.message_id.as_deref().and_then(MessageId::parse),
            reason: self.reason,
            text: self.text,
            snapshot: self.snapshot,
            created_at: from_millis(self.created_ms),
            due_at: from_millis(self.due_ms),
            status: self.status,
            decision: self.decision.map(|d| ReportDecision { by: d.by, at: from_millis(d.at_ms), note: d.note }),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ExportDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    status: ExportStatus,
    created_ms: i64,
    expires_ms: i64,
    /// For the TTL index (inserted, not `$set`, so a date on the test server too).
    expires_at: bson::DateTime,
    #[serde(default)]
    parts: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartDoc {
    #[serde(rename = "_id")]
    id: String,
    export_id: String,
    user_id: String,
    expires_at: bson::DateTime,
    data: String,
}

impl MongoStore {
    /// Expired exports are removed by MongoDB itself (their download already refuses them).
    pub(super) async fn ensure_rights_indexes(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let expire =
            || mongodb::options::IndexOptions::builder().expire_after(std::time::Duration::from_secs(0)).build();
        self.exports()
            .create_index(mongodb::IndexModel::builder().keys(doc! {"expires_at": 1}).options(expire()).build())
            .await
            .context("creating the exports expiry index")?;
        self.export_parts()
            .create_index(mongodb::IndexModel::builder().keys(doc! {"expires_at": 1}).options(expire()).build())
            .await
            .context("creating the export parts expiry index")?;
        self.reports()
            .create_index(mongodb::IndexModel::builder().keys(doc! {"user_id": 1, "created_ms": -1}).build())
            .await
            .context("creating the reports index")?;
        Ok(())
    }

    fn reports(&self) -> Collection<ReportDoc> {
        self.db.collection("reports")
    }
    fn exports(&self) -> Collection<ExportDoc> {
        self.db.collection("exports")
    }
    fn export_parts(&self) -> Collection<PartDoc> {
        self.db.collection("export_parts")
    }

    async fn find_reports(&self, filter: Document, limit: usize) -> Result<Vec<Report>, StoreError> {
        let docs: Vec<ReportDoc> =
            find_all(self.reports().find(filter).sort(doc! {"created_ms": -1}).limit(limit as i64)).await?;
        Ok(docs.into_iter().filter_map(ReportDoc::into_domain).collect())
    }
}

fn status_of(status: ReportStatus) -> Result<bson::Bson, StoreError> {
    bson::to_bson(&status).map_err(|e| StoreError::Corrupt(e.into()))
}

#[async_trait]
impl RightsStore for MongoStore {
    async fn insert_report(&self, report: &Report) -> Result<(), StoreError> {
        self.reports().insert_one(ReportDoc::of(report)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_user_reports(&self, user: UserId, limit: usize) -> Result<Vec<Report>, StoreError> {
        self.find_reports(doc! {"user_id": user.to_string()}, limit).await
    }

    async fn list_reports(&self, status: Option<ReportStatus>, limit: usize) -> Result<Vec<Report>, StoreError> {
        let filter = match status {
            Some(status) => doc! {"status": status_of(status)?},
            None => doc! {},
        };
        self.find_reports(filter, limit).await
    }

    async fn delete_report(&self, id: &str) -> Result<(), StoreError> {
        self.reports().delete_one(doc! {"_id": id}).await.map_err(unavailable)?;
        Ok(())
    }

    async fn decide_report(
        &self,
        id: &str,
        status: ReportStatus,
        decision: &ReportDecision,
    ) -> Result<bool, StoreError> {
        let filter = doc! {"_id": id, "status": status_of(ReportStatus::Pending)?};
        let decided = doc! {"by": &decision.by, "at_ms": decision.at.timestamp_millis(), "note": &decision.note};
        let update = doc! {"$set": {"status": status_of(status)?, "decision": decided}};
        let updated = self.reports().update_one(filter, update).await.map_err(unavailable)?;
        Ok(updated.modified_count == 1)
    }

    async fn schedule_deletion(&self, user: UserId, due: Option<DateTime<Utc>>) -> Result<bool, StoreError> {
        let due_ms = due.map_or(0, |d| d.timestamp_millis());
        let users: Collection<Document> = self.db.collection("users");
        let updated = users
            .update_one(doc! {"user_id": user.to_string()}, doc! {"$set": {"deletion_due_ms": due_ms}})
            .await
            .map_err(unavailable)?;
        Ok(updated.matched_count == 1)
    }

    async fn due_deletions(&self, at: DateTime<Utc>, limit: usize) -> Result<Vec<User>, StoreError> {
        let filter = doc! {"deletion_due_ms": {"$gt": 0, "$lte": at.timestamp_millis()}};
        self.find_users(filter, limit).await
    }

    async fn erase_user(&self, user: &User, record: &str) -> Result<(), StoreError> {
        let id = user.id.to_string();
        let mine = doc! {"user_id": &id};
        for collection in ["conversations", "messages", "memories", "memory_jobs", "sends", "safety_events"] {
            let documents: Collection<Document> = self.db.collection(collection);
            documents.delete_many(mine.clone()).await.map_err(unavailable)?;
        }
        self.export_parts().delete_many(mine.clone()).await.map_err(unavailable)?;
        self.exports().delete_many(mine.clone()).await.map_err(unavailable)?;
        // Reports still open are kept until handled (a complaint outlives the account).
        let closed = doc! {"user_id": &id, "status": {"$in": [status_of(ReportStatus::Accepted)?, status_of(ReportStatus::Dismissed)?]}};
        self.reports().delete_many(closed).await.map_err(unavailable)?;
        // Every counter of the user has the user id in its key (quotas, rate limits,
        // minor mode's time, running replies, the day's active marker).
        let counters: Collection<Document> = self.db.collection("counters");
        counters.delete_many(doc! {"_id": {"$regex": regex_literal(&id)}}).await.map_err(unavailable)?;
        // An API key that checked content as this user checks as nobody now.
        let keys: Collection<Document> = self.db.collection("api_keys");
        keys.update_many(doc! {"check_as": &id}, doc! {"$unset": {"check_as": ""}}).await.map_err(unavailable)?;
        // Last: the openid's mapping, so a new sign-in starts a new, empty user.
        let users: Collection<Document> = self.db.collection("users");
        users.delete_one(mine).await.map_err(unavailable)?;
        let deletions: Collection<Document> = self.db.collection("deletions");
        deletions.insert_one(doc! {"record": record, "at": bson::DateTime::now()}).await.map_err(unavailable)?;
        Ok(())
    }

    async fn insert_export(&self, export: &DataExport) -> Result<(), StoreError> {
        let document = ExportDoc {
            id: export.id.clone(),
            user_id: export.user_id.to_string(),
            status: export.status,
            created_ms: export.created_at.timestamp_millis(),
            expires_ms: export.expires_at.timestamp_millis(),
            expires_at: bson::DateTime::from_millis(export.expires_at.timestamp_millis()),
            parts: 0,
        };
        self.exports().insert_one(document).await.map_err(unavailable)?;
        Ok(())
    }

    async fn save_export_part(&self, export: &DataExport, index: u32, data: &str) -> Result<(), StoreError> {
        let part = PartDoc {
            id: format!("{}:{index}", export.id),
            export_id: export.id.clone(),
            user_id: export.user_id.to_string(),
            expires_at: bson::DateTime::from_millis(export.expires_at.timestamp_millis()),
            data: data.to_string(),
        };
        self.export_parts().insert_one(part).await.map_err(unavailable)?;
        Ok(())
    }

    async fn finish_export(&self, id: &str, status: ExportStatus, parts: u32) -> Result<(), StoreError> {
        let status = bson::to_bson(&status).map_err(|e| StoreError::Corrupt(e.into()))?;
        let update = doc! {"$set": {"status": status, "parts": i64::from(parts)}};
        self.exports().update_one(doc! {"_id": id}, update).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get_export(&self, user: UserId, id: &str) -> Result<Option<DataExport>, StoreError> {
        let found =
            self.exports().find_one(doc! {"_id": id, "user_id": user.to_string()}).await.map_err(unavailable)?;
        Ok(found.and_then(|d| {
            Some(DataExport {
                id: d.id,
                user_id: UserId::parse(&d.user_id)?,
                status: d.status,
                created_at: from_millis(d.created_ms),
                expires_at: from_millis(d.expires_ms),
                parts: u32::try_from(d.parts).unwrap_or(0),
            })
        }))
    }

    async fn read_export_part(&self, id: &str, index: u32) -> Result<Option<String>, StoreError> {
        let found = self.export_parts().find_one(doc! {"_id": format!("{id}:{index}")}).await.map_err(unavailable)?;
        Ok(found.map(|p| p.data))
    }
}

/// A regular expression matching `text` literally.
fn regex_literal(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}
