//! Operators find users and ban them: a banned user is refused on every route and
//! transport (HTTP, login, a WebSocket opened before the ban, a new one), until unbanned.
use reqwest::Method;
use serde_json::{json, Value};

use crate::console::{console_app, Operator};
use crate::helpers::error_code;
use crate::websocket::{connect, next, send};

#[tokio::test]
async fn a_banned_user_is_refused_everywhere_until_unbanned() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("troublemaker").await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap().to_string();
    let mut socket = connect(&app, None).await;
    send(&mut socket, json!({"type": "auth", "token": token})).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "ready");

    let empty_reason =
        admin.send(Method::POST, &format!("/console/api/users/{user_id}/ban"), Some(json!({"reason": " "}))).await;
    let banned = admin
        .send(Method::POST, &format!("/console/api/users/{user_id}/ban"), Some(json!({"reason": "反复发送骚扰内容"})))
        .await;
    let found: Value = admin
        .send(Method::POST, "/console/api/users/search", Some(json!({"query": user_id})))
        .await
        .json()
        .await
        .unwrap();
    let http = app.get_me(&token).await;
    app.wechat_knows("code-troublemaker-again", "o_troublemaker").await;
    let login = app.post_login(&json!({"code": "code-troublemaker-again"})).await;
    let send_http = app.send_message(&token, &conversation, &json!({"content": "你好"})).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "你好", "request_id": "r1"}))
        .await;
    let on_open_socket = next(&mut socket).await.unwrap();
    let mut fresh = connect(&app, None).await;
    send(&mut fresh, json!({"type": "auth", "token": token})).await;
    let on_new_socket = next(&mut fresh).await.unwrap();
    let closed = next(&mut fresh).await;

    assert_eq!(error_code(empty_reason).await, "invalid_body", "a ban needs a reason");
    assert_eq!(banned.status(), 204);
    assert_eq!(found["ban"]["reason"], "反复发送骚扰内容");
    assert_eq!(found["ban"]["by"], "admin");
    assert_eq!(found["openid_hash"].as_str().unwrap().len(), 16);
    assert!(!found.to_string().contains("o_troublemaker"), "the openid itself is never shown: {found}");
    assert_eq!(http.status(), 403);
    assert_eq!(error_code(http).await, "user_banned");
    assert_eq!(error_code(login).await, "user_banned");
    assert_eq!(error_code(send_http).await, "user_banned");
    assert_eq!(on_open_socket["type"], "error");
    assert_eq!(on_open_socket["code"], "user_banned", "{on_open_socket}");
    assert_eq!(on_new_socket["code"], "user_banned", "{on_new_socket}");
    assert_eq!(closed, None, "the new socket is closed");
    assert!(app.deepseek.requests().is_empty(), "nothing was generated for them");

    let unbanned = admin.send(Method::DELETE, &format!("/console/api/users/{user_id}/ban"), None).await;
    let back = app.get_me(&token).await;
    let audit = admin.get("/console/api/audit").await;

    assert_eq!(unbanned.status(), 204);
    assert_eq!(back.status(), 200);
    let entries = audit["items"].as_array().unwrap();
    let ban_entry = entries.iter().find(|e| e["action"] == "user_banned").expect("the ban is audited");
    assert_eq!(ban_entry["target"], user_id.as_str());
    assert_eq!(ban_entry["reason"], "反复发送骚扰内容");
    assert!(entries.iter().any(|e| e["action"] == "user_unbanned"));
}

#[tokio::test]
async fn a_user_is_found_by_openid_too_and_unknown_ones_are_not_found() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    app.login_as("o_findme").await;

    let search = |query: &str| admin.send(Method::POST, "/console/api/users/search", Some(json!({"query": query})));
    let by_openid: Value = search("o_findme").await.json().await.unwrap();
    let unknown = search("o_nobody_here").await;
    let not_signed_in =
        app.client.post(app.url("/console/api/users/search")).json(&json!({"query": "o_findme"})).send().await.unwrap();

    assert_eq!(by_openid["ban"], Value::Null);
    assert_eq!(by_openid["usage_today"]["messages"]["used"], 0, "{by_openid}");
    assert_eq!(unknown.status(), 404);
    assert_eq!(not_signed_in.status(), 401);
}

#[tokio::test]
async fn the_moderation_review_lists_refused_inputs_with_who_sent_them() {
    let app = crate::moderation::checking_app(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(crate::console::BOOTSTRAP_PASSWORD.to_string().into());
    })
    .await;
    crate::moderation::moderation_rules(&app.wechat, "违规", "risky").await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("flagged").await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();

    let refused = app.send_message(&token, &conversation, &json!({"content": "一段违规的话"})).await;
    let review = admin.get("/console/api/moderation").await;

    assert_eq!(refused.status(), 422);
    let items = review["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{review}");
    assert_eq!(items[0]["kind"], "input");
    assert_eq!(items[0]["code"], "content_rejected");
    assert_eq!(items[0]["text"], "一段违规的话");
    assert_eq!(items[0]["user_id"], me["id"]);
    assert_eq!(items[0]["conversation_id"], conversation.as_str());
}

#[tokio::test]
async fn an_admin_reads_a_users_conversation_only_with_a_reason_that_is_audited() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("reported").await;
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["好的"]));
    app.stream_message(&token, &conversation, "我要投诉").await.all().await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap();
    let view = |reason: &str| {
        admin.send(
            Method::POST,
            "/console/api/conversations/view",
            Some(json!({"user_id": user_id, "conversation_id": conversation, "reason": reason})),
        )
    };

    let listed = admin.get(&format!("/console/api/users/{user_id}/conversations")).await;
    let without_reason = view(" ").await;
    let shown: Value = view("用户投诉回复不当，核实对话").await.json().await.unwrap();
    let audit = admin.get("/console/api/audit").await;

    assert_eq!(listed["items"][0]["id"], conversation.as_str());
    assert_eq!(error_code(without_reason).await, "invalid_body");
    let contents: Vec<&str> =
        shown["items"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert!(contents.contains(&"我要投诉") && contents.contains(&"好的"), "{shown}");
    let viewed: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "conversation_viewed").collect();
    assert_eq!(viewed.len(), 1, "only the view with a reason, once");
    assert_eq!(viewed[0]["reason"], "用户投诉回复不当，核实对话");
    assert_eq!(viewed[0]["target"], format!("{user_id}/{conversation}"));
}
