//! Upstream pools: failures as JSON, dead peers leaving rotation, retries, and TLS to the upstream.

use crate::support::harness::{free_port, Gw};
use crate::support::servers::Echo;
use crate::World;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_is_down_gets_502_and_the_gateway_stays_up() {
    let dead = free_port();
    let w = World::start_with(&format!(
        r#"
[[upstreams]]
name = "dead"
peers = ["127.0.0.1:{dead}"]
health_interval = "1h"

[[routes]]
path_prefix = "/dead"
upstream = "dead"
auth = "public"
"#
    ))
    .await;
    for _ in 0..3 {
        let r = w.gw.get("/dead/x", None).await;
        assert_eq!(r.status, 502, "{}", r.body);
        assert_eq!(r.json()["error"], "bad_gateway");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    assert_eq!(w.gw.get("/public/x", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_failing_its_health_check_leaves_the_rotation() {
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    let gw = Gw::start(&format!(
        r#"
[[upstreams]]
name = "pool"
peers = ["{}", "{}"]
health_check = "/healthz"
health_interval = "200ms"

[[routes]]
path_prefix = "/"
upstream = "pool"
auth = "public"
"#,
        a.addr, b.addr
    ));
    // both serve while healthy
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(
            gw.get("/x", None).await.json()["upstream"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "round robin should use both peers");
    b.state.healthy.store(false, Ordering::SeqCst);
    let peer = format!("peer=\"{}\",upstream=\"pool\"}} 0", b.addr);
    let mut gone = false;
    for _ in 0..100 {
        if gw.metrics().await.contains(&peer) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "peer b was never marked unhealthy: {}",
        gw.metrics().await
    );
    let before = b.hits();
    for _ in 0..10 {
        assert_eq!(gw.get("/x", None).await.json()["upstream"], "a");
    }
    assert_eq!(b.hits(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_retried_on_another_peer() {
    let a = Echo::start("a").await;
    let dead = free_port();
    let gw = Gw::start(&format!(
        r#"
[[upstreams]]
name = "pool"
peers = ["127.0.0.1:{dead}", "{}"]
health_interval = "1h"
retries = 1

[[routes]]
path_prefix = "/"
upstream = "pool"
auth = "public"
"#,
        a.addr
    ));
    for _ in 0..6 {
        let r = gw.get("/x", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["upstream"], "a");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_upstream_with_a_private_ca_and_sni() {
    // The gateway proxies to its own TLS listener, trusting its certificate as a private CA.
    let dir = tempfile::tempdir().unwrap();
    gatehouse::crypto::files::write_self_signed(
        &dir.path().join("certs/gateway.crt"),
        &dir.path().join("certs/gateway.key"),
    )
    .unwrap();
    let port = free_port();
    let gw = Gw::start_on(
        dir,
        &format!(
            r#"
[[upstreams]]
name = "self-tls"
peers = ["127.0.0.1:{port}"]
tls = true
sni = "localhost"
ca = "certs/gateway.crt"
health_interval = "1h"

[[upstreams]]
name = "wrong-sni"
peers = ["127.0.0.1:{port}"]
tls = true
sni = "other.example"
ca = "certs/gateway.crt"
health_interval = "1h"

[[upstreams]]
name = "whoami"
kind = "whoami"

[[routes]]
path_prefix = "/via-tls"
upstream = "self-tls"
auth = "public"
strip_prefix = true

[[routes]]
path_prefix = "/wrong-sni"
upstream = "wrong-sni"
auth = "public"
strip_prefix = true

[[routes]]
name = "whoami"
path_prefix = "/whoami"
upstream = "whoami"
auth = "public"
"#
        ),
        port,
    );
    let r = gw.get("/via-tls/whoami", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["route"], "whoami");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    // a certificate that does not match the SNI is refused: 502, not a silent downgrade
    let r = gw.get("/wrong-sni/whoami", None).await;
    assert_eq!(r.status, 502, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_gets_504() {
    let a = Echo::start("a").await;
    let gw = Gw::start(&format!(
        r#"
[[upstreams]]
name = "slow"
peers = ["{}"]
read_timeout = "300ms"

[[routes]]
path_prefix = "/"
upstream = "slow"
auth = "public"
"#,
        a.addr
    ));
    let r = gw.get("/slow", None).await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert_eq!(gw.get("/fast", None).await.status, 200);
}
