use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use companion_backend::configuration::{AppEnv, ConfigError, Settings};
use secrecy::ExposeSecret;

use crate::helpers::closed_port;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn production_env() -> HashMap<String, String> {
    env(&[
        ("APP_ENV", "production"),
        ("MONGODB_URI", "mongodb://db.internal:27017"),
        ("WECHAT_APPID", "wx1234567890abcdef"),
        ("WECHAT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("DEEPSEEK_API_KEY", "sk-test-0000"),
        ("JWT_SECRET", "k3J9v0q8mQ2xL7pN4rT6wY1zB5cD8fG0hJ2kL4mN6pQ8"),
    ])
}

#[test]
fn every_setting_is_documented_in_env_example() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let documented: Vec<&str> =
        example.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    let optional = [
        "MONGODB_URI",
        "WECHAT_APPID",
        "WECHAT_SECRET",
        "DEEPSEEK_API_KEY",
        "JWT_SECRET",
        "JWT_SECRET_PREVIOUS",
        "DEEPSEEK_MAX_TOKENS",
        "FALLBACK1_NAME",
        "FALLBACK1_API_URL",
        "FALLBACK1_API_KEY",
        "FALLBACK1_MODEL",
        "FALLBACK2_NAME",
        "FALLBACK2_API_URL",
        "FALLBACK2_API_KEY",
        "FALLBACK2_MODEL",
        "CORS_ALLOWED_ORIGINS",
        "CONTENT_CHECK",
        "CONTENT_CHECK_FAIL_OPEN",
        "PREVIEW_OPENIDS",
        "PREVIEW_MODEL",
        "APP_COMMIT",
        "METRICS_TOKEN",
        "CONSOLE_BOOTSTRAP_ADMIN_PASSWORD",
    ];
    let defaults = companion_backend::configuration::DEFAULTS
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_ascii_uppercase()));
    for key in defaults.chain(optional.iter().map(|k| k.to_string())) {
        assert!(documented.contains(&key.as_str()), "{key} is missing from .env.example");
    }
    // Every variable (or small group of related ones) sits right under its comment.
    let lines: Vec<&str> = example.lines().collect();
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| !l.starts_with('#') && l.contains('=')) {
        let above = lines[..i].iter().rev().find(|l| l.starts_with('#') || !l.contains('='));
        assert!(above.is_some_and(|l| l.starts_with('#')), "{line} has no comment above it");
    }
}

#[test]
fn a_fresh_checkout_has_working_defaults() {
    let settings = Settings::from_sources(&HashMap::new(), None).unwrap();

    assert_eq!(settings.port, 80);
    assert_eq!(settings.host, "0.0.0.0");
    assert_eq!(settings.app_env, AppEnv::Development);
    assert!(settings.mongodb_uri.is_none());
    assert_eq!(settings.wechat_api_base, "https://api.weixin.qq.com");
    assert_eq!(settings.deepseek_api_url, "https://api.deepseek.com");
    assert_eq!(settings.deepseek_model, "deepseek-flash");
    assert_eq!(settings.body_limit_bytes, 64 * 1024);
    assert!(settings.production_problems().is_empty());
}

#[test]
fn the_config_file_overrides_defaults_and_the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.toml");
    std::fs::write(&file, "port = 9000\nmongodb_db = \"from_file\"\ndeepseek_model = \"deepseek-v4-pro\"\n").unwrap();

    let settings = Settings::from_sources(&env(&[("PORT", "9100")]), Some(&file)).unwrap();

    assert_eq!(settings.port, 9100, "environment beats file");
    assert_eq!(settings.mongodb_db, "from_file", "file beats default");
    assert_eq!(settings.deepseek_model, "deepseek-v4-pro");
    assert_eq!(settings.jwt_expires_in, 604800, "default stays where nothing overrides");
}

#[test]
fn a_missing_config_file_is_fine() {
    let settings =
        Settings::from_sources(&env(&[("PORT", "8081")]), Some(std::path::Path::new("/nonexistent/app.toml"))).unwrap();
    assert_eq!(settings.port, 8081);
}

#[test]
fn empty_environment_values_count_as_unset() {
    let settings = Settings::from_sources(
        &env(&[("MONGODB_URI", ""), ("WECHAT_APPID", "  "), ("PORT", ""), ("DEEPSEEK_API_KEY", "")]),
        None,
    )
    .unwrap();

    assert!(settings.mongodb_uri.is_none());
    assert!(settings.wechat_appid.is_none());
    assert!(settings.deepseek_api_key.is_none());
    assert_eq!(settings.port, 80);
}

#[test]
fn an_upstream_base_url_keeps_its_path_and_loses_only_a_trailing_slash() {
    let cases = [
        ("https://api.deepseek.com", "https://api.deepseek.com"),
        ("https://api.deepseek.com/", "https://api.deepseek.com"),
        ("https://api.deepseek.com/v1", "https://api.deepseek.com/v1"),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1/", "https://dashscope.aliyuncs.com/compatible-mode/v1"),
    ];
    for (url, expected) in cases {
        let settings =
            Settings::from_sources(&env(&[("DEEPSEEK_API_URL", url), ("FALLBACK1_API_URL", url)]), None).unwrap();
        assert_eq!(settings.deepseek_api_url, expected, "from {url}");
        assert_eq!(settings.fallback1_api_url.as_deref(), Some(expected), "from {url}");
    }
}

#[test]
fn a_fallback_needs_its_url_key_and_model_together() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 5] = [
        ("none", &[], true),
        (
            "all three",
            &[
                ("FALLBACK1_API_URL", "https://api.moonshot.cn/v1"),
                ("FALLBACK1_API_KEY", "sk-x"),
                ("FALLBACK1_MODEL", "kimi"),
            ],
            true,
        ),
        ("a URL alone", &[("FALLBACK1_API_URL", "https://api.moonshot.cn/v1")], false),
        ("a key without a model", &[("FALLBACK1_API_URL", "https://a/v1"), ("FALLBACK1_API_KEY", "sk-x")], false),
        (
            "the second without the first",
            &[("FALLBACK2_API_URL", "https://a/v1"), ("FALLBACK2_API_KEY", "sk-x"), ("FALLBACK2_MODEL", "m")],
            false,
        ),
    ];
    for (label, vars, fine) in cases {
        let settings = Settings::from_sources(&env(vars), None).unwrap();
        let problems = settings.value_problems();
        assert_eq!(problems.is_empty(), fine, "{label}: {problems:?}");
        assert!(problems.iter().all(|p| !p.contains("sk-x")), "{label}: a key in a problem");
    }
}

#[test]
fn a_bad_value_is_a_clear_configuration_error() {
    let error = Settings::from_sources(&env(&[("APP_ENV", "staging")]), None).unwrap_err();
    assert!(matches!(error, ConfigError::Invalid(_)));
    let error = Settings::from_sources(&env(&[("PORT", "eighty")]), None).unwrap_err();
    assert!(error.to_string().to_lowercase().contains("port"), "{error}");
}

#[test]
fn secrets_are_not_printed_by_debug() {
    let settings = Settings::from_sources(&production_env(), None).unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("0123456789abcdef0123456789abcdef"));
    assert!(!printed.contains("sk-test-0000"));
    assert!(!printed.contains("k3J9v0q8mQ2xL7pN4rT6wY1zB5cD8fG0hJ2kL4mN6pQ8"));
    assert_eq!(settings.deepseek_api_key.unwrap().expose_secret(), "sk-test-0000");
}

#[test]
fn a_complete_production_configuration_passes_the_guard() {
    let settings = Settings::from_sources(&production_env(), None).unwrap();
    assert_eq!(settings.production_problems(), Vec::<String>::new());
    assert!(settings.ensure_fit_to_run().is_ok());
}

#[test]
fn production_lists_every_missing_setting_at_once() {
    let settings = Settings::from_sources(&env(&[("APP_ENV", "production")]), None).unwrap();

    let problems = settings.production_problems();
    let message = settings.ensure_fit_to_run().unwrap_err().to_string();

    for name in ["MONGODB_URI", "WECHAT_APPID", "WECHAT_SECRET", "DEEPSEEK_API_KEY", "JWT_SECRET"] {
        assert!(problems.iter().any(|p| p.contains(name)), "{name} missing from {problems:?}");
        assert!(message.contains(name), "{name} missing from {message}");
    }
}

#[test]
fn production_refuses_a_short_or_placeholder_jwt_secret() {
    let mut short = production_env();
    short.insert("JWT_SECRET".into(), "t0o-Short!Kq9".into());
    let problems = Settings::from_sources(&short, None).unwrap().production_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("32 bytes"));

    let mut placeholder = production_env();
    placeholder.insert("JWT_SECRET".into(), "replace-with-at-least-32-random-bytes-of-secret".into());
    let problems = Settings::from_sources(&placeholder, None).unwrap().production_problems();
    assert!(problems.iter().any(|p| p.contains("placeholder")), "{problems:?}");
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_companion-backend"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Keep the repository's own config file out of these runs.
        .env("APP_CONFIG_FILE", "/nonexistent/app.toml")
        // Away from the checkout, so a developer's own .env is not read.
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn the_binary_refuses_to_start_in_production_and_names_every_problem() {
    let output = binary().env("APP_ENV", "production").env("PORT", closed_port().to_string()).output().unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["MONGODB_URI", "WECHAT_APPID", "WECHAT_SECRET", "DEEPSEEK_API_KEY", "JWT_SECRET"] {
        assert!(stderr.contains(name), "{name} missing from: {stderr}");
    }
}

#[test]
fn the_binary_serves_health_with_no_configuration_and_stops_cleanly_on_sigterm() {
    let port = closed_port();
    let mut child = binary().env("PORT", port.to_string()).spawn().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let healthy = loop {
        let probe = Command::new(env!("CARGO_BIN_EXE_companion-backend"))
            .arg("healthcheck")
            .env_clear()
            .env("PORT", port.to_string())
            .env("APP_CONFIG_FILE", "/nonexistent/app.toml")
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if probe.success() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();

    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(healthy, "the healthcheck subcommand never saw /health answer 200: {stderr}");
    assert!(killed.success());
    assert!(status.success(), "exit after SIGTERM: {status:?} {stderr}");
}

#[test]
fn the_healthcheck_subcommand_fails_when_nothing_listens() {
    let status = Command::new(env!("CARGO_BIN_EXE_companion-backend"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", closed_port().to_string())
        .env("APP_CONFIG_FILE", "/nonexistent/app.toml")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

#[test]
fn option_values_are_checked_even_when_their_feature_is_off() {
    for (key, value) in [("CONTENT_CHECK_REVIEW", "maybe"), ("WECHAT_OPENAPI_MODE", "cloud")] {
        let error = Settings::from_sources(&env(&[("CONTENT_CHECK", "false"), (key, value)]), None).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid(_)), "{key}={value}: {error}");
    }
}

#[test]
fn values_that_would_be_clamped_are_refused_together_in_any_environment() {
    let settings = Settings::from_sources(
        &env(&[("SSE_KEEPALIVE_SECS", "0"), ("CONTENT_CHECK_WINDOW_CHARS", "5"), ("GENERATION_LEASE_SECS", "1")]),
        None,
    )
    .unwrap();

    let message = settings.config().unwrap_err().to_string();

    for key in ["SSE_KEEPALIVE_SECS", "CONTENT_CHECK_WINDOW_CHARS", "GENERATION_LEASE_SECS"] {
        assert!(message.contains(key), "{key} missing from: {message}");
    }
}

#[test]
fn the_defaults_parse_into_typed_sections() {
    let config = Settings::from_sources(&HashMap::new(), None).unwrap().config().unwrap();

    assert_eq!(config.chat.keepalive, Duration::from_secs(15));
    assert_eq!(config.chat.lease, Duration::from_secs(15));
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(25));
    assert_eq!(config.wechat.openapi_mode, companion_backend::configuration::OpenApiMode::Token);
    assert!(config.wechat.dev_login, "no WeChat credentials outside production: development login");
    assert_eq!(config.server.commit, option_env!("APP_COMMIT").unwrap_or("unknown"));
}

#[test]
fn production_refuses_weak_secrets_for_both_keys_and_a_null_origin() {
    let cases: [(&str, &str, &str); 5] = [
        ("JWT_SECRET_PREVIOUS", "secret", "JWT_SECRET_PREVIOUS"),
        ("JWT_SECRET_PREVIOUS", "short-but-varied-123", "JWT_SECRET_PREVIOUS is shorter"),
        ("JWT_SECRET", &"a".repeat(40), "different characters"),
        ("JWT_SECRET", "abababababababababababababababababab", "different characters"),
        ("CORS_ALLOWED_ORIGINS", "https://admin.example.com,null", "null"),
    ];
    for (key, value, reason) in cases {
        let mut env = production_env();
        env.insert(key.to_string(), value.to_string());
        let problems = Settings::from_sources(&env, None).unwrap().production_problems();
        assert!(problems.iter().any(|p| p.contains(reason)), "{key}={value:.12}: {problems:?}");
    }
    assert!(Settings::from_sources(&production_env(), None).unwrap().production_problems().is_empty());
}

#[test]
fn risky_but_workable_settings_start_with_a_loud_warning() {
    let cases = [
        ("WECHAT_TRUST_CLOUDRUN_HEADERS", "true", "X-WX-OPENID"),
        ("RATE_LIMIT_PER_MINUTE", "0", "RATE_LIMIT_PER_MINUTE=0"),
        ("DAILY_TOKEN_QUOTA", "0", "DAILY_TOKEN_QUOTA=0"),
        ("DEEPSEEK_API_URL", "http://api.deepseek.com", "plain http"),
        ("JWT_EXPIRES_IN", "315360000", "3650 days"),
    ];
    for (key, value, phrase) in cases {
        let settings = Settings::from_sources(&env(&[(key, value)]), None).unwrap();
        assert!(settings.warnings().iter().any(|w| w.contains(phrase)), "{key}={value}: {:?}", settings.warnings());
        assert!(settings.config().is_ok(), "{key}={value} still starts");
    }
    assert!(Settings::from_sources(&HashMap::new(), None).unwrap().warnings().is_empty(), "defaults are quiet");
}
