//! Serde mirror of gateway.toml: every key a user may write, with nothing resolved yet.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub validation: RawValidation,
    pub issuers: Vec<RawIssuer>,
    pub upstreams: Vec<RawUpstream>,
    pub routes: Vec<RawRoute>,
    pub token_service: Option<RawTokenService>,
    pub clients: Vec<RawClient>,
    pub users: Vec<RawUser>,
    pub store: RawStore,
    pub rate_limit: RawRateLimit,
    pub sessions: RawSessions,
    pub login_providers: Vec<RawLoginProvider>,
    pub forward_auth: Option<RawForwardAuth>,
    pub audit: Option<RawAudit>,
    pub telemetry: Option<super::telemetry::RawTelemetry>,
    pub admin: super::admin::RawAdmin,
}

/// `[audit]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawAudit {
    pub source: Option<String>,
    pub allow_sample_ratio: f64,
    pub file: Option<String>,
    pub file_max_bytes: u64,
    pub file_keep: u32,
    pub stdout: bool,
    pub otlp: bool,
    pub queue: usize,
    pub http_endpoint: Option<String>,
    pub http_batch_size: usize,
    pub http_flush_interval: String,
    pub http_queue: usize,
    pub http_timeout: String,
    pub http_max_backoff: String,
    pub http_token_env: Option<String>,
    pub http_token_header: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            source: None,
            allow_sample_ratio: 0.0,
            file: None,
            file_max_bytes: 100 << 20,
            file_keep: 5,
            stdout: false,
            otlp: false,
            queue: 10_000,
            http_endpoint: None,
            http_batch_size: 100,
            http_flush_interval: "1s".into(),
            http_queue: 10_000,
            http_timeout: "5s".into(),
            http_max_backoff: "30s".into(),
            http_token_env: None,
            http_token_header: "authorization".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawForwardAuth {
    pub path: String,
    pub listeners: Vec<String>,
}

impl Default for RawForwardAuth {
    fn default() -> Self {
        RawForwardAuth {
            path: "/oauth/forward-auth".into(),
            listeners: vec![],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub listen_tls: Vec<String>,
    pub listen_plain: Vec<String>,
    pub admin_listen: Option<String>,
    pub admin_hosts: Vec<String>,
    pub public_url: Option<String>,
    pub threads: usize,
    pub work_stealing: bool,
    pub strip_override_headers: bool,
    pub trusted_proxies: Vec<String>,
    pub request_header_timeout: String,
    pub watch_config: bool,
    pub h2c: bool,
    pub upgrade_sock: String,
    pub shutdown_grace: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen_tls: vec!["0.0.0.0:8443".into()],
            listen_plain: vec![],
            admin_listen: Some("127.0.0.1:9901".into()),
            admin_hosts: vec![],
            public_url: None,
            threads: 2,
            work_stealing: false,
            strip_override_headers: true,
            trusted_proxies: vec![],
            request_header_timeout: "10s".into(),
            watch_config: false,
            h2c: false,
            upgrade_sock: "/tmp/gatehouse-upgrade.sock".into(),
            shutdown_grace: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub self_signed_if_missing: bool,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            cert: "certs/gateway.crt".into(),
            key: "certs/gateway.key".into(),
            self_signed_if_missing: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawValidation {
    pub leeway: String,
    pub max_token_bytes: usize,
    pub verified_cache_capacity: u64,
    pub verified_cache_max_bytes: u64,
}

impl Default for RawValidation {
    fn default() -> Self {
        RawValidation {
            leeway: "30s".into(),
            max_token_bytes: 8192,
            verified_cache_capacity: 100_000,
            verified_cache_max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawIssuer {
    pub name: String,
    pub issuer: String,
    pub discovery: bool,
    pub jwks_uri: Option<String>,
    pub keys: Vec<String>,
    pub secret_env: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    pub roles_claim: String,
    pub scopes_claim: Option<String>,
    pub jwks_min_refresh: String,
    pub jwks_max_refresh: String,
    pub jwks_stale_for: String,
    pub jwks_fetch_timeout: String,
    pub jwks_max_bytes: usize,
    pub ca: Option<String>,
    pub tenants: Vec<String>,
}

impl Default for RawIssuer {
    fn default() -> Self {
        RawIssuer {
            name: String::new(),
            issuer: String::new(),
            discovery: false,
            jwks_uri: None,
            keys: vec![],
            secret_env: None,
            audiences: vec![],
            algorithms: vec![],
            roles_claim: "roles".into(),
            scopes_claim: None,
            jwks_min_refresh: "30s".into(),
            jwks_max_refresh: "1h".into(),
            jwks_stale_for: "24h".into(),
            jwks_fetch_timeout: "5s".into(),
            jwks_max_bytes: 256 * 1024,
            ca: None,
            tenants: vec![],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub name: String,
    pub kind: String,
    pub peers: Vec<String>,
    pub tls: bool,
    pub sni: Option<String>,
    pub ca: Option<String>,
    pub health_check: Option<String>,
    pub health_interval: String,
    pub connect_timeout: String,
    pub read_timeout: String,
    pub retries: Option<usize>,
    pub protocol: String,
    pub exchange: Option<RawExchange>,
}

/// `[[upstreams]] exchange`: the token the upstream receives instead of the caller's.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawExchange {
    pub audience: String,
    /// space-separated, as OAuth writes scopes
    pub scope: Option<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            name: String::new(),
            kind: "http".into(),
            peers: vec![],
            tls: false,
            sni: None,
            ca: None,
            health_check: None,
            health_interval: "5s".into(),
            connect_timeout: "2s".into(),
            read_timeout: "30s".into(),
            retries: None,
            protocol: "http1".into(),
            exchange: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: String,
    pub methods: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub forward_auth_only: bool,
    pub allow_cors_preflight: bool,
    pub auth: String,
    pub issuers: Option<Vec<String>>,
    pub roles_any: Vec<String>,
    pub roles_all: Vec<String>,
    pub scopes_any: Vec<String>,
    pub scopes_all: Vec<String>,
    pub claims: BTreeMap<String, toml::Value>,
    pub token_from: Vec<String>,
    pub forward_token: bool,
    pub strip_prefix: bool,
    pub claim_headers: BTreeMap<String, String>,
    pub audiences: Option<Vec<String>>,
    pub identity_jwt: bool,
    pub login: Option<OneOrMany>,
    pub stream_idle_timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub mcp: bool,
    pub resource: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub resource_name: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub mcp_tools: Vec<RawToolRule>,
    pub dpop: String,
    /// CEL expressions that must all hold
    pub allow_if: Option<OneOrMany>,
    /// CEL expressions any of which refuses
    pub deny_if: Option<OneOrMany>,
}

/// One `[[routes.mcp_tools]]` rule.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawToolRule {
    pub r#match: String,
    pub kind: String,
    pub deny: bool,
    pub roles_any: Vec<String>,
    pub roles_all: Vec<String>,
    pub scopes_any: Vec<String>,
    pub scopes_all: Vec<String>,
    pub claims: BTreeMap<String, toml::Value>,
}

impl Default for RawToolRule {
    fn default() -> Self {
        RawToolRule {
            r#match: String::new(),
            kind: "tool".into(),
            deny: false,
            roles_any: vec![],
            roles_all: vec![],
            scopes_any: vec![],
            scopes_all: vec![],
            claims: BTreeMap::new(),
        }
    }
}

impl Default for RawRoute {
    fn default() -> Self {
        RawRoute {
            name: None,
            host: None,
            path_prefix: "/".into(),
            methods: None,
            upstream: None,
            forward_auth_only: false,
            allow_cors_preflight: false,
            auth: "required".into(),
            issuers: None,
            roles_any: vec![],
            roles_all: vec![],
            scopes_any: vec![],
            scopes_all: vec![],
            claims: BTreeMap::new(),
            token_from: vec!["header".into()],
            forward_token: false,
            strip_prefix: false,
            claim_headers: BTreeMap::new(),
            audiences: None,
            identity_jwt: false,
            login: None,
            stream_idle_timeout: None,
            max_body_bytes: None,
            mcp: false,
            resource: None,
            authorization_servers: None,
            resource_name: None,
            allowed_origins: None,
            mcp_tools: vec![],
            dpop: "allowed".into(),
            allow_if: None,
            deny_if: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawTokenService {
    pub enabled: bool,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub access_token_ttl: String,
    pub refresh_token_ttl: String,
    pub code_ttl: String,
    pub signing_keys: Vec<String>,
    pub key_algorithm: String,
    pub max_assertion_lifetime: String,
    pub registration: String,
    pub registration_token_env: Option<String>,
    pub registration_scopes: Option<Vec<String>>,
    pub client_id_metadata_documents: bool,
    pub cimd_allow_private: bool,
    pub cimd_ca: Option<String>,
    pub dpop_algorithms: Vec<String>,
    pub dpop_max_age: String,
    pub dpop_nonce: bool,
}

impl Default for RawTokenService {
    fn default() -> Self {
        RawTokenService {
            enabled: true,
            issuer: None,
            audience: vec!["gatehouse".into()],
            access_token_ttl: "15m".into(),
            refresh_token_ttl: "7d".into(),
            code_ttl: "60s".into(),
            signing_keys: vec!["certs/signing-es256.pem".into()],
            key_algorithm: "ES256".into(),
            max_assertion_lifetime: "1h".into(),
            registration: "off".into(),
            registration_token_env: None,
            registration_scopes: None,
            client_id_metadata_documents: false,
            cimd_allow_private: false,
            cimd_ca: None,
            dpop_algorithms: ["ES256", "RS256", "EdDSA", "PS256"]
                .map(String::from)
                .to_vec(),
            dpop_max_age: "5m".into(),
            dpop_nonce: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawClient {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Option<Vec<String>>,
    pub roles: Vec<String>,
    pub audience: Option<Vec<String>>,
    pub redirect_uris: Vec<String>,
    pub public: bool,
    pub jwks_uri: Option<String>,
    pub public_keys: Vec<String>,
    pub jwt_bearer_subjects: Option<Vec<String>>,
    pub exchange_issuers: Vec<String>,
    pub exchange_impersonation: bool,
    pub id_token_signed_response_alg: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub dpop_bound: bool,
}

impl Default for RawClient {
    fn default() -> Self {
        RawClient {
            client_id: String::new(),
            secret_hash: None,
            grant_types: vec!["client_credentials".into()],
            scopes: vec![],
            default_scopes: None,
            roles: vec![],
            audience: None,
            redirect_uris: vec![],
            public: false,
            jwks_uri: None,
            public_keys: vec![],
            jwt_bearer_subjects: None,
            exchange_issuers: vec![],
            exchange_impersonation: false,
            id_token_signed_response_alg: None,
            allowed_origins: None,
            dpop_bound: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawStore {
    pub backend: String,
    pub path: String,
    pub url: Option<String>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: "sqlite".into(),
            path: "data/gatehouse.db".into(),
            url: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawRateLimit {
    pub token_endpoint: String,
    pub failed_auth_lockout: String,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            token_endpoint: "20/s".into(),
            failed_auth_lockout: "10/5m".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUser {
    pub username: String,
    pub password_hash: String,
    pub subject: Option<String>,
    pub roles: Vec<String>,
    pub claims: BTreeMap<String, toml::Value>,
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawSessions {
    pub cookie_name: String,
    pub idle_timeout: String,
    pub absolute_timeout: String,
    pub after_logout: String,
    pub brand_name: Option<String>,
    pub brand_logo: Option<String>,
    pub page_template: Option<String>,
    pub state_secret_env: Option<String>,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            cookie_name: "__Host-gatehouse".into(),
            idle_timeout: "30m".into(),
            absolute_timeout: "12h".into(),
            after_logout: "/".into(),
            brand_name: None,
            brand_logo: None,
            page_template: None,
            state_secret_env: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLoginProvider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub scopes: Vec<String>,
    pub roles_claim: Option<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub ca: Option<String>,
}

impl Default for RawLoginProvider {
    fn default() -> Self {
        RawLoginProvider {
            name: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret_env: None,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            roles_claim: None,
            allowed_domains: vec![],
            allowed_groups: vec![],
            ca: None,
        }
    }
}

/// A key that takes one string or a list of them (route `login`, `allow_if`, `deny_if`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
