//! MCP routes at the edge: RFC 9728 metadata found from the 401, the audience binding of a
//! protected resource, and the Origin guard against DNS rebinding.

use crate::tokens::Auth;

const MCP_ROUTE: &str = r#"
[[routes]]
name = "tools"
path_prefix = "/mcp"
upstream = "echo"
issuers = ["self"]
mcp = true
scopes_all = ["orders.read"]
allowed_origins = ["https://inspector.example"]
"#;

async fn get(
    a: &Auth,
    path: &str,
    headers: &[(&str, &str)],
    token: Option<&str>,
) -> crate::support::harness::Resp {
    let mut rb = a.gw.https.get(a.gw.tls_url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    crate::support::harness::Resp::from(rb.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_finds_the_metadata_from_the_401() {
    let a = Auth::start_with("backend = \"memory\"", MCP_ROUTE).await;
    let own = format!("https://localhost:{}", a.gw.tls.port());
    let r = get(&a, "/mcp", &[], None).await;
    assert_eq!(r.status, 401);
    let where_ = format!("{own}/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        r.challenge(),
        format!(
            "Bearer realm=\"gatehouse\", resource_metadata=\"{where_}\", scope=\"orders.read\""
        )
    );
    let doc = get(&a, "/.well-known/oauth-protected-resource/mcp", &[], None).await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert_eq!(
        doc.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let d = doc.json();
    assert_eq!(d["resource"], format!("{own}/mcp"));
    assert_eq!(d["authorization_servers"][0], "https://auth.gatehouse.test");
    assert_eq!(d["scopes_supported"][0], "orders.read");
    assert_eq!(d["bearer_methods_supported"][0], "header");
    assert_eq!(d["resource_name"], "tools");
    // the document is read only; no other resource is described
    let post = a
        .post("/.well-known/oauth-protected-resource/mcp", &[], None)
        .await;
    assert_eq!(
        (post.status, post.header("allow").as_deref()),
        (405, Some("GET, HEAD"))
    );
    let none = get(&a, "/.well-known/oauth-protected-resource/other", &[], None).await;
    assert_eq!(none.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_not_issued_for_the_resource_is_refused_with_the_challenge() {
    let a = Auth::start_with("backend = \"memory\"", MCP_ROUTE).await;
    // issued for the service's audience ("api"), not for this resource
    let token = a.svc_token(Some("orders.read")).await;
    assert_eq!(a.gw.get("/api/x", Some(&token)).await.status, 200);
    let r = get(&a, "/mcp", &[], Some(&token)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_token");
    let c = r.challenge();
    assert!(c.contains("resource_metadata=\"https://localhost:"), "{c}");
    assert!(c.contains("error=\"invalid_token\""), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_origin_is_refused_before_anything_else() {
    let a = Auth::start_with("backend = \"memory\"", MCP_ROUTE).await;
    let own = format!("https://localhost:{}", a.gw.tls.port());
    // DNS rebinding: the attacker's name points at the gateway, so Host agrees with Origin
    let rebound = b"GET /mcp HTTP/1.1\r\nHost: evil.example:8080\r\nOrigin: http://evil.example:8080\r\nConnection: close\r\n\r\n";
    let (status, text) = crate::support::harness::raw(a.gw.plain, rebound);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"access_denied\""), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("www-authenticate"),
        "{text}"
    );
    for allowed in [own.as_str(), "https://inspector.example"] {
        let r = get(&a, "/mcp", &[("origin", allowed)], None).await;
        assert_eq!(r.status, 401, "{allowed}: {}", r.body);
    }
    // other routes keep their own rules
    let r = get(&a, "/api/x", &[("origin", "http://evil.example")], None).await;
    assert_eq!(r.status, 401);
}
