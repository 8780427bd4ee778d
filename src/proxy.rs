//! The Pingora `ProxyHttp` implementation: phase wiring only; each step lives in its own module.

use crate::auth::principal::{decode_claims, Principal};
use crate::auth::{AuthError, Verifier};
use crate::config::{AuthMode, Config, Route, TokenSources};
use crate::error::{send, send_json, Rejection};
use crate::headers::{set_claim_headers, strip_identity_headers};
use crate::path::{normalise_host, normalise_path};
use crate::policy::authorize;
use crate::routes::{RouteMatch, RouteTable};
use crate::telemetry::Metrics;
use crate::upstream::{whoami_body, UpstreamRuntime};
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderName;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorSource;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything a request needs, built once at start-up.
pub struct Shared {
    pub config: Arc<Config>,
    pub table: RouteTable,
    pub verifier: Arc<Verifier>,
    /// the authorization server, when configured
    pub tokens: Option<crate::token::TokenService>,
    pub upstreams: Vec<UpstreamRuntime>,
    /// every configured claim header name, removed from every request
    pub claim_names: Vec<HeaderName>,
    pub metrics: Metrics,
}

/// The proxy; `admin` instances answer only /healthz and /metrics.
pub struct Gateway {
    pub shared: Arc<Shared>,
    pub admin: bool,
}

pub struct Ctx {
    start: Instant,
    route: Option<usize>,
    principal: Option<Arc<Principal>>,
    /// the token's payload segment (X-Auth-Claims) and, for routes that read claims, the claims
    payload: Option<http::HeaderValue>,
    claims: Option<serde_json::Value>,
    upstream_path: Option<String>,
    tried: Vec<SocketAddr>,
    denial: Option<&'static str>,
    log_path: Option<String>,
}

enum Decision {
    Proxy,
    Answered,
}

/// True when a query parameter's name, percent-decoded, is one the route takes tokens from: a backend
/// decodes `access%5Ftoken` to `access_token`, so the gateway must too.
fn is_token_param(raw_name: &str, names: &[String]) -> bool {
    if !raw_name.contains('%') {
        return names.iter().any(|n| n == raw_name);
    }
    let decoded = percent_encoding::percent_decode_str(raw_name).decode_utf8_lossy();
    names.iter().any(|n| *n == decoded)
}

/// Finds the bearer token where the route allows it; two places, or two headers, are a bad request.
pub fn extract_token<'a>(
    req: &'a RequestHeader,
    from: &TokenSources,
    max_bytes: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    use crate::auth::jwt::TokenError::Malformed;
    // At most one token may be found; a second is an error, so no list is needed.
    let mut token: Option<Cow<'a, str>> = None;
    let mut found = |t: Cow<'a, str>| {
        if token.replace(t).is_some() {
            Err(Rejection::BadRequest(
                "the token was sent in more than one place",
            ))
        } else {
            Ok(())
        }
    };
    if from.header {
        let mut values = req.headers.get_all("authorization").iter();
        if let Some(v) = values.next() {
            if values.next().is_some() {
                return Err(Rejection::BadRequest("more than one Authorization header"));
            }
            if v.len() > max_bytes + 7 {
                return Err(Rejection::InvalidToken(Malformed(
                    "the token is longer than the gateway accepts",
                )));
            }
            let v = v.to_str().map_err(|_| {
                Rejection::InvalidToken(Malformed("the Authorization header is not ASCII"))
            })?;
            match v.split_once(' ') {
                Some((scheme, t))
                    if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() =>
                {
                    found(Cow::Borrowed(t.trim()))?
                }
                _ => {
                    return Err(Rejection::InvalidToken(Malformed(
                        "the Authorization header is not a Bearer token",
                    )))
                }
            }
        }
    }
    if !from.query.is_empty() {
        if let Some(q) = req.uri.query() {
            for pair in q.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if is_token_param(name, &from.query) {
                    found(percent_encoding::percent_decode_str(value).decode_utf8_lossy())?;
                }
            }
        }
    }
    if !from.cookie.is_empty() {
        for h in req.headers.get_all("cookie") {
            let Ok(h) = h.to_str() else { continue };
            for c in h.split(';') {
                if let Some((name, value)) = c.trim().split_once('=') {
                    if from.cookie.iter().any(|n| n == name) {
                        found(Cow::Borrowed(value.trim_matches('"')))?;
                    }
                }
            }
        }
    }
    if let Some(t) = &token {
        if t.len() > max_bytes {
            return Err(Rejection::InvalidToken(Malformed(
                "the token is longer than the gateway accepts",
            )));
        }
        if t.is_empty() {
            return Err(Rejection::InvalidToken(Malformed("the token is empty")));
        }
    }
    Ok(token)
}

/// The path and query sent upstream when they differ from what the client sent: normalised, prefix
/// stripped if asked, query tokens removed. `None` means the request target goes upstream unchanged.
pub fn upstream_path(
    raw_path: &str,
    normalised: &str,
    query: Option<&str>,
    route: &Route,
) -> Option<String> {
    let strip = route.strip_prefix && route.path_prefix != "/";
    let drop_param = |p: &&str| {
        let name = p.split_once('=').map(|(n, _)| n).unwrap_or(p);
        !p.is_empty() && !is_token_param(name, &route.token_from.query)
    };
    let query_changes = query.is_some_and(|q| {
        !route.token_from.query.is_empty() && q.split('&').any(|p| !drop_param(&p))
    });
    if !strip && !query_changes && raw_path == normalised {
        return None;
    }
    let mut out = if strip {
        let rest = normalised.get(route.path_prefix.len()..).unwrap_or("");
        if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        }
    } else {
        normalised.to_string()
    };
    if let Some(q) = query {
        let kept: Vec<&str> = q.split('&').filter(drop_param).collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    Some(out)
}

/// Drops the cookies that carried the token, keeping the others.
fn strip_token_cookies(req: &mut RequestHeader, names: &[String]) -> Result<()> {
    let mut kept = Vec::new();
    for h in req.headers.get_all("cookie") {
        let Ok(h) = h.to_str() else { continue };
        for c in h.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let name = c.split_once('=').map(|(n, _)| n).unwrap_or(c);
            if !names.iter().any(|n| n == name) {
                kept.push(c.to_string());
            }
        }
    }
    while req.remove_header("cookie").is_some() {}
    if !kept.is_empty() {
        req.insert_header("cookie", kept.join("; "))?;
    }
    Ok(())
}

/// Ambiguous message framing (RFC 9112 §6.3): refused outright rather than guessed, so no hop can disagree.
pub fn framing_problem(session: &Session) -> Option<&'static str> {
    let h = &session.req_header().headers;
    let mut te = h.get_all("transfer-encoding").iter();
    let mut cl = h.get_all("content-length").iter();
    let (te1, te2) = (te.next(), te.next());
    let (cl1, cl2) = (cl.next(), cl.next());
    if te1.is_some() && (cl1.is_some() || raw_content_length(session)) {
        return Some("Content-Length and Transfer-Encoding together");
    }
    if te2.is_some() || te1.is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        return Some("a Transfer-Encoding other than chunked");
    }
    if cl2.is_some()
        || cl1.is_some_and(|v| v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit))
    {
        return Some("an invalid or repeated Content-Length");
    }
    None
}

/// Pingora drops Content-Length when Transfer-Encoding is present; the raw HTTP/1 header still shows it.
fn raw_content_length(session: &Session) -> bool {
    match session.as_downstream() {
        pingora::protocols::http::ServerSession::H1(h1) => h1
            .get_headers_raw_bytes()
            .split(|b| *b == b'\n')
            .any(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:")),
        _ => false,
    }
}

impl Gateway {
    fn route(&self, ctx: &Ctx) -> Option<&Route> {
        ctx.route.and_then(|i| self.shared.config.routes.get(i))
    }

    /// Shapes the request a backend receives: path, token removal, identity headers, forwarding headers.
    fn prepare_upstream(&self, session: &Session, up: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        let Some(route) = self.route(ctx) else {
            return Ok(());
        };
        if let Some(p) = &ctx.upstream_path {
            up.set_raw_path(p.as_bytes())?;
        }
        if !route.forward_token {
            up.remove_header("authorization");
            if !route.token_from.cookie.is_empty() {
                strip_token_cookies(up, &route.token_from.cookie)?;
            }
        }
        if let (Some(p), Some(payload)) = (&ctx.principal, &ctx.payload) {
            set_claim_headers(up, &route.claim_headers, p, payload, ctx.claims.as_ref())?;
        }
        let req = session.req_header();
        let hop = crate::forwarded::Hop {
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            host: req
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok())),
            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        };
        crate::forwarded::set_forwarding_headers(
            up,
            &hop,
            &self.shared.config.server.trusted_proxies,
        )?;
        Ok(())
    }

    async fn decide(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<Decision, Rejection> {
        let s = &self.shared;
        if let Some(problem) = framing_problem(session) {
            return Err(Rejection::BadRequest(problem));
        }
        let req = session.req_header();
        let raw = std::str::from_utf8(req.raw_path())
            .map_err(|_| Rejection::BadRequest("the path is not UTF-8"))?;
        let (raw_path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        if raw_path == "/healthz" {
            return Ok(self.answer(session, 200, r#"{"status":"ok"}"#.into()).await);
        }
        if let Some(tokens) = &s.tokens {
            if crate::token::TokenService::owns(raw_path) {
                let path = raw_path.to_string();
                ctx.log_path = Some(path.clone());
                if let Err(e) = tokens.handle(session, &path).await {
                    tracing::debug!(error = %e, "could not answer a token-service request");
                }
                return Ok(Decision::Answered);
            }
        }
        let path = normalise_path(raw_path).map_err(Rejection::BadRequest)?;
        let host = req
            .uri
            .host()
            .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()))
            .map(normalise_host);
        let found = s
            .table
            .lookup(&s.config.routes, host.as_deref(), &path, &req.method);
        if let Cow::Owned(p) = &path {
            // An already-normal path is logged from the request itself, without a copy here.
            ctx.log_path = Some(p.clone());
        }
        let idx = match found {
            RouteMatch::Route(i) => i,
            RouteMatch::NotFound => return Err(Rejection::NotFound),
            RouteMatch::MethodNotAllowed(m) => return Err(Rejection::MethodNotAllowed(m)),
        };
        ctx.route = Some(idx);
        let route = &s.config.routes[idx];
        ctx.upstream_path = upstream_path(raw_path, &path, query, route);
        if route.auth != AuthMode::Public {
            let token = extract_token(req, &route.token_from, s.config.validation.max_token_bytes)?;
            match token {
                None if route.auth == AuthMode::Required => return Err(Rejection::MissingToken),
                None => {}
                Some(t) => {
                    let p = s
                        .verifier
                        .verify(&t, &route.issuers)
                        .await
                        .map_err(|e| match e {
                            AuthError::Token(t) => Rejection::InvalidToken(t),
                            AuthError::KeysUnavailable { retry_after } => {
                                Rejection::KeysUnavailable { retry_after }
                            }
                        })?;
                    // The route's audiences, or the issuer's default for routes (the gateway's own
                    // issuer: the token service's `audience`, not every client's).
                    let accepted = route.audiences.as_deref().or_else(|| {
                        s.config
                            .issuers
                            .get(p.issuer)
                            .and_then(|i| i.route_audiences.as_deref())
                    });
                    if accepted.is_some_and(|a| !p.has_audience(a)) {
                        return Err(Rejection::InvalidToken(
                            crate::auth::jwt::TokenError::Audience,
                        ));
                    }
                    let segment = t.split('.').nth(1).unwrap_or_default();
                    ctx.payload = http::HeaderValue::from_str(segment).ok();
                    if route.needs_claims {
                        ctx.claims = Some(decode_claims(segment.as_bytes()));
                    }
                    ctx.principal = Some(p.clone());
                    authorize(&p, &route.policy, ctx.claims.as_ref())
                        .map_err(Rejection::InsufficientScope)?;
                }
            }
        }
        if let Some(UpstreamRuntime::Whoami) = s.upstreams.get(route.upstream) {
            let mut up = session.req_header().clone();
            let body = match self.prepare_upstream(session, &mut up, ctx) {
                Ok(()) => whoami_body(&up, &route.name),
                Err(_) => return Err(Rejection::BadRequest("the request cannot be forwarded")),
            };
            return Ok(self.answer(session, 200, body).await);
        }
        Ok(Decision::Proxy)
    }

    async fn answer(&self, session: &mut Session, status: u16, body: String) -> Decision {
        if let Err(e) = send_json(session, status, &[], body).await {
            tracing::debug!(error = %e, "could not write a response");
        }
        Decision::Answered
    }

    async fn admin(&self, session: &mut Session) -> Result<bool> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => send_json(session, 200, &[], r#"{"status":"ok"}"#.into()).await?,
            "/metrics" => {
                let body = self.shared.metrics.render(&self.gauges());
                send(
                    session,
                    200,
                    "text/plain; version=0.0.4",
                    &[],
                    Bytes::from(body),
                )
                .await?
            }
            _ => Rejection::NotFound.respond(session).await?,
        }
        Ok(true)
    }

    fn gauges(&self) -> Vec<(String, u64)> {
        let s = &self.shared;
        let mut g = vec![
            (
                "gatehouse_verified_tokens_cached".to_string(),
                s.verifier.cached_tokens(),
            ),
            (
                "gatehouse_verified_tokens_cached_bytes".to_string(),
                s.verifier.cached_bytes(),
            ),
        ];
        for (issuer, ok, failed) in s.verifier.jwks.fetch_counts() {
            g.push((
                format!("gatehouse_jwks_fetches_total{{issuer=\"{issuer}\",result=\"ok\"}}"),
                ok,
            ));
            g.push((
                format!("gatehouse_jwks_fetches_total{{issuer=\"{issuer}\",result=\"error\"}}"),
                failed,
            ));
        }
        for u in &s.upstreams {
            if let UpstreamRuntime::Pool(p) = u {
                for b in p.lb.backends().get_backend().iter() {
                    let healthy = p.lb.backends().ready(b) as u64;
                    g.push((
                        format!(
                            "gatehouse_upstream_peer_healthy{{upstream=\"{}\",peer=\"{}\"}}",
                            p.name, b.addr
                        ),
                        healthy,
                    ));
                }
            }
        }
        g
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            route: None,
            principal: None,
            payload: None,
            claims: None,
            upstream_path: None,
            tried: Vec::new(),
            denial: None,
            log_path: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.admin {
            return self.admin(session).await;
        }
        let s = &self.shared;
        // The gateway owns identity headers: every client-sent copy goes first, on every route.
        strip_identity_headers(
            session.req_header_mut(),
            &s.claim_names,
            s.config.server.strip_override_headers,
        );
        match self.decide(session, ctx).await {
            Ok(Decision::Proxy) => Ok(false),
            Ok(Decision::Answered) => Ok(true),
            Err(rej) => {
                ctx.denial = Some(rej.reason());
                rej.respond(session).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let upstream = self.route(ctx).map(|r| r.upstream);
        let Some(UpstreamRuntime::Pool(pool)) = upstream.and_then(|u| self.shared.upstreams.get(u))
        else {
            return Error::e_explain(HTTPStatus(502), "route has no proxied upstream");
        };
        let Some(addr) = pool.select(&ctx.tried) else {
            return Error::e_explain(HTTPStatus(503), "no healthy peer");
        };
        ctx.tried.push(addr);
        Ok(Box::new(pool.peer(addr)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let upstream = self.route(ctx).map(|r| r.upstream);
        if let Some(UpstreamRuntime::Pool(pool)) =
            upstream.and_then(|u| self.shared.upstreams.get(u))
        {
            // A failed connect sent nothing upstream, so another peer may take the request.
            if ctx.tried.len() <= pool.cfg.retries && ctx.tried.len() < pool.cfg.peers.len() {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.prepare_upstream(session, up, ctx)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            HTTPStatus(c) => *c,
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => 502,
            ReadTimedout | WriteTimedout => 504,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ReadError | WriteError | ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if code > 0 {
            let (err, desc) = match code {
                502 => ("bad_gateway", "the upstream could not be reached"),
                503 => (
                    "no_healthy_upstream",
                    "no healthy upstream peer is available",
                ),
                504 => ("gateway_timeout", "the upstream did not answer in time"),
                400 => ("invalid_request", "the request could not be read"),
                _ => ("internal_error", "the gateway could not handle the request"),
            };
            let body = Bytes::from(
                serde_json::json!({"error": err, "error_description": desc}).to_string(),
            );
            if let Ok(mut r) = ResponseHeader::build(code, Some(2)) {
                let _ = r.insert_header("content-type", "application/json");
                let _ = r.insert_header("content-length", body.len().to_string());
                let _ = session
                    .as_downstream_mut()
                    .write_error_response(r, body)
                    .await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if self.admin {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = self.route(ctx).map(|r| r.name.as_str()).unwrap_or("-");
        let micros = ctx.start.elapsed().as_micros() as u64;
        let subject = ctx
            .principal
            .as_ref()
            .and_then(|p| p.subject())
            .unwrap_or("-");
        crate::telemetry::access_log(&crate::telemetry::AccessRecord {
            method: session.req_header().method.as_str(),
            path: ctx
                .log_path
                .as_deref()
                .unwrap_or_else(|| session.req_header().uri.path()),
            status,
            route,
            upstream: ctx.tried.last().copied(),
            latency_us: micros,
            subject,
            denial: ctx.denial.unwrap_or("-"),
            error: e.map(|e| e.etype().as_str()).unwrap_or("-"),
        });
        self.shared
            .metrics
            .observe(ctx.route, status, micros, ctx.denial);
    }
}
