use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{ConversationDto, Page};
use super::params::{conversation_id as parse_conversation_id, page_limit};
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::domain::ConversationTitle;
use crate::errors::{ApiError, ErrorCode};
use crate::store::{ConversationCursor, DynStore};

#[derive(Deserialize)]
pub struct CreateConversation {
    persona_id: Option<String>,
    title: Option<String>,
}

#[derive(Deserialize)]
pub struct RenameConversation {
    title: String,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

fn parse_title(raw: &str) -> Result<ConversationTitle, ApiError> {
    ConversationTitle::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidTitle, e.to_string()))
}

/// `POST /api/conversations` `{"persona_id"?, "title"?}` → 201, opened by the persona's greeting.
pub async fn create_conversation(
    user: AuthenticatedUser,
    body: web::Json<CreateConversation>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let requested = body.persona_id.as_deref();
    let persona = chat.persona_to_start(user.user_id, requested).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownPersona, format!("no persona {:?}", requested.unwrap_or_default()))
    })?;
    let title = match body.title.as_deref() {
        Some(raw) => parse_title(raw)?,
        None => parse_title(&persona.name)?,
    };
    let conversation = chat.start_conversation(user.user_id, &persona, title).await?;
    Ok(HttpResponse::Created().json(ConversationDto::from(&conversation)))
}

/// `GET /api/conversations?limit&cursor`: most recently active first.
pub async fn list_conversations(
    user: AuthenticatedUser,
    query: web::Query<ListQuery>,
    store: web::Data<DynStore>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let cursor = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            ConversationCursor::decode(raw)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidCursor, "cursor is not one this server issued"))?,
        ),
    };
    // One extra tells whether another page exists.
    let mut items = store.list_conversations(user.user_id, limit + 1, cursor.as_ref()).await?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|c| ConversationCursor::after(c).encode())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page { items: items.iter().map(ConversationDto::from).collect(), next_cursor }))
}

/// `GET /api/conversations/{id}`
pub async fn get_conversation(
    user: AuthenticatedUser,
    path: web::Path<String>,
    store: web::Data<DynStore>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_conversation_id(&path)?;
    let conversation =
        store.get_conversation(user.user_id, id).await?.ok_or_else(|| ApiError::not_found("no such conversation"))?;
    Ok(HttpResponse::Ok().json(ConversationDto::from(&conversation)))
}

/// `PATCH /api/conversations/{id}` `{"title"}`
pub async fn rename_conversation(
    user: AuthenticatedUser,
    path: web::Path<String>,
    body: web::Json<RenameConversation>,
    store: web::Data<DynStore>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_conversation_id(&path)?;
    let title = parse_title(&body.title)?;
    let conversation = store
        .rename_conversation(user.user_id, id, &title)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation"))?;
    Ok(HttpResponse::Ok().json(ConversationDto::from(&conversation)))
}

/// `DELETE /api/conversations/{id}` → 204; its messages go with it.
pub async fn delete_conversation(
    user: AuthenticatedUser,
    path: web::Path<String>,
    store: web::Data<DynStore>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_conversation_id(&path)?;
    if store.delete_conversation(user.user_id, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("no such conversation"))
    }
}
