//! Token exchange (RFC 8693) at the token endpoint: a token the client holds, for another audience.

use super::delegation::{self, Refusal};
use super::request::Exchange;
use super::*;
use crate::auth::principal::{decode_claims, Principal};
use crate::auth::AuthError;
use crate::config::Issuer;
use serde_json::Map;

/// A verified token taking part in an exchange: what the verifier derived from it, and its claims.
pub(super) struct Party {
    pub principal: Arc<Principal>,
    pub claims: Value,
}

/// What an exchanged token is minted from, however the exchange was asked for.
pub(super) struct Minting<'a> {
    pub subject: &'a Party,
    /// the new actor; `None` is impersonation, which keeps the subject's own `act` as it was
    pub actor: Option<&'a str>,
    pub scopes: &'a [String],
    /// its `aud`: the audience or resource asked for; `None`: the client's audience
    pub target: Option<&'a str>,
}

/// An exchanged token and when it expires.
pub(super) struct Minted {
    pub token: String,
    pub exp: u64,
    pub expires_in: u64,
}

/// The OAuth error a refused exchange rule answers with (RFC 8693 §2.2.2).
pub(super) fn refused(r: Refusal) -> OAuthError {
    match r {
        Refusal::Widening => oauth(
            400,
            OAuthErrorCode::InvalidScope,
            "an exchange cannot widen the scopes of the subject token or the client",
        ),
        Refusal::NotAllowedToAct => {
            invalid_grant("the subject token's may_act does not allow this actor")
        }
    }
}

/// What a token exchange's span says: the client, delegation or impersonation, and whether a
/// token was issued; never the tokens exchanged.
fn spanned(
    client: &Client,
    kind: &'static str,
    issued: bool,
) -> Vec<(crate::telemetry::Key, crate::telemetry::Value)> {
    use crate::telemetry::Value as V;
    vec![
        (
            "gatehouse.client_id".into(),
            V::from(client.client_id.clone()),
        ),
        ("gatehouse.exchange".into(), V::from(kind)),
        ("gatehouse.issued".into(), V::Bool(issued)),
    ]
}

/// The party that acts: the actor token's `sub` (and `iss`, for `may_act` to compare), or the
/// client itself.
fn actor_of(actor: Option<&Party>, client: &Client) -> Map<String, Value> {
    let mut m = Map::new();
    match actor {
        Some(p) => {
            for k in ["sub", "iss"] {
                if let Some(v) = p.claims.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
        }
        None => {
            m.insert("sub".into(), json!(client.client_id));
        }
    }
    m
}

/// True when the token was meant for the client: issued to it, or naming it (its id or one of its
/// audiences) in `aud`. Exchanging re-targets a token, so only its intended holder may.
fn meant_for(p: &Principal, claims: &Value, client: &Client) -> bool {
    let id = client.client_id.as_str();
    claims.get("client_id").and_then(Value::as_str) == Some(id)
        || p.audiences()
            .any(|a| a == id || client.audience.iter().any(|c| c == a))
}

impl TokenService {
    /// The grant, in a `token exchange` span when the request is traced.
    pub(super) async fn exchange_traced(
        &self,
        client: &Client,
        ex: &Exchange,
        asked: (Option<&[String]>, Option<&str>),
    ) -> Result<Value, OAuthError> {
        let kind = if ex.impersonate {
            "impersonation"
        } else {
            "delegation"
        };
        let attributes = |done: &Result<_, _>| spanned(client, kind, done.is_ok());
        let exchanged = self.exchange_grant(client, ex, asked);
        crate::telemetry::current::internal("token exchange", attributes, exchanged).await
    }

    /// The grant: `subject_token` (and `actor_token`) verified, the rules applied, a token minted.
    async fn exchange_grant(
        &self,
        client: &Client,
        ex: &Exchange,
        (asked, resource): (Option<&[String]>, Option<&str>),
    ) -> Result<Value, OAuthError> {
        if ex.impersonate && !client.exchange.impersonation {
            return Err(oauth(
                400,
                OAuthErrorCode::UnauthorizedClient,
                "the client may not impersonate (exchange_impersonation)",
            ));
        }
        if ex.impersonate && ex.actor_token.is_some() {
            return Err(invalid_request("an impersonation names no actor_token"));
        }
        let target = self.exchange_target(ex.audience.as_deref(), resource)?;
        let allowed = self.exchangeable(client);
        let subject = self
            .party(
                &ex.subject_token,
                &allowed,
                "the subject_token is not valid",
            )
            .await?;
        if !meant_for(&subject.principal, &subject.claims, client) {
            return Err(invalid_grant(
                "the subject_token was not issued to this client nor names it as audience",
            ));
        }
        let actor_party = match &ex.actor_token {
            Some(t) => Some(
                self.party(t, &allowed, "the actor_token is not valid")
                    .await?,
            ),
            None => None,
        };
        let actor = actor_of(actor_party.as_ref(), client);
        delegation::may_act(subject.claims.get("may_act"), &actor).map_err(refused)?;
        let actor_sub = actor.get("sub").and_then(Value::as_str).unwrap_or_default();
        if actor_sub.is_empty() {
            return Err(invalid_grant("the actor_token names no subject"));
        }
        let held: Vec<&str> = subject.principal.scopes().collect();
        let scopes = delegation::scopes(asked, &held, &client.scopes).map_err(refused)?;
        let minting = Minting {
            subject: &subject,
            actor: (!ex.impersonate).then_some(actor_sub),
            scopes: &scopes,
            target,
        };
        let minted = self.mint_exchanged(client, minting).await?;
        self.exchange.count(None);
        tracing::info!(target: "gatehouse::token", client = %client.client_id,
            impersonation = ex.impersonate, "token exchanged");
        let mut body = json!({
            "access_token": minted.token,
            "issued_token_type": ex.issued_token_type,
            "token_type": "Bearer",
            "expires_in": minted.expires_in,
        });
        if !scopes.is_empty() {
            put(&mut body, "scope", json!(scopes.join(" ")));
        }
        Ok(body)
    }

    /// The `aud` an exchange asks for: a `resource` (already judged, RFC 8707) or an `audience`
    /// this service's own tokens may carry (the request names one at most).
    fn exchange_target<'a>(
        &self,
        audience: Option<&'a str>,
        resource: Option<&'a str>,
    ) -> Result<Option<&'a str>, OAuthError> {
        match (audience, resource) {
            (Some(a), _) if self.own_issuer.audiences.iter().any(|x| x == a) => Ok(Some(a)),
            (Some(_), _) => Err(oauth(
                400,
                OAuthErrorCode::InvalidTarget,
                "the audience is not one this service issues tokens for",
            )),
            (None, r) => Ok(r),
        }
    }

    /// The issuers whose tokens the client may exchange: the gateway's own, and its
    /// `exchange_issuers`.
    fn exchangeable(&self, client: &Client) -> Vec<Arc<Issuer>> {
        let mut v = vec![self.own_issuer.clone()];
        let listed = |i: &&Arc<Issuer>| client.exchange.issuers.contains(&i.name);
        v.extend(self.exchange.issuers.iter().filter(listed).cloned());
        v
    }

    /// A token of the exchange verified by the proxy's rules (signature, expiry, audience,
    /// revocation), refused when it was issued to a client that is gone.
    async fn party(
        &self,
        token: &str,
        allowed: &[Arc<Issuer>],
        invalid: &'static str,
    ) -> Result<Party, OAuthError> {
        let principal = match self.verifier.verify(token, allowed).await {
            Ok(p) => p,
            Err(AuthError::KeysUnavailable { retry_after }) => {
                return Err(OAuthError {
                    retry_after: Some(retry_after),
                    ..oauth(
                        503,
                        OAuthErrorCode::TemporarilyUnavailable,
                        "the issuer's signing keys are not available yet; try again",
                    )
                })
            }
            Err(AuthError::Token(e)) => {
                tracing::info!(target: "gatehouse::token", reason = e.description(),
                    "a token offered for exchange was refused");
                return Err(invalid_grant(invalid));
            }
        };
        if self.issued_to_removed_client(&principal) {
            return Err(invalid_grant(invalid));
        }
        let segment = token.split('.').nth(1).unwrap_or_default();
        let claims = decode_claims(segment.as_bytes());
        Ok(Party { principal, claims })
    }

    /// Mints an exchanged token: the subject's `sub` and roles, `act` nested over the subject's,
    /// ending no later than the subject token; recorded in the subject token's refresh family when
    /// it has one, so revoking the family revokes this token too.
    pub(super) async fn mint_exchanged(
        &self,
        client: &Client,
        m: Minting<'_>,
    ) -> Result<Minted, OAuthError> {
        let p = &m.subject.principal;
        let sub = m
            .subject
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(invalid_grant("the subject_token names no subject"))?;
        // Looked up before anything is minted: a store that cannot answer refuses the exchange.
        let family = self.subject_family(p).await?;
        let now = self.clock.now_secs();
        let exp = delegation::expiry(now, self.settings.access_token_ttl.as_secs(), p.exp);
        let mut extra = Map::new();
        extra.insert("exp".into(), json!(exp));
        let prior = m.subject.claims.get("act");
        let act = match m.actor {
            Some(actor) => Some(delegation::act(actor, prior)),
            None => prior.cloned(),
        };
        if let Some(a) = act {
            extra.insert("act".into(), a);
        }
        let roles: Vec<String> = p.roles().map(str::to_string).collect();
        // an exchanged token is a bearer token: DPoP binding of exchanges is not offered
        let grantee = super::Grantee {
            grant: "token_exchange",
            subject: sub,
            resource: m.target,
            jkt: None,
        };
        let (token, _, jti) = self.mint(client, grantee, m.scopes, &roles, extra)?;
        if let Some(f) = family {
            let j = jti.clone();
            run_blocking(&self.store, move |s| s.family_token(&f, &j, exp))
                .await
                .map_err(|_| unavailable())?;
            // A family revoked while this ran revoked the subject token: the new one goes with it.
            if p.jti().is_some_and(|j| self.revocations.is_revoked(j)) {
                self.revocations.add(&jti, exp);
                return Err(invalid_grant("the subject_token has been revoked"));
            }
        }
        Ok(Minted {
            token,
            exp,
            expires_in: exp.saturating_sub(now),
        })
    }

    /// The refresh family of one of the gateway's own access tokens, when it was issued from one.
    async fn subject_family(&self, p: &Principal) -> Result<Option<String>, OAuthError> {
        if p.issuer != self.own_issuer.id {
            return Ok(None);
        }
        let Some(jti) = p.jti().filter(|j| !j.is_empty()).map(str::to_string) else {
            return Ok(None);
        };
        run_blocking(&self.store, move |s| s.token_family(&jti))
            .await
            .map_err(|_| unavailable())
    }
}
