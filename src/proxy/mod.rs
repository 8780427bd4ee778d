//! The Pingora `ProxyHttp` implementation: phase wiring only; each step lives in its own module.

pub mod framing;
pub mod identity_headers;
pub mod identity_jwt;
pub mod routes;
pub mod upstream_request;

pub mod audit_request;
pub mod authenticate;
pub mod ctx;
pub mod forward_auth;
pub mod judge;
pub mod mcp_call;
pub mod proof;
pub mod resource;
pub mod rules;
pub mod trace_attributes;
pub mod trace_request;
use crate::config::Route;
use crate::proxy::framing::framing_problem;
use crate::proxy::identity_headers::strip_identity_headers;
use crate::proxy::judge::{judge, Verdict};
use crate::proxy::routes::Target;
use crate::proxy::upstream_request::{prepare_upstream, Forwarding};
use crate::respond::{Answer, Rejection};
use crate::session::browser::over_tls;
use crate::upstream::{whoami_body, UpstreamRuntime};
use crate::wire::request::Request;
use arc_swap::ArcSwap;
use async_trait::async_trait;
pub use ctx::{Ctx, Shared};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The proxy. A reload swaps the generation; each request keeps the one it started with.
pub struct Gateway {
    pub shared: Arc<ArcSwap<Shared>>,
    /// set once the sockets are being handed over or the process is stopping
    pub draining: Arc<AtomicBool>,
}

impl Gateway {
    fn route<'a>(&self, ctx: &'a Ctx) -> Option<&'a Route> {
        ctx.route.and_then(|id| ctx.shared.config.route(id))
    }

    fn forwarding<'a>(&'a self, ctx: &'a Ctx) -> Option<Forwarding<'a>> {
        Some(Forwarding {
            route: self.route(ctx)?,
            path: ctx.upstream_path.as_deref(),
            identity: ctx.identity.as_ref(),
            identity_jwt: ctx.identity_jwt.as_ref(),
            bearer: ctx.bearer.as_ref(),
            trusted_proxies: &ctx.shared.config.server.trusted_proxies,
            gateway_cookies: &ctx.shared.gateway_cookies,
        })
    }

    /// Renders a verdict as an answer and writes it: the one place on the proxy path that writes.
    /// `Ok(true)` when answered; `asking`: the request is a question to the forward-auth endpoint.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        verdict: Verdict,
        asking: bool,
    ) -> Result<bool> {
        let answer = match verdict {
            Verdict::Proxy => return Ok(false),
            Verdict::Builtin(target) => {
                // the endpoint's store calls and secret checks are spans of the request's trace
                let parent = trace_request::parent(ctx);
                let answering = builtin(session, &ctx.shared, target);
                crate::telemetry::current::within(parent, answering).await
            }
            Verdict::Refuse(rej) => {
                ctx.denial = Some(rej.reason());
                if let Rejection::RuleDenied(rule) = rej {
                    ctx.rule = Some(rule);
                }
                // every refusal of a question to the endpoint is plain HTTP: a gRPC-style refusal
                // is a 200 the proxy in front would take for a yes
                let resource = self.route(ctx).and_then(|r| r.resource.as_deref());
                match asking {
                    true => Answer::PlainError(rej.answer_for(resource)),
                    false => Answer::Error(rej.answer_for(resource)),
                }
            }
            Verdict::Allow => self.allow(ctx),
            Verdict::SignIn(to) => {
                ctx.signing_in = true;
                forward_auth::sign_in(ctx.forward_auth, to)
            }
            Verdict::Whoami => self.whoami(session, ctx),
        };
        if let Err(e) = crate::respond::write(session, answer).await {
            tracing::debug!(error = %e, "could not write a response");
        }
        Ok(true)
    }

    /// On an MCP route with tool rules, a POST's calls are judged before it goes on.
    async fn judge_calls(&self, session: &mut Session, ctx: &mut Ctx, verdict: Verdict) -> Verdict {
        // every proxied request passes here: it decides without touching a reference count
        let judged = self.route(ctx).is_some_and(|r| {
            r.mcp.as_ref().is_some_and(|m| !m.tools.is_empty())
                || rules::wait_for_call(session.req_header(), r)
        });
        if !judged || session.req_header().method != http::Method::POST {
            return verdict;
        }
        let shared = ctx.shared.clone();
        let Some(route) = ctx.route.and_then(|id| shared.config.route(id)) else {
            return verdict;
        };
        let Some(mcp) = route.mcp.as_deref() else {
            return verdict;
        };
        let id = ctx.identity.as_ref();
        let route_scopes = route.resource.as_deref().map_or(&[][..], |p| &p.required);
        match mcp_call::check(session, mcp, route_scopes, route.max_body_bytes, id).await {
            Ok(calls) => {
                ctx.tool = mcp_call::log_name(&calls);
                match judge::call_rules(session.req_header(), route, ctx, &calls) {
                    Ok(()) => verdict,
                    Err(rejection) => Verdict::Refuse(rejection),
                }
            }
            Err(rejection) => Verdict::Refuse(rejection),
        }
    }

    /// The forward-auth yes for the request's route, with its identity headers.
    fn allow(&self, ctx: &Ctx) -> Answer {
        let Some(route) = self.route(ctx) else {
            return forward_auth::refuse(&Rejection::Unrouted);
        };
        let (id, jwt) = (ctx.identity.as_ref(), ctx.identity_jwt.as_ref());
        forward_auth::allow(route, id, jwt, &ctx.shared.claim_names)
            .unwrap_or_else(|_| Answer::PlainError(crate::respond::internal_error()))
    }

    /// The built-in whoami upstream: the request as the upstream would have received it.
    fn whoami(&self, session: &Session, ctx: &mut Ctx) -> Answer {
        let mut up = session.req_header().clone();
        let prepared = match self.forwarding(ctx) {
            Some(f) => prepare_upstream(session, &mut up, &f),
            None => Ok(()),
        };
        if prepared.is_err() {
            let rej = Rejection::BadRequest("the request cannot be forwarded");
            ctx.denial = Some(rej.reason());
            return Answer::refuse(&rej);
        }
        let name = self.route(ctx).map(|r| r.name.as_str()).unwrap_or_default();
        Answer::json(200, vec![], whoami_body(&up, name))
    }
}

/// One of the gateway's own endpoints: its form read first (a bounded read), then the endpoint's
/// answer, decided without the connection.
async fn builtin(session: &mut Session, s: &Shared, target: Target) -> Answer {
    match target {
        Target::Health => return Answer::json(200, vec![], r#"{"status":"ok"}"#.into()),
        Target::ResourceMetadata(id) => {
            return match s.config.route(id).and_then(|r| r.resource.as_deref()) {
                Some(p) => crate::proxy::resource::metadata(session.req_header(), p),
                None => Answer::refuse(&Rejection::NotFound),
            }
        }
        _ => {}
    }
    let body = crate::wire::request::read_body(session).await;
    let client = crate::wire::forwarded::client_ip(session, &s.config.server.trusted_proxies);
    let http = Request {
        header: session.req_header(),
        tls: over_tls(session),
        client: client.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        body,
    };
    match (target, &s.tokens, &s.providers) {
        (Target::Login(e), Some(tokens), Some(providers)) => {
            crate::login::answer(&http, e, tokens, providers).await
        }
        (Target::Token(e), Some(tokens), _) => tokens.answer(&http, e).await,
        _ => Answer::refuse(&Rejection::NotFound),
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
            bearer: None,
            upstream_path: None,
            body_bytes: 0,
            tried: Vec::new(),
            in_flight: false,
            denial: None,
            log_path: None,
            forward_auth: None,
            from_trusted_proxy: false,
            tool: None,
            signing_in: false,
            peer: None,
            rule: None,
            trace: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let s = ctx.shared.clone();
        if s.telemetry.enabled() {
            let since = ctx.start.elapsed();
            ctx.trace = crate::telemetry::request::begin(session, &s.telemetry, since);
        }
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
        let asking = !matches!(asked, Ok(None));
        let verdict = match asked {
            Err(rej) => Verdict::Refuse(rej),
            Ok(dialect) => {
                ctx.forward_auth = dialect;
                ctx.peer = crate::wire::forwarded::peer(session);
                // a question comes from a trusted proxy (it was refused otherwise)
                let trusted = &s.config.server.trusted_proxies;
                ctx.from_trusted_proxy = dialect.is_some()
                    || (!trusted.is_empty()
                        && crate::wire::forwarded::trusts(
                            crate::wire::forwarded::peer(session),
                            trusted,
                        ));
                match framing_problem(session) {
                    Some(problem) => Verdict::Refuse(Rejection::BadRequest(problem)),
                    // the keys fetched while judging are fetched in the request's trace
                    None => {
                        let parent = trace_request::parent(ctx);
                        let judging = judge(session.req_header(), over_tls(session), &s, ctx);
                        crate::telemetry::current::within(parent, judging).await
                    }
                }
            }
        };
        let verdict = match verdict {
            Verdict::Proxy | Verdict::Whoami => self.judge_calls(session, ctx, verdict).await,
            other => other,
        };
        self.answer(session, ctx, verdict, asking).await
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(UpstreamRuntime::Pool(pool)) = ctx.shared.upstream(ctx.route) else {
            return Error::e_explain(HTTPStatus(502), "route has no proxied upstream");
        };
        let Some(addr) = pool.select(&ctx.tried) else {
            return Error::e_explain(HTTPStatus(503), "no healthy peer");
        };
        ctx.tried.push(addr);
        if !std::mem::replace(&mut ctx.in_flight, true) {
            pool.traffic.in_flight.fetch_add(1, Relaxed);
        }
        if let Some(t) = ctx.trace.as_mut() {
            t.upstream_from.get_or_insert(ctx.start.elapsed());
        }
        // a gRPC call waits as long as its deadline says; a route's stream idle timeout replaces
        // the upstream's read timeout for everything else
        let read = crate::wire::grpc::timeout(session.req_header())
            .map(|d| d.min(crate::wire::grpc::MAX_DEADLINE))
            .or_else(|| self.route(ctx).and_then(|r| r.stream_idle_timeout));
        Ok(Box::new(pool.peer(addr, read)))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // the upstream span tells the connection's setup from the answer's wait
        if let Some(t) = ctx.trace.as_mut() {
            t.connected = Some((ctx.start.elapsed(), reused));
        }
        if let Some(UpstreamRuntime::Pool(pool)) = ctx.shared.upstream(ctx.route) {
            let t = &pool.traffic;
            let counter = if reused {
                &t.connections_reused
            } else {
                &t.connections_new
            };
            counter.fetch_add(1, Relaxed);
        }
        Ok(())
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
                ctx.denial = Some(crate::observe::DenyReason::RequestTooLarge);
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
        if let Some(f) = self.forwarding(ctx) {
            prepare_upstream(session, up, &f)?;
        }
        match &ctx.trace {
            Some(t) => crate::telemetry::request::propagate(t, up),
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
        let (code, answer) = crate::respond::upstream::failure(e);
        if let Some(a) = answer {
            crate::respond::answer::write_failure(session, &a).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if std::mem::take(&mut ctx.in_flight) {
            if let Some(UpstreamRuntime::Pool(pool)) = ctx.shared.upstream(ctx.route) {
                pool.traffic.in_flight.fetch_sub(1, Relaxed);
            }
        }
        let written = session.response_written();
        let status = written.map(|r| r.status.as_u16()).unwrap_or(0);
        let grpc_status = written.and_then(crate::wire::grpc::status_in_header);
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
            denial: ctx.denial.map_or("-", crate::observe::DenyReason::as_str),
            error: e.map(|e| e.etype().as_str()).unwrap_or("-"),
            tool: ctx.tool.as_deref(),
            rule: ctx.rule,
            grpc_status,
        });
        if ctx.shared.audit.enabled() {
            audit_request::emit(session, ctx, status);
        }
        if ctx.trace.is_some() {
            trace_request::finish(session, ctx, (status, grpc_status), e.is_some());
        }
        let metrics = &ctx.shared.metrics;
        metrics.observe(ctx.route, status, micros, ctx.denial);
        if let Some(rule) = ctx.rule {
            metrics.observe_rule(ctx.route, rule);
        }
        if ctx.forward_auth.is_some() {
            metrics.observe_forward_auth(status);
        }
    }
}
