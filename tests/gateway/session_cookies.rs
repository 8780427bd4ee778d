//! A WebSocket upgrade carrying the session cookie passes only from this origin (scheme, host and
//! port).

use crate::harness::Resp;
use crate::sessions::{Browser, APP};
use crate::tokens::{Auth, ALICE_PASSWORD};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// Says hello once the upgrade is done.
async fn socket(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut s| async move {
        let _ = s.send(Message::Text("hello".into())).await;
    })
}

/// A gateway with a session route to `socket`.
async fn gateway() -> Auth {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let app = Router::new().route("/ws/chat", get(socket));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let extra = format!(
        r#"{APP}
[[upstreams]]
name = "ws"
peers = ["{upstream}"]

[[routes]]
name = "ws"
path_prefix = "/ws"
upstream = "ws"
auth = "session"
"#
    );
    Auth::start_with("backend = \"memory\"", &extra).await
}

/// A WebSocket handshake over TLS (HTTP/1.1), as a browser sends it, with these extra headers.
async fn handshake(a: &Auth, headers: &[(&str, &str)]) -> Resp {
    let cert = std::fs::read(a.gw.path("certs/gateway.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let mut rb = client
        .get(a.gw.tls_url("/ws/chat"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::from(rb.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_with_the_session_cookie_must_come_from_this_origin() {
    let a = gateway().await;
    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/ws/", ALICE_PASSWORD).await;
    let cookie = b.cookie.clone().unwrap();
    let here = b.url("");
    let http_here = here.replacen("https://", "http://", 1);
    let other_port = format!("https://localhost:{}", a.gw.tls.port() + 1);
    for (origin, site) in [
        (Some("https://evil.example"), None),
        // the http page of the same host and port is another origin than this https one
        (Some(http_here.as_str()), None),
        (Some(other_port.as_str()), None),
        (Some("null"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
        (None, None),
    ] {
        let mut h = vec![("cookie", cookie.as_str())];
        h.extend(origin.map(|o| ("origin", o)));
        h.extend(site.map(|s| ("sec-fetch-site", s)));
        let r = handshake(&a, &h).await;
        assert_eq!(r.status, 403, "{origin:?} {site:?}: {}", r.body);
        assert_eq!(r.json()["error"], "cross_site_request");
    }
    let ok = handshake(&a, &[("cookie", &cookie), ("origin", &here)]).await;
    assert_eq!(ok.status, 101, "{}", ok.body);
    let ok = handshake(
        &a,
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(ok.status, 101, "{}", ok.body);
    // without the cookie there is no session to misuse: 401, as for any script
    let none = handshake(&a, &[("origin", "https://evil.example")]).await;
    assert_eq!(none.status, 401);
}
