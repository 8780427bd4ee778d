//! The official MCP SDKs through the gateway: the MCP conformance suite's server scenarios pass the
//! same through an MCP route as against the server itself, and the TypeScript SDK's client sees
//! progress events as they happen, resumes a dropped stream and ends its session. `make test`
//! installs the SDKs in tests/clients; plain `cargo test` skips these tests, saying why, without them.

use crate::clients::{clients_dir, installed};
use crate::support::harness::free_port;
use crate::tokens::Auth;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tests/clients/mcp_server.mjs (the TypeScript SDK's Streamable HTTP server) for one test.
pub struct McpServer {
    child: Child,
    pub port: u16,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl McpServer {
    /// Starts the server on a free port (another, when that one was taken meanwhile).
    pub fn start() -> McpServer {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("node")
                .arg(clients_dir().join("mcp_server.mjs"))
                .arg(port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("node runs");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            if first == "ready" {
                return McpServer { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
            last = first;
        }
        panic!("the MCP server did not start: {last:?}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// An MCP route open to anonymous callers (auth = "optional"), in front of the server, where
/// `delete_*` needs a token with `mcp:admin`. The conformance suite's DNS-rebinding scenario sends
/// `Origin: http://<the URL's host>`, here the plain listener's, which is allowed by name.
pub fn mcp_route(server: u16) -> String {
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
auth = "optional"
mcp = true
allowed_origins = ["PLAIN_ORIGIN"]
stream_idle_timeout = "5m"

[[routes.mcp_tools]]
match = "delete_*"
scopes_all = ["mcp:admin"]
"#
    )
}

/// Names the plain listener's origin where the configuration says PLAIN_ORIGIN.
pub fn with_plain_origin(text: String) -> String {
    let port = text
        .split("listen_plain = [\"127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a plain listener")
        .to_string();
    text.replace("PLAIN_ORIGIN", &format!("http://127.0.0.1:{port}"))
}

async fn gateway(server: &McpServer) -> Auth {
    let route = mcp_route(server.port);
    Auth::start_on(
        free_port(),
        "backend = \"memory\"",
        &route,
        with_plain_origin,
    )
    .await
}

/// What a run of the suite found.
#[derive(Default)]
struct Results {
    /// each scenario's checks as (check id, status), leaving out INFO lines (logs of the exchange)
    outcomes: BTreeMap<String, Vec<(String, String)>>,
    /// each failed check: scenario, message and details, to tell why
    failures: Vec<String>,
    /// every check as the suite wrote it, by scenario and check id
    checks: BTreeMap<(String, String), Value>,
}

/// Runs the server scenarios of @modelcontextprotocol/conformance against `url`: one, or all of
/// them. The package imports fs.globSync (Node 22); node20_loader.mjs supplies it on Node 20.
fn conformance(url: &str, scenario: Option<&str>, ca: Option<&Path>) -> Results {
    let dir = clients_dir();
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("log.txt");
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .args([
            "--dns-result-order=ipv4first",
            "--import",
            "./node20_loader.mjs",
        ])
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args(["server", "--url", url, "-o"])
        .arg(out.path().join("results"))
        .args(match scenario {
            Some(s) => ["--scenario", s],
            None => ["--suite", "all"],
        })
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(out.path().join("err.txt")).unwrap());
    if let Some(ca) = ca {
        cmd.env("NODE_EXTRA_CA_CERTS", ca);
    }
    // its exit status only says whether every check passed: the results say which did not
    let status = wait_at_most(cmd.spawn().unwrap(), Duration::from_secs(180));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        status.is_some(),
        "the conformance suite hung against {url}:\n{}",
        read(log)
    );
    let mut results = Results::default();
    for entry in std::fs::read_dir(out.path().join("results")).unwrap() {
        let entry = entry.unwrap();
        // server-<scenario>-<YYYY-MM-DDTHH-MM-SS-mmmZ>
        let name = entry.file_name().to_string_lossy().to_string();
        let scenario = name
            .strip_prefix("server-")
            .and_then(|n| n.rsplitn(7, '-').nth(6))
            .unwrap_or_else(|| panic!("a results folder of another shape: {name}"));
        let checks: Vec<Value> =
            serde_json::from_str(&read(entry.path().join("checks.json"))).unwrap();
        let mut kept = Vec::new();
        for c in checks.iter().filter(|c| c["status"] != "INFO") {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            if s("status") == "FAILURE" {
                let why = format!(
                    "{scenario}: {}: {} {}",
                    s("id"),
                    s("errorMessage"),
                    c["details"]
                );
                results.failures.push(why);
            }
            kept.push((s("id"), s("status")));
            results
                .checks
                .insert((scenario.to_string(), s("id")), c.clone());
        }
        results.outcomes.insert(scenario.to_string(), kept);
    }
    results
}

fn wait_at_most(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes_the_same_through_the_gateway() {
    if !installed(&clients_dir().join("node_modules/@modelcontextprotocol/conformance")) {
        return;
    }
    let server = McpServer::start();
    let a = gateway(&server).await;
    let (direct, through) = (server.url(), a.gw.tls_url("/mcp"));
    let plain = a.gw.url("/mcp");
    let cert = a.gw.path("certs/gateway.crt");
    let (direct, through) = tokio::task::spawn_blocking(move || {
        let direct = conformance(&direct, None, None);
        let mut through = conformance(&through, None, Some(&cert));
        // The DNS-rebinding scenario is written for plain-HTTP localhost servers: over TLS, its
        // client takes the certificate's expected name from the Host header it forges, and fails
        // before the gateway sees the request. It runs on the plain listener.
        let rebinding = "dns-rebinding-protection";
        let on_plain = conformance(&plain, Some(rebinding), None);
        through.failures.retain(|f| !f.starts_with(rebinding));
        through.failures.extend(on_plain.failures);
        through.outcomes.extend(on_plain.outcomes);
        through.checks.extend(on_plain.checks);
        (direct, through)
    })
    .await
    .unwrap();
    // the server passes the whole suite on its own, SSE and DNS rebinding included
    for s in [
        "server-initialize",
        "tools-call-with-progress",
        "tools-call-elicitation",
        "server-sse-polling",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ] {
        assert!(direct.outcomes.contains_key(s), "{s} did not run");
    }
    assert!(direct.outcomes.len() >= 30, "{:#?}", direct.outcomes);
    assert!(direct.failures.is_empty(), "{:#?}", direct.failures);
    // and the gateway changes nothing: the same scenarios, the same checks, the same outcomes
    assert_eq!(
        through.outcomes, direct.outcomes,
        "failing through the gateway: {:#?}",
        through.failures
    );
    // the rebound request was refused by the gateway's Origin guard, not by the server behind it
    let key = |id: &str| ("dns-rebinding-protection".to_string(), id.to_string());
    let refused = &through.checks[&key("localhost-host-rebinding-rejected")]["details"];
    assert_eq!(
        (
            refused["statusCode"].as_u64(),
            refused["body"]["error"].as_str()
        ),
        (Some(403), Some("access_denied")),
        "{refused}"
    );
}

/// Runs tests/clients/mcp_client.mjs with `envs` and returns the steps it printed, by name.
async fn sdk_client(a: &Auth, envs: Vec<(&'static str, String)>) -> Vec<Value> {
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("mcp_client.mjs"))
        .env("NODE_EXTRA_CA_CERTS", a.gw.path("certs/gateway.crt"))
        .envs(envs);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn steps<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter().filter(|s| s["step"] == name).collect()
}

/// The one step of that name.
pub fn one<'a>(all: &'a [Value], name: &str) -> &'a Value {
    let found = steps(all, name);
    assert_eq!(found.len(), 1, "{name}: {all:#?}");
    found[0]
}

/// slow_count's five progress events, sent ~200 ms apart, arrived spread out as they were sent,
/// the first well before the result: a gateway that held the stream back would hand them over
/// together, with the result (the bounds leave room for a busy machine's timers).
pub fn assert_streamed(all: &[Value]) {
    let progress = steps(all, "progress");
    let result = one(all, "result");
    assert_eq!(result["text"], "counted to 5");
    let at: Vec<i64> = progress.iter().map(|p| p["at"].as_i64().unwrap()).collect();
    let counted: Vec<i64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(counted, [1, 2, 3, 4, 5], "{all:#?}");
    let apart = at.windows(2).filter(|w| w[1] - w[0] >= 100).count();
    assert!(apart >= 3, "events bunched together: {at:?}");
    assert!(
        result["at"].as_i64().unwrap() - at[0] >= 500,
        "the first event came with the result: {at:?} {result}"
    );
}

/// test_reconnection's stream was dropped by the server; after the 500 ms it asked for, the client
/// came back (a GET, with Last-Event-ID) and got the result on the resumed stream.
pub fn assert_resumed(all: &[Value]) {
    let resumed = one(all, "reconnection");
    assert!(resumed["text"]
        .as_str()
        .unwrap()
        .starts_with("Reconnection test completed successfully"));
    let (from, to) = (one(all, "result")["at"].as_i64(), resumed["at"].as_i64());
    let came_back = steps(all, "http")
        .into_iter()
        .filter(|h| h["method"] == "GET" && h["status"] == 200)
        .any(|h| h["at"].as_i64() > from && h["at"].as_i64() <= to);
    assert!(
        came_back && to.unwrap() - from.unwrap() >= 450,
        "no reconnection: {all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_client_streams_resumes_and_ends_its_session_through_the_gateway() {
    if !installed(&clients_dir().join("node_modules/@modelcontextprotocol/sdk")) {
        return;
    }
    let server = McpServer::start();
    let a = gateway(&server).await;
    let envs = vec![
        ("MCP_URL", a.gw.tls_url("/mcp")),
        ("MCP_FORGED_SUBJECT", "mallory".to_string()),
        ("MCP_REFUSED_TOOL", "delete_user".to_string()),
    ];
    let all = sdk_client(&a, envs).await;
    let one = |name: &str| one(&all, name);
    let names = one("tools")["names"].as_array().unwrap().clone();
    for tool in ["echo", "delete_user", "slow_count"] {
        assert!(names.contains(&tool.into()), "{names:?}");
    }
    // an anonymous caller's made-up identity never reaches the server
    assert_eq!(one("echo")["text"], "hello");
    assert_eq!(one("echo")["subject"], Value::Null);
    // a tool whose rule asks for a scope: an anonymous call is challenged, not passed
    assert_eq!(one("refused")["code"], 401, "{all:#?}");
    assert_streamed(&all);
    assert_resumed(&all);
    // DELETE ended the session at the server: the client let it go, and it is gone for everyone
    let ended = one("terminated");
    let session = ended["session"].as_str().unwrap().to_string();
    assert_eq!(session, one("connected")["session"].as_str().unwrap());
    assert_eq!(ended["left"], Value::Null);
    let r =
        a.gw.https
            .post(a.gw.tls_url("/mcp"))
            .header("mcp-session-id", &session)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
}
