//! The spans of a request: a SERVER span named by its route, and a CLIENT span for the call to
//! its upstream, whose id the upstream received as its parent in `traceparent`.

use super::ctx::Ctx;
use crate::telemetry::current::Parent;
use crate::telemetry::request::method_name;
use crate::telemetry::{SpanKind, SpanRecord};
use pingora::proxy::Session;
use std::borrow::Cow;

/// The request's server span as the parent of the calls made while judging it.
pub fn parent(ctx: &Ctx) -> Option<Parent> {
    let t = ctx.trace.as_ref()?;
    Some(Parent {
        telemetry: ctx.shared.telemetry.clone(),
        trace_id: t.ids.trace_id,
        span_id: t.ids.server,
    })
}

/// Ends the request's spans and queues them; `failed`: the request ended in an error.
pub fn finish(session: &Session, ctx: &mut Ctx, (status, grpc): (u16, Option<u8>), failed: bool) {
    let Some(t) = ctx.trace.take() else { return };
    let end_ns = t.start_ns + ctx.start.elapsed().as_nanos() as u64;
    let telemetry = ctx.shared.telemetry.clone();
    if let (Some(from), Some(peer)) = (t.upstream_from, ctx.tried.last()) {
        let mut span = SpanRecord {
            trace_id: t.ids.trace_id,
            span_id: t.ids.upstream,
            parent_span_id: Some(t.ids.server),
            name: Cow::Borrowed(method_name(&session.req_header().method)),
            kind: SpanKind::Client,
            start_ns: t.start_ns + from.as_nanos() as u64,
            end_ns,
            error: failed || status >= 500,
            attributes: Vec::with_capacity(5),
            text: String::with_capacity(16),
        };
        span.attr(
            "http.request.method",
            method_name(&session.req_header().method),
        );
        span.attr_with("server.address", |t| {
            crate::wire::forwarded::push_ip(t, peer.ip())
        });
        span.attr("server.port", i64::from(peer.port()));
        if status != 0 {
            span.attr("http.response.status_code", i64::from(status));
        }
        if let Some((at, reused)) = t.connected {
            span.attr(
                "gatehouse.upstream.connection",
                if reused { "reused" } else { "new" },
            );
            if !reused {
                if let Some(c) = connect_span(&span, peer, t.start_ns + at.as_nanos() as u64) {
                    telemetry.record(c);
                }
            }
        }
        telemetry.record(span);
    }
    let mut span = super::trace_attributes::server_span(session, ctx, &t, end_ns, (status, failed));
    if let Some(g) = grpc {
        // the semantic conventions' name for the status a gRPC call ended with
        span.attr("rpc.grpc.status_code", i64::from(g));
    }
    telemetry.record(span);
}

/// A new connection's setup (TCP, and TLS to an HTTPS upstream) as a child of the upstream span:
/// from asking for the upstream until the connection was ready. None when no id can be drawn.
fn connect_span(
    upstream: &SpanRecord,
    peer: &std::net::SocketAddr,
    end_ns: u64,
) -> Option<SpanRecord> {
    let span_id = crate::telemetry::sampler::span_id()?;
    let mut span = SpanRecord {
        trace_id: upstream.trace_id,
        span_id,
        parent_span_id: Some(upstream.span_id),
        name: Cow::Borrowed("connect"),
        kind: SpanKind::Internal,
        start_ns: upstream.start_ns,
        end_ns: end_ns.max(upstream.start_ns),
        error: false,
        attributes: Vec::with_capacity(2),
        text: String::with_capacity(16),
    };
    span.attr_with("network.peer.address", |t| {
        crate::wire::forwarded::push_ip(t, peer.ip())
    });
    span.attr("network.peer.port", i64::from(peer.port()));
    Some(span)
}
