use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dto::{UsageDto, UserDto};
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::domain::{AvatarUrl, Nickname, ProfilePatch, User};
use crate::errors::{ApiError, ErrorCode};
use crate::safety::NoticeEvent;
use crate::store::DynStore;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    nickname: Option<String>,
    avatar_url: Option<String>,
    /// A declared age under 18 switches minor mode on; the age itself is not kept.
    age: Option<u32>,
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

#[derive(Serialize)]
struct MinorModeDto {
    since: DateTime<Utc>,
    guardian_consent: bool,
    /// The daily time limit (0: none) and what is used of it today, China time.
    daily_minutes: u64,
    used_minutes_today: u64,
}

/// `/api/me`: the profile, the notices to show and acknowledge, minor mode.
#[derive(Serialize)]
struct MeDto<'a> {
    #[serde(flatten)]
    user: UserDto<'a>,
    notices: Vec<NoticeEvent>,
    minor_mode: Option<MinorModeDto>,
    /// When a requested deletion erases the account (a cooling-off period), until cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_due_at: Option<DateTime<Utc>>,
}

async fn me_body(me: &User, chat: &ChatService) -> HttpResponse {
    let time = chat.minor_time(me).await;
    let minor_mode = me.minor_mode.as_ref().map(|m| MinorModeDto {
        since: m.since,
        guardian_consent: m.guardian_consent.is_some(),
        daily_minutes: time.limit_minutes,
        used_minutes_today: time.used_minutes,
    });
    HttpResponse::Ok().json(MeDto {
        user: UserDto::from(me),
        notices: chat.safety().pending(me),
        minor_mode,
        deletion_due_at: me.deletion_due,
    })
}

/// `GET /api/me`
pub async fn get_me(
    user: AuthenticatedUser,
    store: web::Data<DynStore>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let me = store.get_user(user.user_id).await?.ok_or_else(ApiError::unauthorized)?;
    Ok(me_body(&me, &chat).await)
}

/// `PATCH /api/me` `{"nickname"?, "avatar_url"?, "age"?}`
pub async fn patch_me(
    user: AuthenticatedUser,
    body: web::Json<ProfileBody>,
    store: web::Data<DynStore>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.parse()?;
    match body.age {
        Some(age) if !(1..=120).contains(&age) => {
            return Err(ApiError::new(ErrorCode::InvalidProfile, "age must be 1-120"));
        }
        Some(age) if age < 18 => super::safety::minor_mode_on(&chat, user.user_id, "declared_age").await?,
        _ => {}
    }
    let me = store.update_user_profile(user.user_id, &patch).await?.ok_or_else(ApiError::unauthorized)?;
    Ok(me_body(&me, &chat).await)
}

/// `GET /api/me/usage`: today's use of the daily quotas (China time) and their limits.
pub async fn get_usage(user: AuthenticatedUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    let usage = chat.usage(user.user_id).await?;
    Ok(HttpResponse::Ok().json(UsageDto::from(&usage)))
}
