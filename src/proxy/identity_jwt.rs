//! `X-Auth-Jwt`: a short-lived JWT of the verified identity, signed with the gateway's own key and
//! addressed to the route, so an upstream can check that a request came through the gateway.

use crate::auth::identity::Identity;
use crate::clock::SharedClock;
use crate::config::RouteId;
use crate::token::keys::SigningKey;
use http::HeaderValue;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long an identity JWT is valid: long enough for one request's way through the upstream.
const LIFETIME: u64 = 60;
/// A signed JWT is reused for the same token and route this long, so signing is not per request.
const REUSE: Duration = Duration::from_secs(30);

pub struct IdentitySigner {
    key: Arc<SigningKey>,
    issuer: String,
    clock: SharedClock,
    /// (the presented token's cache key, route) -> the header
    made: moka::sync::Cache<(u128, RouteId), HeaderValue>,
}

impl IdentitySigner {
    pub fn new(key: Arc<SigningKey>, issuer: String, clock: SharedClock) -> Self {
        IdentitySigner {
            key,
            issuer,
            clock,
            made: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REUSE)
                .build(),
        }
    }

    /// The header for `id` on the route named `audience`; `token_key` identifies the presented
    /// token. `None` when it cannot be signed (logged).
    pub fn header(
        &self,
        id: &Identity,
        token_key: u128,
        route: RouteId,
        audience: &str,
    ) -> Option<HeaderValue> {
        if let Some(h) = self.made.get(&(token_key, route)) {
            return Some(h);
        }
        let p = &id.principal;
        let now = self.clock.now_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now.saturating_add(LIFETIME).min(p.exp),
        });
        let text = |v: Option<HeaderValue>| v.and_then(|h| h.to_str().ok().map(str::to_string));
        if let Some(o) = claims.as_object_mut() {
            for (k, v) in [
                ("sub", text(p.subject_header())),
                ("client_id", text(p.client_id_header())),
                ("idp", text(p.issuer_header())),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), Value::String(v));
                }
            }
            let roles: Vec<&str> = p.roles().collect();
            if !roles.is_empty() {
                o.insert("roles".into(), json!(roles));
            }
            let scopes: Vec<&str> = p.scopes().collect();
            if !scopes.is_empty() {
                o.insert("scope".into(), json!(scopes.join(" ")));
            }
        }
        let mut header = jsonwebtoken::Header::new(self.key.alg);
        header.kid = Some(self.key.kid.clone());
        let jwt = match self.key.sign(&header, &claims) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an identity JWT");
                return None;
            }
        };
        let h = HeaderValue::from_str(&jwt).ok()?;
        self.made.insert((token_key, route), h.clone());
        Some(h)
    }
}
