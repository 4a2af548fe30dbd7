//! `GET /api/ws`: chat over a WebSocket, for `wx.cloud.connectContainer`.
//!
//! Frames are JSON text. The client sends `auth` (needed only when the platform did not
//! inject `X-WX-OPENID`, as in iOS 高性能+ mode), `send`, `reattach`, `stop` and `ping`.
//! The server answers with the SSE stream's events as frames (`start`, `delta`,
//! `reasoning`, `done`, `error`), each tagged with `message_id` (and the client's
//! `request_id` when given), so several replies can share one socket.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::params::{client_message_id, conversation_id, message_id};
use crate::auth::{AuthenticatedUser, Identity, IdentityResolver};
use crate::chat::{ChatService, ReplyEvent, ReplyHandle};
use crate::domain::{MessageId, UserId};
use crate::errors::{ApiError, ErrorCode};
use crate::instruments::{OpenStream, Transport};
use crate::protection::RateLimiter;

const MAX_FRAME_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Auth {
        token: String,
    },
    Send {
        conversation_id: String,
        content: String,
        request_id: Option<String>,
        /// Makes the send safe to retry: the same id returns the original reply.
        client_message_id: Option<String>,
    },
    Reattach {
        conversation_id: String,
        message_id: String,
        request_id: Option<String>,
    },
    /// Stop watching a reply (it goes on and is stored).
    Stop {
        message_id: String,
    },
    /// Stop the reply itself (its text so far is kept, the conversation is freed).
    Cancel {
        conversation_id: String,
        message_id: String,
        request_id: Option<String>,
    },
    Ping,
}

impl ClientFrame {
    fn request_id(&self) -> Option<&str> {
        match self {
            ClientFrame::Send { request_id, .. }
            | ClientFrame::Reattach { request_id, .. }
            | ClientFrame::Cancel { request_id, .. } => request_id.as_deref(),
            ClientFrame::Auth { .. } | ClientFrame::Stop { .. } | ClientFrame::Ping => None,
        }
    }
}

/// Frames the server sends besides reply events.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ServerFrame<'a> {
    Ready {
        user_id: UserId,
    },
    Pong,
    Error {
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
    },
}

/// A reply event, tagged with the reply it belongs to and the client's request id.
#[derive(Serialize)]
struct ReplyFrame<'a> {
    #[serde(flatten)]
    event: &'a ReplyEvent,
    message_id: MessageId,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

fn to_text(frame: &impl Serialize) -> String {
    serde_json::to_string(frame).expect("frames always serialize")
}

fn error_frame(error: &ApiError, request_id: Option<&str>) -> String {
    to_text(&ServerFrame::Error {
        code: error.code().as_str(),
        message: error.client_message(),
        reply_id: error.reply_id(),
        request_id,
    })
}

pub async fn chat_socket(
    req: HttpRequest,
    body: web::Payload,
    chat: web::Data<ChatService>,
    resolver: web::Data<IdentityResolver>,
    limiter: web::Data<RateLimiter>,
    slots: web::Data<SocketSlots>,
) -> Result<HttpResponse, actix_web::Error> {
    // Credentials on the upgrade request were checked by the identity middleware; without
    // any, the client authenticates with its first frame.
    let user = match Identity::of(&req)? {
        Identity::User(user) => Some(user),
        Identity::Anonymous => None,
        Identity::Refused => return Err(ApiError::unauthorized().into()),
    };
    let slots = slots.into_inner();
    let slot = match &user {
        Some(user) => Some(slots.take(user.user_id).ok_or_else(too_many_sockets)?),
        None => None,
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream =
        stream.max_frame_size(MAX_FRAME_BYTES).aggregate_continuations().max_continuation_size(MAX_FRAME_BYTES);
    let socket = ChatSocket {
        _open: chat.instruments().stream_opened(Transport::WebSocket),
        session,
        chat: chat.into_inner(),
        resolver: resolver.into_inner(),
        limiter: limiter.into_inner(),
        user,
        slots,
        slot,
        watchers: HashMap::new(),
        frames_before_auth: 0,
    };
    // The socket's own loop lives on its worker, like a request: it only watches replies
    // (the replies themselves are tracked tasks), so a drain need not wait for it.
    #[allow(clippy::disallowed_methods)]
    actix_web::rt::spawn(socket.run(stream));
    Ok(response)
}

struct ChatSocket {
    session: Session,
    chat: Arc<ChatService>,
    resolver: Arc<IdentityResolver>,
    /// Every `send` and `reattach` frame counts like an HTTP request against the user's
    /// limits, under the same key.
    limiter: Arc<RateLimiter>,
    user: Option<AuthenticatedUser>,
    slots: Arc<SocketSlots>,
    /// This socket's place among its user's sockets; freed when the socket ends.
    slot: Option<SocketSlot>,
    watchers: HashMap<MessageId, JoinHandle<()>>,
    frames_before_auth: u32,
    /// Counted in `companion_streams_open` while the socket lives.
    _open: OpenStream,
}

/// Frames a socket may send before it authenticates (an `auth`, a `ping` or two).
const MAX_FRAMES_BEFORE_AUTH: u32 = 5;

fn too_many_sockets() -> ApiError {
    ApiError::new(ErrorCode::TooManySockets, "too many open connections for this user; close one first")
}

/// Open sockets per user on this replica, capped.
pub struct SocketSlots {
    open: Mutex<HashMap<UserId, usize>>,
    max_per_user: usize,
}

/// One open socket of a user; dropping it frees the place.
pub struct SocketSlot {
    slots: Arc<SocketSlots>,
    user: UserId,
}

impl SocketSlots {
    pub fn new(max_per_user: usize) -> Self {
        SocketSlots { open: Mutex::default(), max_per_user }
    }

    fn take(self: &Arc<Self>, user: UserId) -> Option<SocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user).or_default();
        if self.max_per_user > 0 && *count >= self.max_per_user {
            return None;
        }
        *count += 1;
        Some(SocketSlot { slots: self.clone(), user })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl ChatSocket {
    async fn run(mut self, mut stream: actix_ws::AggregatedMessageStream) {
        let auth_deadline = tokio::time::sleep(self.chat.config().ws_auth_timeout);
        tokio::pin!(auth_deadline);
        let keepalive = self.chat.config().keepalive;
        let mut heartbeat = tokio::time::interval(keepalive);
        heartbeat.reset();
        // A client that answers no ping for two rounds is gone (or never meant to answer).
        let mut last_heard = tokio::time::Instant::now();
        let close = loop {
            tokio::select! {
                message = stream.recv() => match message {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        last_heard = tokio::time::Instant::now();
                        if let Err(reason) = self.on_text(&text).await {
                            break Some(reason);
                        }
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        last_heard = tokio::time::Instant::now();
                        if self.session.pong(&bytes).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => last_heard = tokio::time::Instant::now(),
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        let error = ApiError::new(ErrorCode::InvalidFrame, "send JSON text frames");
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
                    if last_heard.elapsed() > keepalive * 2 {
                        tracing::debug!("websocket closed: no answer to pings");
                        break Some(CloseReason { code: CloseCode::Policy, description: Some("no answer to pings".into()) });
                    }
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

    /// The user of an `auth` frame's token. A banned user is told so, and the socket closes.
    async fn authenticate(&mut self, token: &str) -> Result<Option<AuthenticatedUser>, CloseReason> {
        match self.resolver.from_token(token).await {
            Ok(user) => Ok(user),
            Err(e) if e.code() == ErrorCode::UserBanned => {
                let _ = self.session.text(error_frame(&e, None)).await;
                Err(CloseReason { code: CloseCode::Policy, description: Some("user banned".into()) })
            }
            Err(_) => Ok(None),
        }
    }

    /// Handles one client frame; `Err` closes the socket.
    async fn on_text(&mut self, text: &str) -> Result<(), CloseReason> {
        let frame = serde_json::from_str::<ClientFrame>(text);
        let request_id = frame.as_ref().ok().and_then(ClientFrame::request_id).map(str::to_owned);
        if let Err(reply) = self.count_frame(request_id.as_deref()).await {
            return match self.session.text(reply).await {
                Ok(()) => Ok(()),
                Err(_) => Err(CloseReason { code: CloseCode::Normal, description: None }),
            };
        }
        if self.user.is_none() {
            self.frames_before_auth += 1;
            if self.frames_before_auth > MAX_FRAMES_BEFORE_AUTH {
                return Err(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("authentication required".into()),
                });
            }
        }
        let reply = match frame {
            Err(e) => {
                Some(error_frame(&ApiError::new(ErrorCode::InvalidFrame, format!("unreadable frame: {e}")), None))
            }
            Ok(ClientFrame::Ping) => Some(to_text(&ServerFrame::Pong)),
            Ok(ClientFrame::Auth { token }) => match self.authenticate(&token).await? {
                Some(user) if self.slot.is_none() => {
                    let Some(slot) = self.slots.take(user.user_id) else {
                        let _ = self.session.text(error_frame(&too_many_sockets(), None)).await;
                        return Err(CloseReason {
                            code: CloseCode::Policy,
                            description: Some("too many sockets".into()),
                        });
                    };
                    self.slot = Some(slot);
                    let ready = to_text(&ServerFrame::Ready { user_id: user.user_id });
                    self.user = Some(user);
                    Some(ready)
                }
                // Already authenticated (headers or an earlier frame): the socket keeps its user.
                Some(user) if self.user.as_ref().is_some_and(|u| u.user_id == user.user_id) => {
                    Some(to_text(&ServerFrame::Ready { user_id: user.user_id }))
                }
                Some(_) => Some(error_frame(
                    &ApiError::new(ErrorCode::InvalidFrame, "this socket is already authenticated as another user"),
                    None,
                )),
                None => {
                    let _ = self.session.text(error_frame(&ApiError::unauthorized(), None)).await;
                    return Err(CloseReason { code: CloseCode::Policy, description: Some("unauthorized".into()) });
                }
            },
            Ok(ClientFrame::Stop { message_id }) => {
                if let Some(watcher) = MessageId::parse(&message_id).and_then(|id| self.watchers.remove(&id)) {
                    watcher.abort();
                }
                None
            }
            Ok(ClientFrame::Send { conversation_id, content, request_id, client_message_id }) => {
                let result = self.send(&conversation_id, content, client_message_id.as_deref()).await;
                self.render(result, request_id)
            }
            Ok(ClientFrame::Cancel { conversation_id, message_id, request_id }) => {
                match self.cancel(&conversation_id, &message_id).await {
                    Ok(()) => None,
                    Err(error) => Some(error_frame(&error, request_id.as_deref())),
                }
            }
            Ok(ClientFrame::Reattach { conversation_id, message_id, request_id }) => {
                let result = self.reattach(&conversation_id, &message_id).await;
                self.render(result, request_id)
            }
        };
        if let Some(reply) = reply {
            if self.session.text(reply).await.is_err() {
                return Err(CloseReason { code: CloseCode::Normal, description: None });
            }
        }
        Ok(())
    }

    /// Starts watching an opened reply, or answers the error as a frame.
    fn render(&mut self, result: Result<ReplyHandle, ApiError>, request_id: Option<String>) -> Option<String> {
        match result {
            Ok(reply) => {
                self.watch(&reply, request_id);
                None
            }
            Err(error) => Some(error_frame(&error, request_id.as_deref())),
        }
    }

    /// Every frame of an authenticated socket counts against its user's limit, under the
    /// same key as HTTP requests; `Err` is the frame to answer instead.
    async fn count_frame(&self, request_id: Option<&str>) -> Result<(), String> {
        let Some(user) = &self.user else { return Ok(()) };
        self.limiter.count_user(user.user_id).await.map_err(|retry_after| {
            let error = ApiError::new(ErrorCode::RateLimited, "too many requests; please slow down")
                .with_retry_after(retry_after);
            error_frame(&error, request_id)
        })
    }

    /// The socket's user (its frames were already counted by `count_frame`).
    fn user_id(&self) -> Result<UserId, ApiError> {
        Ok(self.user.as_ref().ok_or_else(ApiError::unauthorized)?.user_id)
    }

    async fn send(
        &self,
        conversation: &str,
        content: String,
        client_id: Option<&str>,
    ) -> Result<ReplyHandle, ApiError> {
        let user = self.user_id()?;
        let conversation = conversation_id(conversation)?;
        let client_id = client_message_id(client_id)?;
        Ok(self.chat.clone().send(user, conversation, content, client_id).await?)
    }

    async fn reattach(&self, conversation: &str, message: &str) -> Result<ReplyHandle, ApiError> {
        let user = self.user_id()?;
        Ok(self.chat.open_reply(user, conversation_id(conversation)?, message_id(message)?).await?)
    }

    /// A watcher of the reply on this socket then ends with `error` `cancelled`.
    async fn cancel(&self, conversation: &str, message: &str) -> Result<(), ApiError> {
        let user = self.user_id()?;
        self.chat.cancel_reply(user, conversation_id(conversation)?, message_id(message)?).await?;
        Ok(())
    }

    fn watch(&mut self, reply: &ReplyHandle, request_id: Option<String>) {
        let id = reply.reply_id();
        let mut events = reply.events();
        let mut session = self.session.clone();
        // A watcher of the socket, aborted with it; the reply itself is a tracked task.
        #[allow(clippy::disallowed_methods)]
        let task = actix_web::rt::spawn(async move {
            while let Some(event) = events.next_event().await {
                let frame = ReplyFrame { event: &event, message_id: id, request_id: request_id.as_deref() };
                if session.text(to_text(&frame)).await.is_err() {
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
