//! The processes the bench runs (the relay server, the fake upstream), what /proc says
//! about them, and the relay's HTTP API used for setting up (login, conversations, metrics).
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

pub const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";

/// A child process killed (and reaped) when dropped, whatever happened.
pub struct Child {
    child: std::process::Child,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has already exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `taskset -c <cpu> program` when pinning, else `program`.
fn command(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Starts `relay_bench --upstream` (this binary again) and reads the port it serves on.
/// It exits by itself when its stdin (held by the returned `Child`) closes.
pub fn spawn_upstream() -> anyhow::Result<(Child, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--upstream")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Child { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the fake upstream did not start (said {line:?})"))?;
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// How the relay talks to the fake upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1: one upstream connection per stream.
    H1,
    /// HTTP/2 prior knowledge, multiplexed over this many connections.
    H2c(usize),
}

impl Mode {
    pub fn label(&self) -> String {
        match self {
            Mode::H1 => "h1".into(),
            Mode::H2c(n) => format!("h2c x{n}"),
        }
    }
}

pub struct Relay {
    child: Child,
    pub address: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Kept only when the server had something to say (RUST_LOG=error).
        if std::fs::metadata(&self.log).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Relay {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// Starts the server binary against the fake upstream, with every limit off, and waits
/// until `/health` answers.
pub async fn start_relay(
    binary: &Path,
    upstream: SocketAddr,
    mode: Mode,
    cpu: Option<usize>,
    http: &reqwest::Client,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Relay> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::env::temp_dir().join(format!("relay_bench-server-{port}.log"));
    let out = std::fs::File::create(&log)?;
    let (h2c, connections) = match mode {
        Mode::H1 => ("false", 1),
        Mode::H2c(n) => ("true", n),
    };
    let child = command(binary, cpu)
        .env_clear()
        .env("PORT", port.to_string())
        .env("APP_CONFIG_FILE", "/nonexistent")
        .env("DEEPSEEK_API_URL", format!("http://{upstream}"))
        .env("DEEPSEEK_API_KEY", "sk-bench")
        .env("JWT_SECRET", "benchmark-secret-0123456789abcdefghijklmn")
        .env("RATE_LIMIT_PER_MINUTE", "0")
        .env("RATE_LIMIT_PER_HOUR", "0")
        .env("RATE_LIMIT_IP_PER_MINUTE", "0")
        .env("RATE_LIMIT_IP_PER_HOUR", "0")
        .env("RATE_LIMIT_LOGIN_PER_MINUTE", "0")
        .env("RATE_LIMIT_POLL_PER_MINUTE", "0")
        .env("RATE_LIMIT_IP_POLL_PER_MINUTE", "0")
        .env("DAILY_MESSAGE_QUOTA", "0")
        .env("DAILY_TOKEN_QUOTA", "0")
        // One user and one address drive every stream here.
        .env("MAX_ACTIVE_REPLIES_PER_USER", "0")
        .env("MAX_IN_FLIGHT_PER_IP", "0")
        .env("MAX_CONCURRENT_GENERATIONS", "0")
        .env("WS_MAX_SOCKETS_PER_USER", "0")
        .env("CONTENT_CHECK", "false")
        .env("METRICS_TOKEN", METRICS_TOKEN)
        .env("UPSTREAM_H2C", h2c)
        .env("UPSTREAM_CONNECTIONS", connections.to_string())
        .env("RUST_LOG", "error")
        .envs(extra_env.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e}", binary.display()))?;
    let mut relay = Relay { child: Child { child }, address: SocketAddr::from(([127, 0, 0, 1], port)), log };
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = relay.child.exited() {
            let tail = std::fs::read_to_string(&relay.log).unwrap_or_default();
            anyhow::bail!("the server exited ({status}) at start-up:\n{}", last_lines(&tail, 20));
        }
        if let Ok(response) = http.get(format!("{}/health", relay.base())).send().await {
            if response.status().is_success() {
                return Ok(relay);
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the server did not answer /health within 30 s (log: {})", relay.log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Development login (no WECHAT_APPID): `dev:<name>` gives a token.
pub async fn login(http: &reqwest::Client, relay: &Relay, name: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("{}/api/auth/login", relay.base()))
        .json(&json!({"code": format!("dev:{name}")}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("login failed ({status}): {body}"))
}

/// Creates `n` conversations for the token's user (each stream needs its own: one reply
/// runs per conversation at a time).
pub async fn conversations(
    http: &reqwest::Client,
    relay: &Relay,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let url = format!("{}/api/conversations", relay.base());
    let created: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..n)
        .map(|_| async {
            let response = http.post(&url).bearer_auth(token).json(&json!({})).send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            body["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("could not create a conversation ({status}): {body}"))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    created.into_iter().collect()
}

/// `companion_store_writes_total` from `GET /metrics`; `None` if the server has no
/// metrics endpoint (404) or does not report the counter.
pub async fn store_writes(http: &reqwest::Client, relay: &Relay) -> Option<f64> {
    metric(http, relay, "companion_store_writes_total").await
}

/// One sample from `GET /metrics`, named as it is written there (with its labels, if any).
pub async fn metric(http: &reqwest::Client, relay: &Relay, sample: &str) -> Option<f64> {
    let response = http.get(format!("{}/metrics", relay.base())).bearer_auth(METRICS_TOKEN).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(sample).filter(|rest| rest.starts_with(' ')))
        .and_then(|rest| rest.trim().parse().ok())
}

/// Resident memory (KiB) of a process.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // Fields after the command name (which may hold spaces), starting at field 3 (state).
    let Some((_, rest)) = stat.rsplit_once(") ") else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn taskset_available() -> bool {
    Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Logical CPUs of the machine (not of this process's affinity mask).
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `nproc`, CPU model and kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_owned())
        })
        .unwrap_or_else(|| "?".into());
    format!("nproc {}, {model}, kernel {}, open files {files}", cpu_count(), kernel.trim())
}
