//! The gateway's own OAuth 2.1 authorization server: token, introspection and revocation endpoints,
//! client authentication, signing keys, JWKS and metadata.

pub mod authorize;
mod client_keys;
mod introspect;
pub mod keys;
pub mod limits;
pub mod subjects;

pub use crate::secrets::{argon2_hash, random_token, secret_matches, sha256_hash, sha256_hex};

use crate::auth::jwt;
use crate::auth::Revocations;
use crate::clock::SharedClock;
use crate::config::{Client, Config, GrantType, TokenServiceSettings, JWT_BEARER};
use crate::error::send;
use crate::secrets::{Decoys, HashPool};
use crate::store::{run_blocking, RefreshRecord, Rotation, Store};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use keys::SigningKeys;
use limits::Window;
use pingora::proxy::Session;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Largest form body the endpoints read.
const MAX_FORM: usize = 16 * 1024;
/// Longest lifetime a client assertion may claim.
const MAX_ASSERTION_LIFETIME: u64 = 300;

/// The outcome of checking a person's credentials.
pub(crate) enum SignIn<'a> {
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
    pub code: &'static str,
    pub description: &'static str,
    /// Basic was used: answer 401 with a Basic challenge
    pub basic: bool,
    pub retry_after: Option<u64>,
}

fn oauth(status: u16, code: &'static str, description: &'static str) -> OAuthError {
    OAuthError {
        status,
        code,
        description,
        basic: false,
        retry_after: None,
    }
}

fn invalid_request(description: &'static str) -> OAuthError {
    oauth(400, "invalid_request", description)
}

fn invalid_grant(description: &'static str) -> OAuthError {
    oauth(400, "invalid_grant", description)
}

/// The hashing pool is full: refused at once rather than queued.
fn busy() -> OAuthError {
    OAuthError {
        retry_after: Some(1),
        ..oauth(
            503,
            "temporarily_unavailable",
            "too many credential checks in progress; try again",
        )
    }
}

fn unavailable() -> OAuthError {
    oauth(
        503,
        "temporarily_unavailable",
        "the token store is unavailable; try again",
    )
}

/// How the client proved itself.
enum Credentials {
    Secret {
        client_id: String,
        secret: String,
        basic: bool,
    },
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
    None {
        client_id: String,
    },
}

/// The token service; answers its endpoints from the proxy's `request_filter`.
pub struct TokenService {
    pub settings: TokenServiceSettings,
    pub keys: SigningKeys,
    public_url: String,
    clients: HashMap<String, Client>,
    users: HashMap<String, crate::config::User>,
    /// sign-in sessions: session id -> (username, auth_time)
    sessions: moka::sync::Cache<String, (String, u64)>,
    /// sign-in form CSRF tokens, each usable once: token -> the pre-login id (cookie) it is bound to
    csrf_tokens: moka::sync::Cache<String, String>,
    /// stand-in hashes for unknown users and clients, so timing does not tell them from real ones
    user_decoys: Decoys,
    client_decoys: Decoys,
    /// slow hash checks run here, off the request threads
    pool: HashPool,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    clock: SharedClock,
    leeway: u64,
    per_client: Window,
    per_address: Window,
    failures: Window,
    client_jwks: client_keys::ClientJwks,
    metadata: String,
}

/// The user's claims a token's scopes release: `email`/`email_verified` with `email`, the others (and
/// `preferred_username`) with `profile`.
pub fn released_claims<S: AsRef<str>>(
    user: &crate::config::User,
    scopes: &[S],
) -> serde_json::Map<String, Value> {
    let has = |s: &str| scopes.iter().any(|x| x.as_ref() == s);
    let mut out = serde_json::Map::new();
    for (k, v) in &user.claims {
        let is_email = k == "email" || k == "email_verified";
        if (is_email && has("email")) || (!is_email && has("profile")) {
            out.insert(k.clone(), v.clone());
        }
    }
    if has("profile") {
        out.insert("preferred_username".into(), json!(user.username));
    }
    out
}

/// Parses a form body; a repeated parameter is an error (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(invalid_request("a parameter was sent more than once"));
        }
    }
    Ok(out)
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

impl TokenService {
    /// Builds the service; `None` when the configuration has no token service.
    pub fn new(
        config: &Config,
        keys: SigningKeys,
        store: Arc<dyn Store>,
        revocations: Arc<Revocations>,
        clock: SharedClock,
    ) -> Option<TokenService> {
        let settings = config.token_service.clone()?;
        let public_url = config.server.public_url.clone();
        let limits = config.rate_limit;
        let window = |r: crate::config::Rate| Window::new(r.count, r.window, clock.clone());
        let metadata = json!({
            "issuer": settings.issuer,
            "token_endpoint": format!("{public_url}/oauth/token"),
            "introspection_endpoint": format!("{public_url}/oauth/introspect"),
            "revocation_endpoint": format!("{public_url}/oauth/revoke"),
            "jwks_uri": format!("{public_url}/.well-known/jwks.json"),
            "grant_types_supported": ["authorization_code", "client_credentials", JWT_BEARER, "refresh_token", "password"],
            "authorization_endpoint": format!("{public_url}/oauth/authorize"),
            "code_challenge_methods_supported": ["S256"],
            "userinfo_endpoint": format!("{public_url}/oauth/userinfo"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code"],
            "scopes_supported": config.clients.iter().flat_map(|c| c.scopes.iter().cloned()).collect::<std::collections::BTreeSet<_>>(),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": keys.keys.iter().map(|k| format!("{:?}", k.alg)).collect::<Vec<_>>(),
        })
        .to_string();
        Some(TokenService {
            public_url,
            clients: config
                .clients
                .iter()
                .map(|c| (c.client_id.clone(), c.clone()))
                .collect(),
            users: config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            csrf_tokens: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(authorize::CSRF_SECONDS))
                .build(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(authorize::SESSION_SECONDS))
                .build(),
            user_decoys: Decoys::new(config.users.iter().map(|u| u.password.clone()).collect()),
            client_decoys: Decoys::new(
                config
                    .clients
                    .iter()
                    .filter_map(|c| c.secret.clone())
                    .collect(),
            ),
            pool: HashPool::for_machine(),
            store,
            revocations,
            leeway: config.validation.leeway,
            per_client: window(limits.token_endpoint),
            per_address: window(limits.token_endpoint),
            failures: window(limits.failed_auth_lockout),
            client_jwks: client_keys::ClientJwks::new(),
            clock,
            metadata,
            keys,
            settings,
        })
    }

    /// True for the paths this service answers.
    pub fn owns(path: &str) -> bool {
        matches!(
            path,
            "/oauth/token"
                | "/oauth/authorize"
                | "/oauth/userinfo"
                | "/oauth/introspect"
                | "/oauth/revoke"
                | "/.well-known/jwks.json"
                | "/.well-known/oauth-authorization-server"
                | "/.well-known/openid-configuration"
        )
    }

    /// Answers one of the service's endpoints.
    pub async fn handle(&self, session: &mut Session, path: &str) -> pingora::Result<()> {
        let method = session.req_header().method.clone();
        let get_only = path.starts_with("/.well-known/");
        let userinfo = path == "/oauth/userinfo" || path == "/oauth/authorize";
        let allowed = if get_only {
            "GET, HEAD"
        } else if userinfo {
            "GET, POST"
        } else {
            "POST"
        };
        let method_ok = if get_only {
            method == http::Method::GET || method == http::Method::HEAD
        } else if userinfo {
            method == http::Method::GET || method == http::Method::POST
        } else {
            method == http::Method::POST
        };
        if !method_ok {
            let body =
                json!({"error": "invalid_request", "error_description": "method not allowed"})
                    .to_string();
            return send(
                session,
                405,
                "application/json",
                &[("allow", allowed.to_string())],
                Bytes::from(body),
            )
            .await;
        }
        match path {
            "/oauth/authorize" => self.authorize(session).await,
            "/oauth/userinfo" => {
                let (status, body, headers) = match self.userinfo(session) {
                    Ok(v) => (200, v, vec![]),
                    Err(desc) => (
                        401,
                        json!({"error": "invalid_token", "error_description": desc}),
                        vec![(
                            "www-authenticate",
                            format!(
                                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{desc}\"",
                                crate::error::REALM
                            ),
                        )],
                    ),
                };
                send(
                    session,
                    status,
                    "application/json",
                    &headers,
                    Bytes::from(body.to_string()),
                )
                .await
            }
            "/.well-known/jwks.json" => {
                let body = Bytes::from(self.keys.jwks.clone());
                send(
                    session,
                    200,
                    "application/json",
                    &[("cache-control", "public, max-age=300".into())],
                    body,
                )
                .await
            }
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
                let body = Bytes::from(self.metadata.clone());
                send(
                    session,
                    200,
                    "application/json",
                    &[("cache-control", "public, max-age=3600".into())],
                    body,
                )
                .await
            }
            _ => {
                let answer = self.post(session, path).await;
                let (status, body, headers) = match answer {
                    Ok(body) => (200, body, vec![]),
                    Err(e) => {
                        let mut h = vec![];
                        if e.basic {
                            h.push((
                                "www-authenticate",
                                format!("Basic realm=\"{}\"", crate::error::REALM),
                            ));
                        }
                        if let Some(r) = e.retry_after {
                            h.push(("retry-after", r.to_string()));
                        }
                        let body = json!({"error": e.code, "error_description": e.description});
                        (e.status, body, h)
                    }
                };
                let mut headers = headers;
                headers.push(("pragma", "no-cache".into()));
                send(
                    session,
                    status,
                    "application/json",
                    &headers,
                    Bytes::from(body.to_string()),
                )
                .await
            }
        }
    }

    async fn read_form(
        &self,
        session: &mut Session,
    ) -> Result<HashMap<String, String>, OAuthError> {
        let req = session.req_header();
        let ct = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        if req
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_FORM)
        {
            session.set_keepalive(None);
            return Err(oauth(
                413,
                "invalid_request",
                "the request body is too large",
            ));
        }
        if req
            .headers
            .get("expect")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        {
            let _ = session.as_downstream_mut().write_continue_response().await;
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_FORM {
                        session.set_keepalive(None);
                        return Err(oauth(
                            413,
                            "invalid_request",
                            "the request body is too large",
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return Err(invalid_request("the request body could not be read")),
            }
        }
        parse_form(&body)
    }

    fn client_address(session: &Session) -> String {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
            .to_string()
    }

    async fn post(&self, session: &mut Session, path: &str) -> Result<Value, OAuthError> {
        let address = format!("ip:{}", Self::client_address(session));
        if !self.per_address.hit(&address) {
            return Err(OAuthError {
                retry_after: Some(self.per_address.retry_after()),
                ..oauth(429, "slow_down", "too many requests from this address")
            });
        }
        if self.failures.exceeded(&address) {
            return Err(OAuthError {
                retry_after: Some(self.failures.retry_after()),
                ..oauth(
                    429,
                    "access_denied",
                    "too many failed authentications; try again later",
                )
            });
        }
        let basic = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let form = self.read_form(session).await?;
        let creds = Self::credentials(basic.as_deref(), &form)?;
        let client = self.authenticate(&creds, &address).await?;
        let authenticated = !matches!(creds, Credentials::None { .. });
        if !self.per_client.hit(&format!("client:{}", client.client_id)) {
            return Err(OAuthError {
                retry_after: Some(self.per_client.retry_after()),
                ..oauth(429, "slow_down", "too many requests for this client")
            });
        }
        match path {
            "/oauth/token" => self.token(client, &form, &address).await,
            "/oauth/introspect" => self.introspect(client, authenticated, &form).await,
            _ => self.revoke(client, &form).await,
        }
    }

    fn credentials(
        basic: Option<&str>,
        form: &HashMap<String, String>,
    ) -> Result<Credentials, OAuthError> {
        let body_secret = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let methods = [
            basic.is_some_and(|b| b.len() > 6 && b[..6].eq_ignore_ascii_case("basic ")),
            body_secret.is_some(),
            assertion.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if methods > 1 {
            return Err(invalid_request(
                "use exactly one client authentication method",
            ));
        }
        if let Some(b) = basic.filter(|b| b.len() > 6 && b[..6].eq_ignore_ascii_case("basic ")) {
            let (client_id, secret) = basic_credentials(b).ok_or(OAuthError {
                basic: true,
                ..oauth(401, "invalid_client", "client authentication failed")
            })?;
            if form.get("client_id").is_some_and(|id| *id != client_id) {
                return Err(invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            return Ok(Credentials::Secret {
                client_id,
                secret,
                basic: true,
            });
        }
        if let Some(secret) = body_secret {
            let client_id = form
                .get("client_id")
                .ok_or(invalid_request("client_id is required"))?;
            return Ok(Credentials::Secret {
                client_id: client_id.clone(),
                secret: secret.clone(),
                basic: false,
            });
        }
        if let Some(a) = assertion {
            if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
                return Err(invalid_request(
                    "client_assertion_type must be the JWT bearer type",
                ));
            }
            return Ok(Credentials::Assertion {
                client_id: form.get("client_id").cloned(),
                assertion: a.clone(),
            });
        }
        match form.get("client_id") {
            Some(id) => Ok(Credentials::None {
                client_id: id.clone(),
            }),
            None => Err(OAuthError {
                basic: true,
                ..oauth(401, "invalid_client", "client authentication is required")
            }),
        }
    }

    /// Authenticates the client. Unknown clients and wrong secrets get the same answer, after the
    /// same kind of work; the lockout applies to every method, assertions included.
    async fn authenticate(
        &self,
        creds: &Credentials,
        address: &str,
    ) -> Result<&Client, OAuthError> {
        let (claimed, basic) = match creds {
            Credentials::Secret {
                client_id, basic, ..
            } => (Some(client_id.clone()), *basic),
            Credentials::Assertion {
                client_id,
                assertion,
            } => {
                // The client is known from the assertion's `iss` before any key is fetched.
                let iss = jwt::parse(assertion)
                    .ok()
                    .and_then(|p| p.iss().map(str::to_string));
                match (client_id, iss) {
                    (Some(a), Some(b)) if *a != b => {
                        return Err(self.auth_failed(address, Some(a), false))
                    }
                    (_, Some(b)) => (Some(b), false),
                    (Some(a), None) => return Err(self.auth_failed(address, Some(a), false)),
                    (None, None) => return Err(self.auth_failed(address, None, false)),
                }
            }
            Credentials::None { client_id } => (Some(client_id.clone()), false),
        };
        let id = claimed.unwrap_or_default();
        if self.failures.exceeded(&format!("client:{id}")) {
            return Err(OAuthError {
                retry_after: Some(self.failures.retry_after()),
                ..oauth(
                    429,
                    "access_denied",
                    "too many failed authentications; try again later",
                )
            });
        }
        match creds {
            Credentials::Secret { secret, .. } => {
                let client = self.clients.get(&id);
                let real = client.and_then(|c| c.secret.clone());
                // An unknown or secretless client is checked against a stand-in of a real kind.
                let hash = real
                    .clone()
                    .unwrap_or_else(|| self.client_decoys.for_name(&id));
                let ok = self.pool.matches(secret, &hash).await.map_err(|_| busy())?;
                match client {
                    Some(c) if ok && real.is_some() => Ok(c),
                    _ => Err(self.auth_failed(address, Some(&id), basic)),
                }
            }
            Credentials::Assertion { assertion, .. } => {
                let Some(client) = self.clients.get(&id) else {
                    return Err(self.auth_failed(address, Some(&id), false));
                };
                match self.check_assertion(client, assertion, true).await {
                    Ok(_) => Ok(client),
                    Err(e) if e.status == 503 => Err(e),
                    Err(e) => {
                        let mut failed = self.auth_failed(address, Some(&id), false);
                        failed.description = e.description;
                        Err(failed)
                    }
                }
            }
            Credentials::None { .. } => match self.clients.get(&id) {
                Some(c) if c.public => Ok(c),
                _ => Err(self.auth_failed(address, Some(&id), false)),
            },
        }
    }

    /// Counts a failed client authentication against the address and the client, and says so.
    fn auth_failed(&self, address: &str, who: Option<&str>, basic: bool) -> OAuthError {
        self.failures.hit(address);
        if let Some(w) = who {
            self.failures.hit(&format!("client:{w}"));
        }
        tracing::info!(target: "gatehouse::token", client = who.unwrap_or("-"), "client authentication failed");
        OAuthError {
            basic,
            ..oauth(401, "invalid_client", "client authentication failed")
        }
    }

    /// Verifies a client-signed JWT (RFC 7523): signature by the client's keys, `iss` the client,
    /// `aud` this server, a short `exp`, and a `jti` never seen before. Returns the claims.
    async fn check_assertion(
        &self,
        client: &Client,
        assertion: &str,
        authn: bool,
    ) -> Result<Value, OAuthError> {
        let bad = invalid_grant;
        let parsed = jwt::parse(assertion).map_err(|_| bad("the assertion is not a valid JWT"))?;
        let keys = self.client_jwks.keys(client).await?;
        parsed
            .verify_signature(&keys)
            .map_err(|_| bad("the assertion's signature does not verify with the client's keys"))?;
        let c = &parsed.claims;
        let now = self.clock.now_secs();
        let num = |k: &str| c.get(k).and_then(Value::as_u64);
        let exp = num("exp").ok_or(bad("the assertion has no exp"))?;
        // Saturating: a hostile exp of 2^64-1 must not overflow.
        if now > exp.saturating_add(self.leeway) {
            return Err(bad("the assertion has expired"));
        }
        if exp > now.saturating_add(MAX_ASSERTION_LIFETIME + self.leeway) {
            return Err(bad("the assertion's exp is too far ahead"));
        }
        if num("nbf").is_some_and(|n| n > now.saturating_add(self.leeway)) {
            return Err(bad("the assertion is not valid yet (nbf)"));
        }
        if c.get("iss").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(bad("the assertion's iss is not the client"));
        }
        if authn && c.get("sub").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(bad("the assertion's sub is not the client"));
        }
        let endpoint = format!("{}/oauth/token", self.public_url);
        let issuer_endpoint = format!("{}/oauth/token", self.settings.issuer);
        let audience_ok =
            |a: &str| a == endpoint || a == issuer_endpoint || a == self.settings.issuer;
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => audience_ok(a),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(audience_ok),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("the assertion's aud is not this token endpoint"));
        }
        let jti = c
            .get("jti")
            .and_then(Value::as_str)
            .ok_or(bad("the assertion has no jti"))?
            .to_string();
        if jti.is_empty() || jti.len() > 256 {
            return Err(bad("the assertion's jti is empty or too long"));
        }
        let client_id = client.client_id.clone();
        let fresh = run_blocking(&self.store, move |s| {
            s.use_assertion(&client_id, &jti, exp, now)
        })
        .await
        .map_err(|_| unavailable())?;
        if !fresh {
            return Err(invalid_grant("the assertion was already used"));
        }
        Ok(parsed.claims)
    }

    /// The scopes to grant: what was asked, each allowed; nothing asked means the defaults.
    fn scopes(client: &Client, form: &HashMap<String, String>) -> Result<Vec<String>, OAuthError> {
        match form.get("scope") {
            None => Ok(client.default_scopes.clone()),
            Some(s) => {
                let asked: Vec<String> = split_scopes(s);
                if asked.iter().any(|a| !client.scopes.contains(a)) {
                    return Err(oauth(
                        400,
                        "invalid_scope",
                        "a requested scope is not allowed for this client",
                    ));
                }
                Ok(asked)
            }
        }
    }

    async fn token(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
        address: &str,
    ) -> Result<Value, OAuthError> {
        let grant = form
            .get("grant_type")
            .ok_or(invalid_request("grant_type is required"))?;
        let grant_type = match GrantType::parse(grant) {
            Some(
                g @ (GrantType::ClientCredentials
                | GrantType::JwtBearer
                | GrantType::Password
                | GrantType::AuthorizationCode
                | GrantType::RefreshToken),
            ) => g,
            _ => {
                return Err(oauth(
                    400,
                    "unsupported_grant_type",
                    "this grant type is not supported",
                ))
            }
        };
        if !client.grant_types.contains(&grant_type) {
            return Err(oauth(
                400,
                "unauthorized_client",
                "the client may not use this grant type",
            ));
        }
        match grant_type {
            GrantType::AuthorizationCode => return self.code_grant(client, form).await,
            GrantType::Password => return self.password_grant(client, form, address).await,
            GrantType::RefreshToken => return self.refresh_grant(client, form).await,
            _ => {}
        }
        let scopes = Self::scopes(client, form)?;
        let subject = match grant_type {
            GrantType::JwtBearer => {
                let assertion = form
                    .get("assertion")
                    .ok_or(invalid_request("assertion is required"))?;
                let claims = self.check_assertion(client, assertion, false).await?;
                let sub = claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or(invalid_grant("the assertion names no subject"))?;
                if !subjects::may_assert(client, sub) {
                    tracing::info!(target: "gatehouse::token", client = %client.client_id,
                        "a jwt-bearer assertion named a subject the client may not act for");
                    return Err(invalid_grant(
                        "the client may not act for this subject (jwt_bearer_subjects)",
                    ));
                }
                sub.to_string()
            }
            _ => {
                if client.public {
                    return Err(oauth(
                        400,
                        "unauthorized_client",
                        "a public client cannot use client_credentials",
                    ));
                }
                client.client_id.clone()
            }
        };
        let (token, ttl, _) =
            self.mint(client, &subject, &scopes, &client.roles, Default::default())?;
        let mut body = json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl});
        if !scopes.is_empty() {
            body["scope"] = json!(scopes.join(" "));
        }
        Ok(body)
    }

    /// Signs an RFC 9068 access token.
    pub fn mint(
        &self,
        client: &Client,
        subject: &str,
        scopes: &[String],
        roles: &[String],
        extra: serde_json::Map<String, Value>,
    ) -> Result<(String, u64, String), OAuthError> {
        let key = self.keys.current();
        let now = self.clock.now_secs();
        let ttl = self.settings.access_token_ttl.as_secs();
        let jti = random_token(16);
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.clone());
        let aud = if client.audience.len() == 1 {
            json!(client.audience[0])
        } else {
            json!(client.audience)
        };
        let mut claims = json!({
            "iss": self.settings.issuer,
            "sub": subject,
            "aud": aud,
            "exp": now + ttl,
            "iat": now,
            "jti": jti,
            "client_id": client.client_id,
        });
        if !scopes.is_empty() {
            claims["scope"] = json!(scopes.join(" "));
        }
        if !roles.is_empty() {
            claims["roles"] = json!(roles);
        }
        // A user's claims the scopes allow, never overriding the token's own.
        for (k, v) in extra {
            if claims.get(&k).is_none() {
                claims[k] = v;
            }
        }
        let token = key.sign(&header, &claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            oauth(500, "server_error", "the token could not be signed")
        })?;
        Ok((token, ttl, jti))
    }

    /// Checks a person's credentials with the lockout per user and per address shared by the sign-in
    /// page and the password grant. An unknown user costs the same hash check as a known one.
    pub(crate) async fn sign_in(
        &self,
        username: &str,
        password: &str,
        address: &str,
    ) -> SignIn<'_> {
        let user_key = format!("user:{username}");
        if self.failures.exceeded(&user_key) || self.failures.exceeded(address) {
            return SignIn::LockedOut;
        }
        let user = self.users.get(username);
        let hash = user
            .map(|u| u.password.clone())
            .unwrap_or_else(|| self.user_decoys.for_name(username));
        // argon2 takes tens of milliseconds: on the bounded pool, off the request threads.
        let Ok(ok) = self.pool.matches(password, &hash).await else {
            return SignIn::Busy;
        };
        match user.filter(|_| ok) {
            Some(u) => SignIn::User(u),
            None => {
                self.failures.hit(&user_key);
                self.failures.hit(address);
                SignIn::Wrong
            }
        }
    }

    /// The user whose tokens carry this `sub`, if the subject is a person.
    fn user_by_subject(&self, subject: &str) -> Option<&crate::config::User> {
        self.users.values().find(|u| u.subject == subject)
    }

    /// The legacy resource-owner password grant, for clients that list it: the user's credentials
    /// are checked against `[[users]]`, with a lockout per user and per address.
    async fn password_grant(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
        address: &str,
    ) -> Result<Value, OAuthError> {
        let username = form
            .get("username")
            .ok_or(invalid_request("username is required"))?;
        let password = form
            .get("password")
            .ok_or(invalid_request("password is required"))?;
        let scopes = Self::scopes(client, form)?;
        let user = match self.sign_in(username, password, address).await {
            SignIn::User(u) => u,
            SignIn::LockedOut => {
                return Err(OAuthError {
                    retry_after: Some(self.failures.retry_after()),
                    ..oauth(
                        429,
                        "access_denied",
                        "too many failed sign-ins; try again later",
                    )
                })
            }
            SignIn::Wrong => {
                tracing::info!(target: "gatehouse::token", client = %client.client_id, "password sign-in failed");
                return Err(invalid_grant("the username or password is wrong"));
            }
            SignIn::Busy => return Err(busy()),
        };
        self.issue_for_user(client, &user.subject, &scopes, &user.roles, Family::New)
            .await
            .map(|(body, _)| body)
    }

    /// An access token for a user, and a new refresh-token family when the client may refresh and
    /// `new_family` is asked.
    async fn issue_for_user(
        &self,
        client: &Client,
        subject: &str,
        scopes: &[String],
        roles: &[String],
        family: Family<'_>,
    ) -> Result<(Value, Issued), OAuthError> {
        let extra = self
            .user_by_subject(subject)
            .map(|u| released_claims(u, scopes))
            .unwrap_or_default();
        let (token, ttl, jti) = self.mint(client, subject, scopes, roles, extra)?;
        let mut issued = Issued {
            jti,
            exp: self.clock.now_secs() + ttl,
            family: String::new(),
        };
        let mut body = json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl});
        if !scopes.is_empty() {
            body["scope"] = json!(scopes.join(" "));
        }
        if let Family::Continue(f) = family {
            issued.family = f.to_string();
        } else if matches!(family, Family::New)
            && client.grant_types.contains(&GrantType::RefreshToken)
        {
            let now = self.clock.now_secs();
            let refresh = random_token(32);
            let family_expires_at = now + self.settings.refresh_token_ttl.as_secs();
            issued.family = random_token(16);
            let rec = RefreshRecord {
                hash: sha256_hex(&refresh),
                family: issued.family.clone(),
                client_id: client.client_id.clone(),
                subject: subject.to_string(),
                scopes: scopes.join(" "),
                expires_at: family_expires_at,
                family_expires_at,
            };
            // Stored before the answer: a refresh token the client holds always exists.
            run_blocking(&self.store, move |s| s.put_refresh(&rec))
                .await
                .map_err(|_| unavailable())?;
            body["refresh_token"] = json!(refresh);
        }
        if !issued.family.is_empty() {
            // Revoking the family later revokes this access token too, at the edge at once.
            let (f, j, e) = (issued.family.clone(), issued.jti.clone(), issued.exp);
            run_blocking(&self.store, move |s| s.family_token(&f, &j, e))
                .await
                .map_err(|_| unavailable())?;
        }
        Ok((body, issued))
    }

    /// Refresh-token rotation: each refresh token works once; presenting a used one revokes its family.
    async fn refresh_grant(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        let presented = form
            .get("refresh_token")
            .ok_or(invalid_request("refresh_token is required"))?;
        let now = self.clock.now_secs();
        let next = random_token(32);
        let (old, new_hash, client_id) = (
            sha256_hex(presented),
            sha256_hex(&next),
            client.client_id.clone(),
        );
        let asked = form.get("scope").map(|a| split_scopes(a));
        let wanted = asked.clone();
        let rotation = run_blocking(&self.store, move |s| {
            let current = s.active_refresh(&old, now)?;
            // The scope is checked before rotating: a refused refresh leaves the token usable.
            if let (Some(rec), Some(asked)) = (&current, &wanted) {
                let granted = split_scopes(&rec.scopes);
                if asked.iter().any(|a| !granted.contains(a)) {
                    return Ok(None);
                }
            }
            // The family's end bounds every successor, however often it rotates.
            let family_end = current.map(|r| r.family_expires_at).unwrap_or(now);
            s.rotate_refresh(&old, &client_id, &new_hash, family_end, now)
                .map(Some)
        })
        .await
        .map_err(|_| unavailable())?;
        let rec = match rotation {
            None => {
                return Err(oauth(
                    400,
                    "invalid_scope",
                    "a refresh cannot widen the granted scopes",
                ))
            }
            Some(Rotation::Rotated(rec)) => rec,
            Some(Rotation::Reused { family }) => {
                tracing::warn!(target: "gatehouse::token", client = %client.client_id,
                    "a rotated refresh token was presented again; its family is revoked");
                self.revoke_family(family).await?;
                return Err(invalid_grant(
                    "the refresh token was already used; its family is revoked",
                ));
            }
            Some(Rotation::Invalid) => return Err(invalid_grant("the refresh token is not valid")),
        };
        let scopes = asked.unwrap_or_else(|| split_scopes(&rec.scopes));
        let roles = self
            .user_by_subject(&rec.subject)
            .map(|u| u.roles.clone())
            .unwrap_or_default();
        let (mut body, _) = self
            .issue_for_user(
                client,
                &rec.subject,
                &scopes,
                &roles,
                Family::Continue(&rec.family),
            )
            .await?;
        body["refresh_token"] = json!(next);
        Ok(body)
    }

    /// `sub` and the claims the token's scopes release: `profile` the user's claims, `email` the email.
    fn userinfo(&self, session: &Session) -> Result<Value, &'static str> {
        let header = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("a bearer token is required")?;
        let token = header
            .split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or("a bearer token is required")?;
        let c = self.own_claims(token).ok_or("the token is not valid")?;
        let now = self.clock.now_secs();
        if c.get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .saturating_add(self.leeway)
            < now
        {
            return Err("the token has expired");
        }
        if self
            .revocations
            .is_revoked(c.get("jti").and_then(Value::as_str).unwrap_or(""))
        {
            return Err("the token has been revoked");
        }
        let sub = c.get("sub").and_then(Value::as_str).unwrap_or("");
        let scopes: Vec<&str> = c
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(' ')
            .collect();
        let mut out = json!({ "sub": sub });
        if let Some(user) = self.user_by_subject(sub) {
            for (k, v) in released_claims(user, &scopes) {
                out[k] = v;
            }
        }
        Ok(out)
    }

    /// Verifies one of this service's own access tokens, expired or not. Returns its claims.
    fn own_claims(&self, token: &str) -> Option<Value> {
        let parsed = jwt::parse(token).ok()?;
        if parsed.typ.as_deref() != Some("at+jwt")
            || parsed.iss() != Some(self.settings.issuer.as_str())
        {
            return None;
        }
        parsed.verify_signature(&self.keys.verify_keys()).ok()?;
        Some(parsed.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%3Aclient:p%40ss+word"));
        assert_eq!(
            basic_credentials(&h),
            Some(("my:client".into(), "p@ss word".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(parse_form(b"a=1&b=2").is_ok());
        assert_eq!(parse_form(b"a=1&a=2").unwrap_err().code, "invalid_request");
    }
}
