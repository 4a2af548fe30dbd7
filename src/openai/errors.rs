//! Errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), so the
//! official SDKs raise the right exception types: 400 BadRequestError, 401
//! AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 429 RateLimitError.
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl OpenAiError {
    fn new(status: StatusCode, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, code, retry_after: None }
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message)
    }
    pub fn context_length(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", Some("context_length_exceeded"), message)
    }
    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        )
    }
    pub fn unknown_model(model: &str) -> Self {
        let shown: String = model.chars().take(100).collect();
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("The model `{shown}` does not exist; GET /v1/models lists the companions."),
        )
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            "Rate limit reached for this key; retry later.",
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// OpenAI's shape for a used-up quota (the SDKs raise `RateLimitError`).
    pub fn daily_tokens_used(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("insufficient_quota"),
            "This key's tokens for today are used up; the limit resets at midnight China time.",
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// The caller's text did not pass the content-safety check.
    pub fn content_rejected() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("content_filter"),
            "The messages did not pass the content-safety check.",
        )
    }
    /// The content-safety check could not be asked, and the service fails closed.
    pub fn check_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("content_check_unavailable"),
            "The content-safety check is unavailable; retry later.",
        );
        e.retry_after = Some(5);
        e
    }
    pub fn busy(retry_after: u64) -> Self {
        let mut e =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("overloaded"), "The service is busy.");
        e.retry_after = Some(retry_after);
        e
    }
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "server_error", Some("upstream_error"), message)
    }
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, "The server had an error.")
    }

    /// The error object, for a response body or a stream's last chunk.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": null, "code": self.code}})
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.body())
    }
}

impl From<crate::store::StoreError> for OpenAiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = ?e, "openai api: storage failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("storage_unavailable"),
            "Storage is unavailable.",
        )
    }
}
