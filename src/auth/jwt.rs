//! JWT parsing and checking: the header and claims are read here, the signature checked with a pinned key.

use crate::config::Issuer;
use crate::crypto::verify_keys::{kid_is_sane, VerifyKey};
use crate::observe::DenyReason;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

/// Why a token was refused. The text is safe to show a client: it never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    UntrustedIssuer,
    Algorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    MissingExp,
    IssuedInFuture,
    Audience,
    Critical,
    Type,
    Revoked,
}

impl TokenError {
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::Malformed(m) => m,
            TokenError::UntrustedIssuer => "the token's issuer is not trusted on this route",
            TokenError::Algorithm => "the token's algorithm is not allowed",
            TokenError::UnknownKey => "the token was signed by an unknown key",
            TokenError::BadSignature => "the token's signature is invalid",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet",
            TokenError::MissingExp => "the token has no exp claim",
            TokenError::IssuedInFuture => "the token was issued in the future",
            TokenError::Audience => "the token is not meant for this audience",
            TokenError::Critical => {
                "the token has critical header parameters the gateway does not understand"
            }
            TokenError::Type => "the token is not an access token",
            TokenError::Revoked => "the token has been revoked",
        }
    }

    /// A short stable reason for logs and metrics.
    pub fn reason(&self) -> DenyReason {
        match self {
            TokenError::Malformed(_) => DenyReason::Malformed,
            TokenError::UntrustedIssuer => DenyReason::UntrustedIssuer,
            TokenError::Algorithm => DenyReason::Algorithm,
            TokenError::UnknownKey => DenyReason::UnknownKey,
            TokenError::BadSignature => DenyReason::BadSignature,
            TokenError::Expired => DenyReason::Expired,
            TokenError::NotYetValid => DenyReason::NotYetValid,
            TokenError::MissingExp => DenyReason::MissingExp,
            TokenError::IssuedInFuture => DenyReason::IssuedInFuture,
            TokenError::Audience => DenyReason::Audience,
            TokenError::Critical => DenyReason::Critical,
            TokenError::Type => DenyReason::Type,
            TokenError::Revoked => DenyReason::Revoked,
        }
    }
}

#[derive(Debug, Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A token split and decoded but not yet trusted.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `header.payload`, the signed bytes
    pub message: &'a str,
    /// the base64url payload segment
    pub payload: &'a str,
    pub signature: &'a str,
    pub claims: Value,
}

fn b64_json<T: for<'de> Deserialize<'de>>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

/// Splits a compact JWS and reads its header and claims; no key is consulted here.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "the token is not a JWS of three parts",
        ));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(TokenError::Malformed("the token has an empty part"));
    }
    let header: JoseHeader = b64_json(h, "the token header is not base64url JSON")?;
    if header.crit.is_some() {
        return Err(TokenError::Critical);
    }
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::Algorithm);
    }
    let alg: Algorithm = header.alg.parse().map_err(|_| TokenError::Algorithm)?;
    if let Some(kid) = &header.kid {
        if !kid_is_sane(kid) {
            return Err(TokenError::Malformed("the token's kid is not acceptable"));
        }
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| TokenError::Malformed("the token payload is not base64url JSON"))?;
    let claims = super::strict_json::from_slice(&payload)
        .map_err(|_| TokenError::Malformed("the token payload is not JSON, or repeats a member"))?;
    if !claims.is_object() {
        return Err(TokenError::Malformed(
            "the token payload is not a JSON object",
        ));
    }
    Ok(Parsed {
        alg,
        kid: header.kid,
        typ: header.typ,
        message: &token[..h.len() + 1 + p.len()],
        payload: p,
        signature: s,
        claims,
    })
}

impl Parsed<'_> {
    pub fn iss(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// Checks the signature with the keys that match the kid (when given) and the algorithm.
    pub fn verify_signature(&self, keys: &[std::sync::Arc<VerifyKey>]) -> Result<(), TokenError> {
        let candidates = keys.iter().filter(|key| {
            key.allows(self.alg)
                && match (&self.kid, &key.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        let mut sig = None;
        let mut tried = false;
        for key in candidates {
            tried = true;
            if sig.is_none() {
                sig =
                    Some(URL_SAFE_NO_PAD.decode(self.signature).map_err(|_| {
                        TokenError::Malformed("the token signature is not base64url")
                    })?);
            }
            if key.verify(
                self.alg,
                self.message.as_bytes(),
                sig.as_deref().unwrap_or_default(),
            ) {
                return Ok(());
            }
        }
        if tried {
            Err(TokenError::BadSignature)
        } else {
            Err(TokenError::UnknownKey)
        }
    }

    /// Checks `exp` (required), `nbf`, `iat`, `iss` and `aud` against the issuer at time `now`.
    pub fn validate_claims(
        &self,
        issuer: &Issuer,
        now: u64,
        leeway: u64,
    ) -> Result<u64, TokenError> {
        let num = |name: &str| -> Result<Option<u64>, TokenError> {
            match self.claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or(TokenError::Malformed("a time claim is not a number")),
                Some(_) => Err(TokenError::Malformed("a time claim is not a number")),
            }
        };
        let exp = num("exp")?.ok_or(TokenError::MissingExp)?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = num("nbf")? {
            if now.saturating_add(leeway) < nbf {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(iat) = num("iat")? {
            if now.saturating_add(leeway) < iat {
                return Err(TokenError::IssuedInFuture);
            }
        }
        let iss = self.iss().unwrap_or_default();
        if !issuer.accepts_iss(iss) {
            return Err(TokenError::UntrustedIssuer);
        }
        // A tenant's token names its tenant in `tid` too (Microsoft's guidance for multi-tenant apps).
        if let Some(tenant) = issuer.tenant_of(iss) {
            if self.claims.get("tid").and_then(Value::as_str) != Some(tenant) {
                return Err(TokenError::UntrustedIssuer);
            }
        }
        let aud_ok = match self.claims.get("aud") {
            Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| issuer.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::Audience);
        }
        Ok(exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::tests::issuer;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    const HS: &str = r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#;

    #[test]
    fn parse_reads_the_header_and_refuses_what_it_must() {
        let t = token(HS, r#"{"iss":"https://t","exp":10}"#);
        let p = parse(&t).unwrap();
        assert_eq!((p.alg, p.kid.as_deref()), (Algorithm::HS256, Some("k1")));
        assert_eq!(p.iss(), Some("https://t"));
        assert!(matches!(parse("a.b"), Err(TokenError::Malformed(_))));
        assert!(matches!(parse("a.b.c.d"), Err(TokenError::Malformed(_))));
        assert!(matches!(parse(".b.c"), Err(TokenError::Malformed(_))));
        let none = token(r#"{"alg":"none"}"#, "{}");
        assert_eq!(parse(&none).unwrap_err(), TokenError::Algorithm);
        let crit = token(r#"{"alg":"HS256","crit":["exp"]}"#, "{}");
        assert_eq!(parse(&crit).unwrap_err(), TokenError::Critical);
        let kid = token(r#"{"alg":"HS256","kid":"a b"}"#, "{}");
        assert!(matches!(parse(&kid), Err(TokenError::Malformed(_))));
        assert!(matches!(
            parse(&token(HS, "[1]")),
            Err(TokenError::Malformed(_))
        ));
        let twice = token(r#"{"alg":"HS256","alg":"none"}"#, "{}");
        assert!(matches!(parse(&twice), Err(TokenError::Malformed(_))));
    }

    fn check(payload: &str, now: u64) -> Result<u64, TokenError> {
        let mut iss = issuer();
        iss.issuer = "https://t".into();
        iss.audiences = vec!["api".into()];
        parse(&token(HS, payload))?.validate_claims(&iss, now, 30)
    }

    #[test]
    fn claims_are_checked_with_leeway_and_saturating_time() {
        let ok = r#"{"iss":"https://t","aud":"api","exp":100}"#;
        assert_eq!(check(ok, 100), Ok(100));
        assert_eq!(check(ok, 130), Ok(100), "within the leeway");
        assert_eq!(check(ok, 131), Err(TokenError::Expired));
        assert_eq!(
            check(r#"{"iss":"https://t","aud":"api"}"#, 1),
            Err(TokenError::MissingExp)
        );
        let far = r#"{"iss":"https://t","aud":["x","api"],"exp":18446744073709551615,"nbf":0}"#;
        assert_eq!(check(far, u64::MAX), Ok(u64::MAX));
        let nbf = r#"{"iss":"https://t","aud":"api","exp":1000,"nbf":500}"#;
        assert_eq!(check(nbf, 400), Err(TokenError::NotYetValid));
        let iat = r#"{"iss":"https://t","aud":"api","exp":1000,"iat":500}"#;
        assert_eq!(check(iat, 400), Err(TokenError::IssuedInFuture));
        let aud = r#"{"iss":"https://t","aud":"other","exp":1000}"#;
        assert_eq!(check(aud, 1), Err(TokenError::Audience));
        let iss = r#"{"iss":"https://u","aud":"api","exp":1000}"#;
        assert_eq!(check(iss, 1), Err(TokenError::UntrustedIssuer));
        let text = r#"{"iss":"https://t","aud":"api","exp":"soon"}"#;
        assert!(matches!(check(text, 1), Err(TokenError::Malformed(_))));
    }
}
