//! The background worker that keeps a companion's long-term context: it claims due jobs
//! (any replica may; a lease keeps each to one), learns facts from the turns memory has
//! not read yet, and folds turns about to leave the context into the conversation's
//! summary. A failure never touches chat: the job is retried later, a bounded number of
//! times, and logged.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc, Weekday};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::context::{estimate_tokens, memory_block, upstream_user_hash};
use super::learning::{extraction_prompt, learnable, parse_ops, MemoryOp};
use super::personas::Persona;
use super::summary::{after_summary, parse_summary, summary_prompt, turns_to_fold, HistoryRoom};
use crate::domain::{
    now, Conversation, ConversationSummary, MemoryFact, MemoryJob, Message, MessageStatus, Role, SummaryText, UserId,
};
use crate::llm::{ChatMessage, ChatRequest, LlmClient, LlmEvent};
use crate::protection::{Decision, Moderator};
use crate::store::DynStore;

#[derive(Debug, Clone)]
pub struct LearnerSettings {
    pub model: String,
    pub poll: Duration,
    pub lease: Duration,
    pub max_attempts: u32,
    pub max_facts: usize,
    /// At most this many new messages are learned from per run (the newest).
    pub turns: usize,
    /// The reply's context limits, which the summary keeps the history within.
    pub context_token_budget: usize,
    pub context_max_messages: usize,
    /// Retries wait for off-peak hours too.
    pub off_peak_only: bool,
}

/// What learning cost and did on this replica, for `/metrics`.
#[derive(Debug, Default)]
pub struct LearnerStats {
    pub jobs_done: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub model_calls: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub prompt_cache_hit_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub summaries: AtomicU64,
}

pub struct MemoryLearner {
    pub store: DynStore,
    pub llm: Arc<LlmClient>,
    pub personas: Arc<super::catalog::PersonaCatalog>,
    /// Learned facts reach later prompts: they pass the content check like any text.
    pub moderator: Option<Arc<Moderator>>,
    pub stats: Arc<LearnerStats>,
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
    #[error(transparent)]
    MalformedSummary(#[from] super::summary::MalformedSummary),
    #[error("the content check is unavailable")]
    ModerationUnavailable,
}

/// What one run changed.
#[derive(Debug, Default)]
struct Learned {
    facts: usize,
    summarized: bool,
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
            Ok(learned) => {
                self.stats.jobs_done.fetch_add(1, Ordering::Relaxed);
                tracing::info!(conversation_id = %job.conversation_id, facts = learned.facts, summarized = learned.summarized, "memory updated from the conversation");
                self.store.finish_memory_job(&job).await
            }
            Err(why) if job.attempts + 1 >= self.settings.max_attempts => {
                self.stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(conversation_id = %job.conversation_id, %why, attempts = job.attempts + 1, "giving up learning from these turns");
                self.store.finish_memory_job(&job).await
            }
            Err(why) => {
                self.stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
                let backoff = now() + chrono::Duration::seconds(30 * 2i64.pow(job.attempts.min(6)));
                let due = if self.settings.off_peak_only { off_peak_from(backoff) } else { backoff };
                tracing::warn!(conversation_id = %job.conversation_id, %why, "learning from the conversation failed; will retry");
                self.store.retry_memory_job(&job, due).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = ?e, "could not settle a memory job; its lease will free it");
        }
    }

    async fn try_learn(&self, job: &MemoryJob) -> Result<Learned, LearnError> {
        let window = self.settings.context_max_messages.max(self.settings.turns) * 2;
        let (conversation, turns, facts) = tokio::try_join!(
            self.store.get_conversation(job.user_id, job.conversation_id),
            self.store.list_messages(job.conversation_id, window, None),
            self.store.list_memories(job.user_id, &job.persona_id),
        )?;
        // Deleted meanwhile: nothing left to do.
        let Some(conversation) = conversation else { return Ok(Learned::default()) };
        // The persona the replies use (the job names it; one removed since falls back as
        // replies do), and its facts are kept under that same id.
        let personas = self.personas.current();
        let persona = personas.get(&job.persona_id).unwrap_or_else(|| personas.default_persona());
        // Each part runs even when the other fails; the job is retried if either did.
        let learned = match persona.memory {
            true => self.learn_facts(job, &conversation, &facts, &turns).await,
            false => Ok(0),
        };
        let memory = persona.memory.then(|| memory_block(&facts)).flatten();
        let summarized = self.fold_into_summary(&conversation, persona, memory.as_deref(), &turns).await;
        Ok(Learned { facts: learned?, summarized: summarized? })
    }

    /// Learns from the complete exchanges memory has not read yet (after a "forget all",
    /// nothing said before it): the model answers with operations on the current facts.
    async fn learn_facts(
        &self,
        job: &MemoryJob,
        conversation: &Conversation,
        facts: &[MemoryFact],
        turns: &[Message],
    ) -> Result<usize, LearnError> {
        let unread = unread_exchanges(turns, conversation.learned_through, self.settings.turns);
        let Some(newest) = learnable(unread).last() else { return Ok(0) };
        let answer = self.ask(conversation.user_id, extraction_prompt(facts, unread)).await?;
        let ops = parse_ops(&answer, facts)?;
        let ops = self.screened(conversation.user_id, ops).await?;
        // The user may have made the companion forget while the model was thinking.
        let now_conversation = self.store.get_conversation(job.user_id, job.conversation_id).await?;
        if now_conversation.is_none_or(|c| c.learned_through != conversation.learned_through) {
            return Ok(0);
        }
        let source = unread.iter().rev().find(|t| t.role == Role::User).map(|t| t.id);
        let (user, persona) = (job.user_id, job.persona_id.as_str());
        let applied = ops.len();
        for op in ops {
            match op {
                MemoryOp::Add(text) => self.store.insert_memory(&MemoryFact::new(user, persona, text, source)).await?,
                MemoryOp::Update(id, text) => {
                    self.store.update_memory(user, persona, id, &text, now()).await?;
                }
                MemoryOp::Delete(id) => {
                    self.store.delete_memory(user, persona, id).await?;
                }
            }
        }
        self.store.mark_learned(conversation.id, newest.created_at).await?;
        self.evict_beyond_cap(user, persona).await?;
        Ok(applied)
    }

    /// Drops learned texts the content check refuses; fails (to retry later) when the
    /// check cannot be asked and the policy is to fail closed.
    async fn screened(&self, user: UserId, ops: Vec<MemoryOp>) -> Result<Vec<MemoryOp>, LearnError> {
        let text_of = |op: &MemoryOp| match op {
            MemoryOp::Add(text) | MemoryOp::Update(_, text) => Some(text.as_str().to_string()),
            MemoryOp::Delete(_) => None,
        };
        let Some(moderator) = &self.moderator else { return Ok(ops) };
        if ops.iter().all(|op| text_of(op).is_none()) {
            return Ok(ops);
        }
        let Some(user) = self.store.get_user(user).await? else { return Ok(Vec::new()) };
        let mut kept = Vec::with_capacity(ops.len());
        for op in ops {
            if let Some(text) = text_of(&op) {
                match moderator.screen_input(&user.openid, &text).await {
                    Ok(Decision::Allow) => {}
                    Ok(Decision::Block { label, .. }) => {
                        tracing::warn!(?label, "a learned memory did not pass the content check; dropped");
                        continue;
                    }
                    Err(()) => return Err(LearnError::ModerationUnavailable),
                }
            }
            kept.push(op);
        }
        Ok(kept)
    }

    /// Folds the oldest turns into the summary once the turns it does not cover fill most
    /// of the room the reply's context leaves them.
    async fn fold_into_summary(
        &self,
        conversation: &Conversation,
        persona: &Persona,
        memory: Option<&str>,
        turns: &[Message],
    ) -> Result<bool, LearnError> {
        // Room as the reply sees it, with space kept for the longest summary.
        // The longest summary, at the worst rate (one token a character), and its header.
        let fixed = estimate_tokens(&persona.system_prompt) + memory.map_or(0, estimate_tokens) + SUMMARY_RESERVE;
        let room = HistoryRoom {
            tokens: self.settings.context_token_budget.saturating_sub(fixed),
            messages: self.settings.context_max_messages,
        };
        let previous = conversation.summary.as_ref();
        let Some(fold) = turns_to_fold(after_summary(turns, previous), room) else { return Ok(false) };
        let through = fold.last().expect("a fold is never empty");
        let answer = self.ask(conversation.user_id, summary_prompt(previous, fold)).await?;
        let summary = ConversationSummary {
            text: parse_summary(&answer)?,
            through: through.id,
            through_at: through.created_at,
            updated_at: now(),
        };
        let saved = self.store.save_summary(conversation.id, &summary).await?;
        if saved {
            self.stats.summaries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(saved)
    }

    /// One JSON-mode call, thinking off; only the call is bounded (applying its answer
    /// must not be cut in half).
    async fn ask(&self, user: UserId, messages: Vec<ChatMessage>) -> Result<String, crate::llm::LlmError> {
        let request = ChatRequest {
            model: self.settings.model.clone(),
            messages,
            thinking: false,
            reasoning_effort: None,
            temperature: None,
            max_tokens: Some(1500),
            user_hash: upstream_user_hash(user),
            json_output: true,
        };
        self.stats.model_calls.fetch_add(1, Ordering::Relaxed);
        let call = async {
            let mut answer = String::new();
            let mut stream = self.llm.stream_chat(request).await?;
            while let Some(event) = stream.next().await {
                match event? {
                    LlmEvent::Content(text) => answer.push_str(&text),
                    LlmEvent::Usage(usage) => self.count(&usage),
                    _ => {}
                }
            }
            Ok(answer)
        };
        // Two calls and their checks stay well inside the job's lease.
        tokio::time::timeout(self.settings.lease / 4, call).await.map_err(|_| crate::llm::LlmError::DeadlineExceeded)?
    }

    fn count(&self, usage: &crate::domain::Usage) {
        self.stats.prompt_tokens.fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        self.stats.completion_tokens.fetch_add(usage.completion_tokens, Ordering::Relaxed);
        let hit = usage.prompt_cache_hit_tokens.unwrap_or(0);
        self.stats.prompt_cache_hit_tokens.fetch_add(hit, Ordering::Relaxed);
        tracing::info!(
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            prompt_cache_hit_tokens = hit,
            "memory call used tokens"
        );
    }

    /// Keeps at most `max_facts`: the least recently learned or corrected go first.
    async fn evict_beyond_cap(&self, user: UserId, persona: &str) -> Result<(), LearnError> {
        let mut facts = self.store.list_memories(user, persona).await?;
        if facts.len() <= self.settings.max_facts {
            return Ok(());
        }
        facts.sort_by_key(|f| f.updated_at);
        for fact in &facts[..facts.len() - self.settings.max_facts] {
            self.store.delete_memory(user, persona, fact.id).await?;
        }
        Ok(())
    }
}

const SUMMARY_RESERVE: usize = SummaryText::MAX_CHARS + 40;

/// The turns after `learned_through`, up to the first reply still being written, without a
/// trailing unanswered user turn (its reply comes with the next run; a turn and its reply
/// are stored in the same millisecond, so the mark must never fall between them), at most
/// the newest `limit`.
fn unread_exchanges(turns: &[Message], learned_through: Option<DateTime<Utc>>, limit: usize) -> &[Message] {
    let start = learned_through.map_or(0, |t| turns.iter().position(|m| m.created_at > t).unwrap_or(turns.len()));
    let mut end =
        turns[start..].iter().position(|m| m.status == MessageStatus::Streaming).map_or(turns.len(), |i| start + i);
    while end > start && turns[end - 1].role == Role::User {
        end -= 1;
    }
    &turns[start.max(end.saturating_sub(limit))..end]
}

/// Whether `at` falls in DeepSeek's double-price peak hours (Beijing weekdays 09–12, 14–18).
pub fn is_peak(at: DateTime<Utc>) -> bool {
    off_peak_from(at) != at
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
    fn only_finished_exchanges_after_the_mark_are_read() {
        let c = crate::domain::Conversation::new(
            UserId::new(),
            "p",
            crate::domain::ConversationTitle::parse("t").unwrap(),
            now(),
        );
        let at = |ms: i64| DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap();
        let turn = |role, ms, status| {
            let mut m = Message::new(&c, role, "x", status);
            m.created_at = at(ms);
            m
        };
        use MessageStatus::{Complete, Streaming};
        use Role::{Assistant, User};
        // Greeting, then exchanges at 10, 20 and 30 ms; each reply shares its turn's millisecond.
        let turns = vec![
            turn(Assistant, 0, Complete),
            turn(User, 10, Complete),
            turn(Assistant, 10, Complete),
            turn(User, 20, Complete),
            turn(Assistant, 20, Complete),
            turn(User, 30, Complete),
            turn(Assistant, 30, Streaming),
        ];
        let cases: Vec<(&str, Option<i64>, usize, std::ops::Range<usize>)> = vec![
            ("nothing read yet: up to the reply being written", None, 40, 0..5),
            ("after the mark", Some(10), 40, 3..5),
            ("the newest within the limit", None, 2, 3..5),
            ("all read", Some(20), 40, 5..5),
        ];
        for (label, mark, limit, expected) in cases {
            let unread = unread_exchanges(&turns, mark.map(at), limit);
            let start = unread.first().map_or(expected.start, |m| turns.iter().position(|t| t.id == m.id).unwrap());
            assert_eq!(start..start + unread.len(), expected, "{label}");
        }
        let unanswered = &turns[..6];
        assert_eq!(unread_exchanges(unanswered, Some(at(10)), 40).len(), 2, "an unanswered turn waits for its reply");
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
