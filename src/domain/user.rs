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
    /// Set by an operator: this user's own daily limits instead of the service's.
    pub quota: Option<QuotaLimits>,
    /// Notices waiting for the user's acknowledgement.
    pub notices: Vec<super::PendingNotice>,
    /// The current stretch of use, for the usage reminder and minor mode's time limit.
    pub activity: Option<super::Activity>,
    pub minor_mode: Option<super::MinorMode>,
    /// The privacy policy version the user agreed to.
    pub agreed_policy: Option<super::PolicyAgreement>,
    /// The account is erased at this time (a cooling-off period), unless cancelled.
    pub deletion_due: Option<DateTime<Utc>>,
}

/// Daily limits of messages and tokens (0: no limit), China time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub messages: i64,
    pub tokens: i64,
}

impl QuotaLimits {
    /// Beyond any real day's use: a typo, not a limit.
    pub const MAX: i64 = 1_000_000_000;

    pub fn new(messages: i64, tokens: i64) -> Result<Self, ParseError> {
        if !(0..=Self::MAX).contains(&messages) || !(0..=Self::MAX).contains(&tokens) {
            return Err(ParseError(format!("daily limits are 0 (no limit) to {}", Self::MAX)));
        }
        Ok(Self { messages, tokens })
    }
}

/// Why and by whom a user was banned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub reason: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Ban {
    pub fn new(reason: super::Reason, by: &str, at: DateTime<Utc>) -> Self {
        Self { reason: reason.into_string(), at, by: by.to_string() }
    }
}
