//! Streaming benchmark: many concurrent SSE replies through the real release binary.
//!
//!     cargo build --release --bin companion-backend
//!     cargo run --release --example stream_bench -- 2000
//!
//! `BENCH_SERVER_BIN=/path/to/other/companion-backend` runs the same load against another
//! build (for example the previous release), for a ratio measured in one session.
//!
//! A fake DeepSeek (in this process) streams each reply as 20 pieces, 100 ms apart; each
//! piece carries the instant it was sent, so the client side measures the relay latency
//! (upstream write → server → client read, two loopback hops included). The server's
//! resident memory is sampled from /proc while every stream is open. The server runs with
//! the in-process store, no rate limits, quotas or content checks: this measures the relay.
// A benchmark client, not the service: its tasks need no shutdown drain.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PIECES: usize = 20;
const INTERVAL: Duration = Duration::from_millis(100);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn fake_deepseek(base: Instant) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 16384];
                // Read the request head and its body.
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        if buffer.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let send = |event: String| {
                    let mut out = format!("{:x}\r\n", event.len()).into_bytes();
                    out.extend_from_slice(event.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out
                };
                for _ in 0..PIECES {
                    let stamp = base.elapsed().as_micros();
                    let data = json!({"choices": [{"index": 0, "delta": {"content": format!("{stamp}|")}, "finish_reason": null}]});
                    if socket.write_all(&send(format!("data: {data}\n\n"))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(INTERVAL).await;
                }
                let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                let usage = json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": PIECES, "total_tokens": 10 + PIECES}});
                let tail = format!("data: {finish}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
                let _ = socket.write_all(&send(tail)).await;
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    Ok(url)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let streams: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let base = Instant::now();
    let upstream = fake_deepseek(base).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // BENCH_SERVER_BIN compares another build (say, the previous release) in the same run.
    let binary = std::env::var("BENCH_SERVER_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/companion-backend").to_string());
    let binary = binary.as_str();
    let mut server = Command::new(binary)
        .env_clear()
        .env("PORT", port.to_string())
        .env("APP_CONFIG_FILE", "/nonexistent")
        .env("DEEPSEEK_API_URL", &upstream)
        .env("DEEPSEEK_API_KEY", "sk-bench")
        .env("JWT_SECRET", "benchmark-secret-0123456789abcdefghijklmn")
        .env("RATE_LIMIT_PER_MINUTE", "0")
        .env("RATE_LIMIT_PER_HOUR", "0")
        .env("RATE_LIMIT_IP_PER_MINUTE", "0")
        .env("RATE_LIMIT_IP_PER_HOUR", "0")
        .env("DAILY_MESSAGE_QUOTA", "0")
        .env("DAILY_TOKEN_QUOTA", "0")
        // One user and one address drive every stream here.
        .env("MAX_ACTIVE_REPLIES_PER_USER", "0")
        .env("MAX_IN_FLIGHT_PER_IP", "0")
        .env("CONTENT_CHECK", "false")
        .env("RUST_LOG", "error")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{binary}: {e} (build it with cargo build --release first)"))?;
    let pid = server.id();
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(streams).build()?;
    while client.get(format!("{address}/health")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login: Value = client
        .post(format!("{address}/api/auth/login"))
        .json(&json!({"code": "dev:bench"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default().to_string();
    let mut conversations = Vec::with_capacity(streams);
    for _ in 0..streams {
        let created: Value = client
            .post(format!("{address}/api/conversations"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        conversations.push(created["id"].as_str().unwrap_or_default().to_string());
    }
    let idle_rss = rss_kib(pid);

    let opened = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let tasks = conversations.into_iter().map(|conversation| {
        let (client, token, address) = (client.clone(), token.clone(), address.clone());
        let (opened, completed) = (opened.clone(), completed.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(PIECES);
            let Ok(response) = client
                .post(format!("{address}/api/conversations/{conversation}/messages"))
                .bearer_auth(&token)
                .json(&json!({"content": "bench"}))
                .send()
                .await
            else {
                return latencies;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                let now = base.elapsed().as_micros() as u64;
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    if event.starts_with("event: done") {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                    if !event.starts_with("event: delta") {
                        continue;
                    }
                    let Ok(value) = serde_json::from_str::<Value>(data) else { continue };
                    for stamp in value["content"].as_str().unwrap_or_default().split('|').filter(|s| !s.is_empty()) {
                        if let Ok(sent) = stamp.parse::<u64>() {
                            latencies.push(now.saturating_sub(sent));
                        }
                    }
                }
            }
            latencies
        })
    });
    let results = futures_util::future::join_all(tasks).await;
    let elapsed = started.elapsed();
    sampler.abort();
    let mut latencies: Vec<u64> = results.into_iter().filter_map(Result::ok).flatten().collect();
    latencies.sort_unstable();
    let peak = peak_rss.load(Ordering::Relaxed);
    let _ = server.kill();

    println!("streams requested      {streams}");
    println!("streams opened         {}", opened.load(Ordering::Relaxed));
    println!("streams completed      {}", completed.load(Ordering::Relaxed));
    println!("pieces relayed         {} (expected {})", latencies.len(), streams * PIECES);
    println!(
        "wall time              {:.2} s (one reply alone: {:.1} s)",
        elapsed.as_secs_f64(),
        (PIECES as f64) * INTERVAL.as_secs_f64()
    );
    println!("relay latency p50      {:.3} ms", percentile(&latencies, 0.50) as f64 / 1000.0);
    println!("relay latency p99      {:.3} ms", percentile(&latencies, 0.99) as f64 / 1000.0);
    println!("relay latency max      {:.3} ms", latencies.last().copied().unwrap_or(0) as f64 / 1000.0);
    println!("server RSS idle        {idle_rss} KiB");
    println!("server RSS peak        {peak} KiB");
    println!("per open stream        {:.1} KiB", (peak.saturating_sub(idle_rss)) as f64 / streams as f64);
    Ok(())
}
