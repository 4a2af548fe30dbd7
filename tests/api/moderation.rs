//! Content safety through msgSecCheck v2, against a fake WeChat speaking its real JSON.
use std::sync::Arc;
use std::time::Duration;

use companion_backend::domain::OpenId;
use companion_backend::wechat::{AccessTokens, ContentChecker, Suggest};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::fake_deepseek::{paced, reply_body, text_reply};
use crate::helpers::{closed_port, error_code, spawn_app_with, text_of, TestApp, TEST_APPID, TEST_APP_SECRET};

/// Matches msgSecCheck calls whose `content` contains a phrase.
struct ContentContains(&'static str);

impl Match for ContentContains {
    fn matches(&self, request: &Request) -> bool {
        serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|b| b["content"].as_str().map(|c| c.contains(self.0)))
            .unwrap_or(false)
    }
}

fn verdict(suggest: &str, label: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(
        json!({"errcode": 0, "errmsg": "ok", "trace_id": "t1", "result": {"suggest": suggest, "label": label}, "detail": []})
            .to_string(),
        "application/json",
    )
}

async fn token_endpoint(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path("/cgi-bin/stable_token"))
        .and(body_partial_json(
            json!({"grant_type": "client_credential", "appid": TEST_APPID, "secret": TEST_APP_SECRET}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(json!({"access_token": token, "expires_in": 7200}).to_string(), "text/plain"),
        )
        .mount(server)
        .await;
}

/// Everything passes except text containing `phrase`, which gets `suggest`.
pub(crate) async fn moderation_rules(server: &MockServer, phrase: &'static str, suggest: &str) {
    token_endpoint(server, "ACCESS_TOKEN_1").await;
    Mock::given(method("POST"))
        .and(path("/wxa/msg_sec_check"))
        .and(ContentContains(phrase))
        .respond_with(verdict(suggest, 20001))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/wxa/msg_sec_check"))
        .and(query_param("access_token", "ACCESS_TOKEN_1"))
        .and(body_partial_json(json!({"version": 2, "scene": 2})))
        .respond_with(verdict("pass", 100))
        .with_priority(5)
        .mount(server)
        .await;
}

pub(crate) async fn checking_app(configure: impl FnOnce(&mut companion_backend::configuration::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.content_check = Some(true);
        s.content_check_fail_open = Some(false);
        configure(s);
    })
    .await
}

fn check_calls(requests: &[Request]) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.url.path() == "/wxa/msg_sec_check")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn risky_input_is_rejected_stored_as_rejected_and_never_sent_upstream() {
    let app = checking_app(|_| {}).await;
    moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("risky_input").await;

    let response = app.send_message(&token, &conversation, &json!({"content": "一段违规的话"})).await;

    assert_eq!(response.status(), 422);
    assert_eq!(error_code(response).await, "content_rejected");
    assert!(app.deepseek.requests().is_empty(), "nothing reached DeepSeek");
    let messages = app.messages(&token, &conversation).await;
    assert_eq!(messages[1]["content"], "一段违规的话");
    assert_eq!(messages[1]["status"], "failed");
    assert_eq!(messages[1]["error"]["code"], "content_rejected");
    let calls = check_calls(&app.wechat.received_requests().await.unwrap());
    assert_eq!(calls[0]["openid"], "o_risky_input", "checked as the user's own openid");
    assert_eq!(calls[0]["version"], 2);
}

#[tokio::test]
async fn passing_input_and_output_stream_normally_and_the_reply_is_checked_too() {
    let app = checking_app(|_| {}).await;
    moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("clean").await;
    app.deepseek.enqueue(text_reply(&["一切", "正常"]));

    let (events, _) = app.stream_message(&token, &conversation, "你好").await.all().await;

    assert_eq!(text_of(&events), "一切正常");
    assert_eq!(events.last().unwrap().name, "done");
    let contents: Vec<String> = check_calls(&app.wechat.received_requests().await.unwrap())
        .iter()
        .map(|c| c["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents, ["你好", "一切正常"], "the input, then the whole reply");
}

#[tokio::test]
async fn review_verdicts_pass_by_default_and_block_when_configured() {
    let lenient = checking_app(|_| {}).await;
    let strict = checking_app(|s| s.content_check_review = companion_backend::configuration::ReviewPolicy::Block).await;
    for app in [&lenient, &strict] {
        moderation_rules(&app.wechat, "边缘", "review").await;
        app.deepseek.enqueue(text_reply(&["好"]));
    }
    let (lenient_token, lenient_conversation) = lenient.user_with_conversation("review_lenient").await;
    let (strict_token, strict_conversation) = strict.user_with_conversation("review_strict").await;

    let passed = lenient
        .send_message(&lenient_token, &lenient_conversation, &json!({"content": "边缘话题", "stream": false}))
        .await;
    let blocked = strict.send_message(&strict_token, &strict_conversation, &json!({"content": "边缘话题"})).await;

    assert_eq!(passed.status(), 200);
    assert_eq!(blocked.status(), 422);
}

#[tokio::test]
async fn a_risky_reply_is_cut_mid_stream_with_content_blocked_and_withheld() {
    let app = checking_app(|s| s.content_check_window_chars = 20).await;
    moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("risky_output").await;
    let mut pieces: Vec<String> = (0..3).map(|i| format!("这是第{i}段正常的回复内容，")).collect();
    pieces.push("接下来是违规内容".into());
    pieces.extend((0..20).map(|i| format!("后面还有很多第{i}段")));
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    app.deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(60)));

    let (events, _) = app.stream_message(&token, &conversation, "讲点什么").await.all().await;

    let last = events.last().unwrap();
    assert_eq!(last.name, "error");
    assert_eq!(last.data["code"], "content_blocked");
    assert!(!text_of(&events).contains("后面还有很多第19段"), "the stream stopped early");
    let reply = &app.messages(&token, &conversation).await[2];
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["error"]["code"], "content_blocked");
    assert_eq!(reply["content"], "", "withheld text is not kept for clients");
}

#[tokio::test]
async fn a_short_risky_reply_is_blocked_by_the_final_check() {
    let app = checking_app(|_| {}).await;
    moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("risky_final").await;
    app.deepseek.enqueue(text_reply(&["短短的", "违规"]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(events.last().unwrap().data["code"], "content_blocked");
    assert_eq!(app.messages(&token, &conversation).await[2]["status"], "failed");
}

#[tokio::test]
async fn text_over_2500_characters_is_checked_in_pieces() {
    let app = checking_app(|s| s.message_max_chars = 6000).await;
    moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("long_input").await;
    app.deepseek.enqueue(text_reply(&["收到"]));
    let long = "长".repeat(6000);

    let response = app.send_message(&token, &conversation, &json!({"content": long, "stream": false})).await;

    assert_eq!(response.status(), 200);
    let sizes: Vec<usize> = check_calls(&app.wechat.received_requests().await.unwrap())
        .iter()
        .map(|c| c["content"].as_str().unwrap().chars().count())
        .collect();
    assert_eq!(&sizes[..3], [2500, 2500, 1000]);
}

#[tokio::test]
async fn unreachable_wechat_fails_closed_or_open_as_configured() {
    let port = closed_port();
    let closed = checking_app(|s| s.wechat_api_base = format!("http://127.0.0.1:{port}")).await;
    let open = checking_app(|s| {
        s.wechat_api_base = format!("http://127.0.0.1:{port}");
        s.content_check_fail_open = Some(true);
    })
    .await;
    // Log in through the dev path: WeChat itself is down in this test.
    let mut tokens = Vec::new();
    for app in [&closed, &open] {
        let (token, _) = app.store_user_token("o_wechat_down").await;
        let response = app.create_conversation(&token, &json!({})).await;
        let conversation: Value = response.json().await.unwrap();
        tokens.push((token, conversation["id"].as_str().unwrap().to_string()));
    }
    open.deepseek.enqueue(text_reply(&["照常回复"]));

    let refused = closed.send_message(&tokens[0].0, &tokens[0].1, &json!({"content": "hi"})).await;
    let allowed = open.send_message(&tokens[1].0, &tokens[1].1, &json!({"content": "hi"})).await;

    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(error_code(refused).await, "content_check_unavailable");
    assert_eq!(closed.messages(&tokens[0].0, &tokens[0].1).await.len(), 1, "a refused message is not stored");
    assert_eq!(allowed.status(), 200);
    assert_eq!(text_of(&crate::helpers::EventReader::new(allowed).all().await.0), "照常回复");
}

#[tokio::test]
async fn the_access_token_is_fetched_once_and_shared_by_concurrent_checks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/stable_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(200))
                .set_body_raw(json!({"access_token": "SHARED", "expires_in": 7200}).to_string(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/wxa/msg_sec_check"))
        .and(query_param("access_token", "SHARED"))
        .respond_with(verdict("pass", 100))
        .mount(&server)
        .await;
    let checker = Arc::new(checker(
        &server,
        AccessTokens::stable(
            reqwest::Client::new(),
            server.uri(),
            Some(TEST_APPID.into()),
            Some(SecretString::from(TEST_APP_SECRET)),
        ),
    ));
    let openid = OpenId::parse("o_concurrent").unwrap();

    let checks = (0..5).map(|i| {
        let (checker, openid) = (checker.clone(), openid.clone());
        tokio::spawn(async move { checker.check(&openid, &format!("text {i}")).await.unwrap().suggest })
    });
    let verdicts = futures_util::future::join_all(checks).await;
    let later = checker.check(&openid, "later").await.unwrap();

    assert!(verdicts.into_iter().all(|v| v.unwrap() == Suggest::Pass));
    assert_eq!(later.suggest, Suggest::Pass);
    server.verify().await;
}

#[tokio::test]
async fn a_rejected_token_is_replaced_with_force_refresh_and_the_check_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/stable_token"))
        .and(body_partial_json(json!({"force_refresh": false})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(json!({"access_token": "OLD", "expires_in": 7200}).to_string(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/stable_token"))
        .and(body_partial_json(json!({"force_refresh": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(json!({"access_token": "NEW", "expires_in": 7200}).to_string(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/wxa/msg_sec_check"))
        .and(query_param("access_token", "OLD"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"errcode":40001,"errmsg":"invalid credential"}"#, "application/json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/wxa/msg_sec_check"))
        .and(query_param("access_token", "NEW"))
        .respond_with(verdict("risky", 20002))
        .mount(&server)
        .await;
    let checker = checker(
        &server,
        AccessTokens::stable(
            reqwest::Client::new(),
            server.uri(),
            Some(TEST_APPID.into()),
            Some(SecretString::from(TEST_APP_SECRET)),
        ),
    );

    let verdict = checker.check(&OpenId::parse("o_refresh").unwrap(), "x").await.unwrap();

    assert_eq!(verdict.suggest, Suggest::Risky);
    assert_eq!(verdict.label, Some(20002));
    server.verify().await;
}

#[tokio::test]
async fn the_cloud_run_open_api_mode_sends_no_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/stable_token"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path("/wxa/msg_sec_check")).respond_with(verdict("pass", 100)).mount(&server).await;
    let checker = checker(&server, AccessTokens::cloud_run());

    let verdict = checker.check(&OpenId::parse("o_openapi").unwrap(), "hello").await.unwrap();

    assert_eq!(verdict.suggest, Suggest::Pass);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].url.query().is_none(), "no access_token: {}", requests[0].url);
    server.verify().await;
}

fn checker(server: &MockServer, tokens: AccessTokens) -> ContentChecker {
    ContentChecker::new(server.uri(), Arc::new(tokens), 2, Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn the_kept_part_of_a_failed_reply_is_checked_too() {
    let app = checking_app(|_| {}).await;
    moderation_rules(&app.wechat, "违规", "risky").await;
    let (token, conversation) = app.user_with_conversation("risky_partial").await;
    app.deepseek.enqueue(crate::helpers::fake_deepseek::Reply::Stream(vec![
        crate::helpers::fake_deepseek::Step::Bytes(crate::helpers::fake_deepseek::role_chunk().into_bytes()),
        crate::helpers::fake_deepseek::Step::Bytes(
            crate::helpers::fake_deepseek::content_chunk("一句违规的半截话").into_bytes(),
        ),
        crate::helpers::fake_deepseek::Step::Drop,
    ]));

    let (events, _) = app.stream_message(&token, &conversation, "hi").await.all().await;

    assert_eq!(events.last().unwrap().data["code"], "content_blocked");
    let reply = &app.messages(&token, &conversation).await[2];
    assert_eq!(reply["content"], "", "no unchecked text is kept");
    assert_eq!(reply["error"]["code"], "content_blocked");
}

#[tokio::test]
async fn a_learned_memory_that_fails_the_content_check_is_not_kept() {
    let app = checking_app(|s| s.memory_debounce_secs = 0).await;
    moderation_rules(&app.wechat, "不该记住", "risky").await;
    let (token, conversation) = app.user_with_persona("learned_check", Some("xiaoxi")).await;
    let me = crate::memories::user_id(&app, &token).await;
    app.deepseek.enqueue(text_reply(&["好呀"]));
    app.deepseek.enqueue_json(
        r#"{"operations": [{"op": "add", "text": "一件不该记住的事"}, {"op": "add", "text": "养了一只猫"}]}"#,
    );

    app.stream_message(&token, &conversation, "我养了一只猫").await.all().await;
    let mut kept = Vec::new();
    for _ in 0..150 {
        kept = app.store.list_memories(me, "xiaoxi").await.unwrap();
        if !kept.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let texts: Vec<&str> = kept.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(texts, ["养了一只猫"]);
    let checked: Vec<String> =
        check_calls(&app.wechat.received_requests().await.unwrap()).iter().map(|c| c["content"].to_string()).collect();
    assert!(checked.iter().any(|c| c.contains("一件不该记住的事")), "{checked:?}");
}
