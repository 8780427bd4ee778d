//! The whole compiled configuration, and the lookups by id that the request path uses.

use super::ids::{IssuerId, RouteId};
use super::model::*;
use super::route_model::Route;
use super::sessions::{LoginProvider, SessionSettings};
use std::path::PathBuf;
use std::sync::Arc;

/// The validated configuration; nothing on the request path reads strings or maps from here.
#[derive(Debug)]
pub struct Config {
    pub file: PathBuf,
    /// the first 16 hex digits of the SHA-256 of the text compiled, so operators can see which file
    /// each replica runs
    pub file_hash: String,
    /// the text compiled, for the console's view of the running configuration (secrets are
    /// taken out before it is shown)
    pub text: Arc<str>,
    /// the operators' console
    pub admin: super::admin::AdminSettings,
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub validation: ValidationSettings,
    pub issuers: Vec<Arc<Issuer>>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub routes: Vec<Route>,
    /// the gateway's own authorization server, when `[token_service]` is present and enabled
    pub token_service: Option<TokenServiceSettings>,
    pub clients: Vec<Client>,
    pub users: Vec<User>,
    pub store: StoreBackend,
    pub rate_limit: RateLimits,
    pub sessions: SessionSettings,
    pub login_providers: Vec<LoginProvider>,
    /// the endpoint other proxies ask about each request, when `[forward_auth]` is present
    pub forward_auth: Option<ForwardAuthSettings>,
    /// DPoP proofs (RFC 9449), at the token service and at the edge; the defaults without
    /// `[token_service]`, whose keys set it
    pub dpop: DpopSettings,
    /// the audit event stream, when `[audit]` names a sink
    pub audit: Option<super::audit::AuditSettings>,
    /// OpenTelemetry export, when `[telemetry]` names an OTLP endpoint
    pub telemetry: Option<super::telemetry::TelemetrySettings>,
}

impl Config {
    /// The route `id` names. An id means something only in the configuration it was compiled in;
    /// a request keeps its generation from start to end, so its route's id stays good.
    pub fn route(&self, id: RouteId) -> Option<&Route> {
        self.routes.get(id.position())
    }

    /// The issuer `id` names among `issuers`, such as the one a verified principal came from.
    pub fn issuer(&self, id: IssuerId) -> Option<&Arc<Issuer>> {
        self.issuers.get(id.position())
    }

    /// The protected resources the token service issues tokens for (RFC 8707): those of routes
    /// that name its issuer among their `authorization_servers`. Empty without a token service.
    pub fn token_service_resources(&self) -> Vec<String> {
        match &self.token_service {
            Some(ts) => super::mcp::issued_by(&self.routes, &ts.issuer),
            None => Vec::new(),
        }
    }
}
