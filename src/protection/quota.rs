//! Daily quotas per user (messages sent, tokens used), by the China Standard Time day.
use chrono::{DateTime, FixedOffset, Utc};

use crate::domain::{now, UserId};
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

#[derive(Debug, Clone)]
pub struct QuotaUsage {
    pub date: String,
    pub messages: Allowance,
    pub tokens: Allowance,
    pub resets_at: DateTime<Utc>,
}

/// Today's date in China and the instant the day ends.
fn today(at: DateTime<Utc>) -> (String, DateTime<Utc>) {
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
    /// Counts a reply before it starts, atomically (each counter is incremented, then
    /// what the increments returned is checked), so concurrent sends cannot overrun the
    /// quotas: at most the one reply that crosses the token limit finishes over it. The
    /// three counters are incremented concurrently: one store round trip.
    pub async fn reserve(&self, store: &DynStore, user: UserId) -> Result<Result<Reservation, Refusal>, StoreError> {
        let at = now();
        let (date, day_ends) = today(at);
        let retry_after = (day_ends - at).num_seconds().max(1) as u64;
        let keep = day_ends + chrono::Duration::days(1);
        let reservation = Reservation { user, date: date.clone(), day_ends, tokens: self.tokens_per_reply };
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
        let refusal = match (&messages, &tokens, &active) {
            (Ok(messages), Ok(tokens), Ok(active)) => {
                let over_messages = self.messages > 0 && *messages > self.messages;
                let over_tokens = self.tokens > 0 && tokens - self.tokens_per_reply >= self.tokens;
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
            let give_back = async {
                if messages.is_ok() {
                    log_rollback(store.increment_counter(&messages_key, -1, keep).await);
                }
            };
            let give_tokens = async {
                if tokens.is_ok() {
                    log_rollback(store.increment_counter(&tokens_key, -self.tokens_per_reply, keep).await);
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

    /// Settles a reply that ended: its real token use replaces the held-back estimate.
    pub async fn settle(&self, store: &DynStore, reservation: &Reservation, used_tokens: i64) {
        let keep = reservation.day_ends + chrono::Duration::days(1);
        let difference = used_tokens - reservation.tokens;
        if difference != 0 {
            let tokens = key("tokens", reservation.user, &reservation.date);
            if let Err(e) = store.increment_counter(&tokens, difference, keep).await {
                tracing::warn!(error = ?e, "could not settle the reply's tokens against the daily quota");
            }
        }
        self.free_slot(store, reservation).await;
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

    pub async fn usage(&self, store: &DynStore, user: UserId) -> Result<QuotaUsage, StoreError> {
        let (date, resets_at) = today(now());
        Ok(QuotaUsage {
            messages: Allowance {
                used: store.read_counter(&key("messages", user, &date)).await?,
                limit: self.messages,
            },
            tokens: Allowance { used: store.read_counter(&key("tokens", user, &date)).await?, limit: self.tokens },
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
