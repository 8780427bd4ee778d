//! Faults of what surrounds the gateway, and input too large: upstreams that reset or half-close,
//! request bodies over a route's `max_body_bytes`; each answered clearly while the gateway stays up.

use crate::support::harness::Gw;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};

/// A raw upstream that reads each request's first bytes, then does `act` to the connection.
fn raw_upstream(act: fn(std::net::TcpStream)) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                act(c);
            });
        }
    });
    addr
}

fn one_route(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"u\"\npeers = [\"{upstream}\"]\nread_timeout = \"2s\"\nhealth_interval = \"1h\"\nretries = 0\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\nauth = \"public\"\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_resets_or_half_closes_gets_502_and_the_gateway_stays_up() {
    let reset = raw_upstream(|c| {
        // close at once with unread data pending: the kernel answers with a reset
        drop(c);
    });
    let half = raw_upstream(|c| {
        // stop writing without answering, keep reading
        let _ = c.shutdown(Shutdown::Write);
        std::thread::sleep(std::time::Duration::from_secs(3));
    });
    for up in [reset, half] {
        let gw = Gw::start(&one_route(up, ""));
        for _ in 0..3 {
            let r = gw.get("/x", None).await;
            assert_eq!(r.status, 502, "{}", r.body);
            assert_eq!(r.json()["error"], "bad_gateway");
        }
        assert_eq!(gw.get("/healthz", None).await.status, 200);
    }
}

/// An upstream that reads each whole body before it answers with its length, counting calls.
async fn body_reader() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            format!("{}", body.len())
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_a_routes_limit_get_413_and_never_reach_the_upstream_whole() {
    let (up, calls) = body_reader().await;
    let gw = Gw::start(&one_route(up, "max_body_bytes = 1000"));
    let hits = || calls.load(std::sync::atomic::Ordering::SeqCst);
    let post = |body: Vec<u8>| gw.http.post(gw.url("/upload")).body(body).send();
    // within the limit: forwarded
    let r = post(vec![b'a'; 1000]).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1000");
    // announced over the limit: refused before anything is forwarded
    let before = hits();
    let r = post(vec![b'a'; 1001]).await.unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "request_too_large");
    assert_eq!(hits(), before, "the upstream saw nothing");
    // chunked, so only counting while it streams finds it too large
    let mut s = std::net::TcpStream::connect(gw.plain).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        let chunk = [b'b'; 600];
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = s.write_all(&chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "a chunked body over the limit: {answer}"
    );
    assert!(answer.contains("request_too_large"));
    // the gateway goes on serving
    assert_eq!(post(b"small".to_vec()).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_never_answers_costs_a_503_after_the_fetch_timeout_and_nothing_else() {
    let idp = crate::support::servers::Idp::start(vec![]).await;
    let echo = crate::support::servers::Echo::start("echo").await;
    let gw = Gw::start(&format!(
        "[[issuers]]\nname = \"slow\"\nissuer = \"https://slow\"\njwks_uri = \"{}/slow-jwks\"\n\
         audiences = [\"a\"]\nalgorithms = [\"RS256\"]\njwks_fetch_timeout = \"500ms\"\n\n\
         [[upstreams]]\nname = \"u\"\npeers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/api\"\nupstream = \"u\"\n\n\
         [[routes]]\npath_prefix = \"/public\"\nupstream = \"u\"\nauth = \"public\"\n",
        idp.url, echo.addr
    ));
    let key = crate::support::keys::TestKey::rsa("k");
    let t = key.sign(&crate::support::keys::claims(
        "https://slow",
        "a",
        serde_json::json!({}),
    ));
    let started = std::time::Instant::now();
    let r = gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // the request waited for the fetch timeout, not for the provider
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // other routes are served meanwhile
    assert_eq!(gw.get("/public/x", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_store_fails_writes_with_503_while_tokens_still_verify_and_nothing_is_lost() {
    use crate::tokens::{Auth, SVC_SECRET};
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/g.db\"", "").await;
    let creds = Some(("svc", SVC_SECRET));
    let revoked = a.svc_token(None).await;
    let r = a
        .post("/oauth/revoke", &[("token", revoked.as_str())], creds)
        .await;
    assert_eq!(r.status, 200);
    let live = a.svc_token(None).await;
    // another process takes the database's write lock and keeps it
    let db = a.gw.path("data/g.db");
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // verification needs no store: a live token passes, the revoked one stays refused
    assert_eq!(a.gw.get("/api/x", Some(&live)).await.status, 200);
    assert_eq!(a.gw.get("/api/x", Some(&revoked)).await.status, 401);
    // a write waits for the lock (busy timeout), then answers 503, not a false success
    let r = a
        .post("/oauth/revoke", &[("token", live.as_str())], creds)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert_eq!(
        a.gw.get("/api/x", Some(&live)).await.status,
        200,
        "nothing was revoked"
    );
    // the lock goes: the same write succeeds, and what was recorded before is all there
    locker.execute_batch("ROLLBACK").unwrap();
    let r = a
        .post("/oauth/revoke", &[("token", live.as_str())], creds)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.gw.get("/api/x", Some(&live)).await.status, 401);
    let a = a.restart("backend = \"sqlite\"\npath = \"data/g.db\"", |t| t);
    assert_eq!(a.gw.get("/api/x", Some(&revoked)).await.status, 401);
    assert_eq!(a.gw.get("/api/x", Some(&live)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_directory_is_removed_is_unavailable_not_silently_lost() {
    use crate::tokens::{Auth, SVC_SECRET};
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/g.db\"", "").await;
    let creds = Some(("svc", SVC_SECRET));
    let revoked = a.svc_token(None).await;
    assert_eq!(
        a.post("/oauth/revoke", &[("token", revoked.as_str())], creds)
            .await
            .status,
        200
    );
    let live = a.svc_token(None).await;
    // SQLite would go on writing to the deleted file; the gateway notices the path is gone
    std::fs::remove_dir_all(a.gw.path("data")).unwrap();
    let r = a
        .post("/oauth/revoke", &[("token", live.as_str())], creds)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let ready = reqwest::get(format!("http://{}/ready", a.gw.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // verification goes on, and what was revoked stays revoked
    assert_eq!(a.gw.get("/api/x", Some(&live)).await.status, 200);
    assert_eq!(a.gw.get("/api/x", Some(&revoked)).await.status, 401);
}
