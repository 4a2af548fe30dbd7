//! Fixed-window request limits per user and per client IP, counted in MongoDB.
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest};
use chrono::{DateTime, Utc};

use std::sync::Arc;

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
    proxy_depth: usize,
}

struct Window {
    name: &'static str,
    seconds: i64,
}

const MINUTE: Window = Window { name: "m", seconds: 60 };
const HOUR: Window = Window { name: "h", seconds: 3600 };

/// The client's address: the entry `depth` proxies from the right of X-Forwarded-For
/// (entries further left can be forged by the client), else the peer address.
pub fn client_ip(req: &HttpRequest, depth: usize) -> String {
    let peer = || req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    if depth == 0 {
        return peer();
    }
    let forwarded: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    forwarded.len().checked_sub(depth).and_then(|i| forwarded.get(i).cloned()).unwrap_or_else(peer)
}

impl RateLimiter {
    pub fn new(settings: &LimitSettings, store: DynStore) -> Self {
        RateLimiter {
            store,
            per_minute: settings.per_minute,
            per_hour: settings.per_hour,
            ip_per_minute: settings.ip_per_minute,
            ip_per_hour: settings.ip_per_hour,
            login_per_minute: settings.login_per_minute,
            proxy_depth: settings.proxy_depth,
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
        let ip = client_ip(req.request(), self.proxy_depth);
        self.count(&format!("login-ip:{ip}"), &MINUTE, self.login_per_minute, now()).await
    }

    async fn count_ip(&self, req: &ServiceRequest) -> Result<(), u64> {
        let at = now();
        let ip = client_ip(req.request(), self.proxy_depth);
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_client_ip_is_the_entry_the_trusted_proxies_appended() {
        let peer: std::net::SocketAddr = "10.0.0.9:5555".parse().unwrap();
        // (label, X-Forwarded-For headers, trusted depth, expected)
        let cases: &[(&str, &[&str], usize, &str)] = &[
            ("no header: the peer", &[], 1, "10.0.0.9"),
            ("depth 0 ignores the header", &["1.1.1.1"], 0, "10.0.0.9"),
            ("one proxy: the rightmost entry", &["6.6.6.6, 2.2.2.2"], 1, "2.2.2.2"),
            ("two proxies: one from the right", &["6.6.6.6, 3.3.3.3, 4.4.4.4"], 2, "3.3.3.3"),
            ("entries across repeated headers", &["6.6.6.6", "5.5.5.5"], 1, "5.5.5.5"),
            ("fewer entries than proxies: the peer", &["5.5.5.5"], 2, "10.0.0.9"),
            ("blank entries are skipped", &["7.7.7.7, , "], 1, "7.7.7.7"),
        ];
        for (label, headers, depth, expected) in cases {
            let mut request = TestRequest::default().peer_addr(peer);
            for value in *headers {
                request = request.append_header(("x-forwarded-for", *value));
            }
            assert_eq!(client_ip(&request.to_http_request(), *depth), *expected, "{label}");
        }
    }
}
