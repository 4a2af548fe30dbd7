//! The language-model side of a reply: DeepSeek over its OpenAI-compatible API, or the
//! offline companion used when no API key is configured outside production.
mod deepseek;
mod offline;
pub mod sse;

use std::pin::Pin;

use futures_util::Stream;
use serde::Serialize;

use crate::domain::{FinishReason, Usage};

pub use deepseek::{DeepSeekClient, DeepSeekOptions};
pub use offline::OfflineCompanion;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

/// One request for a streamed completion.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub thinking: bool,
    pub reasoning_effort: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// An opaque per-user hash (never the openid), for DeepSeek's abuse isolation.
    pub user_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    Content(String),
    Reasoning(String),
    Finish(FinishReason),
    Usage(Usage),
}

pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send>>;

/// Stable failure kinds; `code()` is what clients and stored messages see.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LlmError {
    #[error("the model service rejected the request format (400)")]
    BadRequest,
    #[error("the model service rejected the API key (401)")]
    Unauthorized,
    #[error("the model service account has insufficient balance (402)")]
    InsufficientBalance,
    #[error("the model service rejected the request parameters (422)")]
    InvalidParameters,
    #[error("the model service is rate limiting requests (429)")]
    RateLimited,
    #[error("the model service had an internal error (500)")]
    ServerError,
    #[error("the model service is overloaded (503)")]
    Overloaded,
    #[error("the model service answered HTTP {0}")]
    UnexpectedStatus(u16),
    #[error("could not connect to the model service")]
    Connect,
    #[error("the model service sent nothing for too long")]
    IdleTimeout,
    #[error("the reply took longer than the overall deadline")]
    DeadlineExceeded,
    #[error("the model service closed the connection mid-reply")]
    Disconnected,
    #[error("the model service sent something unreadable")]
    Protocol,
    #[error("the model service reported an error mid-stream: {0}")]
    Upstream(String),
}

impl LlmError {
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::BadRequest => "upstream_bad_request",
            LlmError::Unauthorized => "upstream_unauthorized",
            LlmError::InsufficientBalance => "insufficient_balance",
            LlmError::InvalidParameters => "upstream_invalid_parameters",
            LlmError::RateLimited => "upstream_rate_limited",
            LlmError::ServerError => "upstream_server_error",
            LlmError::Overloaded => "upstream_overloaded",
            LlmError::UnexpectedStatus(_) => "upstream_error",
            LlmError::Connect => "upstream_unreachable",
            LlmError::IdleTimeout => "upstream_idle_timeout",
            LlmError::DeadlineExceeded => "upstream_deadline_exceeded",
            LlmError::Disconnected => "upstream_disconnected",
            LlmError::Protocol => "upstream_protocol_error",
            LlmError::Upstream(_) => "upstream_error",
        }
    }

    /// A message safe for end users (no internals, no keys).
    pub fn user_message(&self) -> &'static str {
        match self {
            LlmError::InsufficientBalance | LlmError::Unauthorized => {
                "the companion is unavailable right now; the operator has been notified"
            }
            LlmError::RateLimited | LlmError::Overloaded => "the companion is busy; please try again shortly",
            LlmError::IdleTimeout | LlmError::DeadlineExceeded => "the reply took too long; please try again",
            LlmError::Disconnected => "the reply was interrupted; the part received is kept",
            _ => "the companion could not reply; please try again",
        }
    }

    /// Worth another attempt if nothing has been streamed yet.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Connect | LlmError::RateLimited | LlmError::ServerError | LlmError::Overloaded)
    }
}

/// Which backend answers; chosen once at startup.
pub enum LlmClient {
    DeepSeek(DeepSeekClient),
    Offline(OfflineCompanion),
}

impl LlmClient {
    pub async fn stream_chat(&self, request: ChatRequest) -> Result<LlmStream, LlmError> {
        match self {
            LlmClient::DeepSeek(client) => client.stream_chat(request).await,
            LlmClient::Offline(companion) => Ok(companion.stream_chat(request)),
        }
    }
}
