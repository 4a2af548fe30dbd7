//! Users' rights end to end: a report and the operator's decision the user sees; a data
//! export with exactly the user's data; account deletion that leaves nothing of the user
//! in any collection, stops their token on another replica, and lets a new sign-in start
//! fresh.
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::console::{Operator, BOOTSTRAP_PASSWORD};
use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, spawn_app_with, TestApp};

async fn console_app_on(db: Option<String>) -> TestApp {
    spawn_app_with(move |s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
        if let Some(db) = db {
            s.mongodb_db = db;
        }
    })
    .await
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn a_report_keeps_what_was_said_and_the_operators_decision_reaches_the_user() {
    let app = console_app_on(None).await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("reporter").await;
    app.deepseek.enqueue(text_reply(&["一句冒犯的话"]));
    app.stream_message(&token, &conversation, "你好").await.all().await;
    let reply = app.messages(&token, &conversation).await.into_iter().find(|m| m["content"] == "一句冒犯的话").unwrap();
    let reported = json!({"conversation_id": conversation, "message_id": reply["id"], "reason": "abusive", "text": "回复带有侮辱"});

    let bad_reason =
        post(&app, &token, "/api/reports", json!({"conversation_id": conversation, "reason": "boring"})).await;
    let filed = post(&app, &token, "/api/reports", reported).await;
    assert_eq!(filed.status(), 201);
    let filed: Value = filed.json().await.unwrap();
    let queue = admin.get("/console/api/reports?status=pending").await;
    let decision = format!("/console/api/reports/{}/decision", filed["id"].as_str().unwrap());
    let decided = admin
        .send(Method::POST, &decision, Some(json!({"status": "accepted", "note": "已核实，已调整该伙伴的设定"})))
        .await;
    let twice = admin.send(Method::POST, &decision, Some(json!({"status": "dismissed", "note": "重复"}))).await;
    let mine: Value = get(&app, &token, "/api/reports").await.json().await.unwrap();
    let audit = admin.get("/console/api/audit").await;

    assert_eq!(bad_reason.status(), 400, "only the fixed reasons");
    assert_eq!(filed["status"], "pending");
    assert!(filed["due_at"].as_str().unwrap() > filed["created_at"].as_str().unwrap(), "a promised handling time");
    let listed = &queue["items"][0];
    assert_eq!(listed["snapshot"][0]["content"], "一句冒犯的话", "what was said, kept as it was");
    assert_eq!(listed["reason"], "abusive");
    assert_eq!(decided.status(), 204);
    assert_eq!(twice.status(), 404, "decided once");
    let seen = &mine["items"][0];
    assert_eq!(seen["status"], "accepted");
    assert_eq!(seen["note"], "已核实，已调整该伙伴的设定");
    assert!(seen.get("decided_by").is_none(), "the operator's name is not the user's business");
    assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "report_decided"));
}

async fn export_of(app: &TestApp, token: &str) -> (String, Value) {
    let started = post(app, token, "/api/me/exports", json!({})).await;
    assert_eq!(started.status(), 202);
    let id = started.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    for _ in 0..100 {
        let response = get(app, token, &format!("/api/me/exports/{id}")).await;
        if response.status() == 200 {
            assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
            return (id, response.json().await.unwrap());
        }
        assert_eq!(response.status(), 202);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the export was never ready");
}

#[tokio::test]
async fn an_export_holds_exactly_the_users_data_with_labels_and_no_secret() {
    let app = console_app_on(None).await;
    let (token, conversation) = app.user_with_conversation("exporter").await;
    let (other, other_conversation) = app.user_with_conversation("bystander").await;
    app.deepseek.enqueue(text_reply(&["我记住了"]));
    app.stream_message(&token, &conversation, "我的秘密是喜欢猫").await.all().await;
    app.deepseek.enqueue(text_reply(&["别人的回复"]));
    app.stream_message(&other, &other_conversation, "别人的话").await.all().await;
    post(&app, &token, "/api/reports", json!({"conversation_id": conversation, "reason": "other"})).await;

    let (id, document) = export_of(&app, &token).await;
    let stranger = get(&app, &other, &format!("/api/me/exports/{id}")).await;
    let text = document.to_string();

    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(document["user"]["id"], me["id"]);
    let conversations = document["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0]["id"], conversation.as_str());
    let messages = conversations[0]["messages"].as_array().unwrap();
    let said: Vec<&str> = messages.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert!(said.contains(&"我的秘密是喜欢猫") && said.contains(&"我记住了"), "{said:?}");
    let reply = messages.iter().find(|m| m["content"] == "我记住了").unwrap();
    assert_eq!(reply["label"]["text"], "内容由AI生成");
    assert_eq!(reply["content_mark"]["content_id"], reply["id"]);
    assert_eq!(document["reports"].as_array().unwrap().len(), 1);
    assert!(document["usage_today"]["messages"]["used"].as_i64().unwrap() >= 1);
    assert!(!document["notices_acknowledged"].as_array().unwrap().is_empty(), "the sign-in's disclosure");
    assert!(!text.contains("别人的"), "never another user's data");
    assert!(!text.contains("o_exporter"), "no openid");
    assert!(!text.contains("SESSION-KEY") && !text.contains(&token), "no secret");
    assert_eq!(stranger.status(), 404, "another user's export is not there for them");
}

/// Every document of every collection that mentions `needle`, by collection.
async fn documents_mentioning(db: &str, needle: &str) -> Vec<(String, String)> {
    let uri = crate::helpers::mongodb_uri().unwrap();
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let database = client.database(db);
    let mut found = Vec::new();
    for collection in database.list_collection_names().await.unwrap() {
        let documents: mongodb::Collection<mongodb::bson::Document> = database.collection(&collection);
        let mut cursor = documents.find(mongodb::bson::doc! {}).await.unwrap();
        while cursor.advance().await.unwrap() {
            let document = cursor.deserialize_current().unwrap();
            let text = serde_json::to_string(&document).unwrap();
            if text.contains(needle) {
                found.push((collection.clone(), text));
            }
        }
    }
    found
}

#[tokio::test]
async fn deleting_an_account_erases_it_everywhere_stops_its_token_and_a_new_sign_in_starts_fresh() {
    crate::requires_mongodb!();
    let app = console_app_on(None).await;
    let replica = console_app_on(Some(app.db_name.clone())).await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("leaving_for_good").await;
    let (_, other_conversation) = app.user_with_conversation("staying").await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap().to_string();
    app.deepseek.enqueue(text_reply(&["好的"]));
    app.stream_message(&token, &conversation, "记住我住在杭州").await.all().await;
    // What the learner would have kept (learning itself is tested in memories.rs).
    let user = companion_backend::domain::UserId::parse(&user_id).unwrap();
    let fact = companion_backend::domain::MemoryText::parse("住在杭州").unwrap();
    app.store.insert_memory(&companion_backend::domain::MemoryFact::new(user, "xiaoxi", fact, None)).await.unwrap();
    let handled = post(&app, &token, "/api/reports", json!({"conversation_id": conversation, "reason": "other"})).await;
    let handled: Value = handled.json().await.unwrap();
    let decision = format!("/console/api/reports/{}/decision", handled["id"].as_str().unwrap());
    admin.send(Method::POST, &decision, Some(json!({"status": "dismissed", "note": "无违规"}))).await;
    export_of(&app, &token).await;
    assert_eq!(get(&replica, &token, "/api/me").await.status(), 200, "the replica knows the token");
    let before = documents_mentioning(&app.db_name, &user_id).await;

    let unconfirmed = post(&app, &token, "/api/me/deletion", json!({"confirm": "yes"})).await;
    let deleted = post(&app, &token, "/api/me/deletion", json!({"confirm": "注销"})).await;
    let left = documents_mentioning(&app.db_name, &user_id).await;
    let on_replica = get(&replica, &token, "/api/me").await;
    let new_on_replica = post(&replica, &token, "/api/conversations", json!({})).await;
    let export_on_replica = post(&replica, &token, "/api/me/exports", json!({})).await;
    let here = get(&app, &token, "/api/conversations").await;
    let (fresh_token, fresh_id) = app.login_as("o_leaving_for_good").await;
    let fresh_conversations: Value = get(&app, &fresh_token, "/api/conversations").await.json().await.unwrap();

    let collections: std::collections::BTreeSet<&str> = before.iter().map(|(c, _)| c.as_str()).collect();
    for expected in
        ["users", "conversations", "messages", "memories", "safety_events", "reports", "exports", "counters"]
    {
        assert!(collections.contains(expected), "before: the user is in {expected}: {collections:?}");
    }
    assert_eq!(error_code(unconfirmed).await, "invalid_body");
    assert_eq!(deleted.status(), 200);
    let kept: Vec<&str> = left.iter().map(|(c, _)| c.as_str()).filter(|c| *c != "audit_log").collect();
    assert!(kept.is_empty(), "nothing of the user is left but operators' audit entries: {left:?}");
    assert_eq!(on_replica.status(), 401, "the token stops on another replica too");
    assert_eq!(new_on_replica.status(), 401, "nothing new is stored under an erased account");
    assert_eq!(export_on_replica.status(), 401);
    // Only the per-minute rate-limit counters of the refused requests, expiring within the hour.
    let after_refusals = documents_mentioning(&app.db_name, &user_id).await;
    let stored: Vec<&(String, String)> =
        after_refusals.iter().filter(|(c, d)| c != "audit_log" && !(c == "counters" && d.contains("\"rl:"))).collect();
    assert!(stored.is_empty(), "{stored:?}");
    assert_eq!(here.status(), 401);
    assert_ne!(fresh_id, user_id, "a new sign-in is a new user");
    assert_eq!(fresh_conversations["items"], json!([]));
    let staying = app
        .store
        .find_conversation(companion_backend::domain::ConversationId::parse(&other_conversation).unwrap())
        .await
        .unwrap();
    assert!(staying.is_some(), "another user's data is untouched");
    let record = documents_mentioning(&app.db_name, "user-sha256:").await;
    assert_eq!(record.len(), 1, "the deletion is recorded without personal content");
    assert!(!record[0].1.contains(&user_id));
}

#[tokio::test]
async fn with_a_cooling_off_period_a_deletion_is_scheduled_and_can_be_cancelled() {
    let app = spawn_app_with(|s| s.account_deletion_cooling_days = 7).await;
    let (token, _) = app.user_with_conversation("hesitant").await;

    let scheduled = post(&app, &token, "/api/me/deletion", json!({"confirm": "注销"})).await;
    let status = scheduled.status();
    let body: Value = scheduled.json().await.unwrap();
    let still_here = get(&app, &token, "/api/conversations").await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let user = companion_backend::domain::UserId::parse(me["id"].as_str().unwrap()).unwrap();
    let due = app.store.get_user(user).await.unwrap().unwrap().deletion_due;
    let cancelled = app.client.delete(app.url("/api/me/deletion")).bearer_auth(&token).send().await.unwrap();
    let after = app.store.get_user(user).await.unwrap().unwrap().deletion_due;
    let me_after: Value = app.get_me(&token).await.json().await.unwrap();

    assert_eq!(status, 202);
    assert_eq!(body["status"], "scheduled");
    assert!(due.is_some_and(|d| d > chrono::Utc::now() + chrono::Duration::days(6)), "{due:?}");
    assert_eq!(still_here.status(), 200, "nothing is erased before the period ends");
    assert_eq!(cancelled.status(), 204);
    assert_eq!(after, None);
    assert_eq!(me["deletion_due_at"], body["due_at"], "/api/me shows the schedule (the 我的 page reads it)");
    assert!(me_after.get("deletion_due_at").is_none(), "and no schedule once cancelled: {me_after}");
}
