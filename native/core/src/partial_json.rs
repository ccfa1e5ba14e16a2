//! Resumable JSON parser for tool-call arguments that arrive in fragments.
//!
//! Each byte is looked at once, so the total work over a stream is O(total bytes) no matter how
//! it is fragmented (re-parsing the growing prefix at every fragment is O(n²)). The parser keeps
//! the partially built document, so [`PartialJsonParser::snapshot`] returns, at any point, what
//! `jiter.from_json(prefix, partial_mode="trailing-strings")` returns for the same prefix:
//! incomplete strings are included up to their last complete character, incomplete keys,
//! literals (`tru`) and numbers that are not yet valid (`1.`, `-`, `1e`) are left out, and open
//! containers are included with what they hold so far.
//!
//! [`PartialJsonParser::feed`] returns an event the moment a value at depth ≤ `max_event_depth`
//! is complete (depth 1 = the arguments of a tool call), and a final event when the whole
//! document is complete. Malformed input is an error with its byte offset; after an error the
//! parser refuses further input.

/// A JSON value. Numbers keep their source text (so big integers stay exact).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathItem {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct JsonEvent {
    /// Where the completed value sits; empty for the whole document.
    pub path: Vec<PathItem>,
    pub value: Value,
    /// True for the event that completes the whole document.
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset (in the UTF-8 stream fed so far) of the offending byte.
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte offset {}", self.message, self.offset)
    }
}

pub const MAX_DEPTH: usize = 512;

enum Frame {
    Array(Vec<Value>),
    Object { pairs: Vec<(String, Value)>, key: Option<String> },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// Inside `\uXXXX`: digits read so far and their value; `hi` is a pending high surrogate.
    Unicode { n: u8, val: u32, hi: Option<u32> },
    /// After a high surrogate: expecting `\` then `u` of the low surrogate.
    LowBackslash { hi: u32 },
    LowU { hi: u32 },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a value; `close_ok`: `]` allowed (right after `[`).
    Value { close_ok: bool },
    /// Expecting a key; `close_ok`: `}` allowed (right after `{`).
    Key { close_ok: bool },
    Colon,
    AfterValue,
    Str { key: bool, esc: Esc },
    Number(Num),
    Literal { word: &'static [u8], pos: u8 },
    Done,
    Failed,
}

pub struct PartialJsonParser {
    state: State,
    stack: Vec<Frame>,
    /// The string or number being read.
    scratch: String,
    root: Option<Value>,
    offset: usize,
    max_event_depth: usize,
    error: Option<JsonError>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl PartialJsonParser {
    pub fn new(max_event_depth: usize) -> Self {
        Self {
            state: State::Value { close_ok: false },
            stack: Vec::new(),
            scratch: String::new(),
            root: None,
            offset: 0,
            max_event_depth,
            error: None,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// True once the whole document has been parsed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The complete document, once [`is_done`](Self::is_done).
    pub fn value(&self) -> Option<&Value> {
        self.root.as_ref()
    }

    fn fail(&mut self, at: usize, message: impl Into<String>) -> JsonError {
        let e = JsonError { offset: at, message: message.into() };
        self.state = State::Failed;
        self.error = Some(e.clone());
        e
    }

    fn path(&self) -> Vec<PathItem> {
        self.stack
            .iter()
            .map(|f| match f {
                Frame::Array(items) => PathItem::Index(items.len()),
                Frame::Object { key, .. } => PathItem::Key(key.clone().unwrap_or_default()),
            })
            .collect()
    }

    fn complete_value(&mut self, v: Value, events: &mut Vec<JsonEvent>) {
        let depth = self.stack.len();
        if depth == 0 {
            events.push(JsonEvent { path: Vec::new(), value: v.clone(), done: true });
            self.root = Some(v);
            self.state = State::Done;
            return;
        }
        if depth <= self.max_event_depth {
            events.push(JsonEvent { path: self.path(), value: v.clone(), done: false });
        }
        match self.stack.last_mut().unwrap() {
            Frame::Array(items) => items.push(v),
            Frame::Object { pairs, key } => pairs.push((key.take().unwrap_or_default(), v)),
        }
        self.state = State::AfterValue;
    }

    fn finish_number(&mut self, events: &mut Vec<JsonEvent>) {
        let raw = std::mem::take(&mut self.scratch);
        self.complete_value(Value::Number(raw), events);
    }

    /// Feed the next fragment; returns the events it completed.
    pub fn feed(&mut self, fragment: &str) -> Result<Vec<JsonEvent>, JsonError> {
        let mut events = Vec::new();
        self.feed_into(fragment, &mut events)?;
        Ok(events)
    }

    pub fn feed_into(&mut self, fragment: &str, events: &mut Vec<JsonEvent>) -> Result<(), JsonError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let bytes = fragment.as_bytes();
        let base = self.offset;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let at = base + i;
            match self.state {
                State::Str { key, esc: Esc::None } => {
                    // Fast path: copy the run of plain characters.
                    let start = i;
                    while i < bytes.len() {
                        let c = bytes[i];
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        i += 1;
                    }
                    self.scratch.push_str(&fragment[start..i]);
                    if i == bytes.len() {
                        break;
                    }
                    let c = bytes[i];
                    let at = base + i;
                    i += 1;
                    if c == b'"' {
                        let s = std::mem::take(&mut self.scratch);
                        if key {
                            match self.stack.last_mut() {
                                Some(Frame::Object { key, .. }) => *key = Some(s),
                                _ => unreachable!("key outside object"),
                            }
                            self.state = State::Colon;
                        } else {
                            self.complete_value(Value::Str(s), events);
                        }
                    } else if c == b'\\' {
                        self.state = State::Str { key, esc: Esc::Backslash };
                    } else {
                        return Err(self.fail(at, "control character in string"));
                    }
                    continue;
                }
                State::Str { key, esc } => {
                    i += 1;
                    let next = match esc {
                        Esc::None => unreachable!(),
                        Esc::Backslash => {
                            let c = match b {
                                b'"' => '"',
                                b'\\' => '\\',
                                b'/' => '/',
                                b'b' => '\u{8}',
                                b'f' => '\u{c}',
                                b'n' => '\n',
                                b'r' => '\r',
                                b't' => '\t',
                                b'u' => {
                                    self.state = State::Str { key, esc: Esc::Unicode { n: 0, val: 0, hi: None } };
                                    continue;
                                }
                                _ => return Err(self.fail(at, "invalid escape")),
                            };
                            self.scratch.push(c);
                            Esc::None
                        }
                        Esc::Unicode { n, val, hi } => {
                            let d = match (b as char).to_digit(16) {
                                Some(d) => d,
                                None => return Err(self.fail(at, "invalid \\u escape")),
                            };
                            let val = val * 16 + d;
                            if n < 3 {
                                Esc::Unicode { n: n + 1, val, hi }
                            } else {
                                match hi {
                                    None if (0xD800..0xDC00).contains(&val) => Esc::LowBackslash { hi: val },
                                    None if (0xDC00..0xE000).contains(&val) => {
                                        return Err(self.fail(at, "lone low surrogate in \\u escape"))
                                    }
                                    None => {
                                        self.scratch.push(char::from_u32(val).unwrap());
                                        Esc::None
                                    }
                                    Some(hi) => {
                                        if !(0xDC00..0xE000).contains(&val) {
                                            return Err(self.fail(at, "high surrogate not followed by a low surrogate"));
                                        }
                                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (val - 0xDC00);
                                        self.scratch.push(char::from_u32(cp).unwrap());
                                        Esc::None
                                    }
                                }
                            }
                        }
                        Esc::LowBackslash { hi } => {
                            if b != b'\\' {
                                return Err(self.fail(at, "high surrogate not followed by a low surrogate"));
                            }
                            Esc::LowU { hi }
                        }
                        Esc::LowU { hi } => {
                            if b != b'u' {
                                return Err(self.fail(at, "high surrogate not followed by a low surrogate"));
                            }
                            Esc::Unicode { n: 0, val: 0, hi: Some(hi) }
                        }
                    };
                    self.state = State::Str { key, esc: next };
                    continue;
                }
                State::Number(n) => {
                    let next = match (n, b) {
                        (Num::Minus, b'0') => Some(Num::Zero),
                        (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                        (Num::Int, b'0'..=b'9') => Some(Num::Int),
                        (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                        (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                        (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
                        _ => None,
                    };
                    match next {
                        Some(n2) => {
                            self.scratch.push(b as char);
                            self.state = State::Number(n2);
                            i += 1;
                        }
                        None if n.complete() && !b.is_ascii_digit() => {
                            // The byte ends the number; reprocess it in the next state.
                            self.finish_number(events);
                        }
                        None => return Err(self.fail(at, "invalid number")),
                    }
                    continue;
                }
                State::Literal { word, pos } => {
                    if b != word[pos as usize] {
                        return Err(self.fail(at, "invalid literal"));
                    }
                    i += 1;
                    if pos as usize + 1 == word.len() {
                        let v = match word[0] {
                            b't' => Value::Bool(true),
                            b'f' => Value::Bool(false),
                            _ => Value::Null,
                        };
                        self.complete_value(v, events);
                    } else {
                        self.state = State::Literal { word, pos: pos + 1 };
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
            if is_ws(b) {
                continue;
            }
            match self.state {
                State::Value { close_ok } => match b {
                    b'{' | b'[' => {
                        if self.stack.len() >= MAX_DEPTH {
                            return Err(self.fail(at, format!("nesting deeper than {MAX_DEPTH}")));
                        }
                        if b == b'{' {
                            self.stack.push(Frame::Object { pairs: Vec::new(), key: None });
                            self.state = State::Key { close_ok: true };
                        } else {
                            self.stack.push(Frame::Array(Vec::new()));
                            self.state = State::Value { close_ok: true };
                        }
                    }
                    b']' if close_ok => self.close(events),
                    b'"' => self.state = State::Str { key: false, esc: Esc::None },
                    b'-' => {
                        self.scratch.push('-');
                        self.state = State::Number(Num::Minus);
                    }
                    b'0' => {
                        self.scratch.push('0');
                        self.state = State::Number(Num::Zero);
                    }
                    b'1'..=b'9' => {
                        self.scratch.push(b as char);
                        self.state = State::Number(Num::Int);
                    }
                    b't' => self.state = State::Literal { word: b"true", pos: 1 },
                    b'f' => self.state = State::Literal { word: b"false", pos: 1 },
                    b'n' => self.state = State::Literal { word: b"null", pos: 1 },
                    _ => return Err(self.fail(at, format!("expected a value, found {:?}", b as char))),
                },
                State::Key { close_ok } => match b {
                    b'"' => self.state = State::Str { key: true, esc: Esc::None },
                    b'}' if close_ok => self.close(events),
                    _ => return Err(self.fail(at, format!("expected an object key, found {:?}", b as char))),
                },
                State::Colon => match b {
                    b':' => self.state = State::Value { close_ok: false },
                    _ => return Err(self.fail(at, format!("expected ':', found {:?}", b as char))),
                },
                State::AfterValue => match (self.stack.last(), b) {
                    (Some(Frame::Array(_)), b',') => self.state = State::Value { close_ok: false },
                    (Some(Frame::Object { .. }), b',') => self.state = State::Key { close_ok: false },
                    (Some(Frame::Array(_)), b']') | (Some(Frame::Object { .. }), b'}') => self.close(events),
                    _ => return Err(self.fail(at, format!("expected ',' or a closing bracket, found {:?}", b as char))),
                },
                State::Done => return Err(self.fail(at, "trailing characters after the JSON document")),
                State::Failed | State::Str { .. } | State::Number(_) | State::Literal { .. } => unreachable!(),
            }
        }
        self.offset = base + bytes.len();
        Ok(())
    }

    fn close(&mut self, events: &mut Vec<JsonEvent>) {
        let v = match self.stack.pop().unwrap() {
            Frame::Array(items) => Value::Array(items),
            Frame::Object { pairs, .. } => Value::Object(pairs),
        };
        self.complete_value(v, events);
    }

    /// End of input: completes a top-level number; an incomplete document is an error.
    pub fn finish(&mut self) -> Result<Vec<JsonEvent>, JsonError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut events = Vec::new();
        if let State::Number(n) = self.state {
            if n.complete() && self.stack.is_empty() {
                self.finish_number(&mut events);
            }
        }
        if self.state != State::Done {
            let off = self.offset;
            return Err(self.fail(off, "incomplete JSON document"));
        }
        Ok(events)
    }

    /// The document as far as it goes, like jiter's `partial_mode="trailing-strings"`; `None`
    /// where jiter raises (nothing but whitespace, or an incomplete top-level literal/number).
    pub fn snapshot(&self) -> Option<Value> {
        if self.state == State::Done {
            return self.root.clone();
        }
        let mut partial: Option<Value> = match self.state {
            State::Str { key: false, .. } => Some(Value::Str(self.scratch.clone())),
            State::Number(n) if n.complete() => Some(Value::Number(self.scratch.clone())),
            _ => None,
        };
        for frame in self.stack.iter().rev() {
            partial = Some(match frame {
                Frame::Array(items) => {
                    let mut items = items.clone();
                    items.extend(partial);
                    Value::Array(items)
                }
                Frame::Object { pairs, key } => {
                    let mut pairs = pairs.clone();
                    if let (Some(k), Some(v)) = (key, partial) {
                        pairs.push((k.clone(), v));
                    }
                    Value::Object(pairs)
                }
            });
        }
        partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn snapshots_follow_jiter_rules() {
        let doc = r#"{"a": "x\u00e9\ud83d\ude00y", "b": [1, -2.5e3, true, null], "c": {"d": "e"}}"#;
        let mut p = PartialJsonParser::new(1);
        let mut events = Vec::new();
        for (i, ch) in doc.char_indices() {
            events.extend(p.feed(&doc[i..i + ch.len_utf8()]).unwrap());
            let _ = p.snapshot();
        }
        assert!(p.is_done());
        let keys: Vec<_> = events.iter().map(|e| (e.path.clone(), e.done)).collect();
        assert_eq!(
            keys,
            vec![
                (vec![PathItem::Key("a".into())], false),
                (vec![PathItem::Key("b".into())], false),
                (vec![PathItem::Key("c".into())], false),
                (vec![], true),
            ]
        );
        assert_eq!(events[0].value, s("xé😀y"));

        let mut p = PartialJsonParser::new(1);
        p.feed(r#"{"a": "x\ud83d"#).unwrap();
        assert_eq!(p.snapshot(), Some(Value::Object(vec![("a".into(), s("x"))])));
        p.feed(r#"\ude00", "b": tr"#).unwrap();
        assert_eq!(p.snapshot(), Some(Value::Object(vec![("a".into(), s("x😀"))])));
        p.feed(r#"ue, "c": [1, [12."#).unwrap();
        assert_eq!(
            p.snapshot(),
            Some(Value::Object(vec![
                ("a".into(), s("x😀")),
                ("b".into(), Value::Bool(true)),
                ("c".into(), Value::Array(vec![Value::Number("1".into()), Value::Array(vec![])])),
            ]))
        );
    }

    #[test]
    fn errors_carry_offsets() {
        let mut p = PartialJsonParser::new(1);
        let e = p.feed("[1,]").unwrap_err();
        assert_eq!(e.offset, 3);
        assert_eq!(p.feed("1").unwrap_err(), e);
        let mut p = PartialJsonParser::new(1);
        assert_eq!(p.feed("{\"a\": 01").unwrap_err().offset, 7);
        let mut p = PartialJsonParser::new(1);
        p.feed("{} ").unwrap();
        assert_eq!(p.feed(" x").unwrap_err().offset, 4);
        let mut p = PartialJsonParser::new(1);
        p.feed("12").unwrap();
        assert_eq!(p.snapshot(), Some(Value::Number("12".into())));
        assert_eq!(p.finish().unwrap()[0].value, Value::Number("12".into()));
        let mut p = PartialJsonParser::new(1);
        p.feed("{\"a\"").unwrap();
        assert!(p.finish().is_err());
    }
}
