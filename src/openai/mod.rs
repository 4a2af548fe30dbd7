//! The OpenAI-compatible API (`/v1`): the companions for any OpenAI SDK or tool, with the
//! console's API keys, each key's limits and the instance's cap.
mod errors;
pub mod metering;
mod routes;
mod wire;

pub use errors::OpenAiError;
pub use routes::{chat_completions, list_models, ApiAccess};
