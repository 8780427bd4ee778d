//! OTLP/HTTP protobuf bodies, built with the OpenTelemetry project's own message types: a batch of
//! spans as an `ExportTraceServiceRequest`, a batch of audit events as an `ExportLogsServiceRequest`.

use super::span::{LogRecord, SpanKind, SpanRecord, Value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::Message;

/// The instrumentation scope of everything the gateway exports.
fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "gatehouse".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn attribute(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(n) => any_value::Value::IntValue(*n),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The resource every batch names: `service.name`, `service.version` unless given, then the
/// configured attributes.
pub fn resource(service_name: &str, extra: &[(String, String)]) -> Resource {
    let mut attributes = vec![string("service.name", service_name)];
    if !extra.iter().any(|(k, _)| k == "service.version") {
        attributes.push(string("service.version", env!("CARGO_PKG_VERSION")));
    }
    attributes.extend(extra.iter().map(|(k, v)| string(k, v)));
    Resource {
        attributes,
        ..Default::default()
    }
}

fn span(r: &SpanRecord) -> trace::Span {
    let kind = match r.kind {
        SpanKind::Server => trace::span::SpanKind::Server,
        SpanKind::Client => trace::span::SpanKind::Client,
        SpanKind::Internal => trace::span::SpanKind::Internal,
    };
    let status = r.error.then(|| trace::Status {
        code: trace::status::StatusCode::Error as i32,
        ..Default::default()
    });
    trace::Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.span_id.to_vec(),
        parent_span_id: r.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        // the W3C trace flags in the low byte: sampled, as every exported span was
        flags: 0x01,
        name: r.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: r.start_ns,
        end_time_unix_nano: r.end_ns.max(r.start_ns),
        attributes: r.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
        status,
        ..Default::default()
    }
}

/// One batch of spans as the body of a POST to `/v1/traces`.
pub fn traces(resource: &Resource, batch: &[SpanRecord]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![trace::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![trace::ScopeSpans {
                scope: Some(scope()),
                spans: batch.iter().map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn log(r: &LogRecord) -> logs::LogRecord {
    logs::LogRecord {
        time_unix_nano: r.time_ns,
        observed_time_unix_nano: r.time_ns,
        severity_number: logs::SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        event_name: r.event_name.clone(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(r.body.to_string())),
        }),
        trace_id: r.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        ..Default::default()
    }
}

/// One batch of audit events as the body of a POST to `/v1/logs`.
pub fn logs(resource: &Resource, batch: &[LogRecord]) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![logs::ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![logs::ScopeLogs {
                scope: Some(scope()),
                log_records: batch.iter().map(log).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::sync::Arc;

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
        };
        r.attr("http.request.method", "GET");
        r.attr("http.response.status_code", 502i64);
        r
    }

    fn text(v: &Option<AnyValue>) -> Option<&str> {
        match v.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn a_span_batch_decodes_as_the_collector_reads_it() {
        let res = resource(
            "edge",
            &[("deployment.environment.name".into(), "prod".into())],
        );
        let body = traces(&res, &[record()]);
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        let keys: Vec<_> = attrs.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "service.name",
                "service.version",
                "deployment.environment.name"
            ]
        );
        assert_eq!(text(&attrs[0].value), Some("edge"));
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "gatehouse");
        let s = &ss.spans[0];
        assert_eq!(
            (s.trace_id.as_slice(), s.span_id.as_slice()),
            (&[1; 16][..], &[2; 8][..])
        );
        assert_eq!(s.parent_span_id, [3; 8]);
        assert_eq!(s.name, "GET /api");
        assert_eq!(s.kind, trace::span::SpanKind::Server as i32);
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000, 3_000)
        );
        assert_eq!(
            s.status.as_ref().unwrap().code,
            trace::status::StatusCode::Error as i32
        );
        assert_eq!(s.attributes[0].key, "http.request.method");
        assert_eq!(
            s.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(502))
        );
    }

    #[test]
    fn a_span_without_error_or_parent_has_neither() {
        let mut r = record();
        (r.error, r.parent_span_id) = (false, None);
        let s = span(&r);
        assert!(s.status.is_none() && s.parent_span_id.is_empty());
    }

    #[test]
    fn a_given_service_version_replaces_the_gateways() {
        let res = resource("g", &[("service.version".into(), "9".into())]);
        let versions: Vec<_> = res
            .attributes
            .iter()
            .filter(|a| a.key == "service.version")
            .collect();
        assert_eq!(versions.len(), 1);
        assert_eq!(text(&versions[0].value), Some("9"));
    }

    #[test]
    fn an_audit_event_is_a_log_record_with_its_json_body_and_trace() {
        let event = LogRecord {
            time_ns: 5,
            trace_id: Some([4; 16]),
            event_name: "dev.gatehouse.request.refused".into(),
            body: Arc::from(r#"{"type":"dev.gatehouse.request.refused"}"#),
        };
        let body = logs(&resource("g", &[]), &[event]);
        let req = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        let l = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(l.event_name, "dev.gatehouse.request.refused");
        assert_eq!(l.trace_id, [4; 16]);
        assert_eq!(
            text(&l.body),
            Some(r#"{"type":"dev.gatehouse.request.refused"}"#)
        );
        assert_eq!(l.severity_text, "INFO");
    }
}
