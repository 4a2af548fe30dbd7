//! Sessions: JWTs we issue, and the authenticated-user extractor.
mod extractor;
mod jwt;

pub use extractor::{AuthState, AuthenticatedUser, CloudRunIdentity, IdentitySource};
pub use jwt::{IssuedToken, JwtKeys, TokenError};
