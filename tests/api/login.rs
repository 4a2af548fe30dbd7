use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{error_code, spawn_app, spawn_dev_app, TEST_APP_SECRET};

#[tokio::test]
async fn a_valid_code_answered_as_text_plain_returns_a_token_and_the_user() {
    let app = spawn_app().await;
    app.wechat_knows("code-ok", "oUser_0001").await;

    let response = app.post_login(&json!({"code": "code-ok"})).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("SESSION-KEY-MUST-NOT-LEAK"), "session_key leaked: {text}");
    assert!(!text.contains("oUser_0001"), "openid is not part of the public user: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["token"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(body["expires_in"], 604800);
    assert_eq!(body["user"]["id"].as_str().unwrap().len(), 24);
    assert!(body["user"]["created_at"].is_string());
    assert!(body["user"].get("nickname").is_some());
}

#[tokio::test]
async fn the_same_openid_always_logs_in_as_the_same_user() {
    let app = spawn_app().await;

    let (_, first) = app.login_as("oUser_same").await;
    let (_, second) = app.login_as("oUser_same").await;
    let (_, other) = app.login_as("oUser_other").await;

    assert_eq!(first, second);
    assert_ne!(first, other);
}

#[tokio::test]
async fn concurrent_first_logins_of_one_openid_create_one_user() {
    let app = spawn_app().await;
    for i in 0..6 {
        app.wechat_knows(&format!("race-{i}"), "oUser_race").await;
    }

    let bodies: Vec<Value> = (0..6).map(|i| json!({"code": format!("race-{i}")})).collect();
    let responses = futures_util::future::join_all(bodies.iter().map(|b| app.post_login(b))).await;

    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        ids.push(body["user"]["id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
}

#[tokio::test]
async fn each_wechat_error_maps_to_its_documented_status_and_code() {
    let app = spawn_app().await;
    let cases: &[(&str, u16, &str, u16, &str, bool)] = &[
        ("c40029", 200, r#"{"errcode":40029,"errmsg":"invalid code"}"#, 400, "invalid_code", false),
        ("c40163", 200, r#"{"errcode":40163,"errmsg":"code been used"}"#, 400, "code_already_used", false),
        (
            "c45011",
            200,
            r#"{"errcode":45011,"errmsg":"api minute-quota reach limit"}"#,
            429,
            "login_rate_limited",
            true,
        ),
        ("c40226", 200, r#"{"errcode":40226,"errmsg":"high risk user"}"#, 403, "user_blocked", false),
        ("cbusy", 200, r#"{"errcode":-1,"errmsg":"system error"}"#, 503, "wechat_unavailable", true),
        ("csecret", 200, r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#, 503, "login_unavailable", true),
        ("cother", 200, r#"{"errcode":99999,"errmsg":"something new"}"#, 502, "wechat_error", true),
        ("c5xx", 502, "<html>bad gateway</html>", 502, "wechat_error", true),
        ("cjunk", 200, "this is not json", 502, "wechat_error", true),
        ("cnoopenid", 200, r#"{"errcode":0,"errmsg":"ok"}"#, 502, "wechat_error", true),
    ];
    for (code, _, body, _, _, _) in cases {
        app.wechat_answers(code, cases.iter().find(|c| c.0 == *code).unwrap().1, body).await;
    }

    for (code, _, _, status, error, retry_hint) in cases {
        let response = app.post_login(&json!({"code": code})).await;
        assert_eq!(response.status(), *status, "for {code}");
        assert_eq!(response.headers().contains_key("retry-after"), *retry_hint, "Retry-After for {code}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(TEST_APP_SECRET), "secret leaked for {code}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], *error, "for {code}");
    }
}

#[tokio::test]
async fn a_wechat_timeout_is_a_503_with_a_retry_hint() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path("/sns/jscode2session"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)).set_body_string("{}"))
        .mount(&app.wechat)
        .await;

    let response = app.post_login(&json!({"code": "slow"})).await;

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "wechat_unavailable");
}

#[tokio::test]
async fn unreachable_wechat_is_a_503_that_does_not_leak_the_secret() {
    let app = spawn_app_unreachable_wechat().await;

    let response = app.post_login(&json!({"code": "any"})).await;

    assert_eq!(response.status(), 503);
    let text = response.text().await.unwrap();
    assert!(!text.contains(TEST_APP_SECRET));
    assert!(text.contains("wechat_unavailable"));
}

async fn spawn_app_unreachable_wechat() -> crate::helpers::TestApp {
    let port = crate::helpers::closed_port();
    crate::helpers::spawn_app_with(|s| s.wechat_api_base = format!("http://127.0.0.1:{port}")).await
}

#[tokio::test]
async fn a_login_code_is_not_retried_against_wechat() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path("/sns/jscode2session"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"errcode":-1,"errmsg":"busy"}"#))
        .expect(1)
        .mount(&app.wechat)
        .await;

    let response = app.post_login(&json!({"code": "once"})).await;

    assert_eq!(response.status(), 503);
    app.wechat.verify().await;
}

#[tokio::test]
async fn bad_login_bodies_get_clear_errors() {
    let app = spawn_app().await;
    let url = app.url("/api/auth/login");
    let send = |body: &'static str, content_type: &'static str| {
        app.client.post(&url).header("content-type", content_type).body(body).send()
    };

    let cases = [
        (send("{}", "application/json").await.unwrap(), 400, "missing_code"),
        (send(r#"{"code":"  "}"#, "application/json").await.unwrap(), 400, "invalid_code"),
        (send(r#"{"code": 42}"#, "application/json").await.unwrap(), 400, "invalid_body"),
        (send(r#"{"code":"a","extra":1}"#, "application/json").await.unwrap(), 400, "invalid_body"),
        (send(r#"{"code": "abc"#, "application/json").await.unwrap(), 400, "invalid_json"),
        (send("code=abc", "application/x-www-form-urlencoded").await.unwrap(), 415, "unsupported_media_type"),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status(), status, "expected {code}");
        assert_eq!(error_code(response).await, code);
    }
}

#[tokio::test]
async fn an_oversized_body_is_a_413_in_the_error_envelope() {
    let app = spawn_app().await;
    let huge = json!({"code": "x".repeat(70 * 1024)});

    let response = app.post_login(&huge).await;

    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
}

#[tokio::test]
async fn development_login_accepts_dev_codes_without_wechat_credentials() {
    let app = spawn_dev_app().await;

    let alice = app.post_login(&json!({"code": "dev:alice"})).await;
    let alice_again = app.post_login(&json!({"code": "dev:alice"})).await;
    let real_code = app.post_login(&json!({"code": "081abcDEF"})).await;
    let bad_name = app.post_login(&json!({"code": "dev:名字 with spaces"})).await;

    assert_eq!(alice.status(), 200);
    let first: Value = alice.json().await.unwrap();
    let second: Value = alice_again.json().await.unwrap();
    assert_eq!(first["user"]["id"], second["user"]["id"]);
    assert_eq!(real_code.status(), 400);
    assert_eq!(error_code(real_code).await, "invalid_code");
    assert_eq!(bad_name.status(), 400);
    let stored = app
        .store
        .get_user(companion_backend::domain::UserId::parse(first["user"]["id"].as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.openid.as_str(), "dev_alice");
}

#[tokio::test]
async fn dev_codes_go_to_wechat_when_wechat_is_configured() {
    let app = spawn_app().await;
    app.wechat_answers("dev:alice", 200, r#"{"errcode":40029,"errmsg":"invalid code"}"#).await;

    let response = app.post_login(&json!({"code": "dev:alice"})).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_code");
}

#[test]
fn development_login_is_never_on_in_production() {
    let mut settings = crate::helpers::base_settings();
    settings.wechat_appid = None;
    assert!(settings.dev_login_enabled());
    settings.app_env = companion_backend::configuration::AppEnv::Production;
    assert!(!settings.dev_login_enabled());
}
