//! Route policies: 401 against 403, the challenge each carries, and that the token cache holds claims, not decisions.

use crate::World;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn missing_token_is_401_without_an_error_attribute() {
    let w = World::start().await;
    let r = w.gw.get("/api/x", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.challenge(), "Bearer realm=\"gatehouse\"");
    assert_eq!(r.json()["error"], "unauthorized");
    assert!(r.json()["error_description"].is_string());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_read_at_the_configured_path() {
    let w = World::start().await;
    let admin = w.rsa_token(json!({"realm_access": {"roles": ["admin", "user"]}}));
    let r = w.gw.get("/admin/panel", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-roles").as_deref(), Some("admin,user"));
    // a top-level "roles" claim is not where this issuer keeps roles
    let user = w.rsa_token(json!({"roles": ["admin"], "realm_access": {"roles": ["user"]}}));
    let r = w.gw.get("/admin/panel", Some(&user)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert_eq!(
        r.challenge(),
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\""
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_from_scope_string_or_scp_array() {
    let w = World::start().await;
    for extra in [
        json!({"scope": "orders.read orders.write"}),
        json!({"scp": ["orders.write"]}),
    ] {
        let r = w.gw.get("/scoped", Some(&w.ec_token(extra.clone()))).await;
        assert_eq!(r.status, 200, "{extra}: {}", r.body);
    }
    let r =
        w.gw.get(
            "/scoped",
            Some(&w.ec_token(json!({"scope": "orders.read"}))),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.challenge(),
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"orders.write\""
    );
    let r =
        w.gw.get(
            "/scoped",
            Some(&w.ec_token(json!({"scope": "orders.write"}))),
        )
        .await;
    assert_eq!(r.echoed("x-auth-scopes").as_deref(), Some("orders.write"));
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_conditions_match_values_and_array_members() {
    let w = World::start().await;
    assert_eq!(
        w.gw.get("/tenant", Some(&w.rsa_token(json!({"tenant": "acme"}))))
            .await
            .status,
        200
    );
    assert_eq!(
        w.gw.get(
            "/tenant",
            Some(&w.rsa_token(json!({"tenant": ["x", "acme"]})))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        w.gw.get("/tenant", Some(&w.rsa_token(json!({"tenant": "evil"}))))
            .await
            .status,
        403
    );
    assert_eq!(
        w.gw.get("/tenant", Some(&w.rsa_token(json!({}))))
            .await
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_routes_pass_anonymous_requests_but_not_bad_tokens() {
    let w = World::start().await;
    let r = w.gw.get("/optional", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("x-auth-subject"), None);
    let r =
        w.gw.get("/optional", Some(&w.rsa_token(json!({"sub": "alice"}))))
            .await;
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("alice"));
    let r = w.gw.get("/optional", Some("not-a-token")).await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().contains("invalid_token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_token_is_still_judged_by_each_route() {
    let w = World::start().await;
    let t = w.rsa_token(json!({"scope": "orders.read"}));
    assert_eq!(w.gw.get("/api/x", Some(&t)).await.status, 200);
    assert_eq!(w.gw.get("/api/x", Some(&t)).await.status, 200);
    // now verified and cached; the scoped route still refuses it
    assert_eq!(w.gw.get("/scoped", Some(&t)).await.status, 403);
    // and a route that trusts only another issuer refuses it too
    let e = w.ec_token(json!({}));
    assert_eq!(w.gw.get("/api/x", Some(&e)).await.status, 200);
    assert_eq!(w.gw.get("/rsa-only", Some(&e)).await.status, 401);
}
