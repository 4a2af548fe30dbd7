//! Fixed-window request limits per user and per client IP, counted in MongoDB.
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;
use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::client_ip::ClientIp;
use crate::auth::Identity;
use crate::configuration::LimitSettings;
use crate::domain::{now, UserId};
use crate::errors::{ApiError, ErrorCode};
use crate::store::DynStore;

pub struct RateLimiter {
    store: DynStore,
    per_minute: u32,
    per_hour: u32,
    ip_per_minute: u32,
    ip_per_hour: u32,
    login_per_minute: u32,
}

struct Window {
    name: &'static str,
    seconds: i64,
}

const MINUTE: Window = Window { name: "m", seconds: 60 };
const HOUR: Window = Window { name: "h", seconds: 3600 };

impl RateLimiter {
    pub fn new(settings: &LimitSettings, store: DynStore) -> Self {
        RateLimiter {
            store,
            per_minute: settings.per_minute,
            per_hour: settings.per_hour,
            ip_per_minute: settings.ip_per_minute,
            ip_per_hour: settings.ip_per_hour,
            login_per_minute: settings.login_per_minute,
        }
    }

    async fn count(&self, subject: &str, window: &Window, limit: u32, at: DateTime<Utc>) -> Result<(), u64> {
        self.count_at(subject, window.name, window.seconds, limit, at).await
    }

    /// Counts one request against `subject`'s window of `window_secs` containing `at`;
    /// `Err` with the seconds to wait when over `limit` (0 = no limit). A store failure
    /// lets the request through (and is logged): availability over strictness.
    pub async fn count_at(
        &self,
        subject: &str,
        window_name: &str,
        window_secs: i64,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<(), u64> {
        if limit == 0 {
            return Ok(());
        }
        let index = at.timestamp().div_euclid(window_secs);
        let window_end = DateTime::from_timestamp((index + 1) * window_secs, 0).unwrap_or(at);
        let key = format!("rl:{subject}:{window_name}:{index}");
        match self.store.increment_counter(&key, 1, window_end + chrono::Duration::seconds(60)).await {
            Ok(count) if count > i64::from(limit) => Err((window_end - at).num_seconds().max(1) as u64),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = ?e, "rate limit unavailable; letting the request through");
                Ok(())
            }
        }
    }

    /// Counts one action of `user`: an HTTP request, or a WebSocket frame. The same key
    /// on every transport, so one user has one budget.
    pub async fn count_user(&self, user: UserId) -> Result<(), u64> {
        let at = now();
        self.count(&format!("user:{user}"), &MINUTE, self.per_minute, at).await?;
        self.count(&format!("user:{user}"), &HOUR, self.per_hour, at).await
    }

    async fn count_login(&self, req: &ServiceRequest) -> Result<(), u64> {
        let ip = ClientIp::of(req.request());
        self.count(&format!("login-ip:{ip}"), &MINUTE, self.login_per_minute, now()).await
    }

    async fn count_ip(&self, req: &ServiceRequest) -> Result<(), u64> {
        let at = now();
        let ip = ClientIp::of(req.request());
        self.count(&format!("ip:{ip}"), &MINUTE, self.ip_per_minute, at).await?;
        self.count(&format!("ip:{ip}"), &HOUR, self.ip_per_hour, at).await
    }
}

/// Polling a reply (`GET …/messages/{id}`) is what `callContainer` clients must do once a
/// second; it is a cheap indexed read and is not counted.
fn exempt(req: &ServiceRequest) -> bool {
    req.method() == Method::GET
        && req.match_pattern().as_deref() == Some("/api/conversations/{id}/messages/{message_id}")
}

fn too_many(retry_after: u64) -> actix_web::Error {
    ApiError::new(ErrorCode::RateLimited, "too many requests; please slow down").with_retry_after(retry_after).into()
}

/// Middleware, before identity is resolved: limits per client IP (and logins per IP).
pub async fn limit_by_ip<B: MessageBody>(
    limiter: Arc<RateLimiter>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    if !exempt(&req) {
        limiter.count_ip(&req).await.map_err(too_many)?;
    }
    next.call(req).await
}

/// Middleware on the login resource itself, so it runs after routing: every spelling of
/// the path that reaches login (`/api/auth/%6cogin`) is counted as a login.
pub async fn limit_logins<B: MessageBody>(
    limiter: Arc<RateLimiter>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    limiter.count_login(&req).await.map_err(too_many)?;
    next.call(req).await
}

/// Middleware, after identity is resolved: limits per user, keyed by the user id the
/// identity middleware found (whatever the `Authorization` scheme's case or source).
pub async fn limit_by_user<B: MessageBody>(
    limiter: Arc<RateLimiter>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    if !exempt(&req) {
        let user = Identity::of(req.request())?.user().map(|u| u.user_id);
        if let Some(user) = user {
            limiter.count_user(user).await.map_err(too_many)?;
        }
    }
    next.call(req).await
}
