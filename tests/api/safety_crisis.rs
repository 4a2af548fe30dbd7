//! An easy exit and the crisis response: exit phrases end the turn with a neutral closing;
//! a crisis phrase gets the preset reply with the hotline, the crisis queue, and a human
//! who takes over (the model is not called), answers on every transport, and hands back.
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::console::{console_app, Operator};
use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::spawn_app;
use crate::helpers::text_of;
use crate::websocket::{reply, send, signed_in_socket};

#[tokio::test]
async fn an_exit_phrase_stores_a_neutral_closing_without_calling_the_model() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("leaving").await;

    let (events, _) = app.stream_message(&token, &conversation, "我不聊了！").await.all().await;
    let text = text_of(&events);
    app.deepseek.enqueue(text_reply(&["好的，我来解释"]));
    let question = "退出群聊以后还能看到以前的消息吗？我想知道";
    let long = text_of(&app.stream_message(&token, &conversation, question).await.all().await.0);
    let stored = app.messages(&token, &conversation).await;

    assert_eq!(events.last().unwrap().name, "done", "a complete reply");
    assert_eq!(text, "好的，本次对话已结束。需要的时候随时回来。");
    assert_eq!(app.deepseek.requests().len(), 1, "only the long question reached the model");
    assert_eq!(long, "好的，我来解释", "a message that merely mentions an exit word is answered");
    let closing = stored.iter().find(|m| m["content"] == text.as_str()).expect("the closing is stored");
    assert_eq!(closing["role"], "assistant");
    assert_eq!(closing["status"], "complete");
}

async fn wait_for_queue(admin: &Operator<'_>, conversation: &str) -> Value {
    for _ in 0..100 {
        let queue = admin.get("/console/api/crisis").await;
        if let Some(item) = queue["items"].as_array().unwrap().iter().find(|i| i["conversation_id"] == conversation) {
            return item.clone();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("the conversation never reached the crisis queue");
}

#[tokio::test]
async fn a_crisis_gets_the_preset_reply_then_a_human_takes_over_answers_on_sse_and_websocket_and_hands_back() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("in_crisis").await;

    // 1. The preset reply, with the hotline; the conversation is flagged.
    let preset = text_of(&app.stream_message(&token, &conversation, "最近真的不想活了").await.all().await.0);
    let flagged = wait_for_queue(&admin, &conversation).await;
    let path = |what: &str| format!("/console/api/conversations/{conversation}/{what}");

    // 2. An operator reads it (audited) and takes over.
    let read = admin.get(&format!("/console/api/crisis/{conversation}")).await;
    let taken = admin.send(Method::POST, &path("takeover"), None).await;

    // 3. The user's next message waits for a human; the operator's reply arrives over SSE.
    let waiting = app.stream_message(&token, &conversation, "你还在吗").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered =
        admin.send(Method::POST, &path("operator-reply"), Some(json!({"text": "我在，我是值班的工作人员。"}))).await;
    let (sse_events, _) = waiting.all().await;
    let sse_text = text_of(&sse_events);

    // 4. …and over a WebSocket.
    let mut socket = signed_in_socket(&app, &token).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "谢谢你"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin.send(Method::POST, &path("operator-reply"), Some(json!({"text": "不客气，我们一直都在。"}))).await;
    let frames = reply(&mut socket).await;

    // 5. Handed back: the companion answers again.
    let released = admin.send(Method::POST, &path("release"), None).await;
    app.deepseek.enqueue(text_reply(&["我是小溪，我在呢"]));
    let companion = text_of(&app.stream_message(&token, &conversation, "你好").await.all().await.0);
    let history = app.messages(&token, &conversation).await;
    let queue_after = wait_for_queue(&admin, &conversation).await;
    let audit = admin.get("/console/api/audit").await;

    assert!(preset.contains("12356"), "professional help in the preset reply: {preset}");
    assert_eq!(flagged["detected_by"], "phrase:不想活");
    assert_eq!(flagged["handled_at"], Value::Null);
    assert_eq!(read["items"].as_array().unwrap().len(), 3, "the greeting, the message and the preset reply");
    assert_eq!(taken.status(), 204);
    assert_eq!(answered.status(), 201);
    assert_eq!(sse_text, "我在，我是值班的工作人员。");
    assert_eq!(sse_events.last().unwrap().name, "done");
    let ws_text: String =
        frames.iter().filter(|f| f["type"] == "delta").map(|f| f["content"].as_str().unwrap()).collect();
    assert_eq!(ws_text, "不客气，我们一直都在。");
    assert_eq!(frames.last().unwrap()["type"], "done");
    assert_eq!(released.status(), 204);
    assert_eq!(companion, "我是小溪，我在呢");
    assert_eq!(app.deepseek.requests().len(), 1, "no model call from the crisis until the hand-back");
    let roles: Vec<(&str, &str)> =
        history.iter().map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
    assert!(roles.contains(&("operator", "我在，我是值班的工作人员。")), "{roles:?}");
    assert!(roles.contains(&("operator", "不客气，我们一直都在。")), "{roles:?}");
    let human = history.iter().find(|m| m["role"] == "operator").unwrap();
    assert_eq!(human["label"], json!({"author": "human", "text": "人工回复"}), "never labelled as AI");
    assert!(human.get("content_mark").is_none(), "a human's words are not generated content");
    assert!(queue_after["handled_at"].is_string(), "released: handled");
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["conversation_viewed", "conversation_taken_over", "operator_replied", "conversation_released"] {
        assert!(actions.contains(&action), "{action} is audit-logged: {actions:?}");
    }
}

#[tokio::test]
async fn a_persona_with_the_classifier_recognises_a_crisis_the_phrase_list_misses() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let personas = admin.get("/console/api/personas").await;
    let mut xiaoxi = personas["items"].as_array().unwrap().iter().find(|p| p["id"] == "xiaoxi").unwrap().clone();
    xiaoxi["crisis_classifier"] = json!(true);
    assert_eq!(admin.send(Method::PUT, "/console/api/personas/xiaoxi", Some(xiaoxi)).await.status(), 200);
    let (token, conversation) = app.user_with_conversation("quietly_sad").await;
    app.deepseek.enqueue_json(r#"{"risk": "high"}"#);
    app.deepseek.enqueue_json(r#"{"risk": "none"}"#);
    app.deepseek.enqueue(text_reply(&["今天天气不错呀"]));

    let first =
        text_of(&app.stream_message(&token, &conversation, "感觉一切都没有意义了，想彻底消失").await.all().await.0);
    let flagged = wait_for_queue(&admin, &conversation).await;
    let second = text_of(&app.stream_message(&token, &conversation, "今天天气怎么样").await.all().await.0);
    let (classified, answered) = (app.deepseek.json_requests(), app.deepseek.requests());

    assert!(first.contains("12356"), "the preset reply: {first}");
    assert_eq!(flagged["detected_by"], "classifier");
    assert_eq!(second, "今天天气不错呀", "no crisis: the companion answers after the classifier");
    let asked: Vec<&Value> = classified.iter().map(|r| &r.body["messages"][1]["content"]).collect();
    assert_eq!(asked, ["感觉一切都没有意义了，想彻底消失", "今天天气怎么样"], "each message classified");
    assert_eq!(classified[0].body["response_format"]["type"], "json_object");
    assert_eq!(answered.len(), 1, "the companion answered only the message without a crisis");
}

#[tokio::test]
async fn a_crisis_gets_help_even_when_the_days_quota_is_used_up() {
    let app = crate::helpers::spawn_app_with(|s| s.daily_message_quota = 1).await;
    let (token, conversation) = app.user_with_conversation("out_of_quota").await;
    app.deepseek.enqueue(text_reply(&["好"]));
    app.stream_message(&token, &conversation, "你好").await.all().await;

    let refused = app.send_message(&token, &conversation, &json!({"content": "再聊聊"})).await;
    let help = text_of(&app.stream_message(&token, &conversation, "我想结束生命").await.all().await.0);

    assert_eq!(refused.status(), 429, "the quota holds for ordinary messages");
    assert!(help.contains("12356"), "{help}");
}

#[tokio::test]
async fn exit_and_crisis_answers_reach_the_websocket_and_the_polled_path_too() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("other_transports").await;

    let mut socket = signed_in_socket(&app, &token).await;
    send(&mut socket, json!({"type": "send", "conversation_id": conversation, "content": "拜拜"})).await;
    let frames = reply(&mut socket).await;
    let polled: Value = app
        .send_message(&token, &conversation, &json!({"content": "我不想活了", "stream": false}))
        .await
        .json()
        .await
        .unwrap();

    let closing: String =
        frames.iter().filter(|f| f["type"] == "delta").map(|f| f["content"].as_str().unwrap()).collect();
    assert_eq!(closing, "好的，本次对话已结束。需要的时候随时回来。");
    assert_eq!(frames.last().unwrap()["type"], "done");
    assert!(polled["assistant_message"]["content"].as_str().unwrap().contains("12356"), "{polled}");
    assert_eq!(polled["assistant_message"]["status"], "complete");
    assert!(app.deepseek.requests().is_empty(), "neither reached the model");
}
