//! Loads gateway.toml and compiles it into a validated `Config`, naming the key of every problem.

mod raw;
mod warnings;

use crate::auth::keys::{parse_algorithm, VerifyKey};
use crate::routes::normalise_prefix;
use http::header::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use raw::{RawClient, RawConfig, RawIssuer, RawRoute, RawTokenService, RawUpstream};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in the configuration, tied to the key that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem{}:",
            self.file.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration; nothing on the request path reads strings or maps from here.
#[derive(Debug)]
pub struct Config {
    pub file: PathBuf,
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub validation: ValidationSettings,
    pub issuers: Vec<Arc<Issuer>>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    /// the gateway's own authorization server, when `[token_service]` is present and enabled
    pub token_service: Option<TokenServiceSettings>,
    pub clients: Vec<Client>,
    pub users: Vec<User>,
    pub store: StoreBackend,
    pub rate_limit: RateLimits,
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
}

/// How a client secret is stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHash {
    /// SHA-256 of a generated high-entropy secret
    Sha256([u8; 32]),
    /// a PHC string: `$argon2id$...`
    Argon2(String),
    /// `$2b$...`
    Bcrypt(String),
}

impl SecretHash {
    pub fn parse(s: &str) -> Result<SecretHash, String> {
        if let Some(hex) = s.strip_prefix("sha256:") {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>();
            return match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(b) if hex.len() == 64 && hex.bytes().all(|c| !c.is_ascii_uppercase()) => {
                    Ok(SecretHash::Sha256(b))
                }
                _ => Err("sha256: must be followed by 64 lowercase hex digits".into()),
            };
        }
        if s.starts_with("$argon2id$") {
            return Ok(SecretHash::Argon2(s.to_string()));
        }
        if s.starts_with("$2b$") || s.starts_with("$2a$") || s.starts_with("$2y$") {
            return Ok(SecretHash::Bcrypt(s.to_string()));
        }
        Err("not a recognised hash: use \"sha256:<hex>\", \"$argon2id$...\" or bcrypt \"$2b$...\" (gatehouse hash-secret makes one)".into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    ClientCredentials,
    JwtBearer,
    RefreshToken,
    AuthorizationCode,
    Password,
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl GrantType {
    pub fn parse(s: &str) -> Option<GrantType> {
        Some(match s {
            "client_credentials" => GrantType::ClientCredentials,
            JWT_BEARER => GrantType::JwtBearer,
            "refresh_token" => GrantType::RefreshToken,
            "authorization_code" => GrantType::AuthorizationCode,
            "password" => GrantType::Password,
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
    /// subjects a jwt-bearer assertion may name: exact values or `*` globs; empty means only the
    /// client's own id
    pub jwt_bearer_subjects: Vec<String>,
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
    pub public_url: String,
    pub threads: usize,
    pub strip_override_headers: bool,
    /// peers whose X-Forwarded-* and Forwarded headers are believed
    pub trusted_proxies: Vec<crate::forwarded::Cidr>,
    /// the longest an HTTP/1 request's header section may take to arrive, whole
    pub request_header_timeout: Duration,
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

#[derive(Debug)]
pub enum KeySource {
    /// the gateway's own signing keys, known once they are loaded at start-up
    Own,
    Discovery,
    JwksUri(String),
    Static(Vec<Arc<VerifyKey>>),
}

#[derive(Debug)]
pub struct Issuer {
    pub index: usize,
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
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    Public,
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
    pub index: usize,
    pub name: String,
    pub host: Option<HostPattern>,
    pub path_prefix: String,
    pub methods: Option<Vec<http::Method>>,
    pub upstream: usize,
    pub auth: AuthMode,
    pub issuers: Vec<usize>,
    pub policy: Policy,
    pub token_from: TokenSources,
    pub forward_token: bool,
    pub strip_prefix: bool,
    pub claim_headers: Vec<ClaimHeader>,
    /// the route reads claims (claim conditions or claim headers), so each request parses them
    pub needs_claims: bool,
    /// token audiences this route accepts; `None` means the issuer's `route_audiences`
    pub audiences: Option<Vec<String>>,
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

/// Headers a claim header may never be named after: they carry framing, routing or credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "expect",
];

impl Config {
    /// Reads and compiles a file; relative paths inside resolve against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                key: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }],
        })?;
        Self::from_toml(&text, path)
    }

    /// Compiles TOML text as if it had been read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            fail(vec![Problem {
                key: String::new(),
                message: e.to_string().trim().to_string(),
            }])
        })?;
        let raw: RawConfig = serde_ignored::deserialize(de, |p| unknown.push(key_of(&p))).map_err(
            |e: toml::de::Error| {
                fail(vec![Problem {
                    key: String::new(),
                    message: e.to_string().trim().replace('\n', " "),
                }])
            },
        )?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut c = Compiler {
            problems: unknown
                .into_iter()
                .map(|key| Problem {
                    key,
                    message: "unknown key".into(),
                })
                .collect(),
            base,
        };
        let config = c.compile(raw, path);
        if c.problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(c.problems))
        }
    }

    pub fn issuer_by_name(&self, name: &str) -> Option<&Arc<Issuer>> {
        self.issuers.iter().find(|i| i.name == name)
    }
}

fn key_of(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_of(parent)),
        P::Map { parent, key } => {
            let p = key_of(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_of(parent)
        }
    }
}

struct Compiler {
    problems: Vec<Problem>,
    base: PathBuf,
}

impl Compiler {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, value: &str) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    key,
                    format!("invalid duration {value:?} ({e}); use e.g. \"30s\", \"15m\", \"7d\""),
                );
                Duration::ZERO
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    key,
                    format!("{value:?} is not an address; write IP:PORT, e.g. \"0.0.0.0:8443\""),
                );
                None
            }
        }
    }

    fn compile(&mut self, raw: RawConfig, file: &Path) -> Config {
        let s = raw.server;
        let listen_tls: Vec<_> = s
            .listen_tls
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.addr(&format!("server.listen_tls[{i}]"), a))
            .collect();
        let listen_plain: Vec<_> = s
            .listen_plain
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.addr(&format!("server.listen_plain[{i}]"), a))
            .collect();
        let admin_listen = match &s.admin_listen {
            Some(a) if !a.is_empty() => self.addr("server.admin_listen", a),
            _ => None,
        };
        if s.listen_tls.is_empty() && s.listen_plain.is_empty() {
            self.err(
                "server.listen_tls",
                "no listener: set listen_tls or listen_plain",
            );
        }
        let mut seen = BTreeSet::new();
        for a in listen_tls
            .iter()
            .chain(listen_plain.iter())
            .chain(admin_listen.iter())
        {
            if !seen.insert(*a) {
                self.err("server", format!("address {a} is used by two listeners"));
            }
        }
        if s.threads == 0 {
            self.err("server.threads", "must be at least 1");
        }
        let public_url = s.public_url.clone().unwrap_or_else(|| {
            let port = listen_tls.first().map(|a| a.port()).unwrap_or(8443);
            format!("https://localhost:{port}")
        });
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            self.err(
                "server.public_url",
                format!("{public_url:?} must start with https:// or http://"),
            );
        }
        let request_header_timeout =
            self.duration("server.request_header_timeout", &s.request_header_timeout);
        if request_header_timeout < Duration::from_secs(1) {
            self.err("server.request_header_timeout", "must be at least 1s");
        }
        let server = ServerSettings {
            request_header_timeout,
            listen_tls,
            listen_plain,
            admin_listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            threads: s.threads.max(1),
            strip_override_headers: s.strip_override_headers,
            trusted_proxies: s
                .trusted_proxies
                .iter()
                .enumerate()
                .filter_map(|(i, t)| match crate::forwarded::Cidr::parse(t) {
                    Ok(c) => Some(c),
                    Err(m) => {
                        self.err(format!("server.trusted_proxies[{i}]"), m);
                        None
                    }
                })
                .collect(),
        };

        let tls = TlsSettings {
            cert: self.path(&raw.tls.cert),
            key: self.path(&raw.tls.key),
            self_signed_if_missing: raw.tls.self_signed_if_missing,
        };
        if !server.listen_tls.is_empty() {
            self.check_tls_files(&tls);
        }

        let leeway = self.duration("validation.leeway", &raw.validation.leeway);
        if raw.validation.max_token_bytes < 64 {
            self.err("validation.max_token_bytes", "must be at least 64");
        }
        let validation = ValidationSettings {
            leeway: leeway.as_secs(),
            max_token_bytes: raw.validation.max_token_bytes,
            verified_cache_capacity: raw.validation.verified_cache_capacity,
            verified_cache_max_bytes: raw.validation.verified_cache_max_bytes,
        };
        if validation.verified_cache_max_bytes < 1024 * 1024 {
            self.err(
                "validation.verified_cache_max_bytes",
                "must be at least 1048576 (1 MiB)",
            );
        }

        let mut issuers = Vec::new();
        for (i, ri) in raw.issuers.into_iter().enumerate() {
            if let Some(iss) = self.issuer(i, ri) {
                if issuers.iter().any(|x: &Arc<Issuer>| x.name == iss.name) {
                    self.err(
                        format!("issuers[{i}].name"),
                        format!("duplicate issuer name {:?}", iss.name),
                    );
                }
                issuers.push(Arc::new(Issuer {
                    index: issuers.len(),
                    ..iss
                }));
            }
        }

        let token_service = raw
            .token_service
            .filter(|t| t.enabled)
            .map(|t| self.token_service(t, &server.public_url));
        let clients: Vec<Client> = match &token_service {
            Some(ts) => raw
                .clients
                .into_iter()
                .enumerate()
                .filter_map(|(i, c)| self.client(i, c, ts))
                .collect(),
            None => {
                if !raw.clients.is_empty() {
                    self.err("clients", "clients need [token_service] enabled");
                }
                vec![]
            }
        };
        for (i, c) in clients.iter().enumerate() {
            if clients[..i].iter().any(|o| o.client_id == c.client_id) {
                self.err(
                    format!("clients[{i}].client_id"),
                    format!("duplicate client {:?}", c.client_id),
                );
            }
        }
        if let Some(ts) = &token_service {
            // The gateway trusts its own tokens as issuer "self", with no fetch.
            let mut audiences = ts.audience.clone();
            for c in &clients {
                for a in &c.audience {
                    if !audiences.contains(a) {
                        audiences.push(a.clone());
                    }
                }
            }
            issuers.push(Arc::new(Issuer {
                index: issuers.len(),
                require_typ: Some("at+jwt"),
                name: "self".into(),
                issuer: ts.issuer.clone(),
                source: KeySource::Own,
                audiences,
                route_audiences: Some(ts.audience.clone()),
                algorithms: vec![
                    Algorithm::ES256,
                    Algorithm::ES384,
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::EdDSA,
                ],
                roles_claim: ClaimPath::new("roles"),
                scopes_claim: None,
                jwks_min_refresh: Duration::from_secs(30),
                jwks_max_refresh: Duration::from_secs(3600),
                jwks_stale_for: Duration::from_secs(86400),
                jwks_fetch_timeout: Duration::from_secs(5),
                jwks_max_bytes: 262144,
            }));
        }
        let mut users: Vec<User> = Vec::new();
        for (i, u) in raw.users.into_iter().enumerate() {
            let k = |f: &str| format!("users[{i}].{f}");
            if token_service.is_none() {
                self.err(k("username"), "users need [token_service] enabled");
                break;
            }
            if u.username.is_empty() {
                self.err(k("username"), "required");
            }
            if users.iter().any(|o| o.username == u.username) {
                self.err(k("username"), format!("duplicate user {:?}", u.username));
            }
            let password = match SecretHash::parse(&u.password_hash) {
                Ok(h @ (SecretHash::Argon2(_) | SecretHash::Bcrypt(_))) => h,
                Ok(SecretHash::Sha256(_)) => {
                    self.err(k("password_hash"), "people's passwords need a slow hash: argon2id or bcrypt (gatehouse hash-secret --argon2)");
                    continue;
                }
                Err(m) => {
                    self.err(k("password_hash"), m);
                    continue;
                }
            };
            let claims = match serde_json::to_value(&u.claims) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            users.push(User {
                subject: u.subject.unwrap_or_else(|| u.username.clone()),
                username: u.username,
                password,
                roles: u.roles,
                claims,
            });
        }
        let store = match raw.store.backend.as_str() {
            "sqlite" => StoreBackend::Sqlite(self.path(&raw.store.path)),
            "memory" => StoreBackend::Memory,
            other => {
                self.err(
                    "store.backend",
                    format!("unknown backend {other:?} (known: sqlite, memory)"),
                );
                StoreBackend::Memory
            }
        };
        let mut rate = |key: &str, v: &str| match Rate::parse(v) {
            Ok(r) => r,
            Err(m) => {
                self.err(key, m);
                Rate {
                    count: 1,
                    window: Duration::from_secs(1),
                }
            }
        };
        let rate_limit = RateLimits {
            token_endpoint: rate("rate_limit.token_endpoint", &raw.rate_limit.token_endpoint),
            failed_auth_lockout: rate(
                "rate_limit.failed_auth_lockout",
                &raw.rate_limit.failed_auth_lockout,
            ),
        };

        let mut upstreams: Vec<Upstream> = Vec::new();
        for (i, ru) in raw.upstreams.into_iter().enumerate() {
            if let Some(u) = self.upstream(i, ru) {
                if upstreams.iter().any(|x| x.name == u.name) {
                    self.err(
                        format!("upstreams[{i}].name"),
                        format!("duplicate upstream name {:?}", u.name),
                    );
                }
                upstreams.push(u);
            }
        }

        let mut routes = Vec::new();
        for (i, rr) in raw.routes.into_iter().enumerate() {
            if let Some(r) = self.route(i, rr, &upstreams, &issuers) {
                routes.push(r);
            }
        }
        self.check_overlaps(&routes);
        if routes.is_empty() {
            self.err("routes", "no routes: add at least one [[routes]] table");
        }

        Config {
            file: file.to_path_buf(),
            server,
            tls,
            validation,
            issuers,
            upstreams,
            routes,
            token_service,
            clients,
            users,
            store,
            rate_limit,
        }
    }

    fn token_service(&mut self, t: RawTokenService, public_url: &str) -> TokenServiceSettings {
        let k = |f: &str| format!("token_service.{f}");
        let issuer = t.issuer.unwrap_or_else(|| public_url.to_string());
        if url::Url::parse(&issuer)
            .map(|u| u.scheme() != "https" && u.scheme() != "http")
            .unwrap_or(true)
        {
            self.err(k("issuer"), format!("{issuer:?} is not an http(s) URL"));
        }
        if t.audience.is_empty() {
            self.err(k("audience"), "name at least one audience");
        }
        if t.signing_keys.is_empty() {
            self.err(
                k("signing_keys"),
                "name at least one key file (it is created when missing)",
            );
        }
        let key_algorithm = match t.key_algorithm.as_str() {
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                self.err(
                    k("key_algorithm"),
                    format!("{other:?} is not one of ES256, RS256, EdDSA"),
                );
                Algorithm::ES256
            }
        };
        let ttl = |c: &mut Self, f: &str, v: &str| {
            let d = c.duration(&k(f), v);
            if d < Duration::from_secs(1) {
                c.err(k(f), "must be at least 1s");
            }
            d
        };
        TokenServiceSettings {
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: t.audience,
            access_token_ttl: ttl(self, "access_token_ttl", &t.access_token_ttl),
            refresh_token_ttl: ttl(self, "refresh_token_ttl", &t.refresh_token_ttl),
            code_ttl: ttl(self, "code_ttl", &t.code_ttl),
            signing_keys: t.signing_keys.iter().map(|p| self.path(p)).collect(),
            key_algorithm,
        }
    }

    fn client(&mut self, i: usize, c: RawClient, ts: &TokenServiceSettings) -> Option<Client> {
        let k = |f: &str| format!("clients[{i}].{f}");
        if c.client_id.is_empty()
            || c.client_id.len() > 128
            || c.client_id.chars().any(|ch| ch.is_control() || ch == ':')
        {
            self.err(
                k("client_id"),
                "required: up to 128 printable characters, no ':'",
            );
        }
        let secret = match &c.secret_hash {
            Some(h) => match SecretHash::parse(h) {
                Ok(s) => Some(s),
                Err(m) => {
                    self.err(k("secret_hash"), m);
                    None
                }
            },
            None => None,
        };
        let mut grant_types = Vec::new();
        for (j, g) in c.grant_types.iter().enumerate() {
            match GrantType::parse(g) {
                Some(gt) => grant_types.push(gt),
                None => self.err(
                    format!("clients[{i}].grant_types[{j}]"),
                    format!("unknown grant type {g:?}"),
                ),
            }
        }
        let keys = if let Some(u) = &c.jwks_uri {
            if !c.public_keys.is_empty() {
                self.err(k("jwks_uri"), "set jwks_uri or public_keys, not both");
            }
            ClientKeys::JwksUri(u.clone())
        } else if !c.public_keys.is_empty() {
            let algs = CLIENT_KEY_ALGORITHMS;
            let mut keys = Vec::new();
            for (j, p) in c.public_keys.iter().enumerate() {
                let path = self.path(p);
                match std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|pem| VerifyKey::from_pem(&pem, &algs))
                {
                    Ok(key) => keys.push(Arc::new(key)),
                    Err(m) => self.err(format!("clients[{i}].public_keys[{j}]"), m),
                }
            }
            ClientKeys::Static(keys)
        } else {
            ClientKeys::None
        };
        if c.public {
            if secret.is_some() {
                self.err(k("secret_hash"), "a public client has no secret");
            }
        } else if secret.is_none() && matches!(keys, ClientKeys::None) {
            self.err(
                k("secret_hash"),
                "a confidential client needs secret_hash, jwks_uri or public_keys",
            );
        }
        if grant_types.contains(&GrantType::JwtBearer) && matches!(keys, ClientKeys::None) {
            self.err(
                k("grant_types"),
                "the jwt-bearer grant needs the client's keys (jwks_uri or public_keys)",
            );
        }
        let default_scopes = c.default_scopes.unwrap_or_else(|| c.scopes.clone());
        for s in &default_scopes {
            if !c.scopes.contains(s) {
                self.err(k("default_scopes"), format!("{s:?} is not in scopes"));
            }
        }
        Some(Client {
            client_id: c.client_id,
            secret,
            grant_types,
            scopes: c.scopes,
            default_scopes,
            roles: c.roles,
            audience: c.audience.unwrap_or_else(|| ts.audience.clone()),
            redirect_uris: c.redirect_uris,
            public: c.public,
            keys,
            jwt_bearer_subjects: c.jwt_bearer_subjects.unwrap_or_default(),
        })
    }

    fn check_tls_files(&mut self, tls: &TlsSettings) {
        let cert_ok = tls.cert.exists();
        let key_ok = tls.key.exists();
        if !cert_ok || !key_ok {
            if !tls.self_signed_if_missing {
                if !cert_ok {
                    self.err(
                        "tls.cert",
                        format!(
                            "{} does not exist (set tls.self_signed_if_missing = true to create a development certificate)",
                            tls.cert.display()
                        ),
                    );
                }
                if !key_ok {
                    self.err("tls.key", format!("{} does not exist", tls.key.display()));
                }
            }
            return;
        }
        if let Err(e) = crate::tlsfiles::check_pair(&tls.cert, &tls.key) {
            self.err("tls", e);
        }
    }

    fn issuer(&mut self, i: usize, r: RawIssuer) -> Option<Issuer> {
        let k = |f: &str| format!("issuers[{i}].{f}");
        if r.name.is_empty() {
            self.err(k("name"), "required");
        } else if r.name == "self" {
            self.err(
                k("name"),
                "\"self\" is reserved for the gateway's own token service",
            );
        }
        if r.issuer.is_empty() {
            self.err(k("issuer"), "required: the exact `iss` value of its tokens");
        }
        if r.audiences.is_empty() {
            self.err(
                k("audiences"),
                "name at least one audience: `aud` is always checked",
            );
        }
        let mut algorithms = Vec::new();
        if r.algorithms.is_empty() {
            self.err(
                k("algorithms"),
                "name at least one algorithm, e.g. [\"RS256\"]",
            );
        }
        for (j, a) in r.algorithms.iter().enumerate() {
            match parse_algorithm(a) {
                Ok(alg) => algorithms.push(alg),
                Err(m) => self.err(format!("issuers[{i}].algorithms[{j}]"), m),
            }
        }
        let hmac = algorithms
            .iter()
            .filter(|a| a.family() == AlgorithmFamily::Hmac)
            .count();
        let sources = [
            r.discovery,
            r.jwks_uri.is_some(),
            !r.keys.is_empty(),
            r.secret_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            self.err(
                k("discovery"),
                "set exactly one key source: discovery = true, jwks_uri, keys or secret_env",
            );
        }
        let source = if let Some(var) = &r.secret_env {
            if hmac != algorithms.len() {
                self.err(
                    k("algorithms"),
                    "a secret_env issuer accepts only HS256, HS384 or HS512",
                );
            }
            match std::env::var(var) {
                Ok(v) if v.len() >= 32 => match VerifyKey::hmac(v.as_bytes(), algorithms.clone()) {
                    Ok(k) => KeySource::Static(vec![Arc::new(k)]),
                    Err(m) => {
                        self.err(k("secret_env"), m);
                        KeySource::Static(vec![])
                    }
                },
                Ok(_) => {
                    self.err(
                        k("secret_env"),
                        format!("the secret in ${var} is shorter than 32 bytes"),
                    );
                    KeySource::Static(vec![])
                }
                Err(_) => {
                    self.err(
                        k("secret_env"),
                        format!("environment variable {var} is not set"),
                    );
                    KeySource::Static(vec![])
                }
            }
        } else {
            if hmac > 0 {
                self.err(
                    k("algorithms"),
                    "HS256/384/512 need a shared secret (secret_env); public-key issuers cannot use them",
                );
            }
            if r.discovery {
                KeySource::Discovery
            } else if let Some(u) = &r.jwks_uri {
                if url::Url::parse(u)
                    .map(|x| x.scheme() != "https" && x.scheme() != "http")
                    .unwrap_or(true)
                {
                    self.err(k("jwks_uri"), format!("{u:?} is not an http(s) URL"));
                }
                KeySource::JwksUri(u.clone())
            } else {
                let mut keys = Vec::new();
                for (j, p) in r.keys.iter().enumerate() {
                    let path = self.path(p);
                    match std::fs::read(&path) {
                        Ok(pem) => match VerifyKey::from_pem(&pem, &algorithms) {
                            Ok(key) => keys.push(Arc::new(key)),
                            Err(m) => self.err(format!("issuers[{i}].keys[{j}]"), m),
                        },
                        Err(e) => self.err(
                            format!("issuers[{i}].keys[{j}]"),
                            format!("cannot read {}: {e}", path.display()),
                        ),
                    }
                }
                KeySource::Static(keys)
            }
        };
        if r.discovery
            && url::Url::parse(&r.issuer)
                .map(|x| x.scheme() != "https" && x.scheme() != "http")
                .unwrap_or(true)
        {
            self.err(
                k("issuer"),
                "discovery needs an http(s) issuer URL to find /.well-known/openid-configuration",
            );
        }
        let jwks_min_refresh = self.duration(&k("jwks_min_refresh"), &r.jwks_min_refresh);
        let jwks_max_refresh = self.duration(&k("jwks_max_refresh"), &r.jwks_max_refresh);
        let jwks_stale_for = self.duration(&k("jwks_stale_for"), &r.jwks_stale_for);
        let jwks_fetch_timeout = self.duration(&k("jwks_fetch_timeout"), &r.jwks_fetch_timeout);
        if jwks_min_refresh > jwks_max_refresh {
            self.err(
                k("jwks_min_refresh"),
                "must not be longer than jwks_max_refresh",
            );
        }
        if jwks_fetch_timeout.is_zero() {
            self.err(k("jwks_fetch_timeout"), "must be longer than 0s");
        }
        if r.jwks_max_bytes < 1024 {
            self.err(k("jwks_max_bytes"), "must be at least 1024");
        }
        Some(Issuer {
            index: 0,
            require_typ: None,
            name: r.name,
            issuer: r.issuer,
            source,
            audiences: r.audiences,
            route_audiences: None,
            algorithms,
            roles_claim: ClaimPath::new(&r.roles_claim),
            scopes_claim: r.scopes_claim.as_deref().map(ClaimPath::new),
            jwks_min_refresh,
            jwks_max_refresh,
            jwks_stale_for,
            jwks_fetch_timeout,
            jwks_max_bytes: r.jwks_max_bytes,
        })
    }

    fn upstream(&mut self, i: usize, r: RawUpstream) -> Option<Upstream> {
        let k = |f: &str| format!("upstreams[{i}].{f}");
        if r.name.is_empty() {
            self.err(k("name"), "required");
        }
        let kind = match r.kind.as_str() {
            "whoami" => {
                if !r.peers.is_empty() {
                    self.err(k("peers"), "a whoami upstream has no peers");
                }
                UpstreamKind::Whoami
            }
            "http" => {
                if r.peers.is_empty() {
                    self.err(
                        k("peers"),
                        "name at least one peer, e.g. [\"10.0.0.5:8080\"]",
                    );
                }
                let mut peers = Vec::new();
                let mut peer_names = Vec::new();
                for (j, p) in r.peers.iter().enumerate() {
                    match p.to_socket_addrs().map(|mut a| a.next()) {
                        Ok(Some(a)) => {
                            peers.push(a);
                            peer_names.push(p.clone());
                        }
                        _ => self.err(
                            format!("upstreams[{i}].peers[{j}]"),
                            format!("{p:?} is not HOST:PORT that resolves"),
                        ),
                    }
                }
                if let Some(h) = &r.health_check {
                    if !h.starts_with('/') {
                        self.err(k("health_check"), "must be a path starting with /");
                    }
                }
                let ca = r.ca.as_deref().map(|p| self.path(p));
                if let Some(ca) = &ca {
                    if let Err(e) = std::fs::read(ca) {
                        self.err(k("ca"), format!("cannot read {}: {e}", ca.display()));
                    } else if !r.tls {
                        self.err(k("ca"), "set tls = true to use a CA file");
                    }
                }
                let sni = r.sni.clone().unwrap_or_else(|| {
                    r.peers
                        .first()
                        .and_then(|p| p.rsplit_once(':').map(|(h, _)| h.to_string()))
                        .unwrap_or_default()
                        .trim_matches(|c| c == '[' || c == ']')
                        .to_string()
                });
                let health_interval = self.duration(&k("health_interval"), &r.health_interval);
                if health_interval < Duration::from_millis(100) {
                    self.err(k("health_interval"), "must be at least 100ms");
                }
                UpstreamKind::Http(HttpUpstream {
                    peers,
                    peer_names,
                    tls: r.tls,
                    sni,
                    ca,
                    health_check: r.health_check.clone(),
                    health_interval,
                    connect_timeout: self.duration(&k("connect_timeout"), &r.connect_timeout),
                    read_timeout: self.duration(&k("read_timeout"), &r.read_timeout),
                    retries: r.retries.unwrap_or(1),
                })
            }
            other => {
                self.err(
                    k("kind"),
                    format!("unknown kind {other:?} (known: http, whoami)"),
                );
                return None;
            }
        };
        Some(Upstream { name: r.name, kind })
    }

    fn route(
        &mut self,
        i: usize,
        r: RawRoute,
        upstreams: &[Upstream],
        issuers: &[Arc<Issuer>],
    ) -> Option<Route> {
        let k = |f: &str| format!("routes[{i}].{f}");
        let name = r.name.clone().unwrap_or_else(|| format!("routes[{i}]"));
        let host = r.host.as_deref().map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(rest) => HostPattern::Suffix(format!(".{rest}")),
                None => HostPattern::Exact(h),
            }
        });
        if let Some(HostPattern::Exact(h) | HostPattern::Suffix(h)) = &host {
            if h.is_empty() || h.contains('*') || h.contains('/') {
                self.err(k("host"), "write an exact host or \"*.example.com\"");
            }
        }
        let path_prefix = match normalise_prefix(&r.path_prefix) {
            Ok(p) => p,
            Err(m) => {
                self.err(k("path_prefix"), m);
                "/".into()
            }
        };
        let methods = r.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(j, m)| {
                    let up = m.to_ascii_uppercase();
                    match http::Method::from_bytes(up.as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            self.err(
                                format!("routes[{i}].methods[{j}]"),
                                format!("{m:?} is not a method"),
                            );
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        if matches!(&methods, Some(m) if m.is_empty()) {
            self.err(
                k("methods"),
                "empty list: omit the key to allow every method",
            );
        }
        let upstream = match upstreams.iter().position(|u| u.name == r.upstream) {
            Some(u) => u,
            None => {
                let known: Vec<_> = upstreams.iter().map(|u| u.name.as_str()).collect();
                self.err(
                    k("upstream"),
                    format!(
                        "no upstream named {:?} (known: {})",
                        r.upstream,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                0
            }
        };
        let auth = match r.auth.as_str() {
            "required" => AuthMode::Required,
            "optional" => AuthMode::Optional,
            "public" => AuthMode::Public,
            other => {
                self.err(
                    k("auth"),
                    format!("{other:?} is not one of \"required\", \"optional\", \"public\""),
                );
                AuthMode::Required
            }
        };
        let issuer_idx: Vec<usize> = match &r.issuers {
            None => (0..issuers.len()).collect(),
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(j, n)| match issuers.iter().position(|x| &x.name == n) {
                    Some(p) => Some(p),
                    None => {
                        let known: Vec<_> = issuers.iter().map(|x| x.name.as_str()).collect();
                        self.err(
                            format!("routes[{i}].issuers[{j}]"),
                            format!(
                                "no issuer named {n:?} (known: {})",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                        None
                    }
                })
                .collect(),
        };
        if auth != AuthMode::Public && issuer_idx.is_empty() && issuers.is_empty() {
            self.err(
                k("auth"),
                "the route takes tokens but no [[issuers]] are configured (use auth = \"public\")",
            );
        }
        let has_policy = !(r.roles_any.is_empty()
            && r.roles_all.is_empty()
            && r.scopes_any.is_empty()
            && r.scopes_all.is_empty()
            && r.claims.is_empty());
        if auth == AuthMode::Public && has_policy {
            self.err(
                k("auth"),
                "a public route cannot require roles, scopes or claims",
            );
        }
        let claims = r
            .claims
            .iter()
            .filter_map(|(name, v)| match serde_json::to_value(v) {
                Ok(j) => Some((ClaimPath::new(name), j)),
                Err(e) => {
                    self.err(format!("routes[{i}].claims.{name}"), e.to_string());
                    None
                }
            })
            .collect();
        let mut token_from = TokenSources::default();
        for (j, t) in r.token_from.iter().enumerate() {
            if t == "header" {
                token_from.header = true;
            } else if let Some(q) = t.strip_prefix("query:").filter(|q| !q.is_empty()) {
                token_from.query.push(q.to_string());
            } else if let Some(c) = t.strip_prefix("cookie:").filter(|c| !c.is_empty()) {
                token_from.cookie.push(c.to_string());
            } else {
                self.err(
                    format!("routes[{i}].token_from[{j}]"),
                    format!("{t:?} is not \"header\", \"query:NAME\" or \"cookie:NAME\""),
                );
            }
        }
        if r.token_from.is_empty() && auth != AuthMode::Public {
            self.err(
                k("token_from"),
                "empty: the route could never receive a token",
            );
        }
        let mut claim_headers = default_claim_headers();
        for (hname, claim) in &r.claim_headers {
            let key = format!("routes[{i}].claim_headers.\"{hname}\"");
            let Ok(name) = HeaderName::from_bytes(hname.as_bytes()) else {
                self.err(key, "not a valid header name");
                continue;
            };
            if RESERVED_HEADERS.contains(&name.as_str()) {
                self.err(key, format!("{hname} cannot carry a claim"));
                continue;
            }
            if claim.is_empty() {
                self.err(key, "name a claim, e.g. \"email\"");
                continue;
            }
            let source = ClaimSource::Claim(ClaimPath::new(claim));
            match claim_headers.iter_mut().find(|h| h.name == name) {
                Some(h) => h.source = source,
                None => claim_headers.push(ClaimHeader {
                    name,
                    wire: bytes::Bytes::from(hname.clone()),
                    source,
                }),
            }
        }
        let needs_claims = !r.claims.is_empty()
            || claim_headers
                .iter()
                .any(|h| matches!(h.source, ClaimSource::Claim(_)));
        if let Some(a) = &r.audiences {
            if a.is_empty() || a.iter().any(String::is_empty) {
                self.err(
                    k("audiences"),
                    "name at least one audience, or omit the key for the issuer's",
                );
            }
        }
        Some(Route {
            audiences: r.audiences,
            needs_claims,
            index: i,
            name,
            host,
            path_prefix,
            methods,
            upstream,
            auth,
            issuers: issuer_idx,
            policy: Policy {
                roles_any: r.roles_any,
                roles_all: r.roles_all,
                scopes_any: r.scopes_any,
                scopes_all: r.scopes_all,
                claims,
            },
            token_from,
            forward_token: r.forward_token,
            strip_prefix: r.strip_prefix,
            claim_headers,
        })
    }

    /// Two routes for the same host and prefix must not both take a method.
    fn check_overlaps(&mut self, routes: &[Route]) {
        let mut seen: HashMap<(Option<HostPattern>, String), Vec<usize>> = HashMap::new();
        for r in routes {
            let slot = seen
                .entry((r.host.clone(), r.path_prefix.clone()))
                .or_default();
            for &other in slot.iter() {
                let o = &routes[other];
                let clash = match (&o.methods, &r.methods) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                };
                if clash {
                    self.problems.push(Problem {
                        key: format!("routes[{}].path_prefix", r.index),
                        message: format!(
                            "{:?} is already matched by routes[{}] ({}) for the same host and methods",
                            r.path_prefix, o.index, o.name
                        ),
                    });
                }
            }
            slot.push(r.index);
        }
    }
}
