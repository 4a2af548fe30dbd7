//! `/api/personas/{persona_id}/memories`: what a companion remembers about me; correct
//! or delete one fact, or everything it keeps.
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::dto::MemoryDto;
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::domain::{MemoryId, MemoryText};
use crate::errors::{ApiError, ErrorCode};

#[derive(Deserialize)]
pub struct CorrectMemory {
    text: String,
}

fn memory_id(raw: &str) -> Result<MemoryId, ApiError> {
    MemoryId::parse(raw).ok_or_else(|| ApiError::not_found("no such memory"))
}

/// `GET …/memories` → `{"items": [memory…]}`, oldest learned first.
pub async fn list_memories(
    user: AuthenticatedUser,
    path: web::Path<String>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let memories = chat.memories(user.user_id, &path).await?;
    let items: Vec<MemoryDto> = memories.iter().map(MemoryDto::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// `PATCH …/memories/{memory_id}` `{"text"}` → the corrected memory.
pub async fn correct_memory(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    body: web::Json<CorrectMemory>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (persona_id, raw_id) = path.into_inner();
    let id = memory_id(&raw_id)?;
    let text = MemoryText::parse(&body.text).map_err(|e| ApiError::new(ErrorCode::InvalidMemory, e.to_string()))?;
    let memory = chat.correct_memory(user.user_id, &persona_id, id, &text).await?;
    Ok(HttpResponse::Ok().json(MemoryDto::from(&memory)))
}

/// `DELETE …/memories/{memory_id}` → 204.
pub async fn forget_memory(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (persona_id, raw_id) = path.into_inner();
    chat.forget_memory(user.user_id, &persona_id, memory_id(&raw_id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE …/memories` → `{"deleted": n}`.
pub async fn forget_all_memories(
    user: AuthenticatedUser,
    path: web::Path<String>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let deleted = chat.forget_all(user.user_id, &path).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}
