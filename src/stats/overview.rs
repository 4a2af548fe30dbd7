//! The console's overview: each day's figures, with cost by the configured prices and
//! first-token percentiles from the latency buckets.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{day_of, Prices, LATENCY_BOUNDS_MS};
use crate::store::{DynStore, StoreError};

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Tokens {
    pub cache_hit: i64,
    pub cache_miss: i64,
    pub output: i64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct DayFigures {
    pub day: String,
    pub active_users: i64,
    pub conversations: i64,
    pub replies: i64,
    pub replies_by_status: BTreeMap<String, i64>,
    pub errors_by_code: BTreeMap<String, i64>,
    pub tokens: Tokens,
    pub tokens_by_model: BTreeMap<String, Tokens>,
    /// Estimated, by `MODEL_PRICES`; models without a price are left out (and listed).
    pub cost_cny: f64,
    pub cost_cny_by_model: BTreeMap<String, f64>,
    pub unpriced_models: Vec<String>,
    pub first_token_p50_ms: Option<u64>,
    pub first_token_p95_ms: Option<u64>,
    pub rate_limited: i64,
    pub quota_exceeded: i64,
    /// Completions through the OpenAI-compatible API (their tokens are in `tokens`).
    pub api_requests: i64,
}

#[derive(Debug, Serialize)]
pub struct Overview {
    /// Newest first: today, yesterday, …
    pub days: Vec<DayFigures>,
}

/// The `q` quantile of the latency histogram: the bucket bound it falls under (the
/// slowest bucket reports its lower bound).
fn percentile(buckets: &[i64], q: f64) -> Option<u64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * q).ceil() as i64;
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(*LATENCY_BOUNDS_MS.get(i).unwrap_or(&LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]));
        }
    }
    None
}

pub fn figures(day: &str, counters: &BTreeMap<String, i64>, prices: &Prices) -> DayFigures {
    let mut figures = DayFigures { day: day.to_string(), ..Default::default() };
    let mut buckets = vec![0; LATENCY_BOUNDS_MS.len() + 1];
    for (name, &value) in counters {
        let parts: Vec<&str> = name.split('|').collect();
        match parts.as_slice() {
            ["active_users"] => figures.active_users = value,
            ["conversations"] => figures.conversations = value,
            ["replies"] => figures.replies = value,
            ["rate_limited"] => figures.rate_limited = value,
            ["quota_exceeded"] => figures.quota_exceeded = value,
            ["api_requests"] => figures.api_requests = value,
            ["status", status] => _ = figures.replies_by_status.insert(status.to_string(), value),
            ["error", code] => _ = figures.errors_by_code.insert(code.to_string(), value),
            ["first_token", bucket] => {
                if let Some(slot) = bucket.parse::<usize>().ok().and_then(|b| buckets.get_mut(b)) {
                    *slot += value;
                }
            }
            ["tokens", model, kind, rate] => {
                let by_model = figures.tokens_by_model.entry(model.to_string()).or_default();
                for tokens in [&mut figures.tokens, by_model] {
                    match *kind {
                        "hit" => tokens.cache_hit += value,
                        "miss" => tokens.cache_miss += value,
                        _ => tokens.output += value,
                    }
                }
                match prices.cost(model, kind, rate, value) {
                    Some(cost) => {
                        figures.cost_cny += cost;
                        *figures.cost_cny_by_model.entry(model.to_string()).or_default() += cost;
                    }
                    None if !figures.unpriced_models.contains(&model.to_string()) => {
                        figures.unpriced_models.push(model.to_string())
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }
    figures.first_token_p50_ms = percentile(&buckets, 0.50);
    figures.first_token_p95_ms = percentile(&buckets, 0.95);
    figures
}

/// The last `days` days' figures, newest first.
pub async fn overview(store: &DynStore, days: u32, prices: &Prices, at: DateTime<Utc>) -> Result<Overview, StoreError> {
    let names: Vec<String> = (0..days.max(1)).map(|back| day_of(at - chrono::Duration::days(back.into()))).collect();
    let stored: BTreeMap<String, BTreeMap<String, i64>> = store.read_daily_stats(&names).await?.into_iter().collect();
    let empty = BTreeMap::new();
    let days = names.iter().map(|day| figures(day, stored.get(day).unwrap_or(&empty), prices)).collect();
    Ok(Overview { days })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_counters_become_figures_with_cost_and_latency_percentiles() {
        let prices = Prices::parse("deepseek-flash=0.04/2/3", 2.0).unwrap();
        let counters: BTreeMap<String, i64> = [
            ("active_users", 3),
            ("replies", 10),
            ("status|complete", 9),
            ("status|failed", 1),
            ("error|upstream_timeout", 1),
            ("first_token|2", 5),  // ≤ 300 ms
            ("first_token|4", 4),  // ≤ 750 ms
            ("first_token|11", 1), // slower than 8 s
            ("tokens|deepseek-flash|miss|off_peak", 1_000_000),
            ("tokens|deepseek-flash|miss|peak", 1_000_000),
            ("tokens|deepseek-flash|output|off_peak", 100_000),
            ("tokens|qwen-plus|output|off_peak", 5),
            ("rate_limited", 2),
            ("api_requests", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

        let f = figures("2026-11-23", &counters, &prices);

        assert_eq!((f.active_users, f.replies, f.rate_limited, f.api_requests), (3, 10, 2, 4));
        assert_eq!(f.replies_by_status["failed"], 1);
        assert_eq!(f.errors_by_code["upstream_timeout"], 1);
        assert_eq!(f.first_token_p50_ms, Some(300));
        assert_eq!(f.first_token_p95_ms, Some(8000));
        assert_eq!(f.tokens, Tokens { cache_hit: 0, cache_miss: 2_000_000, output: 100_005 });
        assert!((f.cost_cny - (2.0 + 4.0 + 0.3)).abs() < 1e-9, "{}", f.cost_cny);
        assert_eq!(f.unpriced_models, ["qwen-plus"]);
        assert_eq!(figures("2026-11-22", &BTreeMap::new(), &prices).first_token_p50_ms, None);
    }
}
