//! `/console/api/moderation`: what the content check refused lately, across all users:
//! inputs that were rejected (their text, as the user sent it) and replies that were
//! withheld (their text is not kept), with who and where, to find who misbehaves.
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::http::{ConsoleState, Need};
use crate::domain::{Message, Role};
use crate::errors::ApiError;

/// The stored codes of the content check's refusals.
const FLAGGED: [&str; 2] = ["content_rejected", "content_blocked"];
const SHOWN: usize = 100;

#[derive(Serialize)]
struct FlaggedDto<'a> {
    at: DateTime<Utc>,
    user_id: String,
    conversation_id: String,
    kind: &'static str,
    code: &'a str,
    /// msgSecCheck's label (20001 politics, 20002 porn, …), when WeChat gave one.
    label: Option<i64>,
    /// The refused input's text; empty for a withheld reply.
    text: &'a str,
}

impl<'a> From<&'a Message> for FlaggedDto<'a> {
    fn from(m: &'a Message) -> Self {
        Self {
            at: m.created_at,
            user_id: m.user_id.to_string(),
            conversation_id: m.conversation_id.to_string(),
            kind: match m.role {
                Role::User => "input",
                Role::Assistant | Role::Operator => "reply",
            },
            code: m.error.as_ref().map_or("", |e| e.code.as_str()),
            label: m.error.as_ref().and_then(|e| e.label),
            text: if m.role == Role::User { &m.content } else { "" },
        }
    }
}

/// `GET /console/api/moderation` → the newest 100 refusals, newest first.
pub async fn flagged(req: HttpRequest, console: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    console.signed(&req, Need::Operator).await?;
    let messages = console.store.list_flagged_messages(&FLAGGED, SHOWN).await?;
    let items: Vec<FlaggedDto> = messages.iter().map(FlaggedDto::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
