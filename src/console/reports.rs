//! `/console/api/reports`: users' reports (投诉举报) with what was reported as it was; an
//! operator accepts or dismisses each with a note the user sees (audit-logged).
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::accounts::audit;
use super::http::{stated_reason, ConsoleState, Need};
use crate::domain::{now, AuditAction, ReportDecision, ReportStatus};
use crate::errors::{ApiError, ErrorCode};

#[derive(Deserialize)]
pub struct ReportsQuery {
    status: Option<ReportStatus>,
}

/// `GET /console/api/reports?status=pending` → the newest 200, with user and due time.
pub async fn list(
    req: HttpRequest,
    query: web::Query<ReportsQuery>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let reports = console.store.list_reports(query.status, 200).await?;
    let items: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let mut item = crate::rights::report_json(r);
            item["user_id"] = json!(r.user_id);
            item["decided_by"] = json!(r.decision.as_ref().map(|d| d.by.as_str()));
            item
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Deserialize)]
pub struct DecisionBody {
    status: ReportStatus,
    note: String,
}

/// `POST /console/api/reports/{id}/decision` `{"status":"accepted"|"dismissed","note"}` →
/// `204`; `404` when there is no such pending report.
pub async fn decide(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<DecisionBody>,
    console: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let signed = console.signed(&req, Need::Operator).await?;
    if body.status == ReportStatus::Pending {
        return Err(ApiError::new(ErrorCode::InvalidBody, "decide accepted or dismissed"));
    }
    let note = stated_reason(&body.note)?.into_string();
    let actor = signed.operator.name.as_str();
    let decision = ReportDecision { by: actor.to_string(), at: now(), note: note.clone() };
    if !console.store.decide_report(&path, body.status, &decision).await? {
        return Err(ApiError::not_found("no such pending report"));
    }
    audit(&console.store, actor, AuditAction::ReportDecided, Some(path.to_string()), Some(note)).await?;
    // A report outlives its author's account only until it is handled.
    let author = console.store.list_reports(None, 1000).await?.into_iter().find(|r| r.id == *path).map(|r| r.user_id);
    if let Some(author) = author {
        if console.store.get_user(author).await?.is_none() {
            console.store.delete_report(&path).await?;
        }
    }
    Ok(HttpResponse::NoContent().finish())
}
