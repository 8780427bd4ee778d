//! What a provider's callback trusts: a pre-login cookie the gateway sealed (a forged or changed one
//! is refused, and its return address is checked again), an answer from the provider the attempt
//! started at (RFC 9207 `iss`), and an ID token issued to this gateway (`azp`).

use crate::login_providers::{browser, get, pair, walk, walk_to, ELSEWHERE, STATE_SECRET};
use crate::sessions::location;
use crate::tokens::Auth;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::config::SecretText;
use gatehouse::login::state::{PreLogin, Sealer};
use std::collections::HashMap;

/// A sign-in attempt made up outside the gateway: its state, nonce and PKCE verifier, and where the
/// cookie says to land.
fn made_up(a: &Auth, rd: &str) -> PreLogin {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    PreLogin {
        p: "corp".into(),
        state: "S".repeat(43),
        nonce: "N".repeat(43),
        v: "V".repeat(43),
        rd: rd.into(),
        u: a.gw.tls_url("/oauth/callback"),
        exp: now + 600,
    }
}

/// Where the provider sends the browser back, with a code, for an authorization request of the
/// made-up attempt: what an attacker gets for a code they then present with a cookie of their own.
async fn code_for(a: &Auth, op_issuer: &str, pre: &PreLogin) -> String {
    let c = browser(a);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        pre.v.as_bytes(),
    ));
    let mut auth = url::Url::parse(&format!("{op_issuer}/auth")).unwrap();
    auth.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "gatehouse")
        .append_pair("redirect_uri", &pre.u)
        .append_pair("scope", "openid email profile groups")
        .append_pair("state", &pre.state)
        .append_pair("nonce", &pre.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    walk_to(&c, auth.as_str(), "ann", &pre.u).await
}

/// The callback, from a client that sends exactly this `Cookie`.
async fn callback_with(a: &Auth, url: &str, cookie: &str) -> crate::support::harness::Resp {
    let r =
        a.gw.https
            .get(url)
            .header("cookie", cookie)
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
    crate::support::harness::Resp::from(r).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_changed_pre_login_cookie_is_refused() {
    let Some((a, op)) = pair().await else { return };
    // forged: the attempt in the clear, as the cookie used to hold it, sending the person elsewhere
    let pre = made_up(&a, "https://evil.example/");
    let back = code_for(&a, &op.issuer(), &pre).await;
    let clear = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&pre).unwrap());
    let name = PreLogin::cookie_name(&pre.state);
    let r = callback_with(&a, &back, &format!("{name}={clear}")).await;
    assert_eq!(r.status, 400, "{:?} {}", r.header("location"), r.body);
    assert!(r.body.contains("not started in this browser"), "{}", r.body);
    assert_eq!(r.header("location"), None);

    // changed: a real attempt's cookie with one character altered
    let started =
        a.gw.https
            .get(a.gw.tls_url("/oauth/login?rd=%2Fwiki%2F&login=corp"))
            .send()
            .await
            .unwrap();
    let started = crate::support::harness::Resp::from(started).await;
    assert_eq!(started.status, 303);
    let cookie = started
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|v| v.starts_with("__Host-gatehouse-login-"))
        .unwrap();
    let (name, value) = cookie.split_once('=').unwrap();
    let c = browser(&a);
    let back = walk_to(&c, &location(&started), "ann", &pre.u).await;
    for i in [0, value.len() / 2, value.len() - 1] {
        let mut changed = value.to_string().into_bytes();
        changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        let r = callback_with(&a, &back, &format!("{name}={changed}")).await;
        assert_eq!(r.status, 400, "byte {i}");
        assert!(r.body.contains("not started in this browser"));
    }
    // and unchanged it signs in where the attempt was going
    let r = callback_with(&a, &back, &cookie).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(location(&r), "/wiki/");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_return_address_is_checked_again_at_the_callback() {
    let Some((a, op)) = pair().await else { return };
    // sealed with the gateway's own secret (a leaked one, or another replica's): the attempt is
    // accepted, but its return address is checked again and never leaves this host
    let sealer = Sealer::new(Some(&SecretText(STATE_SECRET.into()))).unwrap();
    for rd in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let pre = made_up(&a, rd);
        let back = code_for(&a, &op.issuer(), &pre).await;
        let name = PreLogin::cookie_name(&pre.state);
        let sealed = sealer.seal(&pre, &name).unwrap();
        let r = callback_with(&a, &back, &format!("{name}={sealed}")).await;
        assert_eq!(r.status, 303, "{rd}: {}", r.body);
        assert_eq!(location(&r), "/", "{rd}");
    }
}

/// The callback address the provider sent the browser to, with its query as a map.
fn parts(back: &str) -> (url::Url, HashMap<String, String>) {
    let u = url::Url::parse(back).unwrap();
    let q = u.query_pairs().into_owned().collect();
    (u, q)
}

fn with_query(u: &url::Url, q: &[(&str, &str)]) -> String {
    let mut u = u.clone();
    u.query_pairs_mut().clear().extend_pairs(q);
    u.into()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_must_name_the_provider_the_sign_in_started_at() {
    let Some((a, op)) = pair().await else { return };
    let c = browser(&a);
    let start = get(&c, &a.gw.tls_url("/oauth/login?rd=%2Fwiki%2F&login=corp")).await;
    let back = walk_to(
        &c,
        &location(&start),
        "ann",
        &a.gw.tls_url("/oauth/callback"),
    )
    .await;
    let (u, q) = parts(&back);
    // the provider says who it is (RFC 9207), and says in its metadata that it always does
    assert_eq!(q["iss"], op.issuer());
    let (code, state) = (q["code"].as_str(), q["state"].as_str());
    // another provider's answer (a mix-up), or one without the issuer its provider promised
    for (query, why) in [
        (
            vec![("code", code), ("state", state), ("iss", ELSEWHERE)],
            "another provider than the one this sign-in started at",
        ),
        (
            vec![("code", code), ("state", state)],
            "the provider&#39;s answer does not name its issuer",
        ),
        (
            vec![
                ("error", "access_denied"),
                ("state", state),
                ("iss", ELSEWHERE),
            ],
            "another provider than the one this sign-in started at",
        ),
    ] {
        let r = get(&c, &with_query(&u, &query)).await;
        assert_eq!(r.status, 400, "{query:?}: {}", r.body);
        assert!(r.body.contains(why), "{query:?}: {}", r.body);
    }
    // its own answer, untouched, still signs in
    let r = walk(&c, &back, "ann").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("ann"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_authorised_for_another_party_is_refused() {
    let Some((a, _op)) = pair().await else { return };
    let c = browser(&a);
    let r = walk(&c, &a.gw.tls_url("/wiki/"), "mal").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("the ID token was issued to another client"));
    assert_eq!(get(&c, &a.gw.tls_url("/wiki/")).await.status, 302);
}
