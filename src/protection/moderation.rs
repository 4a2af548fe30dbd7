//! What the service does with msgSecCheck verdicts: user input is checked before it
//! reaches DeepSeek; replies are checked in windows while streaming and whole at the end.
use std::sync::Arc;

use crate::domain::{OpenId, ReplyFailure};
use crate::instruments::Instruments;
use crate::wechat::{ContentChecker, Suggest};

#[derive(Debug, Clone)]
pub struct ModerationPolicy {
    /// `review` verdicts block (`CONTENT_CHECK_REVIEW=block`) or pass (`allow`).
    pub review_blocks: bool,
    /// When WeChat cannot be asked: let text through (fail open) or refuse it.
    pub fail_open: bool,
    /// Replies are checked every this many new characters while streaming.
    pub window_chars: usize,
}

/// A verdict on one text. A blocked reply carries why, as the failure it is stored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Block { failure: ReplyFailure, label: Option<i64> },
}

pub struct Moderator {
    pub checker: ContentChecker,
    pub policy: ModerationPolicy,
    /// Where each check's outcome is counted for `/metrics`.
    pub instruments: Arc<Instruments>,
}

/// What a check was about, for the metrics.
#[derive(Clone, Copy)]
enum Checked {
    Input,
    Output,
}

impl Moderator {
    fn count(&self, checked: Checked, outcome: &str) {
        let target = match checked {
            Checked::Input => "input",
            Checked::Output => "output",
        };
        self.instruments.content_checks.with_label_values(&[target, outcome]).inc();
    }

    fn decide(&self, checked: Checked, suggest: Suggest, label: Option<i64>) -> Decision {
        self.count(checked, suggest.as_str());
        let blocks = suggest == Suggest::Risky || (suggest == Suggest::Review && self.policy.review_blocks);
        if blocks {
            Decision::Block { failure: ReplyFailure::ContentBlocked, label }
        } else {
            Decision::Allow
        }
    }

    /// `Err(())` when WeChat could not be asked and the policy is to fail closed.
    pub async fn screen_input(&self, openid: &OpenId, text: &str) -> Result<Decision, ()> {
        match self.checker.check(openid, text).await {
            Ok(verdict) => Ok(self.decide(Checked::Input, verdict.suggest, verdict.label)),
            Err(e) if self.policy.fail_open => {
                self.count(Checked::Input, "unavailable");
                tracing::warn!(error = %e, "content check unavailable; failing open");
                Ok(Decision::Allow)
            }
            Err(e) => {
                self.count(Checked::Input, "unavailable");
                tracing::error!(error = %e, "content check unavailable; failing closed");
                Err(())
            }
        }
    }

    /// Mid-stream windows tolerate a check failure (the final check decides); the final
    /// check fails closed when the policy says so.
    pub async fn screen_output(&self, openid: &OpenId, text: &str, is_final: bool) -> Decision {
        match self.checker.check(openid, text).await {
            Ok(verdict) => self.decide(Checked::Output, verdict.suggest, verdict.label),
            Err(e) if !is_final || self.policy.fail_open => {
                self.count(Checked::Output, "unavailable");
                tracing::warn!(error = %e, is_final, "reply check unavailable; letting it through");
                Decision::Allow
            }
            Err(e) => {
                self.count(Checked::Output, "unavailable");
                tracing::error!(error = %e, "reply check unavailable; withholding the reply");
                Decision::Block { failure: ReplyFailure::ContentCheckUnavailable, label: None }
            }
        }
    }
}

/// The reply's author, for checking its output.
#[derive(Clone)]
pub struct OutputModeration {
    pub moderator: Arc<Moderator>,
    pub openid: OpenId,
}
