//! The built-in authorization server: client authentication, grants, scopes, introspection,
//! revocation enforced by the proxy (also after a restart), key rotation, lockout and the CLI.

use crate::harness::{Gw, Resp};
use crate::keys::{now, TestKey};
use crate::servers::Echo;
use serde_json::{json, Value};

pub const SVC_SECRET: &str = "svc-secret-0123456789abcdef0123456789abcdef";
pub const LEGACY_SECRET: &str = "legacy-secret-0123456789abcdef0123456789ab";
pub const ALICE_PASSWORD: &str = "correct horse battery staple";

fn sha256(s: &str) -> String {
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
        let echo = Echo::start("echo").await;
        let client_key = TestKey::rsa("signer-1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(
            dir.path().join("keys/signer.pub.pem"),
            &client_key.public_pem,
        )
        .unwrap();
        let gw = Gw::start_in(dir, &edit(auth_toml(&echo, store, extra)));
        Auth {
            gw,
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
    assert_eq!(post.header("www-authenticate"), None);
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
    oauth_error(
        &send(form(&a.assertion("signer", &a.token_url(), 3600, "jti-4"))).await,
        401,
        "invalid_client",
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

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_survives_a_restart_on_the_same_sqlite_file() {
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/gatehouse.db\"", "").await;
    let t = a.svc_token(None).await;
    let keep = a.svc_token(None).await;
    assert_eq!(
        a.post(
            "/oauth/revoke",
            &[("token", t.as_str())],
            Some(("svc", SVC_SECRET))
        )
        .await
        .status,
        200
    );
    let echo = a.echo.clone();
    let dir = a.gw.stop();
    assert!(dir.path().join("data/gatehouse.db").exists());
    let gw = Gw::start_in(
        dir,
        &auth_toml(
            &echo,
            "backend = \"sqlite\"\npath = \"data/gatehouse.db\"",
            "",
        ),
    );
    assert_eq!(gw.get("/api/x", Some(&t)).await.status, 401);
    // the signing key survived too: other tokens still pass
    assert_eq!(gw.get("/api/x", Some(&keep)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_metadata_and_key_rotation() {
    let a = Auth::start().await;
    let old = a.svc_token(None).await;
    let r = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/.well-known/jwks.json",
                a.gw.tls.port()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("cache-control").unwrap().contains("max-age="));
    let kid = r.json()["keys"][0]["kid"].as_str().unwrap().to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&old).unwrap().kid.as_deref(),
        Some(kid.as_str())
    );
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m = Resp::from(
            a.gw.https
                .get(format!("https://localhost:{}{path}", a.gw.tls.port()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(m.json()["token_endpoint"], a.token_url(), "{}", m.body);
        assert!(m.json()["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "client_credentials"));
    }
    // rotation: a new key first, the old one still listed
    let echo = a.echo.clone();
    let dir = a.gw.stop();
    let toml = auth_toml(&echo, "backend = \"memory\"", "").replace(
        "signing_keys = [\"keys/signing.pem\"]",
        "signing_keys = [\"keys/signing-2.pem\", \"keys/signing.pem\"]",
    );
    let gw = Gw::start_in(dir, &toml);
    assert_eq!(
        gw.get("/api/x", Some(&old)).await.status,
        200,
        "a token of the old key must still pass"
    );
    let jwks: Value = gw
        .https
        .get(format!(
            "https://localhost:{}/.well-known/jwks.json",
            gw.tls.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_lock_the_client_out() {
    let a = Auth::start().await;
    for _ in 0..5 {
        oauth_error(
            &a.post(
                "/oauth/token",
                &[("grant_type", "client_credentials")],
                Some(("svc", "wrong")),
            )
            .await,
            401,
            "invalid_client",
        );
    }
    let r = a
        .post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    // the window passes
    a.gw.clock.advance(std::time::Duration::from_secs(301));
    assert_eq!(
        a.post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("svc", SVC_SECRET))
        )
        .await
        .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn own_tokens_that_are_not_access_tokens_are_refused() {
    let a = Auth::start().await;
    let t = a.svc_token(None).await;
    // re-sign the same claims as an ID token ("typ": "JWT") with the gateway's own key
    let pem = std::fs::read(a.gw.path("keys/signing.pem")).unwrap();
    let key = gatehouse::token::keys::load(&pem).unwrap();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&t).unwrap();
    let mut h = jsonwebtoken::Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    let id_token = jsonwebtoken::encode(&h, &claims, &key.enc).unwrap();
    let r = a.gw.get("/api/x", Some(&id_token)).await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().contains("not an access token"));
}

#[test]
fn the_cli_makes_clients_hashes_and_keys() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_gatehouse");
    let out = Command::new(bin)
        .args(["client", "new", "billing", "--scopes", "orders,orders.read"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("# ")
        .to_string();
    assert_eq!(secret.len(), 43, "256 bits base64url");
    let block: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(block.contains("client_id = \"billing\""));
    assert!(block.contains(&sha256(&secret)));
    assert!(!block.contains(&secret));

    let mut child = Command::new(bin)
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha256("s3cret")
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = Command::new(bin)
        .args(["keygen", "--alg", "EdDSA", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded = gatehouse::token::keys::load(&std::fs::read(&key).unwrap()).unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains(&loaded.kid));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // never overwrites
    assert!(!Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_block_printed_by_the_cli_works_as_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["client", "new", "cli-made", "--scopes", "orders.read"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("# ")
        .to_string();
    let a = Auth::start_with("backend = \"memory\"", &text).await;
    let r = a
        .post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("cli-made", &secret)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_is_rate_limited_per_client_and_address() {
    let a = Auth::start_edited("backend = \"memory\"", "", |t| t.replace("1000/s", "2/m")).await;
    for _ in 0..2 {
        assert_eq!(a.client_credentials("svc", SVC_SECRET).await.status, 200);
    }
    let r = a.client_credentials("svc", SVC_SECRET).await;
    oauth_error(&r, 429, "slow_down");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() <= 60);
    a.gw.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(a.client_credentials("svc", SVC_SECRET).await.status, 200);
}

pub async fn password_grant(a: &Auth, password: &str, scope: &str) -> Resp {
    a.post(
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "alice@example.com"),
            ("password", password),
            ("scope", scope),
        ],
        Some(("legacy", LEGACY_SECRET)),
    )
    .await
}

pub async fn refresh(a: &Auth, token: &str) -> Resp {
    a.post(
        "/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        Some(("legacy", LEGACY_SECRET)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_grant_signs_a_user_in_and_userinfo_releases_claims_by_scope() {
    let a = Auth::start().await;
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read profile").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert!(r.json()["refresh_token"].as_str().unwrap().len() >= 43);
    let up = a.gw.get("/api/x", Some(&access)).await;
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    assert_eq!(up.echoed("x-auth-roles").as_deref(), Some("admin"));
    assert_eq!(up.echoed("x-auth-client-id").as_deref(), Some("legacy"));

    let info = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/oauth/userinfo",
                a.gw.tls.port()
            ))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.json()["sub"], "user-alice");
    assert_eq!(info.json()["name"], "Alice");
    assert!(
        info.json().get("email").is_none(),
        "email needs the email scope: {}",
        info.body
    );
    let bad = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/oauth/userinfo",
                a.gw.tls.port()
            ))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.challenge().contains("invalid_token"));

    // wrong password and unknown user answer alike; a client without the grant may not use it
    oauth_error(
        &password_grant(&a, "wrong", "orders.read").await,
        400,
        "invalid_grant",
    );
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "alice@example.com"),
                ("password", ALICE_PASSWORD),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let a = Auth::start().await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read email")
        .await
        .json();
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let second = refresh(&a, &r1).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let r2 = second.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(second.json()["scope"], "orders.read email");
    // the introspection endpoint knows refresh tokens too
    let creds = Some(("legacy", LEGACY_SECRET));
    let i = a
        .post("/oauth/introspect", &[("token", r2.as_str())], creds)
        .await
        .json();
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], "user-alice");
    // r1 again: reuse detected, the whole family (r2 included) is revoked
    oauth_error(&refresh(&a, &r1).await, 400, "invalid_grant");
    oauth_error(&refresh(&a, &r2).await, 400, "invalid_grant");
    assert_eq!(
        a.post("/oauth/introspect", &[("token", r2.as_str())], creds)
            .await
            .json()["active"],
        false
    );
    // another client cannot use a refresh token
    let fresh = password_grant(&a, ALICE_PASSWORD, "orders.read")
        .await
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", fresh.as_str()),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
    // revoking a refresh token ends its family
    assert_eq!(
        a.post("/oauth/revoke", &[("token", fresh.as_str())], creds)
            .await
            .status,
        200
    );
    oauth_error(&refresh(&a, &fresh).await, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_refreshes_make_exactly_one_successor() {
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/g.db\"", "").await;
    let r1 = password_grant(&a, ALICE_PASSWORD, "orders.read")
        .await
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url, r1) = (a.gw.https.clone(), a.token_url(), r1.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .basic_auth("legacy", Some(LEGACY_SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", r1.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_wrong_passwords_lock_the_user_out() {
    let a = Auth::start().await;
    for _ in 0..5 {
        oauth_error(
            &password_grant(&a, "wrong", "orders.read").await,
            400,
            "invalid_grant",
        );
    }
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub fn authorize_query(extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "browser"),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "openid orders.read"),
        ("state", "xyz st@te"),
        ("nonce", "n-0S6"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ] {
        if let Some((_, v2)) = extra.iter().find(|(k2, _)| *k2 == k) {
            if !v2.is_empty() {
                q.append_pair(k, v2);
            }
        } else {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

pub fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(name))
        .map(|v| v.split(';').next().unwrap().to_string())
}

pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

impl Auth {
    pub async fn get_authorize(&self, query: &str, cookie: Option<&str>) -> Resp {
        let mut rb = self.gw.https.get(format!(
            "https://localhost:{}/oauth/authorize?{query}",
            self.gw.tls.port()
        ));
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    /// Shows the page, then posts the form with the given password; returns the POST's answer.
    async fn sign_in(&self, password: &str) -> Resp {
        let page = self.get_authorize(&authorize_query(&[]), None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf_cookie = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
        self.post_sign_in(&page, &csrf_cookie, password).await
    }

    /// Posts the sign-in form of `page` (its hidden fields) with this cookie and password.
    pub async fn post_sign_in(&self, page: &Resp, cookie: &str, password: &str) -> Resp {
        let mut form: Vec<(String, String)> = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "csrf",
        ]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                hidden(&page.body, k)
                    .replace("&amp;", "&")
                    .replace("&quot;", "\""),
            )
        })
        .collect();
        form.push(("username".into(), "alice@example.com".into()));
        form.push(("password".into(), password.into()));
        Resp::from(
            self.gw
                .https
                .post(format!(
                    "https://localhost:{}/oauth/authorize",
                    self.gw.tls.port()
                ))
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Resp {
        self.post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser"),
                ("code", code),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", verifier),
            ],
            None,
        )
        .await
    }
}

fn code_of(r: &Resp) -> String {
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = url::Url::parse(&r.header("location").unwrap()).unwrap();
    assert!(loc.as_str().starts_with("https://app.example/cb?"));
    let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz st@te", "state comes back unchanged");
    assert_eq!(q["iss"], "https://auth.gatehouse.test");
    q["code"].clone()
}

use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread")]
async fn the_code_flow_signs_in_and_exchanges_with_pkce() {
    let a = Auth::start().await;
    let page = a.get_authorize(&authorize_query(&[]), None).await;
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(
        page.body.contains("<label for=\"username\">") && page.body.contains("type=\"password\"")
    );
    assert!(!page.body.contains("<script"));

    let r = a.sign_in(ALICE_PASSWORD).await;
    let session = set_cookie(&r, "__Host-gatehouse-session").unwrap();
    let cookie_line = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-gatehouse-session"))
        .unwrap();
    assert!(
        cookie_line.contains("HttpOnly")
            && cookie_line.contains("Secure")
            && cookie_line.contains("SameSite=Lax")
    );
    let code = code_of(&r);

    let t = a.exchange(&code, VERIFIER).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let access = t.json()["access_token"].as_str().unwrap().to_string();
    assert!(t.json()["refresh_token"].is_string());
    let id: Value =
        jsonwebtoken::dangerous::insecure_decode_claims(t.json()["id_token"].as_str().unwrap())
            .unwrap();
    assert_eq!(id["sub"], "user-alice");
    assert_eq!(id["aud"], "browser");
    assert_eq!(id["nonce"], "n-0S6");
    assert!(id["auth_time"].is_u64());
    let up = a.gw.get("/api/x", Some(&access)).await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    // the ID token is not an access token
    assert_eq!(
        a.gw.get("/api/x", Some(t.json()["id_token"].as_str().unwrap()))
            .await
            .status,
        401
    );

    // a second authorization within the session skips the form
    let again = a.get_authorize(&authorize_query(&[]), Some(&session)).await;
    let code2 = code_of(&again);
    assert_ne!(code, code2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    let first = a.exchange(&code, VERIFIER).await.json();
    let access = first["access_token"].as_str().unwrap().to_string();
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/api/x", Some(&access)).await.status, 200);
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
    assert_eq!(
        a.gw.get("/api/x", Some(&access)).await.status,
        401,
        "the first access token is revoked"
    );
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "browser"),
                ("refresh_token", refresh.as_str()),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn pkce_and_binding_failures_are_invalid_grant() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    oauth_error(
        &a.exchange(&code, &"a".repeat(43)).await,
        400,
        "invalid_grant",
    );
    // the code is spent by the failed attempt
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
    oauth_error(
        &a.exchange(&code_of(&a.sign_in(ALICE_PASSWORD).await), "short")
            .await,
        400,
        "invalid_request",
    );
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser"),
                ("code", code.as_str()),
                ("redirect_uri", "http://127.0.0.1:9/other"),
                ("code_verifier", VERIFIER),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_grant");
    oauth_error(
        &a.exchange("made-up-code", VERIFIER).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_errors_go_to_a_page_or_back_to_the_client() {
    let a = Auth::start().await;
    for bad in [
        authorize_query(&[("client_id", "nobody")]),
        authorize_query(&[("redirect_uri", "https://evil.example/cb")]),
    ] {
        let r = a.get_authorize(&bad, None).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.header("location").is_none(),
            "never a redirect to an unverified address"
        );
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    for (extra, code) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid admin")], "invalid_scope"),
    ] {
        let r = a.get_authorize(&authorize_query(&extra), None).await;
        assert_eq!(r.status, 303, "{extra:?}: {}", r.body);
        let loc = url::Url::parse(&r.header("location").unwrap()).unwrap();
        let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
        assert_eq!(q["error"], code, "{extra:?}");
        assert_eq!(q["state"], "xyz st@te");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_form_needs_its_csrf_token_and_the_right_password() {
    let a = Auth::start().await;
    let r = a.sign_in("wrong").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("The email or password is wrong."));
    assert!(r.header("location").is_none());
    // without the CSRF cookie
    let page = a.get_authorize(&authorize_query(&[]), None).await;
    let csrf = hidden(&page.body, "csrf");
    let r = Resp::from(
        a.gw.https
            .post(format!(
                "https://localhost:{}/oauth/authorize?x",
                a.gw.tls.port()
            ))
            .form(&[
                ("response_type", "code"),
                ("client_id", "browser"),
                ("redirect_uri", "https://app.example/cb"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("csrf", csrf.as_str()),
                ("username", "alice@example.com"),
                ("password", ALICE_PASSWORD),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("location").is_none());
    // lockout after repeated failures
    for _ in 0..5 {
        a.sign_in("wrong").await;
    }
    let r = a.sign_in(ALICE_PASSWORD).await;
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_and_codes_survive_a_restart_on_sqlite() {
    let store = "backend = \"sqlite\"\npath = \"data/gatehouse.db\"";
    let a = Auth::start_with(store, "").await;
    let r1 = password_grant(&a, ALICE_PASSWORD, "orders.read")
        .await
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    let echo = a.echo.clone();
    let dir = a.gw.stop();
    let b = Auth {
        gw: Gw::start_in(dir, &auth_toml(&echo, store, "")),
        echo,
        client_key: TestKey::rsa("unused"),
    };
    let r = refresh(&b, &r1).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = b.exchange(&code, VERIFIER).await;
    assert_eq!(t.status, 200, "{}", t.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_expire_and_belong_to_their_client() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    // another (confidential) client presenting the code
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", VERIFIER),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
    // another public client that may use codes: the code is bound to the one it was issued to
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser2"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", VERIFIER),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_grant");
    // past code_ttl (60 s by default)
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    a.gw.clock.advance(std::time::Duration::from_secs(61));
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
}
