//! The user's side of companion safety: acknowledging notices and switching minor mode on
//! (README "Compliance"). Switching it off goes through an operator (guardian consent).
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::domain::{now, MinorMode, NoticeKind, SafetyEvent, SafetyEventKind, UserId};
use crate::errors::{ApiError, ErrorCode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    version: String,
}

/// `POST /api/me/notices/{kind}/ack` `{"version"}` → 204, recorded (who, which version,
/// when). Acknowledging a notice that is not pending is a no-op; a version other than the
/// pending one is `409 notice_outdated` (show the current text from `GET /api/me`).
pub async fn acknowledge_notice(
    user: AuthenticatedUser,
    path: web::Path<String>,
    body: web::Json<AckBody>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let kind = NoticeKind::parse(&path).ok_or_else(|| ApiError::not_found("no such notice"))?;
    let safety = chat.safety();
    if kind == NoticeKind::PrivacyPolicy {
        // Acknowledging the policy is agreeing to that version.
        return match safety.agree_to_policy(user.user_id, &body.version).await? {
            true => Ok(HttpResponse::NoContent().finish()),
            false => Err(ApiError::new(ErrorCode::NoticeOutdated, "this is not the privacy policy in effect")),
        };
    }
    let me = safety.store.get_user(user.user_id).await?.ok_or_else(ApiError::unauthorized)?;
    let Some(pending) = me.notices.iter().find(|n| n.kind == kind) else {
        return Ok(HttpResponse::NoContent().finish());
    };
    if pending.version != body.version || !safety.store.acknowledge_notice(me.id, kind, &body.version).await? {
        return Err(ApiError::new(ErrorCode::NoticeOutdated, "this notice has changed; read it again"));
    }
    let detail = crate::safety::describe(pending);
    safety.record(SafetyEvent::new(me.id, SafetyEventKind::NoticeAcknowledged, Some(detail))).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinorModeBody {
    on: bool,
}

/// `PUT /api/me/minor-mode` `{"on": true}` → 204. Off needs a guardian's consent, recorded
/// by an operator: `{"on": false}` is `403 guardian_consent_required`.
pub async fn set_minor_mode(
    user: AuthenticatedUser,
    body: web::Json<MinorModeBody>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    if !body.on {
        return Err(ApiError::new(
            ErrorCode::GuardianConsentRequired,
            "minor mode is switched off by the operator, with a guardian's consent",
        ));
    }
    minor_mode_on(&chat, user.user_id, "user").await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Switches minor mode on (no change when it is on already), recorded with why.
pub async fn minor_mode_on(chat: &ChatService, user: UserId, why: &str) -> Result<(), ApiError> {
    let safety = chat.safety();
    let me = safety.store.get_user(user).await?.ok_or_else(ApiError::unauthorized)?;
    if me.minor_mode.is_some() {
        return Ok(());
    }
    safety.store.set_minor_mode(user, Some(&MinorMode { since: now(), guardian_consent: None })).await?;
    safety.record(SafetyEvent::new(user, SafetyEventKind::MinorModeOn, Some(why.to_string()))).await;
    Ok(())
}
