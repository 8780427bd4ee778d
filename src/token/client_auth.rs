//! Client authentication: Basic and form secrets, private_key_jwt assertions, public clients, lockout.

use super::*;
use crate::config::JWT_BEARER;
use crate::endpoints::Endpoint;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Whom a request's credentials name and whether that client is locked out at the request's
/// address, read when the request arrived. Made by `TokenService::arrive` alone, so
/// `authenticate` never runs on a lockout nobody read.
pub(super) struct Claim {
    named: Result<(String, bool), Option<String>>,
    locked: bool,
}

/// How the client proved itself.
pub(super) enum Credentials {
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
    /// no client authentication with a jwt-bearer grant: the assertion's `iss` names the client and
    /// the grant's assertion check is its proof (RFC 7521 §4.1, RFC 7523 §3.1)
    Grant {
        iss: String,
    },
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

/// The answer to a request that did not authenticate its client.
fn required() -> OAuthError {
    OAuthError {
        basic: true,
        ..oauth(
            401,
            OAuthErrorCode::InvalidClient,
            "client authentication is required",
        )
    }
}

/// A request without client authentication: a public client naming itself, or a jwt-bearer grant
/// whose assertion names the client (with a `client_id` beside it only when it is that issuer).
fn unauthenticated(form: &HashMap<String, String>) -> Result<Credentials, OAuthError> {
    let grant_iss = (form.get("grant_type").map(String::as_str) == Some(JWT_BEARER))
        .then(|| form.get("assertion"))
        .flatten()
        .and_then(|a| jwt::parse(a).ok())
        .and_then(|p| p.iss().map(str::to_string));
    match (form.get("client_id"), grant_iss) {
        // RFC 6749 §3.2.1 and RFC 7523 §2.1 let a client name itself beside the assertion
        // (Authlib's AssertionSession and openid-client's None() always do): it must be the
        // assertion's issuer, which the grant then verifies
        (Some(id), Some(iss)) if *id == iss => Ok(Credentials::Grant { iss }),
        (Some(_), Some(_)) => Err(OAuthError {
            basic: true,
            ..oauth(
                401,
                OAuthErrorCode::InvalidClient,
                "client_id is not the assertion's issuer",
            )
        }),
        (Some(id), None) => Ok(Credentials::None {
            client_id: id.clone(),
        }),
        (None, Some(iss)) => Ok(Credentials::Grant { iss }),
        (None, None) => Err(required()),
    }
}

/// True for `Basic <something>` (the scheme in any case), without slicing inside a character.
fn is_basic(header: &str) -> bool {
    header.len() > 6
        && header
            .as_bytes()
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"basic "))
}

impl TokenService {
    /// The credentials parser alone, for its fuzz target: whether the input names a way to
    /// authenticate.
    #[cfg(any(test, fuzzing))]
    pub fn fuzz_credentials(basic: Option<&str>, form: &HashMap<String, String>) -> bool {
        Self::credentials(basic, form).is_ok()
    }

    pub(super) fn credentials(
        basic: Option<&str>,
        form: &HashMap<String, String>,
    ) -> Result<Credentials, OAuthError> {
        let body_secret = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let methods = [
            basic.is_some_and(is_basic),
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
        if let Some(b) = basic.filter(|b| is_basic(b)) {
            let (client_id, secret) = basic_credentials(b).ok_or(OAuthError {
                basic: true,
                ..oauth(
                    401,
                    OAuthErrorCode::InvalidClient,
                    "client authentication failed",
                )
            })?;
            if form.get("client_id").is_some_and(|id| *id != client_id) {
                return Err(invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            // A public client's `id:` with an empty password (requests-oauthlib's default) names it.
            if secret.is_empty() {
                return Ok(Credentials::None { client_id });
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
        unauthenticated(form)
    }

    /// A grant assertion is verified by the token grant alone, so it proves nothing to another
    /// endpoint (RFC 7009 §2.1 and RFC 7662 §2.1 ask for client authentication).
    pub(super) fn accepted_at(creds: &Credentials, endpoint: Endpoint) -> Result<(), OAuthError> {
        match (creds, endpoint) {
            (Credentials::Grant { .. }, e) if e != Endpoint::Token => Err(required()),
            _ => Ok(()),
        }
    }

    /// Who the credentials say the client is, before anything is checked, and whether they came
    /// in Basic: the id the lockout is kept under. `Err`: credentials that fail before any check
    /// (an assertion naming a client other than `client_id`, or none), with the client to blame.
    fn claimed(creds: &Credentials) -> Result<(String, bool), Option<String>> {
        match creds {
            Credentials::Secret {
                client_id, basic, ..
            } => Ok((client_id.clone(), *basic)),
            Credentials::Assertion {
                client_id,
                assertion,
            } => {
                // The client is known from the assertion's `iss` before any key is fetched.
                let iss = jwt::parse(assertion)
                    .ok()
                    .and_then(|p| p.iss().map(str::to_string));
                match (client_id, iss) {
                    (Some(a), Some(b)) if *a != b => Err(Some(a.clone())),
                    (_, Some(b)) => Ok((b, false)),
                    (a, None) => Err(a.clone()),
                }
            }
            Credentials::None { client_id } => Ok((client_id.clone(), false)),
            Credentials::Grant { iss } => Ok((iss.clone(), false)),
        }
    }

    /// The key of the lockout of client `id` at `address`.
    pub(super) fn lockout_key(id: &str, address: &str) -> String {
        format!("client:{id}@{address}")
    }

    /// A POST arrives: its address's rate is counted and the lockout of the client its credentials
    /// name is read, together (one round trip on a shared store). The credentials are read first,
    /// for the lockout's key, but refused only by the caller, after the rate and the DPoP proof: a
    /// request over its rate gets 429 whatever it carries. Reading the lockout before the proof
    /// rather than after lets no more guesses through: parallel guesses could always all read
    /// "not locked" before any of them failed.
    pub(super) async fn arrive(
        &self,
        basic: Option<&str>,
        form: &HashMap<String, String>,
        address: &str,
    ) -> Result<(Result<Credentials, OAuthError>, Claim), OAuthError> {
        let creds = Self::credentials(basic, form);
        let named = creds.as_ref().map_err(|_| None).and_then(Self::claimed);
        let held = named
            .as_ref()
            .ok()
            .map(|(id, _)| Self::lockout_key(id, address));
        let (within, locked) =
            super::limits::arrive(&self.per_address, address, &self.failures, held.as_deref())
                .await;
        if !within {
            return Err(too_many(
                self.per_address.retry_after(),
                "too many requests from this address; slow down",
            ));
        }
        Ok((creds, Claim { named, locked }))
    }

    /// Authenticates the client. Unknown clients and wrong secrets get the same answer, after the
    /// same kind of work; the lockout applies to every method, assertions included, and is kept per
    /// client and address: nobody elsewhere can lock a client out by naming it. `claim`: what
    /// `arrive` made of `creds`.
    pub(super) async fn authenticate(
        &self,
        creds: &Credentials,
        claim: Claim,
        address: &str,
    ) -> Result<Arc<Client>, OAuthError> {
        let (id, basic) = match claim.named {
            Ok(c) => c,
            Err(who) => return Err(self.auth_failed(who.as_deref(), address, false).await),
        };
        if claim.locked {
            return Err(self.locked_out());
        }
        match creds {
            Credentials::Secret { secret, .. } => {
                let client = self.directory.configured(&id);
                let real = client.and_then(|c| c.secret.clone());
                // An unknown or secretless client is checked against a stand-in of a real kind.
                let hash = real
                    .clone()
                    .unwrap_or_else(|| self.client_decoys.for_name(&id));
                let ok = check_secret(&self.pool, "verify client secret", secret, &hash);
                let ok = ok.await.map_err(|_| busy())?;
                match client {
                    Some(c) if ok && real.is_some() => Ok(c.clone()),
                    _ => Err(self.auth_failed(Some(&id), address, basic).await),
                }
            }
            Credentials::Assertion { assertion, .. } => {
                let Some(client) = self.directory.configured(&id) else {
                    return Err(self.auth_failed(Some(&id), address, false).await);
                };
                match self.check_assertion(client, assertion, true).await {
                    Ok(_) => Ok(client.clone()),
                    Err(e) if e.status == 503 => Err(e),
                    Err(e) => {
                        let mut failed = self.auth_failed(Some(&id), address, false).await;
                        failed.description = e.description;
                        Err(failed)
                    }
                }
            }
            Credentials::None { .. } => match self.directory.find(&id).await {
                Ok(c) if c.public => Ok(c),
                Err(super::directory::Missing::Unavailable) => Err(unavailable()),
                _ => Err(self.auth_failed(Some(&id), address, false).await),
            },
            // Only a client that may use the jwt-bearer grant is named this way; the grant then
            // verifies the assertion with the client's keys, and a failure counts as here.
            Credentials::Grant { .. } => match self.directory.configured(&id) {
                Some(c) if c.grant_types.contains(&GrantType::JwtBearer) => Ok(c.clone()),
                _ => Err(self.auth_failed(Some(&id), address, false).await),
            },
        }
    }

    /// The answer while a client is locked out by `failed_auth_lockout`.
    pub(super) fn locked_out(&self) -> OAuthError {
        OAuthError {
            retry_after: Some(self.failures.retry_after()),
            ..oauth(
                401,
                OAuthErrorCode::InvalidClient,
                "too many failed authentications for this client; try again later",
            )
        }
    }

    /// Counts a failed client authentication against the client at this address (not the address
    /// alone: clients behind one NAT must not lock each other out; not the client alone: anyone
    /// could lock it out by naming it), and says so.
    pub(super) async fn auth_failed(
        &self,
        who: Option<&str>,
        address: &str,
        basic: bool,
    ) -> OAuthError {
        if let Some(w) = who {
            let key = Self::lockout_key(w, address);
            let within = self.failures.hit(&key).await;
            // the failure that reaches the limit engages the lockout: said once, by the failure
            // counted at the limit exactly (later ones count past it; some are counted before the
            // lockout is checked, a malformed assertion's among them)
            if within && self.audit.enabled() && self.failures.exceeded(&key).await {
                let retry_after = self.failures.retry_after();
                let shown = crate::wire::request::Request::shown_key(address);
                self.audit
                    .emit(|| crate::audit::Event::client_lockout(w, shown, retry_after));
            }
        }
        tracing::info!(target: "gatehouse::token", client = who.unwrap_or("-"), "client authentication failed");
        OAuthError {
            basic,
            ..oauth(
                401,
                OAuthErrorCode::InvalidClient,
                "client authentication failed",
            )
        }
    }

    /// Verifies a client-signed JWT (RFC 7523): signature by the client's keys, `iss` the client,
    /// `aud` this server, a short `exp`, and a `jti` never seen before. Returns the claims.
    pub(super) async fn check_assertion(
        &self,
        client: &Client,
        assertion: &str,
        authn: bool,
    ) -> Result<Value, OAuthError> {
        let bad = invalid_grant;
        let parsed = jwt::parse(assertion).map_err(|_| bad("the assertion is not a valid JWT"))?;
        let keys = self.client_jwks.keys(client, parsed.kid.as_deref()).await?;
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
        let longest = self.settings.max_assertion_lifetime.as_secs();
        if exp > now.saturating_add(longest.saturating_add(self.leeway)) {
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
}

/// Checks a secret (or password) on the hash pool; in a traced request, a span named `name` that
/// says the hash's algorithm, never the hash.
pub(crate) async fn check_secret(
    pool: &crate::crypto::HashPool,
    name: &'static str,
    secret: &str,
    hash: &crate::crypto::SecretHash,
) -> Result<bool, crate::crypto::PoolFull> {
    let attributes = |_: &_| vec![("gatehouse.hash".into(), hash.algorithm().into())];
    crate::telemetry::current::internal(name, attributes, pool.matches(secret, hash)).await
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

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// JWT-shaped text naming `iss`, signed by nobody.
    fn assertion(iss: &str) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = format!(r#"{{"iss":"{iss}","sub":"x"}}"#);
        format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(body)
        )
    }

    #[test]
    fn a_jwt_bearer_grant_names_its_client_by_the_assertions_issuer() {
        let a = assertion("signer");
        let grant = |more: &[(&str, &str)]| {
            let mut f = form(&[("grant_type", JWT_BEARER), ("assertion", &a)]);
            f.extend(form(more));
            TokenService::credentials(None, &f)
        };
        assert!(matches!(grant(&[]), Ok(Credentials::Grant { iss }) if iss == "signer"));
        assert!(matches!(
            grant(&[("client_id", "signer")]),
            Ok(Credentials::Grant { .. })
        ));
        let other = grant(&[("client_id", "svc")]).err().map(|e| e.status);
        assert_eq!(other, Some(401), "another client's name is refused");
    }

    #[test]
    fn a_public_client_names_itself_and_nothing_at_all_is_refused() {
        let named = TokenService::credentials(None, &form(&[("client_id", "spa")]));
        assert!(matches!(named, Ok(Credentials::None { client_id }) if client_id == "spa"));
        let nothing = TokenService::credentials(None, &form(&[("grant_type", "x")]));
        assert_eq!(nothing.err().map(|e| e.status), Some(401));
        let twice = form(&[("client_secret", "s"), ("client_assertion", "a")]);
        let e = TokenService::credentials(None, &twice).err();
        assert_eq!(e.map(|e| e.status), Some(400), "two methods at once");
    }

    #[test]
    fn a_grant_assertion_counts_only_at_the_token_endpoint() {
        let grant = Credentials::Grant {
            iss: "signer".into(),
        };
        assert!(TokenService::accepted_at(&grant, Endpoint::Token).is_ok());
        for e in [Endpoint::Revoke, Endpoint::Introspect] {
            let refused = TokenService::accepted_at(&grant, e).err();
            assert_eq!(refused.map(|r| r.status), Some(401), "{e:?}");
        }
        let public = Credentials::None {
            client_id: "spa".into(),
        };
        assert!(TokenService::accepted_at(&public, Endpoint::Revoke).is_ok());
    }
}
