//! Typed clients for WeChat's server APIs.
mod access_token;
mod code2session;
mod msg_sec_check;

pub use access_token::{AccessTokens, TokenError};
pub use code2session::{Code2SessionError, WechatClient, WechatSession};
pub use msg_sec_check::{CheckError, ContentChecker, Suggest, Verdict, MAX_CHECK_CHARS};
