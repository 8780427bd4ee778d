//! The request a backend receives: path rewritten, token removed, identity and forwarding headers set.

use crate::auth::extract::is_token_param;
use crate::auth::identity::Identity;
use crate::config::Route;
use crate::login::state::PRE_LOGIN;
use crate::proxy::identity_headers::set_claim_headers;
use crate::wire::forwarded::{
    is_forwarding_header, peer, set_forwarding_headers, trusts, Cidr, Hop,
};
use pingora::http::{RequestHeader, ResponseHeader};
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
    strip_cookies(req, |name| names.iter().any(|n| n == name))
}

/// True for a cookie of the gateway's own: one `names` lists (the session, the sign-in form), or
/// a pre-login cookie, named per sign-in attempt and so known by its prefix, whenever the gateway
/// keeps cookies at all.
pub fn is_gateway_cookie(name: &[u8], names: &[String]) -> bool {
    !names.is_empty()
        && (name.starts_with(PRE_LOGIN.as_bytes()) || names.iter().any(|n| n.as_bytes() == name))
}

/// Drops the cookies whose (trimmed) name `drop` picks, keeping the others.
fn strip_cookies(req: &mut RequestHeader, drop: impl Fn(&str) -> bool) -> Result<()> {
    let kept: Vec<String> = crate::wire::cookies::all(req)
        .filter(|c| !drop(c.name))
        .map(|c| c.raw.to_string())
        .collect();
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
    /// the token exchanged for the upstream, sent instead of the caller's
    pub bearer: Option<&'a http::HeaderValue>,
    pub trusted_proxies: &'a [Cidr],
    /// the gateway's own cookies (session, sign-in form), never sent upstream; pre-login cookies
    /// go with them (`is_gateway_cookie`)
    pub gateway_cookies: &'a [String],
}

/// True when a cookie header may hold one of the gateway's cookies (a cheap test before rewriting
/// it).
fn mentions_cookie(req: &RequestHeader, names: &[String]) -> bool {
    let has = |h: &[u8], n: &[u8]| h.windows(n.len()).any(|w| w == n);
    !names.is_empty()
        && req.headers.get_all("cookie").iter().any(|h| {
            let h = h.as_bytes();
            has(h, PRE_LOGIN.as_bytes()) || names.iter().any(|n| has(h, n.as_bytes()))
        })
}

/// The name of the cookie a `Set-Cookie` value sets, as a browser reads it: up to the first `=` of
/// the part before any `;`, without surrounding blanks.
fn set_cookie_name(v: &[u8]) -> &[u8] {
    let pair = v.split(|b| *b == b';').next().unwrap_or_default();
    let name = match pair.iter().position(|b| *b == b'=') {
        Some(i) => pair.get(..i).unwrap_or_default(),
        None => pair,
    };
    name.trim_ascii()
}

/// Removes every `Set-Cookie` of an upstream's response that would set one of the gateway's own
/// cookies (a session of the upstream's choosing, a pre-login state), keeping the others in order.
pub fn drop_gateway_set_cookies(resp: &mut ResponseHeader, names: &[String]) -> Result<()> {
    let ours = |v: &http::HeaderValue| is_gateway_cookie(set_cookie_name(v.as_bytes()), names);
    if !resp.headers.get_all("set-cookie").iter().any(ours) {
        return Ok(());
    }
    let kept: Vec<http::HeaderValue> = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .filter(|v| !ours(v))
        .cloned()
        .collect();
    while resp.remove_header("set-cookie").is_some() {}
    for v in kept {
        resp.append_header("set-cookie", v)?;
    }
    Ok(())
}

/// Headers the gateway may add to a request: the route's identity headers, `X-Auth-Jwt`, an
/// exchanged token and the four forwarding headers.
fn headers_added(f: &Forwarding<'_>) -> usize {
    f.route.claim_headers.len() + 2 + 4
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

/// Sets the target's path and query. An HTTP/2 request's target is its URI whole (`:scheme` and
/// `:authority` with the path; it has no `Host` to fall back on), so those are kept around the new
/// path: without them an h2 upstream request has no authority.
fn set_path(up: &mut RequestHeader, path: &str, http2: bool) -> Result<()> {
    let (true, Some(scheme), Some(authority)) =
        (http2, up.uri.scheme().cloned(), up.uri.authority().cloned())
    else {
        return up.set_raw_path(path.as_bytes());
    };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| {
            pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "bad upstream path")
        })?;
    up.set_uri(uri);
    Ok(())
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
    // An upstream that exchanges tokens never sees the caller's, forward_token or not.
    let drop_token = !f.route.forward_token || f.bearer.is_some();
    if !session.is_http2() && up.headers.capacity() < up.headers.len() + extra {
        *up = with_room(up, f.path, extra, |name| {
            (drop_token
                && (name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("dpop")))
                || (!believed && is_forwarding_header(name))
        })?;
    } else if let Some(p) = f.path {
        set_path(up, p, session.is_http2())?;
    }
    if drop_token {
        // a DPoP proof goes with its token: the gateway has used it up
        up.remove_header("authorization");
        up.remove_header("dpop");
        if !f.route.token_from.cookie.is_empty() {
            strip_token_cookies(up, &f.route.token_from.cookie)?;
        }
    }
    if mentions_cookie(up, f.gateway_cookies) {
        strip_cookies(up, |n| is_gateway_cookie(n.as_bytes(), f.gateway_cookies))?;
    }
    if let Some(id) = f.identity {
        set_claim_headers(up, &f.route.claim_headers, id)?;
    }
    if let Some(jwt) = f.identity_jwt {
        up.insert_header("X-Auth-Jwt", jwt.clone())?;
    }
    if let Some(bearer) = f.bearer {
        up.insert_header("Authorization", bearer.clone())?;
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

    fn gateway_names() -> Vec<String> {
        vec![
            "__Host-gatehouse".to_string(),
            "__Host-gatehouse-csrf".to_string(),
        ]
    }

    #[test]
    fn the_gateway_cookies_pre_login_ones_included_are_known_by_name() {
        let names = gateway_names();
        for ours in [
            "__Host-gatehouse",
            "__Host-gatehouse-csrf",
            "__Host-gatehouse-login-abcdefghijkl",
            "__Host-gatehouse-login-",
        ] {
            assert!(is_gateway_cookie(ours.as_bytes(), &names), "{ours}");
        }
        for theirs in ["__Host-gatehouse2", "app", "__host-gatehouse-login-x", ""] {
            assert!(!is_gateway_cookie(theirs.as_bytes(), &names), "{theirs}");
        }
        // a gateway that keeps no cookies claims none
        assert!(!is_gateway_cookie(b"__Host-gatehouse-login-x", &[]));
    }

    #[test]
    fn upstream_set_cookies_of_the_gateway_names_are_dropped() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for v in [
            "app=1; Path=/",
            "__Host-gatehouse=planted; Path=/; Secure",
            " __Host-gatehouse-login-abc =x; Path=/",
            "__Host-gatehouse-csrf",
            "other=2",
        ] {
            resp.append_header("set-cookie", v).unwrap();
        }
        drop_gateway_set_cookies(&mut resp, &gateway_names()).unwrap();
        let left: Vec<_> = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(left, vec!["app=1; Path=/", "other=2"]);
        // nothing of the gateway's: the response is left as it was
        let mut plain = ResponseHeader::build(200, None).unwrap();
        plain.append_header("set-cookie", "a=1").unwrap();
        drop_gateway_set_cookies(&mut plain, &gateway_names()).unwrap();
        assert_eq!(plain.headers.get("set-cookie").unwrap(), "a=1");
    }
}
