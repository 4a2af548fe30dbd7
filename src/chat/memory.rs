//! What a companion remembers about its user, and the user's control over it: see and
//! delete what any persona keeps about them (also one no longer offered to them), and
//! correct it (a persona they may use; the new text passes the content check).
use super::personas::Persona;
use super::service::{ChatError, ChatService};
use crate::domain::{now, MemoryFact, MemoryId, MemoryText, UserId};

impl ChatService {
    /// The persona `persona_id` if this user may use it.
    async fn usable_persona(&self, user: UserId, persona_id: &str) -> Result<Persona, ChatError> {
        let visible = self.personas_for(user).await?;
        visible.into_iter().find(|p| p.id == persona_id).ok_or(ChatError::PersonaNotFound)
    }

    pub async fn memories(&self, user: UserId, persona_id: &str) -> Result<Vec<MemoryFact>, ChatError> {
        Ok(self.store.list_memories(user, persona_id).await?)
    }

    pub async fn correct_memory(
        &self,
        user: UserId,
        persona_id: &str,
        id: MemoryId,
        text: &MemoryText,
    ) -> Result<MemoryFact, ChatError> {
        let persona = self.usable_persona(user, persona_id).await?;
        self.screen_memory(user, text).await?;
        let updated = self.store.update_memory(user, &persona.id, id, text, now()).await?;
        updated.ok_or(ChatError::MemoryNotFound)
    }

    pub async fn forget_memory(&self, user: UserId, persona_id: &str, id: MemoryId) -> Result<(), ChatError> {
        match self.store.delete_memory(user, persona_id, id).await? {
            true => Ok(()),
            false => Err(ChatError::MemoryNotFound),
        }
    }

    /// Forgets everything `persona_id` remembers about `user`; how many facts that was.
    pub async fn forget_all(&self, user: UserId, persona_id: &str) -> Result<u64, ChatError> {
        Ok(self.store.delete_memories(user, persona_id, now()).await?)
    }

    /// A corrected memory reaches every later prompt: it passes the same check as a message.
    async fn screen_memory(&self, user: UserId, text: &MemoryText) -> Result<(), ChatError> {
        let Some(moderator) = &self.moderator else { return Ok(()) };
        let user = self.store.get_user(user).await?.ok_or(ChatError::MemoryNotFound)?;
        match moderator.screen_input(&user.openid, text.as_str()).await {
            Err(()) => Err(ChatError::ModerationUnavailable),
            Ok(crate::protection::Decision::Allow) => Ok(()),
            Ok(crate::protection::Decision::Block { .. }) => Err(ChatError::ContentRejected),
        }
    }
}
