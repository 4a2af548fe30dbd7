//! Sessions: JWTs we issue, and who each request acts for.
mod identity;
mod jwt;

pub use identity::{
    resolve_identity, AuthState, AuthenticatedUser, CloudRunIdentity, Identity, IdentityResolver, IdentitySource,
};
pub use jwt::{IssuedToken, JwtKeys, TokenError, VerifiedToken};
