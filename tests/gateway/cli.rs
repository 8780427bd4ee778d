//! The command line: `gatehouse check` messages, the shipped configuration, start-up failures, the access log.

use crate::support::harness::{free_port, wait_port};
use std::io::Read;
use std::process::{Command, Stdio};

fn gatehouse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

fn check(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_names_every_problem_by_key() {
    let (ok, out) = check(
        r#"
[server]
listen_tls = []
listen_plain = ["127.0.0.1:8080"]
colour = "blue"

[[issuers]]
name = "corp"
issuer = "https://idp.example.com"
jwks_uri = "https://idp.example.com/jwks"
audiences = ["api"]
algorithms = ["RS256", "none", "HS256"]

[[upstreams]]
name = "orders"
peers = ["127.0.0.1:9000"]

[[upstreams]]
name = "billing"
peers = ["not an address"]

[[routes]]
path_prefix = "/orders"
upstream = "orders"

[[routes]]
path_prefix = "/o"
upstream = "ordrs"
issuers = ["corpp"]
auth = "maybe"
token_from = ["header", "smoke-signal"]
leeway = "5s"

[[routes]]
path_prefix = "/orders"
upstream = "orders"
"#,
    );
    assert!(!ok, "{out}");
    for needle in [
        "server.colour: unknown key",
        "routes[1].leeway: unknown key",
        "issuers[0].algorithms[1]: \"none\" is never accepted",
        "issuers[0].algorithms: HS256/384/512 need a shared secret",
        "upstreams[1].peers[0]: \"not an address\" is not HOST:PORT",
        "routes[1].upstream: no upstream named \"ordrs\" (known: orders, billing)",
        "routes[1].issuers[0]: no issuer named \"corpp\" (known: corp)",
        "routes[1].auth: \"maybe\" is not one of",
        "routes[1].token_from[1]: \"smoke-signal\" is not",
        "routes[2].path_prefix: \"/orders\" is already matched by routes[0]",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn check_reports_syntax_errors_and_missing_certificates() {
    let (ok, out) = check("[server\nlisten_tls = 1");
    assert!(!ok);
    assert!(out.contains("problem"), "{out}");
    let (ok, out) = check(
        r#"
[tls]
cert = "nowhere.crt"
key = "nowhere.key"

[[upstreams]]
name = "w"
kind = "whoami"

[[routes]]
path_prefix = "/"
upstream = "w"
auth = "public"
"#,
    );
    assert!(!ok);
    assert!(
        out.contains("tls.cert:") && out.contains("nowhere.crt does not exist"),
        "{out}"
    );
}

#[test]
fn the_shipped_gateway_toml_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
    let out = gatehouse()
        .args(["check", "--config", path])
        .env(
            "GATEHOUSE_DEMO_SECRET",
            "a-demo-secret-of-at-least-32-bytes!!",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // without its secret the demo issuer cannot work, and check says which variable is missing
    let out = gatehouse()
        .args(["check", "--config", path])
        .env_remove("GATEHOUSE_DEMO_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("issuers[0].secret_env: environment variable GATEHOUSE_DEMO_SECRET is not set"));
}

#[test]
fn run_refuses_a_bad_certificate_and_a_bad_config_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let port = free_port();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten_tls = [\"127.0.0.1:{port}\"]\nadmin_listen = \"\"\n[tls]\ncert = \"bad.crt\"\nkey = \"bad.key\"\n[[upstreams]]\nname = \"w\"\nkind = \"whoami\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"w\"\nauth = \"public\"\n"
        ),
    )
    .unwrap();
    let out = gatehouse()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls:") && err.contains("bad.crt"), "{err}");
}

#[test]
fn the_access_log_has_one_line_per_request_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let [port, admin] = crate::support::harness::free_ports::<2>();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen_tls = []
listen_plain = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
threads = 1

[[issuers]]
name = "hs"
issuer = "https://hs.test"
secret_env = "LOG_TEST_SECRET"
audiences = ["api"]
algorithms = ["HS256"]

[[upstreams]]
name = "w"
kind = "whoami"

[[routes]]
name = "q"
path_prefix = "/q"
upstream = "w"
token_from = ["query:access_token", "header"]
"#
        ),
    )
    .unwrap();
    let secret = "log-test-secret-long-enough-for-hs256!";
    let mut child = gatehouse()
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .env("LOG_TEST_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_port(format!("127.0.0.1:{port}").parse().unwrap());
    let claims = crate::support::keys::claims(
        "https://hs.test",
        "api",
        serde_json::json!({"sub": "log-subject"}),
    );
    let token = crate::support::keys::TestKey::hmac(secret).sign(&claims);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let ok = c
            .get(format!("http://127.0.0.1:{port}/q/a?access_token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let bad = c
            .get(format!("http://127.0.0.1:{port}/q/b"))
            .bearer_auth(format!("{token}x"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401);
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let all = format!("{out}{err}");
    let sig = token.rsplit('.').next().unwrap();
    assert!(!all.contains(sig), "a token reached the log:\n{all}");
    assert!(!all.contains(secret), "the secret reached the log");
    let access: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "gatehouse::access")
        .collect();
    assert_eq!(access.len(), 2, "{out}");
    assert_eq!(access[0]["fields"]["route"], "q");
    assert_eq!(access[0]["fields"]["status"], 200);
    assert_eq!(access[0]["fields"]["subject"], "log-subject");
    assert_eq!(access[0]["fields"]["path"], "/q/a");
    assert_eq!(access[1]["fields"]["status"], 401);
    assert_eq!(access[1]["fields"]["denial"], "bad_signature");
}
