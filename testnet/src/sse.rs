//! An incremental parser for server-sent events (the `text/event-stream`
//! format of `GET /v1/events`): feed it the body in whatever chunks the
//! network delivers and it hands back complete events. It can skip the data
//! of event types the caller does not want without copying it, which matters
//! under load: a node streams every accepted transaction as a `tx` event,
//! thousands a second, while `load` only needs `block` and `reorg`.

/// One complete event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why a stream was given up on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    #[error("event stream line longer than {0} bytes")]
    LineTooLong(usize),
}

/// Parser state between chunks.
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// True while the current event is one the caller does not want.
    skipping: bool,
    /// True while the rest of the current line is a skipped data line.
    discarding_line: bool,
    wanted: fn(&str) -> bool,
    max_line: usize,
}

impl SseParser {
    /// A parser keeping only events for which `wanted(name)` is true.
    /// `max_line` bounds memory when a peer never sends a newline.
    pub fn new(wanted: fn(&str) -> bool, max_line: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            event: None,
            data: String::new(),
            has_data: false,
            skipping: false,
            discarding_line: false,
            wanted,
            max_line,
        }
    }

    /// Feeds bytes; returns the events they completed, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        while !bytes.is_empty() {
            let (piece, rest, complete) = match bytes.iter().position(|&byte| byte == b'\n') {
                Some(end) => (&bytes[..end], &bytes[end + 1..], true),
                None => (bytes, &b""[..], false),
            };
            if !self.discarding_line {
                self.line.extend_from_slice(piece);
                // The data of a skipped event is not worth keeping: only
                // the fact that the line was a data line matters.
                if self.skipping && self.line.starts_with(b"data:") {
                    self.line.truncate(5);
                    self.discarding_line = true;
                }
                if self.line.len() > self.max_line {
                    return Err(SseError::LineTooLong(self.max_line));
                }
            }
            if complete {
                let mut line = std::mem::take(&mut self.line);
                self.take_line(&line, &mut events);
                line.clear();
                self.line = line;
                self.discarding_line = false;
            }
            bytes = rest;
        }
        Ok(events)
    }

    fn take_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data && !self.skipping {
                let event = self.event.take().unwrap_or_else(|| "message".to_string());
                if (self.wanted)(&event) {
                    events.push(SseEvent {
                        event,
                        data: std::mem::take(&mut self.data),
                    });
                }
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            self.skipping = false;
            return;
        }
        if line.starts_with(b":") {
            return; // a comment, used as keep-alive
        }
        let (field, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                let name = String::from_utf8_lossy(value).into_owned();
                self.skipping = !(self.wanted)(&name);
                self.event = Some(name);
            }
            b"data" => {
                self.has_data = true;
                if self.skipping {
                    return;
                }
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
            }
            _ => {} // `id`, `retry` and unknown fields carry nothing we use
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_only(name: &str) -> bool {
        name == "block" || name == "reorg"
    }

    #[test]
    fn parses_events_split_across_chunks() {
        let stream = b"event: block\ndata: {\"height\":1}\n\n: keep-alive\n\nevent: tx\ndata: {\"big\":1}\n\nevent: reorg\r\ndata: a\r\ndata: b\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::new(blocks_only, 1 << 20);
            let mut events = parser.push(&stream[..split]).unwrap();
            events.extend(parser.push(&stream[split..]).unwrap());
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "block".into(),
                        data: "{\"height\":1}".into()
                    },
                    SseEvent {
                        event: "reorg".into(),
                        data: "a\nb".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn unnamed_events_are_messages_and_long_lines_are_refused() {
        let mut parser = SseParser::new(|_| true, 16);
        let events = parser.push(b"data: x\n\n").unwrap();
        assert_eq!(events[0].event, "message");
        assert!(parser.push(&[b'a'; 40]).is_err());
    }

    #[test]
    fn skipped_events_do_not_grow_the_buffer() {
        let mut parser = SseParser::new(blocks_only, 64);
        parser.push(b"event: tx\ndata: ").unwrap();
        // Far more than max_line bytes of a skipped event's data.
        for _ in 0..100 {
            parser.push(b"0123456789").unwrap();
        }
        let events = parser.push(b"\n\nevent: block\ndata: 1\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "1");
    }
}
