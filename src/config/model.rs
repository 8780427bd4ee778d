//! The compiled configuration: the types the gateway runs on, built once from gateway.toml.

use super::ids::{IssuerId, UpstreamId};
use crate::crypto::verify_keys::VerifyKey;
use crate::crypto::SecretHash;
use jsonwebtoken::Algorithm;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How DPoP proofs are judged (`[token_service] dpop_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// the asymmetric algorithms a proof may be signed with, in the order the metadata lists them
    pub algorithms: Vec<Algorithm>,
    /// how old a proof's `iat` may be (besides the leeway); its `jti` is remembered this long
    pub max_age: Duration,
    /// every proof must carry a nonce the gateway handed out (`DPoP-Nonce`)
    pub nonce: bool,
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings {
            algorithms: vec![
                Algorithm::ES256,
                Algorithm::RS256,
                Algorithm::EdDSA,
                Algorithm::PS256,
            ],
            max_age: Duration::from_secs(300),
            nonce: false,
        }
    }
}

/// Whether a route takes DPoP-bound tokens only (`dpop = "required"`) or bearer tokens too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopMode {
    #[default]
    Allowed,
    Required,
}

#[derive(Debug, Clone)]
pub struct ForwardAuthSettings {
    /// normalised; the Envoy dialect appends the original path to it
    pub path: String,
    /// the listeners it answers on; empty: every listener
    pub listeners: Vec<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct TokenServiceSettings {
    pub issuer: String,
    pub audience: Vec<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub code_ttl: Duration,
    pub signing_keys: Vec<PathBuf>,
    pub key_algorithm: Algorithm,
    /// the longest a client assertion's `exp` may lie ahead
    pub max_assertion_lifetime: Duration,
    /// clients not in `[[clients]]`: registration and client ID metadata documents
    pub open_clients: super::registration::OpenClients,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    ClientCredentials,
    JwtBearer,
    RefreshToken,
    AuthorizationCode,
    Password,
    /// RFC 8693
    TokenExchange,
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

impl GrantType {
    pub fn parse(s: &str) -> Option<GrantType> {
        Some(match s {
            "client_credentials" => GrantType::ClientCredentials,
            JWT_BEARER => GrantType::JwtBearer,
            "refresh_token" => GrantType::RefreshToken,
            "authorization_code" => GrantType::AuthorizationCode,
            "password" => GrantType::Password,
            TOKEN_EXCHANGE => GrantType::TokenExchange,
            _ => return None,
        })
    }
}

/// The algorithms a client's keys may sign assertions with, whether the keys are files or a JWKS.
pub const CLIENT_KEY_ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Where a client's public keys come from, for private_key_jwt and the jwt-bearer grant.
#[derive(Debug, Clone)]
pub enum ClientKeys {
    None,
    JwksUri(String),
    Static(Vec<Arc<VerifyKey>>),
}

/// Static keys compare by their material (`VerifyKey::same_as`), so a reload can tell whether an
/// issuer verifies exactly as before.
impl PartialEq for KeySource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KeySource::Own, KeySource::Own) | (KeySource::Discovery, KeySource::Discovery) => true,
            (KeySource::JwksUri(a), KeySource::JwksUri(b)) => a == b,
            (KeySource::Static(a), KeySource::Static(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
            }
            _ => false,
        }
    }
}

impl Eq for KeySource {}

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret: Option<SecretHash>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub roles: Vec<String>,
    pub audience: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub public: bool,
    pub keys: ClientKeys,
    /// what the client may do with token exchange (RFC 8693)
    pub exchange: ClientExchange,
    /// subjects a jwt-bearer assertion may name: exact values or `*` globs; empty means only the
    /// client's own id
    pub jwt_bearer_subjects: Vec<String>,
    /// the algorithm of the client's ID tokens (`id_token_signed_response_alg`, default RS256)
    pub id_token_alg: Algorithm,
    /// browser origins that may call the token endpoints (CORS)
    pub allowed_origins: Vec<String>,
    /// every token request must carry a DPoP proof, so every token is bound to the client's key
    pub dpop_bound: bool,
}

/// A client's token-exchange settings (RFC 8693).
#[derive(Debug, Clone, Default)]
pub struct ClientExchange {
    /// the `[[issuers]]` (by name) whose JWTs the client may exchange, besides the gateway's own
    pub issuers: Vec<String>,
    /// the client may ask for a token without `act` (impersonation)
    pub impersonation: bool,
}

/// `[[upstreams]] exchange`: the upstream receives a token the token service mints for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamExchange {
    pub audience: String,
    /// `None`: the caller's scopes
    pub scopes: Option<Vec<String>>,
}

/// A person who signs in; only a slow hash of the password is kept.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub password: SecretHash,
    /// the `sub` of the user's tokens (default: the username)
    pub subject: String,
    pub roles: Vec<String>,
    /// extra claims, released by scope at the userinfo endpoint
    pub claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite(PathBuf),
    Memory,
    /// `redis://…` or `rediss://…`: shared by every replica
    Redis(String),
}

impl StoreBackend {
    pub fn is_memory(&self) -> bool {
        matches!(self, StoreBackend::Memory)
    }

    /// The backend's name as `[store] backend` writes it; never the Redis URL, which may hold a
    /// password.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreBackend::Sqlite(_) => "sqlite",
            StoreBackend::Memory => "memory",
            StoreBackend::Redis(_) => "redis",
        }
    }
}

/// `count` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl Rate {
    /// `"20/s"`, `"100/m"`, `"10/5m"`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let (n, w) = s
            .split_once('/')
            .ok_or("write COUNT/WINDOW, e.g. \"20/s\" or \"10/5m\"")?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a count"))?;
        let w = w.trim();
        let window = match w {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|e| format!("{other:?}: {e}"))?,
        };
        if count == 0 || window < Duration::from_secs(1) {
            return Err("the count must be positive and the window at least 1s".into());
        }
        Ok(Rate { count, window })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub token_endpoint: Rate,
    pub failed_auth_lockout: Rate,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen_tls: Vec<SocketAddr>,
    pub listen_plain: Vec<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// names the admin listener answers to besides IP addresses and `localhost` (lower case)
    pub admin_hosts: Vec<String>,
    pub public_url: String,
    pub threads: usize,
    /// one runtime for all worker threads, which take each other's tasks, instead of one runtime
    /// per thread that keeps the connections it was given
    pub work_stealing: bool,
    pub strip_override_headers: bool,
    /// peers whose X-Forwarded-* and Forwarded headers are believed
    pub trusted_proxies: Vec<crate::wire::forwarded::Cidr>,
    /// the longest an HTTP/1 request's header section may take to arrive, whole
    pub request_header_timeout: Duration,
    /// reload when the file changes on disk
    pub watch_config: bool,
    /// plain listeners also take HTTP/2 with prior knowledge
    pub h2c: bool,
    /// where an old process hands its listening sockets to a new one (`run --upgrade`)
    pub upgrade_sock: String,
    /// after SIGTERM (or SIGQUIT's hand-over), how long requests in flight may still finish
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed_if_missing: bool,
}

#[derive(Debug, Clone)]
pub struct ValidationSettings {
    pub leeway: u64,
    pub max_token_bytes: usize,
    pub verified_cache_capacity: u64,
    /// the verified-token cache's bound in bytes, whatever the number of entries
    pub verified_cache_max_bytes: u64,
}

/// A dotted path into the claims (`realm_access.roles`); a key that itself contains dots wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    pub full: String,
    pub segments: Vec<String>,
}

/// Where a multi-tenant issuer puts the tenant.
pub const TENANT: &str = "{tenantid}";

impl Issuer {
    /// An issuer the gateway describes itself (its own, a login provider, a client's key set), with
    /// the key-fetching defaults of an `[[issuers]]` entry; callers set what differs.
    pub fn described(id: IssuerId, name: String, issuer: String, source: KeySource) -> Issuer {
        Issuer {
            id,
            require_typ: None,
            name,
            issuer,
            source,
            audiences: vec![],
            route_audiences: None,
            algorithms: vec![],
            roles_claim: ClaimPath::new("roles"),
            scopes_claim: None,
            jwks_min_refresh: Duration::from_secs(30),
            jwks_max_refresh: Duration::from_secs(3600),
            jwks_stale_for: Duration::from_secs(86400),
            jwks_fetch_timeout: Duration::from_secs(5),
            jwks_max_bytes: 256 * 1024,
            ca: None,
            tenants: vec![],
        }
    }

    /// The tenant an `iss` names, when this issuer is a `{tenantid}` template that accepts it.
    pub fn tenant_of<'a>(&self, iss: &'a str) -> Option<&'a str> {
        let (pre, post) = self.issuer.split_once(TENANT)?;
        let tenant = iss.strip_prefix(pre)?.strip_suffix(post)?;
        self.tenants.iter().any(|t| t == tenant).then_some(tenant)
    }

    /// True when a token's `iss` is this issuer's: equal, or an allowed tenant of its template.
    pub fn accepts_iss(&self, iss: &str) -> bool {
        self.issuer == iss || self.tenant_of(iss).is_some()
    }

    /// Where discovery is read: `{issuer}/.well-known/openid-configuration`, with a template's
    /// `{tenantid}` read as `common` (Microsoft's multi-tenant endpoint).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.replace(TENANT, "common").trim_end_matches('/')
        )
    }
}

impl ClaimPath {
    pub fn new(s: &str) -> Self {
        ClaimPath {
            full: s.to_string(),
            segments: s.split('.').map(str::to_string).collect(),
        }
    }

    pub fn lookup<'a>(&self, claims: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        if let Some(v) = claims.get(&self.full) {
            return Some(v);
        }
        let mut cur = claims;
        for seg in &self.segments {
            cur = cur.get(seg)?;
        }
        Some(cur)
    }
}

#[derive(Debug, Clone)]
pub enum KeySource {
    /// the gateway's own signing keys, known once they are loaded at start-up
    Own,
    Discovery,
    JwksUri(String),
    Static(Vec<Arc<VerifyKey>>),
}

/// Equal issuers verify exactly alike: every setting and the same keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub id: IssuerId,
    /// the `typ` header a token must carry (`at+jwt` for the gateway's own access tokens)
    pub require_typ: Option<&'static str>,
    pub name: String,
    pub issuer: String,
    pub source: KeySource,
    /// every `aud` a token of this issuer may carry to be verified at all
    pub audiences: Vec<String>,
    /// what a route accepts when it names no `audiences` itself; `None` means any of `audiences`
    /// (the gateway's own issuer answers for every client's audience, but routes default to the
    /// token service's `audience` only)
    pub route_audiences: Option<Vec<String>>,
    pub algorithms: Vec<Algorithm>,
    pub roles_claim: ClaimPath,
    pub scopes_claim: Option<ClaimPath>,
    pub jwks_min_refresh: Duration,
    pub jwks_max_refresh: Duration,
    pub jwks_stale_for: Duration,
    pub jwks_fetch_timeout: Duration,
    pub jwks_max_bytes: usize,
    /// a private CA for the issuer's discovery and key fetches (PEM), besides the system's roots
    pub ca: Option<PathBuf>,
    /// for an issuer written with `{tenantid}` (multi-tenant Microsoft Entra): the tenants accepted
    pub tenants: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum UpstreamKind {
    Http(HttpUpstream),
    Whoami,
}

#[derive(Debug, Clone)]
pub struct HttpUpstream {
    pub peers: Vec<SocketAddr>,
    pub peer_names: Vec<String>,
    pub tls: bool,
    pub sni: String,
    pub ca: Option<PathBuf>,
    pub health_check: Option<String>,
    pub health_interval: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: usize,
    pub protocol: Protocol,
    /// health checks speak the gRPC health checking protocol (`health_check = "grpc"`)
    pub grpc_health: bool,
}

/// How the gateway speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN
    H2,
    /// HTTP/2 over plain TCP with prior knowledge
    H2c,
    /// HTTP/2 when TLS ALPN offers it, else HTTP/1.1
    Auto,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub id: UpstreamId,
    pub name: String,
    pub kind: UpstreamKind,
    /// the caller's token is exchanged for one minted for this upstream
    pub exchange: Option<UpstreamExchange>,
}
