use jsonwebtoken::{encode, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp, TEST_JWT_SECRET};

/// Routes that answer 200 for any logged-in user.
const USER_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/auth/refresh"),
    ("GET", "/api/me"),
    ("PATCH", "/api/me"),
    ("GET", "/api/personas"),
    ("GET", "/api/conversations"),
];

/// Every route behind the authenticated-user extractor.
const PROTECTED_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/auth/refresh"),
    ("GET", "/api/me"),
    ("PATCH", "/api/me"),
    ("GET", "/api/personas"),
    ("GET", "/api/conversations"),
    ("POST", "/api/conversations"),
    ("GET", "/api/conversations/0123456789abcdef01234567"),
    ("PATCH", "/api/conversations/0123456789abcdef01234567"),
    ("DELETE", "/api/conversations/0123456789abcdef01234567"),
    ("GET", "/api/conversations/0123456789abcdef01234567/messages"),
    ("POST", "/api/conversations/0123456789abcdef01234567/messages"),
    ("GET", "/api/conversations/0123456789abcdef01234567/messages/0123456789abcdef01234568"),
    ("GET", "/api/conversations/0123456789abcdef01234567/messages/0123456789abcdef01234568/stream"),
];

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 3600, "iss": "companion-backend", "aud": "companion-miniprogram"})
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

async fn assert_unauthorized(app: &TestApp, token: &str, why: &str) {
    let response = app.get_me(token).await;
    assert_eq!(response.status(), 401, "{why}");
    assert_eq!(error_code(response).await, "unauthorized", "{why}");
}

#[tokio::test]
async fn a_token_from_login_opens_every_protected_route() {
    let app = spawn_app().await;
    let (token, user_id) = app.login_as("oUser_routes").await;

    for (method, path) in USER_ROUTES {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
    }
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["id"], user_id);
}

#[tokio::test]
async fn every_protected_route_refuses_a_request_without_a_valid_token() {
    let app = spawn_app().await;

    for (method, path) in PROTECTED_ROUTES {
        for auth in [None, Some("Bearer not-a-jwt"), Some("Basic dXNlcjpwYXNz")] {
            let mut request = app.client.request(method.parse().unwrap(), app.url(path)).json(&json!({}));
            if let Some(value) = auth {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(error_code(response).await, "unauthorized");
        }
    }
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let app = spawn_app().await;
    let (token, user_id) = app.login_as("oUser_tamper").await;
    let good = claims(&user_id);

    // alg: none, with and without a signature part.
    let header = base64url(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(&good.to_string());
    assert_unauthorized(&app, &format!("{header}.{payload}."), "alg none").await;
    assert_unauthorized(&app, &format!("{header}.{payload}"), "alg none, no signature").await;
    // Another secret.
    assert_unauthorized(&app, &sign(&good, "some-other-secret-0123456789abcdefgh"), "other secret").await;
    // Expired (well past the leeway).
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    assert_unauthorized(&app, &sign(&expired, TEST_JWT_SECRET), "expired").await;
    // Wrong audience and issuer.
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_unauthorized(&app, &sign(&wrong_aud, TEST_JWT_SECRET), "wrong aud").await;
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("someone-else");
    assert_unauthorized(&app, &sign(&wrong_iss, TEST_JWT_SECRET), "wrong iss").await;
    // A payload swapped under the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = base64url(&claims("0123456789abcdef01234567").to_string());
    assert_unauthorized(&app, &format!("{}.{}.{}", parts[0], forged, parts[2]), "swapped payload").await;
    // The untouched claims, properly signed, do work: the cases above fail for their reason.
    assert_eq!(app.get_me(&sign(&good, TEST_JWT_SECRET)).await.status(), 200);
}

fn base64url(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn tokens_signed_with_the_previous_secret_verify_during_a_rotation() {
    let old_secret = "the-old-secret-that-is-being-rotated-out-0001";
    let app = spawn_app_with(|s| {
        s.jwt_secret = Some(SecretString::from(TEST_JWT_SECRET));
        s.jwt_secret_previous = Some(SecretString::from(old_secret));
    })
    .await;
    let (_, user_id) = app.login_as("oUser_rotation").await;
    let old_token = sign(&claims(&user_id), old_secret);

    assert_eq!(app.get_me(&old_token).await.status(), 200);
    // Refreshing re-signs with the current secret.
    let refreshed: Value = app.post_refresh(&old_token).await.json().await.unwrap();
    let new_token = refreshed["token"].as_str().unwrap();
    let unrotated = spawn_app_with(|s| s.mongodb_db = app.db_name.clone()).await;
    assert_eq!(unrotated.get_me(new_token).await.status(), 200);
    assert_eq!(unrotated.get_me(&old_token).await.status(), 401);
}

#[tokio::test]
async fn refresh_returns_a_fresh_working_token_for_the_same_user() {
    let app = spawn_app().await;
    let (token, user_id) = app.login_as("oUser_refresh").await;

    let response = app.post_refresh(&token).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], user_id);
    let me: Value = app.get_me(body["token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["id"], user_id);
}

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_cannot_refresh() {
    let app = spawn_app().await;
    let ghost = sign(&claims("0123456789abcdef01234567"), TEST_JWT_SECRET);

    let response = app.post_refresh(&ghost).await;

    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn the_profile_can_be_updated_within_limits() {
    let app = spawn_app().await;
    let (token, _) = app.login_as("oUser_profile").await;

    let ok = app.patch_me(&token, &json!({"nickname": " 小溪 ", "avatar_url": "https://thirdwx.qlogo.cn/a/132"})).await;
    assert_eq!(ok.status(), 200);
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["nickname"], "小溪");
    assert_eq!(me["avatar_url"], "https://thirdwx.qlogo.cn/a/132");

    for bad in [
        json!({"nickname": ""}),
        json!({"nickname": "长".repeat(33)}),
        json!({"nickname": "a\u{0007}b"}),
        json!({"avatar_url": "http://insecure.example.com/a.png"}),
        json!({"avatar_url": "javascript:alert(1)"}),
        json!({"avatar_url": format!("https://x.cn/{}", "a".repeat(600))}),
    ] {
        let response = app.patch_me(&token, &bad).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(error_code(response).await, "invalid_profile");
    }
    let unchanged: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(unchanged["nickname"], "小溪");
}

fn cloudrun_headers(request: reqwest::RequestBuilder, openid: &str) -> reqwest::RequestBuilder {
    request
        .header("X-WX-SOURCE", "wx_client")
        .header("x-wx-openid", openid)
        .header("X-WX-APPID", "wx00000000test0001")
        .header("X-WX-ENV", "prod-123")
}

#[tokio::test]
async fn trusted_cloud_run_headers_authenticate_without_a_token() {
    let app = spawn_app_with(|s| s.wechat_trust_cloudrun_headers = true).await;

    let me = cloudrun_headers(app.client.get(app.url("/api/me")), "oCloudRun_1").send().await.unwrap();
    let login = cloudrun_headers(app.client.post(app.url("/api/auth/login")), "oCloudRun_1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (_, via_code) = app.login_as("oCloudRun_1").await;

    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    assert_eq!(me["id"], login["user"]["id"]);
    assert_eq!(me["id"], via_code);
    // The token it issued works on its own (iOS 高性能+ mode sends no identity headers).
    assert_eq!(app.get_me(login["token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn cloud_run_headers_are_ignored_unless_trusted_or_without_x_wx_source() {
    let untrusting = spawn_app().await;
    let trusting = spawn_app_with(|s| s.wechat_trust_cloudrun_headers = true).await;

    let ignored =
        cloudrun_headers(untrusting.client.get(untrusting.url("/api/me")), "oCloudRun_2").send().await.unwrap();
    let no_code = cloudrun_headers(untrusting.client.post(untrusting.url("/api/auth/login")), "oCloudRun_2")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let no_source =
        trusting.client.get(trusting.url("/api/me")).header("x-wx-openid", "oCloudRun_2").send().await.unwrap();

    assert_eq!(ignored.status(), 401);
    assert_eq!(no_code.status(), 400);
    assert_eq!(error_code(no_code).await, "missing_code");
    assert_eq!(no_source.status(), 401);
}

fn keys(ttl_secs: u64) -> companion_backend::auth::JwtKeys {
    companion_backend::auth::JwtKeys::new(
        &SecretString::from(TEST_JWT_SECRET),
        None,
        "companion-backend",
        "companion-miniprogram",
        ttl_secs,
    )
}

async fn user_id_of(app: &TestApp, token: &str) -> companion_backend::domain::UserId {
    let me: Value = app.get_me(token).await.json().await.unwrap();
    companion_backend::domain::UserId::parse(me["id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn logout_ends_every_session_of_the_user_and_a_new_login_works() {
    let app = spawn_app().await;
    let (phone, _) = app.login_as("o_leaving").await;
    let (tablet, _) = app.login_as("o_leaving").await;
    let (neighbour, _) = app.login_as("o_staying").await;

    let logout = app.client.post(app.url("/api/auth/logout")).bearer_auth(&phone).send().await.unwrap();

    assert_eq!(logout.status(), 204);
    assert_eq!(app.get_me(&phone).await.status(), 401);
    assert_eq!(app.get_me(&tablet).await.status(), 401, "every token of the user");
    assert_eq!(app.post_refresh(&tablet).await.status(), 401, "a revoked token cannot be refreshed back to life");
    assert_eq!(app.get_me(&neighbour).await.status(), 200, "other users are untouched");
    let (again, _) = app.login_as("o_leaving").await;
    assert_eq!(app.get_me(&again).await.status(), 200);
}

#[tokio::test]
async fn a_token_of_a_user_that_no_longer_exists_is_refused() {
    let app = spawn_app().await;
    let ghost = companion_backend::domain::UserId::new();
    let token = keys(3600).issue(ghost, 0, None).unwrap().token;

    assert_eq!(app.get_me(&token).await.status(), 401);
    assert_eq!(app.post_refresh(&token).await.status(), 401);
}

#[tokio::test]
async fn refresh_cannot_carry_a_session_past_its_absolute_lifetime() {
    let app = spawn_app_with(|s| s.session_max_days = 30).await;
    let (token, _) = app.login_as("o_long_session").await;
    let user = user_id_of(&app, &token).await;
    let now = jsonwebtoken::get_current_timestamp();
    let recent = keys(3600).issue(user, 0, Some(now - 86_400)).unwrap().token;
    let ancient = keys(3600).issue(user, 0, Some(now - 31 * 86_400)).unwrap().token;

    let renewed = app.post_refresh(&recent).await;
    let refused = app.post_refresh(&ancient).await;

    assert_eq!(renewed.status(), 200, "a day-old session is refreshed");
    let renewed: Value = renewed.json().await.unwrap();
    let renewed_again = app.post_refresh(renewed["token"].as_str().unwrap()).await;
    assert_eq!(renewed_again.status(), 200, "and keeps its original start");
    assert_eq!(refused.status(), 401, "a 31-day-old session must log in again");
    assert_eq!(app.get_me(&ancient).await.status(), 200, "the token itself is valid until it expires");
}

#[tokio::test]
async fn an_expired_token_is_not_refreshed_even_within_the_clock_skew_allowance() {
    let app = spawn_app().await;
    let (token, _) = app.login_as("o_expiring").await;
    let user = user_id_of(&app, &token).await;
    let short = keys(1).issue(user, 0, None).unwrap().token;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    assert_eq!(app.post_refresh(&short).await.status(), 401);
}
