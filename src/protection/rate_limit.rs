//! Fixed-window request limits per user and per client IP, counted in MongoDB so every
//! replica shares them. Polling one reply has buckets of its own (a callContainer client
//! polls once a second). When the store cannot answer, limits fail open, but fast: each
//! count waits at most `CHECK_TIMEOUT`, and after a failure a breaker skips counting for
//! `BREAKER_OPEN` instead of making every request wait again.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;
use chrono::{DateTime, Utc};

use super::client_ip::ClientIp;
use crate::auth::Identity;
use crate::configuration::LimitSettings;
use crate::domain::{now, UserId};
use crate::errors::{ApiError, ErrorCode};
use crate::store::DynStore;

/// Longest a request waits for one counter.
const CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// How long limits stay open (uncounted) after the store failed to answer.
const BREAKER_OPEN: chrono::Duration = chrono::Duration::seconds(5);
const ACK_ROUTE: &str = "/api/me/notices/{kind}/ack";
const POLL_ROUTE: &str = "/api/conversations/{id}/messages/{message_id}";

pub struct RateLimiter {
    store: DynStore,
    limits: LimitSettings,
    /// Until when (epoch ms) counting is skipped because the store failed.
    open_until_ms: AtomicI64,
    tallies: Arc<crate::stats::LocalTallies>,
}

struct Window {
    name: &'static str,
    seconds: i64,
}

const MINUTE: Window = Window { name: "m", seconds: 60 };
const HOUR: Window = Window { name: "h", seconds: 3600 };

impl RateLimiter {
    pub fn new(settings: &LimitSettings, store: DynStore) -> Self {
        RateLimiter { store, limits: settings.clone(), open_until_ms: AtomicI64::new(0), tallies: Arc::default() }
    }

    /// Refusals are counted in `tallies` (for the console's daily figures).
    pub fn with_tallies(mut self, tallies: Arc<crate::stats::LocalTallies>) -> Self {
        self.tallies = tallies;
        self
    }

    fn refused(&self, retry_after: u64) -> actix_web::Error {
        self.tallies.add(crate::stats::Tally::RateLimited);
        too_many(retry_after)
    }

    async fn count(&self, subject: &str, window: &Window, limit: u32, at: DateTime<Utc>) -> Result<(), u64> {
        self.count_at(subject, window.name, window.seconds, limit, at).await
    }

    /// Counts one request against `subject`'s window of `window_secs` containing `at`;
    /// `Err` with the seconds to wait when over `limit` (0 = no limit). A store that fails
    /// or is slow lets the request through (and is logged): availability over strictness.
    pub async fn count_at(
        &self,
        subject: &str,
        window_name: &str,
        window_secs: i64,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<(), u64> {
        if limit == 0 || self.open_until_ms.load(Ordering::Relaxed) > at.timestamp_millis() {
            return Ok(());
        }
        let (key, window_end) = window_key(subject, window_name, window_secs, at);
        let counted = self.store.increment_counter(&key, 1, window_end + chrono::Duration::seconds(60));
        match tokio::time::timeout(CHECK_TIMEOUT, counted).await {
            Ok(Ok(count)) if count > i64::from(limit) => Err((window_end - at).num_seconds().max(1) as u64),
            Ok(Ok(_)) => Ok(()),
            failed => {
                let why = if failed.is_err() { "timed out" } else { "failed" };
                tracing::warn!(why, "rate limit unavailable; letting requests through for a few seconds");
                self.open_until_ms.store((at + BREAKER_OPEN).timestamp_millis(), Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Takes back one count of `subject`'s window containing `at` (when it was counted).
    async fn uncount(&self, subject: &str, window: &Window, limit: u32, at: DateTime<Utc>) {
        if limit == 0 || self.open_until_ms.load(Ordering::Relaxed) > at.timestamp_millis() {
            return;
        }
        let (key, window_end) = window_key(subject, window.name, window.seconds, at);
        let taken_back = self.store.increment_counter(&key, -1, window_end + chrono::Duration::seconds(60));
        if !matches!(tokio::time::timeout(CHECK_TIMEOUT, taken_back).await, Ok(Ok(_))) {
            tracing::warn!("could not take back a refused request's count");
        }
    }

    /// Counts one action of `user`: an HTTP request, or a WebSocket frame. The same key
    /// on every transport, so one user has one budget.
    pub async fn count_user(&self, user: UserId) -> Result<(), u64> {
        let subject = format!("user:{user}");
        self.count_both(&subject, self.limits.per_minute, self.limits.per_hour).await
    }

    /// Counts in the minute and the hour window at once (one round trip); the longer wait
    /// when over either.
    async fn count_both(&self, subject: &str, per_minute: u32, per_hour: u32) -> Result<(), u64> {
        let at = now();
        let (minute, hour) =
            tokio::join!(self.count(subject, &MINUTE, per_minute, at), self.count(subject, &HOUR, per_hour, at));
        match (minute, hour) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(wait), Ok(())) => {
                // Refused by the minute: that request must not spend the hour's budget.
                self.uncount(subject, &HOUR, per_hour, at).await;
                Err(wait)
            }
            (Ok(()), Err(wait)) => Err(wait),
        }
    }

    async fn count_user_poll(&self, user: UserId) -> Result<(), u64> {
        self.count(&format!("poll-user:{user}"), &MINUTE, self.limits.poll_per_minute, now()).await
    }

    async fn count_login(&self, req: &ServiceRequest) -> Result<(), u64> {
        let ip = ClientIp::of(req.request());
        self.count(&format!("login-ip:{ip}"), &MINUTE, self.limits.login_per_minute, now()).await
    }

    async fn count_ip(&self, req: &ServiceRequest) -> Result<(), u64> {
        let at = now();
        let ip = ClientIp::of(req.request());
        if is_poll(req) {
            return self.count(&format!("poll-ip:{ip}"), &MINUTE, self.limits.ip_poll_per_minute, at).await;
        }
        self.count_both(&format!("ip:{ip}"), self.limits.ip_per_minute, self.limits.ip_per_hour).await
    }
}

/// The counter of `subject`'s window of `window_secs` containing `at`, and when it ends.
fn window_key(subject: &str, window_name: &str, window_secs: i64, at: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let index = at.timestamp().div_euclid(window_secs);
    let window_end = DateTime::from_timestamp((index + 1) * window_secs, 0).unwrap_or(at);
    (format!("rl:{subject}:{window_name}:{index}"), window_end)
}

/// Polling one reply (`GET …/messages/{id}`), what `callContainer` clients do once a
/// second: counted in buckets of its own, so it neither eats the general budget nor
/// escapes limits.
fn is_poll(req: &ServiceRequest) -> bool {
    req.method() == Method::GET && req.match_pattern().as_deref() == Some(POLL_ROUTE)
}

/// Acknowledging a notice is a duty a user's chatting must never starve: not counted
/// against the user (the per-IP limits still hold; the route changes nothing twice).
fn is_acknowledgement(req: &ServiceRequest) -> bool {
    req.method() == Method::POST && req.match_pattern().as_deref() == Some(ACK_ROUTE)
}

fn too_many(retry_after: u64) -> actix_web::Error {
    ApiError::new(ErrorCode::RateLimited, "too many requests; please slow down").with_retry_after(retry_after).into()
}

/// Middleware, before identity is resolved: limits per client IP.
pub async fn limit_by_ip<B: MessageBody>(
    limiter: Arc<RateLimiter>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    limiter.count_ip(&req).await.map_err(|wait| limiter.refused(wait))?;
    next.call(req).await
}

/// Middleware on the login resource itself, so it runs after routing: every spelling of
/// the path that reaches login (`/api/auth/%6cogin`) is counted as a login.
pub async fn limit_logins<B: MessageBody>(
    limiter: Arc<RateLimiter>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    limiter.count_login(&req).await.map_err(|wait| limiter.refused(wait))?;
    next.call(req).await
}

/// Middleware, after identity is resolved: limits per user, keyed by the user id the
/// identity middleware found (whatever the `Authorization` scheme's case or source).
pub async fn limit_by_user<B: MessageBody>(
    limiter: Arc<RateLimiter>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let user = Identity::of(req.request())?.user().map(|u| u.user_id).filter(|_| !is_acknowledgement(&req));
    if let Some(user) = user {
        let counted = if is_poll(&req) { limiter.count_user_poll(user).await } else { limiter.count_user(user).await };
        counted.map_err(|wait| limiter.refused(wait))?;
    }
    next.call(req).await
}
