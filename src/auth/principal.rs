//! The verified identity of a request: roles, scopes and header values derived once per token.

use crate::config::Issuer;
use crate::headers::encode_header_value;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use serde_json::Value;
use std::sync::OnceLock;

/// What a verified token grants. Kept in the verified-token cache, so it is built to be small: the claims
/// themselves are kept only when some route looks claims up, and re-read from the payload otherwise.
#[derive(Debug)]
pub struct Principal {
    pub issuer: usize,
    pub subject: Option<Box<str>>,
    pub jti: Option<Box<str>>,
    pub exp: u64,
    pub roles: Box<[Box<str>]>,
    pub scopes: Box<[Box<str>]>,
    /// the payload segment as signed: base64url JSON, forwarded as X-Auth-Claims
    pub payload: HeaderValue,
    claims: OnceLock<Value>,
    pub std_headers: StdHeaders,
}

/// Values of the default identity headers, encoded once per verified token.
#[derive(Debug, Default)]
pub struct StdHeaders {
    pub subject: Option<HeaderValue>,
    pub issuer: Option<HeaderValue>,
    pub client_id: Option<HeaderValue>,
    pub roles: Option<HeaderValue>,
    pub scopes: Option<HeaderValue>,
}

fn strings(v: Option<&Value>) -> Box<[Box<str>]> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(Box::from).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(Box::from)).collect(),
        _ => Box::new([]),
    }
}

/// A claim rendered for a header: strings as they are, arrays comma-joined, others as JSON.
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

fn join(items: &[Box<str>], sep: &str) -> Option<HeaderValue> {
    (!items.is_empty()).then(|| encode_header_value(&items.join(sep)))
}

impl Principal {
    /// `payload` is the token's base64url payload segment; `keep_claims` keeps the parsed claims for
    /// routes that look claims up.
    pub fn new(
        issuer: &Issuer,
        claims: Value,
        payload: &str,
        exp: u64,
        keep_claims: bool,
    ) -> Principal {
        let roles = strings(issuer.roles_claim.lookup(&claims));
        let scopes = match &issuer.scopes_claim {
            Some(p) => strings(p.lookup(&claims)),
            None => match claims.get("scope") {
                Some(v) => strings(Some(v)),
                None => strings(claims.get("scp")),
            },
        };
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        let enc = |s: &str| encode_header_value(s);
        let std_headers = StdHeaders {
            subject: text("sub").map(enc),
            issuer: text("iss").map(enc),
            client_id: text("client_id").or_else(|| text("azp")).map(enc),
            roles: join(&roles, ","),
            scopes: join(&scopes, " "),
        };
        let kept = OnceLock::new();
        let subject = text("sub").map(Box::from);
        let jti = text("jti").map(Box::from);
        if keep_claims {
            let _ = kept.set(claims);
        }
        Principal {
            issuer: issuer.index,
            subject,
            jti,
            exp,
            roles,
            scopes,
            payload: HeaderValue::from_str(payload)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            claims: kept,
            std_headers,
        }
    }

    /// The verified claims; parsed again from the payload when they were not kept.
    pub fn claims(&self) -> &Value {
        self.claims.get_or_init(|| {
            URL_SAFE_NO_PAD
                .decode(self.payload.as_bytes())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null)
        })
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }
}
