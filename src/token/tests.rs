//! The token service's logic without a socket: client authentication, grants, rotation and
//! introspection through `answer_post`, on a memory store and a clock the tests move.

use super::keys::SigningKeys;
use super::*;
use crate::auth::Verifier;
use crate::clock::OffsetClock;
use crate::config::testing::BASE;
use crate::endpoints::Endpoint;
use crate::store::MemoryStore;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::path::Path;

pub(super) const SVC: &str = "svc-secret-0123456789abcdef0123456789abcdef";
pub(super) const LEGACY: &str = "legacy-secret-0123456789abcdef0123456789ab";
pub(super) const ALICE: &str = "correct horse battery staple";
const ADDR: &str = "ip:192.0.2.1";

pub(crate) struct Fixture {
    pub(crate) svc: TokenService,
    pub(super) clock: Arc<OffsetClock>,
    _dir: tempfile::TempDir,
}

pub(crate) fn fixture() -> Fixture {
    fixture_rated("1000/s")
}

/// The fixture with `[rate_limit] token_endpoint` at `rate`.
fn fixture_rated(rate: &str) -> Fixture {
    fixture_of(rate, "", "")
}

/// The fixture with `extra` (routes, say) after its configuration.
pub(super) fn fixture_with(extra: &str) -> Fixture {
    fixture_of("1000/s", "", extra)
}

/// The fixture with `service` keys in `[token_service]` and `extra` after its configuration.
pub(super) fn fixture_of(rate: &str, service: &str, extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{BASE}
[token_service]
issuer = "https://auth.test"
audience = ["api"]
signing_keys = ["{dir}/signing.pem"]
{service}

[store]
backend = "memory"

[rate_limit]
token_endpoint = "{rate}"
failed_auth_lockout = "3/5m"

[[clients]]
client_id = "svc"
secret_hash = "{svc}"
scopes = ["read", "write"]
default_scopes = ["read"]
roles = ["service"]

[[clients]]
client_id = "legacy"
secret_hash = "{legacy}"
grant_types = ["password", "refresh_token"]
scopes = ["read", "profile"]
default_scopes = ["read"]

[[clients]]
client_id = "spa"
public = true
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["https://app.test/cb"]
scopes = ["read"]

[[users]]
username = "alice"
password_hash = "{alice}"
roles = ["admin"]
{extra}
"#,
        dir = dir.path().display(),
        svc = sha256_hash(SVC),
        legacy = sha256_hash(LEGACY),
        alice = bcrypt::hash(ALICE, 4).unwrap(),
        rate = rate,
    );
    let config = Config::from_toml(&text, Path::new("/nonexistent/gateway.toml")).unwrap();
    let ts = config.token_service.clone().unwrap();
    let keys = SigningKeys::for_service(&ts, &config.clients).unwrap();
    let clock = Arc::new(OffsetClock::default());
    let verifier = Arc::new(
        Verifier::new(
            config.issuers.clone(),
            keys.verify_keys(),
            30,
            1000,
            64 << 20,
            clock.clone(),
        )
        .unwrap(),
    );
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let seen = Arc::new(
        crate::store::seen::SeenIds::new("dpop", crate::store::seen::PROOF_IDS, None).unwrap(),
    );
    let dpop = crate::dpop::Dpop::new(config.dpop.clone(), 30, clock.clone(), seen, None).unwrap();
    let loaded = Arc::new(crate::store::RevocationsLoaded::new(true));
    let parts: super::Parts = (clock.clone(), Default::default(), loaded);
    let svc = TokenService::new(&config, keys, store, (verifier, Arc::new(dpop)), parts);
    let svc = svc.unwrap().unwrap();
    Fixture {
        svc,
        clock,
        _dir: dir,
    }
}

/// The form as the endpoint's parser hands it over: empty values are absent.
fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

impl Fixture {
    pub(super) async fn svc_token(&self) -> Value {
        self.token(
            Some(&basic("svc", SVC)),
            &[("grant_type", "client_credentials")],
        )
        .await
        .unwrap()
    }

    pub(super) async fn post(
        &self,
        ep: Endpoint,
        auth: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Result<Value, OAuthError> {
        self.svc.answer_post(ep, auth, &form(pairs), ADDR).await
    }

    pub(super) async fn token(
        &self,
        auth: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Result<Value, OAuthError> {
        self.post(Endpoint::Token, auth, pairs).await
    }

    pub(super) async fn password(&self) -> Value {
        let pairs = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE),
        ];
        self.token(Some(&basic("legacy", LEGACY)), &pairs)
            .await
            .unwrap()
    }

    pub(super) async fn refresh(
        &self,
        token: &str,
        scope: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        self.token(Some(&basic("legacy", LEGACY)), &pairs).await
    }
}

pub(super) fn claims_of(token: &Value) -> Value {
    let t = token["access_token"].as_str().unwrap();
    crate::auth::principal::decode_claims(t.split('.').nth(1).unwrap().as_bytes())
}

#[tokio::test]
async fn client_credentials_grant_the_default_scopes_and_the_client_roles() {
    let f = fixture();
    let t = f.svc_token().await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "read");
    let c = claims_of(&t);
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some("svc"), Some("svc"))
    );
    assert_eq!(c["aud"], "api");
    assert_eq!(c["roles"], json!(["service"]));
    let narrow = [("grant_type", "client_credentials"), ("scope", "write")];
    let t = f.token(Some(&basic("svc", SVC)), &narrow).await.unwrap();
    assert_eq!(t["scope"], "write");
}

#[tokio::test]
async fn scopes_grants_and_clients_are_refused_with_their_codes() {
    let f = fixture();
    let auth = basic("svc", SVC);
    let wide = [("grant_type", "client_credentials"), ("scope", "admin")];
    assert_eq!(
        f.token(Some(&auth), &wide).await.unwrap_err().code,
        OAuthErrorCode::InvalidScope
    );
    let unknown = [("grant_type", "implicit")];
    assert_eq!(
        f.token(Some(&auth), &unknown).await.unwrap_err().code,
        OAuthErrorCode::UnsupportedGrantType
    );
    let not_listed = [
        ("grant_type", "password"),
        ("username", "a"),
        ("password", "b"),
    ];
    assert_eq!(
        f.token(Some(&auth), &not_listed).await.unwrap_err().code,
        OAuthErrorCode::UnauthorizedClient
    );
    assert_eq!(
        f.token(Some(&auth), &[]).await.unwrap_err().code,
        OAuthErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn client_authentication_failures_look_alike_and_lock_out() {
    let f = fixture();
    let cc = [("grant_type", "client_credentials")];
    for auth in [basic("svc", "wrong"), basic("ghost", SVC)] {
        let e = f.token(Some(&auth), &cc).await.unwrap_err();
        assert_eq!(
            (e.status, e.code, e.basic),
            (401, OAuthErrorCode::InvalidClient, true)
        );
        assert_eq!(e.description, "client authentication failed");
    }
    // secrets in the body, without Basic
    let post = [
        ("grant_type", "client_credentials"),
        ("client_id", "svc"),
        ("client_secret", "nope"),
    ];
    let e = f.token(None, &post).await.unwrap_err();
    assert_eq!((e.status, e.basic), (401, false));
    // a third failure for svc: it is locked out, even with the right secret, and told when to retry
    f.token(Some(&basic("svc", "still wrong")), &cc)
        .await
        .unwrap_err();
    let e = f.token(Some(&basic("svc", SVC)), &cc).await.unwrap_err();
    assert_eq!((e.status, e.code), (401, OAuthErrorCode::InvalidClient));
    assert!(e.retry_after.is_some());
    assert!(e.description.contains("too many failed authentications"));
    // another client behind the same address is not locked out with it
    let legacy = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", ALICE),
    ];
    assert!(f
        .token(Some(&basic("legacy", LEGACY)), &legacy)
        .await
        .is_ok());
}

#[tokio::test]
async fn two_authentication_methods_or_none_are_refused() {
    let f = fixture();
    let both = [
        ("grant_type", "client_credentials"),
        ("client_id", "svc"),
        ("client_secret", SVC),
    ];
    let e = f.token(Some(&basic("svc", SVC)), &both).await.unwrap_err();
    assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidRequest));
    let e = f
        .token(None, &[("grant_type", "client_credentials")])
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code), (401, OAuthErrorCode::InvalidClient));
    // a public client's Basic `id:` with an empty password names it, as `client_id` would
    let verifier = "v".repeat(43);
    let code = [
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("code_verifier", verifier.as_str()),
    ];
    let e = f.token(Some(&basic("spa", "")), &code).await.unwrap_err();
    assert_eq!(e.code, OAuthErrorCode::InvalidGrant, "{e:?}");
    // empty parameters count as absent (the form parser drops them)
    let empty = [
        ("grant_type", "client_credentials"),
        ("scope", ""),
        ("client_secret", ""),
    ];
    let t = f.token(Some(&basic("svc", SVC)), &empty).await.unwrap();
    assert_eq!(t["scope"], "read");
    // a public client names itself, and cannot use client_credentials
    let public = [("grant_type", "client_credentials"), ("client_id", "spa")];
    assert_eq!(
        f.token(None, &public).await.unwrap_err().code,
        OAuthErrorCode::UnauthorizedClient
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family_and_its_access_tokens() {
    let f = fixture();
    let first = f.password().await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let jti1 = claims_of(&first)["jti"].as_str().unwrap().to_string();
    // a wider scope is refused before rotation: the token still works afterwards
    assert_eq!(
        f.refresh(&r1, Some("read profile write"))
            .await
            .unwrap_err()
            .code,
        OAuthErrorCode::InvalidScope
    );
    let second = f.refresh(&r1, Some("read")).await.unwrap();
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert!(!f.svc.revocations.is_revoked(&jti1));
    let reuse = f.refresh(&r1, None).await.unwrap_err();
    assert_eq!(reuse.code, OAuthErrorCode::InvalidGrant);
    assert!(
        f.svc.revocations.is_revoked(&jti1),
        "the family's access token"
    );
    let jti2 = claims_of(&second)["jti"].as_str().unwrap().to_string();
    assert!(f.svc.revocations.is_revoked(&jti2));
    assert_eq!(
        f.refresh(&r2, None).await.unwrap_err().code,
        OAuthErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn a_refresh_family_ends_with_its_lifetime() {
    let f = fixture();
    let r = f.password().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    f.clock.advance(std::time::Duration::from_secs(8 * 86400));
    assert_eq!(
        f.refresh(&r, None).await.unwrap_err().code,
        OAuthErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn wrong_passwords_are_invalid_grant() {
    let f = fixture();
    let pairs = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "wrong"),
    ];
    let e = f
        .token(Some(&basic("legacy", LEGACY)), &pairs)
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidGrant));
    let ghost = [
        ("grant_type", "password"),
        ("username", "ghost"),
        ("password", "x"),
    ];
    let e = f
        .token(Some(&basic("legacy", LEGACY)), &ghost)
        .await
        .unwrap_err();
    assert_eq!(e.description, "the username or password is wrong");
}

#[tokio::test]
async fn introspection_is_for_confidential_clients_about_their_own_tokens() {
    let f = fixture();
    let t = f.svc_token().await;
    let token = t["access_token"].as_str().unwrap();
    let public = [("token", token), ("client_id", "spa")];
    let e = f
        .post(Endpoint::Introspect, None, &public)
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code), (401, OAuthErrorCode::InvalidClient));
    let own = f
        .post(
            Endpoint::Introspect,
            Some(&basic("svc", SVC)),
            &[("token", token)],
        )
        .await
        .unwrap();
    assert_eq!(own["active"], true);
    assert_eq!(own["client_id"], "svc");
    let other = f
        .post(
            Endpoint::Introspect,
            Some(&basic("legacy", LEGACY)),
            &[("token", token)],
        )
        .await
        .unwrap();
    assert_eq!(other, json!({"active": false}));
    // revoked: inactive for its own client too
    f.post(
        Endpoint::Revoke,
        Some(&basic("svc", SVC)),
        &[("token", token)],
    )
    .await
    .unwrap();
    let after = f
        .post(
            Endpoint::Introspect,
            Some(&basic("svc", SVC)),
            &[("token", token)],
        )
        .await
        .unwrap();
    assert_eq!(after, json!({"active": false}));
}

#[tokio::test]
async fn revoking_another_clients_token_is_refused_and_unknown_tokens_are_fine() {
    let f = fixture();
    let t = f.svc_token().await;
    let token = t["access_token"].as_str().unwrap();
    let e = f
        .post(
            Endpoint::Revoke,
            Some(&basic("legacy", LEGACY)),
            &[("token", token)],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, OAuthErrorCode::UnauthorizedClient);
    let ok = f
        .post(
            Endpoint::Revoke,
            Some(&basic("svc", SVC)),
            &[("token", "not-a-token")],
        )
        .await
        .unwrap();
    assert_eq!(ok, json!({}));
}

#[test]
fn endpoints_parse_and_name_their_methods() {
    assert_eq!(Endpoint::parse("/oauth/token"), Some(Endpoint::Token));
    assert_eq!(Endpoint::parse("/oauth/token/"), None);
    assert!(Endpoint::Jwks.allows(&http::Method::HEAD));
    assert!(!Endpoint::Token.allows(&http::Method::GET));
    assert_eq!(Endpoint::Userinfo.allow(), "GET, POST");
}

#[tokio::test]
async fn requests_that_prove_nothing_spend_only_their_addresses_share_of_a_clients_quota() {
    let f = fixture_rated("3/m");
    let spa = form(&[("token", "x"), ("client_id", "spa")]);
    let at = |addr: &'static str| f.svc.answer_post(Endpoint::Revoke, None, &spa, addr);
    // per address, the public client's requests are limited; another address still has its own
    for _ in 0..3 {
        assert!(at("ip:198.51.100.1").await.is_ok());
    }
    assert_eq!(at("ip:198.51.100.1").await.unwrap_err().status, 429);
    assert!(at("ip:198.51.100.2").await.is_ok());
    // a confidential client's quota is its own, untouched by the strangers naming `spa`
    let svc = basic("svc", SVC);
    let cc = form(&[("grant_type", "client_credentials")]);
    for addr in ["ip:198.51.100.3", "ip:198.51.100.4", "ip:198.51.100.5"] {
        let r = f
            .svc
            .answer_post(Endpoint::Token, Some(&svc), &cc, addr)
            .await;
        assert!(r.is_ok(), "{addr}");
    }
    let r = f
        .svc
        .answer_post(Endpoint::Token, Some(&svc), &cc, "ip:198.51.100.6")
        .await;
    assert_eq!(
        r.unwrap_err().status,
        429,
        "the client's own quota is spent"
    );
}
