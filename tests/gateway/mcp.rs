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

const TOOLS_ROUTE: &str = r#"
[[routes]]
name = "tools"
path_prefix = "/mcp-echo"
upstream = "echo"
issuers = ["rsa"]
mcp = true
resource = "https://mcp.test/mcp-echo"
authorization_servers = ["https://rsa.test"]
max_body_bytes = 1048576

[[routes.mcp_tools]]
match = "drop_*"
deny = true

[[routes.mcp_tools]]
match = "delete_*"
scopes_all = ["tools.admin"]

[[routes.mcp_tools]]
match = "file:///etc/*"
kind = "resource"
roles_any = ["ops"]
"#;

pub fn call(id: u32, name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"x":1}}}}}}"#
    )
}

pub async fn post(
    w: &crate::World,
    body: &str,
    headers: &[(&str, &str)],
    token: &str,
) -> crate::support::harness::Resp {
    let mut rb =
        w.gw.https
            .post(w.gw.tls_url("/mcp-echo"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    crate::support::harness::Resp::from(rb.send().await.unwrap()).await
}

pub fn mcp_token(w: &crate::World, extra: serde_json::Value) -> String {
    let mut claims =
        crate::support::keys::claims(crate::RSA_ISS, "https://mcp.test/mcp-echo", extra);
    claims["scope"] = claims.get("scope").cloned().unwrap_or("tools.read".into());
    w.rsa.sign(&claims)
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_are_judged_and_pass_whole() {
    let w = crate::World::start_with(TOOLS_ROUTE).await;
    let token = mcp_token(&w, serde_json::json!({}));
    // an allowed call reaches the server byte for byte
    let body = call(1, "read_file");
    let r = post(&w, &body, &[], &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"], body);
    assert_eq!(r.header("x-accel-buffering").as_deref(), Some("no"));
    // a denied tool
    let r = post(&w, &call(2, "drop_table"), &[], &token).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "access_denied");
    // a scope the token lacks: step-up, with where to learn how
    let r = post(&w, &call(3, "delete_user"), &[], &token).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "insufficient_scope");
    let c = r.challenge();
    assert!(
        c.contains(
            "resource_metadata=\"https://mcp.test/.well-known/oauth-protected-resource/mcp-echo\""
        ),
        "{c}"
    );
    assert!(
        c.ends_with("error=\"insufficient_scope\", scope=\"tools.admin\""),
        "{c}"
    );
    let admin = mcp_token(&w, serde_json::json!({"scope": "tools.read tools.admin"}));
    assert_eq!(
        post(&w, &call(4, "delete_user"), &[], &admin).await.status,
        200
    );
    // a resource rule by URI, judged on roles
    let read = r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#;
    assert_eq!(
        post(&w, read, &[], &token).await.json()["error"],
        "access_denied"
    );
    let ops = mcp_token(&w, serde_json::json!({"realm_access": {"roles": ["ops"]}}));
    assert_eq!(post(&w, read, &[], &ops).await.status, 200);
    // a batch is judged call by call
    let batch = format!("[{},{}]", call(6, "read_file"), call(7, "drop_table"));
    assert_eq!(post(&w, &batch, &[], &token).await.status, 403);
    // a token issued for the MCP server is no token for the issuer's other routes
    let r = w.gw.get("/api/x", Some(&token)).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, "invalid_token".into())
    );
    // listing tools is no call of a tool
    let list = r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#;
    assert_eq!(
        post(&w, list, &[("mcp-method", "tools/list")], &token)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_the_gateway_cannot_read_truly_are_refused() {
    let w = crate::World::start_with(TOOLS_ROUTE).await;
    let token = mcp_token(&w, serde_json::json!({}));
    // headers that name another call than the body makes
    let lying = [("mcp-method", "tools/call"), ("mcp-name", "read_file")];
    let r = post(&w, &call(1, "drop_table"), &lying, &token).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    // a second copy of the naming header, which a server might read instead
    let twice = [("mcp-name", "read_file"), ("mcp-name", "drop_table")];
    let r = post(&w, &call(1, "read_file"), &twice, &token).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    let agreeing = [("mcp-method", "tools/call"), ("mcp-name", "read_file")];
    let r = post(&w, &call(1, "read_file"), &agreeing, &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["mcp_name"], "read_file");
    // not JSON-RPC, or a call without a name
    assert_eq!(post(&w, "{not json", &[], &token).await.status, 400);
    let nameless = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#;
    assert_eq!(post(&w, nameless, &[], &token).await.status, 400);
    // larger than the gateway inspects: refused, never cut
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read_file","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(70 * 1024)
    );
    let r = post(&w, &big, &[], &token).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (413, "request_too_large".into())
    );
    let huge = "x".repeat(20 << 20);
    let r = post(&w, &huge, &[], &token).await;
    assert_eq!(r.status, 413);
}

#[test]
fn the_readme_example_compiles() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Protecting MCP servers").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let hash = gatehouse::token::argon2_hash("a password").unwrap();
    let text = block.replace("\"$argon2id$...\"", &format!("'{hash}'"));
    let dir = tempfile::tempdir().unwrap();
    // the certificate the example names, as an operator would have it
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    gatehouse::crypto::files::write_self_signed(
        &dir.path().join("certs/mcp.example.com.crt"),
        &dir.path().join("certs/mcp.example.com.key"),
    )
    .unwrap();
    let c = gatehouse::config::Config::from_toml(&text, &dir.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = c.routes[0].resource.as_deref().unwrap();
    assert_eq!(p.resource, "https://mcp.example.com/mcp");
    assert_eq!(p.scopes, ["mcp", "mcp:admin"]);
}
