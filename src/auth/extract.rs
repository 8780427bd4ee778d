//! Finding the access token of a request where its route allows it: header (`Bearer` or `DPoP`),
//! query or cookie.

use super::jwt::TokenError::{self, Malformed};
use crate::config::TokenSources;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// Why no token could be taken from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// the request is ambiguous (two headers, two places): 400
    BadRequest(&'static str),
    /// the token is there but unusable: 401 invalid_token
    Malformed(TokenError),
}

/// A token as the request presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub token: Cow<'a, str>,
    /// sent as `Authorization: DPoP`, so a proof must come with it (RFC 9449 §7.1)
    pub dpop: bool,
}

impl std::ops::Deref for Presented<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.token
    }
}

/// True when a query parameter's name is one the route takes tokens from, as any backend may read
/// it: percent-decoded (`access%5Ftoken`), with `+` as a space, and folded as PHP folds names
/// (`access.token`, `access token` and an unclosed `access[token` become `access_token`;
/// `access_token[]` and `access_token[x]` fill the array `access_token`).
pub fn is_token_param(raw_name: &str, names: &[String]) -> bool {
    if !raw_name
        .bytes()
        .any(|b| matches!(b, b'%' | b'+' | b'.' | b'[' | b' '))
    {
        return names.iter().any(|n| n == raw_name);
    }
    let spaced = raw_name.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
    // PHP drops leading spaces, and an array's name ends at its first `[`
    let decoded = decoded.trim_start_matches(' ');
    let array = match decoded.split_once('[') {
        Some((base, rest)) if rest.contains(']') => Some(base),
        _ => None,
    };
    let folded: String = decoded
        .chars()
        .map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c })
        .collect();
    names
        .iter()
        .any(|n| *n == decoded || *n == folded || array.is_some_and(|a| a == n))
}

/// The token of the one `Authorization` header, and whether it came as `DPoP` (else `Bearer`).
fn header_token(
    req: &RequestHeader,
    max_bytes: usize,
) -> Result<Option<(&str, bool)>, ExtractError> {
    let mut values = req.headers.get_all("authorization").iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ExtractError::BadRequest(
            "more than one Authorization header",
        ));
    }
    if v.len() > max_bytes + 7 {
        return Err(ExtractError::Malformed(Malformed(
            "the token is longer than the gateway accepts",
        )));
    }
    let v = v
        .to_str()
        .map_err(|_| ExtractError::Malformed(Malformed("the Authorization header is not ASCII")))?;
    match v.split_once(' ') {
        Some((scheme, t)) if !t.trim().is_empty() && scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some((t.trim(), false)))
        }
        Some((scheme, t)) if !t.trim().is_empty() && scheme.eq_ignore_ascii_case("dpop") => {
            Ok(Some((t.trim(), true)))
        }
        _ => Err(ExtractError::Malformed(Malformed(
            "the Authorization header is not a Bearer or DPoP token",
        ))),
    }
}

/// Finds the token where the route allows it; two places, or two headers, are a bad request.
pub fn extract_token<'a>(
    req: &'a RequestHeader,
    from: &TokenSources,
    max_bytes: usize,
) -> Result<Option<Presented<'a>>, ExtractError> {
    let mut dpop = false;
    // At most one token may be found; a second is an error, so no list is needed.
    let mut token: Option<Cow<'a, str>> = None;
    let mut found = |t: Cow<'a, str>| {
        if token.replace(t).is_some() {
            Err(ExtractError::BadRequest(
                "the token was sent in more than one place",
            ))
        } else {
            Ok(())
        }
    };
    if from.header {
        if let Some((t, as_dpop)) = header_token(req, max_bytes)? {
            dpop = as_dpop;
            found(Cow::Borrowed(t))?;
        }
    }
    if !from.query.is_empty() {
        if let Some(q) = req.uri.query() {
            for pair in q.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if is_token_param(name, &from.query) {
                    found(percent_encoding::percent_decode_str(value).decode_utf8_lossy())?;
                }
            }
        }
    }
    if !from.cookie.is_empty() {
        for c in crate::wire::cookies::all(req) {
            if let (Some(value), true) = (c.value, from.cookie.iter().any(|n| n == c.name)) {
                found(Cow::Borrowed(value.trim_matches('"')))?;
            }
        }
    }
    if let Some(t) = &token {
        if t.len() > max_bytes {
            return Err(ExtractError::Malformed(Malformed(
                "the token is longer than the gateway accepts",
            )));
        }
        if t.is_empty() {
            return Err(ExtractError::Malformed(Malformed("the token is empty")));
        }
    }
    Ok(token.map(|token| Presented { token, dpop }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::testing::get as req;

    fn sources(header: bool, query: &[&str], cookie: &[&str]) -> TokenSources {
        TokenSources {
            header,
            query: query.iter().map(|s| s.to_string()).collect(),
            cookie: cookie.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_bearer_header_is_found_and_other_schemes_refused() {
        let all = sources(true, &[], &[]);
        let r = req("/", &[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(
            extract_token(&r, &all, 100).unwrap().as_deref(),
            Some("abc.def.ghi")
        );
        let r = req("/", &[("authorization", "bearer  x ")]);
        assert_eq!(extract_token(&r, &all, 100).unwrap().as_deref(), Some("x"));
        let r = req("/", &[("authorization", "DPoP abc.def.ghi")]);
        let p = extract_token(&r, &all, 100).unwrap().unwrap();
        assert_eq!((&*p, p.dpop), ("abc.def.ghi", true));
        let r = req("/", &[("authorization", "Bearer abc.def.ghi")]);
        assert!(!extract_token(&r, &all, 100).unwrap().unwrap().dpop);
        let r = req("/", &[("authorization", "Basic dXNlcg==")]);
        assert!(matches!(
            extract_token(&r, &all, 100),
            Err(ExtractError::Malformed(_))
        ));
        assert_eq!(extract_token(&req("/", &[]), &all, 100).unwrap(), None);
        let two = req(
            "/",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        assert_eq!(
            extract_token(&two, &all, 100),
            Err(ExtractError::BadRequest(
                "more than one Authorization header"
            ))
        );
    }

    #[test]
    fn query_and_cookie_tokens_count_once_and_names_are_decoded() {
        let s = sources(true, &["access_token"], &["session"]);
        let r = req("/x?a=1&access%5Ftoken=t%2E1", &[]);
        assert_eq!(extract_token(&r, &s, 100).unwrap().as_deref(), Some("t.1"));
        let r = req("/x", &[("cookie", "a=b; session=\"tok\"")]);
        assert_eq!(extract_token(&r, &s, 100).unwrap().as_deref(), Some("tok"));
        let both = req("/x?access_token=t", &[("authorization", "Bearer t")]);
        assert_eq!(
            extract_token(&both, &s, 100),
            Err(ExtractError::BadRequest(
                "the token was sent in more than one place"
            ))
        );
        let long = req("/x?access_token=0123456789", &[]);
        assert!(matches!(
            extract_token(&long, &s, 5),
            Err(ExtractError::Malformed(_))
        ));
        let empty = req("/x?access_token=", &[]);
        assert!(matches!(
            extract_token(&empty, &s, 5),
            Err(ExtractError::Malformed(_))
        ));
        // a source the route does not allow is not looked at
        let only_header = sources(true, &[], &[]);
        assert_eq!(
            extract_token(&req("/x?access_token=t", &[]), &only_header, 100).unwrap(),
            None
        );
        assert!(is_token_param(
            "access%5ftoken",
            &["access_token".to_string()]
        ));
    }

    #[test]
    fn names_a_backend_folds_into_the_token_parameter_count_as_it() {
        let names = ["access_token".to_string()];
        for n in [
            "access_token",
            "access.token",
            "access+token",
            "access%20token",
            "access%2Etoken",
            "access[token",
            "access_token[]",
            "access_token[x]",
            "access%5Btoken",
            "+access_token",
        ] {
            assert!(is_token_param(n, &names), "{n}");
        }
        for n in [
            "access-token",
            "accesstoken",
            "access_token2",
            "x[access_token]",
        ] {
            assert!(!is_token_param(n, &names), "{n}");
        }
        // beside a header token, a folded spelling is a second token
        let s = sources(true, &["access_token"], &[]);
        let both = req("/x?access.token=t", &[("authorization", "Bearer t")]);
        assert!(matches!(
            extract_token(&both, &s, 100),
            Err(ExtractError::BadRequest(_))
        ));
    }
}
