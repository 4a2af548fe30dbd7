//! Minor mode: switched on by the user or a declared age under 18; it hides companions
//! not for minors, refuses emotional companions without a guardian's consent (recorded by
//! an operator), limits the day's time, and only an operator switches it off.
use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use companion_backend::domain::{Activity, UserId};
use companion_backend::store::UserSafetyUpdate;

use crate::console::{Operator, BOOTSTRAP_PASSWORD};
use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, spawn_app_with, TestApp};

async fn persona_ids(app: &TestApp, token: &str) -> Vec<String> {
    let listed: Value =
        app.client.get(app.url("/api/personas")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    listed["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
}

async fn conversation_with(app: &TestApp, token: &str, persona: &str) -> String {
    let created = app.create_conversation(token, &json!({"persona_id": persona})).await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn minor_mode_hides_and_refuses_the_right_companions_limits_the_day_and_only_an_operator_ends_it() {
    let app = spawn_app_with(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
        s.minor_daily_minutes = 1;
    })
    .await;
    let admin = Operator::admin(&app).await;
    let personas = admin.get("/console/api/personas").await;
    let mut ahang = personas["items"].as_array().unwrap().iter().find(|p| p["id"] == "ahang").unwrap().clone();
    ahang["not_for_minors"] = json!(true);
    assert_eq!(admin.send(Method::PUT, "/console/api/personas/ahang", Some(ahang)).await.status(), 200);
    let (token, user_id) = app.login_as("o_teen").await;
    let (adult, _) = app.login_as("o_adult").await;
    let ahang_conversation = conversation_with(&app, &token, "ahang").await;
    let xiaoxi_conversation = conversation_with(&app, &token, "xiaoxi").await;
    let user = UserId::parse(&user_id).unwrap();

    let bad_age =
        app.client.patch(app.url("/api/me")).bearer_auth(&token).json(&json!({"age": 0})).send().await.unwrap();
    let declared: Value = app
        .client
        .patch(app.url("/api/me"))
        .bearer_auth(&token)
        .json(&json!({"age": 15}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let minor_sees = persona_ids(&app, &token).await;
    let adult_sees = persona_ids(&app, &adult).await;
    let hidden_one = app.send_message(&token, &ahang_conversation, &json!({"content": "你好"})).await;
    let emotional = app.send_message(&token, &xiaoxi_conversation, &json!({"content": "你好"})).await;
    let consent = format!("/console/api/users/{user_id}/guardian-consent");
    let consented = admin.send(Method::POST, &consent, Some(json!({"note": "已电话核实监护人身份并取得同意"}))).await;
    app.deepseek.enqueue(text_reply(&["你好呀"]));
    let allowed = app.send_message(&token, &xiaoxi_conversation, &json!({"content": "你好", "stream": false})).await;
    assert_eq!(allowed.status(), 200);
    // Ninety seconds of continuous use today, then one more message: over the minute.
    let now = Utc::now();
    let busy = Activity {
        session_start: now - chrono::Duration::minutes(10),
        last: now - chrono::Duration::seconds(90),
        reminded_session: None,
    };
    app.store.update_user_safety(user, &UserSafetyUpdate { notices: vec![], activity: Some(busy) }).await.unwrap();
    app.deepseek.enqueue(text_reply(&["嗯嗯"]));
    app.send_message(&token, &xiaoxi_conversation, &json!({"content": "再聊一句", "stream": false})).await;
    let mut over = None;
    for _ in 0..50 {
        let tried =
            app.send_message(&token, &xiaoxi_conversation, &json!({"content": "还能聊吗", "stream": false})).await;
        if tried.status() == 429 {
            over = Some(tried);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let self_off = app
        .client
        .put(app.url("/api/me/minor-mode"))
        .bearer_auth(&token)
        .json(&json!({"on": false}))
        .send()
        .await
        .unwrap();
    let off = admin
        .send(
            Method::DELETE,
            &format!("/console/api/users/{user_id}/minor-mode"),
            Some(json!({"reason": "监护人书面同意关闭"})),
        )
        .await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let record = admin.get(&format!("/console/api/users/{user_id}/safety")).await;

    assert_eq!(error_code(bad_age).await, "invalid_profile");
    assert_eq!(declared["minor_mode"]["guardian_consent"], false, "a declared age under 18 switches it on: {declared}");
    assert!(!minor_sees.contains(&"ahang".to_string()) && minor_sees.contains(&"xiaoxi".to_string()), "{minor_sees:?}");
    assert!(adult_sees.contains(&"ahang".to_string()));
    assert_eq!(error_code(hidden_one).await, "persona_not_for_minors");
    assert_eq!(error_code(emotional).await, "guardian_consent_required");
    assert_eq!(consented.status(), 204);
    let over = over.expect("the day's minute ran out");
    assert!(over.headers().contains_key("retry-after"));
    assert_eq!(error_code(over).await, "minor_time_limit");
    assert_eq!(error_code(self_off).await, "guardian_consent_required");
    assert_eq!(off.status(), 204);
    assert_eq!(me["minor_mode"], Value::Null);
    let kinds: Vec<&str> = record["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["minor_mode_on", "guardian_consent", "minor_time_limit", "minor_mode_off"] {
        assert!(kinds.contains(&kind), "{kind} is recorded: {kinds:?}");
    }
    assert_eq!(app.deepseek.requests().len(), 2, "refused sends reach no model");
}

#[tokio::test]
async fn in_minor_mode_the_client_sees_which_companions_wait_on_consent_and_the_days_time() {
    let app = spawn_app_with(|s| s.minor_daily_minutes = 40).await;
    let (token, _) = app.login_as("o_teen_view").await;
    let consent_of = |listed: &Value, id: &str| {
        listed["items"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap()["needs_guardian_consent"].clone()
    };
    let list = || async {
        app.client
            .get(app.url("/api/personas"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };

    let before = list().await;
    let me_before: Value = app.get_me(&token).await.json().await.unwrap();
    let on = app.client.put(app.url("/api/me/minor-mode")).bearer_auth(&token).json(&json!({"on": true})).send().await;
    assert!(on.unwrap().status().is_success());
    let after = list().await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();

    assert_eq!(consent_of(&before, "xiaoxi"), false, "adults wait on nobody");
    assert_eq!(me_before["minor_mode"], Value::Null);
    assert_eq!(consent_of(&after, "xiaoxi"), true, "小溪 is emotional: a guardian's consent first");
    assert_eq!(consent_of(&after, "ahang"), false);
    assert_eq!(me["minor_mode"]["daily_minutes"], 40);
    assert_eq!(me["minor_mode"]["used_minutes_today"], 0);
}
