//! The decision about a request, as a value: the target parsed once, built-in endpoints, the route,
//! the body limit, authentication, sessions and policy. It writes no answer; the proxy's
//! `request_filter` renders the `Verdict` in one place.

use super::authenticate::{authenticate, With};
use super::ctx::{Ctx, Shared};
use super::forward_auth::{is_preflight, Dialect};
use super::mcp_call::Call;
use super::proof::Arrival;
use super::routes::{builtin, RouteMatch, Target};
use super::rules;
use super::upstream_request::upstream_path;
use crate::auth::jwt::TokenError;
use crate::config::{AuthMode, Route};
use crate::policy::authorize;
use crate::respond::Rejection;
use crate::session::authenticate::Outcome;
use crate::wire::header_value::content_length;
use crate::wire::path::{host_is_valid, normalise_host, normalise_path};
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// What the gateway does with a request.
pub enum Verdict {
    /// to the route's upstream
    Proxy,
    /// the built-in whoami upstream answers with what it would have been sent
    Whoami,
    /// the forward-auth yes, with the identity headers
    Allow,
    /// one of the gateway's own endpoints answers
    Builtin(Target),
    /// a page load that must sign in first, at this address
    SignIn(String),
    Refuse(Rejection),
}

/// The request's target, parsed once: its path as sent and normalised, and its query.
pub struct RequestTarget<'a> {
    pub raw_path: &'a str,
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
}

impl<'a> RequestTarget<'a> {
    pub fn parse(req: &'a RequestHeader) -> Result<RequestTarget<'a>, Rejection> {
        let raw = std::str::from_utf8(req.raw_path())
            .map_err(|_| Rejection::BadRequest("the path is not UTF-8"))?;
        let (raw_path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        let path = normalise_path(raw_path).map_err(Rejection::BadRequest)?;
        Ok(RequestTarget {
            raw_path,
            path,
            query,
        })
    }
}

/// The host a request names, lower-cased and without its port: the URI's authority (HTTP/2, or an
/// absolute request line), else the one `Host` header, which must be a host.
fn host_of(req: &RequestHeader) -> Result<Option<Cow<'_, str>>, Rejection> {
    let all = req.headers.get_all("host");
    if all.iter().nth(1).is_some() {
        return Err(Rejection::BadRequest("more than one Host header"));
    }
    let header = match req.headers.get("host").map(|h| h.to_str()) {
        Some(Ok(h)) if host_is_valid(h) => Some(h),
        Some(_) => return Err(Rejection::BadRequest("the Host header is not a valid host")),
        None => None,
    };
    Ok(req.uri.host().or(header).map(normalise_host))
}

/// Judges a request on its generation `s`, recording in `ctx` what the answer needs (route,
/// identity, identity JWT, upstream path, the path to log). `tls`: it came over TLS.
pub async fn judge(req: &RequestHeader, tls: bool, s: &Shared, ctx: &mut Ctx) -> Verdict {
    match judged(req, tls, s, ctx).await {
        Ok(v) => v,
        Err(rejection) => Verdict::Refuse(rejection),
    }
}

async fn judged(
    req: &RequestHeader,
    tls: bool,
    s: &Shared,
    ctx: &mut Ctx,
) -> Result<Verdict, Rejection> {
    let target = RequestTarget::parse(req)?;
    if let Cow::Owned(p) = &target.path {
        // An already-normal path is logged from the request itself, without a copy here.
        ctx.log_path = Some(p.clone());
    }
    // the gateway's own endpoints answer browsers themselves; a proxy asking about one of its
    // paths is judged by the routes like any other request
    if ctx.forward_auth.is_none() {
        if let Some(own) = builtin(&target.path, s.tokens.as_ref(), &s.config) {
            return Ok(Verdict::Builtin(own));
        }
    }
    let host = host_of(req)?;
    let matched = match s
        .table
        .lookup(&s.config, host.as_deref(), &target.path, &req.method)
    {
        RouteMatch::Route(id) => id,
        // a proxy asking about a request no route takes is told no: nginx turns a 404 into a 500
        _ if ctx.forward_auth.is_some() => return Err(Rejection::Unrouted),
        RouteMatch::NotFound => return Err(Rejection::NotFound),
        RouteMatch::MethodNotAllowed(m) => return Err(Rejection::MethodNotAllowed(m)),
    };
    ctx.route = Some(matched);
    let route = s.config.route(matched).ok_or(Rejection::NotFound)?;
    admit(req, route, ctx.forward_auth)?;
    if let Some(mcp) = &route.mcp {
        if !super::resource::origin_allowed(req, mcp, &s.public_origin) {
            return Err(Rejection::ForeignOrigin);
        }
    }
    ctx.upstream_path = upstream_path(target.raw_path, &target.path, target.query, route);
    if route.allow_cors_preflight && is_preflight(req) {
        // a browser's preflight never carries credentials; the upstream answers it
        return Ok(passed(s, ctx));
    }
    ctx.identity = authenticate(req, route, &with(s, ctx, tls, &target.path)).await?;
    if let (Some(id), Some(tokens)) = (&ctx.identity, &s.tokens) {
        if tokens.issued_to_removed_client(&id.principal) {
            return Err(Rejection::InvalidToken(TokenError::Revoked));
        }
    }
    if route.auth == AuthMode::Session && ctx.identity.is_none() {
        let Some(tokens) = s.tokens.as_ref() else {
            return Err(Rejection::MissingToken);
        };
        let current = |f| tokens.current_local(f);
        match crate::session::authenticate::authenticate(&tokens.sessions, req, route, tls, current)
            .await?
        {
            Outcome::Identity(id) => ctx.identity = Some(id),
            Outcome::SignIn(to) => return Ok(Verdict::SignIn(to)),
        }
    }
    if let Some(id) = &ctx.identity {
        authorize(id, &route.policy).map_err(Rejection::InsufficientScope)?;
    }
    route_rules(req, &target, host.as_deref(), route, ctx)?;
    if let (Some(id), true, Some(signer)) = (&ctx.identity, route.identity_jwt, &s.identity_signer)
    {
        let key = id.token_key.unwrap_or_default();
        ctx.identity_jwt = signer.header(id, key, matched, &route.name);
    }
    let proxied = ctx.forward_auth.is_none();
    if let (Some(id), Some(tokens), Some(up), true) =
        (&ctx.identity, &s.tokens, &route.upstream, proxied)
    {
        ctx.bearer = tokens.for_upstream(id, up).await?;
    }
    Ok(passed(s, ctx))
}

/// The route's rules, except those that read the MCP call: they are judged once its body is read
/// (`call_rules`).
fn route_rules(
    req: &RequestHeader,
    target: &RequestTarget<'_>,
    host: Option<&str>,
    route: &Route,
    ctx: &Ctx,
) -> Result<(), Rejection> {
    if rules::wait_for_call(req, route) {
        return Ok(());
    }
    let at = rules::Target {
        path: &target.path,
        host,
        query: target.query,
    };
    rules::check(req, &at, route, ctx, None)
}

/// The route's rules for each MCP call a POST's body makes (once, with an empty call, for a body
/// that makes none), on routes whose rules read the call.
pub fn call_rules(
    req: &RequestHeader,
    route: &Route,
    ctx: &Ctx,
    calls: &[Call],
) -> Result<(), Rejection> {
    if !rules::wait_for_call(req, route) {
        return Ok(());
    }
    let target = RequestTarget::parse(req)?;
    let host = host_of(req)?;
    let at = rules::Target {
        path: &target.path,
        host: host.as_deref(),
        query: target.query,
    };
    let named = calls.iter().map(|c| crate::rules::McpCall {
        method: &c.method,
        tool: &c.name,
    });
    let mut asked: Vec<crate::rules::McpCall<'_>> = named.collect();
    if asked.is_empty() {
        asked.push(crate::rules::McpCall::default());
    }
    asked
        .into_iter()
        .try_for_each(|call| rules::check(req, &at, route, ctx, Some(call)))
}

/// What a request is authenticated with on generation `s`; `tls`: it came over TLS.
fn with<'a>(s: &'a Shared, ctx: &Ctx, tls: bool, path: &'a str) -> With<'a> {
    With {
        verifier: &s.verifier,
        config: &s.config,
        dpop: &s.dpop,
        arrival: Arrival {
            forwarded: ctx.from_trusted_proxy,
            // a proxy asking names the client's scheme in X-Forwarded-Proto, else the public one
            scheme: match (ctx.forward_auth, tls) {
                (Some(_), _) => &s.public_scheme,
                (None, true) => "https",
                (None, false) => "http",
            },
            path,
        },
    }
}

/// Whether the route takes the request at all: a forward-auth-only route only questions, and an
/// announced body over the limit is refused before any other work (a chunked one is counted as it
/// streams; the proxy in front holds a forward-auth request's body and enforces its own limits).
fn admit(req: &RequestHeader, route: &Route, front: Option<Dialect>) -> Result<(), Rejection> {
    if front.is_none() && route.upstream.is_none() {
        return Err(Rejection::NotFound);
    }
    if let (Some(max), None) = (route.max_body_bytes, front) {
        if content_length(req).is_some_and(|n| n > max) {
            return Err(Rejection::TooLarge);
        }
    }
    Ok(())
}

/// A request let through: the forward-auth yes, the whoami answer, or the upstream.
fn passed(s: &Shared, ctx: &Ctx) -> Verdict {
    if ctx.forward_auth.is_some() {
        return Verdict::Allow;
    }
    match s.upstream(ctx.route) {
        Some(crate::upstream::UpstreamRuntime::Whoami) => Verdict::Whoami,
        _ => Verdict::Proxy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::testing::get as req;

    #[test]
    fn the_target_is_parsed_once_into_its_parts() {
        let r = req("/a/../b?x=1", &[]);
        let t = RequestTarget::parse(&r).unwrap();
        assert_eq!(
            (t.raw_path, t.path.as_ref(), t.query),
            ("/a/../b", "/b", Some("x=1"))
        );
        let plain = req("/b", &[]);
        let t = RequestTarget::parse(&plain).unwrap();
        assert!(
            matches!(t.path, Cow::Borrowed("/b")),
            "a normal path is not copied"
        );
        let bad = req("/a%2Fb", &[]);
        assert!(matches!(
            RequestTarget::parse(&bad),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn the_host_is_one_valid_host_without_its_port() {
        let r = req("/", &[("host", "API.Example.com:8443")]);
        assert_eq!(host_of(&r).unwrap().as_deref(), Some("api.example.com"));
        assert_eq!(host_of(&req("/", &[])).unwrap(), None);
        let two = req("/", &[("host", "a.test"), ("host", "b.test")]);
        assert!(host_of(&two).is_err());
        assert!(host_of(&req("/", &[("host", "a.test:1:2")])).is_err());
    }
}
