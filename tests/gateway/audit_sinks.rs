//! The audit sinks: allowed requests sampled and refusals kept, batched POSTs to a collector, a
//! dead collector that slows nothing and whose drops are counted, the file rotated by size and
//! opened again on reload.

use crate::audit::{events_when, of_type};
use crate::support::harness::{free_port, Gw};
use crate::support::keys::{claims, TestKey};
use crate::support::servers::Echo;
use crate::{HS_ISS, HS_SECRET};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A gateway with a public route `/open` and a route that needs a token, `/closed`, where a rule
/// refuses DELETE.
async fn gateway(audit: &str) -> (Gw, Echo) {
    let echo = Echo::start("echo").await;
    std::env::set_var("GH_TEST_AUDIT_TOKEN", "collector-credential-0123456789");
    let body = crate::open_and_closed(echo.addr)
        + &format!(
            r#"
[audit]
{audit}
"#
        );
    (Gw::start(&body), echo)
}

/// What an in-test collector received: each POST's `Authorization` and body.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A collector on `addr` that takes every POST to `/events`.
async fn collector(listener: tokio::net::TcpListener) -> Received {
    let got: Received = Arc::default();
    let kept = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                kept.lock()
                    .unwrap()
                    .push((auth, serde_json::from_str(&body).unwrap()));
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    got
}

fn events_in(got: &Received) -> usize {
    let g = got.lock().unwrap();
    g.iter()
        .map(|(_, b)| b.as_array().map_or(0, Vec::len))
        .sum()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one metric line, e.g. `gatehouse_audit_events_total{sink="http"}`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_always_recorded_and_allowed_requests_follow_the_sample_ratio() {
    for ratio in ["0.0", "1.0"] {
        let (gw, _echo) =
            gateway(&format!("file = \"a.jsonl\"\nallow_sample_ratio = {ratio}")).await;
        for _ in 0..5 {
            assert_eq!(gw.get("/open/x", None).await.status, 200);
        }
        for _ in 0..2 {
            assert_eq!(gw.get("/closed/x", None).await.status, 401);
        }
        let token = TestKey::hmac(HS_SECRET).sign(&claims(HS_ISS, "api", json!({"sub": "u-1"})));
        let r = gw
            .http
            .delete(gw.url("/closed/x"))
            .bearer_auth(&token)
            .send();
        assert_eq!(r.await.unwrap().status(), 403);
        // one writer, in order: once the refusals are there, so is every allowed request kept
        let (events, _) = events_when(&gw.path("a.jsonl"), |e| {
            of_type(e, "request.refused").len() == 3
        })
        .await;
        let allowed = of_type(&events, "request.allowed");
        let refused = of_type(&events, "request.refused");
        assert_eq!(refused.len(), 3, "ratio {ratio}: {events:#?}");
        assert!(refused.iter().all(|e| e["data"]["route"] == "closed"));
        assert_eq!(refused[0]["data"]["reason"], "missing_token");
        assert!(refused[0]["data"]["rule"].is_null());
        // the failing rule is named, never a value it read
        let d = &refused[2]["data"];
        assert_eq!(
            (d["reason"].as_str(), d["rule"].as_str()),
            (Some("rule"), Some("deny_if[0]"))
        );
        assert_eq!(
            (d["subject"].as_str(), d["method"].as_str()),
            (Some("u-1"), Some("DELETE"))
        );
        assert_eq!(d["issuer"], HS_ISS);
        match ratio {
            "0.0" => assert!(allowed.is_empty(), "{allowed:#?}"),
            _ => {
                assert_eq!(allowed.len(), 5, "{events:#?}");
                assert_eq!(allowed[0]["data"]["route"], "open");
                assert_eq!(allowed[0]["data"]["status"], 200);
                assert!(allowed[0]["data"]["subject"].is_null());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collector_receives_batched_json_arrays_with_the_credential_from_the_environment() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = collector(listener).await;
    let (gw, _echo) = gateway(&format!(
        "http_endpoint = \"http://{addr}/events\"\nhttp_batch_size = 4\nhttp_flush_interval = \"300ms\"\nhttp_token_env = \"GH_TEST_AUDIT_TOKEN\""
    ))
    .await;
    let requests = (0..10).map(|_| gw.get("/closed/x", None));
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.status, 401);
    }
    wait_for("ten events at the collector", || events_in(&got) == 10).await;
    let posts = got.lock().unwrap().clone();
    for (auth, body) in &posts {
        assert_eq!(auth, "Bearer collector-credential-0123456789");
        let batch = body.as_array().expect("a JSON array");
        assert!((1..=4).contains(&batch.len()), "{body}");
        for e in batch {
            assert_eq!(e["type"], "dev.gatehouse.request.refused");
            assert_eq!(e["specversion"], "1.0");
        }
    }
    assert!(
        posts.len() < 10,
        "{} POSTs for 10 events: not batched",
        posts.len()
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "gatehouse_audit_events_total{sink=\"http\"}"),
        10
    );
    assert_eq!(
        metric(&m, "gatehouse_audit_events_dropped_total{sink=\"http\"}"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_collector_slows_no_request_counts_its_drops_and_gets_the_queue_when_back() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (gw, _echo) = gateway(&format!(
        "http_endpoint = \"http://{addr}/events\"\nhttp_batch_size = 5\nhttp_queue = 5\nhttp_flush_interval = \"50ms\"\nhttp_max_backoff = \"200ms\"\nhttp_timeout = \"1s\""
    ))
    .await;
    // the first event leaves the queue for a batch that cannot be sent; wait for it to be held
    assert_eq!(gw.get("/closed/x", None).await.status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..29 {
        let t = Instant::now();
        assert_eq!(gw.get("/closed/x", None).await.status, 401);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // an event is emitted after its answer is sent: read the counters once all 30 are counted
    let counted = |m: &str| {
        let sent = metric(m, "gatehouse_audit_events_total{sink=\"http\"}");
        (
            sent,
            metric(m, "gatehouse_audit_events_dropped_total{sink=\"http\"}"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut dropped, mut before) = (0, u64::MAX);
    while (dropped < 20 || dropped != before) && Instant::now() < deadline {
        before = dropped;
        tokio::time::sleep(Duration::from_millis(200)).await;
        dropped = counted(&gw.metrics().await).1;
    }
    // held: the batch in hand (up to 5) and the queue (5); the rest is dropped
    assert!((20..=25).contains(&dropped), "{dropped} dropped of 30");
    assert_eq!(counted(&gw.metrics().await), (0, dropped));
    // the collector comes back: what was held arrives, nothing more
    let got = collector(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let held = 30 - dropped as usize;
    wait_for("the held events", || events_in(&got) == held).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events_in(&got), held, "nothing beyond what was held");
    assert_eq!(counted(&gw.metrics().await), (held as u64, dropped));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_rotates_by_size_and_a_reload_opens_it_again_after_a_rename() {
    let (gw, _echo) = gateway("file = \"a.jsonl\"\nfile_max_bytes = 4096\nfile_keep = 2").await;
    for _ in 0..40 {
        assert_eq!(gw.get("/closed/x", None).await.status, 401);
    }
    let all_written = |gw: &Gw| {
        ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]
            .iter()
            .map(|f| std::fs::read_to_string(gw.path(f)).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    wait_for("rotated files", || gw.path("a.jsonl.2").exists()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for text in all_written(&gw) {
        assert!(
            !text.is_empty() && text.len() <= 4096,
            "{} bytes",
            text.len()
        );
        for line in text.lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            assert_eq!(e["type"], "dev.gatehouse.request.refused");
        }
    }
    assert!(!gw.path("a.jsonl.3").exists(), "file_keep = 2");
    // moved away as logrotate does, then a reload (what SIGHUP does): a new file at the path
    std::fs::rename(gw.path("a.jsonl"), gw.path("moved.jsonl")).unwrap();
    let r = gw.http.post(format!("http://{}/reload", gw.admin)).send();
    assert_eq!(r.await.unwrap().status(), 200);
    assert_eq!(gw.get("/closed/after", None).await.status, 401);
    let (events, _) = events_when(&gw.path("a.jsonl"), |e| e.len() == 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["type"], "dev.gatehouse.config.reloaded");
    assert_eq!(events[1]["data"]["path"], "/closed/after");
    let moved = std::fs::read_to_string(gw.path("moved.jsonl")).unwrap();
    assert!(!moved.contains("config.reloaded") && !moved.contains("/closed/after"));
    // a reload of a broken file is refused, and says so with how many problems it had
    let toml = gw.path("gateway.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("deny_if = [", "deny_if = [\"requst.method == 'X'\", "),
    )
    .unwrap();
    let r = gw.http.post(format!("http://{}/reload", gw.admin)).send();
    assert_eq!(r.await.unwrap().status(), 422);
    let (events, _) = events_when(&gw.path("a.jsonl"), |e| e.len() == 3).await;
    let refused = &events[2];
    assert_eq!(refused["type"], "dev.gatehouse.config.reload_refused");
    assert_eq!(refused["data"]["by"], "admin");
    assert_eq!(refused["data"]["problems"], 1);
    assert_eq!(
        refused["data"]["running_hash"],
        events[0]["data"]["new_hash"]
    );
    assert!(
        !refused.to_string().contains("requst"),
        "the problem's text stays in the log"
    );
}
