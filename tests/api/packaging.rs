//! The image cannot be built here (no Docker engine), so what Cloud Run reads is checked
//! statically: a typo in container.config.json or a missing Dockerfile essential fails CI.
use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const ALLOWED_KEYS: &[&str] = &[
    "remark",
    "containerPort",
    "dockerfilePath",
    "buildDir",
    "minNum",
    "maxNum",
    "cpu",
    "mem",
    "policyType",
    "policyThreshold",
    "envParams",
    "customLogs",
    "initialDelaySeconds",
    "flowRatio",
];

/// Cloud Run's allowed CPU (cores) → memory (GB) pairs.
const CLOUD_RUN_MEMORY_BY_CPU: &[(f64, &[f64])] = &[
    (0.25, &[0.5, 1.0, 2.0]),
    (0.5, &[1.0, 2.0, 3.0, 4.0]),
    (1.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
    (2.0, &[4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]),
];

fn memory_allowed(cpu: f64, mem: f64) -> bool {
    CLOUD_RUN_MEMORY_BY_CPU.iter().any(|(c, allowed)| *c == cpu && allowed.contains(&mem))
}

#[test]
fn container_config_is_strict_json_that_cloud_run_accepts() {
    let config: Value = serde_json::from_str(&repo_file("container.config.json")).expect("strict JSON");
    let config = config.as_object().expect("an object");

    let unknown: Vec<&String> = config.keys().filter(|k| !ALLOWED_KEYS.contains(&k.as_str())).collect();
    assert!(unknown.is_empty(), "unknown (misspelt?) keys: {unknown:?}");
    assert!(config["remark"].is_string());
    assert_eq!(config["containerPort"], 80, "Cloud Run routes to the port the image listens on");
    let dockerfile = config["dockerfilePath"].as_str().expect("dockerfilePath is a string");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(dockerfile).is_file(), "{dockerfile} exists");
    assert!(config["buildDir"].is_string());
    let min = config["minNum"].as_u64().expect("minNum is a whole number");
    let max = config["maxNum"].as_u64().expect("maxNum is a whole number");
    assert!(min >= 1, "chat needs a warm instance: cold starts and in-flight replies");
    assert!(min <= max && max <= 50);
    let cpu = config["cpu"].as_f64().expect("cpu is a number");
    let mem = config["mem"].as_f64().expect("mem is a number");
    assert!(memory_allowed(cpu, mem), "cpu {cpu} with mem {mem} is not an allowed pair");
    assert!(["cpu", "mem"].contains(&config["policyType"].as_str().unwrap()));
    let threshold = config["policyThreshold"].as_u64().expect("policyThreshold is a whole number");
    assert!((1..=100).contains(&threshold));
    assert_eq!(config["customLogs"], "stdout");
    assert!(config["initialDelaySeconds"].as_u64().is_some());
    assert!(config["flowRatio"].as_u64().is_some_and(|r| r <= 100));
}

#[test]
fn container_config_env_params_are_known_settings_and_never_secrets() {
    let config: Value = serde_json::from_str(&repo_file("container.config.json")).unwrap();
    let example = repo_file(".env.example");
    let documented: HashSet<&str> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let secrets = ["WECHAT_SECRET", "DEEPSEEK_API_KEY", "JWT_SECRET", "JWT_SECRET_PREVIOUS", "MONGODB_URI"];

    for (key, value) in config["envParams"].as_object().expect("envParams is an object") {
        assert!(value.is_string(), "{key} must be a string value");
        assert!(documented.contains(key.as_str()), "{key} is not a documented setting");
        assert!(!secrets.contains(&key.as_str()), "{key} is a secret: set it in 服务设置, never in the repository");
    }
}

#[test]
fn the_dockerfile_has_what_cloud_run_needs() {
    let dockerfile = repo_file("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();

    assert!(lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 3, "multi-stage build");
    assert!(dockerfile.contains("cargo chef cook"), "dependencies cached in their own layer");
    assert!(lines.contains(&"EXPOSE 80"));
    assert!(dockerfile.contains("PORT=80"));
    assert!(dockerfile.contains("TZ=Asia/Shanghai"));
    assert!(dockerfile.contains("ca-certificates"));
    let user = lines.iter().rev().find(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.ends_with("root") && !user.ends_with(" 0"), "runs as non-root: {user}");
    let healthcheck = lines.iter().position(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    assert!(lines[healthcheck..healthcheck + 2].concat().contains("healthcheck"), "uses the binary's own probe");
    assert!(!dockerfile.contains("curl"), "no curl needed");
}

#[test]
fn the_docker_context_leaves_out_build_output_secrets_and_the_client() {
    let ignored = repo_file(".dockerignore");
    for entry in ["target/", ".env", "miniprogram/"] {
        assert!(ignored.lines().any(|l| l.trim() == entry), "{entry} is not ignored");
    }
}
