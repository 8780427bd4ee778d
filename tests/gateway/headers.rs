//! Identity headers: spoofed copies removed on every route, safe encoding, token forwarding and placement.

use crate::support::harness::Resp;
use crate::World;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let w = World::start().await;
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("X-Auth-Subject", "root")
            .header("x-auth-roles", "admin")
            .header("X-Auth-Anything", "x")
            .header("X-Tenant", "acme")
            .header("X-Auth-Email", "ceo@example.com")
            .header("X-Original-URL", "/admin")
            .header("X-HTTP-Method-Override", "DELETE")
    };
    // public route: every identity header removed, none added
    let r = Resp::from(
        spoof(w.gw.http.get(w.gw.url("/public/x")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    for h in [
        "x-auth-subject",
        "x-auth-roles",
        "x-auth-anything",
        "x-tenant",
        "x-auth-email",
        "x-original-url",
        "x-http-method-override",
    ] {
        assert_eq!(
            r.echoed(h),
            None,
            "{h} reached the upstream of a public route"
        );
    }
    // protected route: only the gateway's values
    let t = w.rsa_token(json!({"sub": "alice", "email": "alice@example.com"}));
    let r = Resp::from(
        spoof(w.gw.http.get(w.gw.url("/api/x")))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(
        r.echoed("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(r.echoed("x-auth-roles"), None);
    assert_eq!(r.echoed("x-auth-anything"), None);
    assert_eq!(r.echoed("x-tenant"), None);
    // the whoami upstream shows the same view
    let r = Resp::from(
        spoof(w.gw.http.get(w.gw.url("/whoami")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        r.json()["headers"].get("x-auth-subject").is_none(),
        "{}",
        r.body
    );
    assert_eq!(r.json()["route"], "routes[10]");
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_values_with_crlf_or_non_ascii_are_percent_encoded() {
    let w = World::start().await;
    let t = w.rsa_token(json!({
        "sub": "eve\r\nX-Auth-Roles: admin",
        "email": "zoë@exämple.com",
        "org": {"tenant": "100%\u{0}"},
    }));
    let r = w.gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.echoed("x-auth-subject").as_deref(),
        Some("eve%0D%0AX-Auth-Roles: admin")
    );
    assert_eq!(r.echoed("x-auth-roles"), None);
    assert_eq!(
        r.echoed("x-auth-email").as_deref(),
        Some("zo%C3%AB@ex%C3%A4mple.com")
    );
    assert_eq!(r.echoed("x-tenant").as_deref(), Some("100%25%00"));
    // the whole payload travels base64url-encoded
    use base64::Engine;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(r.echoed("x-auth-claims").unwrap())
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims["email"], "zoë@exämple.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_removed_unless_forward_token_is_set() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    let r = w.gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.echoed("authorization"), None);
    let r = w.gw.get("/fwd/x", Some(&t)).await;
    assert_eq!(r.echoed("authorization"), Some(format!("Bearer {t}")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_token_is_removed_from_the_forwarded_url() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    let r =
        w.gw.get(&format!("/q/list?page=2&access_token={t}&sort=asc"), None)
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["uri"], "/q/list?page=2&sort=asc");
    let r = w.gw.get(&format!("/q?access_token={t}"), None).await;
    assert_eq!(r.json()["uri"], "/q");
    // the same token in the header and the query is ambiguous
    let r = w.gw.get(&format!("/q?access_token={t}"), Some(&t)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    // a route that does not take query tokens ignores the parameter and forwards it untouched
    let r = w.gw.get("/public/p?access_token=abc", None).await;
    assert_eq!(r.json()["uri"], "/public/p?access_token=abc");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_token_is_accepted_and_not_forwarded() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    let r = Resp::from(
        w.gw.http
            .get(w.gw.url("/cookie"))
            .header("cookie", format!("theme=dark; session={t}; lang=en"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("cookie").as_deref(), Some("theme=dark; lang=en"));
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("user-1"));
    // a header token is not accepted where only the cookie is allowed
    assert_eq!(w.gw.get("/cookie", Some(&t)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_forwards_the_rest_of_the_path() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    assert_eq!(
        w.gw.get("/strip/a/b?x=1", Some(&t)).await.json()["uri"],
        "/a/b?x=1"
    );
    assert_eq!(w.gw.get("/strip", Some(&t)).await.json()["uri"], "/");
}
