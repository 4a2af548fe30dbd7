//! Stopping a reply on purpose, and recovering replies whose replica died.
use std::time::Duration;

use companion_backend::domain::{now, ConversationId, MessageId, MessageStatus, Role, UserId};
use serde_json::{json, Value};

use crate::helpers::fake_deepseek::{paced, reply_body, text_reply};
use crate::helpers::{spawn_app_with, stored_message, text_of, TestApp};

/// A long paced reply, so it is still running when the test acts.
fn slow_reply(app: &TestApp) {
    let pieces: Vec<String> = (0..60).map(|i| format!("第{i}句。")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    app.deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(100)));
}

async fn cancel(app: &TestApp, token: &str, conversation: &str, message: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/conversations/{conversation}/messages/{message}/cancel")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_owner_cancels_a_reply_its_text_is_kept_and_the_conversation_takes_the_next_message() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("canceller").await;
    slow_reply(&app);
    let mut reader = app.stream_message(&token, &conversation, "讲个长故事").await;
    let start = reader.next().await.unwrap();
    let reply = start.data["assistant_message_id"].as_str().unwrap().to_string();
    let first_delta = reader.next().await.unwrap(); // some text has arrived

    let cancelled = cancel(&app, &token, &conversation, &reply).await;
    let status = cancelled.status();
    let body: Value = cancelled.json().await.unwrap();
    let (events, _) = reader.all().await;
    app.deepseek.enqueue(text_reply(&["好的"]));
    let next = app.send_message(&token, &conversation, &json!({"content": "换个话题", "stream": false})).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["error"]["code"], "cancelled");
    let kept = body["content"].as_str().unwrap();
    assert!(!kept.is_empty() && kept.starts_with("第0句。"), "the text so far is kept: {kept}");
    assert_eq!(events.last().unwrap().name, "error");
    assert_eq!(events.last().unwrap().data["code"], "cancelled");
    let streamed = format!("{}{}", first_delta.data["content"].as_str().unwrap(), text_of(&events));
    assert_eq!(streamed, kept, "the client saw exactly the text that is kept");
    assert_eq!(next.status(), 200, "the conversation is free at once, no 409");
}

#[tokio::test]
async fn cancelling_is_for_the_owner_and_for_replies_only() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("owner").await;
    let (stranger, _) = app.user_with_conversation("stranger").await;
    app.deepseek.enqueue(text_reply(&["完"]));
    let done: Value =
        app.send_message(&token, &conversation, &json!({"content": "hi", "stream": false})).await.json().await.unwrap();
    let reply = done["assistant_message"]["id"].as_str().unwrap();
    let question = done["user_message"]["id"].as_str().unwrap();

    let by_stranger = cancel(&app, &stranger, &conversation, reply).await;
    let a_question = cancel(&app, &token, &conversation, question).await;
    let finished = cancel(&app, &token, &conversation, reply).await;

    assert_eq!(by_stranger.status(), 404);
    assert_eq!(a_question.status(), 400);
    assert_eq!(finished.status(), 200, "a finished reply stays as it was");
    let finished: Value = finished.json().await.unwrap();
    assert_eq!(finished["status"], "complete");
}

#[tokio::test]
async fn a_cancel_on_another_replica_stops_the_reply_where_it_runs() {
    let first = spawn_app_with(|_| {}).await;
    let second = spawn_app_with(|s| s.mongodb_db = first.db_name.clone()).await;
    let (token, conversation) = first.user_with_conversation("two_replicas").await;
    slow_reply(&first);
    let mut reader = first.stream_message(&token, &conversation, "长一点").await;
    let start = reader.next().await.unwrap();
    let reply = start.data["assistant_message_id"].as_str().unwrap().to_string();
    reader.next().await.unwrap();

    let answer = cancel(&second, &token, &conversation, &reply).await;
    let (events, _) = reader.all().await;

    assert!(answer.status() == 200 || answer.status() == 202, "{}", answer.status());
    assert_eq!(events.last().unwrap().data["code"], "cancelled", "the generating replica stopped it");
    let stored = first.wait_until_final(&token, &conversation, &reply).await;
    assert_eq!(stored["error"]["code"], "cancelled");
}

#[tokio::test]
async fn a_reply_left_by_a_dead_replica_is_settled_by_the_sweep_without_any_request() {
    let app = spawn_app_with(|s| s.generation_lease_secs = 8).await;
    let (token, conversation) = app.user_with_conversation("swept").await;
    let conversation_id = ConversationId::parse(&conversation).unwrap();
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = UserId::parse(user["id"].as_str().unwrap()).unwrap();
    // What a SIGKILLed replica leaves: a streaming reply and its lease, both dead.
    let at = now() - chrono::Duration::seconds(30);
    let orphan = stored_message(conversation_id, user_id, Role::Assistant, "说到一半", MessageStatus::Streaming, at);
    app.store.insert_message(&orphan).await.unwrap();
    app.store
        .claim_generation(user_id, conversation_id, orphan.id, at, at + chrono::Duration::seconds(8))
        .await
        .unwrap();

    let mut settled = None;
    for _ in 0..100 {
        let stored = app.store.get_message(conversation_id, orphan.id).await.unwrap().unwrap();
        if stored.status != MessageStatus::Streaming {
            settled = Some(stored);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let settled = settled.expect("settled within 10 s by the sweep");
    assert_eq!(settled.status, MessageStatus::Incomplete);
    assert_eq!(settled.content, "说到一半");
    assert_eq!(settled.error.unwrap().code, "generation_interrupted");
    app.deepseek.enqueue(text_reply(&["回来了"]));
    let next = app.send_message(&token, &conversation, &json!({"content": "在吗", "stream": false})).await;
    assert_eq!(next.status(), 200, "the lease was released too");
}

#[tokio::test]
async fn a_claim_whose_send_died_before_storing_its_reply_is_taken_over() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("died_in_start_up").await;
    let conversation_id = ConversationId::parse(&conversation).unwrap();
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = UserId::parse(user["id"].as_str().unwrap()).unwrap();
    // A send claimed the conversation 15 s ago, then MongoDB failed before its reply was
    // stored: the claim's lease (20 s) still runs, but no reply will ever renew it.
    let claimed = now() - chrono::Duration::seconds(15);
    let ghost = MessageId::new();
    app.store
        .claim_generation(user_id, conversation_id, ghost, claimed, claimed + chrono::Duration::seconds(20))
        .await
        .unwrap();
    app.deepseek.enqueue(text_reply(&["接上了"]));

    let retried = app.send_message(&token, &conversation, &json!({"content": "再发一次", "stream": false})).await;

    assert_eq!(retried.status(), 200, "no 409 for a claim nobody will ever finish");
    let body: Value = retried.json().await.unwrap();
    assert_eq!(body["assistant_message"]["content"], "接上了");
}

#[tokio::test]
async fn a_fresh_claim_still_in_its_start_up_steps_is_not_taken_over() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("starting_up").await;
    let conversation_id = ConversationId::parse(&conversation).unwrap();
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = UserId::parse(user["id"].as_str().unwrap()).unwrap();
    let claimed = now() - chrono::Duration::seconds(2);
    let starting = MessageId::new();
    app.store
        .claim_generation(user_id, conversation_id, starting, claimed, claimed + chrono::Duration::seconds(20))
        .await
        .unwrap();

    let second = app.send_message(&token, &conversation, &json!({"content": "抢", "stream": false})).await;

    assert_eq!(second.status(), 409);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["reply_id"], starting.to_string());
}

#[tokio::test]
async fn a_retried_send_with_the_same_client_id_returns_the_original_reply_and_stores_nothing_twice() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("retrier").await;
    app.deepseek.enqueue(text_reply(&["只回", "一次"]));
    let body = json!({"content": "你好", "stream": false, "client_message_id": "m-20261123-1"});

    let first: Value = app.send_message(&token, &conversation, &body).await.json().await.unwrap();
    let again = app.send_message(&token, &conversation, &body).await;
    let streamed =
        app.send_message(&token, &conversation, &json!({"content": "你好", "client_message_id": "m-20261123-1"})).await;

    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["assistant_message"]["id"], first["assistant_message"]["id"]);
    assert_eq!(again["user_message"]["id"], first["user_message"]["id"]);
    assert_eq!(again["assistant_message"]["content"], "只回一次");
    let (events, _) = crate::helpers::EventReader::new(streamed).all().await;
    assert_eq!(events[0].data["assistant_message_id"], first["assistant_message"]["id"], "start names the original");
    assert_eq!(text_of(&events), "只回一次");
    assert_eq!(events.last().unwrap().name, "done");
    let asked: Vec<Value> =
        app.messages(&token, &conversation).await.into_iter().filter(|m| m["role"] == "user").collect();
    assert_eq!(asked.len(), 1, "the message is stored once");
    assert_eq!(app.deepseek.requests().len(), 1, "DeepSeek was asked once");
}

#[tokio::test]
async fn a_retry_of_the_send_that_used_up_the_quota_still_gets_its_reply() {
    let app = spawn_app_with(|s| s.daily_message_quota = 1).await;
    let (token, conversation) = app.user_with_conversation("last_of_the_day").await;
    app.deepseek.enqueue(text_reply(&["今天", "最后一条"]));
    let body = json!({"content": "晚安", "stream": false, "client_message_id": "m-last-1"});
    let first: Value = app.send_message(&token, &conversation, &body).await.json().await.unwrap();

    let again = app.send_message(&token, &conversation, &body).await;
    let another = app.send_message(&token, &conversation, &json!({"content": "再说一句", "stream": false})).await;

    assert_eq!(again.status(), 200, "the retry is answered, not refused by the quota");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["assistant_message"]["id"], first["assistant_message"]["id"]);
    assert_eq!(another.status(), 429, "a new message is over the quota");
    assert_eq!(app.deepseek.requests().len(), 1);
}

#[tokio::test]
async fn a_send_that_died_before_its_reply_was_stored_is_finished_by_its_retry() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("resumer").await;
    let conversation_id = ConversationId::parse(&conversation).unwrap();
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = UserId::parse(user["id"].as_str().unwrap()).unwrap();
    // The first attempt recorded the send, stored the user's message and claimed the
    // conversation 15 s ago, then MongoDB failed before the reply was stored.
    let at = now() - chrono::Duration::seconds(15);
    let record = companion_backend::domain::SendRecord {
        user_id,
        client_id: companion_backend::domain::ClientMessageId::parse("m-lost-1").unwrap(),
        conversation_id,
        user_message_id: MessageId::new(),
        reply_id: MessageId::new(),
    };
    app.store.insert_send(&record).await.unwrap();
    let mut asked = stored_message(conversation_id, user_id, Role::User, "还在吗", MessageStatus::Complete, at);
    asked.id = record.user_message_id;
    app.store.insert_message(&asked).await.unwrap();
    app.store
        .claim_generation(user_id, conversation_id, record.reply_id, at, at + chrono::Duration::seconds(20))
        .await
        .unwrap();
    app.deepseek.enqueue(text_reply(&["在的"]));

    let body = json!({"content": "还在吗", "stream": false, "client_message_id": "m-lost-1"});
    let retried = app.send_message(&token, &conversation, &body).await;

    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["assistant_message"]["id"], record.reply_id.to_string(), "the original reply id, finished");
    assert_eq!(retried["assistant_message"]["content"], "在的");
    let users: Vec<Value> =
        app.messages(&token, &conversation).await.into_iter().filter(|m| m["role"] == "user").collect();
    assert_eq!(users.len(), 1, "the user's message is not stored twice");
    assert_eq!(users[0]["id"], record.user_message_id.to_string());
}

#[tokio::test]
async fn a_client_id_belongs_to_one_conversation() {
    let app = spawn_app_with(|_| {}).await;
    let (token, conversation) = app.user_with_conversation("one_place").await;
    let other: Value = app.create_conversation(&token, &json!({})).await.json().await.unwrap();
    app.deepseek.enqueue(text_reply(&["好"]));
    let body = json!({"content": "hi", "stream": false, "client_message_id": "m-1"});
    app.send_message(&token, &conversation, &body).await;

    let elsewhere = app.send_message(&token, other["id"].as_str().unwrap(), &body).await;
    let malformed =
        app.send_message(&token, &conversation, &json!({"content": "hi", "client_message_id": "有空格 的"})).await;

    assert_eq!(elsewhere.status(), 400);
    assert_eq!(malformed.status(), 400);
    assert_eq!(crate::helpers::error_code(malformed).await, "invalid_body");
}
