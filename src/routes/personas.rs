use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::dto::PersonaDto;
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::errors::ApiError;

#[derive(Serialize)]
struct PersonaList<'a> {
    items: Vec<PersonaDto<'a>>,
}

/// `GET /api/personas`: the public fields of every companion this user may choose
/// (personas marked `preview` only for `PREVIEW_OPENIDS` testers).
pub async fn list_personas(user: AuthenticatedUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    let personas = chat.personas_for(user.user_id).await?;
    Ok(HttpResponse::Ok().json(PersonaList { items: personas.iter().map(PersonaDto::from).collect() }))
}
