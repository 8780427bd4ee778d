//! OpenTelemetry traces through the real gateway to an OTLP/HTTP receiver that decodes them with
//! the OpenTelemetry project's own protobuf definitions (tests/clients/otlp_receiver.py): the
//! server span and its upstream child, the trace the upstream receives, a refusal's reason, the
//! parent-based sampler, a cold JWKS fetch's span, audit events as OTLP logs, and a dead collector.

use crate::clients::{clients_dir, installed, python_package};
use crate::support::harness::{free_port, Gw};
use crate::support::keys::{claims, TestKey};
use crate::support::servers::{Echo, Idp};
use crate::{HS_ISS, HS_SECRET};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The receiver process and the files it writes.
pub(crate) struct Receiver {
    child: Child,
    pub(crate) port: u16,
    out: PathBuf,
    pub(crate) raw: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// None (after saying why) when the Python packages are not installed and not required.
    pub(crate) fn start() -> Option<Receiver> {
        let dir = clients_dir();
        let python = dir.join(".venv/bin/python");
        // the receiver decodes with the OpenTelemetry project's own protobuf package
        if !installed(&python_package("opentelemetry/proto")) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (out, raw) = (tmp.path().join("otlp.jsonl"), tmp.path().join("raw.bin"));
        let mut child = Command::new(python)
            .arg(dir.join("otlp_receiver.py"))
            .args([&out, &raw])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        Some(Receiver {
            child,
            port,
            out,
            raw,
            _dir: tmp,
        })
    }

    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `done` holds for what arrived, and returns it.
    pub(crate) async fn when(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.records();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn spans_of<'a>(records: &'a [Value], trace: &str) -> Vec<&'a Value> {
    (records.iter())
        .filter(|r| r["signal"] == "span" && r["trace_id"] == trace)
        .collect()
}

fn kind<'a>(spans: &[&'a Value], kind: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .copied()
        .filter(|s| s["kind"] == kind)
        .collect()
}

/// A gateway with a public route `/open`, a route that needs a token `/closed` (a rule refuses
/// DELETE) and `[telemetry]` pointed at `endpoint`.
async fn gateway(endpoint: &str, telemetry: &str, more: &str) -> (Gw, Echo) {
    let echo = Echo::start("echo").await;
    let body = crate::open_and_closed(echo.addr)
        + &format!(
            r#"{more}
[telemetry]
otlp_endpoint = "{endpoint}"
flush_interval = "50ms"
{telemetry}
"#
        );
    (Gw::start(&body), echo)
}

fn token(extra: Value) -> String {
    TestKey::hmac(HS_SECRET).sign(&claims(HS_ISS, "api", extra))
}

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{CALLER_SPAN}-{flags}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traced_request_has_a_server_span_an_upstream_child_and_the_upstream_sees_the_trace() {
    let Some(rx) = Receiver::start() else { return };
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let extra = "service_name = \"edge\"\nspan_claims = [\"tenant\"]\n\
                 [telemetry.resource_attributes]\n\"deployment.environment.name\" = \"test\"";
    let (gw, echo) = gateway(&endpoint, extra, "").await;
    let jwt = token(json!({"client_id": "svc", "tenant": "acme", "email": "a@example.com"}));
    let r = gw
        .http
        .get(gw.url("/closed/items?q=1"))
        .bearer_auth(&jwt)
        .header("traceparent", traceparent("01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    let r = crate::support::harness::Resp::from(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = rx
        .when("three spans", |g| spans_of(g, TRACE).len() >= 3)
        .await;
    let spans = spans_of(&got, TRACE);
    let (server, client) = (
        kind(&spans, "SPAN_KIND_SERVER"),
        kind(&spans, "SPAN_KIND_CLIENT"),
    );
    let (server, client) = (server[0], client[0]);
    assert_eq!(server["parent_span_id"], CALLER_SPAN);
    assert_eq!(server["name"], "GET /closed");
    assert_eq!(server["resource"]["service.name"], "edge");
    assert_eq!(server["resource"]["deployment.environment.name"], "test");
    let a = &server["attributes"];
    for (key, want) in [
        ("http.request.method", json!("GET")),
        ("url.path", json!("/closed/items")),
        ("url.scheme", json!("http")),
        ("http.route", json!("/closed")),
        ("http.response.status_code", json!(200)),
        ("network.protocol.version", json!("1.1")),
        ("server.address", json!("127.0.0.1")),
        ("client.address", json!("127.0.0.1")),
        ("gatehouse.route", json!("closed")),
        ("gatehouse.decision", json!("allow")),
        ("gatehouse.issuer", json!(HS_ISS)),
        ("gatehouse.client_id", json!("svc")),
        ("gatehouse.claim.tenant", json!("acme")),
    ] {
        assert_eq!(a[key], want, "{key} in {a:#}");
    }
    // claims not listed in span_claims stay out
    assert!(a.get("gatehouse.claim.email").is_none(), "{a:#}");
    assert_eq!(server["status"], "STATUS_CODE_UNSET");
    // the upstream call: a child of the server span, naming the peer
    assert_eq!(client["parent_span_id"], server["span_id"]);
    assert_eq!(client["attributes"]["server.address"], "127.0.0.1");
    assert_eq!(client["attributes"]["server.port"], json!(echo.addr.port()));
    assert_eq!(
        client["attributes"]["http.response.status_code"],
        json!(200)
    );
    assert!(client["start"].as_u64() >= server["start"].as_u64());
    assert!(client["end"].as_u64() <= server["end"].as_u64());
    // a new connection's setup is the upstream span's child
    assert_eq!(client["attributes"]["gatehouse.upstream.connection"], "new");
    let connect = kind(&spans, "SPAN_KIND_INTERNAL");
    assert_eq!(connect.len(), 1, "{spans:#?}");
    assert_eq!(connect[0]["name"], "connect");
    assert_eq!(connect[0]["parent_span_id"], client["span_id"]);
    let port = &connect[0]["attributes"]["network.peer.port"];
    assert_eq!(port, &json!(echo.addr.port()));
    assert!(connect[0]["start"].as_u64() >= client["start"].as_u64());
    assert!(connect[0]["end"].as_u64() <= client["end"].as_u64());
    // the upstream received the same trace, with the upstream span as its parent
    let sent = format!("00-{TRACE}-{}-01", client["span_id"].as_str().unwrap());
    assert_eq!(r.echoed("traceparent").as_deref(), Some(sent.as_str()));
    assert_eq!(r.echoed("tracestate").as_deref(), Some("vendor=abc"));
    // the next request to the same upstream reuses the connection: no setup to time
    let again = "0af7651916cd43dd8448eb211c80319c";
    let r = gw
        .http
        .get(gw.url("/closed/items"))
        .bearer_auth(&jwt)
        .header("traceparent", format!("00-{again}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = rx
        .when("the second request's spans", |g| {
            spans_of(g, again).len() >= 2
        })
        .await;
    let spans = spans_of(&got, again);
    let client = kind(&spans, "SPAN_KIND_CLIENT")[0];
    assert_eq!(
        client["attributes"]["gatehouse.upstream.connection"],
        "reused"
    );
    assert!(kind(&spans, "SPAN_KIND_INTERNAL").is_empty(), "{spans:#?}");
    // no token bytes in anything exported
    let raw = std::fs::read(&rx.raw).unwrap();
    let signature = jwt.rsplit('.').next().unwrap();
    for secret in [jwt.as_str(), signature, HS_SECRET] {
        assert!(!contains(&raw, secret.as_bytes()), "{secret} was exported");
    }
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_requests_span_carries_the_reason_and_no_token() {
    let Some(rx) = Receiver::start() else { return };
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let (gw, echo) = gateway(&endpoint, "", "").await;
    let jwt = token(json!({"sub": "u-1"}));
    let r = gw
        .http
        .delete(gw.url("/closed/x"))
        .bearer_auth(&jwt)
        .header("traceparent", traceparent("01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let other = "00-11111111111111111111111111111111-2222222222222222-01";
    let r = gw
        .http
        .get(gw.url("/closed/x"))
        .header("traceparent", other);
    assert_eq!(r.send().await.unwrap().status(), 401);
    let got = rx
        .when("both refusals", |g| {
            !spans_of(g, TRACE).is_empty() && !spans_of(g, &"1".repeat(32)).is_empty()
        })
        .await;
    let rule = spans_of(&got, TRACE)[0];
    let a = &rule["attributes"];
    assert_eq!(a["gatehouse.decision"], "refuse");
    assert_eq!(a["gatehouse.reason"], "rule");
    assert_eq!(a["gatehouse.rule"], "deny_if[0]");
    assert_eq!(a["http.response.status_code"], json!(403));
    // nothing reached the upstream, so there is no upstream span
    assert_eq!(spans_of(&got, TRACE).len(), 1, "{got:#?}");
    assert_eq!(echo.hits(), 0);
    let missing = spans_of(&got, &"1".repeat(32))[0];
    assert_eq!(missing["attributes"]["gatehouse.reason"], "missing_token");
    let raw = std::fs::read(&rx.raw).unwrap();
    assert!(!contains(&raw, jwt.as_bytes()));
    assert!(!contains(&raw, jwt.rsplit('.').next().unwrap().as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_grpc_calls_span_says_its_grpc_status() {
    let Some(rx) = Receiver::start() else { return };
    let echo = Echo::start("echo").await;
    let body = crate::open_and_closed(echo.addr)
        + &format!(
            "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\nflush_interval = \"50ms\"\n",
            rx.port
        );
    // h2c on the plain listener, as a gRPC gateway without TLS has it
    let h2c_on = |t: String| t.replacen("[server]\n", "[server]\nh2c = true\n", 1);
    let gw = Gw::start_on_edited(tempfile::tempdir().unwrap(), &body, free_port(), h2c_on);
    // a gRPC call without a token, over h2c: HTTP 200 with grpc-status 16 (UNAUTHENTICATED)
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2c
        .post(gw.url("/closed/pkg.Service/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("traceparent", traceparent("01"))
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["grpc-status"], "16");
    let got = rx
        .when("the call's span", |g| !spans_of(g, TRACE).is_empty())
        .await;
    let a = &spans_of(&got, TRACE)[0]["attributes"];
    assert_eq!(a["http.response.status_code"], json!(200));
    assert_eq!(a["rpc.grpc.status_code"], json!(16), "{a:#}");
    assert_eq!(a["gatehouse.reason"], "missing_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_sample_ratio_zero_only_a_sampled_caller_is_traced() {
    let Some(rx) = Receiver::start() else { return };
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let (gw, _echo) = gateway(&endpoint, "sample_ratio = 0.0", "").await;
    // no traceparent: not traced, and the upstream receives none
    let r = gw.get("/open/a", None).await;
    assert_eq!(r.echoed("traceparent"), None);
    // an unsampled caller: not traced, its traceparent passed on as it was
    let unsampled = "00-22222222222222222222222222222222-3333333333333333-00";
    let r = gw
        .http
        .get(gw.url("/open/b"))
        .header("traceparent", unsampled);
    let r = crate::support::harness::Resp::from(r.send().await.unwrap()).await;
    assert_eq!(r.echoed("traceparent").as_deref(), Some(unsampled));
    // a sampled caller is followed
    let r = gw
        .http
        .get(gw.url("/open/c"))
        .header("traceparent", traceparent("01"));
    let r = crate::support::harness::Resp::from(r.send().await.unwrap()).await;
    assert!(r
        .echoed("traceparent")
        .unwrap()
        .starts_with(&format!("00-{TRACE}-")));
    // one exporter sends in order: once the sampled request's spans are here, the others would be
    let got = rx
        .when("the sampled trace", |g| spans_of(g, TRACE).len() >= 2)
        .await;
    let spans: Vec<_> = got.iter().filter(|r| r["signal"] == "span").collect();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(spans.iter().all(|s| s["trace_id"] == TRACE));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_caller_a_new_trace_is_begun_and_sent_upstream() {
    let Some(rx) = Receiver::start() else { return };
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let (gw, _echo) = gateway(&endpoint, "", "").await;
    // a malformed traceparent counts as none: a new trace, and its tracestate is not carried on
    let r = gw
        .http
        .get(gw.url("/open/new"))
        .header("traceparent", "00-NOT-A-TRACE-01")
        .header("tracestate", "vendor=abc")
        .send();
    let r = crate::support::harness::Resp::from(r.await.unwrap()).await;
    let sent = r.echoed("traceparent").unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{sent}");
    assert_eq!(r.echoed("tracestate"), None);
    let got = rx
        .when("the new trace", |g| spans_of(g, parts[1]).len() >= 2)
        .await;
    let spans = spans_of(&got, parts[1]);
    let server = kind(&spans, "SPAN_KIND_SERVER")[0];
    assert_eq!(server["parent_span_id"], "");
    assert_eq!(kind(&spans, "SPAN_KIND_CLIENT")[0]["span_id"], parts[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_collector_slows_nothing_and_its_drops_are_counted() {
    // nothing listens there: every batch fails, and the small queue overflows
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let (gw, _echo) = gateway(&endpoint, "queue = 2\nbatch_size = 1\ntimeout = \"1s\"", "").await;
    let started = Instant::now();
    for _ in 0..40 {
        assert_eq!(gw.get("/open/x", None).await.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = gw.metrics().await;
        let dropped = m
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_otlp_dropped_total{signal=\"traces\"} "))
            .map(|v| v.trim().parse::<u64>().unwrap());
        if dropped.is_some_and(|d| d >= 40) {
            assert!(
                m.contains("gatehouse_otlp_exported_total{signal=\"traces\"} 0"),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drops not counted: {dropped:?}\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_fetch_a_traced_request_waits_for_is_its_child() {
    let Some(rx) = Receiver::start() else { return };
    let (k1, k2) = (TestKey::rsa("k1"), TestKey::ec("k2"));
    let idp = Idp::start(vec![k1.jwk.clone()]).await;
    let iss = "https://jwks.test";
    let issuer = format!(
        "\n[[issuers]]\nname = \"idp\"\nissuer = \"{iss}\"\njwks_uri = \"{}\"\n\
         audiences = [\"api\"]\nalgorithms = [\"RS256\", \"ES256\"]\njwks_min_refresh = \"30s\"\n",
        idp.jwks_uri()
    );
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let (gw, _echo) = gateway(&endpoint, "", &issuer).await;
    while idp.fetches() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a key the cache does not know, past the refetch floor: the request waits for one fetch
    idp.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    gw.clock.advance(Duration::from_secs(31));
    let t2 = k2.sign(&claims(iss, "api", json!({})));
    let r = gw
        .http
        .get(gw.url("/closed/x"))
        .bearer_auth(&t2)
        .header("traceparent", traceparent("01"));
    assert_eq!(r.send().await.unwrap().status(), 200);
    let got = rx
        .when("three spans", |g| spans_of(g, TRACE).len() >= 3)
        .await;
    let spans = spans_of(&got, TRACE);
    let server = kind(&spans, "SPAN_KIND_SERVER")[0];
    let fetch: Vec<_> = (spans.iter())
        .filter(|s| s["attributes"]["gatehouse.fetch"] == "jwks")
        .collect();
    assert_eq!(fetch.len(), 1, "{spans:#?}");
    assert_eq!(fetch[0]["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(fetch[0]["parent_span_id"], server["span_id"]);
    assert_eq!(
        fetch[0]["attributes"]["http.response.status_code"],
        json!(200)
    );
    assert_eq!(fetch[0]["attributes"]["server.address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_arrive_as_otlp_logs_with_their_trace() {
    let Some(rx) = Receiver::start() else { return };
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let (gw, _echo) = gateway(&endpoint, "", "\n[audit]\notlp = true\n").await;
    let r = gw
        .http
        .get(gw.url("/closed/x"))
        .header("traceparent", traceparent("01"));
    assert_eq!(r.send().await.unwrap().status(), 401);
    let got = rx
        .when("the refusal's log record", |g| {
            g.iter().any(|r| r["signal"] == "log")
        })
        .await;
    let log = got.iter().find(|r| r["signal"] == "log").unwrap();
    assert_eq!(log["event_name"], "dev.gatehouse.request.refused");
    assert_eq!(log["trace_id"], TRACE);
    let event: Value = serde_json::from_str(log["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["type"], "dev.gatehouse.request.refused");
    assert_eq!(event["data"]["reason"], "missing_token");
    assert_eq!(event["data"]["trace_id"], TRACE);
    let m = gw.metrics().await;
    assert!(
        m.contains("gatehouse_audit_events_total{sink=\"otlp\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoints_secret_checks_and_store_calls_are_spans_of_its_request() {
    use crate::tokens::{Auth, ALICE_PASSWORD, LEGACY_SECRET};
    let Some(rx) = Receiver::start() else { return };
    let telemetry = format!(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\nflush_interval = \"50ms\"\n",
        rx.port
    );
    let a = Auth::start_with("backend = \"memory\"", &telemetry).await;
    let form = [
        ("grant_type", "password"),
        ("username", "alice@example.com"),
        ("password", ALICE_PASSWORD),
        ("scope", "openid orders.read"),
    ];
    let r =
        a.gw.https
            .post(a.token_url())
            .basic_auth("legacy", Some(LEGACY_SECRET))
            .header("traceparent", traceparent("01"))
            .form(&form)
            .send()
            .await
            .unwrap();
    let r = crate::support::harness::Resp::from(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let issued = r.json();
    let got = rx
        .when("the server span", |g| {
            spans_of(g, TRACE)
                .iter()
                .any(|s| s["kind"] == "SPAN_KIND_SERVER")
        })
        .await;
    let spans = spans_of(&got, TRACE);
    let server = kind(&spans, "SPAN_KIND_SERVER")[0];
    assert_eq!(server["name"], "POST");
    assert_eq!(server["attributes"]["url.path"], "/oauth/token");
    let named =
        |n: &str| -> Vec<&Value> { spans.iter().copied().filter(|s| s["name"] == n).collect() };
    let secret = named("verify client secret");
    assert_eq!(secret.len(), 1, "{spans:#?}");
    assert_eq!(secret[0]["attributes"]["gatehouse.hash"], "sha256");
    let password = named("verify password");
    assert_eq!(password[0]["attributes"]["gatehouse.hash"], "bcrypt");
    // the refresh token is stored
    assert!(!named("store").is_empty(), "{spans:#?}");
    for s in spans.iter().filter(|s| s["kind"] != "SPAN_KIND_SERVER") {
        assert_eq!(s["parent_span_id"], server["span_id"]);
        assert_eq!(s["kind"], "SPAN_KIND_INTERNAL");
    }
    let raw = std::fs::read(&rx.raw).unwrap();
    let access = issued["access_token"].as_str().unwrap();
    let refresh = issued["refresh_token"].as_str().unwrap();
    for secret in [ALICE_PASSWORD, LEGACY_SECRET, access, refresh] {
        assert!(!contains(&raw, secret.as_bytes()), "{secret} was exported");
    }
}
