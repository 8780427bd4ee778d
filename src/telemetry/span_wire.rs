//! A batch of spans as the protobuf of an OTLP `ExportTraceServiceRequest`, written straight from
//! the span records: building the OpenTelemetry message types first cost two allocations per
//! attribute and a second walk to size them, most of a traced request's export. The unit tests
//! hold the bytes to what `prost` writes for the same spans through those types.

use super::span::{SpanKind, SpanRecord, Value};
use prost::encoding::{encode_varint, encoded_len_varint, WireType};

/// The parts every batch repeats, encoded once: the `Resource` and the `InstrumentationScope`.
pub struct Envelope {
    pub resource: Vec<u8>,
    pub scope: Vec<u8>,
}

/// A varint; most are one byte (field keys, short lengths), written without `prost`'s loop.
#[inline(always)]
fn varint(v: u64, buf: &mut Vec<u8>) {
    match u8::try_from(v) {
        Ok(b) if b < 0x80 => buf.push(b),
        _ => long_varint(v, buf),
    }
}

#[cold]
fn long_varint(v: u64, buf: &mut Vec<u8>) {
    encode_varint(v, buf)
}

/// A field's key; every tag here but the flags' (16) fits one byte.
fn field_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | wire_type as u32), buf);
}

fn bytes_field(tag: u32, value: &[u8], buf: &mut Vec<u8>) {
    field_key(tag, WireType::LengthDelimited, buf);
    varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

/// The bytes a length-delimited field of `len` bytes takes with a one-byte key.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// `AnyValue`'s length: one field of its `oneof`.
fn any_value_len(r: &SpanRecord, v: &Value) -> usize {
    match v {
        Value::Int(n) => 1 + encoded_len_varint(*n as u64),
        Value::Bool(_) => 2,
        _ => field_len(r.text_of(v).map_or(0, str::len)),
    }
}

/// A `KeyValue` attribute; one whose key and string value are short (every one a request has but
/// a long path or claim) is written with its lengths in two small runs of bytes.
fn attribute(r: &SpanRecord, key: &str, value: &Value, buf: &mut Vec<u8>) {
    let any = any_value_len(r, value);
    let whole = field_len(key.len()) + field_len(any);
    if let (Ok(whole), Value::Str(_) | Value::Text(..)) = (u8::try_from(whole), value) {
        if whole < 0x80 {
            // every length inside is shorter than the whole, so one byte each
            let text = r.text_of(value).unwrap_or("").as_bytes();
            let (k, a, t) = (key.len() as u8, any as u8, text.len() as u8);
            buf.extend_from_slice(&[9 << 3 | 2, whole, 1 << 3 | 2, k]);
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&[2 << 3 | 2, a, 1 << 3 | 2, t]);
            buf.extend_from_slice(text);
            return;
        }
    }
    field_key(9, WireType::LengthDelimited, buf);
    varint(whole as u64, buf);
    bytes_field(1, key.as_bytes(), buf);
    field_key(2, WireType::LengthDelimited, buf);
    varint(any as u64, buf);
    match value {
        Value::Str(_) | Value::Text(..) => {
            bytes_field(1, r.text_of(value).unwrap_or("").as_bytes(), buf)
        }
        Value::Bool(b) => {
            field_key(2, WireType::Varint, buf);
            varint(u64::from(*b), buf);
        }
        Value::Int(n) => {
            // int64: a negative number is its two's complement, ten bytes long
            field_key(3, WireType::Varint, buf);
            varint(*n as u64, buf);
        }
    }
}

fn kind(k: SpanKind) -> u64 {
    // opentelemetry.proto.trace.v1.Span.SpanKind
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    }
}

/// One `Span`, its fields in the order of their numbers, as `prost` writes them.
fn span(r: &SpanRecord, buf: &mut Vec<u8>) {
    bytes_field(1, &r.trace_id, buf);
    bytes_field(2, &r.span_id, buf);
    if let Some(parent) = &r.parent_span_id {
        bytes_field(4, parent, buf);
    }
    bytes_field(5, r.name.as_bytes(), buf);
    field_key(6, WireType::Varint, buf);
    varint(kind(r.kind), buf);
    for (tag, ns) in [(7, r.start_ns), (8, r.end_ns.max(r.start_ns))] {
        field_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&ns.to_le_bytes());
    }
    for (k, v) in &r.attributes {
        attribute(r, k, v, buf);
    }
    if r.error {
        // Status { code: STATUS_CODE_ERROR }
        field_key(15, WireType::LengthDelimited, buf);
        buf.extend_from_slice(&[2, 3 << 3, 2]);
    }
    // the W3C trace flags in the low byte: sampled, as every exported span was
    field_key(16, WireType::ThirtyTwoBit, buf);
    buf.extend_from_slice(&1u32.to_le_bytes());
}

/// Appends one record (a `Span` or a `LogRecord`, already encoded) to a batch's records.
pub fn push_record(record: &[u8], records: &mut Vec<u8>) {
    bytes_field(2, record, records);
}

/// Starts a batch of `records` bytes (each pushed as by `push_record`) in its envelope: one
/// `ResourceSpans` of one `ScopeSpans` for traces, one `ResourceLogs` of one `ScopeLogs` for
/// logs, whose fields have the same numbers. The records follow.
fn open_batch(envelope: &Envelope, records: usize) -> Vec<u8> {
    let scoped = field_len(envelope.scope.len()) + records;
    let resourced = field_len(envelope.resource.len()) + field_len(scoped);
    let mut out = Vec::with_capacity(field_len(resourced));
    field_key(1, WireType::LengthDelimited, &mut out);
    varint(resourced as u64, &mut out);
    bytes_field(1, &envelope.resource, &mut out);
    field_key(2, WireType::LengthDelimited, &mut out);
    varint(scoped as u64, &mut out);
    bytes_field(1, &envelope.scope, &mut out);
    out
}

/// A batch's records, each pushed by `push_record`, in their envelope.
pub fn wrap(envelope: &Envelope, records: &[u8]) -> Vec<u8> {
    let mut out = open_batch(envelope, records.len());
    out.extend_from_slice(records);
    out
}

/// The bytes `span` writes for `r`, counted without writing them.
fn span_len(r: &SpanRecord) -> usize {
    let parent = r.parent_span_id.map_or(0, |_| field_len(8));
    let attributes: usize = (r.attributes.iter())
        .map(|(k, v)| field_len(field_len(k.len()) + field_len(any_value_len(r, v))))
        .sum();
    let status = if r.error { 4 } else { 0 };
    // ids, kind, the two times and the flags' two-byte key and four bytes
    field_len(16)
        + field_len(8)
        + parent
        + field_len(r.name.len())
        + 2
        + 18
        + attributes
        + status
        + 6
}

/// Appends one span to a batch's records, as `push_record` would its encoding.
pub fn push_span(r: &SpanRecord, records: &mut Vec<u8>) {
    let len = span_len(r);
    records.reserve(field_len(len));
    field_key(2, WireType::LengthDelimited, records);
    varint(len as u64, records);
    span(r, records);
}

/// The first `max` records of `records` (each as `push_record` wrote it): how many, and the bytes
/// they take. A record cut short ends the walk, so its bytes are never sent as a record.
pub fn first_records(records: &[u8], max: usize) -> (usize, usize) {
    let (mut n, mut at) = (0, 0);
    while n < max {
        let Some(mut rest) = records.get(at + 1..) else {
            break;
        };
        let before = rest.len();
        let Ok(len) = prost::encoding::decode_varint(&mut rest) else {
            break;
        };
        let end = at + 1 + (before - rest.len()) + len as usize;
        if end > records.len() {
            break;
        }
        (n, at) = (n + 1, end);
    }
    (n, at)
}

/// One batch of spans as the body of a POST to `/v1/traces`.
#[cfg(test)]
pub fn traces(envelope: &Envelope, batch: &[SpanRecord]) -> Vec<u8> {
    let mut records = Vec::new();
    for r in batch {
        push_span(r, &mut records);
    }
    wrap(envelope, &records)
}

#[cfg(test)]
#[path = "span_wire_tests.rs"]
mod tests;
