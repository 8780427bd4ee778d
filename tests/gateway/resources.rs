//! RFC 8707 resource indicators end to end: tokens asked for one MCP route's resource are taken
//! there and refused at the other, through client credentials, jwt-bearer, the code flow and
//! refreshes, on the memory store and across a restart on SQLite.

use crate::support::harness::Resp;
use crate::tokens::*;
use crate::tokens_code::{authorize_query, code_of, set_cookie, VERIFIER};
use serde_json::Value;
use std::collections::HashMap;

/// The gateway's public URL, which the routes' resources start with.
const PUBLIC: &str = "https://gw.test";
const A: &str = "https://gw.test/mcp-a";
const B: &str = "https://gw.test/mcp-b";
const ISSUER: &str = "https://auth.gatehouse.test";

/// Two MCP routes on the echo upstream, protected resources of the token service by default.
const MCP_ROUTES: &str = r#"
[[routes]]
path_prefix = "/mcp-a"
upstream = "echo"
mcp = true

[[routes]]
path_prefix = "/mcp-b"
upstream = "echo"
mcp = true
"#;

fn with_public_url(toml: String) -> String {
    toml.replacen(
        "[server]\n",
        &format!("[server]\npublic_url = \"{PUBLIC}\"\n"),
        1,
    )
}

async fn start(store: &str) -> Auth {
    Auth::start_edited(store, MCP_ROUTES, with_public_url).await
}

/// The same routes naming their resources, for a restart (which keeps the default public URL).
fn named_resources() -> String {
    MCP_ROUTES
        .replace("/mcp-a\"\n", &format!("/mcp-a\"\nresource = \"{A}\"\n"))
        .replace("/mcp-b\"\n", &format!("/mcp-b\"\nresource = \"{B}\"\n"))
}

fn claims(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap()
}

fn access(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// A refusal at the edge: 401 with `error="invalid_token"` in the challenge.
fn refused(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.challenge().contains("error=\"invalid_token\""),
        "{}",
        r.challenge()
    );
}

impl Auth {
    async fn svc_for(&self, extra: &[(&str, &str)]) -> Resp {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        self.post("/oauth/token", &form, Some(("svc", SVC_SECRET)))
            .await
    }

    /// A token request of the public client `browser` (code exchange or refresh).
    async fn browser(&self, form: &[(&str, &str)]) -> Resp {
        let mut form = form.to_vec();
        form.push(("client_id", "browser"));
        self.post("/oauth/token", &form, None).await
    }

    /// Signs alice in through the page an authorization request for `resource` shows, posting back
    /// every hidden field as a browser would; returns the answer and the session cookie.
    async fn sign_in_for(&self, resource: &str) -> (Resp, String) {
        let page = self
            .get_authorize(&authorize_query(&[("resource", resource)]), None)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let mut form = hidden_fields(&page.body);
        assert!(form.contains(&("resource".into(), resource.into())));
        form.push(("username".into(), "alice@example.com".into()));
        form.push(("password".into(), ALICE_PASSWORD.into()));
        let csrf = set_cookie(&page, "__Host-gatehouse-csrf").unwrap();
        let url = format!("https://localhost:{}/oauth/authorize", self.gw.tls.port());
        let rb = self.gw.https.post(url).header("cookie", csrf).form(&form);
        let r = Resp::from(rb.send().await.unwrap()).await;
        let session = set_cookie(&r, "__Host-gatehouse").unwrap();
        (r, session)
    }
}

/// Every hidden field of the sign-in page, unescaped.
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').unwrap();
            let value = rest.split("value=\"").nth(1).unwrap();
            let value = value.split('"').next().unwrap();
            let value = value.replace("&quot;", "\"").replace("&amp;", "&");
            (name.to_string(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_one_resource_is_taken_there_and_refused_elsewhere() {
    let a = start("backend = \"memory\"").await;
    // a client learns the resource and its authorization server from the route's metadata
    let meta =
        a.gw.get("/.well-known/oauth-protected-resource/mcp-a", None)
            .await;
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(meta.json()["resource"], A);
    assert_eq!(meta.json()["authorization_servers"][0], ISSUER);

    let for_a = access(&a.svc_for(&[("resource", A)]).await);
    assert_eq!(claims(&for_a)["aud"], A);
    let up = a.gw.get("/mcp-a/tools", Some(&for_a)).await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("svc"));
    refused(&a.gw.get("/mcp-b/tools", Some(&for_a)).await);
    refused(&a.gw.get("/api/x", Some(&for_a)).await);

    // without a resource: the service's audience, which the MCP routes do not take
    let plain = access(&a.svc_for(&[]).await);
    assert_eq!(claims(&plain)["aud"], "api");
    refused(&a.gw.get("/mcp-a/tools", Some(&plain)).await);
    assert_eq!(a.gw.get("/api/x", Some(&plain)).await.status, 200);

    // introspection says `aud` as the token has it
    let i = a
        .post(
            "/oauth/introspect",
            &[("token", for_a.as_str())],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    assert_eq!(
        (i.json()["active"].clone(), i.json()["aud"].clone()),
        (true.into(), A.into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_malformed_or_repeated_resources_are_refused() {
    let a = start("backend = \"memory\"").await;
    for unknown in [
        "https://gw.test/mcp-c",
        "https://gw.test/mcp-a/",
        "https://gw.test/mcp-a#frag",
        "mcp-a",
    ] {
        oauth_error(
            &a.svc_for(&[("resource", unknown)]).await,
            400,
            "invalid_target",
        );
    }
    // one resource per request: the form refuses a repeated parameter
    let both = a.svc_for(&[("resource", A), ("resource", B)]).await;
    oauth_error(&both, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_bearer_grant_names_a_resource_too() {
    let a = start("backend = \"memory\"").await;
    // with a public URL set, the token endpoint's address is under it; the issuer works as well
    let client_auth = a.assertion("signer", ISSUER, 60, "auth-1");
    let grant = a.assertion("alice", ISSUER, 60, "grant-1");
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", grant.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", client_auth.as_str()),
        ("resource", B),
    ];
    let t = access(&a.post("/oauth/token", &form, None).await);
    assert_eq!(claims(&t)["aud"], B);
    let up = a.gw.get("/mcp-b", Some(&t)).await;
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("alice"));
    refused(&a.gw.get("/mcp-a", Some(&t)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_flow_and_its_refreshes_keep_the_resource() {
    let a = start("backend = \"memory\"").await;
    let (signed_in, session) = a.sign_in_for(A).await;
    let code = code_of(&signed_in);
    // the exchange may leave the resource out: the code's is used
    let exchange = |code: String, resource: Option<&'static str>| {
        let a = &a;
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", VERIFIER),
            ];
            form.extend(resource.map(|r| ("resource", r)));
            a.browser(&form).await
        }
    };
    let t = exchange(code, None).await;
    let first = access(&t);
    assert_eq!(claims(&first)["aud"], A);
    let id = t.json()["id_token"].as_str().unwrap().to_string();
    assert_eq!(
        claims(&id)["aud"],
        "browser",
        "the ID token is for the client"
    );
    assert_eq!(a.gw.get("/mcp-a", Some(&first)).await.status, 200);
    refused(&a.gw.get("/mcp-b", Some(&first)).await);

    // a refresh naming another resource is refused, and the refresh token stays usable
    let refresh = t.json()["refresh_token"].as_str().unwrap().to_string();
    let other = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("resource", B),
    ];
    oauth_error(&a.browser(&other).await, 400, "invalid_target");
    let r = a
        .browser(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .await;
    let second = access(&r);
    assert_eq!(claims(&second)["aud"], A);
    // the successor carries the resource on, and may name it again
    let next = r.json()["refresh_token"].as_str().unwrap().to_string();
    let same = [
        ("grant_type", "refresh_token"),
        ("refresh_token", next.as_str()),
        ("resource", A),
    ];
    let third = access(&a.browser(&same).await);
    assert_eq!(claims(&third)["aud"], A);
    assert_eq!(a.gw.get("/mcp-a", Some(&third)).await.status, 200);
    refused(&a.gw.get("/mcp-b", Some(&third)).await);

    // within the session a new code comes at once; an exchange naming another resource is refused
    let again = a
        .get_authorize(&authorize_query(&[("resource", A)]), Some(&session))
        .await;
    oauth_error(
        &exchange(code_of(&again), Some(B)).await,
        400,
        "invalid_target",
    );
    let again = a
        .get_authorize(&authorize_query(&[("resource", A)]), Some(&session))
        .await;
    assert_eq!(
        claims(&access(&exchange(code_of(&again), Some(A)).await))["aud"],
        A
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authorization_request_for_an_unknown_resource_goes_back_with_invalid_target() {
    let a = start("backend = \"memory\"").await;
    let r = a
        .get_authorize(
            &authorize_query(&[("resource", "https://gw.test/nope")]),
            None,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = url::Url::parse(&r.header("location").unwrap()).unwrap();
    assert!(loc.as_str().starts_with("https://app.example/cb?"));
    let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_target");
    assert_eq!(q["state"], "xyz st@te");
    assert_eq!(q["iss"], ISSUER);
    // an untrusted redirect URI still gets the page, never a redirect
    let bad = authorize_query(&[
        ("resource", "https://gw.test/nope"),
        ("redirect_uri", "https://evil.example/cb"),
    ]);
    let r = a.get_authorize(&bad, None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.header("location").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_family_keeps_its_resource_across_a_restart_on_sqlite() {
    let store = "backend = \"sqlite\"\npath = \"data/gatehouse.db\"";
    let a = Auth::start_with(store, &named_resources()).await;
    let form = [
        ("grant_type", "password"),
        ("username", "alice@example.com"),
        ("password", ALICE_PASSWORD),
        ("resource", B),
    ];
    let r = a
        .post("/oauth/token", &form, Some(("legacy", LEGACY_SECRET)))
        .await;
    assert_eq!(claims(&access(&r))["aud"], B);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let a = a.restart_with(store, &named_resources(), |t| t);
    let again = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let r = a
        .post("/oauth/token", &again, Some(("legacy", LEGACY_SECRET)))
        .await;
    let t = access(&r);
    assert_eq!(claims(&t)["aud"], B);
    assert_eq!(a.gw.get("/mcp-b", Some(&t)).await.status, 200);
    refused(&a.gw.get("/mcp-a", Some(&t)).await);
}
