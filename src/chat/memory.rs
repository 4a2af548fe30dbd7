//! What a companion remembers about its user, and the user's control over it: see,
//! correct and delete what a persona keeps (only personas the user may use).
use super::personas::Persona;
use super::service::{ChatError, ChatService};
use crate::domain::{now, MemoryFact, MemoryId, MemoryText, UserId};

impl ChatService {
    /// The persona `persona_id` if this user may use it.
    async fn usable_persona(&self, user: UserId, persona_id: &str) -> Result<&Persona, ChatError> {
        let visible = self.personas_for(user).await?;
        visible.into_iter().find(|p| p.id == persona_id).ok_or(ChatError::PersonaNotFound)
    }

    pub async fn memories(&self, user: UserId, persona_id: &str) -> Result<Vec<MemoryFact>, ChatError> {
        let persona = self.usable_persona(user, persona_id).await?;
        Ok(self.store.list_memories(user, &persona.id).await?)
    }

    pub async fn correct_memory(
        &self,
        user: UserId,
        persona_id: &str,
        id: MemoryId,
        text: &MemoryText,
    ) -> Result<MemoryFact, ChatError> {
        let persona = self.usable_persona(user, persona_id).await?;
        let updated = self.store.update_memory(user, &persona.id, id, text, now()).await?;
        updated.ok_or(ChatError::MemoryNotFound)
    }

    pub async fn forget_memory(&self, user: UserId, persona_id: &str, id: MemoryId) -> Result<(), ChatError> {
        let persona = self.usable_persona(user, persona_id).await?;
        match self.store.delete_memory(user, &persona.id, id).await? {
            true => Ok(()),
            false => Err(ChatError::MemoryNotFound),
        }
    }

    /// Forgets everything `persona_id` remembers about `user`; how many facts that was.
    pub async fn forget_all(&self, user: UserId, persona_id: &str) -> Result<u64, ChatError> {
        let persona = self.usable_persona(user, persona_id).await?;
        Ok(self.store.delete_memories(user, &persona.id).await?)
    }
}
