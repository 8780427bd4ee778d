//! What the request path records per span and per log record: small plain values; a span is
//! written as protobuf when it ends, a log record on the exporter's thread.

use std::borrow::Cow;
use std::sync::Arc;

/// The span kinds the gateway makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// the request the gateway served
    Server,
    /// a call the gateway made: the upstream, a JWKS or discovery fetch
    Client,
    /// work inside the gateway, such as hashing a secret
    Internal,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
    /// bytes `start..end` of its span's `text`
    Text(u32, u32),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

/// An attribute key: the semantic conventions' names are static; `gatehouse.claim.<name>` is not.
pub type Key = Cow<'static, str>;

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    /// nanoseconds since the Unix epoch
    pub start_ns: u64,
    pub end_ns: u64,
    /// the span's status is ERROR (a 5xx answer, a failed call); otherwise it is left unset
    pub error: bool,
    pub attributes: Vec<(Key, Value)>,
    /// the text of the `Value::Text` attributes, one allocation for all of them: a request's own
    /// strings (its path, host, address, route) would otherwise cost one each
    pub text: String,
}

impl SpanRecord {
    pub fn attr(&mut self, key: &'static str, value: impl Into<Value>) {
        self.attributes.push((Cow::Borrowed(key), value.into()));
    }

    /// An attribute whose value `write` appends to the span's `text`.
    pub fn attr_with(&mut self, key: &'static str, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        write(&mut self.text);
        self.push_text(Cow::Borrowed(key), start);
    }

    /// Records the text from `start` to the end of `text` as the attribute `key`; text past 4 GiB
    /// (which no request's headers reach) is left out.
    pub fn push_text(&mut self, key: Key, start: usize) {
        if let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.text.len())) {
            self.attributes.push((key, Value::Text(start, end)));
        }
    }

    /// An attribute with a copy of `value` in the span's `text`.
    pub fn attr_text(&mut self, key: &'static str, value: &str) {
        self.attr_with(key, |t| t.push_str(value));
    }

    /// A string attribute's value: its own, or its part of the span's `text`.
    pub fn text_of<'a>(&'a self, value: &'a Value) -> Option<&'a str> {
        match value {
            Value::Str(s) => Some(s),
            Value::Text(start, end) => self.text.get(*start as usize..*end as usize),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_attributes_share_one_string_and_read_back_whole() {
        let mut r = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: Cow::Borrowed("GET"),
            kind: SpanKind::Server,
            start_ns: 0,
            end_ns: 0,
            error: false,
            attributes: vec![],
            text: String::new(),
        };
        r.attr_text("url.path", "/a/ü");
        r.attr_with("server.address", |t| t.push_str("example.com"));
        r.attr_text("empty", "");
        r.attr("http.route", "/a");
        let texts: Vec<_> = (r.attributes.iter()).map(|(_, v)| r.text_of(v)).collect();
        assert_eq!(
            texts,
            [Some("/a/ü"), Some("example.com"), Some(""), Some("/a")]
        );
        assert_eq!(r.text, "/a/üexample.com");
        assert_eq!(r.text_of(&Value::Int(1)), None);
    }
}

/// One log record: an audit event as its CloudEvents JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub time_ns: u64,
    /// the trace of the request the event is about, when it was traced
    pub trace_id: Option<[u8; 16]>,
    /// the event's type, e.g. `dev.gatehouse.request.refused`
    pub event_name: String,
    pub body: Arc<str>,
}
