//! The operator console: operators' accounts and sign-in, the audit log, API keys, and the
//! pages under `/console` (off unless `CONSOLE_ENABLED=true`).
mod allowlist;
pub mod passwords;

pub use allowlist::IpAllowlist;
