//! Abuse protection: request rate limits and daily quotas, both kept in MongoDB so every
//! replica shares them, plus security headers and CORS.
mod body;
mod client_ip;
mod headers;
mod in_flight;
mod moderation;
mod quota;
mod rate_limit;
mod storage_gate;

pub use body::{guard_body, BodyGuard};
pub use client_ip::ClientIp;
pub use headers::{cors, header_limit_middleware, security_headers, HeaderLimit};
pub use in_flight::{cap_in_flight, InFlight};
pub use moderation::{Decision, ModerationPolicy, Moderator, OutputModeration};
pub use quota::{today as china_day, Allowance, Counted, DailyQuota, QuotaUsage, Refusal, Reservation};
pub use rate_limit::{limit_by_ip, limit_by_user, limit_logins, RateLimiter};
pub use storage_gate::{require_storage, StoreHealth};
