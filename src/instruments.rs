//! This instance's Prometheus instruments (the `prometheus` crate), one registry per
//! application: requests by route and status, first-token latency and reply duration,
//! replies by outcome, tokens by kind, store operation latency. Rendered by `GET /metrics`
//! with the hand-counted figures that live elsewhere.
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Instruments {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub first_token: Histogram,
    pub reply_duration: Histogram,
    pub replies: IntCounterVec,
    pub tokens: IntCounterVec,
    pub store_operations: HistogramVec,
    pub content_checks: IntCounterVec,
    pub open_streams: IntGaugeVec,
}

/// How a client watches a reply, for the open-streams gauge.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Sse,
    WebSocket,
    OpenAiApi,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
            Transport::OpenAiApi => "openai_api",
        }
    }
}

/// One open stream, counted in `companion_streams_open` until dropped.
pub struct OpenStream(prometheus::IntGauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 15.0];
const DURATION_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];
const STORE_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Instruments {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry.register(Box::new(vec.clone())).expect("registered once");
            vec
        };
        let http_requests = counter(
            "companion_http_requests_total",
            "HTTP requests by route pattern, method and status.",
            &["route", "method", "status"],
        );
        let replies = counter(
            "companion_replies_total",
            "Replies by final status, error code (empty when none) and upstream.",
            &["status", "code", "upstream"],
        );
        let tokens = counter("companion_tokens_total", "Tokens used by replies, by kind.", &["kind"]);
        let content_checks = counter(
            "companion_content_checks_total",
            "msgSecCheck outcomes by what was checked (input, output) and suggest (pass, review, risky) or unavailable.",
            &["target", "outcome"],
        );
        let open_streams = IntGaugeVec::new(
            Opts::new("companion_streams_open", "Streams open on this instance, by transport."),
            &["transport"],
        )
        .expect("a valid gauge");
        registry.register(Box::new(open_streams.clone())).expect("registered once");
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let first_token = histogram(
            "companion_first_token_seconds",
            "From the request upstream to the first token (text or reasoning).",
            LATENCY_BUCKETS,
        );
        let reply_duration =
            histogram("companion_reply_duration_seconds", "A reply's generation, start to end.", DURATION_BUCKETS);
        let store_operations = HistogramVec::new(
            HistogramOpts::new("companion_store_operation_seconds", "Store operations by name.")
                .buckets(STORE_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid");
        registry.register(Box::new(store_operations.clone())).expect("registered once");
        Self {
            registry,
            http_requests,
            first_token,
            reply_duration,
            replies,
            tokens,
            store_operations,
            content_checks,
            open_streams,
        }
    }

    /// Tokens a reply or an API completion used, by kind.
    pub fn count_tokens(&self, usage: &crate::domain::Usage) {
        let (hit, miss) = usage.cache_split();
        for (kind, n) in
            [("prompt_cache_hit", hit), ("prompt_cache_miss", miss), ("completion", usage.completion_tokens)]
        {
            self.tokens.with_label_values(&[kind]).inc_by(n);
        }
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn stream_opened(&self, transport: Transport) -> OpenStream {
        let gauge = self.open_streams.with_label_values(&[transport.as_str()]);
        gauge.inc();
        OpenStream(gauge)
    }

    /// The registry in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "could not render the metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Instruments {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts every request by its route pattern (never the raw path, which can
/// carry ids), method and status.
pub async fn count_requests<B: actix_web::body::MessageBody>(
    instruments: std::sync::Arc<Instruments>,
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<actix_web::dev::ServiceResponse<B>, actix_web::Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let response = next.call(req).await;
    let status = match &response {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    instruments.http_requests.with_label_values(&[route.as_str(), method.as_str(), &status.to_string()]).inc();
    response
}
