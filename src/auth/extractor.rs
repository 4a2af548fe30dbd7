use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::JwtKeys;
use crate::domain::{OpenId, UserId};
use crate::errors::ApiError;
use crate::store::DynStore;

/// What the extractor needs, shared as app data.
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

fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

impl AuthenticatedUser {
    /// Identifies the caller from trusted Cloud Run headers or a bearer token;
    /// `Ok(None)` when the request carries neither.
    pub async fn identify(req: &HttpRequest) -> Result<Option<AuthenticatedUser>, ApiError> {
        let state = req
            .app_data::<web::Data<AuthState>>()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AuthState missing")))?;
        if let Some(openid) = CloudRunIdentity::openid(req, state.trust_cloudrun_headers) {
            let store = req
                .app_data::<web::Data<DynStore>>()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("store missing")))?;
            let user = store.find_or_create_user(&openid).await?;
            return Ok(Some(AuthenticatedUser { user_id: user.id, source: IdentitySource::CloudRunHeaders }));
        }
        match bearer_token(req) {
            Some(token) => Self::from_token(&state.keys, token).map(Some),
            None => Ok(None),
        }
    }

    pub fn from_token(keys: &JwtKeys, token: &str) -> Result<AuthenticatedUser, ApiError> {
        keys.verify(token).map(|user_id| AuthenticatedUser { user_id, source: IdentitySource::Token }).map_err(|e| {
            tracing::debug!(reason = %e, "token refused");
            ApiError::unauthorized()
        })
    }
}

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            Self::identify(&req).await?.ok_or_else(|| {
                tracing::debug!("no credentials");
                ApiError::unauthorized()
            })
        })
    }
}
