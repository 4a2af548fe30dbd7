//! DeepSeek's OpenAI-compatible streaming chat API.
use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::{sleep, timeout, Instant};

use super::sse::SseParser;
use super::{ChatRequest, LlmError, LlmEvent, LlmStream};
use crate::domain::{FinishReason, Usage};

pub struct DeepSeekOptions {
    pub base_url: String,
    pub api_key: SecretString,
    pub connect_timeout: Duration,
    /// Longest silence allowed between pieces of real data (keep-alive comments do not
    /// count: DeepSeek streams are known to stall while still sending them).
    pub idle_timeout: Duration,
    /// Longest a whole reply may take.
    pub deadline: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
}

pub struct DeepSeekClient {
    http: reqwest::Client,
    options: DeepSeekOptions,
}

impl DeepSeekClient {
    pub fn new(options: DeepSeekOptions) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, options })
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": request.messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "thinking": {"type": if request.thinking { "enabled" } else { "disabled" }},
            "user_id": request.user_hash,
        });
        if request.thinking {
            if let Some(effort) = &request.reasoning_effort {
                body["reasoning_effort"] = json!(effort);
            }
        } else if let Some(temperature) = request.temperature {
            // Ignored in thinking mode, so only sent without it.
            body["temperature"] = json!(temperature);
        }
        if let Some(max_tokens) = request.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        body
    }

    /// Opens the stream, retrying with backoff on connect errors, 429, 500 and 503;
    /// nothing has reached the user before the stream opens, so a retry is invisible.
    #[tracing::instrument(name = "deepseek.stream_chat", skip_all, fields(model = %request.model))]
    pub async fn stream_chat(&self, request: ChatRequest) -> Result<LlmStream, LlmError> {
        let body = self.body(&request);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.open(&body).await {
                Ok(response) => {
                    let deadline = started + self.options.deadline;
                    return Ok(parse_stream(response.bytes_stream(), self.options.idle_timeout, deadline));
                }
                Err((error, retry_after)) if error.is_retryable() && attempt < self.options.max_retries => {
                    let backoff = self.options.retry_base * 2u32.pow(attempt);
                    let wait = retry_after.unwrap_or(backoff).min(Duration::from_secs(10));
                    tracing::warn!(%error, attempt, wait_ms = wait.as_millis() as u64, "retrying DeepSeek");
                    sleep(wait).await;
                    attempt += 1;
                }
                Err((error, _)) => {
                    tracing::error!(%error, attempts = attempt + 1, "DeepSeek request failed");
                    return Err(error);
                }
            }
        }
    }

    async fn open(&self, body: &Value) -> Result<reqwest::Response, (LlmError, Option<Duration>)> {
        let send = self
            .http
            .post(format!("{}/chat/completions", self.options.base_url))
            .bearer_auth(self.options.api_key.expose_secret())
            .header("accept", "text/event-stream")
            .json(body)
            .send();
        let response = match timeout(self.options.idle_timeout, send).await {
            Err(_) => return Err((LlmError::IdleTimeout, None)),
            Ok(Err(e)) if e.is_connect() => return Err((LlmError::Connect, None)),
            Ok(Err(e)) if e.is_timeout() => return Err((LlmError::IdleTimeout, None)),
            Ok(Err(_)) => return Err((LlmError::Disconnected, None)),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let error = match status {
            400 => LlmError::BadRequest,
            401 => LlmError::Unauthorized,
            402 => LlmError::InsufficientBalance,
            422 => LlmError::InvalidParameters,
            429 => LlmError::RateLimited,
            500 => LlmError::ServerError,
            503 => LlmError::Overloaded,
            other => LlmError::UnexpectedStatus(other),
        };
        // The body explains the rejection; it is ours to log, never the user's to see.
        let detail = timeout(Duration::from_secs(2), response.text()).await.ok().and_then(Result::ok);
        tracing::warn!(status, detail = detail.as_deref().unwrap_or(""), "DeepSeek refused the request");
        Err((error, retry_after))
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
    #[serde(default)]
    prompt_cache_miss_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_cache_hit_tokens: u.prompt_cache_hit_tokens,
            prompt_cache_miss_tokens: u.prompt_cache_miss_tokens,
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
        }
    }
}

/// Turns one `data:` payload into events.
fn events_of(data: &str) -> Result<Vec<LlmEvent>, LlmError> {
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
        tracing::warn!(error = %e, "unreadable DeepSeek chunk");
        LlmError::Protocol
    })?;
    if let Some(error) = chunk.error {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown").to_string();
        return Err(LlmError::Upstream(message));
    }
    let mut events = Vec::new();
    for choice in chunk.choices {
        if let Some(text) = choice.delta.reasoning_content.filter(|t| !t.is_empty()) {
            events.push(LlmEvent::Reasoning(text));
        }
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            events.push(LlmEvent::Content(text));
        }
        if let Some(reason) = choice.finish_reason {
            events.push(LlmEvent::Finish(FinishReason::parse(&reason)));
        }
    }
    if let Some(usage) = chunk.usage {
        events.push(LlmEvent::Usage(usage.into()));
    }
    Ok(events)
}

struct StreamState<S> {
    bytes: S,
    parser: SseParser,
    pending: VecDeque<Result<LlmEvent, LlmError>>,
    idle: Duration,
    deadline: Instant,
    last_data: Instant,
    finished: bool,
    saw_finish: bool,
}

fn parse_stream<S>(bytes: S, idle: Duration, deadline: Instant) -> LlmStream
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
{
    let state = StreamState {
        bytes,
        parser: SseParser::new(),
        pending: VecDeque::new(),
        idle,
        deadline,
        last_data: Instant::now(),
        finished: false,
        saw_finish: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut state| async move {
        let item = state.next_event().await?;
        Some((item, state))
    }))
}

impl<S> StreamState<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    /// The next event, or `None` at the end. Errors end the stream.
    async fn next_event(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            let idle_until = self.last_data + self.idle;
            let (wake_at, on_timeout) = if idle_until < self.deadline {
                (idle_until, LlmError::IdleTimeout)
            } else {
                (self.deadline, LlmError::DeadlineExceeded)
            };
            let chunk = match tokio::time::timeout_at(wake_at, self.bytes.next()).await {
                Err(_) => return self.fail(on_timeout),
                Ok(None) if self.saw_finish => {
                    // Some servers close right after the finishing chunk without [DONE].
                    self.finished = true;
                    continue;
                }
                Ok(None) => return self.fail(LlmError::Disconnected),
                Ok(Some(Err(e))) => {
                    let error = if e.is_timeout() { LlmError::IdleTimeout } else { LlmError::Disconnected };
                    tracing::warn!(error = %e.without_url(), "DeepSeek stream broke");
                    return self.fail(error);
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            for event in self.parser.feed(&chunk) {
                // Only real data resets the idle clock; comments never reach here.
                self.last_data = Instant::now();
                if event.data == "[DONE]" {
                    self.finished = true;
                    break;
                }
                match events_of(&event.data) {
                    Ok(events) => {
                        self.saw_finish |= events.iter().any(|e| matches!(e, LlmEvent::Finish(_)));
                        self.pending.extend(events.into_iter().map(Ok));
                    }
                    Err(error) => {
                        // Events parsed before the bad one are still delivered first.
                        self.pending.push_back(Err(error));
                        self.finished = true;
                        break;
                    }
                }
            }
        }
    }

    fn fail(&mut self, error: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        Some(Err(error))
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    type Events = Result<Vec<LlmEvent>, LlmError>;
    type StreamItems = Vec<Result<LlmEvent, LlmError>>;
    /// (label, Retry-After header value or None when absent, seconds expected)
    type RetryCase = (&'static str, Option<&'static [u8]>, Option<u64>);

    fn content(text: &str) -> LlmEvent {
        LlmEvent::Content(text.into())
    }

    fn reasoning(text: &str) -> LlmEvent {
        LlmEvent::Reasoning(text.into())
    }

    fn finish(reason: &str) -> LlmEvent {
        LlmEvent::Finish(reason.into())
    }

    #[test]
    fn each_deepseek_chunk_becomes_the_events_it_carries() {
        let usage = |hit, miss, reasoning_tokens| {
            LlmEvent::Usage(Usage {
                prompt_tokens: 20,
                completion_tokens: 7,
                total_tokens: 27,
                prompt_cache_hit_tokens: hit,
                prompt_cache_miss_tokens: miss,
                reasoning_tokens,
            })
        };
        let cases: Vec<(&str, &str, Events)> = vec![
            (
                "a content delta",
                r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"你好"},"finish_reason":null}],"usage":null}"#,
                Ok(vec![content("你好")]),
            ),
            (
                "the opening role chunk with empty content",
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                Ok(vec![]),
            ),
            (
                "a reasoning delta with null content",
                r#"{"choices":[{"delta":{"content":null,"reasoning_content":"let me think"}}]}"#,
                Ok(vec![reasoning("let me think")]),
            ),
            (
                "reasoning comes before content in one delta",
                r#"{"choices":[{"delta":{"content":"answer","reasoning_content":"thought"}}]}"#,
                Ok(vec![reasoning("thought"), content("answer")]),
            ),
            ("an empty reasoning delta is no event", r#"{"choices":[{"delta":{"reasoning_content":""}}]}"#, Ok(vec![])),
            (
                "a finish reason with empty content",
                r#"{"choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}"#,
                Ok(vec![finish("stop")]),
            ),
            (
                "the last text and the finish reason in one chunk",
                r#"{"choices":[{"delta":{"content":"end"},"finish_reason":"length"}]}"#,
                Ok(vec![content("end"), finish("length")]),
            ),
            (
                "a content filter finish",
                r#"{"choices":[{"delta":{},"finish_reason":"content_filter"}]}"#,
                Ok(vec![finish("content_filter")]),
            ),
            (
                "usage with prompt cache hit and miss tokens",
                r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27,"prompt_cache_hit_tokens":16,"prompt_cache_miss_tokens":4}}"#,
                Ok(vec![usage(Some(16), Some(4), None)]),
            ),
            (
                "usage with reasoning tokens",
                r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27,"completion_tokens_details":{"reasoning_tokens":5}}}"#,
                Ok(vec![usage(None, None, Some(5))]),
            ),
            (
                "a finish and usage in one chunk, usage last",
                r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27,"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":20}}"#,
                Ok(vec![finish("stop"), usage(Some(0), Some(20), None)]),
            ),
            ("a chunk with nothing in it", "{}", Ok(vec![])),
            (
                "an error object mid-stream",
                r#"{"error":{"message":"Content Exists Risk","type":"invalid_request_error"}}"#,
                Err(LlmError::Upstream("Content Exists Risk".into())),
            ),
            (
                "an error object wins over choices beside it",
                r#"{"choices":[{"delta":{"content":"x"}}],"error":{"message":"boom"}}"#,
                Err(LlmError::Upstream("boom".into())),
            ),
            (
                "an error object without a message",
                r#"{"error":{"code":500}}"#,
                Err(LlmError::Upstream("unknown".into())),
            ),
            (
                "a null error is no error",
                r#"{"error":null,"choices":[{"delta":{"content":"ok"}}]}"#,
                Ok(vec![content("ok")]),
            ),
            ("truncated JSON", r#"{"choices":[{"delta":{"content":"hal"#, Err(LlmError::Protocol)),
            ("not JSON at all", "garbage", Err(LlmError::Protocol)),
            ("an empty payload", "", Err(LlmError::Protocol)),
            ("a JSON string", r#""data""#, Err(LlmError::Protocol)),
            ("JSON null", "null", Err(LlmError::Protocol)),
            ("choices of the wrong type", r#"{"choices":"many"}"#, Err(LlmError::Protocol)),
            // The end marker is caught by the stream reader before a payload reaches here.
            ("the [DONE] marker is not a chunk", "[DONE]", Err(LlmError::Protocol)),
        ];
        for (label, data, expected) in cases {
            assert_eq!(events_of(data), expected, "{label}: {data}");
        }
    }

    #[tokio::test]
    async fn a_stream_ends_at_done_at_a_closed_finish_or_with_an_error() {
        const CONTENT_A: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        const CONTENT_B: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n";
        const FINISH: &str = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        const DONE: &str = "data: [DONE]\n\n";
        let done_mid_chunk = [CONTENT_A, DONE, CONTENT_B].concat();
        let bad_mid_chunk = [CONTENT_A, "data: {oops\n\n", CONTENT_B].concat();
        let cases: Vec<(&str, Vec<&str>, StreamItems)> = vec![
            (
                "[DONE] ends the stream and nothing after it is read",
                vec![CONTENT_A, FINISH, DONE, CONTENT_B],
                vec![Ok(content("a")), Ok(finish("stop"))],
            ),
            (
                "[DONE] in the same chunk as later events still ends it",
                vec![done_mid_chunk.as_str()],
                vec![Ok(content("a"))],
            ),
            (
                "a connection closed right after the finish chunk ends cleanly",
                vec![CONTENT_A, FINISH],
                vec![Ok(content("a")), Ok(finish("stop"))],
            ),
            (
                "a connection closed before any finish is a disconnect",
                vec![CONTENT_A, CONTENT_B],
                vec![Ok(content("a")), Ok(content("b")), Err(LlmError::Disconnected)],
            ),
            (
                "an unreadable chunk ends the stream after the events before it",
                vec![bad_mid_chunk.as_str(), DONE],
                vec![Ok(content("a")), Err(LlmError::Protocol)],
            ),
            ("keep-alive comments are no events", vec![": keep-alive\n\n", CONTENT_A, DONE], vec![Ok(content("a"))]),
        ];
        for (label, chunks, expected) in cases {
            let bytes: Vec<reqwest::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from(c.to_string()))).collect();
            let stream = parse_stream(
                futures_util::stream::iter(bytes),
                Duration::from_secs(5),
                Instant::now() + Duration::from_secs(5),
            );

            let events: StreamItems = stream.collect().await;

            assert_eq!(events, expected, "{label}");
        }
    }

    #[test]
    fn retry_after_is_read_in_whole_seconds_only() {
        const CASES: &[RetryCase] = &[
            ("absent", None, None),
            ("whole seconds", Some(b"5"), Some(5)),
            ("zero", Some(b"0"), Some(0)),
            ("surrounded by spaces", Some(b" 7 "), Some(7)),
            ("a long wait (capped by the caller)", Some(b"3600"), Some(3600)),
            ("empty", Some(b""), None),
            ("negative", Some(b"-1"), None),
            ("fractional", Some(b"1.5"), None),
            ("words", Some(b"soon"), None),
            ("an HTTP date (not supported)", Some(b"Wed, 21 Oct 2015 07:28:00 GMT"), None),
            ("beyond u64", Some(b"99999999999999999999999"), None),
            ("not visible ASCII", Some(b"\xff5"), None),
        ];
        for &(label, raw, expected) in CASES {
            let mut headers = HeaderMap::new();
            if let Some(raw) = raw {
                headers.insert(RETRY_AFTER, HeaderValue::from_bytes(raw).expect("a header value"));
            }

            assert_eq!(retry_after(&headers), expected.map(Duration::from_secs), "{label}");
        }
    }
}
