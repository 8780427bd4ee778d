//! Introspection (RFC 7662) and revocation (RFC 7009), and revoking a refresh family everywhere.

use super::{oauth, sha256_hex, unavailable, OAuthError, TokenService};
use crate::config::Client;
use crate::store::run_blocking;
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
                "invalid_client",
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
        let mut out = json!({"active": true, "token_type": "Bearer"});
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
        ] {
            if let Some(v) = c.get(k) {
                out[k] = v.clone();
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
                        "unauthorized_client",
                        "the token was issued to another client",
                    ));
                }
                self.revoke_family(r.family).await?;
            }
            return Ok(json!({}));
        };
        if c.get("client_id").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(oauth(
                400,
                "unauthorized_client",
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
        Ok(json!({}))
    }

    /// Revokes a refresh family and every access token issued from it, in the store and in the
    /// proxy's denylist, so reuse detection takes effect at the edge at once.
    pub(super) async fn revoke_family(&self, family: String) -> Result<(), OAuthError> {
        let tokens = run_blocking(&self.store, move |s| s.revoke_family(&family))
            .await
            .map_err(|_| unavailable())?;
        for (jti, exp) in tokens {
            self.revocations.add(&jti, exp);
        }
        Ok(())
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
