//! A send's critical path: the store round trips between the request and the upstream
//! call, counted by a wrapper around the real store (calls made concurrently count once).
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use companion_backend::store::CountingStore;

use crate::helpers::fake_deepseek::{paced, reply_body, Reply, Step};
use crate::helpers::{spawn_app_wrapping, TestApp};

/// A reply that waits before its first byte, so nothing after the upstream call (first
/// progress save, settling abandoned replies) is counted.
fn slow_to_start() -> Reply {
    let Reply::Stream(steps) = paced(&reply_body(&["好"], "stop"), Duration::from_millis(5)) else { unreachable!() };
    Reply::Stream([vec![Step::Pause(Duration::from_millis(400))], steps].concat())
}

async fn rounds_until_the_upstream_call(app: &TestApp, counting: &CountingStore, body: serde_json::Value) -> u64 {
    let (token, conversation) = app.user_with_conversation("rounds").await;
    // A first send warms what is cached per user (the session check).
    app.deepseek.enqueue(crate::helpers::fake_deepseek::text_reply(&["热身"]));
    app.stream_message(&token, &conversation, "热身").await.all().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.deepseek.enqueue(slow_to_start());
    let asked_before = app.deepseek.requests().len();
    let before = counting.traffic();

    let response = app.send_message(&token, &conversation, &body).await;

    assert_eq!(response.status(), 200);
    for _ in 0..200 {
        if app.deepseek.requests().len() > asked_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = counting.traffic();
    let rounds = after.rounds - before.rounds;
    let calls: Vec<_> = after
        .calls
        .iter()
        .map(|(op, n)| (op, n - before.calls.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!("{rounds} rounds; calls: {calls:?}");
    crate::helpers::EventReader::new(response).all().await;
    rounds
}

async fn app_counting(limits_on: bool) -> (TestApp, Arc<CountingStore>) {
    let counting: Arc<std::sync::OnceLock<Arc<CountingStore>>> = Arc::default();
    let slot = counting.clone();
    let app = spawn_app_wrapping(
        move |s| {
            if !limits_on {
                s.rate_limit_per_minute = 0;
                s.rate_limit_per_hour = 0;
                s.rate_limit_ip_per_minute = 0;
                s.rate_limit_ip_per_hour = 0;
            }
        },
        move |store| {
            let wrapped = Arc::new(CountingStore::with_latency(store, Duration::from_millis(15)));
            let _ = slot.set(wrapped.clone());
            wrapped
        },
    )
    .await;
    let counting = counting.get().expect("the app's store is wrapped").clone();
    (app, counting)
}

#[tokio::test]
async fn a_send_reaches_the_upstream_after_at_most_four_store_round_trips() {
    let (app, counting) = app_counting(false).await;

    let rounds = rounds_until_the_upstream_call(&app, &counting, json!({"content": "你好"})).await;

    assert!(rounds <= 4, "{rounds} sequential store round trips before the upstream call");
    assert!(rounds >= 3, "{rounds}: the claim, the message and the placeholder are sequential");
}

#[tokio::test]
async fn a_send_with_a_client_message_id_takes_no_extra_round_trip() {
    let (app, counting) = app_counting(false).await;

    let body = json!({"content": "你好", "client_message_id": "c-rounds-1"});
    let rounds = rounds_until_the_upstream_call(&app, &counting, body).await;

    assert!(rounds <= 4, "{rounds} sequential store round trips before the upstream call");
}

#[tokio::test]
async fn rate_limits_add_one_round_trip_per_subject() {
    let (app, counting) = app_counting(true).await;

    let rounds = rounds_until_the_upstream_call(&app, &counting, json!({"content": "你好"})).await;

    // The client address's and the user's windows, each minute and hour at once.
    assert!(rounds <= 6, "{rounds} sequential store round trips before the upstream call");
}
