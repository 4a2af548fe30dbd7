//! `GET /metrics`: this instance's counters in the Prometheus text format, for the
//! operator (off unless `METRICS_TOKEN` is set; the token is required as a bearer).
use std::fmt::Write;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::chat::ChatService;
use crate::errors::ApiError;
use crate::store::CountingStore;

pub struct MetricsAccess {
    pub token: Option<SecretString>,
}

impl MetricsAccess {
    /// Compares digests, so the comparison takes the same time wherever they differ.
    fn admits(&self, req: &HttpRequest) -> bool {
        let Some(token) = &self.token else { return false };
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        Sha256::digest(given.as_bytes()) == Sha256::digest(token.expose_secret().as_bytes())
    }
}

pub async fn metrics(
    req: HttpRequest,
    access: web::Data<MetricsAccess>,
    store: web::Data<Arc<CountingStore>>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, ApiError> {
    if access.token.is_none() {
        return Err(ApiError::not_found("no such resource"));
    }
    if !access.admits(&req) {
        return Err(ApiError::unauthorized());
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(render(&store, &chat)))
}

fn render(store: &CountingStore, chat: &ChatService) -> String {
    let traffic = store.traffic();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric("companion_store_reads_total", "counter", "Store reads.", vec![(String::new(), traffic.reads)]);
    metric(
        "companion_store_writes_total",
        "counter",
        "Store writes (a bulk write counts once).",
        vec![(String::new(), traffic.writes)],
    );
    let calls = traffic.calls.iter().map(|(op, n)| (format!("{{operation=\"{op}\"}}"), *n)).collect();
    metric("companion_store_calls_total", "counter", "Store calls by operation.", calls);
    metric(
        "companion_generations_running",
        "gauge",
        "Replies being generated on this instance.",
        vec![(String::new(), chat.running_generations() as u64)],
    );
    let circuits = chat
        .upstream_circuits()
        .into_iter()
        .map(|(name, open)| (format!("{{upstream=\"{name}\"}}"), open as u64))
        .collect();
    metric("companion_upstream_circuit_open", "gauge", "1 while an upstream is skipped by its breaker.", circuits);
    let learner = chat.learner_stats();
    let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    metric(
        "companion_memory_jobs_total",
        "counter",
        "Memory and summary jobs run here, by outcome (a failed run is retried).",
        vec![
            ("{outcome=\"done\"}".into(), read(&learner.jobs_done)),
            ("{outcome=\"failed\"}".into(), read(&learner.jobs_failed)),
        ],
    );
    metric(
        "companion_memory_model_calls_total",
        "counter",
        "Model calls made for memory and summaries.",
        vec![(String::new(), read(&learner.model_calls))],
    );
    metric(
        "companion_memory_tokens_total",
        "counter",
        "Tokens used for memory and summaries (prompt_cache_hit is part of prompt).",
        vec![
            ("{kind=\"prompt\"}".into(), read(&learner.prompt_tokens)),
            ("{kind=\"prompt_cache_hit\"}".into(), read(&learner.prompt_cache_hit_tokens)),
            ("{kind=\"completion\"}".into(), read(&learner.completion_tokens)),
        ],
    );
    metric(
        "companion_summaries_total",
        "counter",
        "Conversation summaries written.",
        vec![(String::new(), read(&learner.summaries))],
    );
    let (rate_limited, quota_exceeded) = chat.tallies().totals();
    metric(
        "companion_refusals_total",
        "counter",
        "Requests refused by a rate limit or a daily quota.",
        vec![("{kind=\"rate_limited\"}".into(), rate_limited), ("{kind=\"quota_exceeded\"}".into(), quota_exceeded)],
    );
    out.push_str(&chat.instruments().render());
    out
}
