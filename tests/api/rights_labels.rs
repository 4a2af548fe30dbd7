//! AI-content labels on every transport (an explicit label the client shows, implicit
//! metadata in the API), and the privacy policy a user must agree to before chatting.
use serde_json::{json, Value};

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp};
use crate::websocket::a_reply_on_every_transport;

#[tokio::test]
async fn every_reply_carries_the_ai_label_on_every_transport_and_its_metadata_in_the_api() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("labelled").await;
    for piece in ["一", "二", "三"] {
        app.deepseek.enqueue(text_reply(&[piece]));
    }

    let (sse, polled, frames) = a_reply_on_every_transport(&app, &token, &conversation).await;
    let history = app.messages(&token, &conversation).await;

    let ai = json!({"author": "ai", "text": "内容由AI生成"});
    assert_eq!(sse[0].name, "start");
    assert_eq!(sse[0].data["label"], ai);
    assert_eq!(sse[0].data["content_mark"]["content_id"], sse[0].data["assistant_message_id"]);
    assert_eq!(polled["assistant_message"]["label"], ai);
    assert!(polled["user_message"].get("label").is_none(), "the user's own words carry no label");
    assert_eq!(frames[0]["type"], "start");
    assert_eq!(frames[0]["label"], ai);
    for message in history.iter().filter(|m| m["role"] == "assistant") {
        assert_eq!(message["label"], ai, "{message}");
        let mark = &message["content_mark"];
        assert_eq!(mark["producer"], "companion-backend");
        assert_eq!(mark["content_id"], message["id"]);
        assert_eq!(mark["generated_at"], message["created_at"]);
    }
    let answered = history.iter().find(|m| m["content"] == "一").unwrap();
    assert_eq!(answered["content_mark"]["model"], "deepseek-v4-flash", "the model the upstream reported serving");
}

async fn policy_app(version: &str, db: Option<String>) -> TestApp {
    let version = version.to_string();
    spawn_app_with(move |s| {
        s.privacy_policy_version = version;
        if let Some(db) = db {
            s.mongodb_db = db;
        }
    })
    .await
}

#[tokio::test]
async fn a_published_privacy_policy_is_agreed_to_before_chatting_and_a_new_version_again() {
    let app = policy_app("2026-11-01", None).await;
    let (token, user_id) = app.login_as("o_reader").await;
    let created: Value = app.create_conversation(&token, &json!({})).await.json().await.unwrap();
    let conversation = created["id"].as_str().unwrap().to_string();
    app.deepseek.enqueue(text_reply(&["好"]));

    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let notice = me["notices"].as_array().unwrap().iter().find(|n| n["kind"] == "privacy_policy").cloned();
    // login_as acknowledged what login listed: the policy among it.
    let sent = app.send_message(&token, &conversation, &json!({"content": "你好", "stream": false})).await;
    let newer = policy_app("2026-12-01", Some(app.db_name.clone())).await;
    let refused = newer.send_message(&token, &conversation, &json!({"content": "还在吗", "stream": false})).await;
    let listed: Value = newer.get_me(&token).await.json().await.unwrap();
    let wrong = newer
        .client
        .post(newer.url("/api/me/notices/privacy_policy/ack"))
        .bearer_auth(&token)
        .json(&json!({"version": "2026-11-01"}))
        .send()
        .await
        .unwrap();
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    newer.wechat_knows(&code, "o_reader").await;
    let login: Value =
        newer.post_login(&json!({"code": code, "agreed_policy_version": "2026-12-01"})).await.json().await.unwrap();
    newer.deepseek.enqueue(text_reply(&["在"]));
    let again = newer.send_message(&token, &conversation, &json!({"content": "还在吗", "stream": false})).await;
    let user = companion_backend::domain::UserId::parse(&user_id).unwrap();
    let agreed: Vec<String> = app
        .store
        .list_safety_events(Some(user), 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == companion_backend::domain::SafetyEventKind::PolicyAgreed)
        .map(|e| e.detail.unwrap())
        .collect();

    assert!(notice.is_none(), "agreed at the first sign-in: {me}");
    assert_eq!(sent.status(), 200);
    assert_eq!(refused.status(), 428, "a new version must be agreed to before chatting");
    assert_eq!(error_code(refused).await, "notice_required");
    let pending = listed["notices"].as_array().unwrap().iter().find(|n| n["kind"] == "privacy_policy").unwrap();
    assert_eq!(pending["version"], "2026-12-01");
    assert_eq!(pending["required"], true);
    assert_eq!(error_code(wrong).await, "notice_outdated");
    assert!(login["notices"].as_array().unwrap().iter().all(|n| n["kind"] != "privacy_policy"), "{login}");
    assert_eq!(again.status(), 200);
    assert_eq!(agreed, ["2026-12-01", "2026-11-01"], "each agreement recorded, newest first");
}
