use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{LoginCode, OpenId};
use crate::errors::error_chain_fmt;

/// Talks to `{WECHAT_API_BASE}`; no retries, because a login code works only once.
pub struct WechatClient {
    http: reqwest::Client,
    base_url: String,
    appid: Option<String>,
    secret: Option<SecretString>,
}

/// What a successful exchange yields. The `session_key` is deliberately not kept:
/// no feature needs it, and a secret never held cannot leak.
#[derive(Debug, Clone)]
pub struct WechatSession {
    pub openid: OpenId,
    pub unionid: Option<String>,
}

#[derive(thiserror::Error)]
pub enum Code2SessionError {
    #[error("the login code is invalid (40029)")]
    InvalidCode,
    #[error("the login code was already used (40163)")]
    CodeAlreadyUsed,
    #[error("WeChat login frequency limit reached (45011)")]
    RateLimited,
    #[error("WeChat blocked this high-risk user (40226)")]
    HighRiskUser,
    #[error("WeChat is busy (-1)")]
    Busy,
    #[error("WeChat rejected this service's AppID or AppSecret ({errcode})")]
    BadCredentials { errcode: i64 },
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    Other { errcode: i64, errmsg: String },
    #[error("WeChat did not answer in time")]
    Timeout,
    #[error("WeChat could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("WeChat answered HTTP {0}")]
    BadStatus(u16),
    #[error("WeChat's answer could not be understood")]
    MalformedBody(#[source] anyhow::Error),
    #[error("WeChat login is not configured (WECHAT_APPID/WECHAT_SECRET)")]
    NotConfigured,
}

impl std::fmt::Debug for Code2SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
    }
}

#[derive(Deserialize)]
struct Code2SessionResponse {
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
}

impl WechatClient {
    pub fn new(
        base_url: String,
        appid: Option<String>,
        secret: Option<SecretString>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http =
            reqwest::Client::builder().connect_timeout(timeout.min(Duration::from_secs(3))).timeout(timeout).build()?;
        Ok(Self { http, base_url, appid, secret })
    }

    #[tracing::instrument(name = "wechat.code2session", skip_all)]
    pub async fn code2session(&self, code: &LoginCode) -> Result<WechatSession, Code2SessionError> {
        let (Some(appid), Some(secret)) = (&self.appid, &self.secret) else {
            return Err(Code2SessionError::NotConfigured);
        };
        let response = self
            .http
            .get(format!("{}/sns/jscode2session", self.base_url))
            .query(&[
                ("appid", appid.as_str()),
                ("secret", secret.expose_secret()),
                ("js_code", code.as_str()),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            // The URL carries the AppSecret: it must never reach an error message.
            .map_err(|e| transport_error(e.without_url()))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(Code2SessionError::BadStatus(status.as_u16()));
        }
        // WeChat often labels JSON as text/plain: parse the text whatever the header says.
        let body = response.text().await.map_err(|e| transport_error(e.without_url()))?;
        let parsed: Code2SessionResponse = serde_json::from_str(&body)
            .map_err(|e| Code2SessionError::MalformedBody(anyhow::anyhow!("{e}; HTTP {status}")))?;
        match parsed.errcode.unwrap_or(0) {
            0 => {}
            40029 => return Err(Code2SessionError::InvalidCode),
            40163 => return Err(Code2SessionError::CodeAlreadyUsed),
            45011 => return Err(Code2SessionError::RateLimited),
            40226 => return Err(Code2SessionError::HighRiskUser),
            -1 => return Err(Code2SessionError::Busy),
            errcode @ (40013 | 40125 | 41002 | 41004) => return Err(Code2SessionError::BadCredentials { errcode }),
            errcode => return Err(Code2SessionError::Other { errcode, errmsg: parsed.errmsg.unwrap_or_default() }),
        }
        let openid = parsed
            .openid
            .as_deref()
            .map(OpenId::parse)
            .transpose()
            .map_err(|e| Code2SessionError::MalformedBody(e.into()))?
            .ok_or_else(|| Code2SessionError::MalformedBody(anyhow::anyhow!("no openid in a success answer")))?;
        Ok(WechatSession { openid, unionid: parsed.unionid })
    }
}

fn transport_error(e: reqwest::Error) -> Code2SessionError {
    if e.is_timeout() {
        Code2SessionError::Timeout
    } else if e.is_decode() || e.is_body() {
        Code2SessionError::MalformedBody(e.into())
    } else {
        Code2SessionError::Unreachable(e)
    }
}
