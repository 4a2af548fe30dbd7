//! The typed configuration every component reads: parsed once from [`Settings`], with
//! durations as `Duration`s, options as enums, lists as `Vec`s.
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::{AppEnv, ConfigError, OpenApiMode, ReviewPolicy, Settings};
use crate::llm::{BreakerPolicy, Dialect};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `GET /metrics` answers only with this bearer token; `None`: no such endpoint.
    pub metrics_token: Option<SecretString>,
    pub host: String,
    pub port: u16,
    pub env: AppEnv,
    pub body_limit_bytes: usize,
    pub body_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub readiness_delay: Duration,
    pub ready_timeout: Duration,
    pub cors_origins: Vec<String>,
    pub commit: String,
}

/// The operator console (`/console`).
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub enabled: bool,
    pub session_ttl: Duration,
    pub allowed_ips: crate::console::IpAllowlist,
    /// The session cookie is `Secure` outside development.
    pub secure_cookie: bool,
    pub bootstrap_admin_password: Option<SecretString>,
    /// What tokens cost, for the overview's estimates.
    pub prices: crate::stats::Prices,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `None`: the in-process store (development only).
    pub uri: Option<SecretString>,
    pub db: String,
    pub max_pool_size: u32,
    pub min_pool_size: u32,
    pub connect_timeout: Duration,
    pub server_selection_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WechatSettings {
    pub appid: Option<String>,
    pub secret: Option<SecretString>,
    pub api_base: String,
    pub timeout: Duration,
    pub trust_cloudrun_headers: bool,
    pub openapi_mode: OpenApiMode,
    /// `dev:<name>` login codes: only without WeChat credentials, never in production.
    pub dev_login: bool,
}

/// Long-term memory: learning facts in the background.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    pub extraction: bool,
    pub debounce: Duration,
    pub max_facts: usize,
    pub off_peak_only: bool,
}

/// One OpenAI-compatible upstream, in failover order.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub base_url: String,
    pub api_key: SecretString,
    /// `None` for DeepSeek: the model a reply asks for (persona, preview or default).
    pub model: Option<String>,
    pub dialect: Dialect,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// In failover order, DeepSeek first; empty: the offline demo companion
    /// (development only, without DEEPSEEK_API_KEY).
    pub upstreams: Vec<UpstreamConfig>,
    /// The model asked of DeepSeek when a persona names none.
    pub default_model: String,
    pub breaker: BreakerPolicy,
    pub h2c: bool,
    pub connections: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub deadline: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub secret: Option<SecretString>,
    pub previous: Option<SecretString>,
    pub lifetime: Duration,
    /// How long after its login a session may still be refreshed.
    pub max_session: Duration,
    pub issuer: String,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Generations running at once on this instance (0: no cap).
    pub max_concurrent_generations: u32,
    pub safety: crate::safety::SafetySettings,
    pub memory: MemorySettings,
    pub personas_file: PathBuf,
    pub default_model: String,
    pub max_tokens: Option<u32>,
    pub message_max_chars: usize,
    pub context_token_budget: usize,
    pub context_max_messages: usize,
    pub wait_timeout: Duration,
    pub keepalive: Duration,
    pub save_interval: Duration,
    pub lease: Duration,
    /// How long a WebSocket may stay open without authenticating.
    pub ws_auth_timeout: Duration,
    /// `PREVIEW_OPENIDS` testers and the model they get.
    pub preview_openids: Vec<String>,
    pub preview_model: Option<String>,
}

/// Request limits and daily quotas; 0 turns one off.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub per_minute: u32,
    pub per_hour: u32,
    pub ip_per_minute: u32,
    pub ip_per_hour: u32,
    pub login_per_minute: u32,
    /// Polls of one reply, per user and per client IP.
    pub poll_per_minute: u32,
    pub ip_poll_per_minute: u32,
    pub proxy_depth: usize,
    pub daily_messages: i64,
    pub daily_tokens: i64,
    /// Replies one user may have running at once (0: no cap).
    pub max_active_replies: u32,
    /// Open WebSockets per user on one replica (0: no cap).
    pub ws_max_sockets_per_user: u32,
    /// Requests one client address may have in flight on one replica (0: no cap).
    pub max_in_flight_per_ip: u32,
}

#[derive(Debug, Clone)]
pub struct ModerationSettings {
    pub enabled: bool,
    pub review: ReviewPolicy,
    pub fail_open: bool,
    pub scene: u8,
    pub window_chars: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub wechat: WechatSettings,
    pub upstreams: UpstreamSettings,
    pub jwt: JwtSettings,
    pub chat: ChatSettings,
    pub limits: LimitSettings,
    pub moderation: ModerationSettings,
    pub console: ConsoleSettings,
    pub rights: crate::rights::RightsSettings,
}

impl Config {
    pub fn is_production(&self) -> bool {
        self.server.env == AppEnv::Production
    }
}

const UNKNOWN_COMMIT: &str = "unknown";

impl Settings {
    /// Checks every value (all problems at once) and builds the typed configuration.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.ensure_fit_to_run()?;
        for warning in self.warnings() {
            tracing::warn!(%warning, "configuration");
        }
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        Ok(Config {
            server: ServerSettings {
                metrics_token: self.metrics_token.clone(),
                host: self.host.clone(),
                port: self.port,
                env: self.app_env,
                body_limit_bytes: self.body_limit_bytes,
                body_read_timeout: ms(self.body_read_timeout_ms),
                max_header_bytes: self.max_header_bytes,
                shutdown_grace: secs(self.shutdown_grace_secs),
                readiness_delay: ms(self.shutdown_readiness_delay_ms),
                ready_timeout: ms(self.ready_timeout_ms),
                cors_origins: self.cors_origin_list(),
                commit: self
                    .app_commit
                    .clone()
                    .or_else(|| option_env!("APP_COMMIT").map(str::to_owned))
                    .filter(|c| !c.trim().is_empty())
                    .unwrap_or_else(|| UNKNOWN_COMMIT.to_string()),
            },
            store: StoreSettings {
                uri: self.mongodb_uri.clone(),
                db: self.mongodb_db.clone(),
                max_pool_size: self.mongodb_max_pool_size,
                min_pool_size: self.mongodb_min_pool_size,
                connect_timeout: ms(self.mongodb_connect_timeout_ms),
                server_selection_timeout: ms(self.mongodb_server_selection_timeout_ms),
            },
            wechat: WechatSettings {
                appid: self.wechat_appid.clone(),
                secret: self.wechat_secret.clone(),
                api_base: self.wechat_api_base.clone(),
                timeout: ms(self.wechat_timeout_ms),
                trust_cloudrun_headers: self.wechat_trust_cloudrun_headers,
                openapi_mode: self.wechat_openapi_mode,
                dev_login: self.dev_login_enabled(),
            },
            upstreams: UpstreamSettings {
                upstreams: self.upstream_list(),
                default_model: self.deepseek_model.clone(),
                breaker: BreakerPolicy {
                    failures: self.upstream_breaker_failures,
                    cooldown: ms(self.upstream_breaker_cooldown_ms),
                },
                h2c: self.upstream_h2c,
                connections: self.upstream_connections,
                connect_timeout: ms(self.deepseek_connect_timeout_ms),
                idle_timeout: ms(self.deepseek_idle_timeout_ms),
                deadline: secs(self.deepseek_deadline_secs),
                max_retries: self.deepseek_max_retries,
                retry_base: ms(self.deepseek_retry_base_ms),
            },
            jwt: JwtSettings {
                secret: self.jwt_secret.clone(),
                previous: self.jwt_secret_previous.clone(),
                lifetime: secs(self.jwt_expires_in),
                max_session: secs(self.session_max_days * 86_400),
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
            },
            chat: ChatSettings {
                max_concurrent_generations: self.max_concurrent_generations,
                safety: self.safety(),
                memory: MemorySettings {
                    extraction: self.memory_extraction,
                    debounce: secs(self.memory_debounce_secs),
                    max_facts: self.memory_max_facts,
                    off_peak_only: self.memory_off_peak_only,
                },
                personas_file: self.personas_file.clone(),
                default_model: self.deepseek_model.clone(),
                max_tokens: self.deepseek_max_tokens,
                message_max_chars: self.message_max_chars,
                context_token_budget: self.context_token_budget,
                context_max_messages: self.context_max_messages,
                wait_timeout: ms(self.chat_wait_timeout_ms),
                keepalive: secs(self.sse_keepalive_secs),
                save_interval: ms(self.progress_save_interval_ms),
                lease: secs(self.generation_lease_secs),
                ws_auth_timeout: ms(self.ws_auth_timeout_ms),
                preview_openids: self.preview_openid_list(),
                preview_model: self.preview_model.clone().filter(|m| !m.trim().is_empty()),
            },
            console: ConsoleSettings {
                enabled: self.console_enabled,
                session_ttl: secs(self.console_session_hours * 3600),
                // Checked by `problems()` before this runs.
                allowed_ips: crate::console::IpAllowlist::parse(&self.console_allowed_ips).unwrap_or_default(),
                secure_cookie: self.app_env == AppEnv::Production,
                bootstrap_admin_password: self.console_bootstrap_admin_password.clone(),
                // Checked by `problems()` before this runs.
                prices: crate::stats::Prices::parse(&self.model_prices, self.peak_price_multiplier)
                    .unwrap_or_else(|_| crate::stats::Prices { models: Vec::new(), peak_multiplier: 1.0 }),
            },
            limits: LimitSettings {
                per_minute: self.rate_limit_per_minute,
                per_hour: self.rate_limit_per_hour,
                ip_per_minute: self.rate_limit_ip_per_minute,
                ip_per_hour: self.rate_limit_ip_per_hour,
                login_per_minute: self.rate_limit_login_per_minute,
                poll_per_minute: self.rate_limit_poll_per_minute,
                ip_poll_per_minute: self.rate_limit_ip_poll_per_minute,
                proxy_depth: self.trusted_proxy_depth,
                daily_messages: self.daily_message_quota,
                daily_tokens: self.daily_token_quota,
                max_active_replies: self.max_active_replies_per_user,
                ws_max_sockets_per_user: self.ws_max_sockets_per_user,
                max_in_flight_per_ip: self.max_in_flight_per_ip,
            },
            rights: crate::rights::RightsSettings {
                report_handling: secs(self.report_handling_days * 86_400),
                reports_per_day: self.reports_per_day,
                deletion_cooling_off: secs(self.account_deletion_cooling_days * 86_400),
                export_ttl: secs(self.export_ttl_hours * 3600),
            },
            moderation: ModerationSettings {
                enabled: self.content_check_enabled(),
                review: self.content_check_review,
                fail_open: self.content_check_fails_open(),
                scene: self.content_check_scene,
                window_chars: self.content_check_window_chars,
            },
        })
    }
}

impl Settings {
    fn safety(&self) -> crate::safety::SafetySettings {
        let list = |csv: &str| -> Vec<String> {
            csv.split([',', '，']).map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
        };
        let minutes = |m: u64| Duration::from_secs(m * 60);
        crate::safety::SafetySettings {
            notices: crate::safety::NoticeTexts {
                ai_disclosure: self.notice_ai_disclosure_text.trim().to_string(),
                usage_reminder: self.notice_usage_reminder_text.trim().to_string(),
                privacy_policy_version: self.privacy_policy_version.trim().to_string(),
                privacy_policy: self.privacy_policy_text.trim().to_string(),
            },
            notices_required: self.notices_required,
            usage_reminder_after: minutes(self.usage_reminder_minutes),
            usage_pause: minutes(self.usage_pause_minutes),
            exit_phrases: list(&self.exit_phrases),
            exit_reply: self.exit_reply.trim().to_string(),
            crisis_phrases: list(&self.crisis_phrases),
            crisis_reply: self.crisis_reply.trim().to_string(),
            takeover_release_text: self.takeover_release_text.trim().to_string(),
            minor_daily_limit: minutes(self.minor_daily_minutes),
            labels: crate::safety::labels::ContentLabels {
                ai: self.ai_content_label.trim().to_string(),
                human: self.human_reply_label.trim().to_string(),
                producer: self.content_producer.trim().to_string(),
            },
        }
    }

    /// DeepSeek, then the fallbacks that are configured; nothing without DEEPSEEK_API_KEY.
    fn upstream_list(&self) -> Vec<UpstreamConfig> {
        let Some(key) = &self.deepseek_api_key else { return Vec::new() };
        let mut upstreams = vec![UpstreamConfig {
            name: "deepseek".into(),
            base_url: self.deepseek_api_url.clone(),
            api_key: key.clone(),
            model: None,
            dialect: Dialect::DeepSeek,
        }];
        let fallbacks = [
            (
                "fallback1",
                &self.fallback1_name,
                &self.fallback1_api_url,
                &self.fallback1_api_key,
                &self.fallback1_model,
                self.fallback1_dialect,
            ),
            (
                "fallback2",
                &self.fallback2_name,
                &self.fallback2_api_url,
                &self.fallback2_api_key,
                &self.fallback2_model,
                self.fallback2_dialect,
            ),
        ];
        for (default_name, name, url, key, model, dialect) in fallbacks {
            if let (Some(url), Some(key), Some(model)) = (url, key, model) {
                upstreams.push(UpstreamConfig {
                    name: name.clone().unwrap_or_else(|| default_name.to_string()),
                    base_url: url.clone(),
                    api_key: key.clone(),
                    model: Some(model.clone()),
                    dialect,
                });
            }
        }
        upstreams
    }
}
