//! Layered settings: built-in defaults → optional config file → environment.
//!
//! Environment variable names are the flat ones users set in the Cloud Run console
//! (`PORT`, `MONGODB_URI`, …). Empty values count as unset, because `.env` files and
//! console forms are usually left with `KEY=` lines.
//!
//! [`Settings`] is that flat form; [`Settings::config`] checks it once (every problem
//! listed together, no silent clamps) and turns it into typed sections ([`Config`]),
//! which is all the rest of the application reads.
mod sections;

pub use sections::{
    ChatSettings, Config, ConsoleSettings, JwtSettings, LimitSettings, ModerationSettings, ServerSettings,
    StoreSettings, UpstreamConfig, UpstreamSettings, WechatSettings,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::llm::Dialect;

pub const DEFAULT_CONFIG_FILE: &str = "config/app.toml";
const MIN_JWT_SECRET_BYTES: usize = 32;
/// A secret of one repeated letter is long and worthless.
const MIN_DISTINCT_SECRET_CHARS: usize = 10;
/// Token lifetimes past this are allowed but warned about.
const MAX_QUIET_TOKEN_LIFETIME_SECS: u64 = 30 * 86_400;
/// The polled path answers within this, under callContainer's 15 s cut.
const MAX_CHAT_WAIT_MS: u64 = 14_000;
/// Values copied from guides and examples that must never sign production tokens.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "change-me",
    "changeme",
    "secret",
    "your-secret",
    "your_jwt_secret",
    "jwt-secret",
    "replace-with-at-least-32-random-bytes-of-secret",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    Development,
    Production,
}

/// What a `review` verdict of msgSecCheck does (`CONTENT_CHECK_REVIEW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewPolicy {
    Allow,
    Block,
}

/// How WeChat open APIs are called (`WECHAT_OPENAPI_MODE`): with a `stable_token`, or
/// through Cloud Run's 开放接口服务 with no token at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenApiMode {
    Token,
    Cloudrun,
}

impl AppEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            AppEnv::Development => "development",
            AppEnv::Production => "production",
        }
    }
}

/// A metrics token shorter than this is guessable.
const MIN_METRICS_TOKEN_BYTES: usize = 16;

/// Every setting, flat, exactly as the environment names them (lower-cased).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub app_env: AppEnv,
    pub body_limit_bytes: usize,
    /// A request body must arrive whole within this many milliseconds.
    pub body_read_timeout_ms: u64,
    pub max_header_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub shutdown_readiness_delay_ms: u64,
    pub ready_timeout_ms: u64,

    pub mongodb_uri: Option<SecretString>,
    pub mongodb_db: String,
    pub mongodb_max_pool_size: u32,
    pub mongodb_min_pool_size: u32,
    pub mongodb_connect_timeout_ms: u64,
    pub mongodb_server_selection_timeout_ms: u64,

    pub wechat_appid: Option<String>,
    pub wechat_secret: Option<SecretString>,
    pub wechat_api_base: String,
    pub wechat_timeout_ms: u64,
    pub wechat_trust_cloudrun_headers: bool,

    pub deepseek_api_key: Option<SecretString>,
    pub deepseek_api_url: String,
    pub deepseek_model: String,
    pub deepseek_connect_timeout_ms: u64,
    pub deepseek_idle_timeout_ms: u64,
    pub deepseek_deadline_secs: u64,
    pub deepseek_max_retries: u32,
    pub deepseek_retry_base_ms: u64,
    pub deepseek_max_tokens: Option<u32>,

    /// Fallback upstreams, tried in order after DeepSeek (see README, "Upstreams").
    pub fallback1_name: Option<String>,
    pub fallback1_api_url: Option<String>,
    pub fallback1_api_key: Option<SecretString>,
    pub fallback1_model: Option<String>,
    pub fallback1_dialect: Dialect,
    pub fallback2_name: Option<String>,
    pub fallback2_api_url: Option<String>,
    pub fallback2_api_key: Option<SecretString>,
    pub fallback2_model: Option<String>,
    pub fallback2_dialect: Dialect,
    /// Consecutive failures that open an upstream's circuit (0: never).
    pub upstream_breaker_failures: u32,
    pub upstream_breaker_cooldown_ms: u64,
    /// `http://` upstreams speak HTTP/2 without TLS (h2c, prior knowledge).
    pub upstream_h2c: bool,
    /// Connections per upstream that requests are spread over.
    pub upstream_connections: usize,
    /// Generations running at once on this instance (0: no cap).
    pub max_concurrent_generations: u32,

    /// Learn facts about users from conversations (in the background).
    pub memory_extraction: bool,
    /// Quiet time after a reply before its conversation is learned from (debounce).
    pub memory_debounce_secs: u64,
    /// Facts kept per user and persona; the least recently updated go first.
    pub memory_max_facts: usize,
    /// Learn only outside DeepSeek's peak hours (Beijing weekdays 09–12, 14–18).
    pub memory_off_peak_only: bool,

    pub jwt_secret: Option<SecretString>,
    pub jwt_secret_previous: Option<SecretString>,
    pub jwt_expires_in: u64,
    /// Days after a login that its session may still be refreshed; then log in again.
    pub session_max_days: u64,
    pub jwt_issuer: String,
    pub jwt_audience: String,

    pub personas_file: PathBuf,
    pub message_max_chars: usize,
    pub context_token_budget: usize,
    pub context_max_messages: usize,
    pub chat_wait_timeout_ms: u64,
    pub sse_keepalive_secs: u64,
    pub progress_save_interval_ms: u64,
    pub generation_lease_secs: u64,
    pub ws_auth_timeout_ms: u64,

    /// Requests per user (and, with the `_ip_` variants, per client IP); 0 turns a limit off.
    pub rate_limit_per_minute: u32,
    pub rate_limit_per_hour: u32,
    pub rate_limit_ip_per_minute: u32,
    pub rate_limit_ip_per_hour: u32,
    pub rate_limit_login_per_minute: u32,
    /// Polls of one reply (the callContainer path) per user and per client IP, per minute.
    pub rate_limit_poll_per_minute: u32,
    pub rate_limit_ip_poll_per_minute: u32,
    /// How many proxies in front of us append to X-Forwarded-For (Cloud Run: 1).
    pub trusted_proxy_depth: usize,
    pub daily_message_quota: i64,
    /// Replies one user may have running at once, across replicas (0: no cap).
    pub max_active_replies_per_user: u32,
    /// Open WebSockets per user on one replica (0 = no cap).
    pub ws_max_sockets_per_user: u32,
    /// Requests one client address may have in flight at once on one replica (0 = no cap).
    pub max_in_flight_per_ip: u32,
    pub daily_token_quota: i64,
    pub cors_allowed_origins: Option<String>,
    /// msgSecCheck on input and output; unset = on whenever WeChat is configured.
    pub content_check: Option<bool>,
    /// `allow` or `block` for `review` verdicts.
    pub content_check_review: ReviewPolicy,
    /// Let text through when WeChat cannot be asked; unset = only outside production.
    pub content_check_fail_open: Option<bool>,
    pub content_check_scene: u8,
    pub content_check_window_chars: usize,
    /// `token` (stable_token) or `cloudrun` (开放接口服务: no token).
    pub wechat_openapi_mode: OpenApiMode,

    /// Comma-separated openids that see `preview` personas and `PREVIEW_MODEL`.
    pub preview_openids: Option<String>,
    pub preview_model: Option<String>,

    /// The source commit, reported by `/health` (the image build sets `APP_COMMIT`).
    pub app_commit: Option<String>,
    /// Bearer token for `GET /metrics`; unset = no metrics endpoint.
    pub metrics_token: Option<SecretString>,
    /// The operator console at `/console`.
    pub console_enabled: bool,
    pub console_session_hours: u64,
    /// Comma-separated IPs or CIDR ranges that may reach the console; empty = any.
    pub console_allowed_ips: String,
    /// CNY per million tokens, off-peak: `model=cache_hit/cache_miss/output,…` (the console's cost).
    pub model_prices: String,
    /// DeepSeek's peak-hour prices as a multiple of the off-peak ones (`deepseek*` models).
    pub peak_price_multiplier: f64,
    /// Creates the operator `admin` with this password (to be changed at first sign-in)
    /// when there is none: the first sign-in without a shell in the container.
    pub console_bootstrap_admin_password: Option<SecretString>,
    /// Stack traces on logged errors (off: `RUST_BACKTRACE` alone does not add them).
    pub log_backtraces: bool,

    /// Companion safety (China's rules for anthropomorphic AI; README "Compliance").
    pub notice_ai_disclosure_text: String,
    pub notice_usage_reminder_text: String,
    /// Refuse sends while a notice is unacknowledged (when every live client shows them).
    pub notices_required: bool,
    /// Continuous use before a reminder; 0 = no reminder.
    pub usage_reminder_minutes: u64,
    /// A gap this long ends a stretch of continuous use.
    pub usage_pause_minutes: u64,
    /// Comma-separated; a message that is essentially one of them ends the turn.
    pub exit_phrases: String,
    pub exit_reply: String,
    /// Comma-separated; a message containing one gets the crisis reply.
    pub crisis_phrases: String,
    pub crisis_reply: String,
    pub takeover_release_text: String,
    /// Use per day in minor mode; 0 = no limit.
    pub minor_daily_minutes: u64,
    /// The privacy policy in effect (empty: none published); a new version must be agreed
    /// to again before chatting.
    pub privacy_policy_version: String,
    pub privacy_policy_text: String,
    /// Reports are promised to be handled within this many days (shown to the user).
    pub report_handling_days: u64,
    /// Reports one user may file per day; 0 = no limit.
    pub reports_per_day: i64,
    /// Days between asking to delete an account and its erasure; 0 = at once.
    pub account_deletion_cooling_days: u64,
    /// Hours a prepared data export can be downloaded.
    pub export_ttl_hours: u64,
    /// The explicit label shown with every AI reply, and with a human operator's.
    pub ai_content_label: String,
    pub human_reply_label: String,
    /// The service provider's name or code in AI content's implicit metadata.
    pub content_producer: String,
}

/// Built-in defaults (TOML); every key is documented in `.env.example`.
pub const DEFAULTS: &str = r#"
host = "0.0.0.0"
port = 80
app_env = "development"
body_limit_bytes = 65536
body_read_timeout_ms = 10000
max_header_bytes = 16384
shutdown_grace_secs = 25
shutdown_readiness_delay_ms = 2000
ready_timeout_ms = 1000

mongodb_db = "companion"
mongodb_max_pool_size = 20
mongodb_min_pool_size = 1
mongodb_connect_timeout_ms = 5000
mongodb_server_selection_timeout_ms = 5000

wechat_api_base = "https://api.weixin.qq.com"
wechat_timeout_ms = 5000
wechat_trust_cloudrun_headers = false

deepseek_api_url = "https://api.deepseek.com"
deepseek_model = "deepseek-flash"
deepseek_connect_timeout_ms = 5000
deepseek_idle_timeout_ms = 60000
deepseek_deadline_secs = 600
deepseek_max_retries = 2
deepseek_retry_base_ms = 500
fallback1_dialect = "openai"
fallback2_dialect = "openai"
upstream_breaker_failures = 5
upstream_breaker_cooldown_ms = 15000
upstream_h2c = false
upstream_connections = 4
max_concurrent_generations = 500
memory_extraction = true
memory_debounce_secs = 30
memory_max_facts = 50
memory_off_peak_only = false

jwt_expires_in = 604800
session_max_days = 30
jwt_issuer = "companion-backend"
jwt_audience = "companion-miniprogram"

personas_file = "config/personas.toml"
message_max_chars = 4000
context_token_budget = 8000
context_max_messages = 50
chat_wait_timeout_ms = 10000
sse_keepalive_secs = 15
progress_save_interval_ms = 1000
generation_lease_secs = 15
ws_auth_timeout_ms = 10000

rate_limit_per_minute = 60
rate_limit_per_hour = 1000
rate_limit_ip_per_minute = 300
rate_limit_ip_per_hour = 5000
rate_limit_login_per_minute = 10
rate_limit_poll_per_minute = 240
rate_limit_ip_poll_per_minute = 2400
trusted_proxy_depth = 1
daily_message_quota = 300
max_active_replies_per_user = 2
ws_max_sockets_per_user = 5
max_in_flight_per_ip = 64
daily_token_quota = 500000
content_check_review = "allow"
content_check_scene = 2
content_check_window_chars = 300
wechat_openapi_mode = "token"
log_backtraces = false
console_enabled = false
console_session_hours = 8
console_allowed_ips = ""
model_prices = "deepseek-flash=0.02/1/4,deepseek-v4-pro=0.15/4.5/13.5"
peak_price_multiplier = 2.0
notice_ai_disclosure_text = "你正在与人工智能（AI）聊天，对方不是真人。AI 生成的内容仅供参考，请理性看待，不要过度依赖。"
notice_usage_reminder_text = "你已经连续聊了很久，休息一下吧。提醒你：对方是人工智能（AI），不是真人。"
notices_required = false
usage_reminder_minutes = 120
usage_pause_minutes = 15
exit_phrases = "退出,退出聊天,结束对话,不聊了,不想聊了,再见,拜拜"
exit_reply = "好的，本次对话已结束。需要的时候随时回来。"
crisis_phrases = "自杀,自尽,轻生,不想活,活不下去,想死,去死,结束生命,结束自己,割腕,跳楼,自残,伤害自己,安眠药"
crisis_reply = "听到你这么说，我很担心你。你的感受很重要，你不需要一个人扛着。请现在就联系能帮助你的人：拨打全国心理援助热线 12356，或拨打 120、110；也可以告诉身边信任的家人、朋友。如果你愿意，我们的工作人员会尽快来陪你聊聊。"
takeover_release_text = "人工服务已结束，接下来由 AI 伙伴继续陪你聊天。如需帮助，请拨打心理援助热线 12356。"
minor_daily_minutes = 40
report_handling_days = 7
reports_per_day = 20
account_deletion_cooling_days = 0
export_ttl_hours = 24
privacy_policy_version = ""
privacy_policy_text = "我们更新了《隐私政策》，请阅读并同意后继续使用。"
ai_content_label = "内容由AI生成"
human_reply_label = "人工回复"
content_producer = "companion-backend"
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("refusing to start:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    ProductionGuard(Vec<String>),
}

impl Settings {
    /// Loads `.env` (if present), then settings from the process environment.
    pub fn load() -> Result<Settings, ConfigError> {
        let _ = dotenvy::dotenv();
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = env
            .get("APP_CONFIG_FILE")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        Settings::from_sources(&env, Some(&file))
    }

    /// Pure loader used by `load` and by tests: no process state is read.
    pub fn from_sources(env: &HashMap<String, String>, config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> =
            env.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k.clone(), v.trim().to_string())).collect();
        let mut builder = config::Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = config_file {
            builder = builder.add_source(File::from(path.to_path_buf()).required(false));
        }
        let settings: Settings =
            builder.add_source(Environment::default().source(Some(env))).build()?.try_deserialize()?;
        Ok(settings.normalized())
    }

    fn normalized(mut self) -> Self {
        self.deepseek_api_url = trim_url(&self.deepseek_api_url);
        self.fallback1_api_url = self.fallback1_api_url.as_deref().map(trim_url);
        self.fallback2_api_url = self.fallback2_api_url.as_deref().map(trim_url);
        self.wechat_api_base = self.wechat_api_base.trim_end_matches('/').to_string();
        self.wechat_appid = self.wechat_appid.filter(|a| !a.is_empty());
        self
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// Every problem that makes this configuration unfit for production, at once.
    pub fn production_problems(&self) -> Vec<String> {
        if !self.is_production() {
            return Vec::new();
        }
        let mut problems = Vec::new();
        if self.mongodb_uri.is_none() {
            problems.push("MONGODB_URI is not set (production never uses the in-process store)".into());
        }
        if self.wechat_appid.is_none() {
            problems.push("WECHAT_APPID is not set".into());
        }
        if self.wechat_secret.is_none() {
            problems.push("WECHAT_SECRET is not set".into());
        }
        if self.deepseek_api_key.is_none() {
            problems.push("DEEPSEEK_API_KEY is not set".into());
        }
        match &self.jwt_secret {
            None => problems.push("JWT_SECRET is not set".into()),
            Some(secret) => problems.extend(weak_secret("JWT_SECRET", secret.expose_secret())),
        }
        // The previous secret still verifies tokens: a weak one forges sessions just as well.
        if let Some(previous) = &self.jwt_secret_previous {
            problems.extend(weak_secret("JWT_SECRET_PREVIOUS", previous.expose_secret()));
        }
        let origins = self.cors_origin_list();
        if origins.iter().any(|o| o == "*") {
            problems.push("CORS_ALLOWED_ORIGINS must list origins; \"*\" is refused in production".into());
        }
        if origins.iter().any(|o| o.eq_ignore_ascii_case("null")) {
            problems
                .push("CORS_ALLOWED_ORIGINS must not contain \"null\" (sandboxed pages and file:// send it)".into());
        }
        problems
    }

    /// Settings that run but deserve a loud word at start-up (production or not).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.wechat_trust_cloudrun_headers {
            warnings.push(
                "WECHAT_TRUST_CLOUDRUN_HEADERS is on: X-WX-OPENID is believed; close the service's public domain \
                 access (公网访问) or anyone can claim any user"
                    .into(),
            );
        }
        let limits = [
            ("RATE_LIMIT_PER_MINUTE", i64::from(self.rate_limit_per_minute)),
            ("RATE_LIMIT_PER_HOUR", i64::from(self.rate_limit_per_hour)),
            ("RATE_LIMIT_IP_PER_MINUTE", i64::from(self.rate_limit_ip_per_minute)),
            ("RATE_LIMIT_IP_PER_HOUR", i64::from(self.rate_limit_ip_per_hour)),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", i64::from(self.rate_limit_login_per_minute)),
            ("RATE_LIMIT_POLL_PER_MINUTE", i64::from(self.rate_limit_poll_per_minute)),
            ("RATE_LIMIT_IP_POLL_PER_MINUTE", i64::from(self.rate_limit_ip_poll_per_minute)),
            ("DAILY_MESSAGE_QUOTA", self.daily_message_quota),
            ("DAILY_TOKEN_QUOTA", self.daily_token_quota),
            ("WS_MAX_SOCKETS_PER_USER", i64::from(self.ws_max_sockets_per_user)),
            ("MAX_IN_FLIGHT_PER_IP", i64::from(self.max_in_flight_per_ip)),
            ("MAX_CONCURRENT_GENERATIONS", i64::from(self.max_concurrent_generations)),
        ];
        for (name, value) in limits {
            if value == 0 {
                warnings.push(format!("{name}=0 turns this limit OFF"));
            }
        }
        let safety = [
            ("USAGE_REMINDER_MINUTES=0 turns the 2-hour reminder OFF", self.usage_reminder_minutes == 0),
            ("CRISIS_PHRASES is empty: crisis messages are not recognised", self.crisis_phrases.trim().is_empty()),
            ("EXIT_PHRASES is empty: users have no exit phrase", self.exit_phrases.trim().is_empty()),
        ];
        for (warning, applies) in safety {
            if applies {
                warnings.push(format!("{warning} (README \"Compliance\")"));
            }
        }
        let urls = [
            ("DEEPSEEK_API_URL", Some(&self.deepseek_api_url)),
            ("FALLBACK1_API_URL", self.fallback1_api_url.as_ref()),
            ("FALLBACK2_API_URL", self.fallback2_api_url.as_ref()),
            ("WECHAT_API_BASE", Some(&self.wechat_api_base)),
        ];
        for (name, url) in urls.into_iter().filter_map(|(name, url)| Some((name, url?))) {
            if url.starts_with("http://") && !is_loopback_url(url) {
                warnings.push(format!("{name} is plain http: keys and user text travel unencrypted"));
            }
        }
        if self.jwt_expires_in > MAX_QUIET_TOKEN_LIFETIME_SECS {
            warnings.push(format!(
                "JWT_EXPIRES_IN is {} days; a stolen token stays valid that long",
                self.jwt_expires_in / 86_400
            ));
        }
        warnings
    }

    pub fn content_check_enabled(&self) -> bool {
        self.content_check.unwrap_or(self.wechat_appid.is_some())
    }

    pub fn content_check_fails_open(&self) -> bool {
        self.content_check_fail_open.unwrap_or(!self.is_production())
    }

    pub fn cors_origin_list(&self) -> Vec<String> {
        split_list(self.cors_allowed_origins.as_deref())
    }

    /// Values no deployment can run with, production or not: each would otherwise be
    /// clamped or misbehave silently.
    pub fn value_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut at_least = |name: &str, value: u64, min: u64| {
            if value < min {
                problems.push(format!("{name} must be at least {min} (it is {value})"));
            }
        };
        at_least("BODY_LIMIT_BYTES", self.body_limit_bytes as u64, 1024);
        at_least("BODY_READ_TIMEOUT_MS", self.body_read_timeout_ms, 100);
        at_least("MAX_HEADER_BYTES", self.max_header_bytes as u64, 1024);
        at_least("MONGODB_MAX_POOL_SIZE", self.mongodb_max_pool_size.into(), 1);
        at_least("JWT_EXPIRES_IN", self.jwt_expires_in, 60);
        at_least("SESSION_MAX_DAYS", self.session_max_days, 1);
        at_least("MESSAGE_MAX_CHARS", self.message_max_chars as u64, 1);
        at_least("CONTEXT_TOKEN_BUDGET", self.context_token_budget as u64, 100);
        at_least("CONTEXT_MAX_MESSAGES", self.context_max_messages as u64, 1);
        at_least("SSE_KEEPALIVE_SECS", self.sse_keepalive_secs, 1);
        at_least("PROGRESS_SAVE_INTERVAL_MS", self.progress_save_interval_ms, 50);
        at_least("GENERATION_LEASE_SECS", self.generation_lease_secs, 5);
        at_least("CONTENT_CHECK_WINDOW_CHARS", self.content_check_window_chars as u64, 20);
        at_least("DEEPSEEK_DEADLINE_SECS", self.deepseek_deadline_secs, 1);
        at_least("DEEPSEEK_IDLE_TIMEOUT_MS", self.deepseek_idle_timeout_ms, 100);
        at_least("WS_AUTH_TIMEOUT_MS", self.ws_auth_timeout_ms, 100);
        at_least("READY_TIMEOUT_MS", self.ready_timeout_ms, 50);
        at_least("WECHAT_TIMEOUT_MS", self.wechat_timeout_ms, 100);
        at_least("CHAT_WAIT_TIMEOUT_MS", self.chat_wait_timeout_ms, 50);
        at_least("UPSTREAM_CONNECTIONS", self.upstream_connections as u64, 1);
        at_least("MEMORY_MAX_FACTS", self.memory_max_facts as u64, 1);
        at_least("UPSTREAM_BREAKER_COOLDOWN_MS", self.upstream_breaker_cooldown_ms, 10);
        at_least("USAGE_PAUSE_MINUTES", self.usage_pause_minutes, 1);
        at_least("REPORT_HANDLING_DAYS", self.report_handling_days, 1);
        at_least("EXPORT_TTL_HOURS", self.export_ttl_hours, 1);
        if let Some(max_tokens) = self.deepseek_max_tokens {
            at_least("DEEPSEEK_MAX_TOKENS", max_tokens.into(), 1);
        }
        if self.chat_wait_timeout_ms > MAX_CHAT_WAIT_MS {
            problems.push(format!(
                "CHAT_WAIT_TIMEOUT_MS must be at most {MAX_CHAT_WAIT_MS}: callContainer cuts requests at 15 s"
            ));
        }
        for (name, quota) in
            [("DAILY_MESSAGE_QUOTA", self.daily_message_quota), ("DAILY_TOKEN_QUOTA", self.daily_token_quota)]
        {
            if quota < 0 {
                problems.push(format!("{name} must be 0 (no quota) or more (it is {quota})"));
            }
        }
        let texts = [
            ("NOTICE_AI_DISCLOSURE_TEXT", &self.notice_ai_disclosure_text),
            ("NOTICE_USAGE_REMINDER_TEXT", &self.notice_usage_reminder_text),
            ("EXIT_REPLY", &self.exit_reply),
            ("CRISIS_REPLY", &self.crisis_reply),
            ("TAKEOVER_RELEASE_TEXT", &self.takeover_release_text),
            ("AI_CONTENT_LABEL", &self.ai_content_label),
            ("PRIVACY_POLICY_TEXT", &self.privacy_policy_text),
            ("HUMAN_REPLY_LABEL", &self.human_reply_label),
            ("CONTENT_PRODUCER", &self.content_producer),
        ];
        for (name, text) in texts {
            let chars = text.trim().chars().count();
            if chars == 0 || chars > 1000 {
                problems.push(format!("{name} must be 1-1000 characters"));
            }
        }
        if self.mongodb_min_pool_size > self.mongodb_max_pool_size {
            problems.push("MONGODB_MIN_POOL_SIZE must not exceed MONGODB_MAX_POOL_SIZE".into());
        }
        if !(1..=4).contains(&self.content_check_scene) {
            problems.push(format!("CONTENT_CHECK_SCENE must be 1-4 (it is {})", self.content_check_scene));
        }
        if self.progress_save_interval_ms >= self.generation_lease_secs * 1000 / 3 {
            problems.push("PROGRESS_SAVE_INTERVAL_MS must be well under a third of GENERATION_LEASE_SECS".into());
        }
        problems.extend(self.fallback_problems());
        if self.console_session_hours == 0 {
            problems.push("CONSOLE_SESSION_HOURS must be at least 1".into());
        }
        let bootstrap = self.console_bootstrap_admin_password.as_ref().map(|p| p.expose_secret().chars().count());
        if bootstrap.is_some_and(|chars| chars < crate::console::passwords::MIN_PASSWORD_CHARS) {
            problems.push("CONSOLE_BOOTSTRAP_ADMIN_PASSWORD must be at least 12 characters".into());
        }
        if let Err(e) = crate::stats::Prices::parse(&self.model_prices, self.peak_price_multiplier) {
            problems.push(format!("MODEL_PRICES: {e}"));
        }
        if !(self.peak_price_multiplier.is_finite() && self.peak_price_multiplier >= 1.0) {
            problems.push("PEAK_PRICE_MULTIPLIER must be at least 1".into());
        }
        if let Err(e) = crate::console::IpAllowlist::parse(&self.console_allowed_ips) {
            problems.push(format!("CONSOLE_ALLOWED_IPS: {e}"));
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.expose_secret().len() < MIN_METRICS_TOKEN_BYTES) {
            problems.push(format!("METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_BYTES} characters"));
        }
        problems
    }

    /// A fallback is all of URL, key and model, or nothing.
    fn fallback_problems(&self) -> Vec<String> {
        let fallbacks = [
            ("FALLBACK1", &self.fallback1_api_url, &self.fallback1_api_key, &self.fallback1_model),
            ("FALLBACK2", &self.fallback2_api_url, &self.fallback2_api_key, &self.fallback2_model),
        ];
        let mut problems = Vec::new();
        for (prefix, url, key, model) in fallbacks {
            let set = [url.is_some(), key.is_some(), model.is_some()];
            if set.iter().any(|s| *s) && !set.iter().all(|s| *s) {
                problems.push(format!("{prefix}_API_URL, {prefix}_API_KEY and {prefix}_MODEL are needed together"));
            }
            if let Some(url) = url {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    problems.push(format!("{prefix}_API_URL must start with https:// (it is {url:?})"));
                }
            }
        }
        if self.fallback2_api_url.is_some() && self.fallback1_api_url.is_none() {
            problems.push("FALLBACK2_* is set without FALLBACK1_*: fill FALLBACK1 first".into());
        }
        problems
    }

    /// Every problem with this configuration: bad values, and what production forbids.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.value_problems();
        problems.extend(self.production_problems());
        problems
    }

    /// Fails with one message listing every problem.
    pub fn ensure_fit_to_run(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::ProductionGuard(problems))
        }
    }

    pub fn preview_openid_list(&self) -> Vec<String> {
        split_list(self.preview_openids.as_deref())
    }

    /// Development login (`dev:<name>`) is allowed only without WeChat credentials,
    /// and never in production.
    pub fn dev_login_enabled(&self) -> bool {
        !self.is_production() && self.wechat_appid.is_none()
    }
}

/// Why `value` is unfit to sign tokens, if it is.
fn weak_secret(name: &str, value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() < MIN_JWT_SECRET_BYTES {
        problems.push(format!("{name} is shorter than {MIN_JWT_SECRET_BYTES} bytes"));
    }
    if PLACEHOLDER_SECRETS.contains(&value.to_ascii_lowercase().as_str()) {
        problems.push(format!("{name} is a known placeholder value"));
    }
    let distinct: std::collections::HashSet<char> = value.chars().collect();
    if distinct.len() < MIN_DISTINCT_SECRET_CHARS {
        problems.push(format!(
            "{name} uses fewer than {MIN_DISTINCT_SECRET_CHARS} different characters; use random bytes \
             (for example `openssl rand -hex 32`)"
        ));
    }
    problems
}

fn is_loopback_url(url: &str) -> bool {
    let host = url.trim_start_matches("http://").split(['/', ':']).next().unwrap_or_default();
    matches!(host, "localhost" | "127.0.0.1" | "[")
}

fn split_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default().split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

/// A base URL as configured, less surrounding space and a trailing `/`: its path is kept
/// (`…/compatible-mode/v1`), and the client appends `/chat/completions` to it.
pub fn trim_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}
