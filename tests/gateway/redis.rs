//! Several gateways on one real redis-server: revocations, refresh families, codes and assertion ids
//! shared by every replica, and Redis going away and coming back.

use crate::support::harness::{free_port, wait_port, Gw};
use crate::tokens::{auth_toml, oauth_error, Auth, ALICE_PASSWORD, ASSERTION_TYPE, SVC_SECRET};
use crate::tokens_code::{code_of, VERIFIER};
use crate::tokens_users::{password_grant, refresh};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server of the test's own, on an ephemeral port, writing its append-only file to a
/// temporary folder so a restart keeps what was recorded.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` (after saying why) when redis-server is not installed and `make test` did not ask for it.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("GATEHOUSE_REQUIRE_REDIS").is_none(),
                "redis-server is missing: `make test` installs it"
            );
            eprintln!("skipped: redis-server is not installed (`make test` installs it)");
            return None;
        }
        let mut r = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.run();
        Some(r)
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    pub fn store(&self) -> String {
        format!(
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"",
            self.port
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Gateway A with the token service on Redis, and B: another process's twin, with A's keys.
async fn pair(redis: &RedisServer) -> (Auth, Auth) {
    pair_with(redis, "").await
}

/// `pair` with `extra` routes and sections on both.
pub async fn pair_with(redis: &RedisServer, extra: &str) -> (Auth, Auth) {
    pair_on(&redis.store(), &redis.store(), extra).await
}

/// `pair_with`, A on the store `a_store` and B on `b_store` (the same Redis by another path).
async fn pair_on(a_store: &str, b_store: &str, extra: &str) -> (Auth, Auth) {
    let a = Auth::start_with(a_store, extra).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for f in std::fs::read_dir(a.gw.path("keys")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), keys.join(f.file_name())).unwrap();
    }
    let gw = Gw::start_in(dir, &auth_toml(&a.echo, b_store, extra));
    let b = Auth {
        gw,
        echo: a.echo.clone(),
        client_key: crate::support::keys::TestKey::rsa("unused"),
    };
    // both ready (each has reached Redis once) before the test's first request: on a loaded
    // machine a first command that must also connect can outlast the store's timeout; a test whose
    // Redis is away on purpose goes on after the wait
    within(Duration::from_secs(10), async || {
        ready(&a.gw).await == 200 && ready(&b.gw).await == 200
    })
    .await;
    (a, b)
}

/// Polls until `check` holds, for at most five seconds: propagation is asynchronous.
pub(crate) async fn eventually(check: impl AsyncFnMut() -> bool) -> bool {
    within(Duration::from_secs(5), check).await
}

/// Polls until `check` holds, for at most `limit`.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_revoked_on_one_gateway_is_refused_by_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = pair(&redis).await;
    let t = a.svc_token(None).await;
    assert_eq!(
        b.gw.get("/api/x", Some(&t)).await.status,
        200,
        "B accepts A's token"
    );
    let r = a
        .post(
            "/oauth/revoke",
            &[("token", t.as_str())],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        eventually(async || b.gw.get("/api/x", Some(&t)).await.status == 401).await,
        "B never learned of the revocation"
    );
    // B measured how long the revocation took to arrive
    assert!(metric(&b.gw, "gatehouse_revocation_propagation_seconds_count").await >= 1);
    // a third gateway started later loads the revocation before it answers
    let (_c_auth, c) = pair(&redis).await;
    assert_eq!(c.gw.get("/api/x", Some(&t)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_families_codes_and_assertion_ids_are_shared() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = pair(&redis).await;
    // a refresh rotated on A and replayed on B revokes the family, and its access tokens at the edge
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let r1 = first.json()["refresh_token"].as_str().unwrap().to_string();
    let access = first.json()["access_token"].as_str().unwrap().to_string();
    let second = refresh(&a, &r1).await;
    assert_eq!(second.status, 200, "{}", second.body);
    oauth_error(&refresh(&b, &r1).await, 400, "invalid_grant");
    let r2 = second.json()["refresh_token"].as_str().unwrap().to_string();
    oauth_error(&refresh(&a, &r2).await, 400, "invalid_grant");
    assert!(eventually(async || a.gw.get("/api/x", Some(&access)).await.status == 401).await);
    // a code issued on A is redeemed once, whichever gateway sees it
    let signed_in = a.sign_in(ALICE_PASSWORD).await;
    let code = code_of(&signed_in);
    assert_eq!(b.exchange(&code, VERIFIER).await.status, 200);
    oauth_error(&a.exchange(&code, VERIFIER).await, 400, "invalid_grant");
    // the person signed in on A is signed in on B too
    let session = crate::tokens_code::set_cookie(&signed_in, "__Host-gatehouse").unwrap();
    let q = crate::tokens_code::authorize_query(&[]);
    let r = b.get_authorize(&q, Some(&session)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // an assertion id used on A is refused on B
    let assertion = a.assertion("signer", &a.token_url(), 60, "shared-jti");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
    ];
    assert_eq!(a.post("/oauth/token", &form, None).await.status, 200);
    let b_url = format!("https://localhost:{}/oauth/token", b.gw.tls.port());
    let again = crate::support::harness::Resp::from(
        b.gw.https.post(b_url).form(&form).send().await.unwrap(),
    )
    .await;
    assert_eq!(again.status, 401, "{}", again.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_tokens_still_pass_writes_answer_503_and_it_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = pair(&redis).await;
    assert!(eventually(async || ready(&a.gw).await == 200).await);
    let revoked = a.svc_token(None).await;
    let kept = a.svc_token(None).await;
    a.post(
        "/oauth/revoke",
        &[("token", revoked.as_str())],
        Some(("svc", SVC_SECRET)),
    )
    .await;
    assert!(eventually(async || b.gw.get("/api/x", Some(&revoked)).await.status == 401).await);
    redis.kill();
    assert!(
        eventually(async || ready(&a.gw).await == 503).await,
        "/ready ignores the store"
    );
    // validation goes on, with every revocation known before the outage
    assert_eq!(b.gw.get("/api/x", Some(&kept)).await.status, 200);
    assert_eq!(b.gw.get("/api/x", Some(&revoked)).await.status, 401);
    // what must be recorded is refused, never answered as if it were
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    oauth_error(&r, 503, "temporarily_unavailable");
    let r = a
        .post(
            "/oauth/revoke",
            &[("token", kept.as_str())],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 503, "temporarily_unavailable");
    // Redis returns: the gateways reconnect by themselves, and nothing recorded was lost
    redis.restart();
    assert!(
        eventually(async || password_grant(&a, ALICE_PASSWORD, "orders.read")
            .await
            .status
            == 200)
        .await,
        "the gateway did not reconnect"
    );
    assert!(eventually(async || ready(&b.gw).await == 200).await);
    assert!(metric(&a.gw, "gatehouse_store_errors_total").await >= 1);
    assert!(metric(&a.gw, "gatehouse_store_operations_total").await >= 10);
    assert!(metric(&a.gw, "gatehouse_store_reconnects_total").await >= 1);
    let (_c_auth, c) = pair(&redis).await;
    assert_eq!(c.gw.get("/api/x", Some(&revoked)).await.status, 401);
}

/// A metric's value as `/metrics` shows it (0 when absent).
async fn metric(gw: &Gw, name: &str) -> u64 {
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The status of `/ready` on the admin listener.
async fn ready(gw: &Gw) -> u16 {
    readiness(gw).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lockout_counts_failures_on_every_gateway() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = pair(&redis).await;
    // the shipped test limit is 5 failures in 5 minutes: three on A and two on B
    for gw in [&a, &a, &a, &b, &b] {
        assert_eq!(gw.client_credentials("svc", "wrong").await.status, 401);
    }
    for gw in [&a, &b] {
        let r = gw.client_credentials("svc", SVC_SECRET).await;
        oauth_error(&r, 401, "invalid_client");
        assert!(r.body.contains("too many failed"), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_session_is_one_on_every_gateway_and_ends_on_every_gateway() {
    use crate::sessions::{Browser, APP};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = pair_with(&redis, APP).await;
    let mut on_a = Browser::new(&a);
    let r = on_a
        .sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mut on_b = Browser::new(&b);
    on_b.cookie = on_a.cookie.clone();
    let r = on_b.navigate("/app/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    // A holds the session in memory from here on: its end must reach it through the feed
    assert_eq!(on_a.navigate("/app/").await.status, 200);

    // an operator ends it through B; A signs the browser out as soon as the feed delivers it
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/sessions/revoke?subject=user-alice",
            b.gw.admin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["ended"], 1);
    assert!(eventually(async || on_a.navigate("/app/").await.status == 302).await);
    assert_eq!(
        on_b.navigate("/app/").await.status,
        302,
        "B ended it itself"
    );

    // a logout on A ends the session B sees too
    on_a.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD)
        .await;
    on_b.cookie = on_a.cookie.clone();
    assert_eq!(on_b.navigate("/app/").await.status, 200);
    let out = on_a
        .send(
            "POST",
            "/oauth/logout",
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, 303);
    assert!(eventually(async || on_b.navigate("/app/").await.status == 302).await);

    // without Redis a session cannot be checked: a clear 503, never a pass, even for a session A
    // holds in memory (once its feed is lost, a revocation could be missing)
    on_a.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD)
        .await;
    assert_eq!(on_a.navigate("/app/").await.status, 200);
    let mut redis = redis;
    redis.kill();
    let mut last = None;
    let refused = eventually(async || {
        let r = on_a.navigate("/app/").await;
        let status = r.status;
        last = Some(r);
        status == 503
    })
    .await;
    let r = last.unwrap();
    assert!(refused, "{} {}", r.status, r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    redis.restart();
    assert!(
        eventually(async || on_a.navigate("/app/").await.status == 200).await,
        "the session is back with Redis (kept in its append-only file)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_session_on_redis_outlives_its_idle_timeout() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    crate::sessions::a_busy_session_outlives_a_one_minute_idle_timeout(&redis.store()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_on_redis_is_extended_in_redis_too() {
    use crate::sessions::{Browser, APP};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Auth::start_with(&redis.store(), APP).await;
    let mut on_a = Browser::new(&a);
    on_a.sign_in_at("/oauth/login?rd=/app/", ALICE_PASSWORD)
        .await;
    // Redis expires the record itself: a session used later must move that deadline on too
    let mut db = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("gatehouse:session:*")
        .query(&mut db)
        .unwrap();
    let [key] = keys.as_slice() else {
        panic!("one session record expected: {keys:?}")
    };
    let ttl =
        |db: &mut ::redis::Connection| -> i64 { ::redis::cmd("TTL").arg(key).query(db).unwrap() };
    let idle = 30 * 60;
    assert!(ttl(&mut db) <= idle, "{}", ttl(&mut db));
    a.gw.clock.advance(Duration::from_secs(2 * 60));
    let r = on_a.navigate("/app/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        ttl(&mut db) > idle + 60,
        "the record still expires {}s from now",
        ttl(&mut db)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_compiles_every_script_of_the_store() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut db = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    for (name, body) in gatehouse::store::redis::scripts::ALL {
        let loaded: Result<String, _> = ::redis::cmd("SCRIPT").arg("LOAD").arg(body).query(&mut db);
        assert!(loaded.is_ok(), "{name}: {loaded:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registered_clients_are_kept_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let backend = gatehouse::config::StoreBackend::Redis(url);
    let s = gatehouse::store::open(&backend).unwrap();
    let client = |id: &str, at: u64| gatehouse::store::RegisteredClient {
        client_id: id.into(),
        client_name: None,
        redirect_uris: vec!["https://app.example/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec![],
        created_at: at,
        disabled: false,
    };
    let (b, a) = (client("dyn-b", 20), client("dyn-a", 10));
    tokio::task::spawn_blocking(move || {
        s.put_client(&b).unwrap();
        s.put_client(&a).unwrap();
        assert_eq!(s.registered_client("dyn-b").unwrap(), Some(b));
        assert_eq!(s.registered_client("dyn-c").unwrap(), None);
        let all = s.registered_clients().unwrap();
        assert_eq!((all.len(), all[0].client_id.as_str()), (2, "dyn-a"));
        assert!(s.remove_client("dyn-a").unwrap());
        assert!(!s.remove_client("dyn-a").unwrap());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_a_gateway_makes_to_redis_has_tcp_keepalive() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Auth::start_with(&redis.store(), "").await;
    // the feed subscribes, store commands and the shared counters open theirs
    assert!(eventually(async || ready(&a.gw).await == 200).await);
    a.svc_token(None).await;
    // Linux lists every socket in /proc/net/tcp; its timer column says 02 while keepalive runs
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return;
    };
    let redis_end = format!(":{:04X}", redis.port);
    let timers: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[2].ends_with(&redis_end) && f[3] == "01")
        .map(|f| f[5].to_string())
        .collect();
    assert!(timers.len() >= 3, "{timers:?}");
    assert!(timers.iter().all(|t| t.starts_with("02:")), "{timers:?}");
}

/// The status of `/ready` and the reason it gives when not ready.
async fn readiness(gw: &Gw) -> (u16, String) {
    let Ok(r) = gw
        .http
        .get(format!("http://{}/ready", gw.admin))
        .send()
        .await
    else {
        return (0, String::new());
    };
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["reason"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silently_lost_subscription_is_noticed_and_made_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // B reaches Redis through a relay that can go silent; A and the store stay reachable
    let relay = crate::support::relay::Relay::start(redis.port);
    let (a, b) = pair_on(&redis.store(), &relay.store(), "").await;
    assert!(eventually(async || ready(&b.gw).await == 200).await);
    let t = a.svc_token(None).await;
    assert_eq!(b.gw.get("/api/x", Some(&t)).await.status, 200);

    // the flow goes silent without a reset; meanwhile A revokes a token B has accepted
    relay.freeze();
    let r = a
        .post(
            "/oauth/revoke",
            &[("token", t.as_str())],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // B notices that its subscription hears nothing and says it may be missing revocations
    let lost = "revocations are not loaded from the store yet";
    assert!(
        within(Duration::from_secs(20), async || readiness(&b.gw).await
            == (503, lost.to_string()))
        .await,
        "B never noticed that its subscription went silent: {:?}",
        readiness(&b.gw).await
    );

    // the path works again for new connections: B subscribes again and catches up before it is ready
    relay.thaw();
    assert!(
        within(Duration::from_secs(20), async || ready(&b.gw).await == 200).await,
        "B did not come back: {:?}",
        readiness(&b.gw).await
    );
    assert_eq!(
        b.gw.get("/api/x", Some(&t)).await.status,
        401,
        "ready, yet the revocation made while it was cut off is unknown"
    );
    // and the new subscription delivers what is revoked from now on
    let t2 = a.svc_token(None).await;
    assert_eq!(b.gw.get("/api/x", Some(&t2)).await.status, 200);
    a.post(
        "/oauth/revoke",
        &[("token", t2.as_str())],
        Some(("svc", SVC_SECRET)),
    )
    .await;
    assert!(eventually(async || b.gw.get("/api/x", Some(&t2)).await.status == 401).await);
}

/// The gateway's established connections to a Redis on `port`, from Linux's socket table (`None`
/// where there is none to read).
fn connections_to(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let redis_end = format!(":{port:04X}");
    Some(
        table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 3 && f[2].ends_with(&redis_end) && f[3] == "01")
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_store_commands_and_counters_share_a_few_connections() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Auth::start_with(&redis.store(), crate::sessions::APP).await;
    assert!(eventually(async || ready(&a.gw).await == 200).await);
    // a grant writes a refresh family; then token requests (counters) and readiness checks (store
    // pings), many at once
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let burst = (0..24).map(|i| {
        let a = &a;
        async move {
            if i % 2 == 0 {
                a.client_credentials("svc", SVC_SECRET).await.status
            } else {
                ready(&a.gw).await
            }
        }
    });
    let statuses = futures_util::future::join_all(burst).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let Some(n) = connections_to(redis.port) else {
        return;
    };
    // the revocation feed's subscription, and the store's few multiplexed connections
    assert!((2..=3).contains(&n), "{n} connections to Redis");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_proof_taken_by_one_gateway_is_refused_by_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = pair(&redis).await;
    let holder = crate::dpop::Holder::default();
    let token = crate::dpop::dpop_token(&a, &holder).await;
    // both are reached by the name a balancer in front of them gives, so one proof fits either
    let url = "http://api.gw.test/api/orders";
    let send = |gw: &Gw, proof: &str| {
        let r = gw
            .http
            .get(gw.url("/api/orders"))
            .header("host", "api.gw.test")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        async move { crate::support::harness::Resp::from(r.send().await.unwrap()).await }
    };
    let proof = holder.proof("GET", url, Some(&token));
    let first = send(&a.gw, &proof).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let replayed = send(&b.gw, &proof).await;
    crate::dpop::refused(&replayed, "invalid_dpop_proof");
    assert!(replayed.body.contains("used before"), "{}", replayed.body);
    let fresh = send(&b.gw, &holder.proof("GET", url, Some(&token))).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
}
