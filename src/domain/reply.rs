//! How a reply ends: the one model behind stored statuses, error codes and the
//! terminal `done`/`error` event of every transport.
use serde::{Deserialize, Serialize};

use super::{Message, MessageError, MessageProgress, MessageStatus, Usage};
use crate::llm::LlmError;

/// Why the model stopped, as the upstream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    InsufficientSystemResource,
    /// Anything else (tool calls, a reason added upstream later): never "complete".
    Unknown(String),
}

impl FinishReason {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "content_filter" => FinishReason::ContentFilter,
            "insufficient_system_resource" => FinishReason::InsufficientSystemResource,
            other => FinishReason::Unknown(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::InsufficientSystemResource => "insufficient_system_resource",
            FinishReason::Unknown(other) => other,
        }
    }
}

impl From<&str> for FinishReason {
    fn from(raw: &str) -> Self {
        FinishReason::parse(raw)
    }
}

impl Serialize for FinishReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(FinishReason::parse(&String::deserialize(deserializer)?))
    }
}

/// Every way a reply can fail. `code()` is what clients and stored messages see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyFailure {
    Upstream(LlmError),
    ContentFiltered,
    UpstreamInsufficientResource,
    UnexpectedFinish,
    EmptyReply,
    /// The content-safety check refused the reply's text (withheld).
    ContentBlocked,
    /// The content-safety check could not be asked and fails closed (withheld).
    ContentCheckUnavailable,
    ServerShutdown,
    /// Its generation died with its replica.
    GenerationInterrupted,
    /// The live generation vanished without an outcome.
    GenerationLost,
    StorageUnavailable,
    MessageGone,
    /// Its owner stopped it.
    Cancelled,
}

impl ReplyFailure {
    pub fn code(&self) -> &'static str {
        match self {
            ReplyFailure::Upstream(e) => e.code(),
            ReplyFailure::ContentFiltered => "content_filtered",
            ReplyFailure::UpstreamInsufficientResource => "upstream_insufficient_resource",
            ReplyFailure::UnexpectedFinish => "upstream_unexpected_finish",
            ReplyFailure::EmptyReply => "empty_reply",
            ReplyFailure::ContentBlocked => "content_blocked",
            ReplyFailure::ContentCheckUnavailable => "content_check_unavailable",
            ReplyFailure::ServerShutdown => "server_shutdown",
            ReplyFailure::GenerationInterrupted => "generation_interrupted",
            ReplyFailure::GenerationLost => "generation_lost",
            ReplyFailure::StorageUnavailable => "storage_unavailable",
            ReplyFailure::MessageGone => "not_found",
            ReplyFailure::Cancelled => "cancelled",
        }
    }

    /// Safe to show to the user: no internals.
    pub fn user_message(&self) -> &'static str {
        match self {
            ReplyFailure::Upstream(e) => e.user_message(),
            ReplyFailure::ContentFiltered => "the reply was stopped by the content filter",
            ReplyFailure::UpstreamInsufficientResource => "the model service ran out of capacity mid-reply",
            ReplyFailure::UnexpectedFinish => "the reply ended unexpectedly; the part received is kept",
            ReplyFailure::EmptyReply => "the companion returned an empty reply; please try again",
            ReplyFailure::ContentBlocked | ReplyFailure::ContentCheckUnavailable => {
                "the reply was withheld by the content-safety check"
            }
            ReplyFailure::ServerShutdown => "the server restarted mid-reply; the part received is kept",
            ReplyFailure::GenerationInterrupted => "the reply was interrupted; the part received is kept",
            ReplyFailure::GenerationLost => "the reply stopped unexpectedly; reload the message",
            ReplyFailure::StorageUnavailable => "storage is temporarily unavailable; please retry",
            ReplyFailure::MessageGone => "the message no longer exists",
            ReplyFailure::Cancelled => "you stopped this reply; the part received is kept",
        }
    }

    /// Withheld text is never kept where a client could read it.
    pub fn withholds_text(&self) -> bool {
        matches!(self, ReplyFailure::ContentBlocked | ReplyFailure::ContentCheckUnavailable)
    }

    /// One of every failure (and of every upstream error), for documentation checks. The
    /// matches below have no wildcard: a new variant does not compile until it is listed.
    pub fn every() -> Vec<ReplyFailure> {
        use LlmError as L;
        let upstream = [
            L::BadRequest,
            L::Unauthorized,
            L::InsufficientBalance,
            L::InvalidParameters,
            L::RateLimited,
            L::ServerError,
            L::Overloaded,
            L::UnexpectedStatus(418),
            L::Connect,
            L::IdleTimeout,
            L::DeadlineExceeded,
            L::Disconnected,
            L::Protocol,
            L::Upstream(String::new()),
            L::Unavailable,
        ];
        for e in &upstream {
            match e {
                L::BadRequest
                | L::Unauthorized
                | L::InsufficientBalance
                | L::InvalidParameters
                | L::RateLimited
                | L::ServerError
                | L::Overloaded
                | L::UnexpectedStatus(_)
                | L::Connect
                | L::IdleTimeout
                | L::DeadlineExceeded
                | L::Disconnected
                | L::Protocol
                | L::Upstream(_)
                | L::Unavailable => {}
            }
        }
        let mut all: Vec<ReplyFailure> = upstream.into_iter().map(ReplyFailure::Upstream).collect();
        all.extend([
            ReplyFailure::ContentFiltered,
            ReplyFailure::UpstreamInsufficientResource,
            ReplyFailure::UnexpectedFinish,
            ReplyFailure::EmptyReply,
            ReplyFailure::ContentBlocked,
            ReplyFailure::ContentCheckUnavailable,
            ReplyFailure::ServerShutdown,
            ReplyFailure::GenerationInterrupted,
            ReplyFailure::GenerationLost,
            ReplyFailure::StorageUnavailable,
            ReplyFailure::MessageGone,
            ReplyFailure::Cancelled,
        ]);
        for failure in &all {
            match failure {
                ReplyFailure::Upstream(_)
                | ReplyFailure::ContentFiltered
                | ReplyFailure::UpstreamInsufficientResource
                | ReplyFailure::UnexpectedFinish
                | ReplyFailure::EmptyReply
                | ReplyFailure::ContentBlocked
                | ReplyFailure::ContentCheckUnavailable
                | ReplyFailure::ServerShutdown
                | ReplyFailure::GenerationInterrupted
                | ReplyFailure::GenerationLost
                | ReplyFailure::StorageUnavailable
                | ReplyFailure::MessageGone
                | ReplyFailure::Cancelled => {}
            }
        }
        all
    }

    pub fn to_error(&self) -> MessageError {
        MessageError { code: self.code().to_string(), message: self.user_message().to_string(), label: None }
    }
}

/// How a generation ended, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationEnd {
    /// The upstream finished the stream (with the reason it gave, if any).
    Finished(Option<FinishReason>),
    Failed(ReplyFailure),
}

/// What is stored for a generation that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub status: MessageStatus,
    pub finish_reason: Option<FinishReason>,
    pub failure: Option<ReplyFailure>,
}

impl Conclusion {
    /// The one mapping from a generation's end (and whether it produced text) to the
    /// stored status: partial text is kept as `incomplete`, no text is `failed`.
    pub fn of(end: GenerationEnd, has_text: bool) -> Conclusion {
        let partial = if has_text { MessageStatus::Incomplete } else { MessageStatus::Failed };
        let failed = |failure: ReplyFailure, finish_reason: Option<FinishReason>| {
            let status = if failure.withholds_text() { MessageStatus::Failed } else { partial };
            Conclusion { status, finish_reason, failure: Some(failure) }
        };
        match end {
            GenerationEnd::Failed(failure) => failed(failure, None),
            GenerationEnd::Finished(reason) => match reason.unwrap_or(FinishReason::Stop) {
                FinishReason::ContentFilter => failed(ReplyFailure::ContentFiltered, Some(FinishReason::ContentFilter)),
                FinishReason::InsufficientSystemResource => {
                    failed(ReplyFailure::UpstreamInsufficientResource, Some(FinishReason::InsufficientSystemResource))
                }
                FinishReason::Unknown(raw) => failed(ReplyFailure::UnexpectedFinish, Some(FinishReason::Unknown(raw))),
                _ if !has_text => failed(ReplyFailure::EmptyReply, None),
                FinishReason::Length => Conclusion {
                    status: MessageStatus::Incomplete,
                    finish_reason: Some(FinishReason::Length),
                    failure: None,
                },
                FinishReason::Stop => Conclusion {
                    status: MessageStatus::Complete,
                    finish_reason: Some(FinishReason::Stop),
                    failure: None,
                },
            },
        }
    }
}

/// The terminal state a stored reply represents, as every transport reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEnd {
    Done { finish_reason: FinishReason, usage: Option<Usage> },
    Failed(MessageError),
}

impl ReplyEnd {
    /// `None` while the reply is still streaming.
    pub fn of_stored(message: &Message) -> Option<ReplyEnd> {
        Self::of_parts(message.status, &message.error, &message.finish_reason, &message.usage)
    }

    /// The end a final progress (about to be stored, or just stored) represents.
    pub fn of_progress(progress: &MessageProgress) -> Option<ReplyEnd> {
        Self::of_parts(progress.status, &progress.error, &progress.finish_reason, &progress.usage)
    }

    fn of_parts(
        status: MessageStatus,
        error: &Option<MessageError>,
        finish_reason: &Option<FinishReason>,
        usage: &Option<Usage>,
    ) -> Option<ReplyEnd> {
        if !status.is_final() {
            return None;
        }
        Some(match error {
            Some(error) => ReplyEnd::Failed(error.clone()),
            None => ReplyEnd::Done {
                finish_reason: finish_reason.clone().unwrap_or(FinishReason::Stop),
                usage: usage.clone(),
            },
        })
    }

    pub fn failed(failure: &ReplyFailure) -> ReplyEnd {
        ReplyEnd::Failed(failure.to_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generation_end_maps_to_one_stored_status() {
        use FinishReason as F;
        use MessageStatus as S;
        use ReplyFailure as R;
        type Case = (&'static str, GenerationEnd, bool, S, Option<F>, Option<R>);
        let cases: Vec<Case> = vec![
            ("stop with text", GenerationEnd::Finished(Some(F::Stop)), true, S::Complete, Some(F::Stop), None),
            ("no reason with text", GenerationEnd::Finished(None), true, S::Complete, Some(F::Stop), None),
            ("stop without text", GenerationEnd::Finished(Some(F::Stop)), false, S::Failed, None, Some(R::EmptyReply)),
            ("length", GenerationEnd::Finished(Some(F::Length)), true, S::Incomplete, Some(F::Length), None),
            (
                "content filter",
                GenerationEnd::Finished(Some(F::ContentFilter)),
                true,
                S::Incomplete,
                Some(F::ContentFilter),
                Some(R::ContentFiltered),
            ),
            (
                "insufficient resource, no text",
                GenerationEnd::Finished(Some(F::InsufficientSystemResource)),
                false,
                S::Failed,
                Some(F::InsufficientSystemResource),
                Some(R::UpstreamInsufficientResource),
            ),
            (
                "unknown reason is not complete",
                GenerationEnd::Finished(Some(F::Unknown("tool_calls".into()))),
                true,
                S::Incomplete,
                Some(F::Unknown("tool_calls".into())),
                Some(R::UnexpectedFinish),
            ),
            (
                "upstream failure keeps partial text",
                GenerationEnd::Failed(R::Upstream(LlmError::Disconnected)),
                true,
                S::Incomplete,
                None,
                Some(R::Upstream(LlmError::Disconnected)),
            ),
            (
                "shutdown with no text is failed",
                GenerationEnd::Failed(R::ServerShutdown),
                false,
                S::Failed,
                None,
                Some(R::ServerShutdown),
            ),
            (
                "blocked text is failed even with text",
                GenerationEnd::Failed(R::ContentBlocked),
                true,
                S::Failed,
                None,
                Some(R::ContentBlocked),
            ),
        ];
        for (label, end, has_text, status, finish, failure) in cases {
            let conclusion = Conclusion::of(end, has_text);
            assert_eq!(conclusion, Conclusion { status, finish_reason: finish, failure }, "{label}");
        }
    }

    #[test]
    fn finish_reasons_round_trip_and_unknown_ones_are_kept_verbatim() {
        for raw in ["stop", "length", "content_filter", "insufficient_system_resource", "tool_calls", ""] {
            assert_eq!(FinishReason::parse(raw).as_str(), raw, "{raw}");
        }
        assert_eq!(FinishReason::parse("tool_calls"), FinishReason::Unknown("tool_calls".into()));
    }

    #[test]
    fn failure_codes_are_distinct_snake_case() {
        let own: Vec<ReplyFailure> =
            ReplyFailure::every().into_iter().filter(|f| !matches!(f, ReplyFailure::Upstream(_))).collect();
        let codes: std::collections::HashSet<&str> = own.iter().map(ReplyFailure::code).collect();
        assert_eq!(codes.len(), own.len());
        for code in codes {
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
        }
    }

    #[test]
    fn a_stored_reply_ends_the_way_its_status_and_error_say() {
        let mut message = Message::placeholder_for_tests();
        assert_eq!(ReplyEnd::of_stored(&message), None, "streaming has no end yet");
        message.status = MessageStatus::Complete;
        assert_eq!(
            ReplyEnd::of_stored(&message),
            Some(ReplyEnd::Done { finish_reason: FinishReason::Stop, usage: None })
        );
        message.status = MessageStatus::Incomplete;
        message.error = Some(ReplyFailure::ServerShutdown.to_error());
        assert_eq!(ReplyEnd::of_stored(&message), Some(ReplyEnd::failed(&ReplyFailure::ServerShutdown)));
    }
}
