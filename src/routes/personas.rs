use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;

/// `GET /api/personas`: the public fields of every companion open to everyone
/// (personas marked `preview` are not listed).
pub async fn list_personas(_user: AuthenticatedUser, chat: web::Data<ChatService>) -> HttpResponse {
    let items: Vec<_> = chat.personas.all().iter().filter(|p| !p.preview).collect();
    HttpResponse::Ok().json(json!({ "items": items }))
}
