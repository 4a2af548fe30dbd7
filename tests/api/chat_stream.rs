use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::fake_deepseek::{
    content_chunk, cut_every, finish_chunk, paced, reasoning_chunk, reply_body, role_chunk, text_reply, usage_chunk,
    Reply, Step, DONE, KEEP_ALIVE,
};
use crate::helpers::{error_code, names_of, spawn_app, spawn_app_with, text_of, EventReader, TEST_DEEPSEEK_KEY};

#[tokio::test]
async fn a_streamed_reply_arrives_as_start_deltas_done_and_is_stored() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("stream_basic").await;
    app.deepseek.enqueue(text_reply(&["你好", "，我是", "小溪。"]));

    let response = app.send_message(&token, &conversation, &json!({"content": "  你好呀  "})).await;

    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache, no-store, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    let (events, _) = EventReader::new(response).all().await;
    assert_eq!(names_of(&events), ["start", "delta", "done"]);
    assert_eq!(text_of(&events), "你好，我是小溪。");
    let start = &events[0].data;
    let done = &events.last().unwrap().data;
    assert_eq!(done["assistant_message_id"], start["assistant_message_id"]);
    assert_eq!(done["finish_reason"], "stop");
    assert_eq!(done["usage"]["total_tokens"], 23);

    let messages = app.messages(&token, &conversation).await;
    assert_eq!(messages.len(), 3, "greeting, user, reply: {messages:?}");
    assert_eq!(messages[1]["id"], start["user_message_id"]);
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[1]["content"], "你好呀");
    assert_eq!(messages[2]["id"], start["assistant_message_id"]);
    assert_eq!(messages[2]["status"], "complete");
    assert_eq!(messages[2]["content"], "你好，我是小溪。");
    assert_eq!(messages[2]["usage"]["prompt_tokens"], 20);
}

#[tokio::test]
async fn the_upstream_request_is_a_correct_deepseek_streaming_request() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("request_shape").await;
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    app.deepseek.enqueue(text_reply(&["好的"]));

    EventReader::new(app.send_message(&token, &conversation, &json!({"content": "hi"})).await).all().await;

    let requests = app.deepseek.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/chat/completions");
    assert_eq!(request.authorization, format!("Bearer {TEST_DEEPSEEK_KEY}"));
    let body = &request.body;
    assert_eq!(body["model"], "deepseek-flash");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["thinking"]["type"], "disabled");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body["messages"][0]["content"].as_str().unwrap().contains("小溪"));
    // The greeting is not sent as if the model said it to an empty room; the user speaks first.
    assert_eq!(body["messages"][1], json!({"role": "user", "content": "hi"}));
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    let user_hash = body["user_id"].as_str().unwrap();
    assert!(user_hash.len() >= 16 && user_hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!user_hash.contains(user["id"].as_str().unwrap()));
    assert!(!body.to_string().contains("o_request_shape"), "the openid must never go upstream");
}

#[tokio::test]
async fn chunks_split_inside_multibyte_characters_reassemble_byte_for_byte() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("split_bytes").await;
    let pieces = ["今天的天气", "真不错🌤️，", "适合出去走走。", "Ça va? ", "한국어도 돼요"];
    let original: String = pieces.concat();
    let mut body = reply_body(&pieces, "stop");
    body.insert_str(role_chunk().len(), KEEP_ALIVE);
    // CRLF line endings on one event, keep-alives in the middle.
    let body = body.replacen(&content_chunk("真不错🌤️，"), &content_chunk("真不错🌤️，").replace('\n', "\r\n"), 1);
    for every in [1, 3, 7] {
        app.deepseek.enqueue(Reply::Stream(cut_every(body.as_bytes(), every, Duration::from_micros(200))));
    }

    for _ in 0..3 {
        let (events, _) = app.stream_message(&token, &conversation, "天气如何？").await.all().await;
        assert_eq!(text_of(&events), original);
        assert_eq!(events.last().unwrap().name, "done");
    }

    let messages = app.messages(&token, &conversation).await;
    let replies: Vec<&Value> = messages.iter().filter(|m| m["role"] == "assistant").skip(1).collect();
    assert_eq!(replies.len(), 3);
    for reply in replies {
        assert_eq!(reply["content"].as_str().unwrap().as_bytes(), original.as_bytes());
        assert_eq!(reply["status"], "complete");
    }
}

#[tokio::test]
async fn a_multi_turn_conversation_sends_the_history_in_order() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("multi_turn").await;
    app.deepseek.enqueue(text_reply(&["第一轮回复"]));
    app.deepseek.enqueue(text_reply(&["第二轮回复"]));

    app.stream_message(&token, &conversation, "第一句").await.all().await;
    app.stream_message(&token, &conversation, "第二句").await.all().await;

    let second = &app.deepseek.requests()[1].body["messages"];
    let turns: Vec<(String, String)> = second.as_array().unwrap()[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        turns,
        [("user", "第一句"), ("assistant", "第一轮回复"), ("user", "第二句")]
            .map(|(r, c)| (r.to_string(), c.to_string()))
    );
    assert_eq!(app.messages(&token, &conversation).await.len(), 5);
}

#[tokio::test]
async fn a_thinking_persona_streams_reasoning_separately_and_never_resends_it() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_persona("thinker", Some("sikao")).await;
    let mut body = role_chunk();
    body.push_str(&reasoning_chunk("先想一想："));
    body.push_str(&reasoning_chunk("一加一等于二。"));
    body.push_str(&content_chunk("答案是 2。"));
    body.push_str(&finish_chunk("stop"));
    body.push_str(&usage_chunk(10, 8));
    body.push_str(DONE);
    app.deepseek.enqueue(paced(&body, Duration::from_millis(5)));
    app.deepseek.enqueue(text_reply(&["好的"]));

    let (events, _) = app.stream_message(&token, &conversation, "1+1=?").await.all().await;
    app.stream_message(&token, &conversation, "谢谢").await.all().await;

    assert_eq!(names_of(&events), ["start", "reasoning", "delta", "done"]);
    let reasoning: String = events
        .iter()
        .filter(|e| e.name == "reasoning")
        .map(|e| e.data["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasoning, "先想一想：一加一等于二。");
    assert_eq!(text_of(&events), "答案是 2。");
    let messages = app.messages(&token, &conversation).await;
    assert_eq!(messages[2]["content"], "答案是 2。");
    assert_eq!(messages[2]["reasoning_content"], "先想一想：一加一等于二。");
    let requests = app.deepseek.requests();
    assert_eq!(requests[0].body["thinking"]["type"], "enabled");
    assert_eq!(requests[0].body["reasoning_effort"], "high");
    assert!(!requests[1].body.to_string().contains("先想一想"), "reasoning must not be resent");
    assert!(requests[1].body.to_string().contains("答案是 2。"));
}

#[tokio::test]
async fn the_context_keeps_the_newest_turns_that_fit_the_budget_and_skips_failed_ones() {
    let app = spawn_app_with(|s| s.context_token_budget = 250).await;
    let (token, conversation) = app.user_with_conversation("budget").await;
    // Each turn costs ~ 4 + 30 tokens (a 100-letter ASCII line at 0.3 token a letter).
    for i in 0..6 {
        app.deepseek.enqueue(text_reply(&[&format!("reply {i} {}", "b".repeat(90))]));
        app.stream_message(&token, &conversation, &format!("ask {i} {}", "a".repeat(94))).await.all().await;
    }
    // A failed turn: its partial content must not be sent.
    app.deepseek.enqueue(Reply::Status { code: 400, body: "{}".into(), retry_after: None });
    app.stream_message(&token, &conversation, "this one fails").await.all().await;
    app.deepseek.enqueue(text_reply(&["ok"]));

    app.stream_message(&token, &conversation, "latest question").await.all().await;

    let last = app.deepseek.requests().last().unwrap().body.clone();
    let messages = last["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().unwrap()["role"], "user");
    assert!(contents.last().unwrap().ends_with("latest question"), "{contents:?}");
    assert!(contents.iter().any(|c| c.starts_with("reply 5")), "the newest turn is kept: {contents:?}");
    assert!(!contents.iter().any(|c| c.starts_with("ask 0") || c.starts_with("reply 0")), "old turns are trimmed");
    assert!(messages.len() < 14, "history was trimmed: {}", messages.len());
    // The failed turn's user message merges into the next one (roles alternate).
    assert!(contents.last().unwrap().contains("this one fails"));
    assert_eq!(messages[1]["role"], "user", "the user speaks first after the system prompt");
}

#[tokio::test]
async fn keepalive_comments_flow_while_the_reply_is_idle() {
    let app = spawn_app_with(|s| s.sse_keepalive_secs = 1).await;
    let (token, conversation) = app.user_with_conversation("keepalive").await;
    let mut steps = vec![Step::Bytes(role_chunk().into_bytes()), Step::Pause(Duration::from_millis(2300))];
    steps.push(Step::Bytes(reply_body(&["终于"], "stop").into_bytes()));
    app.deepseek.enqueue(Reply::Stream(steps));

    let (events, raw) = app.stream_message(&token, &conversation, "在吗").await.all().await;

    assert!(raw.contains(": keepalive\n\n"), "{raw}");
    assert_eq!(text_of(&events), "终于");
}

#[tokio::test]
async fn non_streaming_send_waits_and_returns_both_messages() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("nostream").await;
    app.deepseek.enqueue(text_reply(&["这是", "完整回复"]));

    let response = app.send_message(&token, &conversation, &json!({"content": "hi", "stream": false})).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user_message"]["content"], "hi");
    assert_eq!(body["assistant_message"]["content"], "这是完整回复");
    assert_eq!(body["assistant_message"]["status"], "complete");
}

#[tokio::test]
async fn a_slow_non_streaming_send_answers_202_and_the_reply_completes_for_polling() {
    let app = spawn_app_with(|s| s.chat_wait_timeout_ms = 300).await;
    let (token, conversation) = app.user_with_conversation("poll").await;
    app.deepseek.enqueue(paced(&reply_body(&["慢", "慢", "来"], "stop"), Duration::from_millis(250)));

    let response = app.send_message(&token, &conversation, &json!({"content": "hi", "stream": false})).await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["assistant_message"]["status"], "streaming");
    let id = body["assistant_message"]["id"].as_str().unwrap();
    let done = app.wait_until_final(&token, &conversation, id).await;
    assert_eq!(done["status"], "complete");
    assert_eq!(done["content"], "慢慢来");
}

#[tokio::test]
async fn bad_content_is_refused_and_nothing_is_stored() {
    let app = spawn_app_with(|s| s.message_max_chars = 10).await;
    let (token, conversation) = app.user_with_conversation("bad_content").await;

    for body in [json!({"content": ""}), json!({"content": "   \n "}), json!({"content": "十一个字十一个字十一个"})]
    {
        let response = app.send_message(&token, &conversation, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(response).await, "invalid_content");
    }
    let missing = app.send_message(&token, &conversation, &json!({"text": "hi"})).await;
    assert_eq!(missing.status(), 400);
    assert_eq!(error_code(missing).await, "invalid_body");

    assert_eq!(app.messages(&token, &conversation).await.len(), 1, "only the greeting");
    assert!(app.deepseek.requests().is_empty());
}

#[tokio::test]
async fn a_second_send_while_a_reply_is_generating_is_409() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("busy").await;
    app.deepseek.enqueue(paced(&reply_body(&["一", "二", "三"], "stop"), Duration::from_millis(300)));
    app.deepseek.enqueue(text_reply(&["之后"]));

    let mut first = app.stream_message(&token, &conversation, "first").await;
    let start = first.next().await.unwrap();
    assert_eq!(start.name, "start");
    let second = app.send_message(&token, &conversation, &json!({"content": "second"})).await;
    assert_eq!(second.status(), 409);
    let retry_after: u64 = second.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reply_in_progress");
    assert_eq!(body["error"]["reply_id"], start.data["assistant_message_id"], "names the reply to reattach to");
    while first.next().await.is_some() {}
    let third = app.stream_message(&token, &conversation, "third").await.all().await.0;

    assert_eq!(text_of(&third), "之后");
    let contents: Vec<Value> = app.messages(&token, &conversation).await.iter().map(|m| m["content"].clone()).collect();
    assert!(!contents.contains(&json!("second")), "a refused message is not stored");
}

#[tokio::test]
async fn the_busy_guard_holds_across_replicas() {
    let first = spawn_app().await;
    let second = spawn_app_with(|s| s.mongodb_db = first.db_name.clone()).await;
    let (token, conversation) = first.user_with_conversation("replicas").await;
    first.deepseek.enqueue(paced(&reply_body(&["慢", "慢"], "stop"), Duration::from_millis(400)));

    let mut streaming = first.stream_message(&token, &conversation, "on replica one").await;
    assert_eq!(streaming.next().await.unwrap().name, "start");
    let refused = second.send_message(&token, &conversation, &json!({"content": "on replica two"})).await;

    assert_eq!(refused.status(), 409);
    while streaming.next().await.is_some() {}
}
