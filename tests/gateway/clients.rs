//! Real client libraries with their defaults against the real gateway: openid-client (npm) and
//! Authlib (PyPI), each through every flow the token service offers. `make test` installs them in
//! tests/clients; plain `cargo test` skips these tests, saying why, when they are not installed.

use crate::tokens::{Auth, ALICE_PASSWORD, SVC_SECRET};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Where pip puts the package `name` in the clients' virtual environment:
/// `lib/python3.X/site-packages/<name>`.
pub fn python_package(name: &str) -> PathBuf {
    let lib = clients_dir().join(".venv/lib");
    let python = std::fs::read_dir(&lib)
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok()))
        .map(|e| e.path())
        .unwrap_or_else(|| lib.join("python3"));
    python.join("site-packages").join(name)
}

/// False (after saying why) when the client libraries are missing and `make test` did not ask for them.
pub fn installed(what: &Path) -> bool {
    if what.exists() {
        return true;
    }
    assert!(
        std::env::var_os("GATEHOUSE_REQUIRE_CLIENTS").is_none(),
        "{} is missing: `make test` installs the client libraries",
        what.display()
    );
    eprintln!(
        "skipped: {} is missing (`make test` installs the client libraries)",
        what.display()
    );
    false
}

/// The secret of the client that exchanges tokens (RFC 8693).
const EXCHANGER_SECRET: &str = "exchanger-secret-0123456789abcdef0123456789";

/// A gateway whose issuer is its own URL, as discovery clients require, with a client that may
/// exchange tokens meant for the service's audience.
async fn gateway() -> Auth {
    let exchanger = format!(
        "\n[[clients]]\nclient_id = \"exchanger\"\nsecret_hash = \"{}\"\n\
         grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n\
         scopes = [\"orders.read\"]\naudience = [\"api\"]\n",
        crate::tokens::sha256(EXCHANGER_SECRET)
    );
    Auth::start_edited("backend = \"memory\"", &exchanger, |t| {
        t.replace("issuer = \"https://auth.gatehouse.test\"\n", "")
    })
    .await
}

/// Runs a client script and checks each flow it reported.
fn run(mut cmd: Command, a: &Auth, flows: &[&str]) {
    let key = a.gw.path("keys/signer.pem");
    std::fs::write(&key, &a.client_key.private_pem).unwrap();
    let cert = a.gw.path("certs/gateway.crt");
    let out = cmd
        .env("GATEHOUSE_URL", a.gw.tls_url(""))
        .env("SVC_SECRET", SVC_SECRET)
        .env("EXCHANGER_SECRET", EXCHANGER_SECRET)
        .env("SIGNER_KEY", &key)
        .env("ALICE_PASSWORD", ALICE_PASSWORD)
        .env("NODE_EXTRA_CA_CERTS", &cert)
        .env("REQUESTS_CA_BUNDLE", &cert)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for flow in flows {
        assert!(
            stdout.lines().any(|l| l == format!("ok: {flow}")),
            "{flow} not reported:\n{stdout}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openid_client_runs_every_flow_with_its_defaults() {
    let dir = clients_dir();
    if !installed(&dir.join("node_modules/openid-client")) {
        return;
    }
    let a = gateway().await;
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("openid_client.mjs"));
    let flows = [
        "discovery",
        "client_credentials",
        "private_key_jwt",
        "jwt-bearer",
        "jwt-bearer with None() naming its client_id",
        "authorization_code with PKCE and an RS256 ID token",
        "userinfo",
        "refresh",
        "introspection and revocation",
    ];
    tokio::task::spawn_blocking(move || run(cmd, &a, &flows))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn openid_client_binds_its_tokens_with_dpop_and_calls_with_its_own_proofs() {
    let dir = clients_dir();
    if !installed(&dir.join("node_modules/openid-client")) {
        return;
    }
    let start = |service: &'static str| {
        Auth::start_edited("backend = \"memory\"", crate::dpop::BOUND_ROUTE, move |t| {
            t.replace("issuer = \"https://auth.gatehouse.test\"\n", service)
        })
    };
    let (a, nonces) = (start("").await, start("dpop_nonce = true\n").await);
    let script = |flows: &str| {
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("openid_client_dpop.mjs"))
            .env("FLOWS", flows);
        cmd
    };
    let (bound, nonced) = (script("bound"), script("nonces"));
    let nonces = tokio::task::spawn_blocking(move || {
        let flows = [
            "metadata names the DPoP algorithms",
            "client_credentials with DPoP",
            "calls through the gateway with its own proofs",
            "authorization_code with DPoP",
            "userinfo with DPoP",
            "refresh bound to the key",
        ];
        run(bound, &a, &flows);
        let flows = [
            "nonce challenge at the token endpoint answered by the client",
            "nonce challenge at the resource answered by the client",
        ];
        run(nonced, &nonces, &flows);
        nonces
    })
    .await
    .unwrap();
    // the resource did ask: the handle that never learnt the nonce was refused once, then passed
    let metrics = nonces.gw.metrics().await;
    assert!(
        metrics.contains("gatehouse_denials_total{reason=\"use_dpop_nonce\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authlib_runs_every_flow_with_its_defaults() {
    let dir = clients_dir();
    let python = dir.join(".venv/bin/python");
    if !installed(&python) {
        return;
    }
    let a = gateway().await;
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("authlib_client.py"));
    let flows = [
        "metadata validation",
        "client_credentials",
        "private_key_jwt (Authlib's one-hour assertions)",
        "jwt-bearer with only the assertion",
        "jwt-bearer naming its client_id",
        "authorization_code with PKCE and an RS256 ID token",
        "userinfo",
        "refresh",
        "introspection and revocation",
        "token exchange",
    ];
    tokio::task::spawn_blocking(move || run(cmd, &a, &flows))
        .await
        .unwrap();
}
