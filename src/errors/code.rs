//! Every error code a client can receive in the envelope, with the one HTTP status it
//! always comes with. Reply failures (`error` events) have their own codes in
//! `domain::ReplyFailure`; the README's lists are checked against both.
use actix_web::http::StatusCode;

macro_rules! error_codes {
    ($($variant:ident = $code:literal => $status:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($variant),*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code),*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status),*
                }
            }
        }
    };
}

error_codes! {
    BadRequest = "bad_request" => BAD_REQUEST,
    InvalidJson = "invalid_json" => BAD_REQUEST,
    InvalidBody = "invalid_body" => BAD_REQUEST,
    InvalidQuery = "invalid_query" => BAD_REQUEST,
    InvalidCursor = "invalid_cursor" => BAD_REQUEST,
    InvalidContent = "invalid_content" => BAD_REQUEST,
    InvalidTitle = "invalid_title" => BAD_REQUEST,
    InvalidMemory = "invalid_memory" => BAD_REQUEST,
    InvalidProfile = "invalid_profile" => BAD_REQUEST,
    InvalidFrame = "invalid_frame" => BAD_REQUEST,
    InvalidCode = "invalid_code" => BAD_REQUEST,
    MissingCode = "missing_code" => BAD_REQUEST,
    CodeAlreadyUsed = "code_already_used" => BAD_REQUEST,
    UnknownPersona = "unknown_persona" => BAD_REQUEST,
    NotAReply = "not_a_reply" => BAD_REQUEST,
    WeakPassword = "weak_password" => BAD_REQUEST,
    Unauthorized = "unauthorized" => UNAUTHORIZED,
    InvalidCredentials = "invalid_credentials" => UNAUTHORIZED,
    Forbidden = "forbidden" => FORBIDDEN,
    CsrfFailed = "csrf_failed" => FORBIDDEN,
    PasswordChangeRequired = "password_change_required" => FORBIDDEN,
    UserBanned = "user_banned" => FORBIDDEN,
    SignInLocked = "sign_in_locked" => TOO_MANY_REQUESTS,
    UserBlocked = "user_blocked" => FORBIDDEN,
    NotFound = "not_found" => NOT_FOUND,
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
    ReplyInProgress = "reply_in_progress" => CONFLICT,
    EditConflict = "edit_conflict" => CONFLICT,
    NoticeOutdated = "notice_outdated" => CONFLICT,
    NoticeRequired = "notice_required" => PRECONDITION_REQUIRED,
    GuardianConsentRequired = "guardian_consent_required" => FORBIDDEN,
    PersonaNotForMinors = "persona_not_for_minors" => FORBIDDEN,
    MinorTimeLimit = "minor_time_limit" => TOO_MANY_REQUESTS,
    PayloadTooLarge = "payload_too_large" => PAYLOAD_TOO_LARGE,
    UnsupportedMediaType = "unsupported_media_type" => UNSUPPORTED_MEDIA_TYPE,
    UnsupportedContentEncoding = "unsupported_content_encoding" => UNSUPPORTED_MEDIA_TYPE,
    RequestTimeout = "request_timeout" => REQUEST_TIMEOUT,
    ContentRejected = "content_rejected" => UNPROCESSABLE_ENTITY,
    RateLimited = "rate_limited" => TOO_MANY_REQUESTS,
    LoginRateLimited = "login_rate_limited" => TOO_MANY_REQUESTS,
    QuotaExceeded = "quota_exceeded" => TOO_MANY_REQUESTS,
    TooManyReplies = "too_many_replies" => TOO_MANY_REQUESTS,
    TooManySockets = "too_many_sockets" => TOO_MANY_REQUESTS,
    HeadersTooLarge = "headers_too_large" => REQUEST_HEADER_FIELDS_TOO_LARGE,
    InternalError = "internal_error" => INTERNAL_SERVER_ERROR,
    WechatError = "wechat_error" => BAD_GATEWAY,
    WechatUnavailable = "wechat_unavailable" => SERVICE_UNAVAILABLE,
    LoginUnavailable = "login_unavailable" => SERVICE_UNAVAILABLE,
    ContentCheckUnavailable = "content_check_unavailable" => SERVICE_UNAVAILABLE,
    StorageUnavailable = "storage_unavailable" => SERVICE_UNAVAILABLE,
    ShuttingDown = "shutting_down" => SERVICE_UNAVAILABLE,
    CompanionBusy = "companion_busy" => SERVICE_UNAVAILABLE,
    DependencyUnavailable = "dependency_unavailable" => SERVICE_UNAVAILABLE,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_carry_an_error_status() {
        let codes: std::collections::HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len(), "a code is listed twice");
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{text}");
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{text}");
        }
    }
}
