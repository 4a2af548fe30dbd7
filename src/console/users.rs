//! `/console/api/users/…`: find a user by id or openid (the openid is never shown, only a
//! short hash of it), their usage today, and bans (moderators and admins; a reason is
//! required and audit-logged).
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::accounts::audit;
use super::http::{stated_reason, ConsoleState, Need};
use crate::auth::IdentityResolver;
use crate::chat::ChatService;
use crate::domain::{now, AuditAction, Ban, OpenId, QuotaLimits, User, UserId};
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
    /// Whether the limits in `usage_today` are this user's own (set by an operator).
    own_quota: bool,
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

/// The user a path names: by user id only, so an openid never lands in a URL (and the
/// request log).
pub(super) async fn by_id(console: &ConsoleState, path: &str) -> Result<User, ApiError> {
    let found = match UserId::parse(path.trim()) {
        Some(id) => console.store.get_user(id).await?,
        None => None,
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
        own_quota: user.quota.is_some(),
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
    let reason = stated_reason(&body.reason)?;
    set_ban(&console, &resolver, actor, &path, Some(Ban::new(reason, actor, now()))).await
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

#[derive(Deserialize)]
pub struct QuotaBody {
    messages: i64,
    tokens: i64,
    reason: String,
}

/// `PUT /console/api/users/{id}/quota` `{"messages", "tokens", "reason"}` → 204: the user's
/// own daily limits (0: no limit) from their next message, on every replica.
pub async fn set_quota(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<QuotaBody>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let invalid = |e: crate::domain::ParseError| ApiError::new(ErrorCode::InvalidBody, e.0);
    let limits = QuotaLimits::new(body.messages, body.tokens).map_err(invalid)?;
    let reason = stated_reason(&body.reason)?;
    let user = by_id(&console, &path).await?;
    console.store.set_user_quota(user.id, Some(limits)).await?;
    let what = format!("每日消息 {}，每日 token {}：{}", limits.messages, limits.tokens, reason.into_string());
    audit(
        &console.store,
        signed.operator.name.as_str(),
        AuditAction::QuotaChanged,
        Some(user.id.to_string()),
        Some(what),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /console/api/users/{id}/quota` → 204: the service's daily limits apply again.
pub async fn reset_quota(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    let user = by_id(&console, &path).await?;
    console.store.set_user_quota(user.id, None).await?;
    let what = Some("恢复默认额度".to_string());
    audit(&console.store, signed.operator.name.as_str(), AuditAction::QuotaChanged, Some(user.id.to_string()), what)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Bans (`Some`) or lets back (`None`) the user, in effect here at once, audit-logged.
async fn set_ban(
    console: &ConsoleState,
    resolver: &IdentityResolver,
    actor: &str,
    query: &str,
    ban: Option<Ban>,
) -> Result<HttpResponse, ApiError> {
    let user = by_id(console, query).await?;
    console.store.set_user_ban(user.id, ban.as_ref()).await?;
    resolver.forget(user.id);
    let (action, reason) = match ban {
        Some(ban) => (AuditAction::UserBanned, Some(ban.reason)),
        None => (AuditAction::UserUnbanned, None),
    };
    audit(&console.store, actor, action, Some(user.id.to_string()), reason).await?;
    Ok(HttpResponse::NoContent().finish())
}
