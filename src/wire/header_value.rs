//! Header values and names as the gateway writes and compares them: safe encoding, list joining,
//! `-`/`_` folding, decimal numbers, headers that may come once.

use http::{HeaderMap, HeaderValue};

/// Why a header that may come once cannot be read as one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOne {
    Repeated,
    NotText,
}

/// A header that may come once, as text: `Ok(None)` when absent. A repeated or non-text one is an
/// error, so no reader picks one copy while another part of the chain reads the other.
pub fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, NotOne> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(NotOne::Repeated);
    }
    first.to_str().map(Some).map_err(|_| NotOne::NotText)
}

/// Appends a decimal number without the formatting machinery (a tenth of `Display`'s cost, which
/// pays for padding and width support on every call).
pub fn push_int(out: &mut String, n: u64) {
    let mut divisor = 1u64;
    while n / divisor >= 10 {
        divisor *= 10;
    }
    while divisor > 0 {
        out.push(char::from(b'0' + (n / divisor % 10) as u8));
        divisor /= 10;
    }
}

/// Bytes outside printable ASCII (controls, DEL, non-ASCII), and `%` itself, are percent-encoded
/// (CONFIG.md).
fn is_unsafe(b: u8) -> bool {
    !(0x20..0x7f).contains(&b) || b == b'%'
}

/// Appends `s` percent-encoded as `encode_header_value` does, and `delimiter` too when given, so a
/// list element can never read as two. Writes straight into `out`: no allocation per value.
pub fn push_encoded(out: &mut Vec<u8>, s: &str, delimiter: Option<u8>) {
    let hex = |n: u8| if n < 10 { b'0' + n } else { b'A' + n - 10 };
    for &b in s.as_bytes() {
        if is_unsafe(b) || Some(b) == delimiter {
            out.extend_from_slice(&[b'%', hex(b >> 4), hex(b & 15)]);
        } else {
            out.push(b);
        }
    }
}

/// A claim value that can never split a header or smuggle bytes: always a valid `HeaderValue`.
/// Bytes outside visible ASCII and space, and `%`, are percent-encoded.
pub fn encode_header_value(s: &str) -> HeaderValue {
    let mut out = Vec::with_capacity(s.len());
    push_encoded(&mut out, s, None);
    // What is left is visible ASCII or space.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// True when two header names are the same once `_` is read as `-` (both are lower case already):
/// WSGI, CGI, PHP and many frameworks fold the two, so `X_Auth_Subject` reaches them as `X-Auth-Subject`.
pub fn same_folded(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || matches!((x, y), (b'_', b'-') | (b'-', b'_')))
}

/// Header text for a list: each value percent-encoded (see `encode_header_value`) and the
/// delimiter inside a value encoded too, so `["x,admin"]` can never read as two values.
pub fn join_encoded<S: AsRef<str>>(values: &[S], delimiter: char) -> String {
    let delimiter = if delimiter == ',' { b',' } else { b' ' };
    let mut out = Vec::new();
    push_list(&mut out, values.iter().map(AsRef::as_ref), delimiter);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a list as `join_encoded` writes it.
pub fn push_list<'a>(out: &mut Vec<u8>, values: impl Iterator<Item = &'a str>, delimiter: u8) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        push_encoded(out, v, Some(delimiter));
    }
}

/// The length a request's `Content-Length` announces, when it holds one number (the framing check
/// has refused repeated or malformed ones before anything asks).
pub fn content_length(req: &pingora::http::RequestHeader) -> Option<u64> {
    req.headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_header_is_there_once_and_is_text() {
        let mut h = HeaderMap::new();
        assert_eq!(single(&h, "x"), Ok(None));
        h.append("x", HeaderValue::from_static("a"));
        assert_eq!(single(&h, "x"), Ok(Some("a")));
        h.append("x", HeaderValue::from_static("b"));
        assert_eq!(single(&h, "x"), Err(NotOne::Repeated));
        let mut h = HeaderMap::new();
        h.append("x", HeaderValue::from_bytes(&[0xff]).unwrap());
        assert_eq!(single(&h, "x"), Err(NotOne::NotText));
    }

    #[test]
    fn a_content_length_is_read_when_it_is_one_number() {
        let with = |v: &str| {
            let mut r = pingora::http::RequestHeader::build("POST", b"/", None).unwrap();
            r.insert_header("content-length", v).unwrap();
            content_length(&r)
        };
        assert_eq!(with("12"), Some(12));
        assert_eq!(with(" 7 "), Some(7));
        assert_eq!(with("x"), None);
        assert_eq!(with("-1"), None);
        let none = pingora::http::RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(content_length(&none), None);
    }

    #[test]
    fn numbers_read_as_display_writes_them() {
        for n in [0u64, 7, 10, 99, 100, 255, 1_000_000, u64::MAX] {
            let mut out = String::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn encoding_matches_the_percent_encoding_crate() {
        use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
        const SET: &AsciiSet = &CONTROLS.add(b'%');
        for s in [
            "plain",
            "a%b",
            "tab\there",
            "é ü\u{7f}",
            "\r\n",
            "x,y z",
            "",
        ] {
            let mut out = Vec::new();
            push_encoded(&mut out, s, None);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                utf8_percent_encode(s, SET).to_string()
            );
        }
    }

    #[test]
    fn unsafe_bytes_are_encoded() {
        assert_eq!(
            encode_header_value("a\r\nX-Evil: 1").to_str().unwrap(),
            "a%0D%0AX-Evil: 1"
        );
        assert_eq!(
            encode_header_value("Zoë 100%").to_str().unwrap(),
            "Zo%C3%AB 100%25"
        );
        assert_eq!(encode_header_value("nul\0").to_str().unwrap(), "nul%00");
    }

    #[test]
    fn lists_encode_their_delimiter() {
        assert_eq!(join_encoded(&["a", "b,c"], ','), "a,b%2Cc");
        assert_eq!(join_encoded(&["read all", "x"], ' '), "read%20all x");
        assert!(same_folded("x_auth-a", "x-auth-a") && !same_folded("x-auth", "x-autz"));
    }
}
