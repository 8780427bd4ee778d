//! Refusals: why the gateway refuses a request (`Rejection`) and the error answer each becomes; the
//! answers themselves and their one writer live in `answer`.

pub mod answer;
pub mod upstream;

pub use answer::{write, Answer};

use crate::auth::jwt::TokenError;
use crate::config::ProtectedResource;
use crate::observe::DenyReason;
use crate::policy::Denied;
use pingora::http::ResponseHeader;
use std::sync::Arc;

pub const REALM: &str = "gatehouse";
/// Why a body over the route's `max_body_bytes` is refused, before or while it is forwarded.
pub const TOO_LARGE: &str = "the request body is larger than the route accepts";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed(Vec<http::Method>),
    MissingToken,
    /// no token on a route that takes DPoP-bound tokens only: the challenges say both schemes
    MissingDpopToken {
        algs: Arc<str>,
    },
    InvalidToken(TokenError),
    InsufficientScope(Denied),
    KeysUnavailable {
        retry_after: u64,
    },
    /// a write authenticated by the session cookie came from another site
    CrossSiteWrite,
    /// the session store cannot answer, so no session can be checked
    SessionsUnavailable,
    /// the request body is larger than the route's `max_body_bytes`
    TooLarge,
    /// the forward-auth endpoint was asked by an address outside `trusted_proxies`
    UntrustedProxy,
    /// the forward-auth endpoint was asked about a request no route takes
    Unrouted,
    /// a browser request to an MCP route from an origin it does not allow (DNS rebinding)
    ForeignOrigin,
    /// an MCP call the route's `mcp_tools` rules do not allow
    ToolDenied,
    /// one of the route's `allow_if` / `deny_if` rules refused the request
    RuleDenied(crate::rules::RuleRef),
    /// the caller's token may not be exchanged for the upstream's (its `may_act`, or revoked since)
    ExchangeRefused,
    /// the upstream's exchanged token cannot be minted now (store, randomness, signing)
    ExchangeUnavailable,
    /// a DPoP proof refused, a nonce asked for, or a token without its binding (RFC 9449 §7.1);
    /// the DPoP challenge names `algs`
    Dpop {
        refusal: crate::dpop::Refusal,
        algs: Arc<str>,
    },
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::NotFound => 404,
            Rejection::MethodNotAllowed(_) => 405,
            Rejection::MissingToken | Rejection::InvalidToken(_) => 401,
            Rejection::MissingDpopToken { .. } => 401,
            Rejection::InsufficientScope(_) => 403,
            Rejection::KeysUnavailable { .. }
            | Rejection::SessionsUnavailable
            | Rejection::ExchangeUnavailable => 503,
            Rejection::CrossSiteWrite | Rejection::ExchangeRefused => 403,
            Rejection::TooLarge => 413,
            Rejection::UntrustedProxy | Rejection::Unrouted | Rejection::ForeignOrigin => 403,
            Rejection::ToolDenied | Rejection::RuleDenied(_) => 403,
            Rejection::Dpop { refusal, .. } => match refusal {
                crate::dpop::Refusal::Unavailable => 503,
                _ => 401,
            },
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BadRequest(_) => "invalid_request",
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::MissingToken | Rejection::MissingDpopToken { .. } => "unauthorized",
            Rejection::InvalidToken(_) => "invalid_token",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            Rejection::KeysUnavailable { .. }
            | Rejection::SessionsUnavailable
            | Rejection::ExchangeUnavailable => "temporarily_unavailable",
            Rejection::CrossSiteWrite => "cross_site_request",
            Rejection::TooLarge => "request_too_large",
            Rejection::UntrustedProxy => "untrusted_proxy",
            Rejection::Unrouted
            | Rejection::ForeignOrigin
            | Rejection::ToolDenied
            | Rejection::RuleDenied(_)
            | Rejection::ExchangeRefused => "access_denied",
            Rejection::Dpop { refusal, .. } => refusal.code(),
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Rejection::BadRequest(d) => d,
            Rejection::NotFound => "no route matches this request",
            Rejection::MethodNotAllowed(_) => "the route does not accept this method",
            Rejection::MissingToken => "a bearer token is required",
            Rejection::MissingDpopToken { .. } => "a DPoP-bound token and its proof are required",
            Rejection::InvalidToken(e) => e.description(),
            Rejection::InsufficientScope(_) => "the token does not grant access to this route",
            Rejection::KeysUnavailable { .. } => "the issuer's signing keys are not available yet",
            Rejection::CrossSiteWrite => {
                "a change made with the sign-in cookie must come from this site"
            }
            Rejection::SessionsUnavailable => "sign-in sessions cannot be checked right now",
            Rejection::TooLarge => TOO_LARGE,
            Rejection::UntrustedProxy => {
                "the forward-auth endpoint answers only the proxies in [server] trusted_proxies"
            }
            Rejection::Unrouted => "no route takes the request the proxy asked about",
            Rejection::ForeignOrigin => {
                "this origin may not call this MCP server (allowed_origins)"
            }
            Rejection::ToolDenied => "the route's mcp_tools rules do not allow this call",
            Rejection::RuleDenied(_) => "the route's rules do not allow this request",
            Rejection::ExchangeRefused => {
                "the token may not be exchanged for one for this route's upstream"
            }
            Rejection::ExchangeUnavailable => {
                "the token for this route's upstream cannot be issued right now"
            }
            Rejection::Dpop { refusal, .. } => refusal.description(),
        }
    }

    /// The reason the access log and metrics name.
    pub fn reason(&self) -> DenyReason {
        match self {
            Rejection::BadRequest(_) => DenyReason::InvalidRequest,
            Rejection::NotFound => DenyReason::NotFound,
            Rejection::MethodNotAllowed(_) => DenyReason::MethodNotAllowed,
            Rejection::MissingToken | Rejection::MissingDpopToken { .. } => {
                DenyReason::MissingToken
            }
            Rejection::InvalidToken(e) => e.reason(),
            Rejection::InsufficientScope(d) => d.reason,
            Rejection::KeysUnavailable { .. }
            | Rejection::SessionsUnavailable
            | Rejection::ExchangeUnavailable => DenyReason::TemporarilyUnavailable,
            Rejection::CrossSiteWrite => DenyReason::CrossSiteRequest,
            Rejection::TooLarge => DenyReason::RequestTooLarge,
            Rejection::UntrustedProxy => DenyReason::UntrustedProxy,
            Rejection::Unrouted => DenyReason::AccessDenied,
            Rejection::ForeignOrigin => DenyReason::CrossSiteRequest,
            Rejection::ToolDenied | Rejection::ExchangeRefused => DenyReason::AccessDenied,
            Rejection::RuleDenied(_) => DenyReason::Rule,
            Rejection::Dpop { refusal, .. } => match refusal {
                crate::dpop::Refusal::Proof(_) => DenyReason::DpopProof,
                crate::dpop::Refusal::UseNonce(_) => DenyReason::DpopNonce,
                crate::dpop::Refusal::Unavailable => DenyReason::TemporarilyUnavailable,
                crate::dpop::Refusal::Binding(_) => DenyReason::DpopBinding,
            },
        }
    }

    /// RFC 6750 §3 challenge for 401 and 403.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            Rejection::MissingToken | Rejection::MissingDpopToken { .. } => {
                Some(format!("Bearer realm=\"{REALM}\""))
            }
            Rejection::InvalidToken(e) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                e.description()
            )),
            Rejection::InsufficientScope(d) => Some(match &d.scope {
                Some(s) => {
                    format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{s}\"")
                }
                None => format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\""),
            }),
            // a token without its binding is an invalid token whichever scheme it came with
            Rejection::Dpop {
                refusal: crate::dpop::Refusal::Binding(d),
                ..
            } => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{d}\""
            )),
            // a proof's refusal belongs to the DPoP challenge beside this one
            Rejection::Dpop { .. } if self.status() == 401 => {
                Some(format!("Bearer realm=\"{REALM}\""))
            }
            _ => None,
        }
    }

    /// RFC 9449 §7.1: the DPoP challenge beside the Bearer one, naming the algorithms proofs may
    /// use and, for a proof's refusal, why.
    pub fn dpop_challenge(&self) -> Option<String> {
        let (algs, error) = match self {
            Rejection::Dpop { refusal, algs } if self.status() == 401 => (algs, refusal.code()),
            // RFC 6750 §3.1: a request without credentials is told no error, only how
            Rejection::MissingDpopToken { algs } => {
                return Some(format!("DPoP realm=\"{REALM}\", algs=\"{algs}\""))
            }
            _ => return None,
        };
        Some(format!(
            "DPoP realm=\"{REALM}\", algs=\"{algs}\", error=\"{error}\", error_description=\"{}\"",
            self.description()
        ))
    }
}

impl Rejection {
    /// The answer on a protected resource (RFC 9728 §5.1): the challenge also names where the
    /// resource's metadata is and, on a 401, the scopes the route asks for, so a client can find
    /// the authorization server and ask for the right token.
    pub fn answer_for(&self, resource: Option<&ProtectedResource>) -> ErrorAnswer {
        let mut a = self.answer();
        let (Some(p), Some(challenge)) = (resource, self.www_authenticate()) else {
            return a;
        };
        let realm = format!("Bearer realm=\"{REALM}\"");
        let rest = challenge.strip_prefix(&realm).unwrap_or_default();
        let mut extra = format!(", resource_metadata=\"{}\"", p.metadata_url);
        if self.status() == 401 && !p.required.is_empty() {
            extra.push_str(&format!(", scope=\"{}\"", p.required.join(" ")));
        }
        let value = format!("{realm}{extra}{rest}");
        // the Bearer challenge only: a DPoP one beside it stays as it is
        for h in a
            .headers
            .iter_mut()
            .filter(|(k, v)| *k == "www-authenticate" && v.starts_with("Bearer "))
        {
            h.1 = value.clone();
        }
        a
    }
}

impl From<crate::auth::extract::ExtractError> for Rejection {
    fn from(e: crate::auth::extract::ExtractError) -> Self {
        match e {
            crate::auth::extract::ExtractError::BadRequest(m) => Rejection::BadRequest(m),
            crate::auth::extract::ExtractError::Malformed(t) => Rejection::InvalidToken(t),
        }
    }
}

impl From<crate::auth::AuthError> for Rejection {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Token(t) => Rejection::InvalidToken(t),
            crate::auth::AuthError::KeysUnavailable { retry_after } => {
                Rejection::KeysUnavailable { retry_after }
            }
        }
    }
}

impl AsAnswer for Rejection {
    fn answer(&self) -> ErrorAnswer {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        if let Some(w) = self.www_authenticate() {
            headers.push(("www-authenticate", w));
        }
        if let Some(d) = self.dpop_challenge() {
            headers.push(("www-authenticate", d));
        }
        if let Rejection::Dpop { refusal, .. } = self {
            if let Some(n) = refusal.nonce() {
                headers.push(("dpop-nonce", n.to_string()));
            }
            if *refusal == crate::dpop::Refusal::Unavailable {
                headers.push(("retry-after", "1".to_string()));
            }
        }
        if let Rejection::KeysUnavailable { retry_after } = self {
            headers.push(("retry-after", retry_after.to_string()));
        }
        if let Rejection::SessionsUnavailable = self {
            headers.push(("retry-after", "1".to_string()));
        }
        if let Rejection::MethodNotAllowed(ms) = self {
            let list: Vec<&str> = ms.iter().map(|m| m.as_str()).collect();
            headers.push(("allow", list.join(", ")));
        }
        ErrorAnswer {
            status: self.status(),
            code: self.code(),
            description: self.description(),
            headers,
        }
    }
}

/// Every error answer the gateway gives itself, whoever decided it: status, RFC error code,
/// description and headers, with the JSON body `{"error", "error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    pub status: u16,
    pub code: &'static str,
    pub description: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

/// The answer when the gateway itself failed at something that should not fail.
pub fn internal_error() -> ErrorAnswer {
    ErrorAnswer {
        status: 500,
        code: "internal_error",
        description: "the gateway could not handle the request",
        headers: vec![],
    }
}

/// Something the gateway refuses with: a proxy rejection, an OAuth error, an upstream failure.
pub trait AsAnswer {
    fn answer(&self) -> ErrorAnswer;
}

impl ErrorAnswer {
    pub fn body(&self) -> String {
        serde_json::json!({"error": self.code, "error_description": self.description}).to_string()
    }

    /// The response header for `body_len` bytes of this answer's body.
    pub fn response_header(&self, body_len: usize) -> pingora::Result<ResponseHeader> {
        let mut r = ResponseHeader::build(self.status, Some(3 + self.headers.len()))?;
        r.insert_header("content-type", "application/json")?;
        r.insert_header("content-length", body_len.to_string())?;
        r.insert_header("cache-control", "no-store")?;
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("www-authenticate") {
                r.append_header(*k, v.as_str())?;
            } else {
                r.insert_header(*k, v.as_str())?;
            }
        }
        Ok(r)
    }

    /// The answer as gRPC clients read it: HTTP 200 and a trailers-only response (one header block
    /// that ends the stream) with `grpc-status` and `grpc-message`, the other headers
    /// (`WWW-Authenticate`, `Retry-After`, `Allow`) kept.
    pub fn grpc_header(&self) -> pingora::Result<ResponseHeader> {
        let mut r = ResponseHeader::build(200, Some(3 + self.headers.len()))?;
        r.insert_header("content-type", "application/grpc")?;
        r.insert_header(
            "grpc-status",
            crate::wire::grpc::status(self.status).to_string(),
        )?;
        r.insert_header("grpc-message", crate::wire::grpc::message(self.description))?;
        for (k, v) in &self.headers {
            // several challenges (Bearer and DPoP) are several headers
            if k.eq_ignore_ascii_case("www-authenticate") {
                r.append_header(k.to_string(), v.as_str())?;
            } else {
                r.insert_header(k.to_string(), v.as_str())?;
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_status_code_and_headers() {
        let missing = Rejection::MissingToken.answer();
        assert_eq!((missing.status, missing.code), (401, "unauthorized"));
        assert_eq!(
            missing.headers,
            [("www-authenticate", "Bearer realm=\"gatehouse\"".to_string())]
        );
        let keys = Rejection::KeysUnavailable { retry_after: 7 }.answer();
        assert_eq!(keys.status, 503);
        assert!(keys.headers.contains(&("retry-after", "7".to_string())));
        let methods = Rejection::MethodNotAllowed(vec![http::Method::GET, http::Method::POST]);
        let a = methods.answer();
        assert_eq!(a.status, 405);
        assert!(a.headers.contains(&("allow", "GET, POST".to_string())));
        let p = ProtectedResource {
            resource: "https://gw.test/mcp".into(),
            metadata_path: "/.well-known/oauth-protected-resource/mcp".into(),
            metadata_url: "https://gw.test/.well-known/oauth-protected-resource/mcp".into(),
            authorization_servers: vec![],
            name: "mcp".into(),
            scopes: vec![],
            required: vec!["mcp:read".into(), "mcp:write".into()],
            bearer_methods: vec![],
        };
        let on_resource = Rejection::MissingToken.answer_for(Some(&p));
        assert_eq!(
            on_resource.headers,
            [(
                "www-authenticate",
                "Bearer realm=\"gatehouse\", resource_metadata=\"https://gw.test/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read mcp:write\"".to_string()
            )]
        );
        let short = Rejection::InsufficientScope(crate::policy::Denied {
            reason: DenyReason::ScopesAll,
            scope: Some("tools:delete".into()),
        });
        let a = short.answer_for(Some(&p));
        assert_eq!(
            a.headers[0].1,
            "Bearer realm=\"gatehouse\", resource_metadata=\"https://gw.test/.well-known/oauth-protected-resource/mcp\", error=\"insufficient_scope\", scope=\"tools:delete\""
        );
        assert_eq!(
            Rejection::NotFound.answer_for(Some(&p)),
            Rejection::NotFound.answer()
        );
        // the body is JSON with the code and a description, never more
        let body: serde_json::Value = serde_json::from_str(&missing.body()).unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn a_dpop_refusal_has_both_challenges_and_a_nonce_when_one_is_needed() {
        use crate::dpop::Refusal;
        let algs: Arc<str> = "ES256 EdDSA".into();
        let proof = Rejection::Dpop {
            refusal: Refusal::Proof("the DPoP proof was used before"),
            algs: algs.clone(),
        };
        let a = proof.answer();
        assert_eq!((a.status, a.code), (401, "invalid_dpop_proof"));
        let challenges: Vec<&str> = a
            .headers
            .iter()
            .filter(|(k, _)| *k == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            challenges,
            [
                "Bearer realm=\"gatehouse\"",
                "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof was used before\""
            ]
        );
        let nonce = Rejection::Dpop {
            refusal: Refusal::UseNonce("n0".into()),
            algs: algs.clone(),
        };
        let a = nonce.answer();
        assert_eq!((a.status, a.code), (401, "use_dpop_nonce"));
        assert!(a.headers.contains(&("dpop-nonce", "n0".to_string())));
        let bearer = Rejection::Dpop {
            refusal: Refusal::Binding("bound"),
            algs: algs.clone(),
        };
        let a = bearer.answer();
        assert_eq!((a.status, a.code), (401, "invalid_token"));
        assert!(a.headers[0].1.contains("error=\"invalid_token\""));
        assert!(a.headers[1]
            .1
            .starts_with("DPoP realm=\"gatehouse\", algs="));
        let down = Rejection::Dpop {
            refusal: Refusal::Unavailable,
            algs,
        };
        let a = down.answer();
        assert_eq!(a.status, 503);
        assert!(a.headers.contains(&("retry-after", "1".to_string())));
        // on a protected resource, only the Bearer challenge gains the metadata address
        let r = ProtectedResource {
            resource: "https://gw.test/mcp".into(),
            metadata_path: "/.well-known/oauth-protected-resource/mcp".into(),
            metadata_url: "https://gw.test/.well-known/oauth-protected-resource/mcp".into(),
            authorization_servers: vec![],
            name: "mcp".into(),
            scopes: vec![],
            required: vec![],
            bearer_methods: vec![],
        };
        let a = proof.answer_for(Some(&r));
        assert!(a.headers[0].1.contains("resource_metadata="));
        assert!(a.headers[1].1.starts_with("DPoP realm="));
        let missing = Rejection::MissingDpopToken {
            algs: "ES256".into(),
        }
        .answer();
        assert_eq!((missing.status, missing.code), (401, "unauthorized"));
        assert_eq!(
            missing.headers[1].1,
            "DPoP realm=\"gatehouse\", algs=\"ES256\""
        );
        // both reach the wire as two headers
        let h = a.response_header(0).unwrap();
        assert_eq!(h.headers.get_all("www-authenticate").iter().count(), 2);
    }
}
