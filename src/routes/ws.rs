//! `GET /api/ws`: chat over a WebSocket, for `wx.cloud.connectContainer`.
//!
//! Frames are JSON text. The client sends `auth` (needed only when the platform did not
//! inject `X-WX-OPENID`, as in iOS 高性能+ mode), `send`, `reattach`, `stop` and `ping`.
//! The server answers with the SSE stream's events as frames (`start`, `delta`,
//! `reasoning`, `done`, `error`), each tagged with `message_id` (and the client's
//! `request_id` when given), so several replies can share one socket.
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::task::JoinHandle;

use crate::auth::{AuthState, AuthenticatedUser};
use crate::chat::{ChatService, ReplyEvent, ReplyWatcher};
use crate::domain::{ConversationId, MessageId, Role};
use crate::errors::ApiError;
use crate::protection::RateLimiter;

const MAX_FRAME_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Auth { token: String },
    Send { conversation_id: String, content: String, request_id: Option<String> },
    Reattach { conversation_id: String, message_id: String, request_id: Option<String> },
    Stop { message_id: String },
    Ping,
}

pub async fn chat_socket(
    req: HttpRequest,
    body: web::Payload,
    chat: web::Data<ChatService>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, actix_web::Error> {
    // Credentials on the upgrade request are checked now; without any, the client
    // authenticates with its first frame.
    let user = AuthenticatedUser::identify(&req).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream =
        stream.max_frame_size(MAX_FRAME_BYTES).aggregate_continuations().max_continuation_size(MAX_FRAME_BYTES);
    let limiter = req.app_data::<web::Data<RateLimiter>>().cloned();
    let socket = ChatSocket { session, chat, auth, user, watchers: HashMap::new(), limiter };
    actix_web::rt::spawn(socket.run(stream));
    Ok(response)
}

struct ChatSocket {
    session: Session,
    chat: web::Data<ChatService>,
    auth: web::Data<AuthState>,
    user: Option<AuthenticatedUser>,
    watchers: HashMap<MessageId, JoinHandle<()>>,
    /// Each `send` frame counts like an HTTP request against the user's limits.
    limiter: Option<web::Data<RateLimiter>>,
}

fn frame(kind: &str, mut payload: Value, request_id: Option<&str>) -> String {
    payload["type"] = json!(kind);
    if let Some(id) = request_id {
        payload["request_id"] = json!(id);
    }
    payload.to_string()
}

fn error_frame(error: &ApiError, request_id: Option<&str>) -> String {
    frame("error", json!({"code": error.code(), "message": error.to_string()}), request_id)
}

impl ChatSocket {
    async fn run(mut self, mut stream: actix_ws::AggregatedMessageStream) {
        let auth_deadline = tokio::time::sleep(self.chat.config.ws_auth_timeout);
        tokio::pin!(auth_deadline);
        let mut heartbeat = tokio::time::interval(self.chat.config.keepalive);
        heartbeat.reset();
        let close = loop {
            tokio::select! {
                message = stream.recv() => match message {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        if let Err(reason) = self.on_text(&text).await {
                            break Some(reason);
                        }
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if self.session.pong(&bytes).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        let error = ApiError::bad_request("invalid_frame", "send JSON text frames");
                        if self.session.text(error_frame(&error, None)).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(AggregatedMessage::Close(reason))) => break reason,
                    // Includes Cloud Run's health-check sockets closing abruptly: not an error.
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket protocol error");
                        break Some(CloseReason { code: CloseCode::Protocol, description: None });
                    }
                    None => break None,
                },
                _ = &mut auth_deadline, if self.user.is_none() => {
                    tracing::debug!("websocket closed: no authentication in time");
                    break Some(CloseReason { code: CloseCode::Policy, description: Some("authentication required".into()) });
                }
                _ = heartbeat.tick() => {
                    if self.session.ping(b"").await.is_err() {
                        break None;
                    }
                }
            }
        };
        // Watching stops with the socket; the replies themselves go on and are stored.
        for (_, watcher) in self.watchers.drain() {
            watcher.abort();
        }
        let _ = self.session.close(close).await;
    }

    /// Handles one client frame; `Err` closes the socket.
    async fn on_text(&mut self, text: &str) -> Result<(), CloseReason> {
        let reply = match serde_json::from_str::<ClientFrame>(text) {
            Err(e) => {
                Some(error_frame(&ApiError::bad_request("invalid_frame", format!("unreadable frame: {e}")), None))
            }
            Ok(ClientFrame::Ping) => Some(frame("pong", json!({}), None)),
            Ok(ClientFrame::Auth { token }) => match AuthenticatedUser::from_token(&self.auth.keys, &token) {
                Ok(user) => {
                    let ready = frame("ready", json!({"user_id": user.user_id}), None);
                    self.user = Some(user);
                    Some(ready)
                }
                Err(error) => {
                    let _ = self.session.text(error_frame(&error, None)).await;
                    return Err(CloseReason { code: CloseCode::Policy, description: Some("unauthorized".into()) });
                }
            },
            Ok(ClientFrame::Stop { message_id }) => {
                if let Some(watcher) = MessageId::parse(&message_id).and_then(|id| self.watchers.remove(&id)) {
                    watcher.abort();
                }
                None
            }
            Ok(ClientFrame::Send { conversation_id, content, request_id }) => self
                .send(&conversation_id, &content, request_id)
                .await
                .err()
                .map(|(e, id)| error_frame(&e, id.as_deref())),
            Ok(ClientFrame::Reattach { conversation_id, message_id, request_id }) => self
                .reattach(&conversation_id, &message_id, request_id)
                .await
                .err()
                .map(|(e, id)| error_frame(&e, id.as_deref())),
        };
        if let Some(reply) = reply {
            if self.session.text(reply).await.is_err() {
                return Err(CloseReason { code: CloseCode::Normal, description: None });
            }
        }
        Ok(())
    }

    fn user(&self) -> Result<&AuthenticatedUser, ApiError> {
        self.user.as_ref().ok_or_else(ApiError::unauthorized)
    }

    async fn send(
        &mut self,
        conversation: &str,
        content: &str,
        request_id: Option<String>,
    ) -> Result<(), (ApiError, Option<String>)> {
        let fail = |e: ApiError| (e, request_id.clone());
        let user = self.user().map_err(fail)?.user_id;
        if let Some(limiter) = &self.limiter {
            if let Err(retry_after) = limiter.count_user(&user.to_string()).await {
                let error =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; please slow down")
                        .with_retry_after(retry_after);
                return Err(fail(error));
            }
        }
        let conversation =
            ConversationId::parse(conversation).ok_or_else(|| fail(ApiError::not_found("no such conversation")))?;
        let started = self
            .chat
            .clone()
            .into_inner()
            .start_reply(user, conversation, content.to_string())
            .await
            .map_err(|e| fail(e.into()))?;
        let start = ReplyEvent::Start {
            user_message_id: started.user_message.id,
            assistant_message_id: started.assistant_message.id,
        };
        let watcher = ReplyWatcher::live(started.assistant_message.id, started.live.clone());
        self.watch(started.assistant_message.id, Some(start), watcher, request_id);
        Ok(())
    }

    async fn reattach(
        &mut self,
        conversation: &str,
        message: &str,
        request_id: Option<String>,
    ) -> Result<(), (ApiError, Option<String>)> {
        let fail = |e: ApiError| (e, request_id.clone());
        let user = self.user().map_err(fail)?.user_id;
        let message = super::messages::users_message(&self.chat, user, conversation, message).await.map_err(fail)?;
        if message.role != Role::Assistant {
            return Err(fail(ApiError::not_found("no such message")));
        }
        let watcher = self.chat.watch(&message);
        self.watch(message.id, None, watcher, request_id);
        Ok(())
    }

    fn watch(
        &mut self,
        id: MessageId,
        first: Option<ReplyEvent>,
        mut watcher: ReplyWatcher,
        request_id: Option<String>,
    ) {
        let mut session = self.session.clone();
        let task = actix_web::rt::spawn(async move {
            let tagged = |event: &ReplyEvent| {
                let mut payload = event.payload();
                payload["message_id"] = json!(id);
                frame(event.name(), payload, request_id.as_deref())
            };
            if let Some(first) = first {
                if session.text(tagged(&first)).await.is_err() {
                    return;
                }
            }
            while let Some(event) = watcher.next_event().await {
                if session.text(tagged(&event)).await.is_err() {
                    return;
                }
            }
        });
        if let Some(previous) = self.watchers.insert(id, task) {
            previous.abort();
        }
        self.watchers.retain(|_, task| !task.is_finished());
    }
}
