//! RFC 8707 resource indicators through the token service: which resources are known, the `aud`
//! of what each grant issues, and the resource kept with codes and refresh families.

use super::auth_request::AuthorizeError;
use super::tests::{basic, claims_of, fixture_with, Fixture, ALICE, LEGACY, SVC};
use super::*;
use crate::clock::Clock;
use crate::endpoints::Endpoint;
use crate::store::{CodeRecord, RefreshRecord};

const A: &str = "https://rs.test/a";
const B: &str = "https://rs.test/b";
/// a resource whose route names another authorization server
const FOREIGN: &str = "https://rs.test/foreign";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Routes A and B take this service's tokens (A by default, B by naming its issuer); FOREIGN
/// names another authorization server.
fn with_resources() -> Fixture {
    fixture_with(&format!(
        r#"
[[routes]]
path_prefix = "/a"
upstream = "u"
resource = "{A}"

[[routes]]
path_prefix = "/b"
upstream = "u"
resource = "{B}"
authorization_servers = ["https://auth.test", "https://as.test"]

[[routes]]
path_prefix = "/foreign"
upstream = "u"
resource = "{FOREIGN}"
authorization_servers = ["https://as.test"]
"#
    ))
}

fn target(e: &OAuthError) {
    assert_eq!(
        (e.status, e.code),
        (400, OAuthErrorCode::InvalidTarget),
        "{e:?}"
    );
}

impl Fixture {
    async fn svc_for(&self, resource: &str) -> Result<Value, OAuthError> {
        let pairs = [("grant_type", "client_credentials"), ("resource", resource)];
        self.token(Some(&basic("svc", SVC)), &pairs).await
    }

    async fn alice_for(&self, resource: &str) -> Value {
        let pairs = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE),
            ("resource", resource),
        ];
        self.token(Some(&basic("legacy", LEGACY)), &pairs)
            .await
            .unwrap()
    }

    async fn refresh_for(&self, token: &Value, resource: &str) -> Result<Value, OAuthError> {
        let refresh = token["refresh_token"].as_str().unwrap();
        let pairs = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("resource", resource),
        ];
        self.token(Some(&basic("legacy", LEGACY)), &pairs).await
    }

    /// A code for alice and the public client `spa`, as the authorize endpoint stores it.
    fn code(&self, code: &str, resource: &str) {
        let rec = CodeRecord {
            hash: sha256_hex(code),
            client_id: "spa".into(),
            redirect_uri: "https://app.test/cb".into(),
            challenge: CHALLENGE.into(),
            subject: "alice".into(),
            scopes: "openid read".into(),
            nonce: String::new(),
            resource: resource.into(),
            auth_time: self.clock.now_secs(),
            expires_at: self.clock.now_secs() + 60,
        };
        self.svc.store.put_code(&rec).unwrap();
    }

    async fn exchange(&self, code: &str, resource: &str) -> Result<Value, OAuthError> {
        let pairs = [
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", "https://app.test/cb"),
            ("code_verifier", VERIFIER),
            ("resource", resource),
        ];
        self.token(None, &pairs).await
    }

    fn stored_refresh(&self, token: &Value) -> RefreshRecord {
        let hash = sha256_hex(token["refresh_token"].as_str().unwrap());
        let now = self.clock.now_secs();
        self.svc.store.active_refresh(&hash, now).unwrap().unwrap()
    }
}

#[tokio::test]
async fn the_known_resources_are_those_whose_routes_name_this_service() {
    let f = with_resources();
    assert!(f.svc.resources.check(Some(A)).is_ok());
    assert!(f.svc.resources.check(Some(B)).is_ok());
    target(&f.svc.resources.check(Some(FOREIGN)).unwrap_err());
    // without such routes none is known
    let plain = super::tests::fixture();
    target(&plain.svc.resources.check(Some(A)).unwrap_err());
}

#[tokio::test]
async fn a_token_asked_for_a_resource_is_for_it_alone() {
    let f = with_resources();
    let t = f.svc_for(A).await.unwrap();
    assert_eq!(claims_of(&t)["aud"], A);
    assert_eq!(
        claims_of(&t)["scope"],
        "read",
        "the scopes are as without a resource"
    );
    assert_eq!(claims_of(&f.svc_for(B).await.unwrap())["aud"], B);
    // without one, the client's audience as before
    assert_eq!(claims_of(&f.svc_token().await)["aud"], "api");
    for unknown in [FOREIGN, "https://rs.test/a/", "https://rs.test/a#x", "a"] {
        target(&f.svc_for(unknown).await.unwrap_err());
    }
    // introspection says `aud` as the token has it
    let t = f.svc_for(A).await.unwrap();
    let token = t["access_token"].as_str().unwrap();
    let auth = basic("svc", SVC);
    let i = f
        .post(Endpoint::Introspect, Some(&auth), &[("token", token)])
        .await
        .unwrap();
    assert_eq!(
        (i["active"].clone(), i["aud"].clone()),
        (json!(true), json!(A))
    );
}

#[tokio::test]
async fn a_refresh_family_keeps_its_resource_and_refuses_another() {
    let f = with_resources();
    let first = f.alice_for(A).await;
    assert_eq!(claims_of(&first)["aud"], A);
    assert_eq!(f.stored_refresh(&first).resource, A);
    // another resource, or one not known: refused before rotating, so the token still works
    target(&f.refresh_for(&first, B).await.unwrap_err());
    target(&f.refresh_for(&first, FOREIGN).await.unwrap_err());
    // naming it again, or not at all, keeps it; the successor carries it
    let second = f.refresh_for(&first, A).await.unwrap();
    assert_eq!(claims_of(&second)["aud"], A);
    assert_eq!(f.stored_refresh(&second).resource, A);
    let third = f
        .refresh(second["refresh_token"].as_str().unwrap(), None)
        .await;
    let third = third.unwrap();
    assert_eq!(claims_of(&third)["aud"], A);
    // a family granted without a resource cannot gain one
    let plain = f.password().await;
    assert_eq!(f.stored_refresh(&plain).resource, "");
    target(&f.refresh_for(&plain, A).await.unwrap_err());
    let next = f
        .refresh(plain["refresh_token"].as_str().unwrap(), None)
        .await;
    assert_eq!(claims_of(&next.unwrap())["aud"], "api");
}

#[tokio::test]
async fn a_code_exchange_goes_on_with_the_codes_resource() {
    let f = with_resources();
    f.code("c1", A);
    // an unknown resource is refused before the code is used up
    target(&f.exchange("c1", FOREIGN).await.unwrap_err());
    let t = f.exchange("c1", "").await.unwrap();
    assert_eq!(claims_of(&t)["aud"], A);
    assert_eq!(f.stored_refresh(&t).resource, A);
    // the ID token is for the client, whatever the access token is for
    let id = t["id_token"].as_str().unwrap();
    let id = crate::auth::principal::decode_claims(id.split('.').nth(1).unwrap().as_bytes());
    assert_eq!(id["aud"], "spa");
    f.code("c2", A);
    assert_eq!(claims_of(&f.exchange("c2", A).await.unwrap())["aud"], A);
    // a known resource other than the code's: refused
    f.code("c3", A);
    target(&f.exchange("c3", B).await.unwrap_err());
    f.code("c4", "");
    target(&f.exchange("c4", A).await.unwrap_err());
    f.code("c5", "");
    assert_eq!(
        claims_of(&f.exchange("c5", "").await.unwrap())["aud"],
        "api"
    );
}

#[tokio::test]
async fn an_authorization_request_names_a_known_resource_or_goes_back_with_invalid_target() {
    let f = with_resources();
    let params = |resource: &str| -> HashMap<String, String> {
        [
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", "https://app.test/cb"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "s"),
            ("resource", resource),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    assert_eq!(
        f.svc.validate(&params(A)).ok().unwrap().resource.as_deref(),
        Some(A)
    );
    assert_eq!(f.svc.validate(&params("")).ok().unwrap().resource, None);
    for refused in [FOREIGN, "https://rs.test/a#frag"] {
        match f.svc.validate(&params(refused)) {
            Err(AuthorizeError::Redirect {
                uri, code, state, ..
            }) => {
                assert_eq!(code, OAuthErrorCode::InvalidTarget);
                assert_eq!(
                    (uri.as_str(), state.as_deref()),
                    ("https://app.test/cb", Some("s"))
                );
            }
            _ => panic!("{refused}: not sent back to the client"),
        }
    }
    // an untrusted client still gets the page, never a redirect
    let mut p = params(FOREIGN);
    p.insert("client_id".into(), "ghost".into());
    assert!(matches!(f.svc.validate(&p), Err(AuthorizeError::Page(_))));
}
