//! Path and query values parsed at the edge, with the errors every transport gives.
use crate::domain::{ConversationId, MessageId};
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

pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidQuery, format!("limit must be 1-{MAX_PAGE}"))),
    }
}
