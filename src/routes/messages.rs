use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::conversations::{page_limit, parse_conversation_id};
use super::sse::reply_stream;
use crate::auth::AuthenticatedUser;
use crate::chat::{ChatService, ReplyEvent};
use crate::domain::{ConversationId, Message, MessageId, UserId};
use crate::errors::ApiError;

#[derive(Deserialize)]
pub struct SendMessage {
    content: String,
    stream: Option<bool>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
    before: Option<String>,
}

fn parse_message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).ok_or_else(|| ApiError::not_found("no such message"))
}

async fn owned_conversation(chat: &ChatService, user: UserId, raw: &str) -> Result<ConversationId, ApiError> {
    let id = parse_conversation_id(raw)?;
    chat.store
        .get_conversation(user, id)
        .await?
        .map(|c| c.id)
        .ok_or_else(|| ApiError::not_found("no such conversation"))
}

/// The message as it stands now: a reply generated here shows its freshest text.
async fn current_message(chat: &ChatService, conversation: ConversationId, raw: &str) -> Result<Message, ApiError> {
    let id = parse_message_id(raw)?;
    let mut message =
        chat.store.get_message(conversation, id).await?.ok_or_else(|| ApiError::not_found("no such message"))?;
    match chat.hub.subscribe(id) {
        Some(live) => {
            let state = live.borrow();
            if state.outcome.is_none() && state.content.len() > message.content.len() {
                message.content = state.content.clone();
            }
        }
        None => chat.settle_if_abandoned(&mut message).await?,
    }
    Ok(message)
}

/// `GET /api/conversations/{id}/messages?limit&before`: chronological page, newest last.
pub async fn list_messages(
    user: AuthenticatedUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let conversation = owned_conversation(&chat, user.user_id, &path).await?;
    let limit = page_limit(query.limit)?;
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            MessageId::parse(raw)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "before must be a message id"))?,
        ),
    };
    let mut items = chat.store.list_messages(conversation, limit + 1, before).await?;
    let next_cursor = if items.len() > limit {
        items.remove(0);
        items.first().map(|m| m.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// A message of one of `user`'s conversations, as it stands now; 404 for anything else.
pub(super) async fn users_message(
    chat: &ChatService,
    user: UserId,
    conversation: &str,
    message: &str,
) -> Result<Message, ApiError> {
    let conversation = owned_conversation(chat, user, conversation).await?;
    current_message(chat, conversation, message).await
}

/// `GET /api/conversations/{id}/messages/{message_id}`
pub async fn get_message(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    Ok(HttpResponse::Ok().json(users_message(&chat, user.user_id, &conversation, &message).await?))
}

/// `POST /api/conversations/{id}/messages` `{"content", "stream"?}`: streams the reply
/// as SSE, or (stream: false) waits a bounded time and answers 200 or 202.
pub async fn send_message(
    user: AuthenticatedUser,
    path: web::Path<String>,
    body: web::Json<SendMessage>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let received = tokio::time::Instant::now();
    let conversation = parse_conversation_id(&path)?;
    let body = body.into_inner();
    let mut started = chat.clone().into_inner().start_reply(user.user_id, conversation, body.content).await?;
    if body.stream.unwrap_or(true) {
        let start = ReplyEvent::Start {
            user_message_id: started.user_message.id,
            assistant_message_id: started.assistant_message.id,
        };
        let watcher = crate::chat::ReplyWatcher::live(started.assistant_message.id, started.live.clone());
        return Ok(reply_stream(Some(start), watcher, chat.config.keepalive));
    }
    let (finished, assistant_message) = chat.wait_for_reply(&mut started, received).await?;
    let body = json!({ "user_message": started.user_message, "assistant_message": assistant_message });
    Ok(if finished { HttpResponse::Ok().json(body) } else { HttpResponse::Accepted().json(body) })
}

/// `GET /api/conversations/{id}/messages/{message_id}/stream`: what is stored so far as
/// one `delta`, then live deltas, then `done`/`error`.
pub async fn reattach(
    user: AuthenticatedUser,
    path: web::Path<(String, String)>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let message = users_message(&chat, user.user_id, &conversation, &message).await?;
    if message.role != crate::domain::Role::Assistant {
        return Err(ApiError::bad_request("not_a_reply", "only assistant replies can be streamed"));
    }
    Ok(reply_stream(None, chat.watch(&message), chat.config.keepalive))
}
