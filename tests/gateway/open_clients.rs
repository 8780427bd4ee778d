//! Clients the gateway was never told about: self-registration (RFC 7591) and client ID metadata
//! documents served over HTTPS on loopback, each through the code flow to a token an MCP route
//! takes, and every refusal with its error and nothing kept.

use crate::resources::hidden_fields;
use crate::support::documents::Documents;
use crate::support::harness::Resp;
use crate::tokens::*;
use crate::tokens_code::{set_cookie, CHALLENGE, VERIFIER};
use std::time::Duration;

const MCP: &str = "\n[[routes]]\npath_prefix = \"/mcp\"\nupstream = \"echo\"\nmcp = true\nscopes_all = [\"orders.read\"]\n";
const CB: &str = "http://127.0.0.1:9/cb";

/// The gateway with these `[token_service]` keys added.
async fn start(store: &str, keys: &str) -> Auth {
    let keys = keys.to_string();
    Auth::start_edited(store, MCP, move |t| {
        t.replacen(
            "[token_service]\n",
            &format!("[token_service]\n{keys}\n"),
            1,
        )
    })
    .await
}

/// The resource of the `/mcp` route, as its metadata names it.
async fn resource(a: &Auth) -> String {
    let m =
        a.gw.get("/.well-known/oauth-protected-resource/mcp", None)
            .await;
    m.json()["resource"].as_str().unwrap().to_string()
}

async fn register(a: &Auth, body: serde_json::Value, token: Option<&str>) -> Resp {
    let mut rb = a.gw.https.post(a.gw.tls_url("/oauth/register")).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    Resp::from(rb.send().await.unwrap()).await
}

/// Signs alice in for `client_id` and exchanges the code: the token answer.
async fn code_flow(a: &Auth, client_id: &str, resource: &str) -> Resp {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CB),
        ("scope", "orders.read"),
        ("state", "s1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", resource),
    ] {
        q.append_pair(k, v);
    }
    let page = a.get_authorize(&q.finish(), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut form = hidden_fields(&page.body);
    form.push(("username".into(), "alice@example.com".into()));
    form.push(("password".into(), ALICE_PASSWORD.into()));
    let csrf = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
    let rb =
        a.gw.https
            .post(a.gw.tls_url("/oauth/authorize"))
            .header("cookie", csrf)
            .form(&form);
    let signed_in = Resp::from(rb.send().await.unwrap()).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let to = url::Url::parse(&signed_in.header("location").unwrap()).unwrap();
    assert!(to.as_str().starts_with(CB), "{to}");
    let code = to
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
    ];
    a.post("/oauth/token", &form, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_client_signs_in_and_its_token_reaches_the_mcp_route() {
    let a = start("backend = \"memory\"", "registration = \"open\"").await;
    let meta =
        a.gw.get("/.well-known/oauth-authorization-server", None)
            .await;
    let at = format!("https://localhost:{}/oauth/register", a.gw.tls.port());
    assert_eq!(meta.json()["registration_endpoint"], at);
    assert_eq!(meta.json()["client_id_metadata_document_supported"], false);
    let body = serde_json::json!({"redirect_uris": [CB], "grant_types": ["authorization_code", "refresh_token"],
        "scope": "orders.read admin", "client_name": "Tool", "token_endpoint_auth_method": "none"});
    let r = register(&a, body, None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let reg = r.json();
    let id = reg["client_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("reg-"), "{id}");
    assert_eq!(
        (
            reg["scope"].as_str(),
            reg["token_endpoint_auth_method"].as_str()
        ),
        (Some("orders.read"), Some("none"))
    );
    let res = resource(&a).await;
    let t = code_flow(&a, &id, &res).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let token = t.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/mcp/x", Some(&token)).await.status, 200);
    // its refresh token works with its id, and no secret
    let refresh = t.json()["refresh_token"].as_str().unwrap().to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", id.as_str()),
    ];
    assert_eq!(a.post("/oauth/token", &form, None).await.status, 200);
    // a client that never registered is no client
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "x"),
        ("client_id", "reg-unknown"),
    ];
    oauth_error(
        &a.post("/oauth/token", &form, None).await,
        401,
        "invalid_client",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_registrations_are_refused_and_nothing_is_kept() {
    let dir_store = "backend = \"sqlite\"\npath = \"data/gatehouse.db\"";
    let a = start(dir_store, "registration = \"open\"").await;
    for (body, code) in [
        (
            serde_json::json!({"redirect_uris": ["https://app.example/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (serde_json::json!({}), "invalid_redirect_uri"),
        (
            serde_json::json!(["not", "an", "object"]),
            "invalid_client_metadata",
        ),
    ] {
        let r = register(&a, body.clone(), None).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some(code)),
            "{body}: {}",
            r.body
        );
    }
    let form = a
        .post("/oauth/register", &[("redirect_uris", CB)], None)
        .await;
    assert_eq!(form.status, 400, "{}", form.body);
    let config = a.gw.path("gateway.toml");
    let listed = crate::support::harness::cli(&["client", "list"], &config);
    assert!(
        listed.trim_end().ends_with("0 registered client(s)"),
        "{listed}"
    );
    // one good registration is listed, and can be removed
    let ok = register(
        &a,
        serde_json::json!({"redirect_uris": [CB], "client_name": "Tool"}),
        None,
    )
    .await;
    let id = ok.json()["client_id"].as_str().unwrap().to_string();
    let listed = crate::support::harness::cli(&["client", "list"], &config);
    assert!(
        listed.contains(&id) && listed.contains("\tTool\t"),
        "{listed}"
    );
    let removed = crate::support::harness::cli(&["client", "remove", &id], &config);
    assert!(removed.contains("removed"), "{removed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_with_a_token_needs_it_and_without_registration_there_is_no_endpoint() {
    // SAFETY of set_var: only this test names this variable.
    std::env::set_var(
        "GATEHOUSE_TEST_REGISTRATION_TOKEN",
        "initial-access-token-0123456789abcdef",
    );
    let a = start(
        "backend = \"memory\"",
        "registration = \"token\"\nregistration_token_env = \"GATEHOUSE_TEST_REGISTRATION_TOKEN\"",
    )
    .await;
    let body = serde_json::json!({"redirect_uris": [CB]});
    for wrong in [None, Some("initial-access-token-0123456789abcdeX")] {
        let r = register(&a, body.clone(), wrong).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (401, Some("invalid_token"))
        );
        assert!(r
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer")));
    }
    let r = register(
        &a,
        body.clone(),
        Some("initial-access-token-0123456789abcdef"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let off = start("backend = \"memory\"", "").await;
    assert_eq!(register(&off, body, None).await.status, 404);
    let meta = off
        .gw
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert!(meta.json().get("registration_endpoint").is_none());
}

fn document(id: &str) -> Vec<u8> {
    serde_json::json!({"client_id": id, "client_name": "Agent", "redirect_uris": [CB]})
        .to_string()
        .into_bytes()
}

/// Starts an authorization request for `client_id`: the page it shows.
async fn ask(a: &Auth, client_id: &str) -> Resp {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CB),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ] {
        q.append_pair(k, v);
    }
    a.get_authorize(&q.finish(), None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metadata_document_names_a_client_and_bad_ones_are_refused() {
    let docs = Documents::start(|port| {
        let at = |p: &str| format!("https://localhost:{port}{p}");
        let no = Duration::ZERO;
        vec![
            ("/good.json", no, document(&at("/good.json"))),
            ("/other.json", no, document(&at("/good.json"))),
            ("/huge.json", no, vec![b' '; 5 << 20]),
            (
                "/slow.json",
                Duration::from_secs(8),
                document(&at("/slow.json")),
            ),
        ]
    })
    .await;
    let keys = format!(
        "client_id_metadata_documents = true\ncimd_allow_private = true\ncimd_ca = \"{}\"",
        docs.ca.display()
    );
    let a = start("backend = \"memory\"", &keys).await;
    let meta =
        a.gw.get("/.well-known/oauth-authorization-server", None)
            .await;
    assert_eq!(meta.json()["client_id_metadata_document_supported"], true);
    let good = docs.url("/good.json");
    let t = code_flow(&a, &good, &resource(&a).await).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let token = t.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/mcp/x", Some(&token)).await.status, 200);
    for bad in ["/other.json", "/huge.json", "/slow.json", "/missing.json"] {
        let r = ask(&a, &docs.url(bad)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body.contains("metadata document"), "{bad}: {}", r.body);
    }
    // without cimd_allow_private, a document on a loopback address is never fetched
    let strict = format!(
        "client_id_metadata_documents = true\ncimd_ca = \"{}\"",
        docs.ca.display()
    );
    let b = start("backend = \"memory\"", &strict).await;
    let r = ask(&b, &good).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // and without client_id_metadata_documents, a URL is an unknown client
    let off = start("backend = \"memory\"", "").await;
    let r = ask(&off, &good).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not known"), "{}", r.body);
}
