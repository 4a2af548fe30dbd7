//! In-app preview during a gray release (灰度发布): testers listed in `PREVIEW_OPENIDS`
//! see personas marked `preview` and get `PREVIEW_MODEL`, on every transport, before
//! everyone else. The check is by openid, because the platform's own gray rules cannot
//! tell the service which users are testers.
use std::collections::HashSet;

use crate::domain::{User, UserId};
use crate::store::{DynStore, StoreError};

#[derive(Debug, Clone, Default)]
pub struct PreviewAccess {
    openids: HashSet<String>,
    model: Option<String>,
}

impl PreviewAccess {
    pub fn new(openids: Vec<String>, model: Option<String>) -> Self {
        Self { openids: openids.into_iter().collect(), model: model.filter(|m| !m.trim().is_empty()) }
    }

    /// Whether this user is a tester (no store lookup when nobody is).
    pub async fn is_tester(&self, store: &DynStore, user: UserId) -> Result<bool, StoreError> {
        if self.openids.is_empty() {
            return Ok(false);
        }
        Ok(store.get_user(user).await?.is_some_and(|u| self.includes(&u)))
    }

    /// Whether this (already loaded) user is a tester.
    pub fn includes(&self, user: &User) -> bool {
        self.openids.contains(user.openid.as_str())
    }

    pub fn model_for(&self, tester: bool) -> Option<&str> {
        self.model.as_deref().filter(|_| tester)
    }
}
