//! The fake DeepSeek, run in its own process (`relay_bench --upstream`): OpenAI-compatible
//! streaming chat completions over HTTP/1.1 and h2c (HTTP/2 prior knowledge) on one port.
//!
//! A reply's shape (how many content chunks, how far apart) is read from the last user
//! message, so the relay passes it through untouched: `bench chunks=50 interval_ms=20`.
//! Each content chunk is `<index>:<microseconds since the Unix epoch when sent>;`.
use std::convert::Infallible;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpSocket;

use crate::now_us;
use companion_backend::chat::context::estimate_tokens;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The model the fake lists and names in its chunks (the server's default).
pub const MODEL: &str = "deepseek-flash";

/// What one reply looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub chunks: usize,
    pub interval: Duration,
}

impl Shape {
    /// The user message that asks the fake for this shape.
    pub fn directive(&self) -> String {
        format!("bench chunks={} interval_ms={}", self.chunks, self.interval.as_millis())
    }

    pub fn parse(text: &str) -> Option<Shape> {
        let field = |name: &str| {
            text.split_whitespace().find_map(|word| word.strip_prefix(name)).and_then(|v| v.parse::<u64>().ok())
        };
        Some(Shape { chunks: field("chunks=")? as usize, interval: Duration::from_millis(field("interval_ms=")?) })
    }

    /// How long the upstream takes to send every chunk.
    pub fn duration(&self) -> Duration {
        self.interval * self.chunks.saturating_sub(1) as u32
    }
}

#[derive(Default)]
struct State {
    /// The last chat request body, so the bench can send the relay's own body directly.
    last_body: Mutex<Bytes>,
}

/// Serves until stdin closes (the bench gone), on a single-threaded runtime.
pub fn run() -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        loop {
            if matches!(stdin.read(&mut sink), Ok(0) | Err(_)) {
                std::process::exit(0);
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(8192)?;
    let port = listener.local_addr()?.port();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "PORT {port}")?;
        out.flush()?;
    }
    let state = Arc::new(State::default());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(20_000)
        .max_pending_accept_reset_streams(20_000)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20);
    let builder = Arc::new(builder);
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close.
                eprintln!("fake upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let (builder, state) = (builder.clone(), state.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(request, state.clone()));
            let _ = builder.serve_connection(TokioIo::new(socket), service).await;
        });
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed_unsync())
        .expect("a static response")
}

async fn handle(request: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let response = if method == Method::POST && path.ends_with("/chat/completions") {
        let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
            return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "unreadable body"));
        };
        let body_json: Value = serde_json::from_slice(&body).unwrap_or_default();
        let answer = match body_json.get("response_format") {
            // Memory's background calls (`--memory`): answered at once, not recorded.
            Some(_) => {
                StreamBody::new(futures_util::stream::iter([Ok(Frame::data(Bytes::from(json_answer(&body_json))))]))
                    .boxed_unsync()
            }
            None => {
                let shape = shape_of(&body);
                *state.last_body.lock().unwrap_or_else(|e| e.into_inner()) = body;
                reply(shape)
            }
        };
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(answer)
            .expect("a static response")
    } else if method == Method::GET && path.ends_with("/models") {
        let list = format!(r#"{{"object":"list","data":[{{"id":"{MODEL}","object":"model","owned_by":"bench"}}]}}"#);
        full(StatusCode::OK, "application/json", list)
    } else if method == Method::GET && path == "/last-body" {
        let body = state.last_body.lock().unwrap_or_else(|e| e.into_inner()).clone();
        full(StatusCode::OK, "application/json", body)
    } else {
        full(StatusCode::NOT_FOUND, "text/plain", "not found")
    };
    Ok(response)
}

/// Facts the fake teaches a companion that knows nothing yet (`--memory`).
pub const MEMORY_FACTS: usize = 50;

/// A JSON-mode answer as one SSE reply: a summary when asked for one; otherwise memory
/// operations, adding `MEMORY_FACTS` facts about 20 characters long when the companion
/// knows nothing yet and nothing after that (as a real extraction mostly finds nothing new).
fn json_answer(request: &Value) -> String {
    let instructions = request["messages"][0]["content"].as_str().unwrap_or_default();
    let asked = request["messages"][1]["content"].as_str().unwrap_or_default();
    let content = if instructions.contains("{\"summary\"") {
        json!({"summary": "用户和伙伴聊了最近的学习和生活，".repeat(10)}).to_string()
    } else if asked.contains("已有记忆：（无）") {
        let adds: Vec<Value> = (0..MEMORY_FACTS)
            .map(|i| json!({"op": "add", "text": format!("用户提到过的第{i}件事：喜欢在周末去图书馆看书")}))
            .collect();
        json!({"operations": adds}).to_string()
    } else {
        json!({"operations": []}).to_string()
    };
    // Usage as DeepSeek would count it, by the server's own rule of thumb.
    let prompt = prompt_tokens(request);
    let completion = estimate_tokens(&content);
    let chunk = json!({
        "id": "bench", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    });
    format!("data: {chunk}\n\ndata: [DONE]\n\n")
}

/// A request's prompt in tokens, estimated as the server estimates its context.
pub fn prompt_tokens(request: &Value) -> usize {
    let messages = request["messages"].as_array().map_or(&[][..], Vec::as_slice);
    messages.iter().map(|m| estimate_tokens(m["content"].as_str().unwrap_or_default())).sum()
}

/// The shape the last user message asks for (50 chunks 20 ms apart if it names none).
fn shape_of(body: &[u8]) -> Shape {
    let fallback = Shape { chunks: 50, interval: Duration::from_millis(20) };
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return fallback };
    value["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .and_then(Shape::parse)
        .unwrap_or(fallback)
}

/// Content chunks on schedule (`start + i * interval`, no drift), then the finish chunk,
/// the usage chunk and `[DONE]` together.
fn reply(shape: Shape) -> Body {
    let start = tokio::time::Instant::now();
    let frames = futures_util::stream::unfold(0usize, move |i| async move {
        let text = if i < shape.chunks {
            // Not for the first: tokio rounds a timer up to the next millisecond.
            if i > 0 {
                tokio::time::sleep_until(start + shape.interval * i as u32).await;
            }
            let role = if i == 0 { r#""role":"assistant","# } else { "" };
            format!(
                "data: {{\"id\":\"bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{MODEL}\",\
                 \"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{i}:{};\"}},\"finish_reason\":null}}]}}\n\n",
                now_us()
            )
        } else if i == shape.chunks {
            let chunks = shape.chunks;
            format!(
                "data: {{\"id\":\"bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{MODEL}\",\
                 \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"\"}},\"finish_reason\":\"stop\"}}]}}\n\n\
                 data: {{\"id\":\"bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{MODEL}\",\
                 \"choices\":[],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":{chunks},\"total_tokens\":{}}}}}\n\n\
                 data: [DONE]\n\n",
                chunks + 10
            )
        } else {
            return None;
        };
        Some((Ok(Frame::data(Bytes::from(text))), i + 1))
    });
    StreamBody::new(frames).boxed_unsync()
}
