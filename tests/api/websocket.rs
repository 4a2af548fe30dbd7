//! The WebSocket transport (`wx.cloud.connectContainer`), tested like the SSE path.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::helpers::fake_deepseek::{paced, reply_body, text_reply};
use crate::helpers::{spawn_app_with, TestApp};

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn trusting_app() -> TestApp {
    spawn_app_with(|s| {
        s.wechat_trust_cloudrun_headers = true;
        s.ws_auth_timeout_ms = 800;
    })
    .await
}

/// Opens `/api/ws`, with the identity headers Cloud Run injects when `openid` is given.
pub(crate) async fn connect(app: &TestApp, openid: Option<&str>) -> Socket {
    let mut request =
        format!("ws://127.0.0.1:{}/api/ws", app.address.rsplit(':').next().unwrap()).into_client_request().unwrap();
    if let Some(openid) = openid {
        request.headers_mut().insert("x-wx-source", "wx_client".parse().unwrap());
        request.headers_mut().insert("x-wx-openid", openid.parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket upgrade");
    socket
}

/// A socket signed in with `token` (its first `auth` frame answered `ready`).
pub(crate) async fn signed_in_socket(app: &TestApp, token: &str) -> Socket {
    let mut socket = connect(app, None).await;
    send(&mut socket, json!({"type": "auth", "token": token})).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "ready");
    socket
}

pub(crate) async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Frame::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame (control frames skipped); `None` once closed.
pub(crate) async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), socket.next()).await.expect("no frame for 15 s")?;
        match frame.ok()? {
            Frame::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
            Frame::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Frames until the reply's `done` or `error`.
pub(crate) async fn reply(socket: &mut Socket) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = next(socket).await {
        let end = frame["type"] == "done" || frame["type"] == "error";
        frames.push(frame);
        if end {
            break;
        }
    }
    frames
}

/// One reply on each transport, in this order: SSE ("你好"), polled ("在吗"), WebSocket
/// ("还在吗"). Enqueue three upstream answers first.
pub(crate) async fn a_reply_on_every_transport(
    app: &TestApp,
    token: &str,
    conversation: &str,
) -> (Vec<crate::helpers::Event>, Value, Vec<Value>) {
    let (sse, _) = app.stream_message(token, conversation, "你好").await.all().await;
    let polled: Value =
        app.send_message(token, conversation, &json!({"content": "在吗", "stream": false})).await.json().await.unwrap();
    let mut socket = signed_in_socket(app, token).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "还在吗"})).await;
    let frames = reply(&mut socket).await;
    (sse, polled, frames)
}

fn text(frames: &[Value]) -> String {
    frames.iter().filter(|f| f["type"] == "delta").map(|f| f["content"].as_str().unwrap()).collect()
}

async fn conversation_for(app: &TestApp, openid: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/conversations"))
        .header("x-wx-source", "wx_client")
        .header("x-wx-openid", openid)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_reply_streams_over_the_websocket_with_platform_identity_headers() {
    let app = trusting_app().await;
    let conversation = conversation_for(&app, "o_ws_headers").await;
    app.deepseek.enqueue(text_reply(&["通过", "WebSocket", "回复"]));
    let mut socket = connect(&app, Some("o_ws_headers")).await;

    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "你好", "request_id": "r1"}))
        .await;
    let frames = reply(&mut socket).await;

    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"done"));
    assert_eq!(text(&frames), "通过WebSocket回复");
    let id = frames[0]["assistant_message_id"].as_str().unwrap();
    assert!(frames.iter().all(|f| f["message_id"] == id && f["request_id"] == "r1"));
    let stored: Value = app
        .client
        .get(app.url(&format!("/api/conversations/{conversation}/messages/{id}")))
        .header("x-wx-source", "wx_client")
        .header("x-wx-openid", "o_ws_headers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["content"], "通过WebSocket回复");
}

#[tokio::test]
async fn without_identity_headers_the_first_frame_authenticates_with_the_jwt() {
    let app = trusting_app().await;
    let (token, conversation) = app.user_with_conversation("ws_token").await;
    app.deepseek.enqueue(text_reply(&["高性能模式"]));
    let mut socket = connect(&app, None).await;

    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "hi"})).await;
    let refused = next(&mut socket).await.unwrap();
    send(&mut socket, json!({"type": "auth", "token": token})).await;
    let ready = next(&mut socket).await.unwrap();
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "hi"})).await;
    let frames = reply(&mut socket).await;

    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(ready["type"], "ready");
    assert_eq!(text(&frames), "高性能模式");
    assert_eq!(app.messages(&token, &conversation).await.len(), 3);
}

#[tokio::test]
async fn a_bad_token_closes_the_socket_and_silence_times_out() {
    let app = trusting_app().await;

    let mut bad = connect(&app, None).await;
    send(&mut bad, json!({"type": "auth", "token": "not-a-jwt"})).await;
    let error = next(&mut bad).await.unwrap();
    let after = next(&mut bad).await;
    // A connection that never authenticates (like the platform's health-check sockets).
    let mut silent = connect(&app, None).await;
    let closed = next(&mut silent).await;

    assert_eq!(error["code"], "unauthorized");
    assert!(after.is_none(), "closed after a bad token");
    assert!(closed.is_none(), "closed after the auth timeout");
    assert_eq!(app.get_health().await.status(), 200);
}

#[tokio::test]
async fn pings_invalid_frames_and_busy_conversations_get_answers_on_an_open_socket() {
    let app = trusting_app().await;
    let conversation = conversation_for(&app, "o_ws_misc").await;
    app.deepseek.enqueue(paced(&reply_body(&["慢", "慢", "说"], "stop"), Duration::from_millis(250)));
    let mut socket = connect(&app, Some("o_ws_misc")).await;

    send(&mut socket, json!({"type": "ping"})).await;
    let pong = next(&mut socket).await.unwrap();
    socket.send(Frame::text("{not json")).await.unwrap();
    let invalid = next(&mut socket).await.unwrap();
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "一"})).await;
    let start = next(&mut socket).await.unwrap();
    send(
        &mut socket,
        json!({"type": "send", "conversation_id": conversation, "content": "二", "request_id": "second"}),
    )
    .await;
    let mut frames = reply(&mut socket).await;
    let busy_position = frames.iter().position(|f| f["request_id"] == "second").expect("an answer to the second send");
    let busy = frames.remove(busy_position);
    if busy_position == frames.len() {
        frames.extend(reply(&mut socket).await);
    }
    let empty = {
        send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "  "})).await;
        next(&mut socket).await.unwrap()
    };

    assert_eq!(pong["type"], "pong");
    assert_eq!(invalid["code"], "invalid_frame");
    assert_eq!(start["type"], "start");
    assert_eq!(busy["type"], "error");
    assert_eq!(busy["code"], "reply_in_progress");
    assert_eq!(text(&frames), "慢慢说");
    assert_eq!(empty["code"], "invalid_content");
}

#[tokio::test]
async fn reattach_over_the_websocket_after_the_first_socket_dropped() {
    let app = trusting_app().await;
    let conversation = conversation_for(&app, "o_ws_reattach").await;
    let pieces = ["断线", "之后", "还能", "接上", "。"];
    app.deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(200)));
    let mut first = connect(&app, Some("o_ws_reattach")).await;
    send(&mut first, json!({"type": "send", "conversation_id": conversation, "content": "hi"})).await;
    let start = next(&mut first).await.unwrap();
    next(&mut first).await.unwrap();
    drop(first);
    let id = start["assistant_message_id"].as_str().unwrap();

    let mut second = connect(&app, Some("o_ws_reattach")).await;
    send(&mut second, json!({"type": "reattach", "conversation_id": conversation, "message_id": id})).await;
    let frames = reply(&mut second).await;

    assert_eq!(text(&frames), pieces.concat());
    assert_eq!(frames.last().unwrap()["type"], "done");
    send(
        &mut second,
        json!({"type": "reattach", "conversation_id": conversation, "message_id": "0123456789abcdef01234567"}),
    )
    .await;
    assert_eq!(next(&mut second).await.unwrap()["code"], "not_found");
}

#[tokio::test]
async fn websocket_sends_count_against_the_users_rate_limit() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 3).await;
    // Login carries no token yet; creating the conversation is the user's first request.
    let (token, conversation) = app.user_with_conversation("ws_limited").await;
    app.deepseek.enqueue(text_reply(&["一"]));
    app.deepseek.enqueue(text_reply(&["二"]));
    let mut socket = connect(&app, None).await;
    send(&mut socket, json!({"type": "auth", "token": token})).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "ready");

    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "a"})).await;
    let first = reply(&mut socket).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "b"})).await;
    let second = reply(&mut socket).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "c", "request_id": "over"}))
        .await;
    let refused = next(&mut socket).await.unwrap();

    assert_eq!(first.last().unwrap()["type"], "done");
    assert_eq!(second.last().unwrap()["type"], "done");
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(refused["request_id"], "over");
}

#[tokio::test]
async fn one_connect_container_user_has_one_budget_over_http_and_websocket() {
    let app = spawn_app_with(|s| {
        s.wechat_trust_cloudrun_headers = true;
        s.rate_limit_per_minute = 4;
    })
    .await;
    app.deepseek.enqueue(text_reply(&["好"]));
    // HTTP: creating the conversation (1) and the socket's upgrade request (2).
    let conversation = conversation_for(&app, "o_one_budget").await;
    let mut socket = connect(&app, Some("o_one_budget")).await;

    // WebSocket: a send (3) and a reattach (4) count under the same user...
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "一"})).await;
    let first = reply(&mut socket).await;
    let reply_id = first[0]["assistant_message_id"].as_str().unwrap().to_string();
    let reattach = json!({"type": "reattach", "conversation_id": conversation, "message_id": reply_id});
    send(&mut socket, reattach.clone()).await;
    let reattached = reply(&mut socket).await;
    // ...so the next frame of either kind is over the limit.
    send(&mut socket, reattach).await;
    let refused = next(&mut socket).await.unwrap();

    assert_eq!(first.last().unwrap()["type"], "done");
    assert_eq!(reattached.last().unwrap()["type"], "done");
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("rate_limited")));
    let over_http = app
        .client
        .get(app.url("/api/me"))
        .header("x-wx-source", "wx_client")
        .header("x-wx-openid", "o_one_budget")
        .send()
        .await
        .unwrap();
    assert_eq!(over_http.status(), 429, "HTTP shares the budget the socket used up");
}

#[tokio::test]
async fn one_user_cannot_hold_more_than_the_allowed_sockets() {
    let app = spawn_app_with(|s| {
        s.wechat_trust_cloudrun_headers = true;
        s.ws_max_sockets_per_user = 2;
    })
    .await;
    let first = connect(&app, Some("o_hoarder")).await;
    let _second = connect(&app, Some("o_hoarder")).await;

    let mut request =
        format!("ws://127.0.0.1:{}/api/ws", app.address.rsplit(':').next().unwrap()).into_client_request().unwrap();
    request.headers_mut().insert("x-wx-source", "wx_client".parse().unwrap());
    request.headers_mut().insert("x-wx-openid", "o_hoarder".parse().unwrap());
    let third = tokio_tungstenite::connect_async(request.clone()).await;
    let other_user = connect(&app, Some("o_someone_else")).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_closing_one = tokio_tungstenite::connect_async(request).await;

    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a third socket was accepted: {:?}", other.map(|_| ())),
    }
    drop(other_user);
    assert!(after_closing_one.is_ok(), "a closed socket frees its place");
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_disconnected() {
    let app = spawn_app_with(|s| {
        s.wechat_trust_cloudrun_headers = true;
        s.sse_keepalive_secs = 1;
    })
    .await;
    let mut silent = connect(&app, Some("o_silent")).await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let mut closed = false;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(2), silent.next()).await {
        match frame {
            Ok(Frame::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => continue,
        }
    }
    assert!(closed, "the server closed a socket that answered no ping for two rounds");
}

#[tokio::test]
async fn every_frame_of_a_socket_counts_against_its_users_limit() {
    let app = spawn_app_with(|s| {
        s.wechat_trust_cloudrun_headers = true;
        s.rate_limit_per_minute = 3;
    })
    .await;
    // The upgrade request itself is the first count.
    let mut socket = connect(&app, Some("o_chatty")).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        send(&mut socket, json!({"type": "ping"})).await;
        answers.push(next(&mut socket).await.unwrap());
    }

    assert_eq!(answers[0]["type"], "pong");
    assert_eq!(answers[1]["type"], "pong");
    assert_eq!((answers[2]["type"].as_str(), answers[2]["code"].as_str()), (Some("error"), Some("rate_limited")));
}

#[tokio::test]
async fn a_cancel_frame_stops_the_reply_and_its_watcher_hears_cancelled() {
    let app = trusting_app().await;
    let conversation = conversation_for(&app, "o_ws_cancel").await;
    let pieces: Vec<String> = (0..50).map(|i| format!("第{i}句。")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    app.deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(100)));
    app.deepseek.enqueue(text_reply(&["下一条"]));
    let mut socket = connect(&app, Some("o_ws_cancel")).await;

    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "长篇"})).await;
    let start = next(&mut socket).await.unwrap();
    let running = start["assistant_message_id"].as_str().unwrap().to_string();
    next(&mut socket).await.unwrap();
    send(&mut socket, json!({"type": "cancel", "conversation_id": conversation, "message_id": running})).await;
    let rest = reply(&mut socket).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "再来"})).await;
    let next_reply = reply(&mut socket).await;

    let last = rest.last().unwrap();
    assert_eq!((last["type"].as_str(), last["code"].as_str()), (Some("error"), Some("cancelled")));
    assert_eq!(next_reply.last().unwrap()["type"], "done", "the conversation took the next message");
    assert_eq!(text(&next_reply), "下一条");
}
