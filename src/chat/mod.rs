//! Companion chat: personas, context, sending, and replies (see `reply`).
mod capacity;
pub mod context;
mod memory;
mod personas;
mod preview;
pub mod reply;
mod send;
mod service;

pub use capacity::{Capacity, Slot};
pub use personas::{Persona, Personas};
pub use preview::PreviewAccess;
pub use reply::{Registry, ReplyEvent, ReplyHandle, ReplyWatcher};
pub use service::{greeting_message, ChatError, ChatParts, ChatService};
