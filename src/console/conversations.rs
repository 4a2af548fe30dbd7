//! A user's conversations, for an admin handling a report: the list (titles and when) on
//! request, and one conversation's messages only with a stated reason, audit-logged.
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accounts::audit;
use super::http::{ConsoleState, Need};
use crate::domain::{AuditAction, ConversationId, Message, Reason, Role, UserId};
use crate::errors::{ApiError, ErrorCode};

/// Conversations listed and messages shown at most.
const LISTED: usize = 50;
const SHOWN: usize = 200;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| ApiError::not_found("no such user"))
}

/// `GET /console/api/users/{id}/conversations` → the newest 50 (titles, companion, when).
pub async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Admin).await?;
    let conversations = console.store.list_conversations(user_id(&path)?, LISTED, None).await?;
    let items: Vec<serde_json::Value> = conversations
        .iter()
        .map(|c| {
            json!({"id": c.id.to_string(), "title": c.title.as_str(), "persona_id": c.persona_id,
                   "last_active_at": c.last_active_at})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Deserialize)]
pub struct ViewBody {
    user_id: String,
    conversation_id: String,
    reason: String,
}

#[derive(Serialize)]
struct MessageView<'a> {
    at: DateTime<Utc>,
    role: &'static str,
    content: &'a str,
    status: crate::domain::MessageStatus,
}

/// `POST /console/api/conversations/view` `{"user_id", "conversation_id", "reason"}` → the
/// newest 200 messages, oldest first. The reason (required) goes to the audit log first.
pub async fn view(
    req: HttpRequest,
    body: web::Json<ViewBody>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Admin).await?;
    let reason = Reason::parse(&body.reason)
        .map_err(|_| ApiError::new(ErrorCode::InvalidBody, "查看对话需要填写原因（1-200 个字符）"))?;
    let user = user_id(&body.user_id)?;
    let id = ConversationId::parse(&body.conversation_id).ok_or_else(|| ApiError::not_found("no such conversation"))?;
    let conversation =
        console.store.get_conversation(user, id).await?.ok_or_else(|| ApiError::not_found("no such conversation"))?;
    // Logged before anything is shown.
    let actor = signed.operator.name.as_str();
    let target = format!("{user}/{}", conversation.id);
    audit(&console.store, actor, AuditAction::ConversationViewed, Some(target), Some(reason.into_string())).await?;
    let messages: Vec<Message> = console.store.list_messages(conversation.id, SHOWN, None).await?;
    let items: Vec<MessageView> = messages
        .iter()
        .map(|m| MessageView {
            at: m.created_at,
            role: match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Operator => "operator",
            },
            content: &m.content,
            status: m.status,
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"title": conversation.title.as_str(), "items": items})))
}
