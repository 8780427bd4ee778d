//! The token service's HTTP layer: which endpoint a path is, reading the form, and rendering answers.

use super::client_auth::Credentials;
use super::*;
use crate::endpoints::Endpoint;
use crate::respond::{send, send_json, AsAnswer};
use bytes::Bytes;
use pingora::proxy::Session;
use std::net::IpAddr;

/// Parses a form body; a repeated parameter is an error (RFC 6749 §3.2), and a parameter without a
/// value counts as absent (§3.1: `client_secret=` or `scope=` are as if not sent).
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body).filter(|(_, v)| !v.is_empty()) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(invalid_request("a parameter was sent more than once"));
        }
    }
    Ok(out)
}

/// Over a request rate: 429 with `Retry-After` and an error code RFC 6749 §5.2 defines.
fn too_many(retry_after: u64, description: &'static str) -> OAuthError {
    OAuthError {
        retry_after: Some(retry_after),
        ..oauth(429, OAuthErrorCode::InvalidRequest, description)
    }
}

/// An error answer with the CORS headers of its request.
fn with_headers(
    mut answer: crate::respond::ErrorAnswer,
    extra: Vec<(&'static str, String)>,
) -> crate::respond::ErrorAnswer {
    answer.headers.extend(extra);
    answer
}

impl TokenService {
    /// The endpoint a normalised path names. With an issuer that has a path (`https://host/auth`),
    /// discovery is also served where clients look for it: `/auth/.well-known/openid-configuration`
    /// (OIDC Discovery §4) and `/.well-known/oauth-authorization-server/auth` (RFC 8414 §3).
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        if let Some(e) = Endpoint::parse(path) {
            return Some(e);
        }
        let ip = self.issuer_path.as_str();
        if ip.is_empty() {
            return None;
        }
        let oidc = path
            .strip_prefix(ip)
            .is_some_and(|rest| rest == "/.well-known/openid-configuration");
        let rfc8414 = path
            .strip_prefix("/.well-known/oauth-authorization-server")
            .is_some_and(|rest| rest == ip);
        (oidc || rfc8414).then_some(Endpoint::Metadata)
    }

    /// Answers one of the service's endpoints.
    pub async fn handle(&self, session: &mut Session, endpoint: Endpoint) -> pingora::Result<()> {
        let cors = self.cors_headers(session, endpoint);
        let method = session.req_header().method.clone();
        if method == http::Method::OPTIONS && endpoint != Endpoint::Authorize {
            return self.preflight(session, endpoint, cors).await;
        }
        if !endpoint.allows(&method) {
            let e = OAuthError {
                allow: Some(endpoint.allow()),
                ..oauth(405, OAuthErrorCode::InvalidRequest, "method not allowed")
            };
            return with_headers(e.answer(), cors).send(session).await;
        }
        match endpoint {
            Endpoint::Authorize => self.authorize(session).await,
            Endpoint::Userinfo => match self.userinfo(session).await {
                Ok(v) => send_json(session, 200, &cors, v.to_string()).await,
                Err(rejection) => with_headers(rejection.answer(), cors).send(session).await,
            },
            Endpoint::Jwks | Endpoint::Metadata => {
                let (doc, age) = if endpoint == Endpoint::Jwks {
                    (&self.keys.jwks, 300)
                } else {
                    (&self.metadata, 3600)
                };
                let mut headers = cors;
                headers.push(("cache-control", format!("public, max-age={age}")));
                send(
                    session,
                    200,
                    "application/json",
                    &headers,
                    Bytes::from(doc.clone()),
                )
                .await
            }
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => {
                let address = self.client_address(session);
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
                        let mut headers = cors;
                        headers.push(("pragma", "no-cache".to_string()));
                        send_json(session, 200, &headers, body.to_string()).await
                    }
                    Err(e) => with_headers(e.answer(), cors).send(session).await,
                }
            }
        }
    }

    /// CORS answers for browsers on other origins: the public documents to anyone, the others to
    /// the origins some client allows (`allowed_origins`, by default its redirect URIs' origins).
    fn cors_headers(&self, session: &Session, endpoint: Endpoint) -> Vec<(&'static str, String)> {
        let origin = session
            .req_header()
            .headers
            .get("origin")
            .and_then(|v| v.to_str().ok());
        let allowed = match endpoint {
            Endpoint::Jwks | Endpoint::Metadata => Some("*".to_string()),
            Endpoint::Authorize => None,
            _ => origin
                .filter(|o| self.cors_origins.iter().any(|a| a == o))
                .map(str::to_string),
        };
        match allowed {
            Some(a) => vec![
                ("access-control-allow-origin", a),
                ("vary", "Origin".to_string()),
            ],
            None => vec![],
        }
    }

    /// The answer to a CORS preflight: 204 with what may follow, or 403 for an origin no client allows.
    async fn preflight(
        &self,
        session: &mut Session,
        endpoint: Endpoint,
        mut cors: Vec<(&'static str, String)>,
    ) -> pingora::Result<()> {
        if cors.is_empty() {
            let e = oauth(
                403,
                OAuthErrorCode::InvalidRequest,
                "this origin may not call this endpoint",
            );
            return e.answer().send(session).await;
        }
        cors.push(("access-control-allow-methods", endpoint.allow().to_string()));
        cors.push((
            "access-control-allow-headers",
            "authorization, content-type".to_string(),
        ));
        cors.push(("access-control-max-age", "600".to_string()));
        send(session, 204, "text/plain", &cors, Bytes::new()).await
    }

    pub(crate) async fn read_form(
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
        if crate::wire::header_value::content_length(req).is_some_and(|n| n > MAX_FORM as u64) {
            session.set_keepalive(None);
            return Err(oauth(
                413,
                OAuthErrorCode::InvalidRequest,
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
                            OAuthErrorCode::InvalidRequest,
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

    /// The real client's address (after `[server] trusted_proxies`), as counters key it: `ip:…`.
    pub(crate) fn client_address(&self, session: &Session) -> String {
        let ip = crate::wire::forwarded::client_ip(session, &self.trusted_proxies)
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        format!("ip:{ip}")
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
        if !self.per_address.hit(address).await {
            return Err(too_many(
                self.per_address.retry_after(),
                "too many requests from this address; slow down",
            ));
        }
        let creds = Self::credentials(basic, form)?;
        Self::accepted_at(&creds, endpoint)?;
        let client = self.authenticate(&creds, address).await?;
        let authenticated = !matches!(creds, Credentials::None { .. } | Credentials::Grant { .. });
        // a request that proved nothing spends only its own address's share of the client's quota
        let quota = match authenticated {
            true => format!("client:{}", client.client_id),
            false => format!("client:{}@{address}", client.client_id),
        };
        if !self.per_client.hit(&quota).await {
            return Err(too_many(
                self.per_client.retry_after(),
                "too many requests for this client; slow down",
            ));
        }
        let answer = match endpoint {
            Endpoint::Introspect => self.introspect(client, authenticated, form).await,
            Endpoint::Revoke => self.revoke(client, form).await,
            _ => self.token(client, form, address).await,
        };
        if let (Credentials::Grant { .. }, Err(e)) = (&creds, &answer) {
            // The assertion was the client's only proof: a bad one is a failed authentication.
            if e.code == OAuthErrorCode::InvalidGrant {
                self.auth_failed(Some(&client.client_id), address, false)
                    .await;
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_refuse_repeats_and_drop_empty_values() {
        assert!(parse_form(b"a=1&b=2").is_ok());
        assert_eq!(
            parse_form(b"a=1&a=2").unwrap_err().code,
            OAuthErrorCode::InvalidRequest
        );
        let f = parse_form(b"scope=&client_secret=&grant_type=x").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f.get("grant_type").map(String::as_str), Some("x"));
    }
}
