//! The verified identity of a request: roles, scopes and header values derived once per token.

use crate::config::{Issuer, IssuerId};
use crate::wire::header_value::{encode_header_value, join_encoded, push_encoded, push_list};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;

/// Indices of the fixed parts of a principal's buffer.
const SUBJECT: usize = 0;
const ISSUER: usize = 1;
const CLIENT_ID: usize = 2;
const ROLES: usize = 3;
const SCOPES: usize = 4;
const JTI: usize = 5;
/// `cnf.jkt`: the thumbprint of the key a DPoP-bound token is bound to (RFC 9449 §6.1)
const JKT: usize = 6;
/// a DPoP-bound token's own hash (a proof's `ath`), made once when it is verified
const ATH: usize = 7;
const FIXED: usize = 8;

/// What a verified token grants. Principals live in the verified-token cache, so each is packed into
/// one buffer: a table of part ends, then the encoded identity-header values, the `jti`, and every
/// role and scope. The claims themselves are not kept; routes that need them read them from the
/// token they were sent.
#[derive(Debug)]
pub struct Principal {
    pub issuer: IssuerId,
    pub exp: u64,
    /// `parts` little-endian u32 end offsets (relative to the data after the table), then the data
    buf: Bytes,
    parts: u32,
    roles: u32,
    scopes: u32,
}

/// A claim rendered as header text: strings as they are, arrays comma-joined (a comma inside an
/// element encoded), others as JSON; always a valid header value.
pub fn claim_header_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Some(join_encoded(&items, ','))
        }
        Value::String(s) => Some(
            encode_header_value(s)
                .to_str()
                .unwrap_or_default()
                .to_string(),
        ),
        other => Some(
            encode_header_value(&other.to_string())
                .to_str()
                .unwrap_or_default()
                .to_string(),
        ),
    }
}

/// The strings of a claim that is a space-separated string or an array of strings.
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// `aud` as a list: a string is one audience (never split), an array its strings.
fn strings_exact(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// Reads the claims of a base64url payload segment (already verified by its signature).
pub fn decode_claims(payload: &[u8]) -> Value {
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

impl Principal {
    pub fn new(issuer: &Issuer, claims: &Value, exp: u64) -> Principal {
        Principal::of_token(issuer, claims, exp, None)
    }

    /// A principal of the token `token`: a DPoP-bound one keeps the token's hash, which every
    /// proof sent with it must name.
    pub fn of_token(issuer: &Issuer, claims: &Value, exp: u64, token: Option<&str>) -> Principal {
        let roles = strings(issuer.roles_claim.lookup(claims));
        let scopes = match &issuer.scopes_claim {
            Some(p) => strings(p.lookup(claims)),
            None => match claims.get("scope") {
                Some(v) => strings(Some(v)),
                None => strings(claims.get("scp")),
            },
        };
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
        let audiences = strings_exact(claims.get("aud"));
        let client_id = match text("client_id") {
            "" => text("azp"),
            id => id,
        };
        // The table of ends first, then every part written in place: one buffer, no part copied twice.
        let parts = FIXED + roles.len() + scopes.len() + audiences.len();
        let table = parts * 4;
        let mut buf = Vec::with_capacity(table + 160);
        buf.resize(table, 0);
        let mut ends = Vec::with_capacity(parts);
        let mut end = |buf: &Vec<u8>| ends.push((buf.len() - table) as u32);
        push_encoded(&mut buf, text("sub"), None);
        end(&buf);
        push_encoded(&mut buf, text("iss"), None);
        end(&buf);
        push_encoded(&mut buf, client_id, None);
        end(&buf);
        push_list(&mut buf, roles.iter().copied(), b',');
        end(&buf);
        push_list(&mut buf, scopes.iter().copied(), b' ');
        end(&buf);
        buf.extend_from_slice(text("jti").as_bytes());
        end(&buf);
        let jkt = claims.pointer("/cnf/jkt").and_then(Value::as_str);
        buf.extend_from_slice(jkt.unwrap_or_default().as_bytes());
        end(&buf);
        if let (Some(_), Some(token)) = (jkt, token) {
            buf.extend_from_slice(crate::crypto::sha256_b64url(token).as_bytes());
        }
        end(&buf);
        for raw in roles.iter().chain(&scopes).chain(&audiences) {
            buf.extend_from_slice(raw.as_bytes());
            end(&buf);
        }
        for (slot, e) in buf.chunks_exact_mut(4).zip(&ends) {
            slot.copy_from_slice(&e.to_le_bytes());
        }
        // Principals live in the cache by the hundred thousand: an exact copy keeps no spare
        // capacity (a shrinking realloc may keep the larger block). Shared from the start, so
        // slicing it for headers later only bumps a counter.
        let buf = Bytes::copy_from_slice(&buf);
        drop(buf.clone());
        Principal {
            issuer: issuer.id,
            exp,
            buf,
            parts: parts as u32,
            roles: roles.len() as u32,
            scopes: scopes.len() as u32,
        }
    }

    fn end(&self, i: usize) -> usize {
        self.buf
            .get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0) as usize
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        if i >= self.parts as usize {
            return 0..0;
        }
        let base = self.parts as usize * 4;
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        base + start..base + self.end(i).max(start)
    }

    fn text(&self, i: usize) -> &str {
        std::str::from_utf8(self.buf.get(self.range(i)).unwrap_or_default()).unwrap_or_default()
    }

    fn header(&self, i: usize) -> Option<HeaderValue> {
        let r = self.range(i);
        if r.is_empty() {
            return None;
        }
        HeaderValue::from_maybe_shared(self.buf.slice(r)).ok()
    }

    /// The subject, encoded as it is forwarded (safe for a log line).
    pub fn subject(&self) -> Option<&str> {
        Some(self.text(SUBJECT)).filter(|s| !s.is_empty())
    }

    /// The issuer (`iss`), encoded as it is forwarded.
    pub fn issuer_text(&self) -> &str {
        self.text(ISSUER)
    }

    /// The client the token was issued to (`client_id`, else `azp`), encoded as it is forwarded.
    pub fn client_id(&self) -> &str {
        self.text(CLIENT_ID)
    }

    pub fn jti(&self) -> Option<&str> {
        Some(self.text(JTI)).filter(|s| !s.is_empty())
    }

    /// The key thumbprint a DPoP-bound token is bound to (`cnf.jkt`); none for a bearer token.
    pub fn jkt(&self) -> Option<&str> {
        Some(self.text(JKT)).filter(|s| !s.is_empty())
    }

    /// The hash of the DPoP-bound token this principal was verified from, when it was kept.
    pub fn ath(&self) -> Option<&str> {
        Some(self.text(ATH)).filter(|s| !s.is_empty())
    }

    pub fn subject_header(&self) -> Option<HeaderValue> {
        self.header(SUBJECT)
    }

    pub fn issuer_header(&self) -> Option<HeaderValue> {
        self.header(ISSUER)
    }

    pub fn client_id_header(&self) -> Option<HeaderValue> {
        self.header(CLIENT_ID)
    }

    pub fn roles_header(&self) -> Option<HeaderValue> {
        self.header(ROLES)
    }

    pub fn scopes_header(&self) -> Option<HeaderValue> {
        self.header(SCOPES)
    }

    pub fn roles(&self) -> impl Iterator<Item = &str> {
        (FIXED..FIXED + self.roles as usize).map(|i| self.text(i))
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let start = FIXED + self.roles as usize;
        (start..start + self.scopes as usize).map(|i| self.text(i))
    }

    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        (FIXED + (self.roles + self.scopes) as usize..self.parts as usize).map(|i| self.text(i))
    }

    /// True when the token's `aud` names one of `accepted`.
    pub fn has_audience(&self, accepted: &[String]) -> bool {
        self.audiences().any(|a| accepted.iter().any(|x| x == a))
    }

    /// Bytes this principal holds, for the verified-token cache's weigher.
    pub fn weight(&self) -> usize {
        self.buf.len() + std::mem::size_of::<Principal>()
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles().any(|r| r == role)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{ClaimPath, KeySource};

    pub fn issuer() -> Issuer {
        Issuer {
            id: IssuerId::at(3),
            require_typ: None,
            name: "t".into(),
            issuer: "https://t".into(),
            source: KeySource::Static(vec![]),
            audiences: vec![],
            route_audiences: None,
            algorithms: vec![],
            roles_claim: ClaimPath::new("realm.roles"),
            scopes_claim: None,
            jwks_min_refresh: Default::default(),
            jwks_max_refresh: Default::default(),
            jwks_stale_for: Default::default(),
            jwks_fetch_timeout: Default::default(),
            jwks_max_bytes: 0,
            ca: None,
            tenants: vec![],
        }
    }

    #[test]
    fn packs_and_reads_back() {
        let claims = serde_json::json!({"sub": "zoë\n", "iss": "https://t", "azp": "app",
            "realm": {"roles": ["a", "b,c"]}, "scp": ["read", "write"], "jti": "j1"});
        let p = Principal::new(&issuer(), &claims, 9);
        assert_eq!(p.subject(), Some("zo%C3%AB%0A"));
        assert_eq!(p.client_id_header().unwrap(), "app");
        assert_eq!(p.roles().collect::<Vec<_>>(), ["a", "b,c"]);
        assert!(p.has_role("b,c") && !p.has_role("b"));
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert_eq!(p.scopes_header().unwrap(), "read write");
        // a delimiter inside a value is encoded, so it cannot read as two values
        assert_eq!(p.roles_header().unwrap(), "a,b%2Cc");
        assert_eq!(p.jti(), Some("j1"));
        assert_eq!(p.jkt(), None);
        let bound =
            serde_json::json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}});
        let b = Principal::new(&issuer(), &bound, 9);
        assert_eq!(b.jkt(), Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
        assert_eq!(b.ath(), None, "no token given");
        let b = Principal::of_token(&issuer(), &bound, 9, Some("tok"));
        let ath = crate::crypto::sha256_b64url("tok");
        assert_eq!((b.jkt().is_some(), b.ath()), (true, Some(ath.as_str())));
        let unbound = Principal::of_token(&issuer(), &claims, 9, Some("tok"));
        assert_eq!(unbound.ath(), None, "a bearer token keeps no hash");
        assert_eq!((p.issuer, p.exp), (IssuerId::at(3), 9));
        assert_eq!(p.audiences().count(), 0);
        let spaced = serde_json::json!({"scp": ["read all", "x"], "aud": ["api", "other api"]});
        let p = Principal::new(&issuer(), &spaced, 9);
        assert_eq!(p.scopes_header().unwrap(), "read%20all x");
        assert!(p.has_audience(&["other api".into()]) && !p.has_audience(&["other".into()]));
        let empty = Principal::new(&issuer(), &serde_json::json!({}), 1);
        assert_eq!(empty.subject_header(), None);
        assert_eq!(empty.roles().count(), 0);
    }
}
