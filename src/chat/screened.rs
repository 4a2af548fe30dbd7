//! An API completion's answer, checked before the caller sees it: text is held back until
//! the window it completes passes msgSecCheck, and what is left is checked with the whole
//! answer at the end. A refusal ends the answer with `finish_reason: content_filter`.
use std::collections::VecDeque;

use futures_util::StreamExt;

use crate::domain::{FinishReason, ReplyFailure};
use crate::llm::{LlmError, LlmEvent, LlmStream};
use crate::protection::{Decision, OutputModeration};

struct Screening {
    events: LlmStream,
    moderation: OutputModeration,
    /// Everything answered so far, and how many of its characters the caller has.
    content: String,
    released_chars: usize,
    held: String,
    /// The upstream's finish and usage wait for the final check.
    finish: Option<FinishReason>,
    usage: Option<crate::domain::Usage>,
    ready: VecDeque<Result<LlmEvent, LlmError>>,
    ended: bool,
}

/// What a check says about the held text.
enum Verdict {
    Pass,
    Refuse,
    /// WeChat could not be asked and the policy fails closed: keep holding the text (the
    /// final check decides), never release it unchecked.
    Hold,
}

async fn verdict(moderation: &OutputModeration, text: &str) -> Verdict {
    // Asked as a final check, so an unavailable check follows the fail-open policy.
    match moderation.moderator.screen_output(&moderation.openid, text, true).await {
        Decision::Allow => Verdict::Pass,
        Decision::Block { failure: ReplyFailure::ContentCheckUnavailable, .. } => Verdict::Hold,
        Decision::Block { .. } => Verdict::Refuse,
    }
}

impl Screening {
    /// The held text with the end of what came before (so a phrase split across two
    /// windows is seen), or the whole answer for the final check.
    fn to_check(&self, is_final: bool) -> String {
        let window = self.moderation.moderator.policy.window_chars;
        match is_final {
            true => self.content.clone(),
            false => self.content.chars().skip(self.released_chars.saturating_sub(window / 4)).collect(),
        }
    }

    fn release_held(&mut self) {
        if !self.held.is_empty() {
            self.released_chars += self.held.chars().count();
            self.ready.push_back(Ok(LlmEvent::Content(std::mem::take(&mut self.held))));
        }
    }

    fn refuse(&mut self) {
        tracing::info!("an API answer was withheld by the content check");
        self.held.clear();
        self.ready.push_back(Ok(LlmEvent::Finish(FinishReason::ContentFilter)));
        self.ended = true;
    }

    async fn take(&mut self, event: Option<Result<LlmEvent, LlmError>>) {
        match event {
            Some(Ok(LlmEvent::Content(text))) => {
                self.content.push_str(&text);
                self.held.push_str(&text);
                if self.held.chars().count() >= self.moderation.moderator.policy.window_chars {
                    let text = self.to_check(false);
                    match verdict(&self.moderation, &text).await {
                        Verdict::Pass => self.release_held(),
                        Verdict::Refuse => self.refuse(),
                        Verdict::Hold => {}
                    }
                }
            }
            Some(Ok(LlmEvent::Finish(reason))) => self.finish = Some(reason),
            Some(Ok(LlmEvent::Usage(usage))) => self.usage = Some(usage),
            // Reasoning is not checked, as in the chat (it is not the answer).
            Some(Ok(other)) => self.ready.push_back(Ok(other)),
            Some(Err(e)) => {
                self.ready.push_back(Err(e));
                self.ended = true;
            }
            None => {
                let text = self.to_check(true);
                let passes = text.is_empty() || matches!(verdict(&self.moderation, &text).await, Verdict::Pass);
                match passes {
                    true => {
                        self.release_held();
                        if let Some(finish) = self.finish.take() {
                            self.ready.push_back(Ok(LlmEvent::Finish(finish)));
                        }
                    }
                    false => self.refuse(),
                }
                if let Some(usage) = self.usage.take() {
                    self.ready.push_back(Ok(LlmEvent::Usage(usage)));
                }
                self.ended = true;
            }
        }
    }
}

pub fn screened(events: LlmStream, moderation: OutputModeration) -> LlmStream {
    let state = Screening {
        events,
        moderation,
        content: String::new(),
        released_chars: 0,
        held: String::new(),
        finish: None,
        usage: None,
        ready: VecDeque::new(),
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((event, state));
            }
            if state.ended {
                return None;
            }
            let event = state.events.next().await;
            state.take(event).await;
        }
    }))
}
