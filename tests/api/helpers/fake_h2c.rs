//! A fake upstream that speaks both HTTP/1.1 and HTTP/2 without TLS (h2c, prior
//! knowledge) on one port, as a self-hosted OpenAI-compatible server can; it answers every
//! chat request with the same short reply and records the HTTP version it was asked in.
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use super::fake_deepseek::reply_body;

pub struct FakeH2c {
    pub url: String,
    versions: Arc<Mutex<Vec<(Version, String)>>>,
}

impl FakeH2c {
    pub async fn start(pieces: &'static [&'static str]) -> FakeH2c {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let versions: Arc<Mutex<Vec<(Version, String)>>> = Arc::default();
        let seen = versions.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock().unwrap().push((request.version(), request.uri().path().to_string()));
                            let _ = request.into_body().collect().await;
                            let body = reply_body(pieces, "stop");
                            let response = Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        FakeH2c { url, versions }
    }

    /// The HTTP version and path of each request, in order.
    pub fn requests(&self) -> Vec<(Version, String)> {
        self.versions.lock().unwrap().clone()
    }
}
