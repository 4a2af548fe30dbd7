//! Hostile input: each test here attacks the running server the way a launch review did.
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{error_code, spawn_app_with};

#[tokio::test]
async fn compressed_request_bodies_are_refused_before_they_are_inflated() {
    let app = spawn_app_with(|_| {}).await;
    // A tiny body that would inflate a lot; its bytes do not even need to be valid.
    for encoding in ["zstd", "gzip", "br", "deflate", "GZIP"] {
        let response = app
            .client
            .post(app.url("/api/auth/login"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(vec![0x28u8, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 415, "{encoding}");
        assert_eq!(error_code(response).await, "unsupported_content_encoding", "{encoding}");
    }
    let plain = app.client.post(app.url("/api/auth/login")).header("content-encoding", "identity").json(&json!({}));
    assert_eq!(plain.send().await.unwrap().status(), 400, "identity is no encoding at all");
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_408() {
    let app = spawn_app_with(|s| s.body_read_timeout_ms = 300).await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    );
    socket.write_all(head.as_bytes()).await.unwrap();

    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            // One more byte now and then: never enough to finish the body.
            let _ = socket.write_all(b" ").await;
            match tokio::time::timeout(Duration::from_millis(100), socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(_) => continue,
            }
        }
    })
    .await;

    assert!(read.is_ok(), "the server held the slow body for seconds");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn the_login_limit_cannot_be_walked_around_by_percent_encoding_the_path() {
    let app = spawn_app_with(|s| s.rate_limit_login_per_minute = 2).await;
    let mut statuses = Vec::new();
    for path in ["/api/auth/login", "/api/auth/%6cogin", "/api/%61uth/login", "/api/auth/login"] {
        let response = app.client.post(app.url(path)).json(&json!({"code": "dev:walker"})).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }

    // Dev login is off here (WeChat is configured): the first two get WeChat's refusal.
    assert_eq!(statuses, [502, 502, 429, 429], "encoded paths are logins too");
}

#[tokio::test]
async fn a_forwarded_for_entry_that_is_not_an_ip_cannot_mint_fresh_limit_buckets() {
    let app = spawn_app_with(|s| s.rate_limit_ip_per_minute = 2).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let forged = format!("{}-{i}", "x".repeat(4000));
        let response = app.client.get(app.url("/api/personas")).header("x-forwarded-for", forged).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }

    assert_eq!(statuses[2], 429, "every forged value falls back to the one peer address: {statuses:?}");
}

async fn conversations(app: &crate::helpers::TestApp, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let created: serde_json::Value = app.create_conversation(token, &json!({})).await.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test]
async fn concurrent_sends_cannot_overrun_the_daily_message_quota() {
    let app = spawn_app_with(|s| {
        s.daily_message_quota = 3;
        s.max_active_replies_per_user = 0;
    })
    .await;
    let (token, _) = app.user_with_conversation("racer").await;
    let ids = conversations(&app, &token, 8).await;
    for _ in 0..8 {
        app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["好"]));
    }

    let body = json!({"content": "抢", "stream": false});
    let sends = ids.iter().map(|id| app.send_message(&token, id, &body));
    let statuses: Vec<u16> = futures_util::future::join_all(sends).await.iter().map(|r| r.status().as_u16()).collect();
    let usage: serde_json::Value =
        app.client.get(app.url("/api/me/usage")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();

    let accepted = statuses.iter().filter(|s| **s == 200 || **s == 202).count();
    assert_eq!(accepted, 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert_eq!(usage["messages"]["used"], 3);
}

#[tokio::test]
async fn one_user_can_run_only_a_few_replies_at_once() {
    let app = spawn_app_with(|s| s.max_active_replies_per_user = 1).await;
    let (token, first) = app.user_with_conversation("busy_bee").await;
    let second = conversations(&app, &token, 1).await.remove(0);
    app.deepseek.enqueue(crate::helpers::fake_deepseek::paced(
        &crate::helpers::fake_deepseek::reply_body(&["慢", "慢", "来"], "stop"),
        Duration::from_millis(300),
    ));
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["轮到我"]));

    let mut running = app.stream_message(&token, &first, "一").await;
    running.next().await.unwrap();
    let refused = app.send_message(&token, &second, &json!({"content": "二", "stream": false})).await;
    let refused_status = refused.status();
    let refused_code = error_code(refused).await;
    let _ = running.all().await;
    let later = app.send_message(&token, &second, &json!({"content": "二", "stream": false})).await;

    assert_eq!((refused_status.as_u16(), refused_code.as_str()), (429, "too_many_replies"));
    assert_eq!(later.status(), 200, "the slot is free once the first reply ends");
}

#[tokio::test]
async fn polling_has_limits_of_its_own_per_user_and_per_ip() {
    let app = spawn_app_with(|s| {
        s.rate_limit_poll_per_minute = 3;
        s.rate_limit_ip_poll_per_minute = 5;
        s.rate_limit_per_minute = 100;
    })
    .await;
    let (token, conversation) = app.user_with_conversation("poller").await;
    let messages = app.messages(&token, &conversation).await;
    let greeting = messages[0]["id"].as_str().unwrap().to_string();

    let mut by_user = Vec::new();
    for _ in 0..4 {
        by_user.push(app.get_message(&token, &conversation, &greeting).await.status().as_u16());
    }
    // Without credentials the per-IP poll bucket still counts (it has 1 left here).
    let anonymous = app.url(&format!("/api/conversations/{conversation}/messages/{greeting}"));
    let first_anonymous = app.client.get(&anonymous).send().await.unwrap().status().as_u16();
    let second_anonymous = app.client.get(&anonymous).send().await.unwrap().status().as_u16();
    let other_route = app.get_me(&token).await.status().as_u16();

    assert_eq!(by_user, [200, 200, 200, 429], "the user's poll bucket");
    assert_eq!((first_anonymous, second_anonymous), (401, 429), "the IP's poll bucket");
    assert_eq!(other_route, 200, "polls do not use up the general budget");
}

#[tokio::test]
async fn with_mongodb_down_every_api_route_answers_503_at_once_instead_of_hanging() {
    let port = crate::helpers::closed_port();
    // The driver's own timeouts stay at their (long) defaults: the gate must not wait on them.
    let app = spawn_app_with(|s| {
        s.mongodb_uri = Some(secrecy::SecretString::from(format!("mongodb://127.0.0.1:{port}")));
        s.wechat_appid = None;
        s.wechat_secret = None;
    })
    .await;
    // The watcher's first failed ping marks the store down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();

    let login = client.post(app.url("/api/auth/login")).json(&json!({"code": "dev:outage"})).send().await;
    let personas = client.get(app.url("/api/personas")).bearer_auth("whatever").send().await;
    let health = client.get(app.url("/health")).send().await.unwrap();

    for response in [login, personas] {
        let response = response.expect("an answer well before callContainer's 15 s cut");
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert_eq!(error_code(response).await, "storage_unavailable");
    }
    assert_eq!(health.status(), 200, "liveness does not depend on storage");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_requests_open() {
    let app = spawn_app_with(|s| {
        s.max_in_flight_per_ip = 2;
        s.body_read_timeout_ms = 3000;
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /api/auth/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        held.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let third = app.client.post(app.url("/api/auth/login")).json(&json!({"code": "dev:x"})).send().await.unwrap();
    let third_status = third.status();
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = app.client.get(app.url("/api/personas")).send().await.unwrap();

    assert_eq!(third_status, 429, "two slow bodies already hold this address's share");
    assert_eq!(after.status(), 401, "closing them frees the share (then the route answers as usual)");
}
