//! The Pingora `ProxyHttp` implementation: phase wiring only; each step lives in its own module.

pub mod framing;
pub mod identity_headers;
pub mod identity_jwt;
pub mod routes;
pub mod upstream_request;

pub mod authenticate;
pub mod forward_auth;
use crate::auth::identity::Identity;
use crate::auth::jwt::TokenError;
use crate::auth::Verifier;
use crate::config::{AuthMode, Config, Route, LOCAL_LOGIN};
use crate::observe::metrics::Metrics;
use crate::policy::authorize;
use crate::proxy::authenticate::authenticate;
use crate::proxy::forward_auth::{is_preflight, Dialect};
use crate::proxy::framing::framing_problem;
use crate::proxy::identity_headers::strip_identity_headers;
use crate::proxy::routes::{builtin, RouteMatch, RouteTable, Target};
use crate::proxy::upstream_request::{prepare_upstream, upstream_path, Forwarding};
use crate::respond::{send_json, ErrorAnswer, Rejection};
use crate::session::browser::{here, is_navigation, over_tls, same_origin_write};
use crate::upstream::{whoami_body, UpstreamRuntime};
use crate::wire::path::{host_is_valid, normalise_host, normalise_path};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderName;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorSource;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// the store behind the token service, for `/ready`
    pub store: Option<Arc<dyn crate::store::Store>>,
    /// whether every revocation is known (a shared store's feed may be away)
    pub revocations_loaded: Arc<crate::store::RevocationsLoaded>,
    /// the token service's public keys, to tell whether a reload changed them
    pub own_keys: Vec<Arc<crate::crypto::verify_keys::VerifyKey>>,
    /// signs `X-Auth-Jwt` for routes with `identity_jwt`, when the token service has keys
    pub identity_signer: Option<crate::proxy::identity_jwt::IdentitySigner>,
    /// external OpenID providers people sign in with (with the token service on)
    pub providers: Option<Arc<crate::login::Providers>>,
    /// the gateway's own cookies, removed from every request sent upstream
    pub gateway_cookies: Vec<String>,
}

impl Shared {
    /// The runtime of a route's upstream; none on a forward-auth-only route. (It borrows only the
    /// generation, so a request's other state stays free to change.)
    fn upstream(&self, route: Option<usize>) -> Option<&UpstreamRuntime> {
        let index = self.config.routes.get(route?)?.upstream.as_ref()?.index;
        self.upstreams.get(index)
    }
}

/// The proxy. A reload swaps the generation; each request keeps the one it started with.
pub struct Gateway {
    pub shared: Arc<ArcSwap<Shared>>,
    /// set once the sockets are being handed over or the process is stopping
    pub draining: Arc<AtomicBool>,
}

pub struct Ctx {
    /// the configuration generation this request runs on, from start to end
    shared: Arc<Shared>,
    start: Instant,
    route: Option<usize>,
    /// who the request is, once its token is verified
    identity: Option<Identity>,
    /// the identity JWT for the upstream, on routes that send one
    identity_jwt: Option<http::HeaderValue>,
    upstream_path: Option<String>,
    /// request body bytes forwarded so far, against the route's `max_body_bytes`
    body_bytes: u64,
    tried: Vec<SocketAddr>,
    denial: Option<&'static str>,
    log_path: Option<String>,
    /// set when the request asks the forward-auth endpoint; the header is then the original request
    forward_auth: Option<Dialect>,
}

enum Decision {
    Proxy,
    Answered,
}

/// An upstream failure as the client sees it; 0 when nothing can be written any more.
fn upstream_failure(e: &Error) -> (u16, Option<ErrorAnswer>) {
    let code = match e.etype() {
        HTTPStatus(c) => *c,
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
        | TLSHandshakeTimedout | InvalidCert | HandshakeError => 502,
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
    let (err, desc) = match code {
        0 => return (0, None),
        502 => ("bad_gateway", "the upstream could not be reached"),
        503 => (
            "no_healthy_upstream",
            "no healthy upstream peer is available",
        ),
        504 => ("gateway_timeout", "the upstream did not answer in time"),
        413 => ("request_too_large", crate::respond::TOO_LARGE),
        400 => ("invalid_request", "the request could not be read"),
        _ => ("internal_error", "the gateway could not handle the request"),
    };
    let answer = ErrorAnswer {
        status: code,
        code: err,
        description: desc,
        headers: vec![],
    };
    (code, Some(answer))
}

impl Gateway {
    fn route<'a>(&self, ctx: &'a Ctx) -> Option<&'a Route> {
        ctx.route.and_then(|i| ctx.shared.config.routes.get(i))
    }

    fn forwarding<'a>(&'a self, ctx: &'a Ctx) -> Option<Forwarding<'a>> {
        Some(Forwarding {
            route: self.route(ctx)?,
            path: ctx.upstream_path.as_deref(),
            identity: ctx.identity.as_ref(),
            identity_jwt: ctx.identity_jwt.as_ref(),
            trusted_proxies: &ctx.shared.config.server.trusted_proxies,
            gateway_cookies: &ctx.shared.gateway_cookies,
        })
    }

    /// Checks, route, authenticate, authorize, dispatch.
    async fn decide(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<Decision, Rejection> {
        let s = ctx.shared.clone();
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
        let path = normalise_path(raw_path).map_err(Rejection::BadRequest)?;
        if let Cow::Owned(p) = &path {
            // An already-normal path is logged from the request itself, without a copy here.
            ctx.log_path = Some(p.clone());
        }
        // the gateway's own endpoints answer browsers themselves; a proxy asking about one of its
        // paths is judged by the routes like any other request
        let own = match ctx.forward_auth {
            None => builtin(&path, s.tokens.as_ref()),
            Some(_) => None,
        };
        match own {
            Some(Target::Health) => {
                return Ok(self.answer(session, 200, r#"{"status":"ok"}"#.into()).await)
            }
            Some(Target::Login(endpoint)) => {
                if let (Some(tokens), Some(providers)) = (&s.tokens, &s.providers) {
                    if let Err(e) = crate::login::handle(session, endpoint, tokens, providers).await
                    {
                        tracing::debug!(error = %e, "could not answer a sign-in request");
                    }
                }
                return Ok(Decision::Answered);
            }
            Some(Target::Token(endpoint)) => {
                if let Some(tokens) = &s.tokens {
                    if let Err(e) = tokens.handle(session, endpoint).await {
                        tracing::debug!(error = %e, "could not answer a token-service request");
                    }
                }
                return Ok(Decision::Answered);
            }
            _ => {}
        }
        let header_host = req.headers.get_all("host");
        if header_host.iter().nth(1).is_some() {
            return Err(Rejection::BadRequest("more than one Host header"));
        }
        let header_host = match req.headers.get("host").map(|h| h.to_str()) {
            Some(Ok(h)) if host_is_valid(h) => Some(h),
            Some(_) => return Err(Rejection::BadRequest("the Host header is not a valid host")),
            None => None,
        };
        let host = req.uri.host().or(header_host).map(normalise_host);
        let idx = match s
            .table
            .lookup(&s.config.routes, host.as_deref(), &path, &req.method)
        {
            RouteMatch::Route(i) => i,
            // a proxy asking about a request no route takes is told no: nginx turns a 404 into a 500
            _ if ctx.forward_auth.is_some() => return Err(Rejection::Unrouted),
            RouteMatch::NotFound => return Err(Rejection::NotFound),
            RouteMatch::MethodNotAllowed(m) => return Err(Rejection::MethodNotAllowed(m)),
        };
        ctx.route = Some(idx);
        let route = s.config.routes.get(idx).ok_or(Rejection::NotFound)?;
        if ctx.forward_auth.is_none() && route.upstream.is_none() {
            // a forward-auth-only route exists for the proxy in front, not for direct requests
            return Err(Rejection::NotFound);
        }
        // an announced body over the limit is refused before any other work; a chunked one is
        // counted as it streams (request_body_filter)
        // (the proxy in front holds a forward-auth request's body, and enforces its own limits)
        if let (Some(max), None) = (route.max_body_bytes, ctx.forward_auth) {
            let announced = req
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if announced.is_some_and(|n| n > max) {
                return Err(Rejection::TooLarge);
            }
        }
        ctx.upstream_path = upstream_path(raw_path, &path, query, route);
        if route.allow_cors_preflight && is_preflight(req) {
            // a browser's preflight never carries credentials; the upstream answers it
            return self.pass(session, ctx, route).await;
        }
        ctx.identity = authenticate(
            req,
            route,
            &s.verifier,
            &s.config.issuers,
            s.config.validation.max_token_bytes,
        )
        .await?;
        if let (Some(id), Some(tokens)) = (&ctx.identity, &s.tokens) {
            if tokens.issued_to_removed_client(&id.principal) {
                return Err(Rejection::InvalidToken(TokenError::Revoked));
            }
        }
        if route.auth == AuthMode::Session && ctx.identity.is_none() {
            match self
                .session_identity(session, route, &s, ctx.forward_auth)
                .await?
            {
                Some(id) => ctx.identity = Some(id),
                None => return Ok(Decision::Answered),
            }
        }
        if let Some(id) = &ctx.identity {
            authorize(id, &route.policy).map_err(Rejection::InsufficientScope)?;
            if let (true, Some(signer)) = (route.identity_jwt, &s.identity_signer) {
                let key = id.token_key.unwrap_or_default();
                ctx.identity_jwt = signer.header(id, key, idx, &route.name);
            }
        }
        self.pass(session, ctx, route).await
    }

    /// A request the gateway lets through: to the upstream, or the forward-auth yes.
    async fn pass(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        route: &Route,
    ) -> std::result::Result<Decision, Rejection> {
        if ctx.forward_auth.is_some() {
            let (id, jwt) = (ctx.identity.as_ref(), ctx.identity_jwt.as_ref());
            let every = &ctx.shared.claim_names;
            if let Err(e) = crate::proxy::forward_auth::allow(session, route, id, jwt, every).await
            {
                tracing::debug!(error = %e, "could not write a response");
            }
            return Ok(Decision::Answered);
        }
        if let Some(UpstreamRuntime::Whoami) = ctx.shared.upstream(ctx.route) {
            let mut up = session.req_header().clone();
            let prepared = match self.forwarding(ctx) {
                Some(f) => prepare_upstream(session, &mut up, &f),
                None => Ok(()),
            };
            if prepared.is_err() {
                return Err(Rejection::BadRequest("the request cannot be forwarded"));
            }
            return Ok(self
                .answer(session, 200, whoami_body(&up, &route.name))
                .await);
        }
        Ok(Decision::Proxy)
    }

    /// The identity of a session route's request that brought no token: its live session, when one
    /// of the route's sign-in ways opened it. Without one, a page navigation is sent to sign in
    /// (`Ok(None)`: answered) and anything else gets a 401.
    async fn session_identity(
        &self,
        session: &mut Session,
        route: &Route,
        s: &Shared,
        dialect: Option<Dialect>,
    ) -> std::result::Result<Option<Identity>, Rejection> {
        let Some(tokens) = s.tokens.as_ref() else {
            return Err(Rejection::MissingToken);
        };
        let sessions = &tokens.sessions;
        let req = session.req_header();
        let found = match sessions.find(req).await {
            Ok(Some(f)) if f.record.provider == LOCAL_LOGIN => match tokens.current_local(f) {
                Some(current) => Some(current),
                None => {
                    // the user was removed or disabled: the session ends with them
                    sessions
                        .end(req)
                        .await
                        .map_err(|_| Rejection::SessionsUnavailable)?;
                    None
                }
            },
            Ok(found) => found,
            Err(_) => return Err(Rejection::SessionsUnavailable),
        }
        .filter(|f| route.login.contains(&f.record.provider));
        if let Some(found) = found {
            if !same_origin_write(req, over_tls(session)) {
                return Err(Rejection::CrossSiteWrite);
            }
            return Ok(Some(sessions.identity(
                &found,
                route.needs_claims,
                route.identity_jwt,
            )));
        }
        if !is_navigation(req) {
            return Err(Rejection::MissingToken);
        }
        let to = crate::login::login_url(&here(req), &route.login, Some(&route.name));
        if let Err(e) = crate::proxy::forward_auth::sign_in(session, dialect, to).await {
            tracing::debug!(error = %e, "could not write a response");
        }
        Ok(None)
    }

    async fn answer(&self, session: &mut Session, status: u16, body: String) -> Decision {
        if let Err(e) = send_json(session, status, &[], body).await {
            tracing::debug!(error = %e, "could not write a response");
        }
        Decision::Answered
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            shared: self.shared.load_full(),
            start: Instant::now(),
            route: None,
            identity: None,
            identity_jwt: None,
            upstream_path: None,
            body_bytes: 0,
            tried: Vec::new(),
            denial: None,
            log_path: None,
            forward_auth: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let s = ctx.shared.clone();
        if self.draining.load(Ordering::Relaxed) {
            // answer with `Connection: close`, so the client's next request opens a connection the
            // new (or no) process answers rather than one about to be closed
            session.set_keepalive(None);
        }
        // A forward-auth question becomes the original request first: ingress-nginx names it in
        // X-Original-URL, one of the override headers removed next.
        let asked = match &s.config.forward_auth {
            Some(fa) => {
                crate::proxy::forward_auth::take(session, fa, &s.config.server.trusted_proxies)
            }
            None => Ok(None),
        };
        // The gateway owns identity headers: every client-sent copy goes first, on every route.
        strip_identity_headers(
            session.req_header_mut(),
            &s.claim_names,
            s.config.server.strip_override_headers,
        );
        // Every refusal of a question to the endpoint is plain HTTP, those made before it was read
        // included: a gRPC-style refusal is a 200 the proxy would take for a yes.
        let asking = !matches!(asked, Ok(None));
        let decided = match asked {
            Ok(dialect) => {
                ctx.forward_auth = dialect;
                self.decide(session, ctx).await
            }
            Err(rej) => Err(rej),
        };
        match decided {
            Ok(Decision::Proxy) => Ok(false),
            Ok(Decision::Answered) => Ok(true),
            Err(rej) => {
                ctx.denial = Some(rej.reason());
                if asking {
                    crate::proxy::forward_auth::refuse(session, &rej).await?;
                } else {
                    rej.respond(session).await?;
                }
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(UpstreamRuntime::Pool(pool)) = ctx.shared.upstream(ctx.route) else {
            return Error::e_explain(HTTPStatus(502), "route has no proxied upstream");
        };
        let Some(addr) = pool.select(&ctx.tried) else {
            return Error::e_explain(HTTPStatus(503), "no healthy peer");
        };
        ctx.tried.push(addr);
        // a gRPC call waits as long as its deadline says; a route's stream idle timeout replaces
        // the upstream's read timeout for everything else
        let read = crate::wire::grpc::timeout(session.req_header())
            .map(|d| d.min(crate::wire::grpc::MAX_DEADLINE))
            .or_else(|| self.route(ctx).and_then(|r| r.stream_idle_timeout));
        Ok(Box::new(pool.peer(addr, read)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(UpstreamRuntime::Pool(pool)) = ctx.shared.upstream(ctx.route) {
            // A failed connect sent nothing upstream, so another peer may take the request.
            if ctx.tried.len() <= pool.cfg.retries && ctx.tried.len() < pool.cfg.peers.len() {
                e.set_retry(true);
            }
        }
        e
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let max = self.route(ctx).and_then(|r| r.max_body_bytes);
        if let (Some(max), Some(b)) = (max, body.as_ref()) {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > max {
                ctx.denial = Some("request_too_large");
                // the client's fault, said so: towards an h2 upstream Pingora drops any other
                // error from this filter, and the call would wait for its upstream to time out
                let e = Error::explain(HTTPStatus(413), crate::respond::TOO_LARGE);
                return Err(e.into_down());
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match self.forwarding(ctx) {
            Some(f) => prepare_upstream(session, up, &f),
            None => Ok(()),
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // an upstream never sets the gateway's own cookies (a session of its choosing, say)
        crate::proxy::upstream_request::drop_gateway_set_cookies(resp, &ctx.shared.gateway_cookies)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let (code, answer) = upstream_failure(e);
        if let Some(a) = answer {
            a.send_error(session).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = self.route(ctx).map(|r| r.name.as_str()).unwrap_or("-");
        let micros = ctx.start.elapsed().as_micros() as u64;
        let subject = ctx
            .identity
            .as_ref()
            .and_then(|id| id.principal.subject())
            .unwrap_or("-");
        crate::observe::access_log::access_log(&crate::observe::access_log::AccessRecord {
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
        let metrics = &ctx.shared.metrics;
        metrics.observe(ctx.route, status, micros, ctx.denial);
        if ctx.forward_auth.is_some() {
            metrics.observe_forward_auth(status);
        }
    }
}
