//! Who a request acts for, decided once per request.
//!
//! `resolve_identity` (middleware, built with its state) turns a bearer token or trusted
//! Cloud Run headers into an [`Identity`] in the request's extensions. The
//! `AuthenticatedUser` extractor and the per-user rate limit both read that value, so
//! they can never disagree about who is calling.
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, Ready};

use super::JwtKeys;
use crate::domain::{OpenId, UserId};
use crate::errors::ApiError;
use crate::store::DynStore;

/// What identity resolution needs.
pub struct AuthState {
    pub keys: JwtKeys,
    /// `WECHAT_TRUST_CLOUDRUN_HEADERS`: believe `X-WX-OPENID` on requests marked by
    /// `X-WX-SOURCE`. Safe only when the service's public-domain access is closed.
    pub trust_cloudrun_headers: bool,
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
}

impl IdentityResolver {
    pub async fn resolve(&self, req: &HttpRequest) -> Result<Identity, ApiError> {
        if let Some(openid) = CloudRunIdentity::openid(req, self.auth.trust_cloudrun_headers) {
            let user = self.store.find_or_create_user(&openid).await?;
            return Ok(Identity::User(AuthenticatedUser { user_id: user.id, source: IdentitySource::CloudRunHeaders }));
        }
        Ok(match bearer_token(req) {
            None => Identity::Anonymous,
            Some(token) => self.from_token(token).map_or(Identity::Refused, Identity::User),
        })
    }

    /// A token presented outside the headers (a WebSocket's first `auth` frame).
    pub fn from_token(&self, token: &str) -> Option<AuthenticatedUser> {
        match self.auth.keys.verify(token) {
            Ok(user_id) => Some(AuthenticatedUser { user_id, source: IdentitySource::Token }),
            Err(e) => {
                tracing::debug!(reason = %e, "token refused");
                None
            }
        }
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
