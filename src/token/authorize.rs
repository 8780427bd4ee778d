//! The authorization-code flow: the authorize endpoint with its sign-in page, and the code exchange
//! with mandatory PKCE (S256) and an OpenID Connect ID token.

use super::auth_request::{redirect_matches, AuthRequest, AuthorizeError, Prompt};
use super::directory::Missing;
use super::{invalid_grant, oauth, random_token, sha256_hex, unavailable};
use super::{put, split_scopes, OAuthError, OAuthErrorCode, SignIn, TokenService};
use crate::config::Client;
use crate::respond::Answer;
use crate::store::{run_blocking, CodeRecord, CodeUse};
use crate::wire::form::{FormError, Params};
use crate::wire::request::Request;
use serde_json::{json, Value};

pub const CSRF_COOKIE: &str = "__Host-gatehouse-csrf";
/// How long a sign-in form stays usable.
pub const CSRF_SECONDS: u64 = 1800;

/// The page said when an address cannot be built from a client's registered redirect URI.
const NO_REDIRECT: &str = "The application's return address is not valid.";

impl TokenService {
    /// GET shows the sign-in page (or, with a live session, answers at once); POST signs in.
    pub(super) async fn authorize(&self, http: &Request<'_>) -> Answer {
        let params = match authorize_params(http) {
            Ok(p) => p,
            Err(message) => return self.page(http, 400, message, None, None),
        };
        let named = params
            .get("client_id")
            .map(String::as_str)
            .unwrap_or_default();
        let client = match self.directory.find(named).await {
            Ok(c) => Some(c),
            Err(Missing::Unavailable) => {
                let busy = "Signing in is not possible right now. Please try again in a moment.";
                return self.page(http, 503, busy, None, None);
            }
            Err(Missing::Document(_)) => {
                let text = "The application's client metadata document cannot be used.";
                return self.page(http, 400, text, None, None);
            }
            Err(Missing::Unknown) => None,
        };
        let req = match self.validate(&params, client.as_deref()) {
            Ok(r) => r,
            Err(e) => return self.authorize_error(http, e),
        };
        // OIDC Core §3.1.2.1: the authorization request itself may come by POST; the sign-in form
        // is the POST that carries a CSRF token.
        if http.is_post() && params.contains_key("csrf") {
            self.submit(http, &req, &params).await
        } else {
            self.ask(http, &req, &params).await
        }
    }

    /// An authorization request: a live, recent enough session answers at once, unless the client
    /// asks to sign in again; else the sign-in form, or `login_required` with `prompt=none`.
    async fn ask(&self, http: &Request<'_>, req: &AuthRequest<'_>, params: &Params) -> Answer {
        let now = self.clock.now_secs();
        let live = self.live_session(http).await.filter(|(_, auth_time)| {
            req.max_age
                .is_none_or(|m| now.saturating_sub(*auth_time) < m)
        });
        match (req.prompt, live) {
            (Prompt::Login, _) => self.page(http, 200, "", Some(params), None),
            (_, Some((subject, auth_time))) => {
                self.grant_code(http, req, &subject, auth_time, None).await
            }
            (Prompt::None, None) => {
                let error = AuthorizeError::Redirect {
                    uri: req.redirect_uri.clone(),
                    state: req.state.clone(),
                    code: OAuthErrorCode::LoginRequired,
                    description: "the person must sign in, and prompt=none forbids asking",
                };
                self.authorize_error(http, error)
            }
            (Prompt::Default, None) => self.page(http, 200, "", Some(params), None),
        }
    }

    /// The sign-in form: its CSRF token must be one this gateway issued to this browser's pre-login
    /// cookie, and it is used up here, whatever happens next; then the credentials.
    async fn submit(&self, http: &Request<'_>, req: &AuthRequest<'_>, params: &Params) -> Answer {
        if !self.take_form_token(http, params.get("csrf")).await {
            let expired = "This sign-in form has expired. Please try again.";
            return self.page(http, 403, expired, Some(params), None);
        }
        let now = self.clock.now_secs();
        let username = params.get("username").cloned().unwrap_or_default();
        let password = params.get("password").cloned().unwrap_or_default();
        let (status, message) = match self
            .sign_in(&username, &password, &http.client_key(), "authorize_page")
            .await
        {
            SignIn::User(user) => {
                self.sign_ins
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Kept in the store, so a restart or another replica keeps the person signed in.
                let set = match self
                    .sessions
                    .open(http.header, self.local_session(user, now))
                    .await
                {
                    Ok(set) => set,
                    Err(crate::session::OpenError::Randomness(_)) => {
                        return self.no_randomness_page()
                    }
                    Err(crate::session::OpenError::Store(_)) => {
                        let busy =
                            "Signing in is not possible right now. Please try again in a moment.";
                        let name = Some(username.as_str());
                        return self.page(http, 503, busy, Some(params), name);
                    }
                };
                let subject = user.subject.clone();
                return self.grant_code(http, req, &subject, now, Some(set)).await;
            }
            SignIn::LockedOut => (429, "Too many failed sign-ins. Please wait a few minutes."),
            SignIn::Busy => (
                503,
                "The sign-in service is busy. Please try again in a moment.",
            ),
            SignIn::Wrong => (401, "The email or password is wrong."),
        };
        self.page(http, status, message, Some(params), Some(&username))
    }

    /// The local user and sign-in time of the request's live session, if any; a store that cannot
    /// answer means none. Sessions of external providers do not sign in here.
    async fn live_session(&self, http: &Request<'_>) -> Option<(String, u64)> {
        let found = self.sessions.find(http.header).await.ok()??;
        if crate::config::LoginWay::Local != found.record.provider {
            return None;
        }
        self.user_by_subject(&found.record.subject)
            .map(|u| (u.subject.clone(), found.record.auth_time))
    }

    /// An authorization error: a page when the client or redirect URI cannot be trusted, else back
    /// to the client (RFC 6749 §4.1.2.1, with `iss` per RFC 9207).
    fn authorize_error(&self, http: &Request<'_>, error: AuthorizeError) -> Answer {
        match error {
            AuthorizeError::Page(msg) => self.page(http, 400, msg, None, None),
            AuthorizeError::Redirect {
                uri,
                state,
                code,
                description,
            } => {
                let Ok(mut target) = url::Url::parse(&uri) else {
                    return self.page(http, 400, NO_REDIRECT, None, None);
                };
                target
                    .query_pairs_mut()
                    .append_pair("error", code.as_str())
                    .append_pair("error_description", description)
                    .append_pair("iss", &self.settings.issuer);
                if let Some(s) = &state {
                    target.query_pairs_mut().append_pair("state", s);
                }
                Answer::see_other(target.as_str(), &[])
            }
        }
    }

    async fn grant_code(
        &self,
        http: &Request<'_>,
        req: &AuthRequest<'_>,
        subject: &str,
        auth_time: u64,
        set_cookie: Option<String>,
    ) -> Answer {
        let Ok(code) = random_token(32) else {
            return self.no_randomness_page();
        };
        let rec = CodeRecord {
            hash: sha256_hex(&code),
            client_id: req.client.client_id.clone(),
            // Empty when the request left it out: the exchange need not name it then.
            redirect_uri: if req.redirect_uri_sent {
                req.redirect_uri.clone()
            } else {
                String::new()
            },
            challenge: req.challenge.clone(),
            subject: subject.to_string(),
            scopes: req.scopes.join(" "),
            nonce: req.nonce.clone(),
            resource: req.resource.clone().unwrap_or_default(),
            auth_time,
            expires_at: self.clock.now_secs() + self.settings.code_ttl.as_secs(),
        };
        let Ok(mut target) = url::Url::parse(&req.redirect_uri) else {
            return self.page(http, 400, NO_REDIRECT, None, None);
        };
        if run_blocking(&self.store, move |s| s.put_code(&rec))
            .await
            .is_err()
        {
            let busy = "Signing in is not possible right now. Please try again.";
            return self.page(http, 503, busy, None, None);
        }
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("iss", &self.settings.issuer);
        if let Some(s) = &req.state {
            target.query_pairs_mut().append_pair("state", s);
        }
        Answer::see_other(target.as_str(), set_cookie.as_slice())
    }

    /// Without random values no form, session or code can be made safely: refuse.
    fn no_randomness_page(&self) -> Answer {
        Answer::refuse(&super::no_randomness(crate::crypto::NoRandomness))
    }

    /// The sign-in page: server-rendered, no JavaScript, every request parameter carried in hidden fields.
    fn page(
        &self,
        http: &Request<'_>,
        status: u16,
        error: &str,
        params: Option<&Params>,
        username: Option<&str>,
    ) -> Answer {
        // form-action also governs where the form's answer may redirect: the client's registered origin.
        let redirect_origin = params
            .and_then(|p| p.get("redirect_uri"))
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
            .filter(|o| o != "null")
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        let mut headers = crate::pages::page_headers(&redirect_origin);
        let brand = self.sessions.brand();
        let body = match params {
            Some(p) => {
                let Ok((csrf, set_cookie)) = self.form_token(http) else {
                    return self.no_randomness_page();
                };
                headers.push(("set-cookie", set_cookie));
                let mut hidden: Vec<(&str, String)> = [
                    "response_type",
                    "client_id",
                    "redirect_uri",
                    "scope",
                    "state",
                    "nonce",
                    "code_challenge",
                    "code_challenge_method",
                    "resource",
                ]
                .into_iter()
                .filter_map(|k| p.get(k).map(|v| (k, v.clone())))
                .collect();
                hidden.push(("csrf", csrf));
                crate::pages::sign_in(
                    &brand,
                    &crate::pages::SignInForm {
                        action: "/oauth/authorize",
                        hidden,
                        username: username.unwrap_or(""),
                        app: p.get("client_id").map(String::as_str),
                        error,
                    },
                )
            }
            None => crate::pages::message(&brand, "Sign in", error, None),
        };
        Answer::html(status, headers, body)
    }

    /// A one-use form token bound to the browser's pre-login cookie, and the `Set-Cookie` that keeps
    /// that cookie; the pre-login id stays while the browser has it, so forms in several tabs all work.
    pub(crate) fn form_token(
        &self,
        http: &Request<'_>,
    ) -> Result<(String, String), crate::crypto::NoRandomness> {
        let pre_login = match http.cookie(CSRF_COOKIE).filter(|c| {
            c.len() >= 32
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            Some(c) => c.to_string(),
            None => random_token(32)?,
        };
        let csrf = self.form_tokens.issue(&pre_login)?;
        let set = format!(
            "{CSRF_COOKIE}={pre_login}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={CSRF_SECONDS}"
        );
        Ok((csrf, set))
    }

    /// Uses up a form token: true when a gateway with this key issued it to this browser's
    /// pre-login cookie, in time, and it was not used before.
    pub(crate) async fn take_form_token(&self, http: &Request<'_>, sent: Option<&String>) -> bool {
        match (http.cookie(CSRF_COOKIE), sent) {
            (Some(c), Some(f)) => self.form_tokens.take(c, f).await,
            _ => false,
        }
    }

    /// The code exchange: single use, bound to client, redirect URI, PKCE challenge and resource. A
    /// second use revokes what the first issued (RFC 6749 §4.1.2).
    pub(super) async fn code_grant(
        &self,
        client: &Client,
        code: &str,
        verifier: &str,
        (redirect_uri, resource): (Option<&str>, Option<&str>),
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let hash = sha256_hex(code);
        let rec = self.redeem(client, &hash).await?;
        exchange_matches(&rec, client, redirect_uri, verifier)?;
        // RFC 8707 §2.2: the exchange may name the code's resource again, or leave it out and get it
        let resource = self.resources.keep(&rec.resource, resource)?;
        let scopes = split_scopes(&rec.scopes);
        // the person signed in moments ago; one removed since gets nothing
        let roles = match self.user_by_subject(&rec.subject) {
            Some(u) => u.roles.clone(),
            None => return Err(invalid_grant("the code's user no longer exists")),
        };
        let (mut body, issued) = self
            .issue_for_user(
                client,
                super::Grantee {
                    grant: "authorization_code",
                    subject: &rec.subject,
                    resource: resource.as_deref(),
                    jkt,
                },
                &scopes,
                &roles,
                super::Family::New,
            )
            .await?;
        let (jti, exp, family) = (issued.jti, issued.exp, issued.family);
        run_blocking(&self.store, move |s| {
            s.code_issued(&hash, &jti, exp, &family)
        })
        .await
        .map_err(|_| unavailable())?;
        if scopes.iter().any(|s| s == "openid") {
            put(&mut body, "id_token", json!(self.id_token(client, &rec)?));
        }
        Ok(body)
    }

    /// Takes the code out of the store, once: a second use revokes what the first issued
    /// (RFC 6749 §4.1.2).
    async fn redeem(&self, client: &Client, hash: &str) -> Result<CodeRecord, OAuthError> {
        let now = self.clock.now_secs();
        let h = hash.to_string();
        let used = run_blocking(&self.store, move |s| s.take_code(&h, now))
            .await
            .map_err(|_| unavailable())?;
        match used {
            CodeUse::Fresh(rec) => Ok(rec),
            CodeUse::Reused { jti, exp, family } => {
                tracing::warn!(target: "gatehouse::token", client = %client.client_id,
                    "an authorization code was used twice; revoking what it issued");
                if !jti.is_empty() {
                    let j = jti.clone();
                    run_blocking(&self.store, move |s| s.revoke(&j, exp))
                        .await
                        .map_err(|_| unavailable())?;
                    self.revocations.add(&jti, exp);
                }
                if !family.is_empty() {
                    self.revoke_family(family).await?;
                }
                Err(invalid_grant("the code was already used"))
            }
            CodeUse::Invalid => Err(invalid_grant("the code is not valid")),
        }
    }

    /// An OpenID Connect ID token signed by the same keys (`typ: JWT`, so the proxy never takes it
    /// for an access token).
    fn id_token(&self, client: &Client, rec: &CodeRecord) -> Result<String, OAuthError> {
        let key = self
            .keys
            .for_alg(client.id_token_alg)
            .ok_or(super::no_signing_key())?;
        let now = self.clock.now_secs();
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        let mut claims = json!({
            "iss": self.settings.issuer,
            "sub": rec.subject,
            "aud": client.client_id,
            "exp": now + self.settings.access_token_ttl.as_secs(),
            "iat": now,
            "auth_time": rec.auth_time,
        });
        if !rec.nonce.is_empty() {
            put(&mut claims, "nonce", json!(rec.nonce));
        }
        key.sign(&header, &claims).map_err(|_| {
            oauth(
                500,
                OAuthErrorCode::ServerError,
                "the ID token could not be signed",
            )
        })
    }
}

/// The exchange names what the code was issued for: its client, its redirect URI (RFC 6749 §4.1.3:
/// required only when the authorization request sent one) and its PKCE challenge.
fn exchange_matches(
    rec: &CodeRecord,
    client: &Client,
    redirect_uri: Option<&str>,
    verifier: &str,
) -> Result<(), OAuthError> {
    if rec.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    let redirect_ok = match redirect_uri {
        Some(sent) if rec.redirect_uri.is_empty() => client
            .redirect_uris
            .iter()
            .any(|r| redirect_matches(r, sent)),
        Some(sent) => *sent == rec.redirect_uri,
        // RFC 6749 §4.1.3: required only when the authorization request sent one
        None => rec.redirect_uri.is_empty(),
    };
    if !redirect_ok {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let computed = crate::crypto::sha256_b64url(verifier);
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        computed.as_bytes(),
        rec.challenge.as_bytes(),
    )
    .is_err()
    {
        return Err(invalid_grant("the PKCE code_verifier does not match"));
    }
    Ok(())
}

/// The authorization request's parameters: the form of a POST, else the query; a repeated one is
/// refused (RFC 6749 §3.1).
fn authorize_params(http: &Request<'_>) -> Result<Params, &'static str> {
    let params = if http.is_post() {
        http.form()
    } else {
        http.query()
    };
    params.map_err(|e| match e {
        FormError::Repeated => "A parameter was sent more than once.",
        _ => "The sign-in request could not be read.",
    })
}
