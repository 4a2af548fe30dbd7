//! `--memory`: what long-term memory adds to a reply's first token. The same light load
//! runs through two fresh servers (h1): memory off (`MEMORY_EXTRACTION=false`), and memory
//! on, with the companion knowing `MEMORY_FACTS` facts before the load starts and the
//! learner running after every reply (no debounce). Both keep 8 messages of context, so
//! with memory on the conversations get rolling summaries during the load.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::client::Target;
use crate::procs::{self, Mode, Relay};
use crate::upstream::MEMORY_FACTS;
use crate::{relay_request, run_load, Load, Stats};

const CONTEXT_MESSAGES: &str = "8";

struct Run {
    stats: Stats,
    prompt_tokens: usize,
    model_calls: f64,
    memory_prompt_tokens: f64,
    memory_completion_tokens: f64,
    summaries: f64,
    replies: usize,
}

pub async fn compare(
    http: &reqwest::Client,
    binary: &Path,
    upstream: SocketAddr,
    cpu: Option<usize>,
    load: Load,
) -> anyhow::Result<()> {
    println!("{} streams x {} rounds: memory off, then memory on", load.streams, load.rounds);
    let off_env = [("MEMORY_EXTRACTION", "false"), ("CONTEXT_MAX_MESSAGES", CONTEXT_MESSAGES)];
    let off = run(http, binary, upstream, cpu, load, &off_env, false).await?;
    let on_env = [("MEMORY_DEBOUNCE_SECS", "0"), ("CONTEXT_MAX_MESSAGES", CONTEXT_MESSAGES)];
    let on = run(http, binary, upstream, cpu, load, &on_env, true).await?;
    print(&off, &on);
    Ok(())
}

async fn run(
    http: &reqwest::Client,
    binary: &Path,
    upstream: SocketAddr,
    cpu: Option<usize>,
    load: Load,
    env: &[(&str, &str)],
    learn_first: bool,
) -> anyhow::Result<Run> {
    let relay = procs::start_relay(binary, upstream, Mode::H1, cpu, http, env).await?;
    let token = procs::login(http, &relay, "bench").await?;
    let conversations = procs::conversations(http, &relay, &token, load.streams).await?;
    if learn_first {
        teach(http, &relay, &token, &conversations[0]).await?;
    }
    let requests = conversations.iter().map(|c| relay_request(&relay, &token, c, load.shape)).collect();
    let outcomes = run_load(relay.address, requests, load, Target::Relay).await;
    let stats = Stats::of(&outcomes, load.shape.chunks, usize::from(load.rounds > 1));
    let last: Value = http.get(format!("http://{upstream}/last-body")).send().await?.json().await?;
    Ok(Run {
        prompt_tokens: crate::upstream::prompt_tokens(&last),
        model_calls: procs::metric(http, &relay, "companion_memory_model_calls_total").await.unwrap_or(0.0),
        memory_prompt_tokens: procs::metric(http, &relay, "companion_memory_tokens_total{kind=\"prompt\"}")
            .await
            .unwrap_or(0.0),
        memory_completion_tokens: procs::metric(http, &relay, "companion_memory_tokens_total{kind=\"completion\"}")
            .await
            .unwrap_or(0.0),
        summaries: procs::metric(http, &relay, "companion_summaries_total").await.unwrap_or(0.0),
        replies: outcomes.len(),
        stats,
    })
}

/// One reply, then waits (up to 15 s) until the learner has stored the fake's facts.
async fn teach(http: &reqwest::Client, relay: &Relay, token: &str, conversation: &str) -> anyhow::Result<()> {
    let url = format!("{}/api/conversations/{conversation}", relay.base());
    let persona: Value = http.get(&url).bearer_auth(token).send().await?.json().await?;
    let persona = persona["persona_id"].as_str().unwrap_or("default").to_string();
    http.post(format!("{url}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({"content": "bench chunks=2 interval_ms=1"}))
        .send()
        .await?
        .bytes()
        .await?;
    let memories = format!("{}/api/personas/{persona}/memories", relay.base());
    for _ in 0..150 {
        let listed: Value = http.get(&memories).bearer_auth(token).send().await?.json().await?;
        if listed["items"].as_array().map_or(0, Vec::len) >= MEMORY_FACTS {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the learner did not store the fake's {MEMORY_FACTS} facts within 15 s")
}

fn print(off: &Run, on: &Run) {
    let ms = |stats: &Stats, q: f64| crate::report::percentile(&stats.first_token, q);
    println!("\n== memory: first token through the relay, memory off vs on ==");
    println!("{:<28}{:>14}{:>14}{:>10}", "", "memory off", "memory on", "on/off");
    for (label, q) in [("first token p50 ms", 0.50), ("first token p99 ms", 0.99)] {
        let (a, b) = (ms(&off.stats, q), ms(&on.stats, q));
        let ratio = a.zip(b).map_or("-".to_string(), |(a, b)| format!("{:.2}", b / a));
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!("{label:<28}{:>14}{:>14}{ratio:>10}", show(a), show(b));
    }
    println!(
        "{:<28}{:>14}{:>14}",
        "completed / failed",
        format!("{}/{}", off.stats.completed, off.stats.failed),
        format!("{}/{}", on.stats.completed, on.stats.failed)
    );
    let row = |label: &str, a: String, b: String| println!("{label:<28}{a:>14}{b:>14}");
    row("last reply's prompt tokens", off.prompt_tokens.to_string(), on.prompt_tokens.to_string());
    row("replies", off.replies.to_string(), on.replies.to_string());
    row("memory model calls", off.model_calls.to_string(), on.model_calls.to_string());
    row("summaries written", off.summaries.to_string(), on.summaries.to_string());
    row("memory prompt tokens", off.memory_prompt_tokens.to_string(), on.memory_prompt_tokens.to_string());
    row("memory completion tokens", off.memory_completion_tokens.to_string(), on.memory_completion_tokens.to_string());
    println!("(memory counts include the one reply that taught the facts before the load)");
}
