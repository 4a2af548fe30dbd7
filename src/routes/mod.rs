mod auth;
mod conversations;
pub mod dto;
mod health;
mod me;
mod memories;
mod messages;
mod metrics;
mod params;
mod personas;
mod rights;
pub(crate) mod safety;
mod sse;
mod ws;

pub use auth::{login, logout, refresh, LoginPolicy};
pub use conversations::{
    create_conversation, delete_conversation, get_conversation, list_conversations, rename_conversation,
};
pub use health::{health, ready};
pub use me::{get_me, get_usage, patch_me};
pub use memories::{correct_memory, forget_all_memories, forget_memory, list_memories};
pub use messages::{cancel_reply, get_message, list_messages, reattach, send_message};
pub use metrics::{metrics, MetricsAccess};
pub use personas::list_personas;
pub use rights::{cancel_deletion, delete_account, download_export, file_report, list_reports, start_export};
pub use safety::{acknowledge_notice, set_minor_mode};
pub use ws::{chat_socket, SocketSlots};
