//! WeChat server-API credentials: a cached `stable_token`, or none at all behind Cloud
//! Run's 开放接口服务 (`WECHAT_OPENAPI_MODE=cloudrun`), where calls go to
//! `http://api.weixin.qq.com` without a token.
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Refresh this long before WeChat says the token expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// `force_refresh` is allowed about 20 times a day, 30 s apart: stay well inside.
const FORCE_REFRESH_SPACING: Duration = Duration::from_secs(30);
const FORCE_REFRESHES_PER_DAY: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("WeChat could not be reached for an access token")]
    Unreachable(#[source] reqwest::Error),
    #[error("WeChat refused an access token: errcode {errcode}")]
    Refused { errcode: i64, errmsg: String },
    #[error("WeChat's access-token answer could not be read")]
    Malformed,
    #[error("WECHAT_APPID / WECHAT_SECRET are not set")]
    NotConfigured,
}

struct Cached {
    token: SecretString,
    refresh_after: Instant,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    last_force: Option<Instant>,
    forces_today: u32,
    day_started: Option<Instant>,
}

pub struct AccessTokens(Inner);

enum Inner {
    /// Cloud Run's open-API service adds credentials itself.
    CloudRun,
    Stable {
        http: reqwest::Client,
        base_url: String,
        appid: Option<String>,
        secret: Option<SecretString>,
        state: Mutex<State>,
    },
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
}

impl AccessTokens {
    pub fn stable(
        http: reqwest::Client,
        base_url: String,
        appid: Option<String>,
        secret: Option<SecretString>,
    ) -> Self {
        AccessTokens(Inner::Stable { http, base_url, appid, secret, state: Mutex::new(State::default()) })
    }

    pub fn cloud_run() -> Self {
        AccessTokens(Inner::CloudRun)
    }

    /// A valid token (`None` in Cloud Run open-API mode). Concurrent callers share one
    /// fetch: the lock is held while fetching and the cache is re-checked under it.
    pub async fn token(&self) -> Result<Option<SecretString>, TokenError> {
        let Inner::Stable { state, .. } = &self.0 else { return Ok(None) };
        let mut state = state.lock().await;
        if let Some(cached) = state.cached.as_ref().filter(|c| Instant::now() < c.refresh_after) {
            return Ok(Some(cached.token.clone()));
        }
        let fresh = self.fetch(false).await?;
        let token = fresh.token.clone();
        state.cached = Some(fresh);
        Ok(Some(token))
    }

    /// WeChat said `rejected` is invalid (40001/42001): get another, forcing a refresh
    /// only when the cache still holds that same token and the daily allowance permits.
    pub async fn invalidate(&self, rejected: &SecretString) -> Result<(), TokenError> {
        let Inner::Stable { state, .. } = &self.0 else { return Ok(()) };
        let mut state = state.lock().await;
        let still_cached = state.cached.as_ref().is_some_and(|c| c.token.expose_secret() == rejected.expose_secret());
        if !still_cached {
            return Ok(()); // someone else already replaced it
        }
        let now = Instant::now();
        if state.day_started.is_none_or(|d| now.duration_since(d) > Duration::from_secs(86_400)) {
            state.day_started = Some(now);
            state.forces_today = 0;
        }
        let spaced = state.last_force.is_none_or(|t| now.duration_since(t) >= FORCE_REFRESH_SPACING);
        let force = spaced && state.forces_today < FORCE_REFRESHES_PER_DAY;
        if force {
            state.last_force = Some(now);
            state.forces_today += 1;
        }
        state.cached = Some(self.fetch(force).await?);
        Ok(())
    }

    async fn fetch(&self, force_refresh: bool) -> Result<Cached, TokenError> {
        let Inner::Stable { http, base_url, appid, secret, .. } = &self.0 else {
            return Err(TokenError::NotConfigured);
        };
        let (Some(appid), Some(secret)) = (appid, secret) else { return Err(TokenError::NotConfigured) };
        let response = http
            .post(format!("{base_url}/cgi-bin/stable_token"))
            .json(&json!({
                "grant_type": "client_credential",
                "appid": appid,
                "secret": secret.expose_secret(),
                "force_refresh": force_refresh,
            }))
            .send()
            .await
            .map_err(|e| TokenError::Unreachable(e.without_url()))?;
        let text = response.text().await.map_err(|e| TokenError::Unreachable(e.without_url()))?;
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|_| TokenError::Malformed)?;
        match (answer.access_token, answer.errcode.unwrap_or(0)) {
            (Some(token), 0) => {
                let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(7200));
                tracing::info!(force_refresh, expires_in = lifetime.as_secs(), "fetched a WeChat access token");
                Ok(Cached {
                    token: SecretString::from(token),
                    refresh_after: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2)),
                })
            }
            (_, errcode) => Err(TokenError::Refused { errcode, errmsg: answer.errmsg.unwrap_or_default() }),
        }
    }
}
