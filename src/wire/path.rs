//! Path and host normalisation: `;` parameters, dot segments, encodings. No crate dependencies.

use std::borrow::Cow;

/// Why a path cannot be routed; each is answered with 400.
pub type PathError = &'static str;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The upper-case hex digit of a nibble.
pub(crate) fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes percent-encoded unreserved characters, upper-cases the rest, and refuses ambiguous bytes.
fn decode_segment_bytes(raw: &str) -> Result<String, PathError> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err("the path has a malformed percent-encoding");
            };
            let v = h * 16 + l;
            if v == b'/' || v == b'\\' {
                return Err("the path has an encoded slash or backslash");
            }
            if v < 0x20 || v == 0x7f {
                return Err("the path has an encoded control character");
            }
            if unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(hex_digit(v >> 4));
                out.push(hex_digit(v & 15));
            }
            i += 3;
            continue;
        }
        if c == b'\\' {
            return Err("the path has a backslash");
        }
        if !(0x20..0x7f).contains(&c) {
            return Err("the path has a control or non-ASCII byte");
        }
        out.push(c as char);
        i += 1;
    }
    Ok(out)
}

/// True when the path needs no change: no escapes, no empty, `.` or `..` segments, only visible ASCII.
fn already_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut prev = b'/';
    for (i, &c) in b.iter().enumerate().skip(1) {
        if c == b'%'
            || c == b'\\'
            || c == b';'
            || !(0x21..0x7f).contains(&c)
            || (c == b'/' && prev == b'/')
        {
            return false;
        }
        if c == b'.' && prev == b'/' {
            let rest = b.get(i..).unwrap_or_default();
            if rest == b"." || rest == b".." || rest.starts_with(b"./") || rest.starts_with(b"../")
            {
                return false;
            }
        }
        prev = c;
    }
    true
}

/// A segment without its `;params`: what Tomcat, Jetty and other servlet containers route on.
pub fn segment_base(seg: &str) -> &str {
    seg.split_once(';').map_or(seg, |(base, _)| base)
}

/// True for a dot segment carrying parameters, the `;` plain or encoded (`..;x`, `..%3B`): servlet
/// containers and Spring decode `%3B` before they strip parameters, then climb. `seg` is decoded,
/// so a remaining escape is upper-case.
fn dot_with_parameters(seg: &str) -> bool {
    let base = match (seg.find(';'), seg.find("%3B")) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return false,
    };
    matches!(seg.get(..base), Some("." | ".."))
}

/// Normalises a request path: `//` collapsed, `.` and `..` resolved, unreserved escapes decoded.
/// The trailing slash is kept, since backends may tell `/a` from `/a/`. A path that is already
/// normal is returned as it is, without copying. A segment that is `.` or `..` once its `;params`
/// are removed (`..;`, `%2e%2e;x=1`) is refused: servlet containers strip the parameters and then
/// climb, so forwarding it would let `/public/..;/admin` reach `/admin` past the admin route.
pub fn normalise_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if already_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err("the path must start with /");
    }
    let mut segs: Vec<String> = Vec::new();
    let mut trailing = false;
    for raw in path.split('/').skip(1) {
        let seg = decode_segment_bytes(raw)?;
        trailing = false;
        if dot_with_parameters(&seg) {
            return Err("the path has a dot segment with parameters (..;)");
        }
        match seg.as_str() {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                if segs.pop().is_none() {
                    return Err("the path climbs above the root");
                }
                trailing = true;
            }
            _ => segs.push(seg),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// A configured `path_prefix`, normalised the same way, without a trailing slash.
pub fn normalise_prefix(prefix: &str) -> Result<String, String> {
    let p = normalise_path(prefix).map_err(|e| format!("{prefix:?}: {e}"))?;
    if p.len() > 1 {
        Ok(p.trim_end_matches('/').to_string())
    } else {
        Ok(p.into_owned())
    }
}

/// True for a Host value RFC 9110 allows: a name or IPv4 address, or a bracketed IPv6 address,
/// with an optional numeric port. Anything else (`a.example:1:2`, spaces, `@`) is a 400, so a
/// malformed host can never miss a host-specific route and reach a broader one.
pub fn host_is_valid(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip6, after)) => {
                let ok = !ip6.is_empty()
                    && ip6
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !ok {
                    return false;
                }
                match after {
                    "" => return true,
                    a => ("x", a.strip_prefix(':')),
                }
            }
            None => return false,
        },
        None => match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        },
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    name_ok && port_ok
}

/// Lower-cases a Host or :authority value and drops the port and a trailing dot.
pub fn normalise_host(host: &str) -> Cow<'_, str> {
    let h = if host.starts_with('[') {
        // an IPv6 literal keeps its brackets and loses its port; without `]` it is left as it is
        match host.find(']') {
            Some(end) => host.get(..=end).unwrap_or(host),
            None => host,
        }
    } else {
        // only a numeric port is a port: what is left of anything else stays, so normalising twice
        // changes nothing
        match host.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let h = h.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_before_they_are_normalised() {
        for ok in [
            "a.example.com",
            "a.example.com:8443",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "A-B.c",
        ] {
            assert!(host_is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "a.example.com:1:2",
            "a b",
            "a@b",
            "a:",
            "a:x",
            "[::1",
            "[zz]",
            "a:123456",
            "ۿ",
        ] {
            assert!(!host_is_valid(bad), "{bad}");
        }
        assert_eq!(normalise_host("A.Example.COM.:443"), "a.example.com");
        assert_eq!(normalise_host("[::1]:80"), "[::1]");
        assert_eq!(normalise_host("[[\u{f}\u{16}"), "[[\u{f}\u{16}");
        // the input the fuzzer found: not a valid host, and normalising it twice changes nothing
        let odd = "1::::::ۿFFF00";
        assert!(!host_is_valid(odd));
        assert_eq!(normalise_host(&normalise_host(odd)), normalise_host(odd));
    }

    #[test]
    fn normalises() {
        assert_eq!(normalise_path("//admin").unwrap(), "/admin");
        assert_eq!(normalise_path("/%61dmin").unwrap(), "/admin");
        assert_eq!(normalise_path("/public/../admin").unwrap(), "/admin");
        assert_eq!(normalise_path("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(normalise_path("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalise_path("/").unwrap(), "/");
        assert_eq!(
            normalise_path("/%2e%2e/x"),
            Err("the path climbs above the root")
        );
        assert!(normalise_path("/a%2Fb").is_err());
        assert!(normalise_path("/a%5cb").is_err());
        assert!(normalise_path("/a%00").is_err());
        assert!(normalise_path("/a\\b").is_err());
        assert!(normalise_path("/a%zz").is_err());
        assert_eq!(normalise_path("/a%20b%3f").unwrap(), "/a%20b%3F");
        assert!(normalise_path("/..").is_err());
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for p in [
            "/public/..;/admin/x",
            "/public/%2e%2e;/admin",
            "/public/..;x=1/admin",
            "/public/.;/x",
            "/public/%2E;a",
            "/public/..%3B/admin/x",
            "/public/..%3b/admin/x",
            "/public/%2e%2e%3Bx=1/admin",
            "/public/.%3B/x",
        ] {
            assert_eq!(
                normalise_path(p),
                Err("the path has a dot segment with parameters (..;)"),
                "{p}"
            );
        }
        assert_eq!(
            normalise_path("/a;jsessionid=1/b").unwrap(),
            "/a;jsessionid=1/b"
        );
        assert!(normalise_path("/a/..;b/").is_err());
        assert_eq!(normalise_path("/a/...;b").unwrap(), "/a/...;b");
        assert_eq!(normalise_path("/a/b%3Bc/").unwrap(), "/a/b%3Bc/");
        assert_eq!(normalise_path("/a/...%3Bb").unwrap(), "/a/...%3Bb");
    }

    #[test]
    fn hosts() {
        assert_eq!(normalise_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalise_host("[::1]:8443"), "[::1]");
        assert_eq!(normalise_host("example.com."), "example.com");
    }
}
