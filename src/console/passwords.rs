//! Operator passwords: Argon2id (the `argon2` crate's defaults, OWASP's minimum), verified
//! off the async threads. A password is never stored, logged or echoed.
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

/// A chosen password must be at least this long (characters).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Hashes `password` into a PHC string.
pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

/// Whether `password` matches the stored `hash` (a malformed hash matches nothing).
pub async fn verify(password: SecretString, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Spends the time a real check takes, for a name that does not exist (so unknown names
/// do not answer faster). Always false.
pub async fn verify_nothing(password: SecretString) -> bool {
    static NOBODYS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = tokio::task::spawn_blocking(|| {
        NOBODYS
            .get_or_init(|| {
                let salt = SaltString::generate(&mut OsRng);
                let secret = one_time_password();
                Argon2::default()
                    .hash_password(secret.expose_secret().as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            })
            .clone()
    })
    .await
    .unwrap_or_default();
    verify(password, hash).await;
    false
}

/// A one-time password for the command line: 20 characters from an alphabet without
/// look-alikes (about 112 bits).
pub fn one_time_password() -> SecretString {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let password: String = (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    SecretString::from(password)
}

/// Why a new password is refused, in words an operator can act on.
pub fn weakness(password: &str, name: &str) -> Option<&'static str> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some("密码至少 12 个字符");
    }
    if password.to_lowercase().contains(&name.to_lowercase()) {
        return Some("密码不能包含用户名");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashed = hash(SecretString::from("correct horse battery")).await.unwrap();
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
        assert!(verify(SecretString::from("correct horse battery"), hashed.clone()).await);
        assert!(!verify(SecretString::from("correct horse battery!"), hashed).await);
        assert!(!verify(SecretString::from("x"), "not a hash".into()).await);
    }

    #[test]
    fn new_passwords_must_be_long_and_not_the_name() {
        let cases = [
            ("long enough", "a long passphrase", None),
            ("too short", "short", Some("密码至少 12 个字符")),
            ("contains the name", "alice-is-great-2026", Some("密码不能包含用户名")),
            ("eleven characters", "abcdefghijk", Some("密码至少 12 个字符")),
            ("twelve CJK characters count as twelve", "一二三四五六七八九十百千", None),
        ];
        for (label, password, expected) in cases {
            assert_eq!(weakness(password, "alice"), expected, "{label}");
        }
    }

    #[test]
    fn one_time_passwords_differ_and_avoid_look_alikes() {
        let (a, b) = (one_time_password(), one_time_password());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 20);
        assert!(!a.expose_secret().contains(['0', 'O', 'o', '1', 'l', 'I']));
    }
}
