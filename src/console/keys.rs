//! API keys for the OpenAI-compatible API: `sk-companion-` and 40 random hex digits. Only
//! the key's SHA-256 is stored; the key is shown once, when it is made.
use rand::RngCore;
use secrecy::SecretString;

use super::accounts::token_hash;
use crate::domain::{now, ApiKey, UserId};

pub const KEY_PREFIX: &str = "sk-companion-";

/// What a key may use of its own (0: no limit of its own).
#[derive(Debug, Clone, Copy)]
pub struct KeyLimits {
    pub per_minute: u32,
    pub daily_tokens: i64,
}

pub fn new_key(name: &str, limits: KeyLimits, check_as: Option<UserId>, created_by: &str) -> (SecretString, ApiKey) {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let key = ApiKey {
        id: uuid::Uuid::new_v4().simple().to_string(),
        name: name.to_string(),
        key_hash: token_hash(&secret),
        prefix: secret.chars().take(KEY_PREFIX.len() + 4).collect(),
        per_minute: limits.per_minute,
        daily_tokens: limits.daily_tokens,
        check_as,
        created_by: created_by.to_string(),
        created_at: now(),
        revoked_at: None,
    };
    (SecretString::from(secret), key)
}
