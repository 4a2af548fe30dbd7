//! Zero-downtime shutdown, tested on the real binary with a real SIGTERM.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::fake_deepseek::{paced, reply_body, FakeDeepSeek};
use crate::helpers::{closed_port, mongo_store, mongodb_uri, text_of, unique_db_name, EventReader};

struct RunningBinary {
    child: Child,
    base: String,
    client: reqwest::Client,
    db_name: String,
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn start_binary(deepseek: &FakeDeepSeek, grace_secs: u64) -> RunningBinary {
    start_binary_with(deepseek, grace_secs, &[]).await
}

async fn start_binary_with(deepseek: &FakeDeepSeek, grace_secs: u64, extra_env: &[(&str, &str)]) -> RunningBinary {
    let port = closed_port();
    let db_name = unique_db_name();
    let child = Command::new(env!("CARGO_BIN_EXE_companion-backend"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_CONFIG_FILE", "/nonexistent/app.toml")
        .env("PORT", port.to_string())
        .env("MONGODB_URI", mongodb_uri().expect("MongoDB test server"))
        .env("MONGODB_DB", &db_name)
        .env("DEEPSEEK_API_URL", &deepseek.url)
        .env("DEEPSEEK_API_KEY", "sk-test")
        .env("JWT_SECRET", "a-secret-for-the-shutdown-test-0123456789")
        .env("SHUTDOWN_GRACE_SECS", grace_secs.to_string())
        .env("SHUTDOWN_READINESS_DELAY_MS", "700")
        .env("RUST_LOG", "warn")
        .envs(extra_env.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // No idle pooled connections: a worker with nothing open must be as idle as it gets.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let binary = RunningBinary { child, base: format!("http://127.0.0.1:{port}"), client, db_name };
    let deadline = Instant::now() + Duration::from_secs(20);
    while binary.client.get(format!("{}/health", binary.base)).send().await.is_err() {
        assert!(Instant::now() < deadline, "the binary did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    binary
}

impl RunningBinary {
    /// A development login and a fresh conversation: (token, conversation id).
    async fn user_with_conversation(&self) -> (String, String) {
        let login: Value = self
            .client
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"code": "dev:shutdown"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().unwrap().to_string();
        let conversation: Value = self
            .client
            .post(format!("{}/api/conversations", self.base))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (token, conversation["id"].as_str().unwrap().to_string())
    }

    async fn login_and_stream(&self, content: &str) -> (String, String, EventReader) {
        let (token, conversation) = self.user_with_conversation().await;
        let response = self
            .client
            .post(format!("{}/api/conversations/{conversation}/messages", self.base))
            .bearer_auth(&token)
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        (token, conversation, EventReader::new(response))
    }

    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    async fn wait_for_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the binary did not exit in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stored_reply(&self, conversation: &str, message: &str) -> companion_backend::domain::Message {
        let store = mongo_store(&self.db_name).await;
        let conversation = companion_backend::domain::ConversationId::parse(conversation).unwrap();
        let message = companion_backend::domain::MessageId::parse(message).unwrap();
        companion_backend::store::Store::get_message(&*store, conversation, message).await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn sigterm_fails_readiness_and_lets_a_reply_in_flight_finish_and_be_stored() {
    crate::requires_mongodb!();
    let deepseek = FakeDeepSeek::start().await;
    let pieces = ["关机前", "也要", "把话", "说完", "。"];
    deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(300)));
    let mut binary = start_binary(&deepseek, 20).await;
    let (_, conversation, mut reader) = binary.login_and_stream("hi").await;
    let start = reader.next().await.unwrap();
    let message = start.data["assistant_message_id"].as_str().unwrap().to_string();

    binary.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = binary.client.get(format!("{}/ready", binary.base)).send().await.unwrap();
    let (events, _) = reader.all().await;
    let status = binary.wait_for_exit(Duration::from_secs(20)).await;

    assert_eq!(ready.status(), 503, "readiness fails as soon as shutdown begins");
    assert_eq!(text_of(&events), pieces.concat());
    assert_eq!(events.last().unwrap().name, "done");
    assert!(status.success(), "{status:?}");
    let stored = binary.stored_reply(&conversation, &message).await;
    assert_eq!(stored.status, companion_backend::domain::MessageStatus::Complete);
    assert_eq!(stored.content, pieces.concat());
}

#[tokio::test]
async fn a_reply_longer_than_the_grace_period_is_stored_incomplete_before_exit() {
    crate::requires_mongodb!();
    let deepseek = FakeDeepSeek::start().await;
    let pieces: Vec<String> = (0..40).map(|i| format!("第{i}句。")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(200)));
    let mut binary = start_binary(&deepseek, 1).await;
    let (_, conversation, mut reader) = binary.login_and_stream("hi").await;
    let start = reader.next().await.unwrap();
    let message = start.data["assistant_message_id"].as_str().unwrap().to_string();
    reader.next().await.unwrap();

    binary.sigterm();
    let (events, _) = reader.all().await;
    let status = binary.wait_for_exit(Duration::from_secs(20)).await;

    assert!(status.success(), "{status:?}");
    let last = events.last().unwrap();
    assert_eq!(last.name, "error");
    assert_eq!(last.data["code"], "server_shutdown");
    let stored = binary.stored_reply(&conversation, &message).await;
    assert_eq!(stored.status, companion_backend::domain::MessageStatus::Incomplete);
    assert_eq!(stored.error.unwrap().code, "server_shutdown");
    assert!(!stored.content.is_empty() && stored.content.len() < pieces.concat().len());
    assert!(pieces.concat().starts_with(&stored.content), "the stored part is a prefix of the reply");
}

#[tokio::test]
async fn a_reply_nobody_is_watching_survives_sigterm_and_is_stored_complete() {
    crate::requires_mongodb!();
    let deepseek = FakeDeepSeek::start().await;
    let pieces = ["没人", "在看", "也要", "写完", "。"];
    deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(300)));
    let mut binary = start_binary_with(&deepseek, 20, &[("CHAT_WAIT_TIMEOUT_MS", "100")]).await;
    let (token, conversation) = binary.user_with_conversation().await;
    // callContainer style: no stream, an early 202, and then no open connection at all.
    let accepted = binary
        .client
        .post(format!("{}/api/conversations/{conversation}/messages", binary.base))
        .bearer_auth(&token)
        .json(&json!({"content": "hi", "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let body: Value = accepted.json().await.unwrap();
    let message = body["assistant_message"]["id"].as_str().unwrap().to_string();

    binary.sigterm();
    let status = binary.wait_for_exit(Duration::from_secs(20)).await;

    assert!(status.success(), "{status:?}");
    let stored = binary.stored_reply(&conversation, &message).await;
    assert_eq!(stored.status, companion_backend::domain::MessageStatus::Complete);
    assert_eq!(stored.content, pieces.concat());
}

#[tokio::test]
async fn a_send_still_in_its_start_up_steps_at_sigterm_is_generated_and_stored_final() {
    crate::requires_mongodb!();
    let deepseek = FakeDeepSeek::start().await;
    let pieces = ["启动中", "收到", "关机", "信号", "。"];
    deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(200)));
    // The input check answers slowly: the send is in its start-up steps when SIGTERM comes.
    let wechat = wiremock::MockServer::start().await;
    let pass = json!({"errcode": 0, "errmsg": "ok", "result": {"suggest": "pass", "label": 100}, "detail": []});
    wiremock::Mock::given(wiremock::matchers::path("/wxa/msg_sec_check"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw(pass.to_string(), "application/json")
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&wechat)
        .await;
    let wechat_base = wechat.uri();
    let env = [
        ("CONTENT_CHECK", "true"),
        ("WECHAT_OPENAPI_MODE", "cloudrun"),
        ("WECHAT_API_BASE", wechat_base.as_str()),
        ("WECHAT_TIMEOUT_MS", "5000"),
        ("SHUTDOWN_READINESS_DELAY_MS", "0"),
        // A callContainer-style send answers 202 as soon as its start-up steps end.
        ("CHAT_WAIT_TIMEOUT_MS", "100"),
    ];
    let mut binary = start_binary_with(&deepseek, 10, &env).await;
    let (token, conversation) = binary.user_with_conversation().await;
    let send = binary
        .client
        .post(format!("{}/api/conversations/{conversation}/messages", binary.base))
        .bearer_auth(&token)
        .json(&json!({"content": "hi", "stream": false}))
        .send();
    // The client gives up (callContainer cuts, the user leaves): no request holds the
    // server open, only the send's own start-up steps are left running.
    let _ = tokio::time::timeout(Duration::from_millis(500), send).await;

    binary.sigterm();
    let status = binary.wait_for_exit(Duration::from_secs(30)).await;

    assert!(status.success(), "{status:?}");
    let store = mongo_store(&binary.db_name).await;
    let conversation = companion_backend::domain::ConversationId::parse(&conversation).unwrap();
    let history = companion_backend::store::Store::list_messages(&*store, conversation, 10, None).await.unwrap();
    let reply = history.last().expect("messages stored");
    assert_eq!(reply.role, companion_backend::domain::Role::Assistant);
    assert_eq!(history.iter().filter(|m| m.role == companion_backend::domain::Role::User).count(), 1);
    assert_eq!(reply.status, companion_backend::domain::MessageStatus::Complete, "{reply:?}");
    assert_eq!(reply.content, pieces.concat());
}

#[tokio::test]
async fn a_replica_that_only_follows_a_reply_ends_its_followers_with_server_shutdown_and_stops_promptly() {
    crate::requires_mongodb!();
    let deepseek = FakeDeepSeek::start().await;
    let pieces: Vec<String> = (0..60).map(|i| format!("第{i}句。")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(200)));
    let generator = start_binary(&deepseek, 20).await;
    let db = generator.db_name.clone();
    let mut follower = start_binary_with(&deepseek, 20, &[("MONGODB_DB", db.as_str())]).await;
    let (token, conversation, mut reader) = generator.login_and_stream("hi").await;
    let start = reader.next().await.unwrap();
    let message = start.data["assistant_message_id"].as_str().unwrap().to_string();
    let followed = follower
        .client
        .get(format!("{}/api/conversations/{conversation}/messages/{message}/stream", follower.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut following = EventReader::new(followed);
    following.next().await.unwrap();

    follower.sigterm();
    let (events, _) = following.all().await;
    let status = follower.wait_for_exit(Duration::from_secs(8)).await;

    assert!(status.success(), "{status:?}");
    let last = events.last().expect("the follower got a final event");
    assert_eq!((last.name.as_str(), last.data["code"].as_str()), ("error", Some("server_shutdown")));
    let stored = generator.stored_reply(&conversation, &message).await;
    assert_eq!(stored.status, companion_backend::domain::MessageStatus::Streaming, "the reply goes on elsewhere");
    drop(reader);
}

#[tokio::test]
async fn after_a_sigkill_mid_reply_another_replica_settles_it_and_takes_sends_within_twenty_seconds() {
    crate::requires_mongodb!();
    let deepseek = FakeDeepSeek::start().await;
    let pieces: Vec<String> = (0..100).map(|i| format!("第{i}句。")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    deepseek.enqueue(paced(&reply_body(&pieces, "stop"), Duration::from_millis(200)));
    deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["我回来了"]));
    let mut doomed = start_binary(&deepseek, 20).await;
    let db = doomed.db_name.clone();
    let (token, conversation, mut reader) = doomed.login_and_stream("讲个长故事").await;
    let start = reader.next().await.unwrap();
    let message = start.data["assistant_message_id"].as_str().unwrap().to_string();
    reader.next().await.unwrap();
    // Let at least one progress save land, then the replica dies without a word.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    doomed.child.kill().unwrap();
    let killed = Instant::now();
    let survivor = start_binary_with(&deepseek, 20, &[("MONGODB_DB", db.as_str())]).await;

    // Nobody asks: the survivor's sweep settles the reply.
    let settled = loop {
        let stored = doomed.stored_reply(&conversation, &message).await;
        if stored.status != companion_backend::domain::MessageStatus::Streaming {
            break stored;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "still streaming 20 s after the replica died");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // And the conversation takes a new message.
    let sent = loop {
        let response = survivor
            .client
            .post(format!("{}/api/conversations/{conversation}/messages", survivor.base))
            .bearer_auth(&token)
            .json(&json!({"content": "还在吗", "stream": false}))
            .send()
            .await
            .unwrap();
        if response.status() != 409 {
            break response;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "still locked 20 s after the replica died");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    assert_eq!(settled.status, companion_backend::domain::MessageStatus::Incomplete);
    assert_eq!(settled.error.unwrap().code, "generation_interrupted");
    assert!(!settled.content.is_empty() && pieces.concat().starts_with(&settled.content), "the saved part is kept");
    assert_eq!(sent.status(), 200);
    let body: Value = sent.json().await.unwrap();
    assert_eq!(body["assistant_message"]["content"], "我回来了");
    let store: companion_backend::store::DynStore = mongo_store(&db).await;
    let conversation_id = companion_backend::domain::ConversationId::parse(&conversation).unwrap();
    crate::helpers::assert_nothing_lost_or_stuck(&store, conversation_id, &["讲个长故事", "还在吗"]).await;
}
