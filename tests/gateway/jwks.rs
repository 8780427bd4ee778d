//! The JWKS cache: unknown-kid refetch with a floor and single flight, Cache-Control, stale keys, and 503 before keys.

use crate::support::harness::Gw;
use crate::support::keys::{claims, TestKey};
use crate::support::servers::{Echo, Idp};
use serde_json::json;
use std::time::Duration;

const ISS: &str = "https://jwks.test";

async fn gateway(idp: &Idp, settings: &str) -> (Gw, Echo) {
    gateway_at(&idp.jwks_uri(), settings).await
}

async fn gateway_at(jwks_uri: &str, settings: &str) -> (Gw, Echo) {
    let echo = Echo::start("echo").await;
    let body = format!(
        r#"
[[issuers]]
name = "idp"
issuer = "{ISS}"
jwks_uri = "{}"
audiences = ["api"]
algorithms = ["RS256", "ES256"]
{settings}

[[upstreams]]
name = "echo"
peers = ["{}"]

[[routes]]
path_prefix = "/"
upstream = "echo"
"#,
        jwks_uri, echo.addr
    );
    (Gw::start(&body), echo)
}

/// Waits until the background warm-up fetched the keys once.
async fn warmed(idp: &Idp) {
    for _ in 0..200 {
        if idp.fetches() >= 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("keys were never fetched");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_is_picked_up_through_an_unknown_kid_refetch() {
    let (k1, k2) = (TestKey::rsa("k1"), TestKey::ec("k2"));
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    let (gw, _echo) = gateway(&idp, r#"jwks_min_refresh = "30s""#).await;
    warmed(&idp).await;
    assert_eq!(
        gw.get("/x", Some(&k1.sign(&claims(ISS, "api", json!({})))))
            .await
            .status,
        200
    );
    let fetches = idp.fetches();

    idp.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    let t2 = k2.sign(&claims(ISS, "api", json!({})));
    // within the floor: no refetch, the new kid is unknown
    let r = gw.get("/x", Some(&t2)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.challenge().contains("unknown key"), "{}", r.challenge());
    assert_eq!(idp.fetches(), fetches);
    // once the floor has passed, the unknown kid causes one refetch and the token passes
    gw.clock.advance(Duration::from_secs(31));
    assert_eq!(gw.get("/x", Some(&t2)).await.status, 200);
    assert_eq!(idp.fetches(), fetches + 1);
    // the old key is still published, so its tokens still pass
    assert_eq!(
        gw.get("/x", Some(&k1.sign(&claims(ISS, "api", json!({})))))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_unknown_kids_cause_at_most_one_fetch() {
    let k1 = TestKey::rsa("k1");
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    let (gw, _echo) = gateway(&idp, r#"jwks_min_refresh = "30s""#).await;
    warmed(&idp).await;
    gw.clock.advance(Duration::from_secs(31));
    let before = idp.fetches();
    let stranger = TestKey::rsa("nobody-knows-me");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let t = stranger.sign(&claims(ISS, "api", json!({"n": i})));
        let (client, url) = (gw.http.clone(), gw.url("/x"));
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let extra = idp.fetches() - before;
    assert!(extra <= 1, "{extra} fetches for 20 unknown kids");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_keys_keep_working_while_the_provider_is_down() {
    let k1 = TestKey::rsa("k1");
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    let (gw, _echo) = gateway(
        &idp,
        "jwks_min_refresh = \"30s\"\njwks_max_refresh = \"1h\"\njwks_stale_for = \"24h\"",
    )
    .await;
    warmed(&idp).await;
    idp.set_fail(true);
    let before = idp.fetches();
    // two hours on: the keys expired an hour ago and every refresh fails, but they are within jwks_stale_for
    gw.clock.advance(Duration::from_secs(2 * 3600));
    let exp = crate::support::keys::now() + 30 * 3600;
    let t = k1.sign(&claims(ISS, "api", json!({"exp": exp})));
    assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
    for _ in 0..40 {
        if idp.fetches() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        idp.fetches() > before,
        "no refresh was attempted once the keys expired"
    );
    // past jwks_stale_for the keys are gone: 503 with Retry-After, never accepted unverified
    gw.clock.advance(Duration::from_secs(24 * 3600));
    let t = k1.sign(&claims(ISS, "api", json!({"exp": exp + 3600, "n": 2})));
    let r = gw.get("/x", Some(&t)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    // the next try is the backoff's (from 1 s), never later than jwks_min_refresh
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // the provider returns: keys come back
    idp.set_fail(false);
    gw.clock.advance(Duration::from_secs(31));
    assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn before_keys_arrive_routes_answer_503_and_start_up_is_not_blocked() {
    let k1 = TestKey::rsa("k1");
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    idp.set_fail(true);
    let (gw, echo) = gateway(&idp, r#"jwks_min_refresh = "5s""#).await;
    let r = gw
        .get("/x", Some(&k1.sign(&claims(ISS, "api", json!({})))))
        .await;
    assert_eq!(r.status, 503);
    // failed fetches are retried after a second, then two, four…, not after jwks_min_refresh
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(echo.hits(), 0);
    // a route needing no token is served meanwhile
    assert_eq!(gw.get("/healthz", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_down_at_start_up_is_used_within_seconds_of_its_return() {
    let k1 = TestKey::rsa("k1");
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    idp.set_fail(true);
    let (gw, _echo) = gateway(&idp, r#"jwks_min_refresh = "30s""#).await;
    let t = k1.sign(&claims(ISS, "api", json!({})));
    assert_eq!(gw.get("/x", Some(&t)).await.status, 503);
    let ready = |gw: &Gw| {
        let url = format!("http://{}/ready", gw.admin);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let r = ready(&gw).await;
    assert_eq!(r["status"], "ready", "other routes still work");
    assert_eq!(r["issuers_without_keys"], json!(["idp"]));
    // the provider comes back; a few seconds later (not jwks_min_refresh's 30) its keys are used
    idp.set_fail(false);
    gw.clock.advance(Duration::from_secs(5));
    let mut status = 0;
    for _ in 0..40 {
        status = gw.get("/x", Some(&t)).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(ready(&gw).await["issuers_without_keys"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_control_max_age_sets_the_refresh_time() {
    let k1 = TestKey::rsa("k1");
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    *idp.state.cache_control.lock().unwrap() = Some("public, max-age=120".into());
    let (gw, _echo) = gateway(
        &idp,
        "jwks_min_refresh = \"30s\"\njwks_max_refresh = \"1h\"",
    )
    .await;
    warmed(&idp).await;
    let before = idp.fetches();
    // 3/4 of max-age (90 s) later the keys are refreshed in the background
    gw.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(idp.fetches(), before, "refreshed too early");
    gw.clock.advance(Duration::from_secs(40));
    for _ in 0..40 {
        if idp.fetches() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(idp.fetches(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_or_symmetric_jwks_keys_are_ignored() {
    use base64::Engine;
    let good = TestKey::rsa("good");
    let weak_n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xffu8; 128]); // 1024 bits
    let idp = Idp::start(vec![
        json!({"kty": "RSA", "kid": "weak", "n": weak_n, "e": "AQAB"}),
        json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": good.jwk["n"], "e": "AQAB"}),
        good.jwk.clone(),
    ])
    .await;
    let (gw, _echo) = gateway(&idp, "").await;
    warmed(&idp).await;
    assert_eq!(
        gw.get("/x", Some(&good.sign(&claims(ISS, "api", json!({})))))
            .await
            .status,
        200
    );
    // HS256 with the oct key's secret is refused: symmetric keys never come from a JWKS
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("oct".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims(ISS, "api", json!({})),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(gw.get("/x", Some(&t)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_jwks_documents_are_refused() {
    let keys: Vec<TestKey> = (0..4).map(|i| TestKey::rsa(&format!("k{i}"))).collect();
    let idp = Idp::start(keys.iter().map(|k| k.jwk.clone()).collect()).await;
    let (gw, _echo) = gateway(&idp, "jwks_max_bytes = 1024").await;
    let r = gw
        .get("/x", Some(&keys[0].sign(&claims(ISS, "api", json!({})))))
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(idp.fetches() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_redirects_are_followed_only_on_the_same_host() {
    let k1 = TestKey::rsa("k1");
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    let token = k1.sign(&claims(ISS, "api", json!({})));
    let (same, _e1) = gateway_at(&format!("{}/redirect-same", idp.url), "").await;
    assert_eq!(same.get("/x", Some(&token)).await.status, 200);
    let before = idp.fetches();
    let (away, _e2) = gateway_at(&format!("{}/redirect-away", idp.url), "").await;
    assert_eq!(away.get("/x", Some(&token)).await.status, 503);
    assert_eq!(
        idp.fetches(),
        before,
        "the redirect to another host was followed"
    );
}
