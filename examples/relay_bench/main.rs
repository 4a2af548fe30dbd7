//! Relay benchmark: what the server adds to a streamed reply, against the same streams
//! read straight from the upstream, in one run.
//!
//!     cargo build --release --bin companion-backend
//!     cargo run --release --example relay_bench            # full run, several minutes
//!     cargo run --release --example relay_bench -- --quick # smoke run
//!
//! Options: `--quick`, `--modes h1,h2c` (how the relay reaches the upstream; both by
//! default), `--h2c-connections N` (UPSTREAM_CONNECTIONS for h2c, 4), `--no-pin`, and
//! `--memory` (only the light load, memory off against memory on; see `memory.rs`).
//! `BENCH_SERVER_BIN` names the server binary (default
//! `${CARGO_TARGET_DIR:-target}/release/companion-backend`).
//!
//! A fake DeepSeek runs in a second process (this binary with `--upstream`; each process
//! may hold 20,000 descriptors and the 10,000-stream baseline needs 10,000 on each side),
//! serving SSE over HTTP/1.1 and h2c on one port. Every content chunk carries the instant it
//! was sent. The load generator speaks HTTP/1.1 by hand, over keep-alive connections, to
//! the fake directly (the baseline) and to the relay (the measured path), with the same
//! streams: 50 chunks 20 ms apart, starts spread over one stream's length, closed loop. The
//! relay runs on CPU 1 (`taskset`), the generator and the fake on CPU 0. Then holds: 1,000
//! and 10,000 slow streams (one chunk a second) open at once on a fresh server, for its
//! memory per stream and its store writes per second. See README.md, "Benchmark".
// A benchmark harness, not the service: its tasks need no shutdown drain.
#![allow(clippy::disallowed_methods)]

mod client;
mod memory;
mod procs;
mod report;
mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use client::{Conn, Outcome, Target};
use procs::{Mode, Relay};
use upstream::Shape;

/// Set in the re-run of this bench under `taskset -c 0`.
const PINNED: &str = "RELAY_BENCH_PINNED";
/// The CPU the relay runs on when pinning (the bench and the fake take CPU 0).
const RELAY_CPU: usize = 1;
/// Streams connecting and waiting for their first chunk at once during a hold.
const OPENING_AT_ONCE: usize = 256;
/// Longest wait for every hold stream to be open.
const RAMP_BUDGET: Duration = Duration::from_secs(60);
/// Longest window over which a hold's store writes are counted.
const HOLD_WINDOW: Duration = Duration::from_secs(10);

/// Microseconds since the Unix epoch: the clock both processes stamp chunks with.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

struct Options {
    quick: bool,
    memory: bool,
    modes: Vec<Mode>,
    pin: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options { quick: false, memory: false, modes: Vec::new(), pin: true };
    let mut modes = "h1,h2c".to_string();
    let mut connections = 4usize;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--memory" => options.memory = true,
            "--no-pin" => options.pin = false,
            "--modes" => modes = args.next().ok_or("--modes needs a value")?.clone(),
            "--h2c-connections" => {
                connections = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--h2c-connections needs a positive number")?
            }
            other => return Err(format!("unknown argument {other:?} (see the top of examples/relay_bench/main.rs)")),
        }
    }
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        options.modes.push(match mode {
            "h1" => Mode::H1,
            "h2c" => Mode::H2c(connections),
            other => return Err(format!("unknown mode {other:?} (h1 or h2c)")),
        });
    }
    if options.modes.is_empty() {
        return Err("--modes names no mode".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--upstream") {
        return match upstream::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fake upstream: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mut options = match parse_options(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("relay_bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    options.pin = options.pin && procs::cpu_count() >= 2 && procs::taskset_available();
    if options.pin && std::env::var_os(PINNED).is_none() {
        // Run again on CPU 0 (the fake upstream inherits it); the relay gets CPU 1.
        let status = std::env::current_exe()
            .and_then(|exe| Command::new("taskset").arg("-c").arg("0").arg(exe).args(&args).env(PINNED, "1").status());
        return match status {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("relay_bench: could not re-run under taskset: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("relay_bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One kind of load: `streams` at once, each running `rounds` replies back to back.
#[derive(Clone, Copy)]
pub struct Load {
    pub streams: usize,
    pub rounds: usize,
    pub shape: Shape,
}

struct Plan {
    light: Load,
    busy: Load,
    holds: Vec<usize>,
    hold_shape: Shape,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let fast = Shape { chunks: 50, interval: Duration::from_millis(20) };
        if quick {
            Plan {
                light: Load { streams: 10, rounds: 3, shape: fast },
                busy: Load { streams: 50, rounds: 2, shape: fast },
                holds: vec![100, 500],
                hold_shape: Shape { chunks: 5, interval: Duration::from_secs(1) },
            }
        } else {
            Plan {
                light: Load { streams: 10, rounds: 6, shape: fast },
                busy: Load { streams: 500, rounds: 4, shape: fast },
                holds: vec![1_000, 10_000],
                hold_shape: Shape { chunks: 30, interval: Duration::from_secs(1) },
            }
        }
    }
}

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), |t| manifest.join(t));
    let candidate = target.join("release").join("companion-backend");
    if candidate.exists() {
        return candidate;
    }
    // Beside this example (`<target>/release/examples/relay_bench`), whatever the target dir.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("companion-backend")))
        .filter(|p| p.exists())
        .unwrap_or(candidate)
}

/// Latency figures and counts of one load on one path.
#[derive(Default)]
pub struct Stats {
    pub first_token: Vec<u64>,
    pub gaps: Vec<u64>,
    pub latency: Vec<u64>,
    pub completed: usize,
    pub failed: usize,
    pub errors: BTreeMap<String, usize>,
}

impl Stats {
    /// Every stream counts as completed or failed; latencies skip `warm_up` rounds.
    fn of(outcomes: &[(usize, Outcome)], expected: usize, warm_up: usize) -> Stats {
        let mut stats = Stats::default();
        for (round, outcome) in outcomes {
            match outcome.failure(expected) {
                Some(error) => {
                    stats.failed += 1;
                    *stats.errors.entry(error.chars().take(100).collect()).or_default() += 1;
                }
                None => stats.completed += 1,
            }
            if *round < warm_up || !outcome.ok(expected) {
                continue;
            }
            stats.first_token.extend(outcome.first_token_us());
            stats.gaps.extend(outcome.gaps_us());
            stats.latency.extend(outcome.latencies_us());
        }
        stats.first_token.sort_unstable();
        stats.gaps.sort_unstable();
        stats.latency.sort_unstable();
        stats
    }
}

/// The baseline and the relay under one load.
pub struct Pair {
    pub load: Load,
    pub direct: Stats,
    pub relay: Stats,
    /// Relay CPU seconds over the relay run.
    pub relay_cpu_secs: f64,
}

/// A hold: `streams` slow streams open at once.
#[derive(Default)]
pub struct Hold {
    pub streams: usize,
    /// Most streams open (first chunk read, not yet ended) at one time.
    pub peak_open: usize,
    pub completed: usize,
    pub failed: usize,
    pub errors: BTreeMap<String, usize>,
    /// From the first connection until every stream was open (or had failed).
    pub ramp: Duration,
    pub kib_per_stream: Option<f64>,
    /// `None`: no metrics endpoint (or no counter).
    pub writes_per_sec: Option<f64>,
    pub rss_before_kib: u64,
    pub rss_held_kib: u64,
}

pub struct ModeResult {
    pub mode: Mode,
    pub light: Pair,
    pub busy: Pair,
    pub holds: Vec<Hold>,
    pub seconds: f64,
}

async fn run(options: Options) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let plan = Plan::new(options.quick);
    let binary = server_binary();
    if !binary.exists() {
        anyhow::bail!(
            "no server binary at {} (cargo build --release --bin companion-backend, or set BENCH_SERVER_BIN)",
            binary.display()
        );
    }
    let cpu = options.pin.then_some(RELAY_CPU);
    println!("relay_bench{}: {}", if options.quick { " --quick" } else { "" }, procs::machine());
    println!("server: {}", binary.display());
    println!(
        "pinning: {}",
        if options.pin { "relay on CPU 1; load generator and fake upstream on CPU 0" } else { "none" }
    );
    let (_upstream, upstream) = procs::spawn_upstream()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).timeout(Duration::from_secs(30)).build()?;
    if options.memory {
        return memory::compare(&http, &binary, upstream, cpu, plan.light).await;
    }
    let ticks = procs::clock_ticks_per_second();
    let mut direct_holds: Vec<Option<Hold>> = plan.holds.iter().map(|_| None).collect();
    let mut results = Vec::new();
    for &mode in &options.modes {
        let mode_started = std::time::Instant::now();
        println!("\n== relay with {} upstream ==", mode.label());
        let relay = procs::start_relay(&binary, upstream, mode, cpu, &http, &[]).await?;
        let token = procs::login(&http, &relay, "bench").await?;
        let template = capture_body(&http, &relay, &token, upstream).await?;
        let light = pair(&http, &relay, &token, upstream, &template, plan.light, ticks).await?;
        let busy = pair(&http, &relay, &token, upstream, &template, plan.busy, ticks).await?;
        drop(relay);
        let mut holds = Vec::new();
        for (i, &streams) in plan.holds.iter().enumerate() {
            if direct_holds[i].is_none() {
                println!("hold {streams}: direct");
                let request = direct_request(upstream, &template, plan.hold_shape);
                direct_holds[i] =
                    Some(hold(upstream, vec![request; streams], plan.hold_shape, Target::Direct, None).await);
            }
            println!("hold {streams}: relay");
            let relay = procs::start_relay(&binary, upstream, mode, cpu, &http, &[]).await?;
            let token = procs::login(&http, &relay, "bench").await?;
            let conversations = procs::conversations(&http, &relay, &token, streams + 1).await?;
            let requests: Vec<Vec<u8>> =
                conversations.iter().map(|c| relay_request(&relay, &token, c, plan.hold_shape)).collect();
            // One short reply first: the upstream connections exist before the baseline RSS.
            let (warm, held) = requests.split_first().expect("at least one conversation");
            warm_up(&relay, warm).await?;
            sleep(Duration::from_secs(1)).await;
            let result =
                hold(relay.address, held.to_vec(), plan.hold_shape, Target::Relay, Some((&relay, &http))).await;
            if result.failed > 0 {
                println!("  server log: {}", relay.log.display());
            }
            holds.push(result);
        }
        results.push(ModeResult { mode, light, busy, holds, seconds: mode_started.elapsed().as_secs_f64() });
    }
    let direct_holds: Vec<Hold> = direct_holds.into_iter().flatten().collect();
    report::print(&results, &direct_holds, plan.hold_shape, started.elapsed());
    Ok(())
}

fn relay_request(relay: &Relay, token: &str, conversation: &str, shape: Shape) -> Vec<u8> {
    let body = json!({"content": shape.directive()}).to_string();
    client::request(relay.address, &format!("/api/conversations/{conversation}/messages"), token, &body)
}

/// The relay's own upstream body with the directive for `shape` as the user message.
fn direct_request(upstream: SocketAddr, template: &Value, shape: Shape) -> Vec<u8> {
    let mut body = template.clone();
    if let Some(message) =
        body["messages"].as_array_mut().and_then(|messages| messages.iter_mut().rev().find(|m| m["role"] == "user"))
    {
        message["content"] = json!(shape.directive());
    }
    client::request(upstream, "/chat/completions", "sk-bench", &body.to_string())
}

/// One short reply through the relay, so it has its upstream connections.
async fn warm_up(relay: &Relay, request: &[u8]) -> anyhow::Result<()> {
    let mut conn = Conn::connect(relay.address, Duration::from_secs(10)).await.map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (outcome, _) = conn.exchange(request, Target::Relay, deadline, &mut || {}).await;
    if let Some(error) = outcome.error.or_else(|| (!outcome.finished).then(|| "no done".into())) {
        anyhow::bail!("the warm-up reply through the relay failed: {error} (log: {})", relay.log.display());
    }
    Ok(())
}

/// Sends one short reply through the relay and returns the body the relay sent upstream,
/// so the baseline sends the same body.
async fn capture_body(
    http: &reqwest::Client,
    relay: &Relay,
    token: &str,
    upstream: SocketAddr,
) -> anyhow::Result<Value> {
    let conversation = procs::conversations(http, relay, token, 1).await?.remove(0);
    let shape = Shape { chunks: 2, interval: Duration::from_millis(10) };
    warm_up(relay, &relay_request(relay, token, &conversation, shape)).await?;
    let body: Value = http.get(format!("http://{upstream}/last-body")).send().await?.json().await?;
    if body["messages"].as_array().is_none() {
        anyhow::bail!("the fake upstream did not capture the relay's request: {body}");
    }
    Ok(body)
}

/// The same load read directly from the fake upstream, then through the relay.
async fn pair(
    http: &reqwest::Client,
    relay: &Relay,
    token: &str,
    upstream: SocketAddr,
    template: &Value,
    load: Load,
    ticks: f64,
) -> anyhow::Result<Pair> {
    println!("{} streams x {} rounds: direct, then relay", load.streams, load.rounds);
    let conversations = procs::conversations(http, relay, token, load.streams).await?;
    let direct =
        run_load(upstream, vec![direct_request(upstream, template, load.shape); load.streams], load, Target::Direct)
            .await;
    let requests = conversations.iter().map(|c| relay_request(relay, token, c, load.shape)).collect();
    let cpu_before = procs::cpu_ticks(relay.pid());
    let through = run_load(relay.address, requests, load, Target::Relay).await;
    let cpu_secs = procs::cpu_ticks(relay.pid()).saturating_sub(cpu_before) as f64 / ticks;
    // The first round opens the connections: a warm-up, left out of the latencies.
    let warm_up = usize::from(load.rounds > 1);
    Ok(Pair {
        load,
        direct: Stats::of(&direct, load.shape.chunks, warm_up),
        relay: Stats::of(&through, load.shape.chunks, warm_up),
        relay_cpu_secs: cpu_secs,
    })
}

/// `load.streams` keep-alive connections, each sending its request `load.rounds` times
/// back to back; the first requests are spread over one stream's length, so requests
/// arrive steadily rather than all at once. Returns (round, outcome) for every request.
async fn run_load(address: SocketAddr, requests: Vec<Vec<u8>>, load: Load, target: Target) -> Vec<(usize, Outcome)> {
    let start = Instant::now();
    let stagger = (load.shape.interval * load.shape.chunks as u32) / requests.len().max(1) as u32;
    let per_request = load.shape.duration() + Duration::from_secs(30);
    let slots = requests.iter().enumerate().map(|(k, request)| async move {
        sleep_until(start + stagger * k as u32).await;
        let mut conn: Option<Conn> = None;
        let mut outcomes = Vec::with_capacity(load.rounds);
        for round in 0..load.rounds {
            let mut open = match conn.take() {
                Some(open) => open,
                None => match Conn::connect(address, Duration::from_secs(10)).await {
                    Ok(open) => open,
                    Err(e) => {
                        outcomes.push((round, Outcome::failed(e)));
                        sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (outcome, reusable) = open.exchange(request, target, Instant::now() + per_request, &mut || {}).await;
            if reusable {
                conn = Some(open);
            }
            let failed = !outcome.ok(load.shape.chunks);
            outcomes.push((round, outcome));
            if failed {
                sleep(Duration::from_millis(100)).await;
            }
        }
        outcomes
    });
    futures_util::future::join_all(slots).await.into_iter().flatten().collect()
}

#[derive(Default)]
struct Progress {
    /// Streams open now (first chunk read, not ended).
    open: AtomicUsize,
    peak: AtomicUsize,
    /// Streams that opened or ended without opening.
    settled: AtomicUsize,
    /// Streams that ended after opening.
    ended_open: AtomicUsize,
}

/// Opens every request at once (`OPENING_AT_ONCE` connecting at a time), samples the
/// relay's memory and store writes once all are open, and waits for them to end.
async fn hold(
    address: SocketAddr,
    requests: Vec<Vec<u8>>,
    shape: Shape,
    target: Target,
    relay: Option<(&Relay, &reqwest::Client)>,
) -> Hold {
    let streams = requests.len();
    let rss_before = relay.map_or(0, |(r, _)| procs::rss_kib(r.pid()));
    let progress = Arc::new(Progress::default());
    let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let start = Instant::now();
    // Nothing waits past this: a stream not done by then has failed.
    let deadline = start + RAMP_BUDGET + shape.duration() + Duration::from_secs(30);
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (progress, gate) = (progress.clone(), gate.clone());
            tokio::spawn(async move {
                let mut permit = match timeout_at(deadline, gate.acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        progress.settled.fetch_add(1, Ordering::Relaxed);
                        return Outcome::failed("never got to connect");
                    }
                };
                let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(20));
                let mut opened = false;
                let outcome = match Conn::connect(address, wait).await {
                    Err(e) => Outcome::failed(e),
                    Ok(mut conn) => {
                        let mut on_first = || {
                            opened = true;
                            permit.take();
                            let now = progress.open.fetch_add(1, Ordering::Relaxed) + 1;
                            progress.peak.fetch_max(now, Ordering::Relaxed);
                            progress.settled.fetch_add(1, Ordering::Relaxed);
                        };
                        conn.exchange(&request, target, deadline, &mut on_first).await.0
                    }
                };
                drop(permit);
                if opened {
                    progress.open.fetch_sub(1, Ordering::Relaxed);
                    progress.ended_open.fetch_add(1, Ordering::Relaxed);
                } else {
                    progress.settled.fetch_add(1, Ordering::Relaxed);
                }
                outcome
            })
        })
        .collect();
    // Wait until every stream is open (or failed), or the first open one has ended.
    let ramp_end = start + RAMP_BUDGET + shape.duration();
    while progress.settled.load(Ordering::Relaxed) < streams
        && progress.ended_open.load(Ordering::Relaxed) == 0
        && Instant::now() < ramp_end
    {
        sleep(Duration::from_millis(20)).await;
    }
    let ramp = start.elapsed();
    let open_at_sample = progress.open.load(Ordering::Relaxed);
    let mut result = Hold { streams, ramp, rss_before_kib: rss_before, ..Hold::default() };
    if let Some((relay, http)) = relay {
        let pid = relay.pid();
        let mut rss = procs::rss_kib(pid);
        let writes_before = procs::store_writes(http, relay).await;
        let window_start = Instant::now();
        // Count store writes while everything is held: until a held stream ends, at most HOLD_WINDOW.
        while window_start.elapsed() < HOLD_WINDOW && progress.ended_open.load(Ordering::Relaxed) == 0 {
            sleep(Duration::from_millis(250)).await;
            rss = rss.max(procs::rss_kib(pid));
        }
        let writes_after = procs::store_writes(http, relay).await;
        let window = window_start.elapsed().as_secs_f64();
        result.writes_per_sec = match (writes_before, writes_after) {
            (Some(before), Some(after)) if window > 0.5 => Some((after - before) / window),
            _ => None,
        };
        result.rss_held_kib = rss;
        if open_at_sample > 0 {
            result.kib_per_stream = Some(rss.saturating_sub(rss_before) as f64 / open_at_sample as f64);
        }
    }
    for task in tasks {
        let outcome = task.await.unwrap_or_else(|e| Outcome::failed(format!("task: {e}")));
        match outcome.failure(shape.chunks) {
            None => result.completed += 1,
            Some(error) => {
                result.failed += 1;
                *result.errors.entry(error.chars().take(100).collect()).or_default() += 1;
            }
        }
    }
    result.peak_open = progress.peak.load(Ordering::Relaxed);
    println!(
        "  {} open at once (of {streams}) after {:.1} s; {} completed, {} failed",
        result.peak_open,
        ramp.as_secs_f64(),
        result.completed,
        result.failed
    );
    result
}
