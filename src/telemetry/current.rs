//! The span a request's own work (JWKS and discovery fetches, store calls, secret hashing) is a
//! child of: held in a task-local while the request is judged or answered, so that work needs no
//! handle passed down to it.

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

/// A child span, begun: a CLIENT span's `traceparent` goes on the call it times.
pub struct Call {
    parent: Parent,
    kind: SpanKind,
    span_id: [u8; 8],
    start_ns: u64,
    start: Instant,
    name: Cow<'static, str>,
}

/// Begins a CLIENT span for an outgoing call, when the task serves a traced request.
pub fn call(name: &'static str) -> Option<Call> {
    span(name, SpanKind::Client)
}

/// Runs `work` in an INTERNAL span when the task serves a traced request; `attributes` are made
/// from its outcome, and only then.
pub async fn internal<T>(
    name: &'static str,
    attributes: impl FnOnce(&T) -> Vec<(Key, Value)>,
    work: impl Future<Output = T>,
) -> T {
    let span = span(name, SpanKind::Internal);
    let out = work.await;
    if let Some(s) = span {
        s.finish(attributes(&out), false);
    }
    out
}

/// Begins a child span of the current request's server span (and none when randomness fails).
pub fn span(name: &'static str, kind: SpanKind) -> Option<Call> {
    let parent = CURRENT.try_with(Parent::clone).ok()?;
    let span_id = super::sampler::span_id()?;
    Some(Call {
        start_ns: parent.telemetry.now_ns(),
        start: Instant::now(),
        parent,
        kind,
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
            kind: self.kind,
            start_ns: self.start_ns,
            end_ns: self.start_ns + self.start.elapsed().as_nanos() as u64,
            error,
            attributes,
            text: String::new(),
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

    #[tokio::test]
    async fn internal_work_runs_the_same_traced_or_not() {
        let made = std::cell::Cell::new(false);
        let attrs = |_: &i32| {
            made.set(true);
            vec![]
        };
        assert_eq!(internal("work", attrs, async { 7 }).await, 7);
        // untraced: the attributes are never made
        assert!(!made.get());
    }
}
