//! Path normalisation before routing, refused encodings, and request smuggling, over raw TCP.

use crate::support::harness::raw;
use crate::World;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn disguised_admin_paths_meet_the_admin_policy() {
    let w = World::start().await;
    for p in [
        "/admin",
        "//admin",
        "/%61dmin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/./admin/",
        "/public//..//admin/x",
    ] {
        let (status, text) = raw(w.gw.plain, &get(p));
        assert_eq!(status, 401, "{p} was not held to the admin route: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{p}"
        );
    }
    assert_eq!(w.echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_normalised_path_is_forwarded() {
    let w = World::start().await;
    let (status, text) = raw(w.gw.plain, &get("/public/a/./b//c/../d?x=%2F"));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""uri":"/public/a/b/d?x=%2F""#), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_encodings_are_refused_with_400() {
    let w = World::start().await;
    for p in [
        "/public/a%2Fb",
        "/public/a%5Cb",
        "/public/a%00",
        "/public/%zz",
        "/public/../../etc",
        "/public/a\\b",
    ] {
        let (status, text) = raw(w.gw.plain, &get(p));
        assert_eq!(status, 400, "{p}: {text}");
        assert!(text.contains("invalid_request"), "{p}: {text}");
    }
    assert_eq!(w.echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_framing_headers_are_refused() {
    let w = World::start().await;
    let cl_te = b"POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (status, _) = raw(w.gw.plain, cl_te);
    assert_eq!(status, 400, "Content-Length with Transfer-Encoding");
    let two_cl = b"POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    let (status, _) = raw(w.gw.plain, two_cl);
    assert_eq!(status, 400, "two Content-Length values");
    assert_eq!(w.echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_upload_cannot_smuggle_a_second_request() {
    let w = World::start().await;
    // The body of a refused POST looks like a request; the gateway must not read it as one.
    let inner = "GET /public/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let req = format!(
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let (status, text) = raw(w.gw.plain, req.as_bytes());
    assert_eq!(status, 401);
    assert!(!text.contains("smuggled"), "{text}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(w.echo.hits(), 0);
}
