//! The official MCP SDKs (TypeScript and Python) sign in to an MCP route with their own OAuth
//! support, as a pre-registered public client: the 401 leads them to the RFC 9728 metadata, that to
//! the gateway's RFC 8414 metadata, they authorize with PKCE and `resource`, a person signs in on the
//! gateway's form, the token's `aud` is the route's resource, the calls (streamed ones included)
//! carry the user's identity to the server, and an expired token is refreshed without signing in
//! again.

use crate::clients::{clients_dir, installed};
use crate::mcp_sdk::{assert_resumed, assert_streamed, one, steps, McpServer};
use crate::resources::hidden_fields;
use crate::support::harness::{free_port, Resp};
use crate::tokens::{Auth, ALICE_PASSWORD};
use crate::tokens_code::set_cookie;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CLIENT: &str = "mcp-cli";

/// An MCP route that takes only the token service's tokens for it, with scope `mcp`, and the
/// public client the SDKs sign in as, whose redirect URI is their loopback listener.
fn mcp_toml(server: u16, callback: u16) -> String {
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

[[clients]]
client_id = "{CLIENT}"
public = true
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["http://127.0.0.1:{callback}/cb"]
scopes = ["mcp"]
"#
    )
}

/// The gateway, its token service's issuer its own https://localhost:PORT (the SDKs fetch the
/// metadata from the issuer's URL), access tokens living `ttl`.
async fn gateway(server: &McpServer, callback: u16, ttl: &str) -> Auth {
    let ttl = format!("access_token_ttl = \"{ttl}\"");
    Auth::start_on(
        free_port(),
        "backend = \"memory\"",
        &mcp_toml(server.port, callback),
        move |t| {
            t.replace("issuer = \"https://auth.gatehouse.test\"\n", "")
                .replace("access_token_ttl = \"10m\"", &ttl)
        },
    )
    .await
}

/// How the test lets the client's access token expire.
pub enum Expiry {
    /// the gateway's clock moves on (a client that waits for the 401)
    GatewayClock(Duration),
    /// real time passes (a client that refreshes before the token's `expires_in` runs out)
    Wait(Duration),
}

/// Signs alice in on the page the authorization URL shows, posting back every hidden field as a
/// browser would, and hands the answer to the client's redirect URI as the browser would.
pub async fn sign_in(a: &Auth, url: &str) -> String {
    let page = Resp::from(a.gw.https.get(url).send().await.unwrap()).await;
    let sent_back = page.header("location");
    assert_eq!(page.status, 200, "{url}: {sent_back:?} {}", page.body);
    let csrf = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
    let mut form = hidden_fields(&page.body);
    form.push(("username".into(), "alice@example.com".into()));
    form.push(("password".into(), ALICE_PASSWORD.into()));
    let post = a.gw.https.post(a.gw.tls_url("/oauth/authorize"));
    let r = Resp::from(
        post.header("cookie", csrf)
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").unwrap();
    let back = a.gw.http.get(&location).send().await.unwrap();
    assert_eq!(back.status(), 200, "{location}");
    location
}

/// A client's process, ended if the test stops before it does (a failed assertion included).
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a client that signs in: answers its authorization requests (sign_in), lets its token
/// expire when it says "expire", hands what it says at "hold" to `hold`, and tells it to go on after
/// each; returns every step it printed.
pub async fn drive(
    a: &Auth,
    mut cmd: Command,
    expiry: Expiry,
    hold: impl AsyncFn(&Value),
) -> Vec<Value> {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .env("MCP_URL", a.gw.tls_url("/mcp"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut running = Running(Some(child));
    std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    let mut all: Vec<Value> = Vec::new();
    let stderr = || std::fs::read_to_string(err.path()).unwrap_or_default();
    loop {
        let line = match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => panic!("the client hung: {all:#?}\n{}", stderr()),
        };
        let step: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{e}: {line}\n{all:#?}\n{}", stderr()));
        match step["step"].as_str() {
            Some("authorize") => drop(sign_in(a, step["url"].as_str().unwrap()).await),
            Some("expire") => {
                match expiry {
                    Expiry::GatewayClock(by) => a.gw.clock.advance(by),
                    Expiry::Wait(d) => tokio::time::sleep(d).await,
                }
                stdin.write_all(b"go\n").unwrap();
            }
            Some("hold") => {
                hold(&step).await;
                stdin.write_all(b"go\n").unwrap();
            }
            _ => {}
        }
        all.push(step);
    }
    let mut child = running.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{all:#?}\n{}", stderr());
    all
}

/// The index of the first step after `from` that matches.
pub fn find(all: &[Value], from: usize, what: impl Fn(&Value) -> bool) -> usize {
    from + all[from..]
        .iter()
        .position(what)
        .unwrap_or_else(|| panic!("not found after step {from}: {all:#?}"))
}

pub fn http(method: &'static str, url: String, status: u16) -> impl Fn(&Value) -> bool {
    move |s| {
        s["step"] == "http" && s["method"] == method && s["url"] == url && s["status"] == status
    }
}

/// What both SDKs must show, signed in as `client`: discovery from the 401, the authorization
/// request, the token for the resource, the user at the server, streamed calls, and a refresh
/// instead of a second sign-in.
pub fn assert_signed_in(a: &Auth, all: &[Value], client: &str) {
    let own = a.gw.tls_url("");
    let resource = a.gw.tls_url("/mcp");
    // 401 → RFC 9728 metadata (named by the challenge) → RFC 8414 metadata → authorization
    let challenged = find(all, 0, http("POST", resource.clone(), 401));
    let prm = format!("{own}/.well-known/oauth-protected-resource/mcp");
    let prm = find(all, challenged, http("GET", prm, 200));
    let asm = format!("{own}/.well-known/oauth-authorization-server");
    let asm = find(all, prm, http("GET", asm, 200));
    let asked = find(all, asm, |s| s["step"] == "authorize");
    let url = url::Url::parse(all[asked]["url"].as_str().unwrap()).unwrap();
    assert!(url.as_str().starts_with(&format!("{own}/oauth/authorize?")));
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], client);
    assert_eq!(q["resource"], resource);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["scope"].split(' ').any(|s| s == "mcp"), "{q:?}");
    assert!(!q["state"].is_empty());
    let back = find(all, asked, |s| s["step"] == "callback");
    assert_eq!(all[back]["ok"], true);
    assert_eq!(all[back]["iss"], own);
    let token = find(all, back, http("POST", format!("{own}/oauth/token"), 200));
    // the token is for this MCP server and this user, and can be refreshed
    let tokens = steps(all, "tokens");
    for t in &tokens {
        assert_eq!(
            (t["aud"].as_str(), t["sub"].as_str()),
            (Some(&*resource), Some("user-alice"))
        );
    }
    assert_eq!(tokens[0]["refresh"], true);
    find(all, token, http("POST", resource.clone(), 200));
    // the server sees who calls
    assert_eq!(one(all, "echo")["subject"], "user-alice");
    assert_streamed(all);
    // after expiry: the same user, one sign-in in all, a refresh at the token endpoint
    let after = one(all, "after-expiry");
    assert_eq!(after["subject"], "user-alice");
    assert_eq!(after["authorizations"], 1, "{all:#?}");
    assert!(after["token_saves"].as_u64() >= Some(2), "{all:#?}");
    let expired = find(all, 0, |s| s["step"] == "expire");
    find(
        all,
        expired,
        http("POST", format!("{own}/oauth/token"), 200),
    );
    assert_resumed(all);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_signs_in_calls_and_refreshes_through_the_gateway() {
    if !installed(&clients_dir().join("node_modules/@modelcontextprotocol/sdk")) {
        return;
    }
    let server = McpServer::start();
    let callback = free_port();
    let a = gateway(&server, callback, "10m").await;
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("mcp_client.mjs"))
        .env("MCP_OAUTH_CLIENT", CLIENT)
        .env("MCP_CALLBACK_PORT", callback.to_string())
        .env("NODE_EXTRA_CA_CERTS", a.gw.path("certs/gateway.crt"));
    // the SDK keeps a token until the server refuses it: the gateway's clock passes its expiry
    // (and the validation leeway)
    let expiry = Expiry::GatewayClock(Duration::from_secs(11 * 60));
    let all = drive(&a, cmd, expiry, async |_: &Value| {}).await;
    assert_signed_in(&a, &all, CLIENT);
    // the refused call was retried with the refreshed token
    let expired = find(&all, 0, |s| s["step"] == "expire");
    find(&all, expired, http("POST", a.gw.tls_url("/mcp"), 401));
    assert_eq!(one(&all, "terminated")["left"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_signs_in_calls_and_refreshes_through_the_gateway() {
    let dir = clients_dir();
    let python = dir.join(".venv/bin/python");
    if !installed(&python) {
        return;
    }
    let server = McpServer::start();
    let callback = free_port();
    let a = gateway(&server, callback, "3s").await;
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("mcp_client.py"))
        .env("MCP_OAUTH_CLIENT", CLIENT)
        .env("MCP_CALLBACK_PORT", callback.to_string())
        .env("SSL_CERT_FILE", a.gw.path("certs/gateway.crt"));
    // the SDK refreshes a token whose expires_in has run out before using it
    let all = drive(
        &a,
        cmd,
        Expiry::Wait(Duration::from_secs(4)),
        async |_: &Value| {},
    )
    .await;
    assert_signed_in(&a, &all, CLIENT);
    // closing the client ends its session at the server
    let closed = find(&all, 0, |s| s["step"] == "reconnection");
    find(&all, closed, |s| {
        s["step"] == "http" && s["method"] == "DELETE" && s["status"] == 200
    });
}
