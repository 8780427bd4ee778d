//! The token service's HTTP layer: which endpoint a path is, reading the form, and rendering answers.

use super::client_auth::Credentials;
use super::*;
use crate::endpoints::Endpoint;
use crate::respond::{Answer, AsAnswer};
use crate::wire::form::FormError;
use crate::wire::header_value::{single, NotOne};
use crate::wire::request::Request;
use bytes::Bytes;

/// A form that cannot be used, as the token service says so (RFC 6749 §5.2).
pub(crate) fn form_error(e: FormError) -> OAuthError {
    match e {
        FormError::TooLarge => oauth(413, OAuthErrorCode::InvalidRequest, e.description()),
        _ => invalid_request(e.description()),
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
            // without registration there is no such endpoint
            return (e != Endpoint::Register || self.directory.registration_on()).then_some(e);
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
    pub async fn answer(&self, req: &Request<'_>, endpoint: Endpoint) -> Answer {
        let cors = self.cors_headers(req, endpoint);
        let method = req.method();
        if method == http::Method::OPTIONS && endpoint != Endpoint::Authorize {
            return self.preflight(endpoint, cors);
        }
        if !endpoint.allows(method) {
            let e = OAuthError {
                allow: Some(endpoint.allow()),
                ..oauth(405, OAuthErrorCode::InvalidRequest, "method not allowed")
            };
            return with_headers(e.answer(), cors).into();
        }
        match endpoint {
            Endpoint::Authorize => self.authorize(req).await,
            Endpoint::Register => self.register(req, cors).await,
            Endpoint::Userinfo => match self.userinfo(req).await {
                Ok(v) => Answer::json(200, cors, v.to_string()),
                Err(rejection) => with_headers(rejection.answer(), cors).into(),
            },
            Endpoint::Jwks | Endpoint::Metadata => {
                let (doc, age) = if endpoint == Endpoint::Jwks {
                    (&self.keys.jwks, 300)
                } else {
                    (&self.metadata, 3600)
                };
                let mut headers = cors;
                headers.push(("cache-control", format!("public, max-age={age}")));
                Answer::body(200, "application/json", headers, Bytes::from(doc.clone()))
            }
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => {
                // an unreadable header is no credentials; a repeated one is refused
                let basic = single(&req.header.headers, "authorization");
                // RFC 9449: a token request may prove a key; the other endpoints ignore proofs
                let proof = match endpoint {
                    Endpoint::Token => crate::dpop::proof_header(&req.header.headers),
                    _ => Ok(None),
                };
                let answer = match (req.form(), basic) {
                    (_, Err(NotOne::Repeated)) => Err(invalid_request(
                        "the Authorization header was sent more than once",
                    )),
                    (Ok(form), basic) => {
                        let post = (basic.ok().flatten(), &form, req.client_key());
                        self.answer_post_with(endpoint, post, proof).await
                    }
                    (Err(e), _) => Err(form_error(e)),
                };
                match answer {
                    Ok(body) => {
                        let mut headers = cors;
                        headers.push(("pragma", "no-cache".to_string()));
                        // the nonce of the moment, so a client need not be refused to learn it
                        if let Some(n) = self
                            .dpop
                            .current_nonce()
                            .filter(|_| endpoint == Endpoint::Token)
                        {
                            headers.push(("dpop-nonce", n));
                        }
                        Answer::json(200, headers, body.to_string())
                    }
                    Err(e) => with_headers(e.answer(), cors).into(),
                }
            }
        }
    }

    /// CORS answers for browsers on other origins: the public documents to anyone, the others to
    /// the origins some client allows (`allowed_origins`, by default its redirect URIs' origins).
    fn cors_headers(&self, req: &Request<'_>, endpoint: Endpoint) -> Vec<(&'static str, String)> {
        let origin = req.header_text("origin");
        let allowed = match endpoint {
            // registration is for clients on any origin; with `registration = "token"` the
            // initial access token, never a cookie, is what authorizes it
            Endpoint::Jwks | Endpoint::Metadata | Endpoint::Register => Some("*".to_string()),
            Endpoint::Authorize => None,
            _ => origin
                .filter(|o| self.cors_origins.iter().any(|a| a == o))
                .map(str::to_string),
        };
        match allowed {
            Some(a) => vec![
                ("access-control-allow-origin", a),
                ("vary", "Origin".to_string()),
                // a browser client reads the nonce and the challenges (RFC 9449 §8)
                (
                    "access-control-expose-headers",
                    "DPoP-Nonce, WWW-Authenticate".to_string(),
                ),
            ],
            None => vec![],
        }
    }

    /// The answer to a CORS preflight: 204 with what may follow, or 403 for an origin no client allows.
    fn preflight(&self, endpoint: Endpoint, mut cors: Vec<(&'static str, String)>) -> Answer {
        if cors.is_empty() {
            let e = oauth(
                403,
                OAuthErrorCode::InvalidRequest,
                "this origin may not call this endpoint",
            );
            return Answer::refuse(&e);
        }
        cors.push(("access-control-allow-methods", endpoint.allow().to_string()));
        cors.push((
            "access-control-allow-headers",
            "authorization, content-type, dpop".to_string(),
        ));
        cors.push(("access-control-max-age", "600".to_string()));
        Answer::empty(204, cors)
    }

    /// The POST endpoints after the form is read, without a DPoP proof.
    #[cfg(test)]
    pub(super) async fn answer_post(
        &self,
        endpoint: Endpoint,
        basic: Option<&str>,
        form: &HashMap<String, String>,
        address: &str,
    ) -> Result<Value, OAuthError> {
        let post = (basic, form, address.to_string());
        self.answer_post_with(endpoint, post, Ok(None)).await
    }

    /// The POST endpoints after the form is read: rate limits, the DPoP proof of a token request,
    /// client authentication, then the endpoint's logic. No socket is involved, so it is tested
    /// directly. `proof`: the request's `DPoP` header.
    pub(super) async fn answer_post_with(
        &self,
        endpoint: Endpoint,
        (basic, form, address): (Option<&str>, &HashMap<String, String>, String),
        proof: Result<Option<&str>, crate::dpop::Refusal>,
    ) -> Result<Value, OAuthError> {
        let address = address.as_str();
        let (creds, claim) = self.arrive(basic, form, address).await?;
        // checked before the client, so a refused proof never counts as a failed authentication
        let jkt = match proof.map_err(dpop_refused)? {
            Some(p) => Some(self.token_proof(p).await?),
            None => None,
        };
        let creds = creds?;
        Self::accepted_at(&creds, endpoint)?;
        let client = self.authenticate(&creds, claim, address).await?;
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
            Endpoint::Introspect => {
                let introspected = self.introspect(&client, authenticated, form);
                let attributes = |a: &Result<serde_json::Value, OAuthError>| {
                    let active = matches!(a, Ok(v) if v["active"] == true);
                    let id = client.client_id.clone();
                    vec![
                        ("gatehouse.client_id".into(), id.into()),
                        (
                            "gatehouse.active".into(),
                            crate::telemetry::Value::Bool(active),
                        ),
                    ]
                };
                let answer =
                    crate::telemetry::current::internal("introspect", attributes, introspected)
                        .await;
                if let Ok(a) = &answer {
                    self.audit
                        .emit(|| crate::audit::Event::introspected(&client.client_id, a));
                }
                answer
            }
            Endpoint::Revoke => self.revoke(&client, form).await,
            _ => self.token(&client, form, (address, jkt.as_deref())).await,
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

impl TokenService {
    /// Checks a token request's DPoP proof (RFC 9449 §5): for `POST` to the token endpoint's URL.
    /// Returns the thumbprint its access token is bound to.
    async fn token_proof(&self, proof: &str) -> Result<String, OAuthError> {
        let url = self.own_url("/oauth/token");
        let r = crate::dpop::Request {
            method: "POST",
            url: &url,
            ath: None,
            bound_to: None,
        };
        self.dpop.check(proof, &r).await.map_err(dpop_refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::{basic, fixture, SVC};
    use crate::wire::request::testing::{post, request};
    use crate::wire::request::Body;
    use crate::wire::testing::get;

    #[tokio::test]
    async fn documents_are_public_and_cached() {
        let f = fixture();
        let h = get(
            "/.well-known/openid-configuration",
            &[("origin", "https://x.test")],
        );
        let a = f
            .svc
            .answer(&request(&h, Body::None), Endpoint::Metadata)
            .await;
        assert_eq!(a.status(), 200);
        assert_eq!(a.header("cache-control"), Some("public, max-age=3600"));
        assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    }

    #[tokio::test]
    async fn wrong_methods_and_foreign_preflights_are_refused() {
        let f = fixture();
        let h = get("/oauth/token", &[]);
        let a = f
            .svc
            .answer(&request(&h, Body::None), Endpoint::Token)
            .await;
        assert_eq!((a.status(), a.header("allow")), (405, Some("POST")));
        let mut h = get("/oauth/token", &[("origin", "https://evil.test")]);
        h.set_method(http::Method::OPTIONS);
        let a = f
            .svc
            .answer(&request(&h, Body::None), Endpoint::Token)
            .await;
        assert_eq!(a.status(), 403);
    }

    #[tokio::test]
    async fn unusable_bodies_and_repeated_credentials_are_invalid_requests() {
        let f = fixture();
        let (h, _) = post("/oauth/token", "", &[]);
        let too_large = Body::Refused(FormError::TooLarge);
        let a = f.svc.answer(&request(&h, too_large), Endpoint::Token).await;
        assert_eq!(a.status(), 413);
        let not_form = Body::Refused(FormError::NotForm);
        let a = f.svc.answer(&request(&h, not_form), Endpoint::Token).await;
        assert_eq!(a.status(), 400);
        let auth = basic("svc", SVC);
        let twice = [
            ("authorization", auth.as_str()),
            ("authorization", auth.as_str()),
        ];
        let (h, body) = post("/oauth/token", "grant_type=client_credentials", &twice);
        let a = f.svc.answer(&request(&h, body), Endpoint::Token).await;
        assert_eq!(a.status(), 400);
    }

    #[tokio::test]
    async fn a_token_request_is_answered_with_no_caching() {
        let f = fixture();
        let auth = basic("svc", SVC);
        let one = [("authorization", auth.as_str())];
        let (h, body) = post("/oauth/token", "grant_type=client_credentials", &one);
        let a = f.svc.answer(&request(&h, body), Endpoint::Token).await;
        assert_eq!(a.status(), 200);
        assert_eq!(a.header("pragma"), Some("no-cache"));
        let crate::respond::Answer::Response(r) = a else {
            panic!("a token is a response")
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["access_token"].is_string());
    }

    #[tokio::test]
    async fn an_authorization_request_without_a_client_is_a_page() {
        let f = fixture();
        let h = get("/oauth/authorize?response_type=code", &[]);
        let a = f
            .svc
            .answer(&request(&h, Body::None), Endpoint::Authorize)
            .await;
        assert_eq!(a.status(), 400);
        let h = get("/oauth/authorize?client_id=svc&client_id=svc", &[]);
        let a = f
            .svc
            .answer(&request(&h, Body::None), Endpoint::Authorize)
            .await;
        assert_eq!(a.status(), 400);
        assert!(
            matches!(a, crate::respond::Answer::Response(r) if r.content_type.starts_with("text/html"))
        );
    }

    /// A token request from `at`, answered after the form was read.
    async fn send(
        svc: &TokenService,
        (auth, form, at): (&str, &HashMap<String, String>, &str),
        proof: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let post = (Some(auth), form, at.to_string());
        svc.answer_post_with(Endpoint::Token, post, Ok(proof)).await
    }

    #[tokio::test]
    async fn a_locked_out_client_hears_first_of_its_proof_and_its_form() {
        let f = fixture();
        let cc: HashMap<String, String> =
            [("grant_type".to_string(), "client_credentials".to_string())].into();
        let (wrong, right, here) = (basic("svc", "wrong"), basic("svc", SVC), "ip:192.0.2.1");
        for _ in 0..3 {
            let e = send(&f.svc, (&wrong, &cc, here), None).await.unwrap_err();
            assert_eq!(e.status, 401);
        }
        let e = send(&f.svc, (&right, &cc, here), Some("not a proof")).await;
        assert_eq!(e.unwrap_err().code, OAuthErrorCode::InvalidDpopProof);
        let mut both = cc.clone();
        both.insert("client_secret".into(), SVC.into());
        let e = send(&f.svc, (&right, &both, here), None).await.unwrap_err();
        assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidRequest));
        let e = send(&f.svc, (&right, &cc, here), None).await.unwrap_err();
        assert_eq!((e.status, e.code), (401, OAuthErrorCode::InvalidClient));
        assert!(
            e.description.contains("too many failed"),
            "{}",
            e.description
        );
        let elsewhere = send(&f.svc, (&right, &cc, "ip:192.0.2.2"), None).await;
        assert!(elsewhere.is_ok(), "another address is not locked out");
    }

    #[test]
    fn unusable_forms_are_oauth_errors() {
        assert_eq!(form_error(FormError::TooLarge).status, 413);
        let e = form_error(FormError::Repeated);
        assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidRequest));
    }
}
