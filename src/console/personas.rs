//! `/console/api/personas`: the companions, as stored; an admin creates or edits one (in
//! effect here at once and on every replica within seconds), or disables it.
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::accounts::audit;
use super::http::{ConsoleState, Need};
use crate::chat::catalog::SaveError;
use crate::chat::{ChatService, Persona};
use crate::domain::AuditAction;
use crate::errors::{ApiError, ErrorCode};

/// `GET /console/api/personas` → every companion with every setting, enabled or not.
pub async fn list_personas(
    req: HttpRequest,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let personas = chat.persona_catalog().current();
    Ok(HttpResponse::Ok().json(json!({ "items": personas.all() })))
}

/// `PUT /console/api/personas/{id}` with every field of a persona → the saved persona.
pub async fn save_persona(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Admin).await?;
    let invalid = |e: serde_json::Error| ApiError::new(ErrorCode::InvalidBody, format!("persona: {e}"));
    let mut fields: serde_json::Value = serde_json::from_slice(&body).map_err(invalid)?;
    let Some(object) = fields.as_object_mut() else {
        return Err(ApiError::new(ErrorCode::InvalidBody, "persona: a JSON object is expected"));
    };
    object.insert("id".into(), json!(path.into_inner()));
    // The same strict reading as the personas file: a misspelt field is an error.
    let persona: Persona = serde_json::from_value(fields).map_err(invalid)?;
    chat.persona_catalog().save(&console.store, persona.clone()).await.map_err(|e| match e {
        SaveError::Invalid(why) => ApiError::new(ErrorCode::InvalidBody, why),
        SaveError::Conflict => ApiError::new(ErrorCode::EditConflict, "另一位管理员刚刚修改了伙伴，请刷新后重试"),
        SaveError::Store(e) => e.into(),
    })?;
    let actor = signed.operator.name.as_str();
    audit(&console.store, actor, AuditAction::PersonaSaved, Some(persona.id.clone()), None).await?;
    Ok(HttpResponse::Ok().json(persona))
}
