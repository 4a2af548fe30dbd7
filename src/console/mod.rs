//! The operator console: operators' accounts and sign-in, the audit log, API keys, and the
//! pages under `/console` (off unless `CONSOLE_ENABLED=true`).
mod allowlist;
pub mod passwords;

pub use allowlist::IpAllowlist;
pub mod accounts;
pub mod http;
pub mod keys;
pub mod moderation;
pub mod pages;
pub mod personas;
pub mod reports;
pub mod routes;
pub mod safety;
pub mod users;

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::protection::{guard_body, require_storage, BodyGuard, StoreHealth};

/// Mounts `/console` and the OpenAI-compatible `/v1` whose keys it hands out (only when
/// `CONSOLE_ENABLED=true`). The console: the allowlist first, then the storage gate and
/// the bounded body read, as for `/api`. `/v1` is for tools anywhere, so not allowlisted.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    console: web::Data<http::ConsoleState>,
    health: Arc<StoreHealth>,
    body_guard: Arc<BodyGuard>,
) {
    let api =
        web::Data::new(crate::openai::ApiAccess { store: console.store.clone(), limiter: console.limiter.clone() });
    let allowed = console.settings.allowed_ips.clone();
    let (api_health, api_guard) = (health.clone(), body_guard.clone());
    cfg.service(
        web::scope("/v1")
            .app_data(api)
            .wrap(from_fn(move |req, next| guard_body(api_guard.clone(), req, next)))
            .wrap(from_fn(move |req, next| require_storage(api_health.clone(), req, next)))
            .service(web::resource("/models").get(crate::openai::list_models))
            .service(web::resource("/chat/completions").post(crate::openai::chat_completions)),
    );
    cfg.service(
        web::scope("/console")
            .app_data(console)
            .wrap(from_fn(move |req, next| guard_body(body_guard.clone(), req, next)))
            .wrap(from_fn(move |req, next| require_storage(health.clone(), req, next)))
            .wrap(from_fn(move |req, next| http::admit_console(allowed.clone(), req, next)))
            .service(web::resource("").get(pages::index))
            .service(web::resource("/").get(pages::index))
            .service(web::resource("/app.js").get(pages::script))
            .service(web::resource("/app.css").get(pages::style))
            .service(
                web::resource("/api/session")
                    .post(routes::sign_in)
                    .get(routes::current_session)
                    .delete(routes::sign_out),
            )
            .service(web::resource("/api/password").post(routes::change_password))
            .service(web::resource("/api/audit").get(routes::audit_log))
            .service(web::resource("/api/overview").get(routes::overview))
            .service(web::resource("/api/moderation").get(moderation::flagged))
            .service(web::resource("/api/keys").get(routes::list_keys).post(routes::create_key))
            .service(web::resource("/api/keys/{id}").delete(routes::revoke_key))
            .service(web::resource("/api/personas").get(personas::list_personas))
            .service(web::resource("/api/personas/{id}").put(personas::save_persona))
            .service(web::resource("/api/users/search").post(users::search_user))
            .service(web::resource("/api/users/{id}/conversations").get(conversations::list))
            .service(web::resource("/api/conversations/view").post(conversations::view))
            .service(web::resource("/api/users/{id}/ban").post(users::ban_user).delete(users::unban_user))
            .service(web::resource("/api/users/{id}/quota").put(users::set_quota).delete(users::reset_quota))
            .service(web::resource("/api/users/{id}/safety").get(safety::user_record))
            .service(web::resource("/api/users/{id}/guardian-consent").post(safety::guardian_consent))
            .service(web::resource("/api/users/{id}/minor-mode").delete(safety::minor_mode_off))
            .service(web::resource("/api/reports").get(reports::list))
            .service(web::resource("/api/reports/{id}/decision").post(reports::decide))
            .service(web::resource("/api/crisis").get(safety::crisis_queue))
            .service(web::resource("/api/crisis/{id}").get(safety::crisis_conversation))
            .service(web::resource("/api/conversations/{id}/takeover").post(safety::take_over))
            .service(web::resource("/api/conversations/{id}/operator-reply").post(safety::operator_reply))
            .service(web::resource("/api/conversations/{id}/release").post(safety::release)),
    );
}
pub mod cli;
pub mod conversations;
