//! The span a request's own outgoing calls (JWKS and discovery fetches) are children of: held in a
//! task-local while the request is judged, so those calls need no handle passed down to them.

use super::span::{Key, SpanKind, SpanRecord, Value};
use super::traceparent::TraceParent;
use super::Telemetry;
use std::borrow::Cow;
use std::future::Future;
use std::time::Instant;

tokio::task_local! {
    static CURRENT: Parent;
}

/// A traced request's server span, as a parent of its calls.
#[derive(Clone)]
pub struct Parent {
    pub telemetry: Telemetry,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// Runs `work` with `parent` as the current span; an untraced request runs it as it is.
pub async fn within<F: Future>(parent: Option<Parent>, work: F) -> F::Output {
    match parent {
        Some(p) => CURRENT.scope(p, work).await,
        None => work.await,
    }
}

/// A CLIENT span of an outgoing call, begun: its `traceparent` goes on the call.
pub struct Call {
    parent: Parent,
    span_id: [u8; 8],
    start_ns: u64,
    start: Instant,
    name: Cow<'static, str>,
}

/// Begins a span for a call, when the task serves a traced request (and randomness is there).
pub fn call(name: &'static str) -> Option<Call> {
    let parent = CURRENT.try_with(Parent::clone).ok()?;
    let mut span_id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut span_id).ok()?;
    if span_id == [0; 8] {
        return None;
    }
    Some(Call {
        start_ns: parent.telemetry.now_ns(),
        start: Instant::now(),
        parent,
        span_id,
        name: Cow::Borrowed(name),
    })
}

impl Call {
    /// The `traceparent` the callee receives: this trace, this span, sampled.
    pub fn traceparent(&self) -> String {
        TraceParent {
            trace_id: self.parent.trace_id,
            span_id: self.span_id,
            sampled: true,
        }
        .format()
    }

    /// Ends the span and queues it for export.
    pub fn finish(self, attributes: Vec<(Key, Value)>, error: bool) {
        let span = SpanRecord {
            trace_id: self.parent.trace_id,
            span_id: self.span_id,
            parent_span_id: Some(self.parent.span_id),
            name: self.name,
            kind: SpanKind::Client,
            start_ns: self.start_ns,
            end_ns: self.start_ns + self.start.elapsed().as_nanos() as u64,
            error,
            attributes,
        };
        self.parent.telemetry.record(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_outside_a_traced_request_have_no_span() {
        assert!(call("GET").is_none());
        let inside = within(None, async { call("GET").is_none() }).await;
        assert!(inside);
    }

    #[tokio::test]
    async fn a_call_inside_a_traced_request_is_its_child() {
        let parent = Parent {
            telemetry: Telemetry::default(),
            trace_id: [5; 16],
            span_id: [6; 8],
        };
        let c = within(Some(parent), async { call("GET") }).await.unwrap();
        let tp = TraceParent::parse(c.traceparent().as_bytes()).unwrap();
        assert_eq!(tp.trace_id, [5; 16]);
        assert_ne!(tp.span_id, [6; 8]);
        assert!(tp.sampled);
    }
}
