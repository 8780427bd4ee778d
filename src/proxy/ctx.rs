//! What the proxy path holds: the configuration generation a request runs on (`Shared`) and what
//! one request carries from phase to phase (`Ctx`).

use crate::auth::identity::Identity;
use crate::auth::Verifier;
use crate::config::{Config, RouteId};
use crate::observe::metrics::Metrics;
use crate::proxy::forward_auth::Dialect;
use crate::proxy::routes::RouteTable;
use crate::upstream::UpstreamRuntime;
use http::HeaderName;
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
    /// each configured upstream's runtime, in `Config::upstreams` order (by `UpstreamId`)
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
    /// the origin of `[server] public_url`, which MCP routes always allow
    pub public_origin: String,
    /// the scheme of `[server] public_url`: a forward-auth question's proof names it when the
    /// proxy does not say
    pub public_scheme: String,
    /// DPoP proofs at the edge (and at the token service, which shares it)
    pub dpop: Arc<crate::dpop::Dpop>,
    /// the audit stream (the same for every generation)
    pub audit: crate::audit::Audit,
    /// traces (the same for every generation)
    pub telemetry: crate::telemetry::Telemetry,
    /// the gateway's clock: route rules read `now` from it
    pub clock: crate::clock::SharedClock,
}

impl Shared {
    /// The runtime of a route's upstream; none on a forward-auth-only route. (It borrows only the
    /// generation, so a request's other state stays free to change.)
    pub(crate) fn upstream(&self, route: Option<RouteId>) -> Option<&UpstreamRuntime> {
        let id = self.config.route(route?)?.upstream.as_ref()?.id;
        self.upstreams.get(id.position())
    }
}

/// What one request carries through the phases.
pub struct Ctx {
    /// the configuration generation this request runs on, from start to end
    pub(crate) shared: Arc<Shared>,
    pub(crate) start: Instant,
    pub(crate) route: Option<RouteId>,
    /// who the request is, once its token is verified
    pub(crate) identity: Option<Identity>,
    /// the identity JWT for the upstream, on routes that send one
    pub(crate) identity_jwt: Option<http::HeaderValue>,
    /// the `Authorization` the upstream receives instead of the caller's, when it exchanges tokens
    pub(crate) bearer: Option<http::HeaderValue>,
    pub(crate) upstream_path: Option<String>,
    /// request body bytes forwarded so far, against the route's `max_body_bytes`
    pub(crate) body_bytes: u64,
    pub(crate) tried: Vec<SocketAddr>,
    /// counted in its pool's requests in flight (taken off when the request ends)
    pub(crate) in_flight: bool,
    pub(crate) denial: Option<crate::observe::DenyReason>,
    pub(crate) log_path: Option<String>,
    /// set when the request asks the forward-auth endpoint; the header is then the original request
    pub(crate) forward_auth: Option<Dialect>,
    /// the peer is a trusted proxy, whose `X-Forwarded-Proto` is believed
    pub(crate) from_trusted_proxy: bool,
    /// the MCP tool, prompt or resource the request calls, on routes that judge them
    pub(crate) tool: Option<String>,
    /// answered with a redirect to sign in: neither allowed nor refused yet
    pub(crate) signing_in: bool,
    /// the connection's address, for the route rules that read `client.ip`
    pub(crate) peer: Option<std::net::IpAddr>,
    /// the route rule that refused the request, for the log and the metrics
    pub(crate) rule: Option<crate::rules::RuleRef>,
    /// the request's spans, when it is traced (boxed: most requests are not)
    pub(crate) trace: Option<Box<crate::telemetry::request::RequestTrace>>,
}
