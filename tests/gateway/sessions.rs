//! Browser sign-in sessions on `auth = "session"` routes: redirects for page loads, 401 for scripts,
//! sign-in through the gateway's users, CSRF for cookie writes, expiry, logout and revocation.

use crate::support::harness::Resp;
use crate::tokens::{Auth, ALICE_PASSWORD};
use crate::tokens_code::{hidden, set_cookie, set_cookie_line};
use serde_json::Value;

pub const COOKIE: &str = "__Host-gatehouse";

pub const APP: &str = r#"
[[routes]]
name = "app"
path_prefix = "/app"
upstream = "echo"
auth = "session"
roles_any = ["admin"]
identity_jwt = true
[routes.claim_headers]
"X-Auth-Email" = "email"

[[routes]]
name = "staff"
path_prefix = "/staff"
upstream = "echo"
auth = "session"
roles_any = ["staff"]
"#;

/// A browser: requests over TLS with the headers a browser sends for the kind of request.
pub struct Browser<'a> {
    pub a: &'a Auth,
    pub cookie: Option<String>,
    /// where it browses: the gateway itself, or a proxy in front of it with the gateway's certificate
    pub base: String,
}

impl<'a> Browser<'a> {
    pub fn new(a: &'a Auth) -> Self {
        let base = format!("https://localhost:{}", a.gw.tls.port());
        Browser::at(a, base)
    }

    pub fn at(a: &'a Auth, base: String) -> Self {
        Browser {
            a,
            cookie: None,
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self
            .a
            .gw
            .https
            .request(method.parse().unwrap(), self.url(path));
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    /// A page load, as a browser makes it when the person follows a link or types the address.
    pub async fn navigate(&self, path: &str) -> Resp {
        self.send(
            "GET",
            path,
            &[
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-site", "none"),
                ("accept", "text/html,application/xhtml+xml"),
            ],
        )
        .await
    }

    /// Follows the sign-in form at `login` (a path) with a password; returns the form's answer.
    pub async fn sign_in_at(&mut self, login: &str, password: &str) -> Resp {
        let page = self.navigate(login).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let pre_login = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
        let form = [
            ("csrf", hidden(&page.body, "csrf")),
            ("rd", hidden(&page.body, "rd")),
            ("username", "alice@example.com".to_string()),
            ("password", password.to_string()),
        ];
        let r = self
            .a
            .gw
            .https
            .post(self.url("/oauth/login"))
            .header("cookie", &pre_login)
            .header("origin", self.url(""))
            .form(&form)
            .send()
            .await
            .unwrap();
        let r = Resp::from(r).await;
        if let Some(c) = set_cookie(&r, COOKIE) {
            self.cookie = Some(c);
        }
        r
    }
}

pub fn location(r: &Resp) -> String {
    r.header("location").expect("a Location header")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_load_signs_in_and_lands_on_the_page_it_asked_for() {
    let a = Auth::start_with("backend = \"memory\"", APP).await;
    let mut b = Browser::new(&a);
    let r = b.navigate("/app/orders?page=2").await;
    assert_eq!(r.status, 302, "{}", r.body);
    let login = location(&r);
    assert_eq!(
        login,
        "/oauth/login?rd=%2Fapp%2Forders%3Fpage%3D2&login=local&app=app"
    );

    let page = b.navigate(&login).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("to continue to <strong>app</strong>"));
    // only a configured session route is named on the page
    let other = b
        .navigate("/oauth/login?rd=%2F&login=local&app=Your+Bank")
        .await;
    assert!(!other.body.contains("Your Bank"));
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(page
        .body
        .contains("<label for=\"password\">Password</label>"));
    assert!(!page.body.contains("<script"));

    let r = b.sign_in_at(&login, ALICE_PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(location(&r), "/app/orders?page=2");
    let line = set_cookie_line(&r, COOKIE);
    assert!(
        line.contains("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{line}"
    );
    assert_eq!(b.cookie.as_ref().unwrap().len(), COOKIE.len() + 1 + 43);

    // signed in: the upstream sees the same identity headers a token would give, and neither the
    // session cookie nor identity headers the browser made up
    let r = b
        .send(
            "GET",
            "/app/orders?page=2",
            &[
                ("x-auth-subject", "mallory"),
                ("sec-fetch-mode", "navigate"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    assert_eq!(r.echoed("x-auth-roles").as_deref(), Some("admin"));
    assert_eq!(
        r.echoed("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        r.echoed("x-auth-issuer").as_deref(),
        Some("https://auth.gatehouse.test")
    );
    assert_eq!(r.echoed("cookie"), None);
    let claims: Value = {
        use base64::Engine;
        let raw = r.echoed("x-auth-claims").unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(claims["sub"], "user-alice");
    assert_eq!(claims["name"], "Alice");

    // the identity JWT of a session is verifiable with the gateway's published keys
    let jwt = r.echoed("x-auth-jwt").expect("an identity JWT");
    let verified = crate::tokens_ops::identity_jwt_claims(&a, &jwt, "app").await;
    assert_eq!(verified["sub"], "user-alice");

    // a route whose policy the person does not meet answers 403 as for a token
    let r = b.navigate("/staff/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_and_api_clients_get_401_never_a_login_page() {
    let a = Auth::start_with("backend = \"memory\"", APP).await;
    let b = Browser::new(&a);
    for headers in [
        vec![("sec-fetch-mode", "cors"), ("accept", "text/html")],
        vec![
            ("x-requested-with", "XMLHttpRequest"),
            ("accept", "text/html"),
        ],
        vec![("accept", "application/json")],
    ] {
        let r = b.send("GET", "/app/data", &headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Bearer realm=\"gatehouse\"")
        );
        assert_eq!(r.header("location"), None);
    }
    // a POST page load is not sent away either
    let r = b
        .send("POST", "/app/data", &[("accept", "text/html")])
        .await;
    assert_eq!(r.status, 401);
    // bearer tokens work on session routes as on any other
    let t = a.svc_token(None).await;
    let r = a.gw.get("/app/data", Some(&t)).await;
    assert_eq!(r.status, 403, "svc has no admin role: {}", r.body);
    // a forged cookie is no session
    let forged = format!("{COOKIE}={}", "A".repeat(43));
    let r = b.send("GET", "/app/data", &[("cookie", &forged)]).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_refuses_wrong_passwords_expired_forms_and_open_redirects() {
    let a = Auth::start_with("backend = \"memory\"", APP).await;
    let mut b = Browser::new(&a);
    let r = b.sign_in_at("/oauth/login?rd=%2Fapp%2F", "wrong").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("The email or password is wrong."));
    assert!(b.cookie.is_none());

    // a form token is used once
    let page = b.navigate("/oauth/login?rd=/app/").await;
    let pre_login = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
    let form = [
        ("csrf", hidden(&page.body, "csrf")),
        ("rd", "/app/".to_string()),
        ("username", "alice@example.com".to_string()),
        ("password", ALICE_PASSWORD.to_string()),
    ];
    let post = || {
        a.gw.https
            .post(b.url("/oauth/login"))
            .header("cookie", &pre_login)
            .form(&form)
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 303);
    let again = Resp::from(post().await.unwrap()).await;
    assert_eq!(again.status, 403);
    assert!(again.body.contains("This sign-in form has expired."));

    // the return address never leaves this host
    for rd in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let mut b = Browser::new(&a);
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", rd)
            .finish();
        let r = b
            .sign_in_at(&format!("/oauth/login?{q}"), ALICE_PASSWORD)
            .await;
        assert_eq!((r.status, location(&r)), (303, "/".to_string()), "{rd}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_authenticated_writes_must_come_from_this_site() {
    let a = Auth::start_with("backend = \"memory\"", APP).await;
    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD).await;
    let origin = b.url("");
    let r = b.send("POST", "/app/orders", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "cross_site_request");
    let r = b
        .send(
            "DELETE",
            "/app/orders/1",
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .send(
            "PUT",
            "/app/orders/1",
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .send("POST", "/app/orders", &[("sec-fetch-site", "same-origin")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = b
        .send("PATCH", "/app/orders/1", &[("origin", &origin)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let referer = format!("{origin}/app/form");
    let r = b
        .send("POST", "/app/orders", &[("referer", &referer)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_when_idle_and_at_their_absolute_timeout() {
    let a = Auth::start_with(
        "backend = \"memory\"",
        &format!("{APP}\n[sessions]\nidle_timeout = \"10m\"\nabsolute_timeout = \"20m\"\n"),
    )
    .await;
    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD).await;
    let step = std::time::Duration::from_secs(8 * 60);
    for _ in 0..2 {
        a.gw.clock.advance(step);
        assert_eq!(b.navigate("/app/").await.status, 200, "used, so not idle");
    }
    // 21 minutes in; the absolute timeout ends it however busy it is
    a.gw.clock.advance(std::time::Duration::from_secs(5 * 60));
    assert_eq!(b.navigate("/app/").await.status, 302);

    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD).await;
    a.gw.clock.advance(std::time::Duration::from_secs(11 * 60));
    let r = b.navigate("/app/").await;
    assert_eq!(r.status, 302, "idle for longer than idle_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_session_and_other_sites_cannot_sign_people_out() {
    let a = Auth::start_with(
        "backend = \"memory\"",
        &format!("{APP}\n[sessions]\nafter_logout = \"/signed-out\"\n"),
    )
    .await;
    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD).await;
    // a link on another site gets a confirmation page, and the session lives on
    let r = b
        .send("GET", "/oauth/logout", &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(r.status, 200);
    assert!(r
        .body
        .contains("<form method=\"post\" action=\"/oauth/logout\">"));
    let r = b
        .send(
            "POST",
            "/oauth/logout",
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(b.navigate("/app/").await.status, 200);
    // the person's own sign-out ends it
    let r = b
        .send(
            "POST",
            "/oauth/logout",
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/signed-out");
    let cleared = set_cookie(&r, COOKIE).unwrap();
    assert_eq!(cleared, format!("{COOKIE}="));
    assert_eq!(
        b.navigate("/app/").await.status,
        302,
        "the old cookie is dead"
    );
    let r = a.gw.https.put(b.url("/oauth/logout")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_end_every_session_of_a_subject() {
    let a = Auth::start_with("backend = \"memory\"", APP).await;
    let mut one = Browser::new(&a);
    let mut two = Browser::new(&a);
    one.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD)
        .await;
    two.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD)
        .await;
    assert_ne!(one.cookie, two.cookie, "a new id at every sign-in");
    let admin = |q: &str| {
        reqwest::Client::new()
            .post(format!("http://{}/sessions/revoke{q}", a.gw.admin))
            .send()
    };
    let r = admin("").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = admin("?subject=user-alice").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["ended"], 2);
    assert_eq!(one.navigate("/app/").await.status, 302);
    assert_eq!(two.send("GET", "/app/", &[]).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_people_signed_in_and_the_cli_signs_them_out() {
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/g.db\"", APP).await;
    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD).await;
    let cookie = b.cookie.clone();
    let a = a.restart("backend = \"sqlite\"\npath = \"data/g.db\"", |t| {
        t.replace(
            "scopes_all = [\"orders.read\"]\n",
            &format!("scopes_all = [\"orders.read\"]\n{APP}"),
        )
    });
    let mut b = Browser::new(&a);
    b.cookie = cookie;
    let r = b.navigate("/app/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("user-alice"));

    let args = ["sessions", "revoke", "--subject", "user-alice"];
    assert_eq!(
        crate::support::harness::cli(&args, &a.gw.path("gateway.toml")),
        "1 session(s) of user-alice ended"
    );
    // the gateway holds the session in memory; the file's revocation watch drops it within a second
    assert!(crate::redis::eventually(async || b.navigate("/app/").await.status == 302).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_brings_its_own_page_around_the_sign_in_card() {
    let files = tempfile::tempdir().unwrap();
    let template = files.path().join("page.html");
    std::fs::write(
        &template,
        "<!doctype html><html><head><title>{{title}} | Acme</title><style>{{style}}</style></head>\
         <body><div class=\"acme-shell\">{{organisation}}<main>{{content}}</main></div></body></html>",
    )
    .unwrap();
    let extra = format!(
        "{APP}\n[sessions]\nbrand_name = \"Acme Intranet\"\npage_template = \"{}\"\n",
        template.display()
    );
    let a = Auth::start_with("backend = \"memory\"", &extra).await;
    let b = Browser::new(&a);
    let page = b
        .navigate("/oauth/login?rd=%2Fapp%2F&login=local&app=app")
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Sign in | Acme</title>"));
    assert!(page
        .body
        .contains("<div class=\"acme-shell\">Acme Intranet<main><h1>Sign in</h1>"));
    assert!(page.body.contains("<input type=\"hidden\" name=\"csrf\""));
    // the policy stays strict whatever the template says
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"));
}

/// Keeps a session on `store` busy for minutes with the shortest idle timeout there is, then
/// leaves it idle for longer than that: busy it lives, idle it ends.
pub async fn a_busy_session_outlives_a_one_minute_idle_timeout(store: &str) {
    let a = Auth::start_with(
        store,
        &format!("{APP}\n[sessions]\nidle_timeout = \"1m\"\nabsolute_timeout = \"1h\"\n"),
    )
    .await;
    let mut b = Browser::new(&a);
    b.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD).await;
    for i in 1..=6 {
        a.gw.clock.advance(std::time::Duration::from_secs(40));
        let r = b.navigate("/app/").await;
        assert_eq!(r.status, 200, "used {}s after sign-in: {}", 40 * i, r.body);
    }
    a.gw.clock.advance(std::time::Duration::from_secs(61));
    let r = b.navigate("/app/").await;
    assert_eq!(r.status, 302, "idle for longer than idle_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_session_outlives_a_one_minute_idle_timeout_in_memory() {
    a_busy_session_outlives_a_one_minute_idle_timeout("backend = \"memory\"").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_session_outlives_a_one_minute_idle_timeout_on_sqlite() {
    a_busy_session_outlives_a_one_minute_idle_timeout("backend = \"sqlite\"\npath = \"data/g.db\"")
        .await;
}
