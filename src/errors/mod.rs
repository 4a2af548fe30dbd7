//! The one error envelope: `{"error":{"code":"snake_case","message":"…"}}`.
//!
//! Every error a client can see goes through [`ApiError`] or a concern's own enum that
//! renders with [`envelope`]. Internal failures are logged with their full cause chain
//! and answered with an opaque 500.
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;

mod code;

pub use code::ErrorCode;

#[derive(Serialize)]
struct Envelope<'a> {
    error: EnvelopeBody<'a>,
}

#[derive(Serialize)]
struct EnvelopeBody<'a> {
    code: &'a str,
    message: &'a str,
    /// The reply an error is about (`reply_in_progress`: the one holding the conversation).
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_id: Option<&'a str>,
}

/// The envelope with `code`'s status.
fn envelope(code: ErrorCode, message: &str) -> HttpResponse {
    envelope_about(code, message, None)
}

fn envelope_about(code: ErrorCode, message: &str, reply_id: Option<&str>) -> HttpResponse {
    let body = EnvelopeBody { code: code.as_str(), message, reply_id };
    HttpResponseBuilder::new(code.status()).json(Envelope { error: body })
}

/// Formats an error and every cause beneath it, for logs.
pub fn error_chain_fmt(e: &impl std::error::Error, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    writeln!(f, "{e}")?;
    let mut current = e.source();
    while let Some(cause) = current {
        writeln!(f, "Caused by:\n\t{cause}")?;
        current = cause.source();
    }
    Ok(())
}

const INTERNAL_MESSAGE: &str = "something went wrong on our side; please try again";

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Client { code: ErrorCode, message: String, retry_after: Option<u64>, reply_id: Option<String> },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Internal(e) => write!(f, "internal error: {e:?}"),
            other => error_chain_fmt(other, f),
        }
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Client { code, message: message.into(), retry_after: None, reply_id: None }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing, invalid or expired credentials; log in again")
    }
    /// An operator suspended this user: every route and transport refuses them.
    pub fn banned() -> Self {
        Self::new(ErrorCode::UserBanned, "this account has been suspended by the operator")
    }
    pub fn unavailable(code: ErrorCode, message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(code, message).with_retry_after(retry_after)
    }
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        if let ApiError::Client { retry_after, .. } = &mut self {
            *retry_after = Some(seconds);
        }
        self
    }
    pub fn with_reply_id(mut self, id: String) -> Self {
        if let ApiError::Client { reply_id, .. } = &mut self {
            *reply_id = Some(id);
        }
        self
    }
    pub fn reply_id(&self) -> Option<&str> {
        match self {
            ApiError::Client { reply_id, .. } => reply_id.as_deref(),
            ApiError::Internal(_) => None,
        }
    }
    /// An internal failure, logged here with its cause chain, where it is created: how it
    /// is later rendered (HTTP body, WebSocket frame) has no side effects.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        tracing::error!(error.cause_chain = ?e, "internal error");
        ApiError::Internal(e)
    }
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }
    /// What the client is told: never an internal error's details.
    pub fn client_message(&self) -> &str {
        match self {
            ApiError::Client { message, .. } => message,
            ApiError::Internal(_) => INTERNAL_MESSAGE,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = envelope_about(self.code(), self.client_message(), self.reply_id());
        if let ApiError::Client { retry_after: Some(seconds), .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
        }
        response
    }
}

pub fn json_error_handler(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
        }
        JsonPayloadError::ContentType => {
            ApiError::new(ErrorCode::UnsupportedMediaType, "expected Content-Type: application/json")
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::new(ErrorCode::InvalidBody, format!("request body has the wrong shape: {e}"))
        }
        JsonPayloadError::Deserialize(_) => ApiError::new(ErrorCode::InvalidJson, "request body is not valid JSON"),
        _ => ApiError::new(ErrorCode::InvalidBody, "request body could not be read"),
    };
    actix_web::error::InternalError::from_response(err, api_error.error_response()).into()
}

pub fn query_error_handler(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = ApiError::new(ErrorCode::InvalidQuery, format!("invalid query string: {err}"));
    actix_web::error::InternalError::from_response(err, api_error.error_response()).into()
}

pub fn path_error_handler(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = ApiError::not_found("no such resource");
    actix_web::error::InternalError::from_response(err, api_error.error_response()).into()
}

/// Backstop for errors produced outside our handlers (unknown route, wrong method,
/// payload errors raised by actix itself): any error response that is not already
/// JSON is rewritten into the envelope.
pub fn envelope_for_bare_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorCode::MethodNotAllowed, "method not allowed on this route"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ErrorCode::UnsupportedMediaType, "unsupported content type"),
        s if s.is_client_error() => (ErrorCode::BadRequest, "the request could not be processed"),
        _ => (ErrorCode::InternalError, INTERNAL_MESSAGE),
    };
    let (req, original) = res.into_parts();
    let mut response = envelope(code, message);
    // Keep the original status (a 408 or 411 is reported as `bad_request`, still a 408 or 411).
    *response.status_mut() = status;
    // Keep headers such as Allow, Retry-After and X-Request-Id set by earlier layers.
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let response: HttpResponse<EitherBody<B, BoxBody>> = response.map_into_right_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response)))
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            // Logged by the store where it failed.
            crate::store::StoreError::Unavailable(_) => ApiError::unavailable(
                ErrorCode::StorageUnavailable,
                "storage is temporarily unavailable; please retry shortly",
                2,
            ),
            corrupt => ApiError::internal(corrupt),
        }
    }
}

/// How long a client waits before sending again when this instance is at its cap.
const COMPANION_BUSY_RETRY_SECS: u64 = 2;

impl From<crate::chat::ChatError> for ApiError {
    fn from(e: crate::chat::ChatError) -> Self {
        use crate::chat::ChatError;
        match e {
            ChatError::InvalidContent(message) => ApiError::new(ErrorCode::InvalidContent, message),
            ChatError::ConversationNotFound => ApiError::not_found("no such conversation"),
            ChatError::UserBanned => ApiError::banned(),
            ChatError::AccountGone => ApiError::unauthorized(),
            ChatError::MessageNotFound => ApiError::not_found("no such message"),
            ChatError::PersonaNotFound => ApiError::not_found("no such persona"),
            ChatError::MemoryNotFound => ApiError::not_found("no such memory"),
            ChatError::NotAReply => ApiError::new(ErrorCode::NotAReply, "only assistant replies can be streamed"),
            ChatError::ReplyInProgress { reply, retry_after } => ApiError::new(
                ErrorCode::ReplyInProgress,
                "a reply is still being generated in this conversation; wait for it, reattach or cancel it",
            )
            .with_reply_id(reply.to_string())
            .with_retry_after(retry_after),
            ChatError::QuotaExceeded { retry_after } => ApiError::new(
                ErrorCode::QuotaExceeded,
                "today's chat quota is used up; it resets at midnight (China time)",
            )
            .with_retry_after(retry_after),
            ChatError::ContentRejected => {
                ApiError::new(ErrorCode::ContentRejected, crate::domain::MessageError::content_rejected(None).message)
            }
            ChatError::ModerationUnavailable => ApiError::unavailable(
                ErrorCode::ContentCheckUnavailable,
                "messages cannot be checked right now; please retry shortly",
                5,
            ),
            ChatError::TooManyReplies => ApiError::new(
                ErrorCode::TooManyReplies,
                "too many replies are running for you at once; wait for one to finish",
            )
            .with_retry_after(2),
            ChatError::ShuttingDown => ApiError::unavailable(
                ErrorCode::ShuttingDown,
                "this server is restarting; please send again in a moment",
                1,
            ),
            ChatError::CompanionBusy => ApiError::unavailable(
                ErrorCode::CompanionBusy,
                "the companion is busy with many conversations; please send again in a moment",
                COMPANION_BUSY_RETRY_SECS,
            ),
            ChatError::NoticeRequired => ApiError::new(
                ErrorCode::NoticeRequired,
                "please read and acknowledge the notices in GET /api/me before chatting",
            ),
            ChatError::GuardianConsentRequired => ApiError::new(
                ErrorCode::GuardianConsentRequired,
                "in minor mode this companion needs a guardian's consent, recorded by the operator",
            ),
            ChatError::PersonaNotForMinors => {
                ApiError::new(ErrorCode::PersonaNotForMinors, "this companion is not offered in minor mode")
            }
            ChatError::MinorTimeLimit { retry_after } => ApiError::new(
                ErrorCode::MinorTimeLimit,
                "today's time in minor mode is used up; it resets at midnight (China time)",
            )
            .with_retry_after(retry_after),
            ChatError::Store(e) => e.into(),
            // Logged by `ChatError::internal` where it happened.
            ChatError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_while(f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn an_internal_error_is_logged_once_where_it_is_created_and_rendering_adds_nothing() {
        let mut error = None;
        let at_creation = logged_while(|| error = Some(ApiError::internal(anyhow::anyhow!("disk on fire"))));
        let error = error.unwrap();
        let at_rendering = logged_while(|| {
            let response = error.error_response();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        });

        assert_eq!(at_creation.matches("disk on fire").count(), 1, "{at_creation}");
        assert!(at_rendering.is_empty(), "rendering logged: {at_rendering}");
        assert_eq!(error.client_message(), INTERNAL_MESSAGE, "no internal detail reaches the client");
    }

    #[test]
    fn every_code_renders_the_envelope_with_its_own_status() {
        for code in ErrorCode::ALL {
            let response = ApiError::new(*code, "m").error_response();
            assert_eq!(response.status(), code.status(), "{}", code.as_str());
        }
    }
}
