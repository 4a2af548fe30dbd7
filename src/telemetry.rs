//! Structured JSON logs and request ids.
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::{Span, Subscriber};

use crate::protection::ClientIp;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_bunyan_formatter::{BunyanFormattingLayer, JsonStorageLayer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

pub fn get_subscriber<Sink>(name: &str, default_filter: &str, sink: Sink) -> impl Subscriber + Send + Sync
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    Registry::default().with(filter).with(JsonStorageLayer).with(BunyanFormattingLayer::new(name.into(), sink))
}

pub fn init_subscriber(subscriber: impl Subscriber + Send + Sync) {
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The id of the current request, honoured from `X-Request-Id` or generated.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Outermost middleware: decides the request id (echoed on the response) and the client
/// address (`ClientIp`, at the trusted proxy depth) that logs and limits both use.
pub async fn request_context<B: MessageBody>(
    proxy_depth: usize,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let client = ClientIp::resolve(req.request(), proxy_depth);
    req.extensions_mut().insert(client);
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(res)
}

/// Longest part of a request's target or user agent a log line records: a 60 KB query
/// string must not become a 60 KB log line.
const MAX_LOGGED_CHARS: usize = 256;

fn capped(text: &str) -> String {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Root span carrying our request id, the same client address the limiter uses, and
/// bounded copies of what the client controls.
pub struct RequestIdRootSpan;

impl RootSpanBuilder for RequestIdRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let client = ClientIp::of(request.request());
        let target = capped(&request.uri().to_string());
        let user_agent = request.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(capped);
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
        tracing::info_span!(
            "HTTP request",
            otel.name = %format!("{} {}", request.method(), route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.method = %request.method(),
            http.route = %route,
            http.target = %target,
            http.client_ip = %client,
            http.user_agent = user_agent.as_deref().unwrap_or(""),
            http.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_client_text_is_capped() {
        let cases = [
            ("short", "short".to_string(), 5),
            ("at the cap", "a".repeat(256), 256),
            ("far over", "查".repeat(60_000), 257),
        ];
        for (label, text, chars) in cases {
            assert_eq!(super::capped(&text).chars().count(), chars, "{label}");
        }
    }
}
