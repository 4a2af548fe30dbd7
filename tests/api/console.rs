//! The operator console's accounts and sessions: off by default; the first admin from
//! `CONSOLE_BOOTSTRAP_ADMIN_PASSWORD` must change the password; the session cookie's
//! attributes; CSRF on every change; roles; lockout; the audit log; API keys.
use companion_backend::console::cli;
use companion_backend::domain::{OperatorName, OperatorRole};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp};

pub const BOOTSTRAP_PASSWORD: &str = "first-admin-password";
pub const ADMIN_PASSWORD: &str = "a-much-better-passphrase";

pub async fn console_app() -> TestApp {
    spawn_app_with(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
    })
    .await
}

/// A browser-like client of the console: the session cookie and the CSRF token.
pub struct Operator<'a> {
    pub app: &'a TestApp,
    pub cookie: String,
    pub csrf: String,
    pub set_cookie: String,
}

pub async fn sign_in_raw(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/console/api/session"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

impl<'a> Operator<'a> {
    pub async fn sign_in(app: &'a TestApp, name: &str, password: &str) -> Operator<'a> {
        let response = sign_in_raw(app, name, password).await;
        assert_eq!(response.status(), 200, "signing in as {name}");
        let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        Operator { app, cookie, csrf: body["csrf_token"].as_str().unwrap().to_string(), set_cookie }
    }

    /// The bootstrap admin, signed in with the password already changed.
    pub async fn admin(app: &'a TestApp) -> Operator<'a> {
        let first = Operator::sign_in(app, "admin", BOOTSTRAP_PASSWORD).await;
        let changed = first
            .send(
                Method::POST,
                "/console/api/password",
                Some(json!({"current": BOOTSTRAP_PASSWORD, "new": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(changed.status(), 204);
        first
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .header(COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self.send(Method::GET, path, None).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

#[tokio::test]
async fn the_console_does_not_exist_unless_enabled() {
    let app = spawn_app().await;

    let response = sign_in_raw(&app, "admin", BOOTSTRAP_PASSWORD).await;

    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_first_admin_must_replace_the_bootstrap_password_before_anything_else() {
    let app = console_app().await;
    let first = Operator::sign_in(&app, "admin", BOOTSTRAP_PASSWORD).await;

    let session = first.get("/console/api/session").await;
    let keys_before = first.send(Method::GET, "/console/api/keys", None).await;
    let weak = first
        .send(Method::POST, "/console/api/password", Some(json!({"current": BOOTSTRAP_PASSWORD, "new": "short"})))
        .await;
    let wrong = first
        .send(Method::POST, "/console/api/password", Some(json!({"current": "not it at all", "new": ADMIN_PASSWORD})))
        .await;
    let changed = first
        .send(
            Method::POST,
            "/console/api/password",
            Some(json!({"current": BOOTSTRAP_PASSWORD, "new": ADMIN_PASSWORD})),
        )
        .await;
    let keys_after = first.send(Method::GET, "/console/api/keys", None).await;
    let old_password = sign_in_raw(&app, "admin", BOOTSTRAP_PASSWORD).await;

    assert_eq!(session["operator"], json!({"name": "admin", "role": "admin", "must_change_password": true}));
    assert_eq!(keys_before.status(), 403);
    assert_eq!(error_code(keys_before).await, "password_change_required");
    assert_eq!(error_code(weak).await, "weak_password");
    assert_eq!(error_code(wrong).await, "invalid_credentials");
    assert_eq!(changed.status(), 204);
    assert_eq!(keys_after.status(), 200);
    assert_eq!(error_code(old_password).await, "invalid_credentials");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_scoped_to_the_console() {
    let app = console_app().await;
    let admin = Operator::sign_in(&app, "admin", BOOTSTRAP_PASSWORD).await;

    let attributes: Vec<String> = admin.set_cookie.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();

    assert!(admin.cookie.starts_with("companion_console=") && admin.cookie.len() > 40, "{}", admin.cookie);
    for expected in ["httponly", "samesite=strict", "path=/console"] {
        assert!(attributes.contains(&expected.to_string()), "{expected} in {attributes:?}");
    }
    assert!(attributes.iter().any(|a| a.starts_with("max-age=")), "{attributes:?}");
    assert!(!attributes.contains(&"secure".to_string()), "not Secure in development (plain http on localhost)");
}

#[tokio::test]
async fn a_change_without_the_csrf_token_is_refused() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;
    let forged =
        Operator { cookie: admin.cookie.clone(), csrf: "guessed".into(), set_cookie: String::new(), app: &app };

    let without = forged.send(Method::POST, "/console/api/keys", Some(json!({"name": "ops"}))).await;
    let reading = forged.send(Method::GET, "/console/api/keys", None).await;
    let with = admin.send(Method::POST, "/console/api/keys", Some(json!({"name": "ops"}))).await;

    assert_eq!(without.status(), 403);
    assert_eq!(error_code(without).await, "csrf_failed");
    assert_eq!(reading.status(), 200, "reads need no token");
    assert_eq!(with.status(), 201);
}

async fn sign_in_from(app: &TestApp, address: &str, name: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/console/api/session"))
        .header("x-forwarded-for", address)
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn repeated_failures_lock_a_name_for_that_address_only() {
    let app = spawn_app_with(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
        s.trusted_proxy_depth = 1;
    })
    .await;
    let attacker = "203.0.113.66";
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(sign_in_from(&app, attacker, "admin", "wrong password!").await.status());
    }

    let locked = sign_in_from(&app, attacker, "admin", BOOTSTRAP_PASSWORD).await;
    let elsewhere = sign_in_from(&app, "198.51.100.7", "admin", BOOTSTRAP_PASSWORD).await;
    let mut unknown = Vec::new();
    for _ in 0..6 {
        unknown.push(sign_in_from(&app, "198.51.100.8", "nobody", "whatever password").await.status().as_u16());
    }

    assert_eq!(statuses[..4], [StatusCode::UNAUTHORIZED; 4]);
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.status(), 429, "even the right password, from that address");
    let retry: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "{retry}");
    assert_eq!(error_code(locked).await, "sign_in_locked");
    assert_eq!(elsewhere.status(), 200, "the operator still signs in from their own address");
    assert_eq!(unknown, [401, 401, 401, 401, 429, 429], "an unknown name locks the same way: names are not revealed");
}

#[tokio::test]
async fn operators_from_the_command_line_sign_in_with_their_role_and_can_be_disabled() {
    let app = console_app().await;
    let name = OperatorName::parse("mod-lin").unwrap();
    let added = cli::run(&app.store, cli::Command::Add(name.clone(), OperatorRole::Moderator)).await.unwrap();
    let password = added.rsplit(": ").next().unwrap().trim().to_string();
    let first = Operator::sign_in(&app, "mod-lin", &password).await;
    let new_password = json!({"current": password, "new": "moderator passphrase"});
    assert_eq!(first.send(Method::POST, "/console/api/password", Some(new_password)).await.status(), 204);

    let keys = first.send(Method::GET, "/console/api/keys", None).await;
    let audit = first.send(Method::GET, "/console/api/audit", None).await;
    cli::run(&app.store, cli::Command::Disable(name.clone())).await.unwrap();
    let after_disable = first.send(Method::GET, "/console/api/session", None).await;
    let sign_in_disabled = sign_in_raw(&app, "mod-lin", "moderator passphrase").await;

    assert_eq!(error_code(keys).await, "forbidden", "keys are for admins");
    assert_eq!(error_code(audit).await, "forbidden");
    assert_eq!(after_disable.status(), 401, "disabling ends the session at once");
    assert_eq!(error_code(sign_in_disabled).await, "invalid_credentials");
    let taken = cli::run(&app.store, cli::Command::Add(name, OperatorRole::Admin)).await;
    assert!(taken.is_err(), "a name is added once");
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_the_secret_and_revoked_and_everything_is_audited() {
    let app = console_app().await;
    let admin = Operator::admin(&app).await;

    let created =
        admin.send(Method::POST, "/console/api/keys", Some(json!({"name": "内部工具", "per_minute": 30}))).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let listed = admin.get("/console/api/keys").await;
    let id = created["id"].as_str().unwrap();
    let revoked = admin.send(Method::DELETE, &format!("/console/api/keys/{id}"), None).await;
    let again = admin.send(Method::DELETE, &format!("/console/api/keys/{id}"), None).await;
    let bad = admin.send(Method::POST, "/console/api/keys", Some(json!({"name": " "}))).await;
    let signed_out = admin.send(Method::DELETE, "/console/api/session", None).await;
    let after = admin.send(Method::GET, "/console/api/session", None).await;
    let audit = Operator::sign_in(&app, "admin", ADMIN_PASSWORD).await.get("/console/api/audit").await;

    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("sk-companion-") && key.len() == 53, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(listed["items"][0]["name"], "内部工具");
    assert_eq!(listed["items"][0]["per_minute"], 30);
    assert!(listed["items"][0].get("key").is_none() && !listed.to_string().contains(key), "never listed again");
    assert_eq!(revoked.status(), 204);
    assert_eq!(again.status(), 404);
    assert_eq!(error_code(bad).await, "invalid_body");
    assert_eq!(signed_out.status(), 204);
    assert_eq!(after.status(), 401, "a signed-out session is gone");
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in ["operator_added", "sign_in", "password_changed", "api_key_created", "api_key_revoked", "sign_out"]
    {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    assert!(!audit.to_string().contains(ADMIN_PASSWORD) && !audit.to_string().contains(key), "no secrets in the log");
}

#[tokio::test]
async fn the_console_answers_only_allowed_addresses() {
    let app = spawn_app_with(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
        s.console_allowed_ips = "203.0.113.0/24".into();
    })
    .await;

    let response = sign_in_raw(&app, "admin", BOOTSTRAP_PASSWORD).await;

    assert_eq!(response.status(), 404, "127.0.0.1 is not in 203.0.113.0/24");
}
