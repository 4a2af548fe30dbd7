mod auth;
mod health;
mod me;

pub use auth::{login, refresh, LoginPolicy};
pub use health::{health, ready};
pub use me::{get_me, patch_me};
