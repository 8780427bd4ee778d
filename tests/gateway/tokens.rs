//! The built-in authorization server: client authentication, grants, scopes, introspection,
//! revocation enforced by the proxy (also after a restart), key rotation, lockout and the CLI.

use crate::support::harness::{Gw, Resp};
use crate::support::keys::{now, TestKey};
use crate::support::servers::Echo;
use serde_json::{json, Value};

pub const SVC_SECRET: &str = "svc-secret-0123456789abcdef0123456789abcdef";
pub const LEGACY_SECRET: &str = "legacy-secret-0123456789abcdef0123456789ab";
pub const ALICE_PASSWORD: &str = "correct horse battery staple";

pub fn sha256(s: &str) -> String {
    gatehouse::token::sha256_hash(s)
}

/// A gateway with the token service, five clients and two routes that trust only its own tokens.
pub struct Auth {
    pub gw: Gw,
    pub echo: Echo,
    pub client_key: TestKey,
}

pub fn auth_toml(echo: &Echo, store: &str, extra: &str) -> String {
    format!(
        r#"
[token_service]
issuer = "https://auth.gatehouse.test"
audience = ["api"]
access_token_ttl = "10m"
signing_keys = ["keys/signing.pem"]

[store]
{store}

[rate_limit]
token_endpoint = "1000/s"
failed_auth_lockout = "5/5m"

[[clients]]
client_id = "svc"
secret_hash = "{svc}"
scopes = ["orders.read", "orders.write"]
default_scopes = ["orders.read"]
roles = ["service"]

[[clients]]
client_id = "argon"
secret_hash = "{argon}"
scopes = ["orders.read"]

[[clients]]
client_id = "bcrypt"
secret_hash = "{bcrypt}"
scopes = ["orders.read"]

[[clients]]
client_id = "signer"
public_keys = ["keys/signer.pub.pem"]
grant_types = ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
scopes = ["orders.read"]
jwt_bearer_subjects = ["alice", "svc-*"]

[[clients]]
client_id = "legacy"
secret_hash = "{legacy}"
grant_types = ["password", "refresh_token"]
scopes = ["openid", "profile", "email", "orders.read"]
default_scopes = ["orders.read"]

[[users]]
username = "alice@example.com"
password_hash = "{alice}"
subject = "user-alice"
roles = ["admin"]
claims = {{ email = "alice@example.com", name = "Alice" }}

[[clients]]
client_id = "browser"
public = true
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["https://app.example/cb", "http://127.0.0.1:9/other"]
scopes = ["openid", "profile", "orders.read"]

[[clients]]
client_id = "browser2"
public = true
grant_types = ["authorization_code"]
redirect_uris = ["https://app.example/cb"]
scopes = ["orders.read"]

[[upstreams]]
name = "echo"
peers = ["{echo}"]

[[routes]]
path_prefix = "/api"
upstream = "echo"
issuers = ["self"]
scopes_all = ["orders.read"]
{extra}
"#,
        svc = sha256(SVC_SECRET),
        argon = gatehouse::token::argon2_hash("argon-secret").unwrap(),
        bcrypt = bcrypt::hash("bcrypt-secret", 4).unwrap(),
        legacy = sha256(LEGACY_SECRET),
        alice = bcrypt::hash(ALICE_PASSWORD, 4).unwrap(),
        echo = echo.addr,
    )
}

impl Auth {
    pub async fn start() -> Auth {
        Self::start_with("backend = \"memory\"", "").await
    }

    pub async fn start_with(store: &str, extra: &str) -> Auth {
        Self::start_edited(store, extra, |t| t).await
    }

    /// Starts with the configuration passed through `edit` first.
    pub async fn start_edited(
        store: &str,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Auth {
        Self::start_on(crate::support::harness::free_port(), store, extra, edit).await
    }

    /// Starts with a chosen TLS port, for configurations that must name the gateway's own URL;
    /// `edit` sees the whole file, `[server]` included.
    pub async fn start_on(
        tls: u16,
        store: &str,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Auth {
        let echo = Echo::start("echo").await;
        let client_key = TestKey::rsa("signer-1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(
            dir.path().join("keys/signer.pub.pem"),
            &client_key.public_pem,
        )
        .unwrap();
        let gw = Gw::start_on_edited(dir, &auth_toml(&echo, store, extra), tls, edit);
        Auth {
            gw,
            echo,
            client_key,
        }
    }

    /// Stops the gateway and starts it again on the same files (keys, SQLite store), with the
    /// configuration for `store` passed through `edit`.
    pub fn restart(self, store: &str, edit: impl FnOnce(String) -> String) -> Auth {
        self.restart_with(store, "", edit)
    }

    /// `restart` with `extra` after the base configuration, as `start_with` takes it.
    pub fn restart_with(
        self,
        store: &str,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Auth {
        let Auth {
            gw,
            echo,
            client_key,
        } = self;
        let dir = gw.stop();
        Auth {
            gw: Gw::start_in(dir, &edit(auth_toml(&echo, store, extra))),
            echo,
            client_key,
        }
    }

    /// A client_credentials request with Basic credentials.
    pub async fn client_credentials(&self, id: &str, secret: &str) -> Resp {
        self.post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some((id, secret)),
        )
        .await
    }

    pub fn token_url(&self) -> String {
        format!("https://localhost:{}/oauth/token", self.gw.tls.port())
    }

    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Resp {
        let mut rb = self
            .gw
            .https
            .post(format!("https://localhost:{}{path}", self.gw.tls.port()))
            .form(form);
        if let Some((u, p)) = basic {
            rb = rb.basic_auth(u, Some(p));
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn svc_token(&self, scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self
            .post("/oauth/token", &form, Some(("svc", SVC_SECRET)))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    /// A client assertion signed by the `signer` client's key.
    pub fn assertion(&self, sub: &str, aud: &str, exp_in: i64, jti: &str) -> String {
        let c = json!({"iss": "signer", "sub": sub, "aud": aud, "exp": (now() as i64 + exp_in) as u64,
                       "iat": now(), "jti": jti});
        self.client_key.sign(&c)
    }
}

pub fn oauth_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["error"], code, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.header("pragma").as_deref(), Some("no-cache"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_oauth_client_gets_a_token_the_proxy_accepts() {
    use oauth2::basic::BasicClient;
    use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
    let a = Auth::start().await;
    let client = BasicClient::new(ClientId::new("svc".into()))
        .set_client_secret(ClientSecret::new(SVC_SECRET.into()))
        .set_token_uri(TokenUrl::new(a.token_url()).unwrap());
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("orders.read".into()))
        .request_async(&a.gw.https)
        .await
        .unwrap();
    let access = token.access_token().secret().clone();
    assert_eq!(token.scopes().unwrap()[0].as_str(), "orders.read");
    assert!(token.expires_in().unwrap().as_secs() <= 600);

    // RFC 9068 shape
    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&access).unwrap();
    for k in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "roles",
    ] {
        assert!(claims.get(k).is_some(), "missing {k}: {claims}");
    }
    assert_eq!(claims["sub"], "svc");

    let r = a.gw.get("/api/orders", Some(&access)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-client-id").as_deref(), Some("svc"));
    assert_eq!(r.echoed("x-auth-roles").as_deref(), Some("service"));
    assert_eq!(r.echoed("x-auth-scopes").as_deref(), Some("orders.read"));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_and_every_secret_format() {
    let a = Auth::start().await;
    for (id, secret) in [
        ("svc", SVC_SECRET),
        ("argon", "argon-secret"),
        ("bcrypt", "bcrypt-secret"),
    ] {
        let r = a
            .post(
                "/oauth/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", secret),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{id}: {}", r.body);
        assert_eq!(r.json()["token_type"], "Bearer");
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_clients_and_wrong_secrets_get_the_same_answer() {
    let a = Auth::start().await;
    let wrong = a
        .post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("svc", "nope")),
        )
        .await;
    let unknown = a
        .post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("ghost", "nope")),
        )
        .await;
    oauth_error(&wrong, 401, "invalid_client");
    oauth_error(&unknown, 401, "invalid_client");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(
        wrong.header("www-authenticate").as_deref(),
        Some("Basic realm=\"gatehouse\"")
    );
    let post = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "svc"),
                ("client_secret", "x"),
            ],
            None,
        )
        .await;
    oauth_error(&post, 401, "invalid_client");
    // RFC 6749 §5.2: a 401 says how to authenticate, whichever method was tried
    assert_eq!(
        post.header("www-authenticate").as_deref(),
        Some("Basic realm=\"gatehouse\"")
    );
    // a public client cannot use client_credentials
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "browser"),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_token_requests_get_rfc_6749_codes() {
    let a = Auth::start().await;
    let creds = Some(("svc", SVC_SECRET));
    let r = Resp::from(a.gw.https.get(a.token_url()).send().await.unwrap()).await;
    assert_eq!(r.status, 405);
    let r = Resp::from(
        a.gw.https
            .post(a.token_url())
            .basic_auth("svc", Some(SVC_SECRET))
            .header("content-type", "application/json")
            .body(r#"{"grant_type":"client_credentials"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    oauth_error(&r, 400, "invalid_request");
    let r = Resp::from(
        a.gw.https
            .post(a.token_url())
            .basic_auth("svc", Some(SVC_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&grant_type=client_credentials")
            .send()
            .await
            .unwrap(),
    )
    .await;
    oauth_error(&r, 400, "invalid_request");
    oauth_error(
        &a.post("/oauth/token", &[("scope", "orders.read")], creds)
            .await,
        400,
        "invalid_request",
    );
    oauth_error(
        &a.post("/oauth/token", &[("grant_type", "magic")], creds)
            .await,
        400,
        "unsupported_grant_type",
    );
    oauth_error(
        &a.post(
            "/oauth/token",
            &[("grant_type", JWT_BEARER), ("assertion", "x")],
            creds,
        )
        .await,
        400,
        "unauthorized_client",
    );
    oauth_error(
        &a.post(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders.read admin"),
            ],
            creds,
        )
        .await,
        400,
        "invalid_scope",
    );
    // two authentication methods at once
    oauth_error(
        &a.post(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "svc"),
                ("client_secret", SVC_SECRET),
            ],
            creds,
        )
        .await,
        400,
        "invalid_request",
    );
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[tokio::test(flavor = "multi_thread")]
async fn scopes_default_and_narrow_and_the_proxy_judges_them() {
    let a = Auth::start().await;
    let default = a.svc_token(None).await;
    assert_eq!(a.gw.get("/api/x", Some(&default)).await.status, 200);
    let write_only = a.svc_token(Some("orders.write")).await;
    let r = a.gw.get("/api/x", Some(&write_only)).await;
    assert_eq!(r.status, 403);
    assert!(r.challenge().contains("scope=\"orders.read\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_authenticates_once_per_assertion() {
    let a = Auth::start().await;
    let ok = a.assertion("signer", &a.token_url(), 60, "jti-1");
    let form = |assertion: &str| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            (
                "client_assertion_type".to_string(),
                ASSERTION_TYPE.to_string(),
            ),
            ("client_assertion".to_string(), assertion.to_string()),
        ]
    };
    let send = |f: Vec<(String, String)>| {
        let a = &a;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            a.post("/oauth/token", &f, None).await
        }
    };
    let r = send(form(&ok)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json()["access_token"].as_str().unwrap().to_string();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&t).unwrap();
    assert_eq!(claims["client_id"], "signer");
    // replayed
    oauth_error(&send(form(&ok)).await, 401, "invalid_client");
    // signed by another key
    let forger = TestKey::rsa("signer-1");
    let c = json!({"iss": "signer", "sub": "signer", "aud": a.token_url(), "exp": now() + 60, "jti": "jti-2"});
    oauth_error(&send(form(&forger.sign(&c))).await, 401, "invalid_client");
    // wrong audience, too long a life, no jti
    oauth_error(
        &send(form(&a.assertion(
            "signer",
            "https://elsewhere/token",
            60,
            "jti-3",
        )))
        .await,
        401,
        "invalid_client",
    );
    // an hour ahead is what Authlib, Okta and Google use: accepted (max_assertion_lifetime);
    // further is refused, saying why
    let hour = send(form(&a.assertion("signer", &a.token_url(), 3600, "jti-4"))).await;
    assert_eq!(hour.status, 200, "{}", hour.body);
    let far = send(form(&a.assertion("signer", &a.token_url(), 7200, "jti-5"))).await;
    oauth_error(&far, 401, "invalid_client");
    assert_eq!(
        far.json()["error_description"],
        "the assertion's exp is too far ahead"
    );
    assert_eq!(
        far.header("www-authenticate").as_deref(),
        Some("Basic realm=\"gatehouse\"")
    );
    oauth_error(
        &send(form(&a.assertion("signer", &a.token_url(), 60, ""))).await,
        401,
        "invalid_client",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jwt_bearer_grant_acts_for_the_asserted_subject() {
    let a = Auth::start().await;
    let client_auth = a.assertion("signer", &a.token_url(), 60, "auth-1");
    let grant = a.assertion("alice", &a.token_url(), 60, "grant-1");
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", grant.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", client_auth.as_str()),
    ];
    let r = a.post("/oauth/token", &form, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json()["access_token"].as_str().unwrap().to_string();
    let up = a.gw.get("/api/x", Some(&t)).await;
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(up.echoed("x-auth-client-id").as_deref(), Some("signer"));
    // the same grant assertion again is invalid_grant
    let client_auth = a.assertion("signer", &a.token_url(), 60, "auth-2");
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", grant.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", client_auth.as_str()),
    ];
    oauth_error(
        &a.post("/oauth/token", &form, None).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_and_revocation_enforced_by_the_proxy_at_once() {
    let a = Auth::start().await;
    let t = a.svc_token(None).await;
    assert_eq!(a.gw.get("/api/x", Some(&t)).await.status, 200);
    let creds = Some(("svc", SVC_SECRET));
    let r = a
        .post("/oauth/introspect", &[("token", t.as_str())], creds)
        .await;
    assert_eq!(r.json()["active"], true, "{}", r.body);
    assert_eq!(r.json()["client_id"], "svc");
    // introspection needs client authentication
    oauth_error(
        &a.post("/oauth/introspect", &[("token", t.as_str())], None)
            .await,
        401,
        "invalid_client",
    );
    // another client cannot revoke it
    oauth_error(
        &a.post(
            "/oauth/revoke",
            &[("token", t.as_str())],
            Some(("bcrypt", "bcrypt-secret")),
        )
        .await,
        400,
        "unauthorized_client",
    );
    let r = a
        .post("/oauth/revoke", &[("token", t.as_str())], creds)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().contains("revoked"), "{}", r.challenge());
    assert_eq!(
        a.post("/oauth/introspect", &[("token", t.as_str())], creds)
            .await
            .json(),
        json!({"active": false})
    );
    // unknown tokens: revocation answers 200, introspection inactive
    assert_eq!(
        a.post("/oauth/revoke", &[("token", "garbage")], creds)
            .await
            .status,
        200
    );
    assert_eq!(
        a.post("/oauth/introspect", &[("token", "garbage")], creds)
            .await
            .json(),
        json!({"active": false})
    );
}
