//! The audit event of a proxied request: allowed (sampled) or refused (always), from what the
//! request's phases recorded in its context.

use super::ctx::Ctx;
use crate::audit::{Event, Kind, RequestFacts};
use crate::telemetry::TraceParent;
use pingora::proxy::Session;

/// Emits the request's event when the audit stream wants it: refusals always, allowed requests by
/// `allow_sample_ratio`; requests to the gateway's own endpoints have events of their own.
pub fn emit(session: &Session, ctx: &Ctx, status: u16) {
    let audit = &ctx.shared.audit;
    let kind = match (ctx.denial, ctx.route) {
        (Some(_), _) => Kind::RequestRefused,
        (None, Some(_)) if !ctx.signing_in => Kind::RequestAllowed,
        _ => return,
    };
    if !audit.wants(kind) {
        return;
    }
    let config = &ctx.shared.config;
    let principal = ctx.identity.as_ref().map(|i| &i.principal);
    let req = session.req_header();
    // the request's trace when it is traced, else the caller's (read strictly, never echoed)
    let trace = match &ctx.trace {
        Some(t) => Some(t.ids.trace_id),
        None => (req.headers.get(&crate::telemetry::request::TRACEPARENT))
            .and_then(|v| TraceParent::parse(v.as_bytes()))
            .map(|p| p.trace_id),
    };
    let trace_id = trace.map(|t| crate::telemetry::traceparent::hex(&t));
    let facts = RequestFacts {
        route: ctx
            .route
            .and_then(|id| config.route(id))
            .map(|r| r.name.as_str()),
        status,
        reason: ctx.denial.map(crate::observe::DenyReason::as_str),
        rule: ctx.rule.map(|r| r.to_string()),
        subject: principal.and_then(|p| p.subject()),
        client_id: principal.map(|p| p.client_id()).filter(|c| !c.is_empty()),
        issuer: principal
            .and_then(|p| config.issuer(p.issuer))
            .map(|i| i.issuer.as_str()),
        client_address: crate::wire::forwarded::client_ip(session, &config.server.trusted_proxies)
            .map(crate::wire::forwarded::ip_text),
        method: req.method.as_str(),
        path: ctx.log_path.as_deref().unwrap_or_else(|| req.uri.path()),
        trace_id: trace_id.as_deref(),
    };
    audit.emit(|| Event::request(&facts));
}
