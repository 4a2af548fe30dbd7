//! `GET /metrics`: off without a token, closed to anyone without it, and counting what
//! the operator needs (store writes stay flat while replies stream).
use std::time::Duration;

use crate::helpers::fake_deepseek::{paced, reply_body};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const TOKEN: &str = "metrics-token-for-tests-0123456789";

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let request = app.client.get(app.url("/metrics"));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap()
}

fn value(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{line_start}` in:\n{text}"))
}

#[tokio::test]
async fn without_a_token_configured_there_is_no_metrics_endpoint() {
    let app = spawn_app().await;

    let response = scrape(&app, Some("anything-at-all-0123456789")).await;

    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn metrics_need_the_token() {
    let app = spawn_app_with(|s| s.metrics_token = Some(TOKEN.to_string().into())).await;

    for token in [None, Some("wrong-token-0123456789abcdef"), Some(&TOKEN[..TOKEN.len() - 1])] {
        let response = scrape(&app, token).await;
        assert_eq!(response.status(), 401, "with {token:?}");
        assert!(!response.text().await.unwrap().contains(TOKEN));
    }
    assert_eq!(scrape(&app, Some(TOKEN)).await.status(), 200);
}

#[tokio::test]
async fn metrics_show_running_replies_and_store_traffic() {
    let app = spawn_app_with(|s| {
        s.metrics_token = Some(TOKEN.to_string().into());
        s.progress_save_interval_ms = 100;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("metrics").await;
    app.deepseek.enqueue(paced(&reply_body(&["一", "二", "三", "四", "五"], "stop"), Duration::from_millis(120)));

    let reader = app.stream_message(&token, &conversation, "hi").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = scrape(&app, Some(TOKEN)).await.text().await.unwrap();
    reader.all().await;
    let after = scrape(&app, Some(TOKEN)).await.text().await.unwrap();

    assert_eq!(value(&during, "companion_generations_running "), 1);
    assert_eq!(value(&during, "companion_streams_open{transport=\"sse\"}"), 1);
    assert_eq!(value(&after, "companion_generations_running "), 0);
    let mut closed = after.clone();
    for _ in 0..50 {
        if value(&closed, "companion_streams_open{transport=\"sse\"}") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        closed = scrape(&app, Some(TOKEN)).await.text().await.unwrap();
    }
    assert_eq!(value(&closed, "companion_streams_open{transport=\"sse\"}"), 0, "a finished stream is no longer open");
    assert!(value(&after, "companion_store_writes_total ") > value(&during, "companion_store_writes_total "));
    assert!(value(&after, "companion_store_calls_total{operation=\"save_progress_many\"}") >= 1);
    assert_eq!(value(&after, "companion_upstream_circuit_open{upstream=\"deepseek\"}"), 0);
}

#[tokio::test]
async fn counters_and_histograms_move_with_requests_replies_and_refusals() {
    let app = spawn_app_with(|s| {
        s.metrics_token = Some(TOKEN.to_string().into());
        s.rate_limit_per_minute = 3;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("counted").await;
    let before = scrape(&app, Some(TOKEN)).await.text().await.unwrap();
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["你好", "呀"]));
    app.stream_message(&token, &conversation, "在吗").await.all().await;
    app.get_me(&token).await;
    let refused = app.get_me(&token).await;

    let after = scrape(&app, Some(TOKEN)).await.text().await.unwrap();

    assert_eq!(refused.status(), 429);
    let me = "companion_http_requests_total{method=\"GET\",route=\"/api/me\",status=\"200\"}";
    assert!(!before.contains(me), "no such request yet");
    assert_eq!(value(&after, me), 1);
    assert_eq!(value(&after, "companion_http_requests_total{method=\"GET\",route=\"/api/me\",status=\"429\"}"), 1);
    assert_eq!(value(&after, "companion_replies_total{code=\"\",status=\"complete\",upstream=\"deepseek\"}"), 1);
    assert_eq!(value(&after, "companion_first_token_seconds_count"), 1);
    assert_eq!(value(&after, "companion_reply_duration_seconds_count"), 1);
    assert_eq!(value(&after, "companion_tokens_total{kind=\"prompt_cache_miss\"}"), 20, "the fake's usage");
    assert_eq!(value(&after, "companion_tokens_total{kind=\"completion\"}"), 2);
    assert!(value(&after, "companion_store_operation_seconds_count{operation=\"insert_message\"}") >= 2);
    assert_eq!(value(&after, "companion_refusals_total{kind=\"rate_limited\"}"), 1);
    assert!(!after.contains(&conversation), "routes are patterns, never paths with ids");
}

#[tokio::test]
async fn content_check_outcomes_are_counted_by_what_was_checked() {
    let app = crate::moderation::checking_app(|s| s.metrics_token = Some(TOKEN.to_string().into())).await;
    crate::moderation::moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("checked").await;

    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["好的"]));
    app.stream_message(&token, &conversation, "你好").await.all().await;
    let refused = app.send_message(&token, &conversation, &serde_json::json!({"content": "违规的话"})).await;
    let after = scrape(&app, Some(TOKEN)).await.text().await.unwrap();

    assert_eq!(refused.status(), 422);
    assert_eq!(value(&after, "companion_content_checks_total{outcome=\"pass\",target=\"input\"}"), 1);
    assert_eq!(value(&after, "companion_content_checks_total{outcome=\"risky\",target=\"input\"}"), 1);
    assert_eq!(
        value(&after, "companion_content_checks_total{outcome=\"pass\",target=\"output\"}"),
        1,
        "the whole reply"
    );
}
