//! API tests: one binary, real MongoDB wire protocol (nx-27017 started by
//! `scripts/test.sh`), fake WeChat and DeepSeek servers on 127.0.0.1.
// Test servers and clients are not the service: their tasks need no shutdown drain.
#![allow(clippy::disallowed_methods)]

mod chat_failures;
mod chat_stream;
mod configuration;
mod console;
mod console_browser;
mod console_overview;
mod console_personas;
mod console_users;
mod conversations;
mod docs;
mod faults;
mod gray_release;
mod health;
mod helpers;
mod hostile;
mod learning;
mod login;
mod memories;
mod metrics;
mod moderation;
mod openai_api;
mod packaging;
mod protection;
mod recovery;
mod rights;
mod rights_labels;
mod round_trips;
mod safety_crisis;
mod safety_minor;
mod safety_notices;
mod sessions;
mod shutdown;
mod store_contract;
mod upstreams;
mod websocket;
