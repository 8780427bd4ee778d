//! The gateway as a relying party of external OpenID providers: their discovery documents, the code
//! exchange with client authentication, and ID-token checks through the same key cache as issuers.

use crate::auth::jwks::{http_client, Jwks};
use crate::auth::jwt::parse;
use crate::clock::SharedClock;
use crate::config::LoginProvider;
use crate::token::keys::SigningKeys;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Largest discovery document or token answer read from a provider.
const MAX_BODY: usize = 256 * 1024;
/// How long a discovery document is used before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long a call to a provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What discovery says about a provider's endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 9207: the provider names itself in `iss` on every authorization answer, so an answer
    /// without it is refused
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Why a sign-in through a provider failed: shown to the person (never a secret), and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub &'static str);

pub struct Providers {
    pub list: Vec<LoginProvider>,
    /// the session routes' names: the only application names a sign-in page shows
    pub apps: Vec<String>,
    http: Vec<reqwest::Client>,
    discovery: moka::future::Cache<usize, Arc<Endpoints>>,
    jwks: Arc<Jwks>,
    clock: SharedClock,
    leeway: u64,
}

impl Providers {
    pub fn new(
        list: Vec<LoginProvider>,
        apps: Vec<String>,
        clock: SharedClock,
        leeway: u64,
    ) -> Result<Providers, String> {
        let issuers: Vec<_> = list.iter().map(|p| p.verify.clone()).collect();
        let jwks = Arc::new(Jwks::new(&issuers, vec![], clock.clone())?);
        let http = list
            .iter()
            .map(|p| http_client(p.ca.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Providers {
            list,
            apps,
            http,
            discovery: moka::future::Cache::builder()
                .time_to_live(DISCOVERY_TTL)
                .build(),
            jwks,
            clock,
            leeway,
        })
    }

    /// The application a sign-in names, when it is one of the session routes.
    pub fn app<'a>(&self, name: Option<&'a String>) -> Option<&'a str> {
        name.filter(|n| self.apps.contains(n)).map(String::as_str)
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name == name)
    }

    /// The provider a token of this issuer, for these audiences, comes from (several providers may
    /// share an issuer with different client ids).
    pub fn by_issuer(&self, iss: &str, audiences: &[&str]) -> Option<usize> {
        self.list
            .iter()
            .position(|p| p.issuer == iss && audiences.contains(&p.client_id.as_str()))
    }

    /// Reads a JSON answer of bounded size.
    async fn json<T: for<'de> Deserialize<'de>>(
        resp: reqwest::Response,
        what: &'static str,
    ) -> Result<T, Failed> {
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| Failed(what))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Failed(what));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| Failed(what))
    }

    /// The provider's endpoints, from its discovery document (cached for an hour).
    pub async fn endpoints(&self, i: usize) -> Result<Arc<Endpoints>, Failed> {
        if let Some(e) = self.discovery.get(&i).await {
            return Ok(e);
        }
        let (Some(p), Some(http)) = (self.list.get(i), self.http.get(i)) else {
            return Err(Failed("the sign-in provider is not configured"));
        };
        let unreachable = Failed("the sign-in provider cannot be reached");
        let resp = http
            .get(p.verify.discovery_url())
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|_| unreachable.clone())?;
        if !resp.status().is_success() {
            return Err(unreachable);
        }
        let e: Endpoints = Self::json(
            resp,
            "the sign-in provider's discovery document is not valid",
        )
        .await?;
        if e.issuer != p.issuer {
            return Err(Failed(
                "the sign-in provider's discovery document names another issuer",
            ));
        }
        let e = Arc::new(e);
        self.discovery.insert(i, e.clone()).await;
        Ok(e)
    }

    /// Exchanges a code for the provider's tokens; returns the ID token.
    pub async fn exchange(
        &self,
        i: usize,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        keys: &SigningKeys,
    ) -> Result<String, Failed> {
        let (Some(p), Some(http)) = (self.list.get(i), self.http.get(i)) else {
            return Err(Failed("the sign-in provider is not configured"));
        };
        let ep = self.endpoints(i).await?;
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.into()),
            ("redirect_uri", redirect_uri.into()),
            ("code_verifier", verifier.into()),
        ];
        let mut req = http.post(&ep.token_endpoint).timeout(TIMEOUT);
        match &p.client_secret {
            Some(secret) => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&p.client_id), Some(enc(&secret.0)));
            }
            None => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", self.assertion(p, &ep, keys)?));
                form.push(("client_id", p.client_id.clone()));
            }
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|_| Failed("the sign-in provider cannot be reached"))?;
        if !resp.status().is_success() {
            return Err(Failed("the sign-in provider refused the sign-in code"));
        }
        let answer: Value = Self::json(resp, "the sign-in provider's answer is not valid").await?;
        answer
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(Failed("the sign-in provider sent no ID token"))
    }

    /// A `private_key_jwt` client assertion signed by the gateway's key (RFC 7523).
    fn assertion(
        &self,
        p: &LoginProvider,
        ep: &Endpoints,
        keys: &SigningKeys,
    ) -> Result<String, Failed> {
        let key = keys
            .current()
            .ok_or(Failed("the gateway has no key to authenticate with"))?;
        let jti =
            crate::crypto::random_token(16).map_err(|_| Failed("no random values could be had"))?;
        let now = self.clock.now_secs();
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        let claims = serde_json::json!({
            "iss": p.client_id, "sub": p.client_id, "aud": ep.token_endpoint,
            "jti": jti, "iat": now, "exp": now + 60,
        });
        key.sign(&header, &claims)
            .map_err(|_| Failed("the client assertion could not be signed"))
    }

    /// Checks a JWT the provider signed (an ID token or a logout token): signature with its
    /// published keys, `iss`, `aud` = our client id, `exp`, `nbf`, `iat`. Returns its claims.
    pub async fn verify(&self, i: usize, token: &str) -> Result<Value, Failed> {
        let p = self
            .list
            .get(i)
            .ok_or(Failed("the sign-in provider is not configured"))?;
        if token.len() > 16 * 1024 {
            return Err(Failed("the provider's token is too large"));
        }
        let parsed = parse(token).map_err(|_| Failed("the provider's token is not a valid JWT"))?;
        if !p.verify.algorithms.contains(&parsed.alg) {
            return Err(Failed("the provider's token uses an algorithm not allowed"));
        }
        let keys = self
            .jwks
            .keys(p.verify.id, parsed.kid.as_deref())
            .await
            .map_err(|_| Failed("the sign-in provider's keys cannot be fetched"))?;
        parsed
            .verify_signature(&keys.keys)
            .map_err(|_| Failed("the provider's token signature is not valid"))?;
        parsed
            .validate_claims(&p.verify, self.clock.now_secs(), self.leeway)
            .map_err(|_| Failed("the provider's token is expired or not for this gateway"))?;
        Ok(parsed.claims.clone())
    }
}
