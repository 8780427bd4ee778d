//! End to end in a real browser: headless Chromium, driven by chromedriver, signs in on the sign-in page
//! and lands on a local redirect endpoint with the code, which is then exchanged for tokens; the audit
//! stream records the sign-in and the issue, and none of the secrets the flow used.

use crate::support::harness::{free_port, wait_port};
use crate::tokens::{Auth, ALICE_PASSWORD};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Captured = Arc<Mutex<Option<HashMap<String, String>>>>;

async fn callback(
    State(c): State<Captured>,
    Query(q): Query<HashMap<String, String>>,
) -> &'static str {
    *c.lock().unwrap() = Some(q);
    "signed in"
}

/// chromedriver and every browser process it starts, for the length of a test: the driver leads a
/// process group of its own, which Chromium's processes join, and the whole group ends with the
/// test, passed or panicked (killing the driver alone leaves Chromium running).
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium driven by chromedriver, with its driver and profile kept alive; `None`
/// (after saying why) when they are not installed and `make test` did not ask for them.
pub struct Chromium {
    pub browser: fantoccini::Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Chromium {
    pub async fn start(width: u32, height: u32, dark: bool) -> Option<Chromium> {
        let chromedriver = "/usr/bin/chromedriver";
        let present = std::path::Path::new(chromedriver).exists()
            && std::path::Path::new("/usr/bin/chromium").exists();
        // `make test` sets GATEHOUSE_REQUIRE_BROWSER, so there a missing browser fails the run.
        if !present && std::env::var_os("GATEHOUSE_REQUIRE_BROWSER").is_none() {
            eprintln!(
                "skipped: chromium and chromium-driver are not installed (`make test` installs them)"
            );
            return None;
        }
        assert!(
            present,
            "chromium and chromium-driver are needed: `make test` installs them"
        );
        // the first TLS user in a process picks the crypto provider; the browser may come first
        gatehouse::crypto::tls::install();
        let port = free_port();
        let driver = Driver(
            std::process::Command::new(chromedriver)
                .process_group(0)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_port(format!("127.0.0.1:{port}").parse().unwrap());
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--ignore-certificate-errors".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            // no crash handler: it would start a session of its own, outside the driver's group
            "--disable-breakpad".into(),
            "--disable-crash-reporter".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if dark {
            args.push("--force-dark-mode".into());
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        let mut options = json!({"binary": "/usr/bin/chromium", "args": args});
        if width < 500 {
            // a phone: Chromium's windows are never this narrow, so emulate the device
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1}});
        }
        let caps = json!({ "goog:chromeOptions": options });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let browser = fantoccini::ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Some(Chromium {
            browser,
            _driver: driver,
            _profile: profile,
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_signs_in_and_the_code_is_exchanged() {
    let Some(chromium) = Chromium::start(1024, 768, false).await else {
        return;
    };
    let browser = chromium.browser.clone();
    let captured: Captured = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb = format!(
        "http://127.0.0.1:{}/cb",
        listener.local_addr().unwrap().port()
    );
    let app = Router::new()
        .route("/cb", get(callback))
        .with_state(captured.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // the audit stream records the sign-in and the code's exchange
    let audit = "\n[audit]\nfile = \"audit/events.jsonl\"\n";
    let a = Auth::start_edited("backend = \"sqlite\"\npath = \"data/g.db\"", audit, |t| {
        t.replace("http://127.0.0.1:9/other", &cb)
    })
    .await;

    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", "browser")
        .append_pair("redirect_uri", &cb)
        .append_pair("scope", "openid orders.read")
        .append_pair("state", "browser-state")
        .append_pair("nonce", "n1")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256");
    let url = format!(
        "https://localhost:{}/oauth/authorize?{}",
        a.gw.tls.port(),
        q.finish()
    );
    browser.goto(&url).await.unwrap();
    use fantoccini::Locator;
    browser
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice@example.com")
        .await
        .unwrap();
    browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(ALICE_PASSWORD)
        .await
        .unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let mut got = None;
    for _ in 0..100 {
        if let Some(q) = captured.lock().unwrap().clone() {
            got = Some(q);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = browser.source().await.unwrap_or_default();
    browser.close().await.unwrap();
    let q = got.unwrap_or_else(|| {
        panic!("the redirect endpoint never received a code; the browser shows:\n{page}")
    });
    assert_eq!(q["state"], "browser-state");

    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser"),
                ("code", q["code"].as_str()),
                ("redirect_uri", cb.as_str()),
                (
                    "code_verifier",
                    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["id_token"].is_string());
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        a.gw.get("/api/x", Some(&access))
            .await
            .echoed("x-auth-subject")
            .as_deref(),
        Some("user-alice")
    );
    use crate::audit::{events_when, find, of_type};
    let issued = |e: &[serde_json::Value]| {
        (of_type(e, "token.issued").iter()).any(|i| i["data"]["grant"] == "authorization_code")
    };
    let (events, bytes) = events_when(&a.gw.path("audit/events.jsonl"), issued).await;
    let signed = find(&events, "signin.succeeded", "via", "authorize_page");
    assert_eq!(signed["data"]["username"], "alice@example.com");
    let token = find(&events, "token.issued", "grant", "authorization_code");
    assert_eq!(token["subject"], "user-alice");
    assert_eq!(token["data"]["client_id"], "browser");
    let text = String::from_utf8_lossy(&bytes);
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    for secret in [
        ALICE_PASSWORD,
        q["code"].as_str(),
        verifier,
        access.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} is in the audit stream");
    }
}
