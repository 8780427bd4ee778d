//! What a browser request is: a page navigation or a script's call, where it may return to after
//! sign-in, and whether a cookie-authenticated write or upgrade comes from the same origin.

use http::Method;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// True for a top-level page load, which may be sent to a sign-in page; scripts (fetch, XHR) and
/// API clients get a 401 instead, never a login page they cannot show.
pub fn is_navigation(req: &RequestHeader) -> bool {
    if let Some(mode) = header(req, "sec-fetch-mode") {
        return mode.eq_ignore_ascii_case("navigate");
    }
    if header(req, "x-requested-with").is_some() {
        return false;
    }
    (req.method == Method::GET || req.method == Method::HEAD)
        && header(req, "accept").is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
}

/// The address to come back to after sign-in: the request's own path and query, on this host.
pub fn here(req: &RequestHeader) -> String {
    let raw = String::from_utf8_lossy(req.raw_path()).into_owned();
    safe_return(&raw).unwrap_or("/").to_string()
}

/// A return address is a path on the host the person is on: `/x?y`, never `//host`, `/\host`, a
/// scheme, or anything with control characters or spaces, so sign-in is never an open redirect.
pub fn safe_return(rd: &str) -> Option<&str> {
    let ok = rd.starts_with('/')
        && !rd.starts_with("//")
        && !rd.contains('\\')
        && rd.len() <= 2048
        && rd.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(rd)
}

/// True when the request came over TLS to the gateway itself.
pub fn over_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The host and port of an authority (`host`, `host:8443`, `[::1]:8443`); `None` when the port is
/// not a number.
pub fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let end = v6.find(']')? + 2;
            (authority.get(..end)?, authority.get(end..)?)
        }
        None => match authority.rsplit_once(':') {
            Some((h, _)) => (h, authority.get(h.len()..)?),
            None => (authority, ""),
        },
    };
    match port.strip_prefix(':') {
        Some(p) => Some((host, Some(p.parse().ok()?))),
        None if port.is_empty() => Some((host, None)),
        None => None,
    }
}

/// The scheme browsers reach this gateway with: `https` (directly, or through a TLS-terminating
/// balancer, as Secure cookies need), and `http` only on this machine over a plain listener.
pub fn public_scheme(host: &str, tls: bool) -> &'static str {
    let local = matches!(
        host.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "[::1]"
    );
    if !tls && local {
        "http"
    } else {
        "https"
    }
}

/// True for a request that asks to change protocol (a WebSocket handshake): a GET, but what follows
/// is a two-way channel the cookie would open to any site.
fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
}

/// True when a request may be authenticated by the session cookie: reads always; writes and
/// protocol upgrades only from this origin (`Sec-Fetch-Site: same-origin` or `none`), else by
/// `Origin`, else by `Referer`. `tls`: whether the request came over TLS.
pub fn same_origin_write(req: &RequestHeader, tls: bool) -> bool {
    let read = matches!(
        req.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    (read && !is_upgrade(req)) || from_this_origin(req, tls)
}

/// True when the request was sent by a page of this origin (same scheme, host and port), or typed
/// by the person.
pub fn from_this_origin(req: &RequestHeader, tls: bool) -> bool {
    if let Some(site) = header(req, "sec-fetch-site") {
        return site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
    }
    // HTTP/2 carries the host as the URI's authority, HTTP/1.1 in `Host`
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header(req, "host"));
    let Some((host, port)) = authority.and_then(split_authority) else {
        return false;
    };
    let scheme = public_scheme(host, tls);
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    let from = header(req, "origin")
        .filter(|o| *o != "null")
        .or_else(|| header(req, "referer"));
    let Some(Ok(u)) = from.map(url::Url::parse) else {
        return false;
    };
    u.scheme() == scheme
        && u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host))
        && u.port_or_known_default() == Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn navigations_are_told_from_scripts() {
        assert!(is_navigation(&req(
            "GET",
            "/",
            &[("sec-fetch-mode", "navigate")]
        )));
        assert!(!is_navigation(&req(
            "GET",
            "/",
            &[("sec-fetch-mode", "cors"), ("accept", "text/html")]
        )));
        assert!(is_navigation(&req(
            "GET",
            "/",
            &[("accept", "text/html,*/*")]
        )));
        assert!(!is_navigation(&req(
            "GET",
            "/",
            &[("accept", "application/json")]
        )));
        assert!(!is_navigation(&req(
            "POST",
            "/",
            &[("accept", "text/html")]
        )));
        assert!(!is_navigation(&req(
            "GET",
            "/",
            &[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest")
            ]
        )));
    }

    #[test]
    fn return_addresses_stay_on_this_host() {
        assert_eq!(safe_return("/app/x?y=1"), Some("/app/x?y=1"));
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a b",
            "/a\r\nSet-Cookie:x",
            "",
        ] {
            assert_eq!(safe_return(bad), None, "{bad:?}");
        }
        assert_eq!(here(&req("GET", "/app?q=1", &[])), "/app?q=1");
    }

    #[test]
    fn writes_must_come_from_this_origin() {
        let h = [("host", "app.example")];
        assert!(same_origin_write(&req("GET", "/", &[]), true));
        assert!(!same_origin_write(&req("POST", "/", &h), true));
        assert!(same_origin_write(
            &req(
                "POST",
                "/",
                &[("host", "app.example"), ("sec-fetch-site", "same-origin")]
            ),
            true
        ));
        assert!(!same_origin_write(
            &req(
                "POST",
                "/",
                &[("host", "app.example"), ("sec-fetch-site", "cross-site")]
            ),
            true
        ));
        assert!(!same_origin_write(
            &req(
                "DELETE",
                "/",
                &[("host", "app.example"), ("sec-fetch-site", "same-site")]
            ),
            true
        ));
        assert!(same_origin_write(
            &req(
                "PUT",
                "/",
                &[("host", "app.example"), ("origin", "https://app.example")]
            ),
            true
        ));
        assert!(!same_origin_write(
            &req(
                "PUT",
                "/",
                &[("host", "app.example"), ("origin", "https://evil.example")]
            ),
            true
        ));
        assert!(!same_origin_write(
            &req("PATCH", "/", &[("host", "app.example"), ("origin", "null")]),
            true
        ));
        assert!(same_origin_write(
            &req(
                "POST",
                "/",
                &[
                    ("host", "app.example:8443"),
                    ("referer", "https://app.example:8443/form")
                ]
            ),
            true
        ));
        assert!(!same_origin_write(
            &req(
                "POST",
                "/",
                &[
                    ("host", "app.example"),
                    ("referer", "https://app.example.evil/")
                ]
            ),
            true
        ));
    }

    #[test]
    fn the_origin_must_match_in_scheme_host_and_port() {
        let put = |host: &str, origin: &str, tls: bool| {
            same_origin_write(&req("PUT", "/", &[("host", host), ("origin", origin)]), tls)
        };
        // an http page is another origin than the https one, wherever the gateway listens
        assert!(!put("app.example", "http://app.example", true));
        assert!(!put("app.example", "http://app.example", false));
        assert!(!put("app.example:8443", "http://app.example:8443", true));
        // behind a TLS-terminating balancer the browser is on https
        assert!(put("app.example", "https://app.example", false));
        // the port counts, the default one whether written or not
        assert!(!put("app.example:8443", "https://app.example:9443", true));
        assert!(!put("app.example:8443", "https://app.example", true));
        assert!(put("app.example:443", "https://app.example", true));
        assert!(put("App.Example", "https://app.example:443", true));
        // plain http only on this machine over a plain listener
        assert!(put("localhost:8080", "http://localhost:8080", false));
        assert!(!put("localhost:8080", "https://localhost:8080", false));
        assert!(!put("localhost:8443", "http://localhost:8443", true));
        assert!(put("[::1]:8443", "https://[::1]:8443", true));
        assert!(!put("app.example:x", "https://app.example", true));
    }

    #[test]
    fn upgrades_with_the_cookie_must_come_from_this_origin() {
        let ws = |extra: &[(&str, &str)]| {
            let mut h = vec![
                ("host", "app.example"),
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
            ];
            h.extend_from_slice(extra);
            same_origin_write(&req("GET", "/ws", &h), true)
        };
        assert!(!ws(&[]));
        assert!(!ws(&[("origin", "https://evil.example")]));
        assert!(!ws(&[("origin", "http://app.example")]));
        assert!(!ws(&[("sec-fetch-site", "cross-site")]));
        assert!(ws(&[("origin", "https://app.example")]));
        assert!(ws(&[("sec-fetch-site", "same-origin")]));
        assert!(same_origin_write(
            &req("GET", "/ws", &[("host", "app.example")]),
            true
        ));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("a.example"), Some(("a.example", None)));
        assert_eq!(
            split_authority("a.example:8443"),
            Some(("a.example", Some(8443)))
        );
        assert_eq!(split_authority("[::1]:8443"), Some(("[::1]", Some(8443))));
        assert_eq!(split_authority("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_authority("a.example:"), None);
        assert_eq!(split_authority("[::1]x"), None);
        assert_eq!(public_scheme("LOCALHOST", false), "http");
        assert_eq!(public_scheme("localhost", true), "https");
        assert_eq!(public_scheme("app.example", false), "https");
    }
}
