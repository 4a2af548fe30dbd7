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
use tracing_actix_web::TracingLogger;

use crate::auth::{resolve_identity, AuthState, IdentityResolver, JwtKeys};
use crate::chat::reply::Sweeper;
use crate::chat::{ChatService, LearnerSettings, Registry};
use crate::configuration::{Config, Settings, UpstreamSettings};
use crate::errors::{envelope_for_bare_errors, json_error_handler, path_error_handler, query_error_handler};
use crate::llm::{check_models, LlmClient, MODEL_CHECK_TIMEOUT};
use crate::protection::{
    cap_in_flight, cors, guard_body, header_limit_middleware, limit_by_ip, limit_by_user, limit_logins,
    require_storage, security_headers, BodyGuard, HeaderLimit, InFlight, RateLimiter, StoreHealth,
};
use crate::routes;
use crate::routes::{LoginPolicy, MetricsAccess};
use crate::store::{CountingStore, DynStore};
use crate::telemetry::{request_context, RequestIdRootSpan};
use crate::wechat::WechatClient;
use tokio_util::sync::CancellationToken;

pub const APP_VERSION: &str = env!("CARGO_PKG_VERSION");

mod components;
pub use components::build_store;
use components::{build_chat, build_llm, ChatSections};

/// What `/health` and the `X-App-Version` header report.
#[derive(Debug, Clone)]
pub struct AppInfo {
    pub version: &'static str,
    pub commit: String,
    pub env: &'static str,
    pub ready_timeout_ms: u64,
}

impl AppInfo {
    fn from_config(config: &Config) -> Self {
        AppInfo {
            version: APP_VERSION,
            commit: config.server.commit.clone(),
            env: config.server.env.as_str(),
            ready_timeout_ms: config.server.ready_timeout.as_millis() as u64,
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
    /// Stops the abandoned-reply sweeper when shutdown begins.
    sweeping: CancellationToken,
    shutdown_grace: Duration,
    readiness_delay: Duration,
}

/// How often accounts due for deletion are looked for.
const DELETION_SWEEP: Duration = Duration::from_secs(60);
/// How often a replica looks for due memory jobs, how long it may hold one, how often a
/// failing one is tried, and how many new messages one run learns from at most.
const MEMORY_POLL: Duration = Duration::from_secs(2);
/// How often refusals counted in memory are added to the day's figures.
const TALLY_FLUSH: Duration = Duration::from_secs(5);
/// How often each replica re-reads the companions (a console edit is in effect everywhere within this).
const PERSONA_REFRESH: Duration = Duration::from_secs(3);
const MEMORY_JOB_LEASE: Duration = Duration::from_secs(120);
const MEMORY_MAX_ATTEMPTS: u32 = 3;
const MEMORY_TURNS: usize = 40;

/// Warns (never refuses to start) when an upstream does not list its configured model.
fn check_models_in_background(llm: &Arc<LlmClient>, upstreams: &UpstreamSettings) {
    if !matches!(**llm, LlmClient::Upstreams(_)) {
        return;
    }
    let (llm, default_model) = (llm.clone(), upstreams.default_model.clone());
    // A one-off look at start-up that holds nothing up; the drain need not wait for it.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        if let LlmClient::Upstreams(pool) = &*llm {
            check_models(pool, &default_model, MODEL_CHECK_TIMEOUT).await;
        }
    });
}

/// `CONSOLE_BOOTSTRAP_ADMIN_PASSWORD`: the first admin. A failure is logged, never fatal
/// (the store may still be starting; the next start tries again).
async fn bootstrap_console_admin(config: &Config, store: &DynStore) {
    let Some(password) = config.console.bootstrap_admin_password.clone().filter(|_| config.console.enabled) else {
        return;
    };
    match crate::console::accounts::bootstrap_admin(store, password).await {
        Ok(true) => tracing::warn!(
            "console: operator admin created from CONSOLE_BOOTSTRAP_ADMIN_PASSWORD; sign in, change the password, \
             and remove the setting"
        ),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "console: could not create the bootstrap admin"),
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let config = settings.config()?;
        let store = build_store(&config.store).await?;
        Self::start(config, store).await
    }

    /// With a store the caller made (tests share one between app instances).
    pub async fn build_with_store(settings: Settings, store: DynStore) -> anyhow::Result<Application> {
        Self::start(settings.config()?, store).await
    }

    async fn start(config: Config, store: DynStore) -> anyhow::Result<Application> {
        // Every store call is counted, for `/metrics`.
        let counting = Arc::new(CountingStore::new(store));
        let store: DynStore = counting.clone();
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("could not listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let lifecycle = web::Data::new(Lifecycle::default());
        let registry = Arc::new(Registry::new());
        let sections = ChatSections {
            chat: &config.chat,
            upstreams: &config.upstreams,
            limits: &config.limits,
            moderation: &config.moderation,
            wechat: &config.wechat,
        };
        bootstrap_console_admin(&config, &store).await;
        let llm = Arc::new(build_llm(&config.upstreams)?);
        check_models_in_background(&llm, &config.upstreams);
        let chat = build_chat(sections, llm.clone(), store.clone(), registry.clone())?;
        counting.observe_with(chat.instruments().clone());
        let sweeping = CancellationToken::new();
        let health = Arc::new(StoreHealth::default());
        // Like the sweeper: runs until shutdown begins, outside the drain.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(health.clone().watch(store.clone(), sweeping.clone()));
        // Often enough that a dead replica's reply is settled soon after its lease runs out.
        let every = (config.chat.lease / 4).min(Duration::from_secs(2));
        let sweeper = Sweeper { store: store.clone(), registry: registry.clone(), every };
        // Runs until shutdown begins; not a reply's work, so not tracked by the drain.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(sweeper.run(sweeping.clone()));
        // The store's companions (seeded from the personas file when it has none), re-read
        // every few seconds: an edit in the console reaches every replica without a new version.
        let catalog = chat.persona_catalog().clone();
        if let Err(e) = catalog.sync(&store).await {
            tracing::warn!(error = ?e, "could not read the stored personas yet; using the personas file");
        }
        // Like the sweeper: upkeep until shutdown begins, not a reply's work.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(catalog.watch(store.clone(), PERSONA_REFRESH, sweeping.clone()));
        // Refusals counted here reach the day's figures every few seconds.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(chat.tallies().clone().flush_every(store.clone(), TALLY_FLUSH, sweeping.clone()));
        if config.chat.memory.extraction {
            let learner = chat.learner(LearnerSettings {
                model: config.upstreams.default_model.clone(),
                poll: MEMORY_POLL,
                lease: MEMORY_JOB_LEASE,
                max_attempts: MEMORY_MAX_ATTEMPTS,
                max_facts: config.chat.memory.max_facts,
                turns: MEMORY_TURNS,
                context_token_budget: config.chat.context_token_budget,
                context_max_messages: config.chat.context_max_messages,
                off_peak_only: config.chat.memory.off_peak_only,
            });
            // Like the sweeper: background upkeep until shutdown begins; a job cut short is
            // taken over by any replica once its lease runs out.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(learner.run(sweeping.clone()));
        }
        // Accounts whose cooling-off period ended are erased (upkeep, like the sweeper).
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(crate::rights::erase_due_accounts(store.clone(), DELETION_SWEEP, sweeping.clone()));
        let server = run(listener, &config, Served { store, counting, chat }, lifecycle.clone(), health)?;
        Ok(Application {
            port,
            server,
            lifecycle,
            registry,
            sweeping,
            shutdown_grace: config.server.shutdown_grace,
            readiness_delay: config.server.readiness_delay,
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
        self.sweeping.cancel();
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

/// What the HTTP server serves from.
struct Served {
    store: DynStore,
    counting: Arc<CountingStore>,
    chat: ChatService,
}

fn run(
    listener: TcpListener,
    config: &Config,
    served: Served,
    lifecycle: web::Data<Lifecycle>,
    health: Arc<StoreHealth>,
) -> anyhow::Result<Server> {
    let Served { store, counting, chat } = served;
    let instruments = chat.instruments().clone();
    let chat = web::Data::new(chat);
    let rights = web::Data::new(crate::rights::UserRights {
        store: store.clone(),
        registry: chat.registry().clone(),
        chat: chat.clone().into_inner(),
        settings: config.rights.clone(),
    });
    let counting = web::Data::new(counting);
    let metrics_access = web::Data::new(MetricsAccess { token: config.server.metrics_token.clone() });
    let limiter = Arc::new(RateLimiter::new(&config.limits, store.clone()).with_tallies(chat.tallies().clone()));
    let cors_origins = config.server.cors_origins.clone();
    let production = config.is_production();
    let header_limit = HeaderLimit(config.server.max_header_bytes);
    let info = web::Data::new(AppInfo::from_config(config));
    let store_data = web::Data::new(store.clone());
    let auth = Arc::new(AuthState {
        keys: JwtKeys::from_settings(&config.jwt),
        trust_cloudrun_headers: config.wechat.trust_cloudrun_headers,
        max_session: config.jwt.max_session,
    });
    let resolver =
        Arc::new(IdentityResolver { auth: auth.clone(), store: store.clone(), sessions: Default::default() });
    let login_policy = web::Data::new(LoginPolicy { dev_login: config.wechat.dev_login });
    if login_policy.dev_login {
        tracing::warn!("WECHAT_APPID is not set: development login is on (code \"dev:<name>\")");
    }
    let wechat = web::Data::new(WechatClient::new(
        config.wechat.api_base.clone(),
        config.wechat.appid.clone(),
        config.wechat.secret.clone(),
        config.wechat.timeout,
    )?);
    let body_limit = config.server.body_limit_bytes;
    let sockets = web::Data::new(routes::SocketSlots::new(config.limits.ws_max_sockets_per_user as usize));
    let proxy_depth = config.limits.proxy_depth;
    let in_flight = Arc::new(InFlight::new(config.limits.max_in_flight_per_ip as usize));
    let body_guard = Arc::new(BodyGuard { limit_bytes: body_limit, read_timeout: config.server.body_read_timeout });
    let console = config.console.enabled.then(|| {
        web::Data::new(crate::console::http::ConsoleState {
            store: store.clone(),
            settings: config.console.clone(),
            limiter: limiter.clone(),
        })
    });
    let server = HttpServer::new(move || {
        App::new()
            .wrap(Condition::new(!cors_origins.is_empty(), cors(&cors_origins)))
            .wrap(ErrorHandlers::new().default_handler(envelope_for_bare_errors))
            .wrap(TracingLogger::<RequestIdRootSpan>::new())
            .wrap(DefaultHeaders::new().add((header::HeaderName::from_static("x-app-version"), APP_VERSION)))
            .wrap(security_headers(production))
            .wrap(from_fn(move |req, next| header_limit_middleware(header_limit, req, next)))
            .wrap(from_fn({
                let instruments = instruments.clone();
                move |req, next| crate::instruments::count_requests(instruments.clone(), req, next)
            }))
            .wrap(from_fn(move |req, next| request_context(proxy_depth, req, next)))
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
            .app_data(rights.clone())
            .app_data(web::Data::from(limiter.clone()))
            .app_data(sockets.clone())
            .app_data(counting.clone())
            .app_data(metrics_access.clone())
            .service(web::resource("/health").get(routes::health))
            .service(web::resource("/metrics").get(routes::metrics))
            .service(web::resource("/ready").get(routes::ready))
            .service(
                web::scope("/api")
                    // Runs bottom-up: requests in flight per IP, storage up?, per-IP limit, the body (read whole, bounded), identity,
                    // per-user limit.
                    .wrap(from_fn({
                        let limiter = limiter.clone();
                        move |req, next| limit_by_user(limiter.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let resolver = resolver.clone();
                        move |req, next| resolve_identity(resolver.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let body_guard = body_guard.clone();
                        move |req, next| guard_body(body_guard.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let limiter = limiter.clone();
                        move |req, next| limit_by_ip(limiter.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let health = health.clone();
                        move |req, next| require_storage(health.clone(), req, next)
                    }))
                    .wrap(from_fn({
                        let in_flight = in_flight.clone();
                        move |req, next| cap_in_flight(in_flight.clone(), req, next)
                    }))
                    .service(web::resource("/auth/login").post(routes::login).wrap(from_fn({
                        let limiter = limiter.clone();
                        move |req, next| limit_logins(limiter.clone(), req, next)
                    })))
                    .service(web::resource("/auth/refresh").post(routes::refresh))
                    .service(web::resource("/auth/logout").post(routes::logout))
                    .service(web::resource("/me").get(routes::get_me).patch(routes::patch_me))
                    .service(web::resource("/me/usage").get(routes::get_usage))
                    .service(web::resource("/me/notices/{kind}/ack").post(routes::acknowledge_notice))
                    .service(web::resource("/me/minor-mode").put(routes::set_minor_mode))
                    .service(web::resource("/me/exports").post(routes::start_export))
                    .service(web::resource("/me/exports/{id}").get(routes::download_export))
                    .service(web::resource("/me/deletion").post(routes::delete_account).delete(routes::cancel_deletion))
                    .service(web::resource("/reports").get(routes::list_reports).post(routes::file_report))
                    .service(web::resource("/personas").get(routes::list_personas))
                    .service(
                        web::resource("/personas/{persona_id}/memories")
                            .get(routes::list_memories)
                            .delete(routes::forget_all_memories),
                    )
                    .service(
                        web::resource("/personas/{persona_id}/memories/{memory_id}")
                            .patch(routes::correct_memory)
                            .delete(routes::forget_memory),
                    )
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
                    .service(web::resource("/conversations/{id}/messages/{message_id}/stream").get(routes::reattach))
                    .service(
                        web::resource("/conversations/{id}/messages/{message_id}/cancel").post(routes::cancel_reply),
                    ),
            )
            .configure(|cfg| {
                if let Some(console) = &console {
                    crate::console::configure(cfg, console.clone(), health.clone(), body_guard.clone());
                }
            })
    })
    .disable_signals()
    // Without it a stream's first `delta` after `start` waits for the client's delayed ACK
    // (Nagle's algorithm): about 20 ms added to every first token.
    .tcp_nodelay(true)
    // Longer than the grace plus the replies' last save, so streams can send their final event.
    .shutdown_timeout((config.server.shutdown_grace + crate::chat::reply::CANCELLED_SAVE_WINDOW).as_secs() + 2)
    .listen(listener)?
    .run();
    Ok(server)
}
