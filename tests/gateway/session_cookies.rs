//! The gateway's cookies stay between the browser and the gateway: never sent to an upstream on any
//! route of the host, never set by one; and a WebSocket upgrade carrying the session cookie passes
//! only from this origin (scheme, host and port).

use crate::sessions::{Browser, APP, COOKIE};
use crate::support::harness::Resp;
use crate::tokens::{Auth, ALICE_PASSWORD};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

/// An upstream that answers with the `Cookie` it received, and tries to set the gateway's cookies.
async fn jar(headers: HeaderMap) -> Response {
    let cookie = headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let mut r = axum::Json(serde_json::json!({ "cookie": cookie })).into_response();
    for set in [
        "app=2; Path=/",
        "__Host-gatehouse=planted; Path=/; Secure; HttpOnly",
        "__Host-gatehouse-login-abcdefghijkl=planted; Path=/; Secure",
        "__Host-gatehouse-csrf=planted; Path=/; Secure",
        "theme=dark",
    ] {
        r.headers_mut()
            .append("set-cookie", HeaderValue::from_static(set));
    }
    r
}

/// Says hello once the upgrade is done.
async fn socket(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut s| async move {
        let _ = s.send(Message::Text("hello".into())).await;
    })
}

/// A gateway with session, public and bearer routes to `jar` and a session route to `socket`.
async fn gateway() -> Auth {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/ws/chat", get(socket))
        .fallback(any(jar));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let extra = format!(
        r#"{APP}
[[upstreams]]
name = "jar"
peers = ["{upstream}"]

[[routes]]
name = "jar-session"
path_prefix = "/jar/session"
upstream = "jar"
auth = "session"

[[routes]]
name = "jar-public"
path_prefix = "/jar/public"
upstream = "jar"
auth = "public"

[[routes]]
name = "jar-bearer"
path_prefix = "/jar/bearer"
upstream = "jar"
issuers = ["self"]

[[routes]]
name = "ws"
path_prefix = "/ws"
upstream = "jar"
auth = "session"
"#
    );
    Auth::start_with("backend = \"memory\"", &extra).await
}

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_cookies_never_reach_an_upstream_nor_come_from_one() {
    let a = gateway().await;
    let mut b = Browser::new(&a);
    let r = b
        .sign_in_at("/oauth/login?rd=/jar/session/", ALICE_PASSWORD)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let session = b.cookie.clone().unwrap();
    assert!(session.starts_with(&format!("{COOKIE}=")));
    // what a browser holds for this host while a sign-in through a provider is under way
    let all = format!(
        "app=1; {session}; __Host-gatehouse-login-abcdefghijkl=sealed-state; __Host-gatehouse-login-mnopqrstuvwx=other-tab; theme=light"
    );
    let token = a.svc_token(None).await;
    for (path, bearer) in [
        ("/jar/session/x", None),
        ("/jar/public/x", None),
        ("/jar/bearer/x", Some(format!("Bearer {token}"))),
    ] {
        let mut headers = vec![("cookie", all.as_str())];
        if let Some(t) = &bearer {
            headers.push(("authorization", t.as_str()));
        }
        let r = b.send("GET", path, &headers).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["cookie"], "app=1; theme=light", "{path}");
        // the upstream's own cookies reach the browser; the gateway's names never do
        assert_eq!(
            set_cookies(&r),
            vec!["app=2; Path=/".to_string(), "theme=dark".to_string()],
            "{path}"
        );
    }
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
