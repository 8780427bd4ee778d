//! The trace a served request carries from phase to phase: sampled from the caller's
//! `traceparent`, and sent on to the upstream with the upstream span's id.

use super::{SpanIds, Telemetry, TraceParent};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::time::Duration;

// the header names as values, so a lookup does not parse them each time
pub(crate) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// What a traced request carries from phase to phase.
pub struct RequestTrace {
    pub ids: SpanIds,
    /// the request's start, in nanoseconds since the Unix epoch; later times are offsets from it
    pub start_ns: u64,
    /// the caller's `tracestate`, passed on with its trace
    pub tracestate: Option<http::HeaderValue>,
    /// when the upstream was first asked for, since the request's start
    pub upstream_from: Option<Duration>,
    /// when the connection to the upstream was ready, since the request's start, and whether it
    /// was one already open
    pub connected: Option<(Duration, bool)>,
}

/// Decides whether the request is traced (the caller's `traceparent`, then `sample_ratio`).
pub fn begin(
    session: &Session,
    telemetry: &Telemetry,
    since: Duration,
) -> Option<Box<RequestTrace>> {
    let headers = &session.req_header().headers;
    let ids = telemetry.sample(headers.get(&TRACEPARENT).map(|v| v.as_bytes()))?;
    // a caller's tracestate belongs to its trace: a trace begun here does not carry it on
    let tracestate = match ids.parent {
        Some(_) => headers.get(&TRACESTATE).cloned(),
        None => None,
    };
    let start_ns = telemetry.now_ns().saturating_sub(since.as_nanos() as u64);
    Some(Box::new(RequestTrace {
        ids,
        start_ns,
        tracestate,
        upstream_from: None,
        connected: None,
    }))
}

/// Sends the trace on to the upstream: the client's trace id kept, the upstream span's id.
pub fn propagate(t: &RequestTrace, up: &mut RequestHeader) -> pingora::Result<()> {
    let traceparent = TraceParent {
        trace_id: t.ids.trace_id,
        span_id: t.ids.upstream,
        sampled: true,
    };
    up.insert_header(TRACEPARENT, traceparent.format())?;
    match &t.tracestate {
        Some(state) => up.insert_header(TRACESTATE, state.clone())?,
        // a tracestate the caller sent with a trace not followed is not passed on
        None if up.headers.contains_key(&TRACESTATE) => {
            up.remove_header(&TRACESTATE);
        }
        None => {}
    }
    Ok(())
}

/// The method as the semantic conventions name it: a method outside the known set is `_OTHER`.
pub fn method_name(m: &http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "_OTHER",
    }
}
