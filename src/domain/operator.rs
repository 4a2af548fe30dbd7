//! The people who run the service (operators), separate from WeChat users: their accounts,
//! console sessions, the audit log of what they did, and the API keys they hand out.
use chrono::{DateTime, Utc};

use super::{ParseError, UserId};

/// An operator's sign-in name: 3–32 of `a-z 0-9 _ - .`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim().to_ascii_lowercase();
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.');
        let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !(3..=32).contains(&name.len()) || !starts_well || !name.chars().all(allowed) {
            return Err(ParseError(
                "an operator name is 3-32 of a-z, 0-9, _ - . starting with a letter or digit".into(),
            ));
        }
        Ok(Self(name))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OperatorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an operator may do: admins everything; moderators read, ban and review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    Admin,
    Moderator,
}

impl OperatorRole {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw.trim() {
            "admin" => Ok(Self::Admin),
            "moderator" => Ok(Self::Moderator),
            _ => Err(ParseError("a role is admin or moderator".into())),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Moderator => "moderator",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: OperatorName,
    pub role: OperatorRole,
    /// Argon2id PHC string; the password itself is never stored or logged.
    pub password_hash: String,
    /// A one-time password from the command line must be replaced at first sign-in.
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A signed-in console session. The cookie carries a random token; only its SHA-256 is
/// stored, so a leaked database does not sign anyone in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    pub token_hash: String,
    pub operator: OperatorName,
    /// Sent back by the page in `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What an operator did, kept for admins to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    SignIn,
    SignOut,
    PasswordChanged,
    OperatorAdded,
    OperatorReset,
    OperatorDisabled,
    PersonaSaved,
    UserBanned,
    UserUnbanned,
    QuotaChanged,
    ConversationViewed,
    ApiKeyCreated,
    ApiKeyRevoked,
    ConversationTakenOver,
    OperatorReplied,
    ConversationReleased,
    GuardianConsentRecorded,
    MinorModeOff,
    ReportDecided,
}

/// Why an operator did something (a ban, reading a conversation, a quota change): 1–200
/// characters on one line, kept in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || text.chars().any(char::is_control) {
            return Err(ParseError(format!("a reason is 1-{} characters on one line", Self::MAX_CHARS)));
        }
        Ok(Self(text.to_string()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The operator, or `cli` for the command line.
    pub actor: String,
    pub action: AuditAction,
    /// What it was done to (a user id, persona id, key id…), if anything.
    pub target: Option<String>,
    pub reason: Option<String>,
}

/// A key for the OpenAI-compatible API. Only its SHA-256 is stored; the key is shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    /// The first characters of the key, to recognise it in the console.
    pub prefix: String,
    /// Requests per minute (0 = no limit of its own).
    pub per_minute: u32,
    /// Tokens per day, China time (0 = no limit of its own).
    pub daily_tokens: i64,
    /// The mini-program user whose openid msgSecCheck is asked with for this key's
    /// traffic (WeChat checks text only on behalf of a user of the mini-program).
    pub check_as: Option<UserId>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_line_of_one_to_two_hundred_characters() {
        let long = "理".repeat(201);
        let cases = [
            ("a plain reason", "反复发送骚扰内容", Some("反复发送骚扰内容")),
            ("trimmed", "  核实投诉  ", Some("核实投诉")),
            ("empty", "", None),
            ("only spaces", "   ", None),
            ("two lines", "第一行\n第二行", None),
            ("too long", long.as_str(), None),
        ];
        for (label, text, expected) in cases {
            assert_eq!(Reason::parse(text).ok().map(Reason::into_string).as_deref(), expected, "{label}");
        }
        assert!(Reason::parse(&"理".repeat(200)).is_ok(), "200 characters are enough");
    }

    #[test]
    fn operator_names_are_short_lowercase_words() {
        let cases = [
            ("a plain name", "alice", Some("alice")),
            ("upper case is folded", "Alice", Some("alice")),
            ("digits, dot, dash and underscore", "ops-1.a_b", Some("ops-1.a_b")),
            ("too short", "ab", None),
            ("too long", "a234567890123456789012345678901234", None),
            ("a space", "al ice", None),
            ("starts with a dot", ".alice", None),
            ("non-ASCII", "小溪", None),
        ];
        for (label, raw, expected) in cases {
            assert_eq!(OperatorName::parse(raw).ok().as_ref().map(OperatorName::as_str), expected, "{label}");
        }
    }
}
