//! Attacks on the token service that once got through, each refused: introspection by anyone,
//! hash floods, assertion lockout bypass, scope-burned refreshes, overflowing `exp`, any-subject
//! jwt-bearer, reusable CSRF tokens, and revoked families whose access tokens lived on.

use crate::support::harness::Resp;
use crate::support::keys::{now, TestKey};
use crate::support::servers::Idp;
use crate::tokens::{
    oauth_error, Auth, ALICE_PASSWORD, ASSERTION_TYPE, JWT_BEARER, LEGACY_SECRET, SVC_SECRET,
};
use crate::tokens_code::{authorize_query, hidden, set_cookie};
use crate::tokens_users::{password_grant, refresh};
use serde_json::json;
use std::sync::atomic::Ordering;

const MEMORY: &str = "backend = \"memory\"";
const API_SECRET: &str = "api-secret-0123456789abcdef0123456789abcdef";

fn introspect_form(token: &str) -> [(&str, &str); 1] {
    [("token", token)]
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_needs_a_confidential_client_and_answers_only_about_its_tokens() {
    let extra = format!(
        "\n[[clients]]\nclient_id = \"api\"\nsecret_hash = \"{}\"\nscopes = [\"orders.read\"]\n",
        gatehouse::token::sha256_hash(API_SECRET)
    );
    let a = Auth::start_with(MEMORY, &extra).await;
    let t = a.svc_token(None).await;
    // naming a public client is not authentication
    let mut form = vec![("token", t.as_str()), ("client_id", "browser")];
    oauth_error(
        &a.post("/oauth/introspect", &form, None).await,
        401,
        "invalid_client",
    );
    form.pop();
    // another confidential client learns nothing
    let r = a
        .post(
            "/oauth/introspect",
            &form,
            Some(("bcrypt", "bcrypt-secret")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"active": false}));
    // the client it was issued to, and the audience it names, see it
    for who in [("svc", SVC_SECRET), ("api", API_SECRET)] {
        let r = a
            .post("/oauth/introspect", &introspect_form(&t), Some(who))
            .await;
        assert_eq!(r.json()["active"], true, "{}: {}", who.0, r.body);
        assert_eq!(r.json()["sub"], "svc");
    }
    // a refresh token: only its own client learns it is live, and asking does not rotate it
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = a
        .post(
            "/oauth/introspect",
            &introspect_form(&rt),
            Some(("svc", SVC_SECRET)),
        )
        .await;
    assert_eq!(r.json(), json!({"active": false}));
    let r = a
        .post(
            "/oauth/introspect",
            &introspect_form(&rt),
            Some(("legacy", LEGACY_SECRET)),
        )
        .await;
    assert_eq!(r.json()["active"], true, "{}", r.body);
    assert_eq!(r.json()["token_type"], "refresh_token");
    assert_eq!(refresh(&a, &rt).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_slow_hash_checks_is_refused_not_queued() {
    let extra = format!(
        "\n[[clients]]\nclient_id = \"slow\"\nsecret_hash = \"{}\"\nscopes = [\"orders.read\"]\n",
        bcrypt::hash("slow-secret", 6).unwrap()
    );
    let a = Auth::start_with(MEMORY, &extra).await;
    let requests = (0..150).map(|_| a.client_credentials("slow", "slow-secret"));
    let answers = futures_util::future::join_all(requests).await;
    let busy: Vec<&Resp> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(!busy.is_empty(), "the pool never filled");
    for r in &busy {
        assert_eq!(r.json()["error"], "temporarily_unavailable");
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    }
    assert!(answers.iter().all(|r| r.status == 200 || r.status == 503));
    assert!(answers.iter().any(|r| r.status == 200));
    // once the flood is over, the client authenticates again
    assert_eq!(
        a.client_credentials("slow", "slow-secret").await.status,
        200
    );
}

/// A client whose source address is `ip` (any 127.0.0.0/8 address reaches the gateway).
fn client_from(a: &Auth, ip: [u8; 4]) -> reqwest::Client {
    let cert = std::fs::read(a.gw.path("certs/gateway.crt")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

async fn assert_with(a: &Auth, from: [u8; 4], assertion: &str) -> Resp {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    let rb = client_from(a, from).post(a.token_url()).form(&form);
    Resp::from(rb.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_assertions_count_towards_the_lockout_and_fetch_keys_once() {
    let idp = Idp::start(vec![]).await;
    let extra = format!(
        "\n[[clients]]\nclient_id = \"remote\"\njwks_uri = \"{}/huge-jwks\"\nscopes = [\"orders.read\"]\n",
        idp.url
    );
    let a = Auth::start_with(MEMORY, &extra).await;
    let forger = TestKey::rsa("forged");
    let forged = |jti: &str| {
        forger.sign(
            &json!({"iss": "remote", "sub": "remote", "aud": a.token_url(),
                            "exp": now() + 60, "jti": jti}),
        )
    };
    // five failures from one address: the key set is fetched once and refused by its size
    for (i, from) in [
        [127, 0, 0, 1],
        [127, 0, 0, 1],
        [127, 0, 0, 1],
        [127, 0, 0, 1],
        [127, 0, 0, 1],
    ]
    .iter()
    .enumerate()
    {
        let r = assert_with(&a, *from, &forged(&format!("f{i}"))).await;
        oauth_error(&r, 401, "invalid_client");
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("jwks_uri"),
            "{}",
            r.body
        );
    }
    assert_eq!(idp.state.other_fetches.load(Ordering::SeqCst), 1);
    // that address is locked out for the client; another is not: the lockout follows the client
    // at an address, so nobody can lock a client out everywhere by naming it
    let r = assert_with(&a, [127, 0, 0, 1], &forged("f6")).await;
    oauth_error(&r, 401, "invalid_client");
    assert!(
        r.body.contains("too many failed authentications"),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
    let r = assert_with(&a, [127, 0, 0, 3], &forged("f7")).await;
    oauth_error(&r, 401, "invalid_client");
    assert!(r.body.contains("jwks_uri"), "{}", r.body);
    // other clients are not locked out
    let good = a.assertion("signer", &a.token_url(), 60, "ok-1");
    assert_eq!(assert_with(&a, [127, 0, 0, 4], &good).await.status, 200);
    assert_eq!(idp.state.other_fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assertion_with_an_enormous_exp_is_refused_with_its_reason() {
    let a = Auth::start().await;
    let c = json!({"iss": "signer", "sub": "signer", "aud": a.token_url(), "exp": u64::MAX, "jti": "max"});
    let r = assert_with(&a, [127, 0, 0, 1], &a.client_key.sign(&c)).await;
    oauth_error(&r, 401, "invalid_client");
    assert_eq!(
        r.json()["error_description"],
        "the assertion's exp is too far ahead"
    );
    // the gateway is still answering
    let good = a.assertion("signer", &a.token_url(), 60, "after-max");
    assert_eq!(assert_with(&a, [127, 0, 0, 1], &good).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_asking_for_more_scope_is_refused_before_rotation() {
    let a = Auth::start().await;
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    let wider = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("scope", "orders.read profile"),
            ],
            Some(("legacy", LEGACY_SECRET)),
        )
        .await;
    oauth_error(&wider, 400, "invalid_scope");
    // the token was not used up: it still refreshes once, and its family is alive
    let r = refresh(&a, &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let next = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(&a, &next).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_bearer_client_acts_only_for_its_listed_subjects() {
    let a = Auth::start().await;
    for (sub, status) in [
        ("admin@example.com", 400),
        ("svc-billing", 200),
        ("alice", 200),
    ] {
        let client_auth = a.assertion("signer", &a.token_url(), 60, &format!("auth-{sub}"));
        let grant = a.assertion(sub, &a.token_url(), 60, &format!("grant-{sub}"));
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", grant.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", client_auth.as_str()),
        ];
        let r = a.post("/oauth/token", &form, None).await;
        assert_eq!(r.status, status, "{sub}: {}", r.body);
        if status == 400 {
            assert_eq!(r.json()["error"], "invalid_grant");
            assert!(r.body.contains("jwt_bearer_subjects"), "{}", r.body);
        }
    }
}

#[test]
fn check_warns_about_a_client_that_may_act_for_anyone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(
        dir.path().join("keys/signer.pub.pem"),
        TestKey::rsa("w").public_pem,
    )
    .unwrap();
    let echo = crate::support::servers::Echo {
        addr: "127.0.0.1:9".parse().unwrap(),
        state: Default::default(),
    };
    let toml = format!(
        "[server]\nlisten_plain = [\"127.0.0.1:18080\"]\nlisten_tls = []\n{}",
        crate::tokens::auth_toml(&echo, MEMORY, "")
    )
    .replace(
        "jwt_bearer_subjects = [\"alice\", \"svc-*\"]",
        "jwt_bearer_subjects = [\"*\"]",
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: clients[3].jwt_bearer_subjects: \"*\" lets \"signer\" act for any subject"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_csrf_token_works_once_and_only_with_its_own_cookie() {
    let a = Auth::start().await;
    let page = a.get_authorize(&authorize_query(&[]), None).await;
    let cookie = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
    let r = a.post_sign_in(&page, &cookie, "wrong").await;
    assert_eq!(r.status, 401, "{}", r.body);
    // the same form again, now with the right password: its token is used up
    let r = a.post_sign_in(&page, &cookie, ALICE_PASSWORD).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("This sign-in form has expired"));
    // a fresh form in the same browser keeps the pre-login cookie and works
    let again = a.get_authorize(&authorize_query(&[]), Some(&cookie)).await;
    assert_eq!(
        set_cookie(&again, "__Host-gatehouse-csrf").as_ref(),
        Some(&cookie)
    );
    assert_ne!(hidden(&again.body, "csrf"), hidden(&page.body, "csrf"));
    // another browser's form token does not work with this browser's cookie
    let other = a.get_authorize(&authorize_query(&[]), None).await;
    let r = a.post_sign_in(&other, &cookie, ALICE_PASSWORD).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a.post_sign_in(&again, &cookie, ALICE_PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_refresh_token_revokes_the_access_tokens_of_its_family_at_the_edge() {
    let a = Auth::start().await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let (a1, r1) = (
        first.json()["access_token"].as_str().unwrap().to_string(),
        first.json()["refresh_token"].as_str().unwrap().to_string(),
    );
    let second = refresh(&a, &r1).await;
    let a2 = second.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/api/x", Some(&a1)).await.status, 200);
    assert_eq!(a.gw.get("/api/x", Some(&a2)).await.status, 200);
    oauth_error(&refresh(&a, &r1).await, 400, "invalid_grant");
    for t in [&a1, &a2] {
        let r = a.gw.get("/api/x", Some(t)).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.challenge().contains("invalid_token"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_accept_only_their_audiences() {
    let extra = r#"
[[routes]]
path_prefix = "/other"
upstream = "echo"
issuers = ["self"]
audiences = ["other-api"]

[[clients]]
client_id = "other"
secret_hash = "OTHER"
scopes = ["orders.read"]
audience = ["other-api"]
"#
    .replace("OTHER", &gatehouse::token::sha256_hash(API_SECRET));
    let a = Auth::start_with(MEMORY, &extra).await;
    let r = a.client_credentials("other", API_SECRET).await;
    let other = r.json()["access_token"].as_str().unwrap().to_string();
    let r = a.gw.get("/api/x", Some(&other)).await;
    assert_eq!(
        r.status, 401,
        "a token for other-api passed on /api: {}",
        r.body
    );
    assert!(r.challenge().contains("invalid_token"));
    assert_eq!(a.gw.get("/other/x", Some(&other)).await.status, 200);
    let svc = a.svc_token(None).await;
    assert_eq!(a.gw.get("/other/x", Some(&svc)).await.status, 401);
    assert_eq!(a.gw.get("/api/x", Some(&svc)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_key_set_that_was_down_is_used_within_seconds_of_its_return() {
    let key = TestKey::rsa("remote-1");
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    idp.set_fail(true);
    let extra = format!(
        "\n[[clients]]\nclient_id = \"remote\"\njwks_uri = \"{}\"\nscopes = [\"orders.read\"]\n",
        idp.jwks_uri()
    );
    let a = Auth::start_with(MEMORY, &extra).await;
    let assertion = |jti: &str| {
        key.sign(
            &json!({"iss": "remote", "sub": "remote", "aud": a.token_url(),
            "exp": now() + 60, "jti": jti}),
        )
    };
    let r = assert_with(&a, [127, 0, 0, 1], &assertion("down")).await;
    oauth_error(&r, 401, "invalid_client");
    // the key set is back: a second later (the first retry), not after the 30 s floor
    idp.set_fail(false);
    a.gw.clock.advance(std::time::Duration::from_secs(2));
    let r = assert_with(&a, [127, 0, 0, 1], &assertion("back")).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A gateway behind a trusted proxy at 127.0.0.1: the client is whoever `X-Forwarded-For` names.
async fn behind_a_proxy() -> Auth {
    Auth::start_edited(MEMORY, "", |t| {
        t.replacen(
            "threads = 1",
            "threads = 1\ntrusted_proxies = [\"127.0.0.1\"]",
            1,
        )
    })
    .await
}

async fn token_from(a: &Auth, client: &str, form: &[(&str, &str)], basic: (&str, &str)) -> Resp {
    let rb =
        a.gw.https
            .post(format!("https://localhost:{}/oauth/token", a.gw.tls.port()))
            .header("x-forwarded-for", client)
            .basic_auth(basic.0, Some(basic.1))
            .form(form);
    Resp::from(rb.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_behind_a_proxy_lock_out_only_the_address_they_came_from() {
    let a = behind_a_proxy().await;
    let cc = [("grant_type", "client_credentials")];
    // someone naming the client with wrong secrets locks it out at their own address only
    for _ in 0..6 {
        let r = token_from(&a, "198.51.100.66", &cc, ("svc", "wrong")).await;
        oauth_error(&r, 401, "invalid_client");
    }
    let there = token_from(&a, "198.51.100.66", &cc, ("svc", SVC_SECRET)).await;
    oauth_error(&there, 401, "invalid_client");
    assert!(there.header("retry-after").is_some());
    let elsewhere = token_from(&a, "198.51.100.7", &cc, ("svc", SVC_SECRET)).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
    // and a person's wrong passwords lock out that account from that address, not every user of
    // the proxy: the address counted is the client's, never the proxy's
    let grant = |password: &'static str| {
        [
            ("grant_type", "password"),
            ("username", "alice@example.com"),
            ("password", password),
            ("scope", "orders.read"),
        ]
    };
    for _ in 0..6 {
        let r = token_from(
            &a,
            "203.0.113.5",
            &grant("wrong"),
            ("legacy", LEGACY_SECRET),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let r = token_from(
        &a,
        "203.0.113.5",
        &grant(ALICE_PASSWORD),
        ("legacy", LEGACY_SECRET),
    )
    .await;
    assert_ne!(r.status, 200, "locked at the address that failed");
    let r = token_from(
        &a,
        "203.0.113.9",
        &grant(ALICE_PASSWORD),
        ("legacy", LEGACY_SECRET),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // a client-written X-Forwarded-For before the proxy's hop changes nothing: the nearest counts
    let r = token_from(
        &a,
        "203.0.113.9, 203.0.113.5",
        &grant(ALICE_PASSWORD),
        ("legacy", LEGACY_SECRET),
    )
    .await;
    assert_ne!(r.status, 200, "the proxy's own entry names 203.0.113.5");
}
