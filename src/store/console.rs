//! What the operator console keeps: operators, their sessions, the audit log and API
//! keys. A trait of its own (every store is also a `ConsoleStore`), with the in-process
//! implementation here and MongoDB's in `console_mongo.rs`.
use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{InMemoryStore, StoreError};
use crate::chat::Persona;
use crate::domain::{ApiKey, AuditEntry, Operator, OperatorName, OperatorSession};

#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Adds an operator; false when the name is taken.
    async fn insert_operator(&self, operator: &Operator) -> Result<bool, StoreError>;
    async fn get_operator(&self, name: &OperatorName) -> Result<Option<Operator>, StoreError>;
    /// Replaces the stored operator of that name (false when there is none).
    async fn save_operator(&self, operator: &Operator) -> Result<bool, StoreError>;
    async fn list_operators(&self) -> Result<Vec<Operator>, StoreError>;
    /// Replaces the password, only if it is still `old_hash` and the account is enabled (a
    /// disable or another change meanwhile wins); clears "must change". Whether it changed.
    async fn change_operator_password(
        &self,
        name: &OperatorName,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError>;

    async fn insert_operator_session(&self, session: &OperatorSession) -> Result<(), StoreError>;
    /// The session with this token hash, unless it expired by `now`.
    async fn get_operator_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OperatorSession>, StoreError>;
    async fn delete_operator_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of the operator; how many there were.
    async fn delete_operator_sessions(&self, name: &OperatorName) -> Result<u64, StoreError>;

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest `limit` entries, newest first.
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// The key with this hash, revoked or not.
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Every key, newest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key at `at`; false when there is no such key or it was revoked already.
    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Adds to counters of the day's figures document (created at zero), in one write.
    async fn bump_daily_stats(&self, day: &str, bumps: &[(String, i64)]) -> Result<(), StoreError>;
    /// The figures documents of these days (those that exist).
    async fn read_daily_stats(&self, days: &[String]) -> Result<Vec<(String, BTreeMap<String, i64>)>, StoreError>;

    /// The companions, in their order, and the catalog's revision (0 and none until seeded).
    async fn load_personas(&self) -> Result<(i64, Vec<Persona>), StoreError>;
    /// Replaces the whole catalog, only if it is still at `revision` (two admins saving at
    /// once cannot both win); whether it was saved.
    async fn save_personas(&self, personas: &[Persona], revision: i64) -> Result<bool, StoreError>;
}

#[derive(Default)]
pub(super) struct MemoryConsole {
    operators: HashMap<OperatorName, Operator>,
    sessions: HashMap<String, OperatorSession>,
    audit: Vec<AuditEntry>,
    api_keys: Vec<ApiKey>,
    personas: (i64, Vec<Persona>),
    daily: HashMap<String, BTreeMap<String, i64>>,
}

impl MemoryConsole {
    pub(super) fn api_keys_mut(&mut self) -> impl Iterator<Item = &mut ApiKey> {
        self.api_keys.iter_mut()
    }
}

impl InMemoryStore {
    fn console(&self) -> std::sync::MutexGuard<'_, MemoryConsole> {
        self.console.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ConsoleStore for InMemoryStore {
    async fn insert_operator(&self, operator: &Operator) -> Result<bool, StoreError> {
        let mut console = self.console();
        if console.operators.contains_key(&operator.name) {
            return Ok(false);
        }
        console.operators.insert(operator.name.clone(), operator.clone());
        Ok(true)
    }

    async fn get_operator(&self, name: &OperatorName) -> Result<Option<Operator>, StoreError> {
        Ok(self.console().operators.get(name).cloned())
    }

    async fn save_operator(&self, operator: &Operator) -> Result<bool, StoreError> {
        let mut console = self.console();
        let Some(stored) = console.operators.get_mut(&operator.name) else { return Ok(false) };
        *stored = operator.clone();
        Ok(true)
    }

    async fn change_operator_password(
        &self,
        name: &OperatorName,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut console = self.console();
        let Some(operator) = console.operators.get_mut(name) else { return Ok(false) };
        if operator.password_hash != old_hash || operator.disabled {
            return Ok(false);
        }
        operator.password_hash = new_hash.to_string();
        operator.must_change_password = false;
        Ok(true)
    }

    async fn list_operators(&self) -> Result<Vec<Operator>, StoreError> {
        let mut operators: Vec<Operator> = self.console().operators.values().cloned().collect();
        operators.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(operators)
    }

    async fn insert_operator_session(&self, session: &OperatorSession) -> Result<(), StoreError> {
        self.console().sessions.insert(session.token_hash.clone(), session.clone());
        Ok(())
    }

    async fn get_operator_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OperatorSession>, StoreError> {
        Ok(self.console().sessions.get(token_hash).filter(|s| s.expires_at > now).cloned())
    }

    async fn delete_operator_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.console().sessions.remove(token_hash);
        Ok(())
    }

    async fn delete_operator_sessions(&self, name: &OperatorName) -> Result<u64, StoreError> {
        let mut console = self.console();
        let before = console.sessions.len();
        console.sessions.retain(|_, s| &s.operator != name);
        Ok((before - console.sessions.len()) as u64)
    }

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.console().audit.push(entry.clone());
        Ok(())
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.console().audit.iter().rev().take(limit).cloned().collect())
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.console().api_keys.push(key.clone());
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.console().api_keys.iter().find(|k| k.key_hash == key_hash).cloned())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        Ok(self.console().api_keys.iter().rev().cloned().collect())
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut console = self.console();
        let Some(key) = console.api_keys.iter_mut().find(|k| k.id == id && k.revoked_at.is_none()) else {
            return Ok(false);
        };
        key.revoked_at = Some(at);
        Ok(true)
    }

    async fn bump_daily_stats(&self, day: &str, bumps: &[(String, i64)]) -> Result<(), StoreError> {
        let mut console = self.console();
        let counters = console.daily.entry(day.to_string()).or_default();
        for (name, by) in bumps {
            *counters.entry(name.clone()).or_default() += by;
        }
        Ok(())
    }

    async fn read_daily_stats(&self, days: &[String]) -> Result<Vec<(String, BTreeMap<String, i64>)>, StoreError> {
        let console = self.console();
        Ok(days.iter().filter_map(|d| console.daily.get(d).map(|c| (d.clone(), c.clone()))).collect())
    }

    async fn load_personas(&self) -> Result<(i64, Vec<Persona>), StoreError> {
        Ok(self.console().personas.clone())
    }

    async fn save_personas(&self, personas: &[Persona], revision: i64) -> Result<bool, StoreError> {
        let mut console = self.console();
        if console.personas.0 != revision {
            return Ok(false);
        }
        console.personas = (revision + 1, personas.to_vec());
        Ok(true)
    }
}
