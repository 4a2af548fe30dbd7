mod app;
mod chat;
pub mod fake_deepseek;
pub mod fake_h2c;
mod sse_client;

pub use app::*;
pub use sse_client::*;
