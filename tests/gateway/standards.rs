//! The token service as OAuth and OpenID clients expect it with their defaults: ID tokens in RS256,
//! assertion lifetimes, jwt-bearer without client authentication, loopback redirects, `prompt` and
//! `max_age`, issuers with a path, metadata, userinfo.

use crate::support::harness::Resp;
use crate::support::keys::now;
use crate::tokens::{oauth_error, Auth, JWT_BEARER};
use crate::tokens_code::{authorize_query, code_of, set_cookie, VERIFIER};
use crate::tokens_users::password_grant;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;

const SESSION: &str = "__Host-gatehouse";

fn header_of(jwt: &str) -> Value {
    let h = URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice(&h).unwrap()
}

fn query_of(r: &Resp) -> HashMap<String, String> {
    let loc = url::Url::parse(&r.header("location").expect("a redirect")).unwrap();
    loc.query_pairs().into_owned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn id_tokens_are_rs256_and_discovery_lists_rs256() {
    let a = Auth::start().await;
    let meta =
        a.gw.get("/.well-known/openid-configuration", None)
            .await
            .json();
    assert_eq!(meta["id_token_signing_alg_values_supported"][0], "RS256");
    let code = code_of(&a.sign_in(crate::tokens::ALICE_PASSWORD).await);
    let t = a.exchange(&code, VERIFIER).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let id = t.json()["id_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&id)["alg"], "RS256");
    // its key is in the JWKS, so a client can check it
    let jwks = a.gw.get("/.well-known/jwks.json", None).await.json();
    let kid = header_of(&id)["kid"].clone();
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid));
    // access tokens keep the configured key (ES256)
    let access = t.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&access)["alg"], "ES256");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_says_what_clients_look_for() {
    let a = Auth::start().await;
    let m =
        a.gw.get("/.well-known/oauth-authorization-server", None)
            .await
            .json();
    assert_eq!(m["response_modes_supported"], json!(["query"]));
    assert_eq!(m["request_uri_parameter_supported"], false);
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    let auth: Vec<&str> = m["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        auth.contains(&"none") && auth.contains(&"private_key_jwt"),
        "{auth:?}"
    );
    assert!(
        m["introspection_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
    assert!(m["revocation_endpoint_auth_signing_alg_values_supported"].is_array());
    let claims = m["claims_supported"].as_array().unwrap();
    assert!(claims.contains(&json!("email")) && claims.contains(&json!("sub")));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_with_a_path_is_discovered_where_clients_look() {
    let a = Auth::start_edited("backend = \"memory\"", "", |t| {
        t.replace(
            "https://auth.gatehouse.test",
            "https://auth.gatehouse.test/realms/main",
        )
    })
    .await;
    for path in [
        "/realms/main/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/realms/main",
        "/.well-known/openid-configuration",
    ] {
        let r = a.gw.get(path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            r.json()["issuer"],
            "https://auth.gatehouse.test/realms/main"
        );
    }
    assert_eq!(
        a.gw.get("/realms/other/.well-known/openid-configuration", None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_bearer_grant_needs_no_separate_client_authentication() {
    let a = Auth::start().await;
    let grant = a.assertion("svc-reports", &a.token_url(), 3600, "only-grant-1");
    let form = [("grant_type", JWT_BEARER), ("assertion", grant.as_str())];
    let r = a.post("/oauth/token", &form, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json()["access_token"].as_str().unwrap().to_string();
    let up = a.gw.get("/api/x", Some(&t)).await;
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("svc-reports"));
    assert_eq!(up.echoed("x-auth-client-id").as_deref(), Some("signer"));
    // the same assertion again, or one the client's keys did not sign, is refused
    oauth_error(
        &a.post("/oauth/token", &form, None).await,
        400,
        "invalid_grant",
    );
    let forged = crate::support::keys::TestKey::rsa("forged").sign(&json!({"iss": "signer",
        "sub": "alice", "aud": a.token_url(), "exp": now() + 60, "jti": "forged-1"}));
    let form = [("grant_type", JWT_BEARER), ("assertion", forged.as_str())];
    oauth_error(
        &a.post("/oauth/token", &form, None).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_bearer_grant_may_name_its_client_as_the_assertions_issuer() {
    let a = Auth::start().await;
    let grant = a.assertion("alice", &a.token_url(), 3600, "named-1");
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", grant.as_str()),
        ("client_id", "signer"),
    ];
    let r = a.post("/oauth/token", &form, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // another client's name beside the assertion is refused, and costs the named client nothing
    let grant = a.assertion("alice", &a.token_url(), 3600, "named-2");
    for other in ["svc", "nobody"] {
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", grant.as_str()),
            ("client_id", other),
        ];
        let r = a.post("/oauth/token", &form, None).await;
        oauth_error(&r, 401, "invalid_client");
        assert_eq!(
            r.json()["error_description"],
            "client_id is not the assertion's issuer"
        );
    }
    let form = [("grant_type", JWT_BEARER), ("assertion", grant.as_str())];
    assert_eq!(a.post("/oauth/token", &form, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_assertion_authenticates_nobody_at_revocation_or_introspection() {
    let a = Auth::start().await;
    let grant = a.assertion("alice", &a.token_url(), 3600, "kept-1");
    let issued = a
        .post(
            "/oauth/token",
            &[("grant_type", JWT_BEARER), ("assertion", grant.as_str())],
            None,
        )
        .await;
    let t = issued.json()["access_token"].as_str().unwrap().to_string();
    // JWT-shaped text naming the client, signed by nobody: what an attacker can always make
    let forged = format!(
        "{}.{}.AAAA",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"iss":"signer","sub":"x"}"#)
    );
    for endpoint in ["/oauth/revoke", "/oauth/introspect"] {
        let form = [
            ("token", t.as_str()),
            ("grant_type", JWT_BEARER),
            ("assertion", forged.as_str()),
        ];
        let r = a.post(endpoint, &form, None).await;
        oauth_error(&r, 401, "invalid_client");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Basic realm=\"gatehouse\"")
        );
    }
    assert_eq!(
        a.gw.get("/api/x", Some(&t)).await.status,
        200,
        "still valid"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_client_with_an_empty_basic_password_is_a_public_client() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(crate::tokens::ALICE_PASSWORD).await);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("code_verifier", VERIFIER),
        ("client_secret", ""),
    ];
    let r = a.post("/oauth/token", &form, Some(("browser", ""))).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_redirects_take_any_port_and_the_exchange_may_omit_an_unsent_redirect_uri() {
    let a = Auth::start().await;
    let q = authorize_query(&[("redirect_uri", "http://127.0.0.1:53123/other")]);
    let page = a.get_authorize(&q, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let other_path = authorize_query(&[("redirect_uri", "http://127.0.0.1:53123/elsewhere")]);
    assert_eq!(a.get_authorize(&other_path, None).await.status, 400);
    // browser2 registered one URI; its request leaves redirect_uri out, and so may the exchange
    let signed_in = a.sign_in(crate::tokens::ALICE_PASSWORD).await;
    let session = set_cookie(&signed_in, SESSION).unwrap();
    let q = authorize_query(&[
        ("client_id", "browser2"),
        ("redirect_uri", ""),
        ("scope", "orders.read"),
    ]);
    let r = a.get_authorize(&q, Some(&session)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let code = query_of(&r)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "browser2"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let t = a.post("/oauth/token", &form, None).await;
    assert_eq!(t.status, 200, "{}", t.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_and_max_age_decide_whether_to_ask_again() {
    let a = Auth::start().await;
    // no session and prompt=none: back to the client with login_required
    let r = a
        .get_authorize(&authorize_query(&[("prompt", "none")]), None)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let q = query_of(&r);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "xyz st@te");
    let signed_in = a.sign_in(crate::tokens::ALICE_PASSWORD).await;
    let session = set_cookie(&signed_in, SESSION).unwrap();
    // with a session, prompt=none answers at once
    let r = a
        .get_authorize(&authorize_query(&[("prompt", "none")]), Some(&session))
        .await;
    assert!(
        query_of(&r).contains_key("code"),
        "{:?}",
        r.header("location")
    );
    // prompt=login and max_age=0 ask again, session or not
    for extra in [("prompt", "login"), ("max_age", "0")] {
        let r = a
            .get_authorize(&authorize_query(&[extra]), Some(&session))
            .await;
        assert_eq!(r.status, 200, "{extra:?}: {}", r.body);
        assert!(r.body.contains("name=\"password\""), "{extra:?}");
    }
    // a recent enough session satisfies max_age
    let r = a
        .get_authorize(&authorize_query(&[("max_age", "3600")]), Some(&session))
        .await;
    assert_eq!(r.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authorization_request_may_come_by_post() {
    let a = Auth::start().await;
    let body: Vec<(String, String)> = url::form_urlencoded::parse(authorize_query(&[]).as_bytes())
        .into_owned()
        .collect();
    let r = Resp::from(
        a.gw.https
            .post(format!(
                "https://localhost:{}/oauth/authorize",
                a.gw.tls.port()
            ))
            .form(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("name=\"password\""));
}

async fn userinfo(a: &Auth, token: &str, in_body: bool) -> Resp {
    let url = format!("https://localhost:{}/oauth/userinfo", a.gw.tls.port());
    let rb = if in_body {
        a.gw.https.post(url).form(&[("access_token", token)])
    } else {
        a.gw.https.get(url).bearer_auth(token)
    };
    Resp::from(rb.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_takes_a_form_token_and_needs_the_openid_scope() {
    let a = Auth::start().await;
    let with = password_grant(&a, crate::tokens::ALICE_PASSWORD, "openid email").await;
    let t = with.json()["access_token"].as_str().unwrap().to_string();
    let r = userinfo(&a, &t, true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["email"], "alice@example.com");
    let without = password_grant(&a, crate::tokens::ALICE_PASSWORD, "orders.read").await;
    let t = without.json()["access_token"].as_str().unwrap().to_string();
    let r = userinfo(&a, &t, false).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.challenge().contains("scope=\"openid\""),
        "{}",
        r.challenge()
    );
    // no token at all: a challenge without an error code (RFC 6750 §3.1)
    let none = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/oauth/userinfo",
                a.gw.tls.port()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none.status, 401);
    assert_eq!(none.challenge(), "Bearer realm=\"gatehouse\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_clients_failures_do_not_lock_out_another_behind_the_same_address() {
    let a = Auth::start().await;
    for _ in 0..6 {
        let r = a.client_credentials("svc", "wrong").await;
        assert_eq!(r.status, 401);
    }
    let locked = a.client_credentials("svc", crate::tokens::SVC_SECRET).await;
    oauth_error(&locked, 401, "invalid_client");
    assert!(locked.header("retry-after").is_some());
    let other = a.client_credentials("bcrypt", "bcrypt-secret").await;
    assert_eq!(other.status, 200, "{}", other.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_on_a_clients_origin_may_call_the_token_endpoints() {
    let a = Auth::start().await;
    let url = |p: &str| format!("https://localhost:{}{p}", a.gw.tls.port());
    let preflight = |origin: &'static str| {
        a.gw.https
            .request(reqwest::Method::OPTIONS, url("/oauth/token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    // the browser client's redirect URI is on https://app.example: its origin is allowed
    let ok = Resp::from(preflight("https://app.example").await.unwrap()).await;
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        ok.header("access-control-allow-methods").as_deref(),
        Some("POST")
    );
    let evil = Resp::from(preflight("https://evil.example").await.unwrap()).await;
    assert_eq!(evil.status, 403);
    assert_eq!(evil.header("access-control-allow-origin"), None);
    // the answer itself carries the header too
    let code = code_of(&a.sign_in(crate::tokens::ALICE_PASSWORD).await);
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "browser"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("code_verifier", VERIFIER),
    ];
    let r = Resp::from(
        a.gw.https
            .post(url("/oauth/token"))
            .header("origin", "https://app.example")
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    // the public documents, to anyone
    let jwks = Resp::from(
        a.gw.https
            .get(url("/.well-known/jwks.json"))
            .header("origin", "https://anyone.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        jwks.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}
