//! The language-model side of a reply: an ordered list of OpenAI-compatible upstreams
//! (DeepSeek first, fallbacks after it) with failover and circuit breakers, or the
//! offline companion used when no API key is configured outside production.
mod breaker;
mod compatible;
mod models;
mod offline;
pub mod sse;
mod upstreams;

use std::pin::Pin;

use futures_util::Stream;
use serde::Serialize;

use crate::domain::{FinishReason, Usage};

pub use breaker::{Admission, Breaker, BreakerPolicy};
pub use compatible::{CompatibleClient, CompatibleOptions};
pub use models::{check_models, ModelCheck, MODEL_CHECK_TIMEOUT};
pub use offline::OfflineCompanion;
pub use upstreams::{Upstream, UpstreamPool};

/// What an upstream accepts beyond the OpenAI format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// `thinking`, `reasoning_effort` and `user_id` as DeepSeek documents them.
    DeepSeek,
    /// Plain OpenAI chat completions (`user`; no thinking switch).
    #[serde(rename = "openai")]
    OpenAi,
}

/// How hard a thinking model reasons; the values DeepSeek V4.1 distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReasoningEffort {
    Low,
    High,
    Max,
}

impl ReasoningEffort {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Self::Low),
            "high" => Ok(Self::High),
            "max" => Ok(Self::Max),
            other => Err(format!("reasoning_effort must be low, high or max (it is {other:?})")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::High => "high",
            Self::Max => "max",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

impl From<ReasoningEffort> for String {
    fn from(effort: ReasoningEffort) -> String {
        effort.as_str().to_string()
    }
}

impl TryFrom<String> for ReasoningEffort {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

/// One request for a streamed completion.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model asked of the first upstream; fallbacks use their own configured model.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub thinking: bool,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// An opaque per-user hash (never the openid), for DeepSeek's abuse isolation.
    pub user_hash: String,
    /// JSON output mode (`response_format: json_object`): background work, never a reply.
    pub json_output: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// First, once: the configured name of the upstream that answered.
    ServedBy(String),
    /// The model the upstream reports serving (once, from the first chunk naming it).
    Model(String),
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
    #[error("every model service is failing; their circuits are open")]
    Unavailable,
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
            LlmError::Unavailable => "upstream_unavailable",
        }
    }

    /// A message safe for end users (no internals, no keys).
    pub fn user_message(&self) -> &'static str {
        match self {
            LlmError::InsufficientBalance | LlmError::Unauthorized => {
                "the companion is unavailable right now; the operator has been notified"
            }
            LlmError::RateLimited | LlmError::Overloaded | LlmError::Unavailable => {
                "the companion is busy; please try again shortly"
            }
            LlmError::IdleTimeout | LlmError::DeadlineExceeded => "the reply took too long; please try again",
            LlmError::Disconnected => "the reply was interrupted; the part received is kept",
            _ => "the companion could not reply; please try again",
        }
    }

    pub fn of_status(status: u16) -> LlmError {
        match status {
            400 => LlmError::BadRequest,
            401 => LlmError::Unauthorized,
            402 => LlmError::InsufficientBalance,
            422 => LlmError::InvalidParameters,
            429 => LlmError::RateLimited,
            500 => LlmError::ServerError,
            503 => LlmError::Overloaded,
            other => LlmError::UnexpectedStatus(other),
        }
    }

    /// Worth another attempt (the next upstream, or the same one after a wait) when
    /// nothing has been streamed yet: connect errors, timeouts, 408, 429, 500, 502, 503,
    /// 504, and a connection dropped before any text. A 4xx about the request or the
    /// account would fail the same way anywhere.
    pub fn allows_failover(&self) -> bool {
        matches!(
            self,
            LlmError::Connect
                | LlmError::IdleTimeout
                | LlmError::Disconnected
                | LlmError::RateLimited
                | LlmError::ServerError
                | LlmError::Overloaded
                | LlmError::UnexpectedStatus(408 | 502 | 504)
        )
    }
}

/// Which backend answers; chosen once at startup.
pub enum LlmClient {
    Upstreams(UpstreamPool),
    Offline(OfflineCompanion),
}

impl LlmClient {
    pub async fn stream_chat(&self, request: ChatRequest) -> Result<LlmStream, LlmError> {
        match self {
            LlmClient::Upstreams(pool) => pool.stream_chat(request).await,
            LlmClient::Offline(companion) => Ok(companion.stream_chat(request)),
        }
    }
}
