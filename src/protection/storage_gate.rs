//! With MongoDB down, every storage call would wait for the driver's server-selection
//! timeout (seconds) before failing: behind callContainer's 15 s cut, users would see a
//! platform timeout instead of an answer. A watcher pings the store every second; once it
//! has not answered three times in a row, `/api` requests get `503 storage_unavailable` at
//! once, until it answers again.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tokio_util::sync::CancellationToken;

use crate::errors::{ApiError, ErrorCode};
use crate::store::DynStore;

const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_millis(700);
/// Pings that fail in a row before the store counts as down: one slow answer (a busy
/// moment, a GC pause) must not refuse every request; a store that is really gone is
/// found within a few seconds.
const FAILURES_TO_DOWN: u32 = 3;

#[derive(Debug)]
pub struct StoreHealth {
    up: AtomicBool,
}

impl Default for StoreHealth {
    fn default() -> Self {
        // Up until a ping says otherwise: a healthy start never refuses a request.
        Self { up: AtomicBool::new(true) }
    }
}

impl StoreHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn record(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("storage answers again");
            } else {
                tracing::error!("storage does not answer: API requests get 503 until it does");
            }
        }
    }

    /// Pings `store` until `stop` is cancelled.
    pub async fn watch(self: Arc<Self>, store: DynStore, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(PING_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let answered = matches!(tokio::time::timeout(PING_TIMEOUT, store.ping()).await, Ok(Ok(())));
            failures = if answered { 0 } else { failures + 1 };
            self.record(failures < FAILURES_TO_DOWN);
        }
    }
}

/// Middleware on `/api`: refuses at once while the store is known to be down.
pub async fn require_storage<B: MessageBody>(
    health: Arc<StoreHealth>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    if !health.is_up() {
        let error = ApiError::unavailable(
            ErrorCode::StorageUnavailable,
            "storage is temporarily unavailable; please retry shortly",
            2,
        );
        return Err(error.into());
    }
    next.call(req).await
}
