//! The start-up check that each upstream still serves the model configured for it:
//! providers rename and retire models (DeepSeek did, twice, in 2026). It only warns:
//! an upstream that cannot be asked now may be fine a minute later.
use std::time::Duration;

use super::upstreams::UpstreamPool;

/// How long the check waits for each upstream's `GET /models`.
pub const MODEL_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCheck {
    Listed,
    NotListed {
        available: Vec<String>,
    },
    /// The list could not be had (timeout, refusal); nothing is known.
    Unknown {
        error: &'static str,
    },
}

/// Asks every upstream which models it lists, and warns loudly for each configured model
/// that is not among them. `default_model` is the first upstream's model.
pub async fn check_models(pool: &UpstreamPool, default_model: &str, wait: Duration) -> Vec<(String, ModelCheck)> {
    let checks = pool.upstreams().iter().map(|upstream| async move {
        let model = upstream.model.as_deref().unwrap_or(default_model);
        let check = match upstream.client.list_models(wait).await {
            Ok(listed) if listed.iter().any(|m| m == model) => ModelCheck::Listed,
            Ok(available) => ModelCheck::NotListed { available },
            Err(e) => ModelCheck::Unknown { error: e.code() },
        };
        match &check {
            ModelCheck::Listed => tracing::info!(upstream = %upstream.name, model, "the configured model is listed"),
            ModelCheck::NotListed { available } => tracing::error!(
                upstream = %upstream.name,
                model,
                available = %available.join(","),
                "THE CONFIGURED MODEL IS NOT LISTED by this upstream: replies may fail or come from another \
                 model; check DEEPSEEK_MODEL / FALLBACK*_MODEL"
            ),
            ModelCheck::Unknown { error } => {
                tracing::warn!(upstream = %upstream.name, model, error, "could not list the upstream's models")
            }
        }
        (upstream.name.clone(), check)
    });
    futures_util::future::join_all(checks).await
}
