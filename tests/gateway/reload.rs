//! Live reload: a valid file replaces the configuration between two requests, a broken one changes
//! nothing, requests in flight are never dropped, and signing keys rotate without a restart.

use crate::support::harness::{echo_everywhere, Gw, Resp};
use crate::support::servers::Echo;
use crate::tokens::Auth;
use crate::{HS_ISS, HS_SECRET};
use serde_json::{json, Value};

pub async fn admin(gw: &Gw, method: reqwest::Method, path: &str) -> Resp {
    Resp::from(
        gw.http
            .request(method, format!("http://{}{path}", gw.admin))
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub async fn reload(gw: &Gw) -> Resp {
    admin(gw, reqwest::Method::POST, "/reload").await
}

/// Rewrites the running gateway's file.
pub fn edit_file(gw: &Gw, edit: impl FnOnce(String) -> String) {
    let path = gw.path("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

async fn hs_gateway() -> (Gw, Echo) {
    let echo = Echo::start("echo").await;
    let body = crate::hs_issuer("api") + &echo_everywhere(echo.addr) + "auth = \"public\"\n";
    (Gw::start(&body), echo)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tightened_policy_applies_to_the_next_request() {
    let (gw, _echo) = hs_gateway().await;
    assert_eq!(gw.get("/x", None).await.status, 200);
    let before = admin(&gw, reqwest::Method::GET, "/config").await.json();
    assert_eq!(before["generation"], 1);
    edit_file(&gw, |t| {
        t.replace("auth = \"public\"", "auth = \"required\"")
    });
    let r = reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["generation"], 2);
    assert_eq!(gw.get("/x", None).await.status, 401);
    let token = crate::support::keys::TestKey::hmac(HS_SECRET).sign(&crate::support::keys::claims(
        HS_ISS,
        "api",
        json!({}),
    ));
    assert_eq!(gw.get("/x", Some(&token)).await.status, 200);
    let after = admin(&gw, reqwest::Method::GET, "/config").await.json();
    assert_eq!(after["generation"], 2);
    assert_ne!(after["hash"], before["hash"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_refuses_other_sites_and_other_names() {
    let (gw, _echo) = hs_gateway().await;
    let send = |method: reqwest::Method, path: &str, headers: &[(&str, &str)]| {
        let mut rb = gw
            .http
            .request(method, format!("http://{}{path}", gw.admin));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        async move { Resp::from(rb.send().await.unwrap()).await }
    };
    // a page on another site posting a form: nothing reloads, nothing ends
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("sec-fetch-site", "cross-site")],
        &[("origin", "http://127.0.0.1:1")],
    ] {
        let r = send(reqwest::Method::POST, "/reload", headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        assert_eq!(r.json()["error"], "cross_site_request");
        let r = send(reqwest::Method::POST, "/sessions/revoke?subject=x", headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
    }
    let config = admin(&gw, reqwest::Method::GET, "/config").await.json();
    assert_eq!(config["generation"], 1, "no reload happened");
    // a name that resolved here (DNS rebinding) reads nothing
    for path in ["/metrics", "/config", "/ready"] {
        let r = send(
            reqwest::Method::GET,
            path,
            &[("host", "rebind.evil.example")],
        )
        .await;
        assert_eq!(r.status, 421, "{path}: {}", r.body);
        assert_eq!(r.json()["error"], "misdirected_request");
    }
    // the operator's own page, curl and `gatehouse reload` still work
    let own = format!("http://{}", gw.admin);
    let r = send(
        reqwest::Method::POST,
        "/reload",
        &[("origin", own.as_str())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(reload(&gw).await.status, 200);
    let r = send(reqwest::Method::GET, "/metrics", &[("host", "localhost")]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_changes_nothing_and_says_why() {
    let (gw, _echo) = hs_gateway().await;
    edit_file(&gw, |t| {
        t.replace("upstream = \"echo\"", "upstream = \"ecko\"")
    });
    let r = reload(&gw).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let problems = r.json()["problems"].clone();
    assert!(
        problems
            .to_string()
            .contains("no upstream named \\\"ecko\\\""),
        "{problems}"
    );
    assert_eq!(
        gw.get("/x", None).await.status,
        200,
        "the old configuration still serves"
    );
    let config: Value = admin(&gw, reqwest::Method::GET, "/config").await.json();
    assert_eq!(
        (
            config["generation"].as_u64(),
            config["reload_failures"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(gw
        .metrics()
        .await
        .contains("gatehouse_config_reload_failures_total 1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_under_load_fail_no_request() {
    let (gw, _echo) = hs_gateway().await;
    let url = gw.url("/x");
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (gw.http.clone(), url.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..150 {
                    statuses.push(client.get(&url).send().await.map(|r| r.status().as_u16()));
                }
                statuses
            })
        })
        .collect();
    for i in 0..5 {
        // alternate a harmless change, so every reload makes a new generation
        edit_file(&gw, |t| {
            t.replace(&format!("# reload {i}\n"), "") + &format!("# reload {}\n", i + 1)
        });
        assert_eq!(reload(&gw).await.status, 200);
    }
    for task in load {
        for s in task.await.unwrap() {
            assert_eq!(s.ok(), Some(200));
        }
    }
    assert_eq!(
        admin(&gw, reqwest::Method::GET, "/config").await.json()["generation"],
        6
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reloads_a_running_gateway() {
    let (gw, _echo) = hs_gateway().await;
    edit_file(&gw, |t| {
        t.replace("auth = \"public\"", "auth = \"required\"")
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["reload", "--config"])
        .arg(gw.path("gateway.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"reloaded\""), "{stdout}");
    assert_eq!(gw.get("/x", None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signing_key_rotates_without_a_restart() {
    let a = Auth::start().await;
    let old = a.svc_token(None).await;
    edit_file(&a.gw, |t| {
        t.replace(
            "signing_keys = [\"keys/signing.pem\"]",
            "signing_keys = [\"keys/signing-2.pem\", \"keys/signing.pem\"]",
        )
    });
    assert_eq!(reload(&a.gw).await.status, 200);
    let new = a.svc_token(None).await;
    let kid = |t: &str| crate::support::keys::header_kid(t);
    assert_ne!(kid(&new), kid(&old), "the new key signs");
    assert_eq!(
        a.gw.get("/api/x", Some(&old)).await.status,
        200,
        "the old key still verifies"
    );
    assert_eq!(a.gw.get("/api/x", Some(&new)).await.status, 200);
    let jwks = a.gw.get("/.well-known/jwks.json", None).await.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_caches_survive_a_reload_that_leaves_the_issuers_alone() {
    let key = crate::support::keys::TestKey::rsa("r1");
    let idp = crate::support::servers::Idp::start(vec![key.jwk.clone()]).await;
    let echo = Echo::start("echo").await;
    let body = format!(
        "\n[[issuers]]\nname = \"idp\"\nissuer = \"https://idp.test\"\njwks_uri = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\n",
        idp.jwks_uri()
    ) + &echo_everywhere(echo.addr);
    let gw = Gw::start(&body);
    let t = key.sign(&crate::support::keys::claims(
        "https://idp.test",
        "api",
        json!({}),
    ));
    assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
    assert_eq!(idp.fetches(), 1);
    edit_file(&gw, |t| t + "\n# a comment\n");
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
    assert_eq!(idp.fetches(), 1, "the same issuer keeps its keys");
    edit_file(&gw, |t| {
        t.replace("audiences = [\"api\"]", "audiences = [\"api\", \"other\"]")
    });
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(gw.get("/x", Some(&t)).await.status, 200);
    assert_eq!(idp.fetches(), 2, "a changed issuer starts afresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_serves_the_next_handshake() {
    let (gw, _echo) = hs_gateway().await;
    let (cert, key) = (gw.path("certs/gateway.crt"), gw.path("certs/gateway.key"));
    let trusting = |pem: &[u8]| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
            .build()
            .unwrap()
    };
    let old = std::fs::read(&cert).unwrap();
    gatehouse::crypto::files::write_self_signed(&cert, &key).unwrap();
    let new = std::fs::read(&cert).unwrap();
    assert_ne!(old, new);
    let url = gw.tls_url("/x");
    assert!(
        trusting(&new).get(&url).send().await.is_err(),
        "not before the reload"
    );
    assert_eq!(trusting(&old).get(&url).send().await.unwrap().status(), 200);
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(trusting(&new).get(&url).send().await.unwrap().status(), 200);
    // a broken pair is refused, and the renewed certificate keeps serving
    std::fs::write(&key, "not a key").unwrap();
    let r = reload(&gw).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("tls"), "{}", r.body);
    assert_eq!(trusting(&new).get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_watch_config_a_saved_file_reloads_by_itself() {
    let echo = Echo::start("echo").await;
    let body = echo_everywhere(echo.addr) + "auth = \"public\"\n";
    let gw = Gw::start_on_edited(
        tempfile::tempdir().unwrap(),
        &body,
        crate::support::harness::free_port(),
        |t| t.replace("threads = 1\n", "threads = 1\nwatch_config = true\n"),
    );
    assert_eq!(gw.get("/x", None).await.status, 200);
    edit_file(&gw, |t| {
        t.replace("path_prefix = \"/\"", "path_prefix = \"/y\"")
    });
    let mut moved = false;
    for _ in 0..100 {
        if gw.get("/x", None).await.status == 404 {
            moved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(moved, "the saved file was not reloaded");
    assert_eq!(gw.get("/y/x", None).await.status, 200);
}
