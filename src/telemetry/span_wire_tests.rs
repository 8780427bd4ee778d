//! The spans' protobuf against `prost`'s encoding of the OpenTelemetry message types for the same
//! spans, byte for byte, and as the collector decodes it.

use super::*;
use crate::telemetry::otlp;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::Message;
use std::borrow::Cow;

/// The same span through the message types, as `prost` would write it.
fn reference_span(r: &SpanRecord) -> trace::Span {
    let kind = match r.kind {
        SpanKind::Server => trace::span::SpanKind::Server,
        SpanKind::Client => trace::span::SpanKind::Client,
        SpanKind::Internal => trace::span::SpanKind::Internal,
    };
    let attributes = (r.attributes.iter())
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(match v {
                    Value::Int(n) => any_value::Value::IntValue(*n),
                    Value::Bool(b) => any_value::Value::BoolValue(*b),
                    _ => any_value::Value::StringValue(r.text_of(v).unwrap().to_string()),
                }),
            }),
            ..Default::default()
        })
        .collect();
    trace::Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.span_id.to_vec(),
        parent_span_id: r.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x01,
        name: r.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: r.start_ns,
        end_time_unix_nano: r.end_ns.max(r.start_ns),
        attributes,
        status: r.error.then(|| trace::Status {
            code: trace::status::StatusCode::Error as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn reference(service: &str, batch: &[SpanRecord]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![trace::ResourceSpans {
            resource: Some(otlp::resource(service, &[])),
            scope_spans: vec![trace::ScopeSpans {
                scope: Some(
                    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: "gatehouse".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    },
                ),
                spans: batch.iter().map(reference_span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn record() -> SpanRecord {
    let mut r = SpanRecord {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: Some([3; 8]),
        name: Cow::Borrowed("GET /api"),
        kind: SpanKind::Server,
        start_ns: 1_000,
        end_ns: 3_000,
        error: true,
        attributes: vec![],
        text: String::new(),
    };
    r.attr("http.request.method", "GET");
    r.attr_text("url.path", "/api/ü");
    r.attr("http.response.status_code", 502i64);
    r.attr("gatehouse.active", Value::Bool(true));
    r
}

#[test]
fn the_bytes_are_prosts_for_every_kind_of_span_and_value() {
    let mut quiet = record();
    (quiet.error, quiet.parent_span_id, quiet.kind) = (false, None, SpanKind::Client);
    quiet.attr("gatehouse.active", Value::Bool(false));
    quiet.attr("negative", -1i64);
    quiet.attr("zero", 0i64);
    quiet.attr("large", i64::MAX);
    quiet.attr("empty", "");
    // a string longer than 127 bytes takes a two-byte length
    quiet.attr("url.path", "/a".repeat(300));
    quiet.attr_text("server.address", &"h".repeat(200));
    let mut inner = record();
    (inner.kind, inner.end_ns) = (SpanKind::Internal, 10);
    inner.name = Cow::Owned("ü".repeat(100));
    for batch in [vec![], vec![record()], vec![record(), quiet, inner]] {
        let env = otlp::envelope("edge", &[]);
        assert_eq!(
            traces(&env, &batch),
            reference("edge", &batch),
            "{batch:#?}"
        );
    }
}

#[test]
fn a_span_batch_decodes_as_the_collector_reads_it() {
    let env = otlp::envelope("edge", &[("k".into(), "v".into())]);
    let body = traces(&env, &[record(), record()]);
    let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let rs = &req.resource_spans[0];
    assert_eq!(rs.resource.as_ref().unwrap().attributes.len(), 3);
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.scope.as_ref().unwrap().name, "gatehouse");
    assert_eq!(ss.spans.len(), 2);
    let s = &ss.spans[0];
    assert_eq!(s.parent_span_id, [3; 8]);
    assert_eq!(s.name, "GET /api");
    assert_eq!(s.kind, trace::span::SpanKind::Server as i32);
    assert_eq!(
        s.status.as_ref().unwrap().code,
        trace::status::StatusCode::Error as i32
    );
    let value = |i: usize| s.attributes[i].value.as_ref().unwrap().value.clone();
    assert_eq!(
        value(1),
        Some(any_value::Value::StringValue("/api/ü".into()))
    );
    assert_eq!(value(2), Some(any_value::Value::IntValue(502)));
}

#[test]
fn a_batch_is_cut_at_whole_records_only() {
    let mut long = record();
    long.attr("url.path", "/b".repeat(200));
    let mut records = Vec::new();
    for r in [record(), long, record()] {
        push_span(&r, &mut records);
    }
    let mut one = Vec::new();
    push_span(&record(), &mut one);
    assert_eq!(first_records(&records, 1), (1, one.len()));
    assert_eq!(first_records(&records, 3), (3, records.len()));
    assert_eq!(first_records(&records, 9), (3, records.len()));
    assert_eq!(first_records(&records, 0), (0, 0));
    // a record cut short is not counted, nor are its bytes
    let cut = &records[..records.len() - 1];
    let (n, len) = first_records(cut, 9);
    assert_eq!((n, len), (2, records.len() - one.len()));
    assert_eq!(first_records(&[0x12], 9), (0, 0));
}
