//! Attacks on the proxy that once got through, each refused: underscore identity headers, `..;` path
//! parameters, spoofed forwarding headers, encoded query names, delimiters in claims, repeated members.

use crate::support::harness::{raw, Gw, Resp};
use crate::support::keys::{claims, TestKey};
use crate::{World, AUD, HS_ISS, RSA_ISS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

const SPOOFED: [(&str, &str); 6] = [
    ("X_Auth_Subject", "admin"),
    ("X-Auth_Roles", "admin"),
    ("X_AUTH_CLAIMS", "e30"),
    ("x_auth_client_id", "root"),
    ("X_Tenant", "acme"),
    ("X_Original_URL", "/admin"),
];

fn spoof(mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (k, v) in SPOOFED {
        rb = rb.header(k, v);
    }
    rb
}

fn assert_none_reached(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.body);
    for (k, _) in SPOOFED {
        assert_eq!(
            r.echoed(&k.to_ascii_lowercase()),
            None,
            "{k} reached the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_spelled_with_underscores_never_reach_the_upstream() {
    let w = World::start().await;
    // a public route over HTTP/1
    let r = Resp::from(
        spoof(w.gw.http.get(w.gw.url("/public/x")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_none_reached(&r);
    // a protected route over HTTP/2: only the gateway's own values arrive
    let t = w.rsa_token(json!({"sub": "reader-1", "realm_access": {"roles": ["reader"]}}));
    let h2 = spoof(w.gw.https.get(w.gw.tls_url("/api/x")))
        .bearer_auth(&t)
        .version(reqwest::Version::HTTP_2)
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let r = Resp::from(h2).await;
    assert_none_reached(&r);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("reader-1"));
    assert_eq!(r.echoed("x-auth-roles").as_deref(), Some("reader"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_with_path_parameters_are_refused() {
    let w = World::start().await;
    for path in [
        "/public/..;/admin/x",
        "/public/%2e%2e;/admin/x",
        "/public/..;x=1/admin/x",
        "/public/.;/x",
        // Spring and servlet containers decode %3B before stripping parameters
        "/public/..%3B/admin/x",
        "/public/%2e%2e%3b/admin/x",
    ] {
        let (status, text) = raw(
            w.gw.plain,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("invalid_request"), "{text}");
        assert!(text.contains("..;"), "{text}");
    }
    assert_eq!(w.echo.hits(), 0, "nothing was forwarded");
    // a segment's parameters do not change its route: /admin;x=1/y is the admin route
    let (status, text) = raw(
        w.gw.plain,
        b"GET /admin;x=1/y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401, "{text}");
    let t = w.rsa_token(json!({"realm_access": {"roles": ["reader"]}}));
    let r = w.gw.get("/admin;jsessionid=1/y", Some(&t)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // parameters on an ordinary segment pass through unchanged
    let r = w.gw.get("/public/a;v=1/b", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/public/a;v=1/b");
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_forwarding_headers_are_replaced() {
    let w = World::start().await;
    let r = Resp::from(
        w.gw.http
            .get(w.gw.url("/public/x"))
            .header("X-Forwarded-For", "203.0.113.9")
            .header("X-Forwarded-Host", "evil.example")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Prefix", "/admin")
            .header("X-Real-IP", "203.0.113.9")
            .header("Forwarded", "for=203.0.113.9;host=evil.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.echoed("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.echoed("x-forwarded-host"),
        Some(w.gw.plain.to_string()),
        "the Host the client used"
    );
    assert_eq!(r.echoed("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(r.echoed("forwarded"), None);
    assert_eq!(r.echoed("x-forwarded-prefix"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn percent_encoded_token_parameter_names_count_as_the_parameter() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    // with a header token too: two places
    let r =
        w.gw.get(&format!("/q/x?access%5Ftoken={t}"), Some(&t))
            .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request");
    // alone: it is the token, and it is removed before forwarding
    let r =
        w.gw.get(&format!("/q/x?a=1&access%5ftoken={t}"), None)
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["uri"], "/q/x?a=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_parameter_names_php_folds_count_as_the_parameter() {
    let w = World::start().await;
    let t = w.rsa_token(json!({}));
    for name in [
        "access.token",
        "access+token",
        "access[token",
        "access_token[]",
    ] {
        // beside a header token: two places, never a second token passed on to the app
        let r = w.gw.get(&format!("/q/x?{name}={t}"), Some(&t)).await;
        assert_eq!(r.status, 400, "{name}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request");
        // alone: it is the token, removed before forwarding
        let r = w.gw.get(&format!("/q/x?a=1&{name}={t}"), None).await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(r.json()["uri"], "/q/x?a=1", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delimiter_inside_a_role_or_scope_is_encoded() {
    let w = World::start().await;
    let t = w.rsa_token(json!({"realm_access": {"roles": ["reader", "x,admin"]},
                                "scope": ["read", "write all"]}));
    let r = w.gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.echoed("x-auth-roles").as_deref(),
        Some("reader,x%2Cadmin")
    );
    assert_eq!(
        r.echoed("x-auth-scopes").as_deref(),
        Some("read write%20all")
    );
    // and the role "admin" was never granted
    let r = w.gw.get("/admin/x", Some(&t)).await;
    assert_eq!(r.status, 403);
}

/// An HS256 token over a payload given as raw JSON text, so members can repeat.
fn hs_token_over(payload: &str) -> String {
    let key = TestKey::hmac(crate::HS_SECRET);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key.enc, jsonwebtoken::Algorithm::HS256)
            .unwrap();
    format!("{message}.{sig}")
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_with_repeated_members_are_refused() {
    let w = World::start().await;
    let exp = crate::support::keys::now() + 600;
    let good = format!(r#"{{"iss":"{HS_ISS}","aud":"{AUD}","sub":"u","exp":{exp}}}"#);
    assert_eq!(
        w.gw.get("/api/x", Some(&hs_token_over(&good))).await.status,
        200
    );
    for payload in [
        format!(r#"{{"iss":"{HS_ISS}","aud":"{AUD}","sub":"u","sub":"admin","exp":{exp}}}"#),
        format!(
            r#"{{"iss":"{HS_ISS}","aud":"{AUD}","exp":{exp},"org":{{"tenant":"a","tenant":"acme"}}}}"#
        ),
    ] {
        let r = w.gw.get("/api/x", Some(&hs_token_over(&payload))).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.challenge().contains("invalid_token"), "{}", r.challenge());
        assert!(r.body.contains("repeats a member"), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_verified_token_cache_is_bounded_by_bytes() {
    let key = TestKey::ec("big-1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ec.pub.pem"), &key.public_pem).unwrap();
    let echo = crate::support::servers::Echo::start("echo").await;
    // the first lines land in [validation], which the harness opens last
    let body = format!(
        r#"max_token_bytes = 16384
verified_cache_max_bytes = 1048576

[[issuers]]
name = "big"
issuer = "{RSA_ISS}"
keys = ["ec.pub.pem"]
audiences = ["{AUD}"]
algorithms = ["ES256"]
"#
    ) + &crate::support::harness::echo_everywhere(echo.addr);
    let gw = Gw::start_in(dir, &body);
    // 300 tokens of about 8 KB of roles each: about 5 MB of principals if nothing bounded them
    let roles: Vec<String> = (0..400).map(|i| format!("role-{i:014}")).collect();
    for i in 0..300 {
        let t = key.sign(&claims(
            RSA_ISS,
            AUD,
            json!({"sub": format!("u{i}"), "roles": roles}),
        ));
        assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
    }
    let m = gw.metrics().await;
    let bytes: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_verified_tokens_cached_bytes "))
        .unwrap_or_else(|| panic!("no byte gauge in {m}"))
        .trim()
        .parse()
        .unwrap();
    assert!(bytes > 0 && bytes <= 1_048_576, "{bytes} bytes cached");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_trickled_slowly_is_cut_off_by_the_total_deadline() {
    use std::io::{Read, Write};
    let w = World::start().await;
    let addr = w.gw.plain;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        // one header line every 500 ms: each read is quick, the whole header never completes
        for i in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .is_err()
            {
                return ("write refused", i);
            }
            s.set_read_timeout(Some(std::time::Duration::from_millis(1)))
                .unwrap();
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Ok(0) => return ("closed", i),
                Ok(_) => return ("answered", i),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return ("reset", i),
            }
        }
        ("still open", 40)
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome.0, "closed" | "reset" | "write refused"),
        "the trickling connection was {} after {} lines",
        outcome.0,
        outcome.1
    );
    assert_eq!(w.echo.hits(), 0);
    // an idle kept-alive connection is not cut: the deadline starts with a request's first byte
    let addr = w.gw.plain;
    let second = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let req = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut answers = Vec::new();
        for _ in 0..2 {
            s.write_all(req).unwrap();
            let mut b = vec![0u8; 65536];
            let n = s.read(&mut b).unwrap();
            answers.push(String::from_utf8_lossy(&b[..n]).to_string());
            std::thread::sleep(std::time::Duration::from_secs(4));
        }
        answers
    })
    .await
    .unwrap();
    for a in second {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_or_repeated_host_is_refused_rather_than_routed_elsewhere() {
    // a host-specific route that needs a token, beside the world's public routes
    let w = World::start_with(
        "[[routes]]\nhost = \"admin.example.com\"\npath_prefix = \"/public\"\nupstream = \"echo\"\n",
    )
    .await;
    let gw = &w.gw;
    let (ok, _) = crate::support::harness::raw(
        gw.plain,
        b"GET /public/x HTTP/1.1\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ok, 401, "the host-specific route needs a token");
    // a host with two ports (what the fuzzer found normalising differently each time) and a
    // repeated Host are 400, never the public catch-all
    for request in [
        &b"GET /public/x HTTP/1.1\r\nHost: admin.example.com:1:2\r\nConnection: close\r\n\r\n"[..],
        b"GET /public/x HTTP/1.1\r\nHost: admin.example.com x\r\nConnection: close\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nHost: other.example.com\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n",
    ] {
        let (status, text) = crate::support::harness::raw(gw.plain, request);
        // the gateway's JSON 400, or Pingora's own when its parser refuses the header first
        assert_eq!(status, 400, "{text}");
    }
    // the same host, well formed and with a port, still reaches its own route
    let (status, _) = crate::support::harness::raw(
        gw.plain,
        b"GET /public/x HTTP/1.1\r\nHost: ADMIN.example.com:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401);
}
