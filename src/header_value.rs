//! Header values and names as the gateway writes and compares them: safe encoding, list joining,
//! `-`/`_` folding. No crate dependencies.

use http::HeaderValue;
use percent_encoding::{AsciiSet, CONTROLS};

/// Bytes outside printable ASCII, and `%` itself, are percent-encoded (CONFIG.md).
const UNSAFE: &AsciiSet = &CONTROLS.add(b'%');

/// A claim value that can never split a header or smuggle bytes: always a valid `HeaderValue`.
pub fn encode_header_value(s: &str) -> HeaderValue {
    let encoded = percent_encoding::utf8_percent_encode(s, UNSAFE).to_string();
    // CONTROLS covers 0x00-0x1F and 0x7F, utf8_percent_encode every byte >= 0x80: what is left is visible ASCII or space.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
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
    let escaped = match delimiter {
        ',' => "%2C",
        _ => "%20",
    };
    values
        .iter()
        .map(|v| {
            let e = encode_header_value(v.as_ref());
            e.to_str().unwrap_or_default().replace(delimiter, escaped)
        })
        .collect::<Vec<_>>()
        .join(&delimiter.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
