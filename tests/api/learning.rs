//! Long-term memory in the background: turns that leave the context reach the model through
//! the conversation's summary; a job a dead replica held is finished by another; what the
//! user made the companion forget is not learned again from what was already read.
use std::time::Duration;

use chrono::{DateTime, Utc};
use companion_backend::domain::{now, Conversation, ConversationId, UserId};
use serde_json::Value;

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{spawn_app_with, unique_db_name, TestApp};
use crate::memories::{last_prompt, user_id};

const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// Polls `check` for up to 15 s (the learner looks for due jobs every 2 s).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    for _ in 0..150 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

async fn stored_conversation(app: &TestApp, user: UserId, id: &str) -> Conversation {
    let id = ConversationId::parse(id).unwrap();
    app.store.get_conversation(user, id).await.unwrap().expect("the conversation")
}

async fn chat(app: &TestApp, token: &str, conversation: &str, said: &str, answer: &str) {
    app.deepseek.enqueue(text_reply(&[answer]));
    app.stream_message(token, conversation, said).await.all().await;
}

fn contents(prompt: &[Value]) -> Vec<String> {
    prompt.iter().skip(1).map(|m| m["content"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn turns_beyond_the_context_reach_the_model_through_the_summary() {
    // Four messages of context: the greeting and two exchanges fill more than three
    // quarters of it, so the oldest are folded in one step, after both turns (debounced).
    let app = spawn_app_with(|s| {
        s.memory_debounce_secs = 1;
        s.context_max_messages = 4;
        s.metrics_token = Some(METRICS_TOKEN.to_string().into());
    })
    .await;
    let (token, conversation) = app.user_with_persona("summary", Some("xiaoxi")).await;
    let me = user_id(&app, &token).await;
    app.deepseek.enqueue_summary(r#"{"summary": "用户住在杭州，小溪夸杭州很美。"}"#);

    chat(&app, &token, &conversation, "我住在杭州", "杭州很美").await;
    chat(&app, &token, &conversation, "我喜欢西湖", "西湖好看").await;
    let summary =
        eventually("a summary", || async { stored_conversation(&app, me, &conversation).await.summary }).await;
    chat(&app, &token, &conversation, "周末去哪", "去西湖吧").await;

    let asked = &app.deepseek.summary_requests()[0].body;
    assert_eq!(asked["response_format"]["type"], "json_object");
    let folded = asked["messages"][1]["content"].as_str().unwrap();
    assert!(folded.contains("我住在杭州") && folded.contains("杭州很美"), "{folded}");
    assert!(!folded.contains("我喜欢西湖"), "the newest turns stay as they are: {folded}");
    let messages = app.messages(&token, &conversation).await;
    assert_eq!(summary.through.to_string(), messages[2]["id"], "folded through the first reply");
    let prompt = last_prompt(&app);
    let system = prompt[0]["content"].as_str().unwrap();
    assert!(system.contains("【之前的对话摘要】") && system.ends_with("用户住在杭州，小溪夸杭州很美。"), "{system}");
    assert_eq!(contents(&prompt), ["我喜欢西湖", "西湖好看", "周末去哪"], "the folded turns are not sent again");
    let metrics = app.client.get(app.url("/metrics")).bearer_auth(METRICS_TOKEN).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("\ncompanion_summaries_total 1\n"), "{metrics}");
    let calls = app.deepseek.json_requests().len();
    assert!(metrics.contains(&format!("\ncompanion_memory_model_calls_total {calls}\n")), "{metrics}");
    // The fake reports 20 prompt tokens per call.
    let prompt_tokens = format!("\ncompanion_memory_tokens_total{{kind=\"prompt\"}} {}\n", 20 * calls);
    assert!(metrics.contains(&prompt_tokens), "{metrics}");
}

#[tokio::test]
async fn a_job_held_by_a_replica_that_died_is_finished_by_another_after_its_lease() {
    let db = unique_db_name();
    let first = spawn_app_with(|s| {
        s.mongodb_db = db.clone();
        s.memory_extraction = false;
    })
    .await;
    let (token, conversation) = first.user_with_persona("takeover", Some("xiaoxi")).await;
    let me = user_id(&first, &token).await;
    chat(&first, &token, &conversation, "我养了一只叫咪咪的猫", "咪咪真可爱").await;
    // A replica claims the job and dies holding it.
    let id = ConversationId::parse(&conversation).unwrap();
    first.store.schedule_memory_job(id, me, "xiaoxi", now()).await.unwrap();
    let lease_ends: DateTime<Utc> = now() + chrono::Duration::seconds(3);
    first.store.claim_memory_job(now(), lease_ends).await.unwrap().expect("the dead replica's claim");

    let second = spawn_app_with(|s| s.mongodb_db = db.clone()).await;
    second.deepseek.enqueue_json(r#"{"operations": [{"op": "add", "text": "养了一只叫咪咪的猫"}]}"#);
    let learned = eventually("the fact learned by the second replica", || async {
        second.store.list_memories(me, "xiaoxi").await.unwrap().pop()
    })
    .await;

    // The run marks what it read, then settles the job: give it a moment past the mark.
    eventually("the turns marked as read", || async {
        stored_conversation(&second, me, &conversation).await.learned_through
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(learned.text.as_str(), "养了一只叫咪咪的猫");
    assert!(learned.learned_at >= lease_ends, "taken over only after the lease ran out");
    assert_eq!(second.deepseek.json_requests().len(), 1, "run once");
    let later = now() + chrono::Duration::hours(1);
    assert_eq!(second.store.claim_memory_job(later, later).await.unwrap(), None, "finished, not left behind");
}

#[tokio::test]
async fn what_was_said_before_forgetting_all_is_never_learned() {
    // The debounce holds the first run back until after the user's "forget all".
    let app = spawn_app_with(|s| s.memory_debounce_secs = 2).await;
    let (token, conversation) = app.user_with_persona("forget", Some("xiaoxi")).await;
    let me = user_id(&app, &token).await;
    chat(&app, &token, &conversation, "我养了一只猫", "真好").await;

    let url = app.url("/api/personas/xiaoxi/memories");
    let forgot = app.client.delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(forgot.status(), 200);
    app.deepseek.enqueue_json(r#"{"operations": [{"op": "add", "text": "今天下雨"}]}"#);
    chat(&app, &token, &conversation, "今天下雨了", "记得带伞").await;
    eventually("the fact learned", || async { app.store.list_memories(me, "xiaoxi").await.unwrap().pop() }).await;

    let asked = app.deepseek.json_requests();
    assert_eq!(asked.len(), 1, "one run, after both turns");
    let asked = asked[0].body["messages"][1]["content"].as_str().unwrap().to_string();
    assert!(asked.contains("今天下雨了") && asked.contains("记得带伞"), "{asked}");
    assert!(!asked.contains("我养了一只猫"), "a turn from before the forgetting is not read: {asked}");
}
