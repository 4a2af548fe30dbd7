//! The console's HTTP rules: who may reach it (the address allowlist), who is signed in
//! (an `HttpOnly`, `SameSite=Strict` session cookie, `Secure` outside development), the
//! CSRF header on every state-changing request, and what each role may do.
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, ResponseError};
use sha2::{Digest, Sha256};

use super::accounts::{self, AccountError};
use crate::configuration::ConsoleSettings;
use crate::domain::{now, Operator, OperatorRole, OperatorSession};
use crate::errors::{ApiError, ErrorCode};
use crate::protection::{ClientIp, RateLimiter};
use crate::store::DynStore;

pub const SESSION_COOKIE: &str = "companion_console";
const CSRF_HEADER: &str = "x-csrf-token";
/// Sign-in attempts per client address per minute.
const SIGN_INS_PER_MINUTE: u32 = 10;

pub struct ConsoleState {
    pub store: DynStore,
    pub settings: ConsoleSettings,
    pub limiter: Arc<RateLimiter>,
}

/// What a console route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any live session, also one that must still replace its one-time password.
    Session,
    /// A signed-in operator of any role whose password is their own.
    Operator,
    Admin,
}

/// The operator behind a console request.
pub struct Signed {
    pub session: OperatorSession,
    pub operator: Operator,
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidCredentials => ApiError::new(ErrorCode::InvalidCredentials, "用户名或密码错误"),
            AccountError::Locked { retry_after } => {
                ApiError::new(ErrorCode::SignInLocked, "登录失败次数过多，请稍后再试").with_retry_after(retry_after)
            }
            AccountError::WeakPassword(why) => ApiError::new(ErrorCode::WeakPassword, why),
            AccountError::NameTaken(_) | AccountError::NoSuchOperator(_) => ApiError::not_found("no such operator"),
            AccountError::Store(e) => e.into(),
            AccountError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl ConsoleState {
    /// The signed-in operator, if the request may do what `need` says.
    pub async fn signed(&self, req: &HttpRequest, need: Need) -> Result<Signed, ApiError> {
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
        let found = match token.is_empty() {
            true => None,
            false => accounts::session_of(&self.store, &token, now()).await?,
        };
        let Some((session, operator)) = found else { return Err(ApiError::unauthorized()) };
        if !matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD) {
            let given = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            // Compared as digests, so the time taken does not tell where they differ.
            if Sha256::digest(given.as_bytes()) != Sha256::digest(session.csrf_token.as_bytes()) {
                return Err(ApiError::new(ErrorCode::CsrfFailed, "请刷新页面后重试"));
            }
        }
        if need != Need::Session && operator.must_change_password {
            return Err(ApiError::new(ErrorCode::PasswordChangeRequired, "请先修改初始密码"));
        }
        if need == Need::Admin && operator.role != OperatorRole::Admin {
            return Err(ApiError::new(ErrorCode::Forbidden, "需要管理员权限"));
        }
        Ok(Signed { session, operator })
    }

    /// Counts a sign-in attempt from this address; `Err` when it is over the limit. The
    /// address it was counted under is returned (for the per-address lock).
    pub async fn count_sign_in(&self, req: &HttpRequest) -> Result<String, ApiError> {
        let from = address_key(req.extensions().get::<ClientIp>().and_then(|c| c.0));
        let subject = format!("console-sign-in:{from}");
        self.limiter.count_at(&subject, "m", 60, SIGN_INS_PER_MINUTE, now()).await.map_err(|retry_after| {
            ApiError::new(ErrorCode::LoginRateLimited, "登录尝试过于频繁，请稍后再试").with_retry_after(retry_after)
        })?;
        Ok(from)
    }

    /// The session cookie for `token` (or, without one, the cookie that removes it).
    pub fn cookie(&self, token: Option<&str>) -> Cookie<'static> {
        let mut cookie = Cookie::build(SESSION_COOKIE, token.unwrap_or_default().to_string())
            .path("/console")
            .http_only(true)
            .secure(self.settings.secure_cookie)
            .same_site(SameSite::Strict)
            .finish();
        match token {
            Some(_) => cookie.set_max_age(CookieDuration::seconds(self.settings.session_ttl.as_secs() as i64)),
            None => cookie.make_removal(),
        }
        cookie
    }
}

/// Middleware: the console exists only for allowed addresses (others get a plain 404).
pub async fn admit_console<B: MessageBody>(
    allowed: crate::console::IpAllowlist,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let ip = req.extensions().get::<ClientIp>().and_then(|c| c.0);
    if !allowed.admits(ip) {
        let response = ApiError::not_found("no such resource").error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// A client address as sign-in limits count it: IPv4 whole, IPv6 by its /64 (one host
/// usually holds a whole /64).
pub fn address_key(ip: Option<std::net::IpAddr>) -> String {
    match ip {
        Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_string(),
    }
}

/// The reason an operator states for an action (kept in the audit log): one line of
/// 1–200 characters, or `400 invalid_body` saying so.
pub fn stated_reason(text: &str) -> Result<crate::domain::Reason, ApiError> {
    crate::domain::Reason::parse(text).map_err(|e| ApiError::new(crate::errors::ErrorCode::InvalidBody, e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_whole_for_ipv4_and_by_their_64_for_ipv6() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"), "one /64, one key");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(address_key(None), "unknown");
    }
}
