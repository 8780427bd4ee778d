//! DPoP at the edge (RFC 9449 §7): a DPoP-bound token passes only with a proof for this method and
//! URL, made by the key the token is bound to. A bound token sent as a bearer token, a bearer token
//! sent as DPoP, and a bearer token on a route that takes DPoP only are refused.

use crate::auth::extract::Presented;
use crate::auth::principal::Principal;
use crate::config::{DpopMode, Route};
use crate::dpop::{Dpop, Presentation};
use crate::respond::Rejection;
use pingora::http::RequestHeader;

/// How a request reached the gateway, for the URL its proof must name.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// `X-Forwarded-Proto` is believed: the peer is a trusted proxy
    pub forwarded: bool,
    /// the scheme when no believed header says: `https` over TLS, `http` on a plain listener, and
    /// `[server] public_url`'s for a forward-auth question
    pub scheme: &'a str,
    /// the request's normalised path, without query
    pub path: &'a str,
}

/// Judges the token's binding and, for a DPoP token, its proof. `principal` is the verified
/// (perhaps cached) token: only the proof is checked on every request.
pub async fn judge_binding(
    req: &RequestHeader,
    route: &Route,
    presented: &Presented<'_>,
    principal: &Principal,
    dpop: &Dpop,
    at: &Arrival<'_>,
) -> Result<(), Rejection> {
    let p = Presentation {
        headers: &req.headers,
        method: req.method.as_str(),
        token: &presented.token,
        ath: principal.ath(),
        as_dpop: presented.dpop,
        bound_to: principal.jkt(),
        required: route.dpop == DpopMode::Required,
    };
    dpop.judge_token(&p, || request_url(req, at))
        .await
        .map_err(|refusal| Rejection::Dpop {
            refusal,
            algs: dpop.algs.clone(),
        })
}

/// The URL the client sent the request to, without query: the scheme, the host as the request
/// names it (lower-cased, without the scheme's default port) and the normalised path.
pub fn request_url(req: &RequestHeader, at: &Arrival<'_>) -> String {
    let proto = at
        .forwarded
        .then(|| req.headers.get("x-forwarded-proto"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(|p| p.split(',').next().unwrap_or_default().trim())
        .filter(|p| p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("http"));
    let scheme = match proto {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(_) => "http",
        None => at.scheme,
    };
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    let mut url = String::with_capacity(scheme.len() + 3 + host.len() + at.path.len());
    url.push_str(scheme);
    url.push_str("://");
    url.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    url.push_str(at.path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::get as req;

    fn at(forwarded: bool, scheme: &str) -> Arrival<'_> {
        Arrival {
            forwarded,
            scheme,
            path: "/api/x",
        }
    }

    #[test]
    fn the_url_is_the_one_the_client_sent_to() {
        let r = req("/api/x?q=1", &[("host", "GW.example:8443")]);
        assert_eq!(
            request_url(&r, &at(false, "https")),
            "https://gw.example:8443/api/x"
        );
        let r = req("/api/x", &[("host", "gw.example:443")]);
        assert_eq!(
            request_url(&r, &at(false, "https")),
            "https://gw.example/api/x"
        );
        let r = req("/api/x", &[("host", "gw.example:80")]);
        assert_eq!(
            request_url(&r, &at(false, "http")),
            "http://gw.example/api/x"
        );
        // a trusted proxy's scheme is believed, anyone else's is not
        let proxied = req(
            "/api/x",
            &[("host", "gw.example"), ("x-forwarded-proto", "https")],
        );
        assert_eq!(
            request_url(&proxied, &at(true, "http")),
            "https://gw.example/api/x"
        );
        assert_eq!(
            request_url(&proxied, &at(false, "http")),
            "http://gw.example/api/x"
        );
        let odd = req(
            "/api/x",
            &[("host", "gw.example"), ("x-forwarded-proto", "gopher")],
        );
        assert_eq!(
            request_url(&odd, &at(true, "http")),
            "http://gw.example/api/x"
        );
    }
}
