//! What a request's server span says: the HTTP semantic conventions' attributes, then the route,
//! the decision and its reason, the issuer and client id, and only the claims `span_claims` lists;
//! never token material.

use super::ctx::Ctx;
use crate::telemetry::request::{method_name, RequestTrace};
use crate::telemetry::{SpanKind, SpanRecord};
use pingora::proxy::Session;
use std::borrow::Cow;

/// The server span of a request that ended with `status` (0: nothing was written).
pub fn server_span(
    session: &Session,
    ctx: &Ctx,
    t: &RequestTrace,
    end_ns: u64,
    (status, failed): (u16, bool),
) -> SpanRecord {
    let req = session.req_header();
    let config = &ctx.shared.config;
    let route = ctx.route.and_then(|id| config.route(id));
    let method = method_name(&req.method);
    let name = match route {
        Some(r) => {
            let mut name = String::with_capacity(method.len() + 1 + r.path_prefix.len());
            name.push_str(method);
            name.push(' ');
            name.push_str(&r.path_prefix);
            Cow::Owned(name)
        }
        None => Cow::Borrowed(method),
    };
    let mut span = SpanRecord {
        trace_id: t.ids.trace_id,
        span_id: t.ids.server,
        parent_span_id: t.ids.parent,
        name,
        kind: SpanKind::Server,
        start_ns: t.start_ns,
        end_ns,
        error: status >= 500 || (status == 0 && failed),
        attributes: Vec::with_capacity(16),
        text: String::with_capacity(128),
    };
    span.attr("http.request.method", method);
    let path = ctx.log_path.as_deref().unwrap_or_else(|| req.uri.path());
    span.attr_text("url.path", path);
    let tls = crate::session::browser::over_tls(session);
    span.attr("url.scheme", if tls { "https" } else { "http" });
    if status != 0 {
        span.attr("http.response.status_code", i64::from(status));
    }
    span.attr("network.protocol.version", protocol_version(req.version));
    if let Some(host) = host(req) {
        span.attr_text("server.address", host);
    }
    let trusted = &config.server.trusted_proxies;
    if let Some(ip) = crate::wire::forwarded::client_ip(session, trusted) {
        span.attr_with("client.address", |t| crate::wire::forwarded::push_ip(t, ip));
    }
    if let Some(r) = route {
        span.attr_text("http.route", &r.path_prefix);
        span.attr_text("gatehouse.route", &r.name);
    }
    decision(&mut span, ctx);
    identity(&mut span, ctx);
    span
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The host the request named (HTTP/2's authority or `Host`), without its port.
fn host(req: &pingora::http::RequestHeader) -> Option<&str> {
    let authority = match req.uri.host() {
        Some(h) => h,
        None => req.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    crate::session::browser::split_authority(authority).map(|(h, _)| h)
}

/// Allowed, refused (with the reason and the failing rule, as the access log names them) or sent
/// to sign in; the gateway's own endpoints decide nothing here.
fn decision(span: &mut SpanRecord, ctx: &Ctx) {
    if let Some(reason) = ctx.denial {
        span.attr("gatehouse.decision", "refuse");
        span.attr("gatehouse.reason", reason.as_str());
        if let Some(rule) = ctx.rule {
            span.attr_with("gatehouse.rule", |t| {
                use std::fmt::Write;
                let _ = write!(t, "{rule}");
            });
        }
    } else if ctx.signing_in {
        span.attr("gatehouse.decision", "sign_in");
    } else if ctx.route.is_some() {
        span.attr("gatehouse.decision", "allow");
    }
}

/// Who the request was: issuer and client id, and the claims listed in `span_claims`.
fn identity(span: &mut SpanRecord, ctx: &Ctx) {
    let Some(id) = &ctx.identity else { return };
    let p = &id.principal;
    if let Some(issuer) = ctx.shared.config.issuer(p.issuer) {
        span.attr_text("gatehouse.issuer", &issuer.issuer);
    }
    if !p.client_id().is_empty() {
        span.attr_text("gatehouse.client_id", p.client_id());
    }
    let listed = ctx.shared.telemetry.span_claims();
    if listed.is_empty() {
        return;
    }
    // the route may not have decoded the claims: then they are read from the verified payload
    let decoded;
    let claims = match &id.claims {
        Some(c) => c,
        None => {
            decoded = crate::auth::principal::decode_claims(id.payload.as_bytes());
            &decoded
        }
    };
    for (name, key) in listed {
        let text = claims
            .get(name)
            .and_then(crate::auth::principal::claim_header_text);
        if let Some(text) = text {
            let start = span.text.len();
            span.text.push_str(&text);
            span.push_text(key.clone(), start);
        }
    }
}
