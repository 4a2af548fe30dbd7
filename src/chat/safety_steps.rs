//! The companion-safety steps of a send (README "Compliance"): who may send, what answers
//! the turn (the model, a preset reply, or a human operator), the notices the reply
//! carries, and the use recorded afterwards.
use std::sync::Arc;

use super::context::upstream_user_hash;
use super::reply::Classify;
use super::reply::{LiveReply, ReplyHandle};
use super::service::{ChatError, ChatService};
use crate::domain::{
    now, Conversation, CrisisFlag, NoticeKind, PendingNotice, SafetyEvent, SafetyEventKind, User, UserId,
};
use crate::llm::{ChatMessage, ChatRequest};
use crate::protection::china_day;
use crate::safety::{classifier, describe, phrases, usage, CompanionSafety, NoticeEvent};
use crate::store::UserSafetyUpdate;

/// What answers this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Turn {
    Model,
    /// An exit phrase: the operator's neutral closing, no model call.
    Exit,
    /// A crisis (a phrase of the list, or the persona's classifier): the preset supportive
    /// reply, the conversation flagged.
    Crisis {
        detected_by: String,
    },
    /// Taken over: the message waits for a human operator.
    Human,
}

impl Turn {
    /// A crisis gets help and a taken-over conversation reaches its human whatever the
    /// quota, minor mode or a pending notice would refuse.
    pub(super) fn always_answered(&self) -> bool {
        matches!(self, Turn::Crisis { .. } | Turn::Human)
    }
}

fn minor_time_key(user: UserId, day: &str) -> String {
    format!("minor-secs:{user}:{day}")
}

fn chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Minor mode's daily time as the user sees it (`GET /api/me`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorTime {
    /// 0: no daily limit.
    pub limit_minutes: u64,
    pub used_minutes: u64,
}

impl ChatService {
    /// Whether `persona` waits on a guardian's consent for this user (minor mode, an
    /// emotional companion, no consent recorded): the refusal below and the personas list
    /// both ask here.
    pub fn needs_guardian_consent(user: &User, persona: &super::Persona) -> bool {
        user.minor_mode.as_ref().is_some_and(|m| persona.emotional && m.guardian_consent.is_none())
    }

    /// Today's minor-mode time (China time) against its limit, for display: a counter that
    /// cannot be read shows as unused rather than failing the profile.
    pub async fn minor_time(&self, user: &User) -> MinorTime {
        let limit_minutes = self.safety.settings.minor_daily_limit.as_secs() / 60;
        if user.minor_mode.is_none() || limit_minutes == 0 {
            return MinorTime { limit_minutes, used_minutes: 0 };
        }
        let (day, _) = china_day(now());
        let used_secs = match self.store.read_counter(&minor_time_key(user.id, &day)).await {
            Ok(secs) => secs.max(0) as u64,
            Err(e) => {
                tracing::warn!(error = ?e, "could not read minor mode's time for display");
                0
            }
        };
        MinorTime { limit_minutes, used_minutes: used_secs / 60 }
    }

    /// Refusals before anything is stored: an unacknowledged notice (when required), and
    /// minor mode's companions and daily time.
    pub(super) async fn admit(&self, user: &User, conversation: &Conversation) -> Result<(), ChatError> {
        let settings = &self.safety.settings;
        let policy_pending = self.safety.policy_pending(user).is_some();
        if policy_pending || (settings.notices_required && !user.notices.is_empty()) {
            return Err(ChatError::NoticeRequired);
        }
        if user.minor_mode.is_none() {
            return Ok(());
        }
        let persona = self.persona_for(conversation, self.preview.includes(user));
        if persona.not_for_minors {
            return Err(ChatError::PersonaNotForMinors);
        }
        if Self::needs_guardian_consent(user, &persona) {
            return Err(ChatError::GuardianConsentRequired);
        }
        let limit = settings.minor_daily_limit.as_secs() as i64;
        if limit > 0 {
            let at = now();
            let (day, ends) = china_day(at);
            if self.store.read_counter(&minor_time_key(user.id, &day)).await? >= limit {
                self.safety.record(SafetyEvent::new(user.id, SafetyEventKind::MinorTimeLimit, None)).await;
                return Err(ChatError::MinorTimeLimit { retry_after: (ends - at).num_seconds().max(1) as u64 });
            }
        }
        Ok(())
    }

    /// A human's conversation stays with the human; a crisis outranks an exit ("不想活了，
    /// 再见" gets help, not a goodbye).
    pub(super) fn turn_for(&self, conversation: &Conversation, text: &str) -> Turn {
        let settings = &self.safety.settings;
        if conversation.takeover.is_some() {
            return Turn::Human;
        }
        if let Some(phrase) = phrases::crisis_phrase(text, &settings.crisis_phrases) {
            return Turn::Crisis { detected_by: format!("phrase:{phrase}") };
        }
        if phrases::is_exit(text, &settings.exit_phrases) {
            return Turn::Exit;
        }
        Turn::Model
    }

    /// The second line of defence, for personas that ask for it: the model's own reading
    /// of a message the phrase list let through, asked by the generation itself (after the
    /// message is stored, like every model call).
    pub(super) fn classifier_for(
        &self,
        turn: &Turn,
        user: &User,
        conversation: &Conversation,
        text: &str,
    ) -> Option<Classify> {
        let persona = self.persona_for(conversation, self.preview.includes(user));
        if *turn != Turn::Model || !persona.crisis_classifier {
            return None;
        }
        let request = ChatRequest {
            model: persona.model.clone().unwrap_or_else(|| self.config.default_model.clone()),
            messages: vec![
                ChatMessage { role: "system", content: classifier::PROMPT.to_string() },
                ChatMessage { role: "user", content: text.to_string() },
            ],
            thinking: false,
            reasoning_effort: None,
            temperature: None,
            max_tokens: Some(20),
            user_hash: upstream_user_hash(user.id),
            json_output: true,
        };
        Some(Classify { request, crisis_reply: self.safety.settings.crisis_reply.clone() })
    }

    /// The preset text of a turn the model does not answer.
    pub(super) fn preset_text(&self, turn: &Turn) -> Option<String> {
        let settings = &self.safety.settings;
        match turn {
            Turn::Exit => Some(settings.exit_reply.clone()),
            Turn::Crisis { .. } => Some(settings.crisis_reply.clone()),
            Turn::Model | Turn::Human => None,
        }
    }

    /// The notices this reply carries: those pending, and at first use the AI disclosure
    /// (issued with the use recorded after the send).
    pub(super) fn notices_for(&self, user: &User) -> (Vec<NoticeEvent>, Option<PendingNotice>) {
        let first_use = (user.activity.is_none() && !user.notices.iter().any(|n| n.kind == NoticeKind::AiDisclosure))
            .then(|| self.safety.settings.notices.issue(NoticeKind::AiDisclosure, now()));
        (self.safety.events(user.notices.iter().chain(first_use.iter())), first_use)
    }

    /// After a send, off its critical path: the stretch of use (and the reminder when it
    /// passes the limit), minor mode's time, a crisis flag.
    pub(super) fn after_send(&self, reply: &ReplyHandle, user: &User, conversation: &Conversation, turn: &Turn) {
        let work = AfterSend {
            live: reply.live(),
            safety: self.safety.clone(),
            user: user.clone(),
            conversation: conversation.id,
            turn: turn.clone(),
        };
        self.registry.spawn(work.run());
    }
}

struct AfterSend {
    /// The reply, when generated here: the steps wait until it is under way, so they
    /// never sit on the send's critical path.
    live: Option<tokio::sync::watch::Receiver<LiveReply>>,
    safety: Arc<CompanionSafety>,
    user: User,
    conversation: crate::domain::ConversationId,
    turn: Turn,
}

impl AfterSend {
    async fn run(mut self) {
        if let Some(live) = self.live.as_mut() {
            let _ = live.wait_for(|s| !s.content.is_empty() || !s.reasoning.is_empty() || s.end.is_some()).await;
        }
        let (safety, user) = (&self.safety, &self.user);
        let settings = &safety.settings;
        let classified = self.live.as_ref().is_some_and(|live| live.borrow().crisis);
        let turn = if classified { Turn::Crisis { detected_by: "classifier".into() } } else { self.turn.clone() };
        let at = now();
        let pause = chrono(settings.usage_pause);
        let mut activity = usage::next_activity(user.activity, at, pause);
        let mut notices: Vec<PendingNotice> = Vec::new();
        if usage::reminder_due(&activity, chrono(settings.usage_reminder_after)) {
            activity.reminded_session = Some(activity.session_start);
            notices.push(settings.notices.issue(NoticeKind::UsageReminder, at));
            // Long use is the over-dependence the rules name: tell them again it is an AI.
            if !notices.iter().any(|n| n.kind == NoticeKind::AiDisclosure) {
                notices.push(settings.notices.issue(NoticeKind::AiDisclosure, at));
            }
        }
        let update = UserSafetyUpdate { notices: notices.clone(), activity: Some(activity) };
        if let Err(e) = safety.store.update_user_safety(user.id, &update).await {
            tracing::error!(error = ?e, "could not record the user's activity");
        }
        for notice in &notices {
            safety.record(SafetyEvent::new(user.id, SafetyEventKind::NoticeIssued, Some(describe(notice)))).await;
        }
        if user.minor_mode.is_some() {
            self.count_minor_time(usage::time_used(user.activity, at, pause), at).await;
        }
        match &turn {
            Turn::Exit => {
                let event = SafetyEvent::new(user.id, SafetyEventKind::ExitPhrase, None);
                safety.record(event.in_conversation(self.conversation)).await;
            }
            Turn::Crisis { detected_by } => {
                let flag = CrisisFlag { at, detected_by: detected_by.clone(), handled_at: None };
                if let Err(e) = safety.store.flag_crisis(self.conversation, &flag).await {
                    tracing::error!(error = ?e, "could not put the conversation in the crisis queue");
                }
                let event = SafetyEvent::new(user.id, SafetyEventKind::CrisisDetected, Some(flag.detected_by));
                safety.record(event.in_conversation(self.conversation)).await;
            }
            Turn::Model | Turn::Human => {}
        }
    }

    async fn count_minor_time(&self, used: chrono::Duration, at: chrono::DateTime<chrono::Utc>) {
        let seconds = used.num_seconds();
        if seconds <= 0 {
            return;
        }
        let (day, ends) = china_day(at);
        let key = minor_time_key(self.user.id, &day);
        if let Err(e) = self.safety.store.increment_counter(&key, seconds, ends + chrono::Duration::days(1)).await {
            tracing::warn!(error = ?e, "could not count minor mode's time");
        }
    }
}
