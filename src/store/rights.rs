//! What users' rights keep (reports, exports, scheduled deletions) and the erasure of an
//! account, behind their own seam; the in-process implementation.
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{InMemoryStore, StoreError};
use crate::domain::{DataExport, ExportStatus, Report, ReportDecision, ReportStatus, User, UserId};

#[async_trait]
pub trait RightsStore: Send + Sync {
    async fn insert_report(&self, report: &Report) -> Result<(), StoreError>;
    /// The user's reports, newest first.
    async fn list_user_reports(&self, user: UserId, limit: usize) -> Result<Vec<Report>, StoreError>;
    /// Everyone's reports (optionally of one status), newest first.
    async fn list_reports(&self, status: Option<ReportStatus>, limit: usize) -> Result<Vec<Report>, StoreError>;
    async fn delete_report(&self, id: &str) -> Result<(), StoreError>;
    /// Decides a pending report; false when there is none with that id still pending.
    async fn decide_report(
        &self,
        id: &str,
        status: ReportStatus,
        decision: &ReportDecision,
    ) -> Result<bool, StoreError>;

    /// Schedules (or with `None` cancels) the account's erasure; false without the user.
    async fn schedule_deletion(&self, user: UserId, due: Option<DateTime<Utc>>) -> Result<bool, StoreError>;
    /// Accounts whose scheduled erasure is due.
    async fn due_deletions(&self, at: DateTime<Utc>, limit: usize) -> Result<Vec<User>, StoreError>;
    /// Erases everything kept about the user, and the openid's mapping, except reports
    /// still open (kept until handled, README "User rights"); records the deletion
    /// without personal content.
    async fn erase_user(&self, user: &User, record: &str) -> Result<(), StoreError>;

    async fn insert_export(&self, export: &DataExport) -> Result<(), StoreError>;
    async fn save_export_part(&self, export: &DataExport, index: u32, data: &str) -> Result<(), StoreError>;
    async fn finish_export(&self, id: &str, status: ExportStatus, parts: u32) -> Result<(), StoreError>;
    /// The user's export (never another user's).
    async fn get_export(&self, user: UserId, id: &str) -> Result<Option<DataExport>, StoreError>;
    async fn read_export_part(&self, id: &str, index: u32) -> Result<Option<String>, StoreError>;
}

#[async_trait]
impl RightsStore for InMemoryStore {
    async fn insert_report(&self, report: &Report) -> Result<(), StoreError> {
        self.lock().reports.push(report.clone());
        Ok(())
    }

    async fn list_user_reports(&self, user: UserId, limit: usize) -> Result<Vec<Report>, StoreError> {
        let inner = self.lock();
        Ok(inner.reports.iter().rev().filter(|r| r.user_id == user).take(limit).cloned().collect())
    }

    async fn list_reports(&self, status: Option<ReportStatus>, limit: usize) -> Result<Vec<Report>, StoreError> {
        let inner = self.lock();
        let matching = inner.reports.iter().rev().filter(|r| status.is_none_or(|s| r.status == s));
        Ok(matching.take(limit).cloned().collect())
    }

    async fn delete_report(&self, id: &str) -> Result<(), StoreError> {
        self.lock().reports.retain(|r| r.id != id);
        Ok(())
    }

    async fn decide_report(
        &self,
        id: &str,
        status: ReportStatus,
        decision: &ReportDecision,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(report) = inner.reports.iter_mut().find(|r| r.id == id && r.status == ReportStatus::Pending) else {
            return Ok(false);
        };
        report.status = status;
        report.decision = Some(decision.clone());
        Ok(true)
    }

    async fn schedule_deletion(&self, user: UserId, due: Option<DateTime<Utc>>) -> Result<bool, StoreError> {
        Ok(self.lock().users.get_mut(&user).map(|u| u.deletion_due = due).is_some())
    }

    async fn due_deletions(&self, at: DateTime<Utc>, limit: usize) -> Result<Vec<User>, StoreError> {
        let inner = self.lock();
        let due = inner.users.values().filter(|u| u.deletion_due.is_some_and(|d| d <= at));
        Ok(due.take(limit).cloned().collect())
    }

    async fn erase_user(&self, user: &User, record: &str) -> Result<(), StoreError> {
        self.lock().erase(user, record);
        for key in self.console.lock().unwrap_or_else(|p| p.into_inner()).api_keys_mut() {
            if key.check_as == Some(user.id) {
                key.check_as = None;
            }
        }
        Ok(())
    }

    async fn insert_export(&self, export: &DataExport) -> Result<(), StoreError> {
        self.lock().exports.insert(export.id.clone(), (export.clone(), Vec::new()));
        Ok(())
    }

    async fn save_export_part(&self, export: &DataExport, index: u32, data: &str) -> Result<(), StoreError> {
        if let Some((_, parts)) = self.lock().exports.get_mut(&export.id) {
            parts.resize(parts.len().max(index as usize + 1), String::new());
            parts[index as usize] = data.to_string();
        }
        Ok(())
    }

    async fn finish_export(&self, id: &str, status: ExportStatus, parts: u32) -> Result<(), StoreError> {
        if let Some((export, _)) = self.lock().exports.get_mut(id) {
            export.status = status;
            export.parts = parts;
        }
        Ok(())
    }

    async fn get_export(&self, user: UserId, id: &str) -> Result<Option<DataExport>, StoreError> {
        Ok(self.lock().exports.get(id).map(|(e, _)| e.clone()).filter(|e| e.user_id == user))
    }

    async fn read_export_part(&self, id: &str, index: u32) -> Result<Option<String>, StoreError> {
        Ok(self.lock().exports.get(id).and_then(|(_, parts)| parts.get(index as usize).cloned()))
    }
}
