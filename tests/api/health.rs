use crate::helpers::{closed_port, error_code, spawn_app, spawn_app_with};
use secrecy::SecretString;

#[tokio::test]
async fn health_reports_status_version_commit_and_environment() {
    let app = spawn_app_with(|s| s.app_commit = Some("3f9c2ab".into())).await;

    let response = app.get_health().await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["commit"], "3f9c2ab", "the commit the build passed in");
    assert_eq!(body["env"], "development");
}

#[tokio::test]
async fn ready_is_200_when_mongodb_answers() {
    crate::requires_mongodb!();
    let app = spawn_app().await;

    let response = app.get_ready().await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["mongodb"], "ok");
}

#[tokio::test]
async fn ready_is_503_naming_mongodb_while_health_stays_200_when_mongodb_is_down() {
    let port = closed_port();
    let app = spawn_app_with(|s| {
        s.mongodb_uri = Some(SecretString::from(format!("mongodb://127.0.0.1:{port}")));
        s.mongodb_server_selection_timeout_ms = 300;
        s.mongodb_connect_timeout_ms = 300;
        s.ready_timeout_ms = 1000;
    })
    .await;

    let health = app.get_health().await;
    let ready = app.get_ready().await;

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dependency_unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("mongodb"));
    assert!(body["checks"]["mongodb"].is_string());
    assert_ne!(body["checks"]["mongodb"], "ok");
}

#[tokio::test]
async fn every_response_carries_the_app_version_and_a_generated_request_id() {
    let app = spawn_app().await;

    let first = app.get_health().await;
    let second = app.get_health().await;

    assert_eq!(first.headers()["x-app-version"], env!("CARGO_PKG_VERSION"));
    let first_id = first.headers()["x-request-id"].to_str().unwrap().to_string();
    let second_id = second.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!first_id.is_empty());
    assert_ne!(first_id, second_id);
}

#[tokio::test]
async fn an_incoming_request_id_is_echoed_back() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/health")).header("X-Request-Id", "trace-abc_123").send().await.unwrap();

    assert_eq!(response.headers()["x-request-id"], "trace-abc_123");
}

#[tokio::test]
async fn an_unusable_incoming_request_id_is_replaced() {
    let app = spawn_app().await;
    let too_long = "a".repeat(200);

    for bad in ["has spaces in it", too_long.as_str()] {
        let response = app.client.get(app.url("/health")).header("X-Request-Id", bad).send().await.unwrap();
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(echoed, bad);
        assert!(!echoed.is_empty());
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_404_in_the_error_envelope() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/no/such/route")).send().await.unwrap();

    assert_eq!(response.status(), 404);
    assert!(response.headers()["x-request-id"].to_str().is_ok());
    assert_eq!(error_code(response).await, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_in_the_error_envelope() {
    let app = spawn_app().await;

    let response = app.client.delete(app.url("/health")).send().await.unwrap();

    assert_eq!(response.status(), 405);
    assert_eq!(error_code(response).await, "method_not_allowed");
}
