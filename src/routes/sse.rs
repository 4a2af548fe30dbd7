//! Server-sent events for replies: the headers mini-program clients and proxies need,
//! and a `: keepalive` comment whenever nothing else was sent for a while.
use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective, ContentEncoding, ContentType};
use actix_web::HttpResponse;
use actix_web_lab::sse;
use futures_util::stream;

use crate::chat::{ReplyEvent, ReplyWatcher};

struct SseState {
    first: Option<ReplyEvent>,
    watcher: ReplyWatcher,
    keepalive: Duration,
    done: bool,
}

fn to_sse(event: &ReplyEvent) -> sse::Event {
    sse::Event::Data(sse::Data::new(event.payload().to_string()).event(event.name()))
}

/// Streams `first` (if any), then every event of `watcher`, then ends.
pub fn reply_stream(first: Option<ReplyEvent>, watcher: ReplyWatcher, keepalive: Duration) -> HttpResponse {
    let state = SseState { first, watcher, keepalive, done: false };
    let events = stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        if let Some(first) = state.first.take() {
            return Some((Ok::<_, Infallible>(to_sse(&first)), state));
        }
        match tokio::time::timeout(state.keepalive, state.watcher.next_event()).await {
            Err(_) => Some((Ok(sse::Event::Comment("keepalive".into())), state)),
            Ok(Some(event)) => {
                state.done = event.is_terminal();
                Some((Ok(to_sse(&event)), state))
            }
            Ok(None) => None,
        }
    });
    HttpResponse::Ok()
        .insert_header(ContentType("text/event-stream; charset=utf-8".parse().expect("static mime")))
        .insert_header(CacheControl(vec![
            CacheDirective::NoCache,
            CacheDirective::NoStore,
            CacheDirective::Extension("no-transform".into(), None),
        ]))
        .insert_header(ContentEncoding::Identity)
        .insert_header(("X-Accel-Buffering", "no"))
        .body(sse::Sse::from_stream(events))
}
