//! Telling users they talk to an AI (at every sign-in, at first use) and reminding them
//! after long use: notices listed by `/api/me`, carried by the next reply on every
//! transport until acknowledged, and recorded.
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use companion_backend::domain::{Activity, UserId};
use companion_backend::store::UserSafetyUpdate;

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp};
use crate::websocket::a_reply_on_every_transport;

fn kinds(notices: &Value) -> Vec<String> {
    notices.as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap().to_string()).collect()
}

async fn pending(app: &TestApp, token: &str) -> Value {
    app.get_me(token).await.json::<Value>().await.unwrap()["notices"].clone()
}

async fn new_conversation(app: &TestApp, token: &str) -> String {
    let created: Value = app.create_conversation(token, &json!({})).await.json().await.unwrap();
    created["id"].as_str().unwrap().to_string()
}

/// Waits for what a send records after the reply is under way.
async fn until_pending(app: &TestApp, token: &str, kind: &str) -> Value {
    for _ in 0..100 {
        let notices = pending(app, token).await;
        if kinds(&notices).iter().any(|k| k == kind) {
            return notices;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no {kind} notice became pending");
}

#[tokio::test]
async fn the_ai_disclosure_of_a_sign_in_rides_on_every_transport_until_acknowledged_and_again_after_the_next() {
    let app = spawn_app().await;
    let (token, user_id) = app.login_leaving_notices("o_disclosed").await;
    let conversation = new_conversation(&app, &token).await;
    let listed = pending(&app, &token).await;
    for piece in ["一", "二", "三", "四"] {
        app.deepseek.enqueue(text_reply(&[piece]));
    }

    let (sse, polled, frames) = a_reply_on_every_transport(&app, &token, &conversation).await;
    let version = listed[0]["version"].as_str().unwrap();
    let stale = app
        .client
        .post(app.url("/api/me/notices/ai_disclosure/ack"))
        .bearer_auth(&token)
        .json(&json!({"version": "0000"}))
        .send()
        .await
        .unwrap();
    app.acknowledge(&token, &listed).await;
    let after_ack = pending(&app, &token).await;
    let (quiet, _) = app.stream_message(&token, &conversation, "好的").await.all().await;
    let (again, _) = app.login_leaving_notices("o_disclosed").await;
    let after_sign_in = pending(&app, &again).await;

    assert_eq!(kinds(&listed), ["ai_disclosure"]);
    assert!(listed[0]["text"].as_str().unwrap().contains("人工智能"), "{listed}");
    assert_eq!(listed[0]["required"], false);
    let names: Vec<&str> = sse.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["start", "notice", "delta", "done"], "after start, before the text");
    assert_eq!(sse[1].data["kind"], "ai_disclosure");
    assert_eq!(sse[1].data["version"], version);
    assert_eq!(kinds(&polled["notices"]), ["ai_disclosure"], "the polled answer carries it too");
    let notice_frames: Vec<&Value> = frames.iter().filter(|f| f["type"] == "notice").collect();
    assert_eq!(notice_frames.len(), 1, "{frames:?}");
    assert_eq!(notice_frames[0]["kind"], "ai_disclosure");
    assert_eq!(error_code(stale).await, "notice_outdated");
    assert_eq!(after_ack, json!([]));
    assert!(quiet.iter().all(|e| e.name != "notice"), "acknowledged: gone");
    assert_eq!(kinds(&after_sign_in), ["ai_disclosure"], "every sign-in discloses again");
    let events = app.store.list_safety_events(Some(UserId::parse(&user_id).unwrap()), 50).await.unwrap();
    let recorded: Vec<String> = events.iter().rev().map(|e| format!("{:?}", e.kind)).collect();
    assert_eq!(recorded, ["NoticeIssued", "NoticeAcknowledged", "NoticeIssued"], "who, which version, when");
    assert!(events[1].detail.as_deref().unwrap().ends_with(version), "the version acknowledged is kept");
}

#[tokio::test]
async fn with_notices_required_a_send_is_refused_until_the_notice_is_acknowledged() {
    let app = spawn_app_with(|s| s.notices_required = true).await;
    let (token, _) = app.login_leaving_notices("o_strict").await;
    let conversation = new_conversation(&app, &token).await;
    app.deepseek.enqueue(text_reply(&["好"]));

    let refused = app.send_message(&token, &conversation, &json!({"content": "你好"})).await;
    let stored_after_refusal = app.messages(&token, &conversation).await;
    let notices = pending(&app, &token).await;
    app.acknowledge(&token, &notices).await;
    let allowed = app.send_message(&token, &conversation, &json!({"content": "你好", "stream": false})).await;

    assert_eq!(refused.status(), 428);
    assert_eq!(error_code(refused).await, "notice_required");
    assert_eq!(notices[0]["required"], true);
    assert_eq!(allowed.status(), 200);
    assert_eq!(app.deepseek.requests().len(), 1, "the refused send reached no model");
    assert!(stored_after_refusal.iter().all(|m| m["role"] != "user"), "a refused send stores nothing");
    let stored = app.messages(&token, &conversation).await;
    assert_eq!(stored.iter().filter(|m| m["role"] == "user").count(), 1);
}

#[tokio::test]
async fn a_user_who_never_signed_in_gets_the_disclosure_with_the_first_reply() {
    let app = spawn_app_with(|s| s.wechat_trust_cloudrun_headers = true).await;
    let as_user = |request: reqwest::RequestBuilder| {
        request.header("x-wx-source", "wx_client").header("x-wx-openid", "o_header_only")
    };
    let created: Value = as_user(app.client.post(app.url("/api/conversations")))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = created["id"].as_str().unwrap();
    app.deepseek.enqueue(text_reply(&["你好"]));
    app.deepseek.enqueue(text_reply(&["在的"]));
    let send = |text: &str| {
        as_user(app.client.post(app.url(&format!("/api/conversations/{conversation}/messages"))))
            .json(&json!({"content": text}))
    };

    let first = crate::helpers::EventReader::new(send("你好").send().await.unwrap()).all().await.0;
    let me: Value = as_user(app.client.get(app.url("/api/me"))).send().await.unwrap().json().await.unwrap();
    let notice = me["notices"][0].clone();
    let acked = as_user(app.client.post(app.url("/api/me/notices/ai_disclosure/ack")))
        .json(&json!({"version": notice["version"]}))
        .send()
        .await
        .unwrap();
    let second = crate::helpers::EventReader::new(send("在吗").send().await.unwrap()).all().await.0;

    let carried: Vec<&Value> = first.iter().filter(|e| e.name == "notice").map(|e| &e.data).collect();
    assert_eq!(carried.len(), 1, "the first reply discloses");
    assert_eq!(carried[0]["kind"], "ai_disclosure");
    assert_eq!(notice["version"], carried[0]["version"], "saved before it was shown");
    assert_eq!(acked.status(), 204);
    assert!(second.iter().all(|e| e.name != "notice"), "acknowledged, and not a first use any more");
}

#[tokio::test]
async fn continuous_use_past_the_limit_brings_exactly_one_reminder_with_the_next_reply() {
    let app = spawn_app().await;
    let (token, user_id) = app.login_as("o_long_session").await;
    let conversation = new_conversation(&app, &token).await;
    let user = UserId::parse(&user_id).unwrap();
    // Two hours and a bit of chatting, with no pause longer than a few minutes.
    let now = Utc::now();
    let long = Activity {
        session_start: now - chrono::Duration::minutes(125),
        last: now - chrono::Duration::minutes(2),
        reminded_session: None,
    };
    app.store.update_user_safety(user, &UserSafetyUpdate { notices: vec![], activity: Some(long) }).await.unwrap();
    for piece in ["一", "二", "三", "四"] {
        app.deepseek.enqueue(text_reply(&[piece]));
    }

    let (crossing, _) = app.stream_message(&token, &conversation, "继续聊").await.all().await;
    let notices = until_pending(&app, &token, "usage_reminder").await;
    let (next_reply, _) = app.stream_message(&token, &conversation, "嗯").await.all().await;
    app.acknowledge(&token, &notices).await;
    let (after_ack, _) = app.stream_message(&token, &conversation, "好").await.all().await;
    let (still_same_session, _) = app.stream_message(&token, &conversation, "再聊会").await.all().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(crossing.iter().all(|e| e.name != "notice"), "the reply that crosses the limit is not held up");
    assert_eq!(kinds(&notices), ["ai_disclosure", "usage_reminder"], "long use discloses again, with the reminder");
    let carried: Vec<&str> =
        next_reply.iter().filter(|e| e.name == "notice").map(|e| e.data["kind"].as_str().unwrap()).collect();
    assert_eq!(carried, ["ai_disclosure", "usage_reminder"]);
    assert!(after_ack.iter().chain(&still_same_session).all(|e| e.name != "notice"));
    assert_eq!(pending(&app, &token).await, json!([]), "one reminder per session");
    let events = app.store.list_safety_events(Some(user), 50).await.unwrap();
    let reminders = events.iter().filter(|e| e.detail.as_deref().is_some_and(|d| d.starts_with("usage_reminder")));
    assert_eq!(reminders.count(), 2, "issued once, acknowledged once");
}
