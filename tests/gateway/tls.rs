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
    let r = crate::harness::Resp::from(w.gw.http.post(w.gw.url("/methods")).send().await.unwrap())
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
            let r = crate::harness::Resp::from(
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
