//! Server-sent events for replies: the headers mini-program clients and proxies need,
//! and a `: keepalive` comment whenever nothing else was sent for a while.
use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective, ContentEncoding, ContentType};
use actix_web::HttpResponse;
use actix_web_lab::sse;
use futures_util::stream;

use crate::chat::{ChatService, ReplyEvent, ReplyWatcher};
use crate::instruments::{OpenStream, Transport};

struct SseState {
    watcher: ReplyWatcher,
    keepalive: Duration,
    done: bool,
    /// Counted in `companion_streams_open` while the client is connected.
    _open: OpenStream,
}

fn to_sse(event: &ReplyEvent) -> sse::Event {
    sse::Event::Data(sse::Data::new(event.data()).event(event.name()))
}

/// Streams every event of `watcher`, then ends.
pub fn reply_stream(watcher: ReplyWatcher, chat: &ChatService) -> HttpResponse {
    let open = chat.instruments().stream_opened(Transport::Sse);
    let state = SseState { watcher, keepalive: chat.config().keepalive, done: false, _open: open };
    let events = stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        match tokio::time::timeout(state.keepalive, state.watcher.next_event()).await {
            Err(_) => Some((Ok::<_, Infallible>(sse::Event::Comment("keepalive".into())), state)),
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
