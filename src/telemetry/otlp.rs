//! OTLP/HTTP protobuf bodies: the resource, the scope and each audit event built with the
//! OpenTelemetry project's own message types, a batch of audit events as an
//! `ExportLogsServiceRequest`; spans are written straight (`span_wire`).

use super::span::LogRecord;
use super::span_wire::{push_record, wrap, Envelope};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::resource::v1::Resource;
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
pub fn logs(envelope: &Envelope, batch: &[LogRecord]) -> Vec<u8> {
    let mut records = Vec::new();
    for r in batch {
        push_record(&log(r).encode_to_vec(), &mut records);
    }
    wrap(envelope, &records)
}

/// The resource and scope of every batch, encoded once. Start-up only.
pub fn envelope(service_name: &str, extra: &[(String, String)]) -> Envelope {
    Envelope {
        resource: resource(service_name, extra).encode_to_vec(),
        scope: scope().encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use std::sync::Arc;

    fn text(v: &Option<AnyValue>) -> Option<&str> {
        match v.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn the_resource_names_the_service_its_version_and_the_configured_attributes() {
        let res = resource(
            "edge",
            &[("deployment.environment.name".into(), "prod".into())],
        );
        let keys: Vec<_> = res.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "service.name",
                "service.version",
                "deployment.environment.name"
            ]
        );
        assert_eq!(text(&res.attributes[0].value), Some("edge"));
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
        let body = logs(&envelope("g", &[]), &[event.clone(), event]);
        let req = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        let rl = &req.resource_logs[0];
        assert_eq!(
            text(&rl.resource.as_ref().unwrap().attributes[0].value),
            Some("g")
        );
        assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "gatehouse");
        let records = &rl.scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        let l = &records[1];
        assert_eq!(l.event_name, "dev.gatehouse.request.refused");
        assert_eq!(l.trace_id, [4; 16]);
        assert_eq!(
            text(&l.body),
            Some(r#"{"type":"dev.gatehouse.request.refused"}"#)
        );
        assert_eq!(l.severity_text, "INFO");
    }
}
