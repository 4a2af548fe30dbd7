use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::dto::SessionDto;
use crate::auth::{AuthState, AuthenticatedUser, CloudRunIdentity, IdentityResolver};
use crate::domain::{LoginCode, OpenId, User};
use crate::errors::{ApiError, ErrorCode};
use crate::store::DynStore;
use crate::wechat::{Code2SessionError, WechatClient};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    code: Option<String>,
    /// The privacy policy version the user agreed to before signing in (recorded).
    agreed_policy_version: Option<String>,
}

/// Whether development login is on; copied from settings at startup.
#[derive(Clone, Copy)]
pub struct LoginPolicy {
    pub dev_login: bool,
}

/// `POST /api/auth/login`: a `wx.login` code (or, behind Cloud Run with trusted
/// headers, no code at all) becomes a user and a session token.
#[tracing::instrument(name = "login", skip_all)]
pub async fn login(
    req: HttpRequest,
    body: web::Json<LoginBody>,
    policy: web::Data<LoginPolicy>,
    auth: web::Data<AuthState>,
    wechat: web::Data<WechatClient>,
    store: web::Data<DynStore>,
    chat: web::Data<crate::chat::ChatService>,
) -> Result<HttpResponse, ApiError> {
    let code = body
        .code
        .as_deref()
        .map(LoginCode::parse)
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidCode, e.to_string()))?;
    let openid = resolve_openid(&req, code, &policy, &auth, &wechat).await?;
    let user = store.find_or_create_user(&openid).await?;
    if user.ban.is_some() {
        return Err(ApiError::banned());
    }
    // Every sign-in tells the user again that the companion is an AI.
    let agreed = match body.agreed_policy_version.as_deref() {
        Some(version) => chat.safety().agree_to_policy(user.id, version).await?,
        None => false,
    };
    let notices = chat.safety().signed_in(&user, agreed).await;
    session_response(&auth, &user, None, notices)
}

/// `POST /api/auth/refresh`: a valid session gets a fresh token.
pub async fn refresh(
    user: AuthenticatedUser,
    auth: web::Data<AuthState>,
    store: web::Data<DynStore>,
    chat: web::Data<crate::chat::ChatService>,
) -> Result<HttpResponse, ApiError> {
    let now = jsonwebtoken::get_current_timestamp();
    // A token verifies for a few seconds past its expiry (clock skew), but is not renewed
    // then; and no refresh carries a session past its absolute lifetime.
    let auth_time = match user.session {
        Some(session) if session.expires_at > now && now - session.auth_time < auth.max_session.as_secs() => {
            Some(session.auth_time)
        }
        Some(_) => return Err(ApiError::unauthorized()),
        // Cloud Run identity headers: a new token, a new session.
        None => None,
    };
    let user = store.get_user(user.user_id).await?.ok_or_else(ApiError::unauthorized)?;
    let notices = chat.safety().pending(&user);
    session_response(&auth, &user, auth_time, notices)
}

/// `POST /api/auth/logout`: ends every session of the user (all their tokens) → 204.
pub async fn logout(user: AuthenticatedUser, resolver: web::Data<IdentityResolver>) -> Result<HttpResponse, ApiError> {
    resolver.end_sessions(user.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The token, and the notices to show now (a sign-in's AI disclosure among them).
fn session_response(
    auth: &AuthState,
    user: &User,
    auth_time: Option<u64>,
    notices: Vec<crate::safety::NoticeEvent>,
) -> Result<HttpResponse, ApiError> {
    let issued = auth.keys.issue(user.id, user.session_version, auth_time).map_err(ApiError::internal)?;
    let body = SessionDto { token: &issued.token, expires_in: issued.expires_in, user: user.into(), notices };
    Ok(HttpResponse::Ok().json(body))
}

async fn resolve_openid(
    req: &HttpRequest,
    code: Option<LoginCode>,
    policy: &LoginPolicy,
    auth: &AuthState,
    wechat: &WechatClient,
) -> Result<OpenId, ApiError> {
    let Some(code) = code else {
        return CloudRunIdentity::openid(req, auth.trust_cloudrun_headers).ok_or_else(|| {
            ApiError::new(ErrorCode::MissingCode, "send the code from wx.login() as {\"code\": \"…\"}")
        });
    };
    if policy.dev_login {
        let Some(name) = code.dev_name() else {
            return Err(ApiError::new(
                ErrorCode::InvalidCode,
                "development login (no WECHAT_APPID configured) expects a code like dev:<name>",
            ));
        };
        return OpenId::for_dev_name(name).map_err(|e| ApiError::new(ErrorCode::InvalidCode, e.to_string()));
    }
    let session = wechat.code2session(&code).await.map_err(login_error)?;
    Ok(session.openid)
}

fn login_error(e: Code2SessionError) -> ApiError {
    use Code2SessionError::*;
    match &e {
        InvalidCode => ApiError::new(ErrorCode::InvalidCode, "the login code is invalid; call wx.login() again"),
        CodeAlreadyUsed => ApiError::new(
            ErrorCode::CodeAlreadyUsed,
            "the login code was already used; call wx.login() again for a new one",
        ),
        RateLimited => ApiError::new(ErrorCode::LoginRateLimited, "too many login attempts; please wait a minute")
            .with_retry_after(60),
        HighRiskUser => ApiError::new(ErrorCode::UserBlocked, "WeChat has restricted this account from logging in"),
        Busy | Timeout | Unreachable(_) => {
            tracing::warn!(error = ?e, "code2session failed");
            ApiError::unavailable(
                ErrorCode::WechatUnavailable,
                "WeChat login is temporarily unavailable; please retry",
                2,
            )
        }
        BadStatus(_) | MalformedBody(_) | Other { .. } => {
            tracing::error!(error = ?e, "code2session failed");
            ApiError::new(ErrorCode::WechatError, "WeChat login failed; please retry").with_retry_after(5)
        }
        BadCredentials { .. } | NotConfigured => {
            tracing::error!(error = ?e, "WeChat login is misconfigured: check WECHAT_APPID and WECHAT_SECRET");
            ApiError::unavailable(ErrorCode::LoginUnavailable, "login is not available right now", 30)
        }
    }
}
