//! Daily figures for the operator console, shared by every replica: one document per day
//! (Beijing date) whose counters each reply, new conversation and refusal bumps in one
//! write, plus a per-user marker for active users. Read back as the console's overview.
mod overview;
mod pricing;

pub use overview::{overview, DayFigures, Overview};
pub use pricing::{ModelPrice, Prices};

use chrono::{DateTime, Utc};

use crate::domain::{MessageStatus, Usage, UserId};
use crate::store::DynStore;

/// First-token latency buckets (upper bounds, ms); the last catches everything slower.
pub const LATENCY_BOUNDS_MS: [u64; 11] = [100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000];

/// The day a moment belongs to, in Beijing time (as DeepSeek's prices and users' days are).
pub fn day_of(at: DateTime<Utc>) -> String {
    crate::protection::china_day(at).0
}

/// A field name safe in a MongoDB document and in our own `|`-joined names: each part keeps
/// letters, digits, `-`, `_` and `:` (anything else, such as `.`, `$`, `|` or NUL from an
/// upstream's model name, becomes `_`), at most 64 characters.
fn field(parts: &[&str]) -> String {
    parts.iter().map(|p| safe_part(p)).collect::<Vec<_>>().join("|")
}

pub fn safe_part(part: &str) -> String {
    part.chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':') { c } else { '_' })
        .collect()
}

/// How a reply ended, for the day's figures.
pub struct ReplyFigures<'a> {
    pub user: UserId,
    pub status: MessageStatus,
    pub error_code: Option<&'a str>,
    pub usage: Option<&'a Usage>,
    pub model: Option<&'a str>,
    pub first_token_ms: Option<u64>,
    pub at: DateTime<Utc>,
}

/// Counts one finished reply. Figures are a bonus: a failure is logged, never raised.
pub async fn record_reply(store: &DynStore, reply: ReplyFigures<'_>) {
    let day = day_of(reply.at);
    let status = match reply.status {
        MessageStatus::Complete => "complete",
        MessageStatus::Incomplete => "incomplete",
        MessageStatus::Failed => "failed",
        MessageStatus::Streaming => "streaming",
    };
    let mut bumps = vec![("replies".to_string(), 1), (field(&["status", status]), 1)];
    if let Some(code) = reply.error_code {
        bumps.push((field(&["error", code]), 1));
    }
    if let Some(ms) = reply.first_token_ms {
        let bucket = LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len());
        bumps.push((field(&["first_token", &bucket.to_string()]), 1));
    }
    if let Some(usage) = reply.usage {
        bumps.extend(token_bumps(usage, reply.model.unwrap_or("unknown"), reply.at));
    }
    let marker = format!("active:{day}:{}", reply.user);
    match store.increment_counter(&marker, 1, reply.at + chrono::Duration::days(2)).await {
        Ok(1) => bumps.push(("active_users".into(), 1)),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = ?e, "could not mark the user active today"),
    }
    bump(store, &day, &bumps).await;
}

/// Tokens by model, kind and DeepSeek's price period, for the day's cost.
fn token_bumps(usage: &Usage, model: &str, at: DateTime<Utc>) -> Vec<(String, i64)> {
    let rate = if crate::chat::learner::is_peak(at) { "peak" } else { "off_peak" };
    let (hit, miss) = usage.cache_split();
    [("hit", hit), ("miss", miss), ("output", usage.completion_tokens)]
        .into_iter()
        .map(|(kind, tokens)| (field(&["tokens", model, kind, rate]), tokens as i64))
        .collect()
}

/// Counts one OpenAI-compatible API completion: a request, and its tokens in the day's
/// cost like a reply's.
pub async fn record_api_completion(store: &DynStore, usage: Option<&Usage>, model: &str, at: DateTime<Utc>) {
    let mut bumps = vec![("api_requests".to_string(), 1)];
    if let Some(usage) = usage {
        bumps.extend(token_bumps(usage, model, at));
    }
    bump(store, &day_of(at), &bumps).await;
}

/// Something else the console counts per day.
#[cfg(test)]
mod tests {
    #[test]
    fn field_names_from_upstream_text_are_made_safe() {
        let cases = [
            ("a plain name", "deepseek-flash", "deepseek-flash"),
            ("dots", "deepseek-v4.1", "deepseek-v4_1"),
            ("our separator", "a|b", "a_b"),
            ("a dollar and NUL", "$x\0y", "_x_y"),
            ("non-ASCII", "模型", "__"),
        ];
        for (label, raw, expected) in cases {
            assert_eq!(super::safe_part(raw), expected, "{label}");
        }
        assert_eq!(super::safe_part(&"m".repeat(100)).len(), 64, "bounded");
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Tally {
    ConversationStarted,
    RateLimited,
    QuotaExceeded,
}

pub async fn record(store: &DynStore, tally: Tally, at: DateTime<Utc>) {
    let name = match tally {
        Tally::ConversationStarted => "conversations",
        Tally::RateLimited => "rate_limited",
        Tally::QuotaExceeded => "quota_exceeded",
    };
    bump(store, &day_of(at), &[(name.to_string(), 1)]).await;
}

async fn bump(store: &DynStore, day: &str, bumps: &[(String, i64)]) {
    if let Err(e) = store.bump_daily_stats(day, bumps).await {
        tracing::warn!(error = ?e, "could not count today's figures");
    }
}

/// Refusals counted in memory (an abusive client's every 429 must not cost a write) and
/// added to the day's figures every few seconds.
#[derive(Debug, Default)]
pub struct LocalTallies {
    rate_limited: std::sync::atomic::AtomicI64,
    quota_exceeded: std::sync::atomic::AtomicI64,
    /// Since start, for `/metrics` (the two above are emptied at every flush).
    rate_limited_total: std::sync::atomic::AtomicU64,
    quota_exceeded_total: std::sync::atomic::AtomicU64,
}

impl LocalTallies {
    pub fn add(&self, tally: Tally) {
        use std::sync::atomic::Ordering::Relaxed;
        match tally {
            Tally::RateLimited => {
                self.rate_limited.fetch_add(1, Relaxed);
                self.rate_limited_total.fetch_add(1, Relaxed);
            }
            Tally::QuotaExceeded => {
                self.quota_exceeded.fetch_add(1, Relaxed);
                self.quota_exceeded_total.fetch_add(1, Relaxed);
            }
            Tally::ConversationStarted => {}
        }
    }

    /// Rate-limit and quota refusals since this instance started.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.rate_limited_total.load(Relaxed), self.quota_exceeded_total.load(Relaxed))
    }

    /// Moves what was counted here into the store (until `stop`, every `every`).
    pub async fn flush_every(
        self: std::sync::Arc<Self>,
        store: DynStore,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let bumps: Vec<(String, i64)> = [
                ("rate_limited", self.rate_limited.swap(0, Relaxed)),
                ("quota_exceeded", self.quota_exceeded.swap(0, Relaxed)),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
            if !bumps.is_empty() {
                bump(&store, &day_of(crate::domain::now()), &bumps).await;
            }
        }
    }
}
