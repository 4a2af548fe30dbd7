//! Security headers on every response, and CORS only for the configured origins.
use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::Error;

use crate::errors::{ApiError, ErrorCode};

/// The most header bytes a request may carry (`MAX_HEADER_BYTES`). actix itself closes
/// connections past 128 KiB or 96 headers; this answers smaller abuse with a clear 431.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimit(pub usize);

/// Middleware, built with its limit (never silently off).
pub async fn header_limit_middleware<B: MessageBody>(
    limit: HeaderLimit,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let limit = limit.0;
    let size: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > limit {
        return Err(ApiError::new(ErrorCode::HeadersTooLarge, "request headers are too large").into());
    }
    next.call(req).await
}

pub fn security_headers(production: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"))
        .add(("Cross-Origin-Resource-Policy", "same-site"));
    if production {
        headers.add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        headers
    }
}

/// `CORS_ALLOWED_ORIGINS` (comma-separated). Mini-programs need no CORS; this is for a web
/// admin or H5 page. Without origins, cross-origin browser requests are refused.
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers(["authorization", "content-type", "x-request-id"])
        .expose_headers(["x-request-id", "x-app-version", "retry-after"])
        .max_age(3600);
    for origin in origins {
        cors = if origin == "*" { cors.allow_any_origin() } else { cors.allowed_origin(origin) };
    }
    cors
}
