//! The companions in effect: kept in the store (edited in the console) and re-read by every
//! replica every few seconds, so a change needs no new version. `config/personas.toml`
//! seeds an empty store (and is all there is until the store answers).
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::personas::{Persona, Personas};
use crate::store::{DynStore, StoreError};

pub struct PersonaCatalog {
    current: RwLock<Arc<Personas>>,
}

impl PersonaCatalog {
    pub fn new(seed: Personas) -> Self {
        Self { current: RwLock::new(Arc::new(seed)) }
    }

    /// The personas now (a snapshot: a change later does not alter it).
    pub fn current(&self) -> Arc<Personas> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, personas: Personas) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(personas);
    }

    /// Reads the store's personas (seeding an empty store with the current ones) and uses
    /// them. A stored set that breaks the rules is logged and ignored.
    pub async fn sync(&self, store: &DynStore) -> Result<bool, StoreError> {
        let (revision, stored) = store.load_personas().await?;
        if stored.is_empty() {
            let seed = self.current();
            if store.save_personas(seed.all(), revision).await? {
                tracing::info!(personas = seed.all().len(), "seeded the store's personas from the personas file");
            }
            return Ok(false);
        }
        if stored.as_slice() == self.current().all() {
            return Ok(false);
        }
        match Personas::from_list(stored) {
            Ok(personas) => {
                self.replace(personas);
                tracing::info!("personas changed; now in effect");
                Ok(true)
            }
            Err(e) => {
                tracing::error!(error = %e, "the stored personas are invalid; keeping the previous ones");
                Ok(false)
            }
        }
    }

    /// Saves one persona (a new one goes last) into the stored catalog, checked with every
    /// other under the catalog's rules, from the revision read: if another save came first,
    /// nothing is written (`Conflict`). Used here at once.
    pub async fn save(&self, store: &DynStore, persona: Persona) -> Result<(), SaveError> {
        let (revision, stored) = store.load_personas().await?;
        let mut all = if stored.is_empty() { self.current().all().to_vec() } else { stored };
        match all.iter().position(|p| p.id == persona.id) {
            Some(i) => all[i] = persona,
            None => all.push(persona),
        }
        let checked = Personas::from_list(all).map_err(|e| SaveError::Invalid(format!("{e:#}")))?;
        if !store.save_personas(checked.all(), revision).await? {
            return Err(SaveError::Conflict);
        }
        self.replace(checked);
        Ok(())
    }

    /// Re-reads the store every `every` until `stop`.
    pub async fn watch(self: Arc<Self>, store: DynStore, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.sync(&store).await {
                tracing::warn!(error = ?e, "could not re-read the personas; keeping the current ones");
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    Invalid(String),
    #[error("another save came first")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}
