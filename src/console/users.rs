//! `/console/api/users/…`: find a user by id or openid (the openid is never shown, only a
//! short hash of it), their usage today, and bans (moderators and admins; a reason is
//! required and audit-logged).
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::accounts::audit;
use super::http::{ConsoleState, Need};
use crate::auth::IdentityResolver;
use crate::chat::ChatService;
use crate::domain::{now, AuditAction, Ban, OpenId, User, UserId};
use crate::errors::{ApiError, ErrorCode};
use crate::routes::dto::UsageDto;

#[derive(Serialize)]
struct BanDto<'a> {
    reason: &'a str,
    at: DateTime<Utc>,
    by: &'a str,
}

#[derive(Serialize)]
struct UserDto<'a> {
    id: String,
    /// The first 16 hex digits of the openid's SHA-256: enough to match a report, not the openid.
    openid_hash: String,
    nickname: Option<&'a str>,
    created_at: DateTime<Utc>,
    ban: Option<BanDto<'a>>,
    usage_today: UsageDto<'a>,
}

pub fn openid_hash(openid: &OpenId) -> String {
    hex::encode(&Sha256::digest(openid.as_str().as_bytes())[..8])
}

async fn find(console: &ConsoleState, query: &str) -> Result<User, ApiError> {
    let found = match UserId::parse(query.trim()) {
        Some(id) => console.store.get_user(id).await?,
        None => match OpenId::parse(query.trim()) {
            Ok(openid) => console.store.find_user(&openid).await?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| ApiError::not_found("no such user"))
}

#[derive(Deserialize)]
pub struct SearchBody {
    query: String,
}

/// `POST /console/api/users/search` `{"query": user id or openid}` → the user, their ban and
/// usage today. A POST, so an openid never lands in a URL (and the request log).
pub async fn search_user(
    req: HttpRequest,
    body: web::Json<SearchBody>,
    console: web::Data<ConsoleState>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let user = find(&console, &body.query).await?;
    let usage = chat.usage(user.id).await?;
    let id = user.id.to_string();
    let body = UserDto {
        id,
        openid_hash: openid_hash(&user.openid),
        nickname: user.nickname.as_ref().map(|n| n.as_str()),
        created_at: user.created_at,
        ban: user.ban.as_ref().map(|b| BanDto { reason: &b.reason, at: b.at, by: &b.by }),
        usage_today: UsageDto::from(&usage),
    };
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize)]
pub struct BanBody {
    reason: String,
}

/// `POST /console/api/users/{id}/ban` `{"reason"}` → 204: refused everywhere from now on
/// (here at once, on other replicas within seconds).
pub async fn ban_user(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<BanBody>,
    console: web::Data<ConsoleState>,
    resolver: web::Data<IdentityResolver>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let actor = signed.operator.name.as_str();
    let ban = Ban::new(&body.reason, actor, now()).map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.0))?;
    set_ban(&console, &resolver, actor, &path, Some(ban)).await
}

/// `DELETE /console/api/users/{id}/ban` → 204: the user may come back.
pub async fn unban_user(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
    resolver: web::Data<IdentityResolver>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    set_ban(&console, &resolver, signed.operator.name.as_str(), &path, None).await
}

/// Bans (`Some`) or lets back (`None`) the user, in effect here at once, audit-logged.
async fn set_ban(
    console: &ConsoleState,
    resolver: &IdentityResolver,
    actor: &str,
    query: &str,
    ban: Option<Ban>,
) -> Result<HttpResponse, ApiError> {
    let user = find(console, query).await?;
    console.store.set_user_ban(user.id, ban.as_ref()).await?;
    resolver.forget(user.id);
    let (action, reason) = match ban {
        Some(ban) => (AuditAction::UserBanned, Some(ban.reason)),
        None => (AuditAction::UserUnbanned, None),
    };
    audit(&console.store, actor, action, Some(user.id.to_string()), reason).await?;
    Ok(HttpResponse::NoContent().finish())
}
