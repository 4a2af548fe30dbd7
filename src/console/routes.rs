//! `/console/api/*`: sign-in and session, password change, the audit log and API keys.
//! Bodies are JSON; errors use the service's one error envelope.
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accounts;
use super::http::{ConsoleState, Need, Signed};
use crate::domain::{now, ApiKey, AuditAction, AuditEntry, Operator, QuotaLimits, UserId};
use crate::errors::{ApiError, ErrorCode};
use crate::openai::metering;

#[derive(Deserialize)]
pub struct SignInBody {
    name: String,
    password: SecretString,
}

#[derive(Serialize)]
struct OperatorDto<'a> {
    name: &'a str,
    role: &'static str,
    must_change_password: bool,
}

impl<'a> From<&'a Operator> for OperatorDto<'a> {
    fn from(o: &'a Operator) -> Self {
        Self { name: o.name.as_str(), role: o.role.as_str(), must_change_password: o.must_change_password }
    }
}

fn session_body(signed: &Signed) -> serde_json::Value {
    json!({"operator": OperatorDto::from(&signed.operator), "csrf_token": signed.session.csrf_token})
}

/// `POST /console/api/session` `{"name", "password"}` → the operator and the CSRF token,
/// with the session cookie.
pub async fn sign_in(
    req: HttpRequest,
    body: web::Json<SignInBody>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let from = console.count_sign_in(&req).await?;
    let SignInBody { name, password } = body.into_inner();
    let ttl = chrono::Duration::from_std(console.settings.session_ttl).unwrap_or(chrono::Duration::hours(8));
    let signed_in = accounts::sign_in(&console.store, &name, password, &from, ttl, now()).await?;
    let cookie = console.cookie(Some(secrecy::ExposeSecret::expose_secret(&signed_in.token)));
    let signed = Signed { session: signed_in.session, operator: signed_in.operator };
    Ok(HttpResponse::Ok().cookie(cookie).json(session_body(&signed)))
}

/// `GET /console/api/session` → who is signed in, and the CSRF token for this session.
pub async fn current_session(req: HttpRequest, console: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Session).await?;
    Ok(HttpResponse::Ok().json(session_body(&signed)))
}

/// `DELETE /console/api/session` → 204; the session ends and the cookie is removed.
pub async fn sign_out(req: HttpRequest, console: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Session).await?;
    console.store.delete_operator_session(&signed.session.token_hash).await?;
    accounts::audit(&console.store, signed.operator.name.as_str(), AuditAction::SignOut, None, None).await?;
    Ok(HttpResponse::NoContent().cookie(console.cookie(None)).finish())
}

#[derive(Deserialize)]
pub struct PasswordBody {
    current: SecretString,
    new: SecretString,
}

/// `POST /console/api/password` `{"current", "new"}` → 204. Other sessions end.
pub async fn change_password(
    req: HttpRequest,
    body: web::Json<PasswordBody>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Session).await?;
    let PasswordBody { current, new } = body.into_inner();
    accounts::change_password(&console.store, &signed.operator, &signed.session, current, new).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
struct AuditDto<'a> {
    at: DateTime<Utc>,
    actor: &'a str,
    action: AuditAction,
    target: Option<&'a str>,
    reason: Option<&'a str>,
}

impl<'a> From<&'a AuditEntry> for AuditDto<'a> {
    fn from(e: &'a AuditEntry) -> Self {
        Self { at: e.at, actor: &e.actor, action: e.action, target: e.target.as_deref(), reason: e.reason.as_deref() }
    }
}

/// `GET /console/api/audit` → the newest 200 entries, newest first (admins).
pub async fn audit_log(req: HttpRequest, console: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Admin).await?;
    let entries = console.store.list_audit(200).await?;
    let items: Vec<AuditDto> = entries.iter().map(AuditDto::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Serialize)]
struct ApiKeyDto<'a> {
    id: &'a str,
    name: &'a str,
    prefix: &'a str,
    per_minute: u32,
    daily_tokens: i64,
    check_as: Option<String>,
    created_by: &'a str,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a ApiKey> for ApiKeyDto<'a> {
    fn from(k: &'a ApiKey) -> Self {
        Self {
            id: &k.id,
            name: &k.name,
            prefix: &k.prefix,
            per_minute: k.per_minute,
            daily_tokens: k.daily_tokens,
            check_as: k.check_as.map(|u| u.to_string()),
            created_by: &k.created_by,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// `GET /console/api/keys` → every API key (never the key itself), newest first (admins).
pub async fn list_keys(req: HttpRequest, console: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Admin).await?;
    let keys = console.store.list_api_keys().await?;
    let at = now();
    let used =
        futures_util::future::try_join_all(keys.iter().map(|k| metering::today(&console.store, &k.id, at))).await?;
    let items: Vec<serde_json::Value> = keys
        .iter()
        .zip(used)
        .map(|(key, used)| {
            let mut item = json!(ApiKeyDto::from(key));
            item["used_today"] = json!({"requests": used.requests, "tokens": used.tokens});
            item
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Deserialize)]
pub struct NewKeyBody {
    name: String,
    #[serde(default)]
    per_minute: u32,
    #[serde(default)]
    daily_tokens: i64,
    /// A user id of this service (usually the operator's own mini-program account).
    #[serde(default)]
    check_as: Option<String>,
}

/// The most requests per minute a key may be given.
const MAX_KEY_PER_MINUTE: u32 = 100_000;

/// `POST /console/api/keys` `{"name", "per_minute"?}` → 201 with the key, shown this once.
pub async fn create_key(
    req: HttpRequest,
    body: web::Json<NewKeyBody>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Admin).await?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 50 || name.chars().any(char::is_control) {
        return Err(ApiError::new(ErrorCode::InvalidBody, "名称为 1-50 个字符"));
    }
    if body.per_minute > MAX_KEY_PER_MINUTE {
        return Err(ApiError::new(ErrorCode::InvalidBody, "每分钟请求数上限为 100000（0 表示不单独限制）"));
    }
    if !(0..=QuotaLimits::MAX).contains(&body.daily_tokens) {
        return Err(ApiError::new(ErrorCode::InvalidBody, "每日 token 上限为 0（不单独限制）到 1000000000"));
    }
    let check_as = match body.check_as.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(id) => {
            let user = UserId::parse(id)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidBody, "内容安全检测身份须为用户 ID"))?;
            console.store.get_user(user).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
            Some(user)
        }
    };
    let limits = super::keys::KeyLimits { per_minute: body.per_minute, daily_tokens: body.daily_tokens };
    let (secret, key) = super::keys::new_key(name, limits, check_as, signed.operator.name.as_str());
    console.store.insert_api_key(&key).await?;
    let actor = signed.operator.name.as_str();
    accounts::audit(&console.store, actor, AuditAction::ApiKeyCreated, Some(key.id.clone()), Some(key.name.clone()))
        .await?;
    let mut body = serde_json::to_value(ApiKeyDto::from(&key)).map_err(ApiError::internal)?;
    body["key"] = json!(secrecy::ExposeSecret::expose_secret(&secret));
    Ok(HttpResponse::Created().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(body))
}

/// `DELETE /console/api/keys/{id}` → 204 (admins); 404 if there is no such live key.
pub async fn revoke_key(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Admin).await?;
    if !console.store.revoke_api_key(&path, now()).await? {
        return Err(ApiError::not_found("no such key"));
    }
    let actor = signed.operator.name.as_str();
    accounts::audit(&console.store, actor, AuditAction::ApiKeyRevoked, Some(path.into_inner()), None).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct OverviewQuery {
    days: Option<u32>,
}

/// `GET /console/api/overview?days=30` → each day's figures (newest first), this
/// instance's running replies, and the upstreams' circuits.
pub async fn overview(
    req: HttpRequest,
    query: web::Query<OverviewQuery>,
    console: web::Data<ConsoleState>,
    chat: web::Data<crate::chat::ChatService>,
) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let days = query.days.unwrap_or(30).clamp(1, 90);
    let figures = crate::stats::overview(&console.store, days, &console.settings.prices, now()).await?;
    let circuits: Vec<serde_json::Value> =
        chat.upstream_circuits().into_iter().map(|(name, open)| json!({"upstream": name, "open": open})).collect();
    Ok(HttpResponse::Ok().json(json!({
        "days": figures.days,
        "live_generations_here": chat.running_generations(),
        "upstreams": circuits,
    })))
}
