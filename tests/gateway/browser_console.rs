//! The operators' console in headless Chromium: an operator signs in, the overview's charts fill
//! with the traffic (redrawn in place by the console's script under its strict CSP), a person's
//! session is ended from the sessions page, a token revoked from the tokens page, and the edited
//! file reloaded from the configuration page. Each page is photographed (`make screenshots`).

use crate::browser::Chromium;
use crate::browser_sessions::{click, shoot, shots_dir, text_of, type_into};
use crate::tokens::{Auth, SVC_SECRET};
use fantoccini::Locator;
use std::time::Duration;

const OPS_PASSWORD: &str = "ops password for the console";

/// Waits until `css` matches on the page (the live parts are redrawn every 5 s).
async fn wait_for(b: &fantoccini::Client, css: &str, secs: u64) {
    for _ in 0..secs * 4 {
        if b.find(Locator::Css(css)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = b.source().await.unwrap_or_default();
    panic!("no {css} within {secs}s:\n{page}");
}

async fn api(a: &Auth, token: &str) -> u16 {
    a.gw.https
        .get(format!("https://localhost:{}/api/x", a.gw.tls.port()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_and_acts_in_a_browser() {
    let extra = format!(
        "{}\n[[users]]\nusername = \"ops@example.com\"\npassword_hash = \"{}\"\nsubject = \"ops\"\n\
         roles = [\"gatehouse-admin\"]\n\n[admin]\nconsole = true\n",
        crate::sessions::APP,
        bcrypt::hash(OPS_PASSWORD, 4).unwrap()
    );
    let a = Auth::start_with("backend = \"memory\"", &extra).await;
    let Some(chromium) = Chromium::start(1280, 900, false).await else {
        return;
    };
    let (dir, _keep) = shots_dir();
    let b = &chromium.browser;
    let console = |path: &str| format!("http://{}{path}", a.gw.admin);

    b.goto(&console("/console")).await.unwrap();
    assert_eq!(text_of(b, "h1").await, "Console sign-in");
    shoot(b, &dir, "console-sign-in").await;
    type_into(b, "input[name=username]", "ops@example.com").await;
    type_into(b, "input[name=password]", OPS_PASSWORD).await;
    click(b, "button[type=submit]").await;
    assert_eq!(text_of(b, "h1").await, "Overview");

    // traffic, some of it refused; the charts on the open page fill in by themselves
    let token = a.svc_token(None).await;
    for i in 0..60 {
        let status = api(&a, if i % 4 == 0 { "not-a-token" } else { &token }).await;
        assert!(matches!(status, 200 | 401), "{status}");
    }
    wait_for(b, "g.series[data-name=\"p50\"] polyline", 30).await;
    wait_for(b, "g.series[data-name=\"malformed\"] polyline", 30).await;
    if std::env::var_os("GATEHOUSE_SCREENSHOTS").is_some() {
        // for the picture, a minute of traffic with its ups and downs
        for round in 0..12 {
            for i in 0..(10 + 8 * (round % 4)) {
                api(&a, if i % 5 == 0 { "not-a-token" } else { &token }).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    shoot(b, &dir, "console-overview").await;

    // Alice signs in elsewhere; her session is ended from the sessions page
    let alice = crate::console::alice_in_the_app(&a).await;
    b.goto(&console("/console/sessions")).await.unwrap();
    type_into(b, "input[name=subject]", "user-alice").await;
    click(b, "form.search button").await;
    wait_for(b, "table", 10).await;
    shoot(b, &dir, "console-sessions").await;
    click(b, "button.danger").await;
    assert!(text_of(b, ".notice").await.contains("1 session(s) ended"));
    assert_eq!(alice.navigate("/app").await.status, 302, "sent to sign in");

    // a token revoked from the tokens page is refused at once
    let svc = a.client_credentials("svc", SVC_SECRET).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api(&a, &svc).await, 200);
    let jti = crate::console::jti_of(&svc);
    b.goto(&console("/console/tokens")).await.unwrap();
    type_into(b, "input[name=value]", &jti).await;
    shoot(b, &dir, "console-tokens").await;
    click(b, "form.search button.danger").await;
    assert!(text_of(b, ".notice").await.contains("revoked"));
    assert_eq!(api(&a, &svc).await, 401);

    // the file edited, then reloaded from the configuration page
    let file = a.gw.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n# a change the console shows\n")).unwrap();
    b.goto(&console("/console/config")).await.unwrap();
    wait_for(b, "pre.diff .add", 5).await;
    let source = b.source().await.unwrap();
    for line in text.lines().filter(|l| l.contains("_hash = ")) {
        let secret = line.split('"').nth(1).unwrap();
        assert!(!source.contains(secret), "{line} shown");
    }
    shoot(b, &dir, "console-config").await;
    click(b, "form[action=\"/console/config/reload\"] button").await;
    assert!(text_of(b, ".notice").await.contains("generation 2"));
    b.goto(&console("/console")).await.unwrap();
    assert_eq!(text_of(b, "#generation").await, "2");

    for (page, name) in [
        ("/console/issuers", "console-issuers"),
        ("/console/upstreams", "console-upstreams"),
        ("/console/events", "console-events"),
    ] {
        b.goto(&console(page)).await.unwrap();
        wait_for(b, "main h1", 5).await;
        shoot(b, &dir, name).await;
    }
    assert!(b.source().await.unwrap().contains("console.action"));
}
