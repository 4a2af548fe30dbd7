//! Daily quotas per user (messages sent, tokens used), by the China Standard Time day.
use chrono::{DateTime, FixedOffset, Utc};

use crate::domain::{now, QuotaLimits, Usage, User, UserId};
use crate::store::{DynStore, StoreError};

const CHINA_OFFSET_SECS: i32 = 8 * 3600;

#[derive(Debug, Clone, Copy)]
pub struct DailyQuota {
    pub messages: i64,
    pub tokens: i64,
    /// Replies one user may have running at once, across replicas (0: no cap).
    pub max_active_replies: i64,
    /// Tokens held back when a reply starts (its real use is settled when it ends), so
    /// concurrent sends cannot all pass a nearly used-up token quota.
    pub tokens_per_reply: i64,
    /// How long a running reply's slot counts if its replica dies without freeing it.
    pub slot_ttl: std::time::Duration,
}

/// What a started reply holds until it ends: one message, some tokens, one running slot.
#[derive(Debug, Clone)]
pub struct Reservation {
    user: UserId,
    date: String,
    day_ends: DateTime<Utc>,
    tokens: i64,
}

/// A reply counted against the day's counters, not yet judged against the limits.
pub struct Counted {
    reservation: Reservation,
    at: DateTime<Utc>,
    messages: Result<i64, StoreError>,
    tokens: Result<i64, StoreError>,
    active: Result<Option<i64>, StoreError>,
}

/// Why a reply may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QuotaExceeded { retry_after: u64 },
    TooManyActive,
}

#[derive(Debug, Clone)]
pub struct Allowance {
    pub used: i64,
    pub limit: i64,
}

/// Prompt tokens DeepSeek served from its prefix cache (about 1/50 of the price) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUse {
    pub hit_tokens: i64,
    pub miss_tokens: i64,
}

impl CacheUse {
    /// Hits over all prompt tokens; `None` before any.
    pub fn hit_ratio(&self) -> Option<f64> {
        let all = self.hit_tokens + self.miss_tokens;
        (all > 0).then(|| self.hit_tokens as f64 / all as f64)
    }
}

const CACHE_HIT: &str = "cache_hit";
const CACHE_MISS: &str = "cache_miss";

#[derive(Debug, Clone)]
pub struct QuotaUsage {
    pub date: String,
    pub messages: Allowance,
    pub tokens: Allowance,
    pub prompt_cache: CacheUse,
    pub resets_at: DateTime<Utc>,
}

/// Today's date in China and the instant the day ends: the one rule for "a day" in
/// quotas, API keys' limits and the console's daily figures.
pub fn today(at: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let china = FixedOffset::east_opt(CHINA_OFFSET_SECS).expect("valid offset");
    let local = at.with_timezone(&china);
    let midnight = local.date_naive().succ_opt().unwrap_or(local.date_naive()).and_hms_opt(0, 0, 0).unwrap_or_default();
    let ends = midnight.and_local_timezone(china).single().map(|d| d.with_timezone(&Utc)).unwrap_or(at);
    (local.format("%Y-%m-%d").to_string(), ends)
}

fn log_rollback(result: Result<i64, StoreError>) {
    if let Err(e) = result {
        tracing::warn!(error = ?e, "could not give back a refused reservation; the quota over-counts until the day ends");
    }
}

fn key(kind: &str, user: UserId, date: &str) -> String {
    format!("quota:{kind}:{user}:{date}")
}

fn slot_key(user: UserId) -> String {
    format!("active-replies:{user}")
}

impl DailyQuota {
    /// The service's daily limits, or the user's own when an operator set them.
    pub fn limits_for(&self, user: Option<&User>) -> QuotaLimits {
        user.and_then(|u| u.quota).unwrap_or(QuotaLimits { messages: self.messages, tokens: self.tokens })
    }

    /// Counts a reply before it starts, atomically (each counter is incremented, then
    /// what the increments returned is judged against the limits), so concurrent sends
    /// cannot overrun the quotas: at most the one reply that crosses the token limit
    /// finishes over it. The three counters are incremented concurrently: one store round
    /// trip, which can run beside reading the user whose limits apply.
    pub async fn count(&self, store: &DynStore, user: UserId) -> Counted {
        let at = now();
        let (date, day_ends) = today(at);
        let keep = day_ends + chrono::Duration::days(1);
        let slot = async {
            match self.max_active_replies > 0 {
                true => store.increment_counter(&slot_key(user), 1, at + self.slot_ttl).await.map(Some),
                false => Ok(None),
            }
        };
        let (messages_key, tokens_key) = (key("messages", user, &date), key("tokens", user, &date));
        let (messages, tokens, active) = tokio::join!(
            store.increment_counter(&messages_key, 1, keep),
            store.increment_counter(&tokens_key, self.tokens_per_reply, keep),
            slot
        );
        let reservation = Reservation { user, date, day_ends, tokens: self.tokens_per_reply };
        Counted { reservation, at, messages, tokens, active }
    }

    /// The counted reply against `limits`: its reservation, or why it may not start (what
    /// was counted is then given back).
    pub async fn judge(
        &self,
        store: &DynStore,
        counted: Counted,
        limits: QuotaLimits,
    ) -> Result<Result<Reservation, Refusal>, StoreError> {
        let Counted { reservation, at, messages, tokens, active } = counted;
        let retry_after = (reservation.day_ends - at).num_seconds().max(1) as u64;
        let refusal = match (&messages, &tokens, &active) {
            (Ok(messages), Ok(tokens), Ok(active)) => {
                let over_messages = limits.messages > 0 && *messages > limits.messages;
                let over_tokens = limits.tokens > 0 && tokens - self.tokens_per_reply >= limits.tokens;
                if over_messages || over_tokens {
                    Some(Refusal::QuotaExceeded { retry_after })
                } else if active.is_some_and(|active| active > self.max_active_replies) {
                    Some(Refusal::TooManyActive)
                } else {
                    None
                }
            }
            _ => None,
        };
        let failed = messages.is_err() || tokens.is_err() || active.is_err();
        if failed || refusal.is_some() {
            // Give back exactly what was counted.
            let keep = reservation.day_ends + chrono::Duration::days(1);
            let (user, date) = (reservation.user, &reservation.date);
            let give_back = async {
                if messages.is_ok() {
                    log_rollback(store.increment_counter(&key("messages", user, date), -1, keep).await);
                }
            };
            let give_tokens = async {
                if tokens.is_ok() {
                    log_rollback(
                        store.increment_counter(&key("tokens", user, date), -self.tokens_per_reply, keep).await,
                    );
                }
            };
            let free_slot = async {
                if matches!(active, Ok(Some(_))) {
                    log_rollback(store.increment_counter(&slot_key(user), -1, at + self.slot_ttl).await);
                }
            };
            tokio::join!(give_back, give_tokens, free_slot);
        }
        messages?;
        tokens?;
        active?;
        Ok(refusal.map_or(Ok(reservation), Err))
    }

    /// Gives a reservation back (the reply never started); the message stays counted when
    /// it was stored anyway (a message refused by the content check).
    pub async fn release(&self, store: &DynStore, reservation: &Reservation, keep_message: bool) {
        self.release_counts(store, reservation, keep_message).await;
        self.free_slot(store, reservation).await;
    }

    /// Settles a reply that ended: its real token use replaces the held-back estimate,
    /// and its prompt-cache hits and misses are added to the day's (for the hit ratio).
    pub async fn settle(&self, store: &DynStore, reservation: &Reservation, usage: Option<&Usage>) {
        let keep = reservation.day_ends + chrono::Duration::days(1);
        let (user, date) = (reservation.user, &reservation.date);
        let used = usage.map_or(0, |u| u.total_tokens as i64);
        let add = |kind: &'static str, by: i64| async move {
            if by != 0 {
                if let Err(e) = store.increment_counter(&key(kind, user, date), by, keep).await {
                    tracing::warn!(error = ?e, kind, "could not settle the reply against the day's counters");
                }
            }
        };
        let hit = usage.and_then(|u| u.prompt_cache_hit_tokens).unwrap_or(0) as i64;
        let miss = usage.and_then(|u| u.prompt_cache_miss_tokens).unwrap_or(0) as i64;
        tokio::join!(
            add("tokens", used - reservation.tokens),
            add(CACHE_HIT, hit),
            add(CACHE_MISS, miss),
            self.free_slot(store, reservation)
        );
    }

    async fn release_counts(&self, store: &DynStore, reservation: &Reservation, keep_message: bool) {
        let keep = reservation.day_ends + chrono::Duration::days(1);
        let (user, date) = (reservation.user, &reservation.date);
        let tokens = store.increment_counter(&key("tokens", user, date), -reservation.tokens, keep).await;
        let messages = match keep_message {
            true => Ok(0),
            false => store.increment_counter(&key("messages", user, date), -1, keep).await,
        };
        if let Err(e) = tokens.and(messages) {
            tracing::warn!(error = ?e, "could not give back a quota reservation");
        }
    }

    async fn free_slot(&self, store: &DynStore, reservation: &Reservation) {
        if self.max_active_replies > 0 {
            let freed = store.increment_counter(&slot_key(reservation.user), -1, now() + self.slot_ttl).await;
            if let Err(e) = freed {
                tracing::warn!(error = ?e, "could not free the reply's running slot");
            }
        }
    }

    pub async fn usage(&self, store: &DynStore, user: UserId, limits: QuotaLimits) -> Result<QuotaUsage, StoreError> {
        let (date, resets_at) = today(now());
        let read = |kind: &'static str| {
            let key = key(kind, user, &date);
            async move { store.read_counter(&key).await }
        };
        let (messages, tokens, hit, miss) =
            tokio::try_join!(read("messages"), read("tokens"), read(CACHE_HIT), read(CACHE_MISS))?;
        Ok(QuotaUsage {
            messages: Allowance { used: messages, limit: limits.messages },
            tokens: Allowance { used: tokens, limit: limits.tokens },
            prompt_cache: CacheUse { hit_tokens: hit, miss_tokens: miss },
            date,
            resets_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).expect("a valid instant").with_timezone(&Utc)
    }

    #[test]
    fn the_cache_hit_ratio_is_hits_over_all_prompt_tokens() {
        let cases = [((0, 0), None), ((16, 4), Some(0.8)), ((0, 10), Some(0.0)), ((10, 0), Some(1.0))];
        for ((hit_tokens, miss_tokens), expected) in cases {
            assert_eq!(CacheUse { hit_tokens, miss_tokens }.hit_ratio(), expected, "{hit_tokens}/{miss_tokens}");
        }
    }

    #[test]
    fn the_quota_day_turns_over_at_midnight_china_time() {
        // (label, instant, China date, resets_at): 00:00 in China is 16:00 UTC.
        const CASES: &[(&str, &str, &str, &str)] = &[
            ("just before China midnight", "2024-05-01T15:59:59.999Z", "2024-05-01", "2024-05-01T16:00:00Z"),
            ("exactly China midnight", "2024-05-01T16:00:00Z", "2024-05-02", "2024-05-02T16:00:00Z"),
            ("just after China midnight", "2024-05-01T16:00:00.001Z", "2024-05-02", "2024-05-02T16:00:00Z"),
            ("UTC midnight is 08:00 in China", "2024-05-01T00:00:00Z", "2024-05-01", "2024-05-01T16:00:00Z"),
            (
                "late on New Year's Eve UTC is already next year",
                "2023-12-31T23:30:00Z",
                "2024-01-01",
                "2024-01-01T16:00:00Z",
            ),
            ("the last instant of a China year", "2024-12-31T15:59:59Z", "2024-12-31", "2024-12-31T16:00:00Z"),
            ("the first instant of a China year", "2024-12-31T16:00:00Z", "2025-01-01", "2025-01-01T16:00:00Z"),
            ("a leap day begins", "2024-02-28T16:00:00Z", "2024-02-29", "2024-02-29T16:00:00Z"),
            ("a leap day ends", "2024-02-29T16:00:00Z", "2024-03-01", "2024-03-01T16:00:00Z"),
        ];
        for &(label, instant, date, resets_at) in CASES {
            let instant = utc(instant);

            let (day, ends) = today(instant);

            assert_eq!(day, date, "{label}: the China date");
            assert_eq!(ends, utc(resets_at), "{label}: resets_at");
            assert!(ends > instant && ends - instant <= chrono::Duration::days(1), "{label}: within one day");
        }
    }
}
