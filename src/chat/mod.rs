//! Companion chat: personas, context, sending, and replies (see `reply`).
mod api;
mod capacity;
pub mod catalog;
pub mod context;
pub mod learner;
mod learning;
mod memory;
mod personas;
mod preview;
pub mod reply;
mod safety_steps;
mod screened;
mod send;
mod service;
mod summary;
mod takeover;

pub use api::{ApiCompletion, ApiCompletionError};
pub use capacity::{Capacity, Slot};
pub use learner::{LearnerSettings, MemoryLearner};
pub use personas::{Persona, Personas};
pub use preview::PreviewAccess;
pub use reply::{Registry, ReplyEvent, ReplyHandle, ReplyWatcher};
pub use service::{greeting_message, ChatError, ChatParts, ChatService};
