//! The official MCP SDKs sign in to an MCP route as clients the gateway was never told about: the
//! TypeScript SDK names itself by a client ID metadata document, or registers itself (RFC 7591),
//! and the Python SDK does what its defaults do (it registers). Each goes through discovery,
//! sign-in, calls and refresh as a pre-registered client does (mcp_sdk_auth.rs), then steps up to
//! the scope a tool rule asks for, and sees its token refused at another MCP route and, once
//! revoked, at once.

use crate::clients::{clients_dir, installed};
use crate::mcp_sdk::{one, McpServer};
use crate::mcp_sdk_auth::{assert_signed_in, drive, find, http, Expiry};
use crate::support::documents::Documents;
use crate::support::harness::{free_port, Resp};
use crate::tokens::Auth;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

/// Two MCP routes on one server, each its own resource taking tokens with scope `mcp`; on the
/// first, `delete_*` also needs `mcp:admin`. No client is configured for them.
fn routes(server: u16) -> String {
    format!(
        r#"
[[upstreams]]
name = "mcp"
peers = ["127.0.0.1:{server}"]

[[routes]]
name = "mcp"
path_prefix = "/mcp"
upstream = "mcp"
issuers = ["self"]
mcp = true
scopes_all = ["mcp"]
stream_idle_timeout = "5m"

[[routes.mcp_tools]]
match = "delete_*"
scopes_all = ["mcp:admin"]

[[routes]]
name = "notes"
path_prefix = "/notes"
upstream = "mcp"
issuers = ["self"]
mcp = true
scopes_all = ["mcp"]
"#
    )
}

/// The gateway, its issuer its own URL, access tokens living `ttl`, with these `[token_service]` keys.
async fn gateway(server: &McpServer, ttl: &str, keys: &str) -> Auth {
    let (ttl, keys) = (format!("access_token_ttl = \"{ttl}\""), keys.to_string());
    Auth::start_on(
        free_port(),
        "backend = \"memory\"",
        &routes(server.port),
        move |t| {
            t.replace("issuer = \"https://auth.gatehouse.test\"\n", "")
                .replace("access_token_ttl = \"10m\"", &ttl)
                .replacen(
                    "[token_service]\n",
                    &format!("[token_service]\n{keys}\n"),
                    1,
                )
        },
    )
    .await
}

/// At the client's "hold": its token, good at its own route, is refused at the other MCP route,
/// and then the client revokes it, naming itself by its client_id alone (a public client).
async fn elsewhere_then_revoked(a: &Auth, hold: &Value) {
    let token = hold["token"].as_str().unwrap();
    let rb = a.gw.https.post(a.gw.tls_url("/notes")).bearer_auth(token);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let r = Resp::from(rb.json(&list).send().await.unwrap()).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("invalid_token")),
        "{}",
        r.body
    );
    let prm = a.gw.tls_url("/.well-known/oauth-protected-resource/notes");
    let c = r.challenge();
    assert!(c.contains(&format!("resource_metadata=\"{prm}\"")), "{c}");
    assert!(c.contains("not meant for this audience"), "{c}");
    let client_id = hold["client_id"].as_str().unwrap();
    let form = [("token", token), ("client_id", client_id)];
    let r = a.post("/oauth/revoke", &form, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The step-up: the call of `delete_user` is 403 `insufficient_scope`, its challenge naming every
/// scope the call needs, the client authorizes again for them (same client, same resource), and
/// the call then goes through.
fn assert_stepped_up(a: &Auth, all: &[Value], client: &str) {
    let resource = a.gw.tls_url("/mcp");
    let after = find(all, 0, |s| s["step"] == "after-expiry");
    let refused = find(all, after, http("POST", resource.clone(), 403));
    let c = all[refused]["challenge"].as_str().unwrap();
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("scope=\"mcp mcp:admin\""), "{c}");
    let prm = a.gw.tls_url("/.well-known/oauth-protected-resource/mcp");
    assert!(c.contains(&format!("resource_metadata=\"{prm}\"")), "{c}");
    let asked = find(all, refused, |s| s["step"] == "authorize");
    let url = url::Url::parse(all[asked]["url"].as_str().unwrap()).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        (q["client_id"].as_str(), q["resource"].as_str()),
        (client, &*resource)
    );
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(
        scopes.contains(&"mcp") && scopes.contains(&"mcp:admin"),
        "{q:?}"
    );
    let token = find(all, asked, http("POST", a.gw.tls_url("/oauth/token"), 200));
    let saved = find(all, token, |s| s["step"] == "tokens");
    assert!(
        all[saved]["scope"].as_str().unwrap().contains("mcp:admin"),
        "{:#?}",
        all[saved]
    );
    find(all, saved, http("POST", resource, 200));
    assert_eq!(one(all, "step-up")["text"], "deleted bob");
}

/// The revoked token: the client's next call is refused at once, saying so; it comes back as
/// alice after `recovered` (a refresh, or signing in again).
fn assert_revoked(a: &Auth, all: &[Value], recovered: impl Fn(&Value) -> bool) -> usize {
    let resource = a.gw.tls_url("/mcp");
    let held = find(all, 0, |s| s["step"] == "hold");
    let next = find(all, held, |s| s["step"] == "http" && s["url"] == resource);
    assert_eq!(all[next]["status"], 401, "{all:#?}");
    let c = all[next]["challenge"].as_str().unwrap();
    assert!(
        c.contains("error=\"invalid_token\"") && c.contains("revoked"),
        "{c}"
    );
    let back = find(all, next, recovered);
    find(all, back, http("POST", resource, 200));
    assert_eq!(one(all, "after-revocation")["subject"], "user-alice");
    back
}

/// The TypeScript client, with its redirect URI on `callback`, and these variables.
fn typescript(a: &Auth, callback: u16, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("mcp_client.mjs"))
        .env("MCP_CALLBACK_PORT", callback.to_string())
        .env("MCP_STEP_UP_TOOL", "delete_user")
        .env("NODE_EXTRA_CA_CERTS", a.gw.path("certs/gateway.crt"))
        .envs(env.iter().copied());
    cmd
}

/// What the TypeScript SDK (1.32) shows after sign-in as `client`: its own answer to the 403 is a
/// refresh, which cannot widen the scope, then the same 403 and it gives up; the application then
/// authorizes again with the challenge's scope. After the revocation, a refresh brings it back.
async fn typescript_flow(a: &Auth, cmd: Command, client: impl Fn(&[Value]) -> String) {
    let expiry = Expiry::GatewayClock(Duration::from_secs(11 * 60));
    let all = drive(a, cmd, expiry, async |hold: &Value| {
        elsewhere_then_revoked(a, hold).await
    })
    .await;
    let client = client(&all);
    assert_signed_in(a, &all, &client);
    assert_stepped_up(a, &all, &client);
    let stepped = one(&all, "step-up");
    assert_eq!(stepped["by"], "application", "{stepped}");
    assert_eq!(stepped["scope"], "mcp mcp:admin");
    let (resource, token) = (a.gw.tls_url("/mcp"), a.gw.tls_url("/oauth/token"));
    let refused = find(&all, 0, http("POST", resource.clone(), 403));
    let refreshed = find(&all, refused, http("POST", token.clone(), 200));
    let again = find(&all, refreshed, http("POST", resource, 403));
    assert_eq!(all[again]["challenge"], all[refused]["challenge"]);
    assert!(again < find(&all, refused, |s| s["step"] == "authorize"));
    assert_revoked(a, &all, http("POST", token, 200));
    assert_eq!(one(&all, "after-revocation")["authorizations"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_names_itself_by_a_metadata_document_and_steps_up() {
    if !installed(&clients_dir().join("node_modules/@modelcontextprotocol/sdk")) {
        return;
    }
    let (server, callback) = (McpServer::start(), free_port());
    let docs = Documents::start(|port| {
        let id = format!("https://localhost:{port}/mcp-client.json");
        let doc = json!({"client_id": id, "client_name": "gatehouse test client",
            "redirect_uris": [format!("http://127.0.0.1:{callback}/cb")],
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"});
        vec![("/mcp-client.json", Duration::ZERO, doc.to_string().into_bytes())]
    })
    .await;
    let keys = format!(
        "client_id_metadata_documents = true\ncimd_allow_private = true\ncimd_ca = \"{}\"",
        docs.ca.display()
    );
    let a = gateway(&server, "10m", &keys).await;
    let url = docs.url("/mcp-client.json");
    let cmd = typescript(&a, callback, &[("MCP_OAUTH_METADATA_URL", &url)]);
    // the SDK takes the URL as its client_id only where the metadata says documents are supported
    typescript_flow(&a, cmd, |all| {
        let register = a.gw.tls_url("/oauth/register");
        assert!(!all.iter().any(|s| s["url"] == register), "{all:#?}");
        assert_eq!(one(all, "client")["client_id"], url);
        url.clone()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_registers_itself_and_steps_up() {
    if !installed(&clients_dir().join("node_modules/@modelcontextprotocol/sdk")) {
        return;
    }
    let (server, callback) = (McpServer::start(), free_port());
    let a = gateway(&server, "10m", "registration = \"open\"").await;
    let cmd = typescript(&a, callback, &[("MCP_OAUTH_REGISTER", "1")]);
    typescript_flow(&a, cmd, |all| registered(&a, all)).await;
}

/// The client the SDK registered at /oauth/register, after discovery and before authorizing.
fn registered(a: &Auth, all: &[Value]) -> String {
    let asm = a.gw.tls_url("/.well-known/oauth-authorization-server");
    let discovered = find(all, 0, http("GET", asm, 200));
    let at = find(
        all,
        discovered,
        http("POST", a.gw.tls_url("/oauth/register"), 201),
    );
    assert!(at < find(all, 0, |s| s["step"] == "authorize"));
    let id = one(all, "client")["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("reg-"), "{id}");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_with_its_defaults_registers_itself_and_steps_up() {
    let dir = clients_dir();
    let python = dir.join(".venv/bin/python");
    if !installed(&python) {
        return;
    }
    let (server, callback) = (McpServer::start(), free_port());
    let a = gateway(&server, "6s", "registration = \"open\"").await;
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("mcp_client.py"))
        .env("MCP_CALLBACK_PORT", callback.to_string())
        .env("MCP_STEP_UP_TOOL", "delete_user")
        .env("SSL_CERT_FILE", a.gw.path("certs/gateway.crt"));
    // the SDK refreshes a token whose expires_in has run out before using it
    let expiry = Expiry::Wait(Duration::from_secs(7));
    let all = drive(&a, cmd, expiry, async |hold: &Value| {
        elsewhere_then_revoked(&a, hold).await
    })
    .await;
    let client = registered(&a, &all);
    assert_signed_in(&a, &all, &client);
    // the SDK steps up by itself, with the challenge's scope and what it had
    assert_stepped_up(&a, &all, &client);
    assert_eq!(one(&all, "step-up")["by"], "sdk");
    // after the revocation it signs in again (it answers any 401 so)
    let back = assert_revoked(&a, &all, |s| s["step"] == "authorize");
    assert_eq!(
        all[back]["url"].as_str().map(|u| u.contains(&client)),
        Some(true)
    );
    assert_eq!(one(&all, "after-revocation")["authorizations"], 3);
}
