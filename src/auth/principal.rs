//! The verified identity of a request: claims plus the roles, scopes and header values derived once.

use crate::config::Issuer;
use crate::headers::encode_header_value;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use serde_json::Value;

#[derive(Debug)]
pub struct Principal {
    pub issuer: usize,
    pub issuer_name: String,
    pub subject: Option<String>,
    pub jti: Option<String>,
    pub exp: u64,
    pub claims: Value,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// Values of the default identity headers, computed once per verified token.
    pub std_headers: StdHeaders,
}

#[derive(Debug, Default)]
pub struct StdHeaders {
    pub subject: Option<HeaderValue>,
    pub issuer: Option<HeaderValue>,
    pub client_id: Option<HeaderValue>,
    pub roles: Option<HeaderValue>,
    pub scopes: Option<HeaderValue>,
    pub claims: Option<HeaderValue>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
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

impl Principal {
    pub fn new(issuer: &Issuer, claims: Value, exp: u64) -> Principal {
        let roles = strings(issuer.roles_claim.lookup(&claims));
        let scopes = match &issuer.scopes_claim {
            Some(p) => strings(p.lookup(&claims)),
            None => match claims.get("scope") {
                Some(v) => strings(Some(v)),
                None => strings(claims.get("scp")),
            },
        };
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
        let subject = text("sub");
        let client_id = text("client_id").or_else(|| text("azp"));
        let enc = |s: &str| Some(encode_header_value(s));
        let std_headers = StdHeaders {
            subject: subject.as_deref().and_then(enc),
            issuer: text("iss").as_deref().and_then(enc),
            client_id: client_id.as_deref().and_then(enc),
            roles: (!roles.is_empty()).then(|| encode_header_value(&roles.join(","))),
            scopes: (!scopes.is_empty()).then(|| encode_header_value(&scopes.join(" "))),
            claims: HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(claims.to_string())).ok(),
        };
        Principal {
            issuer: issuer.index,
            issuer_name: issuer.name.clone(),
            jti: text("jti"),
            subject,
            exp,
            claims,
            roles,
            scopes,
            std_headers,
        }
    }
}
