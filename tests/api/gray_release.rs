use serde_json::{json, Value};

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, mongodb_uri, spawn_app, spawn_app_with};

const PREVIEW_PERSONAS: &str = r#"
[[personas]]
id = "public"
name = "公开伙伴"
description = "everyone"
greeting = "你好"
system_prompt = "public prompt"

[[personas]]
id = "beta"
name = "内测伙伴"
description = "testers only"
greeting = "内测你好"
system_prompt = "beta prompt"
preview = true
"#;

#[tokio::test]
async fn preview_personas_and_model_are_only_for_whitelisted_testers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("personas.toml");
    std::fs::write(&file, PREVIEW_PERSONAS).unwrap();
    let app = spawn_app_with(|s| {
        s.personas_file = file.clone();
        s.preview_openids = Some(" o_tester , o_other_tester".into());
        s.preview_model = Some("deepseek-v4-pro".into());
    })
    .await;
    let (tester, _) = app.login_as("o_tester").await;
    let (regular, _) = app.login_as("o_regular").await;
    let ids = |body: Value| {
        body["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };

    let tester_sees: Value =
        app.client.get(app.url("/api/personas")).bearer_auth(&tester).send().await.unwrap().json().await.unwrap();
    let regular_sees: Value =
        app.client.get(app.url("/api/personas")).bearer_auth(&regular).send().await.unwrap().json().await.unwrap();
    let tester_creates = app.create_conversation(&tester, &json!({"persona_id": "beta"})).await;
    let regular_creates = app.create_conversation(&regular, &json!({"persona_id": "beta"})).await;

    assert_eq!(ids(tester_sees), ["public", "beta"]);
    assert_eq!(ids(regular_sees), ["public"]);
    assert_eq!(tester_creates.status(), 201);
    assert_eq!(regular_creates.status(), 400);
    assert_eq!(error_code(regular_creates).await, "unknown_persona");

    let tester_conversation: Value = tester_creates.json().await.unwrap();
    let regular_conversation: Value = app.create_conversation(&regular, &json!({})).await.json().await.unwrap();
    app.deepseek.enqueue(text_reply(&["内测回复"]));
    app.deepseek.enqueue(text_reply(&["普通回复"]));
    app.stream_message(&tester, tester_conversation["id"].as_str().unwrap(), "hi").await.all().await;
    app.stream_message(&regular, regular_conversation["id"].as_str().unwrap(), "hi").await.all().await;
    let requests = app.deepseek.requests();
    assert_eq!(requests[0].body["model"], "deepseek-v4-pro");
    assert_eq!(requests[0].body["messages"][0]["content"], "beta prompt");
    assert_eq!(requests[1].body["model"], "deepseek-flash");
    assert_eq!(requests[1].body["messages"][0]["content"], "public prompt");
}

#[tokio::test]
async fn documents_in_the_older_shape_are_read_by_the_current_code() {
    crate::requires_mongodb!();
    let app = spawn_app().await;
    let (token, user_id) = app.login_as("o_old_shape").await;
    let client = mongodb::Client::with_uri_str(mongodb_uri().unwrap()).await.unwrap();
    let db = client.database(&app.db_name);
    let conversation_id = "0a0000000000000000000001";
    let now = mongodb::bson::DateTime::now();
    // Written by a version before schema_version, persona_id, status and updated_ms existed.
    db.collection::<mongodb::bson::Document>("conversations")
        .insert_one(mongodb::bson::doc! {
            "_id": conversation_id, "user_id": &user_id, "title": "旧对话",
            "created_at": now, "last_active_ms": now.timestamp_millis(),
        })
        .await
        .unwrap();
    db.collection::<mongodb::bson::Document>("messages")
        .insert_one(mongodb::bson::doc! {
            "_id": "0a0000000000000000000002", "conversation_id": conversation_id, "user_id": &user_id,
            "role": "user", "content": "旧消息", "created_at": now,
        })
        .await
        .unwrap();

    let conversation: Value = app
        .client
        .get(app.url(&format!("/api/conversations/{conversation_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = app.messages(&token, conversation_id).await;
    app.deepseek.enqueue(text_reply(&["新版本的回复"]));
    let (events, _) = app.stream_message(&token, conversation_id, "继续聊").await.all().await;

    assert_eq!(conversation["title"], "旧对话");
    assert_eq!(conversation["persona_id"], "default");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "旧消息");
    assert_eq!(messages[0]["status"], "complete");
    assert_eq!(crate::helpers::text_of(&events), "新版本的回复");
    // The old turn is part of the new request; the missing persona falls back to the default.
    let request = &app.deepseek.requests()[0].body;
    assert!(request["messages"].to_string().contains("旧消息"));
    assert!(request["messages"][0]["content"].as_str().unwrap().contains("小溪"));
}

#[tokio::test]
async fn new_documents_carry_a_schema_version() {
    crate::requires_mongodb!();
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("schema_version").await;
    let _ = token;
    let client = mongodb::Client::with_uri_str(mongodb_uri().unwrap()).await.unwrap();
    let db = client.database(&app.db_name);

    for collection in ["users", "conversations", "messages"] {
        let doc = db
            .collection::<mongodb::bson::Document>(collection)
            .find_one(mongodb::bson::doc! {})
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("a document in {collection} for {conversation}"));
        assert_eq!(doc.get_i32("schema_version").unwrap(), 1, "{collection}");
    }
}
