//! Token exchange (RFC 8693) end to end: a chain of services each exchanging the token it received
//! with `act` nested at the last upstream, the rules that refuse an exchange (scope widening,
//! `may_act`, impersonation, foreign issuers, unknown targets), revocation of the original refresh
//! family reaching every exchanged token, and upstreams that receive a token minted for them.

use crate::support::harness::Resp;
use crate::tokens::*;
use serde_json::{json, Value};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ISSUER: &str = "https://auth.gatehouse.test";
const PARTNER: &str = "https://partner.test";
const A_SECRET: &str = "svc-a-secret-0123456789abcdef0123456789abcd";
const B_SECRET: &str = "svc-b-secret-0123456789abcdef0123456789abcd";

/// Service A (people sign in to it), services B and C behind it, a client that may impersonate,
/// one that may exchange a partner's tokens, the partner issuer, and upstreams that exchange.
fn extra() -> String {
    let secret = |s: &str| sha256(s);
    format!(
        r#"
[[clients]]
client_id = "svc-a"
secret_hash = "{a}"
grant_types = ["password", "refresh_token", "{EXCHANGE}"]
scopes = ["orders.read", "orders.write"]
audience = ["svc-a"]

[[clients]]
client_id = "svc-b"
secret_hash = "{b}"
grant_types = ["{EXCHANGE}"]
scopes = ["orders.read", "orders.write"]
audience = ["svc-b"]

[[clients]]
client_id = "svc-c"
secret_hash = "{b}"
audience = ["svc-c"]

[[clients]]
client_id = "imp"
secret_hash = "{b}"
grant_types = ["{EXCHANGE}"]
scopes = ["orders.read"]
audience = ["svc-b"]
exchange_impersonation = true

[[clients]]
client_id = "ext"
secret_hash = "{b}"
grant_types = ["{EXCHANGE}"]
scopes = ["orders.read"]
exchange_issuers = ["partner"]

[[issuers]]
name = "partner"
issuer = "{PARTNER}"
keys = ["keys/signer.pub.pem"]
algorithms = ["RS256"]
audiences = ["ext", "svc-b", "partner-api"]

[[upstreams]]
name = "orders-api"
ECHO_PEERS
exchange = {{ audience = "orders", scope = "orders.read" }}

[[routes]]
path_prefix = "/c"
upstream = "orders-api"
issuers = ["self"]
audiences = ["svc-c"]

[[routes]]
path_prefix = "/orders"
upstream = "orders-api"
issuers = ["self"]

[[routes]]
path_prefix = "/partner"
upstream = "orders-api"
issuers = ["partner"]
"#,
        a = secret(A_SECRET),
        b = secret(B_SECRET),
    )
}

/// The exchanging upstream points at the test's echo server, whose address the file already names.
fn echo_peers(t: String) -> String {
    let peers = t
        .lines()
        .find(|l| l.starts_with("peers = "))
        .unwrap()
        .to_string();
    t.replace("ECHO_PEERS", &peers)
}

async fn start() -> Auth {
    Auth::start_edited("backend = \"memory\"", &extra(), echo_peers).await
}

/// The claims of a JWT, unverified (the gateway verified it, or the test only reads it).
fn claims_of(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap()
}

/// A token exchange by `client` with the `secret`, the subject token and more parameters.
async fn exchange(a: &Auth, client: &str, subject: &str, more: &[(&str, &str)]) -> Resp {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS),
    ];
    form.extend_from_slice(more);
    let secret = if client == "svc-a" {
        A_SECRET
    } else {
        B_SECRET
    };
    a.post("/oauth/token", &form, Some((client, secret))).await
}

/// Alice signs in to service A: an access token for A, and a refresh token (a family).
async fn alice_at_a(a: &Auth) -> (String, String) {
    let form = [
        ("grant_type", "password"),
        ("username", "alice@example.com"),
        ("password", ALICE_PASSWORD),
        ("scope", "orders.read"),
    ];
    let r = a
        .post("/oauth/token", &form, Some(("svc-a", A_SECRET)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let token = |k: &str| j[k].as_str().unwrap().to_string();
    (token("access_token"), token("refresh_token"))
}

/// The token the echo upstream received in `Authorization`.
fn received(r: &Resp) -> String {
    let h = r.echoed("authorization").expect("the upstream got a token");
    h.strip_prefix("Bearer ").unwrap().to_string()
}

/// A token of the partner issuer (signed by the key the `partner` issuer trusts).
fn partner_token(a: &Auth, aud: &str, extra: Value) -> String {
    a.client_key
        .sign(&crate::support::keys::claims(PARTNER, aud, extra))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_services_nests_act_and_the_last_upstream_sees_it() {
    let a = start().await;
    let (user, _) = alice_at_a(&a).await;
    // A calls B for Alice
    let r = exchange(&a, "svc-a", &user, &[("audience", "svc-b")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["issued_token_type"], ACCESS);
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["scope"], "orders.read");
    assert!(j["expires_in"].as_u64().unwrap() <= 600);
    let for_b = j["access_token"].as_str().unwrap().to_string();
    let c = claims_of(&for_b);
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("user-alice"), Some("svc-b"))
    );
    assert_eq!(c["act"], json!({"sub": "svc-a"}));
    assert_eq!(c["client_id"], "svc-a");
    assert_eq!(c["roles"], json!(["admin"]));
    // B calls C, asking for a JWT
    let more = [("audience", "svc-c"), ("requested_token_type", JWT)];
    let r = exchange(&a, "svc-b", &for_b, &more).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["issued_token_type"], JWT);
    let for_c = r.json()["access_token"].as_str().unwrap().to_string();
    assert!(claims_of(&for_c)["exp"].as_u64() <= claims_of(&user)["exp"].as_u64());
    // C's route takes it and its upstream receives its own token, the gateway acting last
    let r = a.gw.get("/c/orders", Some(&for_c)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = received(&r);
    assert_ne!(got, for_c);
    let c = claims_of(&got);
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("user-alice"), Some("orders"))
    );
    assert_eq!(
        c["act"],
        json!({"sub": ISSUER, "act": {"sub": "svc-b", "act": {"sub": "svc-a"}}})
    );
    // B's token is for B alone: C's route refuses it
    let r = a.gw.get("/c/orders", Some(&for_b)).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exchange_only_narrows_and_names_known_targets() {
    let a = start().await;
    let (user, _) = alice_at_a(&a).await;
    let widen = [("audience", "svc-b"), ("scope", "orders.read orders.write")];
    oauth_error(
        &exchange(&a, "svc-a", &user, &widen).await,
        400,
        "invalid_scope",
    );
    let unknown = [("audience", "nobody")];
    oauth_error(
        &exchange(&a, "svc-a", &user, &unknown).await,
        400,
        "invalid_target",
    );
    let resource = [("resource", "https://elsewhere.test/api")];
    oauth_error(
        &exchange(&a, "svc-a", &user, &resource).await,
        400,
        "invalid_target",
    );
    let both = [
        ("audience", "svc-b"),
        ("resource", "https://elsewhere.test/api"),
    ];
    oauth_error(
        &exchange(&a, "svc-a", &user, &both).await,
        400,
        "invalid_request",
    );
    let saml = [(
        "requested_token_type",
        "urn:ietf:params:oauth:token-type:saml2",
    )];
    oauth_error(
        &exchange(&a, "svc-a", &user, &saml).await,
        400,
        "invalid_request",
    );
    let r = a
        .post(
            "/oauth/token",
            &[("grant_type", EXCHANGE), ("subject_token", &user)],
            Some(("svc-a", A_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "invalid_request");
    // not a token, a token meant for someone else, a client without the grant
    oauth_error(
        &exchange(&a, "svc-a", "x.y.z", &[]).await,
        400,
        "invalid_grant",
    );
    oauth_error(
        &exchange(&a, "svc-b", &user, &[]).await,
        400,
        "invalid_grant",
    );
    let svc = a.svc_token(Some("orders.read")).await;
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &svc),
                ("subject_token_type", ACCESS),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
    // a narrower scope is fine
    let r = exchange(
        &a,
        "svc-a",
        &user,
        &[("audience", "svc-b"), ("scope", "orders.read")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn impersonation_needs_exchange_impersonation() {
    let a = start().await;
    let (user, _) = alice_at_a(&a).await;
    let r = exchange(&a, "svc-a", &user, &[("audience", "svc-b")]).await;
    let for_b = r.json()["access_token"].as_str().unwrap().to_string();
    let asked = [("impersonate", "true")];
    oauth_error(
        &exchange(&a, "svc-b", &for_b, &asked).await,
        400,
        "unauthorized_client",
    );
    // `imp` may: its token has no act of its own, and keeps the chain it was given
    let r = exchange(&a, "imp", &for_b, &asked).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = claims_of(r.json()["access_token"].as_str().unwrap());
    assert_eq!(c["act"], json!({"sub": "svc-a"}));
    assert_eq!(c["sub"], "user-alice");
    // delegation by `imp` names it
    let r = exchange(&a, "imp", &for_b, &[]).await;
    let c = claims_of(r.json()["access_token"].as_str().unwrap());
    assert_eq!(c["act"], json!({"sub": "imp", "act": {"sub": "svc-a"}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_original_family_revokes_every_exchanged_token() {
    let a = start().await;
    let (user, refresh) = alice_at_a(&a).await;
    let r = exchange(&a, "svc-a", &user, &[("audience", "svc-b")]).await;
    let for_b = r.json()["access_token"].as_str().unwrap().to_string();
    let r = exchange(&a, "svc-b", &for_b, &[("audience", "svc-c")]).await;
    let for_c = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/c/x", Some(&for_c)).await.status, 200);
    let r = a
        .post(
            "/oauth/revoke",
            &[("token", refresh.as_str())],
            Some(("svc-a", A_SECRET)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.gw.get("/c/x", Some(&for_c)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.challenge().contains("revoked"), "{}", r.challenge());
    // and what was exchanged from it cannot be exchanged again
    let again = [("audience", "svc-c")];
    oauth_error(
        &exchange(&a, "svc-b", &for_b, &again).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_token_is_exchanged_only_by_a_client_that_lists_its_issuer_and_may_act() {
    let a = start().await;
    let plain = partner_token(&a, "ext", json!({"scope": "orders.read"}));
    let r = exchange(&a, "ext", &plain, &[("audience", "svc-b")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = claims_of(r.json()["access_token"].as_str().unwrap());
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str()),
        (Some(ISSUER), Some("user-1"))
    );
    assert_eq!(c["act"], json!({"sub": "ext"}));
    // svc-b does not list the partner, even for a token naming it
    let for_b = partner_token(&a, "svc-b", json!({"scope": "orders.read"}));
    oauth_error(
        &exchange(&a, "svc-b", &for_b, &[]).await,
        400,
        "invalid_grant",
    );
    // may_act names who may exchange it
    let only_ext = partner_token(
        &a,
        "ext",
        json!({"scope": "orders.read", "may_act": {"sub": "ext"}}),
    );
    let r = exchange(&a, "ext", &only_ext, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let only_other = partner_token(
        &a,
        "ext",
        json!({"scope": "orders.read", "may_act": {"sub": "svc-b"}}),
    );
    oauth_error(
        &exchange(&a, "ext", &only_other, &[]).await,
        400,
        "invalid_grant",
    );
    // an actor token names another actor, which may_act then has to allow
    let actor = partner_token(&a, "ext", json!({"sub": "svc-b"}));
    let more = [("actor_token", actor.as_str()), ("actor_token_type", JWT)];
    let r = exchange(&a, "ext", &only_other, &more).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = claims_of(r.json()["access_token"].as_str().unwrap());
    assert_eq!(c["act"], json!({"sub": "svc-b"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_gets_a_token_minted_for_it_once_per_caller_token() {
    let a = start().await;
    let svc = a.svc_token(Some("orders.read orders.write")).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = a.gw.get("/orders/1", Some(&svc)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.push(received(&r));
    }
    assert!(seen.iter().all(|t| *t == seen[0] && *t != svc));
    let c = claims_of(&seen[0]);
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("svc"), Some("orders"))
    );
    assert_eq!(c["scope"], "orders.read");
    assert_eq!(c["act"], json!({"sub": ISSUER}));
    let metrics = a.gw.metrics().await;
    assert!(
        metrics.contains("gatehouse_token_exchanges_total{upstream=\"orders-api\"} 1"),
        "{metrics}"
    );
    // another caller, another exchange
    let other = a.svc_token(Some("orders.read")).await;
    let r = a.gw.get("/orders/1", Some(&other)).await;
    assert_ne!(received(&r), seen[0]);
    let metrics = a.gw.metrics().await;
    assert!(metrics.contains("gatehouse_token_exchanges_total{upstream=\"orders-api\"} 2"));
    // a caller without the upstream's scope is refused, naming it
    let without = a.svc_token(Some("orders.write")).await;
    let r = a.gw.get("/orders/1", Some(&without)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert!(
        r.challenge().contains("scope=\"orders.read\""),
        "{}",
        r.challenge()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_exchange_honours_may_act_for_the_gateway() {
    let a = start().await;
    let allowed = partner_token(
        &a,
        "partner-api",
        json!({"scope": "orders.read", "may_act": {"sub": ISSUER}}),
    );
    let r = a.gw.get("/partner/x", Some(&allowed)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(claims_of(&received(&r))["act"], json!({"sub": ISSUER}));
    let refused = partner_token(
        &a,
        "partner-api",
        json!({"scope": "orders.read", "may_act": {"sub": "svc-b"}}),
    );
    let r = a.gw.get("/partner/x", Some(&refused)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "access_denied");
}

#[test]
fn the_readme_example_compiles_with_the_shipped_gateway_toml() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = &readme[readme.find("## Token exchange").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let shipped = std::fs::read_to_string(format!("{root}/gateway.toml")).unwrap();
    // the demo issuer's secret, as `make run` puts it in the environment
    std::env::set_var(
        "GATEHOUSE_DEMO_SECRET",
        "a-demo-secret-of-at-least-32-bytes!!",
    );
    let path = std::path::Path::new(root).join("gateway.toml");
    let c = gatehouse::config::Config::from_toml(&format!("{shipped}\n{block}"), &path)
        .unwrap_or_else(|e| panic!("{e}"));
    let orders = c.upstreams.iter().find(|u| u.name == "orders").unwrap();
    assert_eq!(orders.exchange.as_ref().unwrap().audience, "orders");
    // the demo client's secret is the one the example sends
    let client = c
        .clients
        .iter()
        .find(|c| c.client_id == "demo-orders")
        .unwrap();
    let secret = client.secret.as_ref().unwrap();
    assert!(gatehouse::token::secret_matches(
        "demo-service-secret-change-me",
        secret
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exchange_and_its_introspection_say_who_acts_and_are_spans_of_their_requests() {
    let Some(rx) = crate::telemetry::Receiver::start() else {
        return;
    };
    let telemetry = format!(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\nflush_interval = \"50ms\"\n",
        rx.port
    );
    let a = Auth::start_edited("backend = \"memory\"", &(extra() + &telemetry), echo_peers).await;
    let (user, _) = alice_at_a(&a).await;
    let r = exchange(&a, "svc-a", &user, &[("audience", "svc-b")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let exchanged = r.json()["access_token"].as_str().unwrap().to_string();
    let r = a
        .post(
            "/oauth/introspect",
            &[("token", user.as_str())],
            Some(("svc-a", A_SECRET)),
        )
        .await;
    assert_eq!((r.status, &r.json()["active"]), (200, &json!(true)));
    assert!(r.json().get("act").is_none(), "nobody acts for alice");
    // the exchanged token's audience learns who acts for alice (RFC 8693 §4.1)
    let r = a
        .post(
            "/oauth/introspect",
            &[("token", exchanged.as_str())],
            Some(("svc-b", B_SECRET)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sub"], "user-alice");
    assert_eq!(r.json()["act"], json!({"sub": "svc-a"}));
    let named = |g: &[Value], n: &str| -> Option<Value> {
        // svc-a's: svc-b introspects too
        (g.iter())
            .find(|s| {
                s["signal"] == "span"
                    && s["name"] == n
                    && s["attributes"]["gatehouse.client_id"] == "svc-a"
            })
            .cloned()
    };
    let got = rx
        .when("the exchange's and the introspection's spans", |g| {
            named(g, "token exchange").is_some() && named(g, "introspect").is_some()
        })
        .await;
    // each is an INTERNAL child of the server span of its POST, and says what it did
    let expected = [
        ("token exchange", "gatehouse.exchange", json!("delegation")),
        ("introspect", "gatehouse.active", json!(true)),
    ];
    for (name, key, value) in expected {
        let span = named(&got, name).unwrap();
        assert_eq!(span["kind"], "SPAN_KIND_INTERNAL", "{span:#}");
        assert_eq!(span["attributes"]["gatehouse.client_id"], "svc-a");
        assert_eq!(span["attributes"][key], value, "{span:#}");
        let parent = (got.iter())
            .find(|s| s["span_id"] == span["parent_span_id"])
            .unwrap_or_else(|| panic!("{name} has no parent among {got:#?}"));
        assert_eq!(parent["kind"], "SPAN_KIND_SERVER");
        assert_eq!(parent["trace_id"], span["trace_id"]);
    }
    assert_eq!(
        named(&got, "token exchange").unwrap()["attributes"]["gatehouse.issued"],
        true
    );
    let raw = std::fs::read(&rx.raw).unwrap();
    for secret in [user.as_str(), exchanged.as_str(), A_SECRET] {
        assert!(!crate::telemetry::contains(&raw, secret.as_bytes()));
    }
}
