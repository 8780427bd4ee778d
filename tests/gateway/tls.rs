//! TLS termination, HTTP/2 by ALPN, health endpoints and answers for unmatched requests.

use crate::World;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http1_and_http2_with_a_generated_certificate() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    let h2 =
        w.gw.https
            .get(w.gw.tls_url("/api/x"))
            .bearer_auth(&t)
            .version(reqwest::Version::HTTP_2)
            .send()
            .await
            .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    let body: serde_json::Value = h2.json().await.unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(body["headers"]["x-auth-subject"][0], "user-1");

    let h1 = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(w.gw.path("certs/gateway.crt")).unwrap())
                .unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    let r = h1.get(w.gw.tls_url("/public/a")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_on_every_listener() {
    let w = World::start().await;
    for url in [
        w.gw.url("/healthz"),
        w.gw.tls_url("/healthz"),
        format!("http://{}/healthz", w.gw.admin),
    ] {
        let r = w.gw.https.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    }
    let m = w.gw.metrics().await;
    assert!(m.contains("gatehouse_requests_total"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_paths_get_404_and_wrong_methods_405() {
    let w = World::start().await;
    let r = w.gw.get("/nowhere", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = w.gw.get("/publicity", None).await; // segment-aware: not under /public
    assert_eq!(r.status, 404);
    let r = crate::support::harness::Resp::from(
        w.gw.http.post(w.gw.url("/methods")).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
    assert_eq!(w.gw.get("/methods/x", None).await.status, 200);
    assert_eq!(w.echo.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_match_exact_hosts_then_wildcards_then_any_host() {
    let w = World::start_with(
        r#"
[[routes]]
name = "exact"
host = "api.example.com"
path_prefix = "/public"
upstream = "whoami"
auth = "public"

[[routes]]
name = "wild"
host = "*.example.com"
path_prefix = "/public"
upstream = "whoami"
auth = "public"
"#,
    )
    .await;
    let route = |host: &'static str| {
        let w = &w;
        async move {
            let r = crate::support::harness::Resp::from(
                w.gw.http
                    .get(w.gw.url("/public/x"))
                    .header("host", host)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            r.json()
                .get("route")
                .and_then(|v| v.as_str())
                .unwrap_or("echo")
                .to_string()
        }
    };
    assert_eq!(route("api.example.com").await, "exact");
    assert_eq!(route("API.Example.com:8443").await, "exact");
    assert_eq!(route("shop.example.com").await, "wild");
    assert_eq!(route("a.b.example.com").await, "wild");
    assert_eq!(route("example.com").await, "echo");
    assert_eq!(route("other.test").await, "echo");
}

/// One TLS connection with `config`: sends a request, reads the whole answer (and with it any TLS 1.3
/// ticket), and gives back the finished connection, which tells how the handshake went, and the
/// status line.
fn tls_request(
    config: &std::sync::Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    request: &[u8],
) -> (rustls::ClientConnection, String) {
    use std::io::{Read, Write};
    let mut conn =
        rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (conn, status)
}

/// Whether the handshake was full or resumed, and the status line.
fn kind_and_status(
    (conn, status): (rustls::ClientConnection, String),
) -> (Option<rustls::HandshakeKind>, String) {
    (conn.handshake_kind(), status)
}

fn gateway_roots(cert_pem: &[u8]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile_certs(cert_pem) {
        roots.add(c).unwrap();
    }
    roots
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn returning_tls_clients_resume_their_sessions() {
    let w = World::start().await;
    let cert = std::fs::read(w.gw.path("certs/gateway.crt")).unwrap();
    let addr = w.gw.tls;
    tokio::task::spawn_blocking(move || {
        let roots = gateway_roots(&cert);
        // TLS 1.3 resumes with the ticket the gateway sent; TLS 1.2 with its session cache or ticket.
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let config = std::sync::Arc::new(
                rustls::ClientConfig::builder_with_protocol_versions(versions)
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth(),
            );
            let first = kind_and_status(tls_request(&config, addr, HEALTHZ));
            let second = kind_and_status(tls_request(&config, addr, HEALTHZ));
            assert_eq!(
                first,
                (Some(rustls::HandshakeKind::Full), "HTTP/1.1 200 OK".into())
            );
            assert_eq!(
                second,
                (
                    Some(rustls::HandshakeKind::Resumed),
                    "HTTP/1.1 200 OK".into()
                )
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_prefers_post_quantum_key_exchange_gets_it() {
    // the listeners run on aws-lc-rs; ring has no X25519MLKEM768 and would settle on X25519
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let w = World::start().await;
    let cert = std::fs::read(w.gw.path("certs/gateway.crt")).unwrap();
    let addr = w.gw.tls;
    tokio::task::spawn_blocking(move || {
        let mut provider = default_provider();
        provider.kx_groups = vec![kx_group::X25519MLKEM768, kx_group::X25519];
        let config = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(gateway_roots(&cert))
                .with_no_client_auth(),
        );
        let (conn, status) = tls_request(&config, addr, HEALTHZ);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let group = conn.negotiated_key_exchange_group().map(|g| g.name());
        assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_handshake_is_cut_off() {
    use std::io::Read;
    let w = World::start().await;
    let addr = w.gw.tls;
    tokio::task::spawn_blocking(move || {
        // connect and say nothing: the gateway closes once request_header_timeout (3 s) has passed,
        // long before this read would give up
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 64];
        match sock.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("the gateway sent {n} bytes to a client that never said hello"),
            Err(e) => panic!("the connection was still open after 30 s: {e}"),
        }
    })
    .await
    .unwrap();
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}
