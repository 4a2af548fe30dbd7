//! `/console/api/…` for companion safety: the crisis queue, taking a conversation over,
//! answering as a human and handing it back; a user's safety record; guardian consent and
//! switching minor mode off. Every step is audit-logged.
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accounts::audit;
use super::http::{stated_reason, ConsoleState, Need};
use super::users::by_id;
use crate::chat::ChatService;
use crate::domain::{
    now, AuditAction, Conversation, ConversationId, GuardianConsent, MessageId, MinorMode, Role, SafetyEvent,
    SafetyEventKind,
};
use crate::errors::{ApiError, ErrorCode};

const QUEUE: usize = 100;
const SHOWN: usize = 200;

#[derive(Serialize)]
struct CrisisDto<'a> {
    conversation_id: String,
    user_id: String,
    persona_id: &'a str,
    flagged_at: Option<DateTime<Utc>>,
    detected_by: Option<&'a str>,
    handled_at: Option<DateTime<Utc>>,
    taken_over_by: Option<&'a str>,
}

impl<'a> From<&'a Conversation> for CrisisDto<'a> {
    fn from(c: &'a Conversation) -> Self {
        Self {
            conversation_id: c.id.to_string(),
            user_id: c.user_id.to_string(),
            persona_id: &c.persona_id,
            flagged_at: c.crisis.as_ref().map(|f| f.at),
            detected_by: c.crisis.as_ref().map(|f| f.detected_by.as_str()),
            handled_at: c.crisis.as_ref().and_then(|f| f.handled_at),
            taken_over_by: c.takeover.as_ref().map(|t| t.by.as_str()),
        }
    }
}

/// `GET /console/api/crisis` → conversations flagged by the crisis response, newest first.
pub async fn crisis_queue(req: HttpRequest, console: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let flagged = console.store.list_crisis_conversations(QUEUE).await?;
    let items: Vec<CrisisDto> = flagged.iter().map(CrisisDto::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).ok_or_else(|| ApiError::not_found("no such conversation"))
}

#[derive(Serialize)]
struct MessageView<'a> {
    id: MessageId,
    at: DateTime<Utc>,
    role: Role,
    status: crate::domain::MessageStatus,
    content: &'a str,
}

/// `GET /console/api/crisis/{conversation_id}` → the flagged conversation's newest 200
/// messages, oldest first. Only for a conversation in the crisis queue; the reading is
/// audit-logged (reason: crisis response).
pub async fn crisis_conversation(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let conversation = chat.conversation_for_operator(conversation_id(&path)?).await?;
    if conversation.crisis.is_none() && conversation.takeover.is_none() {
        return Err(ApiError::new(ErrorCode::Forbidden, "只有危机队列中的对话可以在这里查看"));
    }
    let target = format!("{}/{}", conversation.user_id, conversation.id);
    let (actor, reason) = (signed.operator.name.as_str(), Some("危机干预".to_string()));
    audit(&console.store, actor, AuditAction::ConversationViewed, Some(target), reason).await?;
    let messages = console.store.list_messages(conversation.id, SHOWN, None).await?;
    let items: Vec<MessageView> = messages
        .iter()
        .map(|m| MessageView { id: m.id, at: m.created_at, role: m.role, status: m.status, content: &m.content })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "conversation": CrisisDto::from(&conversation), "items": items })))
}

/// `POST /console/api/conversations/{id}/takeover` → 204: an operator answers from now on.
pub async fn take_over(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let actor = signed.operator.name.as_str();
    let conversation = chat.take_over(conversation_id(&path)?, actor).await?;
    let target = Some(format!("{}/{}", conversation.user_id, conversation.id));
    audit(&console.store, actor, AuditAction::ConversationTakenOver, target, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct ReplyBody {
    text: String,
}

/// `POST /console/api/conversations/{id}/operator-reply` `{"text"}` → 201 with the message:
/// delivered to the user as a human's (`role: "operator"`) on every transport.
pub async fn operator_reply(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ReplyBody>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let actor = signed.operator.name.as_str();
    let message = chat.operator_reply(conversation_id(&path)?, actor, &body.text).await?;
    let target = Some(format!("{}/{}", message.user_id, message.conversation_id));
    audit(&console.store, actor, AuditAction::OperatorReplied, target, None).await?;
    let view = MessageView {
        id: message.id,
        at: message.created_at,
        role: message.role,
        status: message.status,
        content: &message.content,
    };
    Ok(HttpResponse::Created().json(view))
}

/// `POST /console/api/conversations/{id}/release` → 204: the companion answers again.
pub async fn release(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let actor = signed.operator.name.as_str();
    let id = conversation_id(&path)?;
    chat.hand_back(id, actor).await?;
    audit(&console.store, actor, AuditAction::ConversationReleased, Some(id.to_string()), None).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
struct SafetyEventDto<'a> {
    at: DateTime<Utc>,
    kind: SafetyEventKind,
    conversation_id: Option<String>,
    detail: Option<&'a str>,
}

/// `GET /console/api/users/{id}/safety` → the user's safety record, newest first: notices
/// issued and acknowledged, exits, crises, takeovers, minor mode and consent.
pub async fn user_record(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let user = by_id(&console, &path).await?;
    let events = console.store.list_safety_events(Some(user.id), SHOWN).await?;
    let items: Vec<SafetyEventDto> = events
        .iter()
        .map(|e| SafetyEventDto {
            at: e.at,
            kind: e.kind,
            conversation_id: e.conversation_id.map(|c| c.to_string()),
            detail: e.detail.as_deref(),
        })
        .collect();
    let minor_mode = user.minor_mode.as_ref().map(|m| {
        json!({"since": m.since, "guardian_consent": m.guardian_consent.as_ref().map(|c| json!({"by": c.by, "at": c.at, "note": c.note}))})
    });
    Ok(HttpResponse::Ok().json(json!({ "items": items, "minor_mode": minor_mode })))
}

#[derive(Deserialize)]
pub struct ConsentBody {
    /// How the guardian's consent was verified (kept in the record).
    note: String,
}

/// `POST /console/api/users/{id}/guardian-consent` `{"note"}` → 204: the user (in minor
/// mode) may talk to emotional companions. The operator verifies the guardian offline.
pub async fn guardian_consent(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ConsentBody>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let actor = signed.operator.name.as_str();
    let note = stated_reason(&body.note)?.into_string();
    let user = by_id(&console, &path).await?;
    let Some(mode) = &user.minor_mode else {
        return Err(ApiError::new(ErrorCode::InvalidBody, "该用户未开启未成年人模式"));
    };
    let consent = GuardianConsent { by: actor.to_string(), at: now(), note: note.clone() };
    let updated = MinorMode { since: mode.since, guardian_consent: Some(consent) };
    console.store.set_minor_mode(user.id, Some(&updated)).await?;
    let event = SafetyEvent::new(user.id, SafetyEventKind::GuardianConsent, Some(actor.to_string()));
    chat.safety().record(event).await;
    audit(&console.store, actor, AuditAction::GuardianConsentRecorded, Some(user.id.to_string()), Some(note)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct OffBody {
    reason: String,
}

/// `DELETE /console/api/users/{id}/minor-mode` `{"reason"}` → 204: minor mode off, after
/// the guardian's consent was verified by the operator.
pub async fn minor_mode_off(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<OffBody>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let actor = signed.operator.name.as_str();
    let reason = stated_reason(&body.reason)?.into_string();
    let user = by_id(&console, &path).await?;
    console.store.set_minor_mode(user.id, None).await?;
    chat.safety().record(SafetyEvent::new(user.id, SafetyEventKind::MinorModeOff, Some(actor.to_string()))).await;
    audit(&console.store, actor, AuditAction::MinorModeOff, Some(user.id.to_string()), Some(reason)).await?;
    Ok(HttpResponse::NoContent().finish())
}
