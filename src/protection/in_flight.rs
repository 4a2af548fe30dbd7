//! A cap on the requests one client address may have in flight at once: one client
//! holding thousands of connections open with slow bodies must not starve the rest.
//! (Streaming responses do not count once their headers are sent.)
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use super::client_ip::ClientIp;
use crate::errors::{ApiError, ErrorCode};

pub struct InFlight {
    per_ip: Mutex<HashMap<ClientIp, usize>>,
    max_per_ip: usize,
}

struct Slot<'a> {
    in_flight: &'a InFlight,
    ip: ClientIp,
}

impl InFlight {
    pub fn new(max_per_ip: usize) -> Self {
        InFlight { per_ip: Mutex::default(), max_per_ip }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ClientIp, usize>> {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, ip: ClientIp) -> Option<Slot<'_>> {
        let mut map = self.map();
        let count = map.entry(ip).or_default();
        if self.max_per_ip > 0 && *count >= self.max_per_ip {
            return None;
        }
        *count += 1;
        Some(Slot { in_flight: self, ip })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut map = self.in_flight.map();
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Middleware: `429 rate_limited` beyond the cap, before anything reads the body.
pub async fn cap_in_flight<B: MessageBody>(
    in_flight: Arc<InFlight>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let ip = ClientIp::of(req.request());
    let Some(_slot) = in_flight.enter(ip) else {
        let error = ApiError::new(ErrorCode::RateLimited, "too many requests at once from this address");
        return Err(error.with_retry_after(1).into());
    };
    next.call(req).await
}
