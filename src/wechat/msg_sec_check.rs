//! Content safety through `msgSecCheck` v2. The verdict is `result.suggest`
//! (`pass`/`review`/`risky`): `errcode` is 0 even for violating text.
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::access_token::{AccessTokens, TokenError};
use crate::domain::OpenId;

/// WeChat checks at most this many characters per call; longer text goes in pieces.
pub const MAX_CHECK_CHARS: usize = 2500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suggest {
    Pass,
    Review,
    Risky,
}

impl Suggest {
    pub fn as_str(self) -> &'static str {
        match self {
            Suggest::Pass => "pass",
            Suggest::Review => "review",
            Suggest::Risky => "risky",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub suggest: Suggest,
    pub label: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("msgSecCheck could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("msgSecCheck answered errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("msgSecCheck's answer could not be read")]
    Malformed,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    result: Option<AnswerResult>,
}

#[derive(Deserialize)]
struct AnswerResult {
    suggest: String,
    #[serde(default)]
    label: Option<i64>,
}

pub struct ContentChecker {
    http: reqwest::Client,
    base_url: String,
    tokens: Arc<AccessTokens>,
    scene: u8,
}

fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(MAX_CHECK_CHARS).map(|c| c.iter().collect()).collect()
}

impl ContentChecker {
    pub fn new(base_url: String, tokens: Arc<AccessTokens>, scene: u8, timeout: Duration) -> anyhow::Result<Self> {
        let http =
            reqwest::Client::builder().timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(3))).build()?;
        Ok(Self { http, base_url, tokens, scene })
    }

    /// The worst verdict over every piece of `text`.
    #[tracing::instrument(name = "wechat.msg_sec_check", skip_all, fields(chars = text.chars().count()))]
    pub async fn check(&self, openid: &OpenId, text: &str) -> Result<Verdict, CheckError> {
        let mut worst = Verdict { suggest: Suggest::Pass, label: None };
        for piece in pieces(text) {
            let verdict = self.check_piece(openid, &piece).await?;
            if verdict.suggest > worst.suggest {
                worst = verdict;
            }
            if worst.suggest == Suggest::Risky {
                break;
            }
        }
        Ok(worst)
    }

    async fn check_piece(&self, openid: &OpenId, content: &str) -> Result<Verdict, CheckError> {
        let mut retried = false;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self.http.post(format!("{}/wxa/msg_sec_check", self.base_url));
            if let Some(token) = &token {
                request = request.query(&[("access_token", token.expose_secret())]);
            }
            let body = json!({"version": 2, "openid": openid.as_str(), "scene": self.scene, "content": content});
            // The URL carries the access token: errors are reported without it.
            let response = request.json(&body).send().await.map_err(|e| CheckError::Unreachable(e.without_url()))?;
            let text = response.text().await.map_err(|e| CheckError::Unreachable(e.without_url()))?;
            let answer: Answer = serde_json::from_str(&text).map_err(|_| CheckError::Malformed)?;
            match answer.errcode {
                0 => {
                    let result = answer.result.ok_or(CheckError::Malformed)?;
                    let suggest = match result.suggest.as_str() {
                        "pass" => Suggest::Pass,
                        "review" => Suggest::Review,
                        "risky" => Suggest::Risky,
                        _ => return Err(CheckError::Malformed),
                    };
                    return Ok(Verdict { suggest, label: result.label });
                }
                40001 | 42001 if !retried => {
                    retried = true;
                    if let Some(token) = &token {
                        tracing::warn!(errcode = answer.errcode, "access token rejected; refreshing");
                        self.tokens.invalidate(token).await?;
                    }
                }
                errcode => return Err(CheckError::Api { errcode, errmsg: answer.errmsg }),
            }
        }
    }
}
