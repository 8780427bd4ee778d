//! External identity providers as they come: a private CA, Microsoft Entra's multi-tenant issuer,
//! and EC keys among several allowed algorithms.

use crate::support::harness::{echo_everywhere, free_port, Gw};
use crate::support::keys::{claims, now, TestKey};
use crate::support::servers::{Echo, Idp};
use crate::tokens::Auth;
use serde_json::json;

/// A gateway whose token service also stands in for an external issuer "loop", fetched over TLS
/// from the gateway's own JWKS (a self-signed certificate: a private CA), with or without `ca`.
async fn looped(with_ca: bool) -> Auth {
    let tls = free_port();
    let ca = if with_ca {
        "ca = \"certs/gateway.crt\""
    } else {
        ""
    };
    let extra = format!(
        r#"
[[issuers]]
name = "loop"
issuer = "https://auth.gatehouse.test"
jwks_uri = "https://localhost:{tls}/.well-known/jwks.json"
audiences = ["api"]
algorithms = ["ES256"]
{ca}

[[routes]]
path_prefix = "/looped"
upstream = "echo"
issuers = ["loop"]
"#
    );
    Auth::start_on(tls, "backend = \"memory\"", &extra, |t| t).await
}

/// Waits (at most 20 s) until the gateway's first fetch of the issuer's keys has `result` ("ok" or
/// "error") in its metrics: a request sent earlier races the fetch.
async fn fetched(a: &Auth, issuer: &str, result: &str) {
    let line = format!("gatehouse_jwks_fetches_total{{issuer=\"{issuer}\",result=\"{result}\"}} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = a.gw.metrics().await;
        let n: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if n > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {result} fetch of {issuer}'s keys:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_behind_a_private_ca_is_fetched_with_its_ca() {
    let without = looped(false).await;
    fetched(&without, "loop", "error").await;
    let t = without.svc_token(None).await;
    let r = without.gw.get("/looped/x", Some(&t)).await;
    assert_eq!(
        r.status, 503,
        "the private CA is not trusted without `ca`: {}",
        r.body
    );
    let with = looped(true).await;
    fetched(&with, "loop", "ok").await;
    let t = with.svc_token(None).await;
    let r = with.gw.get("/looped/x", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("svc"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_tenant_issuer_accepts_its_listed_tenants() {
    let key = TestKey::rsa("entra-1");
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let echo = Echo::start("echo").await;
    let body = format!(
        r#"
[[issuers]]
name = "entra"
issuer = "{url}/{{tenantid}}/v2.0"
discovery = true
tenants = ["tenant-a", "tenant-b"]
audiences = ["api"]
algorithms = ["RS256"]
"#,
        url = idp.url,
    ) + &echo_everywhere(echo.addr);
    let gw = Gw::start(&body);
    let token = |tenant: &str, tid: &str| {
        key.sign(&claims(
            &format!("{}/{tenant}/v2.0", idp.url),
            "api",
            json!({"tid": tid, "sub": "someone"}),
        ))
    };
    let r = gw.get("/x", Some(&token("tenant-a", "tenant-a"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.echoed("x-auth-issuer"),
        Some(format!("{}/tenant-a/v2.0", idp.url))
    );
    for (tenant, tid) in [("tenant-c", "tenant-c"), ("tenant-a", "tenant-b")] {
        let r = gw.get("/x", Some(&token(tenant, tid))).await;
        assert_eq!(r.status, 401, "{tenant}/{tid}: {}", r.body);
    }
}

#[test]
fn a_template_issuer_needs_its_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen_tls = []
listen_plain = ["127.0.0.1:18081"]

[[issuers]]
name = "entra"
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
discovery = true
audiences = ["api"]
algorithms = ["RS256"]

[[upstreams]]
name = "u"
peers = ["127.0.0.1:9"]

[[routes]]
upstream = "u"
"#,
    )
    .unwrap();
    let e = gatehouse::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("issuers[0].tenants: an issuer with {tenantid} needs"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ec_keys_of_both_curves_serve_an_issuer_allowing_es256_and_es384() {
    let p256 = TestKey::ec("p256");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p256.pem"), &p256.public_pem).unwrap();
    let echo = Echo::start("echo").await;
    let body = r#"
[[issuers]]
name = "ec"
issuer = "https://ec.test"
keys = ["p256.pem"]
audiences = ["api"]
algorithms = ["ES256", "ES384"]
"#
    .to_string()
        + &echo_everywhere(echo.addr);
    let gw = Gw::start_in(dir, &body);
    let t = p256.sign(&json!({"iss": "https://ec.test", "aud": "api", "exp": now() + 60}));
    assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
}
