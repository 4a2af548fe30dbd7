//! The OpenAI-compatible API through the official `openai` Python SDK (installed into
//! `.tools/venv` by `scripts/test.sh`): models, a whole and a streamed completion from a
//! companion, and the SDK's exception types for a bad key, an unknown model, a bad request
//! and a key over its limit.
use reqwest::Method;
use serde_json::{json, Value};

use crate::console::{console_app, Operator};
use crate::helpers::fake_deepseek::text_reply;

async fn new_key(admin: &Operator<'_>, name: &str, per_minute: u32) -> String {
    let created =
        admin.send(Method::POST, "/console/api/keys", Some(json!({"name": name, "per_minute": per_minute}))).await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_official_openai_sdk_talks_to_a_companion_and_gets_its_exception_types() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let (key, limited) = (new_key(&admin, "sdk", 0).await, new_key(&admin, "slow", 1).await);
    app.deepseek.enqueue(text_reply(&["你好呀", "！"]));
    app.deepseek.enqueue(text_reply(&["从前", "有座山"]));
    app.deepseek.enqueue(text_reply(&["一"]));

    let output = tokio::process::Command::new(crate::helpers::venv_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_sdk/check.py"))
        .env("BASE_URL", &app.address)
        .env("API_KEY", &key)
        .env("LIMITED_KEY", &limited)
        .output()
        .await
        .expect("the venv's Python with the openai SDK: run ./scripts/test.sh once to install it");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();

    assert_eq!(seen["models"], json!(["companion/ahang", "companion/sikao", "companion/xiaoxi"]));
    assert_eq!(seen["whole"]["object"], "chat.completion");
    assert_eq!(seen["whole"]["content"], "你好呀！");
    assert_eq!(seen["whole"]["role"], "assistant");
    assert_eq!(seen["whole"]["finish_reason"], "stop");
    assert_eq!(seen["whole"]["total_tokens"], 22, "the fake's usage: 20 prompt + 2 completion");
    assert_eq!(seen["stream"]["pieces"], json!(["从前", "有座山"]));
    assert_eq!(seen["stream"]["finish_reason"], "stop");
    assert_eq!(seen["stream"]["total_tokens"], 22);
    assert_eq!(seen["bad_key"], json!({"type": "AuthenticationError", "status": 401, "code": "invalid_api_key"}));
    assert_eq!(seen["unknown_model"], json!({"type": "NotFoundError", "status": 404, "code": "model_not_found"}));
    assert_eq!(seen["bad_request"]["type"], "BadRequestError");
    assert_eq!(seen["first_of_limited"], Value::Null, "the first request is within the limit");
    assert_eq!(seen["rate_limited"], json!({"type": "RateLimitError", "status": 429, "code": "rate_limit_exceeded"}));
    let sent = app.deepseek.requests();
    let system = sent[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("小溪") && system.ends_with("回答简短"),
        "the companion's prompt, then the caller's: {system}"
    );
    assert_eq!(sent[0].body["messages"][1], json!({"role": "user", "content": "你好"}));
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let created = admin.send(Method::POST, "/console/api/keys", Some(json!({"name": "temp"}))).await;
    let created: Value = created.json().await.unwrap();
    let models = |key: String| {
        let (client, url) = (app.client.clone(), app.url("/v1/models"));
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let key = created["key"].as_str().unwrap().to_string();

    let before = models(key.clone()).await;
    admin.send(Method::DELETE, &format!("/console/api/keys/{}", created["id"].as_str().unwrap()), None).await;
    let after = models(key).await;

    assert_eq!(before.status(), 200);
    assert_eq!(after.status(), 401);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
