//! Companions edited in the console: in effect at once on this replica and within seconds
//! on another, with no new version; checked by the same rules as the personas file.
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::console::{Operator, BOOTSTRAP_PASSWORD};
use crate::helpers::fake_deepseek::text_reply;
use crate::helpers::{error_code, spawn_app_with, unique_db_name, TestApp};

async fn console_app_on(db: &str) -> TestApp {
    let db = db.to_string();
    spawn_app_with(move |s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
        s.mongodb_db = db;
    })
    .await
}

fn persona_ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn an_edited_companion_is_used_by_the_next_reply_and_reaches_another_replica() {
    let db = unique_db_name();
    let (first, second) = (console_app_on(&db).await, console_app_on(&db).await);
    let admin = Operator::admin(&first).await;
    let seeded = admin.get("/console/api/personas").await;
    let mut xiaoxi = seeded["items"][0].clone();
    xiaoxi.as_object_mut().unwrap().remove("id");
    xiaoxi["system_prompt"] = json!("你是小溪，今天特别爱用比喻。");

    let saved = admin.send(Method::PUT, "/console/api/personas/xiaoxi", Some(xiaoxi.clone())).await;
    let (token, conversation) = first.user_with_persona("edited", Some("xiaoxi")).await;
    first.deepseek.enqueue(text_reply(&["好呀"]));
    first.stream_message(&token, &conversation, "你好").await.all().await;
    let mut new_one = xiaoxi.clone();
    new_one["name"] = json!("小夜");
    new_one["system_prompt"] = json!("你是小夜，一个夜猫子。");
    let created = admin.send(Method::PUT, "/console/api/personas/xiaoye", Some(new_one)).await;
    let (other_token, _) = second.login_as("o_second_replica").await;
    let mut on_second = Vec::new();
    for _ in 0..100 {
        let listed: Value = second
            .client
            .get(second.url("/api/personas"))
            .bearer_auth(&other_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        on_second = persona_ids(&listed);
        if on_second.contains(&"xiaoye".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(persona_ids(&seeded), ["xiaoxi", "ahang", "sikao"], "seeded from the personas file");
    assert_eq!(saved.status(), 200);
    let sent = first.deepseek.requests()[0].body["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(sent.starts_with("你是小溪，今天特别爱用比喻。"), "{sent}");
    assert_eq!(created.status(), 200);
    assert_eq!(on_second, ["xiaoxi", "ahang", "sikao", "xiaoye"], "the other replica sees it within seconds");
    let audit = admin.get("/console/api/audit").await;
    let saved_ids: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "persona_saved")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(saved_ids, ["xiaoye", "xiaoxi"]);
}

#[tokio::test]
async fn a_disabled_companion_is_offered_to_nobody_and_broken_ones_are_refused() {
    let app = console_app_on(&unique_db_name()).await;
    let admin = Operator::admin(&app).await;
    let listed = admin.get("/console/api/personas").await;
    let mut ahang = listed["items"][1].clone();
    ahang.as_object_mut().unwrap().remove("id");
    let (token, _) = app.login_as("o_chooser").await;

    ahang["enabled"] = json!(false);
    let disabled = admin.send(Method::PUT, "/console/api/personas/ahang", Some(ahang.clone())).await;
    let offered: Value =
        app.client.get(app.url("/api/personas")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let start = app.create_conversation(&token, &json!({"persona_id": "ahang"})).await;
    let mut nameless = ahang.clone();
    nameless["name"] = json!(" ");
    let no_name = admin.send(Method::PUT, "/console/api/personas/ahang", Some(nameless)).await;
    let mut misspelt = ahang.clone();
    misspelt["preveiw"] = json!(true);
    let typo = admin.send(Method::PUT, "/console/api/personas/ahang", Some(misspelt)).await;
    let bad_id = admin.send(Method::PUT, "/console/api/personas/two%20words", Some(ahang.clone())).await;

    assert_eq!(disabled.status(), 200);
    assert_eq!(persona_ids(&offered), ["xiaoxi", "sikao"]);
    assert_eq!(start.status(), 400, "a disabled companion cannot be chosen");
    assert_eq!(error_code(no_name).await, "invalid_body");
    assert_eq!(error_code(typo).await, "invalid_body");
    assert_eq!(error_code(bad_id).await, "invalid_body");
    let still = admin.get("/console/api/personas").await;
    assert_eq!(still["items"][1]["name"], listed["items"][1]["name"], "a refused edit changes nothing");
}
