//! One OpenAI-compatible upstream (DeepSeek, Qwen's compatible mode, Moonshot,
//! SiliconFlow, vLLM…): `POST {base}/chat/completions` streamed, with `{base}` exactly as
//! configured. One attempt per call; retries and failover belong to `upstreams`.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};

use super::sse::SseParser;
use super::{ChatRequest, Dialect, LlmError, LlmEvent, LlmStream};
use crate::domain::{FinishReason, Usage};

pub struct CompatibleOptions {
    /// Used as given (less a trailing `/`): `/chat/completions` and `/models` are appended.
    pub base_url: String,
    pub api_key: SecretString,
    pub dialect: Dialect,
    pub connect_timeout: Duration,
    /// Longest silence allowed between pieces of real data (keep-alive comments do not
    /// count: DeepSeek streams are known to stall while still sending them).
    pub idle_timeout: Duration,
    /// Longest a whole reply may take.
    pub deadline: Duration,
    /// HTTP/2 without TLS (prior knowledge) for `http://` upstreams that speak h2c;
    /// `https://` upstreams negotiate HTTP/2 by ALPN either way.
    pub h2c: bool,
    /// Connections (HTTP/2: each multiplexes many streams) spread over round-robin, so
    /// one slow connection does not stall every stream.
    pub connections: usize,
}

/// A failed attempt, with the wait the upstream asked for.
pub type AttemptError = (LlmError, Option<Duration>);

pub struct CompatibleClient {
    clients: Vec<reqwest::Client>,
    next: AtomicUsize,
    options: CompatibleOptions,
}

impl CompatibleClient {
    pub fn new(mut options: CompatibleOptions) -> anyhow::Result<Self> {
        options.base_url = options.base_url.trim().trim_end_matches('/').to_string();
        let h2c = options.h2c && options.base_url.starts_with("http://");
        let clients = (0..options.connections.max(1))
            .map(|_| {
                let builder = reqwest::Client::builder()
                    .connect_timeout(options.connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .tcp_keepalive(Duration::from_secs(30))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .http2_keep_alive_while_idle(true);
                let builder = if h2c { builder.http2_prior_knowledge() } else { builder };
                builder.build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { clients, next: AtomicUsize::new(0), options })
    }

    fn http(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }

    fn body(&self, request: &ChatRequest, model: &str) -> Value {
        let mut body = json!({
            "model": model,
            "messages": request.messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let thinking = request.thinking && self.options.dialect == Dialect::DeepSeek;
        match self.options.dialect {
            Dialect::DeepSeek => {
                body["thinking"] = json!({"type": if request.thinking { "enabled" } else { "disabled" }});
                body["user_id"] = json!(request.user_hash);
            }
            Dialect::OpenAi => body["user"] = json!(request.user_hash),
        }
        if thinking {
            if let Some(effort) = request.reasoning_effort {
                body["reasoning_effort"] = json!(effort.as_str());
            }
        } else if let Some(temperature) = request.temperature {
            // Ignored in thinking mode, so only sent without it.
            body["temperature"] = json!(temperature);
        }
        if let Some(max_tokens) = request.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if request.json_output {
            body["response_format"] = json!({"type": "json_object"});
        }
        body
    }

    /// One attempt: the stream once the upstream answered 200, or why not.
    pub async fn open(&self, request: &ChatRequest, model: &str) -> Result<LlmStream, AttemptError> {
        let started = Instant::now();
        let send = self
            .http()
            .post(format!("{}/chat/completions", self.options.base_url))
            .bearer_auth(self.options.api_key.expose_secret())
            .header("accept", "text/event-stream")
            .json(&self.body(request, model))
            .send();
        let response = match timeout(self.options.idle_timeout, send).await {
            Err(_) => return Err((LlmError::IdleTimeout, None)),
            Ok(Err(e)) if e.is_connect() => return Err((LlmError::Connect, None)),
            Ok(Err(e)) if e.is_timeout() => return Err((LlmError::IdleTimeout, None)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e.without_url(), "the upstream request broke before an answer");
                return Err((LlmError::Disconnected, None));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if status == 200 {
            let deadline = started + self.options.deadline;
            return Ok(parse_stream(response.bytes_stream(), self.options.idle_timeout, deadline));
        }
        let retry_after = retry_after(response.headers());
        let error = LlmError::of_status(status);
        // The body explains the rejection; it is ours to log, never the user's to see. Not
        // for 401/403: some providers echo part of the key there.
        let detail = match status {
            401 | 403 => None,
            _ => timeout(Duration::from_secs(2), response.text()).await.ok().and_then(Result::ok),
        };
        let detail: String = detail.unwrap_or_default().chars().take(500).collect();
        tracing::warn!(status, %detail, "the upstream refused the request");
        Err((error, retry_after))
    }

    /// The model ids the account can use (`GET {base}/models`).
    pub async fn list_models(&self, wait: Duration) -> Result<Vec<String>, LlmError> {
        #[derive(Deserialize)]
        struct Models {
            data: Vec<Model>,
        }
        #[derive(Deserialize)]
        struct Model {
            id: String,
        }
        let request = self
            .http()
            .get(format!("{}/models", self.options.base_url))
            .bearer_auth(self.options.api_key.expose_secret())
            .timeout(wait)
            .send();
        let response = match timeout(wait, request).await {
            Err(_) => return Err(LlmError::IdleTimeout),
            Ok(Err(e)) if e.is_connect() => return Err(LlmError::Connect),
            Ok(Err(_)) => return Err(LlmError::IdleTimeout),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if status != 200 {
            return Err(LlmError::of_status(status));
        }
        let models: Models = match timeout(wait, response.json()).await {
            Ok(Ok(models)) => models,
            _ => return Err(LlmError::Protocol),
        };
        Ok(models.data.into_iter().map(|m| m.id).collect())
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[derive(Deserialize)]
struct Chunk {
    /// The model that actually served the request (it can differ from the one asked for).
    #[serde(default)]
    model: Option<String>,
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
        tracing::warn!(error = %e, "unreadable upstream chunk");
        LlmError::Protocol
    })?;
    if let Some(error) = chunk.error {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown").to_string();
        return Err(LlmError::Upstream(message));
    }
    let mut events = Vec::new();
    if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
        events.push(LlmEvent::Model(model));
    }
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
    /// The served model is reported once, from the first chunk that names it.
    saw_model: bool,
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
        saw_model: false,
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
                    tracing::warn!(error = %e.without_url(), "the upstream stream broke");
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
                        let saw_model = &mut self.saw_model;
                        let events = events.into_iter().filter(|e| match e {
                            LlmEvent::Model(_) => !std::mem::replace(saw_model, true),
                            _ => true,
                        });
                        self.pending.extend(events.map(Ok));
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

    /// Everything a stream made of these HTTP chunks yields.
    async fn parsed(chunks: &[&str]) -> StreamItems {
        let bytes: Vec<reqwest::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from(c.to_string()))).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        parse_stream(futures_util::stream::iter(bytes), Duration::from_secs(5), deadline).collect().await
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
            let events = parsed(&chunks).await;

            assert_eq!(events, expected, "{label}");
        }
    }

    #[tokio::test]
    async fn the_served_model_is_reported_once_from_the_first_chunk_naming_it() {
        let chunks = [
            "data: {\"model\":\"\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"model\":\"deepseek-flash\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"model\":\"deepseek-flash\",\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n",
            "data: [DONE]\n\n",
        ];
        let events = parsed(&chunks).await;

        assert_eq!(events, vec![Ok(LlmEvent::Model("deepseek-flash".into())), Ok(content("a")), Ok(content("b"))]);
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
