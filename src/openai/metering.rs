//! What each API key used today (requests and tokens, China day), in counters every
//! replica shares: a key's daily token limit holds across replicas, and the console shows
//! each key's use. Tokens also go into the day's cost figures and `/metrics`.
use chrono::{DateTime, Utc};

use super::errors::OpenAiError;
use crate::domain::{ApiKey, Usage};
use crate::instruments::Instruments;
use crate::protection::china_day;
use crate::store::{DynStore, StoreError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUsage {
    pub requests: i64,
    pub tokens: i64,
}

#[derive(Clone, Copy)]
enum Kind {
    Requests,
    Tokens,
}

fn counter(key_id: &str, kind: Kind, day: &str) -> String {
    let kind = match kind {
        Kind::Requests => "requests",
        Kind::Tokens => "tokens",
    };
    format!("api-key:{key_id}:{kind}:{day}")
}

/// The key's use today.
pub async fn today(store: &DynStore, key_id: &str, at: DateTime<Utc>) -> Result<KeyUsage, StoreError> {
    let (day, _) = china_day(at);
    let (requests, tokens) = (counter(key_id, Kind::Requests, &day), counter(key_id, Kind::Tokens, &day));
    let (requests, tokens) = tokio::try_join!(store.read_counter(&requests), store.read_counter(&tokens))?;
    Ok(KeyUsage { requests, tokens })
}

/// Counts a request, refused while the key's daily tokens are used up (429 until the day
/// ends in China). A completion that starts below the limit may finish above it.
pub async fn admit(store: &DynStore, key: &ApiKey, at: DateTime<Utc>) -> Result<(), OpenAiError> {
    let (day, ends) = china_day(at);
    let keep = ends + chrono::Duration::days(1);
    if key.daily_tokens > 0 {
        let used = store.read_counter(&counter(&key.id, Kind::Tokens, &day)).await?;
        if used >= key.daily_tokens {
            return Err(OpenAiError::daily_tokens_used((ends - at).num_seconds().max(1) as u64));
        }
    }
    store.increment_counter(&counter(&key.id, Kind::Requests, &day), 1, keep).await?;
    Ok(())
}

/// Counts what a finished completion used. Figures are a bonus: failures are logged.
pub async fn record(
    store: &DynStore,
    instruments: &Instruments,
    key_id: &str,
    usage: Option<&Usage>,
    model: &str,
    at: DateTime<Utc>,
) {
    if let Some(usage) = usage {
        instruments.count_tokens(usage);
        let (day, ends) = china_day(at);
        let keep = ends + chrono::Duration::days(1);
        let tokens = usage.total_tokens as i64;
        if let Err(e) = store.increment_counter(&counter(key_id, Kind::Tokens, &day), tokens, keep).await {
            tracing::warn!(error = ?e, "could not count the key's tokens");
        }
    }
    crate::stats::record_api_completion(store, usage, model, at).await;
}
