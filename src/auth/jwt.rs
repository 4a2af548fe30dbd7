use std::collections::HashSet;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::configuration::JwtSettings;
use crate::domain::UserId;

/// HS256 keys: new tokens are signed with the current secret; tokens signed with the
/// previous one (`JWT_SECRET_PREVIOUS`) still verify during a rotation.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    iss: String,
    aud: String,
    /// The user's session version when issued: a logout bumps it and revokes the token.
    #[serde(default)]
    sv: i64,
    /// When the session began (the login); refreshes carry it on, so a session cannot be
    /// slid forever. Tokens of older versions lack it (then `iat` stands in).
    #[serde(default)]
    auth_time: u64,
}

/// What a verified token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: UserId,
    pub session_version: i64,
    /// The login that began this session (Unix seconds).
    pub auth_time: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

/// Why a token was refused: for debug logs only; clients see one uniform 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token rejected: {0}")]
    Rejected(#[from] jsonwebtoken::errors::Error),
    #[error("token subject is not a user id")]
    BadSubject,
}

impl JwtKeys {
    pub fn from_settings(settings: &JwtSettings) -> JwtKeys {
        let current = settings.secret.clone().unwrap_or_else(|| {
            // Development only (production refuses to start without JWT_SECRET).
            tracing::warn!("JWT_SECRET is not set: using a random secret; tokens die with this process");
            let mut bytes = [0u8; 48];
            rand::thread_rng().fill_bytes(&mut bytes);
            SecretString::from(hex::encode(bytes))
        });
        Self::new(
            &current,
            settings.previous.as_ref(),
            &settings.issuer,
            &settings.audience,
            settings.lifetime.as_secs(),
        )
    }

    pub fn new(
        current: &SecretString,
        previous: Option<&SecretString>,
        issuer: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> JwtKeys {
        let mut decoding = vec![DecodingKey::from_secret(current.expose_secret().as_bytes())];
        if let Some(previous) = previous {
            decoding.push(DecodingKey::from_secret(previous.expose_secret().as_bytes()));
        }
        // Pinned to HS256: `alg: none` and every other algorithm are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.required_spec_claims = HashSet::from(["exp", "iat", "iss", "aud", "sub"].map(String::from));
        validation.leeway = 30;
        JwtKeys {
            encoding: EncodingKey::from_secret(current.expose_secret().as_bytes()),
            decoding,
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl_secs,
        }
    }

    /// A token for `user` at `session_version`; `auth_time` carries a refreshed session's
    /// start (`None`: a new session begins now).
    pub fn issue(&self, user: UserId, session_version: i64, auth_time: Option<u64>) -> anyhow::Result<IssuedToken> {
        let iat = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp: iat + self.ttl_secs,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sv: session_version,
            auth_time: auth_time.unwrap_or(iat),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken { token, expires_in: self.ttl_secs })
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let mut last_error = None;
        for key in &self.decoding {
            match decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let user_id = UserId::parse(&claims.sub).ok_or(TokenError::BadSubject)?;
                    let auth_time = if claims.auth_time == 0 { claims.iat } else { claims.auth_time };
                    return Ok(VerifiedToken {
                        user_id,
                        session_version: claims.sv,
                        auth_time,
                        expires_at: claims.exp,
                    });
                }
                // Only a signature mismatch is worth trying the next key for.
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => last_error = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_error.map(TokenError::from).unwrap_or(TokenError::BadSubject))
    }
}
