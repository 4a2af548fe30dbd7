//! The task that owns one reply: it reads the upstream to the end whether or not anyone
//! is watching, saves progress at least every `save_interval`, and stores the final
//! state before it tells watchers the reply is over.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::progress::ProgressSaver;
use super::registry::Registry;
use super::LiveReply;
use crate::domain::{
    now, Conclusion, ConversationId, FinishReason, GenerationEnd, MessageId, MessageProgress, ReplyEnd, ReplyFailure,
    Served, Usage,
};
use crate::llm::{ChatRequest, LlmClient, LlmError, LlmEvent};
use crate::protection::{DailyQuota, Decision, OutputModeration, Reservation};
use crate::store::DynStore;

pub struct GenerationJob {
    pub store: DynStore,
    pub llm: Arc<LlmClient>,
    pub registry: Arc<Registry>,
    pub conversation_id: ConversationId,
    pub user_id: crate::domain::UserId,
    /// Where the reply's latency, outcome and tokens are counted for `/metrics`.
    pub instruments: Arc<crate::instruments::Instruments>,
    pub assistant_id: MessageId,
    pub source: ReplySource,
    /// Saves the reply's progress (with every other reply's) while it streams.
    pub progress: Arc<ProgressSaver>,
    pub lease: Duration,
    /// The quota reservation the reply settles when it ends (its real token use).
    pub quota: Option<(DailyQuota, Reservation)>,
    /// Checks the reply's text with msgSecCheck while it streams and at the end.
    pub moderation: Option<OutputModeration>,
    /// Its place under the instance's cap on running generations, given back at the end.
    pub slot: Option<crate::chat::Slot>,
    /// Learn from the conversation once it goes quiet, when the reply completes.
    pub remember: Option<Remember>,
}

/// What a reply's text comes from.
#[derive(Clone)]
pub enum ReplySource {
    /// The model answers; for a persona with the crisis classifier, only if the classifier
    /// finds no crisis (else the preset crisis reply).
    Model { request: ChatRequest, classify: Option<Classify> },
    /// The operator's preset text (an exit phrase's closing, the crisis response): the
    /// model is not called.
    Preset(String),
}

/// The crisis classifier's call, and what answers when it finds a crisis.
#[derive(Clone)]
pub struct Classify {
    pub request: ChatRequest,
    pub crisis_reply: String,
}

/// How long a message waits for the crisis classifier before the companion answers anyway.
const CLASSIFIER_DEADLINE: Duration = Duration::from_secs(8);

impl Classify {
    /// Whether the classifier recognises a crisis; a failed or slow call is "no" (logged).
    async fn finds_crisis(&self, llm: &LlmClient) -> bool {
        let call = async {
            let mut answer = String::new();
            let mut stream = llm.stream_chat(self.request.clone()).await?;
            while let Some(event) = stream.next().await {
                if let LlmEvent::Content(piece) = event? {
                    answer.push_str(&piece);
                }
            }
            Ok::<_, LlmError>(answer)
        };
        match tokio::time::timeout(CLASSIFIER_DEADLINE, call).await {
            Ok(Ok(answer)) => crate::safety::classifier::is_crisis(&answer),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the crisis classifier failed; the companion answers");
                false
            }
            Err(_) => {
                tracing::warn!("the crisis classifier was too slow; the companion answers");
                false
            }
        }
    }
}

impl ReplySource {
    /// The model asked, for the day's figures.
    fn model(&self) -> &str {
        match self {
            ReplySource::Model { request, .. } => &request.model,
            ReplySource::Preset(_) => "preset",
        }
    }
}

/// Where a completed reply's conversation is to be learned from, and when.
pub struct Remember {
    pub user: crate::domain::UserId,
    pub persona: String,
    pub debounce: Duration,
    pub off_peak_only: bool,
}

/// What the upstream said besides text.
#[derive(Default)]
struct Tail {
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    /// How long the first token (text or reasoning) took from the request upstream.
    first_token: Option<std::time::Duration>,
}

/// Starts the generation; the returned receiver sees every change.
pub fn spawn(job: GenerationJob) -> watch::Receiver<LiveReply> {
    let (tx, cancel) = job.registry.register(job.assistant_id);
    let rx = tx.subscribe();
    let span =
        tracing::info_span!("generation", message_id = %job.assistant_id, conversation_id = %job.conversation_id);
    let registry = job.registry.clone();
    let aftercare = Aftercare {
        store: job.store.clone(),
        registry: job.registry.clone(),
        conversation_id: job.conversation_id,
        assistant_id: job.assistant_id,
        live: tx.subscribe(),
    };
    let guarded = async move {
        if AssertUnwindSafe(run(job, tx, cancel)).catch_unwind().await.is_err() {
            aftercare.after_panic().await;
        }
    };
    registry.spawn(tracing::Instrument::instrument(guarded, span));
    rx
}

/// What is left to do when a generation panicked: without it the reply would stay
/// `streaming`, registered here forever, with its conversation locked for a lease.
struct Aftercare {
    store: DynStore,
    registry: Arc<Registry>,
    conversation_id: ConversationId,
    assistant_id: MessageId,
    live: watch::Receiver<LiveReply>,
}

impl Aftercare {
    async fn after_panic(self) {
        tracing::error!(message_id = %self.assistant_id, "the generation panicked; storing what it had");
        let state = self.live.borrow().clone();
        let progress = final_progress(&state, GenerationEnd::Failed(ReplyFailure::GenerationLost), None);
        if let Err(e) = self.store.save_progress(self.assistant_id, &progress, now()).await {
            tracing::error!(error = ?e, "could not store the reply of a panicked generation");
        }
        if let Err(e) = self.store.release_generation(self.conversation_id, self.assistant_id, now()).await {
            tracing::error!(error = ?e, "could not release the conversation");
        }
        self.registry.finish(self.assistant_id);
    }
}

async fn run(job: GenerationJob, tx: watch::Sender<LiveReply>, cancel: CancellationToken) {
    let started = std::time::Instant::now();
    // Progress is saved with every other reply's, once per interval, until the end (or
    // a panic: the guard stops it while unwinding).
    job.progress.track(job.assistant_id, job.conversation_id, tx.subscribe(), cancel.clone());
    let _tracked = UntrackOnDrop(job.progress.clone(), job.assistant_id);
    job.registry.spawn(settle_abandoned_after_first_token(
        job.store.clone(),
        job.conversation_id,
        job.assistant_id,
        tx.subscribe(),
    ));

    let mut tail = Tail::default();
    let shutdown = job.registry.shutdown_token();
    let blocked = Arc::new(OnceLock::new());
    let block_signal = CancellationToken::new();
    let output_checks = job.moderation.clone().map(|moderation| {
        job.registry.spawn(check_output_windows(moderation, tx.subscribe(), block_signal.clone(), blocked.clone()))
    });
    let end = tokio::select! {
        result = produce(&job.llm, job.source.clone(), &tx, &mut tail) => match result {
            Ok(()) => GenerationEnd::Finished(tail.finish_reason.take()),
            Err(e) => GenerationEnd::Failed(ReplyFailure::Upstream(e)),
        },
        _ = shutdown.cancelled() => GenerationEnd::Failed(ReplyFailure::ServerShutdown),
        _ = cancel.cancelled() => GenerationEnd::Failed(ReplyFailure::Cancelled),
        _ = block_signal.cancelled() => {
            GenerationEnd::Failed(blocked.get().map_or(ReplyFailure::ContentBlocked, |(why, _)| why.clone()))
        }
    };
    if let Some(task) = output_checks {
        task.abort();
    }
    let mut label = blocked.get().and_then(|(_, label)| *label);
    let end = final_output_check(&job, &tx, end, &mut label).await;

    job.progress.untrack(job.assistant_id);
    let mut progress = final_progress(&tx.borrow(), end, tail.usage);
    if let Some(error) = progress.error.as_mut() {
        error.label = label;
    }
    // Watchers hear `done` only for a reply that is stored complete.
    let end = match save_final(&job, &progress, &shutdown).await {
        FinalSave::Stored => ReplyEnd::of_progress(&progress),
        FinalSave::AlreadyFinal => stored_end(&job).await,
        FinalSave::Unsaved => None,
    }
    .unwrap_or_else(|| ReplyEnd::failed(&ReplyFailure::StorageUnavailable));
    if let Err(e) = job.store.release_generation(job.conversation_id, job.assistant_id, now()).await {
        // The lease expires on its own; the next send waits at most that long.
        tracing::error!(error = ?e, "could not release the conversation");
    }
    if let Some((quota, reservation)) = &job.quota {
        quota.settle(&job.store, reservation, progress.usage.as_ref()).await;
    }
    tracing::info!(status = ?progress.status, chars = progress.content.chars().count(), "reply finished");

    // The instance may start another generation in its place.
    drop(job.slot);
    tx.send_modify(|state| state.end = Some(end));
    job.registry.finish(job.assistant_id);
    if progress.status == crate::domain::MessageStatus::Complete {
        if let Some(remember) = &job.remember {
            schedule_learning(&job.store, job.conversation_id, remember).await;
        }
    }
    // After the client has its end: the day's figures never delay a reply.
    count_reply(&job.instruments, &progress, tail.first_token, started.elapsed(), tx.borrow().served.as_ref());
    let served_model = tx.borrow().served.as_ref().and_then(|s| s.model.clone());
    let figures = crate::stats::ReplyFigures {
        user: job.user_id,
        status: progress.status,
        error_code: progress.error.as_ref().map(|e| e.code.as_str()),
        usage: progress.usage.as_ref(),
        model: Some(served_model.as_deref().unwrap_or(job.source.model())),
        first_token_ms: tail.first_token.map(|d| d.as_millis() as u64),
        at: now(),
    };
    crate::stats::record_reply(&job.store, figures).await;
}

/// The reply in this instance's Prometheus instruments.
fn count_reply(
    i: &crate::instruments::Instruments,
    progress: &MessageProgress,
    first_token: Option<Duration>,
    took: Duration,
    served: Option<&Served>,
) {
    if let Some(first) = first_token {
        i.first_token.observe(first.as_secs_f64());
    }
    i.reply_duration.observe(took.as_secs_f64());
    let status = format!("{:?}", progress.status).to_lowercase();
    let code = progress.error.as_ref().map_or("", |e| e.code.as_str());
    let upstream = served.map_or("", |s| s.upstream.as_str());
    i.replies.with_label_values(&[status.as_str(), code, upstream]).inc();
    if let Some(usage) = &progress.usage {
        i.count_tokens(usage);
    }
}

/// Asks for the conversation to be learned from once it has been quiet for a while
/// (every new reply pushes that back), off-peak if so configured.
async fn schedule_learning(store: &DynStore, conversation: ConversationId, remember: &Remember) {
    let due = now() + chrono::Duration::from_std(remember.debounce).unwrap_or_default();
    let due = if remember.off_peak_only { crate::chat::learner::off_peak_from(due) } else { due };
    if let Err(e) = store.schedule_memory_job(conversation, remember.user, &remember.persona, due).await {
        tracing::warn!(error = ?e, "could not schedule learning from the conversation");
    }
}

/// Stops saving a reply's progress when its generation ends, however it ends.
struct UntrackOnDrop(Arc<ProgressSaver>, MessageId);

impl Drop for UntrackOnDrop {
    fn drop(&mut self) {
        self.0.untrack(self.1);
    }
}

/// Replies of this conversation left `streaming` by a replica that died are settled once
/// this reply is under way (its first token): off the send's critical path, and while it
/// still holds the claim. A reply that ends without a token leaves them to the next one.
async fn settle_abandoned_after_first_token(
    store: DynStore,
    conversation: ConversationId,
    reply: MessageId,
    mut live: watch::Receiver<LiveReply>,
) {
    let under_way = |s: &LiveReply| !s.content.is_empty() || !s.reasoning.is_empty();
    match live.wait_for(|s| under_way(s) || s.end.is_some()).await {
        Ok(state) if under_way(&state) && state.end.is_none() => {}
        _ => return,
    }
    match store.interrupt_abandoned_replies(conversation, reply, now()).await {
        Ok(0) => {}
        Ok(marked) => tracing::warn!(marked, "replies abandoned by a stopped replica were marked interrupted"),
        Err(e) => tracing::warn!(error = ?e, "could not settle abandoned replies; the sweeper will"),
    }
}

async fn produce(
    llm: &LlmClient,
    source: ReplySource,
    tx: &watch::Sender<LiveReply>,
    tail: &mut Tail,
) -> Result<(), LlmError> {
    match source {
        ReplySource::Model { classify: Some(classify), .. } if classify.finds_crisis(llm).await => {
            tx.send_modify(|state| {
                state.crisis = true;
                state.content.push_str(&classify.crisis_reply);
            });
            tail.finish_reason = Some(FinishReason::Stop);
            Ok(())
        }
        ReplySource::Model { request, .. } => pump(llm, request, tx, tail).await,
        ReplySource::Preset(text) => {
            tx.send_modify(|state| state.content.push_str(&text));
            tail.finish_reason = Some(FinishReason::Stop);
            Ok(())
        }
    }
}

async fn pump(
    llm: &LlmClient,
    request: ChatRequest,
    tx: &watch::Sender<LiveReply>,
    tail: &mut Tail,
) -> Result<(), LlmError> {
    let asked = request.model.clone();
    let started = std::time::Instant::now();
    let mut stream = llm.stream_chat(request).await?;
    while let Some(event) = stream.next().await {
        let event = event?;
        if tail.first_token.is_none() && matches!(event, LlmEvent::Content(_) | LlmEvent::Reasoning(_)) {
            tail.first_token = Some(started.elapsed());
        }
        match event {
            LlmEvent::ServedBy(upstream) => {
                tx.send_modify(|state| state.served = Some(Served { upstream, model: None }));
            }
            LlmEvent::Model(model) => {
                let upstream = tx.borrow().served.as_ref().map(|s| s.upstream.clone()).unwrap_or_default();
                // A provider may swap models behind a name: what answered is logged and kept.
                tracing::info!(%upstream, served_model = %model, asked_model = %asked, "upstream serves the reply");
                tx.send_modify(|state| {
                    state.served = Some(Served { upstream, model: Some(model) });
                });
            }
            LlmEvent::Content(text) => tx.send_modify(|state| state.content.push_str(&text)),
            LlmEvent::Reasoning(text) => tx.send_modify(|state| state.reasoning.push_str(&text)),
            LlmEvent::Finish(reason) => tail.finish_reason = Some(reason),
            LlmEvent::Usage(usage) => tail.usage = Some(usage),
        }
    }
    Ok(())
}

/// The stored final state, by the one end-of-reply mapping.
fn final_progress(state: &LiveReply, end: GenerationEnd, usage: Option<Usage>) -> MessageProgress {
    let conclusion = Conclusion::of(end, !state.content.is_empty());
    let withheld = conclusion.failure.as_ref().is_some_and(ReplyFailure::withholds_text);
    MessageProgress {
        content: if withheld { String::new() } else { state.content.clone() },
        reasoning_content: (!withheld && !state.reasoning.is_empty()).then(|| state.reasoning.clone()),
        status: conclusion.status,
        usage,
        finish_reason: conclusion.finish_reason,
        error: conclusion.failure.map(|f| f.to_error()),
        served: state.served.clone(),
    }
}

/// Checks each new window of the reply (overlapping the previous one a little, so text
/// across a window edge is seen whole); signals `block` on a blocking verdict.
async fn check_output_windows(
    moderation: OutputModeration,
    mut rx: watch::Receiver<LiveReply>,
    block: CancellationToken,
    why: Arc<OnceLock<(ReplyFailure, Option<i64>)>>,
) {
    let window = moderation.moderator.policy.window_chars;
    let mut checked = 0usize;
    while rx.changed().await.is_ok() {
        let (text, total) = {
            let state = rx.borrow_and_update();
            let total = state.content.chars().count();
            if total < checked + window {
                continue;
            }
            let start = checked.saturating_sub(window / 4);
            (state.content.chars().skip(start).collect::<String>(), total)
        };
        checked = total;
        if let Decision::Block { failure, label } =
            moderation.moderator.screen_output(&moderation.openid, &text, false).await
        {
            let _ = why.set((failure, label));
            block.cancel();
            return;
        }
    }
}

/// Whatever text is kept (a complete reply, or the part of one that failed) is checked
/// whole: the last window was never checked, and a window check may have failed open.
async fn final_output_check(
    job: &GenerationJob,
    tx: &watch::Sender<LiveReply>,
    end: GenerationEnd,
    label: &mut Option<i64>,
) -> GenerationEnd {
    let Some(moderation) = &job.moderation else { return end };
    if matches!(&end, GenerationEnd::Failed(f) if f.withholds_text()) {
        return end;
    }
    let content = tx.borrow().content.clone();
    if content.is_empty() {
        return end;
    }
    match moderation.moderator.screen_output(&moderation.openid, &content, true).await {
        Decision::Allow => end,
        Decision::Block { failure, label: why } => {
            *label = why;
            GenerationEnd::Failed(failure)
        }
    }
}

enum FinalSave {
    Stored,
    /// Someone settled the reply first (its generation looked dead): that state stands.
    AlreadyFinal,
    /// The store stayed unreachable until shutdown; the text is in the log.
    Unsaved,
}

/// How long a final save waits between attempts, at most.
const MAX_SAVE_BACKOFF: Duration = Duration::from_secs(5);
/// Attempts still made once shutdown has cancelled the wait.
const SAVES_AFTER_SHUTDOWN: u32 = 3;

/// Saves the final state, retrying for as long as it takes (losing it would leave the
/// reply `streaming` and the client with text nobody kept) and keeping the lease while it
/// does; after shutdown, a few last tries, then the text goes to the log as a last resort.
async fn save_final(job: &GenerationJob, progress: &MessageProgress, shutdown: &CancellationToken) -> FinalSave {
    let mut delay = Duration::from_millis(200);
    let mut after_shutdown = 0;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match job.store.save_progress(job.assistant_id, progress, now()).await {
            Ok(true) => return FinalSave::Stored,
            Ok(false) => return FinalSave::AlreadyFinal,
            Err(e) => tracing::error!(error = ?e, attempt, "could not store the final reply; retrying"),
        }
        if shutdown.is_cancelled() {
            after_shutdown += 1;
            if after_shutdown >= SAVES_AFTER_SHUTDOWN {
                tracing::error!(
                    message_id = %job.assistant_id,
                    status = ?progress.status,
                    content = %progress.content,
                    "LAST RESORT: the final reply could not be stored before shutdown; its text is kept here"
                );
                return FinalSave::Unsaved;
            }
        }
        let until = now() + chrono::Duration::from_std(job.lease).unwrap_or_default();
        let _ = job.store.renew_generation(job.conversation_id, job.assistant_id, until).await;
        if shutdown.is_cancelled() {
            delay = Duration::from_millis(200);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
        }
        delay = (delay * 2).min(MAX_SAVE_BACKOFF);
    }
}

/// The end of a reply someone else settled, as stored.
async fn stored_end(job: &GenerationJob) -> Option<ReplyEnd> {
    match job.store.get_message(job.conversation_id, job.assistant_id).await {
        Ok(Some(message)) => ReplyEnd::of_stored(&message),
        _ => None,
    }
}
