//! Route rules (`allow_if`, `deny_if`) on the real gateway: a tenant's path, a time window on the
//! gateway's clock, the client's address behind a trusted proxy and from an untrusted one, the
//! forward-auth endpoint, a session route, and a reload with a broken rule.

use crate::reload::{edit_file, reload};
use crate::sessions::{location, Browser};
use crate::support::harness::{Gw, Resp};
use crate::support::keys::{claims, now, TestKey};
use crate::tokens::{Auth, ALICE_PASSWORD};
use crate::{World, AUD, HS_ISS, HS_SECRET};
use serde_json::json;
use std::time::Duration;

/// A rule's refusal: 403 `access_denied`, JSON, and no challenge (another token would not help).
pub fn refused_by_rule(r: &Resp) {
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "access_denied", "{}", r.body);
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
}

/// The metrics once they show `line`: a request is counted after its answer is written, so a
/// scrape right after the answer may come before the count.
async fn metrics_showing(gw: &Gw, line: &str) -> String {
    for _ in 0..100 {
        let text = gw.metrics().await;
        if text.contains(line) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the metrics never showed {line}: {}", gw.metrics().await)
}

const TENANT_ROUTE: &str = r#"
[[routes]]
name = "tenants"
path_prefix = "/t"
upstream = "echo"
allow_if = "claims.tenant == request.segments[1]"
deny_if = ["request.method == 'DELETE' && !('admin' in roles)"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_reaches_its_own_path_only_and_the_refusal_names_the_rule() {
    let w = World::start_with(TENANT_ROUTE).await;
    let a = w.rsa_token(json!({"tenant": "a"}));
    let r = w.gw.get("/t/a/x", Some(&a)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = w.gw.get("/t/b/x", Some(&a)).await;
    refused_by_rule(&r);
    // a token without the claim is refused too: a rule that cannot be evaluated never passes
    refused_by_rule(&w.gw.get("/t/a/x", Some(&w.rsa_token(json!({})))).await);
    let del =
        w.gw.http
            .delete(w.gw.url("/t/a/x"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
    refused_by_rule(&Resp::from(del).await);
    // the last refusal's rule is counted last
    let last = "gatehouse_rule_denials_total{route=\"tenants\",rule=\"deny_if[0]\"} 1";
    let metrics = metrics_showing(&w.gw, last).await;
    assert!(
        metrics.contains("gatehouse_rule_denials_total{route=\"tenants\",rule=\"allow_if[0]\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_denials_total{reason=\"rule\"} 3"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("\"a\"") && !metrics.contains("\"b\""),
        "no claim value is a label"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_window_closes_when_the_gateway_clock_passes_it() {
    // writes until an hour from now, on the gateway's clock
    let until = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(now() + 3600),
    );
    let route = format!(
        "[[routes]]\nname = \"window\"\npath_prefix = \"/w\"\nupstream = \"echo\"\n\
         deny_if = \"request.method != 'GET' && now > timestamp('{until}')\"\n"
    );
    let w = World::start_with(&route).await;
    // the token outlives the test's jump forward
    let token = w.rsa_token(json!({"exp": now() + 86_400}));
    let post = |t: String| {
        let rb = w.gw.http.post(w.gw.url("/w/doc")).bearer_auth(t);
        async move { Resp::from(rb.send().await.unwrap()).await }
    };
    assert_eq!(post(token.clone()).await.status, 200);
    w.gw.clock.advance(Duration::from_secs(2 * 3600));
    refused_by_rule(&post(token.clone()).await);
    assert_eq!(
        w.gw.get("/w/doc", Some(&token)).await.status,
        200,
        "reads stay open"
    );
}

/// A gateway with the HS256 issuer and one route whose rule reads the client's address.
fn office_gateway(trusted: bool, echo: &crate::support::servers::Echo) -> Gw {
    let body = crate::hs_issuer(AUD)
        + &format!(
            r#"
[[upstreams]]
name = "echo"
peers = ["{echo}"]

[[routes]]
name = "office"
path_prefix = "/office"
upstream = "echo"
allow_if = "ip_in(client.ip, '10.0.0.0/8')"
"#,
            echo = echo.addr
        );
    let trust = move |t: String| match trusted {
        true => t.replacen(
            "threads = 1",
            "threads = 1\ntrusted_proxies = [\"127.0.0.1\"]",
            1,
        ),
        false => t,
    };
    Gw::start_on_edited(
        tempfile::tempdir().unwrap(),
        &body,
        crate::support::harness::free_port(),
        trust,
    )
}

async fn from(gw: &Gw, token: &str, forwarded_for: &str) -> Resp {
    let rb = gw
        .http
        .get(gw.url("/office/x"))
        .bearer_auth(token)
        .header("x-forwarded-for", forwarded_for);
    Resp::from(rb.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_in_reads_the_client_behind_a_trusted_proxy_and_never_an_untrusted_claim() {
    let echo = crate::support::servers::Echo::start("echo").await;
    let token = TestKey::hmac(HS_SECRET).sign(&claims(HS_ISS, AUD, json!({})));
    let behind = office_gateway(true, &echo);
    assert_eq!(from(&behind, &token, "10.1.2.3").await.status, 200);
    refused_by_rule(&from(&behind, &token, "192.0.2.1").await);
    // a client spoofing an office address through the trusted proxy is still itself
    refused_by_rule(&from(&behind, &token, "10.1.2.3, 192.0.2.1").await);
    // a peer nobody trusts: its X-Forwarded-For is not believed, so it is 127.0.0.1
    let open = office_gateway(false, &echo);
    refused_by_rule(&from(&open, &token, "10.1.2.3").await);
}

const FA_RULE: &str = r#"
[[routes]]
name = "reports"
path_prefix = "/reports"
forward_auth_only = true
issuers = ["self"]
allow_if = "'service' in roles && request.host == 'app.example'"
deny_if = "glob(request.path, '/reports/private/*')"

[forward_auth]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_forward_auth_endpoint_judges_the_asked_request_by_the_rules() {
    let a = Auth::start_edited("backend = \"memory\"", FA_RULE, |t| {
        t.replacen(
            "threads = 1",
            "threads = 1\ntrusted_proxies = [\"127.0.0.1\"]",
            1,
        )
    })
    .await;
    let bearer = format!("Bearer {}", a.svc_token(None).await);
    let ask = |uri: &'static str| {
        let rb =
            a.gw.http
                .get(a.gw.url(crate::forward_auth::EP))
                .header("x-forwarded-method", "GET")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "app.example")
                .header("x-forwarded-uri", uri)
                .header("authorization", bearer.clone());
        async move { Resp::from(rb.send().await.unwrap()).await }
    };
    let ok = ask("/reports/q1").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-auth-subject").as_deref(), Some("svc"));
    let no = ask("/reports/private/salaries").await;
    refused_by_rule(&no);
    metrics_showing(
        &a.gw,
        "gatehouse_rule_denials_total{route=\"reports\",rule=\"deny_if[0]\"} 1",
    )
    .await;
}

const SESSION_RULE: &str = r#"
[[routes]]
name = "desk"
path_prefix = "/desk"
upstream = "echo"
auth = "session"
allow_if = ["claims.email.endsWith('@example.com')", "!request.path.startsWith('/desk/locked')"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_session_route_judges_the_signed_in_identity_by_the_rules() {
    let a = Auth::start_with("backend = \"memory\"", SESSION_RULE).await;
    let mut b = Browser::new(&a);
    let login = location(&b.navigate("/desk/inbox").await);
    assert_eq!(b.sign_in_at(&login, ALICE_PASSWORD).await.status, 303);
    let r = b.send("GET", "/desk/inbox", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    refused_by_rule(&b.send("GET", "/desk/locked/x", &[]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_a_broken_rule_is_refused_and_the_old_rules_keep_serving() {
    let w = World::start_with(TENANT_ROUTE).await;
    let a = w.rsa_token(json!({"tenant": "a"}));
    edit_file(&w.gw, |t| {
        t.replace(
            "allow_if = \"claims.tenant == request.segments[1]\"",
            "allow_if = \"claim.tenant == request.segments[1]\"",
        )
    });
    let r = reload(&w.gw).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .contains("allow_if[0]: undeclared reference to 'claim' at 1:1"),
        "{}",
        r.body
    );
    assert_eq!(w.gw.get("/t/a/x", Some(&a)).await.status, 200);
    refused_by_rule(&w.gw.get("/t/b/x", Some(&a)).await);
    // a sound change applies to the next request
    edit_file(&w.gw, |t| {
        t.replace(
            "allow_if = \"claim.tenant == request.segments[1]\"",
            "allow_if = \"claims.tenant == request.segments[2]\"",
        )
    });
    assert_eq!(reload(&w.gw).await.status, 200);
    assert_eq!(w.gw.get("/t/x/a", Some(&a)).await.status, 200);
    refused_by_rule(&w.gw.get("/t/a/x", Some(&a)).await);
}

const MCP_RULES: &str = r#"
[[routes]]
name = "tools"
path_prefix = "/mcp-echo"
upstream = "echo"
issuers = ["rsa"]
mcp = true
resource = "https://mcp.test/mcp-echo"
authorization_servers = ["https://rsa.test"]
deny_if = "glob(mcp.tool, 'delete_*') && !('oncall' in claims.groups)"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_rule_judges_each_call_the_body_makes() {
    use crate::mcp::{call, mcp_token, post};
    let w = World::start_with(MCP_RULES).await;
    let token = mcp_token(&w, json!({"groups": ["dev"]}));
    let body = call(1, "read_file");
    let r = post(&w, &body, &[], &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["body"],
        body,
        "the body the rules read still reaches the server"
    );
    refused_by_rule(&post(&w, &call(2, "delete_user"), &[], &token).await);
    // a batch is judged call by call
    let batch = format!("[{},{}]", call(3, "read_file"), call(4, "delete_user"));
    refused_by_rule(&post(&w, &batch, &[], &token).await);
    let oncall = mcp_token(&w, json!({"groups": ["oncall"]}));
    assert_eq!(
        post(&w, &call(5, "delete_user"), &[], &oncall).await.status,
        200
    );
    metrics_showing(
        &w.gw,
        "gatehouse_rule_denials_total{route=\"tools\",rule=\"deny_if[0]\"} 2",
    )
    .await;
}
