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

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AuthState>>()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AuthState missing")))?;
            if let Some(openid) = CloudRunIdentity::openid(&req, state.trust_cloudrun_headers) {
                let store = req
                    .app_data::<web::Data<DynStore>>()
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("store missing")))?;
                let user = store.find_or_create_user(&openid).await.map_err(ApiError::internal)?;
                return Ok(AuthenticatedUser { user_id: user.id, source: IdentitySource::CloudRunHeaders });
            }
            let Some(token) = bearer_token(&req) else {
                tracing::debug!("no bearer token");
                return Err(ApiError::unauthorized());
            };
            match state.keys.verify(token) {
                Ok(user_id) => Ok(AuthenticatedUser { user_id, source: IdentitySource::Token }),
                Err(e) => {
                    tracing::debug!(reason = %e, "token refused");
                    Err(ApiError::unauthorized())
                }
            }
        })
    }
}
