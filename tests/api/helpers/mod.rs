mod app;
mod chat;
pub mod fake_deepseek;
mod sse_client;

pub use app::*;
pub use sse_client::*;
