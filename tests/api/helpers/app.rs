use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use companion_backend::configuration::Settings;
use companion_backend::startup::Application;
use companion_backend::store::{DynStore, InMemoryStore, MongoStore, MongoStoreOptions};
use companion_backend::telemetry::{get_subscriber, init_subscriber};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::fake_deepseek::FakeDeepSeek;

pub const TEST_APPID: &str = "wx00000000test0001";
pub const TEST_APP_SECRET: &str = "app-secret-that-must-never-leak-0001";
pub const TEST_DEEPSEEK_KEY: &str = "sk-deepseek-key-that-must-never-leak";
pub const TEST_JWT_SECRET: &str = "jwt-secret-for-tests-only-0123456789abcdef";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        init_subscriber(get_subscriber("test", "debug", std::io::stdout));
    } else {
        init_subscriber(get_subscriber("test", "error", std::io::sink));
    }
});

/// The MongoDB test server, when the tests run under `./scripts/test.sh`. Without it
/// (`cargo test` alone) the API tests run on the in-process store, and the tests that
/// need MongoDB itself say they were skipped.
pub fn mongodb_uri() -> Option<String> {
    std::env::var("TEST_MONGODB_URI").ok().filter(|uri| !uri.trim().is_empty())
}

static NOTICE: std::sync::Once = std::sync::Once::new();

/// Ends a test that needs the MongoDB test server when there is none.
#[macro_export]
macro_rules! requires_mongodb {
    () => {
        if $crate::helpers::mongodb_uri().is_none() {
            eprintln!("skipped: needs the MongoDB test server; run ./scripts/test.sh");
            return;
        }
    };
}

/// The store behind database `db_name`: MongoDB when the test server runs, else one
/// in-process store per name (so two apps given one name share it, like replicas).
pub async fn test_store(db_name: &str) -> DynStore {
    if mongodb_uri().is_some() {
        return mongo_store(db_name).await;
    }
    NOTICE.call_once(|| {
        eprintln!(
            "TEST_MONGODB_URI is not set: API tests use the in-process store; ./scripts/test.sh runs them on MongoDB"
        )
    });
    static STORES: LazyLock<std::sync::Mutex<HashMap<String, DynStore>>> = LazyLock::new(Default::default);
    let mut stores = STORES.lock().unwrap();
    stores.entry(db_name.to_string()).or_insert_with(|| Arc::new(InMemoryStore::new())).clone()
}

pub fn unique_db_name() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

pub fn store_options() -> MongoStoreOptions {
    MongoStoreOptions {
        max_pool_size: 10,
        min_pool_size: 0,
        connect_timeout: std::time::Duration::from_secs(10),
        server_selection_timeout: std::time::Duration::from_secs(15),
    }
}

pub async fn mongo_store(db_name: &str) -> Arc<MongoStore> {
    let uri = mongodb_uri().expect("the MongoDB test server (TEST_MONGODB_URI)");
    let store = MongoStore::connect(&uri, db_name, &store_options()).await.expect("connect to the MongoDB test server");
    store.ensure_indexes().await.expect("create indexes");
    Arc::new(store)
}

/// Settings as a fresh checkout has them, pointed at loopback only.
pub fn base_settings() -> Settings {
    let mut settings = Settings::from_sources(&HashMap::new(), None).expect("default settings");
    settings.host = "127.0.0.1".into();
    settings.port = 0;
    settings.mongodb_uri = mongodb_uri().map(SecretString::from);
    settings.mongodb_db = unique_db_name();
    settings.mongodb_min_pool_size = 0;
    // The test server answers one request at a time and slowly under four tests' load: a
    // wider pool and a longer wait than production needs, so a busy moment is not a 503.
    settings.mongodb_max_pool_size = 10;
    settings.mongodb_connect_timeout_ms = 10_000;
    settings.mongodb_server_selection_timeout_ms = 15_000;
    settings.wechat_api_base = "http://127.0.0.1:9".into();
    settings.wechat_appid = Some(TEST_APPID.into());
    settings.wechat_secret = Some(SecretString::from(TEST_APP_SECRET));
    settings.wechat_timeout_ms = 1000;
    settings.jwt_secret = Some(SecretString::from(TEST_JWT_SECRET));
    settings.deepseek_api_url = "http://127.0.0.1:9".into();
    settings.deepseek_api_key = Some(SecretString::from(TEST_DEEPSEEK_KEY));
    settings.deepseek_idle_timeout_ms = 3000;
    settings.deepseek_retry_base_ms = 20;
    settings.shutdown_grace_secs = 2;
    settings.shutdown_readiness_delay_ms = 0;
    settings.content_check = Some(false);
    settings
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: DynStore,
    pub db_name: String,
    pub wechat: MockServer,
    pub deepseek: FakeDeepSeek,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(configure, None).await
}

type Wrap = Box<dyn FnOnce(DynStore) -> DynStore>;

/// An app whose store is the test store as `wrap` decorates it (a counting wrapper).
pub async fn spawn_app_wrapping(
    configure: impl FnOnce(&mut Settings),
    wrap: impl FnOnce(DynStore) -> DynStore + 'static,
) -> TestApp {
    spawn(configure, Some(Box::new(wrap))).await
}

async fn spawn(configure: impl FnOnce(&mut Settings), wrap: Option<Wrap>) -> TestApp {
    LazyLock::force(&TRACING);
    let wechat = MockServer::start().await;
    let deepseek = FakeDeepSeek::start().await;
    let mut settings = base_settings();
    settings.wechat_api_base = wechat.uri();
    settings.deepseek_api_url = deepseek.url.clone();
    configure(&mut settings);
    if counts_per_minute(&settings) {
        clear_of_a_minute_boundary().await;
    }
    let db_name = settings.mongodb_db.clone();
    let application = if settings.mongodb_uri.is_none() {
        // No MongoDB test server: the in-process store, shared by apps given one name.
        settings.ensure_fit_to_run().expect("settings fit to run");
        let store = test_store(&db_name).await;
        Application::build_with_store(settings, wrap.map_or(store.clone(), |wrap| wrap(store))).await
    } else if let Some(wrap) = wrap {
        let store: DynStore = mongo_store(&db_name).await;
        Application::build_with_store(settings, wrap(store)).await
    } else {
        Application::build(settings).await
    }
    .expect("build application");
    let port = application.port();
    tokio::spawn(application.run_until_stopped());
    let store = test_store(&db_name).await;
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        store,
        db_name,
        wechat,
        deepseek,
    }
}

/// Whether a test counts against a per-minute limit it lowered (windows are whole UTC
/// minutes); the defaults are never reached by a test.
fn counts_per_minute(s: &Settings) -> bool {
    let lowered = |limit: u32, below: u32| (1..below).contains(&limit);
    lowered(s.rate_limit_per_minute, 50)
        || lowered(s.rate_limit_ip_per_minute, 50)
        || lowered(s.rate_limit_login_per_minute, 10)
        || lowered(s.rate_limit_poll_per_minute, 50)
        || lowered(s.rate_limit_ip_poll_per_minute, 50)
}

/// Waits out the last 15 s of a minute: a test counting requests against a per-minute limit
/// must not see its window end halfway (the count would start again and the test flake).
pub async fn clear_of_a_minute_boundary() {
    let second = chrono::Utc::now().timestamp_millis().rem_euclid(60_000);
    if second >= 45_000 {
        tokio::time::sleep(std::time::Duration::from_millis((60_000 - second + 200) as u64)).await;
    }
}

/// An app as a newcomer runs it: no WeChat credentials, so `dev:<name>` logs in.
pub async fn spawn_dev_app() -> TestApp {
    spawn_app_with(|s| {
        s.wechat_appid = None;
        s.wechat_secret = None;
    })
    .await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get_health(&self) -> reqwest::Response {
        self.client.get(self.url("/health")).send().await.expect("GET /health")
    }

    pub async fn get_ready(&self) -> reqwest::Response {
        self.client.get(self.url("/ready")).send().await.expect("GET /ready")
    }

    pub async fn post_login(&self, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/api/auth/login")).json(body).send().await.expect("POST login")
    }

    pub async fn post_refresh(&self, token: &str) -> reqwest::Response {
        self.client.post(self.url("/api/auth/refresh")).bearer_auth(token).send().await.expect("POST refresh")
    }

    pub async fn get_me(&self, token: &str) -> reqwest::Response {
        self.client.get(self.url("/api/me")).bearer_auth(token).send().await.expect("GET /api/me")
    }

    pub async fn patch_me(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client.patch(self.url("/api/me")).bearer_auth(token).json(body).send().await.expect("PATCH /api/me")
    }

    /// Makes the fake WeChat answer `code` with a raw body (as text/plain, like WeChat).
    pub async fn wechat_answers(&self, code: &str, status: u16, body: &str) {
        Mock::given(method("GET"))
            .and(path("/sns/jscode2session"))
            .and(query_param("appid", TEST_APPID))
            .and(query_param("secret", TEST_APP_SECRET))
            .and(query_param("js_code", code))
            .and(query_param("grant_type", "authorization_code"))
            .respond_with(ResponseTemplate::new(status).set_body_raw(body.to_owned(), "text/plain"))
            .mount(&self.wechat)
            .await;
    }

    pub async fn wechat_knows(&self, code: &str, openid: &str) {
        let body = json!({"openid": openid, "session_key": "SESSION-KEY-MUST-NOT-LEAK", "unionid": null}).to_string();
        self.wechat_answers(code, 200, &body).await;
    }

    /// Logs in through the fake WeChat; returns (token, user id).
    pub async fn login_as(&self, openid: &str) -> (String, String) {
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        self.wechat_knows(&code, openid).await;
        let response = self.post_login(&json!({"code": code})).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "login failed: {body}");
        let token = body["token"].as_str().unwrap().to_string();
        // As the mini-program does: the sign-in's AI disclosure is shown and acknowledged.
        self.acknowledge(&token, &body["notices"]).await;
        (token, body["user"]["id"].as_str().unwrap().to_string())
    }

    /// Acknowledges each of `notices` (as listed by login or `GET /api/me`).
    pub async fn acknowledge(&self, token: &str, notices: &Value) {
        for notice in notices.as_array().into_iter().flatten() {
            let path = format!("/api/me/notices/{}/ack", notice["kind"].as_str().unwrap());
            let body = json!({"version": notice["version"]});
            let acked = self.client.post(self.url(&path)).bearer_auth(token).json(&body).send().await.unwrap();
            assert_eq!(acked.status(), 204, "acknowledging {notice}");
        }
    }

    /// Logs in without acknowledging what the sign-in asks the user to read.
    pub async fn login_leaving_notices(&self, openid: &str) -> (String, String) {
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        self.wechat_knows(&code, openid).await;
        let response = self.post_login(&json!({"code": code})).await;
        assert_eq!(response.status(), 200, "login failed");
        let body: Value = response.json().await.unwrap();
        (body["token"].as_str().unwrap().to_string(), body["user"]["id"].as_str().unwrap().to_string())
    }
}

/// Asserts the error envelope and returns its code.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error.code in {body}"));
    assert!(body["error"]["message"].is_string(), "no error.message in {body}");
    code.to_string()
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The invariants a fault must not break, checked on one conversation: no reply left
/// `streaming`, no lease still held, and each of `asked` stored exactly once as a user
/// message.
pub async fn assert_nothing_lost_or_stuck(
    store: &DynStore,
    conversation: companion_backend::domain::ConversationId,
    asked: &[&str],
) {
    use companion_backend::domain::{MessageStatus, Role};
    let messages = store.list_messages(conversation, 500, None).await.expect("read the conversation");
    let stuck: Vec<_> = messages.iter().filter(|m| m.status == MessageStatus::Streaming).map(|m| m.id).collect();
    assert!(stuck.is_empty(), "replies stuck in streaming: {stuck:?}");
    let far_future = companion_backend::domain::now() + chrono::Duration::days(365);
    let held = store.expired_leases(far_future, 10_000).await.expect("read leases");
    assert!(!held.iter().any(|l| l.conversation == conversation), "a lease is still held: {held:?}");
    for text in asked {
        let copies = messages.iter().filter(|m| m.role == Role::User && m.content == *text).count();
        assert_eq!(copies, 1, "the user's message {text:?} is stored {copies} times");
    }
}

/// A message as a test puts it straight into the store (what a dead replica left behind,
/// or an earlier attempt stored).
pub fn stored_message(
    conversation: companion_backend::domain::ConversationId,
    user: companion_backend::domain::UserId,
    role: companion_backend::domain::Role,
    content: &str,
    status: companion_backend::domain::MessageStatus,
    at: chrono::DateTime<chrono::Utc>,
) -> companion_backend::domain::Message {
    companion_backend::domain::Message {
        id: companion_backend::domain::MessageId::new(),
        conversation_id: conversation,
        user_id: user,
        role,
        content: content.into(),
        status,
        created_at: at,
        reasoning_content: None,
        usage: None,
        finish_reason: None,
        error: None,
        served: None,
        updated_at: at,
    }
}

/// The test virtualenv's Python (with the `openai` SDK and selenium; `scripts/test.sh`
/// installs both and sets `OPENAI_SDK_PYTHON`).
pub fn venv_python() -> String {
    std::env::var("OPENAI_SDK_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/venv/bin/python").to_string())
}
