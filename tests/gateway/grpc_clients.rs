//! Real gRPC clients beside tonic: grpcio (PyPI, the C core) and @grpc/grpc-js (npm) call the
//! gateway over TLS and h2c, and must read every refusal as its status: no token UNAUTHENTICATED,
//! the wrong role PERMISSION_DENIED, an upstream that is down UNAVAILABLE; and a route that strips
//! its prefix reaches the service. `make test` installs them in tests/clients; plain `cargo test`
//! skips these tests, saying why, when they are missing.

use crate::clients::{clients_dir, installed, python_package};
use crate::grpc::h2c_gateway;
use std::process::Command;

const CASES: [&str; 5] = [
    "a valid token is let through",
    "a prefix-stripping route reaches the service",
    "no token is UNAUTHENTICATED",
    "the wrong role is PERMISSION_DENIED",
    "a dead upstream is UNAVAILABLE",
];

/// Runs a client script against the gateway and checks each case it reported, on both transports.
async fn run(mut cmd: Command) {
    let a = h2c_gateway().await;
    cmd.env("GRPC_TLS_TARGET", format!("localhost:{}", a.gw.tls.port()))
        .env("GRPC_H2C_TARGET", a.gw.plain.to_string())
        .env("GRPC_CA", a.gw.path("certs/gateway.crt"))
        .env("GRPC_TOKEN", a.svc_token(None).await);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for transport in ["tls", "h2c"] {
        for case in CASES {
            assert!(
                stdout
                    .lines()
                    .any(|l| l == format!("ok: {transport}: {case}")),
                "{transport}: {case} not reported:\n{stdout}\n{stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_reads_every_refusal_as_its_status() {
    let dir = clients_dir();
    if !installed(&python_package("grpc")) {
        return;
    }
    let mut cmd = Command::new(dir.join(".venv/bin/python"));
    cmd.arg(dir.join("grpcio_client.py"));
    run(cmd).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_js_reads_every_refusal_as_its_status() {
    let dir = clients_dir();
    if !installed(&dir.join("node_modules/@grpc/grpc-js")) {
        return;
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("grpc_js_client.mjs"));
    run(cmd).await;
}
