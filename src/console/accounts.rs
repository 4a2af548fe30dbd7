//! Operator accounts: added, reset and disabled from the command line; signed in with a
//! password (rate-limited per address, locked after repeated failures); every action
//! audit-logged.
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::passwords;
use crate::domain::{now, AuditAction, AuditEntry, Operator, OperatorName, OperatorRole, OperatorSession};
use crate::store::{DynStore, StoreError};

/// Failed sign-ins of one name from one address before that pair is locked, and for how
/// long. Per address, so nobody can lock an operator out from elsewhere; per name as typed,
/// so an unknown name locks the same way and tells nothing.
const LOCK_AFTER_FAILURES: i64 = 5;
const LOCK_FOR: chrono::Duration = chrono::Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("wrong name or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins; try again later")]
    Locked { retry_after: u64 },
    #[error("{0}")]
    WeakPassword(&'static str),
    #[error("an operator named {0} exists already")]
    NameTaken(OperatorName),
    #[error("no operator named {0}")]
    NoSuchOperator(OperatorName),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("hashing failed")]
    Internal(#[from] anyhow::Error),
}

/// A fresh sign-in: the cookie's token (shown to nobody else, stored only hashed).
pub struct SignedIn {
    pub token: SecretString,
    pub session: OperatorSession,
    pub operator: Operator,
}

/// The SHA-256 of a session token or API key, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

pub async fn audit(
    store: &DynStore,
    actor: &str,
    action: AuditAction,
    target: Option<String>,
    reason: Option<String>,
) -> Result<(), StoreError> {
    let entry = AuditEntry { at: now(), actor: actor.to_string(), action, target, reason };
    store.insert_audit(&entry).await
}

/// `operator add`: a new operator with a one-time password, to be changed at first sign-in.
pub async fn add_operator(
    store: &DynStore,
    name: OperatorName,
    role: OperatorRole,
) -> Result<SecretString, AccountError> {
    let password = passwords::one_time_password();
    let operator = Operator {
        name: name.clone(),
        role,
        password_hash: passwords::hash(password.clone()).await?,
        must_change_password: true,
        disabled: false,
        created_at: now(),
    };
    if !store.insert_operator(&operator).await? {
        return Err(AccountError::NameTaken(name));
    }
    audit(store, "cli", AuditAction::OperatorAdded, Some(name.to_string()), Some(role.as_str().into())).await?;
    Ok(password)
}

/// `CONSOLE_BOOTSTRAP_ADMIN_PASSWORD`: the operator `admin` with that password (to be
/// changed at first sign-in), unless one exists. Whether it was created.
pub async fn bootstrap_admin(store: &DynStore, password: SecretString) -> Result<bool, AccountError> {
    let name = OperatorName::parse("admin").expect("a valid name");
    if store.get_operator(&name).await?.is_some() {
        return Ok(false);
    }
    let operator = Operator {
        name: name.clone(),
        role: OperatorRole::Admin,
        password_hash: passwords::hash(password).await?,
        must_change_password: true,
        disabled: false,
        created_at: now(),
    };
    let created = store.insert_operator(&operator).await?;
    if created {
        audit(store, "bootstrap", AuditAction::OperatorAdded, Some(name.to_string()), Some("admin".into())).await?;
    }
    Ok(created)
}

/// `operator reset`: a new one-time password; unlocks and re-enables the account and ends
/// its sessions.
pub async fn reset_operator(store: &DynStore, name: OperatorName) -> Result<SecretString, AccountError> {
    let mut operator = store.get_operator(&name).await?.ok_or_else(|| AccountError::NoSuchOperator(name.clone()))?;
    let password = passwords::one_time_password();
    operator.password_hash = passwords::hash(password.clone()).await?;
    operator.must_change_password = true;
    operator.disabled = false;
    store.save_operator(&operator).await?;
    store.delete_operator_sessions(&name).await?;
    audit(store, "cli", AuditAction::OperatorReset, Some(name.to_string()), None).await?;
    Ok(password)
}

/// `operator disable`: the account can no longer sign in; its sessions end at once.
pub async fn disable_operator(store: &DynStore, name: OperatorName) -> Result<(), AccountError> {
    let mut operator = store.get_operator(&name).await?.ok_or_else(|| AccountError::NoSuchOperator(name.clone()))?;
    operator.disabled = true;
    store.save_operator(&operator).await?;
    store.delete_operator_sessions(&name).await?;
    audit(store, "cli", AuditAction::OperatorDisabled, Some(name.to_string()), None).await?;
    Ok(())
}

/// Checks the password and opens a session. Every refusal looks the same to the caller
/// (unknown name, disabled, wrong password), except a lock, which says when to retry.
/// `from` names the caller's address (an IPv6 caller by its /64).
pub async fn sign_in(
    store: &DynStore,
    name: &str,
    password: SecretString,
    from: &str,
    ttl: chrono::Duration,
    at: DateTime<Utc>,
) -> Result<SignedIn, AccountError> {
    let typed: String = name.trim().to_lowercase().chars().take(64).collect();
    let failures_key = format!("console-sign-in-failures:{}:{from}", hex::encode(Sha256::digest(typed.as_bytes())));
    if store.read_counter(&failures_key).await? >= LOCK_AFTER_FAILURES {
        return Err(AccountError::Locked { retry_after: LOCK_FOR.num_seconds() as u64 });
    }
    let found = match OperatorName::parse(name) {
        Ok(name) => store.get_operator(&name).await?,
        Err(_) => None,
    };
    let matches = match &found {
        Some(operator) => passwords::verify(password, operator.password_hash.clone()).await,
        None => passwords::verify_nothing(password).await,
    };
    let Some(operator) = found.filter(|o| matches && !o.disabled) else {
        return Err(failed(store, &failures_key, at).await?);
    };
    let token = SecretString::from(random_hex(32));
    let session = OperatorSession {
        token_hash: token_hash(token.expose_secret()),
        operator: operator.name.clone(),
        csrf_token: random_hex(16),
        created_at: at,
        expires_at: at + ttl,
    };
    store.insert_operator_session(&session).await?;
    audit(store, operator.name.as_str(), AuditAction::SignIn, None, None).await?;
    Ok(SignedIn { token, session, operator })
}

/// Counts a failed sign-in; the refusal to give (a lock once there were too many).
async fn failed(store: &DynStore, failures_key: &str, at: DateTime<Utc>) -> Result<AccountError, StoreError> {
    let failures = store.increment_counter(failures_key, 1, at + LOCK_FOR).await?;
    if failures >= LOCK_AFTER_FAILURES {
        tracing::warn!("console sign-in locked for an address after repeated failures");
        return Ok(AccountError::Locked { retry_after: LOCK_FOR.num_seconds() as u64 });
    }
    Ok(AccountError::InvalidCredentials)
}

/// The signed-in operator of a session token, if the session is live and the account usable.
pub async fn session_of(
    store: &DynStore,
    token: &str,
    at: DateTime<Utc>,
) -> Result<Option<(OperatorSession, Operator)>, StoreError> {
    let Some(session) = store.get_operator_session(&token_hash(token), at).await? else { return Ok(None) };
    let operator = store.get_operator(&session.operator).await?.filter(|o| !o.disabled);
    Ok(operator.map(|operator| (session, operator)))
}

/// Replaces the password (the current one must be given); other sessions end. Refused
/// when the account was disabled or its password changed meanwhile.
pub async fn change_password(
    store: &DynStore,
    operator: &Operator,
    current_session: &OperatorSession,
    current: SecretString,
    new: SecretString,
) -> Result<(), AccountError> {
    if let Some(why) = passwords::weakness(new.expose_secret(), operator.name.as_str()) {
        return Err(AccountError::WeakPassword(why));
    }
    if !passwords::verify(current, operator.password_hash.clone()).await {
        return Err(AccountError::InvalidCredentials);
    }
    let new_hash = passwords::hash(new).await?;
    if !store.change_operator_password(&operator.name, &operator.password_hash, &new_hash).await? {
        return Err(AccountError::InvalidCredentials);
    }
    store.delete_operator_sessions(&operator.name).await?;
    store.insert_operator_session(current_session).await?;
    audit(store, operator.name.as_str(), AuditAction::PasswordChanged, None, None).await?;
    Ok(())
}
