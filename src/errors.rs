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
use serde_json::json;

pub fn envelope(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponseBuilder::new(status).json(json!({
        "error": { "code": code, "message": message }
    }))
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

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Client { status: StatusCode, code: &'static str, message: String, retry_after: Option<u64> },
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
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Client { status, code, message: message.into(), retry_after: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing, invalid or expired credentials; log in again")
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        ApiError::Client {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }
    pub fn with_retry_after(self, seconds: u64) -> Self {
        match self {
            ApiError::Client { status, code, message, .. } => {
                ApiError::Client { status, code, message, retry_after: Some(seconds) }
            }
            internal => internal,
        }
    }
    /// An internal failure, logged here with its cause chain, where it is created: how it
    /// is later rendered (HTTP body, WebSocket frame) has no side effects.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        tracing::error!(error.cause_chain = ?e, "internal error");
        ApiError::Internal(e)
    }
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Client { code, .. } => code,
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Client { status, code, message, retry_after } => {
                let mut response = envelope(*status, code, message);
                if let Some(seconds) = retry_after {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
                }
                response
            }
            ApiError::Internal(_) => envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "something went wrong on our side; please try again",
            ),
        }
    }
}

pub fn json_error_handler(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large")
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::bad_request("invalid_body", format!("request body has the wrong shape: {e}"))
        }
        JsonPayloadError::Deserialize(_) => ApiError::bad_request("invalid_json", "request body is not valid JSON"),
        _ => ApiError::bad_request("invalid_body", "request body could not be read"),
    };
    actix_web::error::InternalError::from_response(err, api_error.error_response()).into()
}

pub fn query_error_handler(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = ApiError::bad_request("invalid_query", format!("invalid query string: {err}"));
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
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed on this route"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type"),
        s if s.is_client_error() => ("bad_request", "the request could not be processed"),
        _ => ("internal_error", "something went wrong on our side; please try again"),
    };
    let (req, original) = res.into_parts();
    let mut response = envelope(status, code, message);
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
            crate::store::StoreError::Unavailable(_) => {
                tracing::error!(error.cause_chain = ?anyhow::Error::from(e), "storage unavailable");
                ApiError::unavailable(
                    "storage_unavailable",
                    "storage is temporarily unavailable; please retry shortly",
                    2,
                )
            }
            corrupt => ApiError::internal(corrupt),
        }
    }
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(e: crate::chat::ChatError) -> Self {
        use crate::chat::ChatError;
        match e {
            ChatError::InvalidContent(message) => ApiError::bad_request("invalid_content", message),
            ChatError::ConversationNotFound => ApiError::not_found("no such conversation"),
            ChatError::MessageNotFound => ApiError::not_found("no such message"),
            ChatError::NotAReply => ApiError::bad_request("not_a_reply", "only assistant replies can be streamed"),
            ChatError::ReplyInProgress => ApiError::new(
                StatusCode::CONFLICT,
                "reply_in_progress",
                "a reply is still being generated in this conversation; wait for it or reattach",
            ),
            ChatError::QuotaExceeded { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                "today's chat quota is used up; it resets at midnight (China time)",
            )
            .with_retry_after(retry_after),
            ChatError::ContentRejected => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "content_rejected",
                "the message did not pass the content-safety check; please rephrase it",
            ),
            ChatError::ModerationUnavailable => ApiError::unavailable(
                "content_check_unavailable",
                "messages cannot be checked right now; please retry shortly",
                5,
            ),
            ChatError::Store(e) => e.into(),
            // Logged by `ChatError::internal` where it happened.
            ChatError::Internal(e) => ApiError::Internal(e),
        }
    }
}
