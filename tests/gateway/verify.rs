//! Token verification: every algorithm family, every claim check, and the classic JWT attacks.

use crate::support::keys::{claims, now, raw_token, TestKey};
use crate::{World, AUD, ED_ISS, HS_ISS, RSA_ISS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// Asserts a 401 invalid_token answer with the RFC 6750 challenge, and that nothing reached the upstream.
async fn refused(w: &World, token: &str, why: &str) {
    let before = w.echo.hits();
    let r = w.gw.get("/api/x", Some(token)).await;
    assert_eq!(r.status, 401, "{why}: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_token", "{why}");
    assert!(
        r.challenge().contains("error=\"invalid_token\""),
        "{why}: {}",
        r.challenge()
    );
    assert_eq!(w.echo.hits(), before, "{why}: the upstream was reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_es256_eddsa_and_hs256_issuers_verify() {
    let w = World::start().await;
    let tokens = [
        (w.rsa_token(json!({})), RSA_ISS.to_string()),
        (w.ec_token(json!({})), w.idp.url.clone()),
        (
            w.ed.sign(&claims(ED_ISS, AUD, json!({}))),
            ED_ISS.to_string(),
        ),
        (
            w.hs.sign(&claims(HS_ISS, AUD, json!({}))),
            HS_ISS.to_string(),
        ),
    ];
    for (t, iss) in tokens {
        let r = w.gw.get("/api/orders", Some(&t)).await;
        assert_eq!(r.status, 200, "{iss}: {}", r.body);
        assert_eq!(r.echoed("x-auth-issuer").as_deref(), Some(iss.as_str()));
        assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("user-1"));
        assert_eq!(r.json()["uri"], "/api/orders");
    }
    // discovery was used for the ES256 issuer
    assert!(
        w.idp
            .state
            .discovery_fetches
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_claims_are_enforced_with_leeway() {
    let w = World::start().await;
    let n = now();
    refused(&w, &w.rsa_token(json!({"exp": n - 120})), "expired").await;
    refused(
        &w,
        &w.rsa_token(json!({"nbf": n + 300})),
        "nbf in the future",
    )
    .await;
    refused(&w, &w.rsa_token(json!({"exp": null})), "missing exp").await;
    refused(
        &w,
        &w.rsa_token(json!({"exp": "tomorrow"})),
        "exp not a number",
    )
    .await;
    refused(
        &w,
        &w.rsa_token(json!({"iat": n + 600})),
        "issued in the future",
    )
    .await;
    // within the 30 s leeway
    assert_eq!(
        w.gw.get("/api/x", Some(&w.rsa_token(json!({"exp": n - 10}))))
            .await
            .status,
        200
    );
    assert_eq!(
        w.gw.get("/api/x", Some(&w.rsa_token(json!({"nbf": n + 10}))))
            .await
            .status,
        200
    );
    let r =
        w.gw.get("/api/x", Some(&w.rsa_token(json!({"exp": n - 120}))))
            .await;
    assert!(r.challenge().contains("expired"), "{}", r.challenge());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_issuer_or_audience_is_refused() {
    let w = World::start().await;
    refused(
        &w,
        &w.rsa.sign(&claims("https://evil.test", AUD, json!({}))),
        "unknown iss",
    )
    .await;
    refused(
        &w,
        &w.rsa.sign(&claims(RSA_ISS, "someone-else", json!({}))),
        "wrong aud",
    )
    .await;
    refused(
        &w,
        &w.rsa.sign(&claims(RSA_ISS, AUD, json!({"aud": null}))),
        "no aud",
    )
    .await;
    // an RSA key signing for the EdDSA issuer's iss
    refused(
        &w,
        &w.rsa.sign(&claims(ED_ISS, AUD, json!({}))),
        "key of another issuer",
    )
    .await;
    // aud as an array containing an accepted value
    let t = w
        .rsa
        .sign(&claims(RSA_ISS, AUD, json!({"aud": ["x", AUD]})));
    assert_eq!(w.gw.get("/api/x", Some(&t)).await.status, 200);
    // a route limited to one issuer refuses the others' valid tokens
    let r = w.gw.get("/rsa-only", Some(&w.ec_token(json!({})))).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        w.gw.get("/rsa-only", Some(&w.rsa_token(json!({}))))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alg_none_and_key_confusion_are_refused() {
    let w = World::start().await;
    let c = claims(RSA_ISS, AUD, json!({}));
    refused(
        &w,
        &raw_token(&json!({"alg": "none", "kid": "rsa-1"}), &c, b""),
        "alg none, empty signature",
    )
    .await;
    refused(
        &w,
        &format!(
            "{}.",
            raw_token(&json!({"alg": "none"}), &c, b"").trim_end_matches('.')
        ),
        "alg none",
    )
    .await;
    refused(
        &w,
        &raw_token(&json!({"alg": "None", "kid": "rsa-1"}), &c, b"x"),
        "alg None",
    )
    .await;
    // HS256 signed with the RSA public key (PEM bytes) as the HMAC secret
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa-1".into());
    let t = jsonwebtoken::encode(
        &h,
        &c,
        &EncodingKey::from_secret(w.rsa.public_pem.as_bytes()),
    )
    .unwrap();
    refused(&w, &t, "HS256 with the RSA public key").await;
    // RS384 is not in the issuer's allowlist even with the right key
    let mut h = Header::new(Algorithm::RS384);
    h.kid = Some("rsa-1".into());
    refused(
        &w,
        &w.rsa.sign_with(&h, &c),
        "algorithm outside the allowlist",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_signatures_are_refused() {
    let w = World::start().await;
    let c = claims(RSA_ISS, AUD, json!({}));
    let forger = TestKey::rsa("rsa-1"); // same kid, other key
    refused(
        &w,
        &forger.sign(&c),
        "signed by another key with the same kid",
    )
    .await;
    let good = w.rsa.sign(&c);
    let parts: Vec<&str> = good.split('.').collect();
    // tamper with the payload, keep the signature
    let evil = claims(
        RSA_ISS,
        AUD,
        json!({"sub": "admin", "realm_access": {"roles": ["admin"]}}),
    );
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(evil.to_string()),
        parts[2]
    );
    refused(&w, &tampered, "tampered payload").await;
    // change a character in the middle of the signature
    let mut sig: Vec<u8> = parts[2].bytes().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == b'A' { b'B' } else { b'A' };
    let t = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(sig).unwrap()
    );
    refused(&w, &t, "tampered signature").await;
    assert_eq!(w.gw.get("/api/x", Some(&good)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn ecdsa_signature_of_zeros_is_refused() {
    let w = World::start().await;
    let c = claims(&w.idp.url, AUD, json!({}));
    refused(
        &w,
        &raw_token(&json!({"alg": "ES256", "kid": "ec-1"}), &c, &[0u8; 64]),
        "ES256 r = s = 0",
    )
    .await;
    refused(
        &w,
        &raw_token(&json!({"alg": "ES256", "kid": "ec-1"}), &c, &[]),
        "ES256 empty",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jku_x5u_and_jwk_headers_are_never_key_sources() {
    let w = World::start().await;
    let attacker = TestKey::rsa("evil");
    let mut h = attacker.header();
    h.jku = Some(format!("{}/attacker-jwks", w.idp.url));
    h.x5u = Some(format!("{}/attacker-jwks", w.idp.url));
    refused(
        &w,
        &attacker.sign_with(&h, &claims(RSA_ISS, AUD, json!({}))),
        "jku/x5u",
    )
    .await;
    // embedded jwk naming the attacker's own key
    let mut h = attacker.header();
    h.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
    refused(
        &w,
        &attacker.sign_with(&h, &claims(RSA_ISS, AUD, json!({}))),
        "embedded jwk",
    )
    .await;
    assert_eq!(
        w.idp
            .state
            .other_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_critical_headers_are_refused() {
    let w = World::start().await;
    let mut h = w.rsa.header();
    h.crit = Some(vec!["exp-ext".into()]);
    h.extras.insert("exp-ext", true);
    refused(
        &w,
        &w.rsa.sign_with(&h, &claims(RSA_ISS, AUD, json!({}))),
        "crit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_tokens_and_authorization_headers() {
    let w = World::start().await;
    for (t, why) in [
        ("abc", "one part"),
        ("a.b", "two parts"),
        ("a.b.c.d", "four parts"),
        ("!!!.###.$$$", "bad base64"),
        ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "payload not JSON"),
        ("bm90IGpzb24.e30.c2ln", "header not JSON"),
    ] {
        refused(&w, t, why).await;
    }
    // a non-Bearer scheme
    let r = crate::support::harness::Resp::from(
        w.gw.http
            .get(w.gw.url("/api/x"))
            .header("authorization", "Basic dXNlcjpwYXNz")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().contains("invalid_token"));
    // two Authorization headers
    let t = w.rsa_token(json!({}));
    let r = crate::support::harness::Resp::from(
        w.gw.http
            .get(w.gw.url("/api/x"))
            .header("authorization", format!("Bearer {t}"))
            .header("authorization", format!("Bearer {t}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_60_kb_token_is_answered_not_dropped() {
    let w = World::start().await;
    let big = "a".repeat(60 * 1024);
    let (status, text) = crate::support::harness::raw(
        w.gw.plain,
        format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {big}\r\n\r\n")
            .as_bytes(),
    );
    assert!(
        status == 401 || status == 431,
        "{status}: {}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.contains("invalid_token"),
        "{}",
        &text[..text.len().min(300)]
    );
    // a large but legal token still works after that
    let t = w.rsa_token(json!({"pad": "p".repeat(4000)}));
    assert_eq!(w.gw.get("/api/x", Some(&t)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_token_is_served_from_the_verified_cache() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    for _ in 0..5 {
        assert_eq!(w.gw.get("/api/x", Some(&t)).await.status, 200);
    }
    let m = w.gw.metrics().await;
    assert!(m.contains("gatehouse_verified_tokens_cached 1"), "{m}");
    // the cache never outlives exp: move the clock past exp + leeway
    w.gw.clock
        .advance(std::time::Duration::from_secs(3600 + 31));
    let r = w.gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().contains("expired"));
}
