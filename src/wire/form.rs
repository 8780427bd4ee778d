//! The one form and query parser: `application/x-www-form-urlencoded` text into parameters, with one
//! rule for every endpoint.

use std::collections::HashMap;

/// Parameters by name, each sent once.
pub type Params = HashMap<String, String>;

/// Why a form or query cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    /// the body is not `application/x-www-form-urlencoded`
    NotForm,
    /// the body is larger than the gateway reads
    TooLarge,
    /// the body could not be read from the client
    Unreadable,
    /// a parameter came more than once
    Repeated,
}

impl FormError {
    /// What the client is told.
    pub fn description(self) -> &'static str {
        match self {
            FormError::NotForm => "the body must be application/x-www-form-urlencoded",
            FormError::TooLarge => "the request body is too large",
            FormError::Unreadable => "the request body could not be read",
            FormError::Repeated => "a parameter was sent more than once",
        }
    }
}

/// Parses form or query text. A repeated parameter is an error (RFC 6749 §3.1: parameters must not
/// be sent more than once, and a second value would be read differently by different parts), and a
/// parameter without a value counts as absent (`client_secret=` or `scope=` are as if not sent).
pub fn parse(text: &[u8]) -> Result<Params, FormError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text).filter(|(_, v)| !v.is_empty()) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(FormError::Repeated);
        }
    }
    Ok(out)
}

/// True when a `Content-Type` names a form (parameters after `;` allowed, any case).
pub fn is_form_type(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_refused_and_empty_values_are_absent() {
        assert_eq!(parse(b"a=1&b=2").map(|p| p.len()), Ok(2));
        assert_eq!(parse(b"a=1&a=2"), Err(FormError::Repeated));
        // an empty value is absent, so it repeats nothing
        assert_eq!(parse(b"a=&a=2").map(|p| p["a"].clone()), Ok("2".into()));
        let f = parse(b"scope=&client_secret=&grant_type=x").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f.get("grant_type").map(String::as_str), Some("x"));
        assert_eq!(parse(b"rd=%2Fa%3Fb%3D1+2").unwrap()["rd"], "/a?b=1 2");
    }

    #[test]
    fn a_form_type_may_carry_parameters() {
        assert!(is_form_type("application/x-www-form-urlencoded"));
        assert!(is_form_type(
            "Application/X-WWW-Form-Urlencoded; charset=utf-8"
        ));
        assert!(!is_form_type("application/json"));
        assert!(!is_form_type(""));
    }
}
