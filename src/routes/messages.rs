//! Messages of a conversation: history, sending (SSE or a bounded wait), reading one
//! message (the polled path) and reattaching to a reply. Every reply rule lives in
//! `chat::reply`; these handlers parse, call, and render.
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::dto::{MessageDto, Page};
use super::params::{client_message_id, conversation_id, message_id, page_limit};
use super::sse::reply_stream;
use crate::auth::AuthenticatedUser;
use crate::chat::ChatService;
use crate::domain::MessageId;
use crate::errors::{ApiError, ErrorCode};
use crate::safety::NoticeEvent;

#[derive(Deserialize)]
pub struct SendMessage {
    content: String,
    stream: Option<bool>,
    /// Makes the send safe to retry: the same id returns the original reply.
    client_message_id: Option<String>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
    before: Option<String>,
}

#[derive(Serialize)]
struct SendResult<'a> {
    user_message: MessageDto<'a>,
    assistant_message: MessageDto<'a>,
    /// Notices to show and acknowledge (the polled path's `notice` events).
    notices: &'a [NoticeEvent],
}

/// A polled message, with the user's pending notices.
#[derive(Serialize)]
struct PolledMessage<'a> {
    #[serde(flatten)]
    message: MessageDto<'a>,
    notices: Vec<NoticeEvent>,
}

/// `GET /api/conversations/{id}/messages?limit&before`: chronological page, newest last.
pub async fn list_messages(
    user: AuthenticatedUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let conversation = conversation_id(&path)?;
    let limit = page_limit(query.limit)?;
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            MessageId::parse(raw)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidCursor, "before must be a message id"))?,
        ),
    };
    let (items, more) = chat.history(user.user_id, conversation, limit, before).await?;
    let next_cursor = if more { items.first().map(|m| m.id.to_string()) } else { None };
    Ok(HttpResponse::Ok()
        .json(Page { items: items.iter().map(|m| MessageDto::new(m, chat.labels())).collect(), next_cursor }))
}

/// `GET /api/conversations/{id}/messages/{message_id}`: the message as it stands now.
pub async fn get_message(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let (message, notices) = tokio::try_join!(
        chat.message(user.user_id, conversation_id(&conversation)?, message_id(&message)?),
        chat.pending_notices(user.user_id)
    )?;
    Ok(HttpResponse::Ok().json(PolledMessage { message: MessageDto::new(&message, chat.labels()), notices }))
}

/// `POST /api/conversations/{id}/messages` `{"content", "stream"?}`: streams the reply
/// as SSE, or (stream: false) waits a bounded time and answers 200 or 202.
pub async fn send_message(
    user: AuthenticatedUser,
    path: web::Path<String>,
    body: web::Json<SendMessage>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    // The bound counts from arrival, so the answer stays under callContainer's 15 s cut.
    let deadline = tokio::time::Instant::now() + chat.config().wait_timeout;
    let conversation = conversation_id(&path)?;
    let SendMessage { content, stream, client_message_id: client_id } = body.into_inner();
    let client_id = client_message_id(client_id.as_deref())?;
    let mut reply = chat.clone().into_inner().send(user.user_id, conversation, content, client_id).await?;
    if stream.unwrap_or(true) {
        return Ok(reply_stream(reply.events(), &chat));
    }
    let (finished, assistant_message) = reply.wait_until(deadline).await?;
    let user_message = reply.user_message().expect("a sent reply knows its user message");
    let body = SendResult {
        user_message: MessageDto::new(user_message, chat.labels()),
        assistant_message: MessageDto::new(&assistant_message, chat.labels()),
        notices: reply.notices(),
    };
    Ok(if finished { HttpResponse::Ok().json(body) } else { HttpResponse::Accepted().json(body) })
}

/// How long a cancel waits for the reply to be stored as cancelled.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// `POST /api/conversations/{id}/messages/{message_id}/cancel`: stops the reply; its text
/// so far is kept (`error.code` `cancelled`) and the conversation takes the next message.
/// `200` with the stored reply, or `202` if it is still being stopped (another replica).
pub async fn cancel_reply(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let mut reply = chat.cancel_reply(user.user_id, conversation_id(&conversation)?, message_id(&message)?).await?;
    let (stopped, message) = reply.wait_until(tokio::time::Instant::now() + CANCEL_WAIT).await?;
    let body = MessageDto::new(&message, chat.labels());
    Ok(if stopped { HttpResponse::Ok().json(body) } else { HttpResponse::Accepted().json(body) })
}

/// `GET /api/conversations/{id}/messages/{message_id}/stream`: what is stored so far as
/// one `delta`, then live deltas, then `done`/`error`.
pub async fn reattach(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let reply = chat.open_reply(user.user_id, conversation_id(&conversation)?, message_id(&message)?).await?;
    Ok(reply_stream(reply.events(), &chat))
}
