//! What the API publishes: a field reaches a client only when a DTO here (or a reply
//! event in `chat::reply::events`) names it. Domain entities are not serializable; the
//! small value enums (`Role`, `MessageStatus`) serialize as their lowercase names.
use crate::safety::labels::{ContentLabels, ContentMark, Label};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::chat::reply::{ErrorEvent, UsageWire};
use crate::chat::Persona;
use crate::domain::{
    Conversation, ConversationId, FinishReason, MemoryFact, Message, MessageId, MessageStatus, Role, User, UserId,
};
use crate::protection::{Allowance, QuotaUsage};

#[derive(Serialize)]
pub struct UserDto<'a> {
    pub id: UserId,
    pub nickname: Option<&'a str>,
    pub avatar_url: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

impl<'a> From<&'a User> for UserDto<'a> {
    fn from(u: &'a User) -> Self {
        UserDto {
            id: u.id,
            nickname: u.nickname.as_ref().map(|n| n.as_str()),
            avatar_url: u.avatar_url.as_ref().map(|a| a.as_str()),
            created_at: u.created_at,
        }
    }
}

#[derive(Serialize)]
pub struct ConversationDto<'a> {
    pub id: ConversationId,
    pub persona_id: &'a str,
    pub title: &'a str,
    pub created_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
}

impl<'a> From<&'a Conversation> for ConversationDto<'a> {
    fn from(c: &'a Conversation) -> Self {
        ConversationDto {
            id: c.id,
            persona_id: &c.persona_id,
            title: c.title.as_str(),
            created_at: c.created_at,
            last_active_at: c.last_active_at,
        }
    }
}

#[derive(Serialize)]
pub struct MessageDto<'a> {
    pub id: MessageId,
    pub role: Role,
    pub content: &'a str,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageWire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorEvent>,
    /// The label the client shows: AI, or a human operator (replies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// AI content's implicit metadata: producer, content id, time, model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_mark: Option<ContentMark>,
}

impl<'a> MessageDto<'a> {
    pub fn new(m: &'a Message, labels: &ContentLabels) -> Self {
        MessageDto {
            label: labels.label(m.role),
            content_mark: labels.mark(m),
            id: m.id,
            role: m.role,
            content: &m.content,
            status: m.status,
            created_at: m.created_at,
            reasoning_content: m.reasoning_content.as_deref(),
            usage: m.usage.as_ref().map(UsageWire::from),
            finish_reason: m.finish_reason.as_ref().map(FinishReason::as_str),
            error: m.error.as_ref().map(ErrorEvent::from),
        }
    }
}

/// The public face of a companion: never its system prompt or model settings.
#[derive(Serialize)]
pub struct PersonaDto<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub greeting: &'a str,
    pub thinking: bool,
    pub preview: bool,
}

impl<'a> From<&'a Persona> for PersonaDto<'a> {
    fn from(p: &'a Persona) -> Self {
        PersonaDto {
            id: &p.id,
            name: &p.name,
            description: &p.description,
            greeting: &p.greeting,
            thinking: p.thinking,
            preview: p.preview,
        }
    }
}

/// A fact a companion keeps about its user, as the user sees it.
#[derive(Serialize)]
pub struct MemoryDto<'a> {
    pub id: String,
    pub text: &'a str,
    pub learned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl<'a> From<&'a MemoryFact> for MemoryDto<'a> {
    fn from(f: &'a MemoryFact) -> Self {
        MemoryDto { id: f.id.to_string(), text: f.text.as_str(), learned_at: f.learned_at, updated_at: f.updated_at }
    }
}

#[derive(Serialize)]
pub struct AllowanceDto {
    pub used: i64,
    pub limit: i64,
}

impl From<&Allowance> for AllowanceDto {
    fn from(a: &Allowance) -> Self {
        AllowanceDto { used: a.used, limit: a.limit }
    }
}

#[derive(Serialize)]
pub struct PromptCacheDto {
    pub hit_tokens: i64,
    pub miss_tokens: i64,
    /// `null` before the day's first reply.
    pub hit_ratio: Option<f64>,
}

#[derive(Serialize)]
pub struct UsageDto<'a> {
    pub date: &'a str,
    pub messages: AllowanceDto,
    pub tokens: AllowanceDto,
    pub prompt_cache: PromptCacheDto,
    pub resets_at: DateTime<Utc>,
}

impl<'a> From<&'a QuotaUsage> for UsageDto<'a> {
    fn from(u: &'a QuotaUsage) -> Self {
        let cache = u.prompt_cache;
        UsageDto {
            date: &u.date,
            messages: (&u.messages).into(),
            tokens: (&u.tokens).into(),
            prompt_cache: PromptCacheDto {
                hit_tokens: cache.hit_tokens,
                miss_tokens: cache.miss_tokens,
                hit_ratio: cache.hit_ratio(),
            },
            resets_at: u.resets_at,
        }
    }
}

#[derive(Serialize)]
pub struct SessionDto<'a> {
    pub token: &'a str,
    pub expires_in: u64,
    pub user: UserDto<'a>,
    /// Notices to show and acknowledge now (a sign-in always brings the AI disclosure).
    pub notices: Vec<crate::safety::NoticeEvent>,
}

/// A page of items and where the next one starts.
#[derive(Serialize)]
pub struct Page<T: Serialize> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
