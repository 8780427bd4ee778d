//! The one reader of a request's `Cookie` headers, for everyone who looks at cookies: sessions,
//! token cookies and the cookies kept from upstreams.

use pingora::http::RequestHeader;

/// One `name=value` pair of a `Cookie` header, trimmed; `value` is `None` for a pair without `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
    /// the pair as sent (trimmed), to pass it on unchanged
    pub raw: &'a str,
}

/// Every pair of every `Cookie` header, in order; a header that is not text is skipped.
pub fn all(req: &RequestHeader) -> impl Iterator<Item = Cookie<'_>> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|raw| match raw.split_once('=') {
            Some((name, value)) => Cookie {
                name: name.trim(),
                value: Some(value.trim()),
                raw,
            },
            None => Cookie {
                name: raw,
                value: None,
                raw,
            },
        })
}

/// The value of the first cookie named `name`.
pub fn value<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    all(req).find(|c| c.name == name).and_then(|c| c.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_in_order_from_every_header() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("cookie", "a=1;  b = 2 ;flag").unwrap();
        r.append_header("cookie", "c=\"3\"; a=4").unwrap();
        let got: Vec<_> = all(&r).map(|c| (c.name, c.value)).collect();
        assert_eq!(
            got,
            [
                ("a", Some("1")),
                ("b", Some("2")),
                ("flag", None),
                ("c", Some("\"3\"")),
                ("a", Some("4"))
            ]
        );
        assert_eq!(value(&r, "a"), Some("1"), "the first one counts");
        assert_eq!(value(&r, "flag"), None);
        assert_eq!(value(&r, "nope"), None);
        assert_eq!(all(&r).nth(1).map(|c| c.raw), Some("b = 2"));
    }
}
