//! API tests: one binary, real MongoDB wire protocol (nx-27017 started by
//! `scripts/test.sh`), fake WeChat and DeepSeek servers on 127.0.0.1.
mod configuration;
mod conversations;
mod gray_release;
mod chat_failures;
mod chat_stream;
mod health;
mod login;
mod moderation;
mod packaging;
mod protection;
mod shutdown;
mod sessions;
mod helpers;
mod store_contract;
mod websocket;
