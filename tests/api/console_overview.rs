//! The console's overview: today's users, conversations, replies, tokens, estimated cost,
//! first-token latency and refusals, counted by the replicas into one document a day.
use std::time::Duration;

use serde_json::{json, Value};

use crate::console::{Operator, BOOTSTRAP_PASSWORD};
use crate::helpers::fake_deepseek::{refusal, text_reply};
use crate::helpers::spawn_app_with;

#[tokio::test]
async fn todays_figures_count_replies_tokens_cost_latency_and_refusals() {
    let app = spawn_app_with(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
        s.model_prices = "deepseek-v4-flash=0.02/1/4".into();
        s.rate_limit_per_minute = 4;
        s.deepseek_max_retries = 0;
    })
    .await;
    let admin = Operator::admin(&app).await;
    let (token, conversation) = app.user_with_conversation("counted").await;
    app.deepseek.enqueue(text_reply(&["一", "二"]));
    app.stream_message(&token, &conversation, "你好").await.all().await;
    app.deepseek.enqueue(refusal(400));
    app.stream_message(&token, &conversation, "再来").await.all().await;
    for _ in 0..3 {
        app.get_me(&token).await;
    }

    let mut today = Value::Null;
    for _ in 0..100 {
        today = admin.get("/console/api/overview?days=2").await["days"][0].clone();
        if today["rate_limited"].as_i64().unwrap_or(0) > 0 && today["replies"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let overview = admin.get("/console/api/overview?days=2").await;

    assert_eq!(overview["days"].as_array().unwrap().len(), 2, "today and yesterday");
    assert_eq!(today["active_users"], 1);
    assert_eq!(today["conversations"], 1);
    assert_eq!(today["replies"], 2);
    assert_eq!(today["replies_by_status"], json!({"complete": 1, "failed": 1}));
    assert_eq!(today["errors_by_code"].as_object().unwrap().len(), 1, "{today}");
    assert_eq!(today["tokens"], json!({"cache_hit": 0, "cache_miss": 20, "output": 2}), "the fake's usage");
    assert!(today["cost_cny"].as_f64().unwrap() > 0.0, "{today}");
    assert!(today["first_token_p50_ms"].as_u64().is_some(), "{today}");
    assert!(today["rate_limited"].as_i64().unwrap() >= 1, "{today}");
    assert_eq!(overview["days"][1]["replies"], 0);
    assert!(overview["upstreams"].as_array().is_some());
}
