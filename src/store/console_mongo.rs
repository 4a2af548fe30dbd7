//! The console's collections in MongoDB: `operators` (by name), `operator_sessions` (by
//! token hash; expired ones removed by a TTL index), `audit_log` and `api_keys`.
use std::collections::BTreeMap;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};

use super::compat::lenient_bool;
use super::console::ConsoleStore;
use super::mongo::{find_all, from_bson_date, to_bson_date, unavailable};
use super::{MongoStore, StoreError};
use crate::chat::Persona;
use crate::domain::{ApiKey, AuditAction, AuditEntry, Operator, OperatorName, OperatorRole, OperatorSession};

#[derive(Debug, Serialize, Deserialize)]
struct OperatorDoc {
    #[serde(rename = "_id")]
    name: String,
    role: OperatorRole,
    password_hash: String,
    /// Set by `$set` on a password change: read leniently (`compat.rs`, gap 9).
    #[serde(deserialize_with = "lenient_bool")]
    must_change_password: bool,
    #[serde(deserialize_with = "lenient_bool")]
    disabled: bool,
    created_at: bson::DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionDoc {
    #[serde(rename = "_id")]
    token_hash: String,
    operator: String,
    csrf_token: String,
    created_at: bson::DateTime,
    expires_at: bson::DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuditDoc {
    at: bson::DateTime,
    actor: String,
    action: AuditAction,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ApiKeyDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    key_hash: String,
    prefix: String,
    per_minute: i64,
    #[serde(default)]
    daily_tokens: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check_as: Option<String>,
    created_by: String,
    created_at: bson::DateTime,
    /// Epoch milliseconds: set by `$set`, where the test server stores a date as a string
    /// (`compat.rs`, gap 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_ms: Option<i64>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(anyhow::anyhow!("console: bad {what}"))
}

impl OperatorDoc {
    fn of(o: &Operator) -> Self {
        Self {
            name: o.name.as_str().to_string(),
            role: o.role,
            password_hash: o.password_hash.clone(),
            must_change_password: o.must_change_password,
            disabled: o.disabled,
            created_at: to_bson_date(o.created_at),
        }
    }
    fn into_domain(self) -> Result<Operator, StoreError> {
        Ok(Operator {
            name: OperatorName::parse(&self.name).map_err(|_| corrupt("operator name"))?,
            role: self.role,
            password_hash: self.password_hash,
            must_change_password: self.must_change_password,
            disabled: self.disabled,
            created_at: from_bson_date(self.created_at),
        })
    }
}

impl SessionDoc {
    fn into_domain(self) -> Result<OperatorSession, StoreError> {
        Ok(OperatorSession {
            token_hash: self.token_hash,
            operator: OperatorName::parse(&self.operator).map_err(|_| corrupt("session operator"))?,
            csrf_token: self.csrf_token,
            created_at: from_bson_date(self.created_at),
            expires_at: from_bson_date(self.expires_at),
        })
    }
}

impl ApiKeyDoc {
    fn of(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            key_hash: k.key_hash.clone(),
            prefix: k.prefix.clone(),
            per_minute: i64::from(k.per_minute),
            daily_tokens: k.daily_tokens,
            check_as: k.check_as.map(|u| u.to_string()),
            created_by: k.created_by.clone(),
            created_at: to_bson_date(k.created_at),
            revoked_ms: k.revoked_at.map(|t| t.timestamp_millis()),
        }
    }
    fn into_domain(self) -> ApiKey {
        ApiKey {
            id: self.id,
            name: self.name,
            key_hash: self.key_hash,
            prefix: self.prefix,
            per_minute: u32::try_from(self.per_minute).unwrap_or(0),
            daily_tokens: self.daily_tokens.max(0),
            check_as: self.check_as.as_deref().and_then(crate::domain::UserId::parse),
            created_by: self.created_by,
            created_at: from_bson_date(self.created_at),
            revoked_at: self.revoked_ms.map(super::mongo::from_millis),
        }
    }
}

/// The companions, in one document (`_id: "catalog"`), so a save replaces them all at
/// once and only from the revision it read.
#[derive(Debug, Serialize, Deserialize)]
struct CatalogDoc {
    #[serde(rename = "_id")]
    key: String,
    revision: i64,
    personas: Vec<Persona>,
}

const CATALOG: &str = "catalog";

impl MongoStore {
    fn personas(&self) -> Collection<CatalogDoc> {
        self.db.collection("personas")
    }
    fn operators(&self) -> Collection<OperatorDoc> {
        self.db.collection("operators")
    }
    fn operator_sessions(&self) -> Collection<SessionDoc> {
        self.db.collection("operator_sessions")
    }
    fn audit_log(&self) -> Collection<AuditDoc> {
        self.db.collection("audit_log")
    }
    fn api_keys(&self) -> Collection<ApiKeyDoc> {
        self.db.collection("api_keys")
    }

    pub(super) async fn ensure_console_indexes(&self) -> anyhow::Result<()> {
        let ttl = IndexOptions::builder().expire_after(std::time::Duration::from_secs(0)).build();
        self.operator_sessions()
            .create_index(IndexModel::builder().keys(doc! {"expires_at": 1}).options(ttl).build())
            .await
            .context("creating operator sessions TTL index")?;
        self.operator_sessions()
            .create_index(IndexModel::builder().keys(doc! {"operator": 1}).build())
            .await
            .context("creating operator sessions index")?;
        self.audit_log()
            .create_index(IndexModel::builder().keys(doc! {"at": -1}).build())
            .await
            .context("creating audit log index")?;
        let unique = IndexOptions::builder().unique(true).build();
        self.api_keys()
            .create_index(IndexModel::builder().keys(doc! {"key_hash": 1}).options(unique).build())
            .await
            .context("creating API keys index")?;
        Ok(())
    }
}

#[async_trait]
impl ConsoleStore for MongoStore {
    async fn insert_operator(&self, operator: &Operator) -> Result<bool, StoreError> {
        match self.operators().insert_one(OperatorDoc::of(operator)).await {
            Ok(_) => Ok(true),
            Err(e) if super::mongo::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_operator(&self, name: &OperatorName) -> Result<Option<Operator>, StoreError> {
        let found = self.operators().find_one(doc! {"_id": name.as_str()}).await.map_err(unavailable)?;
        found.map(OperatorDoc::into_domain).transpose()
    }

    async fn save_operator(&self, operator: &Operator) -> Result<bool, StoreError> {
        let replaced = self
            .operators()
            .replace_one(doc! {"_id": operator.name.as_str()}, OperatorDoc::of(operator))
            .await
            .map_err(unavailable)?;
        Ok(replaced.matched_count == 1)
    }

    async fn change_operator_password(
        &self,
        name: &OperatorName,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .operators()
            .update_one(
                doc! {"_id": name.as_str(), "password_hash": old_hash, "disabled": false},
                doc! {"$set": {"password_hash": new_hash, "must_change_password": false}},
            )
            .await
            .map_err(unavailable)?;
        Ok(changed.matched_count == 1)
    }

    async fn list_operators(&self) -> Result<Vec<Operator>, StoreError> {
        let docs: Vec<OperatorDoc> = find_all(self.operators().find(doc! {}).sort(doc! {"_id": 1})).await?;
        docs.into_iter().map(OperatorDoc::into_domain).collect()
    }

    async fn insert_operator_session(&self, session: &OperatorSession) -> Result<(), StoreError> {
        let document = SessionDoc {
            token_hash: session.token_hash.clone(),
            operator: session.operator.as_str().to_string(),
            csrf_token: session.csrf_token.clone(),
            created_at: to_bson_date(session.created_at),
            expires_at: to_bson_date(session.expires_at),
        };
        self.operator_sessions().insert_one(document).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get_operator_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OperatorSession>, StoreError> {
        // The TTL monitor runs about once a minute: expiry is also checked here.
        let filter = doc! {"_id": token_hash, "expires_at": {"$gt": to_bson_date(now)}};
        let found = self.operator_sessions().find_one(filter).await.map_err(unavailable)?;
        found.map(SessionDoc::into_domain).transpose()
    }

    async fn delete_operator_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.operator_sessions().delete_one(doc! {"_id": token_hash}).await.map_err(unavailable)?;
        Ok(())
    }

    async fn delete_operator_sessions(&self, name: &OperatorName) -> Result<u64, StoreError> {
        let deleted =
            self.operator_sessions().delete_many(doc! {"operator": name.as_str()}).await.map_err(unavailable)?;
        Ok(deleted.deleted_count)
    }

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let document = AuditDoc {
            at: to_bson_date(entry.at),
            actor: entry.actor.clone(),
            action: entry.action,
            target: entry.target.clone(),
            reason: entry.reason.clone(),
        };
        self.audit_log().insert_one(document).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let docs: Vec<AuditDoc> =
            find_all(self.audit_log().find(doc! {}).sort(doc! {"at": -1, "_id": -1}).limit(limit as i64)).await?;
        Ok(docs
            .into_iter()
            .map(|d| AuditEntry {
                at: from_bson_date(d.at),
                actor: d.actor,
                action: d.action,
                target: d.target,
                reason: d.reason,
            })
            .collect())
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.api_keys().insert_one(ApiKeyDoc::of(key)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let found = self.api_keys().find_one(doc! {"key_hash": key_hash}).await.map_err(unavailable)?;
        Ok(found.map(ApiKeyDoc::into_domain))
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let docs: Vec<ApiKeyDoc> =
            find_all(self.api_keys().find(doc! {}).sort(doc! {"created_at": -1, "_id": -1})).await?;
        Ok(docs.into_iter().map(ApiKeyDoc::into_domain).collect())
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let revoked = self
            .api_keys()
            .update_one(
                doc! {"_id": id, "revoked_ms": {"$exists": false}},
                doc! {"$set": {"revoked_ms": at.timestamp_millis()}},
            )
            .await
            .map_err(unavailable)?;
        Ok(revoked.modified_count == 1)
    }

    async fn bump_daily_stats(&self, day: &str, bumps: &[(String, i64)]) -> Result<(), StoreError> {
        let mut inc = bson::Document::new();
        for (name, by) in bumps {
            inc.insert(name.clone(), *by);
        }
        self.db
            .collection::<bson::Document>("daily_stats")
            .update_one(doc! {"_id": day}, doc! {"$inc": inc})
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn read_daily_stats(&self, days: &[String]) -> Result<Vec<(String, BTreeMap<String, i64>)>, StoreError> {
        let docs: Vec<bson::Document> =
            find_all(self.db.collection::<bson::Document>("daily_stats").find(doc! {"_id": {"$in": days}})).await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                let day = d.get_str("_id").ok()?.to_string();
                let counters = d
                    .iter()
                    .filter_map(|(k, v)| match v {
                        bson::Bson::Int32(n) => Some((k.clone(), i64::from(*n))),
                        bson::Bson::Int64(n) => Some((k.clone(), *n)),
                        bson::Bson::Double(n) => Some((k.clone(), *n as i64)),
                        _ => None,
                    })
                    .collect();
                Some((day, counters))
            })
            .collect())
    }

    async fn load_personas(&self) -> Result<(i64, Vec<Persona>), StoreError> {
        let found = self
            .personas()
            .find_one(doc! {"_id": CATALOG})
            .await
            .map_err(|e| StoreError::Corrupt(anyhow::anyhow!("unreadable personas: {e}")))?;
        Ok(found.map_or((0, Vec::new()), |c| (c.revision, c.personas)))
    }

    async fn save_personas(&self, personas: &[Persona], revision: i64) -> Result<bool, StoreError> {
        let document = CatalogDoc { key: CATALOG.into(), revision: revision + 1, personas: personas.to_vec() };
        if revision == 0 {
            return match self.personas().insert_one(document).await {
                Ok(_) => Ok(true),
                Err(e) if super::mongo::is_duplicate_key(&e) => Ok(false),
                Err(e) => Err(unavailable(e)),
            };
        }
        let replaced = self
            .personas()
            .replace_one(doc! {"_id": CATALOG, "revision": revision}, document)
            .await
            .map_err(unavailable)?;
        Ok(replaced.matched_count == 1)
    }
}
