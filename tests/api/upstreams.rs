//! Upstreams against two fake providers: the base URL as configured, failover before the
//! first token only, a circuit breaker per upstream, the served model stored, the cap on
//! running generations.
use std::time::Duration;

use serde_json::{json, Value};

use companion_backend::domain::{ConversationId, Message, MessageId, MessageStatus};
use companion_backend::llm::{
    check_models, Breaker, BreakerPolicy, CompatibleClient, CompatibleOptions, Dialect, ModelCheck, Upstream,
    UpstreamPool,
};

use crate::helpers::fake_deepseek::{
    content_chunk, finish_chunk, paced, refusal, reply_body, role_chunk, text_reply, usage_chunk, FakeDeepSeek, Reply,
    Step, DONE,
};
use crate::helpers::{spawn_app_with, text_of, Event, TestApp, TEST_DEEPSEEK_KEY};

const FALLBACK_KEY: &str = "sk-fallback-key-that-must-never-leak";
const FALLBACK_MODEL: &str = "qwen-plus";

/// An app whose DeepSeek is `primary` (a fake, or nothing listening) and whose first
/// fallback is a second fake; one round of attempts, so each send tries each upstream once.
async fn app_with_fallback(
    primary: Option<&FakeDeepSeek>,
    configure: impl FnOnce(&mut companion_backend::configuration::Settings),
) -> (TestApp, FakeDeepSeek) {
    let fallback = FakeDeepSeek::start().await;
    let fallback_url = format!("{}/compatible-mode/v1", fallback.url);
    let primary_url = primary.map(|p| p.url.clone());
    let app = spawn_app_with(|s| {
        // Port 9 on loopback: nothing listens, the connection is refused.
        s.deepseek_api_url = primary_url.unwrap_or_else(|| "http://127.0.0.1:9".into());
        s.fallback1_api_url = Some(fallback_url);
        s.fallback1_api_key = Some(FALLBACK_KEY.to_string().into());
        s.fallback1_model = Some(FALLBACK_MODEL.into());
        s.deepseek_max_retries = 0;
        configure(s);
    })
    .await;
    (app, fallback)
}

async fn last_reply(app: &TestApp, token: &str, conversation: &str) -> Message {
    let messages = app.messages(token, conversation).await;
    let reply = messages.iter().rev().find(|m| m["role"] == "assistant").expect("a reply");
    let conversation = ConversationId::parse(conversation).unwrap();
    let id = MessageId::parse(reply["id"].as_str().unwrap()).unwrap();
    app.store.get_message(conversation, id).await.unwrap().expect("the reply is stored")
}

fn last_event(events: &[Event]) -> &Event {
    events.last().expect("an event")
}

#[tokio::test]
async fn an_upstream_base_url_with_a_path_is_used_as_given() {
    let primary = FakeDeepSeek::start().await;
    let base = format!("{}/compatible-mode/v1", primary.url);
    let app = spawn_app_with(|s| s.deepseek_api_url = format!("{base}/")).await;
    primary.enqueue(text_reply(&["路径", "保留"]));
    let (token, conversation) = app.user_with_conversation("base_path").await;

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "路径保留");
    let requests = primary.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/compatible-mode/v1/chat/completions");
    // The start-up model check asks the same base.
    for _ in 0..50 {
        if !primary.model_lookups().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lookups = primary.model_lookups();
    assert_eq!(lookups.len(), 1, "one model lookup at start-up");
    assert_eq!(lookups[0].path, "/compatible-mode/v1/models");
    assert_eq!(lookups[0].authorization, format!("Bearer {TEST_DEEPSEEK_KEY}"));
}

#[tokio::test]
async fn a_send_fails_over_to_the_next_upstream_on_each_listed_status_before_the_first_token() {
    let primary = FakeDeepSeek::start().await;
    let (app, fallback) = app_with_fallback(Some(&primary), |s| s.upstream_breaker_failures = 0).await;
    let (token, conversation) = app.user_with_conversation("failover").await;
    for code in [408, 429, 500, 502, 503, 504] {
        primary.enqueue(refusal(code));
        fallback.enqueue(text_reply(&["备用", &code.to_string()]));

        let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

        assert_eq!(last_event(&events).name, "done", "after {code}");
        assert_eq!(text_of(&events), format!("备用{code}"), "after {code}");
        let reply = last_reply(&app, &token, &conversation).await;
        assert_eq!(reply.status, MessageStatus::Complete, "after {code}");
        assert_eq!(reply.served.as_ref().map(|s| s.upstream.as_str()), Some("fallback1"), "after {code}");
    }
    assert_eq!(primary.requests().len(), 6);
    let requests = fallback.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(requests[0].path, "/compatible-mode/v1/chat/completions");
    assert_eq!(requests[0].authorization, format!("Bearer {FALLBACK_KEY}"));
    assert_eq!(requests[0].body["model"], FALLBACK_MODEL);
    // Plain OpenAI dialect: no DeepSeek-only fields, the user hash as `user`.
    assert!(requests[0].body.get("thinking").is_none());
    assert!(requests[0].body["user"].as_str().is_some_and(|u| !u.is_empty()));
}

#[tokio::test]
async fn a_refused_connection_fails_over_and_the_reply_says_who_served_it() {
    let (app, fallback) = app_with_fallback(None, |_| {}).await;
    let (token, conversation) = app.user_with_conversation("refused").await;
    fallback.enqueue(text_reply(&["我在"]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "我在");
    assert_eq!(last_event(&events).name, "done");
    let served = last_reply(&app, &token, &conversation).await.served.expect("served is stored");
    assert_eq!(served.upstream, "fallback1");
}

#[tokio::test]
async fn a_request_error_that_would_fail_anywhere_does_not_fail_over() {
    let primary = FakeDeepSeek::start().await;
    let (app, fallback) = app_with_fallback(Some(&primary), |_| {}).await;
    let (token, conversation) = app.user_with_conversation("no_failover_4xx").await;
    for (code, expected) in
        [(400, "upstream_bad_request"), (401, "upstream_unauthorized"), (402, "insufficient_balance")]
    {
        primary.enqueue(refusal(code));

        let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

        assert_eq!(last_event(&events).name, "error", "after {code}");
        assert_eq!(last_event(&events).data["code"], expected, "after {code}");
    }
    assert!(fallback.requests().is_empty(), "the fallback was never asked");
}

#[tokio::test]
async fn once_text_has_streamed_a_broken_upstream_is_not_replaced() {
    let primary = FakeDeepSeek::start().await;
    let (app, fallback) = app_with_fallback(Some(&primary), |_| {}).await;
    let (token, conversation) = app.user_with_conversation("no_failover_after_text").await;
    primary.enqueue(Reply::Stream(vec![
        Step::Bytes(role_chunk().into_bytes()),
        Step::Bytes(content_chunk("说到一半").into_bytes()),
        Step::Pause(Duration::from_millis(50)),
        Step::Drop,
    ]));
    fallback.enqueue(text_reply(&["不该出现"]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "说到一半");
    assert_eq!(last_event(&events).name, "error");
    assert_eq!(last_event(&events).data["code"], "upstream_disconnected");
    assert!(fallback.requests().is_empty(), "no failover after the first token");
    let reply = last_reply(&app, &token, &conversation).await;
    assert_eq!(reply.status, MessageStatus::Incomplete);
    assert_eq!(reply.content, "说到一半");
    assert_eq!(reply.served.map(|s| s.upstream), Some("deepseek".into()));
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_token_fails_over() {
    let primary = FakeDeepSeek::start().await;
    let (app, fallback) = app_with_fallback(Some(&primary), |_| {}).await;
    let (token, conversation) = app.user_with_conversation("drop_before_text").await;
    // Answered 200, then gone before any text: nothing reached the user yet.
    primary.enqueue(Reply::Stream(vec![Step::Bytes(role_chunk().into_bytes()), Step::Drop]));
    fallback.enqueue(text_reply(&["接上了"]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "接上了");
    assert_eq!(last_event(&events).name, "done");
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_and_a_probe_closes_it() {
    let primary = FakeDeepSeek::start().await;
    let (app, fallback) = app_with_fallback(Some(&primary), |s| {
        s.upstream_breaker_failures = 2;
        s.upstream_breaker_cooldown_ms = 400;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("breaker").await;
    let send = |label: &'static str| {
        let (app, token, conversation) = (&app, &token, &conversation);
        async move {
            let (events, _) = app.stream_message(token, conversation, "hi").await.all().await;
            assert_eq!(last_event(&events).name, "done", "{label}");
            last_reply(app, token, conversation).await.served.expect("served").upstream
        }
    };

    // Two failures open DeepSeek's circuit; the fallback serves both sends.
    for _ in 0..2 {
        primary.enqueue(refusal(503));
        fallback.enqueue(text_reply(&["备用"]));
        assert_eq!(send("while failing").await, "fallback1");
    }
    assert_eq!(primary.requests().len(), 2);

    // Open: DeepSeek is not even asked.
    fallback.enqueue(text_reply(&["备用"]));
    assert_eq!(send("while open").await, "fallback1");
    assert_eq!(primary.requests().len(), 2, "an open circuit costs no request");

    // After the cool-down one probe goes to DeepSeek; it succeeds and closes the circuit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.enqueue(text_reply(&["回来了"]));
    assert_eq!(send("the probe").await, "deepseek");
    primary.enqueue(text_reply(&["一直在"]));
    assert_eq!(send("closed again").await, "deepseek");
    assert_eq!(primary.requests().len(), 4);
    assert_eq!(fallback.requests().len(), 3);
}

#[tokio::test]
async fn when_every_circuit_is_open_a_send_fails_fast_with_upstream_unavailable() {
    let app = spawn_app_with(|s| {
        s.deepseek_api_url = "http://127.0.0.1:9".into();
        s.deepseek_max_retries = 0;
        s.upstream_breaker_failures = 1;
        s.upstream_breaker_cooldown_ms = 60_000;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("all_open").await;
    let (first, _) = app.stream_message(&token, &conversation, "hi").await.all().await;
    assert_eq!(last_event(&first).data["code"], "upstream_unreachable");

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(last_event(&events).name, "error");
    assert_eq!(last_event(&events).data["code"], "upstream_unavailable");
    let reply = last_reply(&app, &token, &conversation).await;
    assert_eq!(reply.status, MessageStatus::Failed);
    // Nothing internal reaches the client.
    assert!(!last_event(&events).data.to_string().contains("127.0.0.1"));
}

#[tokio::test]
async fn the_model_the_upstream_reports_is_stored_on_the_reply() {
    let primary = FakeDeepSeek::start().await;
    let app = spawn_app_with(|s| {
        s.deepseek_api_url = primary.url.clone();
        s.deepseek_model = "deepseek-v4-pro".into();
    })
    .await;
    let (token, conversation) = app.user_with_conversation("served_model").await;
    // Asked for v4-pro, served by V4.1 Flash: the reply keeps what really answered.
    let body = reply_body(&["换了模型"], "stop").replace("\"deepseek-v4-flash\"", "\"deepseek-v4.1-flash-1017\"");
    primary.enqueue(paced(&body, Duration::from_millis(5)));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "换了模型");
    assert_eq!(primary.requests()[0].body["model"], "deepseek-v4-pro");
    let served = last_reply(&app, &token, &conversation).await.served.expect("served is stored");
    assert_eq!(served.upstream, "deepseek");
    assert_eq!(served.model.as_deref(), Some("deepseek-v4.1-flash-1017"));
}

#[tokio::test]
async fn a_send_over_the_cap_on_running_generations_is_refused_before_anything_is_stored() {
    let primary = FakeDeepSeek::start().await;
    let app = spawn_app_with(|s| {
        s.deepseek_api_url = primary.url.clone();
        s.max_concurrent_generations = 1;
    })
    .await;
    let (token, busy) = app.user_with_conversation("cap_first").await;
    let (other_token, waiting) = app.user_with_conversation("cap_second").await;
    primary.enqueue(paced(&reply_body(&["慢", "慢", "说"], "stop"), Duration::from_millis(150)));
    let running = app.stream_message(&token, &busy, "hi").await;

    let refused = app.send_message(&other_token, &waiting, &json!({"content": "我也要"})).await;

    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "companion_busy");
    assert!(app.messages(&other_token, &waiting).await.iter().all(|m| m["role"] != "user"), "nothing stored");
    // The slot comes back when the running reply ends.
    let (events, _) = running.all().await;
    assert_eq!(last_event(&events).name, "done");
    primary.enqueue(text_reply(&["轮到你"]));
    let mut sent = None;
    for _ in 0..50 {
        let response = app.send_message(&other_token, &waiting, &json!({"content": "我也要"})).await;
        if response.status() != 503 {
            sent = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sent.expect("a slot came back").status(), 200);
}

fn pool_of(fakes: &[(&str, &str, Option<&str>)]) -> UpstreamPool {
    let upstreams = fakes
        .iter()
        .map(|(name, url, model)| Upstream {
            name: name.to_string(),
            client: CompatibleClient::new(CompatibleOptions {
                base_url: url.to_string(),
                api_key: "sk-test".to_string().into(),
                dialect: Dialect::DeepSeek,
                connect_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(2),
                deadline: Duration::from_secs(10),
                h2c: false,
                connections: 1,
            })
            .unwrap(),
            model: model.map(str::to_owned),
            breaker: Breaker::new(BreakerPolicy { failures: 3, cooldown: Duration::from_secs(10) }),
        })
        .collect();
    UpstreamPool::new(upstreams, 0, Duration::from_millis(10))
}

#[tokio::test]
async fn the_start_up_model_check_tells_listed_missing_and_unknown_models_apart() {
    let deepseek = FakeDeepSeek::start().await;
    let renamed = FakeDeepSeek::start().await;
    renamed.set_models(&["qwen-max", "qwen-plus"]);
    let pool = pool_of(&[
        ("deepseek", &deepseek.url, None),
        ("renamed", &renamed.url, Some("qwen-turbo")),
        ("down", "http://127.0.0.1:9", Some("m")),
    ]);

    let checks = check_models(&pool, "deepseek-flash", Duration::from_secs(2)).await;

    assert_eq!(
        checks,
        vec![
            ("deepseek".to_string(), ModelCheck::Listed),
            (
                "renamed".to_string(),
                ModelCheck::NotListed { available: vec!["qwen-max".to_string(), "qwen-plus".to_string()] }
            ),
            ("down".to_string(), ModelCheck::Unknown { error: "upstream_unreachable" }),
        ]
    );
}

#[tokio::test]
async fn a_server_whose_model_is_not_listed_still_starts_and_answers() {
    let primary = FakeDeepSeek::start().await;
    primary.set_models(&["deepseek-flash"]);
    let app = spawn_app_with(|s| {
        s.deepseek_api_url = primary.url.clone();
        s.deepseek_model = "deepseek-chat".into();
    })
    .await;
    primary.enqueue(paced(
        &[role_chunk(), content_chunk("还在"), finish_chunk("stop"), usage_chunk(3, 1), DONE.to_string()].concat(),
        Duration::from_millis(5),
    ));
    let (token, conversation) = app.user_with_conversation("unlisted").await;

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "还在");
    assert_eq!(app.get_health().await.status(), 200);
}

#[tokio::test]
async fn with_h2c_on_a_plain_http_upstream_is_spoken_to_in_http2() {
    let upstream = crate::helpers::fake_h2c::FakeH2c::start(&["二", "代"]).await;
    let url = upstream.url.clone();
    let app = spawn_app_with(|s| {
        s.deepseek_api_url = url;
        s.upstream_h2c = true;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("h2c").await;

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "二代");
    let chat: Vec<_> = upstream.requests().into_iter().filter(|(_, path)| path == "/chat/completions").collect();
    assert_eq!(chat, vec![(hyper::Version::HTTP_2, "/chat/completions".to_string())]);
}

#[tokio::test]
async fn without_h2c_a_plain_http_upstream_is_spoken_to_in_http1() {
    let upstream = crate::helpers::fake_h2c::FakeH2c::start(&["一", "代"]).await;
    let url = upstream.url.clone();
    let app = spawn_app_with(|s| s.deepseek_api_url = url).await;
    let (token, conversation) = app.user_with_conversation("h1").await;

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(text_of(&events), "一代");
    let chat: Vec<_> = upstream.requests().into_iter().filter(|(_, path)| path == "/chat/completions").collect();
    assert_eq!(chat, vec![(hyper::Version::HTTP_11, "/chat/completions".to_string())]);
}
