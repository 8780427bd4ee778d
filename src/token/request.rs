//! A token request as a value: the form read once into the grant it asks for, with that grant's
//! parameters checked, before any grant logic runs.

use super::{invalid_request, oauth, split_scopes, OAuthError, OAuthErrorCode};
use crate::config::GrantType;
use crate::wire::form::Params;

/// The grant a token request asks for, with what each one needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Grant {
    ClientCredentials,
    JwtBearer {
        assertion: String,
    },
    Password {
        username: String,
        password: String,
    },
    AuthorizationCode {
        code: String,
        verifier: String,
        /// required only when the authorization request sent one (RFC 6749 §4.1.3)
        redirect_uri: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
    },
}

/// A request to `/oauth/token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenRequest {
    pub grant: Grant,
    /// the scopes asked for; `None` when the request names none
    pub scope: Option<Vec<String>>,
    /// the protected resource the token is for (RFC 8707), as sent: the service judges it. One at
    /// most, since a repeated parameter is refused with the form.
    pub resource: Option<String>,
}

/// The grant type a form names: `invalid_request` without one, `unsupported_grant_type` for one
/// the service does not issue. Read before the rest, so a client that may not use the grant is told
/// that (`unauthorized_client`) rather than what the grant would have needed.
pub(super) fn grant_type(form: &Params) -> Result<GrantType, OAuthError> {
    let named = form
        .get("grant_type")
        .ok_or(invalid_request("grant_type is required"))?;
    GrantType::parse(named).ok_or(oauth(
        400,
        OAuthErrorCode::UnsupportedGrantType,
        "this grant type is not supported",
    ))
}

impl TokenRequest {
    /// The rest of a request for this grant type.
    pub(super) fn parse(grant_type: GrantType, form: &Params) -> Result<TokenRequest, OAuthError> {
        let need = |name: &str, missing: &'static str| {
            form.get(name).cloned().ok_or(invalid_request(missing))
        };
        let grant = match grant_type {
            GrantType::ClientCredentials => Grant::ClientCredentials,
            GrantType::JwtBearer => Grant::JwtBearer {
                assertion: need("assertion", "assertion is required")?,
            },
            GrantType::Password => Grant::Password {
                username: need("username", "username is required")?,
                password: need("password", "password is required")?,
            },
            GrantType::AuthorizationCode => Grant::AuthorizationCode {
                code: need("code", "code is required")?,
                verifier: verifier(need("code_verifier", "code_verifier is required")?)?,
                redirect_uri: form.get("redirect_uri").cloned(),
            },
            GrantType::RefreshToken => Grant::RefreshToken {
                refresh_token: need("refresh_token", "refresh_token is required")?,
            },
        };
        Ok(TokenRequest {
            grant,
            scope: form.get("scope").map(|s| split_scopes(s)),
            resource: form.get("resource").cloned(),
        })
    }
}

/// RFC 7636 §4.1: a code verifier is 43 to 128 unreserved characters.
fn verifier(v: String) -> Result<String, OAuthError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if (43..=128).contains(&v.len()) && v.bytes().all(unreserved) {
        return Ok(v);
    }
    Err(invalid_request(
        "code_verifier must be 43 to 128 unreserved characters",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_grant_gets_what_it_needs() {
        let f = form(&[("grant_type", "password"), ("username", "a")]);
        let g = grant_type(&f).unwrap();
        let e = TokenRequest::parse(g, &f).unwrap_err();
        assert_eq!(e.description, "password is required");
        let f = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "r"),
            ("scope", "a  b"),
        ]);
        let r = TokenRequest::parse(grant_type(&f).unwrap(), &f).unwrap();
        let expected = Grant::RefreshToken {
            refresh_token: "r".into(),
        };
        assert_eq!(
            (r.grant, r.scope, r.resource),
            (expected, Some(vec!["a".into(), "b".into()]), None)
        );
        let f = form(&[("grant_type", "client_credentials"), ("resource", "r")]);
        let r = TokenRequest::parse(grant_type(&f).unwrap(), &f).unwrap();
        assert_eq!(r.resource.as_deref(), Some("r"));
        let code = |v: &str| {
            let f = form(&[("code", "c"), ("code_verifier", v)]);
            TokenRequest::parse(GrantType::AuthorizationCode, &f).map(|r| r.grant)
        };
        assert!(code(&"a".repeat(43)).is_ok());
        assert!(code(&"a".repeat(42)).is_err());
        assert!(code(&format!("{}+", "a".repeat(43))).is_err());
    }

    #[test]
    fn a_missing_or_unknown_grant_type_has_its_own_code() {
        let missing = grant_type(&form(&[])).unwrap_err();
        assert_eq!(missing.code, OAuthErrorCode::InvalidRequest);
        let unknown = grant_type(&form(&[("grant_type", "implicit")])).unwrap_err();
        assert_eq!(unknown.code, OAuthErrorCode::UnsupportedGrantType);
    }
}
