use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::errors::ErrorCode;
use crate::startup::{AppInfo, Lifecycle};
use crate::store::DynStore;

/// Liveness: answers from memory, never touches a dependency.
pub async fn health(info: web::Data<AppInfo>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": info.version,
        "commit": info.commit,
        "env": info.env,
    }))
}

/// Readiness: the store answers a ping in time, and we are not shutting down.
pub async fn ready(
    store: web::Data<DynStore>,
    lifecycle: web::Data<Lifecycle>,
    info: web::Data<AppInfo>,
) -> HttpResponse {
    if lifecycle.is_shutting_down() {
        return not_ready(ErrorCode::ShuttingDown, "the service is shutting down", json!({}));
    }
    let timeout = Duration::from_millis(info.ready_timeout_ms);
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "checks": { store.kind(): "ok" },
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "readiness check: store ping failed");
            not_ready(
                ErrorCode::DependencyUnavailable,
                &format!("{} is unreachable", store.kind()),
                json!({ store.kind(): "unreachable" }),
            )
        }
        Err(_) => {
            tracing::warn!("readiness check: store ping timed out");
            not_ready(
                ErrorCode::DependencyUnavailable,
                &format!("{} did not answer in time", store.kind()),
                json!({ store.kind(): "timeout" }),
            )
        }
    }
}

fn not_ready(code: ErrorCode, message: &str, checks: serde_json::Value) -> HttpResponse {
    // The error envelope, plus which dependency failed.
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .insert_header(("Retry-After", "5"))
        .json(json!({"error": {"code": code.as_str(), "message": message}, "checks": checks}))
}
