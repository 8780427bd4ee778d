//! gRPC through the gateway: a real tonic server behind it over h2c and over TLS (h2 by ALPN),
//! tonic clients in front: identity as metadata, refusals as gRPC statuses, streams and trailers
//! passed whole, deadlines, h2c on the plain listener, and gRPC health checks.

use crate::support::grpc_service::{serve, Client, Msg};
use crate::tokens::Auth;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;

fn routes(upstream: &str) -> String {
    format!(
        r#"
[[routes]]
name = "echo"
path_prefix = "/test.Echo"
upstream = "{upstream}"
issuers = ["self"]
roles_any = ["service"]
stream_idle_timeout = "5s"

[[routes]]
name = "echo-strict"
path_prefix = "/test.Echo/CountStrict"
upstream = "{upstream}"
issuers = ["self"]
roles_any = ["service"]

[[routes]]
name = "echo-slow"
path_prefix = "/test.Echo/Slow"
upstream = "{upstream}"
issuers = ["self"]
roles_any = ["service"]

[[routes]]
name = "echo-admin"
path_prefix = "/test.Echo/Admin"
upstream = "{upstream}"
issuers = ["self"]
roles_any = ["admin"]

[[routes]]
name = "health"
path_prefix = "/grpc.health.v1.Health"
upstream = "{upstream}"
auth = "public"
"#
    )
}

/// A loopback port that refuses every connection while the tests run: bound but never listening, so
/// no other test's server can take it, as one could a port that was merely free a moment ago.
fn refusing_port() -> u16 {
    static BOUND: OnceLock<tokio::net::TcpSocket> = OnceLock::new();
    let socket = BOUND.get_or_init(|| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s
    });
    socket.local_addr().unwrap().port()
}

/// A gateway in front of an h2c gRPC server, with h2c on its plain listener too; `/dead.Svc` goes
/// to a port nobody listens on, `/test.Echo/Small` takes request bodies of at most 64 bytes, and
/// `/v1/…` reaches the server without its prefix.
pub async fn h2c_gateway() -> Auth {
    gatehouse::crypto::tls::install();
    let grpc = serve(None).await;
    let not_serving = crate::support::grpc_service::serve_not_serving().await;
    let dead = refusing_port();
    let extra = format!(
        r#"
[[upstreams]]
name = "grpc"
peers = ["{grpc}"]
protocol = "h2c"
health_check = "grpc"
health_interval = "200ms"
read_timeout = "1s"

[[upstreams]]
name = "sick"
peers = ["{not_serving}"]
protocol = "h2c"
health_check = "grpc"
health_interval = "200ms"

[[upstreams]]
name = "dead"
peers = ["127.0.0.1:{dead}"]
protocol = "h2c"

[[routes]]
name = "dead"
path_prefix = "/dead.Svc"
upstream = "dead"
auth = "public"

[[routes]]
name = "versioned"
path_prefix = "/v1"
strip_prefix = true
upstream = "grpc"
issuers = ["self"]
roles_any = ["service"]

[[routes]]
name = "small"
path_prefix = "/test.Echo/Small"
upstream = "grpc"
auth = "public"
max_body_bytes = 64
{}"#,
        routes("grpc")
    );
    Auth::start_edited("backend = \"memory\"", &extra, |t| {
        t.replacen("[server]\n", "[server]\nh2c = true\n", 1)
    })
    .await
}

async fn tls_channel(a: &Auth) -> Channel {
    let cert = std::fs::read(a.gw.path("certs/gateway.crt")).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert))
        .domain_name("localhost");
    Channel::from_shared(format!("https://localhost:{}", a.gw.tls.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_calls_carry_the_identity_and_refusals_are_grpc_statuses() {
    let a = h2c_gateway().await;
    let channel = tls_channel(&a).await;
    let token = a.svc_token(None).await;

    let mut c = Client::new(channel.clone(), Some(&token));
    let r = c.say("hi").await.unwrap();
    assert_eq!(r.into_inner().text, "hi from svc (service)");

    let mut anonymous = Client::new(channel.clone(), None);
    let e = anonymous.say("hi").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "a bearer token is required");
    assert_eq!(
        e.metadata().get("www-authenticate").unwrap(),
        "Bearer realm=\"gatehouse\""
    );

    let mut forged = Client::new(channel.clone(), Some("e30.e30.e30"));
    assert_eq!(
        forged.say("hi").await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // a method whose route needs another role
    let e = c.unary("/test.Echo/Admin", "hi").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(e.message(), "the token does not grant access to this route");

    // no route for the service; an upstream that is down
    let e = c.unary("/nope.Svc/Method", "hi").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.unary("/dead.Svc/Method", "hi").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "the upstream could not be reached");
    // a message larger than the route takes, refused while it streams
    let e = c
        .unary("/test.Echo/Small", &"x".repeat(100))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(e.message(), gatehouse::respond::TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_and_trailers_pass_whole() {
    let a = h2c_gateway().await;
    let channel = tls_channel(&a).await;
    let token = a.svc_token(None).await;
    let mut c = Client::new(channel, Some(&token));

    let mut stream = c.count(1000, false).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m.text, format!("message {n}"));
        n += 1;
    }
    assert_eq!(n, 1000);

    // an error after the messages arrives in the trailers, custom metadata included
    let mut stream = c.count(5, true).await.unwrap().into_inner();
    let mut got = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the stream ended without its status"),
            Err(s) => break s,
        }
    };
    assert_eq!(got, 5);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "stopped after the messages");
    assert_eq!(status.metadata().get("x-reason").unwrap(), "counted-enough");

    // a large message passes whole
    let big = "x".repeat(3 * 1024 * 1024);
    let r = c.say(&big).await.unwrap().into_inner().text;
    assert_eq!(r.len(), big.len() + " from svc (service)".len());

    // bidirectional: every message sent comes back, while the stream stays open
    let outgoing = tokio_stream::iter((0..50).map(|i| Msg {
        text: format!("m{i}"),
    }))
    .throttle(Duration::from_millis(5));
    let mut replies = c.chat(outgoing).await.unwrap().into_inner();
    let mut echoed = Vec::new();
    while let Some(m) = replies.message().await.unwrap() {
        echoed.push(m.text);
    }
    assert_eq!(echoed.len(), 50);
    assert_eq!(echoed[49], "echo m49");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_deadline_is_honoured_over_the_upstream_read_timeout() {
    let a = h2c_gateway().await;
    let channel = tls_channel(&a).await;
    let token = a.svc_token(None).await;
    let mut c = Client::new(channel, Some(&token));
    // the method takes 1.5 s and the upstream's read_timeout is 1 s
    let e = c.unary("/test.Echo/Slow", "late").await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert_eq!(e.message(), "the upstream did not answer in time");
    // a call that allows itself 10 s is waited for
    let r = c
        .slow_with_deadline("in time", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "in time");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_stream_lives_as_long_as_its_routes_stream_idle_timeout() {
    let a = h2c_gateway().await;
    let channel = tls_channel(&a).await;
    let token = a.svc_token(None).await;
    let mut c = Client::new(channel, Some(&token));
    // 1.5 s between messages: longer than the upstream's read_timeout (1 s), shorter than the
    // route's stream_idle_timeout (5 s)
    let mut stream = c
        .count_at("/test.Echo/Count", 3, false, 1500)
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    // the same stream on a route without one is cut after the read timeout
    let outcome = async {
        let mut s = c
            .count_at("/test.Echo/CountStrict", 3, false, 1500)
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    }
    .await;
    assert!(
        outcome.is_err(),
        "a stream quiet for longer than read_timeout is cut"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_listeners_take_h2c_and_health_checks_speak_grpc() {
    let a = h2c_gateway().await;
    let channel = Channel::from_shared(format!("http://{}", a.gw.plain))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token = a.svc_token(None).await;
    let mut c = Client::new(channel, Some(&token));
    assert_eq!(
        c.say("over h2c").await.unwrap().into_inner().text,
        "over h2c from svc (service)"
    );
    // a route that strips its prefix keeps the request's authority on its way to the h2 upstream,
    // over h2c and over TLS alike
    let mut tls = Client::new(tls_channel(&a).await, Some(&token));
    for client in [&mut c, &mut tls] {
        let r = client.unary("/v1/test.Echo/Say", "stripped").await;
        assert_eq!(r.unwrap().into_inner().text, "stripped from svc (service)");
    }
    // HTTP/1.1 still works on the same port
    let r = a.gw.get("/whoami", None).await;
    assert_ne!(r.status, 0);

    // the health check asks grpc.health.v1.Health/Check: SERVING is healthy, NOT_SERVING is not
    let mut seen = (false, false);
    for _ in 0..50 {
        let m = a.gw.metrics().await;
        let healthy = |u: &str| {
            m.lines().any(|l| {
                l.starts_with("gatehouse_upstream_peer_healthy{")
                    && l.contains(&format!("upstream=\"{u}\""))
                    && l.ends_with(" 1")
            })
        };
        seen = (healthy("grpc"), healthy("sick"));
        if seen == (true, false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (true, false));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_upstream_is_spoken_to_in_h2_by_alpn() {
    gatehouse::crypto::tls::install();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("up.crt"), certs.path().join("up.key"));
    gatehouse::crypto::files::write_self_signed(&cert, &key).unwrap();
    let grpc = serve(Some((
        std::fs::read(&cert).unwrap(),
        std::fs::read(&key).unwrap(),
    )))
    .await;
    let extra = format!(
        r#"
[[upstreams]]
name = "grpc-tls"
peers = ["{grpc}"]
tls = true
sni = "localhost"
ca = "{}"
protocol = "h2"
health_check = "grpc"
{}"#,
        cert.display(),
        routes("grpc-tls")
    );
    let a = Auth::start_with("backend = \"memory\"", &extra).await;
    let channel = tls_channel(&a).await;
    let token = a.svc_token(None).await;
    let mut c = Client::new(channel, Some(&token));
    assert_eq!(
        c.say("over TLS").await.unwrap().into_inner().text,
        "over TLS from svc (service)"
    );
    let mut stream = c.count(100, false).await.unwrap().into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);
}
