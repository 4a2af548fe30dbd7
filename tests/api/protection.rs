use chrono::Duration;
use companion_backend::configuration::Settings;
use companion_backend::domain::now;
use companion_backend::protection::RateLimiter;
use serde_json::{json, Value};

use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{base_settings, error_code, spawn_app, spawn_app_with, test_store, unique_db_name};

#[tokio::test]
async fn a_user_over_the_per_minute_limit_gets_429_with_retry_after_but_health_never_does() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 3).await;
    let (token, _) = app.login_as("o_limited").await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.get_me(&token).await);
    }
    let limited = statuses.pop().unwrap();

    assert!(statuses.iter().all(|r| r.status() == 200));
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(error_code(limited).await, "rate_limited");
    for _ in 0..10 {
        assert_eq!(app.get_health().await.status(), 200);
        assert_eq!(app.get_ready().await.status(), 200);
    }
    let (other, _) = app.login_as("o_not_limited").await;
    assert_eq!(app.get_me(&other).await.status(), 200, "limits are per user");
}

#[tokio::test]
async fn two_instances_sharing_one_mongodb_share_one_limit() {
    let first = spawn_app_with(|s| s.rate_limit_per_minute = 4).await;
    let second = spawn_app_with(|s| {
        s.rate_limit_per_minute = 4;
        s.mongodb_db = first.db_name.clone();
    })
    .await;
    let (token, _) = first.login_as("o_shared").await;

    let answers = [
        first.get_me(&token).await.status(),
        second.get_me(&token).await.status(),
        first.get_me(&token).await.status(),
        second.get_me(&token).await.status(),
        first.get_me(&token).await.status(),
        second.get_me(&token).await.status(),
    ];

    assert_eq!(answers.map(|s| s.as_u16()), [200, 200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn per_ip_limits_trust_only_the_configured_proxy_depth() {
    let app = spawn_app_with(|s| {
        s.rate_limit_ip_per_minute = 2;
        s.trusted_proxy_depth = 1;
    })
    .await;
    let health_of =
        |forwarded: &'static str| app.client.get(app.url("/api/personas")).header("x-forwarded-for", forwarded).send();

    // The client controls everything left of what the platform's proxy appended.
    let a1 = health_of("1.1.1.1, 10.0.0.5").await.unwrap();
    let a2 = health_of("2.2.2.2, 10.0.0.5").await.unwrap();
    let a3 = health_of("3.3.3.3, 10.0.0.5").await.unwrap();
    let other = health_of("10.0.0.6").await.unwrap();

    assert_eq!(a1.status(), 401, "counted, then refused for lack of a token");
    assert_eq!(a2.status(), 401);
    assert_eq!(a3.status(), 429, "spoofed left-hand entries do not reset the limit");
    assert_eq!(other.status(), 401, "another client IP has its own limit");
}

#[tokio::test]
async fn login_has_a_tighter_per_ip_limit() {
    let app = spawn_app_with(|s| s.rate_limit_login_per_minute = 2).await;
    for i in 0..3 {
        app.wechat_knows(&format!("lim-{i}"), "o_login_limit").await;
    }

    let first = app.post_login(&json!({"code": "lim-0"})).await;
    let second = app.post_login(&json!({"code": "lim-1"})).await;
    let third = app.post_login(&json!({"code": "lim-2"})).await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(third.status(), 429);
    assert_eq!(error_code(third).await, "rate_limited");
}

#[tokio::test]
async fn a_limit_resets_when_its_window_is_over() {
    let store = test_store(&unique_db_name()).await;
    let mut settings: Settings = base_settings();
    settings.rate_limit_per_minute = 2;
    let limiter = RateLimiter::new(&settings.config().unwrap().limits, store);
    let start = chrono::DateTime::from_timestamp(now().timestamp() / 60 * 60, 0).unwrap();

    let in_window = [
        limiter.count_at("user:reset", "m", 60, 2, start).await,
        limiter.count_at("user:reset", "m", 60, 2, start + Duration::seconds(10)).await,
        limiter.count_at("user:reset", "m", 60, 2, start + Duration::seconds(20)).await,
    ];
    let next_window = limiter.count_at("user:reset", "m", 60, 2, start + Duration::seconds(60)).await;

    assert_eq!(in_window, [Ok(()), Ok(()), Err(40)]);
    assert_eq!(next_window, Ok(()));
}

#[tokio::test]
async fn the_daily_message_quota_is_reported_and_enforced() {
    let app = spawn_app_with(|s| s.daily_message_quota = 2).await;
    let (token, conversation) = app.user_with_conversation("quota").await;
    app.deepseek.enqueue(text_reply(&["一"]));
    app.deepseek.enqueue(text_reply(&["二"]));

    app.stream_message(&token, &conversation, "第一条").await.all().await;
    app.stream_message(&token, &conversation, "第二条").await.all().await;
    let refused = app.send_message(&token, &conversation, &json!({"content": "第三条"})).await;
    let usage: Value =
        app.client.get(app.url("/api/me/usage")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();

    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(error_code(refused).await, "quota_exceeded");
    assert_eq!(usage["messages"], json!({"used": 2, "limit": 2}));
    // The fake reports 20 prompt tokens + one per piece for each reply.
    assert_eq!(usage["tokens"]["used"], 42);
    assert!(usage["date"].as_str().unwrap().len() == 10 && usage["resets_at"].is_string());
    assert_eq!(app.messages(&token, &conversation).await.len(), 5, "the refused message is not stored");
    assert_eq!(app.deepseek.requests().len(), 2);
}

#[tokio::test]
async fn the_daily_token_quota_stops_further_messages_once_used_up() {
    let app = spawn_app_with(|s| s.daily_token_quota = 30).await;
    let (token, conversation) = app.user_with_conversation("token_quota").await;
    app.deepseek.enqueue(text_reply(&["很长的回复"]));
    app.deepseek.enqueue(text_reply(&["又一条"]));
    app.stream_message(&token, &conversation, "hi").await.all().await;

    let usage: Value =
        app.client.get(app.url("/api/me/usage")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let second = app.send_message(&token, &conversation, &json!({"content": "again"})).await;

    assert_eq!(usage["tokens"], json!({"used": 21, "limit": 30}));
    assert_eq!(second.status(), 200, "21 of 30 used: still allowed");
    crate::helpers::EventReader::new(second).all().await;
    let third = app.send_message(&token, &conversation, &json!({"content": "more"})).await;
    assert_eq!(third.status(), 429);
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let app = spawn_app().await;

    for response in [app.get_health().await, app.client.get(app.url("/api/me")).send().await.unwrap()] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers.contains_key("content-security-policy"));
    }
}

#[tokio::test]
async fn cors_answers_only_the_allowed_origins() {
    let app = spawn_app_with(|s| s.cors_allowed_origins = Some("https://admin.example.com".into())).await;

    let allowed =
        app.client.get(app.url("/health")).header("origin", "https://admin.example.com").send().await.unwrap();
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/me"))
        .header("origin", "https://admin.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    let refused = app.client.get(app.url("/health")).header("origin", "https://evil.example.com").send().await.unwrap();

    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://admin.example.com");
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://admin.example.com");
    // Without the header the browser refuses to hand the answer to the page.
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
}

#[test]
fn production_refuses_a_wildcard_cors_origin() {
    let mut settings = base_settings();
    settings.app_env = companion_backend::configuration::AppEnv::Production;
    settings.cors_allowed_origins = Some("https://a.example.com, *".into());
    assert!(settings.production_problems().iter().any(|p| p.contains("CORS_ALLOWED_ORIGINS")));
}

#[tokio::test]
async fn oversized_headers_are_refused_in_the_error_envelope() {
    let app = spawn_app().await;

    let large = app.client.get(app.url("/health")).header("x-padding", "a".repeat(20 * 1024)).send().await.unwrap();
    // A client of its own: actix resets this connection, which must not poison the pool.
    // Its timeout turns a server that hangs on the request into a failure below.
    let huge = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
        .get(app.url("/health"))
        .header("x-padding", "a".repeat(200 * 1024))
        .send()
        .await;

    assert_eq!(large.status(), 431);
    assert_eq!(error_code(large).await, "headers_too_large");
    // Past actix's own 128 KiB cap the request is refused outright: a 4xx, or the
    // connection closed while the request was being sent (never a hang or a success).
    match huge {
        Ok(response) => {
            assert!(response.status().is_client_error(), "200 KiB of headers answered {}", response.status())
        }
        Err(e) => assert!(
            !e.is_timeout() && (e.is_request() || e.is_connect()),
            "200 KiB of headers failed other than by a refused request: {e:?}"
        ),
    }
    let fresh = reqwest::Client::new().get(app.url("/health")).send().await.unwrap();
    assert_eq!(fresh.status(), 200, "the server still serves");
}

#[tokio::test]
async fn every_case_of_the_bearer_scheme_counts_against_one_per_user_limit() {
    let app = spawn_app_with(|s| s.rate_limit_per_minute = 3).await;
    let (token, _) = app.login_as("o_scheme_case").await;

    let mut statuses = Vec::new();
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let response = app
            .client
            .get(app.url("/api/me"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }

    assert_eq!(statuses, [200, 200, 200, 429], "one user, one limit, whatever the scheme's case");
}

#[tokio::test]
async fn the_days_prompt_cache_hits_and_misses_are_reported_with_their_ratio() {
    use crate::helpers::fake_deepseek::{content_chunk, data, finish_chunk, paced, role_chunk, DONE};
    let app = spawn_app().await;
    let (token, conversation) = app.user_with_conversation("cache_ratio").await;
    let reply = |hit: u64, miss: u64| {
        let usage = data(&json!({
            "choices": [],
            "usage": {"prompt_tokens": hit + miss, "completion_tokens": 2, "total_tokens": hit + miss + 2,
                      "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": miss}
        }));
        paced(
            &[role_chunk(), content_chunk("嗯"), finish_chunk("stop"), usage, DONE.to_string()].concat(),
            std::time::Duration::from_millis(5),
        )
    };
    let before: Value =
        app.client.get(app.url("/api/me/usage")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    for (hit, miss) in [(16, 4), (30, 10)] {
        app.deepseek.enqueue(reply(hit, miss));
        app.stream_message(&token, &conversation, "hi").await.all().await;
    }

    let usage: Value =
        app.client.get(app.url("/api/me/usage")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();

    assert_eq!(before["prompt_cache"]["hit_ratio"], Value::Null, "no ratio before any reply");
    assert_eq!(usage["prompt_cache"]["hit_tokens"], 46);
    assert_eq!(usage["prompt_cache"]["miss_tokens"], 14);
    let ratio = usage["prompt_cache"]["hit_ratio"].as_f64().unwrap();
    assert!((ratio - 46.0 / 60.0).abs() < 1e-9, "{ratio}");
    let replies: Vec<Value> =
        app.messages(&token, &conversation).await.into_iter().filter(|m| m["role"] == "assistant").collect();
    assert_eq!(replies.last().unwrap()["usage"]["prompt_cache_hit_tokens"], 30);
}
