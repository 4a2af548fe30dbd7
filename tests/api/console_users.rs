//! Operators find users and ban them: a banned user is refused on every route and
//! transport (HTTP, login, a WebSocket opened before the ban, a new one), until unbanned.
use reqwest::Method;
use serde_json::{json, Value};

use crate::console::{console_app, Operator};
use crate::helpers::error_code;
use crate::websocket::{connect, next, send, signed_in_socket};

#[tokio::test]
async fn a_banned_user_is_refused_everywhere_until_unbanned() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("troublemaker").await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap().to_string();
    let mut socket = signed_in_socket(&app, &token).await;

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
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["这是", "违规的回答"]));
    app.stream_message(&token, &conversation, "你好").await.all().await;
    let review = admin.get("/console/api/moderation").await;

    assert_eq!(refused.status(), 422);
    let items = review["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{review}");
    let (reply, input) = (&items[0], &items[1]);
    assert_eq!(input["kind"], "input");
    assert_eq!(input["code"], "content_rejected");
    assert_eq!(input["label"], 20001, "WeChat's label is kept with the refusal");
    assert_eq!(input["text"], "一段违规的话");
    assert_eq!(input["user_id"], me["id"]);
    assert_eq!(input["conversation_id"], conversation.as_str());
    assert_eq!(reply["kind"], "reply");
    assert_eq!(reply["code"], "content_blocked");
    assert_eq!(reply["label"], 20001, "{reply}");
    assert_eq!(reply["text"], "", "a withheld reply's text is not shown");
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

#[tokio::test]
async fn an_operator_gives_one_user_their_own_daily_quota_and_takes_it_back() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("heavy").await;
    let (other, other_conversation) = app.user_with_conversation("others").await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let quota = format!("/console/api/users/{}/quota", me["id"].as_str().unwrap());
    let usage = |token: String| {
        let request = app.client.get(app.url("/api/me/usage")).bearer_auth(token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let negative = admin.send(Method::PUT, &quota, Some(json!({"messages": -1, "tokens": 0, "reason": "试用"}))).await;
    let no_reason = admin.send(Method::PUT, &quota, Some(json!({"messages": 1, "tokens": 0, "reason": ""}))).await;
    let set = admin.send(Method::PUT, &quota, Some(json!({"messages": 1, "tokens": 5000, "reason": "试用账号"}))).await;
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["好"]));
    app.stream_message(&token, &conversation, "第一条").await.all().await;
    let refused = app.send_message(&token, &conversation, &json!({"content": "第二条"})).await;
    let own = usage(token.clone()).await;
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["好"]));
    app.stream_message(&other, &other_conversation, "第一条").await.all().await;
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["好"]));
    let others = app.send_message(&other, &other_conversation, &json!({"content": "第二条"})).await;
    let found: Value = admin
        .send(Method::POST, "/console/api/users/search", Some(json!({"query": me["id"]})))
        .await
        .json()
        .await
        .unwrap();
    let reset = admin.send(Method::DELETE, &quota, None).await;
    let after_reset = usage(token.clone()).await;
    let default = usage(other.clone()).await;
    let audit = admin.get("/console/api/audit").await;

    assert_eq!(error_code(negative).await, "invalid_body");
    assert_eq!(error_code(no_reason).await, "invalid_body");
    assert_eq!(set.status(), 204);
    assert_eq!(error_code(refused).await, "quota_exceeded", "the user's own limit of one message");
    assert_eq!(own["messages"], json!({"used": 1, "limit": 1}));
    assert_eq!(own["tokens"]["limit"], 5000);
    assert_ne!(others.status(), 429, "other users keep the service's limits");
    assert_eq!(found["own_quota"], true);
    assert_eq!(reset.status(), 204);
    assert_ne!(default["messages"]["limit"], 1);
    assert_eq!(after_reset["messages"]["limit"], default["messages"]["limit"], "the service's default again");
    let changes: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "quota_changed").collect();
    assert_eq!(changes.len(), 2, "{audit}");
    assert!(changes[1]["reason"].as_str().unwrap().contains("试用账号"), "{audit}");
}
