//! Typed client for WeChat's server APIs.
mod code2session;

pub use code2session::{Code2SessionError, WechatClient, WechatSession};
