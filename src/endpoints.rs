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
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => "POST",
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
