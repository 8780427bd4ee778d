//! The audit event of a proxied request: allowed (sampled) or refused (always), from what the
//! request's phases recorded in its context.

use super::ctx::Ctx;
use crate::audit::{Event, Kind, RequestFacts};
use pingora::proxy::Session;

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), when well formed and not
/// all zeros; anything else is ignored rather than echoed into the audit stream.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && (parts.next().is_none() || version != "00")
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0');
    ok.then_some(trace)
}

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
    let traceparent = req.headers.get("traceparent").and_then(|v| v.to_str().ok());
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
        trace_id: traceparent.and_then(trace_id),
    };
    audit.emit(|| Event::request(&facts));
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn only_a_well_formed_traceparent_gives_a_trace_id() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-\"injected\"-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
        // a later version may add fields after the flags
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert_eq!(trace_id(later), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
