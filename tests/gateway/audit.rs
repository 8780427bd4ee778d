//! The audit stream read back from its file: every kind of event from a real run, with its
//! documented fields, nothing secret in any byte written, and allowed requests sampled.

use crate::sessions::{Browser, APP};
use crate::support::harness::Resp;
use crate::tokens::{Auth, ALICE_PASSWORD, LEGACY_SECRET, SVC_SECRET};
use crate::tokens_code::{code_of, VERIFIER};
use crate::tokens_users::{password_grant, refresh};
use serde_json::Value;
use std::time::Duration;

const MCP: &str = "\n[[routes]]\nname = \"mcp\"\npath_prefix = \"/mcp\"\nupstream = \"echo\"\nmcp = true\nscopes_all = [\"orders.read\"]\n";
const WRONG_PASSWORD: &str = "Tr0ub4dor&3-not-the-password";

/// The events in the audit file (and its rotated files), once `done` holds of them or after 10 s.
pub async fn events_when(
    path: &std::path::Path,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Vec<u8>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = std::fs::read(path).unwrap_or_default();
        let events: Vec<Value> = String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if done(&events) || std::time::Instant::now() > deadline {
            return (events, bytes);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    let t = format!("dev.gatehouse.{t}");
    events.iter().filter(|e| e["type"] == t).collect()
}

/// The one event of type `t` whose data has `key` = `value`.
pub fn find<'a>(events: &'a [Value], t: &str, key: &str, value: &str) -> &'a Value {
    of_type(events, t)
        .into_iter()
        .find(|e| e["data"][key] == value)
        .unwrap_or_else(|| panic!("no {t} with {key} = {value} among {events:#?}"))
}

/// Signs alice in on the authorization page and exchanges the code with PKCE.
async fn code_and_pkce(a: &Auth) -> (String, Resp) {
    let signed_in = a.sign_in(ALICE_PASSWORD).await;
    let code = code_of(&signed_in);
    let r = a.exchange(&code, VERIFIER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (code, r)
}

/// What a run used that must never be written: every credential, in every form it travelled.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(
            value.len() >= 8,
            "{what} is too short to search for: {value:?}"
        );
        self.0.push((what.to_string(), value.to_string()));
    }

    fn add_token_answer(&mut self, what: &str, r: &Resp) {
        for k in ["access_token", "refresh_token", "id_token"] {
            if let Some(t) = r.json()[k].as_str() {
                self.add(&format!("{what} {k}"), t);
                // a JWT's signature alone is a secret too
                if let Some(sig) = t.rsplit('.').next().filter(|s| s.len() >= 16) {
                    self.add(&format!("{what} {k} signature"), sig);
                }
            }
        }
    }

    fn assert_absent(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for (what, value) in &self.0 {
            assert!(
                !text.contains(value.as_str()),
                "the audit stream holds the {what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_run_writes_every_event_with_its_fields_and_no_secret() {
    let extra = format!(
        "{APP}{MCP}\n[audit]\nfile = \"audit/events.jsonl\"\nsource = \"urn:gatehouse:test\"\nallow_sample_ratio = 1.0\n"
    );
    let a = Auth::start_edited("backend = \"memory\"", &extra, |t| {
        t.replacen(
            "[token_service]\n",
            "[token_service]\nregistration = \"open\"\n",
            1,
        )
    })
    .await;
    let mut secrets = Secrets(vec![]);
    for (what, s) in [
        ("svc secret", SVC_SECRET),
        ("legacy secret", LEGACY_SECRET),
        ("password", ALICE_PASSWORD),
        ("wrong password", WRONG_PASSWORD),
        ("PKCE verifier", VERIFIER),
    ] {
        secrets.add(what, s);
    }
    // client credentials, and a request it makes allowed
    let cc = a.client_credentials("svc", SVC_SECRET).await;
    assert_eq!(cc.status, 200, "{}", cc.body);
    secrets.add_token_answer("client credentials", &cc);
    let svc = cc.json()["access_token"].as_str().unwrap().to_string();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r =
        a.gw.http
            .get(a.gw.url("/api/orders?access_token=x"))
            .bearer_auth(&svc);
    let r = r.header("traceparent", traceparent).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // refused: no token
    assert_eq!(a.gw.get("/api/orders", None).await.status, 401);
    // the code flow with PKCE through the sign-in page
    let (code, exchanged) = code_and_pkce(&a).await;
    secrets.add("authorization code", &code);
    secrets.add_token_answer("code exchange", &exchanged);
    // the password grant, a refresh, and the old refresh token again
    let pw = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    assert_eq!(pw.status, 200, "{}", pw.body);
    secrets.add_token_answer("password grant", &pw);
    let first_refresh = pw.json()["refresh_token"].as_str().unwrap().to_string();
    let rotated = refresh(&a, &first_refresh).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    secrets.add_token_answer("refresh", &rotated);
    assert_eq!(refresh(&a, &first_refresh).await.status, 400);
    // introspection and revocation by the client
    let access = rotated.json()["access_token"].as_str().unwrap().to_string();
    let form = [("token", access.as_str())];
    let basic = Some(("legacy", LEGACY_SECRET));
    assert_eq!(a.post("/oauth/introspect", &form, basic).await.status, 200);
    assert_eq!(
        a.post(
            "/oauth/introspect",
            &[("token", &svc)],
            Some(("svc", SVC_SECRET))
        )
        .await
        .status,
        200
    );
    assert_eq!(a.post("/oauth/revoke", &form, basic).await.status, 200);
    // a wrong password, then a browser session: signed in, then out
    assert_eq!(
        password_grant(&a, WRONG_PASSWORD, "orders.read")
            .await
            .status,
        400
    );
    let mut b = Browser::new(&a);
    let login = crate::sessions::location(&b.navigate("/app/").await);
    let r = b.sign_in_at(&login, ALICE_PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = b.cookie.clone().unwrap();
    secrets.add("session cookie", cookie.split_once('=').unwrap().1);
    assert_eq!(b.navigate("/app/").await.status, 200);
    let out = b
        .send(
            "POST",
            "/oauth/logout",
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, 303);
    // wrong passwords up to the limit (5 in 5 minutes) engage the lockout; the next is refused
    for _ in 0..5 {
        assert_eq!(
            password_grant(&a, WRONG_PASSWORD, "orders.read")
                .await
                .status,
            400
        );
    }
    // wrong client secrets up to the same limit lock the client out at this address
    for _ in 0..5 {
        let grant = [("grant_type", "client_credentials")];
        let r = a
            .post("/oauth/token", &grant, Some(("legacy", "wrong")))
            .await;
        assert_eq!(r.status, 401);
    }
    // failures past the limit (malformed assertions are counted before the lockout is looked at)
    // say nothing more: the lockout was engaged once
    for _ in 0..2 {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "legacy"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "not-a-jwt"),
        ];
        assert_eq!(a.post("/oauth/token", &form, None).await.status, 401);
    }
    // a client registers itself; an operator ends alice's tokens and sessions, then reloads
    let body = serde_json::json!({"redirect_uris": ["http://127.0.0.1:9/cb"],
        "grant_types": ["authorization_code"], "client_name": "Tool", "token_endpoint_auth_method": "none"});
    let reg =
        a.gw.https
            .post(a.gw.tls_url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(reg.status(), 201);
    let admin = |p: &str| format!("http://{}{p}", a.gw.admin);
    for p in [
        "/tokens/revoke?subject=user-alice",
        "/sessions/revoke?subject=user-alice",
        "/reload",
    ] {
        assert_eq!(
            a.gw.http.post(admin(p)).send().await.unwrap().status(),
            200,
            "{p}"
        );
    }

    let path = a.gw.path("audit/events.jsonl");
    let (events, bytes) = events_when(&path, |e| !of_type(e, "config.reloaded").is_empty()).await;
    secrets.assert_absent(&bytes);

    for e in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "urn:gatehouse:test");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["id"].as_str().unwrap().len(), 36, "{e}");
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["ocsfclassuid"].as_u64().is_some(), "{e}");
    }
    let allowed = find(&events, "request.allowed", "client_id", "svc");
    let d = &allowed["data"];
    assert_eq!(
        (d["route"].as_str(), d["status"].as_u64()),
        (Some("routes[0]"), Some(200)),
        "{allowed}"
    );
    assert_eq!(d["path"], "/api/orders", "no query: {allowed}");
    assert_eq!(d["method"], "GET");
    assert_eq!(d["issuer"], "https://auth.gatehouse.test");
    assert_eq!(d["subject"], "svc");
    assert_eq!(d["client_address"], "127.0.0.1");
    assert_eq!(d["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(allowed["subject"], "svc");
    let refused = find(&events, "request.refused", "reason", "missing_token");
    assert_eq!(
        (
            refused["data"]["status"].as_u64(),
            refused["data"]["decision"].as_str()
        ),
        (Some(401), Some("refused"))
    );

    let cc = find(&events, "token.issued", "grant", "client_credentials");
    assert_eq!(cc["data"]["client_id"], "svc");
    assert_eq!(cc["data"]["scopes"], serde_json::json!(["orders.read"]));
    assert_eq!(cc["data"]["audience"], "api");
    assert_eq!(cc["data"]["jti"].as_str().unwrap().len(), 22);
    let code_issue = find(&events, "token.issued", "grant", "authorization_code");
    assert_eq!(
        (
            code_issue["data"]["client_id"].as_str(),
            code_issue["subject"].as_str()
        ),
        (Some("browser"), Some("user-alice"))
    );
    find(&events, "token.issued", "grant", "password");
    find(&events, "token.issued", "grant", "refresh_token");
    let rot = find(&events, "token.refresh_rotated", "client_id", "legacy");
    assert_eq!(rot["data"]["subject"], "user-alice");
    let reuse = find(&events, "token.refresh_reused", "client_id", "legacy");
    assert_eq!(reuse["data"]["family_revoked"], true);
    let revoked = find(&events, "token.revoked", "by", "client");
    assert_eq!(
        (
            revoked["data"]["token_type"].as_str(),
            revoked["data"]["client_id"].as_str()
        ),
        (Some("access_token"), Some("legacy"))
    );
    let by_admin = find(&events, "token.revoked", "by", "admin");
    assert_eq!(by_admin["data"]["subject"], "user-alice");
    let active = find(&events, "token.introspected", "client_id", "svc");
    assert_eq!(
        (
            active["data"]["active"].as_bool(),
            active["data"]["subject"].as_str()
        ),
        (Some(true), Some("svc"))
    );
    let page = find(&events, "signin.succeeded", "via", "authorize_page");
    assert_eq!(
        (
            page["data"]["username"].as_str(),
            page["data"]["client_address"].as_str()
        ),
        (Some("alice@example.com"), Some("127.0.0.1"))
    );
    find(&events, "signin.succeeded", "via", "login_page");
    let failed = find(&events, "signin.failed", "reason", "wrong_credentials");
    assert_eq!(failed["data"]["via"], "password_grant");
    assert_eq!(failed["data"]["username"], "alice@example.com");
    find(&events, "signin.failed", "reason", "locked_out");
    let lockout = of_type(&events, "signin.lockout");
    assert_eq!(
        lockout.len(),
        2,
        "engaged once for alice, once for legacy: {lockout:?}"
    );
    let user = find(&events, "signin.lockout", "username", "alice@example.com");
    assert!(user["data"]["retry_after"].as_u64().unwrap() >= 1);
    let client = find(&events, "signin.lockout", "client_id", "legacy");
    assert_eq!(client["data"]["client_address"], "127.0.0.1");
    assert!(client["data"]["retry_after"].as_u64().unwrap() >= 1);
    // the sign-in page and the login page each opened one; logout ended the second
    let ended = find(&events, "session.ended", "subject", "user-alice");
    let session = ended["data"]["session"].as_str().unwrap();
    let started = find(&events, "session.started", "session", session);
    assert_eq!(
        (
            started["data"]["subject"].as_str(),
            started["data"]["provider"].as_str()
        ),
        (Some("user-alice"), Some("local"))
    );
    assert_eq!(started["data"]["session"].as_str().unwrap().len(), 16);
    find(&events, "session.revoked", "by", "admin");
    let reg = of_type(&events, "client.registered");
    assert!(
        reg[0]["data"]["client_id"]
            .as_str()
            .unwrap()
            .starts_with("reg-"),
        "{reg:?}"
    );
    assert_eq!(reg[0]["data"]["client_name"], "Tool");
    let reload = find(&events, "config.reloaded", "by", "admin");
    assert_eq!(reload["data"]["old_hash"].as_str().unwrap().len(), 16);
    assert_eq!(reload["data"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_sign_in_and_its_back_channel_logout_are_audited() {
    use crate::login_providers::{browser, pair_with, sign_out_at, walk};
    let Some((a, op)) = pair_with("[audit]\nfile = \"audit.jsonl\"\n").await else {
        return;
    };
    let c = browser(&a);
    assert_eq!(walk(&c, &a.gw.tls_url("/wiki/"), "ann").await.status, 200);
    // a sign-out at the provider reaches the gateway by the back channel
    sign_out_at(&c, &op).await;
    let (events, bytes) = events_when(&a.gw.path("audit.jsonl"), |e| {
        !of_type(e, "session.backchannel_logout").is_empty()
    })
    .await;
    let signed_in = find(&events, "signin.succeeded", "via", "oidc:corp");
    assert!(signed_in["data"]["username"].is_null());
    let subject = signed_in["data"]["subject"].as_str().unwrap();
    let started = find(&events, "session.started", "provider", "corp");
    assert_eq!(started["data"]["subject"], subject);
    let logout = find(&events, "session.backchannel_logout", "provider", "corp");
    assert_eq!(logout["data"]["ended"], 1);
    let revoked = find(&events, "session.revoked", "by", "backchannel");
    assert_eq!(revoked["data"]["ended"], 1);
    let text = String::from_utf8_lossy(&bytes);
    for secret in [crate::login_providers::OP_SECRET, "logout_token"] {
        assert!(!text.contains(secret), "{secret}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_the_command_line_is_audited_to_the_same_file() {
    let store = "backend = \"sqlite\"\npath = \"data/g.db\"";
    let a = Auth::start_with(store, "\n[audit]\nfile = \"audit.jsonl\"\n").await;
    assert_eq!(
        password_grant(&a, ALICE_PASSWORD, "orders.read")
            .await
            .status,
        200
    );
    let args = ["tokens", "revoke", "--subject", "user-alice"];
    crate::support::harness::cli(&args, &a.gw.path("gateway.toml"));
    let (events, _) = events_when(&a.gw.path("audit.jsonl"), |e| {
        !of_type(e, "token.revoked").is_empty()
    })
    .await;
    let r = find(&events, "token.revoked", "by", "cli");
    let d = &r["data"];
    assert_eq!(
        (d["subject"].as_str(), d["families"].as_u64()),
        (Some("user-alice"), Some(1))
    );
    assert_eq!(d["token_type"], "all");
    // the gateway's own events are in the same file, whole lines each
    find(&events, "token.issued", "grant", "password");
}
