//! `GET /v1/models` and `POST /v1/chat/completions`, authenticated with the console's API
//! keys and counted against each key's per-minute limit and the instance's cap.
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

use super::errors::OpenAiError;
use super::metering;
use super::wire::{chunk, usage_json, CompletionRequest, MODEL_PREFIX};
use crate::chat::{ApiCompletionError, ChatError, ChatService, Slot};
use crate::console::accounts::token_hash;
use crate::console::keys::KEY_PREFIX;
use crate::domain::{now, ApiKey, FinishReason, OpenId, Usage};
use crate::instruments::{Instruments, OpenStream, Transport};
use crate::llm::{LlmError, LlmEvent, LlmStream};
use crate::protection::RateLimiter;
use crate::store::DynStore;

pub struct ApiAccess {
    pub store: DynStore,
    pub limiter: Arc<RateLimiter>,
}

impl ApiAccess {
    /// The live key of `Authorization: Bearer sk-companion-…`.
    async fn key(&self, req: &HttpRequest) -> Result<ApiKey, OpenAiError> {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| token.starts_with(KEY_PREFIX))
            .ok_or_else(OpenAiError::invalid_key)?;
        let key = self.store.find_api_key(&token_hash(given)).await?;
        key.filter(|k| k.revoked_at.is_none()).ok_or_else(OpenAiError::invalid_key)
    }

    /// Counts one request against the key's own per-minute limit (0: none) and its daily
    /// tokens.
    async fn count(&self, key: &ApiKey) -> Result<(), OpenAiError> {
        let subject = format!("api-key:{}", key.id);
        self.limiter.count_at(&subject, "m", 60, key.per_minute, now()).await.map_err(OpenAiError::rate_limited)?;
        metering::admit(&self.store, key, now()).await
    }

    /// The openid of the key's content-check identity, if it names a user who still exists.
    async fn check_as(&self, key: &ApiKey) -> Result<Option<OpenId>, OpenAiError> {
        let Some(user) = key.check_as else { return Ok(None) };
        Ok(self.store.get_user(user).await?.map(|u| u.openid))
    }
}

/// Counts what a completion used, once it ends, against its key and in the day's figures.
struct Meter {
    store: DynStore,
    instruments: Arc<Instruments>,
    key_id: String,
}

impl Meter {
    async fn finish(self, usage: Option<&Usage>, model: Option<&str>) {
        let model = model.unwrap_or("unknown");
        metering::record(&self.store, &self.instruments, &self.key_id, usage, model, now()).await;
    }
}

/// `GET /v1/models` → the public companions as `companion/<id>`.
pub async fn list_models(
    req: HttpRequest,
    access: web::Data<ApiAccess>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, OpenAiError> {
    access.key(&req).await?;
    let data: Vec<Value> = chat
        .api_personas()
        .iter()
        .map(|p| json!({"id": format!("{MODEL_PREFIX}{}", p.id), "object": "model", "created": 0, "owned_by": "companion", "name": p.name}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

/// `POST /v1/chat/completions`: streamed (`stream: true`, SSE ending `data: [DONE]`) or whole.
pub async fn chat_completions(
    req: HttpRequest,
    body: Bytes,
    access: web::Data<ApiAccess>,
    chat: web::Data<ChatService>,
) -> Result<HttpResponse, OpenAiError> {
    let key = access.key(&req).await?;
    access.count(&key).await?;
    let request: CompletionRequest = serde_json::from_slice(&body)
        .map_err(|e| OpenAiError::invalid_request(format!("the body is not a valid chat completion request: {e}")))?;
    let caller = token_hash(&format!("api-caller:{}", key.id));
    let (mut completion, stream, include_usage) = request.parse(caller[..32].to_string())?;
    completion.check_as = access.check_as(&key).await?;
    let model = format!("{MODEL_PREFIX}{}", completion.persona_id);
    let (events, slot) = chat.api_completion(completion).await.map_err(|e| refusal(e, &model))?;
    let meter = Meter { store: access.store.clone(), instruments: chat.instruments().clone(), key_id: key.id.clone() };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now().timestamp();
    tracing::info!(api_key = %key.id, %model, stream, "api completion");
    if stream {
        let open = chat.instruments().stream_opened(Transport::OpenAiApi);
        let body = sse(Answer { events, slot, meter, _open: open }, id, created, model, include_usage);
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .streaming(body));
    }
    let whole = collect(events, slot, meter).await?;
    let mut message = json!({"role": "assistant", "content": whole.content, "refusal": null});
    if !whole.reasoning.is_empty() {
        message["reasoning_content"] = json!(whole.reasoning);
    }
    Ok(HttpResponse::Ok().json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": model, "system_fingerprint": null,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": whole.finish}],
        "usage": whole.usage.as_ref().map(usage_json),
    })))
}

fn refusal(e: ApiCompletionError, model: &str) -> OpenAiError {
    match e {
        ApiCompletionError::UnknownModel => OpenAiError::unknown_model(model),
        ApiCompletionError::TooLong { budget } => {
            OpenAiError::context_length(format!("the messages exceed this companion's context of {budget} tokens"))
        }
        ApiCompletionError::Chat(ChatError::CompanionBusy) => OpenAiError::busy(2),
        ApiCompletionError::Chat(e) => {
            tracing::error!(error = %e, "api completion could not start");
            OpenAiError::internal()
        }
        ApiCompletionError::Upstream(e) => upstream_error(&e),
        ApiCompletionError::ContentRejected => OpenAiError::content_rejected(),
        ApiCompletionError::ModerationUnavailable => OpenAiError::check_unavailable(),
    }
}

fn upstream_error(e: &LlmError) -> OpenAiError {
    tracing::warn!(code = e.code(), "api completion: the model service failed");
    match e {
        // The caller's parameters (a max_tokens or temperature the model refuses).
        LlmError::BadRequest | LlmError::InvalidParameters => {
            OpenAiError::invalid_request(format!("the model service refused the request ({})", e.code()))
        }
        _ => OpenAiError::upstream(format!("the model service failed ({})", e.code())),
    }
}

/// A whole answer, read from the stream.
struct Whole {
    content: String,
    reasoning: String,
    finish: String,
    usage: Option<Usage>,
}

async fn collect(mut events: LlmStream, slot: Slot, meter: Meter) -> Result<Whole, OpenAiError> {
    let mut whole = Whole { content: String::new(), reasoning: String::new(), finish: "stop".into(), usage: None };
    let mut served_model = None;
    let mut failed = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(LlmEvent::Content(text)) => whole.content.push_str(&text),
            Ok(LlmEvent::Reasoning(text)) => whole.reasoning.push_str(&text),
            Ok(LlmEvent::Finish(reason)) => whole.finish = reason.as_str().to_string(),
            Ok(LlmEvent::Usage(usage)) => whole.usage = Some(usage),
            Ok(LlmEvent::Model(model)) => served_model = Some(model),
            Ok(LlmEvent::ServedBy(_)) => {}
            Err(e) => {
                failed = Some(upstream_error(&e));
                break;
            }
        }
    }
    drop(slot);
    meter.finish(whole.usage.as_ref(), served_model.as_deref()).await;
    if let Some(e) = failed {
        return Err(e);
    }
    if whole.finish == FinishReason::ContentFilter.as_str() {
        // Nothing of a withheld answer is returned.
        whole.content.clear();
        whole.reasoning.clear();
    }
    Ok(whole)
}

/// A completion being streamed: its events, the instance slot it holds, and where its use
/// is counted when it ends.
struct Answer {
    events: LlmStream,
    slot: Slot,
    meter: Meter,
    _open: OpenStream,
}

fn data(value: &Value) -> Result<Bytes, actix_web::Error> {
    Ok(Bytes::from(format!("data: {value}\n\n")))
}

/// The SSE body: a role chunk, content chunks, the finish chunk, usage if asked, `[DONE]`.
/// A failure mid-way ends the stream with an `error` object (the SDKs raise it).
fn sse(
    answer: Answer,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let opening = data(&chunk(&id, created, &model, json!({"role": "assistant", "content": ""}), None));
    struct State {
        events: LlmStream,
        slot: Option<Slot>,
        meter: Option<Meter>,
        finish: String,
        usage: Option<Usage>,
        model: Option<String>,
        ended: bool,
        _open: OpenStream,
    }
    impl State {
        /// The instance slot goes back and the use is counted, once.
        async fn end(&mut self) {
            self.ended = true;
            self.slot.take();
            if let Some(meter) = self.meter.take() {
                meter.finish(self.usage.as_ref(), self.model.as_deref()).await;
            }
        }
    }
    let state = State {
        events: answer.events,
        slot: Some(answer.slot),
        meter: Some(answer.meter),
        finish: "stop".into(),
        usage: None,
        model: None,
        ended: false,
        _open: answer._open,
    };
    let body = futures_util::stream::unfold(state, move |mut state| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            if state.ended {
                return None;
            }
            loop {
                match state.events.next().await {
                    Some(Ok(LlmEvent::Content(text))) => {
                        return Some((data(&chunk(&id, created, &model, json!({"content": text}), None)), state));
                    }
                    Some(Ok(LlmEvent::Reasoning(text))) => {
                        let delta = json!({"content": null, "reasoning_content": text});
                        return Some((data(&chunk(&id, created, &model, delta, None)), state));
                    }
                    Some(Ok(LlmEvent::Finish(reason))) => state.finish = reason.as_str().to_string(),
                    Some(Ok(LlmEvent::Usage(usage))) => state.usage = Some(usage),
                    Some(Ok(LlmEvent::Model(model))) => state.model = Some(model),
                    Some(Ok(LlmEvent::ServedBy(_))) => {}
                    Some(Err(e)) => {
                        state.end().await;
                        return Some((data(&upstream_error(&e).body()), state));
                    }
                    None => {
                        state.end().await;
                        let mut tail =
                            format!("data: {}\n\n", chunk(&id, created, &model, json!({}), Some(&state.finish)));
                        if include_usage {
                            let usage = json!({
                                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [], "usage": state.usage.as_ref().map(usage_json),
                            });
                            tail.push_str(&format!("data: {usage}\n\n"));
                        }
                        tail.push_str("data: [DONE]\n\n");
                        return Some((Ok(Bytes::from(tail)), state));
                    }
                }
            }
        }
    });
    futures_util::stream::once(async move { opening }).chain(body)
}
