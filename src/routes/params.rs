//! Path and query values parsed at the edge, with the errors every transport gives.
use crate::domain::{ClientMessageId, ConversationId, MessageId};
use crate::errors::{ApiError, ErrorCode};

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// An id that cannot exist is simply not found.
pub fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).ok_or_else(|| ApiError::not_found("no such conversation"))
}

pub fn message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).ok_or_else(|| ApiError::not_found("no such message"))
}

/// The optional id a client gives a send (for safe retries).
pub fn client_message_id(raw: Option<&str>) -> Result<Option<ClientMessageId>, ApiError> {
    raw.map(ClientMessageId::parse).transpose().map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))
}

pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidQuery, format!("limit must be 1-{MAX_PAGE}"))),
    }
}
