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

async fn complete(app: &crate::helpers::TestApp, key: &str, text: &str, stream: bool) -> reqwest::Response {
    let body = json!({"model": "companion/xiaoxi", "messages": [{"role": "user", "content": text}], "stream": stream});
    app.client.post(app.url("/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn each_keys_use_is_counted_in_the_console_and_a_key_stops_at_its_daily_tokens() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let created = admin
        .send(Method::POST, "/console/api/keys", Some(json!({"name": "budget", "daily_tokens": 30})))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    app.deepseek.enqueue(text_reply(&["一", "二"]));
    app.deepseek.enqueue(text_reply(&["三"]));

    let first = complete(&app, key, "你好", false).await;
    let second = complete(&app, key, "再说一句", true).await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    second.text().await.unwrap();
    let over = complete(&app, key, "还有吗", false).await;
    let keys = admin.get("/console/api/keys").await;
    let overview = admin.get("/console/api/overview?days=1").await;

    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"), "until the day ends");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    let listed = keys["items"].as_array().unwrap().iter().find(|k| k["id"] == created["id"]).unwrap();
    assert_eq!(listed["daily_tokens"], 30);
    assert_eq!(
        listed["used_today"],
        json!({"requests": 2, "tokens": 43}),
        "22 + 21 tokens; the refused one is not a request"
    );
    let today = &overview["days"][0];
    assert_eq!(today["api_requests"], 2, "{today}");
    assert_eq!(today["tokens"]["output"], 3, "the API's completion tokens count in the day's figures");
    assert_eq!(app.deepseek.requests().len(), 2);
}

#[tokio::test]
async fn api_text_is_checked_on_behalf_of_the_keys_user_in_and_out() {
    let app = crate::moderation::checking_app(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(crate::console::BOOTSTRAP_PASSWORD.to_string().into());
    })
    .await;
    crate::moderation::moderation_rules(&app.wechat, "违规", "risky").await;
    let admin = Operator::admin(&app).await;
    let (_, operator_user) = app.login_as("o_operator_self").await;
    let new_key = |body: Value| {
        let admin = &admin;
        async move { admin.send(Method::POST, "/console/api/keys", Some(body)).await.json::<Value>().await.unwrap() }
    };
    let checked = new_key(json!({"name": "checked", "check_as": operator_user})).await;
    let unchecked = new_key(json!({"name": "no identity"})).await;
    let unknown_user =
        admin.send(Method::POST, "/console/api/keys", Some(json!({"name": "x", "check_as": "not-a-user-id"}))).await;
    let key = checked["key"].as_str().unwrap();
    app.deepseek.enqueue(text_reply(&["这是", "违规的", "回答"]));
    app.deepseek.enqueue(text_reply(&["又是", "违规的", "回答"]));
    app.deepseek.enqueue(text_reply(&["好的"]));

    let refused_input = complete(&app, key, "说点违规的", false).await;
    let withheld: Value = complete(&app, key, "你好", false).await.json().await.unwrap();
    let streamed = complete(&app, key, "你好", true).await.text().await.unwrap();
    let passed: Value = complete(&app, key, "你好", false).await.json().await.unwrap();
    let no_identity = complete(&app, unchecked["key"].as_str().unwrap(), "你好", false).await;

    assert_eq!(unknown_user.status(), 400);
    assert_eq!(refused_input.status(), 400);
    let body: Value = refused_input.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_filter");
    assert_eq!(withheld["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(withheld["choices"][0]["message"]["content"], "", "nothing of a withheld answer: {withheld}");
    assert!(!streamed.contains("违规"), "a streamed answer is held until checked: {streamed}");
    assert!(streamed.contains(r#""finish_reason":"content_filter""#), "{streamed}");
    assert!(streamed.trim_end().ends_with("data: [DONE]"));
    assert_eq!(passed["choices"][0]["message"]["content"], "好的");
    assert_eq!(no_identity.status(), 503, "without an identity WeChat cannot be asked; this service fails closed");
    assert_eq!(app.deepseek.requests().len(), 3, "refused text never reaches the model");
    let checks = app.wechat.received_requests().await.unwrap();
    let openids: Vec<String> = checks
        .iter()
        .filter(|r| r.url.path() == "/wxa/msg_sec_check")
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["openid"].as_str().unwrap().to_string())
        .collect();
    assert!(!openids.is_empty() && openids.iter().all(|o| o == "o_operator_self"), "{openids:?}");
}
