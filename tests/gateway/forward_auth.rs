//! The forward-auth endpoint asked directly in each proxy's dialect: the same decisions as the
//! proxy (tokens, roles, sessions, normalisation), the answers each proxy understands, and 403 for
//! anyone outside `trusted_proxies`.

use crate::sessions::{location, Browser};
use crate::support::harness::Resp;
use crate::tokens::{Auth, ALICE_PASSWORD};

pub const EP: &str = "/oauth/forward-auth";

/// Routes only the forward-auth endpoint answers: a service API that lets CORS preflights through,
/// an admin API, a browser app behind sign-in, a public path of one host, and a host open to all.
pub const FA_ROUTES: &str = r#"
[[routes]]
name = "svc"
path_prefix = "/svc"
forward_auth_only = true
issuers = ["self"]
roles_any = ["service"]
allow_cors_preflight = true

[[routes]]
name = "admin"
path_prefix = "/admin"
forward_auth_only = true
issuers = ["self"]
roles_any = ["admin"]

[[routes]]
name = "app"
path_prefix = "/app"
forward_auth_only = true
auth = "session"
roles_any = ["admin"]
[routes.claim_headers]
"X-Auth-Email" = "email"

[[routes]]
name = "hosted"
host = "localhost"
path_prefix = "/hosted"
forward_auth_only = true
auth = "public"

[[routes]]
name = "public-host"
host = "public.example"
path_prefix = "/"
forward_auth_only = true
auth = "public"

[forward_auth]
"#;

/// A gateway with the token service, its users, and `FA_ROUTES`, believing only 127.0.0.1.
pub async fn start() -> Auth {
    Auth::start_edited("backend = \"memory\"", FA_ROUTES, |t| {
        t.replacen(
            "threads = 1",
            "threads = 1\ntrusted_proxies = [\"127.0.0.1\"]",
            1,
        )
    })
    .await
}

/// Asks the endpoint over plain HTTP from 127.0.0.1 with these headers.
async fn ask(a: &Auth, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rb = a.gw.http.get(a.gw.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::from(rb.send().await.unwrap()).await
}

/// Traefik's and Caddy's way: the original request in `X-Forwarded-*`.
async fn traefik(a: &Auth, method: &str, uri: &str, more: &[(&str, &str)]) -> Resp {
    let mut h = vec![
        ("x-forwarded-method", method),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-uri", uri),
    ];
    h.extend_from_slice(more);
    ask(a, EP, &h).await
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_judged_as_the_proxy_would_and_the_identity_comes_back_as_headers() {
    let a = start().await;
    let token = a.svc_token(None).await;
    let bearer = format!("Bearer {token}");

    let none = traefik(&a, "GET", "/svc/orders", &[]).await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.challenge(), "Bearer realm=\"gatehouse\"");
    assert_eq!(error_of(&none), "unauthorized");

    let bad = traefik(
        &a,
        "GET",
        "/svc/orders",
        &[("authorization", "Bearer x.y.z")],
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.challenge().contains("error=\"invalid_token\""));

    // a client's own identity headers never survive: the answer carries the verified ones
    let ok = traefik(
        &a,
        "POST",
        "/svc/orders?page=2",
        &[
            ("authorization", &bearer),
            ("x-auth-subject", "admin"),
            ("x-auth-roles", "admin"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-auth-subject").as_deref(), Some("svc"));
    assert_eq!(ok.header("x-auth-client-id").as_deref(), Some("svc"));
    assert_eq!(ok.header("x-auth-roles").as_deref(), Some("service"));
    assert_eq!(ok.header("x-auth-scopes").as_deref(), Some("orders.read"));
    assert!(ok.header("x-auth-claims").is_some());
    // every identity header any route sends is named, empty without a value, so a proxy copying a
    // fixed list overwrites the client's copy
    assert_eq!(ok.header("x-auth-email").as_deref(), Some(""));
    assert_eq!(ok.header("x-auth-jwt").as_deref(), Some(""));
    assert_eq!(ok.header("cache-control").as_deref(), Some("no-store"));
    assert!(ok.body.is_empty());

    let wrong_role = traefik(&a, "GET", "/admin/users", &[("authorization", &bearer)]).await;
    assert_eq!(wrong_role.status, 403);
    assert_eq!(error_of(&wrong_role), "insufficient_scope");

    // the original path is normalised as the proxy normalises it: no climbing out of /svc
    let climb = traefik(
        &a,
        "GET",
        "/svc/../admin/users",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(climb.status, 403, "{}", climb.body);
    let encoded = traefik(
        &a,
        "GET",
        "/svc/%2e%2e/admin",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(encoded.status, 403, "{}", encoded.body);

    // no route takes the request: a refusal the proxies understand, never a 404
    let unrouted = traefik(&a, "GET", "/elsewhere", &[("authorization", &bearer)]).await;
    assert_eq!(unrouted.status, 403);
    assert_eq!(error_of(&unrouted), "access_denied");

    // a gRPC call's refusal is plain HTTP, never a trailers-only 200 a proxy would take for a yes
    let grpc = traefik(
        &a,
        "POST",
        "/svc/x",
        &[("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(grpc.status, 401);
    assert!(grpc.header("grpc-status").is_none());

    // a forward-auth-only route is not served by the gateway's own proxy
    let direct = a.gw.get("/svc/orders", Some(&token)).await;
    assert_eq!(direct.status, 404);

    let metrics = a.gw.metrics().await;
    assert!(metrics.contains("gatehouse_forward_auth_answers_total{status=\"2xx\"} 1\n"));
    assert!(metrics.contains("gatehouse_forward_auth_answers_total{status=\"4xx\"} 7\n"));
    assert!(metrics.contains("gatehouse_requests_total{route=\"svc\",status=\"2xx\"} 1\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_envoy_describe_the_request_their_own_way() {
    let a = start().await;
    let bearer = format!("Bearer {}", a.svc_token(None).await);
    let nginx = ask(
        &a,
        EP,
        &[
            ("x-original-uri", "/svc/a?b=1"),
            ("x-original-method", "DELETE"),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(nginx.status, 200, "{}", nginx.body);
    assert_eq!(nginx.header("x-auth-subject").as_deref(), Some("svc"));
    let nginx_denied = ask(&a, EP, &[("x-original-uri", "/admin")]).await;
    assert_eq!(nginx_denied.status, 401);

    // ingress-nginx sends the whole URL
    let ingress = ask(
        &a,
        EP,
        &[
            ("x-original-url", "https://app.example/svc/a?b=1"),
            ("x-original-method", "GET"),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(ingress.status, 200, "{}", ingress.body);
    let climbed = ask(
        &a,
        EP,
        &[
            ("x-original-url", "https://app.example/svc/../admin"),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(climbed.status, 403);

    // Envoy appends the original path to the endpoint's and keeps the method
    let envoy = ask(
        &a,
        &format!("{EP}/svc/a?b=1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(envoy.status, 200, "{}", envoy.body);
    let envoy_admin = ask(&a, &format!("{EP}/admin"), &[("authorization", &bearer)]).await;
    assert_eq!(envoy_admin.status, 403);

    let nothing = ask(&a, EP, &[("authorization", &bearer)]).await;
    assert_eq!(nothing.status, 400);
    assert!(nothing.body.contains("the original request is missing"));
    let absolute = ask(&a, EP, &[("x-original-uri", "https://evil.example/svc")]).await;
    assert_eq!(absolute.status, 400);
    let method = ask(
        &a,
        EP,
        &[("x-original-uri", "/svc"), ("x-original-method", "G E T")],
    )
    .await;
    assert_eq!(method.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_trusted_proxies_are_answered() {
    let a = start().await;
    let bearer = format!("Bearer {}", a.svc_token(None).await);
    // another loopback address: a client that is not the proxy
    let stranger = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    for path in [
        EP.to_string(),
        format!("{EP}/svc/x"),
        "/oauth//forward-auth".into(),
    ] {
        let r = stranger
            .get(a.gw.url(&path))
            .header("authorization", &bearer)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/svc/x")
            .header("x-forwarded-host", "app.example")
            .send()
            .await
            .unwrap();
        let r = Resp::from(r).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(error_of(&r), "untrusted_proxy");
        assert!(r.header("x-auth-subject").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_pass_where_the_route_allows_them() {
    let a = start().await;
    let preflight = [
        ("origin", "https://web.example"),
        ("access-control-request-method", "PUT"),
    ];
    let svc = traefik(&a, "OPTIONS", "/svc/orders", &preflight).await;
    assert_eq!(svc.status, 200, "{}", svc.body);
    assert_eq!(svc.header("x-auth-subject").as_deref(), Some(""));
    // the admin route does not allow them, and an OPTIONS without the CORS headers is no preflight
    let admin = traefik(&a, "OPTIONS", "/admin", &preflight).await;
    assert_eq!(admin.status, 401);
    let bare = traefik(&a, "OPTIONS", "/svc/orders", &[]).await;
    assert_eq!(bare.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_are_sent_to_sign_in_and_scripts_are_not() {
    let a = start().await;
    let nav = [("sec-fetch-mode", "navigate"), ("accept", "text/html")];
    let want = "/oauth/login?rd=%2Fapp%2Fpage%3Fid%3D7&login=local&app=app";
    let redirected = traefik(&a, "GET", "/app/page?id=7", &nav).await;
    assert_eq!(redirected.status, 302, "{}", redirected.body);
    assert_eq!(location(&redirected), want);

    // nginx cannot pass a 302 from auth_request: a 401 names the page for the error_page recipe
    let mut nginx = vec![("x-original-uri", "/app/page?id=7")];
    nginx.extend_from_slice(&nav);
    let told = ask(&a, EP, &nginx).await;
    assert_eq!(told.status, 401);
    assert_eq!(told.header("x-gatehouse-sign-in").as_deref(), Some(want));

    // a script's call gets the 401, never a page it cannot show
    let xhr = traefik(
        &a,
        "GET",
        "/app/data",
        &[
            ("x-requested-with", "XMLHttpRequest"),
            ("accept", "text/html"),
        ],
    )
    .await;
    assert_eq!(xhr.status, 401);
    assert!(xhr.header("location").is_none());
    let fetch = ask(
        &a,
        EP,
        &[("x-original-uri", "/app/data"), ("sec-fetch-mode", "cors")],
    )
    .await;
    assert_eq!(fetch.status, 401);
    assert!(fetch.header("x-gatehouse-sign-in").is_none());

    // signed in (at the gateway itself here), the session cookie is honoured
    let mut b = Browser::new(&a);
    let r = b.sign_in_at(want, ALICE_PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = b.cookie.clone().unwrap();
    let mut with = nav.to_vec();
    with.push(("cookie", &cookie));
    let page = traefik(&a, "GET", "/app/page?id=7", &with).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("x-auth-subject").as_deref(), Some("user-alice"));
    assert_eq!(
        page.header("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    // a cookie-authenticated write from another site is refused
    let cross = traefik(
        &a,
        "POST",
        "/app/settings",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(cross.status, 403);
    assert_eq!(error_of(&cross), "cross_site_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_own_proxy_passes_preflights_to_the_upstream_too() {
    let a = Auth::start_with(
        "backend = \"memory\"",
        "\n[[routes]]\npath_prefix = \"/cors\"\nupstream = \"echo\"\nallow_cors_preflight = true\n",
    )
    .await;
    let send = |origin: bool| {
        let mut rb =
            a.gw.http
                .request(reqwest::Method::OPTIONS, a.gw.url("/cors/x"))
                .header("access-control-request-method", "PUT");
        if origin {
            rb = rb.header("origin", "https://web.example");
        }
        rb.send()
    };
    let preflight = Resp::from(send(true).await.unwrap()).await;
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    assert_eq!(preflight.echoed("x-auth-subject"), None);
    assert_eq!(a.echo.hits(), 1);
    let not_one = Resp::from(send(false).await.unwrap()).await;
    assert_eq!(not_one.status, 401);
    assert_eq!(a.echo.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_answers_only_on_the_listeners_chosen() {
    let a = Auth::start_edited("backend = \"memory\"", FA_ROUTES, |t| {
        let plain = t
            .split("listen_plain = [")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .unwrap()
            .to_string();
        t.replacen(
            "threads = 1",
            "threads = 1\ntrusted_proxies = [\"127.0.0.1\"]",
            1,
        )
        .replacen(
            "[forward_auth]\n",
            &format!("[forward_auth]\nlisteners = [{plain}]\n"),
            1,
        )
    })
    .await;
    let bearer = format!("Bearer {}", a.svc_token(None).await);
    let asked = |url: String| {
        a.gw.https
            .get(url)
            .header("authorization", &bearer)
            .header("x-original-uri", "/svc/x")
            .send()
    };
    let plain = Resp::from(asked(a.gw.url(EP)).await.unwrap()).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    // on the TLS listener the path is nobody's endpoint: just a path no route takes
    let tls = Resp::from(asked(a.gw.tls_url(EP)).await.unwrap()).await;
    assert_eq!(tls.status, 404, "{}", tls.body);
    assert_eq!(error_of(&tls), "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn questions_over_http2_are_answered_alike() {
    let a = start().await;
    let bearer = format!("Bearer {}", a.svc_token(None).await);
    let root = std::fs::read(a.gw.path("certs/gateway.crt")).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (path, want) in [
        (format!("{EP}/svc/x"), 200),
        (format!("{EP}/admin/x"), 403),
        // the host of an HTTP/2 question is its URI's authority: a host's route still matches
        (format!("{EP}/hosted/x"), 200),
    ] {
        let r = h2
            .get(a.gw.tls_url(&path))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        let r = Resp::from(r).await;
        assert_eq!(r.status, want, "{path}: {}", r.body);
        if path.contains("/svc/") {
            assert_eq!(r.header("x-auth-subject").as_deref(), Some("svc"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_refused_before_it_is_read_is_never_a_grpc_yes() {
    let a = start().await;
    // a client's gRPC content type and X-Original-URI, passed on by Caddy beside its own headers
    let twice = traefik(
        &a,
        "POST",
        "/admin/x",
        &[
            ("content-type", "application/grpc"),
            ("x-original-uri", "/svc/x"),
        ],
    )
    .await;
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert!(twice.header("grpc-status").is_none());
    assert_eq!(error_of(&twice), "invalid_request");
    // and from a stranger, a plain 403 too
    let stranger = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = stranger
        .post(a.gw.url(EP))
        .header("content-type", "application/grpc")
        .header("x-forwarded-uri", "/svc/x")
        .send()
        .await
        .unwrap();
    let r = Resp::from(r).await;
    assert_eq!(r.status, 403);
    assert!(r.header("grpc-status").is_none());
}
