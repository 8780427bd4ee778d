//! Route rules on the proxy path: the request's facts gathered for the route's `allow_if` and
//! `deny_if`, only on routes that have them.

use super::ctx::Ctx;
use crate::config::Route;
use crate::policy::Anonymous;
use crate::respond::Rejection;
use crate::rules::{Caller, Facts, McpCall};
use pingora::http::RequestHeader;

/// Where the request goes, as the route matched it: the normalised path, the host, the raw query.
pub struct Target<'a> {
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub query: Option<&'a str>,
}

/// Judges the request by the route's rules (none: it passes). `mcp`: the call it makes, on MCP
/// routes whose rules read it.
pub fn check(
    req: &RequestHeader,
    target: &Target<'_>,
    route: &Route,
    ctx: &Ctx,
    mcp: Option<McpCall<'_>>,
) -> Result<(), Rejection> {
    let Some(rules) = route.rules.as_deref() else {
        return Ok(());
    };
    let s = &ctx.shared;
    // the forwarding chain is read only for rules that ask where the client is
    let client_ip = match rules.reads_client() {
        true => ctx.peer.map(|peer| {
            crate::wire::forwarded::client_ip_from(peer, req, &s.config.server.trusted_proxies)
        }),
        false => None,
    };
    let caller: &dyn Caller = match &ctx.identity {
        Some(id) => id,
        None => &Anonymous,
    };
    let facts = Facts {
        caller,
        method: req.method.as_str(),
        path: target.path,
        host: target.host.unwrap_or_default(),
        query: target.query,
        headers: &req.headers,
        client_ip,
        now: s.clock.now(),
        mcp: route.mcp.as_ref().map(|_| mcp.unwrap_or_default()),
    };
    rules.judge(&facts).map_err(Rejection::RuleDenied)
}

/// Whether the rules wait for the body: a POST on an MCP route whose rules read the call.
pub fn wait_for_call(req: &RequestHeader, route: &Route) -> bool {
    route.mcp.is_some()
        && req.method == http::Method::POST
        && route.rules.as_deref().is_some_and(|r| r.reads_mcp())
}
