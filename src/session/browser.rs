//! What a browser request is: a page navigation or a script's call, where it may return to after
//! sign-in, and whether a cookie-authenticated write comes from the same site.

use http::Method;
use pingora::http::RequestHeader;

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

/// True when a write may be authenticated by the session cookie: safe methods always; others only
/// from this origin (`Sec-Fetch-Site: same-origin` or `none`), else by `Origin`, else by `Referer`.
pub fn same_origin_write(req: &RequestHeader) -> bool {
    matches!(
        req.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) || from_this_origin(req)
}

/// True when the request was sent by a page of this origin, or typed by the person.
pub fn from_this_origin(req: &RequestHeader) -> bool {
    if let Some(site) = header(req, "sec-fetch-site") {
        return site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
    }
    // HTTP/2 carries the host as the URI's authority, HTTP/1.1 in `Host`
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header(req, "host"));
    let Some(host) = host.map(str::to_ascii_lowercase) else {
        return false;
    };
    let from = header(req, "origin")
        .filter(|o| *o != "null")
        .or_else(|| header(req, "referer"));
    let Some(Ok(u)) = from.map(url::Url::parse) else {
        return false;
    };
    let authority = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    (u.scheme() == "https" || u.scheme() == "http") && authority.eq_ignore_ascii_case(&host)
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
        assert!(same_origin_write(&req("GET", "/", &[])));
        assert!(!same_origin_write(&req("POST", "/", &h)));
        assert!(same_origin_write(&req(
            "POST",
            "/",
            &[("host", "app.example"), ("sec-fetch-site", "same-origin")]
        )));
        assert!(!same_origin_write(&req(
            "POST",
            "/",
            &[("host", "app.example"), ("sec-fetch-site", "cross-site")]
        )));
        assert!(!same_origin_write(&req(
            "DELETE",
            "/",
            &[("host", "app.example"), ("sec-fetch-site", "same-site")]
        )));
        assert!(same_origin_write(&req(
            "PUT",
            "/",
            &[("host", "app.example"), ("origin", "https://app.example")]
        )));
        assert!(!same_origin_write(&req(
            "PUT",
            "/",
            &[("host", "app.example"), ("origin", "https://evil.example")]
        )));
        assert!(!same_origin_write(&req(
            "PATCH",
            "/",
            &[("host", "app.example"), ("origin", "null")]
        )));
        assert!(same_origin_write(&req(
            "POST",
            "/",
            &[
                ("host", "app.example:8443"),
                ("referer", "https://app.example:8443/form")
            ]
        )));
        assert!(!same_origin_write(&req(
            "POST",
            "/",
            &[
                ("host", "app.example"),
                ("referer", "https://app.example.evil/")
            ]
        )));
    }
}
