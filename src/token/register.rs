//! Dynamic client registration (RFC 7591) rules: which redirect URIs and metadata a client that
//! registers itself may have. Such a client is public and uses the authorization code with PKCE.

use super::TokenService;
use crate::config::Registration as Mode;
use crate::respond::{Answer, ErrorAnswer};
use crate::store::{run_blocking, RegisteredClient};
use crate::wire::request::Request;
use serde_json::{json, Value};

/// Every registered client's id starts so: it can never be taken for a configured client's.
pub const REGISTERED_PREFIX: &str = "reg-";

/// A redirect URI a self-registered or metadata-document client may use: https anywhere, http to
/// a loopback address on any port (RFC 8252 §7.3), or a private-use scheme of a native app
/// (`com.example.app:/cb`, RFC 8252 §7.1). Never a fragment, nor `javascript:`-like schemes.
pub fn redirect_allowed(uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => u.host_str().is_some_and(|h| !h.is_empty()),
        "http" => matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")),
        // a private-use scheme is a reversed domain name the app owns: it has a dot
        s => {
            s.contains('.')
                && uri
                    .get(s.len()..)
                    .is_some_and(|rest| rest.starts_with(":/"))
        }
    }
}

/// A client the gateway was never told about, as the token service uses it: public, no keys or
/// roles, the authorization code (and refresh when `refresh`), asking for any of `allowed` and by
/// default for `defaults`.
pub fn open_client(
    client_id: &str,
    redirect_uris: Vec<String>,
    refresh: bool,
    defaults: Vec<String>,
    allowed: &[String],
) -> crate::config::Client {
    use crate::config::GrantType;
    let mut grant_types = vec![GrantType::AuthorizationCode];
    if refresh {
        grant_types.push(GrantType::RefreshToken);
    }
    crate::config::Client {
        client_id: client_id.to_string(),
        secret: None,
        grant_types,
        default_scopes: defaults,
        scopes: allowed.to_vec(),
        roles: vec![],
        audience: vec![],
        redirect_uris,
        public: true,
        keys: crate::config::ClientKeys::None,
        exchange: Default::default(),
        jwt_bearer_subjects: vec![],
        id_token_alg: jsonwebtoken::Algorithm::RS256,
        allowed_origins: vec![],
        dpop_bound: false,
    }
}

/// Why a registration is refused (RFC 7591 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    RedirectUri(&'static str),
    Metadata(&'static str),
}

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Refused::RedirectUri(_) => "invalid_redirect_uri",
            Refused::Metadata(_) => "invalid_client_metadata",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Refused::RedirectUri(d) | Refused::Metadata(d) => d,
        }
    }
}

/// What a client asked to be registered as, after the rules: the values the response states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// only scopes in `registration_scopes` are kept; an unknown one is dropped (§3.2.1 lets the
    /// server replace a requested value, and the response says what was granted)
    pub scopes: Vec<String>,
    pub client_name: Option<String>,
}

/// Reads a registration request.
pub fn registration(doc: &Value, allowed_scopes: &[String]) -> Result<Registration, Refused> {
    let strings = |k: &str| -> Result<Option<Vec<String>>, Refused> {
        match doc.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or(Refused::Metadata("a list of strings was expected")),
            Some(_) => Err(Refused::Metadata("a list of strings was expected")),
        }
    };
    let redirect_uris = strings("redirect_uris")?
        .filter(|r| !r.is_empty())
        .ok_or(Refused::RedirectUri("redirect_uris is required"))?;
    if redirect_uris.iter().any(|r| !redirect_allowed(r)) {
        return Err(Refused::RedirectUri(
            "a redirect URI must be https, http to a loopback address, or a private-use scheme",
        ));
    }
    let method = doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str);
    if method.is_some_and(|m| m != "none") {
        return Err(Refused::Metadata(
            "only public clients register here: token_endpoint_auth_method must be none",
        ));
    }
    let grant_types = strings("grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if grant_types
        .iter()
        .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(Refused::Metadata(
            "only authorization_code and refresh_token may be registered",
        ));
    }
    let responses = strings("response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if responses.iter().any(|r| r != "code") {
        return Err(Refused::Metadata(
            "only the code response type may be registered",
        ));
    }
    let scopes = match doc.get("scope").and_then(Value::as_str) {
        Some(s) => super::split_scopes(s)
            .into_iter()
            .filter(|s| allowed_scopes.contains(s))
            .collect(),
        None => allowed_scopes.to_vec(),
    };
    let client_name = doc
        .get("client_name")
        .and_then(Value::as_str)
        .map(|n| n.chars().filter(|c| !c.is_control()).take(100).collect());
    Ok(Registration {
        redirect_uris,
        grant_types,
        scopes,
        client_name,
    })
}

/// The error answer of a refused registration (RFC 7591 §3.2.2).
fn refused(status: u16, code: &'static str, description: &'static str) -> ErrorAnswer {
    ErrorAnswer {
        status,
        code,
        description,
        headers: vec![],
    }
}

impl TokenService {
    /// `POST /oauth/register`: checks who may register, reads the request, keeps the client and
    /// answers 201 with what was registered.
    pub(super) async fn register(
        &self,
        http: &Request<'_>,
        cors: Vec<(&'static str, String)>,
    ) -> Answer {
        let with_cors = |mut e: ErrorAnswer| {
            e.headers.extend(cors.clone());
            Answer::Error(e)
        };
        if let Err(e) = self.may_register(http).await {
            return with_cors(e);
        }
        let Some(doc) = http.json().filter(Value::is_object) else {
            return with_cors(refused(
                400,
                "invalid_client_metadata",
                "the body must be a JSON object of client metadata",
            ));
        };
        let reg = match registration(&doc, self.directory.open_scopes()) {
            Ok(r) => r,
            Err(why) => return with_cors(refused(400, why.code(), why.description())),
        };
        let Ok(random) = crate::crypto::random_token(16) else {
            return with_cors(refused(
                503,
                "temporarily_unavailable",
                "no random values could be had",
            ));
        };
        let client = RegisteredClient {
            client_id: format!("{REGISTERED_PREFIX}{random}"),
            client_name: reg.client_name.clone(),
            redirect_uris: reg.redirect_uris.clone(),
            grant_types: reg.grant_types.clone(),
            scopes: reg.scopes.clone(),
            created_at: self.clock.now_secs(),
            disabled: false,
        };
        let kept = client.clone();
        if run_blocking(&self.store, move |s| s.put_client(&kept))
            .await
            .is_err()
        {
            return with_cors(refused(
                503,
                "temporarily_unavailable",
                "clients cannot be registered right now",
            ));
        }
        tracing::info!(target: "gatehouse::token", client = %client.client_id, "a client registered itself");
        self.audit.emit(|| {
            crate::audit::Event::client_registered(
                &client.client_id,
                client.client_name.as_deref(),
                &client.grant_types,
            )
        });
        Answer::json(201, cors, registered(&client).to_string())
    }

    /// Whether this request may register: the initial access token when one is configured, and
    /// the per-address rate.
    async fn may_register(&self, http: &Request<'_>) -> Result<(), ErrorAnswer> {
        if let Mode::Token(expected) = &self.settings.open_clients.registration {
            let sent = http
                .header_text("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or_default();
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                sent.as_bytes(),
                expected.0.as_bytes(),
            );
            if same.is_err() {
                let mut e = refused(
                    401,
                    "invalid_token",
                    "registration needs the initial access token",
                );
                let realm = format!("Bearer realm=\"{}\"", crate::respond::REALM);
                e.headers.push(("www-authenticate", realm));
                return Err(e);
            }
        }
        if !self.per_address.hit(&http.client_key()).await {
            let mut e = refused(
                429,
                "invalid_request",
                "too many requests from this address; slow down",
            );
            e.headers
                .push(("retry-after", self.per_address.retry_after().to_string()));
            return Err(e);
        }
        Ok(())
    }
}

/// The registration answer: the client as registered (RFC 7591 §3.2.1).
fn registered(client: &RegisteredClient) -> Value {
    let mut body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": client.scopes.join(" "),
    });
    if let (Some(name), Some(m)) = (&client.client_name, body.as_object_mut()) {
        m.insert("client_name".into(), name.clone().into());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redirects_are_https_loopback_or_private_use() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:49152/callback",
            "http://[::1]:8080/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(redirect_allowed(ok), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "https://app.example/cb#frag",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://user@app.example/cb",
            "not a url",
        ] {
            assert!(!redirect_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn registrations_are_public_code_clients_with_allowed_scopes() {
        let allowed = vec!["mcp".to_string()];
        let r = registration(
            &json!({"redirect_uris": ["http://127.0.0.1:5000/cb"], "scope": "mcp admin", "client_name": "Tool\u{7}"}),
            &allowed,
        )
        .unwrap();
        assert_eq!(r.scopes, allowed);
        assert_eq!(r.grant_types, vec!["authorization_code".to_string()]);
        assert_eq!(r.client_name.as_deref(), Some("Tool"));
        let refused = |d: Value| registration(&d, &allowed).unwrap_err();
        assert_eq!(refused(json!({})).code(), "invalid_redirect_uri");
        assert_eq!(
            refused(json!({"redirect_uris": ["http://evil.example/cb"]})).code(),
            "invalid_redirect_uri"
        );
        let cc = json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]});
        assert_eq!(refused(cc).code(), "invalid_client_metadata");
        let secret = json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"});
        assert_eq!(refused(secret).code(), "invalid_client_metadata");
        let implicit =
            json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]});
        assert_eq!(refused(implicit).code(), "invalid_client_metadata");
    }
}
