use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::dto::PersonaDto;
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::errors::ApiError;

/// A companion as this user is offered it.
#[derive(Serialize)]
struct OfferedPersona<'a> {
    #[serde(flatten)]
    persona: PersonaDto<'a>,
    /// Minor mode: chatting waits on a guardian's consent (recorded by an operator).
    needs_guardian_consent: bool,
}

#[derive(Serialize)]
struct PersonaList<'a> {
    items: Vec<OfferedPersona<'a>>,
}

/// `GET /api/personas`: the public fields of every companion this user may choose
/// (personas marked `preview` only for `PREVIEW_OPENIDS` testers).
pub async fn list_personas(user: AuthenticatedUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    let offers = chat.persona_offers(user.user_id).await?;
    let items = offers
        .iter()
        .map(|(persona, consent)| OfferedPersona {
            persona: PersonaDto::from(persona),
            needs_guardian_consent: *consent,
        })
        .collect();
    Ok(HttpResponse::Ok().json(PersonaList { items }))
}
