//! The operator console in a real headless browser (Debian's Chromium, driven by selenium
//! from the test virtualenv; `scripts/test.sh` installs both): an operator signs in, must
//! change the bootstrap password, reads the overview, edits a companion, finds a user on
//! the moderation page and bans them, makes
//! and revokes a key, reads the audit log and signs out. Screenshots of every page are kept
//! in `target/console-screenshots/`.
use serde_json::{json, Value};

use crate::console::BOOTSTRAP_PASSWORD;
use crate::helpers::error_code;
use crate::helpers::fake_deepseek::text_reply;

const NEW_PASSWORD: &str = "运营同学的新密码2026";

#[tokio::test]
async fn an_operator_runs_the_service_from_the_console_in_a_real_browser() {
    let app = crate::moderation::checking_app(|s| {
        s.console_enabled = true;
        s.console_bootstrap_admin_password = Some(BOOTSTRAP_PASSWORD.to_string().into());
    })
    .await;
    crate::moderation::moderation_rules(&app.wechat, "骚扰", "risky").await;
    let (token, conversation) = app.user_with_conversation("misbehaving").await;
    app.deepseek.enqueue(text_reply(&["你好"]));
    app.stream_message(&token, &conversation, "在吗").await.all().await;
    let refused = app.send_message(&token, &conversation, &json!({"content": "一段骚扰的话"})).await;
    assert_eq!(refused.status(), 422);
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap().to_string();
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/console-screenshots");

    let output = tokio::process::Command::new(crate::helpers::venv_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console_browser/walkthrough.py"))
        .env("BASE_URL", &app.address)
        .env("BOOTSTRAP_PASSWORD", BOOTSTRAP_PASSWORD)
        .env("NEW_PASSWORD", NEW_PASSWORD)
        .env("SCREENSHOTS", screenshots)
        .output()
        .await
        .expect("the venv's Python with selenium: run ./scripts/test.sh once to install it");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();

    assert_eq!(seen["asked_to_change_password"], "请先修改初始密码");
    assert_eq!(seen["today_replies"], "1");
    assert_eq!(seen["yesterday_cost"], "0.0000");
    assert_eq!(seen["chart_bars"], 30, "one bar a day for 30 days");
    assert_eq!(seen["session_cookie_visible_to_script"], false, "the session cookie is HttpOnly");
    assert!(seen["persona_saved"].as_str().unwrap().contains("已保存"), "{seen}");
    assert!(seen["flagged"].as_str().unwrap().contains("一段骚扰的话"), "{seen}");
    assert_eq!(seen["found_user"], user_id.as_str(), "found from the moderation page");
    assert_eq!(seen["user_status_before"], "正常");
    assert!(seen["user_status_after"].as_str().unwrap().contains("多次发送骚扰信息"), "{seen}");
    assert!(seen["key_status"].as_str().unwrap().contains("已吊销"), "{seen}");
    let audit = seen["audit"].to_string();
    for action in ["登录", "修改密码", "保存伙伴", "封禁用户", "创建密钥", "吊销密钥"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert_eq!(seen["signed_out"], "已退出登录");
    assert_eq!(seen["console_errors"], json!([]), "no script errors in the page");
    for page in
        ["01-sign-in", "03-overview", "04-persona-edit", "05-moderation", "07-user-banned", "08-keys", "09-audit"]
    {
        assert!(std::path::Path::new(&format!("{screenshots}/{page}.png")).exists(), "{page} screenshot");
    }

    // What the operator did is in effect without a redeploy.
    let refused = app.get_me(&token).await;
    assert_eq!(error_code(refused).await, "user_banned");
    let key = seen["key"].as_str().unwrap();
    let with_revoked_key = app.client.get(app.url("/v1/models")).bearer_auth(key).send().await.unwrap();
    assert_eq!(with_revoked_key.status(), 401);
    let (other, fresh) = app.user_with_persona("next_user", Some("xiaoxi")).await;
    app.deepseek.enqueue(text_reply(&["嗯"]));
    app.stream_message(&other, &fresh, "你好").await.all().await;
    let system = app.deepseek.requests().last().unwrap().body["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.starts_with("你是小溪，说话温柔，喜欢用小动物打比方。"), "{system}");
}
