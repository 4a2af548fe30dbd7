use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::fake_deepseek::{
    content_chunk, data, finish_chunk, paced, refusal, reply_body, role_chunk, text_reply, usage_chunk, Reply, Step,
    DONE, KEEP_ALIVE,
};
use crate::helpers::{spawn_app, spawn_app_with, text_of, Event, TEST_DEEPSEEK_KEY};

fn last(events: &[Event]) -> &Event {
    events.last().expect("at least one event")
}

#[tokio::test]
async fn a_429_then_success_is_retried_before_the_first_token() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("retry429").await;
    app.deepseek.enqueue(Reply::Status { code: 429, body: "{}".into(), retry_after: Some(0) });
    app.deepseek.enqueue(text_reply(&["重试", "成功"]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "重试成功");
    assert_eq!(last(&events).name, "done");
    assert_eq!(app.deepseek.requests().len(), 2);
}

#[tokio::test]
async fn a_500_before_the_first_token_is_retried() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("retry500").await;
    app.deepseek.enqueue(refusal(500));
    app.deepseek.enqueue(refusal(503));
    app.deepseek.enqueue(text_reply(&["好了"]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "好了");
    assert_eq!(app.deepseek.requests().len(), 3);
}

#[tokio::test]
async fn persistent_server_errors_end_in_an_error_event_and_a_failed_message() {
    let app = spawn_app_with(|s| s.deepseek_max_retries = 2).await;
    let (token, conversation) = app.user_with_conversation("retry_exhausted").await;
    for _ in 0..3 {
        app.deepseek.enqueue(refusal(500));
    }

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last(&events).name, "error");
    assert_eq!(last(&events).data["code"], "upstream_server_error");
    assert_eq!(app.deepseek.requests().len(), 3, "one try and two retries");
    let messages = app.messages(&token, &conversation).await;
    assert_eq!(messages[1]["content"], "hi", "the user's message is kept");
    assert_eq!(messages[2]["status"], "failed");
    assert_eq!(messages[2]["error"]["code"], "upstream_server_error");
}

#[tokio::test]
async fn client_errors_from_deepseek_map_to_stable_codes_without_retry_or_leaks() {
    let app = spawn_app().await;
    let cases = [
        (400, "upstream_bad_request"),
        (401, "upstream_unauthorized"),
        (402, "insufficient_balance"),
        (422, "upstream_invalid_parameters"),
    ];
    for (i, (code, expected)) in cases.iter().enumerate() {
        let (token, conversation) = app.user_with_conversation(&format!("status_{code}")).await;
        app.deepseek.enqueue(refusal(*code));

        let (events, raw) = app.stream_message(&token, &conversation, "hi").await.all().await;

        assert_eq!(last(&events).name, "error", "{code}");
        assert_eq!(last(&events).data["code"], *expected, "{code}");
        assert!(!raw.contains("Authentication Fails") && !raw.contains(TEST_DEEPSEEK_KEY), "upstream detail leaked");
        assert_eq!(app.deepseek.requests().len(), i + 1, "{code} is not retried");
        let messages = app.messages(&token, &conversation).await;
        assert_eq!(messages[2]["status"], "failed");
        assert_eq!(messages[2]["error"]["code"], *expected);
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_keeps_the_partial_reply_as_incomplete() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("dropped").await;
    app.deepseek.enqueue(Reply::Stream(vec![
        Step::Bytes(role_chunk().into_bytes()),
        Step::Bytes(content_chunk("说到一半").into_bytes()),
        Step::Pause(Duration::from_millis(20)),
        // Half an event, cut inside a character, then the connection is gone.
        Step::Bytes(content_chunk("就断了").as_bytes()[..30].to_vec()),
        Step::Drop,
    ]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "说到一半");
    assert_eq!(last(&events).name, "error");
    assert_eq!(last(&events).data["code"], "upstream_disconnected");
    let reply = &app.messages(&token, &conversation).await[2];
    assert_eq!(reply["status"], "incomplete");
    assert_eq!(reply["content"], "说到一半");
    assert_eq!(reply["error"]["code"], "upstream_disconnected");
}

#[tokio::test]
async fn a_stall_of_only_keep_alives_hits_the_idle_timeout() {
    let app = spawn_app_with(|s| s.deepseek_idle_timeout_ms = 800).await;
    let (token, conversation) = app.user_with_conversation("stall").await;
    let mut steps = vec![Step::Bytes(role_chunk().into_bytes()), Step::Bytes(content_chunk("嗯……").into_bytes())];
    for _ in 0..30 {
        steps.push(Step::Pause(Duration::from_millis(100)));
        steps.push(Step::Bytes(KEEP_ALIVE.as_bytes().to_vec()));
    }
    app.deepseek.enqueue(Reply::Stream(steps));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last(&events).data["code"], "upstream_idle_timeout");
    let reply = &app.messages(&token, &conversation).await[2];
    assert_eq!(reply["status"], "incomplete");
    assert_eq!(reply["content"], "嗯……");
}

#[tokio::test]
async fn the_overall_deadline_ends_a_reply_that_trickles_forever() {
    let app = spawn_app_with(|s| {
        s.deepseek_idle_timeout_ms = 2000;
        s.deepseek_deadline_secs = 1;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("deadline").await;
    let mut steps = vec![Step::Bytes(role_chunk().into_bytes())];
    for _ in 0..40 {
        steps.push(Step::Bytes(content_chunk("滴").into_bytes()));
        steps.push(Step::Pause(Duration::from_millis(100)));
    }
    app.deepseek.enqueue(Reply::Stream(steps));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last(&events).data["code"], "upstream_deadline_exceeded");
    assert!(text_of(&events).starts_with("滴"));
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_still_gets_the_full_reply_stored() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("walked_away").await;
    let pieces = ["第一段，", "第二段，", "第三段，", "第四段。"];
    app.deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(150)));

    let mut reader = app.stream_message(&token, &conversation, "讲个故事").await;
    let start = reader.next().await.unwrap();
    let first_delta = reader.next().await.unwrap();
    drop(reader);

    assert_eq!(first_delta.name, "delta");
    let id = start.data["assistant_message_id"].as_str().unwrap();
    let stored = app.wait_until_final(&token, &conversation, id).await;
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["content"], pieces.concat());
}

#[tokio::test]
async fn finish_reasons_other_than_stop_end_clearly() {
    let app = spawn_app().await;
    let cases = [
        ("length", "done", "incomplete", None),
        ("content_filter", "error", "incomplete", Some("content_filtered")),
        ("insufficient_system_resource", "error", "incomplete", Some("upstream_insufficient_resource")),
    ];
    for (reason, event, status, code) in cases {
        let (token, conversation) = app.user_with_conversation(&format!("finish_{reason}")).await;
        app.deepseek.enqueue(paced(&reply_body(&["部分内容"], reason), Duration::from_millis(2)));

        let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

        assert_eq!(last(&events).name, event, "{reason}");
        let reply = &app.messages(&token, &conversation).await[2];
        assert_eq!(reply["status"], status, "{reason}");
        assert_eq!(reply["content"], "部分内容");
        assert_eq!(reply["finish_reason"], reason);
        match code {
            Some(code) => {
                assert_eq!(last(&events).data["code"], code);
                assert_eq!(reply["error"]["code"], code);
            }
            None => assert_eq!(last(&events).data["finish_reason"], "length"),
        }
    }
}

#[tokio::test]
async fn an_unreadable_chunk_ends_the_reply_with_a_protocol_error() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("garbage").await;
    let body = format!("{}{}data: {{not json\n\n{}", role_chunk(), content_chunk("前面正常"), DONE);
    app.deepseek.enqueue(paced(&body, Duration::from_millis(2)));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "前面正常");
    assert_eq!(last(&events).data["code"], "upstream_protocol_error");
}

#[tokio::test]
async fn a_reply_without_done_but_with_a_finish_reason_completes() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("no_done").await;
    let body = format!("{}{}{}{}", role_chunk(), content_chunk("完整"), finish_chunk("stop"), usage_chunk(5, 1));
    app.deepseek.enqueue(paced(&body, Duration::from_millis(2)));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last(&events).name, "done");
    assert_eq!(app.messages(&token, &conversation).await[2]["status"], "complete");
}

#[tokio::test]
async fn an_error_object_inside_the_stream_is_an_upstream_error() {
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("stream_error").await;
    let body = format!("{}{}", role_chunk(), data(&json!({"error": {"message": "overloaded", "code": "busy"}})));
    app.deepseek.enqueue(paced(&body, Duration::from_millis(2)));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last(&events).data["code"], "upstream_error");
    assert_eq!(app.messages(&token, &conversation).await[2]["status"], "failed");
}

#[tokio::test]
async fn a_reply_abandoned_by_a_dead_replica_is_marked_interrupted_on_the_next_send() {
    let app = spawn_app_with(|s| s.generation_lease_secs = 5).await;
    let (token, conversation) = app.user_with_conversation("abandoned").await;
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = companion_backend::domain::UserId::parse(user["id"].as_str().unwrap()).unwrap();
    let conversation_id = companion_backend::domain::ConversationId::parse(&conversation).unwrap();
    // What a replica that died mid-reply leaves behind: a streaming reply and an expired lease.
    let orphan = crate::helpers::stored_message(
        conversation_id,
        user_id,
        companion_backend::domain::Role::Assistant,
        "半句",
        companion_backend::domain::MessageStatus::Streaming,
        companion_backend::domain::now(),
    );
    app.store.insert_message(&orphan).await.unwrap();
    let past = companion_backend::domain::now() - chrono::Duration::seconds(60);
    app.store
        .claim_generation(user_id, conversation_id, orphan.id, past, past + chrono::Duration::seconds(5))
        .await
        .unwrap();
    app.deepseek.enqueue(text_reply(&["新的回复"]));

    let (events, _) = app.stream_message(&token, &conversation, "还在吗").await.all().await;

    assert_eq!(text_of(&events), "新的回复");
    let stored = app.store.get_message(conversation_id, orphan.id).await.unwrap().unwrap();
    assert_eq!(stored.status, companion_backend::domain::MessageStatus::Incomplete);
    assert_eq!(stored.content, "半句");
    assert_eq!(stored.error.unwrap().code, "generation_interrupted");
}

#[tokio::test]
async fn an_unreachable_deepseek_is_retried_then_reported_as_unreachable() {
    let port = crate::helpers::closed_port();
    let app = spawn_app_with(|s| {
        s.deepseek_api_url = format!("http://127.0.0.1:{port}");
        s.deepseek_max_retries = 1;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("unreachable").await;

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last(&events).name, "error");
    assert_eq!(last(&events).data["code"], "upstream_unreachable");
    let messages = app.messages(&token, &conversation).await;
    assert_eq!(messages[1]["content"], "hi", "the user's message was stored first");
    assert_eq!(messages[2]["status"], "failed");
}

#[tokio::test]
async fn polling_a_reply_whose_generation_died_settles_it_as_interrupted() {
    let app = spawn_app_with(|s| s.generation_lease_secs = 5).await;
    let (token, conversation) = app.user_with_conversation("dead_reply").await;
    let conversation_id = companion_backend::domain::ConversationId::parse(&conversation).unwrap();
    let user: Value = app.get_me(&token).await.json().await.unwrap();
    let long_ago = companion_backend::domain::now() - chrono::Duration::minutes(10);
    let orphan = crate::helpers::stored_message(
        conversation_id,
        companion_backend::domain::UserId::parse(user["id"].as_str().unwrap()).unwrap(),
        companion_backend::domain::Role::Assistant,
        "写到一半",
        companion_backend::domain::MessageStatus::Streaming,
        long_ago,
    );
    app.store.insert_message(&orphan).await.unwrap();

    let polled: Value = app.get_message(&token, &conversation, &orphan.id.to_string()).await.json().await.unwrap();

    assert_eq!(polled["status"], "incomplete");
    assert_eq!(polled["content"], "写到一半");
    assert_eq!(polled["error"]["code"], "generation_interrupted");
    let stored = app.store.get_message(conversation_id, orphan.id).await.unwrap().unwrap();
    assert_eq!(stored.status, companion_backend::domain::MessageStatus::Incomplete, "settled in MongoDB too");
}
