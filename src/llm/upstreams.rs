//! The ordered upstreams and the one failover rule: a request goes to the first upstream
//! whose circuit admits it; before the first token, a failure that `allows_failover`
//! moves it to the next one; once text (or reasoning) has streamed it stays where it is.
//! After every upstream was tried, the round repeats after a backoff, `max_retries` times.
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{sleep, Instant};

use super::breaker::{Admission, Breaker};
use super::compatible::{AttemptError, CompatibleClient};
use super::{ChatRequest, LlmError, LlmEvent, LlmStream};

pub struct Upstream {
    /// How logs and stored replies name it (`deepseek`, `fallback1`, …).
    pub name: String,
    pub client: CompatibleClient,
    /// `None`: the model the request asks for (the first upstream, where personas and
    /// the preview model apply); `Some`: this upstream's own model.
    pub model: Option<String>,
    pub breaker: Breaker,
}

pub struct UpstreamPool {
    upstreams: Vec<Upstream>,
    max_retries: u32,
    retry_base: Duration,
}

/// Longest wait between rounds, whatever an upstream's Retry-After says.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl UpstreamPool {
    pub fn new(upstreams: Vec<Upstream>, max_retries: u32, retry_base: Duration) -> Self {
        UpstreamPool { upstreams, max_retries, retry_base }
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    #[tracing::instrument(name = "upstream.stream_chat", skip_all, fields(model = %request.model))]
    pub async fn stream_chat(&self, request: ChatRequest) -> Result<LlmStream, LlmError> {
        let mut last: Option<AttemptError> = None;
        for round in 0..=self.max_retries {
            if round > 0 {
                let backoff = self.retry_base * 2u32.saturating_pow(round - 1);
                let wait = last.as_ref().and_then(|(_, after)| *after).unwrap_or(backoff).min(MAX_BACKOFF);
                tracing::warn!(round, wait_ms = wait.as_millis() as u64, "every upstream failed; trying again");
                sleep(wait).await;
            }
            let mut attempted = false;
            for upstream in &self.upstreams {
                let admission = upstream.breaker.admit(Instant::now());
                if admission == Admission::Skip {
                    continue;
                }
                attempted = true;
                let mut verdict =
                    Verdict { breaker: &upstream.breaker, probe: admission == Admission::Probe, given: false };
                let model = upstream.model.as_deref().unwrap_or(&request.model);
                match attempt(upstream, &request, model).await {
                    Ok(stream) => {
                        verdict.up();
                        return Ok(stream);
                    }
                    Err((error, retry_after)) if error.allows_failover() => {
                        verdict.down(&upstream.name);
                        tracing::warn!(upstream = %upstream.name, error = error.code(), "upstream failed before the first token");
                        last = Some((error, retry_after));
                    }
                    Err((error, _)) => {
                        // It answered: it is up, and the request would fail the same elsewhere.
                        verdict.up();
                        tracing::error!(upstream = %upstream.name, error = error.code(), "upstream refused the request");
                        return Err(error);
                    }
                }
            }
            if !attempted {
                tracing::error!("every upstream's circuit is open; failing fast");
                return Err(LlmError::Unavailable);
            }
        }
        let (error, _) = last.unwrap_or((LlmError::Unavailable, None));
        tracing::error!(error = error.code(), "every upstream failed");
        Err(error)
    }
}

/// One upstream's attempt, up to its first token: a failure before it is still the
/// upstream's (and may fail over); what it sent until then is replayed to the caller.
async fn attempt(upstream: &Upstream, request: &ChatRequest, model: &str) -> Result<LlmStream, AttemptError> {
    let mut stream = upstream.client.open(request, model).await?.fuse();
    let mut prefix = vec![Ok(LlmEvent::ServedBy(upstream.name.clone()))];
    while let Some(item) = stream.next().await {
        match item {
            Err(e) if e.allows_failover() => return Err((e, None)),
            Err(e) => {
                prefix.push(Err(e));
                break;
            }
            Ok(event) => {
                let first_token = matches!(event, LlmEvent::Content(_) | LlmEvent::Reasoning(_) | LlmEvent::Finish(_));
                prefix.push(Ok(event));
                if first_token {
                    break;
                }
            }
        }
    }
    Ok(Box::pin(futures_util::stream::iter(prefix).chain(stream)))
}

/// Reports an attempt's outcome to the breaker; an attempt dropped midway (the reply
/// was cancelled) that was the probe lets the next request probe instead.
struct Verdict<'a> {
    breaker: &'a Breaker,
    probe: bool,
    given: bool,
}

impl Verdict<'_> {
    fn up(&mut self) {
        self.given = true;
        self.breaker.succeeded();
    }

    fn down(&mut self, name: &str) {
        self.given = true;
        if self.breaker.failed(Instant::now(), self.probe) {
            tracing::error!(upstream = %name, "circuit opened: this upstream is skipped until a probe succeeds");
        }
    }
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        if self.probe && !self.given {
            self.breaker.probe_abandoned(Instant::now());
        }
    }
}
