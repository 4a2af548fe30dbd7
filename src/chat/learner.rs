//! The background worker that learns facts from conversations: it claims due memory jobs
//! (any replica may; a lease keeps it to one), asks the model in JSON mode, and applies the
//! operations. A failure never touches chat: the job is retried later, a bounded number of
//! times, and logged.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc, Weekday};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::learning::{extraction_prompt, parse_ops, MemoryOp};
use crate::domain::{now, MemoryFact, MemoryJob, Role};
use crate::llm::{ChatRequest, LlmClient, LlmEvent};
use crate::store::DynStore;

#[derive(Debug, Clone)]
pub struct LearnerSettings {
    pub model: String,
    pub poll: Duration,
    pub lease: Duration,
    pub max_attempts: u32,
    pub max_facts: usize,
    /// Turns of the conversation read per run (its newest).
    pub turns: usize,
}

pub struct MemoryLearner {
    pub store: DynStore,
    pub llm: Arc<LlmClient>,
    pub settings: LearnerSettings,
}

#[derive(Debug, thiserror::Error)]
enum LearnError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("upstream: {0}")]
    Upstream(#[from] crate::llm::LlmError),
    #[error(transparent)]
    Malformed(#[from] super::learning::MalformedOps),
}

impl MemoryLearner {
    /// Claims and runs due jobs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
            let lease = chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
            while !stop.is_cancelled() {
                let at = now();
                match self.store.claim_memory_job(at, at + lease).await {
                    Ok(Some(job)) => self.learn(job).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = ?e, "could not claim a memory job");
                        break;
                    }
                }
            }
        }
    }

    async fn learn(&self, job: MemoryJob) {
        let outcome = self.try_learn(&job).await.map_err(|e| e.to_string());
        let settled = match outcome {
            Ok(applied) => {
                tracing::info!(conversation_id = %job.conversation_id, applied, "memory updated from the conversation");
                self.store.finish_memory_job(&job).await
            }
            Err(why) if job.attempts + 1 >= self.settings.max_attempts => {
                tracing::error!(conversation_id = %job.conversation_id, %why, attempts = job.attempts + 1, "giving up learning from these turns");
                self.store.finish_memory_job(&job).await
            }
            Err(why) => {
                let wait = chrono::Duration::seconds(30 * 2i64.pow(job.attempts.min(6)));
                tracing::warn!(conversation_id = %job.conversation_id, %why, "learning from the conversation failed; will retry");
                self.store.retry_memory_job(&job, now() + wait).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = ?e, "could not settle a memory job; its lease will free it");
        }
    }

    async fn try_learn(&self, job: &MemoryJob) -> Result<usize, LearnError> {
        let (facts, turns) = tokio::try_join!(
            self.store.list_memories(job.user_id, &job.persona_id),
            self.store.list_messages(job.conversation_id, self.settings.turns, None)
        )?;
        if super::learning::learnable(&turns).next().is_none() {
            return Ok(0);
        }
        let request = ChatRequest {
            model: self.settings.model.clone(),
            messages: extraction_prompt(&facts, &turns),
            thinking: false,
            reasoning_effort: None,
            temperature: None,
            max_tokens: Some(1000),
            user_hash: super::context::upstream_user_hash(job.user_id),
            json_output: true,
        };
        // Only the model call is bounded: applying its answer must not be cut in half.
        let answer = tokio::time::timeout(self.settings.lease / 2, self.ask(request))
            .await
            .map_err(|_| crate::llm::LlmError::DeadlineExceeded)??;
        let ops = parse_ops(&answer, &facts)?;
        let source = turns.iter().rev().find(|t| t.role == Role::User).map(|t| t.id);
        let applied = ops.len();
        for op in ops {
            match op {
                MemoryOp::Add(text) => {
                    self.store.insert_memory(&MemoryFact::new(job.user_id, &job.persona_id, text, source)).await?
                }
                MemoryOp::Update(id, text) => {
                    self.store.update_memory(job.user_id, &job.persona_id, id, &text, now()).await?;
                }
                MemoryOp::Delete(id) => {
                    self.store.delete_memory(job.user_id, &job.persona_id, id).await?;
                }
            }
        }
        self.evict_beyond_cap(job).await?;
        Ok(applied)
    }

    async fn ask(&self, request: ChatRequest) -> Result<String, crate::llm::LlmError> {
        let mut answer = String::new();
        let mut stream = self.llm.stream_chat(request).await?;
        while let Some(event) = stream.next().await {
            if let LlmEvent::Content(text) = event? {
                answer.push_str(&text);
            }
        }
        Ok(answer)
    }

    /// Keeps at most `max_facts`: the least recently learned or corrected go first.
    async fn evict_beyond_cap(&self, job: &MemoryJob) -> Result<(), LearnError> {
        let mut facts = self.store.list_memories(job.user_id, &job.persona_id).await?;
        if facts.len() <= self.settings.max_facts {
            return Ok(());
        }
        facts.sort_by_key(|f| f.updated_at);
        for fact in &facts[..facts.len() - self.settings.max_facts] {
            self.store.delete_memory(job.user_id, &job.persona_id, fact.id).await?;
        }
        Ok(())
    }
}

/// When a job made at `at` may run: at once, or (off-peak only) after DeepSeek's peak
/// hours, which cost double: Beijing weekdays 09:00–12:00 and 14:00–18:00.
pub fn off_peak_from(at: DateTime<Utc>) -> DateTime<Utc> {
    let china = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    let local = at.with_timezone(&china);
    let weekday = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
    let end_hour = match local.hour() {
        9..=11 if weekday => 12,
        14..=17 if weekday => 18,
        _ => return at,
    };
    let end = local.date_naive().and_hms_opt(end_hour, 0, 0).and_then(|t| t.and_local_timezone(china).single());
    end.map_or(at, |end| end.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn off_peak_work_waits_for_the_end_of_beijing_peak_hours_on_weekdays() {
        // 2026-11-23 is a Monday. Beijing is UTC+8.
        let cases = [
            ("Monday 08:59 Beijing: off-peak", "2026-11-23T00:59:00Z", "2026-11-23T00:59:00Z"),
            ("Monday 09:00 Beijing: until noon", "2026-11-23T01:00:00Z", "2026-11-23T04:00:00Z"),
            ("Monday 11:59 Beijing: until noon", "2026-11-23T03:59:00Z", "2026-11-23T04:00:00Z"),
            ("Monday 12:30 Beijing: lunch is off-peak", "2026-11-23T04:30:00Z", "2026-11-23T04:30:00Z"),
            ("Monday 14:00 Beijing: until 18:00", "2026-11-23T06:00:00Z", "2026-11-23T10:00:00Z"),
            ("Monday 18:00 Beijing: off-peak", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z"),
            ("Saturday 10:00 Beijing: weekend", "2026-11-28T02:00:00Z", "2026-11-28T02:00:00Z"),
            ("Sunday 23:30 UTC is Monday 07:30 Beijing", "2026-11-22T23:30:00Z", "2026-11-22T23:30:00Z"),
        ];
        for (label, at, expected) in cases {
            assert_eq!(off_peak_from(utc(at)), utc(expected), "{label}");
        }
    }
}
