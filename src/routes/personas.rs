use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::errors::ApiError;

/// `GET /api/personas`: the public fields of every companion this user may choose
/// (personas marked `preview` only for `PREVIEW_OPENIDS` testers).
pub async fn list_personas(user: AuthenticatedUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    let tester = chat.preview.is_tester(&chat.store, user.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": chat.personas_for(tester) })))
}
