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
    /// RFC 8693 token exchange
    TokenExchange(Box<Exchange>),
}

/// RFC 8693 §3: the token types an exchange takes and issues. Every token here is a JWT access
/// token, so either name fits it.
pub(super) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(super) const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// What a token-exchange request names (RFC 8693 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exchange {
    pub subject_token: String,
    /// the party acting for the subject, when it is not the client itself
    pub actor_token: Option<String>,
    /// the logical name of the target service, when the request names one
    pub audience: Option<String>,
    /// the type the answer says it issued: the one asked for, else an access token
    pub issued_token_type: &'static str,
    /// the client asks for a token without `act` (impersonation; `impersonate=true`)
    pub impersonate: bool,
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
            GrantType::TokenExchange => Grant::TokenExchange(Box::new(exchange(form)?)),
        };
        Ok(TokenRequest {
            grant,
            scope: form.get("scope").map(|s| split_scopes(s)),
            resource: form.get("resource").cloned(),
        })
    }
}

/// The token types this service takes and issues, as one of its constants.
fn token_type(t: &str) -> Option<&'static str> {
    [ACCESS_TOKEN_TYPE, JWT_TYPE].into_iter().find(|k| *k == t)
}

/// The parameters of a token exchange, each checked (RFC 8693 §2.1): a subject token of a type
/// this service takes, an actor token only with its type, a known requested type.
fn exchange(form: &Params) -> Result<Exchange, OAuthError> {
    let subject_token = form
        .get("subject_token")
        .cloned()
        .ok_or(invalid_request("subject_token is required"))?;
    let typed = |t: Option<&String>, missing: &'static str| match t {
        None => Err(invalid_request(missing)),
        Some(t) => token_type(t).ok_or(invalid_request(
            "token types are urn:ietf:params:oauth:token-type:access_token or …:jwt",
        )),
    };
    typed(
        form.get("subject_token_type"),
        "subject_token_type is required",
    )?;
    let actor_token = form.get("actor_token").cloned();
    match (&actor_token, form.get("actor_token_type")) {
        (Some(_), t) => {
            typed(t, "actor_token_type is required with actor_token")?;
        }
        (None, Some(_)) => {
            return Err(invalid_request("actor_token_type needs an actor_token"));
        }
        (None, None) => {}
    }
    let issued_token_type = match form.get("requested_token_type") {
        None => ACCESS_TOKEN_TYPE,
        t => typed(t, "")?,
    };
    if form.contains_key("audience") && form.contains_key("resource") {
        return Err(invalid_request(
            "name the target by audience or by resource, not both",
        ));
    }
    let impersonate = match form.get("impersonate").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(invalid_request("impersonate is true or false")),
    };
    Ok(Exchange {
        subject_token,
        actor_token,
        audience: form.get("audience").cloned(),
        issued_token_type,
        impersonate,
    })
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
    fn an_exchange_names_typed_tokens() {
        let ex = |pairs: &[(&str, &str)]| {
            let mut f = form(&[
                ("subject_token", "s"),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ]);
            for (k, v) in pairs {
                f.insert(k.to_string(), v.to_string());
            }
            TokenRequest::parse(GrantType::TokenExchange, &f).map(|r| r.grant)
        };
        let Ok(Grant::TokenExchange(plain)) = ex(&[]) else {
            panic!("a subject token is enough")
        };
        assert_eq!(plain.issued_token_type, ACCESS_TOKEN_TYPE);
        assert!(!plain.impersonate && plain.actor_token.is_none());
        let Ok(Grant::TokenExchange(full)) = ex(&[
            ("actor_token", "a"),
            ("actor_token_type", JWT_TYPE),
            ("requested_token_type", JWT_TYPE),
            ("audience", "orders"),
        ]) else {
            panic!("every parameter")
        };
        assert_eq!(
            (full.actor_token.as_deref(), full.audience.as_deref()),
            (Some("a"), Some("orders"))
        );
        assert_eq!(full.issued_token_type, JWT_TYPE);
        for (bad, why) in [
            (vec![("subject_token_type", "urn:x")], "token types are"),
            (vec![("actor_token", "a")], "actor_token_type is required"),
            (vec![("actor_token_type", JWT_TYPE)], "needs an actor_token"),
            (
                vec![(
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                )],
                "token types are",
            ),
            (vec![("impersonate", "yes")], "true or false"),
            (
                vec![("audience", "a"), ("resource", "https://r.test")],
                "not both",
            ),
        ] {
            let e = ex(&bad).unwrap_err();
            assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
            assert!(e.description.contains(why), "{bad:?}: {}", e.description);
        }
        let missing = TokenRequest::parse(GrantType::TokenExchange, &form(&[])).unwrap_err();
        assert_eq!(missing.description, "subject_token is required");
    }

    #[test]
    fn a_missing_or_unknown_grant_type_has_its_own_code() {
        let missing = grant_type(&form(&[])).unwrap_err();
        assert_eq!(missing.code, OAuthErrorCode::InvalidRequest);
        let unknown = grant_type(&form(&[("grant_type", "implicit")])).unwrap_err();
        assert_eq!(unknown.code, OAuthErrorCode::UnsupportedGrantType);
    }
}
