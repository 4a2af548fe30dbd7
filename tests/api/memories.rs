//! Long-term memory (first part): what a persona remembers reaches its prompts in every
//! conversation of that user, in a stable block after the persona's prompt; the user can
//! see, correct and delete it.
use serde_json::{json, Value};

use companion_backend::domain::{MemoryFact, MemoryText, UserId};

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{spawn_app, TestApp};

pub(crate) async fn user_id(app: &TestApp, token: &str) -> UserId {
    let me: Value = app.get_me(token).await.json().await.unwrap();
    UserId::parse(me["id"].as_str().unwrap()).unwrap()
}

async fn remember(app: &TestApp, user: UserId, persona: &str, text: &str) -> MemoryFact {
    let fact = MemoryFact::new(user, persona, MemoryText::parse(text).unwrap(), None);
    app.store.insert_memory(&fact).await.unwrap();
    fact
}

async fn new_conversation(app: &TestApp, token: &str, persona: &str) -> String {
    let created: Value = app.create_conversation(token, &json!({"persona_id": persona})).await.json().await.unwrap();
    created["id"].as_str().unwrap().to_string()
}

/// The messages of the last request DeepSeek received.
pub(crate) fn last_prompt(app: &TestApp) -> Vec<Value> {
    app.deepseek.requests().last().expect("a request").body["messages"].as_array().unwrap().clone()
}

fn memories_url(app: &TestApp, persona: &str) -> String {
    app.url(&format!("/api/personas/{persona}/memories"))
}

#[tokio::test]
async fn a_remembered_fact_reaches_a_new_conversation_with_the_same_companion_only() {
    let app = spawn_app().await;
    let (token, first) = app.user_with_persona("rememberer", Some("xiaoxi")).await;
    let (stranger, _) = app.user_with_persona("stranger", Some("xiaoxi")).await;
    let me = user_id(&app, &token).await;
    remember(&app, me, "xiaoxi", "养了一只叫咪咪的猫").await;

    app.deepseek.enqueue(text_reply(&["好"]));
    app.stream_message(&token, &first, "周一好").await.all().await;
    let friday = new_conversation(&app, &token, "xiaoxi").await;
    app.deepseek.enqueue(text_reply(&["记得"]));
    app.stream_message(&token, &friday, "周五了").await.all().await;
    let in_new_conversation = last_prompt(&app);
    let other_companion = new_conversation(&app, &token, "ahang").await;
    app.deepseek.enqueue(text_reply(&["你好"]));
    app.stream_message(&token, &other_companion, "你好").await.all().await;
    let with_other_companion = last_prompt(&app);
    let strangers_conversation = new_conversation(&app, &stranger, "xiaoxi").await;
    app.deepseek.enqueue(text_reply(&["你好"]));
    app.stream_message(&stranger, &strangers_conversation, "你好").await.all().await;
    let for_stranger = last_prompt(&app);

    assert_eq!(in_new_conversation[0]["role"], "system");
    assert!(in_new_conversation[0]["content"].as_str().unwrap().contains("养了一只叫咪咪的猫"));
    assert_eq!(in_new_conversation[1]["role"], "user", "one system message: the memory follows the persona prompt");
    let mentions_cat = |prompt: &[Value]| prompt.iter().any(|m| m["content"].as_str().unwrap().contains("咪咪"));
    assert!(!mentions_cat(&with_other_companion), "another companion does not know");
    assert!(!mentions_cat(&for_stranger), "another user's companion does not know");
}

#[tokio::test]
async fn consecutive_turns_with_unchanged_memory_send_byte_identical_prefixes() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_persona("prefix", Some("xiaoxi")).await;
    let me = user_id(&app, &token).await;
    let exam = remember(&app, me, "xiaoxi", "在准备考研").await;
    remember(&app, me, "xiaoxi", "不喜欢被叫全名").await;

    let mut prefixes = Vec::new();
    for turn in ["第一句", "第二句"] {
        app.deepseek.enqueue(text_reply(&["嗯"]));
        app.stream_message(&token, &conversation, turn).await.all().await;
        prefixes.push(serde_json::to_string(&last_prompt(&app)[..1]).unwrap());
    }
    app.client
        .patch(format!("{}/{}", memories_url(&app, "xiaoxi"), exam.id))
        .bearer_auth(&token)
        .json(&json!({"text": "考研上岸了"}))
        .send()
        .await
        .unwrap();
    app.deepseek.enqueue(text_reply(&["恭喜"]));
    app.stream_message(&token, &conversation, "第三句").await.all().await;
    let after_a_change = serde_json::to_string(&last_prompt(&app)[..1]).unwrap();

    assert_eq!(prefixes[0], prefixes[1], "an unchanged memory keeps the prefix byte for byte");
    assert_ne!(after_a_change, prefixes[1]);
    assert!(after_a_change.contains("考研上岸了"));
}

#[tokio::test]
async fn the_user_sees_corrects_and_deletes_what_a_companion_remembers() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_persona("in_control", Some("xiaoxi")).await;
    let (intruder, _) = app.user_with_conversation("intruder").await;
    let me = user_id(&app, &token).await;
    let cat = remember(&app, me, "xiaoxi", "养了一只猫").await;
    let hiking = remember(&app, me, "xiaoxi", "喜欢爬山").await;
    remember(&app, me, "ahang", "别的伙伴记得的事").await;
    let url = memories_url(&app, "xiaoxi");
    let one = |id: &str| format!("{url}/{id}");

    let listed: Value = app.client.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let corrected = app
        .client
        .patch(one(&cat.id.to_string()))
        .bearer_auth(&token)
        .json(&json!({"text": " 养了一只叫咪咪的猫 "}))
        .send()
        .await
        .unwrap();
    let bad = app
        .client
        .patch(one(&cat.id.to_string()))
        .bearer_auth(&token)
        .json(&json!({"text": "两行\n文字"}))
        .send()
        .await
        .unwrap();
    let theirs = app.client.delete(one(&cat.id.to_string())).bearer_auth(&intruder).send().await.unwrap();
    let unknown_persona = app.client.get(memories_url(&app, "nobody")).bearer_auth(&token).send().await.unwrap();
    let deleted = app.client.delete(one(&hiking.id.to_string())).bearer_auth(&token).send().await.unwrap();
    let deleted_again = app.client.delete(one(&hiking.id.to_string())).bearer_auth(&token).send().await.unwrap();
    let not_an_id = app.client.delete(one("zzz")).bearer_auth(&token).send().await.unwrap();
    app.client.delete(app.url(&format!("/api/conversations/{conversation}"))).bearer_auth(&token).send().await.unwrap();
    let after_deleting_the_conversation: Value =
        app.client.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let all: Value = app.client.delete(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let left: Value = app.client.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();

    let texts = |v: &Value| {
        v["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(texts(&listed), ["养了一只猫", "喜欢爬山"]);
    assert_eq!(listed["items"][0]["id"], cat.id.to_string());
    assert!(listed["items"][0]["learned_at"].is_string());
    assert_eq!(corrected.status(), 200);
    assert_eq!(corrected.json::<Value>().await.unwrap()["text"], "养了一只叫咪咪的猫");
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["code"], "invalid_memory");
    assert_eq!(theirs.status(), 404, "another user cannot touch my memories");
    assert_eq!(unknown_persona.status(), 200, "memories of any persona id can be listed");
    assert!(unknown_persona.json::<Value>().await.unwrap()["items"].as_array().unwrap().is_empty());
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted_again.status(), 404);
    assert_eq!(not_an_id.status(), 404);
    assert_eq!(
        texts(&after_deleting_the_conversation),
        ["养了一只叫咪咪的猫"],
        "a conversation's deletion keeps memories"
    );
    assert_eq!(all["deleted"], 1);
    assert!(texts(&left).is_empty());
    assert_eq!(app.store.list_memories(me, "ahang").await.unwrap().len(), 1, "another companion's memories stay");
}

async fn wait_for_json_requests(app: &TestApp, count: usize) {
    for _ in 0..150 {
        if app.deepseek.json_requests().len() >= count {
            // The answer is applied right after it is read.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the memory job never asked the model");
}

#[tokio::test]
async fn a_fact_told_on_monday_is_used_in_a_new_conversation_on_friday() {
    let app = crate::helpers::spawn_app_with(|s| s.memory_debounce_secs = 0).await;
    let (token, monday) = app.user_with_persona("monday", Some("xiaoxi")).await;
    let me = user_id(&app, &token).await;
    app.deepseek.enqueue(text_reply(&["咪咪真可爱"]));
    app.deepseek.enqueue_json(r#"{"operations": [{"op": "add", "text": "养了一只叫咪咪的猫"}]}"#);

    app.stream_message(&token, &monday, "我养了一只叫咪咪的猫").await.all().await;
    wait_for_json_requests(&app, 1).await;
    let friday = new_conversation(&app, &token, "xiaoxi").await;
    app.deepseek.enqueue(text_reply(&["咪咪还好吗"]));
    app.stream_message(&token, &friday, "周五啦").await.all().await;

    let extraction = &app.deepseek.json_requests()[0].body;
    assert_eq!(extraction["response_format"]["type"], "json_object");
    assert_eq!(extraction["thinking"]["type"], "disabled");
    assert!(extraction["messages"][1]["content"].as_str().unwrap().contains("我养了一只叫咪咪的猫"));
    let remembered = app.store.list_memories(me, "xiaoxi").await.unwrap();
    assert_eq!(remembered.len(), 1);
    assert_eq!(remembered[0].text.as_str(), "养了一只叫咪咪的猫");
    assert!(remembered[0].source_message_id.is_some(), "the message it came from is kept");
    assert!(last_prompt(&app)[0]["content"].as_str().unwrap().contains("养了一只叫咪咪的猫"));
}

#[tokio::test]
async fn a_learned_update_replaces_a_fact_and_a_malformed_answer_changes_nothing() {
    let app = crate::helpers::spawn_app_with(|s| s.memory_debounce_secs = 0).await;
    let (token, conversation) = app.user_with_persona("updates", Some("xiaoxi")).await;
    let me = user_id(&app, &token).await;
    remember(&app, me, "xiaoxi", "在准备考研").await;

    app.deepseek.enqueue(text_reply(&["恭喜"]));
    app.deepseek.enqueue_json(r#"{"operations": [{"op": "update", "id": "m1", "text": "考研上岸了"}]}"#);
    app.stream_message(&token, &conversation, "我考上研究生了").await.all().await;
    wait_for_json_requests(&app, 1).await;
    let after_update = app.store.list_memories(me, "xiaoxi").await.unwrap();
    app.deepseek.enqueue(text_reply(&["好"]));
    app.deepseek.enqueue_json("我记住了！");
    app.stream_message(&token, &conversation, "今天好累").await.all().await;
    wait_for_json_requests(&app, 2).await;
    let after_garbage = app.store.list_memories(me, "xiaoxi").await.unwrap();

    let texts = |facts: &[MemoryFact]| facts.iter().map(|f| f.text.as_str().to_string()).collect::<Vec<_>>();
    assert_eq!(texts(&after_update), ["考研上岸了"], "updated, not duplicated");
    assert_eq!(texts(&after_garbage), ["考研上岸了"], "a malformed answer changes nothing");
}
