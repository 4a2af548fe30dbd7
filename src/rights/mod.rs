//! Users' rights (PIPL; 《人工智能生成合成内容标识办法》): reports with the operator's
//! decision, a download of everything kept about the user, and erasing the account.
mod deletion;
mod export;
mod reports;

use std::sync::Arc;
use std::time::Duration;

pub use deletion::{erase_due_accounts, DeletionOutcome};
pub use export::ExportError;
pub use reports::{report_json, NewReport, ReportError};

use crate::chat::{ChatService, Registry};
use crate::store::DynStore;

#[derive(Debug, Clone)]
pub struct RightsSettings {
    /// When a report is promised to be handled, after it is filed.
    pub report_handling: Duration,
    pub reports_per_day: i64,
    /// Between asking and erasing (zero: at once).
    pub deletion_cooling_off: Duration,
    /// How long a prepared export can be downloaded.
    pub export_ttl: Duration,
}

pub struct UserRights {
    pub store: DynStore,
    pub registry: Arc<Registry>,
    pub chat: Arc<ChatService>,
    pub settings: RightsSettings,
}
