//! The companions as the OpenAI-compatible API sees them: the public personas, and one
//! stateless completion with a persona's prompt and settings, under the instance's cap.
use super::context::estimate_tokens;
use super::personas::Persona;
use super::service::{ChatError, ChatService};
use super::Slot;
use crate::domain::OpenId;
use crate::llm::{ChatMessage, ChatRequest, LlmStream};
use crate::protection::{Decision, OutputModeration};

/// What an API caller asks for, already parsed.
pub struct ApiCompletion {
    pub persona_id: String,
    /// The caller's system text (joined), placed after the persona's prompt.
    pub system: Option<String>,
    /// User and assistant turns, oldest first, ending with the user's.
    pub turns: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Stable per API key, never a user's id.
    pub caller_hash: String,
    /// Whose openid msgSecCheck is asked with (the key's content-check identity).
    pub check_as: Option<OpenId>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiCompletionError {
    #[error("no such model")]
    UnknownModel,
    #[error("the messages are longer than this companion's context ({budget} tokens)")]
    TooLong { budget: usize },
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Upstream(#[from] crate::llm::LlmError),
    #[error("the caller's text did not pass the content check")]
    ContentRejected,
    #[error("the content check is unavailable")]
    ModerationUnavailable,
}

impl ChatService {
    /// The companions offered through the API: every persona but preview ones.
    pub fn api_personas(&self) -> Vec<Persona> {
        self.personas.current().all().iter().filter(|p| p.enabled && !p.preview).cloned().collect()
    }

    /// Starts one completion. The slot is the instance's concurrency cap: hold it until
    /// the stream ends.
    pub async fn api_completion(&self, asked: ApiCompletion) -> Result<(LlmStream, Slot), ApiCompletionError> {
        let persona = self
            .api_personas()
            .into_iter()
            .find(|p| p.id == asked.persona_id)
            .ok_or(ApiCompletionError::UnknownModel)?;
        let mut system = persona.system_prompt.trim().to_string();
        if let Some(extra) = asked.system.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            system.push_str("\n\n");
            system.push_str(extra);
        }
        let budget = self.config.context_token_budget;
        let tokens: usize =
            estimate_tokens(&system) + asked.turns.iter().map(|t| estimate_tokens(&t.content)).sum::<usize>();
        if tokens > budget {
            return Err(ApiCompletionError::TooLong { budget });
        }
        let moderation = self.screen_api_input(&asked).await?;
        let slot = self.capacity.try_take().ok_or(ChatError::CompanionBusy)?;
        let mut messages = vec![ChatMessage { role: "system", content: system }];
        messages.extend(asked.turns);
        let request = ChatRequest {
            model: persona.model.clone().unwrap_or_else(|| self.config.default_model.clone()),
            messages,
            thinking: persona.thinking,
            reasoning_effort: persona.reasoning_effort,
            temperature: asked.temperature.or(persona.temperature),
            // The operator's cap holds for API callers too.
            max_tokens: match (asked.max_tokens, self.config.max_tokens) {
                (Some(asked), Some(cap)) => Some(asked.min(cap)),
                (asked, cap) => asked.or(cap),
            },
            user_hash: asked.caller_hash,
            json_output: false,
        };
        let stream = self.llm.stream_chat(request).await?;
        let stream = match moderation {
            Some(moderation) => super::screened::screened(stream, moderation),
            None => stream,
        };
        Ok((stream, slot))
    }

    /// Checks everything the caller wrote (their system text and every turn) before the
    /// model sees it; the answer is then checked with the same identity. Without an
    /// identity WeChat cannot be asked: the policy for an unavailable check decides.
    async fn screen_api_input(&self, asked: &ApiCompletion) -> Result<Option<OutputModeration>, ApiCompletionError> {
        let Some(moderator) = &self.moderator else { return Ok(None) };
        let Some(openid) = asked.check_as.clone() else {
            if moderator.policy.fail_open {
                tracing::warn!("an API key without a content-check identity: its text is not checked");
                return Ok(None);
            }
            return Err(ApiCompletionError::ModerationUnavailable);
        };
        let caller_text: Vec<&str> =
            asked.system.iter().map(String::as_str).chain(asked.turns.iter().map(|t| t.content.as_str())).collect();
        match moderator.screen_input(&openid, &caller_text.join("\n")).await {
            Err(()) => Err(ApiCompletionError::ModerationUnavailable),
            Ok(Decision::Allow) => Ok(Some(OutputModeration { moderator: moderator.clone(), openid })),
            Ok(Decision::Block { label, .. }) => {
                tracing::info!(?label, "an API request was rejected by the content check");
                Err(ApiCompletionError::ContentRejected)
            }
        }
    }
}
