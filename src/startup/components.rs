//! Builds each component from its typed configuration section.
use crate::instruments::Instruments;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::chat::{ChatParts, ChatService, Personas, PreviewAccess, Registry};
use crate::configuration::{
    ChatSettings, LimitSettings, ModerationSettings, OpenApiMode, ReviewPolicy, StoreSettings, UpstreamSettings,
    WechatSettings,
};
use crate::llm::{Breaker, CompatibleClient, CompatibleOptions, LlmClient, OfflineCompanion, Upstream, UpstreamPool};
use crate::protection::{DailyQuota, ModerationPolicy, Moderator};
use crate::store::{DynStore, InMemoryStore, MongoStore, MongoStoreOptions};
use crate::wechat::{AccessTokens, ContentChecker};

const DEFAULT_PERSONAS_FILE: &str = "config/personas.toml";
/// Assumed length of an answer when `DEEPSEEK_MAX_TOKENS` does not bound it.
const DEFAULT_ANSWER_TOKENS: u32 = 2000;

pub async fn build_store(settings: &StoreSettings) -> anyhow::Result<DynStore> {
    let Some(uri) = &settings.uri else {
        tracing::warn!(
            "MONGODB_URI is not set: using the IN-PROCESS store. NOTHING IS PERSISTED; \
             every user and message is lost on restart. Set MONGODB_URI for real use."
        );
        return Ok(Arc::new(InMemoryStore::new()));
    };
    let options = MongoStoreOptions {
        max_pool_size: settings.max_pool_size,
        min_pool_size: settings.min_pool_size,
        connect_timeout: settings.connect_timeout,
        server_selection_timeout: settings.server_selection_timeout,
    };
    let store = Arc::new(MongoStore::connect(uri.expose_secret(), &settings.db, &options).await?);
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

pub fn build_llm(settings: &UpstreamSettings) -> anyhow::Result<LlmClient> {
    if settings.upstreams.is_empty() {
        tracing::warn!("DEEPSEEK_API_KEY is not set: replies come from the OFFLINE demo companion, not DeepSeek");
        return Ok(LlmClient::Offline(OfflineCompanion { chunk_delay: Duration::from_millis(40) }));
    }
    let upstreams = settings
        .upstreams
        .iter()
        .map(|upstream| {
            // The host only: a URL may carry credentials in its userinfo or query.
            let host = reqwest::Url::parse(&upstream.base_url).ok().and_then(|u| u.host_str().map(str::to_owned));
            tracing::info!(upstream = %upstream.name, host = host.as_deref().unwrap_or("?"), "upstream configured");
            Ok(Upstream {
                name: upstream.name.clone(),
                client: CompatibleClient::new(CompatibleOptions {
                    base_url: upstream.base_url.clone(),
                    api_key: upstream.api_key.clone(),
                    dialect: upstream.dialect,
                    connect_timeout: settings.connect_timeout,
                    idle_timeout: settings.idle_timeout,
                    deadline: settings.deadline,
                    h2c: settings.h2c,
                    connections: settings.connections,
                })?,
                model: upstream.model.clone(),
                breaker: Breaker::new(settings.breaker),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(LlmClient::Upstreams(UpstreamPool::new(upstreams, settings.max_retries, settings.retry_base)))
}

fn build_moderator(
    settings: &ModerationSettings,
    wechat: &WechatSettings,
    instruments: &Arc<Instruments>,
) -> anyhow::Result<Option<Arc<Moderator>>> {
    if !settings.enabled {
        tracing::warn!("content checking (msgSecCheck) is OFF");
        return Ok(None);
    }
    let tokens = match wechat.openapi_mode {
        OpenApiMode::Cloudrun => AccessTokens::cloud_run(),
        OpenApiMode::Token => AccessTokens::stable(
            reqwest::Client::builder().timeout(wechat.timeout).build()?,
            wechat.api_base.clone(),
            wechat.appid.clone(),
            wechat.secret.clone(),
        ),
    };
    let checker = ContentChecker::new(wechat.api_base.clone(), Arc::new(tokens), settings.scene, wechat.timeout)?;
    Ok(Some(Arc::new(Moderator {
        checker,
        policy: ModerationPolicy {
            review_blocks: settings.review == ReviewPolicy::Block,
            fail_open: settings.fail_open,
            window_chars: settings.window_chars,
        },
        instruments: instruments.clone(),
    })))
}

/// What the chat service is built from, section by section.
pub struct ChatSections<'a> {
    pub chat: &'a ChatSettings,
    pub upstreams: &'a UpstreamSettings,
    pub limits: &'a LimitSettings,
    pub moderation: &'a ModerationSettings,
    pub wechat: &'a WechatSettings,
}

pub fn build_chat(
    sections: ChatSections<'_>,
    llm: Arc<LlmClient>,
    store: DynStore,
    registry: Arc<Registry>,
) -> anyhow::Result<ChatService> {
    let chat = sections.chat;
    let is_default = chat.personas_file.as_os_str() == DEFAULT_PERSONAS_FILE;
    let personas = Personas::load(&chat.personas_file, is_default)?;
    let instruments = Arc::new(Instruments::new());
    Ok(ChatService::new(ChatParts {
        store,
        llm,
        personas,
        registry,
        config: chat.clone(),
        preview: PreviewAccess::new(chat.preview_openids.clone(), chat.preview_model.clone()),
        quota: DailyQuota {
            messages: sections.limits.daily_messages,
            tokens: sections.limits.daily_tokens,
            max_active_replies: sections.limits.max_active_replies.into(),
            // What one reply can cost at most: a full context and a full answer.
            tokens_per_reply: (chat.context_token_budget + chat.max_tokens.unwrap_or(DEFAULT_ANSWER_TOKENS) as usize)
                as i64,
            // A running reply's slot outlives the longest reply; a dead replica's slot
            // is forgotten after that.
            slot_ttl: sections.upstreams.deadline + chat.lease,
        },
        moderator: build_moderator(sections.moderation, sections.wechat, &instruments)?,
        instruments,
    }))
}
