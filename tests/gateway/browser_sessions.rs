//! Browser sessions in a real browser: headless Chromium opens a protected page, signs in at a real
//! OpenID provider, sees its identity rendered by the upstream, and signs out; and each state of the
//! sign-in page, photographed (`make screenshots` keeps the pictures in docs/screenshots).

use crate::browser::Chromium;
use crate::login_providers::pair;
use crate::tokens::{Auth, ALICE_PASSWORD};
use fantoccini::Locator;
use std::time::Duration;

/// Waits until the browser's address satisfies `done`; panics with the page when it never does.
pub(crate) async fn wait_for(
    browser: &fantoccini::Client,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    for _ in 0..100 {
        let url = browser.current_url().await.unwrap().to_string();
        if done(&url) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = browser.current_url().await.unwrap();
    let page = browser.source().await.unwrap_or_default();
    panic!("never reached {what}; at {url}:\n{page}");
}

/// The text of the first element `css` finds, waiting for the page to show one.
pub(crate) async fn text_of(browser: &fantoccini::Client, css: &str) -> String {
    for _ in 0..100 {
        if let Ok(e) = browser.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                return t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = browser.source().await.unwrap_or_default();
    panic!("no {css} on the page:\n{page}");
}

pub(crate) async fn click(browser: &fantoccini::Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub(crate) async fn type_into(browser: &fantoccini::Client, css: &str, text: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_signs_in_at_the_provider_sees_its_identity_and_signs_out() {
    let Some((a, op)) = pair().await else { return };
    let Some(chromium) = Chromium::start(1024, 768, false).await else {
        return;
    };
    let b = &chromium.browser;
    let page = a.gw.tls_url("/wiki/page?id=7");
    b.goto(&page).await.unwrap();
    let at_op = op.issuer();
    wait_for(b, "the provider's sign-in form", |u| {
        u.starts_with(&at_op) && u.contains("/interaction/")
    })
    .await;
    type_into(b, "input[name=login]", "ann").await;
    type_into(b, "input[name=password]", "any password").await;
    click(b, "button[type=submit]").await;
    wait_for(b, "the page asked for", |u| u == page).await;
    // the legacy app (an echo) renders the identity the gateway sent it
    let shown = text_of(b, "body").await;
    let seen: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        seen["headers"]["x-auth-subject"],
        serde_json::json!(["ann"])
    );
    assert_eq!(
        seen["headers"]["x-auth-roles"],
        serde_json::json!(["staff"])
    );
    assert_eq!(seen["uri"], "/wiki/page?id=7");

    // signing out ends the session here and at the provider, then lands on `after_logout`
    b.goto(&a.gw.tls_url("/oauth/logout")).await.unwrap();
    wait_for(b, "the provider's sign-out", |u| u.starts_with(&at_op)).await;
    click(b, "button[value=yes]").await;
    let signed_out = a.gw.tls_url("/signed-out");
    wait_for(b, "after_logout", |u| u.starts_with(&signed_out)).await;
    b.goto(&page).await.unwrap();
    wait_for(b, "the provider's sign-in form again", |u| {
        u.contains("/interaction/")
    })
    .await;
    chromium.browser.clone().close().await.unwrap();
}

/// Where the pictures go: docs/screenshots with `make screenshots`, else a scratch directory.
pub(crate) fn shots_dir() -> (std::path::PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("GATEHOUSE_SCREENSHOTS") {
        Some(d) => (d.into(), None),
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

pub(crate) async fn shoot(browser: &fantoccini::Client, dir: &std::path::Path, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_state_of_the_sign_in_page_renders_in_a_browser() {
    let extra = format!(
        "{}\n[sessions]\nbrand_name = \"Acme Corporation\"\n\n[[login_providers]]\nname = \"Acme-SSO\"\nissuer = \"https://sso.acme.example\"\nclient_id = \"gw\"\n",
        crate::sessions::APP
    );
    let a = Auth::start_with("backend = \"memory\"", &extra).await;
    let (dir, _keep) = shots_dir();
    let login =
        a.gw.tls_url("/oauth/login?rd=%2Fapp%2F&login=local&app=app");
    // the full-size pass goes last: its lockout would stop the others
    let states: [(&str, u32, u32, bool); 3] = [
        ("-phone", 390, 760, false),
        ("-dark", 1024, 720, true),
        ("", 1024, 720, false),
    ];
    for (suffix, w, h, dark) in states {
        let Some(chromium) = Chromium::start(w, h, dark).await else {
            return;
        };
        let b = &chromium.browser;
        b.goto(&login).await.unwrap();
        let title = text_of(b, "h1").await;
        assert_eq!(title, "Sign in");
        let org = text_of(b, ".org").await;
        assert_eq!(org, "Acme Corporation");
        shoot(b, &dir, &format!("sign-in{suffix}")).await;

        type_into(b, "#username", "alice@example.com").await;
        type_into(b, "#password", "wrong").await;
        click(b, "button[type=submit]").await;
        let alert = text_of(b, "[role=alert]").await;
        assert_eq!(alert, "The email or password is wrong.");
        shoot(b, &dir, &format!("wrong-password{suffix}")).await;
        if !suffix.is_empty() {
            continue;
        }
        // an expired form: its one-use token is gone
        b.goto(&login).await.unwrap();
        b.delete_cookie("__Host-gatehouse-csrf").await.unwrap();
        type_into(b, "#username", "alice@example.com").await;
        type_into(b, "#password", ALICE_PASSWORD).await;
        click(b, "button[type=submit]").await;
        let alert = text_of(b, "[role=alert]").await;
        assert_eq!(alert, "This sign-in form has expired. Please try again.");
        shoot(b, &dir, "expired-form").await;
        // locked out after failed_auth_lockout (5 in the test configuration)
        for _ in 0..5 {
            b.goto(&login).await.unwrap();
            type_into(b, "#username", "alice@example.com").await;
            type_into(b, "#password", "wrong").await;
            click(b, "button[type=submit]").await;
            text_of(b, "[role=alert]").await;
        }
        let alert = text_of(b, "[role=alert]").await;
        assert_eq!(
            alert,
            "Too many failed sign-ins. Please wait a few minutes."
        );
        shoot(b, &dir, "locked-out").await;
        // the choice between the gateway's users and a provider
        b.goto(
            &a.gw
                .tls_url("/oauth/login?rd=%2Fapp%2F&login=local,Acme-SSO&app=app"),
        )
        .await
        .unwrap();
        let choices = b.find_all(Locator::Css(".choices a")).await.unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(
            choices[0].text().await.unwrap(),
            "Sign in with email and password"
        );
        assert_eq!(choices[1].text().await.unwrap(), "Sign in with Acme-SSO");
        shoot(b, &dir, "choose-provider").await;
        chromium.browser.clone().close().await.unwrap();
    }
}
