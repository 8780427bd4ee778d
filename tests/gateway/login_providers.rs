//! Sign-in through an external OpenID provider: a real one (panva's oidc-provider from npm) with the
//! gateway as its relying party, over HTTP with a cookie-keeping client: code flow with PKCE, both
//! client authentications, allowlists, failed callbacks, two tabs, logout and back-channel logout.

use crate::clients::{clients_dir, installed};
use crate::sessions::location;
use crate::support::harness::{free_port, Resp};
use crate::tokens::Auth;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const OP_SECRET: &str = "op-client-secret-0123456789abcdef";
/// What the test gateways seal their pre-login cookies with.
pub const STATE_SECRET: &str = "state-secret-0123456789abcdef-0123456789";
/// Another provider the gateway knows, which never answers.
pub const ELSEWHERE: &str = "https://elsewhere.example";

/// The provider's process for the length of a test.
pub struct Op {
    child: Child,
    pub port: u16,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Op {
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts oidc-provider with the gateway's two clients registered; an error when it does not
    /// come up (its port was taken meanwhile).
    pub fn start(port: u16, a: &Auth, jwks: serde_json::Value) -> Result<Op, String> {
        let dir = clients_dir();
        let gw = a.gw.tls_url("");
        let client = |id: &str| {
            json!({
                "client_id": id,
                "redirect_uris": [format!("{gw}/oauth/callback")],
                "post_logout_redirect_uris": [format!("{gw}/signed-out")],
                "backchannel_logout_uri": format!("{gw}/oauth/backchannel-logout"),
                "backchannel_logout_session_required": true,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            })
        };
        let mut secret = client("gatehouse");
        secret["client_secret"] = json!(OP_SECRET);
        secret["token_endpoint_auth_method"] = json!("client_secret_basic");
        let mut keyed = client("gatehouse-keyed");
        keyed["token_endpoint_auth_method"] = json!("private_key_jwt");
        keyed["token_endpoint_auth_signing_alg"] = json!("ES256");
        keyed["jwks"] = jwks;
        let config = json!({
            "port": port,
            "issuer": format!("http://127.0.0.1:{port}"),
            "clients": [secret, keyed],
            "users": {
                "ann": {"email": "ann@example.com", "email_verified": true, "name": "Ann", "groups": ["staff"]},
                "eve": {"email": "eve@evil.example", "email_verified": true, "name": "Eve", "groups": ["staff"]},
                // a provider that issues ID tokens authorised for another party
                "mal": {"email": "mal@example.com", "email_verified": true, "name": "Mal", "groups": ["staff"], "azp": "someone-else"},
            },
        });
        let mut child = Command::new("node")
            .arg(dir.join("oidc_provider.mjs"))
            .env("OP_CONFIG", config.to_string())
            .env("NODE_EXTRA_CA_CERTS", a.gw.path("certs/gateway.crt"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        if first != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("oidc-provider did not start: {first:?}"));
        }
        // keep reading, so its later lines never block it
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                eprintln!("op: {l}")
            }
        });
        Ok(Op { child, port })
    }
}

/// The gateway's providers and routes, for a provider on `op`.
pub fn providers_toml(op: u16) -> String {
    format!(
        r#"
[[routes]]
name = "wiki"
path_prefix = "/wiki"
upstream = "echo"
auth = "session"
login = "corp"
roles_any = ["staff"]

[[routes]]
name = "both"
path_prefix = "/both"
upstream = "echo"
auth = "session"
login = ["local", "corp"]

[[routes]]
name = "keyed"
path_prefix = "/keyed"
upstream = "echo"
auth = "session"
login = "keyed"

[[routes]]
name = "signed-out"
path_prefix = "/signed-out"
upstream = "echo"
auth = "public"

[sessions]
after_logout = "/signed-out"
brand_name = "Acme"
state_secret_env = "GATEHOUSE_TEST_STATE_SECRET"

[[login_providers]]
name = "corp"
issuer = "http://127.0.0.1:{op}"
client_id = "gatehouse"
client_secret_env = "GATEHOUSE_TEST_OP_SECRET"
scopes = ["openid", "email", "profile", "groups"]
roles_claim = "groups"
allowed_domains = ["example.com"]

[[login_providers]]
name = "keyed"
issuer = "http://127.0.0.1:{op}"
client_id = "gatehouse-keyed"
scopes = ["openid", "email", "groups"]
roles_claim = "groups"

[[login_providers]]
name = "elsewhere"
issuer = "{ELSEWHERE}"
client_id = "gatehouse"
"#
    )
}

/// A gateway and a provider that know each other, or `None` when the provider is not installed.
/// `None` (after saying why) when oidc-provider is not installed and `make test` did not ask for it.
pub async fn pair() -> Option<(Auth, Op)> {
    pair_with("").await
}

/// `pair` with `extra` after the providers' configuration.
pub async fn pair_with(extra: &str) -> Option<(Auth, Op)> {
    if !installed(&clients_dir().join("node_modules/oidc-provider")) {
        return None;
    }
    std::env::set_var("GATEHOUSE_TEST_OP_SECRET", OP_SECRET);
    std::env::set_var("GATEHOUSE_TEST_STATE_SECRET", STATE_SECRET);
    let mut last = String::new();
    // the provider's port is picked before the gateway names it, so another test may take it
    for _ in 0..5 {
        let op = free_port();
        let body = format!("{}\n{extra}", providers_toml(op));
        let a = Auth::start_with("backend = \"memory\"", &body).await;
        let jwks = a.gw.get("/.well-known/jwks.json", None).await.json();
        match Op::start(op, &a, jwks) {
            Ok(op) => return Some((a, op)),
            Err(e) => last = e,
        }
    }
    panic!("{last}");
}

/// A browser-like client: keeps cookies, trusts the gateway's certificate, follows nothing itself.
pub fn browser(a: &Auth) -> reqwest::Client {
    let cert = std::fs::read(a.gw.path("certs/gateway.crt")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get(c: &reqwest::Client, url: &str) -> Resp {
    Resp::from(
        c.get(url)
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-site", "none")
            .header("accept", "text/html")
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub fn absolute(base: &str, loc: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(loc)
        .unwrap()
        .to_string()
}

pub fn form_action(page: &str) -> String {
    let start = page.find("action=\"").expect("a form") + 8;
    page[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// Follows redirects from `url`, signing in as `user` on the provider's form when it shows it, up to
/// the first answer that is not a redirect.
pub async fn walk(c: &reqwest::Client, url: &str, user: &str) -> Resp {
    match follow(c, url, user, None).await {
        Ok(r) => r,
        Err(at) => panic!("stopped at {at}"),
    }
}

/// Follows redirects from `url` as `walk` does, up to the first address starting with `stop` (the
/// gateway's callback, say), which it returns without visiting it.
pub async fn walk_to(c: &reqwest::Client, url: &str, user: &str, stop: &str) -> String {
    match follow(c, url, user, Some(stop)).await {
        Ok(r) => panic!("never reached {stop}: {} {}", r.status, r.body),
        Err(at) => at,
    }
}

/// Signs the browser `c` out at the provider, answering its confirmation form; the provider then
/// tells the gateway by the back channel.
pub async fn sign_out_at(c: &reqwest::Client, op: &Op) {
    let page = get(c, &format!("{}/session/end", op.issuer())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let action = absolute(&op.issuer(), &form_action(&page.body));
    let xsrf = crate::tokens_code::hidden(&page.body, "xsrf");
    let form = [("xsrf", xsrf.as_str()), ("logout", "yes")];
    let done = c.post(&action).form(&form).send().await.unwrap();
    assert!(done.status().is_redirection() || done.status().is_success());
}

/// `walk`, stopping (with `Err` and the address) before any address that starts with `stop`.
async fn follow(
    c: &reqwest::Client,
    url: &str,
    user: &str,
    stop: Option<&str>,
) -> Result<Resp, String> {
    let mut url = url.to_string();
    for _ in 0..20 {
        if stop.is_some_and(|s| url.starts_with(s)) {
            return Err(url);
        }
        let r = get(c, &url).await;
        if r.status == 200 && r.body.contains("name=\"prompt\" value=\"login\"") {
            let action = absolute(&url, &form_action(&r.body));
            let posted = c
                .post(&action)
                .form(&[("prompt", "login"), ("login", user), ("password", "any")])
                .send()
                .await
                .unwrap();
            let posted = Resp::from(posted).await;
            assert_eq!(posted.status, 303, "{}", posted.body);
            url = absolute(&action, &location(&posted));
            continue;
        }
        if !(300..400).contains(&r.status) {
            return Ok(r);
        }
        url = absolute(&url, &location(&r));
    }
    panic!("too many redirects");
}

#[tokio::test(flavor = "multi_thread")]
async fn people_sign_in_through_a_real_openid_provider_and_land_where_they_were_going() {
    let Some((a, op)) = pair().await else { return };
    let c = browser(&a);
    let start = a.gw.tls_url("/wiki/page?id=7");
    let first = get(&c, &start).await;
    assert_eq!(first.status, 302);
    assert_eq!(
        location(&first),
        "/oauth/login?rd=%2Fwiki%2Fpage%3Fid%3D7&login=corp&app=wiki"
    );
    // straight to the provider, with PKCE, state and nonce
    let to_op = get(&c, &a.gw.tls_url(&location(&first))).await;
    assert_eq!(to_op.status, 303);
    let auth = url::Url::parse(&location(&to_op)).unwrap();
    assert!(auth.as_str().starts_with(&op.issuer()));
    let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "gatehouse");
    assert_eq!(q["redirect_uri"], a.gw.tls_url("/oauth/callback"));
    assert_eq!((q["state"].len(), q["nonce"].len()), (43, 43));
    let pre_login = to_op
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("__Host-gatehouse-login-"))
        .unwrap();
    assert!(pre_login.contains("Secure; HttpOnly; SameSite=Lax; Max-Age=600"));

    let landed = walk(&c, auth.as_str(), "ann").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    assert_eq!(landed.json()["uri"], "/wiki/page?id=7");
    assert_eq!(landed.echoed("x-auth-subject").as_deref(), Some("ann"));
    assert_eq!(landed.echoed("x-auth-roles").as_deref(), Some("staff"));
    assert_eq!(landed.echoed("x-auth-issuer"), Some(op.issuer()));

    // the session is this provider's: a route that signs in another way does not take it
    let other = get(&c, &a.gw.tls_url("/keyed/")).await;
    assert_eq!(other.status, 302);
    // a route that allows both offers the choice
    let both = get(&c, &a.gw.tls_url("/both/")).await;
    assert_eq!(both.status, 200, "the corp session counts on /both");
    let c2 = browser(&a);
    let choice = get(
        &c2,
        &a.gw.tls_url("/oauth/login?rd=%2Fboth%2F&login=local,corp"),
    )
    .await;
    assert_eq!(choice.status, 200);
    assert!(choice.body.contains("Sign in with corp"));
    assert!(choice.body.contains("Sign in with email and password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_authenticates_to_the_provider_with_its_own_key() {
    let Some((a, _op)) = pair().await else { return };
    let c = browser(&a);
    let r = walk(&c, &a.gw.tls_url("/keyed/x"), "ann").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("ann"));
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_callbacks_explain_and_offer_to_start_again() {
    let Some((a, op)) = pair().await else { return };
    // an account outside the allowed email domains
    let c = browser(&a);
    let r = walk(&c, &a.gw.tls_url("/wiki/"), "eve").await;
    assert_eq!(r.status, 400);
    assert!(r
        .body
        .contains("this account&#39;s email domain may not sign in here"));
    assert!(r.body.contains("Start again"));
    assert_eq!(
        get(&c, &a.gw.tls_url("/wiki/")).await.status,
        302,
        "not signed in"
    );
    // a callback this browser did not start, or with a state that does not match
    let r = get(
        &c,
        &a.gw
            .tls_url("/oauth/callback?code=x&state=forged-state-value"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not started in this browser"));
    // the provider's own refusal, naming itself as every answer of this provider does
    let start = get(&c, &a.gw.tls_url("/oauth/login?rd=%2Fwiki%2F&login=corp")).await;
    let auth = url::Url::parse(&location(&start)).unwrap();
    let state = auth
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let r = get(
        &c,
        &a.gw.tls_url(&format!(
            "/oauth/callback?error=access_denied&state={state}&iss={}",
            url::form_urlencoded::byte_serialize(op.issuer().as_bytes()).collect::<String>()
        )),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("the provider did not sign you in"));
    assert!(r
        .body
        .contains("href=\"/oauth/login?rd=%2Fwiki%2F&amp;login=corp\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tabs_signing_in_at_once_both_succeed() {
    let Some((a, _op)) = pair().await else { return };
    let c = browser(&a);
    let one = get(
        &c,
        &a.gw.tls_url("/oauth/login?rd=%2Fwiki%2Fone&login=corp"),
    )
    .await;
    let two = get(
        &c,
        &a.gw.tls_url("/oauth/login?rd=%2Fwiki%2Ftwo&login=corp"),
    )
    .await;
    let r2 = walk(&c, &location(&two), "ann").await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    assert_eq!(r2.json()["uri"], "/wiki/two");
    let r1 = walk(&c, &location(&one), "ann").await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    assert_eq!(r1.json()["uri"], "/wiki/one");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_continues_at_the_provider_and_its_back_channel_ends_sessions() {
    let Some((a, op)) = pair().await else { return };
    // logout through the gateway: the session ends here, then at the provider
    let c = browser(&a);
    assert_eq!(walk(&c, &a.gw.tls_url("/wiki/"), "ann").await.status, 200);
    let r = Resp::from(
        c.post(a.gw.tls_url("/oauth/logout"))
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 303);
    let end = url::Url::parse(&location(&r)).unwrap();
    assert!(end.as_str().starts_with(&op.issuer()), "{end}");
    let q: std::collections::HashMap<_, _> = end.query_pairs().into_owned().collect();
    assert!(q["id_token_hint"].split('.').count() == 3);
    assert_eq!(q["post_logout_redirect_uri"], a.gw.tls_url("/signed-out"));
    assert_eq!(get(&c, &a.gw.tls_url("/wiki/")).await.status, 302);

    // a sign-out at the provider reaches the gateway by the back channel
    let c = browser(&a);
    assert_eq!(walk(&c, &a.gw.tls_url("/wiki/"), "ann").await.status, 200);
    sign_out_at(&c, &op).await;
    assert_eq!(
        get(&c, &a.gw.tls_url("/wiki/")).await.status,
        302,
        "signed out by the provider"
    );

    // a logout token that is not the provider's is refused
    let r =
        a.gw.https
            .post(a.gw.tls_url("/oauth/backchannel-logout"))
            .form(&[("logout_token", "e30.e30.e30")])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}
