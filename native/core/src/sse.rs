//! Sans-IO incremental Server-Sent Events parser (WHATWG HTML §9.2.6 "Interpreting an event
//! stream").
//!
//! `feed(bytes)` returns the events completed by those bytes; chunk boundaries never change the
//! result. Lines end in CRLF, LF or CR; a leading UTF-8 BOM is skipped; field values are decoded
//! as UTF-8 with replacement characters. Buffered incomplete input (the partial line plus the
//! data of the event not yet dispatched) is capped; exceeding the cap is an error after which
//! the parser refuses further input.

use memchr::memchr2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, or "message" when absent.
    pub event: String,
    /// All `data` fields of the event joined with "\n".
    pub data: String,
    /// The last event ID (persists across events, as the spec's `lastEventId`).
    pub id: String,
    /// A valid `retry` field seen in this event's block, if any.
    pub retry: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseError {
    /// More than `limit` bytes of incomplete input were buffered.
    BufferOverflow { limit: usize, buffered: usize },
    /// `feed` after `finish` or after an overflow.
    Closed,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BufferOverflow { limit, buffered } => write!(
                f,
                "SSE buffer cap exceeded: {buffered} bytes of incomplete input buffered, max_buffer={limit}"
            ),
            Self::Closed => write!(f, "SSE parser is closed (finished or failed)"),
        }
    }
}

pub const DEFAULT_MAX_BUFFER: usize = 1 << 20;

pub struct SseParser {
    max_buffer: usize,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: skip one LF at the start of the next.
    skip_lf: bool,
    /// Still at the very start of the stream (BOM check pending).
    at_start: bool,
    event_type: String,
    data: String,
    has_data: bool,
    last_id: String,
    retry_in_block: Option<u64>,
    /// Last valid `retry` value seen anywhere in the stream.
    retry: Option<u64>,
    closed: bool,
}

impl SseParser {
    pub fn new(max_buffer: usize) -> Self {
        Self {
            max_buffer,
            line: Vec::new(),
            skip_lf: false,
            at_start: true,
            event_type: String::new(),
            data: String::new(),
            has_data: false,
            last_id: String::new(),
            retry_in_block: None,
            retry: None,
            closed: false,
        }
    }

    pub fn max_buffer(&self) -> usize {
        self.max_buffer
    }

    /// The reconnection time last set by a valid `retry` field.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The last event ID buffer.
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// Bytes of incomplete input currently buffered.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        self.feed_into(&mut chunk, &mut out)?;
        Ok(out)
    }

    pub fn feed_into(&mut self, chunk: &mut &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.closed {
            return Err(SseError::Closed);
        }
        let mut buf = *chunk;
        if self.at_start {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            while !buf.is_empty() && self.line.len() < 3 && BOM.starts_with(&self.line) {
                self.line.push(buf[0]);
                buf = &buf[1..];
            }
            if BOM.starts_with(&self.line) && self.line.len() < 3 {
                return Ok(()); // a BOM prefix so far; need more bytes
            }
            self.at_start = false;
            let pending = std::mem::take(&mut self.line);
            if pending != BOM {
                let mut p: &[u8] = &pending;
                self.feed_into(&mut p, out)?;
            }
        }
        if self.skip_lf && !buf.is_empty() {
            if buf[0] == b'\n' {
                buf = &buf[1..];
            }
            self.skip_lf = false;
        }
        while let Some(i) = memchr2(b'\n', b'\r', buf) {
            let eol = buf[i];
            if self.line.is_empty() {
                self.process_line(&buf[..i], out);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&buf[..i]);
                self.process_line(&line, out);
                line.clear();
                self.line = line;
            }
            let mut next = i + 1;
            if eol == b'\r' {
                if next < buf.len() {
                    if buf[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            buf = &buf[next..];
            self.check_cap()?;
        }
        self.line.extend_from_slice(buf);
        *chunk = &[];
        self.check_cap()
    }

    fn check_cap(&mut self) -> Result<(), SseError> {
        let buffered = self.buffered();
        if buffered > self.max_buffer {
            self.closed = true;
            return Err(SseError::BufferOverflow { limit: self.max_buffer, buffered });
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &line[line.len()..]),
        };
        match field {
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&String::from_utf8_lossy(value));
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                self.data.push_str(&String::from_utf8_lossy(value));
            }
            b"id" => {
                if !value.contains(&0) {
                    self.last_id.clear();
                    self.last_id.push_str(&String::from_utf8_lossy(value));
                }
            }
            b"retry" => {
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    // Absurdly long digit strings saturate rather than fail.
                    let v = std::str::from_utf8(value).unwrap().parse::<u64>().unwrap_or(u64::MAX);
                    self.retry = Some(v);
                    self.retry_in_block = Some(v);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let retry = self.retry_in_block.take();
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        self.has_data = false;
        let event = if self.event_type.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            retry,
        });
    }

    /// End of stream. Per the spec, an event without its terminating blank line is discarded;
    /// returns whether anything (a partial line or undispatched data) was discarded. The parser
    /// refuses further input afterwards.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.line.is_empty() || self.has_data;
        self.closed = true;
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
        discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(event: &str, data: &str, id: &str) -> SseEvent {
        SseEvent { event: event.into(), data: data.into(), id: id.into(), retry: None }
    }

    #[test]
    fn spec_examples() {
        let mut p = SseParser::new(DEFAULT_MAX_BUFFER);
        let got = p
            .feed(b"\xEF\xBB\xBFdata: YHOO\ndata: +2\ndata: 10\n\n: comment\nevent: add\ndata:73857293\nid: 7\n\ndata\ndata\n\ndata:  x\r\n\r\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                ev("message", "YHOO\n+2\n10", ""),
                ev("add", "73857293", "7"),
                ev("message", "\n", "7"),
                ev("message", " x", "7"),
            ]
        );
        assert!(!p.finish());
    }

    #[test]
    fn cap_is_enforced() {
        let mut p = SseParser::new(8);
        assert!(p.feed(b"data: 1234").is_err());
        assert_eq!(p.feed(b"\n\n"), Err(SseError::Closed));
    }

    #[test]
    fn retry_and_cr() {
        let mut p = SseParser::new(DEFAULT_MAX_BUFFER);
        let got = p.feed(b"retry: 1500\rdata: a\r").unwrap();
        assert!(got.is_empty());
        let got = p.feed(b"\n\r\n").unwrap();
        assert_eq!(got, vec![SseEvent { retry: Some(1500), ..ev("message", "a", "") }]);
        assert_eq!(p.retry(), Some(1500));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn chunking_does_not_matter(
            stream in prop::collection::vec(prop::sample::select(vec![
                &b"data: x"[..], b"data", b":", b" ", b"\n", b"\r", b"\r\n", b"event: e", b"id: 1",
                b"retry: 10", b"\xEF\xBB\xBF", b"\xC3", b"\xA9", b"y",
            ]), 0..40),
            cuts in prop::collection::vec(0usize..400, 0..10),
        ) {
            let bytes: Vec<u8> = stream.concat();
            let mut one = SseParser::new(DEFAULT_MAX_BUFFER);
            let expected = one.feed(&bytes).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort();
            let mut p = SseParser::new(DEFAULT_MAX_BUFFER);
            let mut got = Vec::new();
            let mut last = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                got.extend(p.feed(&bytes[last..c]).unwrap());
                last = c;
            }
            prop_assert_eq!(got, expected);
        }
    }
}
