use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{UsageDto, UserDto};
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::domain::{AvatarUrl, Nickname, ProfilePatch};
use crate::errors::{ApiError, ErrorCode};
use crate::store::DynStore;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    nickname: Option<String>,
    avatar_url: Option<String>,
}

impl ProfileBody {
    fn parse(&self) -> Result<ProfilePatch, ApiError> {
        let invalid = |e: crate::domain::ParseError| ApiError::new(ErrorCode::InvalidProfile, e.to_string());
        Ok(ProfilePatch {
            nickname: self.nickname.as_deref().map(Nickname::parse).transpose().map_err(invalid)?,
            avatar_url: self.avatar_url.as_deref().map(AvatarUrl::parse).transpose().map_err(invalid)?,
        })
    }
}

/// `GET /api/me`
pub async fn get_me(user: AuthenticatedUser, store: web::Data<DynStore>) -> Result<HttpResponse, ApiError> {
    let me = store.get_user(user.user_id).await?.ok_or_else(ApiError::unauthorized)?;
    Ok(HttpResponse::Ok().json(UserDto::from(&me)))
}

/// `PATCH /api/me` `{"nickname"?, "avatar_url"?}`
pub async fn patch_me(
    user: AuthenticatedUser,
    body: web::Json<ProfileBody>,
    store: web::Data<DynStore>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.parse()?;
    let me = store.update_user_profile(user.user_id, &patch).await?.ok_or_else(ApiError::unauthorized)?;
    Ok(HttpResponse::Ok().json(UserDto::from(&me)))
}

/// `GET /api/me/usage`: today's use of the daily quotas (China time) and their limits.
pub async fn get_usage(user: AuthenticatedUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    let usage = chat.usage(user.user_id).await?;
    Ok(HttpResponse::Ok().json(UsageDto::from(&usage)))
}
