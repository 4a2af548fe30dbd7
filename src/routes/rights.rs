//! The user's rights: reports, a data export, account deletion (README "User rights").
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::params::{conversation_id, message_id};
use crate::auth::{AuthenticatedUser, IdentityResolver};
use crate::domain::{ExportStatus, ReportReason};
use crate::errors::{ApiError, ErrorCode};
use crate::rights::{report_json, DeletionOutcome, NewReport, ReportError, UserRights};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    conversation_id: String,
    message_id: Option<String>,
    reason: ReportReason,
    text: Option<String>,
}

/// `POST /api/reports` `{"conversation_id","message_id"?,"reason","text"?}` → `201` with the
/// report, its status and when it will be handled (`due_at`).
pub async fn file_report(
    user: AuthenticatedUser,
    body: web::Json<ReportBody>,
    rights: web::Data<UserRights>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let asked = NewReport {
        conversation_id: conversation_id(&body.conversation_id)?,
        message_id: body.message_id.as_deref().map(message_id).transpose()?,
        reason: body.reason,
        text: body.text,
    };
    let report = rights.report(user.user_id, asked).await.map_err(|e| match e {
        ReportError::Chat(e) => e.into(),
        ReportError::Invalid(why) => ApiError::new(ErrorCode::InvalidBody, why),
        ReportError::TooMany { retry_after } => {
            ApiError::new(ErrorCode::RateLimited, "too many reports today").with_retry_after(retry_after)
        }
    })?;
    Ok(HttpResponse::Created().json(report_json(&report)))
}

/// `GET /api/reports` → the user's reports, newest first, with the operator's decision.
pub async fn list_reports(user: AuthenticatedUser, rights: web::Data<UserRights>) -> Result<HttpResponse, ApiError> {
    let reports = rights.store.list_user_reports(user.user_id, 100).await?;
    let items: Vec<serde_json::Value> = reports.iter().map(report_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// `POST /api/me/exports` → `202` `{"id","status","expires_at"}`: prepared in the background.
pub async fn start_export(user: AuthenticatedUser, rights: web::Data<UserRights>) -> Result<HttpResponse, ApiError> {
    let export = rights.start_export(user.user_id).await.map_err(|e| match e {
        crate::rights::ExportError::Chat(e) => ApiError::from(e),
        crate::rights::ExportError::TooMany { retry_after } => {
            ApiError::new(ErrorCode::RateLimited, "too many exports today").with_retry_after(retry_after)
        }
    })?;
    Ok(HttpResponse::Accepted()
        .json(json!({"id": export.id, "status": export.status, "expires_at": export.expires_at})))
}

/// `GET /api/me/exports/{id}` → `202` while preparing, then `200` with the JSON document
/// (a download); `404` once expired, or for another user's export.
pub async fn download_export(
    user: AuthenticatedUser,
    path: web::Path<String>,
    rights: web::Data<UserRights>,
) -> Result<HttpResponse, ApiError> {
    let export = rights.export(user.user_id, &path).await?.ok_or_else(|| ApiError::not_found("no such export"))?;
    match export.status {
        ExportStatus::Preparing => Ok(HttpResponse::Accepted().json(json!({"id": export.id, "status": export.status}))),
        ExportStatus::Failed => Err(ApiError::new(ErrorCode::InternalError, "the export failed; please ask again")),
        ExportStatus::Ready => {
            let mut body = String::new();
            for index in 0..export.parts {
                let part = rights.store.read_export_part(&export.id, index).await?;
                body.push_str(&part.ok_or_else(|| ApiError::not_found("no such export"))?);
            }
            Ok(HttpResponse::Ok()
                .content_type("application/json; charset=utf-8")
                .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"my-data.json\""))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body))
        }
    }
}

/// What the user types to confirm: nothing is erased by a stray request.
const CONFIRMATION: &str = "注销";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionBody {
    confirm: String,
}

/// `POST /api/me/deletion` `{"confirm":"注销"}` → `200 {"status":"erased"}` (tokens stop
/// working at once), or `202 {"status":"scheduled","due_at"}` with a cooling-off period.
pub async fn delete_account(
    user: AuthenticatedUser,
    body: web::Json<DeletionBody>,
    rights: web::Data<UserRights>,
    resolver: web::Data<IdentityResolver>,
) -> Result<HttpResponse, ApiError> {
    if body.confirm.trim() != CONFIRMATION {
        return Err(ApiError::new(ErrorCode::InvalidBody, "to delete the account, confirm with \"注销\""));
    }
    match rights.delete_account(user.user_id).await? {
        DeletionOutcome::Erased => {
            resolver.forget(user.user_id);
            Ok(HttpResponse::Ok().json(json!({"status": "erased"})))
        }
        DeletionOutcome::Scheduled { due_at } => {
            Ok(HttpResponse::Accepted().json(json!({"status": "scheduled", "due_at": due_at})))
        }
    }
}

/// `DELETE /api/me/deletion` → `204`: a scheduled deletion is cancelled.
pub async fn cancel_deletion(user: AuthenticatedUser, rights: web::Data<UserRights>) -> Result<HttpResponse, ApiError> {
    rights.cancel_deletion(user.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
