//! The load generator's HTTP/1.1 client: one hand-written exchange per stream on a
//! keep-alive `TcpStream` (cheaper than a general client at 10,000 connections), reading
//! either the relay's SSE (`event: delta` …) or the upstream's (`data: {chunk}`).
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::now_us;

/// Which side the client reads: the relay's events or the fake upstream's chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Direct,
    Relay,
}

/// One content chunk: when the fake upstream sent it and when the client read it.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub sent_us: u64,
    pub arrived_us: u64,
}

/// What became of one stream.
#[derive(Debug, Default)]
pub struct Outcome {
    /// When the request started to be written.
    pub requested_us: u64,
    pub pieces: Vec<Piece>,
    /// `done` (relay) or `[DONE]` (direct) was read.
    pub finished: bool,
    pub error: Option<String>,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome { requested_us: now_us(), error: Some(error.into()), ..Outcome::default() }
    }

    /// Finished, without an error, with every chunk.
    pub fn ok(&self, expected: usize) -> bool {
        self.error.is_none() && self.finished && self.pieces.len() == expected
    }

    /// Why the stream counts as failed, if it does.
    pub fn failure(&self, expected: usize) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(error.clone());
        }
        if !self.finished {
            return Some("ended without done".into());
        }
        (self.pieces.len() != expected).then(|| format!("{} of {expected} chunks", self.pieces.len()))
    }

    pub fn first_token_us(&self) -> Option<u64> {
        self.pieces.first().map(|p| p.arrived_us.saturating_sub(self.requested_us))
    }

    pub fn gaps_us(&self) -> impl Iterator<Item = u64> + '_ {
        self.pieces.windows(2).map(|w| w[1].arrived_us.saturating_sub(w[0].arrived_us))
    }

    pub fn latencies_us(&self) -> impl Iterator<Item = u64> + '_ {
        self.pieces.iter().map(|p| p.arrived_us.saturating_sub(p.sent_us))
    }
}

/// A `POST` with a JSON body, asking for SSE.
pub fn request(host: SocketAddr, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
}

enum Framing {
    Chunked(ChunkState),
    Length(usize),
    UntilClose,
}

enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub async fn connect(address: SocketAddr, wait: Duration) -> Result<Conn, String> {
        let stream = match tokio::time::timeout(wait, TcpStream::connect(address)).await {
            Err(_) => return Err("connect timeout".into()),
            Ok(Err(e)) => return Err(format!("connect: {}", e.kind())),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, buf: Vec::with_capacity(4096), start: 0 })
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more; false at end of stream.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 8192 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(format!("read: {}", e.kind())),
        }
    }

    async fn read_head(&mut self) -> Result<Head, String> {
        let end = loop {
            if let Some(end) = find(self.pending(), b"\r\n\r\n") {
                break end;
            }
            if !self.fill().await? {
                return Err("closed before a response".into());
            }
        };
        let head = String::from_utf8_lossy(&self.pending()[..end]).to_ascii_lowercase();
        self.start += end + 4;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "bad status line".to_string())?;
        let (mut framing, mut close) = (Framing::UntilClose, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            match (name.trim(), value.trim()) {
                ("transfer-encoding", v) if v.contains("chunked") => framing = Framing::Chunked(ChunkState::Size),
                ("content-length", v) if !matches!(framing, Framing::Chunked(_)) => {
                    framing = Framing::Length(v.parse().map_err(|_| "bad content-length".to_string())?)
                }
                ("connection", v) if v.contains("close") => close = true,
                _ => {}
            }
        }
        if matches!(framing, Framing::UntilClose) {
            close = true;
        }
        Ok(Head { status, framing, close })
    }

    /// Moves decoded body bytes from the buffer to `out`; true once the body has ended.
    fn decode(&mut self, framing: &mut Framing, out: &mut Vec<u8>) -> Result<bool, String> {
        loop {
            match framing {
                Framing::UntilClose => {
                    out.extend_from_slice(self.pending());
                    self.start = self.buf.len();
                    return Ok(false);
                }
                Framing::Length(left) => {
                    let take = (*left).min(self.pending().len());
                    out.extend_from_slice(&self.pending()[..take]);
                    self.start += take;
                    *left -= take;
                    return Ok(*left == 0);
                }
                Framing::Chunked(state) => match state {
                    ChunkState::Size => {
                        let Some(end) = find(self.pending(), b"\r\n") else { return Ok(false) };
                        let line = String::from_utf8_lossy(&self.pending()[..end]).into_owned();
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
                        self.start += end + 2;
                        *state = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                    }
                    ChunkState::Data(left) => {
                        let take = (*left).min(self.pending().len());
                        if take == 0 {
                            return Ok(false);
                        }
                        out.extend_from_slice(&self.pending()[..take]);
                        self.start += take;
                        *left -= take;
                        if *left == 0 {
                            *state = ChunkState::DataEnd;
                        }
                    }
                    ChunkState::DataEnd => {
                        if self.pending().len() < 2 {
                            return Ok(false);
                        }
                        self.start += 2;
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailer => {
                        let Some(end) = find(self.pending(), b"\r\n") else { return Ok(false) };
                        self.start += end + 2;
                        if end == 0 {
                            return Ok(true);
                        }
                    }
                },
            }
        }
    }

    /// Sends `request` and reads the stream it answers with, until its body ends or
    /// `deadline`. `on_first` runs when the first content chunk arrives. The second value
    /// says whether the connection can carry another request.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        target: Target,
        deadline: Instant,
        on_first: &mut (dyn FnMut() + Send),
    ) -> (Outcome, bool) {
        let mut outcome = Outcome { requested_us: now_us(), ..Outcome::default() };
        match timeout_at(deadline, self.exchange_inner(request, target, &mut outcome, on_first)).await {
            Ok(Ok(reusable)) => (outcome, reusable),
            Ok(Err(error)) => {
                outcome.error = Some(error);
                (outcome, false)
            }
            Err(_) => {
                outcome.error = Some("timeout".into());
                (outcome, false)
            }
        }
    }

    async fn exchange_inner(
        &mut self,
        request: &[u8],
        target: Target,
        outcome: &mut Outcome,
        on_first: &mut (dyn FnMut() + Send),
    ) -> Result<bool, String> {
        self.stream.write_all(request).await.map_err(|e| format!("write: {}", e.kind()))?;
        let head = self.read_head().await?;
        let mut framing = head.framing;
        let mut body = Vec::new();
        if head.status != 200 {
            // Read what explains the refusal (bounded by the deadline), then report it.
            let mut ended = self.decode(&mut framing, &mut body)?;
            while !ended && body.len() < 4096 && self.fill().await? {
                ended = self.decode(&mut framing, &mut body)?;
            }
            let text = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
            return Err(format!("HTTP {}: {text}", head.status));
        }
        let mut events = SseEvents::default();
        loop {
            let arrived = now_us();
            let ended = self.decode(&mut framing, &mut body)?;
            if !body.is_empty() {
                events.push(&body);
                body.clear();
                while let Some(event) = events.next_event() {
                    let had_pieces = !outcome.pieces.is_empty();
                    handle_event(&event, target, arrived, outcome)?;
                    if !had_pieces && !outcome.pieces.is_empty() {
                        on_first();
                    }
                }
            }
            if ended {
                return Ok(!head.close);
            }
            if !self.fill().await? {
                if matches!(framing, Framing::UntilClose) {
                    return Ok(false);
                }
                return Err(if outcome.finished { "closed after done".into() } else { "closed mid-stream".into() });
            }
        }
    }
}

#[derive(Default)]
struct SseEvents {
    buf: Vec<u8>,
    start: usize,
}

impl SseEvents {
    fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn next_event(&mut self) -> Option<String> {
        let end = find(&self.buf[self.start..], b"\n\n")?;
        let event = String::from_utf8_lossy(&self.buf[self.start..self.start + end]).into_owned();
        self.start += end + 2;
        Some(event)
    }
}

/// Records the chunks an SSE event carries, or its end.
fn handle_event(event: &str, target: Target, arrived_us: u64, outcome: &mut Outcome) -> Result<(), String> {
    let mut name = "message";
    let mut data = String::new();
    for line in event.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return Ok(()); // a comment (keep-alive)
    }
    let content = match (target, name) {
        (Target::Relay, "delta") => {
            let value: Value = serde_json::from_str(&data).map_err(|_| "bad delta".to_string())?;
            // `content` today; `text` accepted too.
            value["content"].as_str().or(value["text"].as_str()).unwrap_or_default().to_owned()
        }
        (Target::Relay, "done") => {
            outcome.finished = true;
            return Ok(());
        }
        (Target::Relay, "error") => return Err(format!("error event {data}")),
        (Target::Relay, _) => return Ok(()),
        (Target::Direct, _) if data == "[DONE]" => {
            outcome.finished = true;
            return Ok(());
        }
        (Target::Direct, _) => {
            let value: Value = serde_json::from_str(&data).map_err(|_| "bad chunk".to_string())?;
            value["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_owned()
        }
    };
    for piece in content.split(';').filter(|p| !p.is_empty()) {
        let sent_us = piece.split_once(':').and_then(|(_, stamp)| stamp.parse().ok()).unwrap_or(arrived_us);
        outcome.pieces.push(Piece { sent_us, arrived_us });
    }
    Ok(())
}
