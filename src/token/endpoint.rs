//! The token service's HTTP layer: which endpoint a path is, reading the form, and rendering answers.

use super::client_auth::Credentials;
use super::*;
use crate::error::{send, send_json, AsAnswer};
use bytes::Bytes;
use pingora::proxy::Session;
use std::net::IpAddr;

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

/// The token service's endpoints, parsed once from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Authorize,
    Userinfo,
    Introspect,
    Revoke,
    Jwks,
    Metadata,
}

impl Endpoint {
    /// The endpoint a path names, if any.
    pub fn parse(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/oauth/token" => Endpoint::Token,
            "/oauth/authorize" => Endpoint::Authorize,
            "/oauth/userinfo" => Endpoint::Userinfo,
            "/oauth/introspect" => Endpoint::Introspect,
            "/oauth/revoke" => Endpoint::Revoke,
            "/.well-known/jwks.json" => Endpoint::Jwks,
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
                Endpoint::Metadata
            }
            _ => return None,
        })
    }

    /// The methods it answers, as an `Allow` header lists them.
    pub fn allow(self) -> &'static str {
        match self {
            Endpoint::Jwks | Endpoint::Metadata => "GET, HEAD",
            Endpoint::Authorize | Endpoint::Userinfo => "GET, POST",
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => "POST",
        }
    }

    pub fn allows(self, method: &http::Method) -> bool {
        self.allow().split(", ").any(|m| m == method.as_str())
    }
}

impl TokenService {
    /// Answers one of the service's endpoints.
    pub async fn handle(&self, session: &mut Session, endpoint: Endpoint) -> pingora::Result<()> {
        if !endpoint.allows(&session.req_header().method) {
            let e = OAuthError {
                allow: Some(endpoint.allow()),
                ..oauth(405, "invalid_request", "method not allowed")
            };
            return e.answer().send(session).await;
        }
        match endpoint {
            Endpoint::Authorize => self.authorize(session).await,
            Endpoint::Userinfo => match self.userinfo(session).await {
                Ok(v) => send_json(session, 200, &[], v.to_string()).await,
                Err(rejection) => rejection.answer().send(session).await,
            },
            Endpoint::Jwks => {
                let body = Bytes::from(self.keys.jwks.clone());
                let cache = [("cache-control", "public, max-age=300".into())];
                send(session, 200, "application/json", &cache, body).await
            }
            Endpoint::Metadata => {
                let body = Bytes::from(self.metadata.clone());
                let cache = [("cache-control", "public, max-age=3600".into())];
                send(session, 200, "application/json", &cache, body).await
            }
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => {
                let address = format!("ip:{}", Self::client_address(session));
                let basic = session
                    .req_header()
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let answer = match self.read_form(session).await {
                    Ok(form) => {
                        self.answer_post(endpoint, basic.as_deref(), &form, &address)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(body) => {
                        let pragma = [("pragma", "no-cache".to_string())];
                        send_json(session, 200, &pragma, body.to_string()).await
                    }
                    Err(e) => e.answer().send(session).await,
                }
            }
        }
    }

    pub(super) async fn read_form(
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

    pub(super) fn client_address(session: &Session) -> String {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
            .to_string()
    }

    /// The POST endpoints after the form is read: rate limits, client authentication, then the
    /// endpoint's logic. No socket is involved, so it is tested directly.
    pub(super) async fn answer_post(
        &self,
        endpoint: Endpoint,
        basic: Option<&str>,
        form: &HashMap<String, String>,
        address: &str,
    ) -> Result<Value, OAuthError> {
        if !self.per_address.hit(address) {
            return Err(OAuthError {
                retry_after: Some(self.per_address.retry_after()),
                ..oauth(429, "slow_down", "too many requests from this address")
            });
        }
        if self.failures.exceeded(address) {
            return Err(self.locked_out());
        }
        let creds = Self::credentials(basic, form)?;
        let client = self.authenticate(&creds, address).await?;
        let authenticated = !matches!(creds, Credentials::None { .. });
        if !self.per_client.hit(&format!("client:{}", client.client_id)) {
            return Err(OAuthError {
                retry_after: Some(self.per_client.retry_after()),
                ..oauth(429, "slow_down", "too many requests for this client")
            });
        }
        match endpoint {
            Endpoint::Introspect => self.introspect(client, authenticated, form).await,
            Endpoint::Revoke => self.revoke(client, form).await,
            _ => self.token(client, form, address).await,
        }
    }
}
