//! Reads the server's SSE responses the way a client would, chunk by chunk.
use futures_util::StreamExt;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

pub struct EventReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    /// Everything received, comments included, as text.
    pub raw: String,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self { body: response.bytes_stream().boxed(), buffer: Vec::new(), raw: String::new() }
    }

    /// The next event (comments skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("the server sends whole UTF-8 events");
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = value.to_string();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if data.is_empty() {
                    continue; // a comment
                }
                return Some(Event { name, data: serde_json::from_str(&data).expect("event data is JSON") });
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), self.body.next())
                .await
                .expect("no SSE data for 20 s")?
                .ok()?;
            self.raw.push_str(&String::from_utf8_lossy(&chunk));
            self.buffer.extend_from_slice(&chunk);
        }
    }

    pub async fn all(mut self) -> (Vec<Event>, String) {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        (events, self.raw)
    }
}

/// The concatenated `delta` contents.
pub fn text_of(events: &[Event]) -> String {
    events.iter().filter(|e| e.name == "delta").map(|e| e.data["content"].as_str().unwrap().to_string()).collect()
}

pub fn names_of(events: &[Event]) -> Vec<&str> {
    let mut names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    names.dedup();
    names
}
