//! The gateway's own OAuth 2.1 authorization server: token, introspection and revocation endpoints,
//! client authentication, signing keys, JWKS and metadata.

mod auth_request;
pub mod authorize;
pub mod cimd;
mod client_auth;
mod client_keys;
mod delegation;
pub mod directory;
pub mod endpoint;
mod error;
mod exchange;
mod form_token;
mod grants;
mod introspect;
pub mod keys;
pub mod limits;
mod metadata;
mod operator;
pub mod register;
mod request;
mod resources;
pub mod subjects;
mod upstream_exchange;
mod users;

#[cfg(test)]
mod dpop_tests;
#[cfg(test)]
mod resource_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use error::OAuthErrorCode;
pub use users::released_claims;

pub use crate::crypto::{argon2_hash, random_token, secret_matches, sha256_hash, sha256_hex};

use crate::auth::jwt;
use crate::auth::{Revocations, Verifier};
use crate::clock::SharedClock;
use crate::config::{Client, Config, GrantType, TokenServiceSettings};
use crate::crypto::{Decoys, HashPool};
use crate::startup_error::StartupError;
use crate::store::{run_blocking, Store};
use keys::SigningKeys;
use limits::Window;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The outcome of checking a person's credentials.
pub enum SignIn<'a> {
    User(&'a crate::config::User),
    LockedOut,
    Wrong,
    /// the hashing pool is full: try again
    Busy,
}

/// Space-separated scopes as a list.
pub(crate) fn split_scopes(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a grant issued, so a replayed authorization code can revoke it.
#[derive(Debug, Clone, Default)]
pub struct Issued {
    pub jti: String,
    pub exp: u64,
    pub family: String,
}

/// Sets a member of a JSON object built here (a no-op on anything else, which never happens).
pub(crate) fn put(v: &mut Value, key: impl Into<String>, x: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), x);
    }
}

/// What a token service shares with the gateway's lasting parts: the clock, the audit stream, and
/// whether every revocation is known (a held session is trusted only then).
pub type Parts = (
    SharedClock,
    crate::audit::Audit,
    Arc<crate::store::RevocationsLoaded>,
);

impl TokenService {
    /// Sign-in sessions made so far.
    pub fn sign_ins(&self) -> u64 {
        self.sign_ins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Access tokens signed so far.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_sign_in(&self) {
        self.sign_ins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether any people can sign in with a password here.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }
}

/// Which refresh family an access token belongs to.
#[derive(Clone, Copy)]
enum Family<'a> {
    /// open a new family when the client may refresh
    New,
    /// a refresh of this family
    Continue(&'a str),
}

/// An OAuth error answer (RFC 6749 §5.2, RFC 7009, RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub code: OAuthErrorCode,
    pub description: &'static str,
    /// Basic was used: answer 401 with a Basic challenge
    pub basic: bool,
    pub retry_after: Option<u64>,
    /// the methods a 405 names in `Allow`
    pub allow: Option<&'static str>,
    /// the nonce a `use_dpop_nonce` answer hands out in `DPoP-Nonce`
    pub dpop_nonce: Option<String>,
}

impl crate::respond::AsAnswer for OAuthError {
    fn answer(&self) -> crate::respond::ErrorAnswer {
        let mut headers = vec![("pragma", "no-cache".to_string())];
        // RFC 6749 §5.2: a client that failed to authenticate is told how it may, whatever it tried.
        if self.basic || self.status == 401 {
            headers.push((
                "www-authenticate",
                format!("Basic realm=\"{}\"", crate::respond::REALM),
            ));
        }
        if let Some(r) = self.retry_after {
            headers.push(("retry-after", r.to_string()));
        }
        if let Some(a) = self.allow {
            headers.push(("allow", a.to_string()));
        }
        if let Some(n) = &self.dpop_nonce {
            headers.push(("dpop-nonce", n.clone()));
        }
        crate::respond::ErrorAnswer {
            status: self.status,
            code: self.code.as_str(),
            description: self.description,
            headers,
        }
    }
}

/// Over a request rate: 429 with `Retry-After` and an error code RFC 6749 §5.2 defines.
fn too_many(retry_after: u64, description: &'static str) -> OAuthError {
    OAuthError {
        retry_after: Some(retry_after),
        ..oauth(429, OAuthErrorCode::InvalidRequest, description)
    }
}

fn oauth(status: u16, code: OAuthErrorCode, description: &'static str) -> OAuthError {
    OAuthError {
        status,
        code,
        description,
        basic: false,
        retry_after: None,
        allow: None,
        dpop_nonce: None,
    }
}

fn invalid_request(description: &'static str) -> OAuthError {
    oauth(400, OAuthErrorCode::InvalidRequest, description)
}

fn invalid_grant(description: &'static str) -> OAuthError {
    oauth(400, OAuthErrorCode::InvalidGrant, description)
}

/// A DPoP proof the token endpoint does not take (RFC 9449 §5, §8): 400, with the nonce to use.
fn dpop_refused(refusal: crate::dpop::Refusal) -> OAuthError {
    use crate::dpop::Refusal;
    match refusal {
        Refusal::UseNonce(n) => OAuthError {
            dpop_nonce: Some(n),
            ..oauth(
                400,
                OAuthErrorCode::UseDpopNonce,
                "the DPoP proof must carry the nonce in DPoP-Nonce",
            )
        },
        Refusal::Unavailable => OAuthError {
            retry_after: Some(1),
            ..oauth(
                503,
                OAuthErrorCode::TemporarilyUnavailable,
                "DPoP proofs cannot be checked right now; try again",
            )
        },
        Refusal::Proof(d) | Refusal::Binding(d) => oauth(400, OAuthErrorCode::InvalidDpopProof, d),
    }
}

/// Who a token is for: its subject, the resource asked for (RFC 8707), and the key it is bound to
/// (`cnf.jkt`, RFC 9449), when the request proved one.
#[derive(Clone, Copy)]
pub(crate) struct Grantee<'a> {
    /// the grant that issues, as the audit stream names it (`grant_type`, short for URNs)
    pub grant: &'static str,
    pub subject: &'a str,
    pub resource: Option<&'a str>,
    pub jkt: Option<&'a str>,
}

/// The `token_type` of an answer: `DPoP` for a bound token.
fn token_type(jkt: Option<&str>) -> &'static str {
    match jkt {
        Some(_) => "DPoP",
        None => "Bearer",
    }
}

/// The hashing pool is full: refused at once rather than queued.
fn busy() -> OAuthError {
    OAuthError {
        retry_after: Some(1),
        ..oauth(
            503,
            OAuthErrorCode::TemporarilyUnavailable,
            "too many credential checks in progress; try again",
        )
    }
}

/// The service has no key to sign with (never after a successful start).
fn no_signing_key() -> OAuthError {
    oauth(500, OAuthErrorCode::ServerError, "no signing key is loaded")
}

/// The random generator failed: refuse rather than hand out a predictable value.
fn no_randomness(_: crate::crypto::NoRandomness) -> OAuthError {
    oauth(
        503,
        OAuthErrorCode::TemporarilyUnavailable,
        "no secure random values are available; try again",
    )
}

fn unavailable() -> OAuthError {
    oauth(
        503,
        OAuthErrorCode::TemporarilyUnavailable,
        "the token store is unavailable; try again",
    )
}

/// The token service; answers its endpoints from the proxy's `request_filter`.
pub struct TokenService {
    pub settings: TokenServiceSettings,
    pub keys: SigningKeys,
    public_url: String,
    /// every client: configured, named by a metadata document, or registered
    pub(crate) directory: directory::Directory,
    users: HashMap<String, crate::config::User>,
    /// sign-in form CSRF tokens, each usable once: token -> the pre-login id (cookie) it is bound to
    form_tokens: form_token::FormTokens,
    /// stand-in hashes for unknown users and clients, so timing does not tell them from real ones
    user_decoys: Decoys,
    client_decoys: Decoys,
    /// slow hash checks run here, off the request threads
    pool: HashPool,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    /// token exchange (RFC 8693): the issuers clients may exchange from, the upstreams' tokens
    exchange: upstream_exchange::ExchangeState,
    /// the proxy's verifier: userinfo judges tokens by the same rules (expiry, leeway, revocation)
    verifier: Arc<Verifier>,
    /// the proxy's DPoP judge: proofs here are taken once across the edge and the token endpoint
    dpop: Arc<crate::dpop::Dpop>,
    /// issuer "self": the gateway's own tokens
    own_issuer: Arc<crate::config::Issuer>,
    clock: SharedClock,
    leeway: u64,
    per_client: Window,
    per_address: Window,
    failures: Window,
    client_jwks: client_keys::ClientJwks,
    metadata: String,
    /// the path of the issuer URL without a trailing slash (`/auth`), or empty
    issuer_path: String,
    /// every origin some client allows to call the endpoints from a browser
    cors_origins: Vec<String>,
    /// sign-in sessions made, for metrics
    sign_ins: std::sync::atomic::AtomicU64,
    /// access tokens signed so far, for the metrics and the console's chart
    issued: std::sync::atomic::AtomicU64,
    /// browser sessions, opened by a sign-in here or at `/oauth/login`
    pub sessions: Arc<crate::session::Sessions>,
    /// every configured client id, encoded as a principal holds it
    encoded_clients: std::collections::HashSet<String>,
    /// the protected resources tokens may be asked for (RFC 8707); shared with store calls
    resources: Arc<resources::Resources>,
    /// where token, sign-in and registration events go
    pub(crate) audit: crate::audit::Audit,
}

impl TokenService {
    /// Builds the service; `None` when the configuration has no token service. Fails when no random
    /// key or HTTP client can be had. `judges`: the proxy's verifier and DPoP judge.
    pub fn new(
        config: &Config,
        keys: SigningKeys,
        store: Arc<dyn Store>,
        (verifier, dpop): (Arc<Verifier>, Arc<crate::dpop::Dpop>),
        (clock, audit, loaded): Parts,
    ) -> Result<Option<TokenService>, StartupError> {
        let Some(settings) = config.token_service.clone() else {
            return Ok(None);
        };
        let own_issuer = config
            .issuer_by_name("self")
            .ok_or(StartupError::Setting {
                key: "issuers",
                problem: "the token service has no issuer \"self\"".into(),
            })?
            .clone();
        let revocations = verifier.revocations.clone();
        let public_url = config.server.public_url.clone();
        let limits = config.rate_limit;
        let window = |r: crate::config::Rate| Window::new(r.count, r.window, clock.clone());
        let metadata = metadata::document(config, &settings, &keys);
        let issuer_path = url::Url::parse(&settings.issuer)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let sessions = Arc::new(crate::session::Sessions::new(
            config.sessions.clone(),
            store.clone(),
            clock.clone(),
            own_issuer.clone(),
            audit.clone(),
            (revocations.clone(), loaded),
        ));
        let encoded_clients = encoded_clients(config, &settings);
        Ok(Some(TokenService {
            sessions,
            public_url,
            directory: directory::Directory::new(config, store.clone())
                .map_err(StartupError::part("token_service"))?,
            users: config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            form_tokens: form_tokens(config, &clock, store.as_ref())?,
            user_decoys: decoys(config.users.iter().map(|u| u.password.clone()))?,
            client_decoys: decoys(config.clients.iter().filter_map(|c| c.secret.clone()))?,
            pool: HashPool::for_machine(),
            store: store.clone(),
            revocations,
            exchange: upstream_exchange::ExchangeState::new(
                config,
                upstream_exchange::gateway_client(&settings),
                clock.clone(),
            ),
            verifier,
            dpop,
            own_issuer,
            leeway: config.validation.leeway,
            per_client: window(limits.token_endpoint).shared(store.clone(), "rate"),
            per_address: window(limits.token_endpoint).shared(store.clone(), "rate"),
            failures: window(limits.failed_auth_lockout).shared(store.clone(), "failures"),
            client_jwks: client_keys::ClientJwks::new(&config.clients, clock.clone())
                .map_err(StartupError::part("clients"))?,
            clock,
            metadata,
            issuer_path,
            sign_ins: Default::default(),
            issued: Default::default(),
            cors_origins: cors_origins(config),
            keys,
            settings,
            encoded_clients,
            resources: Arc::new(resources::Resources::new(config.token_service_resources())),
            audit,
        }))
    }
}

/// Sign-in form tokens keyed by `[sessions] state_secret_env` when set (so any replica takes a form
/// another served), taken once in the shared store when there is one.
fn form_tokens(
    config: &Config,
    clock: &SharedClock,
    store: &dyn Store,
) -> Result<form_token::FormTokens, StartupError> {
    let secret = config.sessions.state_secret.as_ref();
    form_token::FormTokens::new(
        secret.map(|s| s.0.as_bytes()),
        clock.clone(),
        authorize::CSRF_SECONDS,
        store.once_ids(),
    )
    .map_err(|e| StartupError::part("token_service")(e.to_string()))
}

/// Stand-in hashes of the kinds these hashes are, for unknown names.
fn decoys(real: impl Iterator<Item = crate::crypto::SecretHash>) -> Result<Decoys, StartupError> {
    Decoys::new(real.collect()).map_err(|e| StartupError::part("token_service")(e.to_string()))
}

/// Every origin some client allows to call the endpoints from a browser, once each.
fn cors_origins(config: &Config) -> Vec<String> {
    let mut o: Vec<String> = config
        .clients
        .iter()
        .flat_map(|c| c.allowed_origins.iter().cloned())
        .collect();
    o.sort();
    o.dedup();
    o
}

/// Every configured client id, and the gateway's own (its upstream exchanges), encoded as a
/// principal holds it.
fn encoded_clients(
    config: &Config,
    settings: &TokenServiceSettings,
) -> std::collections::HashSet<String> {
    let gateway = std::iter::once(settings.issuer.as_str());
    config
        .clients
        .iter()
        .map(|c| c.client_id.as_str())
        .chain(gateway)
        .map(|id| {
            let mut b = Vec::new();
            crate::wire::header_value::push_encoded(&mut b, id, None);
            String::from_utf8_lossy(&b).into_owned()
        })
        .collect()
}
