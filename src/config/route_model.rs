//! The compiled form of `[[routes]]`: how a route matches, authenticates, authorizes and forwards.

use super::ids::RouteId;
use super::model::{ClaimPath, DpopMode, Issuer, Upstream};
use http::header::HeaderName;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    Public,
    /// a browser sign-in session, or a bearer token as on `Required`
    Session,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`
    Suffix(String),
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub roles_any: Vec<String>,
    pub roles_all: Vec<String>,
    pub scopes_any: Vec<String>,
    pub scopes_all: Vec<String>,
    pub claims: Vec<(ClaimPath, serde_json::Value)>,
}

#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    pub header: bool,
    pub query: Vec<String>,
    pub cookie: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimSource {
    Subject,
    Issuer,
    ClientId,
    Roles,
    Scopes,
    AllClaims,
    Claim(ClaimPath),
}

#[derive(Debug, Clone)]
pub struct ClaimHeader {
    pub name: HeaderName,
    /// the name as configured, sent with its case (Pingora preserves header case)
    pub wire: bytes::Bytes,
    pub source: ClaimSource,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub id: RouteId,
    pub name: String,
    pub host: Option<HostPattern>,
    pub path_prefix: String,
    pub methods: Option<Vec<http::Method>>,
    /// `None` on a forward-auth-only route, which the proxy itself never serves
    pub upstream: Option<Arc<Upstream>>,
    /// CORS preflights (`OPTIONS` with `Access-Control-Request-Method`) pass without a token
    pub allow_cors_preflight: bool,
    pub auth: AuthMode,
    /// the issuers whose tokens the route accepts
    pub issuers: Vec<Arc<Issuer>>,
    pub policy: Policy,
    pub token_from: TokenSources,
    pub forward_token: bool,
    pub strip_prefix: bool,
    pub claim_headers: Vec<ClaimHeader>,
    /// the route reads claims (claim conditions or claim headers), so each request parses them
    pub needs_claims: bool,
    /// token audiences this route accepts; `None` means the issuer's `route_audiences`
    pub audiences: Option<Vec<String>>,
    /// also send `X-Auth-Jwt`, the identity signed by the gateway's key for this route
    pub identity_jwt: bool,
    /// session routes: the ways to sign in, in the order the choice page shows them
    pub login: Vec<super::LoginWay>,
    /// whether `login` was written (problems then name its entries)
    pub login_written: bool,
    /// how long a stream (gRPC, WebSocket, a long download) may go without a byte either way
    pub stream_idle_timeout: Option<Duration>,
    /// the largest request body the route forwards (413 beyond it)
    pub max_body_bytes: Option<u64>,
    /// the route is an OAuth protected resource (RFC 9728): `resource`, or `mcp = true`
    pub resource: Option<Arc<super::mcp::ProtectedResource>>,
    /// the route fronts an MCP server (`mcp = true`)
    pub mcp: Option<Arc<super::mcp::McpSettings>>,
    /// whether bearer tokens pass, or only DPoP-bound tokens with their proofs
    pub dpop: DpopMode,
    /// `allow_if` / `deny_if`, compiled; `None` when the route has neither
    pub rules: Option<Arc<crate::rules::Rules>>,
}

/// The identity headers sent on every route that verified a token (CONFIG.md).
pub fn default_claim_headers() -> Vec<ClaimHeader> {
    [
        ("x-auth-subject", "X-Auth-Subject", ClaimSource::Subject),
        ("x-auth-issuer", "X-Auth-Issuer", ClaimSource::Issuer),
        (
            "x-auth-client-id",
            "X-Auth-Client-Id",
            ClaimSource::ClientId,
        ),
        ("x-auth-roles", "X-Auth-Roles", ClaimSource::Roles),
        ("x-auth-scopes", "X-Auth-Scopes", ClaimSource::Scopes),
        ("x-auth-claims", "X-Auth-Claims", ClaimSource::AllClaims),
    ]
    .into_iter()
    .map(|(n, wire, source)| ClaimHeader {
        name: HeaderName::from_static(n),
        wire: bytes::Bytes::from_static(wire.as_bytes()),
        source,
    })
    .collect()
}
