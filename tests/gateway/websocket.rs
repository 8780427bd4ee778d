//! WebSocket upgrades through a protected route: the upgrade carries the identity headers, the
//! gateway's refusals come before any upgrade, and messages flow both ways on the open socket.

use crate::tokens::Auth;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

/// Echoes every text message, after a first message naming who the gateway said the caller is.
async fn upgrade(ws: WebSocketUpgrade, headers: HeaderMap) -> Response {
    let who = headers
        .get("x-auth-subject")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("nobody")
        .to_string();
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        let _ = socket
            .send(Message::Text(format!("hello {who}").into()))
            .await;
        while let Some(Ok(Message::Text(t))) = socket.recv().await {
            if socket
                .send(Message::Text(format!("echo {t}").into()))
                .await
                .is_err()
            {
                break;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_upgrade_passes_a_protected_route_with_its_identity() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/ws/chat", get(upgrade))).await;
    });
    let extra = format!(
        "\n[[upstreams]]\nname = \"ws\"\npeers = [\"{upstream}\"]\n\n[[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"ws\"\nissuers = [\"self\"]\nstream_idle_timeout = \"1m\"\n"
    );
    let a = Auth::start_with("backend = \"memory\"", &extra).await;
    let url = format!("ws://{}/ws/chat", a.gw.plain);

    // without a token the gateway refuses before any upgrade
    let refused = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_err();
    match refused {
        tungstenite::Error::Http(r) => assert_eq!(r.status(), 401),
        other => panic!("{other:?}"),
    }

    let token = a.svc_token(None).await;
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    // a client's own identity header never reaches the upstream
    req.headers_mut()
        .insert("x-auth-subject", "mallory".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first.into_text().unwrap().as_str(), "hello svc");
    for i in 0..20 {
        ws.send(tungstenite::Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("echo m{i}"));
    }
    ws.close(None).await.unwrap();
}
