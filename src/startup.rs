//! Builds the application: store, clients, routes, and the server's lifecycle.
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::{from_fn, Condition, DefaultHeaders, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use secrecy::ExposeSecret;
use tracing_actix_web::TracingLogger;

use crate::auth::{resolve_identity, AuthState, IdentityResolver, JwtKeys};
use crate::chat::{ChatConfig, ChatParts, ChatService, Personas, PreviewAccess, Registry};
use crate::configuration::Settings;
use crate::errors::{envelope_for_bare_errors, json_error_handler, path_error_handler, query_error_handler};
use crate::llm::{DeepSeekClient, DeepSeekOptions, LlmClient, OfflineCompanion};
use crate::protection::{
    cors, header_limit_middleware, limit_by_ip, limit_by_user, security_headers, DailyQuota, HeaderLimit,
    ModerationPolicy, Moderator, RateLimiter,
};
use crate::routes;
use crate::routes::LoginPolicy;
use crate::store::{DynStore, InMemoryStore, MongoStore, MongoStoreOptions};
use crate::telemetry::{request_id_middleware, RequestIdRootSpan};
use crate::wechat::{AccessTokens, ContentChecker, WechatClient};

pub const APP_VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_PERSONAS_FILE: &str = "config/personas.toml";

/// What `/health` and the `X-App-Version` header report.
#[derive(Debug, Clone)]
pub struct AppInfo {
    pub version: &'static str,
    pub commit: String,
    pub env: &'static str,
    pub ready_timeout_ms: u64,
}

impl AppInfo {
    fn from_settings(settings: &Settings) -> Self {
        // Set at image build time (Dockerfile ARG), or in the environment.
        let commit = option_env!("APP_COMMIT")
            .map(str::to_owned)
            .or_else(|| std::env::var("APP_COMMIT").ok())
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        AppInfo {
            version: APP_VERSION,
            commit,
            env: settings.app_env.as_str(),
            ready_timeout_ms: settings.ready_timeout_ms,
        }
    }
}

/// Shared shutdown state: readiness turns 503 as soon as shutdown begins.
#[derive(Debug, Default)]
pub struct Lifecycle {
    shutting_down: AtomicBool,
}

impl Lifecycle {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

pub struct Application {
    port: u16,
    server: Server,
    lifecycle: web::Data<Lifecycle>,
    registry: Arc<Registry>,
    shutdown_grace: Duration,
    readiness_delay: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.ensure_fit_to_run()?;
        let store = build_store(&settings).await?;
        Self::build_with_store(settings, store).await
    }

    pub async fn build_with_store(settings: Settings, store: DynStore) -> anyhow::Result<Application> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("could not listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let lifecycle = web::Data::new(Lifecycle::default());
        let registry = Arc::new(Registry::new());
        let chat = build_chat(&settings, store.clone(), registry.clone())?;
        let server = run(listener, &settings, store, chat, lifecycle.clone())?;
        Ok(Application {
            port,
            server,
            lifecycle,
            registry,
            shutdown_grace: settings.shutdown_grace(),
            readiness_delay: Duration::from_millis(settings.shutdown_readiness_delay_ms),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, then shuts down without dropping replies:
    /// `/ready` answers 503 at once, and for `SHUTDOWN_READINESS_DELAY_MS` the server still
    /// accepts (so the platform can route new traffic elsewhere); then it stops accepting,
    /// replies being generated get `SHUTDOWN_GRACE_SECS` and are then stored as
    /// `incomplete`, and in-flight requests finish.
    // The server and its stop are the lifecycle itself, not work a drain should wait for.
    #[allow(clippy::disallowed_methods)]
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        wait_for_signal().await?;
        tracing::info!(grace_secs = self.shutdown_grace.as_secs(), "shutdown signal received; draining");
        self.lifecycle.begin_shutdown();
        tokio::time::sleep(self.readiness_delay).await;
        let stopping = tokio::spawn(async move { handle.stop(true).await });
        self.registry.drain(self.shutdown_grace).await;
        stopping.await.context("server stop panicked")?;
        server.await.context("server task panicked")??;
        tracing::info!("server stopped");
        Ok(())
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = terminate.recv() => {},
            result = tokio::signal::ctrl_c() => result?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn build_store(settings: &Settings) -> anyhow::Result<DynStore> {
    let Some(uri) = &settings.mongodb_uri else {
        tracing::warn!(
            "MONGODB_URI is not set: using the IN-PROCESS store. NOTHING IS PERSISTED; \
             every user and message is lost on restart. Set MONGODB_URI for real use."
        );
        return Ok(Arc::new(InMemoryStore::new()));
    };
    let options = MongoStoreOptions {
        max_pool_size: settings.mongodb_max_pool_size,
        min_pool_size: settings.mongodb_min_pool_size,
        connect_timeout: Duration::from_millis(settings.mongodb_connect_timeout_ms),
        server_selection_timeout: Duration::from_millis(settings.mongodb_server_selection_timeout_ms),
    };
    let store = Arc::new(MongoStore::connect(uri.expose_secret(), &settings.mongodb_db, &options).await?);
    // MongoDB may still be starting (or briefly unreachable): keep serving /health and
    // let /ready report it, while indexes are retried in the background.
    if let Err(e) = store.ensure_indexes().await {
        tracing::warn!(error = ?e, "could not create indexes yet; retrying in the background");
        let retry = store.clone();
        // Not a reply's work: abandoned at shutdown, so not tracked.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(2);
            loop {
                tokio::time::sleep(delay).await;
                match retry.ensure_indexes().await {
                    Ok(()) => break tracing::info!("indexes created"),
                    Err(e) => tracing::warn!(error = ?e, "index creation failed again"),
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        });
    }
    Ok(store)
}

fn build_llm(settings: &Settings) -> anyhow::Result<LlmClient> {
    let Some(api_key) = settings.deepseek_api_key.clone() else {
        tracing::warn!("DEEPSEEK_API_KEY is not set: replies come from the OFFLINE demo companion, not DeepSeek");
        return Ok(LlmClient::Offline(OfflineCompanion { chunk_delay: Duration::from_millis(40) }));
    };
    Ok(LlmClient::DeepSeek(DeepSeekClient::new(DeepSeekOptions {
        base_url: settings.deepseek_api_url.clone(),
        api_key,
        connect_timeout: Duration::from_millis(settings.deepseek_connect_timeout_ms),
        idle_timeout: Duration::from_millis(settings.deepseek_idle_timeout_ms),
        deadline: Duration::from_secs(settings.deepseek_deadline_secs),
        max_retries: settings.deepseek_max_retries,
        retry_base: Duration::from_millis(settings.deepseek_retry_base_ms),
    })?))
}

fn build_moderator(settings: &Settings) -> anyhow::Result<Option<Arc<Moderator>>> {
    if !settings.content_check_enabled() {
        tracing::warn!("content checking (msgSecCheck) is OFF");
        return Ok(None);
    }
    let timeout = Duration::from_millis(settings.wechat_timeout_ms);
    let tokens = match settings.wechat_openapi_mode.as_str() {
        "cloudrun" => AccessTokens::cloud_run(),
        "token" => AccessTokens::stable(
            reqwest::Client::builder().timeout(timeout).build()?,
            settings.wechat_api_base.clone(),
            settings.wechat_appid.clone(),
            settings.wechat_secret.clone(),
        ),
        other => anyhow::bail!("WECHAT_OPENAPI_MODE must be token or cloudrun, not {other:?}"),
    };
    let review_blocks = match settings.content_check_review.as_str() {
        "block" => true,
        "allow" => false,
        other => anyhow::bail!("CONTENT_CHECK_REVIEW must be allow or block, not {other:?}"),
    };
    let checker =
        ContentChecker::new(settings.wechat_api_base.clone(), Arc::new(tokens), settings.content_check_scene, timeout)?;
    Ok(Some(Arc::new(Moderator {
        checker,
        policy: ModerationPolicy {
            review_blocks,
            fail_open: settings.content_check_fails_open(),
            window_chars: settings.content_check_window_chars,
        },
    })))
}

fn build_chat(settings: &Settings, store: DynStore, registry: Arc<Registry>) -> anyhow::Result<ChatService> {
    let is_default = settings.personas_file.as_os_str() == DEFAULT_PERSONAS_FILE;
    let personas = Personas::load(&settings.personas_file, is_default)?;
    Ok(ChatService::new(ChatParts {
        store,
        llm: Arc::new(build_llm(settings)?),
        personas,
        registry,
        config: ChatConfig::from_settings(settings),
        preview: PreviewAccess::new(settings.preview_openid_list(), settings.preview_model.clone()),
        quota: DailyQuota { messages: settings.daily_message_quota, tokens: settings.daily_token_quota },
        moderator: build_moderator(settings)?,
    }))
}

fn run(
    listener: TcpListener,
    settings: &Settings,
    store: DynStore,
    chat: ChatService,
    lifecycle: web::Data<Lifecycle>,
) -> anyhow::Result<Server> {
    let chat = web::Data::new(chat);
    let limiter = Arc::new(RateLimiter::from_settings(settings, store.clone()));
    let cors_origins = settings.cors_origin_list();
    let production = settings.is_production();
    let header_limit = web::Data::new(HeaderLimit(settings.max_header_bytes));
    let info = web::Data::new(AppInfo::from_settings(settings));
    let store_data = web::Data::new(store.clone());
    let auth = Arc::new(AuthState {
        keys: JwtKeys::from_settings(settings),
        trust_cloudrun_headers: settings.wechat_trust_cloudrun_headers,
    });
    let resolver = Arc::new(IdentityResolver { auth: auth.clone(), store: store.clone() });
    let login_policy = web::Data::new(LoginPolicy::from_settings(settings));
    if login_policy.dev_login {
        tracing::warn!("WECHAT_APPID is not set: development login is on (code \"dev:<name>\")");
    }
    let wechat = web::Data::new(WechatClient::new(
        settings.wechat_api_base.clone(),
        settings.wechat_appid.clone(),
        settings.wechat_secret.clone(),
        Duration::from_millis(settings.wechat_timeout_ms),
    )?);
    let body_limit = settings.body_limit_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(Condition::new(!cors_origins.is_empty(), cors(&cors_origins)))
            .wrap(ErrorHandlers::new().default_handler(envelope_for_bare_errors))
            .wrap(TracingLogger::<RequestIdRootSpan>::new())
            .wrap(DefaultHeaders::new().add((header::HeaderName::from_static("x-app-version"), APP_VERSION)))
            .wrap(security_headers(production))
            .wrap(from_fn(header_limit_middleware))
            .wrap(from_fn(request_id_middleware))
            .app_data(web::JsonConfig::default().limit(body_limit).error_handler(json_error_handler))
            .app_data(web::PayloadConfig::default().limit(body_limit))
            .app_data(web::QueryConfig::default().error_handler(query_error_handler))
            .app_data(web::PathConfig::default().error_handler(path_error_handler))
            .app_data(info.clone())
            .app_data(store_data.clone())
            .app_data(lifecycle.clone())
            .app_data(web::Data::from(auth.clone()))
            .app_data(web::Data::from(resolver.clone()))
            .app_data(login_policy.clone())
            .app_data(wechat.clone())
            .app_data(chat.clone())
            .app_data(web::Data::from(limiter.clone()))
            .app_data(header_limit.clone())
            .service(web::resource("/health").get(routes::health))
            .service(web::resource("/ready").get(routes::ready))
            .service(
                web::scope("/api")
                    // Runs bottom-up: per-IP limit, then identity, then per-user limit.
                    .wrap(from_fn({
                        let limiter = limiter.clone();
                        move |req, next| limit_by_user(limiter.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let resolver = resolver.clone();
                        move |req, next| resolve_identity(resolver.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let limiter = limiter.clone();
                        move |req, next| limit_by_ip(limiter.clone(), req, next)
                    }))
                    .service(web::resource("/auth/login").post(routes::login))
                    .service(web::resource("/auth/refresh").post(routes::refresh))
                    .service(web::resource("/me").get(routes::get_me).patch(routes::patch_me))
                    .service(web::resource("/me/usage").get(routes::get_usage))
                    .service(web::resource("/personas").get(routes::list_personas))
                    .service(web::resource("/ws").get(routes::chat_socket))
                    .service(
                        web::resource("/conversations")
                            .get(routes::list_conversations)
                            .post(routes::create_conversation),
                    )
                    .service(
                        web::resource("/conversations/{id}")
                            .get(routes::get_conversation)
                            .patch(routes::rename_conversation)
                            .delete(routes::delete_conversation),
                    )
                    .service(
                        web::resource("/conversations/{id}/messages")
                            .get(routes::list_messages)
                            .post(routes::send_message),
                    )
                    .service(web::resource("/conversations/{id}/messages/{message_id}").get(routes::get_message))
                    .service(web::resource("/conversations/{id}/messages/{message_id}/stream").get(routes::reattach)),
            )
    })
    .disable_signals()
    // Longer than the generation grace, so streams can send their final event.
    .shutdown_timeout(settings.shutdown_grace_secs + 5)
    .listen(listener)?
    .run();
    Ok(server)
}
