//! Why the gateway refused a request: a small fixed set, named in the access log and counted in metrics.

/// The reason a refusal is logged and counted under. The set is closed, so metrics count it in a
/// fixed array indexed by the reason, with no lock and no allocation on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyReason {
    // the token could not be trusted (`TokenError`)
    Malformed,
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
    // the route's policy was not met (`Denied`)
    RolesAny,
    RolesAll,
    ScopesAny,
    ScopesAll,
    Claims,
    // the other refusals, named as their RFC error code
    MissingToken,
    InvalidRequest,
    NotFound,
    MethodNotAllowed,
    TemporarilyUnavailable,
    CrossSiteRequest,
    RequestTooLarge,
    UntrustedProxy,
    AccessDenied,
    // DPoP (RFC 9449): a proof refused, a nonce asked for, a token sent without its binding
    DpopProof,
    DpopNonce,
    DpopBinding,
    // one of the route's `allow_if` / `deny_if` rules refused (which one: `RuleRef`)
    Rule,
}

impl DenyReason {
    /// How many reasons there are: the length of a counter array indexed by `index`.
    pub const COUNT: usize = DenyReason::ALL.len();

    /// Every reason, in declaration order (`ALL[r.index()] == r`).
    pub const ALL: [DenyReason; 31] = [
        DenyReason::Malformed,
        DenyReason::UntrustedIssuer,
        DenyReason::Algorithm,
        DenyReason::UnknownKey,
        DenyReason::BadSignature,
        DenyReason::Expired,
        DenyReason::NotYetValid,
        DenyReason::MissingExp,
        DenyReason::IssuedInFuture,
        DenyReason::Audience,
        DenyReason::Critical,
        DenyReason::Type,
        DenyReason::Revoked,
        DenyReason::RolesAny,
        DenyReason::RolesAll,
        DenyReason::ScopesAny,
        DenyReason::ScopesAll,
        DenyReason::Claims,
        DenyReason::MissingToken,
        DenyReason::InvalidRequest,
        DenyReason::NotFound,
        DenyReason::MethodNotAllowed,
        DenyReason::TemporarilyUnavailable,
        DenyReason::CrossSiteRequest,
        DenyReason::RequestTooLarge,
        DenyReason::UntrustedProxy,
        DenyReason::AccessDenied,
        DenyReason::DpopProof,
        DenyReason::DpopNonce,
        DenyReason::DpopBinding,
        DenyReason::Rule,
    ];

    /// The slot of this reason in a counter array of `COUNT` entries.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The text the access log writes and the metrics label carries; stable, as dashboards read it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::Malformed => "malformed",
            DenyReason::UntrustedIssuer => "untrusted_issuer",
            DenyReason::Algorithm => "algorithm",
            DenyReason::UnknownKey => "unknown_key",
            DenyReason::BadSignature => "bad_signature",
            DenyReason::Expired => "expired",
            DenyReason::NotYetValid => "not_yet_valid",
            DenyReason::MissingExp => "missing_exp",
            DenyReason::IssuedInFuture => "issued_in_future",
            DenyReason::Audience => "audience",
            DenyReason::Critical => "crit",
            DenyReason::Type => "typ",
            DenyReason::Revoked => "revoked",
            DenyReason::RolesAny => "roles_any",
            DenyReason::RolesAll => "roles_all",
            DenyReason::ScopesAny => "scopes_any",
            DenyReason::ScopesAll => "scopes_all",
            DenyReason::Claims => "claims",
            DenyReason::MissingToken => "missing_token",
            DenyReason::InvalidRequest => "invalid_request",
            DenyReason::NotFound => "not_found",
            DenyReason::MethodNotAllowed => "method_not_allowed",
            DenyReason::TemporarilyUnavailable => "temporarily_unavailable",
            DenyReason::CrossSiteRequest => "cross_site_request",
            DenyReason::RequestTooLarge => "request_too_large",
            DenyReason::UntrustedProxy => "untrusted_proxy",
            DenyReason::AccessDenied => "access_denied",
            DenyReason::DpopProof => "invalid_dpop_proof",
            DenyReason::DpopNonce => "use_dpop_nonce",
            DenyReason::DpopBinding => "dpop_binding",
            DenyReason::Rule => "rule",
        }
    }
}

// A reason added to the enum but not to `ALL` would be counted out of bounds: refuse to build.
const _: () = assert!(DenyReason::Rule.index() + 1 == DenyReason::COUNT);

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_reason_has_its_slot_and_a_distinct_string() {
        for (i, r) in DenyReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?} is out of place in ALL");
        }
        let strings: HashSet<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(strings.len(), DenyReason::COUNT);
        assert!(strings
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn the_strings_are_the_ones_logs_and_dashboards_read() {
        // The access log and `gatehouse_denials_total{reason=...}` have always said these.
        let expected = [
            "malformed",
            "untrusted_issuer",
            "algorithm",
            "unknown_key",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "missing_exp",
            "issued_in_future",
            "audience",
            "crit",
            "typ",
            "revoked",
            "roles_any",
            "roles_all",
            "scopes_any",
            "scopes_all",
            "claims",
            "missing_token",
            "invalid_request",
            "not_found",
            "method_not_allowed",
            "temporarily_unavailable",
            "cross_site_request",
            "request_too_large",
            "untrusted_proxy",
            "access_denied",
            "invalid_dpop_proof",
            "use_dpop_nonce",
            "dpop_binding",
            "rule",
        ];
        let got: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(got, expected);
        assert_eq!(DenyReason::Critical.to_string(), "crit");
    }

    #[test]
    fn rejections_keep_the_reasons_they_were_logged_under() {
        use crate::auth::jwt::TokenError;
        use crate::respond::Rejection;
        let cases = [
            (Rejection::BadRequest("x"), "invalid_request"),
            (Rejection::NotFound, "not_found"),
            (Rejection::MethodNotAllowed(vec![]), "method_not_allowed"),
            (Rejection::MissingToken, "missing_token"),
            (Rejection::InvalidToken(TokenError::Expired), "expired"),
            (
                Rejection::InvalidToken(TokenError::Malformed("x")),
                "malformed",
            ),
            (
                Rejection::KeysUnavailable { retry_after: 1 },
                "temporarily_unavailable",
            ),
            (Rejection::SessionsUnavailable, "temporarily_unavailable"),
            (Rejection::CrossSiteWrite, "cross_site_request"),
            (Rejection::TooLarge, "request_too_large"),
            (Rejection::UntrustedProxy, "untrusted_proxy"),
            (Rejection::Unrouted, "access_denied"),
        ];
        for (rejection, reason) in cases {
            assert_eq!(rejection.reason().as_str(), reason, "{rejection:?}");
        }
    }
}
