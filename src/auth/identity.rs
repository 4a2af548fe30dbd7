//! Who a request acts for, decided once per request.
//!
//! `resolve_identity` (middleware, built with its state) turns a bearer token or trusted
//! Cloud Run headers into an [`Identity`] in the request's extensions. The
//! `AuthenticatedUser` extractor and the per-user rate limit both read that value, so
//! they can never disagree about who is calling.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, Ready};

use super::{JwtKeys, VerifiedToken};
use crate::domain::{OpenId, UserId};
use crate::errors::ApiError;
use crate::store::DynStore;

/// What identity resolution needs.
pub struct AuthState {
    pub keys: JwtKeys,
    /// `WECHAT_TRUST_CLOUDRUN_HEADERS`: believe `X-WX-OPENID` on requests marked by
    /// `X-WX-SOURCE`. Safe only when the service's public-domain access is closed.
    pub trust_cloudrun_headers: bool,
    /// How long a session may be refreshed from its login (`SESSION_MAX_DAYS`).
    pub max_session: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    Token,
    CloudRunHeaders,
}

/// The user a request acts for. Every `/api/*` route except login takes one.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user_id: UserId,
    pub source: IdentitySource,
    /// The token's session, for a token (`None` for Cloud Run identity headers).
    pub session: Option<VerifiedToken>,
}

/// The resolved caller, stored in the request's extensions.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credentials at all.
    Anonymous,
    /// Credentials that do not verify (expired, forged, wrong key).
    Refused,
    User(AuthenticatedUser),
}

impl Identity {
    /// The identity resolved for this request. Missing means the middleware is not in
    /// front of this route: a wiring bug, reported as an internal error (never "anonymous").
    pub fn of(req: &HttpRequest) -> Result<Identity, ApiError> {
        req.extensions().get::<Identity>().cloned().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("identity middleware is not installed on {}", req.path()))
        })
    }

    /// The user, if credentials were given and verified.
    pub fn user(&self) -> Option<&AuthenticatedUser> {
        match self {
            Identity::User(user) => Some(user),
            _ => None,
        }
    }
}

/// The caller's identity as injected by Cloud Run for `wx.cloud.callContainer` and
/// `connectContainer` traffic (header names are case-insensitive).
pub struct CloudRunIdentity;

impl CloudRunIdentity {
    pub fn openid(req: &HttpRequest, trusted: bool) -> Option<OpenId> {
        if !trusted || !req.headers().contains_key("x-wx-source") {
            return None;
        }
        let raw = req.headers().get("x-wx-openid")?.to_str().ok()?;
        OpenId::parse(raw.trim()).ok()
    }
}

/// The token of an `Authorization: Bearer …` header; the scheme is case-insensitive
/// (RFC 9110), so `BEARER` and `bearer` name the same user as `Bearer`.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// Resolves identities: the one place credentials become a user.
pub struct IdentityResolver {
    pub auth: Arc<AuthState>,
    pub store: DynStore,
    /// Users' session versions and bans, read from the store at most every `SESSION_CHECK_EVERY`.
    pub sessions: Mutex<HashMap<UserId, (UserStanding, Instant)>>,
}

/// What the resolver keeps about a user between store reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStanding {
    pub session_version: i64,
    pub banned: bool,
}

/// How stale a cached session version or ban may be: a logout or a ban takes effect on
/// other replicas within this.
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(10);

impl IdentityResolver {
    pub async fn resolve(&self, req: &HttpRequest) -> Result<Identity, ApiError> {
        if let Some(openid) = CloudRunIdentity::openid(req, self.auth.trust_cloudrun_headers) {
            let user = self.store.find_or_create_user(&openid).await?;
            if user.ban.is_some() {
                return Err(ApiError::banned());
            }
            let source = IdentitySource::CloudRunHeaders;
            return Ok(Identity::User(AuthenticatedUser { user_id: user.id, source, session: None }));
        }
        Ok(match bearer_token(req) {
            None => Identity::Anonymous,
            Some(token) => self.from_token(token).await?.map_or(Identity::Refused, Identity::User),
        })
    }

    /// A token (from the header, or a WebSocket's first `auth` frame): valid when it
    /// verifies and its session was not ended by a logout (or the user deleted). A banned
    /// user's valid token is an error (`user_banned`), not "no user".
    pub async fn from_token(&self, token: &str) -> Result<Option<AuthenticatedUser>, ApiError> {
        let verified = match self.auth.keys.verify(token) {
            Ok(verified) => verified,
            Err(e) => {
                tracing::debug!(reason = %e, "token refused");
                return Ok(None);
            }
        };
        let Some(standing) = self.standing(verified.user_id).await? else { return Ok(None) };
        if standing.session_version != verified.session_version {
            tracing::debug!("token refused: its session ended");
            return Ok(None);
        }
        if standing.banned {
            return Err(ApiError::banned());
        }
        let user =
            AuthenticatedUser { user_id: verified.user_id, source: IdentitySource::Token, session: Some(verified) };
        Ok(Some(user))
    }

    async fn standing(&self, user: UserId) -> Result<Option<UserStanding>, ApiError> {
        let cached = self.cache().get(&user).filter(|(_, at)| at.elapsed() < SESSION_CHECK_EVERY).map(|(s, _)| *s);
        if let Some(standing) = cached {
            return Ok(Some(standing));
        }
        let Some(found) = self.store.get_user(user).await? else { return Ok(None) };
        let standing = UserStanding { session_version: found.session_version, banned: found.ban.is_some() };
        self.cache().insert(user, (standing, Instant::now()));
        Ok(Some(standing))
    }

    /// Forgets what is cached about `user`: a ban or unban takes effect here at once.
    pub fn forget(&self, user: UserId) {
        self.cache().remove(&user);
    }

    /// Ends every session of `user` (logout): their tokens stop working here at once, on
    /// other replicas within `SESSION_CHECK_EVERY`.
    pub async fn end_sessions(&self, user: UserId) -> Result<(), ApiError> {
        self.store.bump_session_version(user).await?;
        self.forget(user);
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (UserStanding, Instant)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Middleware: resolves the identity before anything that depends on it runs.
pub async fn resolve_identity<B: MessageBody>(
    resolver: Arc<IdentityResolver>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let identity = resolver.resolve(req.request()).await?;
    req.extensions_mut().insert(identity);
    next.call(req).await
}

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Identity::of(req).and_then(|identity| match identity {
            Identity::User(user) => Ok(user),
            Identity::Anonymous | Identity::Refused => Err(ApiError::unauthorized()),
        }))
    }
}
