//! The request a backend receives: path rewritten, token removed, identity and forwarding headers set.

use crate::auth::extract::is_token_param;
use crate::auth::identity::Identity;
use crate::config::Route;
use crate::forwarded::{is_forwarding_header, peer, set_forwarding_headers, trusts, Cidr, Hop};
use crate::headers::set_claim_headers;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

/// The path and query sent upstream when they differ from what the client sent: normalised, prefix
/// stripped if asked, query tokens removed. `None` means the request target goes upstream unchanged.
pub fn upstream_path(
    raw_path: &str,
    normalised: &str,
    query: Option<&str>,
    route: &Route,
) -> Option<String> {
    let strip = route.strip_prefix && route.path_prefix != "/";
    let drop_param = |p: &&str| {
        let name = p.split_once('=').map(|(n, _)| n).unwrap_or(p);
        !p.is_empty() && !is_token_param(name, &route.token_from.query)
    };
    let query_changes = query.is_some_and(|q| {
        !route.token_from.query.is_empty() && q.split('&').any(|p| !drop_param(&p))
    });
    if !strip && !query_changes && raw_path == normalised {
        return None;
    }
    let mut out = if strip {
        let rest = normalised.get(route.path_prefix.len()..).unwrap_or("");
        if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        }
    } else {
        normalised.to_string()
    };
    if let Some(q) = query {
        let kept: Vec<&str> = q.split('&').filter(drop_param).collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    Some(out)
}

/// Drops the cookies that carried the token, keeping the others.
pub fn strip_token_cookies(req: &mut RequestHeader, names: &[String]) -> Result<()> {
    let mut kept = Vec::new();
    for h in req.headers.get_all("cookie") {
        let Ok(h) = h.to_str() else { continue };
        for c in h.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let name = c.split_once('=').map(|(n, _)| n).unwrap_or(c);
            if !names.iter().any(|n| n == name) {
                kept.push(c.to_string());
            }
        }
    }
    while req.remove_header("cookie").is_some() {}
    if !kept.is_empty() {
        req.insert_header("cookie", kept.join("; "))?;
    }
    Ok(())
}

/// What the gateway decided about a request that shapes its upstream copy.
pub struct Forwarding<'a> {
    pub route: &'a Route,
    /// the rewritten path and query, when it differs from the client's
    pub path: Option<&'a str>,
    pub identity: Option<&'a Identity>,
    /// `X-Auth-Jwt`, on routes with `identity_jwt`
    pub identity_jwt: Option<&'a http::HeaderValue>,
    pub trusted_proxies: &'a [Cidr],
    /// the gateway's own cookies (session, sign-in form), never sent upstream
    pub gateway_cookies: &'a [String],
}

/// True when a cookie header may hold one of these cookies (a cheap test before rewriting it).
fn mentions_cookie(req: &RequestHeader, names: &[String]) -> bool {
    req.headers.get_all("cookie").iter().any(|h| {
        let h = h.as_bytes();
        names
            .iter()
            .any(|n| h.windows(n.len()).any(|w| w == n.as_bytes()))
    })
}

/// Headers the gateway may add to a request: the route's identity headers, `X-Auth-Jwt` and the
/// four forwarding headers.
fn headers_added(f: &Forwarding<'_>) -> usize {
    f.route.claim_headers.len() + 1 + 4
}

/// A copy of the client's request with room for `extra` more headers, header case and order kept,
/// without the headers `skip` names. Pingora's copy is sized exactly, so each header the gateway
/// added grew and rehashed two maps (values and case); one copy sized once costs less.
fn with_room(
    req: &RequestHeader,
    path: Option<&str>,
    extra: usize,
    skip: impl Fn(&str) -> bool,
) -> Result<RequestHeader> {
    let target = path.map(str::as_bytes).unwrap_or_else(|| req.raw_path());
    let size = Some(req.headers.len() + extra);
    let mut out = if req.has_case() {
        RequestHeader::build(req.method.clone(), target, size)?
    } else {
        RequestHeader::build_no_case(req.method.clone(), target, size)?
    };
    out.set_version(req.version);
    for (name, value) in req.case_header_iter() {
        if !skip(std::str::from_utf8(name.as_slice()).unwrap_or_default()) {
            out.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(out)
}

/// Shapes the request a backend receives: path, token removal, identity and forwarding headers.
pub fn prepare_upstream(
    session: &Session,
    up: &mut RequestHeader,
    f: &Forwarding<'_>,
) -> Result<()> {
    let req = session.req_header();
    let hop = Hop {
        peer: peer(session),
        host: req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok())),
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
    };
    let believed = trusts(hop.peer, f.trusted_proxies);
    let extra = headers_added(f);
    // HTTP/1 only: an HTTP/2 request's target lives in its URI (scheme and authority included),
    // which Pingora's copy keeps and a rebuilt header from the path would not.
    if !session.is_http2() && up.headers.capacity() < up.headers.len() + extra {
        let drop_token = !f.route.forward_token;
        *up = with_room(up, f.path, extra, |name| {
            (drop_token && name.eq_ignore_ascii_case("authorization"))
                || (!believed && is_forwarding_header(name))
        })?;
    } else if let Some(p) = f.path {
        up.set_raw_path(p.as_bytes())?;
    }
    if !f.route.forward_token {
        up.remove_header("authorization");
        if !f.route.token_from.cookie.is_empty() {
            strip_token_cookies(up, &f.route.token_from.cookie)?;
        }
    }
    if mentions_cookie(up, f.gateway_cookies) {
        strip_token_cookies(up, f.gateway_cookies)?;
    }
    if let Some(id) = f.identity {
        set_claim_headers(up, &f.route.claim_headers, id)?;
    }
    if let Some(jwt) = f.identity_jwt {
        up.insert_header("X-Auth-Jwt", jwt.clone())?;
    }
    set_forwarding_headers(up, &hop, believed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{compile, BASE};

    fn route(extra: &str) -> Route {
        let text = BASE.replace("auth = \"public\"", &format!("auth = \"public\"\n{extra}"));
        compile(&text).unwrap().routes.remove(0)
    }

    #[test]
    fn an_already_normal_request_goes_upstream_unchanged() {
        let r = route("");
        assert_eq!(upstream_path("/a/b", "/a/b", Some("x=1"), &r), None);
        assert_eq!(
            upstream_path("//a/./b", "/a/b", None, &r).as_deref(),
            Some("/a/b")
        );
    }

    #[test]
    fn prefixes_are_stripped_and_query_tokens_dropped() {
        let r = route(
            "path_prefix = \"/api\"\nstrip_prefix = true\ntoken_from = [\"query:access_token\"]",
        );
        assert_eq!(
            upstream_path("/api/x", "/api/x", None, &r).as_deref(),
            Some("/x")
        );
        assert_eq!(
            upstream_path("/api", "/api", None, &r).as_deref(),
            Some("/")
        );
        assert_eq!(
            upstream_path(
                "/api/x",
                "/api/x",
                Some("a=1&access_token=t&access%5Ftoken=u&b"),
                &r
            )
            .as_deref(),
            Some("/x?a=1&b")
        );
        assert_eq!(
            upstream_path("/api/x", "/api/x", Some("access_token=t"), &r).as_deref(),
            Some("/x")
        );
    }

    #[test]
    fn only_the_token_cookies_are_removed() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1; session=tok").unwrap();
        req.append_header("cookie", "b=2").unwrap();
        strip_token_cookies(&mut req, &["session".to_string()]).unwrap();
        assert_eq!(req.headers.get("cookie").unwrap(), "a=1; b=2");
        let mut only = RequestHeader::build("GET", b"/", None).unwrap();
        only.append_header("cookie", "session=tok").unwrap();
        strip_token_cookies(&mut only, &["session".to_string()]).unwrap();
        assert!(only.headers.get("cookie").is_none());
    }
}
