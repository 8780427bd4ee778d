//! The operators' console on the admin listener: who may sign in, CSRF and cross-site refusals, a
//! person's sessions ended, a token revoked, the configuration shown without secrets and reloaded,
//! read-only mode, and the charts drawn from traffic.

use crate::sessions::{Browser, APP};
use crate::support::harness::Resp;
use crate::tokens::{Auth, ALICE_PASSWORD, SVC_SECRET};
use crate::tokens_code::{hidden, set_cookie};
use base64::Engine;

const OPS_PASSWORD: &str = "ops password for the console";

fn console_toml() -> String {
    format!(
        "{APP}\n[[users]]\nusername = \"ops@example.com\"\npassword_hash = \"{}\"\nsubject = \"ops\"\n\
         roles = [\"gatehouse-admin\"]\n\n[admin]\nconsole = true\n",
        bcrypt::hash(OPS_PASSWORD, 4).unwrap()
    )
}

/// An operator's browser on the admin listener.
struct Console<'a> {
    a: &'a Auth,
    cookie: Option<String>,
}

impl Console<'_> {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.a.gw.admin)
    }

    async fn get(&self, path: &str) -> Resp {
        let mut rb = self.a.gw.http.get(self.url(path));
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    /// A form POST from the console's own pages (same origin).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.post_from(path, form, &self.url("")).await
    }

    async fn post_from(&self, path: &str, form: &[(&str, &str)], origin: &str) -> Resp {
        let mut rb = self
            .a
            .gw
            .http
            .post(self.url(path))
            .header("origin", origin)
            .form(form);
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    async fn sign_in(&mut self, username: &str, password: &str) -> Resp {
        let r = self
            .post(
                "/console/sign-in",
                &[("username", username), ("password", password)],
            )
            .await;
        if let Some(c) = set_cookie(&r, "gatehouse_console") {
            self.cookie = Some(c);
        }
        r
    }

    /// An operator signed in, with the token their forms carry.
    async fn signed_in(a: &Auth) -> (Console<'_>, String) {
        let mut c = Console { a, cookie: None };
        assert_eq!(c.sign_in("ops@example.com", OPS_PASSWORD).await.status, 303);
        let csrf = c.csrf().await;
        (c, csrf)
    }

    /// The CSRF token the console's forms carry.
    async fn csrf(&self) -> String {
        let page = self.get("/console/tokens").await;
        assert_eq!(page.status, 200, "{}", page.body);
        hidden(&page.body, "csrf")
    }
}

/// Clears Alice's lockout at `address` from the console; then her password works on `on` again.
async fn clear_alice(c: &Console<'_>, csrf: &str, address: &str, on: &Auth) {
    let form = [
        ("csrf", csrf),
        ("who", "alice@example.com"),
        ("address", address),
        ("kind", "user"),
    ];
    let r = c.post("/console/lockouts/clear", &form).await;
    assert!(r
        .header("location")
        .unwrap()
        .contains("notice=lockout_cleared"));
    let r = crate::tokens_users::password_grant(on, ALICE_PASSWORD, "orders.read").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Alice signed in to the app on `a`, as her browser.
pub(crate) async fn alice_in_the_app(a: &Auth) -> Browser<'_> {
    let mut alice = Browser::new(a);
    let r = alice
        .sign_in_at("/oauth/login?rd=%2Fapp&login=local&app=app", ALICE_PASSWORD)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(alice.navigate("/app").await.status, 200);
    alice
}

pub(crate) fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_holders_of_a_console_role_sign_in_and_forms_need_their_token() {
    let a = Auth::start_with("backend = \"memory\"", &console_toml()).await;
    let mut c = Console {
        a: &a,
        cookie: None,
    };
    let r = c.get("/console").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/console/sign-in"));
    let form = c.get("/console/sign-in").await;
    assert_eq!(form.status, 200);
    let csp = form.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(form.header("x-frame-options").as_deref(), Some("DENY"));

    // a user without the role, a wrong password
    let r = c.sign_in("alice@example.com", ALICE_PASSWORD).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("does not hold a console role") && c.cookie.is_none());
    // a parameter sent twice is read by no one: refused, as on every endpoint
    let twice = [
        ("username", "ops@example.com"),
        ("username", "alice@example.com"),
        ("password", OPS_PASSWORD),
    ];
    let r = c.post("/console/sign-in", &twice).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("more than once") && c.cookie.is_none());
    assert_eq!(
        c.get("/console/sessions?subject=a&subject=b").await.status,
        400
    );
    let r = c.sign_in("ops@example.com", "wrong").await;
    assert_eq!((r.status, c.cookie.is_none()), (401, true));

    let r = c.sign_in("ops@example.com", OPS_PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let line = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        line.contains("Path=/console; HttpOnly; SameSite=Strict"),
        "{line}"
    );
    let page = c.get("/console").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Overview</h1>") && page.body.contains("ops@example.com"));
    assert!(!page.body.contains("<script>"), "no inline script");

    // an action without the session's token, or from another site, changes nothing
    let csrf = c.csrf().await;
    let r = c
        .post(
            "/console/tokens/revoke",
            &[("kind", "subject"), ("value", "x")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c
        .post_from(
            "/console/tokens/revoke",
            &[("csrf", &csrf), ("kind", "subject"), ("value", "x")],
            "https://evil.example",
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("cross_site_request"), "{}", r.body);

    // signed out: the cookie opens nothing
    let r = c.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(c.get("/console").await.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_ends_a_session_revokes_a_token_and_reloads_without_seeing_a_secret() {
    let a = Auth::start_with("backend = \"memory\"", &console_toml()).await;
    let (c, csrf) = Console::signed_in(&a).await;

    // Alice signs in to the app; the console lists her session and ends it
    let alice = alice_in_the_app(&a).await;
    let list = c.get("/console/sessions?subject=user-alice").await;
    assert!(
        list.body
            .contains("1 session(s) of <code>user-alice</code>"),
        "{}",
        list.body
    );
    assert!(
        list.body.contains("127.0.0.1"),
        "the address she signed in from"
    );
    let session = hidden(&list.body, "session");
    let r = c
        .post(
            "/console/sessions/end",
            &[
                ("csrf", &csrf),
                ("subject", "user-alice"),
                ("session", &session),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r
        .header("location")
        .unwrap()
        .contains("notice=sessions_ended&n=1"));
    assert_eq!(alice.navigate("/app").await.status, 302, "sent to sign in");

    // a token revoked by its id is refused at the edge at once
    let token = a.client_credentials("svc", SVC_SECRET).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let api = |t: String| {
        let gw = &a.gw;
        async move {
            gw.https
                .get(format!("https://localhost:{}/api/x", gw.tls.port()))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(api(token.clone()).await, 200);
    let jti = jti_of(&token);
    let r = c
        .post(
            "/console/tokens/revoke",
            &[("csrf", &csrf), ("kind", "jti"), ("value", &jti)],
        )
        .await;
    assert!(r
        .header("location")
        .unwrap()
        .contains("notice=token_revoked"));
    assert_eq!(api(token).await, 401);

    // the configuration page shows no secret of the file
    let text = std::fs::read_to_string(a.gw.dir.path().join("gateway.toml")).unwrap();
    let page = c.get("/console/config").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("[redacted]"));
    for line in text.lines().filter(|l| l.contains("_hash = ")) {
        let secret = line.split('"').nth(1).unwrap();
        assert!(!page.body.contains(secret), "{line} shown");
    }

    // the file edited: its diff, then a reload, the new generation shown
    std::fs::write(
        a.gw.dir.path().join("gateway.toml"),
        format!("{text}\nconsole_read_only = true\n"),
    )
    .unwrap();
    let page = c.get("/console/config").await;
    assert!(
        page.body
            .contains("<span class=\"add\">+ console_read_only = true</span>"),
        "{}",
        page.body
    );
    let r = c.post("/console/config/reload", &[("csrf", &csrf)]).await;
    assert!(
        r.header("location")
            .unwrap()
            .contains("notice=reloaded&n=2"),
        "{:?}",
        r.header("location")
    );
    let overview = c.get("/console").await;
    assert!(
        overview.body.contains("<dd id=\"generation\">2</dd>"),
        "{}",
        overview.body
    );

    // read-only now: no action is offered or taken
    let list = c.get("/console/sessions?subject=user-alice").await;
    assert!(list.body.contains("read-only"));
    let r = c
        .post(
            "/console/tokens/revoke",
            &[
                ("csrf", &csrf),
                ("kind", "subject"),
                ("value", "user-alice"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("read-only"));

    // every action is in the audit stream with who did it
    let events = c.get("/console/events?type=console.action").await;
    assert!(events.body.contains("console.action"), "{}", events.body);
    assert!(events.body.contains(">ops<"), "{}", events.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_charts_the_traffic_it_saw_and_upstreams_their_checks() {
    let a = Auth::start_with("backend = \"memory\"", &console_toml()).await;
    let (c, _) = Console::signed_in(&a).await;
    let token = a.svc_token(None).await;
    // a point every 5 s: traffic, then the charts until a point holds it
    for _ in 0..40 {
        for _ in 0..5 {
            let r =
                a.gw.https
                    .get(format!("https://localhost:{}/api/x", a.gw.tls.port()))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
            assert_eq!(r.status(), 200);
        }
        let charts = c.get("/console?part=charts").await;
        assert_eq!(charts.status, 200);
        let upstreams = c.get("/console/upstreams").await;
        let checked = upstreams.body.contains(" s ago</td>") && upstreams.body.contains(" ms</td>");
        if checked && charts.body.contains("<polyline") && charts.body.contains("data-name=\"p50\"")
        {
            assert!(charts.body.contains("<svg"), "{}", charts.body);
            assert!(upstreams.body.contains("healthy"), "{}", upstreams.body);
            // every request ended: none in flight; each used a connection made or reused
            let row = upstreams.body.split("<td>echo</td><td>").last().unwrap();
            let cells: Vec<u64> = row
                .split("</td><td>")
                .take(3)
                .map(|c| {
                    c.trim_end_matches("</td></tr></tbody></table></section></main></body></html>")
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(cells[0], 0, "in flight: {row}");
            assert!(
                cells[1] >= 1 && cells[1] + cells[2] >= 5,
                "connections: {row}"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("no chart drew the traffic, or no health check was shown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lockout_the_events_show_is_cleared_from_the_console() {
    let a = Auth::start_with("backend = \"memory\"", &console_toml()).await;
    let (c, csrf) = Console::signed_in(&a).await;
    for _ in 0..10 {
        let r = crate::tokens_users::password_grant(&a, "wrong", "orders.read").await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let locked = crate::tokens_users::password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    assert_ne!(locked.status, 200, "locked out: {}", locked.body);

    let page = c.get("/console/tokens").await;
    assert!(
        page.body.contains("<code>alice@example.com</code>"),
        "{}",
        page.body
    );
    let address = hidden(&page.body, "address");
    assert_eq!(address, "127.0.0.1");
    clear_alice(&c, &csrf, &address, &a).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_the_console_ends_sessions_and_lockouts_of_every_gateway() {
    let Some(redis) = crate::redis::RedisServer::start() else {
        return;
    };
    let (a, b) = crate::redis::pair_with(&redis, &console_toml()).await;
    let (c, csrf) = Console::signed_in(&a).await;

    // a session made on B, listed and ended by A's console
    let on_b = alice_in_the_app(&b).await;
    let list = c.get("/console/sessions?subject=user-alice").await;
    assert!(list.body.contains("1 session(s) of"), "{}", list.body);
    let r = c
        .post(
            "/console/sessions/end",
            &[("csrf", &csrf), ("subject", "user-alice")],
        )
        .await;
    assert!(r
        .header("location")
        .unwrap()
        .contains("notice=sessions_ended&n=1"));
    assert_eq!(on_b.navigate("/app").await.status, 302);

    // a lockout counted on B, cleared from A: the shared counter is reset
    for _ in 0..10 {
        crate::tokens_users::password_grant(&b, "wrong", "orders.read").await;
    }
    let locked = crate::tokens_users::password_grant(&b, ALICE_PASSWORD, "orders.read").await;
    assert_ne!(locked.status, 200);
    clear_alice(&c, &csrf, "127.0.0.1", &b).await;
}

/// A refresh with a made-up token: a known client's answer is `invalid_grant`, an unknown one's
/// `invalid_client`.
async fn probe(a: &Auth, id: &str) -> serde_json::Value {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "x"),
        ("client_id", id),
    ];
    a.post("/oauth/token", &form, None).await.json()["error"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_client_is_disabled_enabled_and_deleted_from_the_console() {
    let a = Auth::start_edited("backend = \"memory\"", &console_toml(), |t| {
        t.replacen(
            "[token_service]\n",
            "[token_service]\nregistration = \"open\"\n",
            1,
        )
    })
    .await;
    let (c, csrf) = Console::signed_in(&a).await;
    let body = serde_json::json!({"redirect_uris": ["http://127.0.0.1:9/cb"],
        "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"});
    let r =
        a.gw.https
            .post(a.gw.tls_url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
    let r = Resp::from(r).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["client_id"].as_str().unwrap().to_string();
    assert_eq!(probe(&a, &id).await, "invalid_grant");
    let page = c.get("/console/tokens").await;
    assert!(
        page.body.contains(&format!("<code>{id}</code>")),
        "{}",
        page.body
    );

    let act = |path: &'static str| {
        let (c, csrf, id) = (&c, csrf.clone(), id.clone());
        async move {
            let r = c.post(path, &[("csrf", &csrf), ("client_id", &id)]).await;
            r.header("location").unwrap()
        }
    };
    assert!(act("/console/clients/disable")
        .await
        .contains("notice=client_disabled"));
    assert_eq!(probe(&a, &id).await, "invalid_client");
    assert!(c
        .get("/console/tokens")
        .await
        .body
        .contains("disabled</span>"));
    assert!(act("/console/clients/enable")
        .await
        .contains("notice=client_enabled"));
    assert_eq!(probe(&a, &id).await, "invalid_grant");
    assert!(act("/console/clients/delete")
        .await
        .contains("notice=client_deleted"));
    assert_eq!(probe(&a, &id).await, "invalid_client");
    assert!(act("/console/clients/delete")
        .await
        .contains("notice=client_unknown"));
}
