use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, spawn_app, EventReader};

#[tokio::test]
async fn personas_list_public_fields_only() {
    let app = spawn_app().await;
    let (token, _) = app.login_as("o_personas").await;

    let response = app.client.get(app.url("/api/personas")).bearer_auth(&token).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert!(items.len() >= 2);
    let first = &items[0];
    for field in ["id", "name", "description", "greeting"] {
        assert!(first[field].is_string(), "{field} in {first}");
    }
    assert!(first.get("system_prompt").is_none(), "system prompts stay on the server");
    assert!(first.get("model").is_none());
}

#[tokio::test]
async fn creating_a_conversation_returns_201_and_opens_with_the_greeting() {
    let app = spawn_app().await;
    let (token, _) = app.login_as("o_create").await;

    let default = app.create_conversation(&token, &json!({})).await;
    let chosen = app.create_conversation(&token, &json!({"persona_id": "ahang", "title": "  学习搭子 "})).await;

    assert_eq!(default.status(), 201);
    let default: Value = default.json().await.unwrap();
    assert_eq!(default["persona_id"], "xiaoxi");
    assert_eq!(default["title"], "小溪");
    assert!(default["created_at"].is_string() && default["last_active_at"].is_string());
    let chosen: Value = chosen.json().await.unwrap();
    assert_eq!(chosen["persona_id"], "ahang");
    assert_eq!(chosen["title"], "学习搭子");
    let messages = app.messages(&token, chosen["id"].as_str().unwrap()).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["role"], "assistant");
    assert_eq!(messages[0]["status"], "complete");
    assert!(messages[0]["content"].as_str().unwrap().contains("阿航"));
}

#[tokio::test]
async fn bad_conversation_input_gets_clear_errors() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("bad_input").await;

    let unknown = app.create_conversation(&token, &json!({"persona_id": "nobody"})).await;
    let long_title = app.create_conversation(&token, &json!({"title": "长".repeat(101)})).await;
    let empty_rename = app.conversation(Method::PATCH, &token, &conversation, Some(&json!({"title": " "}))).await;
    let bad_limit = app.list_conversations(&token, "?limit=0").await;
    let bad_cursor = app.list_conversations(&token, "?cursor=garbage").await;
    let bad_id = app.conversation(Method::GET, &token, "not-an-id", None).await;

    assert_eq!((unknown.status().as_u16(), error_code(unknown).await.as_str()), (400, "unknown_persona"));
    assert_eq!((long_title.status().as_u16(), error_code(long_title).await.as_str()), (400, "invalid_title"));
    assert_eq!((empty_rename.status().as_u16(), error_code(empty_rename).await.as_str()), (400, "invalid_title"));
    assert_eq!((bad_limit.status().as_u16(), error_code(bad_limit).await.as_str()), (400, "invalid_query"));
    assert_eq!((bad_cursor.status().as_u16(), error_code(bad_cursor).await.as_str()), (400, "invalid_cursor"));
    assert_eq!((bad_id.status().as_u16(), error_code(bad_id).await.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn conversations_list_most_recently_active_first_with_cursor_pagination() {
    let app = spawn_app().await;
    let (token, _) = app.login_as("o_pages").await;
    let mut ids = Vec::new();
    for title in ["一", "二", "三"] {
        let created: Value = app.create_conversation(&token, &json!({"title": title})).await.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_string());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Talking in the oldest conversation makes it the most recent.
    app.deepseek.enqueue(text_reply(&["嗯"]));
    app.stream_message(&token, &ids[0], "hi").await.all().await;

    let first: Value = app.list_conversations(&token, "?limit=2").await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value =
        app.list_conversations(&token, &format!("?limit=2&cursor={cursor}")).await.json().await.unwrap();

    let titles = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(titles(&first), ["一", "三"]);
    assert_eq!(titles(&second), ["二"]);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn a_conversation_can_be_read_renamed_and_deleted_with_its_messages() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("lifecycle").await;
    app.deepseek.enqueue(text_reply(&["回复"]));
    app.stream_message(&token, &conversation, "hi").await.all().await;
    let message_id = app.messages(&token, &conversation).await[1]["id"].as_str().unwrap().to_string();

    let renamed = app.conversation(Method::PATCH, &token, &conversation, Some(&json!({"title": "新名字"}))).await;
    let read: Value = app.conversation(Method::GET, &token, &conversation, None).await.json().await.unwrap();
    let deleted = app.conversation(Method::DELETE, &token, &conversation, None).await;
    let after = app.conversation(Method::GET, &token, &conversation, None).await;
    let messages_after = app.list_messages(&token, &conversation, "").await;
    let deleted_again = app.conversation(Method::DELETE, &token, &conversation, None).await;

    assert_eq!(renamed.status(), 200);
    assert_eq!(read["title"], "新名字");
    assert_eq!(deleted.status(), 204);
    assert_eq!(after.status(), 404);
    assert_eq!(messages_after.status(), 404);
    assert_eq!(deleted_again.status(), 404);
    let conversation_id = companion_backend::domain::ConversationId::parse(&conversation).unwrap();
    let message_id = companion_backend::domain::MessageId::parse(&message_id).unwrap();
    assert!(
        app.store.get_message(conversation_id, message_id).await.unwrap().is_none(),
        "messages are gone from MongoDB"
    );
}

#[tokio::test]
async fn another_users_conversation_and_messages_are_404() {
    let app = spawn_app().await;
    let (owner, conversation) = app.user_with_conversation("owner").await;
    let (stranger, _) = app.login_as("o_stranger").await;
    let greeting = app.messages(&owner, &conversation).await[0]["id"].as_str().unwrap().to_string();

    let responses = vec![
        app.conversation(Method::GET, &stranger, &conversation, None).await,
        app.conversation(Method::PATCH, &stranger, &conversation, Some(&json!({"title": "mine"}))).await,
        app.conversation(Method::DELETE, &stranger, &conversation, None).await,
        app.list_messages(&stranger, &conversation, "").await,
        app.send_message(&stranger, &conversation, &json!({"content": "hi"})).await,
        app.get_message(&stranger, &conversation, &greeting).await,
        app.reattach(&stranger, &conversation, &greeting).await,
    ];

    for response in responses {
        assert_eq!(response.status(), 404, "{}", response.url());
        assert_eq!(error_code(response).await, "not_found");
    }
    let listed: Value = app.list_conversations(&stranger, "").await.json().await.unwrap();
    assert!(listed["items"].as_array().unwrap().is_empty());
    assert_eq!(app.conversation(Method::GET, &owner, &conversation, None).await.status(), 200);
    assert!(app.deepseek.requests().is_empty());
}

#[tokio::test]
async fn message_history_pages_backwards_in_chronological_pages() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("history").await;
    for i in 0..3 {
        app.deepseek.enqueue(text_reply(&[&format!("答{i}")]));
        app.stream_message(&token, &conversation, &format!("问{i}")).await.all().await;
    }

    let newest: Value = app.list_messages(&token, &conversation, "?limit=3").await.json().await.unwrap();
    let cursor = newest["next_cursor"].as_str().unwrap();
    let older: Value =
        app.list_messages(&token, &conversation, &format!("?limit=3&before={cursor}")).await.json().await.unwrap();
    let cursor = older["next_cursor"].as_str().unwrap();
    let oldest: Value =
        app.list_messages(&token, &conversation, &format!("?limit=3&before={cursor}")).await.json().await.unwrap();

    let contents = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(contents(&newest), ["答1", "问2", "答2"]);
    assert_eq!(contents(&older), ["问0", "答0", "问1"]);
    assert_eq!(contents(&oldest).len(), 1, "the greeting");
    assert!(oldest["next_cursor"].is_null());
}

#[tokio::test]
async fn reattaching_mid_generation_sends_the_stored_text_then_live_deltas() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("reattach").await;
    let pieces = ["一、", "二、", "三、", "四、", "五。"];
    app.deepseek.enqueue(crate::helpers::fake_deepseek::paced(
        &crate::helpers::fake_deepseek::reply_body(&pieces, "stop"),
        std::time::Duration::from_millis(200),
    ));
    let mut first = app.stream_message(&token, &conversation, "数数").await;
    let start = first.next().await.unwrap();
    let seen = first.next().await.unwrap();
    drop(first);
    let id = start.data["assistant_message_id"].as_str().unwrap();

    let response = app.reattach(&token, &conversation, id).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    let (events, _) = EventReader::new(response).all().await;
    assert_eq!(events[0].name, "delta");
    assert!(events[0].data["content"].as_str().unwrap().starts_with(seen.data["content"].as_str().unwrap()));
    assert!(events.iter().filter(|e| e.name == "delta").count() >= 2, "live deltas follow: {events:?}");
    assert_eq!(crate::helpers::text_of(&events), pieces.concat());
    assert_eq!(events.last().unwrap().name, "done");
}

#[tokio::test]
async fn reattaching_to_a_finished_reply_sends_it_whole_then_done() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("reattach_done").await;
    app.deepseek.enqueue(text_reply(&["早就", "说完了"]));
    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;
    let id = events[0].data["assistant_message_id"].as_str().unwrap().to_string();

    let (events, _) = EventReader::new(app.reattach(&token, &conversation, &id).await).all().await;

    assert_eq!(crate::helpers::names_of(&events), ["delta", "done"]);
    assert_eq!(events[0].data["content"], "早就说完了");
    let user_message = app.messages(&token, &conversation).await[1]["id"].as_str().unwrap().to_string();
    let refused = app.reattach(&token, &conversation, &user_message).await;
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn reattaching_on_another_replica_follows_the_stored_progress() {
    let owner = spawn_app().await;
    let other = crate::helpers::spawn_app_with(|s| s.mongodb_db = owner.db_name.clone()).await;
    let (token, conversation) = owner.user_with_conversation("cross_replica").await;
    let pieces = ["跨", "副本", "也能", "接上", "。"];
    owner.deepseek.enqueue(crate::helpers::fake_deepseek::paced(
        &crate::helpers::fake_deepseek::reply_body(&pieces, "stop"),
        std::time::Duration::from_millis(400),
    ));
    let mut first = owner.stream_message(&token, &conversation, "hi").await;
    let id = first.next().await.unwrap().data["assistant_message_id"].as_str().unwrap().to_string();

    let (events, _) = EventReader::new(other.reattach(&token, &conversation, &id).await).all().await;

    assert_eq!(crate::helpers::text_of(&events), pieces.concat());
    assert_eq!(events.last().unwrap().name, "done");
    while first.next().await.is_some() {}
}
