//! Request bodies are read here, before any extractor, within a size limit and a time
//! limit, and never decompressed: a small compressed body must not inflate into a large
//! one in memory, and a client trickling a body must not hold a connection for minutes.
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpMessage;
use futures_util::StreamExt;

use crate::errors::{ApiError, ErrorCode};

pub struct BodyGuard {
    pub limit_bytes: usize,
    /// The whole body must arrive within this.
    pub read_timeout: Duration,
}

enum Refusal {
    TooLarge,
    Broken,
}

impl BodyGuard {
    async fn read(&self, mut payload: Payload) -> Result<Bytes, Refusal> {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| Refusal::Broken)?;
            if body.len() + chunk.len() > self.limit_bytes {
                return Err(Refusal::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

fn too_large() -> actix_web::Error {
    ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large").into()
}

/// Middleware: refuses compressed bodies (415) and bodies over the limit (413) or too
/// slow to arrive (408); otherwise hands the whole body on to the extractors.
pub async fn guard_body<B: MessageBody>(
    guard: Arc<BodyGuard>,
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING) {
        if !encoding.to_str().is_ok_and(|e| e.trim().eq_ignore_ascii_case("identity")) {
            let message = "compressed request bodies are not accepted; send the body uncompressed";
            return Err(ApiError::new(ErrorCode::UnsupportedContentEncoding, message).into());
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > guard.limit_bytes as u64) {
        return Err(too_large());
    }
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) > 0 || chunked {
        let payload = req.take_payload();
        let body = match tokio::time::timeout(guard.read_timeout, guard.read(payload)).await {
            Err(_) => {
                tracing::info!("request body not received in time");
                return Err(ApiError::new(ErrorCode::RequestTimeout, "the request body arrived too slowly").into());
            }
            Ok(Err(Refusal::TooLarge)) => return Err(too_large()),
            Ok(Err(Refusal::Broken)) => {
                return Err(ApiError::new(ErrorCode::InvalidBody, "request body could not be read").into())
            }
            Ok(Ok(body)) => body,
        };
        req.set_payload(Payload::from(body));
    }
    next.call(req).await
}
