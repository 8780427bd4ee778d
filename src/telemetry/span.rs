//! What the request path records per span and per log record: small plain values, turned into
//! OTLP protobuf only on the exporter's thread.

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
}

impl SpanRecord {
    pub fn attr(&mut self, key: &'static str, value: impl Into<Value>) {
        self.attributes.push((Cow::Borrowed(key), value.into()));
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
