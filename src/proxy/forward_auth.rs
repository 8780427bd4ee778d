//! The forward-auth endpoint: turns a proxy's question (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik ForwardAuth, Envoy `ext_authz`) back into the original request, and answers in the
//! terms that proxy understands.

use crate::auth::identity::Identity;
use crate::config::{ForwardAuthSettings, Route};
use crate::proxy::identity_headers::value_for;
use crate::respond::{Answer, AsAnswer, Rejection};
use crate::wire::forwarded::{peer, trusts, Cidr};
use crate::wire::path::{normalise_path, PathError};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::borrow::Cow;
use std::net::SocketAddr;

/// The header of nginx's 401 that names the sign-in page, for the `error_page` recipe's redirect.
pub const SIGN_IN_HEADER: &str = "x-gatehouse-sign-in";

/// How the proxy described the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `X-Forwarded-Method` / `X-Forwarded-Uri` / `X-Forwarded-Host` (Traefik, Caddy)
    ForwardedHeaders,
    /// `X-Original-URI` / `X-Original-Method` / `Host` (nginx `auth_request`), or `X-Original-URL`
    /// (ingress-nginx); nginx turns any
    /// answer but 2xx, 401 and 403 into a 500, so sign-in is a 401 with `SIGN_IN_HEADER`
    Nginx,
    /// the original path appended to the endpoint's, method and headers as sent (Envoy `ext_authz`)
    PathPrefix,
}

impl Dialect {
    /// Whether a browser that must sign in is sent there with a 302 the proxy passes on.
    pub fn redirects(self) -> bool {
        self != Dialect::Nginx
    }
}

/// A header the proxy sets: absent, or its one value. One present twice, or unreadable, is refused
/// rather than skipped: reading another dialect's headers instead would judge what the client wrote.
fn header<'a>(req: &'a RequestHeader, name: &str) -> Result<Option<&'a [u8]>, Rejection> {
    let mut all = req.headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Rejection::BadRequest(
            "a header naming the original request is repeated",
        ));
    }
    Ok(Some(v.as_bytes()))
}

/// A method or host header's value: visible ASCII only.
fn ascii(v: &[u8]) -> Result<String, Rejection> {
    match std::str::from_utf8(v) {
        Ok(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Ok(t.to_string()),
        _ => Err(Rejection::BadRequest(
            "a header naming the original request is not visible ASCII",
        )),
    }
}

/// A URI as the proxy saw it, judged on its bytes: each byte above 0x7f percent-encoded (nginx
/// passes a client's raw UTF-8 or Latin-1 on), control bytes refused.
fn uri_text(v: &[u8]) -> Result<Cow<'_, str>, Rejection> {
    if let Some(ascii) = v
        .iter()
        .all(|b| (0x21..=0x7e).contains(b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
    {
        // the usual case, and every request is asked this: no copy
        return Ok(Cow::Borrowed(ascii));
    }
    let mut out = String::with_capacity(v.len());
    for &b in v {
        match b {
            0x21..=0x7e => out.push(char::from(b)),
            0x80..=0xff => {
                out.push('%');
                out.push(crate::wire::path::hex_digit(b >> 4));
                out.push(crate::wire::path::hex_digit(b & 15));
            }
            _ => {
                return Err(Rejection::BadRequest(
                    "the original request's URI has a space or a control byte",
                ))
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// The original request as the proxy described it.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    dialect: Dialect,
    method: Option<String>,
    target: String,
    host: Option<String>,
}

/// What the proxy's headers (or the path under the endpoint) say the original request was. Each
/// dialect reads only the headers its proxy sets (nginx passes a client's other headers on, so an
/// `X-Forwarded-Host` there is the client's), and a question that names the original request in two
/// ways is refused: one of them came from the client. `raw` is the question's own target.
fn original(req: &RequestHeader, raw: &str, endpoint: &str) -> Result<Original, Rejection> {
    let forwarded = header(req, "x-forwarded-uri")?;
    let nginx = header(req, "x-original-uri")?;
    let ingress = header(req, "x-original-url")?;
    let prefixed = raw.strip_prefix(endpoint).filter(|r| r.starts_with('/'));
    let named = [
        forwarded.is_some(),
        nginx.is_some(),
        ingress.is_some(),
        prefixed.is_some(),
    ];
    if named.iter().filter(|n| **n).count() > 1 {
        return Err(Rejection::BadRequest(
            "the original request is named more than once (X-Forwarded-Uri, X-Original-URI, X-Original-URL, a path under the endpoint)",
        ));
    }
    let method = |name| header(req, name)?.map(ascii).transpose();
    if let Some(target) = forwarded {
        return Ok(Original {
            dialect: Dialect::ForwardedHeaders,
            method: method("x-forwarded-method")?,
            target: uri_text(target)?.into_owned(),
            host: header(req, "x-forwarded-host")?.map(ascii).transpose()?,
        });
    }
    if let Some(target) = nginx {
        return Ok(Original {
            dialect: Dialect::Nginx,
            method: method("x-original-method")?,
            target: uri_text(target)?.into_owned(),
            host: None,
        });
    }
    if let Some(url) = ingress {
        // ingress-nginx: the whole original URL, host included
        let u = url::Url::parse(&uri_text(url)?)
            .map_err(|_| Rejection::BadRequest("X-Original-URL is not an absolute URL"))?;
        let host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(Rejection::BadRequest("X-Original-URL names no host")),
        };
        let target = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        return Ok(Original {
            dialect: Dialect::Nginx,
            method: method("x-original-method")?,
            target,
            host: Some(host),
        });
    }
    match prefixed {
        Some(rest) => Ok(Original {
            dialect: Dialect::PathPrefix,
            method: None,
            target: rest.to_string(),
            host: None,
        }),
        None => Err(Rejection::BadRequest(
            "the original request is missing: send X-Forwarded-Uri (Traefik, Caddy) or X-Original-URI (nginx), or append its path to the endpoint (Envoy)",
        )),
    }
}

/// True when the path is the endpoint, or under it (Envoy's path-prefix mode).
fn asks(path: &str, endpoint: &str) -> bool {
    path.strip_prefix(endpoint)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// True when a request's path addresses the endpoint in any spelling: as written (Envoy appends
/// the original path, `/oauth/forward-auth/public/../../admin`, which normalises elsewhere),
/// normalised, or, when it cannot be normalised (`%2F`, `..;`, `%00`), with every escape decoded
/// and `//` collapsed. Such a request is a question whatever it holds, so its refusal is plain HTTP.
fn addressed(raw_path: &str, normalised: &Result<Cow<'_, str>, PathError>, endpoint: &str) -> bool {
    if asks(raw_path, endpoint) {
        return true;
    }
    match normalised {
        Ok(p) => asks(p, endpoint),
        Err(_) => {
            let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
            let mut loose = String::with_capacity(decoded.len());
            for c in decoded.chars() {
                if !(c == '/' && loose.ends_with('/')) {
                    loose.push(c);
                }
            }
            asks(&loose, endpoint)
        }
    }
}

/// When the request is for the forward-auth endpoint: refuses anyone but a trusted proxy, then
/// rewrites the request into the original one (method, target, Host) so the proxy's own decision
/// runs on it unchanged. `Ok(None)` for every other request, which is left alone; anything
/// addressed to the endpoint is a question (`Ok(Some)` or a refusal), on every listener.
pub fn take(
    session: &mut Session,
    settings: &ForwardAuthSettings,
    trusted: &[Cidr],
) -> Result<Option<Dialect>, Rejection> {
    let endpoint = settings.path.as_str();
    let req = session.req_header();
    let raw = uri_text(req.raw_path())?;
    let raw_path = raw.split_once('?').map_or(&*raw, |(p, _)| p);
    let normalised = normalise_path(raw_path);
    if !addressed(raw_path, &normalised, endpoint) {
        return Ok(None);
    }
    if !settings.listeners.is_empty() {
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        if !local.is_some_and(|l| on_listener(l, &settings.listeners)) {
            return Err(Rejection::NotFound);
        }
    }
    if !trusts(peer(session), trusted) {
        return Err(Rejection::UntrustedProxy);
    }
    normalised.map_err(Rejection::BadRequest)?;
    let o = original(req, &raw, endpoint)?;
    if !o.target.starts_with('/') {
        return Err(Rejection::BadRequest(
            "the original request's URI must be a path, as /page?query",
        ));
    }
    let method = match &o.method {
        Some(m) => Some(
            Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .map_err(|_| Rejection::BadRequest("the original request's method is not valid"))?,
        ),
        None => None,
    };
    // an HTTP/2 question names its host in the URI, which the original target replaces
    let host = o
        .host
        .or_else(|| req.uri.authority().map(|a| a.as_str().to_string()));
    let req = session.req_header_mut();
    req.set_raw_path(o.target.as_bytes())
        .map_err(|_| Rejection::BadRequest("the original request's URI is not valid"))?;
    if let Some(m) = method {
        req.set_method(m);
    }
    if let Some(h) = host {
        req.insert_header("host", h)
            .map_err(|_| Rejection::BadRequest("the original request's host is not valid"))?;
    }
    Ok(Some(o.dialect))
}

/// True when a connection's local address is one of these listeners (a wildcard listener's
/// connections arrive on a concrete address of the host).
fn on_listener(local: SocketAddr, listeners: &[SocketAddr]) -> bool {
    listeners
        .iter()
        .any(|l| l.port() == local.port() && (l.ip() == local.ip() || l.ip().is_unspecified()))
}

/// True for a CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS
        && req.headers.contains_key("origin")
        && req.headers.contains_key("access-control-request-method")
}

/// The yes: 200 with the identity headers the proxy copies onto the request it sends on. Every
/// identity header any route sends is named, empty when this identity has no value for it, so a
/// proxy that copies a fixed list overwrites a client's copy instead of keeping it (Caddy before
/// 2.7 even copies an absent header as its unexpanded placeholder).
pub fn allow(
    route: &Route,
    identity: Option<&Identity>,
    identity_jwt: Option<&http::HeaderValue>,
    every: &[HeaderName],
) -> pingora::Result<Answer> {
    let mut r = pingora::http::ResponseHeader::build(200, Some(3 + every.len()))?;
    r.insert_header("content-length", "0")?;
    r.insert_header("cache-control", "no-store")?;
    if let Some(id) = identity {
        for h in &route.claim_headers {
            if let Some(v) = value_for(h, id) {
                r.insert_header(h.wire.clone(), v)?;
            }
        }
    }
    if let Some(jwt) = identity_jwt {
        r.insert_header(JWT, jwt.clone())?;
    }
    for name in every.iter().chain(std::iter::once(&JWT)) {
        if !r.headers.contains_key(name) {
            r.insert_header(name.clone(), HeaderValue::from_static(""))?;
        }
    }
    Ok(Answer::Head(Box::new(r)))
}

const JWT: HeaderName = HeaderName::from_static("x-auth-jwt");

/// The no, always as plain HTTP (never a gRPC trailers-only 200, which a proxy would read as a
/// yes), with no route counting as a refusal: nginx turns a 404 into a 500.
pub fn refuse(rejection: &Rejection) -> Answer {
    Answer::PlainError(rejection.answer())
}

/// A browser that must sign in: a 302 (from the gateway's own proxy, or for a proxy that passes it
/// on), or nginx's 401 naming the page.
pub fn sign_in(dialect: Option<Dialect>, to: String) -> Answer {
    if dialect.is_none_or(Dialect::redirects) {
        return Answer::empty(302, vec![("location", to)]);
    }
    let mut a = Rejection::MissingToken.answer();
    a.headers.push((SIGN_IN_HEADER, to));
    Answer::PlainError(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    const EP: &str = "/oauth/forward-auth";

    #[test]
    fn each_dialect_names_the_original_request() {
        let t = req(
            EP,
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/a?b=1"),
                ("x-forwarded-host", "app.test"),
            ],
        );
        assert_eq!(
            original(&t, EP, EP).unwrap(),
            Original {
                dialect: Dialect::ForwardedHeaders,
                method: Some("POST".into()),
                target: "/a?b=1".into(),
                host: Some("app.test".into()),
            }
        );
        let n = req(
            EP,
            &[
                ("x-original-uri", "/p"),
                ("x-original-method", "DELETE"),
                ("x-forwarded-host", "a client's"),
            ],
        );
        let o = original(&n, EP, EP).unwrap();
        assert_eq!(o.dialect, Dialect::Nginx);
        assert_eq!(
            o.host, None,
            "nginx names the host in Host; the rest is the client's"
        );
        assert_eq!(
            (o.method.as_deref(), o.target.as_str()),
            (Some("DELETE"), "/p")
        );
        let e = original(&req("/x", &[]), "/oauth/forward-auth/api/v1?q=2", EP).unwrap();
        assert_eq!(e.dialect, Dialect::PathPrefix);
        assert_eq!(e.target, "/api/v1?q=2");
        assert_eq!(e.method, None);
        let ingress = req(EP, &[("x-original-url", "https://app.test:8443/p/q?r=1")]);
        let o = original(&ingress, EP, EP).unwrap();
        assert_eq!(o.dialect, Dialect::Nginx);
        assert_eq!(o.target, "/p/q?r=1");
        assert_eq!(o.host.as_deref(), Some("app.test:8443"));
        assert!(original(&req(EP, &[("x-original-url", "/p")]), EP, EP).is_err());
        // a client's header beside the proxy's: refused, whichever way round
        for (a, b) in [
            ("x-forwarded-uri", "x-original-uri"),
            ("x-original-uri", "x-original-url"),
            ("x-forwarded-uri", "x-original-url"),
        ] {
            let twice = req(EP, &[(a, "/svc"), (b, "https://h/admin")]);
            assert!(matches!(
                original(&twice, EP, EP),
                Err(Rejection::BadRequest(_))
            ));
        }
        let prefixed_too = req("/x", &[("x-original-uri", "/svc")]);
        assert!(original(&prefixed_too, "/oauth/forward-auth/admin", EP).is_err());
        assert!(matches!(
            original(&req(EP, &[]), EP, EP),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn unreadable_dialect_headers_are_refused_never_read_past() {
        let mut r = req(EP, &[("x-forwarded-uri", "/public/x")]);
        r.insert_header(
            "x-original-uri",
            HeaderValue::from_bytes(b"/admin/x?q=\xff").unwrap(),
        )
        .unwrap();
        assert!(matches!(
            original(&r, EP, EP),
            Err(Rejection::BadRequest(_))
        ));
        let mut r = req(EP, &[]);
        r.insert_header(
            "x-original-uri",
            HeaderValue::from_bytes(b"/caf\xc3\xa9?q=\xff").unwrap(),
        )
        .unwrap();
        let o = original(&r, EP, EP).unwrap();
        assert_eq!(o.target, "/caf%C3%A9?q=%FF", "judged on its bytes");
        let mut r = req(EP, &[]);
        r.insert_header(
            "x-original-url",
            HeaderValue::from_bytes(b"https://h/\xe9").unwrap(),
        )
        .unwrap();
        assert_eq!(original(&r, EP, EP).unwrap().target, "/%E9");
        assert!(matches!(
            uri_text(b"/plain?q=1"),
            Ok(Cow::Borrowed("/plain?q=1"))
        ));
        let mut r = req(EP, &[("x-forwarded-uri", "/a")]);
        r.insert_header(
            "x-forwarded-host",
            HeaderValue::from_bytes(b"h\xe9.test").unwrap(),
        )
        .unwrap();
        assert!(original(&r, EP, EP).is_err());
        let mut twice = req(EP, &[("x-original-uri", "/a")]);
        twice.append_header("x-original-uri", "/b").unwrap();
        assert!(original(&twice, EP, EP).is_err());
        assert!(uri_text(b"/a b").is_err());
        assert!(uri_text(b"/a\tb").is_err());
    }

    #[test]
    fn anything_addressed_to_the_endpoint_is_a_question() {
        for p in [
            EP,
            "/oauth/forward-auth/admin%2Fx",
            "/oauth/forward-auth/public/..;/admin/x",
            "/oauth/forward-auth/public/../../admin",
            "/oauth/forward-auth/a%00",
            "//oauth/forward-auth",
            "/oauth/%66orward-auth/x%2Fy",
            "/x/../oauth/forward-auth",
        ] {
            assert!(addressed(p, &normalise_path(p), EP), "{p}");
        }
        for p in ["/oauth/forward-authx", "/admin%2Fx", "/oauth/login"] {
            assert!(!addressed(p, &normalise_path(p), EP), "{p}");
        }
    }

    #[test]
    fn chosen_listeners_include_wildcard_ones() {
        let l: Vec<SocketAddr> = vec![
            "0.0.0.0:8080".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        ];
        assert!(on_listener("10.0.0.5:8080".parse().unwrap(), &l));
        assert!(on_listener("127.0.0.1:9000".parse().unwrap(), &l));
        assert!(!on_listener("10.0.0.5:9000".parse().unwrap(), &l));
        assert!(!on_listener("127.0.0.1:8443".parse().unwrap(), &l));
    }

    #[test]
    fn the_endpoint_and_paths_under_it_are_asked_about() {
        assert!(asks(EP, EP));
        assert!(asks("/oauth/forward-auth/x", EP));
        assert!(!asks("/oauth/forward-authx", EP));
        assert!(!asks("/oauth", EP));
    }

    #[test]
    fn preflights_need_origin_and_a_requested_method() {
        let mut p = req(
            "/",
            &[
                ("origin", "https://a.test"),
                ("access-control-request-method", "PUT"),
            ],
        );
        assert!(!is_preflight(&p));
        p.set_method(Method::OPTIONS);
        assert!(is_preflight(&p));
        p.remove_header("origin");
        assert!(!is_preflight(&p));
    }

    #[test]
    fn the_no_is_plain_http_and_sign_in_follows_the_dialect() {
        let no = refuse(&Rejection::MissingToken);
        assert!(matches!(&no, Answer::PlainError(e) if e.status == 401));
        let a = sign_in(None, "/oauth/login?rd=%2F".into());
        assert_eq!(
            (a.status(), a.header("location")),
            (302, Some("/oauth/login?rd=%2F"))
        );
        let a = sign_in(Some(Dialect::PathPrefix), "/x".into());
        assert_eq!(a.status(), 302);
        let a = sign_in(Some(Dialect::Nginx), "/x".into());
        assert!(matches!(&a, Answer::PlainError(_)));
        assert_eq!((a.status(), a.header(SIGN_IN_HEADER)), (401, Some("/x")));
        assert!(a.header("www-authenticate").is_some());
    }
}
