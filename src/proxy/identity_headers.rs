//! Identity headers: removing every client-sent copy and setting safe values from the verified principal.

use crate::auth::identity::Identity;
use crate::auth::principal::claim_header_text;
use crate::config::{ClaimHeader, ClaimSource};
use crate::wire::header_value::same_folded;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

/// Headers legacy frameworks honour to rewrite the path or method after the gateway decided.
pub const OVERRIDE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// True for a header the gateway owns: `x-auth-*`, a configured claim header, or (when asked) an
/// override header, spelled with `-` or `_`.
pub fn is_identity_header(name: &str, claim_names: &[HeaderName], strip_overrides: bool) -> bool {
    name.get(..7).is_some_and(|p| same_folded(p, "x-auth-"))
        || claim_names.iter().any(|c| same_folded(name, c.as_str()))
        || (strip_overrides && OVERRIDE_HEADERS.iter().any(|o| same_folded(name, o)))
}

/// Removes every `X-Auth-*` header, every configured claim header and, when asked, the override
/// headers, whatever mix of `-` and `_` spells them.
pub fn strip_identity_headers(
    req: &mut RequestHeader,
    claim_names: &[HeaderName],
    strip_overrides: bool,
) {
    let doomed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| is_identity_header(n.as_str(), claim_names, strip_overrides))
        .cloned()
        .collect();
    for name in doomed {
        // remove_header drops every value of a repeated header
        while req.remove_header(&name).is_some() {}
    }
}

/// The value of one identity header for this identity; `None` when its claim is absent.
pub fn value_for(h: &ClaimHeader, id: &Identity) -> Option<HeaderValue> {
    let p = &id.principal;
    match &h.source {
        ClaimSource::Subject => p.subject_header(),
        ClaimSource::Issuer => p.issuer_header(),
        ClaimSource::ClientId => p.client_id_header(),
        ClaimSource::Roles => p.roles_header(),
        ClaimSource::Scopes => p.scopes_header(),
        ClaimSource::AllClaims => Some(id.payload.clone()),
        ClaimSource::Claim(path) => id
            .claims
            .as_ref()
            .and_then(|c| path.lookup(c))
            .and_then(claim_header_text)
            .and_then(|t| HeaderValue::from_str(&t).ok()),
    }
}

/// Sets the route's identity headers from the identity; absent claims send no header.
pub fn set_claim_headers(
    req: &mut RequestHeader,
    headers: &[ClaimHeader],
    id: &Identity,
) -> pingora::Result<()> {
    for h in headers {
        if let Some(v) = value_for(h, id) {
            req.insert_header(h.wire.clone(), v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_spoofed_headers() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Auth-Subject", "evil").unwrap();
        req.append_header("x-auth-subject", "evil2").unwrap();
        req.append_header("X-Email", "e").unwrap();
        req.append_header("X-Original-URL", "/admin").unwrap();
        req.append_header("Accept", "*/*").unwrap();
        strip_identity_headers(&mut req, &[HeaderName::from_static("x-email")], true);
        assert!(req.headers.get("x-auth-subject").is_none());
        assert!(req.headers.get("x-email").is_none());
        assert!(req.headers.get("x-original-url").is_none());
        assert!(req.headers.get("accept").is_some());
    }

    #[test]
    fn underscore_spellings_are_stripped_too() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for h in [
            "X_Auth_Subject",
            "X-Auth_Roles",
            "X_AUTH_CLAIMS",
            "x_email",
            "X_Original_URL",
        ] {
            req.append_header(h, "spoofed").unwrap();
        }
        req.append_header("X_Other", "kept").unwrap();
        strip_identity_headers(&mut req, &[HeaderName::from_static("x-email")], true);
        let left: Vec<_> = req.headers.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(left, ["x_other"]);
        assert!(is_identity_header("x_auth-", &[], false));
        assert!(!is_identity_header("x-authz", &[], false));
    }
}
