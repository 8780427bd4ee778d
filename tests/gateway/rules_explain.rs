//! `gatehouse explain` and `gatehouse check` on route rules: each rule held or not, the exit
//! status, and broken expressions named by route, key, index and position.

use crate::support::keys::{claims, TestKey};
use crate::{AUD, HS_ISS, HS_SECRET};
use serde_json::json;
use std::process::Command;

const CONFIG: &str = r#"
[server]
listen_tls = []
listen_plain = ["127.0.0.1:8080"]
admin_listen = ""
trusted_proxies = ["127.0.0.1"]

[[issuers]]
name = "hs"
issuer = "https://hs.test"
secret_env = "GH_EXPLAIN_HS_SECRET"
audiences = ["api"]
algorithms = ["HS256"]

[[upstreams]]
name = "echo"
peers = ["127.0.0.1:9"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "echo"
allow_if = ["claims.tenant == request.segments[1]", "ip_in(client.ip, '10.0.0.0/8')"]
deny_if = "request.method == 'DELETE'"
"#;

/// Runs the binary on `config`: (exit code, stdout, stderr).
fn run(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("GH_EXPLAIN_HS_SECRET", HS_SECRET)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn explain(token: &str, method: &str, path: &str, ip: &str) -> (i32, String, String) {
    let args = [
        "explain",
        "--route",
        "api",
        "--token",
        token,
        "--method",
        method,
        "--path",
        path,
        "--client-ip",
        ip,
    ];
    run(CONFIG, &args)
}

#[test]
fn explain_prints_each_rule_and_exits_by_the_verdict() {
    let token = TestKey::hmac(HS_SECRET).sign(&claims(HS_ISS, AUD, json!({"tenant": "a"})));
    let (code, out, err) = explain(&token, "POST", "/api/a/x?page=1", "10.0.0.7");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "route api",
            "token: verified, subject user-1",
            "roles, scopes and claims: held",
            "deny_if[0]: false, passes: request.method == 'DELETE'",
            "allow_if[0]: true, passes: claims.tenant == request.segments[1]",
            "allow_if[1]: true, passes: ip_in(client.ip, '10.0.0.0/8')",
            "passes",
        ]
    );
    let (code, out, err) = explain(&token, "DELETE", "/api/b/x", "192.0.2.1");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("deny_if[0]: true, refuses: request.method == 'DELETE'\n"),
        "{out}"
    );
    assert!(out.contains("allow_if[0]: false, refuses: "), "{out}");
    assert!(out.contains("allow_if[1]: false, refuses: "), "{out}");
    assert!(out.ends_with("refused: deny_if[0]\n"), "{out}");
    assert!(err.contains("the request would be refused"), "{err}");
    // a rule that cannot be evaluated says why, without the values it read
    let other = TestKey::hmac(HS_SECRET).sign(&claims(HS_ISS, AUD, json!({"org": "secret-org"})));
    let (code, out, _) = explain(&other, "GET", "/api/a", "10.0.0.7");
    assert_eq!(code, 1);
    assert!(
        out.contains("allow_if[0]: error (no such key 'tenant'), refuses: "),
        "{out}"
    );
    assert!(!out.contains("secret-org"), "{out}");
    // a forged token never reaches the rules
    let forged = TestKey::hmac("another-secret-that-is-long-enough-to-sign").sign(&claims(
        HS_ISS,
        AUD,
        json!({}),
    ));
    let (code, out, _) = explain(&forged, "GET", "/api/a", "10.0.0.7");
    assert_eq!(code, 1);
    assert!(out.contains("token: not accepted ("), "{out}");
    assert!(!out.contains("allow_if"), "{out}");
}

#[test]
fn check_names_each_broken_rule_by_route_key_index_and_position() {
    let broken = CONFIG
        .replace("claims.tenant == request", "claim.tenant == request")
        .replace("request.method == 'DELETE'", "request.verb == 'DELETE'");
    let (code, out, err) = run(&broken, &["check"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("routes[0].allow_if[0]: undeclared reference to 'claim' at 1:1"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].deny_if[0]: 'request' has no field 'verb' at 1:8"),
        "{err}"
    );
}
