//! Incremental `text/event-stream` parser: bytes in, whole events out.
//!
//! Chunk boundaries may fall anywhere, including inside a line or inside a multi-byte
//! UTF-8 character: bytes are buffered until a line is complete, and only whole lines
//! are decoded. LF and CRLF line ends are accepted; comment lines (`: keep-alive`) and
//! fields other than `data`/`event` are ignored.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk; returns the events it completed. Invalid UTF-8 in a line is
    /// replaced rather than fatal.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(offset) = self.buffer[consumed..].iter().position(|b| *b == b'\n') {
            let end = consumed + offset;
            let mut line = &self.buffer[consumed..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            consumed = end + 1;
            if let Some(event) = self.take_line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..consumed);
        events
    }

    /// Bytes received but not yet part of a complete line.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }

    fn take_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.event = None;
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent { event: self.event.take(), data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            events.extend(parser.feed(&input[start..cut]));
            start = cut;
        }
        events
    }

    #[test]
    fn every_split_position_yields_the_same_events() {
        let input = "data: {\"c\":\"你好🙂\"}\n\n: keep-alive\n\ndata: 第二\r\n\r\ndata: [DONE]\n\n".as_bytes();
        let whole = parse_in_pieces(input, &[]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "{\"c\":\"你好🙂\"}");
        assert_eq!(whole[1].data, "第二");
        assert_eq!(whole[2].data, "[DONE]");
        for i in 0..input.len() {
            for j in i..input.len() {
                assert_eq!(parse_in_pieces(input, &[i, j]), whole, "cuts at {i},{j}");
            }
        }
    }

    #[test]
    fn comments_alone_produce_nothing() {
        let mut parser = SseParser::new();
        assert!(parser.feed(b": keep-alive\n\n: keep-alive\n\n").is_empty());
        assert_eq!(parser.pending_bytes(), 0);
    }

    #[test]
    fn multi_line_data_and_event_names_are_kept() {
        let events = parse_in_pieces(b"event: delta\ndata: a\ndata: b\n\n", &[3]);
        assert_eq!(events, vec![SseEvent { event: Some("delta".into()), data: "a\nb".into() }]);
    }
}
