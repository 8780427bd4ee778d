//! Introspection (RFC 7662) and revocation (RFC 7009), and revoking a refresh family everywhere.

use super::{jwt, put, released_claims};
use super::{oauth, sha256_hex, unavailable, OAuthError, OAuthErrorCode, TokenService};
use crate::auth::extract::extract_token;
use crate::auth::principal::decode_claims;
use crate::config::Client;
use crate::config::TokenSources;
use crate::respond::Rejection;
use crate::store::run_blocking;
use crate::wire::request::Request;

/// Longest bearer token userinfo reads; the gateway's own tokens are far shorter.
const MAX_USERINFO_TOKEN: usize = 16 * 1024;
use serde_json::{json, Value};
use std::collections::HashMap;

/// True when the token's `aud` (a string or a list) names `who`.
fn audience_has(claims: &Value, who: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == who,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(who)),
        _ => false,
    }
}

impl TokenService {
    /// Only an authenticated confidential client may introspect, and it learns about a token only
    /// when the token was issued to it or names it as audience; anything else is `{"active": false}`.
    pub(super) async fn introspect(
        &self,
        client: &Client,
        authenticated: bool,
        form: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        if !authenticated || client.public {
            return Err(oauth(
                401,
                OAuthErrorCode::InvalidClient,
                "introspection needs the authentication of a confidential client",
            ));
        }
        let token = form
            .get("token")
            .ok_or(super::invalid_request("token is required"))?;
        let now = self.clock.now_secs();
        let inactive = json!({"active": false});
        let Some(c) = self.own_claims(token) else {
            let hash = sha256_hex(token);
            let rec = run_blocking(&self.store, move |s| s.active_refresh(&hash, now))
                .await
                .map_err(|_| unavailable())?;
            return Ok(match rec {
                Some(r) if r.client_id == client.client_id => {
                    json!({"active": true, "token_type": "refresh_token", "client_id": r.client_id,
                           "sub": r.subject, "scope": r.scopes, "exp": r.expires_at})
                }
                _ => inactive,
            });
        };
        let mine = c.get("client_id").and_then(Value::as_str) == Some(client.client_id.as_str())
            || audience_has(&c, &client.client_id);
        let exp = c.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let jti = c.get("jti").and_then(Value::as_str).unwrap_or("");
        if !mine || now > exp || self.revocations.is_revoked(jti) {
            return Ok(inactive);
        }
        // RFC 9449 §6.2: a bound token is a DPoP token, and says which key it is bound to
        let token_type = match c.pointer("/cnf/jkt") {
            Some(_) => "DPoP",
            None => "Bearer",
        };
        let mut out = json!({"active": true, "token_type": token_type});
        for k in [
            "scope",
            "client_id",
            "sub",
            "exp",
            "iat",
            "iss",
            "aud",
            "jti",
            "roles",
            "cnf",
            // RFC 8693 §4.1: who acts for the subject, through an exchange
            "act",
        ] {
            if let Some(v) = c.get(k) {
                put(&mut out, k, v.clone());
            }
        }
        Ok(out)
    }

    pub(super) async fn revoke(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        let token = form
            .get("token")
            .ok_or(super::invalid_request("token is required"))?;
        // RFC 7009 §2.2: an invalid or unknown token is not an error.
        let Some(c) = self.own_claims(token) else {
            let (hash, now) = (sha256_hex(token), self.clock.now_secs());
            let rec = run_blocking(&self.store, move |s| s.active_refresh(&hash, now))
                .await
                .map_err(|_| unavailable())?;
            if let Some(r) = rec {
                if r.client_id != client.client_id {
                    return Err(oauth(
                        400,
                        OAuthErrorCode::UnauthorizedClient,
                        "the token was issued to another client",
                    ));
                }
                self.revoke_family(r.family).await?;
                self.audit.emit(|| {
                    crate::audit::Event::token_revoked(crate::audit::Revoked {
                        by: "client",
                        client_id: Some(&client.client_id),
                        subject: Some(&r.subject),
                        token_type: "refresh_token",
                        jti: None,
                        families: 1,
                    })
                });
            }
            return Ok(json!({}));
        };
        if c.get("client_id").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(oauth(
                400,
                OAuthErrorCode::UnauthorizedClient,
                "the token was issued to another client",
            ));
        }
        let exp = c.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let Some(jti) = c.get("jti").and_then(Value::as_str).map(str::to_string) else {
            return Ok(json!({}));
        };
        if exp.saturating_add(self.leeway) < self.clock.now_secs() {
            return Ok(json!({}));
        }
        // The store first: what the answer acknowledges survives a restart.
        let j = jti.clone();
        run_blocking(&self.store, move |s| s.revoke(&j, exp))
            .await
            .map_err(|_| unavailable())?;
        self.revocations.add(&jti, exp);
        tracing::info!(target: "gatehouse::token", client = %client.client_id, "access token revoked");
        self.audit.emit(|| {
            crate::audit::Event::token_revoked(crate::audit::Revoked {
                by: "client",
                client_id: Some(&client.client_id),
                subject: c.get("sub").and_then(Value::as_str),
                token_type: "access_token",
                jti: Some(&jti),
                families: 0,
            })
        });
        Ok(json!({}))
    }

    /// `sub` and the claims the token's scopes release: `profile` the user's claims, `email` the
    /// email. The token is judged by the proxy's verifier, so expiry, leeway and revocation are the
    /// same here as on every route; a DPoP-bound token comes with its proof, as at the edge.
    pub(super) async fn userinfo(&self, http: &Request<'_>) -> Result<Value, Rejection> {
        let header_only = TokenSources {
            header: true,
            ..Default::default()
        };
        let in_header = extract_token(http.header, &header_only, MAX_USERINFO_TOKEN)?
            .map(|t| (t.token.into_owned(), t.dpop));
        // RFC 6750 §2.2: a POSTed form may carry the token as `access_token` (not both at once).
        let in_body = http.form().ok().and_then(|mut f| f.remove("access_token"));
        let (token, as_dpop) = match (in_header, in_body) {
            (Some(_), Some(_)) => {
                return Err(Rejection::BadRequest(
                    "the token was sent in more than one place",
                ))
            }
            (Some(t), None) => t,
            (None, Some(t)) => (t, false),
            (None, None) => return Err(Rejection::MissingToken),
        };
        let principal = self
            .verifier
            .verify(&token, std::slice::from_ref(&self.own_issuer))
            .await?;
        let presented = crate::dpop::Presentation {
            headers: &http.header.headers,
            method: http.method().as_str(),
            token: &token,
            ath: principal.ath(),
            as_dpop,
            bound_to: principal.jkt(),
            required: false,
        };
        let url = || self.own_url(http.header.uri.path());
        if let Err(refusal) = self.dpop.judge_token(&presented, url).await {
            let algs = self.dpop.algs.clone();
            return Err(Rejection::Dpop { refusal, algs });
        }
        // OIDC Core §5.3: userinfo answers for tokens granted the `openid` scope.
        if !principal.has_scope("openid") {
            return Err(Rejection::InsufficientScope(crate::policy::Denied {
                reason: crate::observe::DenyReason::ScopesAll,
                scope: Some("openid".into()),
            }));
        }
        let segment = token.split('.').nth(1).unwrap_or_default();
        let c = decode_claims(segment.as_bytes());
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
                put(&mut out, k, v);
            }
        }
        Ok(out)
    }

    /// The URL of one of this service's endpoints, as its proofs name it: `[server] public_url` and
    /// the normalised path (RFC 9449 §4.3).
    pub(super) fn own_url(&self, path: &str) -> String {
        let path =
            crate::wire::path::normalise_path(path).unwrap_or(std::borrow::Cow::Borrowed(path));
        format!("{}{}", self.public_url.trim_end_matches('/'), path)
    }

    /// Verifies one of this service's own access tokens, expired or not. Returns its claims.
    pub(super) fn own_claims(&self, token: &str) -> Option<Value> {
        let parsed = jwt::parse(token).ok()?;
        if parsed.typ.as_deref() != Some("at+jwt")
            || parsed.iss() != Some(self.settings.issuer.as_str())
        {
            return None;
        }
        parsed.verify_signature(&self.keys.verify_keys()).ok()?;
        Some(parsed.claims)
    }

    /// Revokes a refresh family and every access token issued from it, in the store and in the
    /// proxy's denylist, so reuse detection takes effect at the edge at once.
    /// Ends every refresh family of a subject and the access tokens issued from them, on every
    /// gateway sharing the store; returns how many families there were.
    pub(crate) async fn revoke_subject(&self, subject: &str) -> Result<usize, OAuthError> {
        let (subject, now) = (subject.to_string(), self.clock.now_secs());
        let families = run_blocking(&self.store, move |s| s.families_of(&subject, now))
            .await
            .map_err(|_| unavailable())?;
        let n = families.len();
        for f in families {
            self.revoke_family(f).await?;
        }
        Ok(n)
    }

    /// Returns how many access tokens it revoked.
    pub(super) async fn revoke_family(&self, family: String) -> Result<usize, OAuthError> {
        let tokens = run_blocking(&self.store, move |s| s.revoke_family(&family))
            .await
            .map_err(|_| unavailable())?;
        let n = tokens.len();
        for (jti, exp) in tokens {
            self.revocations.add(&jti, exp);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_as_string_or_list() {
        assert!(audience_has(&json!({"aud": "rs"}), "rs"));
        assert!(audience_has(&json!({"aud": ["a", "rs"]}), "rs"));
        assert!(!audience_has(&json!({"aud": ["a"]}), "rs"));
        assert!(!audience_has(&json!({}), "rs"));
    }
}
