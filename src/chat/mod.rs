//! Companion chat: personas, context, generations and their watchers.
pub mod context;
mod generation;
mod live;
mod personas;
mod preview;
mod service;

pub use live::{outcome_of, GenerationHub, LiveReply, Outcome, ReplyEvent, ReplyWatcher};
pub use personas::{Persona, Personas};
pub use preview::PreviewAccess;
pub use service::{greeting_message, ChatConfig, ChatError, ChatService, StartedReply};
