//! The authorization-code flow: the sign-in page, PKCE, code binding, reuse and expiry.

use crate::support::harness::Resp;
use crate::tokens::*;
use crate::tokens_users::{password_grant, refresh};
use serde_json::Value;
use std::collections::HashMap;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub fn authorize_query(extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "browser"),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "openid orders.read"),
        ("state", "xyz st@te"),
        ("nonce", "n-0S6"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ] {
        if let Some((_, v2)) = extra.iter().find(|(k2, _)| *k2 == k) {
            if !v2.is_empty() {
                q.append_pair(k, v2);
            }
        } else {
            q.append_pair(k, v);
        }
    }
    // parameters beyond the usual ones (prompt, max_age, ...)
    for (k, v) in extra {
        let usual = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
        ];
        if !usual.contains(k) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

pub fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// The whole `Set-Cookie` line of a cookie, attributes included.
pub fn set_cookie_line(r: &Resp, name: &str) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
}

pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

impl Auth {
    pub async fn get_authorize(&self, query: &str, cookie: Option<&str>) -> Resp {
        let mut rb = self.gw.https.get(format!(
            "https://localhost:{}/oauth/authorize?{query}",
            self.gw.tls.port()
        ));
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    /// Shows the page, then posts the form with the given password; returns the POST's answer.
    pub async fn sign_in(&self, password: &str) -> Resp {
        let page = self.get_authorize(&authorize_query(&[]), None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf_cookie = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
        self.post_sign_in(&page, &csrf_cookie, password).await
    }

    /// Posts the sign-in form of `page` (its hidden fields) with this cookie and password.
    pub async fn post_sign_in(&self, page: &Resp, cookie: &str, password: &str) -> Resp {
        let mut form: Vec<(String, String)> = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "csrf",
        ]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                hidden(&page.body, k)
                    .replace("&amp;", "&")
                    .replace("&quot;", "\""),
            )
        })
        .collect();
        form.push(("username".into(), "alice@example.com".into()));
        form.push(("password".into(), password.into()));
        Resp::from(
            self.gw
                .https
                .post(format!(
                    "https://localhost:{}/oauth/authorize",
                    self.gw.tls.port()
                ))
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> Resp {
        self.post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser"),
                ("code", code),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", verifier),
            ],
            None,
        )
        .await
    }
}

pub fn code_of(r: &Resp) -> String {
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = url::Url::parse(&r.header("location").unwrap()).unwrap();
    assert!(loc.as_str().starts_with("https://app.example/cb?"));
    let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz st@te", "state comes back unchanged");
    assert_eq!(q["iss"], "https://auth.gatehouse.test");
    q["code"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_flow_signs_in_and_exchanges_with_pkce() {
    let a = Auth::start().await;
    let page = a.get_authorize(&authorize_query(&[]), None).await;
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(
        page.body.contains("<label for=\"username\">") && page.body.contains("type=\"password\"")
    );
    assert!(!page.body.contains("<script"));

    let r = a.sign_in(ALICE_PASSWORD).await;
    let session = set_cookie(&r, "__Host-gatehouse").unwrap();
    let cookie_line = set_cookie_line(&r, "__Host-gatehouse");
    assert!(
        cookie_line.contains("HttpOnly")
            && cookie_line.contains("Secure")
            && cookie_line.contains("SameSite=Lax")
    );
    let code = code_of(&r);

    let t = a.exchange(&code, VERIFIER).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let access = t.json()["access_token"].as_str().unwrap().to_string();
    assert!(t.json()["refresh_token"].is_string());
    let id: Value =
        jsonwebtoken::dangerous::insecure_decode_claims(t.json()["id_token"].as_str().unwrap())
            .unwrap();
    assert_eq!(id["sub"], "user-alice");
    assert_eq!(id["aud"], "browser");
    assert_eq!(id["nonce"], "n-0S6");
    assert!(id["auth_time"].is_u64());
    let up = a.gw.get("/api/x", Some(&access)).await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    // the ID token is not an access token
    assert_eq!(
        a.gw.get("/api/x", Some(t.json()["id_token"].as_str().unwrap()))
            .await
            .status,
        401
    );

    // a second authorization within the session skips the form
    let again = a.get_authorize(&authorize_query(&[]), Some(&session)).await;
    let code2 = code_of(&again);
    assert_ne!(code, code2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    let first = a.exchange(&code, VERIFIER).await.json();
    let access = first["access_token"].as_str().unwrap().to_string();
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/api/x", Some(&access)).await.status, 200);
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
    assert_eq!(
        a.gw.get("/api/x", Some(&access)).await.status,
        401,
        "the first access token is revoked"
    );
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "browser"),
                ("refresh_token", refresh.as_str()),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn pkce_and_binding_failures_are_invalid_grant() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    oauth_error(
        &a.exchange(&code, &"a".repeat(43)).await,
        400,
        "invalid_grant",
    );
    // the code is spent by the failed attempt
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
    oauth_error(
        &a.exchange(&code_of(&a.sign_in(ALICE_PASSWORD).await), "short")
            .await,
        400,
        "invalid_request",
    );
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser"),
                ("code", code.as_str()),
                ("redirect_uri", "http://127.0.0.1:9/other"),
                ("code_verifier", VERIFIER),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_grant");
    oauth_error(
        &a.exchange("made-up-code", VERIFIER).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_errors_go_to_a_page_or_back_to_the_client() {
    let a = Auth::start().await;
    for bad in [
        authorize_query(&[("client_id", "nobody")]),
        authorize_query(&[("redirect_uri", "https://evil.example/cb")]),
    ] {
        let r = a.get_authorize(&bad, None).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.header("location").is_none(),
            "never a redirect to an unverified address"
        );
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    for (extra, code) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid admin")], "invalid_scope"),
    ] {
        let r = a.get_authorize(&authorize_query(&extra), None).await;
        assert_eq!(r.status, 303, "{extra:?}: {}", r.body);
        let loc = url::Url::parse(&r.header("location").unwrap()).unwrap();
        let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
        assert_eq!(q["error"], code, "{extra:?}");
        assert_eq!(q["state"], "xyz st@te");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_form_needs_its_csrf_token_and_the_right_password() {
    let a = Auth::start().await;
    let r = a.sign_in("wrong").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("The email or password is wrong."));
    assert!(r.header("location").is_none());
    // without the CSRF cookie
    let page = a.get_authorize(&authorize_query(&[]), None).await;
    let csrf = hidden(&page.body, "csrf");
    let r = Resp::from(
        a.gw.https
            .post(format!(
                "https://localhost:{}/oauth/authorize?x",
                a.gw.tls.port()
            ))
            .form(&[
                ("response_type", "code"),
                ("client_id", "browser"),
                ("redirect_uri", "https://app.example/cb"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("csrf", csrf.as_str()),
                ("username", "alice@example.com"),
                ("password", ALICE_PASSWORD),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("location").is_none());
    // lockout after repeated failures
    for _ in 0..5 {
        a.sign_in("wrong").await;
    }
    let r = a.sign_in(ALICE_PASSWORD).await;
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_and_codes_survive_a_restart_on_sqlite() {
    let store = "backend = \"sqlite\"\npath = \"data/gatehouse.db\"";
    let a = Auth::start_with(store, "").await;
    let r1 = password_grant(&a, ALICE_PASSWORD, "orders.read")
        .await
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    let b = a.restart(store, |t| t);
    let r = refresh(&b, &r1).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = b.exchange(&code, VERIFIER).await;
    assert_eq!(t.status, 200, "{}", t.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_expire_and_belong_to_their_client() {
    let a = Auth::start().await;
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    // another (confidential) client presenting the code
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", VERIFIER),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
    // another public client that may use codes: the code is bound to the one it was issued to
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "browser2"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", VERIFIER),
            ],
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_grant");
    // past code_ttl (60 s by default)
    let code = code_of(&a.sign_in(ALICE_PASSWORD).await);
    a.gw.clock.advance(std::time::Duration::from_secs(61));
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_session_survives_a_restart_on_sqlite() {
    let store = "backend = \"sqlite\"\npath = \"data/gatehouse.db\"";
    let a = Auth::start_with(store, "").await;
    let signed_in = a.sign_in(ALICE_PASSWORD).await;
    let session = set_cookie(&signed_in, "__Host-gatehouse").unwrap();
    let m = a.gw.metrics().await;
    assert!(m.contains("gatehouse_sign_ins_total 1"), "{m}");
    assert!(m.contains("# HELP gatehouse_sign_ins_total "), "{m}");
    let b = a.restart(store, |t| t);
    // the person is still signed in: the authorization answers at once, without the form
    let r = b.get_authorize(&authorize_query(&[]), Some(&session)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let code = code_of(&r);
    assert_eq!(b.exchange(&code, VERIFIER).await.status, 200);
    // a made-up session id is no session
    let forged = "__Host-gatehouse=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = b.get_authorize(&authorize_query(&[]), Some(forged)).await;
    assert_eq!(r.status, 200);
}
