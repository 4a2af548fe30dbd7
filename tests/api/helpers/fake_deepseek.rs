//! A fake DeepSeek on 127.0.0.1, written on raw TCP so a test controls every byte:
//! HTTP chunk boundaries (also inside a multi-byte character), pauses, keep-alive
//! comments and connections dropped mid-stream.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Step {
    /// One HTTP chunk, written and flushed on its own.
    Bytes(Vec<u8>),
    Pause(Duration),
    /// Close the connection without finishing the response.
    Drop,
}

#[derive(Debug, Clone)]
pub enum Reply {
    Status { code: u16, body: String, retry_after: Option<u64> },
    Stream(Vec<Step>),
}

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub authorization: String,
    pub body: Value,
}

#[derive(Clone)]
struct Shared {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    /// What `GET …/models` lists (answered apart from the scripted replies).
    models: Arc<Mutex<Vec<String>>>,
    model_lookups: Arc<Mutex<Vec<RecordedRequest>>>,
    /// JSON-mode requests (background memory work), answered apart from the replies.
    json_answers: Arc<Mutex<VecDeque<String>>>,
    summary_answers: Arc<Mutex<VecDeque<String>>>,
    json_requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

/// What DeepSeek's `GET /models` listed in 2026-11.
pub const LISTED_MODELS: &[&str] = &["deepseek-flash", "deepseek-v4-flash", "deepseek-v4-pro"];

impl Default for Shared {
    fn default() -> Self {
        Shared {
            replies: Arc::default(),
            requests: Arc::default(),
            models: Arc::new(Mutex::new(LISTED_MODELS.iter().map(|m| m.to_string()).collect())),
            model_lookups: Arc::default(),
            json_answers: Arc::default(),
            summary_answers: Arc::default(),
            json_requests: Arc::default(),
        }
    }
}

pub struct FakeDeepSeek {
    pub url: String,
    shared: Shared,
}

impl FakeDeepSeek {
    pub async fn start() -> FakeDeepSeek {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared::default();
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, serving.clone()));
            }
        });
        FakeDeepSeek { url, shared }
    }

    /// Answers the next request with `reply` (replies queue up in order).
    pub fn enqueue(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// The chat requests received, in order (model lookups apart).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The `GET …/models` requests received.
    pub fn model_lookups(&self) -> Vec<RecordedRequest> {
        self.shared.model_lookups.lock().unwrap().clone()
    }

    /// Answers the next JSON-mode request with `content` (by default `{"operations": []}`).
    pub fn enqueue_json(&self, content: &str) {
        self.shared.json_answers.lock().unwrap().push_back(content.to_string());
    }

    /// Answers the next summarizing request (a JSON-mode request asking for a
    /// `"summary"`) with `content`.
    pub fn enqueue_summary(&self, content: &str) {
        self.shared.summary_answers.lock().unwrap().push_back(content.to_string());
    }

    /// The JSON-mode requests received that asked for a summary.
    pub fn summary_requests(&self) -> Vec<RecordedRequest> {
        self.json_requests().into_iter().filter(asks_for_a_summary).collect()
    }

    /// The JSON-mode requests received.
    pub fn json_requests(&self) -> Vec<RecordedRequest> {
        self.shared.json_requests.lock().unwrap().clone()
    }

    pub fn set_models(&self, models: &[&str]) {
        *self.shared.models.lock().unwrap() = models.iter().map(|m| m.to_string()).collect();
    }
}

async fn serve(mut socket: TcpStream, shared: Shared) {
    let Some(request) = read_request(&mut socket).await else { return };
    if request.method == "GET" && request.path.ends_with("/models") {
        let data: Vec<Value> = shared
            .models
            .lock()
            .unwrap()
            .iter()
            .map(|id| json!({"id": id, "object": "model", "owned_by": "deepseek"}))
            .collect();
        shared.model_lookups.lock().unwrap().push(request);
        let body = json!({"object": "list", "data": data}).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(body.as_bytes()).await;
        let _ = socket.shutdown().await;
        return;
    }
    let reply = if request.body.get("response_format").is_some() {
        let (queue, default) = match asks_for_a_summary(&request) {
            true => (&shared.summary_answers, r#"{"summary": "之前聊了些日常。"}"#),
            false => (&shared.json_answers, r#"{"operations": []}"#),
        };
        let answer = queue.lock().unwrap().pop_front();
        shared.json_requests.lock().unwrap().push(request);
        Some(text_reply(&[answer.as_deref().unwrap_or(default)]))
    } else {
        shared.requests.lock().unwrap().push(request);
        shared.replies.lock().unwrap().pop_front()
    };
    let reply = reply.unwrap_or(Reply::Status {
        code: 500,
        body: r#"{"error":{"message":"no scripted reply","type":"test"}}"#.into(),
        retry_after: None,
    });
    match reply {
        Reply::Status { code, body, retry_after } => {
            let retry = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {code} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        }
        Reply::Stream(steps) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for step in steps {
                match step {
                    Step::Bytes(bytes) => {
                        let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
                        chunk.extend_from_slice(&bytes);
                        chunk.extend_from_slice(b"\r\n");
                        if socket.write_all(&chunk).await.is_err() || socket.flush().await.is_err() {
                            return;
                        }
                    }
                    Step::Pause(duration) => tokio::time::sleep(duration).await,
                    Step::Drop => {
                        let _ = socket.shutdown().await;
                        return;
                    }
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
    }
    let _ = socket.shutdown().await;
}

async fn read_request(socket: &mut TcpStream) -> Option<RecordedRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find(|line| line.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|line| line[name.len() + 1..].trim().to_string())
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let method = head.split_whitespace().next().unwrap_or("").to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let body = serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or(Value::Null);
    Some(RecordedRequest { method, path, authorization: header("authorization").unwrap_or_default(), body })
}

// ---- Building DeepSeek's stream, byte for byte ----

pub fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn chunk(delta: Value, finish_reason: Value) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_790_000_000,
        "model": "deepseek-v4-flash", "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "usage": null
    })
}

pub fn role_chunk() -> String {
    data(&chunk(json!({"role": "assistant", "content": ""}), Value::Null))
}

pub fn content_chunk(text: &str) -> String {
    data(&chunk(json!({"content": text}), Value::Null))
}

pub fn reasoning_chunk(text: &str) -> String {
    data(&chunk(json!({"content": null, "reasoning_content": text}), Value::Null))
}

pub fn finish_chunk(reason: &str) -> String {
    data(&chunk(json!({"content": ""}), json!(reason)))
}

pub fn usage_chunk(prompt: u64, completion: u64) -> String {
    data(&json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_790_000_000,
        "model": "deepseek-v4-flash", "choices": [],
        "usage": {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": prompt,
        }
    }))
}

pub const DONE: &str = "data: [DONE]\n\n";
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// The whole SSE body of a normal reply made of `pieces`, ending with `finish_reason`.
pub fn reply_body(pieces: &[&str], finish_reason: &str) -> String {
    let mut body = role_chunk();
    for piece in pieces {
        body.push_str(&content_chunk(piece));
    }
    body.push_str(&finish_chunk(finish_reason));
    body.push_str(&usage_chunk(20, pieces.len() as u64));
    body.push_str(DONE);
    body
}

/// DeepSeek refusing a request with `code` (its error body mentions a masked key, which
/// must never reach a client).
pub fn refusal(code: u16) -> Reply {
    Reply::Status {
        code,
        body: json!({"error": {"message": "Authentication Fails (sk-***)", "type": "invalid_request_error"}})
            .to_string(),
        retry_after: None,
    }
}

/// Each SSE event in its own HTTP chunk, `pause` apart.
pub fn paced(body: &str, pause: Duration) -> Reply {
    let mut steps = Vec::new();
    for event in body.split_inclusive("\n\n") {
        steps.push(Step::Bytes(event.as_bytes().to_vec()));
        steps.push(Step::Pause(pause));
    }
    Reply::Stream(steps)
}

/// A normal reply, one event per chunk.
pub fn text_reply(pieces: &[&str]) -> Reply {
    paced(&reply_body(pieces, "stop"), Duration::from_millis(5))
}

/// `bytes` cut every `every` bytes, wherever that falls (inside characters too).
pub fn cut_every(bytes: &[u8], every: usize, pause: Duration) -> Vec<Step> {
    bytes.chunks(every).flat_map(|piece| [Step::Bytes(piece.to_vec()), Step::Pause(pause)]).collect()
}

/// Whether a JSON-mode request asks for a conversation summary (its instructions name
/// the `"summary"` key) rather than memory operations.
fn asks_for_a_summary(request: &RecordedRequest) -> bool {
    request.body["messages"][0]["content"].as_str().is_some_and(|s| s.contains("{\"summary\""))
}
