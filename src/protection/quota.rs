//! Daily quotas per user (messages sent, tokens used), by the China Standard Time day.
use chrono::{DateTime, FixedOffset, Utc};

use crate::domain::{now, UserId};
use crate::store::{DynStore, StoreError};

const CHINA_OFFSET_SECS: i32 = 8 * 3600;

#[derive(Debug, Clone, Copy)]
pub struct DailyQuota {
    pub messages: i64,
    pub tokens: i64,
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

impl QuotaUsage {
    pub fn exhausted(&self) -> bool {
        (self.messages.limit > 0 && self.messages.used >= self.messages.limit)
            || (self.tokens.limit > 0 && self.tokens.used >= self.tokens.limit)
    }
}

/// Today's date in China and the instant the day ends.
fn today(at: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let china = FixedOffset::east_opt(CHINA_OFFSET_SECS).expect("valid offset");
    let local = at.with_timezone(&china);
    let midnight = local.date_naive().succ_opt().unwrap_or(local.date_naive()).and_hms_opt(0, 0, 0).unwrap_or_default();
    let ends = midnight.and_local_timezone(china).single().map(|d| d.with_timezone(&Utc)).unwrap_or(at);
    (local.format("%Y-%m-%d").to_string(), ends)
}

fn key(kind: &str, user: UserId, date: &str) -> String {
    format!("quota:{kind}:{user}:{date}")
}

impl DailyQuota {
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

    pub async fn record_message(&self, store: &DynStore, user: UserId) -> Result<(), StoreError> {
        self.add(store, "messages", user, 1).await
    }

    pub async fn record_tokens(&self, store: &DynStore, user: UserId, tokens: i64) -> Result<(), StoreError> {
        if tokens > 0 {
            self.add(store, "tokens", user, tokens).await?;
        }
        Ok(())
    }

    async fn add(&self, store: &DynStore, kind: &str, user: UserId, by: i64) -> Result<(), StoreError> {
        let (date, ends) = today(now());
        store.increment_counter(&key(kind, user, &date), by, ends + chrono::Duration::days(1)).await?;
        Ok(())
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
