mod health;

pub use health::{health, ready};
