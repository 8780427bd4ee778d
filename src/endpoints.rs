//! Every URL the gateway answers itself, by its normalised path: the token service's endpoints and
//! browser sign-in's. A leaf, so configuration, the token service and sign-in all ask it.

/// The token service's endpoints, parsed once from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Authorize,
    Userinfo,
    Introspect,
    Revoke,
    Jwks,
    Metadata,
    /// dynamic client registration (RFC 7591), when `registration` is on
    Register,
}

impl Endpoint {
    /// The endpoint a path names, if any.
    pub fn parse(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/oauth/token" => Endpoint::Token,
            "/oauth/authorize" => Endpoint::Authorize,
            "/oauth/userinfo" => Endpoint::Userinfo,
            "/oauth/introspect" => Endpoint::Introspect,
            "/oauth/revoke" => Endpoint::Revoke,
            "/oauth/register" => Endpoint::Register,
            "/.well-known/jwks.json" => Endpoint::Jwks,
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
                Endpoint::Metadata
            }
            _ => return None,
        })
    }

    /// The methods it answers, as an `Allow` header lists them.
    pub fn allow(self) -> &'static str {
        match self {
            Endpoint::Jwks | Endpoint::Metadata => "GET, HEAD",
            Endpoint::Authorize | Endpoint::Userinfo => "GET, POST",
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke | Endpoint::Register => {
                "POST"
            }
        }
    }

    pub fn allows(self, method: &http::Method) -> bool {
        self.allow().split(", ").any(|m| m == method.as_str())
    }
}

/// The browser sign-in endpoints, parsed once from the normalised path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginEndpoint {
    Login,
    Logout,
    /// where external providers send the browser back
    Callback,
    /// where external providers post logout tokens
    BackchannelLogout,
}

impl LoginEndpoint {
    pub fn parse(path: &str) -> Option<LoginEndpoint> {
        match path {
            "/oauth/login" => Some(LoginEndpoint::Login),
            "/oauth/logout" => Some(LoginEndpoint::Logout),
            "/oauth/callback" => Some(LoginEndpoint::Callback),
            "/oauth/backchannel-logout" => Some(LoginEndpoint::BackchannelLogout),
            _ => None,
        }
    }
}

/// Where a session route sends a browser that is not signed in: the sign-in with the ways the route
/// allows, and the page to come back to.
pub fn login_url<'a>(
    rd: &str,
    logins: impl IntoIterator<Item = &'a str>,
    app: Option<&str>,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("rd", rd);
    q.append_pair("login", &logins.into_iter().collect::<Vec<_>>().join(","));
    if let Some(app) = app {
        q.append_pair("app", app);
    }
    format!("/oauth/login?{}", q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_endpoints_are_named_by_their_paths_and_methods() {
        assert_eq!(Endpoint::parse("/oauth/token"), Some(Endpoint::Token));
        assert_eq!(
            Endpoint::parse("/.well-known/openid-configuration"),
            Some(Endpoint::Metadata)
        );
        assert_eq!(
            Endpoint::parse("/.well-known/oauth-authorization-server"),
            Some(Endpoint::Metadata)
        );
        assert_eq!(Endpoint::parse("/oauth/token/"), None, "exact paths only");
        assert_eq!(Endpoint::parse("/oauth/login"), None);
        assert!(Endpoint::Token.allows(&http::Method::POST));
        assert!(!Endpoint::Token.allows(&http::Method::GET));
        assert!(Endpoint::Jwks.allows(&http::Method::HEAD));
        assert_eq!(Endpoint::Authorize.allow(), "GET, POST");
    }

    #[test]
    fn sign_in_endpoints_are_named_by_their_paths() {
        assert_eq!(
            LoginEndpoint::parse("/oauth/login"),
            Some(LoginEndpoint::Login)
        );
        assert_eq!(
            LoginEndpoint::parse("/oauth/backchannel-logout"),
            Some(LoginEndpoint::BackchannelLogout)
        );
        assert_eq!(LoginEndpoint::parse("/oauth/token"), None);
    }

    #[test]
    fn the_sign_in_address_carries_the_return_path_the_ways_and_the_app() {
        let ways = ["local", "corp"];
        assert_eq!(
            login_url("/app/x?a=1&b=2", ways, Some("wiki")),
            "/oauth/login?rd=%2Fapp%2Fx%3Fa%3D1%26b%3D2&login=local%2Ccorp&app=wiki"
        );
        assert_eq!(
            login_url("/", ["local"], None),
            "/oauth/login?rd=%2F&login=local"
        );
    }
}
