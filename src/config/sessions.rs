//! Compiles `[sessions]` (browser sign-in sessions) and `[[login_providers]]` (external OpenID
//! providers people sign in with).

use super::raw::{RawLoginProvider, RawSessions};
use super::*;
use std::fmt;

/// The largest logo the sign-in page inlines.
const MAX_LOGO_BYTES: u64 = 256 * 1024;
/// The shortest secret that seals sign-in state: as many bytes as the AES-256 key derived from it.
const MIN_STATE_SECRET: usize = 32;

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// where `/oauth/logout` lands: a path on the same host, or an absolute https URL
    pub after_logout: String,
    pub brand_name: String,
    /// the logo as a `data:` URI, inlined so the page loads nothing from elsewhere
    pub brand_logo: Option<String>,
    /// the organisation's own HTML around the sign-in card
    pub page_template: Option<Arc<str>>,
    /// what the pre-login cookie is sealed with, from `state_secret_env`; without it each process
    /// seals with a random key of its own
    pub state_secret: Option<SecretText>,
}

/// A value read from the environment that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// An external OpenID provider the gateway signs people in with, as a relying party.
#[derive(Debug, Clone)]
pub struct LoginProvider {
    pub name: String,
    /// the provider's exact issuer; discovery is read from `{issuer}/.well-known/openid-configuration`
    pub issuer: String,
    pub client_id: String,
    /// `client_secret_basic` when set; otherwise `private_key_jwt` signed by the gateway's key
    pub client_secret: Option<SecretText>,
    pub scopes: Vec<String>,
    /// the claim whose values become roles
    pub roles_claim: Option<ClaimPath>,
    /// lower-case email domains allowed to sign in; empty means any
    pub allowed_domains: Vec<String>,
    /// at least one of these must be among the roles; empty means any
    pub allowed_groups: Vec<String>,
    pub ca: Option<PathBuf>,
    /// how its ID tokens are checked: discovery, the JWKS cache, `aud` = the client id
    pub verify: Arc<Issuer>,
}

/// The algorithms a provider's ID token may be signed with (never HMAC or `none`).
const ID_TOKEN_ALGORITHMS: [jsonwebtoken::Algorithm; 9] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// A provider as an issuer of ID tokens, for the same key cache and checks as access tokens.
fn provider_issuer(id: IssuerId, r: &RawLoginProvider, ca: Option<PathBuf>) -> Issuer {
    Issuer {
        audiences: vec![r.client_id.clone()],
        algorithms: ID_TOKEN_ALGORITHMS.to_vec(),
        roles_claim: ClaimPath::new(r.roles_claim.as_deref().unwrap_or("roles")),
        ca,
        ..Issuer::described(
            id,
            format!("login:{}", r.name),
            r.issuer.clone(),
            KeySource::Discovery,
        )
    }
}

/// True for a URL the gateway may call without TLS: only on this machine.
fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// A cookie name as RFC 6265 allows it (a token).
fn cookie_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A same-host path (`/x`, never `//host` or `/\host`) or an absolute https URL.
pub fn after_logout_ok(target: &str) -> bool {
    if target.starts_with('/') {
        return !target.starts_with("//")
            && !target.starts_with("/\\")
            && !target.chars().any(char::is_control);
    }
    url::Url::parse(target).is_ok_and(|u| u.scheme() == "https" || loopback(&u))
}

impl Compiler {
    pub(super) fn sessions(&mut self, r: RawSessions) -> SessionSettings {
        let k = |f: &str| format!("sessions.{f}");
        if !cookie_name_ok(&r.cookie_name) {
            self.err(k("cookie_name"), "not a valid cookie name");
        }
        let idle_timeout = self.duration(&k("idle_timeout"), &r.idle_timeout);
        let absolute_timeout = self.duration(&k("absolute_timeout"), &r.absolute_timeout);
        if idle_timeout < Duration::from_secs(60) {
            self.err(k("idle_timeout"), "at least one minute");
        }
        if absolute_timeout < idle_timeout {
            self.err(
                k("absolute_timeout"),
                "must not be shorter than idle_timeout",
            );
        }
        if !after_logout_ok(&r.after_logout) {
            self.err(
                k("after_logout"),
                "a path on the same host (\"/\") or an absolute https URL",
            );
        }
        let brand_logo = r.brand_logo.as_deref().and_then(|p| {
            let path = self.path(p);
            match self.logo(&path) {
                Ok(uri) => Some(uri),
                Err(m) => {
                    self.err(k("brand_logo"), m);
                    None
                }
            }
        });
        let page_template = r.page_template.as_deref().and_then(|p| {
            let path = self.path(p);
            match std::fs::read_to_string(&path) {
                Ok(t) if t.contains(crate::pages::CONTENT) => Some(Arc::from(t)),
                Ok(_) => {
                    self.err(
                        k("page_template"),
                        "the template has no {{content}} for the card",
                    );
                    None
                }
                Err(e) => {
                    self.err(
                        k("page_template"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        });
        let state_secret = r
            .state_secret_env
            .as_deref()
            .and_then(|var| self.state_secret(&k("state_secret_env"), var));
        SessionSettings {
            state_secret,
            page_template,
            cookie_name: r.cookie_name,
            idle_timeout,
            absolute_timeout,
            after_logout: r.after_logout,
            brand_name: r.brand_name.unwrap_or_else(|| "gatehouse".into()),
            brand_logo,
        }
    }

    /// The secret named by `state_secret_env`, when it is set and long enough.
    fn state_secret(&mut self, key: &str, var: &str) -> Option<SecretText> {
        match std::env::var(var) {
            Ok(v) if v.len() >= MIN_STATE_SECRET => Some(SecretText(v)),
            Ok(v) if !v.is_empty() => {
                self.err(
                    key,
                    format!(
                        "environment variable {var} must hold at least {MIN_STATE_SECRET} bytes"
                    ),
                );
                None
            }
            _ => {
                self.err(key, format!("environment variable {var} is not set"));
                None
            }
        }
    }

    /// Reads a logo into a `data:` URI.
    fn logo(&self, path: &Path) -> Result<String, String> {
        use base64::Engine;
        let mime = match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("jpg" | "jpeg") => "image/jpeg",
            Some("webp") => "image/webp",
            _ => return Err("use an .svg, .png, .jpg or .webp file".into()),
        };
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        if size > MAX_LOGO_BYTES {
            return Err(format!("larger than {MAX_LOGO_BYTES} bytes"));
        }
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    pub(super) fn login_providers(&mut self, raw: Vec<RawLoginProvider>) -> Vec<LoginProvider> {
        let mut out: Vec<LoginProvider> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let k = |f: &str| format!("login_providers[{i}].{f}");
            if r.name.is_empty() {
                self.err(k("name"), "required");
            } else if LoginWay::is_local_name(&r.name) {
                self.err(
                    k("name"),
                    "\"local\" is reserved for the gateway's own users",
                );
            } else if out.iter().any(|p| p.name == r.name) {
                self.err(k("name"), format!("duplicate login provider {:?}", r.name));
            } else if !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.err(k("name"), "letters, digits, '-' and '_' only");
            }
            match url::Url::parse(&r.issuer) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && loopback(&u)) => {}
                _ => self.err(
                    k("issuer"),
                    "an https URL (http only on this machine); discovery reads {issuer}/.well-known/openid-configuration",
                ),
            }
            if r.client_id.is_empty() {
                self.err(
                    k("client_id"),
                    "required: the gateway's client id at the provider",
                );
            }
            let client_secret =
                r.client_secret_env
                    .as_ref()
                    .and_then(|var| match std::env::var(var) {
                        Ok(v) if !v.is_empty() => Some(SecretText(v)),
                        _ => {
                            self.err(
                                k("client_secret_env"),
                                format!("environment variable {var} is not set"),
                            );
                            None
                        }
                    });
            if !r.scopes.iter().any(|s| s == "openid") {
                self.err(k("scopes"), "must include \"openid\"");
            }
            let ca = r.ca.as_deref().map(|p| self.path(p));
            let verify = Arc::new(provider_issuer(IssuerId::at(out.len()), &r, ca.clone()));
            out.push(LoginProvider {
                verify,
                name: r.name,
                issuer: r.issuer,
                client_id: r.client_id,
                client_secret,
                scopes: r.scopes,
                roles_claim: r.roles_claim.as_deref().map(ClaimPath::new),
                allowed_domains: r
                    .allowed_domains
                    .iter()
                    .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                    .collect(),
                allowed_groups: r.allowed_groups,
                ca,
            });
        }
        out
    }

    /// Checks each session route's `login` names against the users and providers there are.
    pub(super) fn check_logins(
        &mut self,
        routes: &[Route],
        providers: &[LoginProvider],
        users: usize,
        token_service: bool,
    ) {
        for r in routes {
            let k = |f: &str| format!("routes[{}].{f}", r.id);
            if r.auth != AuthMode::Session {
                if !r.login.is_empty() {
                    self.err(
                        k("login"),
                        "only routes with auth = \"session\" sign people in",
                    );
                }
                continue;
            }
            if !token_service {
                self.err(
                    k("auth"),
                    "session routes need [token_service]: sessions live in its store",
                );
            }
            for (j, way) in r.login.iter().enumerate() {
                let key = if r.login_written {
                    format!("routes[{}].login[{j}]", r.id)
                } else {
                    k("login")
                };
                let name = match way {
                    LoginWay::Local if users == 0 => {
                        self.err(key, "\"local\" signs in [[users]], and none is declared");
                        continue;
                    }
                    LoginWay::Local => continue,
                    LoginWay::Provider(name) => name,
                };
                if !providers.iter().any(|p| &p.name == name) {
                    let known: Vec<_> = providers.iter().map(|p| p.name.as_str()).collect();
                    self.err(
                        key,
                        format!(
                            "no login provider named {name:?} (known: local{}{})",
                            if known.is_empty() { "" } else { ", " },
                            known.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};
    use super::*;

    const TS: &str = "\n[token_service]\nenabled = true\nsigning_keys = [\"k.pem\"]\n";
    const USER: &str = "\n[[users]]\nusername = \"a@example.com\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$eDo7vo4oU6L522g5y2fRXg$ndSyIDFKxtk0IoPRK6aA4ntZ7YFPOwWvG7O3CpDa0VQ\"\n";

    fn session_route(extra: &str) -> String {
        format!("{BASE}\n[[routes]]\npath_prefix = \"/app\"\nupstream = \"u\"\nauth = \"session\"\n{extra}\n")
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = compile(BASE).unwrap();
        assert_eq!(c.sessions.cookie_name, "__Host-gatehouse");
        assert_eq!(c.sessions.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.sessions.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.sessions.after_logout, "/");
    }

    #[test]
    fn session_routes_need_the_token_service_and_known_logins() {
        refused(
            &session_route(USER),
            "routes[1].auth",
            "need [token_service]",
        );
        refused(&session_route(TS), "routes[1].login", "none is declared");
        refused(
            &format!("{}{TS}{USER}", session_route("login = [\"corp\"]")),
            "routes[1].login[0]",
            "no login provider named \"corp\"",
        );
        let ok = compile(&format!("{}{TS}{USER}", session_route(""))).unwrap();
        assert_eq!(ok.routes[1].auth, AuthMode::Session);
        assert_eq!(ok.routes[1].login, vec![LoginWay::Local]);
        // the test configuration has no TLS listener: the check says the cookie needs one
        assert!(ok
            .warnings()
            .iter()
            .any(|w| w.starts_with("routes[1].auth: session cookies are Secure")));
        refused(
            &format!("{BASE}\n[[routes]]\npath_prefix = \"/x\"\nupstream = \"u\"\nlogin = \"local\"\n{TS}{USER}"),
            "routes[1].login",
            "only routes with auth = \"session\"",
        );
    }

    #[test]
    fn providers_are_checked() {
        let p = |body: &str| format!("{BASE}\n[[login_providers]]\n{body}\n");
        refused(
            &p("name = \"local\""),
            "login_providers[0].name",
            "reserved",
        );
        refused(
            &p("name = \"corp\"\nissuer = \"http://idp.example.com\"\nclient_id = \"g\""),
            "login_providers[0].issuer",
            "https",
        );
        refused(
            &p("name = \"corp\"\nissuer = \"https://idp.example.com\""),
            "login_providers[0].client_id",
            "required",
        );
        refused(
            &p("name = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"g\"\nscopes = [\"email\"]"),
            "login_providers[0].scopes",
            "openid",
        );
        refused(
            &p("name = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"g\"\nclient_secret_env = \"GATEHOUSE_TEST_UNSET_VARIABLE\""),
            "login_providers[0].client_secret_env",
            "is not set",
        );
        let c = compile(&p(
            "name = \"corp\"\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"g\"\nallowed_domains = [\"@Example.COM\"]",
        ))
        .unwrap();
        assert_eq!(c.login_providers[0].allowed_domains, vec!["example.com"]);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // variables of its own, which no other test reads
    fn session_settings_are_checked() {
        let s = |body: &str| format!("{BASE}\n[sessions]\n{body}\n");
        refused(&s("cookie_name = \"a b\""), "sessions.cookie_name", "valid");
        refused(
            &s("idle_timeout = \"10s\""),
            "sessions.idle_timeout",
            "one minute",
        );
        refused(
            &s("idle_timeout = \"2h\"\nabsolute_timeout = \"1h\""),
            "sessions.absolute_timeout",
            "shorter",
        );
        refused(
            &s("after_logout = \"//evil.example\""),
            "sessions.after_logout",
            "same host",
        );
        refused(
            &s("state_secret_env = \"GATEHOUSE_TEST_UNSET_VARIABLE\""),
            "sessions.state_secret_env",
            "is not set",
        );
        std::env::set_var("GATEHOUSE_TEST_SHORT_STATE_SECRET", "short");
        refused(
            &s("state_secret_env = \"GATEHOUSE_TEST_SHORT_STATE_SECRET\""),
            "sessions.state_secret_env",
            "at least 32 bytes",
        );
        std::env::set_var("GATEHOUSE_TEST_STATE_SECRET", "x".repeat(32));
        let c = compile(&s("state_secret_env = \"GATEHOUSE_TEST_STATE_SECRET\"")).unwrap();
        assert_eq!(c.sessions.state_secret, Some(SecretText("x".repeat(32))));
        assert!(!format!("{:?}", c.sessions).contains("xxxx"));
        assert_eq!(compile(BASE).unwrap().sessions.state_secret, None);
        refused(
            &s("brand_logo = \"logo.gif\""),
            "sessions.brand_logo",
            ".svg",
        );
        assert!(after_logout_ok("/bye?x=1"));
        assert!(after_logout_ok("https://www.example.com/"));
        assert!(!after_logout_ok("/\\evil.example"));
        assert!(!after_logout_ok("javascript:alert(1)"));
        assert!(!after_logout_ok("http://evil.example/"));
    }
}
