//! Backend for WeChat mini-program AI companions.
pub mod auth;
pub mod chat;
pub mod configuration;
pub mod console;
pub mod domain;
pub mod errors;
pub mod healthcheck;
pub mod instruments;
pub mod llm;
pub mod openai;
pub mod protection;
pub mod routes;
pub mod startup;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod wechat;
