use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ParseError, UserId};

/// A `wx.login` code, or `dev:<name>` for development login.
#[derive(Debug, Clone)]
pub struct LoginCode(String);

impl LoginCode {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let code = raw.trim();
        if code.is_empty() {
            return Err(ParseError("code must not be empty".into()));
        }
        if code.len() > 256 || code.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ParseError("code is not a wx.login code".into()));
        }
        Ok(Self(code.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The name after `dev:`, when this is a development login code.
    pub fn dev_name(&self) -> Option<&str> {
        self.0.strip_prefix("dev:")
    }
}

/// A WeChat openid (or `dev_<name>` in development).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenId(String);

impl OpenId {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let valid = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(ParseError("not a valid openid".into()))
        }
    }
    pub fn for_dev_name(name: &str) -> Result<Self, ParseError> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(ParseError(
                "development login code must look like dev:<name> with 1-32 letters, digits, - or _".into(),
            ));
        }
        Ok(Self(format!("dev_{name}")))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Nickname(String);

impl Nickname {
    pub const MAX_CHARS: usize = 32;
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(ParseError(format!("nickname must be 1-{} characters", Self::MAX_CHARS)));
        }
        if name.chars().any(char::is_control) {
            return Err(ParseError("nickname must not contain control characters".into()));
        }
        Ok(Self(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AvatarUrl(String);

impl AvatarUrl {
    pub const MAX_LEN: usize = 512;
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let url = raw.trim();
        let valid = url.len() <= Self::MAX_LEN
            && url.strip_prefix("https://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            && !url.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Self(url.to_string()))
        } else {
            Err(ParseError(format!("avatar_url must be an https:// URL of at most {} characters", Self::MAX_LEN)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    pub nickname: Option<Nickname>,
    pub avatar_url: Option<AvatarUrl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub openid: OpenId,
    pub nickname: Option<Nickname>,
    pub avatar_url: Option<AvatarUrl>,
    pub created_at: DateTime<Utc>,
    /// Bumped by a logout: tokens issued at an older version no longer work.
    pub session_version: i64,
    /// Set by an operator: the user is refused everywhere (`403 user_banned`).
    pub ban: Option<Ban>,
}

/// Why and by whom a user was banned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub reason: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Ban {
    pub const MAX_REASON_CHARS: usize = 200;
    /// A reason is required: 1–200 characters, no control characters.
    pub fn new(reason: &str, by: &str, at: DateTime<Utc>) -> Result<Self, ParseError> {
        let reason = reason.trim();
        let chars = reason.chars().count();
        if chars == 0 || chars > Self::MAX_REASON_CHARS || reason.chars().any(char::is_control) {
            return Err(ParseError(format!("a reason is 1-{} characters on one line", Self::MAX_REASON_CHARS)));
        }
        Ok(Self { reason: reason.to_string(), at, by: by.to_string() })
    }
}
